"""Incremental window state for the tag engine (issue 21, item 1): a reference in DuckDB, checked bit for bit
against the full recompute of the window features. Design: docs/incremental-tags.md.

The full recompute (``jobs.stages.tags.engine.window_features``, and ``bench/duckdb_tags.py``'s
``features_sql``, imported here unchanged) reads every daily row of the last 90 days. The incremental step for
day D reads yesterday's state and the daily rows of four days only: D (entering every window), D-7 (leaving
7d), D-30 (leaving 30d) and D-90 (leaving 90d). Per customer the state holds:

- ``u_<measure>_<a>_<b>``: the sum over days a..b before D in whole ``SUM_SCALE`` units (BIGINT), for the
  windows that start today (7d, 30d, 90d); ``prev23d`` (days 7..29) is ``30d - 7d`` in units, not stored;
- ``n_<measure>_<a>_<b>``: days with the measure above zero (INTEGER), the same windows;
- ``seen_<measure>``: the last date the measure was above zero (DATE), for ``days_since``;
- ``last_day``, ``balance``: the date of the customer's last daily row and its balance (``max_by(balance, day)``).

A customer whose ``last_day`` falls out of the longest window leaves the state (every sum of such a row is
zero: checked at each step). Sums in units are integers, so adding today and subtracting the day leaving is
exact and the features are the same doubles as the full recompute's (``CAST(units AS DOUBLE) / SUM_SCALE``).
``--doubles`` also runs the naive state (sums of the raw doubles, add today, subtract the day leaving) to show
by how much that drifts.

What the run shows, from an empty state before the first daily row (a backfill that builds the state as it
goes):

1. every day: the features from the state against ``features_sql`` (the full recompute), every feature and
   every customer, compared bit for bit (doubles by their IEEE bits, nulls as nulls); the customers on each side;
2. on a few days: the state itself against the state rebuilt from the history (``state_full_sql``);
3. on a few days: all tags of the catalogue computed by ``bench/duckdb_tags.py`` from the incremental features
   against the same from the full recompute (``--tags``);
4. invalidation (``--rerun``): a day X of the history is changed (as a late file or a rerun would), then the
   state is either carried on from the stale state (differs) or rebuilt forward from the state of X-1 (equal);
5. time per incremental step against the full recompute of the features, in DuckDB, same data in memory.

    /work/main/.venv/bin/python bench/incremental_reference.py --lake /work/fresh/var/lake --threads 1 \\
        --doubles --tags --rerun --out bench/results/incremental_reference.json

Nothing is written to the lake: it is read with ``deltalake`` (the files of its current version only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import duckdb_tags  # noqa: E402  (bench/duckdb_tags.py: the full recompute in DuckDB)

from jobs.stages.tags.catalogue import Catalogue, load_catalogue  # noqa: E402
from jobs.stages.tags.engine import SUM_SCALE  # noqa: E402

DAILY = "silver_customer_day"  # the view duckdb_tags.features_sql reads


# ---------------------------------------------------------------------------------------------------------
# The state's layout, derived from the catalogue
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """Which columns the state holds for a catalogue, and how each window feature is read from them."""

    longest: int  # the longest window's last day before D (89): rows older than D - longest are out
    stored: list[tuple[str, str, tuple[int, int]]] = field(default_factory=list)  # (sum|days_with, measure, (a, b))
    since: list[str] = field(default_factory=list)  # measures with a days_since feature
    read: dict[str, tuple[str, str]] = field(default_factory=dict)  # feature -> (kind, SQL over the state; {D}: the day)

    @staticmethod
    def col(kind: str, measure: str, w: tuple[int, int]) -> str:
        return f"{'u' if kind == 'sum' else 'n'}_{measure}_{w[0]}_{w[1]}"

    def offsets(self) -> list[int]:
        """Days before D whose daily rows the step reads: D itself, and where each stored window is entered
        (a, for a window not starting today) or left (b + 1)."""
        out = {0}
        for _, _, (a, b) in self.stored:
            out |= {a, b + 1}
        return sorted(out)


def plan_of(cat: Catalogue) -> Plan:
    longest = max(b for _, b in cat.windows.values())
    plan = Plan(longest=longest)
    wins = {(k, m, cat.windows[w]) for _, (k, m, w) in cat.features.items() if k != "days_since"}
    starting = {x for x in wins if x[2][0] == 0}
    stored = set(starting)
    for k, m, (a, b) in sorted(wins - starting):  # a later window: the difference of two stored ones, or stored
        if (k, m, (0, b)) in starting and (k, m, (0, a - 1)) in starting:
            continue
        stored.add((k, m, (a, b)))
    plan.stored = sorted(stored, key=lambda x: (x[0], x[1], x[2]))
    for name, (kind, m, w) in cat.features.items():
        a, b = cat.windows[w]
        if kind == "days_since":
            plan.since.append(m)
            plan.read[name] = (kind, f"CAST(CASE WHEN seen_{m} >= {{D}} - {longest} THEN {{D}} - seen_{m} END AS INTEGER)")
            continue
        if (kind, m, (a, b)) in stored:
            expr = Plan.col(kind, m, (a, b))
        else:
            expr = f"({Plan.col(kind, m, (0, b))} - {Plan.col(kind, m, (0, a - 1))})"
        plan.read[name] = (kind, expr)
    return plan


def units(measure: str) -> str:
    """A daily value in whole 1/SUM_SCALE units: the very expression of duckdb_tags.features_sql."""
    return f"CAST(round({measure} * {SUM_SCALE}) AS BIGINT)"


def _date(d: dt.date) -> str:
    return f"DATE '{d.isoformat()}'"


# ---------------------------------------------------------------------------------------------------------
# SQL: the step, the features from a state, the state from the history
# ---------------------------------------------------------------------------------------------------------
def delta_sql(plan: Plan, day: dt.date, doubles: bool = False) -> str:
    """Per customer with a row on one of the days the step reads: what enters and leaves each stored window,
    whether each days_since measure is positive today, and today's row (its presence and balance)."""
    aggs = []
    for kind, m, (a, b) in plan.stored:
        if kind == "sum":
            v = f"CAST({m} AS DOUBLE)" if doubles else units(m)
            zero = "CAST(0 AS DOUBLE)" if doubles else "0"
            aggs.append(f"sum(CASE WHEN _ago = {a} THEN {v} WHEN _ago = {b + 1} THEN -{v} ELSE {zero} END) "
                        f"AS {Plan.col(kind, m, (a, b))}")
        else:
            aggs.append(f"sum(CASE WHEN {m} > 0 AND _ago = {a} THEN 1 WHEN {m} > 0 AND _ago = {b + 1} THEN -1 ELSE 0 END) "
                        f"AS {Plan.col(kind, m, (a, b))}")
    aggs += [f"bool_or(_ago = 0 AND {m} > 0) AS p_{m}" for m in plan.since]
    aggs += ["bool_or(_ago = 0) AS today", "first(balance) FILTER (WHERE _ago = 0) AS balance"]
    days = ", ".join(_date(day - dt.timedelta(days=k)) for k in plan.offsets())
    return (f"SELECT customer_id, {', '.join(aggs)} FROM (SELECT *, {_date(day)} - day AS _ago FROM {DAILY} "
            f"WHERE day IN ({days})) GROUP BY customer_id")


