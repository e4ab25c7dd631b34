"""Evaluation: outcomes of decisions, lift over the holdout with its confidence interval (known answers), the
HTML report, and what the pipeline learns from responses (cooldown, customer-channel and product-channel fits)."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter

import pytest
from pyspark.sql import functions as F

from jobs.platform import lake
from jobs.platform.config import Paths
from jobs.stages import evaluate
from jobs.stages.evaluate import report

DAY = dt.date(2026, 11, 20)
D0 = DAY - dt.timedelta(days=20)  # decisions old enough to have matured (window 14 days)


def test_lift_known_answer():
    r = evaluate.lift(100, 10, 50, 2)
    half = 1.959964 * math.sqrt(0.1 * 0.9 / 100 + 0.04 * 0.96 / 50)
    assert r["rate_treated"] == pytest.approx(0.10) and r["rate_control"] == pytest.approx(0.04)
    assert r["lift"] == pytest.approx(0.06)
    assert r["lift_low"] == pytest.approx(0.06 - half) and r["lift_high"] == pytest.approx(0.06 + half)
    assert half == pytest.approx(0.080047, abs=1e-6)
    assert r["relative_lift"] == pytest.approx(1.5)
    assert evaluate.lift(100, 10, 0, 0)["lift"] is None, "no control group: no lift"


def test_mean_diff_known_answer():
    """Spark-free: the difference of two means from sizes, sums and sums of squares, with the unbiased variances."""
    a, b = [0.0, 30.0, 50.0, 0.0], [0.0, 30.0, 0.0]
    r = evaluate.mean_diff(4, sum(a), sum(x * x for x in a), 3, sum(b), sum(x * x for x in b))
    var_a = sum((x - 20.0) ** 2 for x in a) / 3  # mean 20
    var_b = sum((x - 10.0) ** 2 for x in b) / 2  # mean 10
    half = 1.959964 * math.sqrt(var_a / 4 + var_b / 3)
    assert r["diff"] == pytest.approx(10.0)
    assert r["low"] == pytest.approx(10.0 - half) and r["high"] == pytest.approx(10.0 + half)
    assert evaluate.mean_diff(0, 0.0, 0.0, 3, 30.0, 900.0) == {"diff": None, "low": None, "high": None}
    one = evaluate.mean_diff(1, 30.0, 900.0, 3, 30.0, 900.0)
    assert one["diff"] == pytest.approx(20.0) and one["low"] is None and one["high"] is None, "one decision: no variance"


# A cell with a known three-way answer: 40 treated (10 convert, 5 at 30 and 5 at 50), 60 eligible not chosen
# (1 converts, at 20), 50 in the campaign's holdout (2 convert, at 30), 20 in the global holdout (1 converts).
CELL = {"treated": (40, [30.0] * 5 + [50.0] * 5), "not_chosen": (60, [20.0]), "holdout": (50, [30.0] * 2),
        "global_holdout": (20, [30.0])}


def _group(name: str) -> evaluate.Group:
    n, prices = CELL[name]
    return evaluate.Group(n, len(prices), sum(prices), sum(p * p for p in prices))


def _hand_cell() -> dict:
    """CELL's three-way reading worked out by hand (the formulas of docs/evaluation.md)."""
    z = 1.959964
    itt = 11 / 100 - 2 / 50  # eligible 100 with 11 conversions against the holdout
    itt_half = z * math.sqrt(0.11 * 0.89 / 100 + 0.04 * 0.96 / 50)
    share = 40 / 100
    mean_e, mean_h = 420 / 100, 60 / 50  # revenue per eligible decision, per holdout decision
    var_e = (17400 - 100 * mean_e**2) / 99  # 5 x 900 + 5 x 2500 + 400
    var_h = (1800 - 50 * mean_h**2) / 49
    value_half = z * math.sqrt(var_e / 100 + var_h / 50)
    prog_half = z * math.sqrt((13 / 150) * (1 - 13 / 150) / 150 + 0.05 * 0.95 / 20)
    return {"treated_share": 0.4, "itt_lift": 0.07, "itt_lift_low": itt - itt_half, "itt_lift_high": itt + itt_half,
            "effect_on_treated": 0.175, "effect_low": (itt - itt_half) / share, "effect_high": (itt + itt_half) / share,
            "selection_gap": (10 / 40 - 2 / 50) - 0.175,  # naive lift 0.21
            "incremental_conversions_itt": 7.0, "incremental_conversions_itt_low": (itt - itt_half) / share * 40,
            "incremental_conversions_itt_high": (itt + itt_half) / share * 40,
            "incremental_value": 300.0, "incremental_value_low": (3.0 - value_half) / share * 40,
            "incremental_value_high": (3.0 + value_half) / share * 40,
            "programme_lift": 13 / 150 - 0.05, "programme_lift_low": 13 / 150 - 0.05 - prog_half,
            "programme_lift_high": 13 / 150 - 0.05 + prog_half}


def test_three_way_known_answer():
    """Spark-free: the twin on CELL equals the hand numbers: ITT 0.07 (0.11 eligible against 0.04 held out),
    treated share 0.4, effect on the treated 0.175, naive lift 0.21 of which 0.035 is selection, 7 incremental
    conversions, incremental value 300 (3.0 more revenue per eligible decision), programme lift 13/150 - 0.05."""
    got = evaluate.three_way(*[_group(g) for g in ("treated", "not_chosen", "holdout", "global_holdout")])
    want = _hand_cell()
    assert list(got) == list(evaluate.THREE_WAY)
    for k in evaluate.THREE_WAY:
        assert got[k] == pytest.approx(want[k]), k
    assert got["selection_gap"] == pytest.approx(0.035)


