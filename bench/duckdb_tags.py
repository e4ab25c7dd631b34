"""The tag engine in DuckDB: the same catalogue over the same Delta files, without Spark.

The single-machine alternative to ``jobs/stages/tags`` for the benchmark "tag computation in Spark vs DuckDB".
It reads the Delta tables with ``deltalake`` (Arrow datasets registered in DuckDB) and builds its SQL from
the catalogue objects, so a tag added to ``conf/tags.yaml`` changes both engines. Step for step:

- ``window_features`` = ``jobs.stages.tags.engine.window_features``: the window sums, day counts and days since, in one
  pass over the daily rows per slice of ``SLICE_CUSTOMERS`` customers;
- ``base_sql``      = ``profile_asof`` + ``state_asof`` + ``base_frame``: one row per customer open on the
  snapshot date with every column a tag may use (``msisdn_hash`` is left out: it is not a tag, and it needs
  the deployment's hashing key);
- ``layers_sql``, ``_tag`` = ``apply_tags``: one projection per dependency layer, every tag cast to its
  declared type with its default; then the quantile bands, cut at exact percentiles (``quantile_cont``,
  linear interpolation like Spark's ``percentile``) of the value rounded to ``BAND_DECIMALS`` places;
- ``_result``       = ``previous_snapshot`` + ``carry_forward``: ``empty: carry`` tags keep the value of the
  last snapshot before the date in ``gold.customer_tags`` when today's is null.

Tag expressions are Spark SQL; ``translate`` rewrites the few functions whose name or meaning differs in
DuckDB (see ``translate``) and refuses any other function, so a new Spark-only construct in the catalogue
fails here, naming the tag, rather than giving different values.

Window sums are added as whole ten-thousandths (``jobs.stages.tags.engine.SUM_SCALE``), as the Spark engine does: a sum
of doubles depends on the order of its terms (Spark's file splits and partial aggregates, DuckDB's threads),
and where a value sits on a rounding tie (46278.7 MB over 26 days = 1779.95 MB a day, rounded to one
decimal) or two sums are exactly equal (plan and voice fees both 57.90 for the largest spend component),
the last bit would decide the tag.

    .venv/bin/python bench/duckdb_tags.py --root var --date 2026-11-20 --compare --threads 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.platform.config import Paths  # noqa: E402
from jobs.platform.expressions import SQL_WORDS  # noqa: E402
from jobs.stages.tags.catalogue import (  # noqa: E402
    BAND_DECIMALS,
    Catalogue,
    Tag,
    categories,
    load_catalogue,
    product_categories,
)
from jobs.stages.tags.engine import SUM_SCALE  # noqa: E402
from schemas.types import DUCKDB  # noqa: E402

SOURCES = ("bronze.crm_profile", "bronze.complaints", "bronze.devices", "bronze.orders", "bronze.optouts",
           "silver.customer_day")
TAG_TABLE = "gold.customer_tags"

# Spark SQL type names -> DuckDB's (the project's one type map).
TYPES = DUCKDB
FRACTIONAL = ("DOUBLE", "FLOAT", "DECIMAL")
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------------
# Spark SQL -> DuckDB SQL
# ---------------------------------------------------------------------------------------------------------
class Untranslated(ValueError):
    """A tag expression uses Spark SQL this module does not translate to DuckDB."""


_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_LITERAL = re.compile(r"'[^'\\]*'")
_CAST_ARG = re.compile(r"(.*)\s+as\s+([A-Za-z]+)\s*", re.IGNORECASE | re.DOTALL)
_ALIASED = re.compile(r"(.*)\s+as\s+([A-Za-z_][A-Za-z0-9_]*)\s*", re.IGNORECASE | re.DOTALL)

# Same name and meaning in both.
SAME = {"coalesce", "year", "array_contains"}
# Same meaning, another name.
RENAMED = {"size": "len", "element_at": "list_extract", "array": "list_value", "array_join": "array_to_string"}


def spark_round(sql: str, decimals: int) -> str:
    """Spark's ``round`` of a double: HALF_UP on the value's shortest decimal form (``BigDecimal.valueOf``,
    i.e. ``Double.toString``), so round(2.675, 2) = 2.68. DuckDB's ``round`` scales in binary (2.675 * 100 = 267.4999...) and gives 2.67;
    the shortest form is DuckDB's VARCHAR of a double, and VARCHAR -> DECIMAL rounds half away from zero."""
    return (f"CASE WHEN isfinite({sql}) THEN CAST(CAST(CAST(CAST({sql} AS DOUBLE) AS VARCHAR) AS DECIMAL(38, {decimals})) "
            f"AS DOUBLE) ELSE {sql} END")


