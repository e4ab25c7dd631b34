"""The uplift models in the pipeline (jobs/stages/uplift.py, the CPC inputs): the campaigns pooled per family on
the shipped configuration, the registry's reasons as the decision reads them, the weekly training's registry and
report (Spark-free); the training rows built from gold.campaign_outcomes and the tag snapshots on inline rows,
what the weekly training reads from the lake, and the nightly scoring into gold.uplift (Spark)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from jobs.platform.config import Paths
from jobs.stages import cpc
from jobs.stages import uplift as stage
from jobs.stages.cpc import campaigns as campaign_conf
from models import uplift as um
from tests.test_uplift import history_frame, settings

AS_OF = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def conf():
    products, _, _, camps, policy = cpc.load_conf()
    return {"products": products, "camps": camps, "policy": policy}


def test_campaigns_pooled_per_family_on_the_shipped_configuration(conf):
    """Spark-free: every offer campaign's families, message campaigns left out; cpc_daily (5% holdout) sets the
    common propensity 0.02 / 0.07 wherever it offers, the 10% campaigns keep half their control rows."""
    fams = stage.families(conf["products"], conf["camps"])
    assert {"data", "vas", "games", "handset", "retention", "family", "roaming"} <= set(fams)
    rows = stage.pooling_rows(conf["products"], conf["camps"], conf["policy"].exploration)
    camps = {c.id: c for c in conf["camps"]}
    assert rows and {c for c, *_ in rows} <= {c.id for c in conf["camps"] if c.kind == "offer"}
    assert {f for _, f, *_ in rows} == set(fams)
    for camp, _, e, top, keep in rows:
        assert e == pytest.approx(um.design_propensity(camps[camp].holdout, 0.02))
        assert top == pytest.approx(0.02 / 0.07), "cpc_daily offers every family"
        assert keep == pytest.approx(1.0 if camp == "cpc_daily" else 0.5), camp
    assert stage.pooling_rows(conf["products"], conf["camps"], 0.0) == [], "no exploration: no treated arm, nothing to pool"


def test_the_decision_reads_the_registrys_reasons(tmp_path):
    """Spark-free: inputs.uplift_status gives each family's latest reason as of the day (a model's or a cold
    start's; nothing before the first training); the decision's notes (cold_start_ranking) give every offer family
    without a model a 'cold start:' reason, the registry's or 'never trained' (issue 22 review: a family never
    trained said only its propensity source before), and, once one family has a model, the incrementality factor."""
    from jobs.stages.cpc.inputs import cold_start_ranking, uplift_status

    paths = Paths(tmp_path)
    pdf, names = history_frame(n_days=30, per_day=400)
    fitted = um.train_family(pdf, names, settings(), 0.3, 14)
    cold = um.train_family(pdf.iloc[:0], names, settings(), 0.3, 14)
    reg = stage.registry(paths)
    um.save(reg, "data", AS_OF - dt.timedelta(days=8), cold, {})
    um.save(reg, "data", AS_OF - dt.timedelta(days=1), fitted, {})
    um.save(reg, "vas", AS_OF - dt.timedelta(days=1), cold, {})
    families = ["data", "games", "vas"]
    assert uplift_status(paths, AS_OF - dt.timedelta(days=9)) == {}
    assert cold_start_ranking(families, uplift_status(paths, AS_OF - dt.timedelta(days=9)), {}, 0.3) == (
        {f: "cold start: propensity (never trained)" for f in families}, {}), "before any training: every family says so"
    assert cold_start_ranking(families, uplift_status(paths, AS_OF - dt.timedelta(days=2)), {}, 0.3) == (
        {"data": "cold start: propensity (no matured outcomes)", "games": "cold start: propensity (never trained)",
         "vas": "cold start: propensity (never trained)"}, {})
    now = uplift_status(paths, AS_OF)
    assert now["data"].startswith("uplift: x_learner (n treated ") and now["vas"] == "cold start: propensity (no matured outcomes)"
    notes, factors = cold_start_ranking(families, now, {}, 0.3)
    assert notes == {"data": "no uplift score: propensity x 0.30 (assumed)", "games": "cold start: propensity x 0.30 (assumed) (never trained)",
                     "vas": "cold start: propensity x 0.30 (assumed) (no matured outcomes)"}
    assert factors == dict.fromkeys(families, 0.3)


def test_cold_start_ranking_uses_the_measured_incrementality_where_there_is_one():
    """Spark-free: with a model for data, a family the evaluation measured gets its factor (and says where from),
    the others the assumed one; without any model nobody gets a factor, measured or not."""
    from jobs.stages.cpc.inputs import cold_start_ranking

    status = {"data": "uplift: x_learner (n treated 900, control 2000)", "vas": "cold start: propensity (n treated 40 < 500)"}
    measured = {"vas": {"factor": 0.42, "eval_date": "2026-11-19"}}
    notes, factors = cold_start_ranking(["data", "games", "vas"], status, measured, 0.3)
    assert notes["vas"] == "cold start: propensity x 0.42 (measured, campaign_eval 2026-11-19) (n treated 40 < 500)"
    assert notes["games"] == "cold start: propensity x 0.30 (assumed) (never trained)"
    assert factors == {"data": 0.3, "games": 0.3, "vas": 0.42}
    assert cold_start_ranking(["games", "vas"], {"vas": status["vas"]}, measured, 0.3) == (
        {"games": "cold start: propensity (never trained)", "vas": "cold start: propensity (n treated 40 < 500)"}, {})


def test_measured_incrementality_is_the_evaluations_effect_on_the_treated_over_their_rate():
    """Spark-free: models.uplift.measured_incrementality reads the evaluation's counts as jobs.stages.evaluate's
    three-way reading does (effect on the treated and its interval equal), then / the treated conversion rate,
    within [0, 1]; None where the interval holds zero, a group is empty or nobody treated converted."""
    from jobs.stages import evaluate

    counts = (4000, 600, 6000, 500, 1000, 60)  # treated, conv, not chosen, conv, holdout, conv
    got = um.measured_incrementality(*counts)
    tw = evaluate.three_way(evaluate.Group(4000, 600), evaluate.Group(6000, 500), evaluate.Group(1000, 60), evaluate.Group(0, 0))
    assert got["effect"] == pytest.approx(tw["effect_on_treated"]) and got["low"] == pytest.approx(tw["effect_low"])
    assert got["high"] == pytest.approx(tw["effect_high"]) and got["low"] > 0
    assert got["rate_treated"] == pytest.approx(0.15) and got["factor"] == pytest.approx(tw["effect_on_treated"] / 0.15)
    assert 0 < got["factor"] < 1
    assert um.measured_incrementality(400, 60, 600, 50, 100, 6) is None, "ten times fewer: the interval holds zero"
    assert um.measured_incrementality(0, 0, 10, 1, 10, 1) is None and um.measured_incrementality(10, 0, 10, 1, 10, 1) is None
    harm = um.measured_incrementality(4000, 200, 6000, 300, 1000, 150)
    assert harm["high"] < 0 and harm["factor"] == 0.0, "a measured harm counts as no incremental conversion"


OUTCOME_COLS = ("snapshot_date date, customer_id string, campaign_id string, campaign_kind string, category string, "
                "product_id string, channel string, outcome string, expected_value double, converted boolean, matured boolean, "
                "explored boolean, active_eligible boolean")


def outcome_rows() -> list[dict]:
    """gold.campaign_outcomes rows by hand (issue 22 review: intent-to-treat arms). c1 and c3 pool into data (all of
    c1's control rows kept, half of c3's), c2's control rows are thinned away; c1's interval is 14 days."""
    d = AS_OF - dt.timedelta(days=20)

    def row(cust, outcome, *, day=d, camp="c1", kind="offer", cat="data", product="P1", channel="sms_push", ev=1.0, conv=False,
            matured=True, explored=False, eligible=True):
        return {"snapshot_date": day, "customer_id": cust, "campaign_id": camp, "campaign_kind": kind, "category": cat,
                "product_id": product, "channel": channel, "outcome": outcome, "expected_value": ev, "converted": conv,
                "matured": matured, "explored": explored, "active_eligible": eligible}

    x = {"explored": True}
    rows = [row("A", "contact", conv=True, **x), row("A", "placement", product="P2", channel="app", ev=2.0, **x),  # contacted
            row("B", "not_chosen", ev=0.5, **x),  # an explorer lost to capacity: treated, not contacted
            row("B2", "placement", product="P1", channel="web", ev=0.3, conv=True, **x), row("B2", "placement", product="P2", channel="app", ev=0.8, **x),
            row("C", "holdout", conv=True), row("D", "holdout", eligible=False), row("E", "contact", eligible=False, **x),
            row("F", "holdout", eligible=None), row("G", "global_holdout"), row("H", "contact"), row("J", "contact", kind="message", **x),
            row("K", "holdout", matured=False), row("L", "holdout", day=AS_OF - dt.timedelta(days=10)),
            row("M", "holdout", day=AS_OF - dt.timedelta(days=200)), row("V", "holdout", cat="vas"),
            row("N", "holdout", camp="c2"), row("N2", "contact", camp="c2", **x)]
    # one row per pair per 14 days: a holdout member eligible every day, an explorer held back 14 days by its contacts
    rows += [row("P", "holdout", day=AS_OF - dt.timedelta(days=60 - i)) for i in range(30)]
    rows += [row("Q", "contact", day=AS_OF - dt.timedelta(days=60 - i), **x) for i in (0, 14, 28)]
    rows += [row(f"h{i}", "holdout", camp="c3") for i in range(200)]
    return rows


KEEP = {("c1", "data"): 1.0, ("c2", "data"): 0.0, ("c3", "data"): 0.5}
INTERVALS = {"c1": 14, "c2": 14, "c3": 14}


def test_training_rows_by_hand_are_the_intent_to_treat_arms():
    """Spark-free (uplift.reference_rows, the Python twin of training_rows): exploration pairs with active_eligible,
    contacted or not, are treated (a contacted one's row is its contact, else its not-chosen record, else its best
    placement), holdout pairs with it control; one row per pair per 14 days in both arms; pairs not active-eligible
    (or unknown), the global holdout, chosen contacts, messages, immature or open windows, old dates and other
    families are left out; control rows are thinned by their campaign's pooling draw."""
    got = stage.reference_rows(outcome_rows(), KEEP, INTERVALS, AS_OF, 14, 180)
    by = {r["customer_id"]: r for r in got if not r["customer_id"].startswith(("h", "P", "Q"))}
    assert {c: (r["t"], r["contacted"], r["y"]) for c, r in by.items()} == {
        "A": (1, 1, 1), "B": (1, 0, 0), "B2": (1, 0, 0), "C": (0, 0, 1), "N2": (1, 1, 0)}
    d0 = AS_OF - dt.timedelta(days=60)
    want = [d0, d0 + dt.timedelta(days=14), d0 + dt.timedelta(days=28)]
    assert [r["snapshot_date"] for r in got if r["customer_id"] == "P"] == want == [r["snapshot_date"] for r in got if r["customer_id"] == "Q"]
    halves = {r["customer_id"] for r in got if r["customer_id"].startswith("h")}
    assert halves == {f"h{i}" for i in range(200)
                      if campaign_conf.holdout_bucket(stage.THINNING_SALT, "c3", f"h{i}") < campaign_conf.bucket_limit(0.5)}
    assert 0.35 < len(halves) / 200 < 0.65


