"""The evaluation's nightly rebuild of gold.campaign_outcomes: only the decision dates whose outcome can have changed
since the night before (jobs/stages/evaluate/rebuild.py), equal to the rebuild of every date, night after night,
across a late response, a late order, a late line closure, rewritten decisions and a rewritten delivery."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from jobs.platform import lake
from jobs.platform.config import Paths
from jobs.stages import evaluate
from jobs.stages.evaluate import rebuild

D = [dt.date(2026, 11, 1) + dt.timedelta(days=k) for k in range(10)]  # D[1] .. D[8] are used
S = {"window_days": 2, "lookback_days": 6}
DEC = "gold.cpc_decisions"
ALL_KNOWN = {t: set() for t in (*rebuild.INPUTS, rebuild.OUTCOMES)}


def _prev(eval_date: dt.date, window: int = 2, lookback: int = 6) -> rebuild.Previous:
    return rebuild.Previous(eval_date, window, lookback, {t: 3 for t in rebuild.INPUTS}, 7)


def test_the_plan_steps_from_the_night_before_over_the_open_window():
    dates, why = rebuild.plan(D[6], 2, 6, _prev(D[5]), {**ALL_KNOWN, "bronze.responses": {D[6]}, DEC: {D[6]}})
    assert dates == {D[4], D[5], D[6]} and why == f"step from the evaluation of {D[5]}"
    # a missed night: the open window of the last evaluation, and every date since
    assert rebuild.plan(D[8], 2, 6, _prev(D[5]), ALL_KNOWN)[0] == {D[4], D[5], D[6], D[7], D[8]}
    # older decisions rewritten: their dates too (within the lookback)
    assert rebuild.plan(D[8], 2, 6, _prev(D[7]), {**ALL_KNOWN, DEC: {D[1], D[3], D[8]}})[0] == {D[3], D[6], D[7], D[8]}


@pytest.mark.parametrize("prev, changed, reason", [
    (None, ALL_KNOWN, "no evaluation before"),
    (_prev(D[6]), ALL_KNOWN, "the last evaluation is of 2026-11-07, not before 2026-11-07"),
    (_prev(D[5], window=3), ALL_KNOWN, "settings changed (window_days 3 -> 2, lookback_days 6 -> 6)"),
    (_prev(D[5]), {**ALL_KNOWN, "bronze.orders": None}, "bronze.orders: its Delta log cannot tell what changed since the evaluation of 2026-11-06"),
    (_prev(D[5]), {**ALL_KNOWN, rebuild.OUTCOMES: {D[2]}}, "gold.campaign_outcomes was written since the evaluation of 2026-11-06 by something else"),
    (_prev(D[5]), {**ALL_KNOWN, "bronze.responses": {D[3], D[6]}},
     "bronze.responses: the delivery of 2026-11-04 was rewritten since the evaluation of 2026-11-06"),
])
def test_the_plan_rebuilds_everything_when_it_cannot_tell(prev, changed, reason):
    assert rebuild.plan(D[6], 2, 6, prev, changed) == (None, reason)


def test_other_code_or_a_re_created_table_rebuilds_everything():
    prev = _prev(D[5])._replace(logic="aaa", table_ids={DEC: "id-1", rebuild.OUTCOMES: "id-2"})
    assert rebuild.plan(D[6], 2, 6, prev, ALL_KNOWN, "bbb") == (
        None, f"the outcomes' code changed since the evaluation of {D[5]} (aaa -> bbb)")
    assert rebuild.plan(D[6], 2, 6, prev, ALL_KNOWN, "aaa", {DEC: "id-1", rebuild.OUTCOMES: "id-9"}) == (
        None, f"gold.campaign_outcomes was re-created since the evaluation of {D[5]} (Delta table id id-9)")
    assert rebuild.plan(D[6], 2, 6, prev, ALL_KNOWN, "aaa", {DEC: "id-1", rebuild.OUTCOMES: "id-2", "bronze.orders": "new"})[0] == \
        {D[4], D[5], D[6]}, "a table the evaluation before did not record (it did not exist then) is compared by its log"


def test_a_deleted_input_table_cannot_tell_and_a_null_partition_neither(tmp_path):
    prev = _prev(D[5])._replace(versions={DEC: 3, "bronze.responses": -1, "bronze.orders": -1})
    got = rebuild.changes(Paths(tmp_path), prev, {t: -1 for t in rebuild.INPUTS})
    assert got[DEC] is None and got["bronze.responses"] == set() and got[rebuild.OUTCOMES] is None
    assert got["bronze.crm_profile"] is None, "an evaluation that kept no CRM version (older code) cannot tell"
    log_dir = tmp_path / "_delta_log"
    log_dir.mkdir()
    (log_dir / f"{0:020d}.json").write_text('{"add": {"path": "delivery_date=2026-11-02/a.parquet", "dataChange": true}}\n')
    (log_dir / f"{1:020d}.json").write_text('{"add": {"path": "delivery_date=__HIVE_DEFAULT_PARTITION__/b.parquet", '
                                            '"partitionValues": {"delivery_date": null}, "dataChange": true}}\n')
    assert lake.days_rewritten(tmp_path, -1, "delivery_date", current_version=0) == {D[1]}
    assert lake.days_rewritten(tmp_path, -1, "delivery_date") is None


def test_an_order_concerns_the_decisions_whose_window_holds_it():
    assert rebuild.window_dates([D[5]], 2, D[0], D[8]) == {D[3], D[4]}
    assert rebuild.window_dates([D[2], D[5]], 3, D[1], D[8]) == {D[2], D[3], D[4]}, "within the lookback only"


# --- night after night, on Delta tables ------------------------------------------------------------------------
DEC_COLS = ("snapshot_date date, contact_ref string, customer_id string, campaign_id string, campaign_kind string, "
            "product_id string, category string, channel string, channel_kind string, service_tier string, "
            "lifecycle_stage string, expected_value double, outcome string, cost double")
RESP_COLS = "contact_ref string, customer_id string, event_ts timestamp, channel string, event string, order_id string, delivery_date date"
ORDER_COLS = ("order_id string, customer_id string, order_ts timestamp, product_id string, action string, channel string, "
              "price double, delivery_date date")


def _decisions(spark, days, holdout_of: dict | None = None):
    """Four decisions on each day D[i] (contact_ref r<i><k>, customer C<i><k>): three contacts and one holdout
    member (k = 3), or the outcome ``holdout_of`` gives the customer."""
    rows = [(d, f"r{D.index(d)}{k}", f"C{D.index(d)}{k}", "c1", "offer", "P_X", "data", "sms_push", "active", "T1", "growth",
             1.0, (holdout_of or {}).get(f"C{D.index(d)}{k}", "holdout" if k == 3 else "contact"), 0.05)
            for d in days for k in range(4)]
    return spark.createDataFrame(rows, DEC_COLS)


def _responses(spark, rows):
    """(contact_ref, event, delivered on)."""
    return spark.createDataFrame([(ref, "C" + ref[1:], dt.datetime.combine(d, dt.time(9)), "sms_push", e, None, d)
                                  for ref, e, d in rows], RESP_COLS).withColumn("_source_file", F.lit("r"))


def _orders(spark, rows):
    """(customer, ordered on, delivered on)."""
    return spark.createDataFrame([(f"O{c}{o}", c, dt.datetime.combine(o, dt.time(11)), "P_X", "order", "agent", 30.0, d)
                                  for c, o, d in rows], ORDER_COLS).withColumn("_source_file", F.lit("o"))


def _crm(spark, rows):
    """(customer, closed on, delivered on): bronze.crm_profile's closed records."""
    return spark.createDataFrame([(c, "closed", o, d) for c, o, d in rows],
                                 "customer_id string, status string, record_date date, delivery_date date")


