"""Load: the ingest ledger (what came in and where it went, per file) and the closed days (the deliveries a
day's published lists were made from)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

from jobs.platform import lake
from jobs.platform.config import Paths
from jobs.stages.ingest.files import FileCheck
from schemas import LEDGER
from schemas.types import spark as spark_type

log = logging.getLogger(__name__)


def ledger_row(check: FileCheck, stats: dict, problem: str | None, validation: dict | None,
               status: str | None = None) -> dict:
    """The ledger row of one file: received = accepted + quarantined (the rows the quarantine holds);
    ``validation`` is the Great Expectations summary of the kind's run, recorded beside the files that were parsed
    (None when none was); ``rows_declared`` is what its control file says."""
    parsed = check.problem is None
    return {
        "kind": check.kind,
        "delivery_date": check.day,
        "file": check.name,
        "md5": check.md5,
        "status": status or ("rejected" if problem else "accepted"),
        "reason": problem,
        "rows_received": stats["received"],
        "rows_accepted": 0 if problem else stats["received"] - stats["bad"],
        "rows_quarantined": stats["received"] if problem else stats["bad"],
        "expectations_evaluated": (validation or {}).get("evaluated", 0) if parsed else 0,
        "expectations_failed": len((validation or {}).get("failed", [])) if parsed else 0,
        "validation": json.dumps(validation, default=str) if validation and parsed else None,
        "rows_declared": check.control_rows,
        "notes": "; ".join(check.notes) or None,
    }


@dataclass(frozen=True)
class Deliveries:
    """The accepted deliveries so far, read from the ledger once per ingest call (one row per file ingested:
    small next to the data, and growing by one row per file kind a day): what the MD5 check and the volume
    check need, for every kind, without a query per kind."""

    rows: tuple[tuple[str, dt.date, str, str | None, int], ...] = ()  # (kind, delivery date, file, md5, rows received)

    @classmethod
    def read(cls, spark, paths: Paths) -> Deliveries:
        from pyspark.sql import functions as F

        if not lake.exists(spark, paths, LEDGER.name):
            return cls()
        rows = (lake.read(spark, paths, LEDGER.name).where(F.col("status") == "accepted")
                .select("kind", "delivery_date", "file", "md5", "rows_received").collect())  # one row per file
        return cls(tuple(sorted((r["kind"], r["delivery_date"], r["file"], r["md5"], int(r["rows_received"] or 0))
                                for r in rows)))

    def by_md5(self) -> dict[str, tuple[str, dt.date]]:
        """MD5 -> (file, delivery date) of every file accepted so far: a file delivered again under a new name or
        date is recognised."""
        return {md5: (file, day) for _, day, file, md5, _ in self.rows if md5 is not None}

    def recent_volumes(self, kind: str, before: dt.date, n: int) -> list[int]:
        """Rows received by the kind's last ``n`` accepted deliveries before ``before``, oldest first."""
        mine = [(day, received) for k, day, _, _, received in self.rows if k == kind and day < before]
        return [received for _, received in sorted(mine)[-n:]] if n > 0 else []


def write_ledger(spark, paths: Paths, report, kinds: list[str], days: list[dt.date]) -> None:
    """Replace the ledger rows of the given kinds and dates with the report's (an ``IngestReport``)."""
    from pyspark.sql import types as T

    fields = [T.StructField(c.name, spark_type(c.type), True) for c in LEDGER.columns]
    df = spark.createDataFrame([tuple(r[c.name] for c in LEDGER.columns) for r in report.files], T.StructType(fields))
    kinds_sql = ", ".join(repr(k) for k in kinds)
    lake.replace(df, paths, LEDGER.name, f"kind IN ({kinds_sql}) AND {lake.in_dates('delivery_date', days)}", merge_schema=True)


def closed_deliveries(spark, paths: Paths, days: list[dt.date]) -> dict[tuple[str, dt.date], str]:
    """(kind, day) -> MD5 of the delivery the day's published lists were made from (``ops.closed_days``).
    A closed day takes the same delivery again (a rerun) but not a different one, until it is reopened."""
    if not lake.exists(spark, paths, "ops.closed_days"):
        return {}
    rows = lake.read(spark, paths, "ops.closed_days").where(lake.in_dates("run_date", days)).collect()  # one row per file
    return {(r["kind"], r["run_date"]): r["md5"] for r in rows}


def close_day(spark, paths: Paths, day: dt.date) -> None:
    """Record the deliveries a day's published lists were made from: the day is closed."""
    from pyspark.sql import functions as F

    accepted = (
        lake.read(spark, paths, LEDGER.name).where(F.col("delivery_date") == F.lit(day)).where("status = 'accepted'")
        .select(F.col("delivery_date").alias("run_date"), "kind", "md5")
    )
    lake.replace(accepted, paths, "ops.closed_days", f"run_date = '{day.isoformat()}'")


def reopen(spark, paths: Paths, day: dt.date) -> None:
    """Reopen a closed day so that a changed delivery is accepted; the day's lists are republished by its rerun.
    The lists already sent stay in ops.export_log and can be rebuilt (``cpc rebuild-list``)."""
    from delta.tables import DeltaTable

    if lake.exists(spark, paths, "ops.closed_days"):
        DeltaTable.forPath(spark, paths.table("ops.closed_days")).delete(f"run_date = '{day.isoformat()}'")
    log.info(f"reopen {day}: the day takes new deliveries; rerun it (`cpc nightly --date {day}`) to republish its lists")
