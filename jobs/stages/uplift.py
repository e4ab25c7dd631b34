"""Uplift models in the pipeline (docs/models.md, "Uplift models"): training rows from gold.campaign_outcomes, the
weekly training and its registry (run by the `train` stage after the propensity models), and the nightly scoring
into gold.uplift (run by the `propensity` stage after the propensity scores). The learners, the registry's files
and the batch scoring function are models/uplift.py (no Spark); the CPC decision reads gold.uplift and the
registry's cold-start reasons (jobs/stages/cpc/inputs.py).

The arms (intent-to-treat; docs/models.md "Uplift models"). A (customer, campaign) of an offer campaign is
``active_eligible`` on a date when one of its active candidates passed the eligibility rules (1-11), which come
before both holdouts; the holdout and the exploration bucket (conf/policy.yaml ``exploration``, right above it) are
two buckets of one hash draw over those pairs. Treated (``t`` = 1): the exploration pairs with active_eligible,
contacted or not (``contacted`` says which); control (``t`` = 0): the holdout pairs with it. So ``P(t = 1) =
exploration / (exploration + holdout)`` is known by design per campaign (models.uplift.design_propensity), and
what the model learns is the effect of being in the exploration arm; its effect of a contact divides that by the
arm's contact rate (models.uplift.UpliftModel.effect). At most one row per pair per repeat interval
(:func:`repeat_intervals`, :func:`thinned`) in both arms: a contacted explorer is held back by its own contact for
about that long, a holdout member is not. A family's model pools its campaigns after thinning each campaign's
control rows to one common propensity (models.uplift.pooling). Chosen contacts and placements outside the
exploration bucket are in neither arm (not random). The global holdout is left out: it is the programme's control
(no campaign at all), while the decision asks what this campaign's contact adds to everything else.
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
from jobs.stages.cpc import campaigns as campaign_conf
from jobs.stages.cpc.campaigns import evaluation_settings
from jobs.stages.cpc.decide import holdout_bucket_col, literal_map
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
    """The product families an uplift model is trained for: those of the products the offer campaigns name
    (:func:`jobs.stages.cpc.campaigns.offer_families`, which the decision reads too)."""
    return campaign_conf.offer_families(products, camps)


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
# An exploration pair's records that stand for it on a date, the first found: its contact, else its not-chosen
# record (the offer it would have had first, ranked as a holdout member's), else its best placement. A holdout
# pair has one record.
EXPLORED_ORDER = {"contact": 0, "not_chosen": 1, "placement": 2}


def repeat_intervals(camps, policy) -> dict[str, int]:
    """Per offer campaign, the days between two training rows of one (customer, campaign) (:func:`thinned`): the
    longest its own contact can hold the pair's next active contact back, the campaign's ``repeat_after_days``,
    the cooldown after a decline or the frequency window (conf/policy.yaml). Pure."""
    return {c.id: max(int(c.repeat_after_days), int(policy.cooldown_days), int(policy.window_days)) for c in camps if c.kind == "offer"}


def arm_rows(outcomes, as_of: dt.date, window: int, history_days: int):
    """gold.campaign_outcomes -> one row per (snapshot_date, customer_id, campaign_id) of either arm, among the
    matured decisions of offer campaigns whose window closed by ``as_of`` (decided within ``history_days``) and
    whose pair was ``active_eligible`` (null, before the column existed: left out). Treated (``t`` = 1): an
    exploration pair, contacted or not (intent-to-treat); control (``t`` = 0): a holdout pair. ``contacted``: the
    pair had a contact that day; ``y``, ``category``: those of the record standing for it (:data:`EXPLORED_ORDER`;
    ties: expected value, product, channel)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    since = as_of - dt.timedelta(days=history_days)
    explored = F.coalesce(F.col("explored"), F.lit(False)) if "explored" in outcomes.columns else F.lit(False)
    eligible = F.coalesce(F.col("active_eligible"), F.lit(False)) if "active_eligible" in outcomes.columns else F.lit(False)
    arm = F.when(F.col("outcome") == "holdout", F.lit(0)).when(explored & F.col("outcome").isin(*EXPLORED_ORDER), F.lit(1))
    done = outcomes.withColumn("t", arm).where(
        F.col("matured") & (F.col("campaign_kind") == "offer") & eligible & F.col("t").isNotNull()
        & (F.col("snapshot_date") > F.lit(since)) & (F.date_add(F.col("snapshot_date"), window) <= F.lit(as_of)))
    pair_day = Window.partitionBy("snapshot_date", "customer_id", "campaign_id")
    order = F.coalesce(literal_map([(k, F.lit(v)) for k, v in EXPLORED_ORDER.items()])[F.col("outcome")], F.lit(0))
    ranked = done.withColumn("_r", F.row_number().over(pair_day.orderBy(order, F.col("expected_value").desc(), "product_id", "channel")))
    ranked = ranked.withColumn("contacted", F.max((F.col("outcome") == "contact").cast("int")).over(pair_day))
    return ranked.where("_r = 1").select("snapshot_date", "customer_id", "campaign_id", "category", "t", "contacted",
                                        F.col("converted").cast("int").alias("y"))


