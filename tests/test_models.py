"""Propensity models: point-in-time training sets, reproducible training, the registry's feature contract,
distributed scoring with reason codes, and the CPC fits taking the scores.

One small operator of its own (1,500 customers, 24 days) so that short label windows have positives; the
model settings are the shipped ones with a 5-day horizon, three snapshots three days apart and leaves of 40
customers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil

import pytest

from jobs.platform.config import Paths
from models import propensity as pm

END = dt.date(2026, 11, 20)
AS_OF = END - dt.timedelta(days=1)


@pytest.fixture(scope="module")
def model_settings():
    s = pm.load_settings()
    keep = [m for m in s.models if m.id in ("churn", "handset", "take_vas")]
    # A tiny operator: leaves of the shipped 200 customers would leave the trees almost nothing to split.
    return dataclasses.replace(s, horizon_days=5, step_days=3, snapshots=3, validation_snapshots=1, models=tuple(keep),
                               num_boost_round=60, early_stopping_rounds=10, params={**s.params, "min_data_in_leaf": 40})


@pytest.fixture(scope="module")
def lake_paths(spark, tmp_path_factory):
    """1,500 customers over 24 days, ingested and conformed."""
    from jobs.stages import conform, ingest
    from simulator.generate import SimSpec, generate

    paths = Paths(tmp_path_factory.mktemp("models-root"))
    # `easy`: a churn signal surely present, so the AUC check below tests the trainer, not the operator
    # (the realistic operator's model quality is in make run's model report).
    spec = SimSpec(customers=1500, days=24, end_date=END, seed=11, profile="easy")
    generate(paths, spec, progress=False)
    ingest.ingest(spark, paths, spec.dates())
    conform.run(spark, paths, spec.dates())
    return paths


@pytest.fixture(scope="module")
def trained(spark, lake_paths, model_settings):
    from jobs.stages import propensity

    return propensity.train(spark, lake_paths, AS_OF, model_settings)


def test_labels_count_events_in_the_window_after_the_snapshot_only(spark):
    from jobs.stages.propensity import label_frame

    t = dt.date(2026, 11, 10)
    ev = spark.createDataFrame(
        [("on_T", t), ("next_day", t + dt.timedelta(days=1)), ("last_day", t + dt.timedelta(days=5)),
         ("too_late", t + dt.timedelta(days=6)), ("before", t - dt.timedelta(days=1))],
        "customer_id string, event_date date",
    )
    rows = {r["customer_id"]: r["label_x"] for r in label_frame(spark, {"x": ev}, [t], 5).collect()}
    assert rows == {"next_day": 1, "last_day": 1}  # absent customers get 0 when joined to the snapshot


def test_every_model_trains_registers_and_reports(trained, lake_paths, model_settings):
    assert [r.model for r in trained] == ["churn", "handset", "take_vas"]
    for r in trained:
        meta = json.loads((r.path / "meta.json").read_text())
        assert meta["as_of"] == AS_OF.isoformat() and r.version.startswith(AS_OF.isoformat())
        assert meta["training_window"]["snapshots"] == ["2026-11-06", "2026-11-09", "2026-11-14"]
        assert meta["training_window"]["validation"] == ["2026-11-14"]
        assert len(meta["features"]) > 250 and all(f["type"] in pm.NUMERIC for f in meta["features"])
        assert meta["seed"] == model_settings.seed and len(meta["data_fingerprint"]) == 64
        assert meta["params"]["deterministic"] is True
        q = meta["metrics"]
        assert 0 <= q["roc_auc"] <= 1 and len(q["lift_by_decile"]) == 10 and len(q["calibration"]) == 10
        assert (r.path / "model.txt").exists() and (r.path / "validation.parquet").exists()
    assert (lake_paths.reports / "models" / f"{AS_OF.isoformat()}.md").exists()
    # The easy operator's churn signal (traffic fading before the line closes) is strong even on a tiny operator.
    assert trained[0].meta["metrics"]["roc_auc"] > 0.8


def test_training_is_reproducible(spark, trained, lake_paths, model_settings):
    from jobs.stages import propensity

    again = propensity.train(spark, lake_paths, AS_OF, model_settings)
    for first, second in zip(trained, again, strict=True):
        assert first.version == second.version
        assert first.meta["model_sha256"] == second.meta["model_sha256"]


def test_training_features_are_the_snapshot_at_T_only(spark, trained, lake_paths, model_settings):
    """A value recorded after T cannot enter T's features: the training row equals the tag snapshot at T,
    and an extreme usage day added after T changes neither."""
    from pyspark.sql import functions as F

    from jobs.platform import lake
    from jobs.stages import propensity, tags

    t = dt.date(2026, 11, 14)
    frame, features = propensity.training_frame(spark, lake_paths, model_settings, AS_OF)
    names = [n for n, _ in features]
    before = frame.where(F.col("snapshot_date") == F.lit(t)).select("customer_id", *names)
    snapshot = lake.read(spark, lake_paths, "gold.customer_tags").where(F.col("snapshot_date") == F.lit(t))
    assert before.exceptAll(snapshot.select("customer_id", *names)).count() == 0
    daily = lake.read(spark, lake_paths, "silver.customer_day")
    who = daily.where(F.col("day") == F.lit(t)).select("customer_id").orderBy("customer_id").first()[0]
    late = daily.where(F.col("customer_id") == who).limit(1).withColumn("day", F.lit(t + dt.timedelta(days=1))) \
        .withColumn("data_mb", F.lit(1e9)).withColumn("total_fee", F.lit(1e6))
    lake.replace(late, lake_paths, "silver.customer_day", f"day = '{t + dt.timedelta(days=1)}' AND customer_id = '{who}'")
    tags.run(spark, lake_paths, t, stats=False)
    after, _ = propensity.training_frame(spark, lake_paths, model_settings, AS_OF)
    after = after.where(F.col("snapshot_date") == F.lit(t)).select("customer_id", *names)
    assert before.exceptAll(after).count() == 0 and after.exceptAll(before).count() == 0


def test_nightly_scoring_is_distributed_and_explained(spark, trained, lake_paths, model_settings):
    import numpy as np
    from pyspark.sql import functions as F

    from jobs.platform import lake
    from jobs.stages import propensity, tags

    tags.run(spark, lake_paths, END, stats=False)
    out = propensity.score(spark, lake_paths, END, model_settings)
    assert out["models"] == {r.model: r.version for r in trained}
    scores = lake.read(spark, lake_paths, "gold.propensity").where(f"snapshot_date = '{END}'")
    n_customers = lake.read(spark, lake_paths, "gold.customer_tags").where(f"snapshot_date = '{END}'").count()
    assert scores.count() == n_customers * len(trained)
    sample = scores.where("model = 'churn'").orderBy("customer_id").limit(20).toPandas()
    assert sample["probability"].between(0, 1).all()
    assert all(len(f) == model_settings.reason_codes for f in sample["reason_features"])
    assert set(sample["band"]) <= {"high", "medium", "low"}
    # The same probabilities as LightGBM on the driver for these customers.
    churn = trained[0]
    feats = [n for n, _ in churn.features]
    rows = lake.read(spark, lake_paths, "gold.customer_tags").where(f"snapshot_date = '{END}'") \
        .where(F.col("customer_id").isin(list(sample["customer_id"]))).orderBy("customer_id").toPandas()
    import lightgbm as lgb

    local = lgb.Booster(model_str=churn.model_text()).predict(pm.matrix(rows, feats))
    assert np.allclose(local, sample["probability"].to_numpy())
    # Reason codes name the features that raised the score most.
    contrib = lgb.Booster(model_str=churn.model_text()).predict(pm.matrix(rows, feats), pred_contrib=True)[:, :-1]
    assert list(sample["reason_features"].iloc[0]) == [feats[i] for i in np.argsort(-contrib[0], kind="mergesort")[:3]]


def test_scoring_refuses_a_model_whose_features_do_not_match(spark, trained, lake_paths, model_settings):
    from jobs.stages import propensity

    churn = trained[0]
    meta = json.loads((churn.path / "meta.json").read_text())
    meta["as_of"] = END.isoformat()
    meta["features"][0] = {"name": "no_such_tag", "type": "double"}
    meta["features"][1]["type"] = "string"
    fake = churn.path.parent / f"{END.isoformat()}-mismatch"
    shutil.copytree(churn.path, fake)
    (fake / "meta.json").write_text(json.dumps(meta))
    try:
        with pytest.raises(pm.ModelMismatch, match=r"model churn .*missing from the tag table: no_such_tag.*type changed: "):
            propensity.score(spark, lake_paths, END, model_settings)
    finally:
        shutil.rmtree(fake)


def test_scoring_a_past_date_uses_the_model_of_that_date(trained, lake_paths):
    from jobs.stages.propensity import registry

    assert pm.current(registry(lake_paths), "churn", AS_OF - dt.timedelta(days=1)) is None
    assert pm.current(registry(lake_paths), "churn", END).version == trained[0].version


def test_cpc_customer_product_fit_takes_the_propensity_decile(spark, trained, lake_paths):
    from pyspark.sql import functions as F

    from jobs.stages import cpc, segments
    from jobs.stages.cpc import fits

    segments.run(spark, lake_paths, END)
    products, _, _, camps, policy = cpc.load_conf()
    frame = cpc.inputs(spark, lake_paths, END, products, policy, camps)
    assert "prop_take_vas_decile" in frame.columns
    music = next(p for p in products if p.id == "P_MUSIC")
    fit = frame.select("customer_id", "lifecycle_stage", "mkt_held_product_ids", "prop_take_vas_decile",
                       fits.product_fit(music, frame.columns).alias("fit"), fits.fit_source(music, frame.columns).alias("source"))
    row = fit.where(F.col("prop_take_vas_decile").isNotNull()).first()
    assert row["fit"] == pytest.approx(row["prop_take_vas_decile"] / 10.0)
    assert row["source"] == f"model take_vas decile {row['prop_take_vas_decile']}"


def test_metrics_against_known_answers():
    import numpy as np

    y = np.array([0, 0, 1, 1])
    assert pm.roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert pm.roc_auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert pm.pr_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx((1 + 2 / 3) / 2)
    q = pm.quality(np.array([0] * 90 + [1] * 10), np.linspace(0, 1, 100))
    assert q["lift_by_decile"][0]["lift"] == pytest.approx(10.0) and q["base_rate"] == pytest.approx(0.1)


@pytest.mark.parametrize("validation", [1, 2])
def test_no_training_label_falls_after_a_validation_snapshot(validation):
    """Purged time split: every training label window (T, T + horizon] ends on or before the oldest validation
    snapshot, and every label window ends by the as-of date."""
    s = dataclasses.replace(pm.load_settings(), snapshots=5, validation_snapshots=validation)
    as_of = dt.date(2026, 11, 19)
    dates = s.snapshot_dates(as_of)
    train, valid = dates[:-validation], dates[-validation:]
    horizon = dt.timedelta(days=s.horizon_days)
    assert len(train) == 5 - validation and len(set(dates)) == 5
    assert max(train) + horizon <= min(valid) and max(valid) + horizon == as_of


def test_the_sample_runs_have_the_history_training_needs():
    """`make run` (local) and the submit environment train the day before their first nightly run (the first
    warm-up day, ``sample.warmup_days`` before the last date; without a warm-up the last date): their samples must
    reach back from it to the oldest snapshot and 30 days of tag history behind it (104 days with conf/models.yaml)."""
    from jobs.platform.config import settings

    s = pm.load_settings()
    for env in ("local", "submit"):
        cfg = settings(env)
        warmup = int(cfg.sample.get("warmup_days", 0))
        as_of = cfg.sample_end_date - dt.timedelta(days=warmup + 1)
        assert s.history_days(as_of) == 104
        # deliveries up to as_of: the sample's days less the warm-up days and the last date
        assert int(cfg.sample["days"]) - warmup - 1 >= s.history_days(as_of), env
    assert int(settings("local").sample["warmup_days"]) == 2


def test_model_settings_are_checked():
    from jobs.platform.errors import ConfigError

    raw = {"horizon_days": 30, "snapshots": 3, "step_days": 7, "validation_snapshots": 1, "seed": 1, "max_train_rows": 10,
           "reason_codes": 3, "params": {}, "num_boost_round": 10, "early_stopping_rounds": 0, "bands": {"high": 9}}
    with pytest.raises(ConfigError, match="target kind 'weather'"):
        pm.load_settings({**raw, "models": [{"id": "m", "target": {"kind": "weather"}}]})
    with pytest.raises(ConfigError, match="needs product categories"):
        pm.load_settings({**raw, "models": [{"id": "m", "target": {"kind": "order"}}]})
    with pytest.raises(ConfigError, match="validation_snapshots"):
        pm.load_settings({**raw, "validation_snapshots": 3, "models": []})
