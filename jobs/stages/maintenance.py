"""Table maintenance: compaction, vacuum with a configured retention, and tag-history retention.

Keyed by the run date like every job: "tag history older than N days" is counted back from the date given,
never from the clock, so a maintenance run can be replayed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from jobs.platform import lake
from jobs.platform.config import Paths, business
from schemas import TABLES

log = logging.getLogger(__name__)


def retention_cut(day: dt.date, days: int) -> dt.date:
    return day - dt.timedelta(days=days)


def run(spark, paths: Paths, day: dt.date, conf: dict | None = None) -> dict:
    from delta.tables import DeltaTable

    conf = conf or business("maintenance")
    t0 = time.time()
    out = {"optimized": [], "vacuumed": [], "tag_snapshots_deleted": {}}
    cut = retention_cut(day, int(conf["tag_history_days"]))
    for table in ("gold.customer_tags", "gold.tag_stats"):
        if lake.exists(spark, paths, table):
            t = DeltaTable.forPath(spark, paths.table(table))
            before = t.toDF().where(f"snapshot_date < '{cut.isoformat()}'").select("snapshot_date").distinct().count()
            t.delete(f"snapshot_date < '{cut.isoformat()}'")
            out["tag_snapshots_deleted"][table] = before
    for table in conf.get("optimize", []):
        if lake.exists(spark, paths, table):
            DeltaTable.forPath(spark, paths.table(table)).optimize().executeCompaction()
            out["optimized"].append(table)
    hours = float(conf["vacuum_retention_hours"])
    if hours < 168:
        raise ValueError(f"vacuum_retention_hours {hours} is below Delta's 7-day minimum; lists could no longer be rebuilt")
    for table in TABLES:
        if lake.exists(spark, paths, table):
            DeltaTable.forPath(spark, paths.table(table)).vacuum(hours)
            out["vacuumed"].append(table)
    log.info(f"maintain {day}: tag history before {cut} deleted {out['tag_snapshots_deleted']}, "
          f"{len(out['optimized'])} tables compacted, {len(out['vacuumed'])} vacuumed (retention {hours:.0f} h) "
          f"({time.time() - t0:.1f}s)")
    return out