def step_sql(plan: Plan, state: str, delta: str, day: dt.date, doubles: bool = False) -> str:
    """Yesterday's state + the day's delta -> today's state (customers whose last row left the longest window
    are dropped)."""
    cols = []
    for kind, m, w in plan.stored:
        c = Plan.col(kind, m, w)
        typ = "DOUBLE" if (doubles and kind == "sum") else ("BIGINT" if kind == "sum" else "INTEGER")
        zero = "0.0" if typ == "DOUBLE" else "0"
        cols.append(f"CAST(coalesce(s.{c}, {zero}) + coalesce(d.{c}, {zero}) AS {typ}) AS {c}")
    cut = _date(day - dt.timedelta(days=plan.longest))  # a date out of the longest window is forgotten (null)
    cols += [f"CASE WHEN d.p_{m} THEN {_date(day)} WHEN s.seen_{m} >= {cut} THEN s.seen_{m} END AS seen_{m}"
             for m in plan.since]
    cols += [f"CASE WHEN d.today THEN {_date(day)} ELSE s.last_day END AS last_day",
             "CASE WHEN d.today THEN d.balance ELSE s.balance END AS balance"]
    return (f"SELECT * FROM (SELECT coalesce(s.customer_id, d.customer_id) AS customer_id, {', '.join(cols)} "
            f"FROM {state} s FULL JOIN {delta} d ON s.customer_id = d.customer_id) "
            f"WHERE last_day >= {_date(day - dt.timedelta(days=plan.longest))}")