def test_repeat_intervals_on_the_shipped_configuration(conf):
    """Spark-free: per offer campaign the longest its own contact holds a pair back: repeat_after_days, the cooldown
    after a decline (14) or the frequency window (7); message campaigns have none."""
    got = stage.repeat_intervals(conf["camps"], conf["policy"])
    camps = {c.id: c for c in conf["camps"]}
    assert set(got) == {c for c, x in camps.items() if x.kind == "offer"}
    assert got["cpc_daily"] == 14 and got["data_cap_alert"] == 14 and got["handset_upgrade"] == 30  # 14, 10 (the cooldown's 14), 30


def test_training_rows_take_the_intent_to_treat_arms_with_the_snapshot_of_the_decision(spark):
    """Spark: uplift.training_rows on the hand-written outcomes equals its Python twin (reference_rows) row for row,
    with the features of the tag snapshot of each decision's date (not a later one); a decision without a snapshot
    is left out."""
    rows = outcome_rows()
    outcomes = spark.createDataFrame([tuple(r.values()) for r in rows], OUTCOME_COLS)
    later = AS_OF - dt.timedelta(days=19)
    customers = sorted({(r["customer_id"], r["snapshot_date"]) for r in rows})
    snap = [(c, d, float(i), i) for i, (c, d) in enumerate(customers) if c != "C"] + [("A", later, 99.0, 99)]
    tags = spark.createDataFrame(snap, "customer_id string, snapshot_date date, f1 double, f2 int")
    pooled = spark.createDataFrame([(c, f, k) for (c, f), k in KEEP.items()], "campaign_id string, category string, keep double")
    got = stage.training_rows(outcomes, tags, pooled, INTERVALS, ["f1", "f2"], AS_OF, 14, 180)
    assert got.columns == ["customer_id", "snapshot_date", "campaign_id", "category", "t", "y", "contacted", "f1", "f2"]
    feats = {(c, d): float(i) for i, (c, d) in enumerate(customers)}
    want = [{**r, "f1": feats[(r["customer_id"], r["snapshot_date"])]} for r in stage.reference_rows(rows, KEEP, INTERVALS, AS_OF, 14, 180)
            if r["customer_id"] != "C"]
    keys = ("snapshot_date", "customer_id", "campaign_id", "category", "t", "contacted", "y", "f1")
    mine = sorted((tuple(r[k] for k in keys) for r in got.collect()), key=str)
    assert mine == sorted((tuple(r[k] for k in keys) for r in want), key=str) and len(mine) > 100