def test_three_way_empty_groups_give_none():
    """Spark-free: no holdout, no ITT and nothing built on it; no treated, no effect to scale (the ITT stays);
    no global holdout, no programme lift; nothing empty, nothing None."""
    g = evaluate.Group
    no_holdout = evaluate.three_way(g(40, 10, 400.0, 17400.0), g(60, 1, 20.0, 400.0), g(0, 0), g(0, 0))
    assert no_holdout["treated_share"] == pytest.approx(0.4)
    assert all(v is None for k, v in no_holdout.items() if k != "treated_share"), no_holdout
    no_treated = evaluate.three_way(g(0, 0), g(60, 1, 20.0, 400.0), g(50, 2, 60.0, 1800.0), g(20, 1))
    assert no_treated["treated_share"] == 0.0 and no_treated["itt_lift"] == pytest.approx(1 / 60 - 0.04)
    for k in ("effect_on_treated", "effect_low", "effect_high", "selection_gap", "incremental_conversions_itt",
              "incremental_value", "incremental_value_low"):
        assert no_treated[k] is None, k
    assert no_treated["programme_lift"] == pytest.approx(3 / 110 - 1 / 20)
    nobody = evaluate.three_way(g(0, 0), g(0, 0), g(0, 0), g(0, 0))
    assert all(v is None for v in nobody.values())
    full = evaluate.three_way(*[_group(x) for x in ("treated", "not_chosen", "holdout", "global_holdout")])
    assert all(v is not None for v in full.values())


def test_headline_reads_the_three_way():
    """Spark-free: the evaluate stage's figures and log words from the ``all`` cell."""
    assert evaluate.headline(None) == ({}, "no holdout to compare with yet")
    total = {"lift": 0.21, "lift_low": 0.05, "lift_high": 0.37, "rate_treated": 0.25, "rate_control": 0.04, "matured_share": 1.0,
             **evaluate.three_way(*[_group(x) for x in ("treated", "not_chosen", "holdout", "global_holdout")])}
    figures, text = evaluate.headline(total)
    assert figures["effect_on_treated"] == pytest.approx(0.175) and figures["incremental_value"] == pytest.approx(300.0)
    assert figures["contacts"] is None, "a reading the row lacks is None"
    assert "effect on the treated +0.1750 [" in text and "(selection gap +0.0350)" in text
    assert "incremental value +300.00 [" in text and "programme lift over the global holdout +0.0367 [" in text


DECISION_COLS = ("snapshot_date date, contact_ref string, customer_id string, campaign_id string, campaign_kind string, "
                 "product_id string, category string, channel string, channel_kind string, service_tier string, "
                 "lifecycle_stage string, expected_value double, outcome string, cost double")


def _decisions(spark, n_t: int, n_c: int, day: dt.date, campaign: str = "c1", start: int = 0):
    rows = []
    for k in range(n_t + n_c):
        out = "contact" if k < n_t else "holdout"
        rows.append((day, f"{campaign}{start + k:06d}", f"C{start + k:09d}", campaign, "offer", "P_X", "data",
                     "sms_push", "active", "T1", "growth", 1.0, out, 0.05))
    return spark.createDataFrame(rows, DECISION_COLS)


def _orders(spark, customers: list[tuple]):
    """Orders (customer, product, day[, price]); the price is 30 unless given."""
    return spark.createDataFrame(
        [(f"O{k}", c, dt.datetime.combine(d, dt.time(10)), p, "order", "agent", float(price[0]) if price else 30.0)
         for k, (c, p, d, *price) in enumerate(customers)],
        "order_id string, customer_id string, order_ts timestamp, product_id string, action string, channel string, price double")


@pytest.fixture(scope="module")
def known(spark):
    """100 contacts (10 convert in the window) and 50 holdout members (2 convert); noise that must not count:
    an order after the window, an order of another product, an order on the decision day itself."""
    dec = _decisions(spark, 100, 50, D0)
    conv = [(f"C{k:09d}", "P_X", D0 + dt.timedelta(days=3)) for k in range(10)]
    conv += [(f"C{k:09d}", "P_X", D0 + dt.timedelta(days=14)) for k in (100, 101)]  # holdout, last day of the window
    noise = [("C000000050", "P_X", D0 + dt.timedelta(days=15)), ("C000000051", "P_OTHER", D0 + dt.timedelta(days=2)),
             ("C000000052", "P_X", D0)]
    resp = spark.createDataFrame(
        [(f"c1{k:06d}", e) for k in range(100) for e in ("delivered", "opened")[: 1 + (k < 40)]] + [("c1000000", "accepted")],
        "contact_ref string, event string")
    out = evaluate.outcomes(dec, resp, _orders(spark, conv + noise), DAY, 14).localCheckpoint()
    ev = evaluate.evaluation(out, DAY).localCheckpoint()
    return out, ev


def test_outcomes_count_orders_of_the_offered_product_within_the_window(known):
    out, _ = known
    assert out.count() == 150
    assert out.where("converted").count() == 12
    assert out.where("group = 'treated' and converted").count() == 10
    assert out.where("customer_id in ('C000000050', 'C000000051', 'C000000052') and converted").count() == 0
    assert out.where("matured").count() == 150
    assert out.where("delivered").count() == 100 and out.where("opened").count() == 40 and out.where("accepted").count() == 1
    assert out.where("group = 'treated'").agg(F.sum("revenue")).first()[0] == pytest.approx(10 * 30.0)


