"""Uplift models in the pipeline (docs/models.md, "Uplift models"): training rows from gold.campaign_outcomes, the
weekly training and its registry (run by the `train` stage after the propensity models), and the nightly scoring
into gold.uplift (run by the `propensity` stage after the propensity scores). The learners, the registry's files
and the batch scoring function are models/uplift.py (no Spark); the CPC decision reads gold.uplift and the
registry's cold-start reasons (jobs/stages/cpc/inputs.py).

The arms. Treated (``t`` = 1): the contacts of an offer campaign's exploration bucket (outcome ``contact``,
``explored``; conf/policy.yaml ``exploration``). Control (``t`` = 0): the campaign's holdout members (outcome
``holdout``). Both buckets are drawn from the same eligible customers (past rules 1-11, outside the global
holdout) before the value rules, so ``P(t = 1) = exploration / (exploration + holdout)`` is known by design, per
campaign (models.uplift.design_propensity); a family's model pools its campaigns after thinning each campaign's
control rows to one common propensity (models.uplift.pooling). Chosen contacts (picked by expected value) and
placements are not in either arm: they are not random. The global holdout is left out: it is the programme's
control (no campaign at all), while the decision asks what this campaign's contact adds to everything else.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

from tabulate import tabulate

from jobs.platform import lake
from jobs.platform.config import Paths
from jobs.stages import cpc
from jobs.stages.cpc.campaigns import evaluation_settings
from jobs.stages.cpc.decide import holdout_bucket_col
from jobs.stages.propensity import registry
from models import propensity as pm
from models import uplift as um

log = logging.getLogger(__name__)

# The salt of the stable draw that thins a campaign's control rows (models.uplift.pooling): a customer's holdout
# rows of a campaign are all kept or all left out, independently of the holdout's own draw.
THINNING_SALT = "uplift-control"


def window_days() -> int:
    """The evaluation's outcome window (conf/policy.yaml ``evaluation.window_days``, read as the evaluation reads it:
    :func:`jobs.stages.cpc.campaigns.evaluation_settings`): a decision's outcome is final after it; the training's
    time split purges by it."""
    return evaluation_settings()["window_days"]


def families(products, camps) -> list[str]:
    """The product families an uplift model is trained for: those of the products the offer campaigns name."""
    by_id = {p.id: p.category for p in products}
    return sorted({by_id[pid] for c in camps if c.kind == "offer" for pid in c.products if pid in by_id})


def pooling_rows(products, camps, exploration: float) -> list[tuple[str, str, float, float, float]]:
    """Per offer campaign and family it offers: (campaign_id, category, e_c, e*, keep_c), the campaign's design
    propensity, the family's common one and the share of the campaign's control rows kept (models.uplift.pooling).
    Campaigns that cannot compare (no exploration, or no holdout) are left out. Pure."""
    by_id = {p.id: p.category for p in products}
    offered: dict[str, dict[str, float]] = {}
    for c in camps:
        if c.kind == "offer":
            for family in sorted({by_id[p] for p in c.products if p in by_id}):
                offered.setdefault(family, {})[c.id] = um.design_propensity(c.holdout, exploration)
    rows = []
    for family, e_by in sorted(offered.items()):
        top, keep = um.pooling(e_by)
        rows += [(camp, family, e_by[camp], top, k) for camp, k in keep.items()]
    return rows


# ---------------------------------------------------------------------------------------------------------
# Training rows
# ---------------------------------------------------------------------------------------------------------
def training_rows(outcomes, tags, pooled, features: list[str], as_of: dt.date, window: int, history_days: int):
    """Pure transform: gold.campaign_outcomes x tag snapshots -> the uplift training rows, one per matured
    decision of an offer campaign whose outcome window closed by ``as_of`` (decided within ``history_days``):
    treated (``t`` = 1, an exploration contact) or control (``t`` = 0, a holdout member kept by its campaign's
    thinning draw, ``keep``), ``y`` (converted within the window, intent-to-treat), the family (``category``), and
    the features of the tag snapshot the decision used (its ``snapshot_date``). ``pooled``: (campaign_id,
    category, keep), :func:`pooling_rows`; rows of any other campaign or family are left out."""
    from pyspark.sql import functions as F

    since = as_of - dt.timedelta(days=history_days)
    explored = F.coalesce(F.col("explored"), F.lit(False)) if "explored" in outcomes.columns else F.lit(False)
    treated = (F.col("outcome") == "contact") & explored
    done = outcomes.where(
        F.col("matured") & (F.col("campaign_kind") == "offer") & (treated | (F.col("outcome") == "holdout"))
        & (F.col("snapshot_date") > F.lit(since)) & (F.date_add(F.col("snapshot_date"), window) <= F.lit(as_of)))
    rows = done.select("snapshot_date", "customer_id", "campaign_id", "category", treated.cast("int").alias("t"),
                       F.col("converted").cast("int").alias("y"))
    rows = rows.join(F.broadcast(pooled.select("campaign_id", "category", "keep")), on=["campaign_id", "category"], how="inner")
    draw = holdout_bucket_col(THINNING_SALT, F.col("campaign_id"), F.col("customer_id"))
    rows = rows.where((F.col("t") == 1) | (draw < F.round(F.col("keep") * 10000))).drop("keep")
    snapshot = tags.select("customer_id", "snapshot_date", *[F.col(n) for n in features])
    return rows.join(snapshot, on=["customer_id", "snapshot_date"], how="inner")


def history(spark, paths: Paths, as_of: dt.date, s: um.Settings, pooled_rows: list) -> tuple:
    """(the training rows on the driver as pandas, sorted; the features with their types), or (None, []) before
    any outcome. At most ``max_train_rows`` rows (a seeded sample above); the nightly never collects customers."""
    from pyspark.sql import functions as F

    if not pooled_rows or not lake.exists(spark, paths, "gold.campaign_outcomes"):
        return None, []
    window = window_days()
    since, last = as_of - dt.timedelta(days=s.history_days), as_of - dt.timedelta(days=window)
    tags = lake.read(spark, paths, "gold.customer_tags").where(
        (F.col("snapshot_date") > F.lit(since)) & (F.col("snapshot_date") <= F.lit(last)))
    features = pm.feature_columns(tags.dtypes)
    pooled = spark.createDataFrame([(c, f, k) for c, f, _, _, k in pooled_rows], "campaign_id string, category string, keep double")
    frame = training_rows(lake.read(spark, paths, "gold.campaign_outcomes"), tags, pooled, [n for n, _ in features],
                          as_of, window, s.history_days)
    n = frame.count()
    if n > s.max_train_rows:
        frame = frame.sample(fraction=s.max_train_rows / n, seed=s.seed)
        log.info(f"train uplift: {n} rows, sampling {s.max_train_rows} for the driver")
    pdf = frame.toPandas().sort_values(["snapshot_date", "customer_id", "campaign_id", "category"], kind="mergesort")
    return pdf.reset_index(drop=True), features


# ---------------------------------------------------------------------------------------------------------
# Training and registry
# ---------------------------------------------------------------------------------------------------------
def _train_family(paths: Paths, family: str, pdf, features, s: um.Settings, as_of: dt.date, pooled_rows) -> um.Registered:
    """Train (or record the cold start of) one family and register it."""
    t0 = time.time()
    mine = [(camp, e, top, k) for camp, fam, e, top, k in pooled_rows if fam == family]
    e_star = mine[0][2] if mine else 0.0
    rows = pdf[pdf["category"] == family] if pdf is not None else None
    fitted = um.train_family(rows, [n for n, _ in features], s, e_star, window_days())
    meta = {"features": [{"name": n, "type": t} for n, t in features], "design_propensity": e_star,
            "pooled": {camp: {"propensity": e, "control_kept": k} for camp, e, _, k in mine}, "seed": s.seed,
            "params": s.params, "num_boost_round": s.num_boost_round, "purge_days": window_days(),
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if fitted.model is not None:
        import lightgbm as lgb

        meta["lightgbm"] = lgb.__version__
    reg = um.save(registry(paths), family, as_of, fitted, meta)
    q = fitted.report or {}
    log.info(f"train uplift {family}: {fitted.reason}; Qini {q.get('qini_coefficient', float('nan')):.3f}, "
             f"top 20% share {q.get('top20_share', float('nan')):.2f} -> {reg.path} ({time.time() - t0:.1f}s)")
    return reg


def train(spark, paths: Paths, as_of: dt.date, s: um.Settings | None = None) -> list[um.Registered]:
    """Train and register one uplift model per product family as of ``as_of`` (or its cold start, with the
    reason the decision shows); write the report. Returns the registered versions."""
    t0 = time.time()
    s = s or um.load_settings()
    products, _, _, camps, policy = cpc.load_conf()
    pooled = pooling_rows(products, camps, policy.exploration)
    pdf, features = history(spark, paths, as_of, s, pooled)
    regs = [_train_family(paths, f, pdf, features, s, as_of, pooled) for f in families(products, camps)]
    report = write_report(paths, as_of, regs)
    log.info(f"train uplift {as_of}: {sum(r.has_model for r in regs)} models, {sum(not r.has_model for r in regs)} cold starts "
             f"from {0 if pdf is None else len(pdf)} rows in {time.time() - t0:.1f}s; report {report}")
    return regs


def _fmt(v, spec: str) -> str:
    return "-" if v is None or v != v else format(v, spec)


def write_report(paths: Paths, as_of: dt.date, regs: list[um.Registered]) -> Path:
    """reports/models/uplift_<as-of>.md (and .json): per family its version or cold start, the training rows,
    and on the report dates the Qini coefficient, AUUC (against random), top 20% share and uplift by decile."""
    head = ("family", "version", "reason", "treated (train)", "control (train)", "report rows", "Qini", "AUUC (random)", "top 20%")
    summary = []
    for r in regs:
        q, w = r.meta.get("report") or {}, r.meta.get("window") or {}
        summary.append((r.family, r.version, r.reason, w.get("treated_train", 0), w.get("control_train", 0), w.get("rows_report", 0),
                        _fmt(q.get("qini_coefficient"), ".3f"), f"{_fmt(q.get('auuc'), '.4f')} ({_fmt(q.get('auuc_random'), '.4f')})",
                        _fmt(q.get("top20_share"), ".2f")))
    lines = [f"# Uplift models trained as of {as_of}", "",
             "Treated: exploration contacts; control: the campaigns' holdouts (docs/models.md). The report is on the newest "
             "matured decision dates, never trained on.", "", tabulate(summary, head, tablefmt="pipe", disable_numparse=True)]
    for r in regs:
        if (r.meta.get("report") or {}).get("uplift_by_decile"):
            dec = [(d["decile"], d["treated"], d["control"], _fmt(d["rate_treated"], ".3%"), _fmt(d["rate_control"], ".3%"),
                    _fmt(d["uplift"], "+.3%"), _fmt(d["mean_predicted"], "+.4f")) for d in r.meta["report"]["uplift_by_decile"]]
            lines += ["", f"## {r.family}", "", tabulate(dec, ("decile", "treated", "control", "rate treated", "rate control",
                                                              "uplift", "mean predicted"), tablefmt="pipe", disable_numparse=True)]
    folder = paths.reports / "models"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"uplift_{as_of.isoformat()}.md"
    out.write_text("\n".join(lines) + "\n")
    (folder / f"uplift_{as_of.isoformat()}.json").write_text(json.dumps(
        {r.family: {"version": r.version, "reason": r.reason, "report": r.meta.get("report"), "window": r.meta.get("window")}
         for r in regs}, indent=2, default=str))
    return out


# ---------------------------------------------------------------------------------------------------------
# Nightly scoring
# ---------------------------------------------------------------------------------------------------------
def _payload(spark, regs: list[um.Registered]) -> list[dict]:
    return [{"key": f"{r.family}/{r.version}", "family": r.family, "version": r.version, "learner": r.meta["learner"],
             "propensity": r.meta["propensity"], "features": [n for n, _ in r.features],
             "texts": spark.sparkContext.broadcast(r.texts()), "trees": r.meta["trees"]} for r in regs]


def score(spark, paths: Paths, day: dt.date, s: um.Settings | None = None) -> dict:
    """Score the day's tag snapshot with each family's uplift model current on ``day`` (``mapInPandas``, one
    LightGBM thread per task) -> gold.uplift. A family in cold start or never trained gets no rows: the decision
    ranks its offers by the propensity fit, as before."""
    from pyspark.sql import functions as F

    t0 = time.time()
    s = s or um.load_settings()
    cond = f"snapshot_date = '{day.isoformat()}'"
    latest = {f: um.current(registry(paths), f, day) for f in um.families(registry(paths))}
    regs = [r for r in latest.values() if r is not None and r.has_model]
    cold = {f: r.reason for f, r in latest.items() if r is not None and not r.has_model}
    if not regs:
        log.info(f"uplift {day}: no uplift model trained as of {day} ({len(cold)} families in cold start); the decision "
                 "ranks by the propensity fits")
        if lake.exists(spark, paths, "gold.uplift"):  # a rerun after models were removed leaves no stale scores
            lake.replace(spark.createDataFrame([], um.SCORE_SCHEMA), paths, "gold.uplift", cond)
        return {"models": {}, "cold_start": cold}
    tags = lake.read(spark, paths, "gold.customer_tags").where(cond)
    for r in regs:
        pm.check_features(r.features, tags.dtypes, f"{um.registry_name(r.family)} {r.version}")
    needed = sorted({n for r in regs for n, _ in r.features})
    scored = tags.select("customer_id", "snapshot_date", *[F.col(n) for n in needed]).mapInPandas(
        um.scorer(_payload(spark, regs)), um.SCORE_SCHEMA)
    lake.replace(scored, paths, "gold.uplift", cond)
    stats = lake.read(spark, paths, "gold.uplift").where(cond).groupBy("category").agg(
        F.count(F.lit(1)).alias("n"), F.sum((F.col("tau") < -s.harm_margin).cast("long")).alias("harmed")).collect()  # a row a family
    log.info(f"uplift {day}: " + "; ".join(f"{r['category']} {r['n']} customers, {r['harmed']} harmed" for r in stats)
             + f" -> gold.uplift ({time.time() - t0:.1f}s)")
    return {"models": {r.family: r.version for r in regs}, "cold_start": cold,
            "customers": max((int(r["n"]) for r in stats), default=0), "seconds": round(time.time() - t0, 1)}
