"""Table maintenance: the check of the incremental tag state, compaction, vacuum with a configured retention,
and tag-history and tag-state retention.

Keyed by the run date like every job: "tag history older than N days" is counted back from the date given,
never from the clock, so a maintenance run can be replayed.

The check comes first: the latest tag state (``silver.tag_state``) and its window features are compared with the
full recompute for a sample of customers (``jobs.stages.tags.incremental.check``); any difference marks the
states invalid and raises, so the weekly DAG fails before anything is deleted or vacuumed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from pydantic import Field

from jobs.platform import lake
from jobs.platform.config import ConfModel, Paths, business, validate
from jobs.platform.errors import ConfigError
from jobs.stages.tags import incremental, load_catalogue
from schemas import TABLES

log = logging.getLogger(__name__)


class MaintenanceConf(ConfModel):
    """``conf/maintenance.yaml``."""

    vacuum_retention_hours: float = Field(gt=0)  # at least Delta's 168 (7 days)
    tag_history_days: int = Field(ge=0)
    optimize: list[str] = Field(default_factory=list)  # tables compacted, "layer.table"
    tag_state_days: int = Field(14, ge=1)  # tag states kept (silver.tag_state); the tags stage steps from these
    tag_state_max_steps: int = Field(6, ge=1)  # the most days the tags stage steps forward; further back: bootstrap
    tag_state_check_per_mille: int = Field(10, ge=0, le=1000)  # customers the weekly check recomputes (0: none)


def load(raw: dict[str, Any] | None = None) -> MaintenanceConf:
    """The maintenance settings (``raw``, or conf/maintenance.yaml), checked before anything is deleted."""
    conf = validate(MaintenanceConf, raw if raw is not None else business("maintenance"), "conf/maintenance.yaml")
    if conf.vacuum_retention_hours < 168:
        raise ConfigError(f"conf/maintenance.yaml: vacuum_retention_hours: {conf.vacuum_retention_hours:g} is below Delta's "
                          "7-day minimum; lists could no longer be rebuilt")
    unknown = [t for t in conf.optimize if t not in TABLES]
    if unknown:
        raise ConfigError(f"conf/maintenance.yaml: optimize: unknown table(s) {unknown}")
    return conf


def retention_cut(day: dt.date, days: int) -> dt.date:
    return day - dt.timedelta(days=days)


def check_tag_state(spark, paths: Paths, day: dt.date, settings: MaintenanceConf) -> dict:
    """The weekly check of the incremental tag state (raises ``TagStateMismatch`` on a difference)."""
    result = incremental.check(spark, paths, day, load_catalogue(), settings.tag_state_check_per_mille)
    return {k: str(v) if isinstance(v, dt.date) else v for k, v in result.items() if k != "examples"}


def run(spark, paths: Paths, day: dt.date, conf: dict | None = None) -> dict:
    from delta.tables import DeltaTable

    settings = load(conf)
    t0 = time.time()
    out = {"optimized": [], "vacuumed": [], "tag_snapshots_deleted": {},
           "tag_state_check": check_tag_state(spark, paths, day, settings)}
    incremental.prune(spark, paths, retention_cut(day, settings.tag_state_days))
    cut = retention_cut(day, settings.tag_history_days)
    for table in ("gold.customer_tags", "gold.tag_stats"):
        if lake.exists(spark, paths, table):
            t = DeltaTable.forPath(spark, paths.table(table))
            before = t.toDF().where(f"snapshot_date < '{cut.isoformat()}'").select("snapshot_date").distinct().count()
            t.delete(f"snapshot_date < '{cut.isoformat()}'")
            out["tag_snapshots_deleted"][table] = before
    for table in settings.optimize:
        if lake.exists(spark, paths, table):
            DeltaTable.forPath(spark, paths.table(table)).optimize().executeCompaction()
            out["optimized"].append(table)
    hours = settings.vacuum_retention_hours
    for table in TABLES:
        if lake.exists(spark, paths, table):
            DeltaTable.forPath(spark, paths.table(table)).vacuum(hours)
            out["vacuumed"].append(table)
    log.info(f"maintain {day}: tag history before {cut} deleted {out['tag_snapshots_deleted']}, "
          f"{len(out['optimized'])} tables compacted, {len(out['vacuumed'])} vacuumed (retention {hours:.0f} h) "
          f"({time.time() - t0:.1f}s)")
    return out
