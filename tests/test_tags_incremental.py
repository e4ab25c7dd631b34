"""Incremental window state (docs/incremental-tags.md).

Without Spark: the plan derived from the catalogue, the invalidation rule, the Delta-log reading, where a run
restarts from; the DuckDB reference (``bench/incremental_reference.py``) and the Spark port's own SQL text
(``jobs/stages/tags/incremental.py``, run in DuckDB) stepped day by day over inline rows that cross every
window's edge, equal to the full recompute (``bench/duckdb_tags.py``'s ``features_sql``) bit for bit on every day.

With Spark (below the line): the port itself against ``engine.window_features`` across every edge, the stored
state (``advance``) through a bootstrap, steps, a rewritten silver day, a reopened day, a gap, a plan change
and a backfill, and the weekly check; the whole sample history (e2e)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random

import duckdb
import pyarrow as pa
import pytest

from bench import duckdb_tags
from bench import incremental_reference as ref
from jobs.platform.lake import days_rewritten
from jobs.stages.conform import MEASURE_NAMES
from jobs.stages.tags import incremental as inc
from jobs.stages.tags.catalogue import Catalogue, load_catalogue
from jobs.stages.tags.incremental import choose_start, plan_of, stale_from

T0 = dt.date(2026, 3, 1)


def test_plan_of_the_catalogue():
    """The census of docs/incremental-tags.md: 141 stored windows (42 sums x 3 windows + 5 day counts x 3),
    prev23d derived as 30d - 7d, 19 last-seen dates; a step reads D, D-7, D-30, D-90."""
    cat = load_catalogue()
    plan = plan_of(cat)
    kinds = [k for k, _, _ in cat.features.values()]
    assert (kinds.count("sum"), kinds.count("days_with"), kinds.count("days_since")) == (168, 15, 19)
    assert len(plan.stored) == 141 and len(plan.since) == 19
    assert {w for _, _, w in plan.stored} == {(0, 6), (0, 29), (0, 89)}
    assert plan.offsets() == [0, 7, 30, 90]
    assert plan.source("sum", "total_fee", (7, 29)) == ("u_total_fee_0_29", "u_total_fee_0_6")
    reference = ref.plan_of(cat)  # the reference's plan is the one verified on the sample: the same columns
    assert sorted(reference.stored) == sorted(plan.stored) and reference.since == list(plan.since)


def test_a_later_window_is_stored_when_it_cannot_be_derived():
    cat = Catalogue(version=1, windows={"7d": (0, 6), "prev23d": (7, 29)},
                    features={"x_7d": ("sum", "data_mb", "7d"), "x_prev23d": ("sum", "data_mb", "prev23d")}, tags=[])
    plan = plan_of(cat)
    assert ("sum", "data_mb", (7, 29)) in plan.stored and plan.offsets() == [0, 7, 30]


def test_stale_from_counts_only_days_still_to_be_subtracted():
    state = dt.date(2026, 11, 20)

    def day(days: int) -> dt.date:
        return state - dt.timedelta(days=days)

    assert stale_from(set(), state, 89) is None
    assert stale_from({day(days=-1)}, state, 89) is None, "a day after the state was never added"
    assert stale_from({day(days=90)}, state, 89) is None, "left the 90-day window with the value it entered with"
    assert stale_from({day(days=89), day(days=3)}, state, 89) == day(days=89)
    assert stale_from({state}, state, 89) == state


def test_days_rewritten_reads_the_delta_log(tmp_path):
    log = tmp_path / "_delta_log"
    log.mkdir()

    def commit(v, days):
        lines = [{"commitInfo": {"operation": "WRITE"}}]
        lines += [{"add": {"path": f"day={d}/p.parquet", "partitionValues": {"day": d}}} for d in days]
        (log / f"{v:020d}.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")

    commit(0, ["2026-11-01", "2026-11-02"])
    commit(1, ["2026-11-03"])
    commit(2, ["2026-11-01"])
    assert days_rewritten(tmp_path, 0) == {dt.date(2026, 11, 3), dt.date(2026, 11, 1)}
    assert days_rewritten(tmp_path, 2) == set()
    (log / f"{1:020d}.json").unlink()
    assert days_rewritten(tmp_path, 0) is None, "a gap in the log: cannot tell, bootstrap"


def _edge_rows() -> pa.Table:
    """Customers whose rows sit on each window's edges as the days pass, values with 4 decimals (0.1 + 0.2 is
    not 0.3 in doubles), a negative payment, a null balance, a customer who leaves for 95 days and comes back."""
    rng = random.Random(21)
    rows = []

    def row(cid, day, **m):
        rows.append({"customer_id": cid, "day": day, **{k: 0 for k in MEASURE_NAMES}, **m})

    for k in (0, 6, 7, 29, 30, 89, 90):  # one row each, k days after T0: crosses every edge as D moves on
        row(f"edge{k}", T0 + dt.timedelta(days=k), data_mb=0.1, total_fee=0.2, payment=-5.5, out_calls=1, balance=3.0)
    row("back", T0, data_mb=1.2345, out_calls=2, balance=None)
    row("back", T0 + dt.timedelta(days=95), data_mb=0.3, payment=20.0, balance=1.5)
    for cid in ("r1", "r2", "r3"):
        for k in range(0, 40):
            if rng.random() < 0.6:
                row(cid, T0 + dt.timedelta(days=k), data_mb=round(rng.uniform(0, 900), 4),
                    total_fee=round(rng.uniform(-2, 9), 4), payment=rng.choice([0.0, 0.0, 10.0, -0.0001]),
                    out_calls=rng.choice([0, 0, 3]), balance=round(rng.uniform(-5, 50), 2))
    return pa.Table.from_pylist(rows)


@pytest.mark.parametrize("bootstrap", [False, True], ids=["from-empty", "bootstrap-then-steps"])
def test_reference_state_equals_the_full_recompute_across_every_edge(bootstrap):
    """From an empty state before the first row (a backfill), or bootstrapped from the history on day 40, then
    stepped every day until every row has left the 90-day window: on every day the features read from the
    state equal the full recompute bit for bit (same customers), and the state equals the state rebuilt from
    the history (weekly); at the end the state is empty. The naive state of doubles, stepped beside it, differs
    on some day: the comparison can fail."""
    cat = Catalogue(version=1, windows=load_catalogue().windows, tags=[], features={
        **{f"{m}_{w}": ("sum", m, w) for m in ("data_mb", "total_fee", "payment", "out_calls")
           for w in ("7d", "30d", "90d", "prev23d")},
        **{f"days_with_{m}_{w}": ("days_with", m, w) for m in ("out_calls", "payment") for w in ("7d", "30d", "90d")},
        "days_since_out_calls": ("days_since", "out_calls", "90d"), "days_since_payment": ("days_since", "payment", "90d"),
    })
    plan = ref.plan_of(cat)
    con = duckdb.connect(config={"threads": 1})
    con.register("_rows", _edge_rows())
    con.execute("CREATE TABLE daily AS SELECT * REPLACE (CAST(day AS DATE) AS day) FROM _rows")
    con.execute(f"CREATE VIEW {ref.DAILY} AS SELECT * FROM daily")
    runner, naive = ref.Runner(con, cat, plan), ref.Runner(con, cat, plan, doubles=True)
    runner.empty()
    naive.empty()
    first = T0 + dt.timedelta(days=40) if bootstrap else T0 - dt.timedelta(days=1)
    if bootstrap:
        con.execute(f"CREATE OR REPLACE TABLE state AS {ref.state_full_sql(plan, first)}")
        con.execute(f"CREATE OR REPLACE TABLE dstate AS {ref.state_full_sql(plan, first, doubles=True)}")
    seen, naive_differs = set(), 0
    for k in range((T0 + dt.timedelta(days=95 + 91) - first).days):
        day = first + dt.timedelta(days=k)
        if k or not bootstrap:
            runner.step(day)  # also checks that no row leaves the state with a sum not zero
            naive.step(day, check=False)
        full = duckdb_tags.features_sql(day, cat)
        got = ref.compare(con, runner.features(day), full)
        assert got["equal"], (day, got)
        naive_differs += not ref.compare(con, naive.features(day), full)["equal"]
        if k % 7 == 0:
            assert ref.compare(con, "SELECT * FROM state", ref.state_full_sql(plan, day))["equal"], day
        seen |= {r[0] for r in con.execute("SELECT customer_id FROM state").fetchall()}
    assert con.execute("SELECT count(*) FROM state").fetchall()[0][0] == 0
    assert {"edge0", "edge90", "back", "r1"} <= seen
    assert naive_differs > 0, "doubles added and subtracted should drift on these rows"


# ---------------------------------------------------------------------------------------------------------
# Without Spark: the port's invalidation and restart rules
# ---------------------------------------------------------------------------------------------------------
def _commit(log, v, adds=(), removes=(), data_change=True, path_only=False):
    lines = [{"commitInfo": {"operation": "WRITE" if data_change else "OPTIMIZE"}}]
    for kind, days in (("add", adds), ("remove", removes)):
        for d in days:
            action = {"path": f"day={d}/p{v}.parquet", "dataChange": data_change}
            if not path_only:
                action["partitionValues"] = {"day": d}
            lines.append({kind: action})
    (log / f"{v:020d}.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_days_rewritten_skips_compaction_and_reads_a_path_without_partition_values(tmp_path):
    log = tmp_path / "_delta_log"
    log.mkdir()
    _commit(log, 0, adds=["2026-11-01", "2026-11-02"])
    _commit(log, 1, adds=["2026-11-01", "2026-11-02"], removes=["2026-11-01", "2026-11-02"], data_change=False)
    assert days_rewritten(tmp_path, 0) == set(), "an OPTIMIZE (dataChange false) changes no day's rows"
    _commit(log, 2, removes=["2026-11-02"], path_only=True)  # a remove may leave out partitionValues
    assert days_rewritten(tmp_path, 0) == {dt.date(2026, 11, 2)}
    assert days_rewritten(tmp_path, 7) is None, "a table older than the version the state read: re-created"
    assert days_rewritten(tmp_path, 0, current_version=1) == set(), "commits after the version read are not counted"
    assert days_rewritten(tmp_path, 0, current_version=3) is None, "a commit not in _delta_log yet: cannot tell"


def test_choose_start_steps_back_before_every_rewritten_day_it_depends_on():
    d = dt.date(2026, 11, 20)

    def ago(k):
        return d - dt.timedelta(days=k)

    logged = {ago(k): 100 - k for k in range(1, 15)}  # states of the last 14 days, version 99 .. 86
    assert choose_start(logged, lambda v: set(), 89) == ago(1), "nothing rewritten: step from yesterday"
    assert choose_start({}, lambda v: set(), 89) is None, "no state: bootstrap"
    assert choose_start(logged, lambda v: None, 89) is None, "the log cannot tell: bootstrap"
    assert choose_start(logged, lambda v: {d}, 89) == ago(1), "tonight's own silver day is not in any state yet"
    assert choose_start(logged, lambda v: {ago(5)} if v > 95 else set(), 89) == ago(6), "rebuild from the day before"
    # the state the run steps back to depends on older days than the latest one: a day rewritten that only it
    # still holds (ago(100): out of the latest state's 90 days, inside the state of ago(11)'s) moves it back again
    rewritten = {ago(10), ago(100)}
    assert choose_start(logged, lambda v: rewritten, 89) is None, "back before ago(100): no such state, bootstrap"
    assert choose_start(logged, lambda v: {ago(14)}, 89) is None, "the oldest retained state is stale itself"
    gap = {k: v for k, v in logged.items() if k != ago(6)}
    assert choose_start(gap, lambda v: {ago(5)} if v > 95 else set(), 89) == ago(7), "a missing state: the one before"


def test_snapshots_of_no_date_write_nothing_and_start_no_spark():
    from jobs.stages import tags

    assert tags.snapshots(None, None, []) == {"customer_snapshots": 0, "snapshots": 0, "tags": 0}


def test_state_days_comes_from_the_maintenance_settings():
    assert inc.state_days() == 14
    assert inc.state_days({"tag_state_days": 3}) == 3
    assert inc.max_steps() == 6 and inc.max_steps({"tag_state_max_steps": 2}) == 2
    with pytest.raises(Exception, match="tag_state_days"):
        inc.state_days({"tag_state_days": 0})


def test_the_state_table_s_columns_and_types_follow_the_plan():
    plan = plan_of(load_catalogue())
    types = dict(plan.types())
    assert list(types) == plan.columns() and len(types) == 162  # + customer_id: the design's 163 columns
    assert types["u_data_mb_0_29"] == "bigint" and types["n_payment_0_6"] == "int"
    assert types["seen_out_calls"] == types["last_day"] == "date" and types["balance"] == "double"
    assert plan.fingerprint() == plan_of(load_catalogue()).fingerprint()
    other = Catalogue(version=1, windows={**load_catalogue().windows, "14d": (0, 13)},
                      features={**load_catalogue().features, "data_mb_14d": ("sum", "data_mb", "14d")}, tags=[])
    assert plan_of(other).fingerprint() != plan.fingerprint(), "a new window: another plan, the stage bootstraps"


# ---------------------------------------------------------------------------------------------------------
# Without Spark: the port's SQL text, run in DuckDB, against the full recompute
# ---------------------------------------------------------------------------------------------------------
class PortRunner:
    """The Spark port's SQL text (``incremental.delta_aggs``, ``step_cols``, ``state_full_aggs``,
    ``feature_cols``, with their row filters) composed in DuckDB as the Spark functions compose it: the rows'
    filter and ``_ago``, a group by customer, a full outer join of the state and the delta, a select."""

    def __init__(self, con: duckdb.DuckDBPyConnection, cat: Catalogue):
        self.con, self.cat, self.plan = con, cat, plan_of(cat)

    def _rows(self, day: dt.date, where: str) -> str:
        return f"SELECT *, {inc.ago_sql(day, 'duckdb')} FROM daily WHERE {where}"

    def state_full(self, day: dt.date) -> str:
        return (f"SELECT customer_id, {', '.join(inc.state_full_aggs(self.plan, 'duckdb'))} "
                f"FROM ({self._rows(day, inc.history_where(self.plan, day))}) GROUP BY customer_id")

    def bootstrap(self, day: dt.date) -> None:
        self.con.execute(f"CREATE OR REPLACE TABLE pstate AS {self.state_full(day)}")

    def empty(self) -> None:
        self.con.execute(f"CREATE OR REPLACE TABLE pstate AS {self.state_full(dt.date(1900, 1, 1))} LIMIT 0")

    def step(self, day: dt.date) -> None:
        days = ", ".join(inc.date_sql(d) for d in inc.delta_days(self.plan, day))
        delta = (f"SELECT customer_id, {', '.join(inc.delta_aggs(self.plan, 'duckdb'))} "
                 f"FROM ({self._rows(day, f'day IN ({days})')}) GROUP BY customer_id")
        joined = ("SELECT coalesce(s.customer_id, d.customer_id) AS customer_id, s.* EXCLUDE (customer_id), "
                  f"d.* EXCLUDE (customer_id) FROM pstate s FULL JOIN ({delta}) d ON s.customer_id = d.customer_id")
        stepped = f"SELECT customer_id, {', '.join(inc.step_cols(self.plan, day))} FROM ({joined})"
        self.con.execute(f"CREATE OR REPLACE TABLE pstate_next AS SELECT * FROM ({stepped}) WHERE {inc.kept(self.plan, day)}")
        self.con.execute("DROP TABLE pstate")
        self.con.execute("ALTER TABLE pstate_next RENAME TO pstate")

    def features(self, day: dt.date) -> str:
        return f"SELECT customer_id, {', '.join(inc.feature_cols(self.plan, day, 'duckdb'))} FROM pstate"


def _small_catalogue() -> Catalogue:
    return Catalogue(version=1, windows=load_catalogue().windows, tags=[], features={
        **{f"{m}_{w}": ("sum", m, w) for m in ("data_mb", "total_fee", "payment", "out_calls")
           for w in ("7d", "30d", "90d", "prev23d")},
        **{f"days_with_{m}_{w}": ("days_with", m, w) for m in ("out_calls", "payment") for w in ("7d", "30d", "90d")},
        "days_since_out_calls": ("days_since", "out_calls", "90d"), "days_since_payment": ("days_since", "payment", "90d"),
    })


def _duck(rows: pa.Table) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"threads": 1})
    con.register("_rows", rows)
    con.execute("CREATE TABLE daily AS SELECT * REPLACE (CAST(day AS DATE) AS day) FROM _rows")
    con.execute(f"CREATE VIEW {ref.DAILY} AS SELECT * FROM daily")
    return con


def _walk(con, runner: PortRunner, first: dt.date, last: dt.date, bootstrap: bool, state_every: int = 7,
          feature_every: int = 1) -> set[str]:
    """Step (or bootstrap on ``first``) every day to ``last``; every ``feature_every`` days the features equal the
    full recompute bit for bit (same customers), and every ``state_every`` days the state equals the state from
    the history."""
    seen = set()
    if bootstrap:
        runner.bootstrap(first)
    else:
        runner.empty()
    for k in range((last - first).days + 1):
        day = first + dt.timedelta(days=k)
        if k or not bootstrap:
            runner.step(day)
        if k % feature_every == 0 or day == last:
            got = ref.compare(con, runner.features(day), duckdb_tags.features_sql(day, runner.cat))
            assert got["equal"], (day, got)
        if k % state_every == 0:
            assert ref.compare(con, "SELECT * FROM pstate", runner.state_full(day))["equal"], day
        seen |= {r[0] for r in con.execute("SELECT customer_id FROM pstate").fetchall()}
    return seen


@pytest.mark.parametrize("bootstrap", [False, True], ids=["from-empty", "bootstrap-then-steps"])
def test_the_port_s_sql_equals_the_full_recompute_across_every_edge(bootstrap):
    """The Spark port's SQL text, in DuckDB, over the same edge rows as the reference: equal on every day until
    every row has left the 90-day window, the state equal to its bootstrap weekly, and empty at the end."""
    con = _duck(_edge_rows())
    runner = PortRunner(con, _small_catalogue())
    first = T0 + dt.timedelta(days=40) if bootstrap else T0 - dt.timedelta(days=1)
    seen = _walk(con, runner, first, T0 + dt.timedelta(days=95 + 90), bootstrap)
    assert con.execute("SELECT count(*) FROM pstate").fetchall()[0][0] == 0
    assert {"edge0", "edge90", "back", "r1"} <= seen


def _silver_types() -> dict[str, str]:
    """Each measure's type in silver.customer_day as conform's SQL gives it: counts bigint, amounts double."""
    from jobs.stages.conform import MEASURES
    from schemas import FILES

    out = {}
    for kind, (_, measures) in MEASURES.items():
        for m, sql in measures:
            col = sql[4:-1] if sql.startswith("sum(") else None
            count = sql.startswith(("count(", "sum(cast(")) or (col in FILES[kind].names and FILES[kind].col(col).type in ("int", "bigint"))
            out[m] = "bigint" if count else "double"
    return out


SILVER_TYPES = _silver_types()


def _random_measures(rng: random.Random) -> dict:
    """A day's every measure: counts as integers, amounts with 4 decimals (some negative, some 0), a balance that
    is sometimes null."""
    m = {x: (rng.choice([0, 0, 1, 2]) if t == "bigint" else round(rng.uniform(-3, 300), 4) * rng.choice([0, 1, 1]))
         for x, t in SILVER_TYPES.items()}
    m["balance"] = None if rng.random() < 0.1 else round(rng.uniform(-20, 80), 2)
    return m


def _catalogue_rows(customers: int = 8, days: int = 35) -> pa.Table:
    """Every measure of silver.customer_day for a few customers over ``days`` days, idle days between."""
    rng = random.Random(2121)
    rows = []
    for c in range(customers):
        for k in range(days):
            if rng.random() < (0.3 if c % 2 else 0.8):
                rows.append({"customer_id": f"c{c}", "day": T0 + dt.timedelta(days=k), **_random_measures(rng)})
    return pa.Table.from_pylist(rows)


def test_the_port_s_sql_equals_the_full_recompute_for_the_whole_catalogue():
    """Every window feature of conf/tags.yaml (202 + balance), from an empty state through 35 days of random rows
    until the state is empty: the port's SQL, in DuckDB, equals the full recompute (every third day: each day
    costs two 200-column queries) and the state its bootstrap (every 15th)."""
    con = _duck(_catalogue_rows())
    runner = PortRunner(con, load_catalogue())
    _walk(con, runner, T0 - dt.timedelta(days=1), T0 + dt.timedelta(days=34 + 90), bootstrap=False, state_every=15,
          feature_every=3)
    assert con.execute("SELECT count(*) FROM pstate").fetchall()[0][0] == 0


def test_the_port_s_walk_fails_when_a_leaving_day_is_not_read(monkeypatch):
    """The comparison can fail: a step that never reads the day leaving the 7-day window (D-7) keeps that day's
    values in the 7-day sums, and the walk stops on the first day it matters."""
    monkeypatch.setattr(inc, "delta_days", lambda plan, day: [day - dt.timedelta(days=k) for k in plan.offsets() if k != 7])
    con = _duck(_edge_rows())
    leaves = T0 + dt.timedelta(days=7)  # the first day a row leaves the 7-day window
    with pytest.raises(AssertionError, match=rf"^\(datetime.date\({leaves.year}, {leaves.month}, {leaves.day}\), "):
        _walk(con, PortRunner(con, _small_catalogue()), T0 - dt.timedelta(days=1), T0 + dt.timedelta(days=20), False)


# =========================================================================================================
# With Spark. Written with the port and NOT YET RUN (docs/incremental-tags.md, Status): run them first, in the
# order the design document gives, before trusting the nightly's incremental path.
# =========================================================================================================
D0 = dt.date(2026, 6, 1)
SILVER = "silver.customer_day"
SHORT = {"7d": (0, 2), "30d": (0, 4), "90d": (0, 6), "prev23d": (3, 4)}  # the windows shrunk: every edge in days


def _around(d0: dt.date, until: int = 4) -> list[dict]:
    """Rows around ``d0`` for the real windows, so that the steps d0+1 .. d0+4 cross every edge: customer
    ``e<e>_<j>`` has one row e days before d0+1+j (on the window's last day inside, 6, 29, 89, or the day it
    leaves, 7, 30, 90; 0: the day it enters); ``back`` returns after 97 days, ``leaver`` leaves the state on d0+1,
    ``forgets`` keeps a row but its last call leaves the 90 days on d0+2, ``nullbal`` has a null balance today,
    ``prec`` adds 0.1, 0.2, 0.7 daily (doubles would drift), r1..r3 every measure at random up to d0+``until``."""
    rng = random.Random(77)
    rows = []

    def row(cid, k, **m):
        rows.append({"customer_id": cid, "day": d0 + dt.timedelta(days=k), **{x: 0 for x in MEASURE_NAMES}, **m})

    for e in (0, 6, 7, 29, 30, 89, 90):
        for j in range(4):
            row(f"e{e}_{j}", 1 + j - e, data_mb=0.1, total_fee=0.2, payment=-5.5, out_calls=1, contacts_in=2, balance=3.0)
    row("back", -95, data_mb=1.2345, out_calls=2, balance=None)
    row("back", 2, data_mb=0.3, payment=20.0, balance=1.5)
    row("leaver", -89, payment=10.0, out_calls=1, balance=4.0)
    row("forgets", -88, out_calls=3, balance=1.0)
    row("forgets", -10, data_mb=2.0, balance=2.0)
    row("nullbal", -3, data_mb=1.0, balance=5.0)
    row("nullbal", 1, data_mb=1.0, balance=None)
    for k in range(-35, until + 1):
        row("prec", k, data_mb=0.1, total_fee=0.2, payment=0.7, balance=0.3)
    for cid in ("r1", "r2", "r3"):
        for k in range(-100, until + 1):
            if rng.random() < 0.6:
                rows.append({"customer_id": cid, "day": d0 + dt.timedelta(days=k), **_random_measures(rng)})
    return rows


def _spark_daily(spark, rows: list[dict]):
    """silver.customer_day's rows as Spark would read them (conform's types)."""
    ddl = ", ".join(["customer_id string", "day date", *[f"`{m}` {t}" for m, t in SILVER_TYPES.items()]])

    def value(m, v):
        return None if v is None else (int(v) if SILVER_TYPES[m] == "bigint" else float(v))

    return spark.createDataFrame([(r["customer_id"], r["day"], *[value(m, r.get(m, 0)) for m in SILVER_TYPES]) for r in rows], ddl)


def _spark_diff(got, want, limit: int = 5) -> list:
    """Up to ``limit`` differences (customer, column, got, want) between two small frames of the same columns and
    types, by customer: values by ``repr`` (a double's names its bits: 0.0 and -0.0 differ), null only equal to
    null, a customer on one side only as ``(customer)``."""
    assert got.dtypes == want.dtypes, [(a, b) for a, b in zip(got.dtypes, want.dtypes, strict=False) if a != b][:5]
    a = {r["customer_id"]: r for r in got.collect()}  # a few dozen rows
    b = {r["customer_id"]: r for r in want.collect()}
    out = [(c, "(customer)", c in a, c in b) for c in sorted(set(a) ^ set(b))]
    for c in sorted(set(a) & set(b)):
        out += [(c, k, a[c][k], b[c][k]) for k in got.columns if repr(a[c][k]) != repr(b[c][k])]
    return out[:limit]


def test_spark_port_equals_window_features_across_every_edge(spark):
    """The port in Spark, the whole catalogue: the state bootstrapped on D0 (``state_full``), then stepped over
    D0+1 .. D0+4 with rows on every window's edge; each day its features equal ``window_features`` (columns,
    types, customers, bits) and the state equals the state from the history."""
    from jobs.stages.tags.engine import window_features

    cat = load_catalogue()
    plan = plan_of(cat)
    daily = _spark_daily(spark, _around(D0)).localCheckpoint()
    state = inc.state_full(daily, D0, plan).localCheckpoint()
    ids = []
    for k in range(5):
        day = D0 + dt.timedelta(days=k)
        if k:
            state = inc.step(state, inc.daily_delta(daily, day, plan), day, plan).localCheckpoint()
        assert _spark_diff(inc.features_from_state(state, day, plan), window_features(daily, day, cat)) == [], day
        assert _spark_diff(state, inc.state_full(daily, day, plan)) == [], day
        ids.append({r[0] for r in state.select("customer_id").collect()})
    assert "leaver" in ids[0] and "leaver" not in ids[1] and "back" not in ids[1] and "back" in ids[2]
    assert "e89_0" in ids[1] and "e89_0" not in ids[2], "a row 89 days back is in; the next day it has left"


def test_spark_port_from_an_empty_state_until_every_row_has_left(spark):
    """Windows shrunk to 3, 5 and 7 days (and days 3..4, derived): from an empty state before the first row,
    stepped every day until every row has left, the features equal ``window_features`` and the state its
    bootstrap every day; the state ends empty. The plan does not depend on the windows being the real ones."""
    from jobs.stages.tags.engine import window_features

    cat = Catalogue(version=1, windows=SHORT, tags=[], features=_small_catalogue().features)
    plan = plan_of(cat)
    assert plan.offsets() == [0, 3, 5, 7]
    rng = random.Random(5)
    rows = [{"customer_id": f"k{k}", "day": T0 + dt.timedelta(days=k), **{m: 0 for m in MEASURE_NAMES},
             "data_mb": 0.1, "payment": -0.7, "out_calls": 1, "balance": None if k == 4 else 2.0} for k in range(9)]
    rows += [{"customer_id": f"r{c}", "day": T0 + dt.timedelta(days=k), **_random_measures(rng)}
             for c in range(3) for k in range(10) if rng.random() < 0.6]
    daily = _spark_daily(spark, rows).localCheckpoint()
    schema = ", ".join(["customer_id string", *[f"{c} {t}" for c, t in plan.types()]])
    state = spark.createDataFrame([], schema)
    for k in range(-1, 10 + 8):
        day = T0 + dt.timedelta(days=k)
        state = inc.step(state, inc.daily_delta(daily, day, plan), day, plan).localCheckpoint()
        assert _spark_diff(inc.features_from_state(state, day, plan), window_features(daily, day, cat)) == [], day
        assert _spark_diff(state, inc.state_full(daily, day, plan)) == [], day
    assert state.count() == 0


# --- the stored state (Delta, a private lake) -------------------------------------------------------------
def _write_silver(spark, paths, rows: list[dict]) -> None:
    """Replace the days of ``rows`` in silver.customer_day, as conform does (a rerun, a late file)."""
    from jobs.platform import lake

    days = {r["day"] for r in rows}
    lake.replace(_spark_daily(spark, rows), paths, SILVER, lake.in_dates("day", days), merge_schema=True)


def _advance(spark, paths, day: dt.date, cat: Catalogue | None = None, **kw):
    from jobs.platform import lake

    v = lake.version(spark, paths, SILVER)
    return inc.advance(spark, paths, day, plan_of(cat or _small_catalogue()), lake.read(spark, paths, SILVER, v), v, **kw)


def _log(spark, paths) -> dict:
    """The valid states: date -> how each was built."""
    from jobs.platform import lake

    return {r["state_date"]: r["method"] for r in lake.read(spark, paths, inc.STATE_LOG).where("valid").collect()}


def _equal_to_full(spark, paths, state, day: dt.date, cat: Catalogue | None = None) -> None:
    from jobs.platform import lake
    from jobs.stages.tags.engine import window_features

    cat = cat or _small_catalogue()
    daily = lake.read(spark, paths, SILVER)
    assert _spark_diff(inc.features_from_state(state, day, plan_of(cat)), window_features(daily, day, cat)) == [], day
    assert _spark_diff(state, inc.state_full(daily, day, plan_of(cat))) == [], day


def _days(d0: dt.date, *ks: int) -> list[dt.date]:
    return [d0 + dt.timedelta(days=k) for k in ks]


def _silver_lake(spark, tmp_path, until: int = 4):
    from jobs.platform.config import Paths

    paths = Paths(tmp_path)
    _write_silver(spark, paths, _around(D0, until))
    return paths


def test_a_rewritten_silver_day_rebuilds_the_state_forward_from_the_day_before(spark, tmp_path):
    """States of D0 (bootstrap) .. D0+3 (steps); then silver's day X = D0+1 is rewritten (a late file conformed:
    rows changed, one removed, one added). Stepping on from the stale state of D0+3 would differ from the full
    recompute; the stage finds X in silver's Delta log, rebuilds X .. D0+3 from the state of D0 and steps to D0+4:
    equal to the full recompute."""
    from jobs.platform import lake

    paths = _silver_lake(spark, tmp_path, until=5)
    d = _days(D0, 0, 1, 2, 3, 4)
    for day in d[:4]:
        state = _advance(spark, paths, day)
    assert _log(spark, paths) == {d[0]: "bootstrap", d[1]: "step", d[2]: "step", d[3]: "step"}
    _equal_to_full(spark, paths, state, d[3])
    version = lake.read(spark, paths, inc.STATE_LOG).where(f"state_date = '{d[3]}'").first()["silver_version"]
    x = d[1]
    old = [r for r in _around(D0, 5) if r["day"] == x]
    new = [{**r, "data_mb": r["data_mb"] + 123.4567, "payment": r["payment"] + 30.0, "out_calls": r["out_calls"] + 1}
           for r in old if r["customer_id"] not in ("e0_0",)]  # e0_0's row of X is removed
    new.append({**{m: 0 for m in MEASURE_NAMES}, "customer_id": "late", "day": x, "data_mb": 7.5, "out_calls": 2, "balance": 1.0})
    _write_silver(spark, paths, new)
    assert days_rewritten(paths.table(SILVER), version) == {x}
    plan = plan_of(_small_catalogue())
    stale = inc.step(inc.read_state(spark, paths, d[3], plan), inc.daily_delta(lake.read(spark, paths, SILVER), d[4], plan), d[4], plan)
    with pytest.raises(AssertionError):
        _equal_to_full(spark, paths, stale.localCheckpoint(), d[4])  # the test can fail: the stale state differs
    state = _advance(spark, paths, d[4])
    assert _log(spark, paths) == {d[0]: "bootstrap", d[1]: "rebuild", d[2]: "rebuild", d[3]: "rebuild", d[4]: "step"}
    _equal_to_full(spark, paths, state, d[4])


def test_reopen_invalidates_the_states_from_its_day_and_a_rerun_steps_from_the_day_before(spark, tmp_path):
    """``cpc reopen --date X`` marks the states from X on invalid: the next run steps from X-1. A rerun of a day
    whose state exists steps again from the day before it (same result)."""
    paths = _silver_lake(spark, tmp_path)
    d = _days(D0, 0, 1, 2, 3)
    for day in d:
        _advance(spark, paths, day)
    inc.invalidate(spark, paths, d[2])
    assert _log(spark, paths) == {d[0]: "bootstrap", d[1]: "step"}
    state = _advance(spark, paths, d[3])
    assert _log(spark, paths) == {d[0]: "bootstrap", d[1]: "step", d[2]: "rebuild", d[3]: "step"}
    _equal_to_full(spark, paths, state, d[3])
    state = _advance(spark, paths, d[3])  # a rerun of the day
    assert _log(spark, paths)[d[3]] == "step"
    _equal_to_full(spark, paths, state, d[3])


def test_a_backfill_builds_the_state_as_it_goes_and_gaps_bootstrap(spark, tmp_path):
    """Day after day from no state: one bootstrap, then steps. A state more than ``most_steps`` days back, or
    older than the retention, or of another catalogue plan: a bootstrap. A short gap: rebuilt forward."""
    from jobs.platform import lake

    paths = _silver_lake(spark, tmp_path, until=12)
    d = _days(D0, -2, -1, 0, 1)
    for day in d:
        state = _advance(spark, paths, day)
    assert _log(spark, paths) == {d[0]: "bootstrap", d[1]: "step", d[2]: "step", d[3]: "step"}
    _equal_to_full(spark, paths, state, d[3])
    far, near, old, other = _days(D0, 4, 6, 10, 11)
    state = _advance(spark, paths, far, most_steps=2)  # D0+1 is 3 days back
    assert _log(spark, paths)[far] == "bootstrap"
    state = _advance(spark, paths, near, most_steps=6)
    assert (_log(spark, paths)[near - dt.timedelta(days=1)], _log(spark, paths)[near]) == ("rebuild", "step")
    _equal_to_full(spark, paths, state, near)
    state = _advance(spark, paths, old, retention_days=3)  # D0+6 is 4 days back, older than the retention
    assert _log(spark, paths)[old] == "bootstrap"
    wider = Catalogue(version=1, windows={**load_catalogue().windows, "14d": (0, 13)}, tags=[],
                      features={**_small_catalogue().features, "data_mb_14d": ("sum", "data_mb", "14d")})
    state = _advance(spark, paths, other, cat=wider)
    assert _log(spark, paths)[other] == "bootstrap", "another plan: yesterday's state is not used"
    _equal_to_full(spark, paths, state, other, wider)
    plans = {r["plan"] for r in lake.read(spark, paths, inc.STATE_LOG).collect()}
    assert plans == {plan_of(_small_catalogue()).fingerprint(), plan_of(wider).fingerprint()}


def test_the_log_row_counts_the_state_from_its_commit_without_reading_it_back(spark, tmp_path, monkeypatch):
    """write_state takes the log row's count from the Delta commit (no count of the partition it just wrote): with
    DataFrame.count refused, a bootstrap and a step still write their states and log rows, whose counts equal
    the partitions'; the state returned is the partition as written."""
    from pyspark.sql.classic.dataframe import DataFrame

    from jobs.platform import lake

    paths = _silver_lake(spark, tmp_path)
    d = _days(D0, 0, 1)

    def refused(self):
        raise AssertionError("a count of the state")

    monkeypatch.setattr(DataFrame, "count", refused)
    states = [_advance(spark, paths, day) for day in d]
    monkeypatch.undo()
    logged = {r["state_date"]: r["rows"] for r in lake.read(spark, paths, inc.STATE_LOG).collect()}
    stored = {day: lake.read(spark, paths, inc.STATE_TABLE).where(f"state_date = '{day}'").count() for day in d}
    assert logged == stored and all(n > 0 for n in stored.values())
    assert [s.count() for s in states] == [stored[day] for day in d]
    _equal_to_full(spark, paths, states[1], d[1])


