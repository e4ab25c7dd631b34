"""The decision at scale (issue 21: "the decision under 120 s" at 1,000,000 customers): the day's candidates of a
run, copied under new customer ids up to ``--customers``, through ``cpc.decide`` as the score stage runs it.

The 1,000,000-customer nightly bench takes over two hours on this machine; this measures the decision alone,
which is what the target names. It rebuilds the day's candidates exactly as ``cpc score`` does from the lake a
``make run`` left (``bench/assignment_check.day_candidates``), keeps those past the eligibility rules (what the
stage gives ``decide``: ``cpc.past_eligibility``), and copies every customer's candidates ``copies`` times under
new ids (``<id>~<copy>``), written once as Parquet (untimed). Then, timed, in one session: the decision
(``cpc.decide`` with the policy's assignment, to a ``localCheckpoint`` as the stage keeps it) and its
gold.cpc_decisions rows written as Delta to a scratch folder (the stage's largest write). Capacities given as
shares grow with the customers (``customers`` passed as the copies' count); the copies carry their originals'
holdout and exploration outcomes and values, so each copy is an equal rival of its original, a harder case for
the assignment's ties than a real operator's spread of values, not an easier one. Checked on the result: every
channel within its capacity, no customer contacted twice; reported: contacts per channel against capacity, the
decision's Spark jobs, the process tree's peak memory.

    .venv/bin/python bench/decision_scale.py --date 2026-11-20 --customers 1000000

Writes ``bench/results/decision_scale_<customers>.json`` with the commit. Spark runs here: run it alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--date", required=True, type=dt.date.fromisoformat, help="a day `cpc score` has run for")
    ap.add_argument("--customers", type=int, default=1_000_000, help="customers after copying (default 1,000,000)")
    ap.add_argument("--work", type=Path, help="scratch folder (default <root>/bench-decision)")
    ap.add_argument("--out", type=Path, help="default bench/results/decision_scale_<customers>.json")
    args = ap.parse_args(argv)
    if args.customers < 1:
        ap.error("--customers must be at least 1")
    return args


def copies_of(cands, copies: int):
    """Every candidate ``copies`` times, the customer id of copy k made ``<id>~<k>`` (k from 0; pure transform)."""
    from pyspark.sql import functions as F

    return (cands.crossJoin(F.broadcast(cands.sparkSession.range(copies).withColumnRenamed("id", "_copy")))
            .withColumn("customer_id", F.concat_ws("~", "customer_id", F.col("_copy").cast("string"))).drop("_copy"))


def checks(decided, capacity: dict[str, int]) -> dict:
    """``bench/assignment_check.contacts_of`` (contacts and expected value per channel, customers contacted twice),
    the values rounded to cents, and the channels over ``capacity``."""
    from bench.assignment_check import contacts_of

    seen = contacts_of(decided)
    per = {ch: {**v, "expected_value": round(float(v["expected_value"]), 2)} for ch, v in seen["per_channel"].items()}
    return {**seen, "expected_value": round(float(seen["expected_value"]), 2), "per_channel": per,
            "over_capacity": {ch: v["contacts"] for ch, v in per.items() if v["contacts"] > capacity.get(ch, 0)}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from jobs.platform.config import settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark

    cfg, code = settings(), git_state()
    spark = get_spark(cfg, app_name="cpc-bench-decision")
    work = args.work or cfg.paths.root / "bench-decision"
    shutil.rmtree(work, ignore_errors=True)
    try:
        return measure(spark, cfg, code, args, work, sys.argv[1:] if argv is None else argv)
    finally:  # the copied candidates are gigabytes at a million: never left behind, whatever happened
        shutil.rmtree(work, ignore_errors=True)


def measure(spark, cfg, code: dict, args: argparse.Namespace, work: Path, argv: list[str]) -> int:
    """The run of :func:`main` in ``work``: prepares, times, checks and writes the result; the exit status."""
    from bench.assignment_check import day_candidates
    from bench.night_fixed_cost import jobs_counter
    from bench.nightly_bench import PeakMemory, write_result
    from jobs.platform.business import daily_capacity
    from jobs.stages import cpc

    with PeakMemory() as peak:
        t0 = time.perf_counter()
        cands, channels, policy, base_customers = day_candidates(spark, cfg, args.date)
        copies = -(-args.customers // base_customers)
        copies_of(cpc.past_eligibility(cands), copies).write.parquet(str(work / "candidates"))
        pool = spark.read.parquet(str(work / "candidates"))
        rows, prepare_s, prepare_peak = pool.count(), time.perf_counter() - t0, peak.take()
        customers = base_customers * copies
        print(f"decision_scale: {rows:,} candidates of {customers:,} customers ({copies} copies of {base_customers:,}) "
              f"in {prepare_s:.1f}s", flush=True)
        capacity = {c.id: daily_capacity(c.capacity, customers) for c in channels if c.kind == "active"}
        jobs_started = jobs_counter(spark)
        jobs0, t1 = jobs_started(), time.perf_counter()
        decided = cpc.decide(pool, channels, policy, customers=customers).localCheckpoint()
        decide_s, decide_jobs = time.perf_counter() - t1, jobs_started() - jobs0
        print(f"decision_scale: the decision {decide_s:.1f}s ({decide_jobs} Spark jobs)", flush=True)
        t2 = time.perf_counter()
        cpc.decisions(decided, "bench").write.format("delta").save(str(work / "cpc_decisions"))
        write_s = time.perf_counter() - t2
        decide_peak = peak.take()
    seen = checks(decided, capacity)
    out = args.out or ROOT / "bench" / "results" / f"decision_scale_{args.customers}.json"
    write_result(out, {
        "date": args.date.isoformat(), "root": str(cfg.paths.root), "assignment": policy.assignment,
        "base_customers": base_customers, "copies": copies, "customers": customers, "candidates": rows,
        "prepare_seconds": round(prepare_s, 1), "prepare_peak_gib": round(prepare_peak / 2**30, 2),
        "decision_seconds": round(decide_s, 1), "decision_spark_jobs": decide_jobs,
        "decisions_write_seconds": round(write_s, 1), "decision_peak_gib": round(decide_peak / 2**30, 2),
        "target_seconds": 120, "capacity": capacity, **seen}, cfg, "bench/decision_scale.py",
        argv, code)
    print(f"decision_scale: {customers:,} customers, {rows:,} candidates: the decision {decide_s:.1f}s (target 120 s), "
          f"its write {write_s:.1f}s, peak {decide_peak / 2**30:.2f} GiB; {seen['contacts']:,} contacts, over capacity "
          f"{seen['over_capacity'] or 'none'}, contacted twice {seen['customers_contacted_twice']} -> {out}", flush=True)
    return 1 if seen["over_capacity"] or seen["customers_contacted_twice"] else 0


if __name__ == "__main__":
    sys.exit(main())
