"""What the CPC decision reads: the day's tags, segments, propensity deciles and uplift scores (with the uplift
registry's cold-start reasons), each customer's contact history and open trials, the product-channel fits from
order history, what is learned from responses, and the fingerprints its run id is derived from."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

from jobs.platform import arrow_lake, lake
from jobs.platform.config import CONF_DIR, Paths, business
from jobs.stages import propensity
from jobs.stages.cpc import campaigns as campaign_conf
from jobs.stages.cpc import fits
from jobs.stages.cpc.decide import literal_map
from models import uplift as uplift_model
from schemas import LEDGER

TRIAL_DAYS = 35  # how far back an open trial is looked for


def history(spark, paths: Paths, day: dt.date, policy, camps):
    """Per customer, from the pipeline's own past decisions (never today's, so a rerun sees the same):
    active contacts in the frequency window (total and per channel) and days since each campaign last
    contacted them; days since their last declined offer (declines and complaints from the campaign platform's
    responses, and outbound marketing contacts not taken up); and ``cc_learned`` (:func:`channel_learning`)."""
    from pyspark.sql import functions as F

    parts = []
    longest = max([policy.window_days, *[c.repeat_after_days for c in camps]])
    if lake.exists(spark, paths, "gold.cpc_decisions"):
        past = lake.read(spark, paths, "gold.cpc_decisions").where(
            (F.col("snapshot_date") < F.lit(day)) & (F.col("snapshot_date") >= F.lit(day - dt.timedelta(days=longest)))
            & (F.col("outcome") == "contact")
        ).withColumn("_ago", F.datediff(F.lit(day), F.col("snapshot_date")))
        recent = past.where(F.col("_ago") < policy.window_days)
        by_channel = recent.groupBy("customer_id", "channel").agg(F.count(F.lit(1)).cast("int").alias("n")).groupBy("customer_id").agg(
            F.map_from_entries(F.collect_list(F.struct("channel", "n"))).alias("recent_by_channel"), F.sum("n").cast("int").alias("recent_total"))
        by_campaign = past.groupBy("customer_id", "campaign_id").agg(F.min("_ago").alias("d")).groupBy("customer_id").agg(
            F.map_from_entries(F.collect_list(F.struct("campaign_id", "d"))).alias("recent_by_campaign"))
        parts += [by_channel, by_campaign]
    cooldown = (F.col("delivery_date") < F.lit(day)) & (F.col("delivery_date") >= F.lit(day - dt.timedelta(days=policy.cooldown_days)))
    declined = lake.read(spark, paths, "bronze.contacts").where(
        cooldown & (F.col("direction") == "out") & (F.col("purpose") == "marketing") & ~F.col("resolved")
    ).select("customer_id", F.to_date("contact_ts").alias("d"))
    if lake.exists(spark, paths, "bronze.responses"):  # the campaign platform's declines and complaints
        declined = declined.unionByName(lake.read(spark, paths, "bronze.responses").where(
            cooldown & F.col("event").isin("declined", "complained")).select("customer_id", F.to_date("event_ts").alias("d")))
    parts.append(declined.groupBy("customer_id").agg(F.min(F.datediff(F.lit(day), F.col("d"))).cast("int").alias("days_since_decline")))
    learned = channel_learning(spark, paths, day)
    if learned is not None:
        parts.append(learned)
    out = parts[0]
    for p in parts[1:]:
        out = out.join(p, on="customer_id", how="full")
    return out


def channel_learning(spark, paths: Paths, day: dt.date):
    """Per customer, how their own opens on each outbound channel compare with the channel's average over
    ``learning.history_days`` (conf/policy.yaml): ``cc_learned`` = channel -> multiplier of the rule's
    customer-channel fit, ((opened + k x m) / (delivered + k)) / m with m the channel's open rate and k the
    prior strength, within [min, max]. None before any response has come back."""
    from pyspark.sql import functions as F

    if not lake.exists(spark, paths, "bronze.responses"):
        return None
    s = business("policy").get("learning", {})
    k, lo, hi = float(s.get("prior_strength", 3)), float(s.get("min_multiplier", 0.3)), float(s.get("max_multiplier", 2.0))
    since = day - dt.timedelta(days=int(s.get("history_days", 90)))
    resp = lake.read(spark, paths, "bronze.responses").where(
        (F.col("delivery_date") < F.lit(day)) & (F.col("delivery_date") >= F.lit(since)) & F.col("event").isin("delivered", "opened"))
    per = resp.groupBy("customer_id", "channel").agg(
        F.sum((F.col("event") == "delivered").cast("int")).alias("n"), F.sum((F.col("event") == "opened").cast("int")).alias("o"))
    rates = {r["channel"]: (r["o"] or 0) / r["n"] for r in per.groupBy("channel").agg(F.sum("n").alias("n"), F.sum("o").alias("o")).collect()
             if r["n"] and r["o"]}  # one row per channel
    if not rates:
        return None
    m = literal_map([(ch, F.lit(v)) for ch, v in rates.items()])[F.col("channel")]
    mult = F.least(F.greatest(((F.col("o") + k * m) / (F.col("n") + k)) / m, F.lit(lo)), F.lit(hi))
    return per.where(m.isNotNull() & (F.col("n") > 0)).groupBy("customer_id").agg(
        F.map_from_entries(F.collect_list(F.struct("channel", mult.alias("x")))).alias("cc_learned"))


def acceptance_scales(spark, paths: Paths, day: dt.date, channels) -> dict[str, dict]:
    """Per active channel, the scale that turns an offer's product of fits into an acceptance probability:
    acceptances / sum of fit products over the offers contacted ``calibration_lag_days`` to ``calibration_days``
    ago (old enough for most answers to be back), shrunk towards the configured prior with ``prior_weight``
    (conf/policy.yaml ``learning``). Before any response: the prior. Small: one row per channel."""
    from pyspark.sql import functions as F

    s = business("policy").get("learning", {})
    prior = {str(k): float(v) for k, v in (s.get("accept_scale_prior") or {}).items()}
    weight = float(s.get("prior_weight", 20))
    out = {c.id: {"scale": prior.get(c.id, 1.0), "prior": prior.get(c.id, 1.0), "contacts": 0, "accepted": 0, "fit_sum": 0.0}
           for c in channels if c.kind == "active"}
    if not (lake.exists(spark, paths, "gold.cpc_decisions") and lake.exists(spark, paths, "bronze.responses")):
        return out
    first = day - dt.timedelta(days=int(s.get("calibration_days", 28)))
    last = day - dt.timedelta(days=int(s.get("calibration_lag_days", 5)))
    sent = lake.read(spark, paths, "gold.cpc_decisions").where(
        (F.col("snapshot_date") >= F.lit(first)) & (F.col("snapshot_date") <= F.lit(last)) & (F.col("outcome") == "contact")
        & (F.col("campaign_kind") == "offer"))
    accepted = lake.read(spark, paths, "bronze.responses").where(
        (F.col("delivery_date") > F.lit(first)) & (F.col("delivery_date") < F.lit(day)) & (F.col("event") == "accepted")
    ).select("contact_ref").distinct().withColumn("_acc", F.lit(1))
    rows = sent.join(accepted, on="contact_ref", how="left").groupBy("channel").agg(
        F.count(F.lit(1)).alias("n"), F.sum(F.coalesce("_acc", F.lit(0))).alias("a"),
        F.sum(F.col("fit_customer_product") * F.col("fit_product_channel") * F.col("fit_customer_channel")).alias("f"),
    ).collect()  # one row per active channel
    for r in rows:
        if r["channel"] in out:
            o = out[r["channel"]]
            o.update(contacts=int(r["n"]), accepted=int(r["a"]), fit_sum=float(r["f"] or 0.0))
            o["scale"] = (o["accepted"] + weight * o["prior"]) / (o["fit_sum"] + weight)
    return out


def trials(spark, paths: Paths, day: dt.date):
    """Each customer's open trial: the latest trial started in the last ``TRIAL_DAYS`` days and not yet
    converted, ordered, cancelled or expired -> trial_product_id, trial_day (days since it started); and their
    latest trial that expired in that window -> days_since_trial_expired, expired_trial_category."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    orders = lake.read(spark, paths, "bronze.orders").where(
        (F.col("delivery_date") <= F.lit(day)) & (F.col("delivery_date") > F.lit(day - dt.timedelta(days=TRIAL_DAYS)))
    ).select("customer_id", "product_id", "action", F.to_date("order_ts").alias("d"))
    started = orders.where(F.col("action") == "trial_start")
    ended = orders.where(F.col("action").isin("trial_convert", "trial_expire", "order", "cancel")).groupBy("customer_id", "product_id").agg(F.max("d").alias("ended"))
    open_ = started.join(ended, on=["customer_id", "product_id"], how="left").where(F.col("ended").isNull() | (F.col("ended") < F.col("d")))
    w = Window.partitionBy("customer_id").orderBy(F.col("d").desc(), F.col("product_id"))
    opened = open_.withColumn("_r", F.row_number().over(w)).where("_r = 1").select(
        "customer_id", F.col("product_id").alias("trial_product_id"), F.datediff(F.lit(day), F.col("d")).alias("trial_day"))
    # A trial that ended without converting (the win-back campaign's audience), with its product's category.
    cats = F.element_at(literal_map([(p["id"], F.lit(p["category"])) for p in business("products")["products"]]), F.col("product_id"))
    expired = orders.where(F.col("action") == "trial_expire").withColumn("_r", F.row_number().over(w)).where("_r = 1").select(
        "customer_id", F.datediff(F.lit(day), F.col("d")).alias("days_since_trial_expired"), cats.alias("expired_trial_category"))
    return opened.join(expired, on="customer_id", how="full")