def test_the_weekly_check_passes_then_fails_naming_the_first_difference(spark, tmp_path):
    """The maintenance run checks the latest state against the full recompute (every customer here): clean, it
    records the check and goes on; with one stored value corrupted it raises naming the feature, the customer
    and the day, records the differences, marks every state invalid (the next run bootstraps), and deletes and
    vacuums nothing."""
    from jobs.platform import lake
    from jobs.platform.errors import TagStateMismatch
    from jobs.stages import maintenance

    paths = _silver_lake(spark, tmp_path)
    d = _days(D0, 0, 1)
    for day in d:
        _advance(spark, paths, day, cat=load_catalogue())
    conf = {"vacuum_retention_hours": 168, "tag_history_days": 400, "optimize": [], "tag_state_check_per_mille": 1000}
    out = maintenance.run(spark, paths, d[1], conf)
    assert out["tag_state_check"]["differences"] == 0 and out["tag_state_check"]["state_date"] == str(d[1])
    assert out["tag_state_check"]["customers"] == lake.read(spark, paths, inc.STATE_TABLE).where(f"state_date = '{d[1]}'").count()
    plan = plan_of(load_catalogue())
    stored = inc.read_state(spark, paths, d[1], plan).localCheckpoint()
    broken = stored.selectExpr("customer_id", f"DATE '{d[1]}' AS state_date",
                               *["u_data_mb_0_6 + CASE WHEN customer_id = 'prec' THEN 1 ELSE 0 END AS u_data_mb_0_6"
                                 if c == "u_data_mb_0_6" else c for c in plan.columns()])
    lake.replace(broken, paths, inc.STATE_TABLE, f"state_date = '{d[1]}'")
    with pytest.raises(TagStateMismatch, match=rf"tag state of {d[1]} differs .* first: feature data_mb_7d, customer prec: "
                                               r"stored 0\.7001, full recompute 0\.7\b"):
        maintenance.run(spark, paths, d[1], conf)
    row = lake.read(spark, paths, inc.CHECKS).where(f"run_date = '{d[1]}'").first()
    assert row["differences"] == 3, "data_mb_7d, data_mb_prev23d (30d - 7d) and the state column"
    assert {(x["kind"], x["name"]) for x in json.loads(row["examples"])} == {
        ("feature", "data_mb_7d"), ("feature", "data_mb_prev23d"), ("state", "u_data_mb_0_6")}
    assert _log(spark, paths) == {}, "every state invalid: the next run bootstraps"
    assert _advance(spark, paths, d[1] + dt.timedelta(days=1), cat=load_catalogue()) is not None
    assert _log(spark, paths) == {d[1] + dt.timedelta(days=1): "bootstrap"}


