"""Incremental window state (docs/incremental-tags.md), without Spark: the plan derived from the catalogue, the
invalidation rule, the Delta-log reading, and the DuckDB reference (``bench/incremental_reference.py``) stepped
day by day over inline rows that cross every window's edge, equal to the full recompute
(``bench/duckdb_tags.py``'s ``features_sql``) bit for bit on every day."""

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
from jobs.stages.tags.catalogue import Catalogue, load_catalogue
from jobs.stages.tags.incremental import days_rewritten, plan_of, stale_from

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