def product_channel_table(spark, paths: Paths, day: dt.date, products, channels, categories):
    """gold.fit_product_channel for ``day``: orders and trials per product and channel (an accepted outbound offer
    is an order through that channel), inbound contacts per passive channel and contacts sent per active one,
    over the configured window (small aggregates), scored by :func:`models.fits.product_channel_fits`."""
    from pyspark.sql import functions as F

    s = business("channels")["product_channel_fit"]
    since = F.lit(day - dt.timedelta(days=int(s["history_days"]) - 1))
    window = (F.col("delivery_date") <= F.lit(day)) & (F.col("delivery_date") >= since)
    hist = lake.read(spark, paths, "bronze.orders").where(window & F.col("action").isin("order", "trial_start")).groupBy("product_id", "channel").count()
    cont = lake.read(spark, paths, "bronze.contacts").where(window & (F.col("direction") == "in")).groupBy("channel").count()
    history_counts = {(r["product_id"], r["channel"]): int(r["count"]) for r in hist.collect()}  # products x channels rows
    contacts = {r["channel"]: int(r["count"]) for r in cont.collect()}  # one row per channel
    if lake.exists(spark, paths, "gold.cpc_decisions"):  # outbound: contacts sent; their orders come back as R... orders
        sent = lake.read(spark, paths, "gold.cpc_decisions").where(
            (F.col("snapshot_date") < F.lit(day)) & (F.col("snapshot_date") >= since) & (F.col("outcome") == "contact")
        ).groupBy("channel").count()
        contacts.update({r["channel"]: int(r["count"]) for r in sent.collect()})  # one row per active channel
    return fits.product_channel_fits(products, channels, categories, history_counts, contacts, s)