def test_nightly_scoring_writes_tau_per_customer_and_family_and_the_decision_reads_it(spark, tmp_path):
    """Spark: uplift.score with a model for data and a cold start for vas writes one gold.uplift row per customer
    for data (tau as the model predicts it on the driver), none for vas; inputs.uplift_scores turns them into the
    decision's family -> tau map; a day without a model writes nothing and the decision reads None."""
    from pyspark.sql import functions as F

    from jobs.platform import lake
    from jobs.stages.cpc.inputs import model_versions, uplift_scores

    paths = Paths(tmp_path)
    pdf, names = history_frame(n_days=30, per_day=400)
    fitted = um.train_family(pdf, names, settings(), 0.3, 14)
    feats = {"features": [{"name": n, "type": "double"} for n in names]}
    model = um.save(stage.registry(paths), "data", AS_OF - dt.timedelta(days=1), fitted, feats)
    um.save(stage.registry(paths), "vas", AS_OF - dt.timedelta(days=1), um.train_family(pdf.iloc[:0], names, settings(), 0.3, 14), feats)
    customers = pdf.iloc[:50].assign(snapshot_date=AS_OF, msisdn_hash="x")[["customer_id", "snapshot_date", "msisdn_hash", *names]]
    lake.replace(spark.createDataFrame(customers), paths, "gold.customer_tags", None)
    assert stage.score(spark, paths, AS_OF - dt.timedelta(days=2)) == {"models": {}, "cold_start": {}}
    assert uplift_scores(spark, paths, AS_OF) is None
    out = stage.score(spark, paths, AS_OF)
    assert out["models"] == {"data": model.version} and set(out["cold_start"]) == {"vas"} and out["customers"] == 50
    written = lake.read(spark, paths, "gold.uplift").where(F.col("snapshot_date") == F.lit(AS_OF))
    assert written.columns == [f.split()[0] for f in um.SCORE_SCHEMA.split(", ")]
    got = {r["customer_id"]: r.asDict() for r in written.collect()}
    assert len(got) == 50 and {r["category"] for r in got.values()} == {"data"}
    tau = fitted.model.predict(customers[names])
    assert np.allclose([got[c]["tau"] for c in customers["customer_id"]], tau)
    wide = {r["customer_id"]: r["uplift_tau"] for r in uplift_scores(spark, paths, AS_OF).collect()}
    assert wide[customers["customer_id"].iloc[0]] == {"data": pytest.approx(tau[0])}
    assert model_versions(spark, paths, AS_OF, [])["uplift_data"] == model.version