def test_evaluation_lift_equals_the_known_answer(known):
    _, ev = known
    row = ev.where("level = 'all'").first()
    expected = evaluate.lift(100, 10, 50, 2)
    assert (row["contacts"], row["conversions"], row["holdout"], row["holdout_conversions"]) == (100, 10, 50, 2)
    for k in ("rate_treated", "rate_control", "lift", "lift_low", "lift_high", "relative_lift"):
        assert row[k] == pytest.approx(expected[k]), k
    assert row["cost"] == pytest.approx(5.0) and row["revenue"] == pytest.approx(300.0) and row["return"] == pytest.approx(295.0)
    assert row["significant"] is False, "the interval includes 0 at these sizes"
    cell = ev.where("level = 'campaign,channel,product,service_tier'").collect()
    assert len(cell) == 1 and cell[0]["campaign_id"] == "c1" and cell[0]["lift"] == pytest.approx(0.06)


def test_lift_is_significant_when_the_groups_are_large(spark):
    dec = _decisions(spark, 2000, 2000, D0)
    conv = [(f"C{k:09d}", "P_X", D0 + dt.timedelta(days=1)) for k in range(200)]  # treated 10%
    conv += [(f"C{k:09d}", "P_X", D0 + dt.timedelta(days=1)) for k in range(2000, 2040)]  # holdout 2%
    out = evaluate.outcomes(dec, spark.createDataFrame([], "contact_ref string, event string"), _orders(spark, conv), DAY, 14)
    row = evaluate.evaluation(out, DAY).where("level = 'all'").first()
    assert row["lift"] == pytest.approx(0.08) and row["significant"] is True and row["matured_share"] == 1.0
    assert row["incremental_conversions"] == pytest.approx(0.08 * 2000)


def test_young_decisions_give_an_interim_lift(spark):
    young = DAY - dt.timedelta(days=5)
    dec = _decisions(spark, 10, 10, young)
    conv = [(f"C{k:09d}", "P_X", young + dt.timedelta(days=1)) for k in range(10)] + [("C000000010", "P_X", young + dt.timedelta(days=2))]
    out = evaluate.outcomes(dec, spark.createDataFrame([], "contact_ref string, event string"), _orders(spark, conv), DAY, 14)
    assert out.where("matured").count() == 0 and out.where("days_observed = 5").count() == 20
    row = evaluate.evaluation(out, DAY).where("level = 'all'").first()
    assert row["conversions"] == 10 and row["holdout_conversions"] == 1
    assert row["lift"] == pytest.approx(0.9), "same decision date, same time to convert: comparable"
    assert row["matured_share"] == 0.0, "but flagged as interim: the window has not passed"


def test_global_holdout_rows_are_a_group_of_their_own_not_the_campaign_control(spark):
    """Decisions of the global holdout (outcome global_holdout, conf/policy.yaml) are group global_holdout in
    the outcomes, with their conversions; the lift's control stays the campaign's holdout: the known answer
    (100 contacts with 10 conversions against 50 holdout members with 2) holds with 30 global-holdout rows,
    5 of them converting, added. They are the programme lift's control: the 150 decisions outside the global
    holdout (12 conversions) against its 30 (5)."""
    glob = [(D0, f"g1{k:06d}", f"G{k:09d}", "c1", "offer", "P_X", "data", "sms_push", "active", "T1", "growth", 1.0,
             "global_holdout", 0.05) for k in range(30)]
    dec = _decisions(spark, 100, 50, D0).unionByName(spark.createDataFrame(glob, DECISION_COLS))
    conv = [(f"C{k:09d}", "P_X", D0 + dt.timedelta(days=3)) for k in range(10)]
    conv += [(f"C{k:09d}", "P_X", D0 + dt.timedelta(days=14)) for k in (100, 101)]
    conv += [(f"G{k:09d}", "P_X", D0 + dt.timedelta(days=2)) for k in range(5)]
    out = evaluate.outcomes(dec, spark.createDataFrame([], "contact_ref string, event string"), _orders(spark, conv), DAY, 14)
    out = out.localCheckpoint()
    assert {r["group"]: r["count"] for r in out.groupBy("group").count().collect()} == {
        "treated": 100, "holdout": 50, "global_holdout": 30}
    assert {r["outcome"] for r in out.where("group = 'global_holdout'").collect()} == {"global_holdout"}
    assert out.where("group = 'global_holdout' and converted").count() == 5
    row = evaluate.evaluation(out, DAY).where("level = 'all'").first()
    assert (row["contacts"], row["treated"], row["conversions"], row["holdout"], row["holdout_conversions"]) == (100, 100, 10, 50, 2)
    assert row["lift"] == pytest.approx(evaluate.lift(100, 10, 50, 2)["lift"])
    assert row["cost"] == pytest.approx(5.0) and row["revenue"] == pytest.approx(300.0)
    assert (row["global_holdout"], row["global_holdout_conversions"], row["not_chosen"]) == (30, 5, 0)
    programme = evaluate.lift(150, 12, 30, 5)
    assert row["programme_lift"] == pytest.approx(programme["lift"]) and row["programme_lift_low"] == pytest.approx(programme["lift_low"])
    assert row["treated_share"] == 1.0 and row["effect_on_treated"] == pytest.approx(row["lift"]), "nobody left unchosen: ITT = naive"


def _cell(spark, groups: list[tuple[str, int]], campaign: str = "c1", start: int = 0):
    """Decisions of one campaign on D0, ``groups`` = [(outcome, n), ...] in that order, customers numbered from
    ``start`` (C000000000 on)."""
    rows, k = [], start
    for outcome, n in groups:
        for _ in range(n):
            rows.append((D0, f"{campaign}{k:06d}", f"C{k:09d}", campaign, "offer", "P_X", "data", "sms_push", "active", "T1",
                         "growth", 1.0, outcome, 0.05))
            k += 1
    return spark.createDataFrame(rows, DECISION_COLS)