def read_sql(kind: str, expr: str, day: dt.date, doubles: bool = False) -> str:
    """A feature's value from the state: a sum as the same double the full recompute gives
    (``CAST(units AS DOUBLE) / SUM_SCALE``), a day count as an integer, days since from the last-seen date."""
    if kind == "sum":
        return expr if doubles else f"CAST({expr} AS DOUBLE) / {SUM_SCALE}"
    if kind == "days_with":
        return f"CAST({expr} AS INTEGER)"
    return expr.replace("{D}", _date(day))


def features_from_state_sql(cat: Catalogue, plan: Plan, state: str, day: dt.date, doubles: bool = False) -> str:
    """The window features of ``day`` read from the state, in the columns and order of ``features_sql``."""
    cols = ", ".join(f"{read_sql(*plan.read[name], day, doubles)} AS {name}" for name in cat.features)
    return f"SELECT customer_id, {cols}, CAST(balance AS DOUBLE) AS balance FROM {state}"


def state_full_sql(plan: Plan, day: dt.date, doubles: bool = False) -> str:
    """The state of ``day`` from the history (the bootstrap, and what the weekly check compares with)."""
    aggs = []
    for kind, m, (a, b) in plan.stored:
        inside = f"_ago BETWEEN {a} AND {b}"
        if kind == "sum":
            aggs.append(f"CAST(sum(CASE WHEN {inside} THEN {m if doubles else units(m)} ELSE 0 END) AS "
                        f"{'DOUBLE' if doubles else 'BIGINT'}) AS {Plan.col(kind, m, (a, b))}")
        else:
            aggs.append(f"CAST(sum(CASE WHEN {inside} AND {m} > 0 THEN 1 ELSE 0 END) AS INTEGER) AS {Plan.col(kind, m, (a, b))}")
    aggs += [f"max(CASE WHEN {m} > 0 THEN day END) AS seen_{m}" for m in plan.since]
    aggs += ["max(day) AS last_day", "arg_max_null(balance, day) AS balance"]
    return (f"SELECT customer_id, {', '.join(aggs)} FROM (SELECT *, {_date(day)} - day AS _ago FROM {DAILY} "
            f"WHERE day <= {_date(day)} AND day >= {_date(day - dt.timedelta(days=plan.longest))}) GROUP BY customer_id")


# ---------------------------------------------------------------------------------------------------------
# Bitwise comparison of two tables keyed by customer_id
# ---------------------------------------------------------------------------------------------------------
def _bits(a: pa.ChunkedArray) -> np.ndarray:
    a = a.combine_chunks()
    if pa.types.is_floating(a.type):
        return np.asarray(a.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64).view(np.int64)
    if pa.types.is_date(a.type):
        a = a.cast(pa.int32())
    if pa.types.is_boolean(a.type):
        a = a.cast(pa.int8())
    if pa.types.is_string(a.type) or pa.types.is_large_string(a.type):
        return np.asarray(a.fill_null("\x00null").to_pylist(), dtype=object)
    return np.asarray(a.fill_null(0).to_numpy(zero_copy_only=False))


def compare(con: duckdb.DuckDBPyConnection, left: str, right: str, columns: list[str] | None = None) -> dict:
    """Customers on one side only and, per column, the customers whose values differ: doubles by their IEEE
    bits (0.0 and -0.0 differ, as they would in a written file), nulls equal only to nulls."""
    a = con.sql(f"SELECT * FROM ({left}) ORDER BY customer_id").to_arrow_table()
    b = con.sql(f"SELECT * FROM ({right}) ORDER BY customer_id").to_arrow_table()
    ids_a, ids_b = a.column("customer_id").to_pylist(), b.column("customer_id").to_pylist()
    out = {"customers": len(ids_a), "only_left": len(set(ids_a) - set(ids_b)), "only_right": len(set(ids_b) - set(ids_a)),
           "columns": 0, "values": 0, "differing": {}, "max_abs": {}}
    if out["only_left"] or out["only_right"]:
        common = sorted(set(ids_a) & set(ids_b))
        a = a.filter(pc.is_in(a.column("customer_id"), pa.array(common)))
        b = b.filter(pc.is_in(b.column("customer_id"), pa.array(common)))
    cols = columns or [c for c in a.column_names if c != "customer_id"]
    if set(cols) - set(b.column_names):
        raise ValueError(f"columns missing on the right: {sorted(set(cols) - set(b.column_names))}")
    for c in cols:
        ca, cb = a.column(c), b.column(c)
        nulls = np.asarray(ca.is_null().to_numpy(zero_copy_only=False)) != np.asarray(cb.is_null().to_numpy(zero_copy_only=False))
        diff = nulls | (_bits(ca) != _bits(cb))
        out["columns"] += 1
        out["values"] += len(diff)
        if diff.any():
            out["differing"][c] = int(diff.sum())
            if pa.types.is_floating(ca.type):
                x = np.asarray(ca.fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=float)
                y = np.asarray(cb.fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=float)
                out["max_abs"][c] = float(np.nanmax(np.abs(x - y))) if np.isfinite(x - y).any() else None
    out["equal"] = not (out["differing"] or out["only_left"] or out["only_right"])
    return out