def thinned(rows, intervals: dict[str, int]):
    """At most one row per (customer, campaign) per interval (``intervals``: campaign -> days,
    :func:`repeat_intervals`; 0 where not named), in both arms alike: per pair, the earliest date, then each next
    date at least the interval after the last one kept (models.uplift.thin_dates, its Python twin). One array of
    dates per pair (column expressions: ``aggregate``), exploded back and joined."""
    from pyspark.sql import functions as F

    days = F.coalesce(literal_map([(c, F.lit(int(d))) for c, d in sorted(intervals.items())])[F.col("campaign_id")], F.lit(0)) \
        if intervals else F.lit(0)
    pairs = rows.groupBy("customer_id", "campaign_id").agg(F.array_sort(F.collect_list("snapshot_date")).alias("_dates"))
    start = F.struct(F.lit(None).cast("date").alias("last"), F.array().cast("array<date>").alias("kept"))

    def step(acc, d):
        take = F.coalesce(F.datediff(d, acc["last"]) >= days, F.lit(True))
        return F.when(take, F.struct(d.alias("last"), F.concat(acc["kept"], F.array(d)).alias("kept"))).otherwise(acc)

    kept = pairs.select("customer_id", "campaign_id", F.explode(F.aggregate("_dates", start, step)["kept"]).alias("snapshot_date"))
    return rows.join(kept, on=["customer_id", "campaign_id", "snapshot_date"], how="left_semi")


def training_rows(outcomes, tags, pooled, intervals: dict[str, int], features: list[str], as_of: dt.date, window: int,
                  history_days: int):
    """Pure transform: gold.campaign_outcomes x tag snapshots -> the uplift training rows: the arms' rows
    (:func:`arm_rows`), at most one per pair per interval (:func:`thinned`), control rows kept by their campaign's
    pooling draw (``keep``), with the features of the tag snapshot each decision used (its ``snapshot_date``).
    ``pooled``: (campaign_id, category, keep), :func:`pooling_rows`; rows of any other campaign or family are left
    out. Columns: customer_id, snapshot_date, campaign_id, category, t, y, contacted, the features."""
    from pyspark.sql import functions as F

    rows = thinned(arm_rows(outcomes, as_of, window, history_days), intervals)
    rows = rows.join(F.broadcast(pooled.select("campaign_id", "category", "keep")), on=["campaign_id", "category"], how="inner")
    draw = holdout_bucket_col(THINNING_SALT, F.col("campaign_id"), F.col("customer_id"))
    rows = rows.where((F.col("t") == 1) | (draw < F.round(F.col("keep") * 10000))).drop("keep")
    snapshot = tags.select("customer_id", "snapshot_date", *[F.col(n) for n in features])
    out = rows.join(snapshot, on=["customer_id", "snapshot_date"], how="inner")
    return out.select("customer_id", "snapshot_date", "campaign_id", "category", "t", "y", "contacted", *features)