NO_RESPONSES = "contact_ref string, event string"


def test_outcomes_label_treated_holdout_not_chosen_and_global_holdout(spark):
    """Contacts and placements are treated; holdout, not_chosen and global_holdout decisions are groups of their
    own; only a contact costs anything."""
    dec = _cell(spark, [("contact", 2), ("placement", 1), ("holdout", 2), ("global_holdout", 1), ("not_chosen", 3)])
    out = evaluate.outcomes(dec, spark.createDataFrame([], NO_RESPONSES), _orders(spark, []), DAY, 14).collect()
    assert len(out) == 9
    assert {(r["outcome"], r["group"]) for r in out} == {("contact", "treated"), ("placement", "treated"), ("holdout", "holdout"),
                                                         ("global_holdout", "global_holdout"), ("not_chosen", "not_chosen")}
    assert Counter(r["group"] for r in out) == {"treated": 3, "holdout": 2, "global_holdout": 1, "not_chosen": 3}
    assert sum(r["cost"] for r in out) == pytest.approx(0.10) and all(r["cost"] == 0 for r in out if r["outcome"] != "contact")


def test_outcomes_carry_the_exploration_flag_and_active_eligible(spark):
    """Spark (issue 22): gold.campaign_outcomes keeps each decision's explored flag and active_eligible (the uplift
    models' arms are the exploration and holdout pairs with it), before ``closed``, the last column; decisions recorded before
    the flags existed (no column, or null) read explored false and active_eligible null (unknown)."""
    from pyspark.sql import functions as F

    dec = _cell(spark, [("contact", 2), ("holdout", 2)])
    flagged = dec.withColumn("explored", F.when(F.col("customer_id") == "C000000000", F.lit(True))
                             .when(F.col("customer_id") == "C000000001", F.lit(None).cast("boolean")).otherwise(F.lit(False)))
    flagged = flagged.withColumn("active_eligible", F.when(F.col("customer_id") == "C000000003", F.lit(None).cast("boolean"))
                                 .otherwise(F.col("customer_id") != "C000000002"))
    none = spark.createDataFrame([], NO_RESPONSES)
    got = evaluate.outcomes(flagged, none, _orders(spark, []), DAY, 14)
    assert got.columns[-3:] == ["explored", "active_eligible", "closed"]
    assert {r["customer_id"]: (r["explored"], r["active_eligible"]) for r in got.collect()} == {
        "C000000000": (True, True), "C000000001": (False, True), "C000000002": (False, False), "C000000003": (False, None)}
    old = evaluate.outcomes(dec, none, _orders(spark, []), DAY, 14)
    assert old.columns == got.columns and not any(r["explored"] or r["active_eligible"] is not None for r in old.collect())


def test_three_way_reading_in_the_cube_equals_the_twin_and_the_hand_numbers(spark):
    """CELL (test_three_way_known_answer) as decisions and orders: every cell of the cube (one campaign, channel,
    product, tier: all levels hold the same decisions) has the counts, the unchanged naive lift and the three-way
    reading of the pure twin, which are the hand numbers."""
    dec = _cell(spark, [("contact", 40), ("not_chosen", 60), ("holdout", 50), ("global_holdout", 20)])
    day = D0 + dt.timedelta(days=3)
    conv = [(f"C{k:09d}", "P_X", day, 30.0 if k < 5 else 50.0) for k in range(10)]  # treated
    conv += [("C000000040", "P_X", day, 20.0), ("C000000100", "P_X", day, 30.0), ("C000000101", "P_X", day, 30.0),  # not chosen, holdout
             ("C000000150", "P_X", day, 30.0)]  # global holdout
    out = evaluate.outcomes(dec, spark.createDataFrame([], NO_RESPONSES), _orders(spark, conv), DAY, 14)
    rows = evaluate.evaluation(out, DAY).collect()
    assert len(rows) == 16, "every level of the cube over four dimensions"
    twin = evaluate.three_way(*[_group(g) for g in ("treated", "not_chosen", "holdout", "global_holdout")])
    hand = _hand_cell()
    for row in rows:
        counts = ("treated", "conversions", "not_chosen", "not_chosen_conversions", "holdout", "holdout_conversions",
                  "global_holdout", "global_holdout_conversions")
        assert tuple(row[k] for k in counts) == (40, 10, 60, 1, 50, 2, 20, 1), row["level"]
        assert row["lift"] == pytest.approx(0.21) and row["incremental_conversions"] == pytest.approx(0.21 * 40), "naive, unchanged"
        assert row["revenue"] == pytest.approx(400.0) and row["cost"] == pytest.approx(40 * 0.05)
        for k in evaluate.THREE_WAY:
            assert row[k] == pytest.approx(twin[k]), (row["level"], k)
            assert row[k] == pytest.approx(hand[k]), (row["level"], k)


def _closures(spark, rows: list[tuple]):
    """bronze.crm_profile rows (customer, status, record date)."""
    return spark.createDataFrame(rows, "customer_id string, status string, record_date date")