def uplift_scores(spark, paths: Paths, day: dt.date):
    """One row per customer with ``uplift_tau`` (family -> tau, gold.uplift of ``day``), or None when no uplift
    model scored the day (the decision then ranks as before)."""
    from pyspark.sql import functions as F

    if not arrow_lake.rows(paths, "gold.uplift", day):  # no table (None) or no row of the date; no Spark job
        return None
    scores = lake.read(spark, paths, "gold.uplift").where(f"snapshot_date = '{day.isoformat()}'")
    return scores.groupBy("customer_id").agg(F.map_from_entries(F.collect_list(F.struct("category", "tau"))).alias("uplift_tau"))


def uplift_status(paths: Paths, day: dt.date) -> dict[str, str]:
    """Per product family with a registered uplift version as of ``day`` (models.uplift.current), the reason its
    training gave: ``uplift: x_learner (...)`` or ``cold start: propensity (n treated 40 < 500)``. Small: read
    from the registry's meta files on the driver."""
    reg = propensity.registry(paths)
    out = {}
    for family in uplift_model.families(reg):
        r = uplift_model.current(reg, family, day)
        if r is not None:
            out[family] = r.reason
    return out


COLD = "cold start: propensity ("


def _why(reason: str | None) -> str:
    """What a registry's cold-start reason says, ``n treated 40 < 500`` of ``cold start: propensity (n treated 40 <
    500)``; ``never trained`` without one."""
    if not reason:
        return "never trained"
    return reason[len(COLD):-1] if reason.startswith(COLD) and reason.endswith(")") else reason


