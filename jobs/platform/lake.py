"""Reading and writing the Delta tables named in ``schemas.TABLES``: every write replaces exactly its partitions."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path

from jobs.platform import arrow_lake
from jobs.platform.config import Paths
from schemas import TABLES


def _path(paths: Paths, table: str) -> str:
    if table not in TABLES:
        raise KeyError(f"unknown table {table!r}; declare it in schemas.TABLES")
    return paths.table(table)


def exists(spark, paths: Paths, table: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, _path(paths, table))


def read(spark, paths: Paths, table: str, version: int | None = None):
    """The table as a DataFrame (at a Delta ``version`` when given); a clear error when it does not exist."""
    if not exists(spark, paths, table):
        raise FileNotFoundError(f"Delta table {table} does not exist yet at {_path(paths, table)}: run the job that writes it first")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", int(version))
    return reader.load(_path(paths, table))


def version(spark, paths: Paths, table: str) -> int:
    """The table's current Delta version (its latest commit), read from its log in this process
    (:func:`jobs.platform.arrow_lake.delta_table`, ``deltalake``): no Spark job. Asked through Spark (the table's
    history), each answer was a Spark job, 0.2 to 0.7 s in a warm session on the test operator, and a night asks
    some 25 times for versions and ids (the decision's inputs, the export's sources, the evaluation's versions and
    table ids). The storage root is a folder this process reads (``Paths``: ingest reads the landing files here
    too), so the logs are readable here on a cluster as well. ``spark`` is not used, kept so that every function
    here is called alike."""
    return int(arrow_lake.delta_table(paths, table).version())


def table_id(spark, paths: Paths, table: str) -> str:
    """The Delta table's id (its metadata's ``id``): another one once the table is deleted and written again.
    From the log without Spark, as :func:`version`."""
    return str(arrow_lake.delta_table(paths, table).metadata().id)


def last_commit_rows(spark, paths: Paths, table: str, predicate: str | None) -> int | None:
    """The rows the table's latest commit wrote, when that commit is the :func:`replace` just made with
    ``predicate`` (None: the whole table): Delta's ``operationMetrics.numOutputRows`` of the WRITE, read from
    the latest commit's ``commitInfo`` in the table's log, in this process (``deltalake``, as :func:`version`:
    no Spark job and no scan of the data; through Spark's ``DeltaTable.history`` it was a Spark query each).
    None when the latest commit is something else (another writer in between, an OPTIMIZE) or carries no
    metrics (``spark.databricks.delta.history.metricsEnabled`` off): the caller then counts the rows. ``spark``
    is not used, kept so that every function here is called alike."""
    latest = arrow_lake.delta_table(paths, table).history(1)
    if not latest:
        return None
    info = latest[0]
    return commit_rows(info.get("operation"), info.get("operationParameters"), info.get("operationMetrics"), predicate)


def written_rows(spark, paths: Paths, table: str, predicate: str | None) -> int:
    """The rows :func:`replace` just wrote to ``table`` under ``predicate``: the commit's count
    (:func:`last_commit_rows`, no scan), counted from the table only when the commit does not tell."""
    n = last_commit_rows(spark, paths, table, predicate)
    if n is None:
        df = read(spark, paths, table)
        n = (df if predicate is None else df.where(predicate)).count()
    return n


def commit_rows(operation: str | None, parameters: dict | None, metrics: dict | None, predicate: str | None) -> int | None:
    """:func:`last_commit_rows`' reading of one commit (pure): ``numOutputRows`` of a WRITE whose replaceWhere
    predicate (``operationParameters.predicate``, absent for a whole-table overwrite) is ``predicate``. For a
    replaceWhere on partition columns Delta counts the rows the commit wrote (not the rows it replaced:
    ``numDeletedRows``), which is the partition's row count after the write."""
    metrics = metrics or {}
    if operation != "WRITE" or (parameters or {}).get("predicate") != predicate:
        return None
    if metrics.get("numCopiedRows", "0") != "0":  # rows of partly replaced files copied: not this table's case
        return None
    value = metrics.get("numOutputRows")
    return None if value is None else int(value)


def last_partition_before(spark, paths: Paths, table: str, column: str, day: dt.date) -> dt.date | None:
    """The latest value of the date partition column ``column`` before ``day`` (None: none, or no table): the
    same answer as ``max(column) WHERE column < day`` over the whole table, read from the table's log in this
    process (:func:`jobs.platform.arrow_lake.partition_values`: the partitions of the files that hold rows), as
    :func:`version`: no Spark job. Through Spark it was two queries, each a Delta file listing and a job.
    ``spark`` is not used, kept so that every function here is called alike."""
    return max((v for v in arrow_lake.partition_values(paths, table, column) if v < day), default=None)


def in_dates(column: str, days: Iterable[dt.date]) -> str:
    days = sorted(set(days))
    if not days:
        raise ValueError("no dates given")
    return f"{column} IN ({', '.join(repr(d.isoformat()) for d in days)})"


def replace(df, paths: Paths, table: str, predicate: str | None, merge_schema: bool = False) -> None:
    """Overwrite exactly the rows matching ``predicate`` (Delta replaceWhere) in one atomic commit.

    ``predicate=None`` replaces the whole table (small reference tables such as the tag catalogue).
    A rerun with the same input therefore leaves the table as the first run did. ``merge_schema`` lets a
    write add columns (the wide tag table gains a column when a tag is added to the catalogue).
    """
    spec = TABLES[table]
    writer = df.write.format("delta").mode("overwrite")
    if spec.partition_by:
        writer = writer.partitionBy(*spec.partition_by)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if predicate:
        writer = writer.option("replaceWhere", predicate)
    else:
        writer = writer.option("overwriteSchema", "true")
    writer.save(_path(paths, table))


def append(df, paths: Paths, table: str) -> None:
    """Append rows (audit tables only: they record events, so a rerun adds its own rows)."""
    spec = TABLES[table]
    writer = df.write.format("delta").mode("append")
    if spec.partition_by:
        writer = writer.partitionBy(*spec.partition_by)
    writer.save(_path(paths, table))


NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # a null partition value in a file's path


def _partition_of(action: dict, partition: str) -> str | None:
    """The action's value of ``partition``, or None (no value, or a null one: a caller cannot name that day)."""
    value = (action.get("partitionValues") or {}).get(partition)
    if value:
        return value
    for part in str(action.get("path", "")).split("/"):  # a remove may leave out partitionValues: the path has it
        if part.startswith(f"{partition}="):
            value = part.split("=", 1)[1]
            return None if value == NULL_PARTITION else value
    return None


def days_rewritten(table_path: str | Path, after_version: int, partition: str = "day",
                   current_version: int | None = None) -> set[dt.date] | None:
    """The ``partition`` values of every file added or removed with a change of data (not a compaction:
    ``dataChange`` false) by the Delta commits after ``after_version`` (up to ``current_version`` when given),
    read from the table's ``_delta_log`` JSON commits. None when the log cannot tell: a commit file missing
    (cleaned up, or not yet in ``_delta_log``), a table older than the version (re-created), or a file without
    its partition; the caller then bootstraps."""
    log_dir = Path(table_path) / "_delta_log"
    versions = sorted(int(p.stem) for p in log_dir.glob("*.json") if p.stem.isdigit())
    if not versions or versions[-1] < max(after_version, current_version or 0):
        return None
    if current_version is not None:
        versions = [v for v in versions if v <= current_version]
    later = [v for v in versions if v > after_version]
    if later and later != list(range(after_version + 1, later[-1] + 1)):
        return None
    out: set[dt.date] = set()
    for v in later:
        for line in (log_dir / f"{v:020d}.json").read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            for kind in ("add", "remove"):
                change = action.get(kind)
                if not change or change.get("dataChange") is False:
                    continue
                value = _partition_of(change, partition)
                if value is None:
                    return None
                out.add(dt.date.fromisoformat(value))
    return out