def reference_rows(outcomes: list[dict], keep: dict[tuple[str, str], float], intervals: dict[str, int], as_of: dt.date,
                   window: int, history_days: int) -> list[dict]:
    """Python twin of :func:`training_rows` without the features: outcome dicts -> the training rows (snapshot_date,
    customer_id, campaign_id, category, t, contacted, y), sorted. ``keep``: (campaign_id, category) -> the share of
    control rows kept."""
    since = as_of - dt.timedelta(days=history_days)
    groups: dict[tuple, list[dict]] = {}
    for r in outcomes:
        d = r["snapshot_date"]
        arm = 0 if r["outcome"] == "holdout" else 1 if r.get("explored") and r["outcome"] in EXPLORED_ORDER else None
        if arm is not None and r["matured"] and r["campaign_kind"] == "offer" and r.get("active_eligible") \
                and since < d and d + dt.timedelta(days=window) <= as_of:
            groups.setdefault((d, r["customer_id"], r["campaign_id"]), []).append({**r, "t": arm})
    dates: dict[tuple[str, str], list] = {}
    for d, cust, camp in groups:
        dates.setdefault((cust, camp), []).append(d)
    kept = {(d, cust, camp) for (cust, camp), ds in dates.items() for d in um.thin_dates(ds, intervals.get(camp, 0))}
    out = []
    for (d, cust, camp), rs in sorted(groups.items()):
        best = min(rs, key=lambda r: (EXPLORED_ORDER.get(r["outcome"], 0), -r["expected_value"], r["product_id"], r["channel"]))
        share = keep.get((camp, best["category"]))
        drawn = campaign_conf.holdout_bucket(THINNING_SALT, camp, cust) < campaign_conf.bucket_limit(share or 0)
        if (d, cust, camp) in kept and share is not None and (best["t"] == 1 or drawn):
            out.append({"snapshot_date": d, "customer_id": cust, "campaign_id": camp, "category": best["category"], "t": best["t"],
                        "contacted": int(any(r["outcome"] == "contact" for r in rs)), "y": int(bool(best["converted"]))})
    return out


def history(spark, paths: Paths, as_of: dt.date, s: um.Settings, pooled_rows: list, intervals: dict[str, int] | None = None) -> tuple:
    """(the training rows on the driver as pandas, sorted; the features with their types), or (None, []) before
    any outcome. ``intervals``: :func:`repeat_intervals`. At most ``max_train_rows`` rows (a seeded sample above);
    the nightly never collects customers."""
    from pyspark.sql import functions as F

    if not pooled_rows or not lake.exists(spark, paths, "gold.campaign_outcomes"):
        return None, []
    window = window_days()
    since, last = as_of - dt.timedelta(days=s.history_days), as_of - dt.timedelta(days=window)
    tags = lake.read(spark, paths, "gold.customer_tags").where(
        (F.col("snapshot_date") > F.lit(since)) & (F.col("snapshot_date") <= F.lit(last)))
    features = pm.feature_columns(tags.dtypes)
    pooled = spark.createDataFrame([(c, f, k) for c, f, _, _, k in pooled_rows], "campaign_id string, category string, keep double")
    frame = training_rows(lake.read(spark, paths, "gold.campaign_outcomes"), tags, pooled, intervals or {},
                          [n for n, _ in features], as_of, window, s.history_days)
    n = frame.count()
    if n > s.max_train_rows:
        frame = frame.sample(fraction=s.max_train_rows / n, seed=s.seed)
        log.info(f"train uplift: {n} rows, sampling {s.max_train_rows} for the driver")
    pdf = frame.toPandas().sort_values(["snapshot_date", "customer_id", "campaign_id", "category"], kind="mergesort")
    return pdf.reset_index(drop=True), features