def spark_cast(sql: str, spark_type: str, source: str) -> str:
    """Spark's ``cast(sql as spark_type)`` for a value of DuckDB type ``source``: a fractional number cast to an
    integer type is truncated in Spark and rounded in DuckDB, so it is truncated first."""
    target = TYPES.get(spark_type.lower())
    if target is None:
        raise Untranslated(f"cast to {spark_type}")
    if target == "VARCHAR" and source.startswith(FRACTIONAL):
        raise Untranslated("cast of a fractional number to string (Spark writes 1.0E7 where DuckDB writes 10000000.0)")
    if target in ("INTEGER", "BIGINT") and source.startswith(FRACTIONAL):
        sql = f"trunc({sql})"
    return f"CAST({sql} AS {target})"


def _close(expr: str, start: int) -> int:
    """Index of the parenthesis closing the one at ``start``."""
    depth, i = 0, start
    while i < len(expr):
        if expr[i] == "'":
            i = _literal_end(expr, i)
            continue
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        if depth == 0:
            return i
        i += 1
    raise Untranslated(f"unbalanced parentheses in {expr!r}")


def _literal_end(expr: str, start: int) -> int:
    m = _LITERAL.match(expr, start)
    if not m or expr[m.end():m.end() + 1] == "'":
        raise Untranslated(f"string literal with escapes in {expr!r}")
    return m.end()


def _split(args: str) -> list[str]:
    """Top-level comma-separated arguments."""
    out, depth, start, i = [], 0, 0, 0
    while i < len(args):
        if args[i] == "'":
            i = _literal_end(args, i)
            continue
        if args[i] in "()":
            depth += 1 if args[i] == "(" else -1
        elif args[i] == "," and depth == 0:
            out.append(args[start:i])
            start = i + 1
        i += 1
    return [*out, args[start:]] if args.strip() else out


def translate(expr: str, type_of: Callable[[str], str]) -> str:
    """A Spark SQL expression as DuckDB SQL. ``type_of`` gives the DuckDB type of a DuckDB expression over
    the columns in scope (casts need it). Operators, CASE, IN, BETWEEN, IS NULL, literals and these functions
    pass unchanged: ``coalesce``, ``year``, ``array_contains``. Rewritten:

    - ``datediff(end, start)`` (days from start to end) -> ``end - start`` on dates;
    - ``floor(x)``: BIGINT in Spark, DOUBLE in DuckDB -> ``CAST(floor(x) AS BIGINT)``;
    - ``round(x, d)`` -> ``spark_round`` (HALF_UP on the decimal form, see there);
    - ``cast(x as t)`` -> ``spark_cast`` (Spark's type names; truncation to integers);
    - ``size`` -> ``len``, ``element_at`` (arrays) -> ``list_extract``, ``array`` -> ``list_value``,
      ``array_join`` -> ``array_to_string``, ``array_sort(a)`` -> ``list_sort(a, 'ASC', 'NULLS LAST')``;
    - ``struct(x as a, ...)`` -> ``struct_pack(a := x, ...)`` (``.a`` field access is the same);
    - ``concat(a, b)``: null if any argument is null in Spark, DuckDB's skips nulls -> ``(a || b)``.
    """
    out: list[str] = []
    i = 0
    while i < len(expr):
        if expr[i] == "'":
            end = _literal_end(expr, i)
            out.append(expr[i:end])
            i = end
            continue
        m = _CALL.match(expr, i)
        if not m or (i > 0 and (expr[i - 1].isalnum() or expr[i - 1] in "_.")):
            out.append(expr[i])
            i += 1
            continue
        name = m.group(1).lower()
        if name in SQL_WORDS:  # "in (", "and (", ...: a keyword before a parenthesis
            out.append(m.group(1))
            i += len(m.group(1))
            continue
        close = _close(expr, m.end() - 1)
        out.append(_call(name, _split(expr[m.end():close]), type_of))
        i = close + 1
    return "".join(out)