def test_outcomes_mark_a_line_closed_within_the_window(spark):
    """A decision is ``closed`` when its customer's line has a ``closed`` record after the decision date, within the
    window and up to the run date (any such record: one sent again earlier or later does not hide it); not for a
    closure on the decision date itself, after the window, after the run date, a suspension, or without the CRM rows."""
    dec = _cell(spark, [("contact", 5), ("holdout", 2)])
    crm = _closures(spark, [("C000000000", "closed", D0 + dt.timedelta(days=1)),  # within: closed
                            ("C000000001", "closed", D0 + dt.timedelta(days=14)),  # the window's last day: closed
                            ("C000000002", "closed", D0),  # the decision date itself: not caused by it
                            ("C000000003", "closed", D0 + dt.timedelta(days=15)),  # after the window
                            ("C000000004", "suspended", D0 + dt.timedelta(days=2)),  # not a closure
                            ("C000000004", "closed", D0 - dt.timedelta(days=3)),  # a record before the decision ...
                            ("C000000004", "closed", D0 + dt.timedelta(days=6)),  # ... and one within: closed
                            ("C000000005", "closed", D0 + dt.timedelta(days=5)),  # a holdout member's closure
                            ("C000000005", "closed", D0 + dt.timedelta(days=30)),  # a later record of the same line
                            ("C000000006", "closed", DAY + dt.timedelta(days=1))])  # after the run date
    none = spark.createDataFrame([], NO_RESPONSES)
    got = evaluate.outcomes(dec, none, _orders(spark, []), DAY, 14, evaluate.closures_of(crm))
    assert {r["customer_id"] for r in got.collect() if r["closed"]} == {"C000000000", "C000000001", "C000000004", "C000000005"}
    assert evaluate.outcomes(dec, none, _orders(spark, []), D0, 14,
                             evaluate.closures_of(crm)).where("closed").count() == 0, "the run date D0: none yet"
    assert evaluate.outcomes(dec, none, _orders(spark, []), DAY, 14).where("closed").count() == 0, "no CRM rows: none known"


def test_the_closure_reading_in_the_cube_equals_its_twin_and_the_hand_numbers(spark):
    """The three-way reading of closures: 40 treated (4 closed), 60 not chosen (1), 50 holdout (1), 20 global holdout
    (0). Effect on the treated = ITT / treated share = (5/100 - 1/50) / 0.4 = 0.075, incremental closures 0.075 x 40
    = 3, with the ITT's interval scaled the same way; the conversion readings are untouched (no orders)."""
    dec = _cell(spark, [("contact", 40), ("not_chosen", 60), ("holdout", 50), ("global_holdout", 20)])
    closed = [0, 1, 2, 3, 40, 100]  # four treated, one not chosen, one holdout member
    crm = _closures(spark, [(f"C{k:09d}", "closed", D0 + dt.timedelta(days=4)) for k in closed])
    out = evaluate.outcomes(dec, spark.createDataFrame([], NO_RESPONSES), _orders(spark, []), DAY, 14, evaluate.closures_of(crm))
    rows = evaluate.evaluation(out, DAY).collect()
    twin = evaluate.closure_reading(evaluate.Group(40, 4), evaluate.Group(60, 1), evaluate.Group(50, 1), evaluate.Group(20, 0))
    z = 1.959964
    half = z * math.sqrt(0.05 * 0.95 / 100 + 0.02 * 0.98 / 50) / 0.4
    assert twin["closure_effect"] == pytest.approx(0.075) and twin["incremental_closures"] == pytest.approx(3.0)
    assert twin["closure_effect_low"] == pytest.approx(0.075 - half) and twin["incremental_closures_high"] == pytest.approx(40 * (0.075 + half))
    assert twin["programme_closure_lift"] == pytest.approx(6 / 150)
    for row in rows:
        assert (row["closures"], row["not_chosen_closures"], row["holdout_closures"], row["global_holdout_closures"]) == (4, 1, 1, 0)
        for k in evaluate.CLOSURE_READING:
            assert row[k] == pytest.approx(twin[k]), (row["level"], k)
        assert row["conversions"] == 0 and row["incremental_conversions_itt"] == pytest.approx(0.0)
    top = next(r for r in rows if r["level"] == "all").asDict()
    figures, text = evaluate.headline(top)
    assert figures["incremental_closures"] == pytest.approx(3.0) and "closures caused +3.0 [" in text


def _twin_at_30(row) -> dict:
    """The pure twin on a row's counts, every order at the price 30 (revenue 30 x conversions)."""
    def group(n, x):
        return evaluate.Group(row[n] or 0, row[x] or 0, 30.0 * (row[x] or 0), 900.0 * (row[x] or 0))

    return evaluate.three_way(group("treated", "conversions"), group("not_chosen", "not_chosen_conversions"),
                              group("holdout", "holdout_conversions"), group("global_holdout", "global_holdout_conversions"))


def test_empty_groups_give_nulls_not_errors(spark):
    """Campaign a has treated and not-chosen decisions only (no holdout, no global holdout): its treated share,
    and nulls for every reading that needs a control. Campaign b has no treated: its ITT and programme lift,
    no effect on the treated (nothing to scale). All campaigns together have every group: every reading. Each
    equals the pure twin."""
    dec = _cell(spark, [("contact", 40), ("not_chosen", 60)], campaign="a").unionByName(
        _cell(spark, [("not_chosen", 60), ("holdout", 50), ("global_holdout", 20)], campaign="b", start=1000))
    day = D0 + dt.timedelta(days=2)
    conv = [(f"C{k:09d}", "P_X", day) for k in (*range(8), 50, 1000, 1001, 1060, 1061, 1062, 1110)]
    out = evaluate.outcomes(dec, spark.createDataFrame([], NO_RESPONSES), _orders(spark, conv), DAY, 14)
    rows = {r["campaign_id"]: r.asDict() for r in evaluate.evaluation(out, DAY).where("level in ('campaign', 'all')").collect()}
    a, b, both = rows["a"], rows["b"], rows["*"]
    assert a["treated_share"] == pytest.approx(0.4)
    assert all(a[k] is None for k in evaluate.THREE_WAY if k != "treated_share"), a
    assert a["holdout"] == 0 and a["global_holdout"] == 0 and a["lift"] is None
    assert b["treated"] == 0 and b["treated_share"] == 0.0 and b["itt_lift"] == pytest.approx(2 / 60 - 3 / 50)
    assert b["effect_on_treated"] is None and b["selection_gap"] is None and b["incremental_value"] is None
    assert b["programme_lift"] == pytest.approx(5 / 110 - 1 / 20)
    assert all(both[k] is not None for k in evaluate.THREE_WAY)
    for row in (a, b, both):
        twin = _twin_at_30(row)
        for k in evaluate.THREE_WAY:
            assert (row[k] is None) == (twin[k] is None) and (twin[k] is None or row[k] == pytest.approx(twin[k])), (row["campaign_id"], k)


