"""One type map: each contract type (a Spark SQL type name, as ``schemas`` writes it) in Spark, Arrow and DuckDB.

The ingest parses files with the Spark types, the simulator writes and the responder reads them with the Arrow
types, and the benchmark's DuckDB translation of the tag engine casts with the DuckDB types. pyarrow and
pyspark are imported only when asked for, so the contracts stay importable anywhere.
"""

from __future__ import annotations

# contract type -> (Spark SQL, DuckDB, pyarrow constructor name)
TYPE_MAP: dict[str, tuple[str, str, str]] = {
    "string": ("string", "VARCHAR", "string"),
    "int": ("int", "INTEGER", "int32"),
    "bigint": ("bigint", "BIGINT", "int64"),
    "double": ("double", "DOUBLE", "float64"),
    "boolean": ("boolean", "BOOLEAN", "bool_"),
    "date": ("date", "DATE", "date32"),
    "timestamp": ("timestamp", "TIMESTAMP", "timestamp"),
    # table columns only (never in a delivered file)
    "array<string>": ("array<string>", "VARCHAR[]", "string"),
    "array<double>": ("array<double>", "DOUBLE[]", "float64"),
}
TYPES = frozenset(TYPE_MAP)
DUCKDB: dict[str, str] = {k: v[1] for k, v in TYPE_MAP.items()}


def arrow(name: str):
    """The pyarrow type of a contract type (timestamps in seconds, as the operator's files carry them)."""
    import pyarrow as pa

    ctor = getattr(pa, TYPE_MAP[name][2])
    if name.startswith("array<"):
        return pa.list_(ctor())
    return ctor("s") if name == "timestamp" else ctor()


def spark(name: str):
    """The pyspark DataType of a contract type."""
    from pyspark.sql import types as T

    return T._parse_datatype_string(TYPE_MAP[name][0])
