"""Incremental window state (docs/incremental-tags.md).

Without Spark: the plan derived from the catalogue, the invalidation rule, the Delta-log reading, where a run
restarts from; the DuckDB reference (``bench/incremental_reference.py``) and the Spark port's own SQL text
(``jobs/stages/tags/incremental.py``, run in DuckDB) stepped day by day over inline rows that cross every
window's edge, equal to the full recompute (``bench/duckdb_tags.py``'s ``features_sql``) bit for bit on every day.

With Spark (below the line): the port itself against ``engine.window_features`` across every edge, the stored
state (``advance``) through a bootstrap, steps, a rewritten silver day, a reopened day, a gap, a plan change
and a backfill, and the weekly check; the whole sample history (e2e)."""

from __future__ import annotations

import datetime as dt
import json
import random

import duckdb
import pyarrow as pa
import pytest

from bench import duckdb_tags
from bench import incremental_reference as ref
from jobs.stages.conform import MEASURE_NAMES
from jobs.stages.tags import incremental as inc
from jobs.stages.tags.catalogue import Catalogue, load_catalogue
from jobs.stages.tags.incremental import choose_start, days_rewritten, plan_of, stale_from

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


def _catalogue_rows(customers: int = 8, days: int = 35) -> pa.Table:
    """Every measure of silver.customer_day for a few customers over ``days`` days: counts as integers, amounts
    with 4 decimals (some negative), idle days, a balance that is sometimes null."""
    rng = random.Random(2121)
    counts = {m for m in MEASURE_NAMES if m.startswith(("contacts", "complaint", "purchase", "port_out", "unresolved",
                                                        "orders", "cancels", "trials", "trial_", "device_", "topups",
                                                        "small_topups", "out_calls", "sms_out", "usage_days"))}
    rows = []
    for c in range(customers):
        for k in range(days):
            if rng.random() < (0.3 if c % 2 else 0.8):
                m = {x: (rng.choice([0, 0, 1, 2]) if x in counts else round(rng.uniform(-3, 300), 4) * rng.choice([0, 1, 1]))
                     for x in MEASURE_NAMES}
                m["balance"] = None if rng.random() < 0.1 else round(rng.uniform(-20, 80), 2)
                rows.append({"customer_id": f"c{c}", "day": T0 + dt.timedelta(days=k), **m})
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