def test_report_is_one_html_page_with_its_charts(tmp_path, known):
    _, ev = known
    rows = [r.asDict() for r in ev.where(F.col("level").isin("all", "campaign", "channel", "campaign,channel")).collect()]
    trend = [{"snapshot_date": D0, "group": "treated", "n": 100, "x": 10}, {"snapshot_date": D0, "group": "holdout", "n": 50, "x": 2}]
    path = report.write(Paths(tmp_path), DAY, rows, trend, {"window_days": 14, "lookback_days": 28}, 3)
    text = path.read_text()
    assert path.name == "campaigns_2026-11-20.html" and (tmp_path / "reports" / "campaigns_latest.html").exists()
    assert text.count("<svg") >= 4 and "+6.00 pp" in text and "<script" not in text
    assert "3 of today's responses name no known decision" in text
    _assert_one_page_with_its_charts(text)


HEADINGS = ("Campaign evaluation as of 2026-11-20", "Response funnel", "Lift over the holdout by campaign (95% CI)",
            "Lift over the holdout by channel", "Targeting or contact: the three-way reading (95% CI)",
            "Conversion rate by decision date", "Trial funnel", "Campaign x channel", "All campaigns by channel")


def _assert_one_page_with_its_charts(text: str) -> None:
    """One HTML page, its four charts inline (matplotlib's SVG without the XML prologue), nothing fetched or run."""
    assert text.startswith("<!doctype html>") and text.count("<html") == 1 and text.rstrip().endswith("</html>")
    assert text.count("<svg") == 4 and text.count("</svg>") == 4 and "<?xml" not in text and "<!DOCTYPE svg" not in text
    for absent in ("<script", "<link", "<img", "src=", "@import"):
        assert absent not in text, absent
    for h in HEADINGS:
        assert h in text, h


def _plain_rows() -> list[dict]:
    """What the ``known`` fixture's evaluation gives the report, as plain dicts (no Spark): 100 contacts of c1 by
    sms_push with 10 conversions against 50 holdout members with 2; for the three-way reading also 60 eligible
    not chosen (1 conversion) and 20 global-holdout members (1), every order at 30."""
    g = evaluate.Group
    base = {"campaign_id": "c1", "channel": "sms_push", "contacts": 100, "placements": 0, "delivered": 100, "opened": 40,
            "clicked": 0, "accepted": 1, "conversions": 10, "revenue": 300.0, "cost": 5.0, "return": 295.0, "holdout": 50,
            "opted_out": 0, "complained": 0, "matured_share": 1.0, **evaluate.lift(100, 10, 50, 2),
            "treated": 100, "not_chosen": 60, "global_holdout": 20,
            **evaluate.three_way(g(100, 10, 300.0, 9000.0), g(60, 1, 30.0, 900.0), g(50, 2, 60.0, 1800.0), g(20, 1))}
    return [{**base, "level": "all", "campaign_id": "*", "channel": "*"}, {**base, "level": "campaign", "channel": "*"},
            {**base, "level": "channel", "campaign_id": "*"}, {**base, "level": "campaign,channel"}]


PLAIN_TREND = [{"snapshot_date": D0, "group": "treated", "n": 100, "x": 10}, {"snapshot_date": D0, "group": "holdout", "n": 50, "x": 2},
               {"snapshot_date": D0 + dt.timedelta(days=1), "group": "treated", "n": 80, "x": 6},
               {"snapshot_date": D0 + dt.timedelta(days=1), "group": "holdout", "n": 40, "x": 1}]
PLAIN_TRIALS = [{"status": "expired", "next_step": "win-back: cheaper bundle (trial_winback)", "trials": 1200, "manual": 1100,
                 "feedback": 900, "low_usage_nudge": 300, "expiry_sms": 1000, "expiry_call": None}]
SETTINGS = {"window_days": 14, "lookback_days": 28}


def test_report_from_plain_rows_is_one_page_and_the_same_bytes_twice(tmp_path):
    path = report.write(Paths(tmp_path), DAY, _plain_rows(), PLAIN_TREND, SETTINGS, 3, PLAIN_TRIALS)
    text = path.read_bytes()
    assert (tmp_path / "reports" / "campaigns_latest.html").read_bytes() == text
    assert not list((tmp_path / "reports").glob("*.tmp")), "written atomically: no temporary file left"
    assert report.render(DAY, _plain_rows(), PLAIN_TREND, SETTINGS, 3, PLAIN_TRIALS).encode("utf-8") == text
    page = text.decode("utf-8")
    _assert_one_page_with_its_charts(page)
    assert "lift +6.00 pp (95% CI -2.00 pp to +14.00 pp); 100% of the decisions have had the" in " ".join(page.split())
    assert "interim reading" not in page and "3 of today's responses name no known decision" in page
    assert "<td>1,200</td>" in page and "<td>300.00</td>" in page and "<td>10.00%</td>" in page and "<td>+6.00 pp</td>" in page
    assert "#59a14f" not in page and "#888888" in page, "the interval includes 0: grey, not green"
    # the three-way reading: eligible 160 (11 conversions) against the holdout's 0.04: ITT 0.02875, treated share
    # 0.625, effect on the treated 0.046 against the naive 0.06 (selection gap 0.014), 4.6 incremental conversions,
    # incremental value (330 / 160 - 60 / 50) / 0.625 x 100 = 138; programme 13 / 210 against 1 / 20
    flat = " ".join(page.split())
    assert "the contact's effect on the treated +4.60 pp" in flat and "against a naive lift of +6.00 pp, a selection gap of +1.40 pp" in flat
    assert "<td>62.50%</td>" in page and "+4.6 <span" in page and "+138.00 <span" in page
    assert "Programme lift over the global holdout (every campaign together): +1.19 pp" in flat