# ---------------------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------------------
def connect(threads: int, spill: Path, memory_limit: str = "4GB") -> duckdb.DuckDBPyConnection:
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit, "temp_directory": str(spill),
                                 "preserve_insertion_order": False})
    con.execute("SET enable_progress_bar = false")
    return con


def load_daily(con: duckdb.DuckDBPyConnection, lake: Path, replicate: int = 1) -> dict:
    """``silver.customer_day`` (its current Delta version: ``deltalake`` reads the log) into a table in memory,
    ordered by day, behind the view the full recompute reads. ``replicate`` > 1: that many copies of every
    customer (ids suffixed ``~k``), to time the step at a larger size."""
    table = DeltaTable(str(lake / "silver" / "customer_day"))
    con.register("_silver_ds", table.to_pyarrow_dataset())
    if replicate > 1:
        con.execute(f"CREATE TABLE daily AS SELECT * REPLACE (customer_id || '~' || CAST(k AS VARCHAR) AS customer_id) "
                    f"FROM _silver_ds, range({replicate}) r(k) ORDER BY day, customer_id")
    else:
        con.execute("CREATE TABLE daily AS SELECT * FROM _silver_ds ORDER BY day, customer_id")
    con.unregister("_silver_ds")
    con.execute(f"CREATE OR REPLACE VIEW {DAILY} AS SELECT * FROM daily")
    n, keys, first, last = con.execute(
        "SELECT count(*), count(DISTINCT (customer_id, day)), min(day), max(day) FROM daily").fetchall()[0]
    if n != keys:
        raise SystemExit(f"silver.customer_day: {n} rows but {keys} (customer_id, day) keys")
    return {"version": table.version(), "rows": n, "first": first, "last": last}


def dropped_nonzero_sql(plan: Plan, state: str, delta: str, day: dt.date) -> str:
    """Rows that leave the state with a sum not zero, or a customer in the delta only by a leaving row: either
    means the state does not match the history (0 expected)."""
    nonzero = " OR ".join(f"coalesce(s.{Plan.col(k, m, w)}, 0) + coalesce(d.{Plan.col(k, m, w)}, 0) != 0" for k, m, w in plan.stored)
    cut = _date(day - dt.timedelta(days=plan.longest))
    return (f"SELECT count(*) FILTER (WHERE s.customer_id IS NULL AND NOT d.today), "
            f"count(*) FILTER (WHERE CASE WHEN d.today THEN {_date(day)} ELSE s.last_day END < {cut} AND ({nonzero})) "
            f"FROM {state} s FULL JOIN {delta} d ON s.customer_id = d.customer_id")


