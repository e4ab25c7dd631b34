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
    start's), uplift_notes only the cold starts (what fit_source shows); nothing before the first training."""
    from jobs.stages.cpc.inputs import uplift_notes, uplift_status

    paths = Paths(tmp_path)
    pdf, names = history_frame(n_days=30, per_day=400)
    fitted = um.train_family(pdf, names, settings(), 0.3, 14)
    cold = um.train_family(pdf.iloc[:0], names, settings(), 0.3, 14)
    reg = stage.registry(paths)
    um.save(reg, "data", AS_OF - dt.timedelta(days=8), cold, {})
    um.save(reg, "data", AS_OF - dt.timedelta(days=1), fitted, {})
    um.save(reg, "vas", AS_OF - dt.timedelta(days=1), cold, {})
    assert uplift_status(paths, AS_OF - dt.timedelta(days=9)) == {}
    assert uplift_notes(paths, AS_OF - dt.timedelta(days=2)) == {"data": "cold start: propensity (no matured outcomes)"}
    now = uplift_status(paths, AS_OF)
    assert now["data"].startswith("uplift: x_learner (n treated ") and now["vas"] == "cold start: propensity (no matured outcomes)"
    assert uplift_notes(paths, AS_OF) == {"vas": "cold start: propensity (no matured outcomes)"}


OUTCOME_COLS = ("snapshot_date date, customer_id string, campaign_id string, campaign_kind string, category string, "
                "outcome string, converted boolean, matured boolean, explored boolean")


def test_training_rows_take_exploration_contacts_against_holdouts_with_the_snapshot_of_the_decision(spark):
    """Spark: from gold.campaign_outcomes only matured offer decisions whose window closed by the as-of date: an
    explored contact is treated, a holdout member control (kept by its campaign's thinning draw: all of c1's, none
    of c2's, and c3's half exactly as Python draws it); chosen contacts, placements, not chosen, the global
    holdout, messages, other families and decisions without a tag snapshot are left out; the features are the
    snapshot of the decision's date, not a later one."""
    d, later = AS_OF - dt.timedelta(days=20), AS_OF - dt.timedelta(days=19)
    rows = [("A", "c1", "offer", "data", "contact", True, True, True), ("B", "c1", "offer", "data", "contact", True, True, False),
            ("C", "c1", "offer", "data", "holdout", False, True, False), ("D", "c2", "offer", "data", "holdout", True, True, False),
            ("E", "c1", "offer", "data", "placement", True, True, True), ("F", "c1", "offer", "data", "not_chosen", False, True, True),
            ("G", "c1", "offer", "data", "global_holdout", False, True, False), ("H", "c1", "offer", "data", "holdout", False, False, False),
            ("J", "c1", "message", "data", "contact", True, True, True), ("K", "c1", "offer", "vas", "holdout", False, True, False),
            ("L", "c1", "offer", "data", "contact", True, True, None), ("N", "c1", "offer", "data", "contact", True, True, True)]
    out = [(d, c, *r) for c, *r in rows]
    out += [(AS_OF - dt.timedelta(days=10), "I", "c1", "offer", "data", "contact", True, True, True),  # window still open
            (AS_OF - dt.timedelta(days=200), "M", "c1", "offer", "data", "holdout", False, True, False)]  # before history_days
    halves = [f"h{i}" for i in range(400)]
    out += [(d, c, "c3", "offer", "data", "holdout", False, True, False) for c in halves]
    outcomes = spark.createDataFrame(out, OUTCOME_COLS)
    snap = [(c, d, float(i), i) for i, c in enumerate("ABCDEFGHIJKLM")] + [("A", later, 99.0, 99)] + [(c, d, 0.0, 0) for c in halves]
    tags = spark.createDataFrame(snap, "customer_id string, snapshot_date date, f1 double, f2 int")
    pooled = spark.createDataFrame([("c1", "data", 1.0), ("c2", "data", 0.0), ("c3", "data", 0.5)],
                                   "campaign_id string, category string, keep double")
    got = stage.training_rows(outcomes, tags, pooled, ["f1", "f2"], AS_OF, 14, 180)
    assert got.columns == ["customer_id", "snapshot_date", "campaign_id", "category", "t", "y", "f1", "f2"]
    rows = {r["customer_id"]: r.asDict() for r in got.collect()}
    assert {c: (r["t"], r["y"], r["f1"]) for c, r in rows.items() if not c.startswith("h")} == {"A": (1, 1, 0.0), "C": (0, 0, 2.0)}
    kept = {c for c in rows if c.startswith("h")}
    want = {c for c in halves if campaign_conf.holdout_bucket(stage.THINNING_SALT, "c3", c) < campaign_conf.bucket_limit(0.5)}
    assert kept == want and 0.4 < len(kept) / len(halves) < 0.6


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
    from jobs.stages.cpc.inputs import uplift_notes

    pdf, features, as_of = _weekly_history()
    monkeypatch.setattr(stage, "history", lambda spark, paths, day, s, pooled: (pdf, features))
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
    assert uplift_notes(paths, as_of) == {f: "cold start: propensity (no matured outcomes)" for f in regs}


def test_weekly_training_reads_matured_rows_and_their_snapshots_from_the_lake(spark, tmp_path):
    """Spark: uplift.history reads gold.campaign_outcomes and gold.customer_tags as the training takes them: the
    same rows (cpc_daily keeps every control row), t and y as recorded, the features of each decision's snapshot,
    their types from the tag table, sorted by date and customer."""
    from jobs.platform import lake

    pdf, features, as_of = _weekly_history()
    paths = Paths(tmp_path)
    outcomes = pdf.assign(campaign_kind="offer", outcome=np.where(pdf["t"] == 1, "contact", "holdout"), explored=pdf["t"] == 1,
                          converted=pdf["y"] == 1, matured=True)
    cols = ["snapshot_date", "customer_id", "campaign_id", "campaign_kind", "category", "outcome", "converted", "matured", "explored"]
    lake.replace(spark.createDataFrame(outcomes[cols]), paths, "gold.campaign_outcomes", None)
    names = [n for n, _ in features]
    lake.replace(spark.createDataFrame(pdf.assign(msisdn_hash="x")[["customer_id", "snapshot_date", "msisdn_hash", *names]]),
                 paths, "gold.customer_tags", None)
    products, _, _, camps, policy = cpc.load_conf()
    got, feats = stage.history(spark, paths, as_of, settings(), stage.pooling_rows(products, camps, policy.exploration))
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