def _weekly_history():
    """history_frame as cpc_daily's rows of the data family (cpc_daily keeps every control row), the as-of date
    when all 30 decision dates have matured, and the features with their types."""
    pdf, names = history_frame(n_days=30, per_day=400)
    pdf = pdf.assign(campaign_id="cpc_daily", category="data")
    return pdf, [(n, "double") for n in names], max(pdf["snapshot_date"]) + dt.timedelta(days=14)


def test_weekly_training_registers_each_family_and_writes_the_report(tmp_path, monkeypatch):
    """Spark-free (the rows as uplift.history returns them): uplift.train registers a model for the family with
    rows, fitted at the family's common propensity (cpc_daily's 0.02 / 0.07) with the pooling in its meta, and a
    cold start with its reason for every other family of the offer campaigns; the report names them all; the
    decision then reads the model's and the cold starts' reasons as of the date."""
    from jobs.stages.cpc.inputs import cold_start_ranking, uplift_status

    pdf, features, as_of = _weekly_history()
    monkeypatch.setattr(stage, "history", lambda spark, paths, day, s, pooled, intervals=None: (pdf, features))
    paths = Paths(tmp_path)
    regs = {r.family: r for r in stage.train(None, paths, as_of, settings())}
    products, _, _, camps, _ = cpc.load_conf()
    assert set(regs) == set(stage.families(products, camps))
    data = regs.pop("data")
    assert data.has_model and data.version.startswith(f"{as_of.isoformat()}-") and data.reason.startswith("uplift: ")
    assert data.meta["design_propensity"] == pytest.approx(0.02 / 0.07) == data.meta["propensity"]
    assert data.meta["pooled"]["cpc_daily"]["control_kept"] == pytest.approx(1.0)
    assert data.meta["window"]["treated_train"] > 0 and data.meta["report"] is not None
    assert all(not r.has_model and r.reason == "cold start: propensity (no matured outcomes)" for r in regs.values())
    report = (paths.reports / "models" / f"uplift_{as_of.isoformat()}.md").read_text()
    assert all(f"| {f} " in report for f in ("data", *regs)) and "## data" in report
    assert um.current(stage.registry(paths), "data", as_of).version == data.version
    notes, factors = cold_start_ranking(sorted(stage.families(products, camps)), uplift_status(paths, as_of), {}, 0.3)
    assert {f: notes[f] for f in regs} == {f: "cold start: propensity x 0.30 (assumed) (no matured outcomes)" for f in regs}
    assert notes["data"] == "no uplift score: propensity x 0.30 (assumed)" and set(factors) == set(notes)