def _call(name: str, raw: list[str], type_of: Callable[[str], str]) -> str:
    def sub(arg: str) -> str:
        return translate(arg, type_of)

    if name == "cast":
        m = _CAST_ARG.fullmatch(raw[0]) if len(raw) == 1 else None
        if not m:
            raise Untranslated(f"cast({', '.join(raw)})")
        inner = sub(m.group(1))
        return spark_cast(inner, m.group(2), type_of(inner))
    if name == "struct":
        fields = [_ALIASED.fullmatch(a) for a in raw]
        if not all(fields):
            raise Untranslated("struct() fields without 'as <name>'")
        return "struct_pack(" + ", ".join(f"{f.group(2)} := {sub(f.group(1))}" for f in fields) + ")"
    args = [sub(a) for a in raw]
    if name in SAME:
        return f"{name}({', '.join(args)})"
    if name in RENAMED:
        return f"{RENAMED[name]}({', '.join(args)})"
    if name == "datediff" and len(args) == 2:
        return f"(CAST({args[0]} AS DATE) - CAST({args[1]} AS DATE))"
    if name == "floor" and len(args) == 1:
        return f"CAST(floor({args[0]}) AS BIGINT)"
    if name == "round" and len(args) in (1, 2):
        decimals = raw[1].strip() if len(raw) == 2 else "0"
        if not decimals.isdigit():
            raise Untranslated(f"round() to {decimals!r} places (a non-negative integer literal is translated)")
        return spark_round(args[0], int(decimals))
    if name == "array_sort" and len(args) == 1:
        return f"list_sort({args[0]}, 'ASC', 'NULLS LAST')"
    if name == "concat":
        return "(" + " || ".join(args) + ")"
    raise Untranslated(f"function {name}() with {len(args)} argument(s)")


def _double(x: float) -> str:
    """A float as an exact DuckDB DOUBLE literal (a plain 0.1 would be a DECIMAL)."""
    return f"CAST('{x!r}' AS DOUBLE)"


# ---------------------------------------------------------------------------------------------------------
# The base frame: jobs.stages.tags.engine.profile_asof, window_features, state_asof, base_frame
# ---------------------------------------------------------------------------------------------------------
def _view(table: str) -> str:
    return table.replace(".", "_")


def features_sql(day: dt.date, cat: Catalogue, part: tuple[int, int] | None = None) -> str:
    """``window_features``: one row per customer with a row in ``silver.customer_day`` in the longest window
    and every window feature of ``cat``; ``part`` (k, n): only the customers whose id hashes to k of n."""
    d = f"DATE '{day.isoformat()}'"
    longest = max(b for _, b in cat.windows.values())
    aggs = []
    for name, (kind, measure, window) in cat.features.items():
        a, b = cat.windows[window]
        if kind == "sum":
            units = f"CAST(round({measure} * {SUM_SCALE}) AS BIGINT)"
            aggs.append(f"CAST(sum(CASE WHEN _ago BETWEEN {a} AND {b} THEN {units} ELSE 0 END) AS DOUBLE) / {SUM_SCALE} AS {name}")
        elif kind == "days_with":
            aggs.append(f"CAST(sum(CASE WHEN _ago BETWEEN {a} AND {b} AND {measure} > 0 THEN 1 ELSE 0 END) AS INTEGER) AS {name}")
        else:  # days_since
            aggs.append(f"CAST(min(CASE WHEN {measure} > 0 THEN _ago END) AS INTEGER) AS {name}")
    aggs.append("CAST(arg_max_null(balance, day) AS DOUBLE) AS balance")  # Spark's max_by keeps a null balance
    only = f"hash(customer_id) % {part[1]} = {part[0]} AND " if part else ""
    return f"""
SELECT customer_id, {", ".join(aggs)}
FROM (SELECT *, {d} - day AS _ago FROM {_view("silver.customer_day")}
      WHERE {only}day <= {d} AND day >= DATE '{(day - dt.timedelta(days=longest)).isoformat()}')
GROUP BY customer_id
"""


# Customers per pass of the window features. Their aggregation holds some 200 running sums per customer; in one
# pass over 1,000,000 customers (90 days, 6 GB cap, 2 threads) DuckDB spilled 61 GB in 150 s and had not
# finished, while a pass over 250,000 of them took 36 s in 5 GB without spilling (500,000: 60 GB of spill).
SLICE_CUSTOMERS = int(os.environ.get("CPC_DUCKDB_SLICE_CUSTOMERS", "200000"))