def cold_start_ranking(families: list[str], status: dict[str, str], measured: dict[str, dict], assumed: float
                       ) -> tuple[dict[str, str], dict[str, float]]:
    """Pure: how the decision ranks each offer family's active offers where no uplift model scored the customer.
    ``families``: the offer families (campaigns.offer_families); ``status``: family -> its registry reason
    (:func:`uplift_status`: a model's ``uplift: ...`` or ``cold start: propensity (...)``; a family never trained
    has none); ``measured``: family -> :func:`measured_incrementality`'s reading; ``assumed``: conf/models.yaml
    ``uplift.cold_start_incrementality``.

    Returns (notes, factors): family -> the text fit_source starts with, and family -> the incrementality factor
    that multiplies the propensity acceptance. While no family has a model every offer ranks by propensity as
    before: no factor, notes ``cold start: propensity (<why>)``. Once one has, tau x value and acceptance x value
    must be on one scale (acceptance counts the customers who buy anyway): every family without a model gets the
    measured factor (else the assumed one), ``cold start: propensity x 0.30 (assumed) (<why>)``; a family with a
    model gets it for customers its model did not score (``no uplift score: propensity x ...``)."""
    modelled = {f for f in families if (status.get(f) or "").startswith("uplift")}
    notes, factors = {}, {}
    for f in families:
        m = measured.get(f)
        factor, how = (m["factor"], f"measured, campaign_eval {m['eval_date']}" if m.get("eval_date") else "measured") if m \
            else (float(assumed), "assumed")
        if f in modelled:
            notes[f], factors[f] = f"no uplift score: propensity x {factor:.2f} ({how})", factor
        elif modelled:
            notes[f], factors[f] = f"cold start: propensity x {factor:.2f} ({how}) ({_why(status.get(f))})", factor
        else:
            notes[f] = f"{COLD}{_why(status.get(f))})"
    return notes, factors


def measured_incrementality(spark, paths: Paths, day: dt.date, products, camps) -> dict[str, dict]:
    """Per offer family, the share of its treated's conversions the contact caused, as the evaluation measured it
    for the family's offer campaigns (models.uplift.measured_incrementality on the counts of gold.campaign_eval's
    campaign x product cells of its latest evaluation before ``day``, summed per family); families it did not
    measure (an interval holding zero, no evaluation yet) are left out. Small: campaigns x products rows."""
    from pyspark.sql import functions as F

    if not lake.exists(spark, paths, "gold.campaign_eval"):
        return {}
    cells = lake.read(spark, paths, "gold.campaign_eval").where((F.col("eval_date") < F.lit(day)) & (F.col("level") == "campaign,product"))
    last = cells.agg(F.max("eval_date")).first()[0]
    if last is None:
        return {}
    names = ("treated", "conversions", "not_chosen", "not_chosen_conversions", "holdout", "holdout_conversions")
    offers = sorted(c.id for c in camps if c.kind == "offer")
    rows = cells.where((F.col("eval_date") == F.lit(last)) & F.col("campaign_id").isin(offers)).select("product_id", *names).collect()
    family = {p.id: p.category for p in products}
    sums: dict[str, list[int]] = {}
    for r in rows:  # campaigns x products rows
        if r["product_id"] in family:
            acc = sums.setdefault(family[r["product_id"]], [0] * len(names))
            for i, n in enumerate(names):
                acc[i] += int(r[n] or 0)
    out = {f: uplift_model.measured_incrementality(*v) for f, v in sums.items()}
    return {f: {**m, "eval_date": last.isoformat()} for f, m in out.items() if m is not None}


CLOSURE_COLUMNS = ("campaign_id", "product_id", "treated", "holdout", "matured_share", "closure_effect", "closure_effect_low",
                   "closure_effect_high")


