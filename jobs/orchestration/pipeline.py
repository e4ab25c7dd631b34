"""Running stages by date without Airflow: the nightly run of one date, backfills over a range (resuming
where a stopped one ended), and the history load of a first run. The DAG runs the same stage functions
(``jobs.orchestration.registry``).

Every stage reads what earlier stages wrote for that date and replaces exactly its own partitions, so any
stage of any date can be rerun alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from jobs.orchestration.registry import NIGHTLY_NAMES, STAGES
from jobs.platform import lake
from jobs.platform.config import Paths, Settings, parse_date, settings
from jobs.platform.logs import progress
from jobs.platform.spark import get_spark
from jobs.stages import conform, ingest

log = logging.getLogger(__name__)


def _ctx(cfg: Settings | None = None):
    cfg = cfg or settings()
    return get_spark(cfg), cfg.paths


def history_batches(paths, days: list[dt.date], limit_mb: float) -> list[list[dt.date]]:
    """``days`` in date order, cut into runs of consecutive dates whose landing files add up to at most
    ``limit_mb`` MB (a date whose files alone are larger is a batch by itself)."""
    limit, batches, size = limit_mb * 2**20, [], 0
    for day in sorted(days):
        folder = paths.landing_day(day)
        day_size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) if folder.is_dir() else 0
        if batches and size + day_size <= limit:
            batches[-1].append(day)
            size += day_size
        else:
            batches.append([day])
            size = day_size
    return batches


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
    rows = lake.read(spark, paths, "ops.run_log").where(lake.in_dates("run_date", days)).where(f"stage = '{NIGHTLY_NAMES[-1]}'")
    return {r["run_date"] for r in rows.select("run_date").distinct().collect()}  # at most len(days) rows


def nightly(day: dt.date | str, cfg: Settings | None = None, from_stage: str = NIGHTLY_NAMES[0],
            to_stage: str = NIGHTLY_NAMES[-1]) -> dict:
    """All stages for one date, in order, without Airflow (the DAG runs the same functions).
    ``from_stage`` skips the earlier ones (e.g. ``tags`` to recompute tags after a catalogue change); ``to_stage``
    stops after that one (e.g. ``export`` to republish the lists without evaluating)."""
    for name in (from_stage, to_stage):
        if name not in NIGHTLY_NAMES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(NIGHTLY_NAMES)}")
    day = parse_date(day)
    out = {}
    for stage in NIGHTLY_NAMES[NIGHTLY_NAMES.index(from_stage):NIGHTLY_NAMES.index(to_stage) + 1]:
        out[stage] = STAGES[stage](day, cfg)
        record(day, stage, cfg)
    return out


def backfill(start: dt.date | str, end: dt.date | str, cfg: Settings | None = None, force: bool = False,
             from_stage: str = NIGHTLY_NAMES[0]) -> list[dt.date]:
    """Every date from ``start`` to ``end`` in order, each computed as of itself. Dates already finished
    are skipped (so a stopped backfill resumes where it stopped) unless ``force``. Returns the dates run."""
    start, end = parse_date(start), parse_date(end)
    if end < start:
        raise ValueError(f"backfill: end {end} is before start {start}")
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    done = set() if force else completed(days, cfg)
    ran = []
    t_all = time.time()
    for i, day in enumerate(progress(days, f"backfill {days[0]}..{days[-1]}", total=len(days)), 1):
        if day in done:
            log.info(f"backfill [{i}/{len(days)}] {day}: finished before, skipped (use --force to recompute)")
            continue
        t0 = time.time()
        log.info(f"backfill [{i}/{len(days)}] {day}: running")
        nightly(day, cfg, from_stage)
        ran.append(day)
        left = len(days) - i
        rate = (time.time() - t_all) / max(len(ran), 1)
        log.info(f"backfill [{i}/{len(days)}] {day}: done in {time.time() - t0:.0f}s; {left} left, about {left * rate / 60:.1f} min")
    return ran


def delivered_dates(paths: Paths) -> list[dt.date]:
    if not paths.landing.exists():
        return []
    return sorted(parse_date(p.name) for p in paths.landing.iterdir() if p.is_dir() and len(p.name) == 10)


def history(before: dt.date | str, cfg: Settings | None = None, start: dt.date | str | None = None) -> list[dt.date]:
    """Ingest and conform every delivered date before ``before`` (and from ``start``): the history a first nightly
    run needs for its 30-day windows. In batches of consecutive dates whose landing files add up to at most
    ``storage.history_batch_mb`` (:func:`history_batches`; the sample's whole history is one batch), each ingested
    then conformed before the next, so that the disk and memory a batch needs do not grow with the history."""
    cfg = cfg or settings()
    spark, paths = _ctx(cfg)
    before = parse_date(before)
    days = [d for d in delivered_dates(paths) if d < before and (start is None or d >= parse_date(start))]
    if not days:
        log.info(f"history: no delivered dates before {before} in {paths.landing}")
        return []
    t0 = time.time()
    batches = history_batches(paths, days, cfg.history_batch_mb)
    log.info(f"history: ingesting {len(days)} delivery dates {days[0]}..{days[-1]}"
             + (f" in {len(batches)} batches of at most {cfg.history_batch_mb} MB of files" if len(batches) > 1 else ""))
    for i, batch in enumerate(batches, 1):
        if len(batches) > 1:
            log.info(f"history: batch {i}/{len(batches)}: {batch[0]}..{batch[-1]} ({len(batch)} dates)")
        ingest.ingest(spark, paths, batch)
        conform.run(spark, paths, batch)
    log.info(f"history: done in {time.time() - t0:.1f}s")
    return days
