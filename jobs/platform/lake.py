"""Reading and writing the Delta tables named in ``schemas.TABLES``: every write replaces exactly its partitions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

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
    """The table's current Delta version."""
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, _path(paths, table)).history(1).select("version").first()[0])


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
