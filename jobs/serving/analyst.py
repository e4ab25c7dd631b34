"""Analyst access with Spark SQL: every Delta table of the lake under its own name (``gold.customer_tags``).

    cpc sql "SELECT lc_stage, count(*) FROM gold.customer_tags WHERE snapshot_date = '2026-11-20' GROUP BY 1"
    cpc sql "SELECT count(*) FROM gold.cpc_offers VERSION AS OF 0"          # Delta time travel

Routes without Spark (deltalake with DuckDB or polars) are in docs/analysts.md.
"""

from __future__ import annotations

from tabulate import tabulate

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
    """Rows as a plain-text table for the terminal (nulls shown empty)."""
    return tabulate([["" if v is None else v for v in r] for r in rows], headers=columns, tablefmt="simple", disable_numparse=True)