def test_weekly_training_reads_matured_rows_and_their_snapshots_from_the_lake(spark, tmp_path):
    """Spark: uplift.history reads gold.campaign_outcomes and gold.customer_tags as the training takes them: the
    same rows (cpc_daily keeps every control row), t and y as recorded, the features of each decision's snapshot,
    their types from the tag table, sorted by date and customer."""
    from jobs.platform import lake

    pdf, features, as_of = _weekly_history()
    paths = Paths(tmp_path)
    outcomes = pdf.assign(campaign_kind="offer", outcome=np.where(pdf["t"] == 1, "contact", "holdout"), explored=pdf["t"] == 1,
                          converted=pdf["y"] == 1, matured=True, active_eligible=True, product_id="P1", channel="sms_push",
                          expected_value=1.0)
    cols = ["snapshot_date", "customer_id", "campaign_id", "campaign_kind", "category", "product_id", "channel", "outcome",
            "expected_value", "converted", "matured", "explored", "active_eligible"]
    lake.replace(spark.createDataFrame(outcomes[cols]), paths, "gold.campaign_outcomes", None)
    names = [n for n, _ in features]
    lake.replace(spark.createDataFrame(pdf.assign(msisdn_hash="x")[["customer_id", "snapshot_date", "msisdn_hash", *names]]),
                 paths, "gold.customer_tags", None)
    products, _, _, camps, policy = cpc.load_conf()
    got, feats = stage.history(spark, paths, as_of, settings(), stage.pooling_rows(products, camps, policy.exploration),
                               intervals=stage.repeat_intervals(camps, policy))
    assert feats == features and len(got) == len(pdf)
    want = pdf.sort_values(["snapshot_date", "customer_id"]).reset_index(drop=True)
    assert list(got["customer_id"]) == list(want["customer_id"])
    assert (got["t"].to_numpy() == want["t"].to_numpy()).all() and (got["y"].to_numpy() == want["y"].to_numpy()).all()
    assert np.allclose(got[names].to_numpy(), want[names].to_numpy())


