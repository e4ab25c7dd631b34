"""The whole night with Spark's whole-stage method limit at its default (65535) and at HotSpot's JIT limit (8000), to
decide whether the sessions should set ``spark.sql.codegen.hugeMethodLimit`` (issue 21; not set: docs/benchmarks.md).

In one session (the setting is read when a query is planned, so it can change between queries): every nightly stage
for ``--date`` in order on the storage root, as ``cpc nightly`` runs them (each stage replaces its own partitions
of the date, as a rerun does), timing each, with ``spark.sql.codegen.hugeMethodLimit`` at one limit, then at the
other; ``--repeat`` rounds, which goes first alternating, after one untimed night that warms the session. So each
stage's two figures come from the same warm process and the machine's load falls on both alike. After each night
the day's published lists are hashed as ``bench/compare_runs.py`` hashes them: every night must give the same
bytes, or the script stops. Spark runs here: run it alone, on a root a nightly has run on.

    .venv/bin/python bench/codegen_limit.py --date 2026-11-20 --repeat 3

Storage root and Spark from conf/env (``CPC_ROOT`` overrides). Prints the medians and writes
``bench/results/codegen_limit.json`` with the commit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY = "spark.sql.codegen.hugeMethodLimit"
LIMITS = ("65535", "8000")  # Spark's default (the largest valid Java method), HotSpot's HugeMethodLimit


def one_night(spark, cfg, day, limit: str) -> dict:
    """Every nightly stage of ``day`` with the limit set, each as ``cpc nightly`` runs it (``pipeline.nightly`` one
    stage at a time): each stage's seconds, the night's, and the day's published lists as ``bench/compare_runs.py``
    reads them (rows and the SHA-256 of each file, found through the lists' links: each is published in a folder of a
    random name, and the manifests carry the time of publishing)."""
    from bench import compare_runs
    from jobs.orchestration import pipeline
    from jobs.orchestration.registry import NIGHTLY_NAMES

    spark.conf.set(KEY, limit)
    seconds = {}
    for stage in NIGHTLY_NAMES:
        t = time.perf_counter()
        pipeline.nightly(day, cfg, stage, stage)
        seconds[stage] = round(time.perf_counter() - t, 2)
    return {"seconds": seconds, "night": round(sum(seconds.values()), 2),
            "lists": compare_runs.lists(cfg.paths.root, day.isoformat())}


def medians(runs: dict[str, list[dict]]) -> dict:
    stages = list(runs[LIMITS[0]][0]["seconds"])
    return {limit: {**{s: round(statistics.median(r["seconds"][s] for r in rs), 2) for s in stages},
                    "night": round(statistics.median(r["night"] for r in rs), 2)} for limit, rs in runs.items()}


def main(argv: list[str] | None = None) -> dict:
    from bench.nightly_bench import write_result
    from jobs.platform.config import parse_date, settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--date", required=True, help="a date the root has run (YYYY-MM-DD)")
    ap.add_argument("--repeat", type=int, default=3, help="nights at each limit (default 3)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/codegen_limit.json")
    args = ap.parse_args(argv)
    day, cfg, code = parse_date(args.date), settings(), git_state()
    spark = get_spark(cfg)
    own = spark.conf.get(KEY)
    warm = one_night(spark, cfg, day, own)
    print(f"codegen_limit: warm-up night at {own}: {warm['night']}s", flush=True)
    runs: dict[str, list[dict]] = {limit: [] for limit in LIMITS}
    for i in range(args.repeat):
        for limit in (LIMITS if i % 2 == 0 else LIMITS[::-1]):
            runs[limit].append(one_night(spark, cfg, day, limit))
            print(f"codegen_limit: {limit} {runs[limit][-1]} (round {i + 1}/{args.repeat})", flush=True)
    spark.conf.set(KEY, own)
    differing = [r["lists"] for rs in runs.values() for r in rs if r["lists"] != warm["lists"]]
    if differing:
        raise SystemExit(f"codegen_limit: the lists differ between nights: {warm['lists']} against {differing[0]}")
    median = medians(runs)
    ratio = {k: round(median[LIMITS[1]][k] / median[LIMITS[0]][k], 3) for k in median[LIMITS[0]] if median[LIMITS[0]][k]}
    result = write_result(args.out, {"date": day.isoformat(), "root": str(cfg.paths.root), "session_default": own,
                                     "warm_up": warm, "runs": runs, "median": median, "ratio_8000_over_65535": ratio,
                                     "lists_equal": True}, cfg, "bench/codegen_limit.py",
                          sys.argv[1:] if argv is None else argv, code)
    print(f"codegen_limit: night {median[LIMITS[0]]['night']}s at 65535, {median[LIMITS[1]]['night']}s at 8000 "
          f"({ratio['night']}x); score {ratio.get('score')}x, tags {ratio.get('tags')}x, ingest {ratio.get('ingest')}x; "
          f"the same lists -> {args.out}")
    return result


if __name__ == "__main__":
    main()
