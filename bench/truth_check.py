"""How well tags find what the simulator knows: precision and recall of tags against the hidden truth.

The nightly pipeline never reads ``truth/``; this report (and the tests) may. Run after a nightly run:

    .venv/bin/python bench/truth_check.py --date 2026-11-20

It prints a table and writes ``reports/truth_<date>.json`` under the storage root.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (tag, truth expression over the truth table, what it means)
PAIRS = [
    ("mkt_churn_prone", "churner", "churn intent (the customer will leave)"),
    ("mkt_price_sensitive", "price_sensitive", "price sensitivity > 0.6"),
    ("val_heavy_data", "heavy_data", "heavy data user"),
    ("svc_high_freq_caller", "high_freq_caller", "calls the hotline very often"),
    ("svc_complaint_sensitive", "complaint_prone", "complaint-prone"),
    ("mkt_handset_buyer", "handset_intent >= 0.5", "intends to buy a handset"),
    ("mkt_freq_handset_changer", "freq_changer", "changes handsets often"),
    ("mkt_roamer", "roamer", "travels abroad"),
    ("cp_prefers_agent", "pref_agent >= 0.5", "prefers a human agent"),
    ("cp_screen_swiper", "pref_app >= 0.5", "prefers the app"),
    ("cp_web_surfer", "pref_web + pref_wap >= 0.5", "prefers the website or WAP"),
]


def evaluate(spark, paths, day) -> list[dict]:
    from pyspark.sql import functions as F

    from jobs.platform import lake

    tags = lake.read(spark, paths, "gold.customer_tags").where(F.col("snapshot_date") == F.lit(day))
    truth = spark.read.parquet(str(paths.truth / "customers.parquet"))
    joined = tags.join(truth, on="customer_id", how="inner")
    aggs = []
    for tag, expr, _ in PAIRS:
        pred, act = F.coalesce(F.col(tag), F.lit(False)), F.coalesce(F.expr(expr), F.lit(False))
        aggs += [F.sum((pred & act).cast("long")).alias(f"{tag}__tp"), F.sum(pred.cast("long")).alias(f"{tag}__pp"),
                 F.sum(act.cast("long")).alias(f"{tag}__ap")]
    aggs.append(F.avg((F.col("cp_pref_channel") == F.col("preferred_channel")).cast("double")).alias("pref_acc"))
    aggs.append(F.count(F.lit(1)).alias("n"))
    row = joined.agg(*aggs).first()  # one row of counts
    out = []
    for tag, expr, meaning in PAIRS:
        tp, pp, ap = row[f"{tag}__tp"] or 0, row[f"{tag}__pp"] or 0, row[f"{tag}__ap"] or 0
        out.append({"tag": tag, "truth": expr, "meaning": meaning, "customers": row["n"], "tagged": pp, "true": ap,
                    "precision": round(tp / pp, 3) if pp else None, "recall": round(tp / ap, 3) if ap else None})
    out.append({"tag": "cp_pref_channel", "truth": "preferred_channel", "meaning": "most preferred passive channel",
                "customers": row["n"], "accuracy": round(row["pref_acc"], 3) if row["pref_acc"] is not None else None})
    return out


def main() -> int:
    from jobs.platform.config import parse_date, settings
    from jobs.platform.spark import get_spark

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--date", required=True)
    args = p.parse_args()
    cfg = settings()
    day = parse_date(args.date)
    rows = evaluate(get_spark(cfg), cfg.paths, day)
    print(f"{'tag':<26} {'tagged':>7} {'true':>7} {'precision':>9} {'recall':>7}  truth")
    for r in rows:
        if "accuracy" in r:
            print(f"{r['tag']:<26} {'':>7} {'':>7} {'accuracy':>9} {r['accuracy']!s:>7}  {r['truth']}")
        else:
            print(f"{r['tag']:<26} {r['tagged']:>7} {r['true']:>7} {r['precision']!s:>9} {r['recall']!s:>7}  {r['truth']}")
    cfg.paths.reports.mkdir(parents=True, exist_ok=True)
    out = cfg.paths.reports / f"truth_{day.isoformat()}.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