class Runner:
    def __init__(self, con: duckdb.DuckDBPyConnection, cat: Catalogue, plan: Plan, doubles: bool = False):
        self.con, self.cat, self.plan, self.doubles = con, cat, plan, doubles
        self.tag = "dstate" if doubles else "state"
        self.violations = 0

    def empty(self) -> None:
        self.con.execute(f"CREATE OR REPLACE TABLE {self.tag} AS {state_full_sql(self.plan, dt.date(1900, 1, 1), self.doubles)} LIMIT 0")

    def step(self, day: dt.date, check: bool = True, strict: bool = True) -> float:
        """Today's state from yesterday's; returns the seconds the step took (delta + new state). ``check``: count
        the invariant's violations (``dropped_nonzero_sql``) into ``self.violations``, and fail on one if ``strict``."""
        con, t = self.con, self.tag
        t0 = time.perf_counter()
        con.execute(f"CREATE OR REPLACE TEMP TABLE {t}_delta AS {delta_sql(self.plan, day, self.doubles)}")
        if check:  # outside the timing: an invariant check, not part of the step
            t1 = time.perf_counter()
            orphans, nonzero = con.execute(dropped_nonzero_sql(self.plan, t, f"{t}_delta", day)).fetchall()[0]
            self.violations += orphans + nonzero
            if (orphans or nonzero) and strict:
                raise AssertionError(f"{day}: {orphans} leaving rows of customers not in the state, {nonzero} rows "
                                     "dropped with a sum not zero: the state does not match the history")
            t0 += time.perf_counter() - t1
        con.execute(f"CREATE OR REPLACE TABLE {t}_next AS {step_sql(self.plan, t, f'{t}_delta', day, self.doubles)}")
        con.execute(f"DROP TABLE {t}")
        con.execute(f"ALTER TABLE {t}_next RENAME TO {t}")
        return time.perf_counter() - t0

    def features(self, day: dt.date) -> str:
        return features_from_state_sql(self.cat, self.plan, self.tag, day, self.doubles)

    def save(self, name: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {self.tag}")

    def restore(self, name: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TABLE {self.tag} AS SELECT * FROM {name}")


def time_full(con: duckdb.DuckDBPyConnection, cat: Catalogue, day: dt.date) -> float:
    t0 = time.perf_counter()
    con.execute(f"CREATE OR REPLACE TEMP TABLE full_features AS {duckdb_tags.features_sql(day, cat)}")
    return time.perf_counter() - t0


def tags_equal(con: duckdb.DuckDBPyConnection, lake: Path, cat: Catalogue, day: dt.date, incremental: str) -> dict:
    """Every tag of the catalogue by ``bench/duckdb_tags.py`` from the full features and from ``incremental``
    (a query of the same columns), compared bit for bit (no carry-forward: it reads the same table both ways)."""
    seconds = {}
    for side, features in (("full", duckdb_tags.features_sql(day, cat)), ("incremental", incremental)):
        con.execute("DROP TABLE IF EXISTS features")
        con.execute("DROP TABLE IF EXISTS tagged")
        t0 = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE features AS {features}")
        t1 = time.perf_counter()
        cols = duckdb_tags._tag(con, duckdb_tags.base_sql(day, cat), cat)
        select = ", ".join(f"{sql} AS {c}" for c, sql in cols.items())
        con.execute(f"CREATE OR REPLACE TEMP TABLE tags_{side} AS SELECT customer_id, {select} FROM tagged")
        seconds[side] = {"features_s": round(t1 - t0, 3), "tags_s": round(time.perf_counter() - t1, 3)}
    out = compare(con, "SELECT * FROM tags_full", "SELECT * FROM tags_incremental")
    out["tags"] = len(cat.tags)
    out["seconds"] = seconds
    return out


def register_bronze(con: duckdb.DuckDBPyConnection, lake: Path) -> None:
    for table in duckdb_tags.SOURCES:
        if table != "silver.customer_day":
            layer, name = table.split(".")
            con.register(duckdb_tags._view(table), DeltaTable(str(lake / layer / name)).to_pyarrow_dataset())


def change_day(con: duckdb.DuckDBPyConnection, day: dt.date) -> dict:
    """Day ``day`` of the history as a late file or a rerun could leave it: some rows changed (more data and
    spend, a payment), some removed, a few added for customers with no row that day."""
    d = _date(day)
    con.execute("CREATE OR REPLACE TABLE daily_changed AS SELECT * FROM daily")
    changed = con.execute(f"""UPDATE daily_changed SET data_mb = data_mb + 123.4567, total_fee = total_fee + 1.01,
        payment = payment + 30.0, out_calls = out_calls + 1
        WHERE day = {d} AND hash(customer_id) % 10 = 0""").fetchall()[0][0]
    removed = con.execute(f"DELETE FROM daily_changed WHERE day = {d} AND hash(customer_id) % 97 = 1").fetchall()[0][0]
    added = con.execute(f"""INSERT INTO daily_changed BY NAME
        SELECT customer_id, {d} AS day, 1 AS usage_days, 3 AS out_calls, 10.5 AS data_mb, 2.25 AS total_fee, 7.5 AS balance
        FROM (SELECT DISTINCT customer_id FROM daily WHERE day BETWEEN {d} - 60 AND {d} + 60)
        WHERE customer_id NOT IN (SELECT customer_id FROM daily WHERE day = {d}) AND hash(customer_id) % 5 = 0""").fetchall()[0][0]
    con.execute(f"""UPDATE daily_changed SET {', '.join(f'{c} = coalesce({c}, 0)' for c in _measure_columns(con))}
        WHERE day = {d}""")
    return {"day": day.isoformat(), "rows_changed": changed, "rows_removed": removed, "rows_added": added}


def _measure_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("DESCRIBE daily").fetchall() if r[0] not in ("customer_id", "day")]


def state_bytes(con: duckdb.DuckDBPyConnection, table: str) -> dict:
    """The state's size per customer: raw (fixed widths, the id's bytes) and as Parquet (zstd)."""
    desc = con.execute(f"DESCRIBE {table}").fetchall()
    width = {"BIGINT": 8, "DOUBLE": 8, "INTEGER": 4, "DATE": 4, "BOOLEAN": 1}
    n, id_bytes = con.execute(f"SELECT count(*), avg(strlen(customer_id)) FROM {table}").fetchall()[0]
    fixed = sum(width.get(t, 0) for c, t, *_ in desc if c != "customer_id")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.parquet"
        pq.write_table(con.sql(f"SELECT * FROM {table}").to_arrow_table(), path, compression="zstd")
        parquet = path.stat().st_size
    by_type: dict[str, int] = {}
    for _, t, *_ in desc:
        by_type[t] = by_type.get(t, 0) + 1
    return {"rows": n, "columns": len(desc), "by_type": by_type, "fixed_bytes": fixed, "id_bytes": round(id_bytes, 1),
            "raw_bytes_per_customer": round(fixed + id_bytes, 1), "parquet_zstd_bytes_per_customer": round(parquet / max(n, 1), 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", default="/work/fresh/var/lake", help="the lake (read only)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check-every", type=int, default=1, help="compare the features with the full recompute every N days")
    ap.add_argument("--doubles", action="store_true", help="also run the naive state of doubles and report its drift")
    ap.add_argument("--tags", action="store_true", help="compare every tag on a few days (bench/duckdb_tags.py)")
    ap.add_argument("--rerun", action="store_true", help="change a day of the history and show stale vs rebuilt state")
    ap.add_argument("--replicate", type=int, default=1, help="copies of every customer (timing at a larger size)")
    ap.add_argument("--bootstrap-day", type=int, default=1,
                    help="build the state of this day of the history (1-based) from the full recompute, then step")
    ap.add_argument("--memory-limit", default="4GB")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.replicate > 1 and (args.tags or args.rerun):
        raise SystemExit("--tags and --rerun read the lake's customers: not with --replicate")
    return args


@dataclass
class Run:
    """One run of the reference: its inputs, runners and what it found so far."""

    args: argparse.Namespace
    con: duckdb.DuckDBPyConnection
    cat: Catalogue
    plan: Plan
    days: list[dt.date]
    inc: Runner
    dbl: Runner | None
    result: dict
    all_equal: bool = True

    @property
    def lake(self) -> Path:
        return Path(self.args.lake)


def bootstrap(run: Run, boot: dt.date) -> None:
    t0 = time.perf_counter()
    run.con.execute(f"CREATE OR REPLACE TABLE state AS {state_full_sql(run.plan, boot)}")
    run.result["bootstrap"] = {"day": boot.isoformat(), "seconds": round(time.perf_counter() - t0, 3)}
    print(f"{boot}: state bootstrapped from the full recompute in {run.result['bootstrap']['seconds']}s", flush=True)
    if run.dbl:
        run.con.execute(f"CREATE OR REPLACE TABLE dstate AS {state_full_sql(run.plan, boot, doubles=True)}")


def probe_day(run: Run, day: dt.date, rec: dict) -> None:
    """A probe day: the state itself against the state from the history, and (``--tags``) every tag."""
    con = run.con
    s = compare(con, "SELECT * FROM state", state_full_sql(run.plan, day))
    rec["state_equal"] = s["equal"]
    if not s["equal"]:
        rec["state_diff"] = s
        print(f"{day}: state differs: {s}", flush=True)
    run.all_equal &= s["equal"]
    if run.args.tags:
        register_bronze(con, run.lake)
        t = tags_equal(con, run.lake, run.cat, day, run.inc.features(day))
        rec["tags_equal"], rec["tag_values"], rec["tag_seconds"] = t["equal"], t["values"], t["seconds"]
        run.all_equal &= t["equal"]
        if not t["equal"]:
            rec["tags_diff"] = t


def step_days(run: Run, probe: set[dt.date], x: dt.date, late: dt.date) -> None:
    """Every day from the bootstrap day on: the step, and the comparisons with the full recompute."""
    con, args, inc, dbl = run.con, run.args, run.inc, run.dbl
    boot = run.days[args.bootstrap_day - 1]
    booting = args.bootstrap_day > 1
    for i, day in enumerate(run.days):
        if day < boot:
            continue
        if day == boot and booting:
            bootstrap(run, boot)
        if args.rerun and day in (x, late):
            inc.save("state_before_x" if day == x else "state_before_late")
        step = inc.step(day) if not (day == boot and booting) else 0.0
        if dbl and not (day == boot and booting):
            dbl.step(day, check=False)
        rec = {"day": day.isoformat(), "n": i + 1, "step_s": round(step, 4),
               "state_rows": con.execute("SELECT count(*) FROM state").fetchall()[0][0]}
        if i % args.check_every == 0 or day in probe:
            rec["full_s"] = round(time_full(con, run.cat, day), 4)
            cmp = compare(con, inc.features(day), "SELECT * FROM full_features")
            rec["features_equal"], rec["values"] = cmp["equal"], cmp["values"]
            run.all_equal &= cmp["equal"]
            if not cmp["equal"]:
                rec["diff"] = cmp
        if day in probe:
            probe_day(run, day, rec)
        run.result["days"].append(rec)
        if day in probe or i % 15 == 0:
            print(f"{day} day {i + 1}: step {step:.3f}s, full {rec.get('full_s', float('nan')):.3f}s, state {rec['state_rows']} "
                  f"rows; features equal {rec.get('features_equal')} ({rec.get('values', 0)} values)"
                  + (f", state equal {rec['state_equal']}" if "state_equal" in rec else "")
                  + (f", tags equal {rec['tags_equal']} ({rec['tag_values']} values)" if "tags_equal" in rec else ""), flush=True)


def summarise(run: Run) -> None:
    result = run.result
    checked = [r for r in result["days"] if "features_equal" in r]
    result["features_equal_days"] = sum(r["features_equal"] for r in checked)
    result["features_checked_days"] = len(checked)
    result["features_values_compared"] = sum(r["values"] for r in checked)
    result["all_equal"] = run.all_equal
    late_days = [r for r in result["days"] if r["n"] >= 90 and r["step_s"]]
    result["timing"] = {
        "step_mean_s_day90_on": round(float(np.mean([r["step_s"] for r in late_days])), 4),
        "full_mean_s_day90_on": round(float(np.mean([r["full_s"] for r in late_days if "full_s" in r])), 4),
    }
    by_n = {r["n"]: r for r in result["days"]}
    for n in (1, 90):
        if n in by_n:
            result["timing"][f"step_day{n}_s"] = by_n[n]["step_s"]
            result["timing"][f"full_day{n}_s"] = by_n[n].get("full_s")
    result["state_size"] = state_bytes(run.con, "state")
    print(f"features equal on {result['features_equal_days']}/{len(checked)} days checked "
          f"({result['features_values_compared']} customer x feature values, bit for bit); all checks equal: {run.all_equal}")
    print(f"timing (threads={run.args.threads}): {result['timing']}")
    print(f"state size: {result['state_size']}")


def doubles_report(run: Run, last: dt.date) -> None:
    """The naive state of doubles against the full recompute on the last day: values, zero or sign flips, tags."""
    con, cat, dbl = run.con, run.cat, run.dbl
    d = compare(con, dbl.features(last), duckdb_tags.features_sql(last, cat))
    zero_flip = con.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE (f.{n} = 0) != (s.{n} = 0) OR (f.{n} > 0) != (s.{n} > 0))"
                                for n, (k, _, _) in cat.features.items() if k == "sum")
        + f" FROM ({duckdb_tags.features_sql(last, cat)}) f JOIN ({dbl.features(last)}) s USING (customer_id)").fetchall()[0]
    sums = [n for n, (k, _, _) in cat.features.items() if k == "sum"]
    out = run.result["doubles"] = {
        "day": last.isoformat(), "sum_features": len(sums),
        "features_differing": {k: v for k, v in d["differing"].items()},
        "values_differing": sum(d["differing"].values()),
        "values_compared": len(sums) * d["customers"],
        "max_abs": max(d["max_abs"].values(), default=0.0),
        "zero_or_sign_flips": {n: int(c) for n, c in zip(sums, zero_flip, strict=True) if c},
    }
    if run.args.tags:
        out["tags_differing"] = tags_equal(con, run.lake, cat, last, dbl.features(last))["differing"]
    print(f"naive doubles on {last}: {out['values_differing']} of {out['values_compared']} "
          f"sum values differ from the full recompute, max abs {out['max_abs']:.3g}; "
          f"zero/sign flips {sum(out['zero_or_sign_flips'].values())}; tags differing: {out.get('tags_differing')}")