# --- end to end: the sample run (e2e) ----------------------------------------------------------------------
@pytest.mark.e2e
def test_the_sample_history_every_day_every_feature_and_every_tag(spark, sample, copy_of):
    """Over the sample's whole history, the state stepped day by day from a bootstrap on the first day: every day
    every window feature of every customer equals the full recompute; on the last day the tag table written
    from the state equals the one written by ``cpc tags --full``, every tag and customer. The nightly DAG's own
    run (a bootstrap on the last day) left a state the contract test reads."""
    from pyspark.testing import assertDataFrameEqual

    from jobs.platform import lake
    from jobs.stages import tags
    from jobs.stages.tags.engine import window_features

    cat = load_catalogue()
    plan = plan_of(cat)
    incremental, full = copy_of("incremental"), copy_of("full")
    paths, end = incremental.paths, sample["spec"].end_date
    assert lake.read(spark, paths, inc.STATE_LOG).where(f"state_date = '{end}'").first()["method"] == "bootstrap"
    days = [end - dt.timedelta(days=k) for k in range(sample["spec"].days - 1, -1, -1)]
    for day in days:
        feats = inc.features(spark, paths, day, cat)
        daily = lake.read(spark, paths, SILVER)
        diffs = inc.differences(feats, window_features(daily, day, cat), [f[0] for f in plan.features] + ["balance"], "feature")
        assert diffs.count() == 0, (day, [r.asDict() for r in diffs.limit(5).collect()])
    assert _log(spark, paths) == {days[0]: "bootstrap", **{d: "step" for d in days[1:]}}
    tags.run(spark, paths, end, stats=False)
    tags.run(spark, full.paths, end, stats=False, full=True)
    assert lake.read(spark, full.paths, inc.STATE_LOG).where(f"state_date = '{end}'").first()["method"] == "full"
    cond = f"snapshot_date = '{end}'"
    assertDataFrameEqual(lake.read(spark, paths, "gold.customer_tags").where(cond),
                         lake.read(spark, full.paths, "gold.customer_tags").where(cond), checkRowOrder=False)