def test_report_escapes_what_it_is_given():
    rows = [{**r, "campaign_id": "<b>&co"} if r["level"] == "campaign" else r for r in _plain_rows()]
    page = report.render(DAY, rows, PLAIN_TREND, SETTINGS, 0)
    assert "<b>" not in page and "&lt;b&gt;&amp;co" in page


def test_an_empty_report_says_why_it_has_no_chart():
    page = report.render(DAY, [], [], SETTINGS, 0)
    assert "<svg" not in page and "<script" not in page
    for note in ("nothing to show yet", "no holdout to compare with yet: lift needs decisions of earlier days", "no decisions yet",
                 "no trial started in the last 60 days", "no eligible decisions to compare yet"):
        assert f'<p class="note">{note}</p>' in page, note
    assert "intent-to-treat). no holdout to compare with yet." in page
    assert report.render(DAY, [], [], SETTINGS, 0) == page


def test_lift_colours_follow_the_interval():
    assert report.lift_color(0.01, 0.05) == report.GREEN
    assert report.lift_color(-0.05, -0.01) == report.RED
    assert report.lift_color(-0.01, 0.05) == report.GREY


def test_what_the_pipeline_learns_from_responses(spark, tmp_path):
    """Declines and complaints start the cooldown; a customer's own opens scale their customer-channel fit."""
    from jobs.stages import cpc
    from jobs.stages.cpc import campaigns

    paths = Paths(tmp_path)
    ts = dt.datetime.combine(DAY - dt.timedelta(days=2), dt.time(10))
    rows = []
    for c, opened in (("C1", 4), ("C2", 0)):  # 4 deliveries each: C1 opened all, C2 none; C3 declined
        for k in range(4):
            rows.append((f"{c}{k}".ljust(20, "0"), c, ts, "sms_push", "delivered", None))
            if k < opened:
                rows.append((f"{c}{k}".ljust(20, "0"), c, ts, "sms_push", "opened", None))
    rows.append(("c3".ljust(20, "0"), "C3", ts, "outbound_call", "declined", None))
    resp = spark.createDataFrame(rows, "contact_ref string, customer_id string, event_ts timestamp, channel string, event string, order_id string")
    lake.replace(resp.withColumn("delivery_date", F.to_date("event_ts")).withColumn("_source_file", F.lit("r")), paths, "bronze.responses", None)
    empty_contacts = spark.createDataFrame([], "contact_id string, customer_id string, contact_ts timestamp, channel string, direction string, "
                                               "purpose string, duration_s int, resolved boolean, delivery_date date, _source_file string")
    lake.replace(empty_contacts, paths, "bronze.contacts", None)
    policy = campaigns.load_policy()
    got = {r["customer_id"]: r for r in cpc.history(spark, paths, DAY, policy, []).collect()}
    assert got["C3"]["days_since_decline"] == 2
    # channel open rate 4/8 = 0.5, prior strength 3: C1 (4 + 1.5) / 7 / 0.5 = 1.571; C2 1.5 / 7 / 0.5 = 0.429
    assert got["C1"]["cc_learned"]["sms_push"] == pytest.approx(5.5 / 7 / 0.5)
    assert got["C2"]["cc_learned"]["sms_push"] == pytest.approx(1.5 / 7 / 0.5)


def test_product_channel_success_is_relative_within_the_channel_kind():
    from jobs.stages.cpc import fits, load_conf

    products, channels, categories, _, _ = load_conf()
    data = next(p for p in products if p.id == "P_DATA_5G")
    history = {("P_DATA_5G", "app"): 500, ("P_DATA_5G", "sms_push"): 20, ("P_DATA_5G", "wechat"): 5}
    contacts = {"app": 1000, "sms_push": 1000, "wechat": 1000}
    fits = {r["channel"]: r for r in fits.product_channel_fits([data], channels, categories, history, contacts)}
    assert fits["app"]["success"] == pytest.approx(1.0)
    assert fits["sms_push"]["success"] == pytest.approx(1.0), "best active channel: compared with active channels only"
    assert fits["wechat"]["success"] == pytest.approx(0.25)
    assert fits["email"]["success_from_history"] is False and fits["email"]["success"] == fits["email"]["prior"]


