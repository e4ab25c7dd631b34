"""The priced assignment against deferred acceptance on a run's day: total expected value, contacts, time.

Issue 21 asks that the priced capacity assignment (``assignment: priced``, the default) give a total expected
value at least that of the deferred acceptance it replaced, with every policy rule kept. This rebuilds the
day's candidates exactly as ``cpc score`` does (from the lake a ``make run`` left: tags, propensity scores,
contact history, the day's product-channel fits), runs the whole decision once with each assignment, and
compares the contacts: total and per-channel expected value, contacts per channel against capacity, and
customers contacted twice (never). Nothing is written to the lake.

    .venv/bin/python bench/assignment_check.py --date 2026-11-20

Prints a markdown table and writes ``bench/results/assignment_check_<date>.json`` with the commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = ("deferred_acceptance", "priced")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--date", required=True, type=dt.date.fromisoformat, help="a day `cpc score` has run for")
    return ap.parse_args(argv)


def day_candidates(spark, cfg, day: dt.date):
    """The day's candidates with their row-level outcomes, as ``cpc score`` builds them."""
    from pyspark.sql import functions as F

    from jobs.platform import lake
    from jobs.stages import cpc

    products, channels, _, camps, policy = cpc.load_conf()
    fit_rows = lake.read(spark, cfg.paths, "gold.fit_product_channel").where(F.col("snapshot_date") == F.lit(day)).collect()
    if not fit_rows:  # a few rows: products x channels
        raise SystemExit(f"no gold.fit_product_channel rows for {day} under {cfg.paths.root}: run `make run` (or `cpc score`) first")
    pc_fit = {(r["product_id"], r["channel"]): r["fit"] for r in fit_rows}
    frame = cpc.inputs(spark, cfg.paths, day, products, policy, camps)
    scales = cpc.acceptance_scales(spark, cfg.paths, day, channels)
    harm = cpc.closure_harm(spark, cfg.paths, day, camps, policy)
    combo = cpc.combos(spark, products, channels, camps, pc_fit, day, {ch: v["scale"] for ch, v in scales.items()},
                       closure_harm=harm)
    cands = cpc.candidates(frame, products, channels, camps, policy, combo, day).localCheckpoint()
    return cands, channels, policy, cpc.day_customers(spark, cfg.paths, day)


def contacts_of(decided) -> dict:
    """A decision's contacts: per channel (contacts, expected value), in all, and the customers contacted twice
    (small results: a row per channel, one count)."""
    from pyspark.sql import functions as F

    contacts = decided.where(F.col("outcome") == "contact")
    per = {r["channel"]: {"contacts": int(r["n"]), "expected_value": r["ev"]}  # one row per channel
           for r in contacts.groupBy("channel").agg(F.count("*").alias("n"), F.sum("expected_value").alias("ev")).collect()}
    return {"contacts": sum(v["contacts"] for v in per.values()), "expected_value": sum(v["expected_value"] for v in per.values()),
            "per_channel": per, "customers_contacted_twice": contacts.groupBy("customer_id").count().where("count > 1").count()}


def one_decision(cands, channels, policy, customers: int, method: str) -> dict:
    """The decision with one assignment method: its contacts summed, per channel, and the time it took."""
    from jobs.stages import cpc

    t0 = time.time()
    decided = cpc.decide(cands, channels, dataclasses.replace(policy, assignment=method), log=lambda *_: None,
                         customers=customers).localCheckpoint()
    seen = contacts_of(decided)
    return {"seconds": round(time.time() - t0, 1), **seen}


def commit() -> str:
    from jobs.platform.provenance import git_state

    return (git_state()["commit"] or "unknown")[:7]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from jobs.platform.business import daily_capacity
    from jobs.platform.config import settings
    from jobs.platform.spark import get_spark

    cfg = settings()
    spark = get_spark(cfg, app_name="cpc-bench-assignment")
    cands, channels, policy, customers = day_candidates(spark, cfg, args.date)
    capacity = {c.id: daily_capacity(c.capacity, customers) for c in channels if c.kind == "active"}
    got = {m: one_decision(cands, channels, policy, customers, m) for m in METHODS}
    base, priced = got["deferred_acceptance"], got["priced"]
    result = {
        "date": args.date.isoformat(), "customers": customers, "capacity": capacity, "methods": got,
        "priced_over_deferred_expected_value": round(priced["expected_value"] / base["expected_value"], 6) if base["expected_value"] else None,
        "over_capacity": {m: {ch: v["contacts"] for ch, v in r["per_channel"].items() if v["contacts"] > capacity.get(ch, 0)}
                          for m, r in got.items()},
        "commit": commit(), "measured": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "command": f".venv/bin/python bench/assignment_check.py --date {args.date}", "root": str(cfg.paths.root),
    }
    out = Path(__file__).parent / "results" / f"assignment_check_{args.date}.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    rows = [[ch, capacity[ch], *[got[m]["per_channel"].get(ch, {}).get("contacts", 0) for m in METHODS],
             *[round(got[m]["per_channel"].get(ch, {}).get("expected_value", 0.0), 2) for m in METHODS]] for ch in sorted(capacity)]
    rows.append(["all", sum(capacity.values()), *[got[m]["contacts"] for m in METHODS], *[round(got[m]["expected_value"], 2) for m in METHODS]])
    print(tabulate(rows, headers=["channel", "capacity", "contacts DA", "contacts priced", "expected value DA", "expected value priced"],
                   tablefmt="github"))
    print(f"priced / deferred acceptance, total expected value: {result['priced_over_deferred_expected_value']}; "
          f"decision seconds: DA {base['seconds']}, priced {priced['seconds']}; customers contacted twice: "
          f"DA {base['customers_contacted_twice']}, priced {priced['customers_contacted_twice']}; -> {out}")
    bad = any(result["over_capacity"].values()) or base["customers_contacted_twice"] or priced["customers_contacted_twice"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