@pytest.mark.e2e
def test_a_late_file_through_reopen_rebuilds_the_state_forward(spark, sample, copy_of):
    """A corrected usage file for a day X inside the history: `cpc reopen` (closed days, and the tag states from
    X on), ingest and conform X; the next tags run rebuilds the states from X on and its features equal the full
    recompute (the corrected data), which differ from the features before the correction."""
    import gzip
    import hashlib

    from jobs.platform import lake
    from jobs.stages import conform, ingest
    from jobs.stages.tags.engine import window_features
    from schemas import FILES

    cat = load_catalogue()
    plan = plan_of(cat)
    run = copy_of("late")
    paths, end = run.paths, sample["spec"].end_date
    x = end - dt.timedelta(days=3)
    for day in [x - dt.timedelta(days=1), *_days(x, 0, 1, 2)]:
        inc.features(spark, paths, day, cat)
    before = inc.read_state(spark, paths, end - dt.timedelta(days=1), plan).localCheckpoint()
    name = FILES["usage"].file_name(x)
    lines = gzip.decompress((paths.landing_day(x) / name).read_bytes()).decode().splitlines()
    col = FILES["usage"].names.index("data_mb")
    fields = lines[1].split("|")
    fields[col] = f"{float(fields[col]) + 321.1234:.4f}"
    lines[1] = "|".join(fields)
    data = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
    (paths.landing_day(x) / name).write_bytes(data)
    (paths.landing_day(x) / FILES["usage"].control_name(x)).write_text(f"rows={len(lines) - 1}\nmd5={hashlib.md5(data).hexdigest()}\n")
    ingest.reopen(spark, paths, x)
    inc.invalidate(spark, paths, x)  # what `cpc reopen --date X` does besides
    ingest.ingest(spark, paths, [x], ["usage"])
    conform.run(spark, paths, [x])
    feats = inc.features(spark, paths, end, cat)
    assert _log(spark, paths)[x] == "rebuild" and _log(spark, paths)[end] == "step"
    daily = lake.read(spark, paths, SILVER)
    names = [f[0] for f in plan.features] + ["balance"]
    assert inc.differences(feats, window_features(daily, end, cat), names, "feature").count() == 0
    changed = inc.differences(before, inc.read_state(spark, paths, end - dt.timedelta(days=1), plan), plan.columns(), "state")
    assert changed.where("name = 'u_data_mb_0_6'").count() == 1, "the corrected customer's 7-day data sum moved"


