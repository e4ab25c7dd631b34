"""CPC decision: who gets which product through which channel today, under the contact policy.

For every customer the campaigns whose target rule holds (``conf/campaigns/``) propose candidates, one per
campaign x product x channel that carries the product. Each candidate carries the three fits:

    customer-product  the propensity decile / 10 of the product's model, or its affinity rule (message
                      campaigns: 1, the message is about a product the customer already has or trials)
    product-channel   gold.fit_product_channel: prior, history of orders per contact, cost, effort,
                      commission, authentication, weighted (conf/channels.yaml)
    customer-channel  the channel's preference rule over contact-history tags, 0 when it cannot reach them

and its expected value, ``fit_cp x fit_pc x fit_cc x scale x value - cost``, where the channel's ``scale``
(:func:`acceptance_scales`, learned from responses) turns an offer's product of fits into an acceptance
probability (service messages: scale 1). The policy (``conf/policy.yaml``) then
removes candidates rule by rule, in a fixed order; the first rule a candidate breaks is recorded as its
outcome, so ``gold.cpc_funnel`` can say which rule removed how many candidates and customers:

    opt_out, unreachable, tier_no_marketing, stage_rule, not_eligible, already_held, quiet_period,
    cooldown_after_decline, recently_contacted, frequency_cap, no_value   (row by row, column expressions)
    holdout            the campaign's control group: recorded, never contacted
    passive_first      a customer likely to come to a passive channel soon gets the offer placed there
    one_offer_a_day    one active contact a customer a day; one placement per passive touchpoint
    capacity           the channel's daily capacity was taken by customers with a higher expected value

What survives becomes a ``placement`` (passive channels) or a ``contact`` (active channels). Active contacts are
assigned across all customers by rounds of proposals (see :func:`assign`), never first come first served.
Everything is DataFrame work: per-customer maps, one explode, a broadcast join, windows by customer, and for
capacity per-channel top-k (``orderBy().limit()``, distributed); nothing customer-sized reaches the driver.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import asdict

from jobs.platform import lake
from jobs.platform.config import Paths, business
from jobs.platform.errors import ConfigError
from jobs.stages.cpc import campaigns as campaign_conf
from jobs.stages.cpc import fits
from jobs.stages.tags import load_catalogue

log = logging.getLogger(__name__)

RULES = campaign_conf.RULES
STEPS = (*RULES, "placement", "contact")  # funnel order: a candidate's outcome is one of these
ROW_RULES = RULES[: RULES.index("holdout") + 1]  # decided row by row
TRIAL_DAYS = 35  # how far back an open trial is looked for
# Inputs derived from history (jobs.cpc.history, jobs.cpc.trials): null when a customer has none.
OPTIONAL = {"trial_product_id": "string", "trial_day": "int", "days_since_decline": "int", "recent_total": "int",
            "recent_by_channel": "map<string,int>", "recent_by_campaign": "map<string,int>", "marketing_allowed": "boolean",
            "cc_learned": "map<string,double>", "days_since_trial_expired": "int", "expired_trial_category": "string"}


def load_conf():
    """Products, channels, categories, campaigns and policy, all checked (errors name the file)."""
    known = set(load_catalogue().ids) | {"lifecycle_stage", "service_tier"}
    products, channels, categories = fits.load(known)
    stages = {s["stage"] for s in business("lifecycle")["stages"]}
    camps = campaign_conf.load([p.id for p in products], [c.id for c in channels], known, stages=stages)
    policy = campaign_conf.load_policy()
    active = {c.id for c in channels if c.kind == "active"}
    if set(policy.per_channel_cap) - active:
        raise ConfigError(f"conf/policy.yaml: frequency.per_channel names unknown or passive channel(s) "
                          f"{sorted(set(policy.per_channel_cap) - active)}; active channels: {sorted(active)}")
    if policy.assignment_rounds <= len(active):
        raise ConfigError(f"conf/policy.yaml: assignment_rounds must exceed the {len(active)} active channels")
    return products, channels, categories, camps, policy


def holdout_bucket_col(salt: str, campaign, customer):
    """Spark twin of :func:`models.campaigns.holdout_bucket` (0..9999 from sha256(salt|campaign|customer))."""
    from pyspark.sql import functions as F

    digest = F.sha2(F.concat_ws("|", F.lit(salt), campaign, customer), 256)
    return F.pmod(F.conv(F.substring(digest, 1, 8), 16, 10).cast("long"), F.lit(10000))


def combos(spark, products, channels, camps, pc_fit: dict[tuple[str, str], float], day: dt.date,
           accept_scale: dict[str, float] | None = None):
    """The campaign x product x channel table (small, broadcast): constants of every possible candidate.
    ``accept_scale`` (channel -> scale, :func:`acceptance_scales`) turns an offer's product of fits into an
    acceptance probability; without it (or for a channel it does not name) the scale is 1."""
    scales = accept_scale or {}
    by_ch = {c.id: c for c in channels}
    rows = []
    for camp in camps:
        if not camp.active_on(day):
            continue
        for p in products:
            if camp.products and p.id not in camp.products:
                continue
            for ch in camp.channels:
                if (p.id, ch) not in pc_fit:
                    continue  # the channel does not carry the product's category
                c = by_ch[ch]
                value = camp.value if camp.value is not None else p.value
                stages = list(camp.stages or p.stages)
                scale = float(scales.get(ch, 1.0)) if camp.kind == "offer" else 1.0  # a service message is not "accepted"
                rows.append((camp.id, camp.kind, camp.priority, camp.urgent, camp.trial, camp.holdout, camp.repeat_after_days,
                             p.id, p.category, p.name_en, p.price, float(value), stages, p.propensity, ch, c.kind,
                             c.cost, float(pc_fit[(p.id, ch)]), scale))
    schema = ("campaign_id string, campaign_kind string, priority int, urgent boolean, trial boolean, holdout_share double, "
              "repeat_after_days int, product_id string, category string, offer_name string, price double, value double, "
              "stages array<string>, model string, channel string, channel_kind string, cost double, fit_product_channel double, "
              "accept_scale double")
    return spark.createDataFrame(rows, schema)


def _map(pairs):
    from pyspark.sql import functions as F

    return F.create_map(*[x for k, v in pairs for x in (F.lit(k), v)])


def candidates(frame, products, channels, camps, policy, combo_df, day: dt.date):
    """Pure transform: one row per customer (tags, segment, propensity, history, trial columns) -> one row per
    candidate with its fits, expected value and ``outcome`` = the first row-level rule it breaks (null when
    it breaks none)."""
    from pyspark.sql import functions as F

    frame = frame.withColumns({c: F.lit(None).cast(t) for c, t in OPTIONAL.items() if c not in frame.columns})
    held = F.split(F.coalesce(F.col("mkt_held_product_ids"), F.lit("")), ",")
    optout = _map([(c.id, F.coalesce(F.col(f"cp_optout_{c.id}"), F.lit(True)) if f"cp_optout_{c.id}" in frame.columns else F.lit(False))
                   for c in channels])  # unknown = opted out, as the export guard reads it
    live = [c for c in camps if c.active_on(day)]
    per_customer = frame.select(
        "customer_id", "snapshot_date", "lifecycle_stage", "service_tier",
        F.coalesce("marketing_allowed", F.lit(False)).alias("marketing_allowed"),
        F.coalesce(F.col("cp_optout_all"), F.lit(True)).alias("optout_all"),
        F.col("val_tenure_days").alias("tenure_days"),
        F.coalesce(F.col("cp_contacts_30d"), F.lit(0)).alias("inbound_30d"),
        "trial_product_id", "days_since_decline", F.coalesce("recent_total", F.lit(0)).alias("recent_total"),
        "recent_by_channel", "recent_by_campaign", "cc_learned",
        held.alias("held"),
        optout.alias("optout"),
        _map([(c.id, F.coalesce(F.expr(c.reach), F.lit(False))) for c in channels]).alias("reach"),
        _map([(c.id, fits.customer_channel_fit(c)) for c in channels]).alias("fit_cc"),
        _map([(p.id, fits.product_fit(p, frame.columns)) for p in products]).alias("fit_cp"),
        _map([(p.id, fits.fit_source(p, frame.columns)) for p in products]).alias("fit_cp_source"),
        _map([(p.id, F.coalesce(F.expr(p.eligible), F.lit(False))) for p in products]).alias("eligible"),
        F.array_compact(F.array(*[F.when(F.coalesce(F.expr(c.target), F.lit(False)), F.lit(c.id)) for c in live])).alias("_camps"),
    )
    rows = per_customer.select("*", F.explode("_camps").alias("campaign_id")).drop("_camps").join(
        F.broadcast(combo_df), on="campaign_id", how="inner",
    ).where(~F.col("trial") | (F.col("product_id") == F.col("trial_product_id")))

    message = F.col("campaign_kind") == "message"
    active = F.col("channel_kind") == "active"
    fit_cp = F.when(message, F.lit(1.0)).otherwise(F.coalesce(F.element_at("fit_cp", F.col("product_id")), F.lit(0.0)))
    learned = F.coalesce(F.element_at(F.col("cc_learned"), F.col("channel")), F.lit(1.0))  # from the customer's own responses
    fit_cc = F.least(F.coalesce(F.element_at("fit_cc", F.col("channel")), F.lit(0.0)) * learned, F.lit(1.0))
    rows = rows.withColumn("fit_customer_product", fit_cp).withColumn("fit_customer_channel", fit_cc).withColumn(
        "expected_value",
        F.col("fit_customer_product") * F.col("fit_product_channel") * F.col("fit_customer_channel") * F.col("accept_scale") * F.col("value")
        - F.col("cost"),
    )
    since_campaign = F.element_at(F.col("recent_by_campaign"), F.col("campaign_id"))  # null map or key: never contacted
    on_channel = F.coalesce(F.element_at(F.col("recent_by_channel"), F.col("channel")), F.lit(0))
    channel_cap = F.coalesce(F.element_at(_map([(k, F.lit(v)) for k, v in policy.per_channel_cap.items()]), F.col("channel")), F.lit(1 << 30))
    broken = {
        "opt_out": F.col("optout_all") | F.coalesce(F.element_at("optout", F.col("channel")), F.lit(False)),
        "unreachable": ~F.coalesce(F.element_at("reach", F.col("channel")), F.lit(False)),
        "tier_no_marketing": ~F.col("marketing_allowed"),
        "stage_rule": ~message & ~F.coalesce(F.array_contains("stages", F.col("lifecycle_stage")), F.lit(False)),
        "not_eligible": ~message & ~F.coalesce(F.element_at("eligible", F.col("product_id")), F.lit(False)),
        "already_held": ~message & F.array_contains("held", F.col("product_id")),
        "quiet_period": active & (F.coalesce(F.col("tenure_days"), F.lit(0)) < policy.quiet_days),
        "cooldown_after_decline": active & F.coalesce(F.col("days_since_decline") < policy.cooldown_days, F.lit(False)),
        "recently_contacted": active & F.coalesce(since_campaign < F.col("repeat_after_days"), F.lit(False)),
        "frequency_cap": active & ((F.col("recent_total") >= policy.all_channels_cap) | (on_channel >= channel_cap)),
        "no_value": (F.col("fit_customer_product") <= 0) | (F.col("fit_customer_channel") <= 0) | (F.col("expected_value") <= 0),
        "holdout": holdout_bucket_col(policy.holdout_salt, F.col("campaign_id"), F.col("customer_id"))
        < F.round(F.col("holdout_share") * 10000),
    }
    outcome = F.lit(None).cast("string")
    for rule in reversed(ROW_RULES):
        outcome = F.when(broken[rule], F.lit(rule)).otherwise(outcome)
    passive_touch = 1 - F.exp(-F.col("inbound_30d") / F.lit(30.0) * F.lit(float(policy.passive_horizon_days)))
    return rows.select(
        "customer_id", "snapshot_date", "campaign_id", "campaign_kind", "priority", "urgent", "product_id", "category", "offer_name",
        "price", "channel", "channel_kind", "cost", "value", "lifecycle_stage", "service_tier",
        F.round("fit_customer_product", 4).alias("fit_customer_product"),
        F.round("fit_product_channel", 4).alias("fit_product_channel"),
        F.round("fit_customer_channel", 4).alias("fit_customer_channel"),
        F.round("expected_value", 4).alias("expected_value"),
        F.coalesce(F.element_at("fit_cp_source", F.col("product_id")), F.lit("rule")).alias("fit_source"),
        (passive_touch >= policy.passive_min_probability).alias("likely_passive"),
        outcome.alias("outcome"),
    )


def _order():
    """A customer's candidates, best first: urgent service messages, then expected value; ties: lower cost,
    campaign priority, ids."""
    from pyspark.sql import functions as F

    return [F.col("urgent").desc(), F.col("expected_value").desc(), F.col("cost"), F.col("priority"), F.col("campaign_id"),
            F.col("product_id"), F.col("channel")]


def _rank(*partition):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return F.row_number().over(Window.partitionBy(*partition).orderBy(*_order()))


def assign(active, capacity: dict[str, int], rounds: int, log=print):
    """Active contacts under each channel's daily capacity, across all customers: deferred acceptance.

    In each round every customer not held by a channel proposes to their best channel (an urgent service
    message first, then the highest expected value) that has not refused them yet; each channel then keeps,
    among those it already holds and the new proposals, urgent messages first and then the highest expected
    values, up to its capacity (ties: customer id), and refuses
    the rest, bumped holders included. Refused customers propose to their next channel in the next round. It
    ends when nobody is left to propose (or after ``rounds`` rounds, with a warning). The result is stable: no
    channel would swap one of its customers for a refused one who wanted it more valuably, no channel is over
    capacity, no customer is contacted twice, and a customer who arrives late with a higher value still takes
    the place of a lower one (not first come, first served). Per round: one window by customer and, per
    channel, one distributed top-k (``orderBy().limit()``). Returns (customer_id, campaign_id, product_id, channel)."""
    from pyspark.sql import functions as F

    cols = ["customer_id", "campaign_id", "product_id", "channel", "urgent", "expected_value", "cost", "priority"]
    pool = active.select(*cols).localCheckpoint()
    spark = pool.sparkSession
    held = spark.createDataFrame([], pool.schema)
    refused = spark.createDataFrame([], "customer_id string, channel string")
    for r in range(1, rounds + 1):
        free = pool.join(held.select("customer_id"), on="customer_id", how="left_anti").join(
            refused, on=["customer_id", "channel"], how="left_anti")
        proposals = free.withColumn("_r", _rank("customer_id")).where("_r = 1").drop("_r").localCheckpoint()
        n = {row["channel"]: row["count"] for row in proposals.groupBy("channel").count().collect()}  # one row per channel
        if not n:
            return held.select(*cols[:4])
        kept, out = [], []
        for ch in sorted(n):
            mine = held.where(F.col("channel") == ch).unionByName(proposals.where(F.col("channel") == ch))
            room = int(capacity.get(ch, 0))
            keep = mine.orderBy(F.col("urgent").desc(), F.col("expected_value").desc(), F.col("customer_id")).limit(room) if room else mine.limit(0)
            kept.append(keep)
            out.append(mine.join(keep.select("customer_id"), on="customer_id", how="left_anti").select("customer_id", "channel"))
        untouched = held.where(~F.col("channel").isin(sorted(n)))
        for k in kept:
            untouched = untouched.unionByName(k)
        held = untouched.localCheckpoint()
        for o in out:
            refused = refused.unionByName(o)
        refused = refused.localCheckpoint()
        log(f"  assign round {r}: {sum(n.values())} proposals ({', '.join(f'{k} {v}' for k, v in sorted(n.items()))})")
    log(f"  assign: stopped after {rounds} rounds with proposals left; those customers count as refused for capacity")
    return held.select(*cols[:4])


def decide(cands, channels, policy, log=print, customers: int = 0):
    """Candidates with row-level outcomes -> every candidate with its final outcome (a step of ``STEPS``).
    ``customers`` (the day's customers) sizes a capacity given as a share."""
    from pyspark.sql import functions as F

    survived = cands.where(F.col("outcome").isNull())
    # Placements first: the best offer for each passive touchpoint of the customer.
    passive = survived.where(F.col("channel_kind") == "passive").withColumn("_r", _rank("customer_id", "channel"))
    passive = passive.withColumn("outcome", F.when(F.col("_r") == 1, F.lit("placement")).otherwise(F.lit("one_offer_a_day"))).drop("_r").localCheckpoint()
    # Passive before active: an offer placed on a passive channel, for a customer likely to come there soon,
    # is not also pushed to them.
    placed = passive.where(F.col("outcome") == "placement").select("customer_id", "campaign_id", "product_id").distinct().withColumn("_placed", F.lit(True))
    survived = survived.where(F.col("channel_kind") == "active").join(placed, on=["customer_id", "campaign_id", "product_id"], how="left")
    survived = survived.withColumn("outcome", F.when(
        F.coalesce(F.col("_placed"), F.lit(False)) & F.col("likely_passive"), F.lit("passive_first")
    )).drop("_placed")
    active = survived.where(F.col("outcome").isNull()).localCheckpoint()
    capacity = {c.id: fits.daily_capacity(c.capacity, customers) for c in channels if c.kind == "active"}
    taken = assign(active, capacity, policy.assignment_rounds, log).withColumn("_taken", F.lit(True))
    reached = taken.select("customer_id").distinct().withColumn("_reached", F.lit(True))
    active = (
        active.join(taken, on=["customer_id", "campaign_id", "product_id", "channel"], how="left")
        .join(reached, on="customer_id", how="left")
        .withColumn("outcome", F.when(F.col("_taken"), F.lit("contact"))
                    .when(F.col("_reached"), F.lit("one_offer_a_day")).otherwise(F.lit("capacity")))
        .drop("_taken", "_reached")
    )
    done = cands.where(F.col("outcome").isNotNull()).unionByName(
        survived.where(F.col("outcome") == "passive_first")).unionByName(passive).unionByName(active)
    step = F.element_at(_map([(s, F.lit(i)) for i, s in enumerate(STEPS)]), F.col("outcome"))
    return done.withColumn("step_no", step)


def reasons_col():
    from pyspark.sql import functions as F

    return F.format_string(
        "campaign %s; stage %s; product fit %.2f (%s); %s carries %s at %.2f; customer fit to %s %.2f; expected value %.2f",
        "campaign_id", "lifecycle_stage", "fit_customer_product", "fit_source", "channel", "category",
        "fit_product_channel", "channel", "fit_customer_channel", "expected_value",
    )


def decisions(decided, run_id: str):
    """The rows acted on: contacts, placements, and for each (customer, campaign) in a holdout the candidate
    it would have been offered first (the control group, recorded)."""
    from pyspark.sql import functions as F

    holdout = decided.where(F.col("outcome") == "holdout").withColumn("_r", _rank("customer_id", "campaign_id")).where("_r = 1").drop("_r")
    rows = decided.where(F.col("outcome").isin("contact", "placement")).unionByName(holdout)
    ref = F.substring(F.sha2(F.concat_ws("|", "snapshot_date", "customer_id", "campaign_id", "product_id", "channel"), 256), 1, 20)
    return rows.select(
        "snapshot_date", "customer_id", "campaign_id", "campaign_kind", "product_id", "category", "offer_name", "price",
        "channel", "channel_kind", "outcome", "expected_value", "fit_customer_product", "fit_product_channel",
        "fit_customer_channel", "fit_source", "cost", "value", "lifecycle_stage", "service_tier",
        reasons_col().alias("reasons"), ref.alias("contact_ref"), F.lit(run_id).alias("run_id"),
    )


def offers(decided, top_n: int):
    """Analysts' view: each customer's best offers (one per product, on its best channel) among the candidates
    the policy let through, ranked by expected value, with what became of each."""
    from pyspark.sql import functions as F

    ok = decided.where(F.col("step_no") >= STEPS.index("holdout"))
    best = ok.withColumn("_r", _rank("customer_id", "product_id")).where("_r = 1").drop("_r")
    ranked = best.withColumn("rank", _rank("customer_id")).where(F.col("rank") <= top_n)
    return ranked.select(
        "customer_id", "snapshot_date", "rank", "campaign_id", "product_id", "category", "channel", "channel_kind",
        "expected_value", "fit_customer_product", "fit_product_channel", "fit_customer_channel", "fit_source",
        "lifecycle_stage", "service_tier", F.col("outcome").alias("decision"), reasons_col().alias("reasons"),
    )


def funnel(decided, day: dt.date):
    """Which rule removed how many: per campaign and channel in candidates, per campaign in customers (a
    customer leaves a campaign at the step where its last candidate went: the largest step of its candidates)."""
    from pyspark.sql import functions as F

    by_candidate = decided.groupBy("campaign_id", "channel", "step_no", "outcome").agg(F.count(F.lit(1)).alias("count")).withColumn("grain", F.lit("candidate"))
    per_customer = decided.groupBy("campaign_id", "customer_id").agg(F.max("step_no").alias("step_no"))
    names = F.element_at(F.array(*[F.lit(s) for s in STEPS]), F.col("step_no") + 1)
    by_customer = per_customer.groupBy("campaign_id", "step_no").agg(F.count(F.lit(1)).alias("count")).select(
        "campaign_id", F.lit("all").alias("channel"), "step_no", names.alias("outcome"), "count", F.lit("customer").alias("grain"))
    return by_candidate.unionByName(by_customer).select(
        F.lit(day).alias("snapshot_date"), "grain", "campaign_id", "channel", "step_no", F.col("outcome").alias("step"),
        F.col("count").cast("long").alias("count"))


# --- inputs ------------------------------------------------------------------------------------------------

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
    m = _map([(ch, F.lit(v)) for ch, v in rates.items()])[F.col("channel")]
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
    cats = F.element_at(_map([(p["id"], F.lit(p["category"])) for p in business("products")["products"]]), F.col("product_id"))
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


def inputs(spark, paths: Paths, day: dt.date, products, policy, camps):
    """Tags + segments (+ propensity deciles of the models the products name, history, open trials)."""
    from jobs.stages import propensity

    cond = f"snapshot_date = '{day.isoformat()}'"
    tags = lake.read(spark, paths, "gold.customer_tags").where(cond)
    seg = lake.read(spark, paths, "gold.customer_segment").where(cond).drop("snapshot_date")
    frame = tags.join(seg, on="customer_id", how="inner")
    models = sorted({p.propensity for p in products if p.propensity})
    scores = propensity.wide(spark, paths, day, models) if models else None
    if scores is not None:
        frame = frame.join(scores, on="customer_id", how="left")
    frame = frame.join(history(spark, paths, day, policy, camps), on="customer_id", how="left")
    return frame.join(trials(spark, paths, day), on="customer_id", how="left")


def day_customers(spark, paths: Paths, day: dt.date, version: int | None = None) -> int:
    """The day's customers (gold.customer_segment rows): what a capacity given as a share is a share of."""
    return lake.read(spark, paths, "gold.customer_segment", version).where(f"snapshot_date = '{day.isoformat()}'").count()


def input_versions(spark, paths: Paths) -> dict[str, int]:
    tables = ("gold.customer_tags", "gold.customer_segment", "gold.propensity", "gold.cpc_decisions", "bronze.orders", "bronze.contacts",
              "bronze.responses")
    return {t: lake.version(spark, paths, t) for t in tables if lake.exists(spark, paths, t)}


def model_versions(spark, paths: Paths, day: dt.date, products) -> dict[str, str]:
    """The propensity model version whose scores the fits used on ``day`` (read from gold.propensity), or
    ``none (rule)`` where no model scored and the affinity rule stood in."""
    used = {}
    if lake.exists(spark, paths, "gold.propensity"):
        rows = lake.read(spark, paths, "gold.propensity").where(f"snapshot_date = '{day.isoformat()}'").select("model", "model_version").distinct()
        used = {r["model"]: r["model_version"] for r in rows.collect()}  # one row per model
    return {m: used.get(m, "none (rule)") for m in sorted({p.propensity for p in products if p.propensity})}


def run(spark, paths: Paths, day: dt.date) -> dict:
    t0 = time.time()
    products, channels, categories, camps, policy = load_conf()
    pc_rows = product_channel_table(spark, paths, day, products, channels, categories)
    pc_df = spark.createDataFrame([{**r, "snapshot_date": day} for r in pc_rows]).select(
        "snapshot_date", "product_id", "channel", "fit", "prior", "success", "cost", "effort", "commission",
        "authentication", "orders", "contacts", "success_from_history")
    cond = f"snapshot_date = '{day.isoformat()}'"
    lake.replace(pc_df, paths, "gold.fit_product_channel", cond)
    pc_fit = {(r["product_id"], r["channel"]): r["fit"] for r in pc_rows}
    versions = input_versions(spark, paths)
    run_id = f"{day.isoformat()}-{int(time.time())}"
    frame = inputs(spark, paths, day, products, policy, camps)
    scales = acceptance_scales(spark, paths, day, channels)
    combo_df = combos(spark, products, channels, camps, pc_fit, day, {ch: v["scale"] for ch, v in scales.items()})
    cands = candidates(frame, products, channels, camps, policy, combo_df, day)
    customers = day_customers(spark, paths, day)
    decided = decide(cands.localCheckpoint(), channels, policy, customers=customers).localCheckpoint()
    lake.replace(decisions(decided, run_id), paths, "gold.cpc_decisions", cond)
    lake.replace(offers(decided, policy.top_offers), paths, "gold.cpc_offers", cond)
    lake.replace(funnel(decided, day), paths, "gold.cpc_funnel", cond)
    record = spark.createDataFrame([(
        day, run_id, json.dumps(versions, sort_keys=True), json.dumps(model_versions(spark, paths, day, products), sort_keys=True),
        campaign_conf.config_fingerprint(), json.dumps(asdict(policy), sort_keys=True),
        ",".join(c.id for c in camps if c.active_on(day)),
    )], "snapshot_date date, run_id string, input_versions string, model_versions string, config_sha256 string, policy string, campaigns string")
    lake.replace(record, paths, "ops.cpc_runs", cond)
    counts: dict[str, int] = {}
    by_channel: dict[str, int] = {}
    written = lake.read(spark, paths, "gold.cpc_decisions").where(cond)
    for r in written.groupBy("outcome", "channel").count().collect():  # outcomes x channels rows
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + r["count"]
        if r["outcome"] == "contact":
            by_channel[r["channel"]] = r["count"]
    log.info(f"score {day}: capacities for {customers} customers: " + ", ".join(
        f"{c.id} {fits.daily_capacity(c.capacity, customers)}" for c in channels if c.kind == "active"))
    log.info(f"score {day}: acceptance scales " + ", ".join(
        f"{ch} {v['scale']:.4f} ({v['accepted']}/{v['contacts']} accepted)" for ch, v in sorted(scales.items())))
    log.info(f"score {day}: {counts.get('contact', 0)} contacts ({', '.join(f'{k} {v}' for k, v in sorted(by_channel.items()))}), "
          f"{counts.get('placement', 0)} placements, {counts.get('holdout', 0)} in holdouts -> gold.cpc_decisions, "
          f"gold.cpc_funnel ({time.time() - t0:.1f}s)")
    return {"contacts": counts.get("contact", 0), "placements": counts.get("placement", 0),
            "holdout": counts.get("holdout", 0), "by_channel": by_channel}
