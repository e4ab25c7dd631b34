"""How the tag engine keeps its wide frame for the quantile bands: a local checkpoint (what ``apply_tags`` does),
Spark's columnar cache (what it did), or nothing (the frame computed again for the result), timed on one
snapshot date of an existing storage root, in one session.

``apply_tags`` computes every tag but the quantile bands, aggregates the bands' cut points over that frame and
then writes the frame with the bands. The frame is about 360 columns wide. This calls ``apply_tags`` on the
date's base frame (window features from the date's history aggregation, as training's snapshots take them) with
each way in turn, ``--repeat`` times in the order checkpoint, cache, recompute (the first round also pays the
JVM's warm-up and code generation; read the later rounds), materialises the whole result each time (a count of
a hash of every column: nothing is written) and checks that the three give the same rows. The other ways are
made by swapping ``DataFrame.localCheckpoint`` for the call: ``cache()`` or the frame itself.

    .venv/bin/python bench/wide_frame.py --root var --date 2026-09-17

Prints a table and writes ``bench/results/wide_frame.json`` with the commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WAYS = ("checkpoint", "cache", "recompute")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("var"), help="a storage root `make run` filled (default var)")
    ap.add_argument("--date", required=True, type=dt.date.fromisoformat, help="a snapshot date inside its history")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/results/wide_frame.json"))
    return ap.parse_args(argv)


def kept_as(way: str):
    """``DataFrame.localCheckpoint`` as the way keeps the frame (restore the original afterwards)."""
    from pyspark.sql import DataFrame

    original = DataFrame.localCheckpoint
    if way == "cache":
        DataFrame.localCheckpoint = lambda self, *a, **k: self.cache()
    elif way == "recompute":
        DataFrame.localCheckpoint = lambda self, *a, **k: self
    return original


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ["CPC_ROOT"] = str(args.root.resolve())
    os.environ.setdefault("CPC_ENV", "local")
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    from bench.nightly_bench import machine
    from jobs.platform import lake, logs
    from jobs.platform.config import settings
    from jobs.platform.privacy import hash_key
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark
    from jobs.stages.tags import apply_tags, base_frame, incremental, load_catalogue

    logs.setup()
    code, cfg = git_state(), settings()
    spark = get_spark(cfg, app_name="cpc-wide-frame")
    cat, paths, day = load_catalogue(), cfg.paths, args.date
    plan, key = incremental.plan_of(cat), hash_key(cfg.env, paths.root)
    daily = lake.read(spark, paths, incremental.SILVER)

    def tags():
        feats = incremental.features_from_state(incremental.state_full(daily, day, plan), day, plan)
        return apply_tags(base_frame(spark, paths, day, cat, key, feats=feats), cat)

    runs, results = [], {}
    for i in range(1, args.repeat + 1):
        for way in WAYS:
            original = kept_as(way)
            try:
                t0 = time.perf_counter()
                out = tags()
                n = out.select(F.count(F.xxhash64(*out.columns))).first()[0]
                seconds = round(time.perf_counter() - t0, 1)
            finally:
                DataFrame.localCheckpoint = original
            results[way] = out
            runs.append({"round": i, "way": way, "seconds": seconds, "rows": n})
            print(f"wide frame: round {i}, {way}: {seconds} s ({n} rows)", flush=True)
            spark.catalog.clearCache()
    base = results["checkpoint"]
    diffs = {w: base.exceptAll(results[w]).count() + results[w].exceptAll(base).count() for w in WAYS[1:]}
    spark.catalog.clearCache()
    last = {r["way"]: r["seconds"] for r in runs if r["round"] == args.repeat}
    result = {"root": str(paths.root), "date": day.isoformat(), "runs": runs, "differences_from_checkpoint": diffs,
              "last_round_over_checkpoint": {w: round(last[w] / last["checkpoint"], 2) for w in WAYS},
              "spark_master": cfg.spark_master, "machine": machine(),
              "command": shlex.join([".venv/bin/python", "bench/wide_frame.py", *argv]),
              "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **code}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(tabulate([(r["round"], r["way"], r["seconds"]) for r in runs], headers=("round", "way", "seconds"), tablefmt="github"))
    print(f"last round against the checkpoint: {result['last_round_over_checkpoint']}; rows differing: {diffs} -> {args.out}")
    return 0 if not any(diffs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