def closure_harm(spark, paths: Paths, day: dt.date, camps, policy) -> dict[tuple[str, str], str]:
    """The closure guard's input (conf/policy.yaml ``closure_guard``; empty when it is off): (offer campaign,
    product) -> why its active contacts are harmed, for each campaign x product cell of gold.campaign_eval's latest
    evaluation before ``day`` whose contact closes lines: the 95% interval of ``closure_effect`` above zero, in a cell
    with at least ``closure_guard_min_holdout`` held-out decisions and ``closure_guard_min_matured_share`` of its
    decisions matured. Empty without an evaluation, or with one written before closures were measured. Read in this
    process (arrow_lake, ``lake.last_partition_before``): campaigns x products rows."""
    import pyarrow.dataset as ds

    offers = sorted(c.id for c in camps if c.kind == "offer")
    if not policy.closure_guard or not offers:  # (no offer campaign: pyarrow's isin refuses an empty list of values)
        return {}
    last = lake.last_partition_before(spark, paths, "gold.campaign_eval", "eval_date", day)
    if last is None or "closure_effect_low" not in {f.name for f in arrow_lake.delta_table(paths, "gold.campaign_eval").schema().fields}:
        return {}
    rows = arrow_lake.read(paths, "gold.campaign_eval", list(CLOSURE_COLUMNS), last,
                           (ds.field("level") == "campaign,product") & ds.field("campaign_id").isin(offers))

    def trusted(r: dict) -> bool:
        return (r["closure_effect_low"] is not None and r["closure_effect_low"] > 0
                and (r["holdout"] or 0) >= policy.closure_guard_min_holdout
                and (r["matured_share"] or 0) >= policy.closure_guard_min_matured_share)

    return {(r["campaign_id"], r["product_id"]): (
        f"closure guard: contacts closed {100 * r['closure_effect']:+.2f} pp more lines than the holdout (95% CI "
        f"{100 * r['closure_effect_low']:+.2f} to {100 * r['closure_effect_high']:+.2f} pp, {r['treated']:,} treated, "
        f"{r['holdout']:,} held out; evaluation of {last.isoformat()})")
        for r in sorted(rows, key=lambda r: (r["campaign_id"], r["product_id"])) if trusted(r)}


def ranking_off(products, camps) -> tuple[dict[str, str], dict[str, float]]:
    """Pure: the notes and factors of :func:`cold_start_ranking` when conf/models.yaml ``uplift.rank`` is false (or
    ``CPC_UPLIFT_RANK=false``): every offer family ranks by propensity, no incrementality factor, and the reasons
    say why."""
    return {f: "propensity (uplift ranking off: uplift.rank false)" for f in campaign_conf.offer_families(products, camps)}, {}


def uplift_ranking(spark, paths: Paths, day: dt.date, products, camps, assumed: float) -> tuple[dict[str, str], dict[str, float]]:
    """:func:`cold_start_ranking` for the day: the registry's reasons as of ``day`` and, once a family has a model,
    the measured incrementality (:func:`measured_incrementality`; not read before: nothing uses it)."""
    families = campaign_conf.offer_families(products, camps)
    status = uplift_status(paths, day)
    modelled = any((status.get(f) or "").startswith("uplift") for f in families)
    measured = measured_incrementality(spark, paths, day, products, camps) if modelled else {}
    return cold_start_ranking(families, status, measured, assumed)


def inputs(spark, paths: Paths, day: dt.date, products, policy, camps, uplift: bool = True):
    """Tags + segments (+ propensity deciles of the models the products name, uplift scores unless ``uplift`` is
    false (conf/models.yaml ``uplift.rank``), history, open trials)."""
    cond = f"snapshot_date = '{day.isoformat()}'"
    tags = lake.read(spark, paths, "gold.customer_tags").where(cond)
    seg = lake.read(spark, paths, "gold.customer_segment").where(cond).drop("snapshot_date")
    frame = tags.join(seg, on="customer_id", how="inner")
    models = sorted({p.propensity for p in products if p.propensity})
    scores = propensity.wide(spark, paths, day, models) if models else None
    if scores is not None:
        frame = frame.join(scores, on="customer_id", how="left")
    scored = uplift_scores(spark, paths, day) if uplift else None
    if scored is not None:
        frame = frame.join(scored, on="customer_id", how="left")
    frame = frame.join(history(spark, paths, day, policy, camps), on="customer_id", how="left")
    return frame.join(trials(spark, paths, day), on="customer_id", how="left")


def day_customers(spark, paths: Paths, day: dt.date, version: int | None = None) -> int:
    """The day's customers (gold.customer_segment rows): what a capacity given as a share is a share of. The
    current version's are counted from the date's files' footers in this process (``arrow_lake.rows``: no Spark
    job); a given ``version`` (the export reads the version the decision read) through Spark."""
    if version is None:
        n = arrow_lake.rows(paths, "gold.customer_segment", day)
        if n is None:
            arrow_lake.delta_table(paths, "gold.customer_segment")  # no table: its FileNotFoundError, as lake.read's
        return n
    return lake.read(spark, paths, "gold.customer_segment", version).where(f"snapshot_date = '{day.isoformat()}'").count()