# ---------------------------------------------------------------------------------------------------------
# Training and registry
# ---------------------------------------------------------------------------------------------------------
def _train_family(paths: Paths, family: str, pdf, features, s: um.Settings, as_of: dt.date, pooled_rows,
                  intervals: dict[str, int] | None = None) -> um.Registered:
    """Train (or record the cold start of) one family and register it."""
    t0 = time.time()
    mine = [(camp, e, top, k) for camp, fam, e, top, k in pooled_rows if fam == family]
    e_star = mine[0][2] if mine else 0.0
    rows = pdf[pdf["category"] == family] if pdf is not None else None
    fitted = um.train_family(rows, [n for n, _ in features], s, e_star, window_days())
    meta = {"features": [{"name": n, "type": t} for n, t in features], "design_propensity": e_star,
            "arms": "intent-to-treat: exploration pairs with active_eligible, contacted or not, against holdout pairs "
                    "with it; tau = the arm's effect / contact_rate",
            "pooled": {camp: {"propensity": e, "control_kept": k, "interval_days": (intervals or {}).get(camp)} for camp, e, _, k in mine},
            "seed": s.seed,
            "params": s.params, "num_boost_round": s.num_boost_round, "purge_days": window_days(),
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if fitted.model is not None:
        import lightgbm as lgb

        meta["lightgbm"] = lgb.__version__
    reg = um.save(registry(paths), family, as_of, fitted, meta)
    q = fitted.report or {}
    log.info(f"train uplift {family}: {fitted.reason}; contact rate {fitted.window.get('contact_rate', float('nan')):.2f}, "
             f"Qini {q.get('qini_coefficient', float('nan')):.3f}, top 20% share {q.get('top20_share', float('nan')):.2f} "
             f"-> {reg.path} ({time.time() - t0:.1f}s)")
    return reg


def train(spark, paths: Paths, as_of: dt.date, s: um.Settings | None = None) -> list[um.Registered]:
    """Train and register one uplift model per product family as of ``as_of`` (or its cold start, with the
    reason the decision shows); write the report. Returns the registered versions."""
    t0 = time.time()
    s = s or um.load_settings()
    products, _, _, camps, policy = cpc.load_conf()
    pooled, intervals = pooling_rows(products, camps, policy.exploration), repeat_intervals(camps, policy)
    pdf, features = history(spark, paths, as_of, s, pooled, intervals=intervals)
    regs = [_train_family(paths, f, pdf, features, s, as_of, pooled, intervals) for f in families(products, camps)]
    report = write_report(paths, as_of, regs)
    log.info(f"train uplift {as_of}: {sum(r.has_model for r in regs)} models, {sum(not r.has_model for r in regs)} cold starts "
             f"from {0 if pdf is None else len(pdf)} rows in {time.time() - t0:.1f}s; report {report}")
    return regs


def _fmt(v, spec: str) -> str:
    return "-" if v is None or v != v else format(v, spec)


def write_report(paths: Paths, as_of: dt.date, regs: list[um.Registered]) -> Path:
    """reports/models/uplift_<as-of>.md (and .json): per family its version or cold start, the training rows,
    and on the report dates the Qini coefficient, AUUC (against random), top 20% share and uplift by decile."""
    head = ("family", "version", "reason", "treated (train)", "control (train)", "contact rate", "report rows", "effect ITT",
            "effect per contact", "Qini", "AUUC (random)", "top 20%")
    summary = []
    for r in regs:
        q, w = r.meta.get("report") or {}, r.meta.get("window") or {}
        summary.append((r.family, r.version, r.reason, w.get("treated_train", 0), w.get("control_train", 0),
                        _fmt(w.get("contact_rate"), ".2f"), w.get("rows_report", 0), _fmt(q.get("ate"), "+.4f"),
                        _fmt(q.get("ate_per_contact"), "+.4f"), _fmt(q.get("qini_coefficient"), ".3f"),
                        f"{_fmt(q.get('auuc'), '.4f')} ({_fmt(q.get('auuc_random'), '.4f')})", _fmt(q.get("top20_share"), ".2f")))
    lines = [f"# Uplift models trained as of {as_of}", "",
             "Intent-to-treat arms (docs/models.md): treated, the exploration pairs with an active candidate past the "
             "eligibility rules, contacted or not; control, the holdout pairs with one; one row per pair per repeat interval. "
             "The model's effect of a contact is its intent-to-treat prediction / the treated arm's contact rate (training "
             "dates). The report is on the newest matured decision dates, never trained on; its curves and deciles are of "
             "the intent-to-treat prediction (the rate changes no ranking).", "",
             tabulate(summary, head, tablefmt="pipe", disable_numparse=True)]
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
             "texts": spark.sparkContext.broadcast(r.texts()), "trees": r.meta["trees"],
             "contact_rate": float(r.meta.get("contact_rate", 1.0))} for r in regs]


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