def test_the_evaluation_window_is_read_once_for_the_evaluation_and_the_uplift_training():
    """Spark-free: the evaluate and uplift stages (which may not import each other) read conf/policy.yaml's
    evaluation section through one function of the CPC configuration, validated, errors naming file and field."""
    from jobs.platform.config import business
    from jobs.platform.errors import ConfigError
    from jobs.stages import evaluate

    assert stage.window_days() == evaluate.settings()["window_days"] == campaign_conf.evaluation_settings()["window_days"]
    raw = dict(business("policy"))
    assert campaign_conf.evaluation_settings({**raw, "evaluation": {"window_days": 7}}) == {"window_days": 7, "lookback_days": 28}
    with pytest.raises(ConfigError, match=r"^conf/policy\.yaml: evaluation\.window_days: "):
        campaign_conf.evaluation_settings({**raw, "evaluation": {"window_days": 0}})


def test_the_measured_incrementality_is_read_from_the_latest_evaluation_before_the_day(spark, tmp_path):
    """Spark: inputs.measured_incrementality sums gold.campaign_eval's campaign x product cells of the offer
    campaigns per family (a message campaign's cells and other levels left out), from the latest evaluation before
    the day (not the day's own: a rerun reads the same), and keeps the families whose effect interval excludes zero;
    uplift_ranking reads it only once a family has a model."""
    from jobs.platform import lake
    from jobs.stages.cpc.inputs import measured_incrementality, uplift_ranking

    products, _, _, camps, _ = cpc.load_conf()
    cat = {p.id: p.category for p in products}
    data = sorted(p for p, c in cat.items() if c == "data")[:2]
    vas = sorted(p for p, c in cat.items() if c == "vas")[0]
    message = next(c.id for c in camps if c.kind == "message")
    day = AS_OF

    def cell(eval_date, level, camp, product, counts):
        return (eval_date, level, camp, product, *counts)

    strong, weak = (2000, 300, 3000, 250, 500, 30), (200, 30, 300, 25, 50, 3)
    rows = [cell(day - dt.timedelta(days=1), "campaign,product", "cpc_daily", data[0], strong),
            cell(day - dt.timedelta(days=1), "campaign,product", "data_cap_alert", data[1], strong),
            cell(day - dt.timedelta(days=1), "campaign,product", "cpc_daily", vas, weak),
            cell(day - dt.timedelta(days=1), "campaign,product", message, data[0], (10**6, 10**6, 0, 0, 10, 0)),
            cell(day - dt.timedelta(days=1), "product", "*", data[0], (10**6, 10**6, 0, 0, 10, 0)),
            cell(day - dt.timedelta(days=2), "campaign,product", "cpc_daily", vas, strong),
            cell(day, "campaign,product", "cpc_daily", vas, strong)]
    schema = ("eval_date date, level string, campaign_id string, product_id string, treated bigint, conversions bigint, "
              "not_chosen bigint, not_chosen_conversions bigint, holdout bigint, holdout_conversions bigint")
    paths = Paths(tmp_path)
    lake.replace(spark.createDataFrame(rows, schema), paths, "gold.campaign_eval", None)
    got = measured_incrementality(spark, paths, day, products, camps)
    want = um.measured_incrementality(*[2 * v for v in strong])
    assert set(got) == {"data"} and got["data"]["factor"] == pytest.approx(want["factor"])
    assert got["data"]["eval_date"] == (day - dt.timedelta(days=1)).isoformat()
    notes, factors = uplift_ranking(spark, paths, day, products, camps, 0.3)
    assert factors == {} and notes["data"] == "cold start: propensity (never trained)", "no model: not read, not applied"
    pdf, names = history_frame(n_days=30, per_day=400)
    um.save(stage.registry(paths), "vas", day - dt.timedelta(days=1), um.train_family(pdf, names, settings(), 0.3, 14), {})
    notes, factors = uplift_ranking(spark, paths, day, products, camps, 0.3)
    assert factors["data"] == pytest.approx(want["factor"]) and factors["roaming"] == 0.3
    assert notes["data"] == f"cold start: propensity x {want['factor']:.2f} (measured, campaign_eval {(day - dt.timedelta(days=1)).isoformat()}) (never trained)"