def input_versions(spark, paths: Paths) -> dict[str, int]:
    tables = ("gold.customer_tags", "gold.customer_segment", "gold.propensity", "gold.uplift", "gold.cpc_decisions",
              "gold.campaign_eval", "bronze.orders", "bronze.contacts", "bronze.responses")
    return {t: lake.version(spark, paths, t) for t in tables if lake.exists(spark, paths, t)}


def model_versions(spark, paths: Paths, day: dt.date, products, uplift: bool = True) -> dict[str, str]:
    """The propensity model version whose scores the fits used on ``day`` (read from gold.propensity), or
    ``none (rule)`` where no model scored and the affinity rule stood in; and ``uplift_<family>`` for each uplift
    model that scored the day (gold.uplift; none without one, so the run id is unchanged until a model exists; none
    when ``uplift`` is false: the decision does not read them)."""
    used, scored = {}, {}
    if lake.exists(spark, paths, "gold.propensity"):
        rows = lake.read(spark, paths, "gold.propensity").where(f"snapshot_date = '{day.isoformat()}'").select("model", "model_version").distinct()
        used = {r["model"]: r["model_version"] for r in rows.collect()}  # one row per model
    if uplift and lake.exists(spark, paths, "gold.uplift"):
        rows = lake.read(spark, paths, "gold.uplift").where(f"snapshot_date = '{day.isoformat()}'").select("category", "model_version").distinct()
        scored = {uplift_model.registry_name(r["category"]): r["model_version"] for r in rows.collect()}  # one row per family
    return {**{m: used.get(m, "none (rule)") for m in sorted({p.propensity for p in products if p.propensity})}, **scored}


def deliveries_fingerprint(spark, paths: Paths, day: dt.date) -> str:
    """SHA-256 over every delivery accepted up to ``day`` (kind, date and MD5 in ops.ingest_ledger): the raw input
    of everything the decision reads. The ledger is a row per file, read in this process (``arrow_lake``), not by
    a Spark query; the digest is the one the Spark query gave (its keys ``kind|date|md5``, sorted, joined by
    commas: ``sha2(concat_ws(',', array_sort(collect_list(key))), 256)``), so a run id does not change with it.
    ``spark`` is not used, kept so that the decision's reads are called alike."""
    import pyarrow.dataset as ds

    if not arrow_lake.exists(paths, LEDGER.name):
        return "no deliveries"
    rows = arrow_lake.read(paths, LEDGER.name, ["kind", "delivery_date", "md5"],
                           where=(ds.field("delivery_date") <= day) & (ds.field("status") == "accepted"))
    keys = sorted("|".join(str(v) for v in (r["kind"], r["delivery_date"].isoformat(), r["md5"] or "") if v is not None)
                  for r in rows)
    return hashlib.sha256(",".join(keys).encode()).hexdigest()


def business_fingerprint() -> str:
    """SHA-256 over every business configuration file (conf/**/*.yaml but where things run, conf/env/), and the
    ``CPC_UPLIFT_RANK`` override of conf/models.yaml when it is set (unset, the fingerprint is the files')."""
    h = hashlib.sha256()
    for f in sorted(CONF_DIR.rglob("*.yaml")):
        if "env" not in f.relative_to(CONF_DIR).parts[:1]:
            h.update(str(f.relative_to(CONF_DIR)).encode())
            h.update(f.read_bytes())
    override = os.environ.get(uplift_model.RANK_ENV)
    if override is not None:
        h.update(f"{uplift_model.RANK_ENV}={override}".encode())
    return h.hexdigest()


def decision_run_id(day: dt.date, deliveries: str, config: str, models: dict[str, str],
                    guarded: dict[tuple[str, str], str] | None = None) -> str:
    """The decision's run id, derived from its inputs, never from the clock: the date, the deliveries it was made
    from, the business configuration, the model versions and the offers the closure guard stops (``guarded``,
    :func:`closure_harm`, with the evaluation's figures and date; left out when none, so the id is the one it was
    before the guard). An unchanged day rerun gets the same id, so its decisions, lists and manifests are
    identical; any changed input gives a new one. (Delta table versions are recorded in ops.cpc_runs for lineage
    but are not part of the id: every rewrite of a table, even with the same content, is a new Delta version.)"""
    parts = [day.isoformat(), deliveries, config, json.dumps(models, sort_keys=True)]
    if guarded:
        parts.append(json.dumps(sorted(f"{c}|{p}|{why}" for (c, p), why in guarded.items())))
    text = "|".join(parts)
    return f"{day.isoformat()}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
