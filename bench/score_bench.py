"""Scoring throughput of the propensity models: customers x models per second at a given customer count.

Uses the models registered by a run (``make run`` trains them) and the tag snapshot of that run: the
snapshot's rows are replicated under new customer ids up to ``--customers`` (default 1,000,000), written once
as Parquet, then scored exactly as the nightly ``propensity`` stage does (``mapInPandas`` over Arrow batches,
broadcast models, probability + decile + band + reason codes) and written as Delta. Only the scoring and its
write are timed.

    .venv/bin/python bench/score_bench.py --date 2026-11-20 --customers 1000000 [--reason-codes 0]

Prints one markdown row and writes ``bench/results/score_<customers>_reasons<k>.json`` (k: the reason codes kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--date", required=True, type=dt.date.fromisoformat, help="a snapshot date with tags and trained models")
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--work", default=None, help="scratch folder (default <root>/bench-score)")
    ap.add_argument("--reason-codes", type=int, default=None, help="reason codes per score (default conf/models.yaml; 0 = none)")
    return ap.parse_args(argv)


def replicate_tags(spark, cfg, day: dt.date, needed: list[str], customers: int, work: Path) -> None:
    """The snapshot's tag rows (the models' features), copied under new customer ids up to ``customers`` and
    written once as Parquet to ``work/tags``."""
    from pyspark.sql import functions as F

    from jobs.platform import lake

    tags = lake.read(spark, cfg.paths, "gold.customer_tags").where(F.col("snapshot_date") == F.lit(day))
    base = tags.select("snapshot_date", *needed)
    n_base = base.count()
    copies = -(-customers // n_base)
    t0 = time.time()
    big = (
        base.crossJoin(spark.range(copies).withColumnRenamed("id", "_copy"))
        .withColumn("_n", F.monotonically_increasing_id())
        .withColumn("customer_id", F.format_string("B%011d", F.col("_n")))
        .limit(customers).drop("_copy", "_n")
        .repartition(max(2, cfg.shuffle_partitions))
    )
    big.write.mode("overwrite").parquet(str(work / "tags"))
    print(f"score bench: {customers} customers x {len(needed)} features written in {time.time() - t0:.1f}s", flush=True)


def score(spark, regs: list, needed: list[str], top_k: int, bands, work: Path) -> tuple[float, int]:
    """Score ``work/tags`` as the nightly ``propensity`` stage does and write Delta to ``work/scores``: the
    seconds this took (the timed part), and the rows written."""
    from models import propensity as pm

    frame = spark.read.parquet(str(work / "tags"))
    payload = [
        {"model": r.model, "version": r.version, "key": f"{r.model}/{r.version}/{r.meta['model_sha256']}",
         "text": spark.sparkContext.broadcast(r.model_text()), "features": [n for n, _ in r.features], "deciles": r.meta["deciles"]}
        for r in regs
    ]
    t1 = time.time()
    scored = frame.select("customer_id", "snapshot_date", *needed).mapInPandas(pm.scorer(payload, top_k, bands), pm.SCORE_SCHEMA)
    scored.write.format("delta").mode("overwrite").save(str(work / "scores"))
    secs = time.time() - t1
    rows = spark.read.format("delta").load(str(work / "scores")).count()
    return secs, rows


def report(args: argparse.Namespace, cfg, regs: list, needed: list[str], top_k: int, secs: float, rows: int) -> None:
    """Write ``bench/results/score_<customers>_reasons<k>.json`` and print the markdown row."""
    result = {
        "customers": args.customers, "models": len(regs), "score_rows": rows, "seconds": round(secs, 1),
        "customer_models_per_second": round(args.customers * len(regs) / secs),
        "reason_codes": top_k, "features": len(needed), "trees": {r.model: r.meta["best_iteration"] for r in regs},
        "cores": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "machine": platform.platform(), "spark_master": cfg.spark_master, "date": dt.date.today().isoformat(),
        "command": f".venv/bin/python bench/score_bench.py --date {args.date} --customers {args.customers}",
    }
    out = Path(__file__).parent / "results" / f"score_{args.customers}_reasons{top_k}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print("| customers | models | reason codes | seconds | customers x models per second | cores | memory |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.customers:,} | {len(regs)} | {top_k} | {secs:.1f} | {result['customer_models_per_second']:,} | {result['cores']} | {result['memory_gb']} GiB |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from jobs.platform.config import settings
    from jobs.platform.spark import get_spark
    from jobs.stages.propensity import registry
    from models import propensity as pm

    cfg = settings()
    spark = get_spark(cfg, app_name="cpc-bench-score")
    s = pm.load_settings()
    top_k = s.reason_codes if args.reason_codes is None else args.reason_codes
    regs = [r for r in (pm.current(registry(cfg.paths), m.id, args.date) for m in s.models) if r is not None]
    if not regs:
        raise SystemExit(f"no models trained as of {args.date} under {registry(cfg.paths)}: run `make run` first")
    work = Path(args.work) if args.work else cfg.paths.root / "bench-score"
    shutil.rmtree(work, ignore_errors=True)
    needed = sorted({n for r in regs for n, _ in r.features})
    replicate_tags(spark, cfg, args.date, needed, args.customers, work)
    secs, rows = score(spark, regs, needed, top_k, s.bands, work)
    report(args, cfg, regs, needed, top_k, secs, rows)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
