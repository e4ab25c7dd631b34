"""Training and nightly scoring of the propensity models (``conf/models.yaml``; logic in ``models.propensity``).

Training as of date A: the validation snapshot T = A - horizon (then every ``step_days`` back if there are more),
and the training snapshots one horizon before the oldest validation snapshot, then every ``step_days`` back
(``Settings.snapshot_dates``), so that no training label falls after a validation date. Features are the tag
snapshot at T (the tag engine uses only data up to T); labels are events in (T, T + horizon] read from the
operator's files: a CRM record closing the line, a device change, an order or trial of a product in the
model's categories. Early stopping uses a customer-hash sample of the training dates, so the validation
dates are never seen while fitting.

Scoring on date D: each model's newest version trained as of D or earlier scores the day's tag snapshot in
Spark (``mapInPandas`` over Arrow batches; the models are broadcast), writing ``gold.propensity``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

from tabulate import tabulate

from jobs.platform import arrow_lake, lake
from jobs.platform.config import Paths
from jobs.platform.errors import TrainingError
from jobs.stages import tags
from jobs.stages.tags import product_categories
from models import propensity as pm

log = logging.getLogger(__name__)


def registry(paths: Paths) -> Path:
    return paths.root / "models"


# ---------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------
def events(spark, paths: Paths, spec: pm.ModelSpec, upto: dt.date):
    """customer_id, event_date of every target event delivered up to ``upto``."""
    from pyspark.sql import functions as F

    upto_col = F.col("delivery_date") <= F.lit(upto)
    if spec.kind == "closure":
        df = lake.read(spark, paths, "bronze.crm_profile").where(upto_col & (F.col("status") == "closed"))
        return df.select("customer_id", F.col("record_date").alias("event_date"))
    if spec.kind == "device_change":
        return lake.read(spark, paths, "bronze.devices").where(upto_col).select("customer_id", F.col("change_date").alias("event_date"))
    wanted = [pid for pid, cat in product_categories().items() if cat in spec.categories]
    df = lake.read(spark, paths, "bronze.orders").where(
        upto_col & F.col("action").isin("order", "trial_start") & F.col("product_id").isin(wanted)
    )
    return df.select("customer_id", F.to_date("order_ts").alias("event_date"))


def label_frame(spark, events_by_model: dict[str, object], snapshots: list[dt.date], horizon: int):
    """Pure transform: events -> customer_id, snapshot_date, label_<model> (1 when an event falls in
    (T, T + horizon]; an event on T itself belongs to T's features, not its label)."""
    from pyspark.sql import functions as F

    snaps = spark.createDataFrame([(d,) for d in snapshots], "snapshot_date date")
    out = None
    for model, ev in events_by_model.items():
        hits = (
            ev.join(F.broadcast(snaps), (F.col("event_date") > F.col("snapshot_date"))
                    & (F.col("event_date") <= F.date_add(F.col("snapshot_date"), horizon)))
            .select("customer_id", "snapshot_date").distinct().withColumn(f"label_{model}", F.lit(1))
        )
        out = hits if out is None else out.join(hits, ["customer_id", "snapshot_date"], "full_outer")
    return out.fillna(0)


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------
def _check_data(spark, paths: Paths, as_of: dt.date, snapshots: list[dt.date]) -> None:
    from pyspark.sql import functions as F

    span = lake.read(spark, paths, "bronze.crm_profile").agg(F.min("delivery_date"), F.max("delivery_date")).first()
    first, last = span[0], span[1]
    if last is None or last < as_of:
        raise TrainingError(f"train as of {as_of}: labels need deliveries up to {as_of}, but the newest CRM delivery "
                            f"is {last}; ingest up to {as_of} first or train as of an earlier date")
    if snapshots[0] < first:
        raise TrainingError(f"train as of {as_of}: the oldest snapshot {snapshots[0]} is before the first delivery {first}; "
                            "load more history or lower `snapshots` / `step_days` in conf/models.yaml")
    if snapshots[0] < first + dt.timedelta(days=29):
        log.info(f"train: warning: the oldest snapshot {snapshots[0]} has less than 30 days of history (first delivery {first}); "
              "its 30-day windows and trends are incomplete")


def ensure_snapshots(spark, paths: Paths, days: list[dt.date]) -> None:
    """Compute the tag snapshots training needs that are not in gold.customer_tags yet, all in one pass
    (``tags.snapshots``: one frame and one commit for every missing date, not a tags stage per date)."""
    have = set()
    if lake.exists(spark, paths, "gold.customer_tags"):
        have = {r[0] for r in lake.read(spark, paths, "gold.customer_tags").where(lake.in_dates("snapshot_date", days))
                .select("snapshot_date").distinct().collect()}  # at most len(days) rows
    missing = sorted(set(days) - have)
    if missing:
        log.info(f"train: tag snapshots {', '.join(map(str, missing))} missing, computing them in one pass (tag "
                 "statistics skipped: `cpc tags` adds them)")
        tags.snapshots(spark, paths, missing)


def training_frame(spark, paths: Paths, s: pm.Settings, as_of: dt.date):
    """(Spark frame of features + labels over the snapshot dates, feature list)."""
    from pyspark.sql import functions as F

    snapshots = s.snapshot_dates(as_of)
    tags = lake.read(spark, paths, "gold.customer_tags").where(lake.in_dates("snapshot_date", snapshots))
    features = pm.feature_columns(tags.dtypes)
    labels = label_frame(spark, {m.id: events(spark, paths, m, as_of) for m in s.models}, snapshots, s.horizon_days)
    frame = tags.select("customer_id", "snapshot_date", *[F.col(n) for n, _ in features]).join(
        labels, ["customer_id", "snapshot_date"], "left"
    ).fillna(0, subset=[m.label for m in s.models])
    return frame, features


def _training_set(spark, paths: Paths, s: pm.Settings, as_of: dt.date, seed: int) -> dict:
    """The training set on the driver (bounded by ``max_train_rows``; scoring never collects) and its split:
    validation dates, an early-stopping sample of ~15% of the training dates' customers (a stable hash), the rest
    to fit."""
    t0 = time.time()
    snapshots = s.snapshot_dates(as_of)
    _check_data(spark, paths, as_of, snapshots)
    ensure_snapshots(spark, paths, snapshots)
    frame, features = training_frame(spark, paths, s, as_of)
    n = frame.count()
    if n > s.max_train_rows:
        frame = frame.sample(fraction=s.max_train_rows / n, seed=seed)
        log.info(f"train: {n} rows, sampling {s.max_train_rows} for the driver")
    pdf = frame.toPandas().sort_values(["snapshot_date", "customer_id"], kind="mergesort").reset_index(drop=True)
    log.info(f"train {as_of}: {len(pdf)} rows x {len(features)} features over snapshots {[d.isoformat() for d in snapshots]} "
             f"({time.time() - t0:.1f}s)")
    names = [n for n, _ in features]
    valid_dates = set(snapshots[-s.validation_snapshots:])
    is_valid = pdf["snapshot_date"].isin(valid_dates).to_numpy()
    bucket = pdf["customer_id"].map(lambda c: int.from_bytes(c.encode()[-4:], "big") * 2654435761 % 100).to_numpy()
    is_stop = ~is_valid & (bucket < 15)
    return {"pdf": pdf, "features": features, "names": names, "x": pm.matrix(pdf, names), "snapshots": snapshots,
            "valid_dates": valid_dates, "is_valid": is_valid, "is_stop": is_stop, "is_fit": ~is_valid & ~is_stop}


def _train_one(paths: Paths, m: pm.ModelSpec, d: dict, s: pm.Settings, as_of: dt.date, seed: int) -> pm.Registered:
    """Train, validate and register one model on the training set ``d``."""
    import lightgbm as lgb
    import numpy as np

    y = d["pdf"][m.label].to_numpy().astype(np.int8)
    x, names, is_fit, is_stop, is_valid = d["x"], d["names"], d["is_fit"], d["is_stop"], d["is_valid"]
    if y[is_fit].sum() == 0 or y[is_valid].sum() == 0:
        raise TrainingError(f"model {m.id}: no positive labels in the {'training' if y[is_fit].sum() == 0 else 'validation'} "
                            f"dates {sorted(x_.isoformat() for x_ in d['snapshots'])}; more history or customers are needed")
    t1 = time.time()
    booster, params = pm.train(x[is_fit], y[is_fit], x[is_stop], y[is_stop], names, s, seed)
    p_valid = booster.predict(x[is_valid])
    q = pm.quality(y[is_valid], p_valid)
    top = sorted(zip(names, booster.feature_importance("gain"), strict=True), key=lambda kv: -kv[1])[:15]
    meta = {
        "name": m.name, "as_of": as_of.isoformat(), "target": {"kind": m.kind, "categories": list(m.categories)},
        "horizon_days": s.horizon_days, "features": [{"name": n_, "type": t} for n_, t in d["features"]],
        "training_window": {"snapshots": [x_.isoformat() for x_ in d["snapshots"]],
                            "validation": sorted(x_.isoformat() for x_ in d["valid_dates"]),
                            "rows_fit": int(is_fit.sum()), "rows_early_stop": int(is_stop.sum()), "rows_validation": int(is_valid.sum())},
        "params": params, "num_boost_round": s.num_boost_round, "best_iteration": int(booster.best_iteration or booster.current_iteration()),
        "seed": seed, "lightgbm": lgb.__version__, "data_fingerprint": pm.fingerprint(x, y, names),
        "metrics": q, "deciles": pm.deciles(p_valid), "tag": m.tag,
        "top_features_by_gain": [{"feature": f, "gain": round(float(g), 3)} for f, g in top],
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    valid = d["pdf"].loc[is_valid, ["customer_id", "snapshot_date"]].assign(probability=p_valid, label=y[is_valid])
    reg = pm.save(registry(paths), m.id, as_of, booster, meta, valid)
    log.info(f"train {m.id}: ROC-AUC {q['roc_auc']:.3f}, PR-AUC {q['pr_auc']:.3f}, base rate {q['base_rate']:.3%}, "
          f"top-decile lift {q['lift_by_decile'][0]['lift']:.1f}, {meta['best_iteration']} trees -> {reg.path} "
          f"({time.time() - t1:.1f}s)")
    return reg


def train(spark, paths: Paths, as_of: dt.date, s: pm.Settings | None = None, seed: int | None = None) -> list[pm.Registered]:
    """Train, evaluate and register every model as of ``as_of``. Returns the registered versions."""
    t0 = time.time()
    s = s or pm.load_settings()
    seed = s.seed if seed is None else seed
    d = _training_set(spark, paths, s, as_of, seed)
    out = [_train_one(paths, m, d, s, as_of, seed) for m in s.models]
    report = write_report(paths, as_of, out)
    log.info(f"train {as_of}: {len(out)} models in {time.time() - t0:.1f}s; report {report}")
    return out


def _md(headers, rows) -> str:
    return tabulate(rows, headers, tablefmt="pipe", disable_numparse=True)


def write_report(paths: Paths, as_of: dt.date, regs: list[pm.Registered]) -> Path:
    """A markdown quality report per training run: metrics, lift and calibration by decile."""
    summary = [(r.model, r.version, r.meta["metrics"]["rows"], f"{r.meta['metrics']['base_rate']:.3%}",
                f"{r.meta['metrics']['roc_auc']:.3f}", f"{r.meta['metrics']['pr_auc']:.3f}",
                f"{r.meta['metrics']['lift_by_decile'][0]['lift']:.2f}", r.meta["best_iteration"]) for r in regs]
    lines = [f"# Propensity models trained as of {as_of}", "",
             _md(("model", "version", "rows (validation)", "base rate", "ROC-AUC", "PR-AUC", "top-decile lift", "trees"), summary)]
    for r in regs:
        q, window = r.meta["metrics"], r.meta["training_window"]
        deciles = [(lift["decile"], lift["customers"], lift["positives"], f"{lift['rate']:.3%}", f"{lift['lift']:.2f}",
                    f"{cal['mean_predicted']:.3%}") for lift, cal in zip(q["lift_by_decile"], q["calibration"], strict=True)]
        lines += ["", f"## {r.model}: {r.meta['name']}", "",
                  f"Snapshots {', '.join(window['snapshots'])}; validation on {', '.join(window['validation'])}; "
                  f"horizon {r.meta['horizon_days']} days.", "",
                  _md(("decile", "customers", "positives", "rate", "lift", "mean predicted"), deciles), "",
                  "Top features by gain: " + ", ".join(f"`{f['feature']}`" for f in r.meta["top_features_by_gain"][:8])]
    folder = paths.reports / "models"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{as_of.isoformat()}.md"
    out.write_text("\n".join(lines) + "\n")
    (folder / f"{as_of.isoformat()}.json").write_text(json.dumps({r.model: r.meta["metrics"] | {"version": r.version} for r in regs}, indent=2))
    return out


# ---------------------------------------------------------------------------------------------------------
# Nightly scoring
# ---------------------------------------------------------------------------------------------------------
def score(spark, paths: Paths, day: dt.date, s: pm.Settings | None = None) -> dict:
    """Score the day's tag snapshot with each model's version current on ``day`` -> gold.propensity."""
    from pyspark.sql import functions as F

    t0 = time.time()
    s = s or pm.load_settings()
    cond = f"snapshot_date = '{day.isoformat()}'"
    regs = [r for r in (pm.current(registry(paths), m.id, day) for m in s.models) if r is not None]
    if not regs:
        log.info(f"propensity {day}: no model trained as of {day} in {registry(paths)}; CPC uses the rule-based fits "
              "(train with `cpc train --date ...`)")
        if lake.exists(spark, paths, "gold.propensity"):  # a rerun after models were removed leaves no stale scores
            empty = spark.createDataFrame([], pm.SCORE_SCHEMA)
            lake.replace(empty, paths, "gold.propensity", cond)
        return {}
    tags = lake.read(spark, paths, "gold.customer_tags").where(cond)
    fields = tags.dtypes
    for r in regs:
        pm.check_features(r.features, fields, f"{r.model} {r.version}")
    needed = sorted({n for r in regs for n, _ in r.features})
    payload = [
        {"model": r.model, "version": r.version, "key": f"{r.model}/{r.version}/{r.meta['model_sha256']}",
         "text": spark.sparkContext.broadcast(r.model_text()), "features": [n for n, _ in r.features],
         "deciles": r.meta["deciles"]}
        for r in regs
    ]
    scored = tags.select("customer_id", "snapshot_date", *[F.col(n) for n in needed]).mapInPandas(
        pm.scorer(payload, s.reason_codes, s.bands), pm.SCORE_SCHEMA
    )
    lake.replace(scored, paths, "gold.propensity", cond)
    written = lake.read(spark, paths, "gold.propensity").where(cond)
    bands = {(r["model"], r["band"]): r["n"] for r in written.groupBy("model", "band").agg(F.count("*").alias("n")).collect()}  # models x 3
    customers = written.select("customer_id").distinct().count()
    secs = time.time() - t0
    log.info(f"propensity {day}: {len(regs)} models x {customers} customers -> gold.propensity ({secs:.1f}s); "
          + "; ".join(f"{r.model} {r.version} high {bands.get((r.model, 'high'), 0)}" for r in regs))
    return {"models": {r.model: r.version for r in regs}, "customers": customers, "seconds": round(secs, 1)}


def wide(spark, paths: Paths, day: dt.date, model_ids: list[str]):
    """One row per customer: prop_<model>_p and prop_<model>_decile (for the CPC fits), or None without scores."""
    from pyspark.sql import functions as F

    if not arrow_lake.rows(paths, "gold.propensity", day):  # no table (None) or no row of the date; no Spark job
        return None
    scores = lake.read(spark, paths, "gold.propensity").where(f"snapshot_date = '{day.isoformat()}'")
    return scores.groupBy("customer_id").pivot("model", model_ids).agg(
        F.first("probability").alias("p"), F.first("decile").alias("decile")
    ).select("customer_id", *[F.col(f"{m}_{k}").alias(f"prop_{m}_{k}") for m in model_ids for k in ("p", "decile")])