def _night(spark, paths, day, full=False):
    method, n = evaluate.rebuild_outcomes(spark, paths, day, S, full=full)
    since = day - dt.timedelta(days=S["lookback_days"])
    lookback = f"snapshot_date > '{since}' AND snapshot_date <= '{day}'"
    window = (F.col("delivery_date") > F.lit(since)) & (F.col("delivery_date") <= F.lit(day))
    crm = lake.read(spark, paths, "bronze.crm_profile").where(window) if lake.exists(spark, paths, "bronze.crm_profile") \
        else _crm(spark, [])
    expected = evaluate.outcomes(lake.read(spark, paths, DEC).where(lookback), lake.read(spark, paths, "bronze.responses").where(window),
                                 lake.read(spark, paths, "bronze.orders").where(window), day, S["window_days"],
                                 evaluate.closures_of(crm))
    got = lake.read(spark, paths, rebuild.OUTCOMES).where(lookback).select(*expected.columns)
    assert sorted(map(tuple, got.collect())) == sorted(map(tuple, expected.collect())), f"night of {day}"
    return method, n


def test_night_after_night_the_rebuilt_dates_give_the_full_rebuild(spark, tmp_path):
    paths = Paths(tmp_path)
    lake.replace(_decisions(spark, D[1:6]), paths, DEC, None)
    lake.replace(_responses(spark, [(f"r{i}{k}", "delivered", D[i + 1]) for i in range(1, 5) for k in range(3)]),
                 paths, "bronze.responses", None)
    lake.replace(_orders(spark, [("C10", D[3], D[3]), ("C13", D[3], D[3]), ("C30", D[5], D[5])]), paths, "bronze.orders", None)
    assert _night(spark, paths, D[5]) == ("full", 6)

    def deliver(day, responses=(), orders=(), holdout_of=None, closures=()):
        lake.replace(_decisions(spark, [day], holdout_of), paths, DEC, f"snapshot_date = '{day}'")
        lake.replace(_responses(spark, responses), paths, "bronze.responses", f"delivery_date = '{day}'")
        lake.replace(_orders(spark, orders), paths, "bronze.orders", f"delivery_date = '{day}'")
        lake.replace(_crm(spark, closures), paths, "bronze.crm_profile", f"delivery_date = '{day}'")

    # D6: open D4..D6; a late opt-out names a decision of D3, a late-delivered order of D2 falls in D1's window, a
    # closure of D3 (C20's line, delivered late; no CRM table before) falls in D2's window (and D1's)
    deliver(D[6], [("r31", "opted_out", D[6]), ("r50", "delivered", D[6])], [("C11", D[2], D[6]), ("C61", D[6], D[6])],
            closures=[("C20", D[3], D[6])])
    assert _night(spark, paths, D[6]) == ("step", 6)
    assert lake.read(spark, paths, rebuild.OUTCOMES).where("contact_ref = 'r31'").first()["opted_out"]
    assert lake.read(spark, paths, rebuild.OUTCOMES).where("contact_ref = 'r11'").first()["converted"]
    assert lake.read(spark, paths, rebuild.OUTCOMES).where("contact_ref = 'r20'").first()["closed"]
    # D7: the decisions of D4 rewritten (a rerun of its score stage: C40 held out instead) -> D4 and the open D5..D7
    lake.replace(_decisions(spark, [D[4]], {"C40": "holdout"}), paths, DEC, f"snapshot_date = '{D[4]}'")
    deliver(D[7], [("r60", "opened", D[7])], [("C71", D[7], D[7])])
    assert _night(spark, paths, D[7]) == ("step", 4)
    # D8: the responses delivered on D6 rewritten (a reopened day): what it removed cannot be traced -> every date
    lake.replace(_responses(spark, [("r50", "delivered", D[6])]), paths, "bronze.responses", f"delivery_date = '{D[6]}'")
    deliver(D[8], [("r70", "clicked", D[8])])
    assert _night(spark, paths, D[8]) == ("full", 6)
    assert not lake.read(spark, paths, rebuild.OUTCOMES).where("contact_ref = 'r31'").first()["opted_out"]
    # (a rerun of the same night, and --full: every date, by the plan above; tests/test_warmup.py compares a step
    # with --full on the pipeline's own data)
    reasons = {r["eval_date"]: (r["method"], r["reason"]) for r in lake.read(spark, paths, rebuild.LOG).collect()}
    assert reasons[D[6]] == ("step", f"step from the evaluation of {D[5]}; 3 older dates named by what was delivered since")
    assert reasons[D[8]] == ("full", f"bronze.responses: the delivery of {D[6]} was rewritten since the evaluation of {D[7]}")