@pytest.mark.e2e
def test_training_s_snapshots_in_one_pass_equal_the_tags_stage_run_date_by_date(spark, sample, copy_of):
    """``tags.snapshots`` (training's missing snapshot dates in one frame and one commit) writes exactly the rows
    ``tags.run`` writes for each date in turn, every tag and customer, across a stored snapshot between the
    dates: a ``carry`` tag's empty value comes from that stored snapshot, then from the batch's own date before."""
    import shutil

    from pyspark.sql import functions as F
    from pyspark.testing import assertDataFrameEqual

    from jobs.platform import lake
    from jobs.platform.config import Paths
    from jobs.stages import tags

    end = sample["spec"].end_date
    stored, dates = end - dt.timedelta(days=6), _days(end, -8, -5, -3)
    batch = copy_of("batch")
    tags.run(spark, batch.paths, stored, stats=False)  # a stored snapshot between the dates, its empty occupations filled
    t = lake.read(spark, batch.paths, "gold.customer_tags").where(F.col("snapshot_date") == F.lit(stored))
    planted = t.withColumn("soc_occupation", F.coalesce("soc_occupation", F.lit("planted"))).localCheckpoint()
    lake.replace(planted, batch.paths, "gold.customer_tags", f"snapshot_date = '{stored}'")
    shutil.copytree(batch.paths.root, batch.paths.root.parent / "one_by_one", symlinks=True)
    one_by_one = dataclasses.replace(batch, paths=Paths(batch.paths.root.parent / "one_by_one"))
    version = lake.version(spark, batch.paths, "gold.customer_tags")
    assert tags.snapshots(spark, batch.paths, list(reversed(dates)))["snapshots"] == 3
    for d in dates:
        tags.run(spark, one_by_one.paths, d, stats=False)
    assert lake.version(spark, batch.paths, "gold.customer_tags") == version + 1  # one commit for the three dates
    cond = lake.in_dates("snapshot_date", dates)
    got = lake.read(spark, batch.paths, "gold.customer_tags").where(cond)
    assertDataFrameEqual(got, lake.read(spark, one_by_one.paths, "gold.customer_tags").where(cond), checkRowOrder=False)
    planted = {r["snapshot_date"]: r["n"] for r in got.where("soc_occupation = 'planted'").groupBy("snapshot_date")
               .agg(F.count(F.lit(1)).alias("n")).collect()}
    assert dates[0] not in planted and planted.get(dates[1], 0) > 0 and planted.get(dates[2], 0) > 0, planted
    assert not set(_log(spark, batch.paths)) & set(dates)  # no state written for a date weeks back
