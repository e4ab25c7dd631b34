"""Evaluation: what became of each decision, and whether the campaigns work against their control groups.

Two tables, rebuilt by the nightly ``evaluate`` stage after the export:

``gold.campaign_outcomes``: one row per decision (contact, placement, holdout or global-holdout member) of the last
``lookback_days`` decision dates: the responses its contact_ref came back with (delivered, opened, clicked,
accepted, declined, opted out, complained), and whether the customer ordered the offered product within
``window_days`` after the decision, whoever sold it (so a holdout member's organic order counts too: the
comparison is intent-to-treat), with the order's price as revenue. A decision's outcome is final once its
window has passed (``matured``). ``group`` is ``treated`` (contacts, placements), ``holdout`` (the campaign's
control group) or ``global_holdout`` (held out of every campaign, conf/policy.yaml ``global_holdout``).

``gold.campaign_eval``: as of the run date, per campaign, channel, product and service tier, and every
roll-up of them (``level`` names the dimensions kept, ``*`` stands for all): contacts, placements, responses,
conversions, revenue, cost, return; and against the holdout: conversion rates, absolute lift with a 95%
confidence interval (normal approximation for a difference of proportions), relative lift, incremental
conversions. Treated and holdout come from the same decision dates, so both had the same time to convert;
``matured_share`` says how much of a cell has had the whole window (below 1 the reading is interim). The
control is the campaign's holdout only: global-holdout members are recorded in the outcomes but not yet
compared (a later three-way reading: treated, held out, eligible but not chosen).

Caveat written into docs/evaluation.md: the holdout is drawn among the candidates that passed the row rules
(before one-a-day and capacity), the contacted are the best of them, so lift compares a selected treated group
with a random slice of the eligible; it overstates the lift of contacting a random eligible customer.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time

from jobs.platform import lake
from jobs.platform.config import Paths, business
from jobs.stages.evaluate import report

log = logging.getLogger(__name__)

Z95 = 1.959964
DIMS = ("campaign_id", "channel", "product_id", "service_tier")
EVENTS = ("delivered", "failed", "opened", "clicked", "accepted", "declined", "opted_out", "complained")


def settings() -> dict:
    s = business("policy").get("evaluation", {})
    return {"window_days": int(s.get("window_days", 14)), "lookback_days": int(s.get("lookback_days", 28))}


def lift(n_t: int, x_t: int, n_c: int, x_c: int, z: float = Z95) -> dict:
    """Treated n_t with x_t conversions against control n_c with x_c: rates, absolute lift and its confidence
    interval (normal approximation), relative lift. None where a group is empty."""
    if not n_t or not n_c:
        return {"rate_treated": x_t / n_t if n_t else None, "rate_control": x_c / n_c if n_c else None,
                "lift": None, "lift_low": None, "lift_high": None, "relative_lift": None}
    p_t, p_c = x_t / n_t, x_c / n_c
    half = z * math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    return {"rate_treated": p_t, "rate_control": p_c, "lift": p_t - p_c, "lift_low": p_t - p_c - half,
            "lift_high": p_t - p_c + half, "relative_lift": (p_t / p_c - 1) if p_c > 0 else None}


def lift_cols(n_t, x_t, n_c, x_c, z: float = Z95) -> dict:
    """Spark twin of :func:`lift` over count columns."""
    from pyspark.sql import functions as F

    p_t = F.when(n_t > 0, x_t / n_t)
    p_c = F.when(n_c > 0, x_c / n_c)
    half = F.lit(z) * F.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    both = (n_t > 0) & (n_c > 0)
    return {
        "rate_treated": p_t, "rate_control": p_c,
        "lift": F.when(both, p_t - p_c), "lift_low": F.when(both, p_t - p_c - half), "lift_high": F.when(both, p_t - p_c + half),
        "relative_lift": F.when(both & (p_c > 0), p_t / p_c - 1),
    }


def outcomes(decisions, responses, orders, day: dt.date, window_days: int):
    """Pure transform: decisions x responses (by contact_ref) x orders of the offered product within the window
    -> one row per decision with its response flags, conversion and revenue."""
    from pyspark.sql import functions as F

    flags = responses.groupBy("contact_ref").agg(*[F.max((F.col("event") == e).cast("int")).cast("boolean").alias(e) for e in EVENTS])
    dec = decisions.select(
        "snapshot_date", "contact_ref", "customer_id", "campaign_id", "campaign_kind", "product_id", "category", "channel",
        "channel_kind", "service_tier", "lifecycle_stage", "expected_value",
        F.when(F.col("outcome") == "holdout", F.lit("holdout"))
        .when(F.col("outcome") == "global_holdout", F.lit("global_holdout")).otherwise(F.lit("treated")).alias("group"),
        F.col("outcome"),
        F.when(F.col("outcome") == "contact", F.col("cost")).otherwise(F.lit(0.0)).alias("cost"),
    )
    conv = (
        dec.select("contact_ref", "customer_id", "product_id", "snapshot_date")
        .join(orders.select("customer_id", "product_id", F.to_date("order_ts").alias("order_day"), "price", "order_id"),
              on=["customer_id", "product_id"], how="inner")
        .where((F.col("order_day") > F.col("snapshot_date"))
               & (F.col("order_day") <= F.date_add("snapshot_date", window_days)) & (F.col("order_day") <= F.lit(day)))
        .groupBy("contact_ref").agg(F.lit(True).alias("converted"), F.first("price").alias("revenue"),
                                    F.min("order_day").alias("converted_on"))
    )
    out = dec.join(flags, on="contact_ref", how="left").join(conv, on="contact_ref", how="left")
    days_seen = F.least(F.datediff(F.lit(day), F.col("snapshot_date")), F.lit(window_days))
    return out.select(
        *dec.columns,
        *[F.coalesce(F.col(e), F.lit(False)).alias(e) for e in EVENTS],
        F.coalesce("converted", F.lit(False)).alias("converted"), "converted_on",
        F.coalesce("revenue", F.lit(0.0)).alias("revenue"),
        days_seen.alias("days_observed"), (days_seen >= window_days).alias("matured"),
    )


def evaluation(outcome_rows, day: dt.date):
    """Pure transform: outcomes -> one row per cell of the cube over DIMS (``level`` lists the dimensions
    kept), with counts, money and lift against the holdout. Treated and holdout decisions come from the same
    decision dates, so they have had the same time to convert; ``matured_share`` says how much of the cell has
    had the whole window (below 1: an interim reading, both rates still rising)."""
    from pyspark.sql import functions as F

    t = (F.col("group") == "treated")
    c = (F.col("group") == "holdout")  # the campaign's control; global_holdout rows are in neither (matured_share only)
    m = F.col("matured")

    def n(cond):
        return F.sum(cond.cast("long"))

    aggs = [
        n(F.col("outcome") == "contact").alias("contacts"), n(F.col("outcome") == "placement").alias("placements"),
        *[n(t & F.col(e)).alias(e) for e in EVENTS],
        n(t & F.col("converted")).alias("conversions"),
        F.sum(F.when(t, F.col("revenue")).otherwise(0.0)).alias("revenue"), F.sum("cost").alias("cost"),
        n(t).alias("treated"), n(c).alias("holdout"), n(c & F.col("converted")).alias("holdout_conversions"),
        F.sum(F.when(c, F.col("revenue")).otherwise(0.0)).alias("holdout_revenue"),
        (F.sum(m.cast("long")) / F.count(F.lit(1))).alias("matured_share"),
    ]
    cube = outcome_rows.cube(*DIMS).agg(*aggs, *[F.grouping(d).alias(f"_g_{d}") for d in DIMS])
    level = F.concat_ws(",", *[F.when(F.col(f"_g_{d}") == 0, F.lit(d.removesuffix("_id"))) for d in DIMS])
    lc = lift_cols(F.col("treated"), F.col("conversions"), F.col("holdout"), F.col("holdout_conversions"))
    return cube.select(
        F.lit(day).alias("eval_date"), F.when(level == "", F.lit("all")).otherwise(level).alias("level"),
        *[F.when(F.col(f"_g_{d}") == 1, F.lit("*")).otherwise(F.coalesce(F.col(d), F.lit("(none)"))).alias(d) for d in DIMS],
        "contacts", "placements", *EVENTS, "conversions", F.round("revenue", 2).alias("revenue"), F.round("cost", 2).alias("cost"),
        F.round(F.col("revenue") - F.col("cost"), 2).alias("return"),
        F.when(F.col("cost") > 0, F.round((F.col("revenue") - F.col("cost")) / F.col("cost"), 3)).alias("roi"),
        "treated", "holdout", "holdout_conversions", F.round("matured_share", 4).alias("matured_share"),
        *[lc[k].alias(k) for k in ("rate_treated", "rate_control", "lift", "lift_low", "lift_high", "relative_lift")],
        (lc["lift"] * F.col("treated")).alias("incremental_conversions"),
        (F.coalesce(lc["lift_low"] > 0, F.lit(False))).alias("significant"),
    )


TRIAL_STEPS = (("manual", "trial_manual"), ("feedback", "trial_feedback"), ("low_usage_nudge", "trial_low_usage"),
               ("expiry_sms", "trial_expiry_sms"), ("expiry_call", "trial_expiry_call"))
TRIAL_LOOKBACK_DAYS = 60


def trial_funnel(orders, decisions, tags, day: dt.date):
    """Pure transform: every trial started in the last ``TRIAL_LOOKBACK_DAYS`` days -> one row with the funnel steps
    it got (contacts of the trial campaigns for that product since the start, holdouts apart: ``in_holdout``
    when a trial campaign held it out, its own holdout or the global one), how it ended
    (converted: trial_convert or an order of the product; expired; cancelled; open), and for a non-converter the
    analysis the win-back campaign acts on (price-sensitive: cheaper bundle)."""
    from pyspark.sql import functions as F

    started = orders.where(F.col("action") == "trial_start").groupBy("customer_id", "product_id").agg(
        F.max(F.to_date("order_ts")).alias("started_on"))
    ends = (orders.where(F.col("action").isin("trial_convert", "trial_expire", "order", "cancel"))
            .select("customer_id", "product_id", F.to_date("order_ts").alias("d"), "action", "channel")
            .join(started, on=["customer_id", "product_id"]).where(F.col("d") >= F.col("started_on"))
            .groupBy("customer_id", "product_id").agg(F.min(F.struct("d", "action", "channel")).alias("_end")))
    steps = (decisions.where(F.col("campaign_id").isin([c for _, c in TRIAL_STEPS]))
             .select("customer_id", "product_id", "campaign_id", "outcome", "snapshot_date")
             .join(started, on=["customer_id", "product_id"]).where(F.col("snapshot_date") >= F.col("started_on"))
             .groupBy("customer_id", "product_id").agg(
                 *[F.max((F.col("campaign_id") == c) & (F.col("outcome") == "contact")).alias(name) for name, c in TRIAL_STEPS],
                 F.max(F.col("outcome").isin("holdout", "global_holdout")).alias("in_holdout")))
    status = (F.when(F.col("_end.action").isin("trial_convert", "order"), F.lit("converted"))
              .when(F.col("_end.action") == "trial_expire", F.lit("expired"))
              .when(F.col("_end.action") == "cancel", F.lit("cancelled")).otherwise(F.lit("open")))
    out = (started.join(ends, on=["customer_id", "product_id"], how="left").join(steps, on=["customer_id", "product_id"], how="left")
           .join(tags.select("customer_id", F.col("mkt_price_sensitive").alias("price_sensitive")), on="customer_id", how="left")
           .withColumn("status", status))
    next_step = (F.when(F.col("status") == "converted", F.lit("converted"))
                 .when(F.col("status") == "open", F.lit("in trial"))
                 .when(F.coalesce("price_sensitive", F.lit(False)), F.lit("win-back: cheaper bundle (trial_winback)"))
                 .otherwise(F.lit("not price-sensitive: no win-back offer")))
    return out.select(
        F.lit(day).alias("snapshot_date"), "customer_id", "product_id", "started_on",
        F.datediff(F.lit(day), F.col("started_on")).alias("trial_day"),
        *[F.coalesce(F.col(name), F.lit(False)).alias(name) for name, _ in TRIAL_STEPS],
        F.coalesce("in_holdout", F.lit(False)).alias("in_holdout"),
        "status", F.col("_end.d").alias("ended_on"),
        F.when(F.col("status") == "converted", F.col("_end.channel")).alias("converted_via"),
        F.coalesce("price_sensitive", F.lit(False)).alias("price_sensitive"), next_step.alias("next_step"),
    )


def run(spark, paths: Paths, day: dt.date) -> dict:
    """Rebuild the outcomes of the last ``lookback_days`` decision dates and the evaluation as of ``day``,
    then write the HTML report. Returns the headline figures."""
    from pyspark.sql import functions as F

    t0 = time.time()
    s = settings()
    since = day - dt.timedelta(days=s["lookback_days"])
    if not lake.exists(spark, paths, "gold.cpc_decisions"):
        log.info(f"evaluate {day}: no decisions yet")
        return {}
    decisions = lake.read(spark, paths, "gold.cpc_decisions").where(
        (F.col("snapshot_date") > F.lit(since)) & (F.col("snapshot_date") <= F.lit(day)))
    window = (F.col("delivery_date") > F.lit(since)) & (F.col("delivery_date") <= F.lit(day))
    responses = lake.read(spark, paths, "bronze.responses").where(window) if lake.exists(spark, paths, "bronze.responses") else \
        spark.createDataFrame([], "contact_ref string, event string")
    orders = lake.read(spark, paths, "bronze.orders").where(window & F.col("action").isin("order", "trial_convert"))
    out = outcomes(decisions, responses, orders, day, s["window_days"]).localCheckpoint()
    dates = f"snapshot_date > '{since.isoformat()}' AND snapshot_date <= '{day.isoformat()}'"
    lake.replace(out, paths, "gold.campaign_outcomes", dates, merge_schema=True)
    ev = evaluation(out.where(F.col("snapshot_date") < F.lit(day)), day)
    lake.replace(ev, paths, "gold.campaign_eval", f"eval_date = '{day.isoformat()}'", merge_schema=True)
    trial_since = day - dt.timedelta(days=TRIAL_LOOKBACK_DAYS)
    trial_orders = lake.read(spark, paths, "bronze.orders").where(
        (F.col("delivery_date") > F.lit(trial_since)) & (F.col("delivery_date") <= F.lit(day)))
    trial_dec = lake.read(spark, paths, "gold.cpc_decisions").where(
        (F.col("snapshot_date") > F.lit(trial_since)) & (F.col("snapshot_date") <= F.lit(day)))
    tags = lake.read(spark, paths, "gold.customer_tags").where(F.col("snapshot_date") == F.lit(day))
    lake.replace(trial_funnel(trial_orders, trial_dec, tags, day), paths, "gold.trial_funnel", f"snapshot_date = '{day.isoformat()}'")
    trials = [r.asDict() for r in lake.read(spark, paths, "gold.trial_funnel").where(F.col("snapshot_date") == F.lit(day)).groupBy(
        "status", "next_step").agg(F.count(F.lit(1)).alias("trials"),
                                   *[F.sum(F.col(n).cast("int")).alias(n) for n, _ in TRIAL_STEPS]).collect()]  # a few rows
    unmatched = 0
    if "channel" in responses.columns:  # today's responses naming no decision of the window (or the 10 days before)
        known = lake.read(spark, paths, "gold.cpc_decisions").where(
            F.col("snapshot_date") > F.lit(since - dt.timedelta(days=10))).select("contact_ref")
        unmatched = responses.where(F.col("delivery_date") == F.lit(day)).join(known, on="contact_ref", how="left_anti").count()
    rows = [r.asDict() for r in lake.read(spark, paths, "gold.campaign_eval").where(f"eval_date = '{day.isoformat()}'").where(
        F.col("level").isin("all", "campaign", "channel", "campaign,channel")).collect()]  # campaigns x channels rows
    trend = [r.asDict() for r in out.where(F.col("outcome").isin("contact", "holdout"))
             .groupBy("snapshot_date", "group").agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("converted").cast("int")).alias("x"))
             .orderBy("snapshot_date", "group").collect()]  # dates x 2 rows
    path = report.write(paths, day, rows, trend, s, unmatched, trials)
    total = next((r for r in rows if r["level"] == "all"), None)
    figures = {"report": str(path), "unmatched_responses": unmatched,
               "trials": {st: sum(t["trials"] for t in trials if t["status"] == st) for st in ("open", "converted", "expired", "cancelled")}}
    if total:
        figures.update({k: total[k] for k in ("contacts", "delivered", "opened", "accepted", "conversions", "revenue", "cost",
                                              "holdout", "rate_treated", "rate_control", "lift", "lift_low", "lift_high", "matured_share")})
    lift_text = "no holdout to compare with yet" if not total or total["lift"] is None else (
        f"lift {total['lift']:+.4f} [{total['lift_low']:+.4f}, {total['lift_high']:+.4f}] "
        f"({total['rate_treated']:.4f} treated vs {total['rate_control']:.4f} holdout, {total['matured_share']:.0%} of decisions matured)")
    log.info(f"evaluate {day}: decisions since {since + dt.timedelta(days=1)}: "
          f"{(total or {}).get('contacts', 0)} contacts, {(total or {}).get('accepted', 0)} accepted, "
          f"{(total or {}).get('conversions', 0)} conversions; {lift_text}; {unmatched} responses unmatched "
          f"-> gold.campaign_outcomes, gold.campaign_eval, {path} ({time.time() - t0:.1f}s)")
    return figures
