"""The nightly run's stages, each a function of the run date only: the DAG and the CLI both call these.

Every stage reads what earlier stages wrote for that date and replaces exactly its own partitions, so any
stage of any date can be rerun alone.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from jobs import conform, cpc, evaluate, export, ingest, lake, segments, tags
from jobs.config import Paths, Settings, parse_date, settings
from jobs.spark import get_spark
from schemas import FILES, TABLES

STAGES = ("ingest", "conform", "tags", "segments", "propensity", "score", "export", "evaluate")


def _ctx(cfg: Settings | None = None):
    cfg = cfg or settings()
    return get_spark(cfg), cfg.paths


def run_ingest(day: dt.date | str, cfg: Settings | None = None) -> dict:
    spark, paths = _ctx(cfg)
    report = ingest.ingest(spark, paths, [parse_date(day)])
    return {"files": len(report.files), "rejected": len(report.rejected),
            "seconds": round(sum(report.seconds.values()), 2),
            "validation_seconds": round(sum(report.validation_seconds.values()), 2)}


def run_conform(day: dt.date | str, cfg: Settings | None = None) -> int:
    spark, paths = _ctx(cfg)
    return conform.run(spark, paths, [parse_date(day)])


def run_tags(day: dt.date | str, cfg: Settings | None = None) -> dict:
    spark, paths = _ctx(cfg)
    return tags.run(spark, paths, parse_date(day))


def run_segments(day: dt.date | str, cfg: Settings | None = None) -> dict:
    spark, paths = _ctx(cfg)
    return segments.run(spark, paths, parse_date(day))


def run_propensity(day: dt.date | str, cfg: Settings | None = None) -> dict:
    from jobs import propensity

    spark, paths = _ctx(cfg)
    return propensity.score(spark, paths, parse_date(day))


def run_train(day: dt.date | str, cfg: Settings | None = None) -> dict:
    """Train and register every propensity model as of ``day`` (the weekly training DAG and `cpc train`)."""
    from jobs import propensity

    spark, paths = _ctx(cfg)
    return {r.model: r.version for r in propensity.train(spark, paths, parse_date(day))}


def run_score(day: dt.date | str, cfg: Settings | None = None) -> dict:
    spark, paths = _ctx(cfg)
    return cpc.run(spark, paths, parse_date(day))


def run_export(day: dt.date | str, cfg: Settings | None = None) -> list[dict]:
    spark, paths = _ctx(cfg)
    return export.run(spark, paths, parse_date(day))


def run_evaluate(day: dt.date | str, cfg: Settings | None = None) -> dict:
    spark, paths = _ctx(cfg)
    return evaluate.run(spark, paths, parse_date(day))


def run_maintain(day: dt.date | str, cfg: Settings | None = None) -> dict:
    from jobs import maintenance

    spark, paths = _ctx(cfg)
    return maintenance.run(spark, paths, parse_date(day))


STAGE_FUNCS = {
    "ingest": run_ingest, "conform": run_conform, "tags": run_tags, "segments": run_segments,
    "propensity": run_propensity, "score": run_score, "export": run_export, "evaluate": run_evaluate, "maintain": run_maintain,
    "train": run_train,
}


def record(day: dt.date | str, stage: str, cfg: Settings | None = None) -> None:
    """Note in ``ops.run_log`` that a stage of a date finished (backfills resume from it)."""
    spark, paths = _ctx(cfg)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    row = spark.createDataFrame([(parse_date(day), stage, "done", now)], "run_date date, stage string, status string, finished_at timestamp")
    lake.append(row, paths, "ops.run_log")


def completed(days: list[dt.date], cfg: Settings | None = None) -> set[dt.date]:
    """The dates among ``days`` whose last stage (evaluate) has finished."""
    spark, paths = _ctx(cfg)
    if not days or not lake.exists(spark, paths, "ops.run_log"):
        return set()
    rows = lake.read(spark, paths, "ops.run_log").where(lake.in_dates("run_date", days)).where(f"stage = '{STAGES[-1]}'")
    return {r["run_date"] for r in rows.select("run_date").distinct().collect()}  # at most len(days) rows


def nightly(day: dt.date | str, cfg: Settings | None = None, from_stage: str = STAGES[0]) -> dict:
    """All stages for one date, in order, without Airflow (the DAG runs the same functions).
    ``from_stage`` skips the earlier ones (e.g. ``tags`` to recompute tags after a catalogue change)."""
    if from_stage not in STAGES:
        raise ValueError(f"unknown stage {from_stage!r}; stages: {', '.join(STAGES)}")
    day = parse_date(day)
    out = {}
    for stage in STAGES[STAGES.index(from_stage):]:
        out[stage] = STAGE_FUNCS[stage](day, cfg)
        record(day, stage, cfg)
    return out


def backfill(start: dt.date | str, end: dt.date | str, cfg: Settings | None = None, force: bool = False,
             from_stage: str = STAGES[0]) -> list[dt.date]:
    """Every date from ``start`` to ``end`` in order, each computed as of itself. Dates already finished
    are skipped (so a stopped backfill resumes where it stopped) unless ``force``. Returns the dates run."""
    start, end = parse_date(start), parse_date(end)
    if end < start:
        raise ValueError(f"backfill: end {end} is before start {start}")
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    done = set() if force else completed(days, cfg)
    ran = []
    t_all = time.time()
    for i, day in enumerate(days, 1):
        if day in done:
            print(f"backfill [{i}/{len(days)}] {day}: finished before, skipped (use --force to recompute)", flush=True)
            continue
        t0 = time.time()
        print(f"backfill [{i}/{len(days)}] {day}: running", flush=True)
        nightly(day, cfg, from_stage)
        ran.append(day)
        left = len(days) - i
        rate = (time.time() - t_all) / max(len(ran), 1)
        print(f"backfill [{i}/{len(days)}] {day}: done in {time.time() - t0:.0f}s; {left} left, about {left * rate / 60:.1f} min", flush=True)
    return ran


def delivered_dates(paths: Paths) -> list[dt.date]:
    if not paths.landing.exists():
        return []
    return sorted(parse_date(p.name) for p in paths.landing.iterdir() if p.is_dir() and len(p.name) == 10)


def history(before: dt.date | str, cfg: Settings | None = None, start: dt.date | str | None = None) -> list[dt.date]:
    """Ingest and conform every delivered date before ``before`` (and from ``start``), in one batch: the
    history a first nightly run needs for its 30-day windows."""
    spark, paths = _ctx(cfg)
    before = parse_date(before)
    days = [d for d in delivered_dates(paths) if d < before and (start is None or d >= parse_date(start))]
    if not days:
        print(f"history: no delivered dates before {before} in {paths.landing}")
        return []
    t0 = time.time()
    print(f"history: ingesting {len(days)} delivery dates {days[0]}..{days[-1]}", flush=True)
    ingest.ingest(spark, paths, days)
    conform.run(spark, paths, days)
    print(f"history: done in {time.time() - t0:.1f}s", flush=True)
    return days


def summary(day: dt.date | str, cfg: Settings | None = None) -> dict:
    """Where everything is after a run, with rows per table, tags computed and list sizes per channel."""
    spark, paths = _ctx(cfg)
    day = parse_date(day)
    from pyspark.sql import functions as F

    tables = {}
    for name, spec in TABLES.items():
        if not lake.exists(spark, paths, name):
            continue
        df = lake.read(spark, paths, name)
        part = spec.partition_by[-1] if spec.partition_by else None
        if part in ("delivery_date", "snapshot_date", "day", "run_date"):
            df = df.where(F.col(part) == F.lit(day))
        tables[name] = {"path": paths.table(name), "rows": df.count(), "of_date": bool(part)}
    exports = {}
    folder = paths.export_day(day)
    if folder.exists():
        for link in sorted(p for p in folder.iterdir() if p.is_symlink()):
            m = json.loads((link / "manifest.json").read_text())
            exports[link.name] = {"rows": m["rows"], "path": str(link / m["files"][0]["name"])}
    ledger = {}
    if lake.exists(spark, paths, "ops.ingest_ledger"):
        for r in lake.read(spark, paths, "ops.ingest_ledger").where(F.col("delivery_date") == F.lit(day)).collect():  # one row per file
            ledger[r["kind"]] = {"status": r["status"], "received": r["rows_received"], "quarantined": r["rows_quarantined"]}
    n_tags = len(tags.load_catalogue().tags)
    campaigns = []
    if lake.exists(spark, paths, "gold.cpc_funnel"):
        from jobs import funnel

        campaigns = funnel.short(spark, paths, day)
    report = paths.reports / f"campaigns_{day.isoformat()}.html"
    out = {"run_date": day.isoformat(), "root": str(paths.root), "tags": n_tags, "tables": tables, "exports": exports,
           "ingest": ledger, "campaigns": campaigns, "campaign_report": str(report) if report.exists() else None}
    paths.reports.mkdir(parents=True, exist_ok=True)
    (paths.reports / f"run_{day.isoformat()}.json").write_text(json.dumps(out, indent=2))
    return out


def print_summary(s: dict) -> None:
    root = Path(s["root"])
    print()
    print(f"=== Nightly run {s['run_date']}: done ===")
    print(f"Data root: {root}")
    print("Ingested files (this date):")
    for kind in FILES:
        if kind in s["ingest"]:
            i = s["ingest"][kind]
            print(f"  {kind:<12} {i['status']:<9} {i['received']:>8} rows received, {i['quarantined']} quarantined")
    print("Delta tables (rows for this date where the table is dated):")
    for name, t in s["tables"].items():
        print(f"  {name:<24} {t['rows']:>9}  {t['path']}")
    print(f"Tags computed: {s['tags']} per customer (gold.customer_tags; catalogue in gold.tag_catalogue)")
    if s.get("campaigns"):
        print(f"Campaigns (customers; the whole funnel: cpc funnel --date {s['run_date']}):")
        for line in s["campaigns"]:
            print(line)
    print("Lists for downstream systems:")
    for ch, e in s["exports"].items():
        print(f"  {ch:<14} {e['rows']:>7} rows  {e['path']}")
    if s.get("campaign_report"):
        print(f"Campaign report (responses, conversions, lift over the holdouts): {s['campaign_report']}")
    print(f"Summary JSON: {root / 'reports' / ('run_' + s['run_date'] + '.json')}")
