"""A night's ingest with its file kinds one after another against side by side, in one process (issue 21).

Reruns the ingest of one delivery date that a run has already ingested (``make run``'s run date: the same files
again, so every rerun accepts them and replaces the same partitions), alternating ``workers=1`` and the default
(:func:`jobs.stages.ingest.workers_for`: Spark's cores, at most 4), ``--repeat`` times each, after one untimed
warm-up run. The ratio of the medians is measured in one session, so the machine's noise touches both alike.

    .venv/bin/python bench/ingest_workers.py --date 2026-11-20 [--repeat 3]

Storage root and Spark from conf/env (``CPC_ROOT`` overrides). Prints a table and writes
``bench/results/ingest_workers_<date>.json`` with the commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--date", required=True, type=dt.date.fromisoformat, help="a delivery date the root has ingested")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each way (default 3)")
    return ap.parse_args(argv)


def summary(times: dict[str, list[float]]) -> dict:
    """Median seconds of each way and their ratio (one after another / side by side)."""
    med = {k: round(statistics.median(v), 2) for k, v in times.items()}
    ratio = round(med["one_at_a_time"] / med["side_by_side"], 3) if med.get("side_by_side") else None
    return {"median_seconds": med, "one_at_a_time_over_side_by_side": ratio}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from jobs.platform.config import settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark
    from jobs.stages import ingest

    cfg = settings()
    spark = get_spark(cfg, app_name="cpc-bench-ingest-workers")
    side = ingest.workers_for(spark, [args.date])
    ingest.ingest(spark, cfg.paths, [args.date])  # warm-up, untimed
    times: dict[str, list[float]] = {"one_at_a_time": [], "side_by_side": []}
    for k in range(args.repeat):
        for way, workers in (("one_at_a_time", 1), ("side_by_side", side)):
            t0 = time.time()
            ingest.ingest(spark, cfg.paths, [args.date], workers=workers)
            times[way].append(round(time.time() - t0, 2))
            print(f"ingest workers: run {k + 1}/{args.repeat} {way} ({workers} worker(s)): {times[way][-1]} s", flush=True)
    result = {"date": args.date.isoformat(), "root": str(cfg.paths.root), "spark_master": cfg.spark_master,
              "workers_side_by_side": side, "repeat": args.repeat, "seconds": times, **summary(times), **git_state(),
              "measured": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%MZ"),
              "command": f".venv/bin/python bench/ingest_workers.py --date {args.date} --repeat {args.repeat}"}
    out = Path(__file__).parent / "results" / f"ingest_workers_{args.date}.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(tabulate([[w, *times[w], result["median_seconds"][w]] for w in times],
                   headers=["way", *[f"run {i + 1}" for i in range(args.repeat)], "median"], tablefmt="github"))
    print(f"one at a time / side by side: {result['one_at_a_time_over_side_by_side']} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