def rerun_report(run: Run, x: dt.date, late: dt.date, last: dt.date) -> None:
    """Day ``x`` changed: the state carried on from its stale self (from the late file's day) against the state
    rebuilt forward from the state of x - 1."""
    con, cat, inc, days = run.con, run.cat, run.inc, run.days
    change = change_day(con, x)
    con.execute(f"CREATE OR REPLACE VIEW {DAILY} AS SELECT * FROM daily_changed")
    # stale: the late file of X is conformed on day `late`; the state goes on from its stale self
    inc.restore("state_before_late")
    inc.violations = 0
    for day in days[days.index(late):]:
        inc.step(day, strict=False)
    stale_violations = inc.violations
    stale = compare(con, inc.features(last), duckdb_tags.features_sql(last, cat))
    # invalidated: the state from X on is dropped and rebuilt forward from the state of X - 1
    inc.restore("state_before_x")
    t0 = time.perf_counter()
    for day in days[days.index(x):]:
        inc.step(day)
    rebuilt_s = time.perf_counter() - t0
    rebuilt = compare(con, inc.features(last), duckdb_tags.features_sql(last, cat))
    run.result["rerun"] = {**change, "late_file_on": late.isoformat(),
                           "stale": {"equal": stale["equal"], "values_differing": sum(stale["differing"].values()),
                                     "features_differing": len(stale["differing"]),
                                     "invariant_violations": stale_violations},
                           "rebuilt": {"equal": rebuilt["equal"], "days": len(days) - days.index(x),
                                       "seconds": round(rebuilt_s, 2), "values": rebuilt["values"]}}
    run.result["all_equal"] &= rebuilt["equal"] and not stale["equal"]
    print(f"rerun of {x} (late file on {late}; {change}): stale state -> {run.result['rerun']['stale']}; "
          f"rebuilt from {x - dt.timedelta(days=1)} -> {run.result['rerun']['rebuilt']}")
    con.execute(f"CREATE OR REPLACE VIEW {DAILY} AS SELECT * FROM daily")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cat = load_catalogue()
    plan = plan_of(cat)
    con = connect(args.threads, Path(tempfile.gettempdir()) / "incremental_reference_duckdb", args.memory_limit)
    t0 = time.perf_counter()
    src = load_daily(con, Path(args.lake), args.replicate)
    print(f"loaded in {time.perf_counter() - t0:.1f}s", flush=True)
    first, last = src["first"], src["last"]
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    print(f"silver.customer_day v{src['version']}: {src['rows']} rows, {first}..{last} ({len(days)} days); "
          f"catalogue: {len(cat.features)} window features, state of {len(plan.stored)} windows "
          f"+ {len(plan.since)} last-seen dates + last_day, balance; step reads days D-{plan.offsets()}")
    result: dict = {"source": {k: str(v) for k, v in src.items()}, "threads": args.threads,
                    "features": len(cat.features), "offsets": plan.offsets(), "days": []}
    inc = Runner(con, cat, plan)
    inc.empty()
    dbl = Runner(con, cat, plan, doubles=True) if args.doubles else None
    if dbl:
        dbl.empty()
    run = Run(args, con, cat, plan, days, inc, dbl, result)
    x = days[max(0, len(days) - 25)]  # the day the rerun check changes (inside every window of the last day)
    late = x + dt.timedelta(days=5)  # the day its late file arrives
    boot = days[args.bootstrap_day - 1]
    probe = {days[len(days) // 3], days[len(days) // 2], days[min(89, len(days) - 1)], last}
    probe = {d for d in probe if d >= boot} | ({boot} if args.bootstrap_day > 1 else set())
    step_days(run, probe, x, late)
    summarise(run)
    if dbl:
        doubles_report(run, last)
    if args.rerun:
        rerun_report(run, x, late, last)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"RESULT: {'EQUAL' if result['all_equal'] else 'DIFFERENT'}")
    return 0 if result["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
