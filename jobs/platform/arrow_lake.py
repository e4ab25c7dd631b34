"""The lake read without Spark: the ``deltalake`` package (delta-rs) reads a table's Delta log and its Parquet
files into Arrow, in the calling process, with no JVM to start.

For small reads: what a person waits for after a run (``cpc summary``: rows per table for a date, the funnel's
few rows, the evaluation's one row; with Spark it took 89 s in ``make run`` at 026a4a2, about 74 s of it the 31
tables' cold loads), and the nightly stages' lookups of a few rows or one number (docs/benchmarks.md, "Small reads
from the Delta log"), each of which cost a Spark job or more. Not for a table the same stage then writes with
Spark: a Spark read warms the Delta snapshot that write needs, so moving the read here moves its cost into the
write. Everything here reads the table's current version, as ``lake.read`` does; a table with deletion vectors or
column mapping is refused (docs/cluster.md).

The storage root is a local (or mounted) folder, as ``Paths`` makes it; a root on object storage would need
``deltalake``'s ``storage_options`` (its credentials), which Spark takes from the Hadoop configuration instead.
"""

from __future__ import annotations

import datetime as dt

from jobs.platform.config import Paths
from schemas import TABLES


def _table(paths: Paths, name: str):
    """The table's current version, or None when it does not exist (yet)."""
    from deltalake import DeltaTable

    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; declare it in schemas.TABLES")
    path = paths.table(name)
    return DeltaTable(path) if DeltaTable.is_deltatable(path) else None


def exists(paths: Paths, name: str) -> bool:
    return _table(paths, name) is not None


def delta_table(paths: Paths, name: str):
    """The table's current version (its log read, its files listed), a clear error when it does not exist."""
    found = _table(paths, name)
    if found is None:
        raise FileNotFoundError(f"Delta table {name} does not exist yet at {paths.table(name)}: run the job that writes it first")
    return found


def partitions(paths: Paths, name: str, columns: list[str]) -> set[tuple]:
    """The combinations of the partition columns ``columns`` (tuples in their order) that the table's current
    version holds rows in (empty: no table), from its log's add actions: a file's partition values count when its
    statistics give it rows, or give no count (a file written without statistics is taken as holding rows). A
    partition replaced by no rows has no file left, so it is not among them, as ``SELECT DISTINCT columns`` would
    not find it; a combination with a null value is left out too."""
    import pyarrow as pa

    table = _table(paths, name)
    if table is None:
        return set()
    actions = pa.table(table.get_add_actions(flatten=True))
    names = [f"partition.{c}" for c in columns]
    if any(n not in actions.column_names for n in names):  # no file at all (every row replaced by none)
        return set()
    values = list(zip(*(actions.column(n).to_pylist() for n in names), strict=True))
    counts = actions.column("num_records").to_pylist() if "num_records" in actions.column_names else [None] * len(values)
    return {v for v, n in zip(values, counts, strict=True) if None not in v and (n is None or n > 0)}


def partition_values(paths: Paths, name: str, column: str) -> set:
    """The values of the partition column ``column`` that the table's current version holds rows in
    (:func:`partitions` of that one column)."""
    return {v for (v,) in partitions(paths, name, [column])}


def date_column(name: str) -> str | None:
    """The date a table is partitioned by last (``delivery_date``, ``day``, ``snapshot_date``, ...), or None for
    an undated table (``gold.tag_catalogue``)."""
    spec = TABLES[name]
    return spec.partition_by[-1] if spec.partition_by else None


def _dataset(paths: Paths, name: str, prune=None, table=None):
    """The table's files as a ``pyarrow.dataset``; ``prune``: deltalake's tuple filters on partition columns
    (``[("snapshot_date", "=", "2026-11-20")]``), which leave the other partitions' files out while the log is
    replayed (without them every file of the table gets a fragment: 4.9 of the summary's 7.5 s on ``make run``'s
    lake)."""
    import pyarrow.fs as pafs

    table = table or delta_table(paths, name)
    # pyarrow's own local file system, rooted at the table: with deltalake's default (a Python file system) the
    # process often aborted at exit after reading rows ("terminate called without an active exception", exit code
    # 134: `cpc funnel` in 7 of 10 runs; delta-io/delta-rs#2184)
    local = pafs.SubTreeFileSystem(paths.table(name), pafs.LocalFileSystem())
    return table.to_pyarrow_dataset(file_pruning_predicate=prune, filesystem=local)


def _scope(name: str, day: dt.date | None) -> tuple[list[tuple] | None, object]:
    """``day``'s partition of a dated table: (deltalake's tuple filter that prunes the other dates' files while the
    log is replayed, the exact ``pyarrow.dataset`` filter of the rows); (None, None) for every date."""
    import pyarrow.dataset as ds

    column = date_column(name)
    if day is None or column is None:
        return None, None
    return [(column, "=", day.isoformat())], ds.field(column) == day


def rows(paths: Paths, name: str, day: dt.date | None = None) -> int | None:
    """The table's rows (of ``day`` where the table is dated and ``day`` is given), None when the table does not
    exist: exact, counted from the Parquet footers of the date's files (the Delta log's optional per-file
    statistics are not relied on)."""
    table = _table(paths, name)
    if table is None:
        return None
    prune, on_day = _scope(name, day)
    return _dataset(paths, name, prune, table).count_rows(filter=on_day)


def read(paths: Paths, name: str, columns: list[str] | None, day: dt.date | None = None, where=None) -> list[dict]:
    """The ``columns`` (None: every column of the table, in its schema's order, as a Spark row has them) of the
    rows of ``day`` (a dated table's partition; None: every date) matching ``where`` (a ``pyarrow.dataset``
    expression), as dicts. For small results only: everything comes to this process.

    The scan filters on the date only (a partition value: exact); ``where`` is applied to the rows in memory. In
    the scan pyarrow tests each file against bounds deltalake 1.6 builds from the Delta log's statistics, and a
    column with a null count but no minimum or maximum there (a boolean: Spark's Delta records none) gets the
    bounds ``>= null`` and ``<= null``: ``valid == true`` dropped every file of ``ops.tag_state_log``, rows that
    were true included (``tests/test_tags_fixed_costs.py``)."""
    prune, on_day = _scope(name, day)
    delta = delta_table(paths, name)
    columns = [f.name for f in delta.schema().fields] if columns is None else columns
    # without ``where`` the scan reads the asked columns only; with it, every column (``where`` may name others)
    table = _dataset(paths, name, prune, delta).to_table(columns=columns if where is None else None, filter=on_day)
    return (table if where is None else table.filter(where)).select(columns).to_pylist()


def distinct(paths: Paths, name: str, column: str, where=None, prune=None) -> list:
    """The sorted distinct values of ``column`` in the rows matching ``where`` (in the files ``prune`` keeps),
    gathered batch by batch (the rows never come to this process at once). ``where`` is applied in the scan: a
    comparison on a column the Delta log keeps no minimum or maximum for (a boolean) can drop rows there (see
    :func:`read`); a bare flag (``ds.field("converted")``) and the date partition are safe."""
    import pyarrow.compute as pc

    seen: set = set()
    for batch in _dataset(paths, name, prune).to_batches(columns=[column], filter=where):
        seen.update(pc.unique(batch.column(0)).to_pylist())
    seen.discard(None)
    return sorted(seen)
