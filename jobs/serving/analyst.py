"""Analyst access with Spark SQL: every Delta table of the lake under its own name (``gold.customer_tags``).

    cpc sql "SELECT lc_stage, count(*) FROM gold.customer_tags WHERE snapshot_date = '2026-11-20' GROUP BY 1"
    cpc sql "SELECT count(*) FROM gold.cpc_offers VERSION AS OF 0"          # Delta time travel

Routes without Spark (deltalake with DuckDB or polars) are in docs/analysts.md.
"""

from __future__ import annotations

from jobs.platform import lake
from jobs.platform.config import Paths
from schemas import TABLES


def register(spark, paths: Paths) -> list[str]:
    """Create each existing table in the session catalogue (external, pointing at its Delta folder)."""
    names = []
    for name in TABLES:
        if not lake.exists(spark, paths, name):
            continue
        layer = name.split(".")[0]
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
        spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{paths.table(name)}'")
        names.append(name)
    return names


def query(spark, paths: Paths, sql: str, limit: int = 50):
    """Run a query; returns (column names, at most ``limit`` rows) for printing."""
    register(spark, paths)
    df = spark.sql(sql)
    return df.columns, df.limit(limit).collect()  # bounded by limit


def format_rows(columns: list[str], rows) -> str:
    cells = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(c), *[len(r[i]) for r in cells]]) for i, c in enumerate(columns)]
    line = " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    sep = "-+-".join("-" * w for w in widths)
    body = [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, sep, *body])
