"""Evaluation: outcomes of decisions, lift over the holdout with its confidence interval (known answers), the
HTML report, and what the pipeline learns from responses (cooldown, customer-channel and product-channel fits)."""

from __future__ import annotations

import datetime as dt
import math

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


def _orders(spark, customers: list[tuple[str, str, dt.date]]):
    return spark.createDataFrame(
        [(f"O{k}", c, dt.datetime.combine(d, dt.time(10)), p, "order", "agent", 30.0) for k, (c, p, d) in enumerate(customers)],
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
    5 of them converting, added. Comparing with them is the later three-way evaluation's work."""
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
            "Lift over the holdout by channel", "Conversion rate by decision date", "Trial funnel", "Campaign x channel",
            "All campaigns by channel")


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
    sms_push with 10 conversions against 50 holdout members with 2."""
    base = {"campaign_id": "c1", "channel": "sms_push", "contacts": 100, "placements": 0, "delivered": 100, "opened": 40,
            "clicked": 0, "accepted": 1, "conversions": 10, "revenue": 300.0, "cost": 5.0, "return": 295.0, "holdout": 50,
            "opted_out": 0, "complained": 0, "matured_share": 1.0, **evaluate.lift(100, 10, 50, 2)}
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


def test_report_escapes_what_it_is_given():
    rows = [{**r, "campaign_id": "<b>&co"} if r["level"] == "campaign" else r for r in _plain_rows()]
    page = report.render(DAY, rows, PLAIN_TREND, SETTINGS, 0)
    assert "<b>" not in page and "&lt;b&gt;&amp;co" in page


def test_an_empty_report_says_why_it_has_no_chart():
    page = report.render(DAY, [], [], SETTINGS, 0)
    assert "<svg" not in page and "<script" not in page
    for note in ("nothing to show yet", "no holdout to compare with yet: lift needs decisions of earlier days", "no decisions yet",
                 "no trial started in the last 60 days"):
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

    assert summary.summary(day)["campaign_report"] == str(page)