@pytest.mark.e2e
def test_the_nightly_dag_evaluates_and_writes_the_report(sample, spark):
    """The DAG's last task: outcomes of the day's decisions, the evaluation cube, the trial funnel and the report."""
    paths, day = sample["paths"], sample["spec"].end_date
    on_day = F.col("snapshot_date") == F.lit(day)
    decided = lake.read(spark, paths, "gold.cpc_decisions").where(on_day).count()
    assert lake.read(spark, paths, "gold.campaign_outcomes").where(on_day).count() == decided
    # the first decision day has no decision of an earlier day to evaluate: the cube is empty, the table is there
    assert lake.exists(spark, paths, "gold.campaign_eval")
    assert lake.exists(spark, paths, "gold.trial_funnel")
    page = paths.reports / f"campaigns_{day.isoformat()}.html"
    assert page.exists() and "<svg" in page.read_text()
    from jobs.orchestration import summary
    from jobs.stages.cpc import funnel

    out = summary.summary(day)  # read without Spark (jobs/platform/arrow_lake.py): the same counts as Spark's
    assert out["campaign_report"] == str(page)
    assert out["evaluation"]["decision_days"] == 0, "the sample's one decision day has no outcome yet"
    from schemas import TABLES

    assert set(out["tables"]) == {n for n in TABLES if lake.exists(spark, paths, n)}
    for name, t in out["tables"].items():
        part = TABLES[name].partition_by[-1] if TABLES[name].partition_by else None
        df = lake.read(spark, paths, name)
        assert t["rows"] == (df.where(F.col(part) == F.lit(day)) if part else df).count(), name
    ledger = lake.read(spark, paths, "ops.ingest_ledger").where(F.col("delivery_date") == F.lit(day)).collect()
    assert {r["kind"]: r["rows_received"] for r in ledger} == {k: v["received"] for k, v in out["ingest"].items()}
    assert out["campaigns"] == funnel.short(funnel.tables(spark, paths, day)) and out["campaigns"]


def test_the_cube_from_the_finest_cells_equals_the_cube_over_every_decision(spark):
    """evaluation() rolls up the finest cells (campaign x channel x product x tier) instead of cubing every decision
    row: every cell of every level has the same figures as the one-step cube over the rows (a tier left null
    included), counts exactly, money and rates to rounding."""
    outcomes = ["contact", "placement", "holdout", "not_chosen", "global_holdout", "contact", "contact"]
    rows = []
    for k in range(420):
        campaign, channel, product = f"c{k % 3}", ("sms_push", "app")[k % 2], ("P_X", "P_Y")[(k // 2) % 2]
        tier = ("T1", "T2", None)[(k // 4) % 3]
        snapshot = D0 - dt.timedelta(days=k % 9)  # matured and young decisions
        rows.append((snapshot, f"r{k:05d}", f"C{k:09d}", campaign, "offer", product, "data", channel,
                     "active" if channel == "sms_push" else "passive", tier, "growth", 1.0, outcomes[k % 7], 0.05 * (k % 4)))
    dec = spark.createDataFrame(rows, DECISION_COLS)
    orders = [(f"C{k:09d}", ("P_X", "P_Y")[(k // 2) % 2], D0 + dt.timedelta(days=2), 10.0 + k % 13) for k in range(0, 420, 5)]
    resp = spark.createDataFrame([(f"r{k:05d}", e) for k in range(0, 420, 3) for e in ("delivered", "opened")[: 1 + (k % 2)]],
                                 "contact_ref string, event string")
    out = evaluate.outcomes(dec, resp, _orders(spark, orders), D0 + dt.timedelta(days=6), 14).localCheckpoint()
    one_step = out.cube(*evaluate.DIMS).agg(*evaluate._aggregates(), *[F.grouping(d).alias(f"_g_{d}") for d in evaluate.DIMS])
    reference, rolled_up = evaluate.figures(one_step, DAY), evaluate.evaluation(out, DAY)
    assert rolled_up.schema == reference.schema, "the same columns and types"
    want = {(r["level"], *[r[d] for d in evaluate.DIMS]): r.asDict() for r in reference.collect()}
    got = {(r["level"], *[r[d] for d in evaluate.DIMS]): r.asDict() for r in rolled_up.collect()}
    assert got.keys() == want.keys() and len(got) > 100
    assert any(k[-1] == "(none)" for k in got), "a null tier is a cell of its own"
    for key, row in got.items():
        for col, value in row.items():
            if isinstance(value, float):
                assert value == pytest.approx(want[key][col], rel=1e-9, abs=1e-12), (key, col)
            else:
                assert value == want[key][col], (key, col)


def test_the_day_s_campaign_eval_rows_without_spark_are_what_spark_s_query_gave(spark, tmp_path):
    """The day's campaign_eval rows of the report's levels, read in the process (``arrow_lake``, every column),
    equal the Spark query they replace, the columns in the table's order."""
    import pyarrow.dataset as ds
    from pyspark.sql import types as T

    from jobs.platform import arrow_lake
    from schemas import TABLES
    from schemas.types import spark as spark_type

    fields = [T.StructField(c.name, spark_type(c.type), True) for c in TABLES["gold.campaign_eval"].columns]
    levels = ["all", "campaign", "channel", "campaign,channel", "product", "tier"]
    ev = [{"eval_date": DAY - dt.timedelta(days=k % 2), "level": levels[k % len(levels)], "campaign_id": f"c{k}",
           "contacts": k, "lift": k / 7, "significant": k % 3 == 0, "roi": None} for k in range(14)]
    paths = Paths(tmp_path)
    lake.replace(spark.createDataFrame([tuple(r.get(f.name) for f in fields) for r in ev], T.StructType(fields)), paths,
                 "gold.campaign_eval", None)
    spark_rows = [r.asDict() for r in lake.read(spark, paths, "gold.campaign_eval").where(f"eval_date = '{DAY}'").where(
        F.col("level").isin(*levels[:4])).collect()]
    got = arrow_lake.read(paths, "gold.campaign_eval", None, DAY, ds.field("level").isin(levels[:4]))
    assert sorted(got, key=lambda r: r["campaign_id"]) == sorted(spark_rows, key=lambda r: r["campaign_id"]) and len(got) == 5
    assert [list(r) for r in got] == [list(r) for r in spark_rows], "the columns in the table's order"