def window_features(con: duckdb.DuckDBPyConnection, day: dt.date, cat: Catalogue) -> None:
    """Table ``features`` (``features_sql``), built in one pass over the daily rows per ``SLICE_CUSTOMERS``
    customers with a row on ``day``, each pass for one hash slice of the customers."""
    n = con.execute(f"SELECT count(*) FROM {_view('silver.customer_day')} "
                    f"WHERE day = DATE '{day.isoformat()}'").fetchall()[0][0]
    parts = max(1, -(-n // SLICE_CUSTOMERS))
    t0 = time.time()
    for k in range(parts):
        sql = features_sql(day, cat, (k, parts) if parts > 1 else None)
        con.execute(f"CREATE TEMP TABLE features AS {sql}" if k == 0 else f"INSERT INTO features {sql}")
        if parts > 1:
            print(f"duckdb window features: pass {k + 1}/{parts} done in {time.time() - t0:.1f} s", flush=True)


def base_sql(day: dt.date, cat: Catalogue) -> str:
    """One row per customer open on ``day`` with every base column of ``cat`` (``Catalogue.base_columns``),
    joining table ``features`` (``window_features``)."""
    d = f"DATE '{day.isoformat()}'"
    category = "CASE product_id " + " ".join(f"WHEN '{p}' THEN '{c}'" for p, c in product_categories().items()) + " END"
    held = "".join(f", CAST(sum(CAST(_cat = '{c}' AS INTEGER)) AS INTEGER) AS {c}_held" for c in categories())
    fills = [name for name, (kind, _, _) in cat.features.items() if kind != "days_since"]
    fills += ["open_complaints", "held_vas", "device_changes_365d", *[f"{c}_held" for c in categories()]]
    return f"""
WITH profile AS (
    SELECT * EXCLUDE (msisdn, delivery_date, _source_file, record_date)
    FROM {_view("bronze.crm_profile")} WHERE delivery_date <= {d}
    QUALIFY row_number() OVER (PARTITION BY customer_id
                               ORDER BY record_date DESC NULLS LAST, delivery_date DESC NULLS LAST) = 1
), complaints AS (
    SELECT customer_id, CAST(sum(1 - closed) AS INTEGER) AS open_complaints
    FROM (SELECT customer_id, complaint_id, max(CASE WHEN event = 'closed' THEN 1 ELSE 0 END) AS closed
          FROM {_view("bronze.complaints")} WHERE delivery_date <= {d} GROUP BY customer_id, complaint_id)
    GROUP BY customer_id
), devices AS (
    SELECT customer_id,
           arg_max_null(brand, change_date) AS device_brand, arg_max_null(network_gen, change_date) AS device_gen,
           arg_max_null(price, change_date) AS device_price, arg_max_null(is_smartphone, change_date) AS device_is_smart,
           arg_max_null(coalesce(first_seen_date, change_date), change_date) AS device_since,
           arg_max_null(handsets_24m, change_date) AS device_handsets_24m,
           CAST(sum(CASE WHEN change_date > DATE '{(day - dt.timedelta(days=365)).isoformat()}' THEN 1 ELSE 0 END)
                AS INTEGER) AS device_changes_365d
    FROM {_view("bronze.devices")} WHERE delivery_date <= {d}
    GROUP BY customer_id
), holdings AS (
    SELECT customer_id,
           list_sort(list(product_id) FILTER (WHERE product_id IS NOT NULL), 'ASC', 'NULLS LAST') AS held_products,
           CAST(sum(CAST(_cat IN ('vas', 'games') AS INTEGER)) AS INTEGER) AS held_vas{held}
    FROM (SELECT *, {category} AS _cat FROM {_view("bronze.orders")} WHERE delivery_date <= {d}
          QUALIFY row_number() OVER (PARTITION BY customer_id, product_id
                                     ORDER BY order_ts DESC NULLS LAST, order_id DESC NULLS LAST) = 1)
    WHERE action IN ('order', 'trial_start', 'trial_convert')
    GROUP BY customer_id
), optouts AS (
    SELECT customer_id, list_sort(list(channel) FILTER (WHERE channel IS NOT NULL), 'ASC', 'NULLS LAST') AS optouts
    FROM (SELECT * FROM {_view("bronze.optouts")} WHERE delivery_date <= {d}
          QUALIFY row_number() OVER (PARTITION BY customer_id, channel ORDER BY event_ts DESC NULLS LAST) = 1)
    WHERE action = 'opt_out'
    GROUP BY customer_id
)
SELECT * REPLACE ({", ".join(f"coalesce({c}, 0) AS {c}" for c in fills)},
                  coalesce(held_products, []::VARCHAR[]) AS held_products, coalesce(optouts, []::VARCHAR[]) AS optouts),
       {d} AS snapshot_date
FROM profile
LEFT JOIN features USING (customer_id) LEFT JOIN complaints USING (customer_id) LEFT JOIN devices USING (customer_id)
LEFT JOIN holdings USING (customer_id) LEFT JOIN optouts USING (customer_id)
WHERE status != 'closed' AND activation_date <= {d}
"""


# ---------------------------------------------------------------------------------------------------------
# Tags: jobs.tags.apply_tags, quantile_band, carry_forward
# ---------------------------------------------------------------------------------------------------------
def tag_sql(t: Tag, type_of: Callable[[str], str]) -> str:
    """The tag's column as apply_tags builds it: ``cast(expr as type)``, then its default when null."""
    col = f"cast(({t.expr}) as {t.type})"
    if t.default is not None:
        col = f"coalesce({col}, cast('{t.default}' as {t.type}))"
    try:
        return translate(col, type_of)
    except Untranslated as exc:
        raise Untranslated(f"tag {t.id}: {exc}") from exc


def quantile_band(col: str, cuts: list[float]) -> str:
    """'Q1' (lowest) .. 'Qn' from ascending cut points, ``col <= cut``; null stays null."""
    whens = " ".join(f"WHEN {col} <= {_double(c)} THEN 'Q{i}'" for i, c in enumerate(cuts, 1))
    return f"CASE WHEN {col} IS NULL THEN NULL {whens} ELSE 'Q{len(cuts) + 1}' END"


def layers_sql(con: duckdb.DuckDBPyConnection, base: str, cat: Catalogue) -> str:
    """A query adding every tag but the quantile bands to the ``base`` query: one projection per dependency
    layer, like ``apply_tags``. Casts need the types of what they cast; they are bound on an empty table of the
    same columns, as ``check_types`` analyses the expressions on an empty frame."""
    con.execute(f"CREATE TEMP TABLE probe AS SELECT * FROM ({base}) LIMIT 0")

    def type_of(sql: str) -> str:
        return str(con.table("probe").project(sql).types[0])

    sql = base
    for layer in cat.layers:
        cols = ", ".join(f"{tag_sql(t, type_of)} AS {t.id}" for t in layer if t.kind != "quantile_band")
        if cols:
            sql = f"SELECT *, {cols} FROM ({sql})"
            con.execute(f"CREATE OR REPLACE TEMP TABLE probe AS SELECT *, {cols} FROM probe")
    con.execute("DROP TABLE probe")
    return sql


def _tag(con: duckdb.DuckDBPyConnection, base: str, cat: Catalogue) -> dict[str, str]:
    """Table ``tagged`` (customer_id, snapshot_date and every tag but the quantile bands), and every tag's
    column over it in catalogue order: its name, or for a quantile band the band of its value. The cut points
    come from one aggregation over the table (held, as ``apply_tags`` caches the frame) and go into the query
    as literals."""
    bands = [t for t in cat.tags if t.kind == "quantile_band"]
    unbanded = ", ".join(t.id for t in cat.tags if t.kind != "quantile_band")
    con.execute(f"CREATE TEMP TABLE tagged AS SELECT customer_id, snapshot_date, {unbanded} FROM ({layers_sql(con, base, cat)})")
    cols = {tid: tid for tid in cat.ids}
    if bands:
        value = {t.id: spark_round(f"CAST({t.band_of} AS DOUBLE)", BAND_DECIMALS) for t in bands}
        probs = {t.id: f"[{', '.join(_double(i / t.bands) for i in range(1, t.bands))}]" for t in bands}
        cuts = con.execute("SELECT " + ", ".join(f"quantile_cont({value[t.id]}, {probs[t.id]})" for t in bands)
                           + " FROM tagged").fetchall()[0]
        cols.update({t.id: quantile_band(t.band_of, list(c or [])) for t, c in zip(bands, cuts, strict=True)})
    return cols


def _previous(con: duckdb.DuckDBPyConnection, paths: Paths, day: dt.date) -> dt.date | None:
    """The tag table's last snapshot date before ``day`` (registered as a view when there is one)."""
    try:
        table = DeltaTable(paths.table(TAG_TABLE))
    except TableNotFoundError:
        return None
    con.register(_view(TAG_TABLE), table.to_pyarrow_dataset())
    return con.execute(f"SELECT max(snapshot_date) FROM {_view(TAG_TABLE)} "
                       f"WHERE snapshot_date < DATE '{day.isoformat()}'").fetchall()[0][0]


def _result(con: duckdb.DuckDBPyConnection, paths: Paths, day: dt.date, cat: Catalogue, cols: dict[str, str],
            carry: bool) -> duckdb.DuckDBPyRelation:
    """customer_id, snapshot_date and the tags, ``empty: carry`` tags carried forward when ``carry``."""
    kept = [t.id for t in cat.tags if t.empty == "carry"] if carry else []
    prev = _previous(con, paths, day) if kept else None
    if prev is None:
        kept = []
    select = ", ".join(f"coalesce({sql}, _prev_{c}) AS {c}" if c in kept else f"{sql} AS {c}" for c, sql in cols.items())
    join = (f" LEFT JOIN (SELECT customer_id, {', '.join(f'{c} AS _prev_{c}' for c in kept)} FROM {_view(TAG_TABLE)} "
            f"WHERE snapshot_date = DATE '{prev.isoformat()}') USING (customer_id)") if kept else ""
    return con.sql(f"SELECT customer_id, snapshot_date, {select} FROM tagged{join}")


# Uncapped (80% of the machine), beside the Spark driver and the Arrow scans DuckDB does not count, a
# 1,000,000-customer run reached 19 GB resident and was killed by the kernel (see ``capped``).
MEMORY_LIMIT = os.environ.get("CPC_DUCKDB_MEMORY_LIMIT", "6GB")
# What it may spill; past it a query fails with DuckDB's "Out of Memory" error instead of filling the disk.
SPILL_LIMIT = os.environ.get("CPC_DUCKDB_SPILL_LIMIT", "20GB")


def capped(spill: Path, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection held to ``MEMORY_LIMIT`` that spills up to ``SPILL_LIMIT`` under ``spill``: it
    shares the machine with the Spark driver, and DuckDB's own default (80% of the memory) would not leave
    room for both."""
    spill.mkdir(parents=True, exist_ok=True)
    config = {"memory_limit": MEMORY_LIMIT, "temp_directory": str(spill), "max_temp_directory_size": SPILL_LIMIT,
              "preserve_insertion_order": False}
    return duckdb.connect(config={**config, "threads": threads} if threads else config)


def _connect(paths: Paths, threads: int | None) -> duckdb.DuckDBPyConnection:
    con = capped(paths.root / "work" / "duckdb", threads)
    con.execute("SET enable_progress_bar = false")
    for table in SOURCES:
        con.register(_view(table), DeltaTable(paths.table(table)).to_pyarrow_dataset())
    return con


def _run(root: Path, day: dt.date, cat: Catalogue | None, threads: int | None, carry: bool,
         finish: Callable[[duckdb.DuckDBPyRelation], T]) -> tuple[T, float]:
    t0 = time.time()
    cat = cat or load_catalogue()
    paths = Paths(Path(root))
    con = _connect(paths, threads)
    try:
        window_features(con, day, cat)
        out = finish(_result(con, paths, day, cat, _tag(con, base_sql(day, cat), cat), carry))
    finally:
        con.close()
    return out, time.time() - t0


def compute(root: Path, day: dt.date, cat: Catalogue | None = None, threads: int | None = 2,
            carry: bool = True) -> tuple[pa.Table, float]:
    """``gold.customer_tags`` for ``day`` as an Arrow table (without ``msisdn_hash``) and the seconds it took,
    reading the Delta tables under ``root``. ``threads`` None: DuckDB's default (every core)."""
    return _run(root, day, cat, threads, carry, lambda rel: rel.to_arrow_table())


def to_parquet(root: Path, day: dt.date, out: Path, cat: Catalogue | None = None, threads: int | None = None,
               carry: bool = False) -> float:
    """Seconds to compute the tags and write them to one Parquet file: the DuckDB leg of
    ``bench/tag_alternatives.py``, whose Spark leg is ``apply_tags(base_frame(...))`` (no carry-forward)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return _run(root, day, cat, threads, carry, lambda rel: rel.write_parquet(str(out)))[1]


# ---------------------------------------------------------------------------------------------------------
# Check against the Spark engine's table
# ---------------------------------------------------------------------------------------------------------
def compare(root: Path, day: dt.date, cat: Catalogue | None = None, threads: int | None = 2) -> dict:
    """Compute ``day`` with DuckDB and compare with ``gold.customer_tags`` of that date: customers on one
    side only, and per tag the customers whose values differ (doubles within 1e-9 relative or absolute,
    null equals null)."""
    cat = cat or load_catalogue()
    duck, seconds = compute(root, day, cat, threads)
    con = capped(Path(root) / "work" / "duckdb", threads)
    con.register("spark_all", DeltaTable(Paths(Path(root)).table(TAG_TABLE)).to_pyarrow_dataset())
    con.register("duck", duck)
    con.execute(f"CREATE TEMP TABLE spark AS SELECT * FROM spark_all WHERE snapshot_date = DATE '{day.isoformat()}'")

    out = diff(con, cat, "duck", "spark")
    con.close()
    return {"date": day.isoformat(), "seconds": round(seconds, 2), "rows": duck.num_rows, **out}


def diff(con: duckdb.DuckDBPyConnection, cat: Catalogue, duck: str, spark: str) -> dict:
    """Two tag tables (relations known to ``con``) keyed by customer: customers on one side only, and per
    tag the customers whose values differ (doubles within 1e-9 relative or absolute, null equals null)."""

    def differs(t: Tag) -> str:
        a, b = f"d.{t.id}", f"s.{t.id}"
        if t.type == "double":
            return (f"CASE WHEN {a} IS NULL OR {b} IS NULL THEN ({a} IS NULL) != ({b} IS NULL) "
                    f"ELSE abs({a} - {b}) > greatest(1e-9, 1e-9 * greatest(abs({a}), abs({b}))) END")
        return f"{a} IS DISTINCT FROM {b}"

    row = con.execute("SELECT count(*), " + ", ".join(f"count(*) FILTER (WHERE {differs(t)})" for t in cat.tags)
                      + f" FROM {duck} d JOIN {spark} s USING (customer_id)").fetchall()[0]
    only = con.execute("SELECT count(*) FILTER (WHERE s.customer_id IS NULL), count(*) FILTER (WHERE d.customer_id IS NULL) "
                       f"FROM {duck} d FULL JOIN {spark} s USING (customer_id)").fetchall()[0]
    return {
        "tags": len(cat.tags), "matched": row[0], "only_duckdb": only[0], "only_spark": only[1],
        "differing": {t.id: n for t, n in zip(cat.tags, row[1:], strict=True) if n},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="var", help="storage root (the lake is <root>/lake)")
    ap.add_argument("--date", required=True, help="snapshot date, YYYY-MM-DD")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (0: every core)")
    ap.add_argument("--compare", action="store_true", help="compare with gold.customer_tags of the date")
    args = ap.parse_args(argv)
    day, root = dt.date.fromisoformat(args.date), Path(args.root)
    if args.compare:
        r = compare(root, day, threads=args.threads or None)
        print(f"DuckDB tags {r['date']}: {r['seconds']:.2f}s, {r['rows']} rows, {r['tags']} tags")
        print(f"against {TAG_TABLE}: {r['matched']} customers on both sides, {r['only_duckdb']} only in DuckDB, "
              f"{r['only_spark']} only in Spark; {len(r['differing'])} tag(s) differ")
        for tag, n in r["differing"].items():
            print(f"  {tag}: {n} customer(s)")
        return 0 if not (r["differing"] or r["only_duckdb"] or r["only_spark"]) else 1
    table, seconds = compute(root, day, threads=args.threads or None)
    print(f"DuckDB tags {day}: {seconds:.2f}s, {table.num_rows} rows, {table.num_columns - 2} tags")
    return 0


if __name__ == "__main__":
    sys.exit(main())
