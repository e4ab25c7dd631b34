"""The CPC decision's pure transforms: candidates with their fits and the first policy rule each breaks, the
assignment of active contacts under capacity, and the rows written (decisions, offers, funnel). DataFrames in,
DataFrames out; ``jobs.stages.cpc`` runs them on what ``jobs.stages.cpc.inputs`` reads."""

from __future__ import annotations

import datetime as dt
import logging

from jobs.stages.cpc import fits, pricing
from jobs.stages.cpc.assign import assign_priced, candidate_order
from jobs.stages.cpc.campaigns import ELIGIBILITY, GLOBAL_HOLDOUT, RULES

log = logging.getLogger(__name__)

STEPS = (*RULES, "placement", "contact")  # funnel order: a candidate's outcome is one of these
ROW_RULES = RULES[: RULES.index("passive_first")]  # decided row by row: eligibility, both holdouts, value
# The held-out outcomes, both terminal: recorded in gold.cpc_decisions (one row per customer and campaign, the
# offer it would have had first), never contacted or placed. The global holdout (every campaign) comes first.
HELD_OUT = ("global_holdout", "holdout")
# Past both holdouts: the selection steps and what survives them. A (customer, campaign) with a candidate here
# but no contact and no placement was eligible and not chosen: recorded once as NOT_CHOSEN (the offer it would
# have had first), so the evaluation can compare every eligible customer, chosen or not, with the holdout. The
# value rules are selection too (the holdouts are drawn before them): a (customer, campaign) whose every
# candidate was harmed or of no value is not chosen.
SELECTION = STEPS[STEPS.index(HELD_OUT[-1]) + 1:]  # harmed, no_value, passive_first, one_offer_a_day, capacity, placement, contact
# The exploration priority (one active candidate per explorer, within exploration_capacity_share of each channel's
# capacity: explorer_priority) goes to the assignment with this added to its expected value (yuan, far above any
# offer's value): after urgent service messages, before every other offer. The expected value recorded is the
# candidate's own.
EXPLORE_PRIORITY = 1_000_000.0
KEYS = ["customer_id", "campaign_id", "product_id", "channel"]
CHOSEN = ("placement", "contact")
NOT_CHOSEN = "not_chosen"
# Inputs derived from history (inputs.history, inputs.trials): null when a customer has none.
OPTIONAL = {"trial_product_id": "string", "trial_day": "int", "days_since_decline": "int", "recent_total": "int",
            "recent_by_channel": "map<string,int>", "recent_by_campaign": "map<string,int>", "marketing_allowed": "boolean",
            "cc_learned": "map<string,double>", "days_since_trial_expired": "int", "expired_trial_category": "string",
            "uplift_tau": "map<string,double>"}  # family -> tau (gold.uplift, inputs.uplift_scores)


def holdout_bucket_col(salt: str, campaign, customer):
    """Spark twin of :func:`jobs.stages.cpc.campaigns.holdout_bucket` (0..9999 from sha256(salt|campaign|customer))."""
    from pyspark.sql import functions as F

    digest = F.sha2(F.concat_ws("|", F.lit(salt), campaign, customer), 256)
    return F.pmod(F.conv(F.substring(digest, 1, 8), 16, 10).cast("long"), F.lit(10000))


def in_campaign_holdout(policy, bucket=None):
    """True for a row whose customer is in the row's campaign's holdout: the bucket of (salt, ``campaign_id``,
    ``customer_id``) below ``holdout_share`` x 10000 (a null share, an unknown campaign: 0, nobody). ``bucket``:
    that bucket when the frame already holds it."""
    from pyspark.sql import functions as F

    if bucket is None:
        bucket = holdout_bucket_col(policy.holdout_salt, F.col("campaign_id"), F.col("customer_id"))
    return bucket < F.round(F.coalesce(F.col("holdout_share"), F.lit(0.0)) * 10000)


def in_exploration(policy, bucket=None):
    """True for a row whose customer is in the row's campaign's exploration bucket: the holdout's bucket (same
    salt, same draw) in [``holdout_share``, ``holdout_share`` + ``exploration``) x 10000, right above the holdout
    (never in it); false for everyone when ``exploration`` is 0. Spark twin of
    :func:`jobs.stages.cpc.campaigns.in_exploration` (the kind of campaign is the caller's: offers only)."""
    from pyspark.sql import functions as F

    if bucket is None:
        bucket = holdout_bucket_col(policy.holdout_salt, F.col("campaign_id"), F.col("customer_id"))
    share = F.coalesce(F.col("holdout_share"), F.lit(0.0))
    low, high = F.round(share * 10000), F.round((share + F.lit(float(policy.exploration))) * 10000)
    return (bucket >= low) & (bucket < high)


def in_global_holdout(policy, customer):
    """True for a customer in the global holdout (``global_holdout`` in conf/policy.yaml): their bucket of
    (salt, ``__global__``, customer) is below share x 10000, as in Python
    ``holdout_bucket(salt, GLOBAL_HOLDOUT, customer) < share * 10000``; false for everyone when the share is 0."""
    from pyspark.sql import functions as F

    limit = float(policy.global_holdout) * 10000
    return holdout_bucket_col(policy.holdout_salt, F.lit(GLOBAL_HOLDOUT), customer) < F.lit(limit)


def combos(spark, products, channels, camps, pc_fit: dict[tuple[str, str], float], day: dt.date,
           accept_scale: dict[str, float] | None = None, uplift_notes: dict[str, str] | None = None,
           incrementality: dict[str, float] | None = None, closure_harm: dict[tuple[str, str], str] | None = None):
    """The campaign x product x channel table (small, broadcast): constants of every possible candidate.
    ``accept_scale`` (channel -> scale, :func:`acceptance_scales`) turns an offer's product of fits into an
    acceptance probability; without it (or for a channel it does not name) the scale is 1. ``uplift_notes`` and
    ``incrementality`` (family -> text, family -> factor: :func:`jobs.stages.cpc.inputs.cold_start_ranking`) apply
    to the active offers of a family: why the propensity fit ranks them where no uplift model scored the customer
    (``cold start: propensity x 0.30 (assumed) (...)``), and the share of the acceptance a contact causes (1 for
    every other candidate, and for all while no family has a model). ``closure_harm`` ((campaign, product) -> text,
    :func:`jobs.stages.cpc.inputs.closure_harm`) marks the active offers whose contacts the evaluation found to close
    lines (``harm_note``: rule harmed, the closure guard)."""
    scales, notes, factors, harm = accept_scale or {}, uplift_notes or {}, incrementality or {}, closure_harm or {}
    by_ch = {c.id: c for c in channels}
    ch_index = {c.id: i for i, c in enumerate(channels, 1)}  # _pi, _ci: 1-based positions in products, channels
    rows = []
    for camp in camps:
        if not camp.active_on(day):
            continue
        for pi, p in enumerate(products, 1):
            if camp.products and p.id not in camp.products:
                continue
            for ch in camp.channels:
                if (p.id, ch) not in pc_fit:
                    continue  # the channel does not carry the product's category
                c = by_ch[ch]
                value = camp.value if camp.value is not None else p.value
                stages = list(camp.stages or p.stages)
                scale = float(scales.get(ch, 1.0)) if camp.kind == "offer" else 1.0  # a service message is not "accepted"
                offer = camp.kind == "offer" and c.kind == "active"
                note, factor = (notes.get(p.category), float(factors.get(p.category, 1.0))) if offer else (None, 1.0)
                rows.append((camp.id, camp.kind, camp.priority, camp.urgent, camp.trial, camp.holdout,
                             camp.repeat_after_days, camp.while_complaint_open, p.id, p.category, p.name_en,
                             p.price, float(value), stages, p.propensity, ch, c.kind, c.cost,
                             float(pc_fit[(p.id, ch)]), scale, note, factor, harm.get((camp.id, p.id)) if offer else None,
                             pi, ch_index[ch]))
    schema = ("campaign_id string, campaign_kind string, priority int, urgent boolean, trial boolean, "
              "holdout_share double, repeat_after_days int, while_complaint_open boolean, product_id string, "
              "category string, offer_name string, price double, value double, stages array<string>, "
              "model string, channel string, channel_kind string, cost double, fit_product_channel double, "
              "accept_scale double, uplift_note string, incrementality double, harm_note string, _pi int, _ci int")
    return spark.createDataFrame(rows, schema)


def literal_map(pairs):
    from pyspark.sql import functions as F

    return F.create_map(*[x for k, v in pairs for x in (F.lit(k), v)])


def _per_customer(frame, products, channels, camps, day: dt.date):
    """One row per customer with what every candidate of theirs needs: policy inputs, and arrays in the order of
    ``channels`` (opt-out, reach, customer-channel fit) and of ``products`` (customer-product fit, its source,
    eligibility), read by a candidate at its ``_ci`` / ``_pi`` (:func:`combos`); the campaigns that target them
    today. Arrays, not maps keyed by id: every candidate row carries them through the explode, and at 20,000
    customers (1.9 million candidates) the maps with their string keys made the candidates' frame take 22.7-43.5 s to
    build against 7.3-16.8 s (docs/benchmarks.md). The positions are those of the lists :func:`combos` was given:
    ``candidates`` must get the same ``products`` and ``channels``."""
    from pyspark.sql import functions as F

    frame = frame.withColumns({c: F.lit(None).cast(t) for c, t in OPTIONAL.items() if c not in frame.columns})
    held = F.split(F.coalesce(F.col("mkt_held_product_ids"), F.lit("")), ",")
    optout = F.array(*[F.coalesce(F.col(f"cp_optout_{c.id}"), F.lit(True)) if f"cp_optout_{c.id}" in frame.columns else F.lit(False)
                       for c in channels])  # unknown = opted out, as the export guard reads it
    live = [c for c in camps if c.active_on(day)]
    return frame.select(
        "customer_id", "snapshot_date", "lifecycle_stage", "service_tier",
        F.coalesce("marketing_allowed", F.lit(False)).alias("marketing_allowed"),
        # unknown = an open complaint, as the export guard reads it
        F.coalesce(F.col("svc_open_complaint"), F.lit(True)).alias("open_complaint"),
        F.coalesce(F.col("cp_optout_all"), F.lit(True)).alias("optout_all"),
        F.col("val_tenure_days").alias("tenure_days"),
        F.coalesce(F.col("cp_contacts_30d"), F.lit(0)).alias("inbound_30d"),
        "trial_product_id", "days_since_decline", F.coalesce("recent_total", F.lit(0)).alias("recent_total"),
        "recent_by_channel", "recent_by_campaign", "cc_learned", "uplift_tau",
        held.alias("held"),
        optout.alias("optout"),
        F.array(*[F.coalesce(F.expr(c.reach), F.lit(False)) for c in channels]).alias("reach"),
        F.array(*[fits.customer_channel_fit(c) for c in channels]).alias("fit_cc"),
        F.array(*[fits.product_fit(p, frame.columns) for p in products]).alias("fit_cp"),
        F.array(*[fits.fit_source(p, frame.columns) for p in products]).alias("fit_cp_source"),
        F.array(*[F.coalesce(F.expr(p.eligible), F.lit(False)) for p in products]).alias("eligible"),
        F.array_compact(F.array(*[F.when(F.coalesce(F.expr(c.target), F.lit(False)), F.lit(c.id)) for c in live])).alias("_camps"),
    )


def _with_fits(rows):
    """The three fits of each candidate, ``tau`` and its expected value. ``tau``: the uplift model's predicted
    effect of a contact for the candidate's product family (gold.uplift), on active offers only (the model
    learned from contacts; placements and service messages keep their fits), null where no model scored the
    customer. With tau the expected value is ``tau x value - cost`` (models.uplift.expected_value: tau replaces
    the acceptance probability fit_cp x fit_pc x fit_cc x scale); without it, that acceptance x ``incrementality``
    (the share of it a contact causes, :func:`combos`; 1 while no family has a model) x value - cost."""
    from pyspark.sql import functions as F

    message = F.col("campaign_kind") == "message"
    fit_cp = F.when(message, F.lit(1.0)).otherwise(F.coalesce(F.element_at("fit_cp", F.col("_pi")), F.lit(0.0)))
    learned = F.coalesce(F.element_at(F.col("cc_learned"), F.col("channel")), F.lit(1.0))  # from the customer's own responses
    fit_cc = F.least(F.coalesce(F.element_at("fit_cc", F.col("_ci")), F.lit(0.0)) * learned, F.lit(1.0))
    tau = F.when(~message & (F.col("channel_kind") == "active"), F.element_at(F.col("uplift_tau"), F.col("category")))
    factor = F.coalesce(F.col("incrementality"), F.lit(1.0)) if "incrementality" in rows.columns else F.lit(1.0)
    accept = F.coalesce(F.col("tau"), F.col("fit_customer_product") * F.col("fit_product_channel")
                        * F.col("fit_customer_channel") * F.col("accept_scale") * factor)
    return rows.withColumn("fit_customer_product", fit_cp).withColumn("fit_customer_channel", fit_cc).withColumn(
        "tau", tau.cast("double")).withColumn("expected_value", accept * F.col("value") - F.col("cost"))


def _with_exploration(rows, policy):
    """``_bucket``, the (salt, campaign, customer) hash bucket both holdout and exploration read; ``_global``, the
    customer is in the global holdout (rule global_holdout reads it); ``explored``: the (customer, campaign) is in
    an offer campaign's exploration bucket and the customer outside the global holdout (whose members are never
    contacted, so never explored: their records carry no exploration flag or reason); ``explore``: and the
    candidate is on an active channel (it skips the value rules and goes to the assignment first)."""
    from pyspark.sql import functions as F

    rows = rows.withColumn("_bucket", holdout_bucket_col(policy.holdout_salt, F.col("campaign_id"), F.col("customer_id")))
    rows = rows.withColumn("_global", in_global_holdout(policy, F.col("customer_id")))
    explored = (F.col("campaign_kind") == "offer") & ~F.col("_global") & in_exploration(policy, F.col("_bucket"))
    return rows.withColumn("explored", explored).withColumn("explore", F.col("explored") & (F.col("channel_kind") == "active"))


def _broken(policy) -> dict:
    """Rule -> a column that is true where a candidate breaks it (row-level rules of the contact policy). Reads the
    columns :func:`_with_exploration` adds (``_bucket``, ``_global``, ``explore``) and :func:`_with_fits`'."""
    from pyspark.sql import functions as F

    message = F.col("campaign_kind") == "message"
    active = F.col("channel_kind") == "active"
    since_campaign = F.element_at(F.col("recent_by_campaign"), F.col("campaign_id"))  # null map or key: never contacted
    on_channel = F.coalesce(F.element_at(F.col("recent_by_channel"), F.col("channel")), F.lit(0))
    channel_cap = F.coalesce(F.element_at(literal_map([(k, F.lit(v)) for k, v in policy.per_channel_cap.items()]), F.col("channel")), F.lit(1 << 30))
    return {
        "opt_out": F.col("optout_all") | F.coalesce(F.element_at("optout", F.col("_ci")), F.lit(False)),
        "unreachable": ~F.coalesce(F.element_at("reach", F.col("_ci")), F.lit(False)),
        "tier_no_marketing": ~F.col("marketing_allowed"),
        # An open complaint stops every contact and placement whatever the tier, unless the campaign opts
        # in. Service messages (kind message) too, as tier_no_marketing stops them: in the open-complaint
        # tier a trial reminder is already withheld, and exempting messages here would make a VIP's open
        # complaint count for less than anyone else's again. A campaign that must reach such customers says
        # ``while_complaint_open: true`` (this rule only: a tier without marketing still stops it).
        "open_complaint": F.col("open_complaint") & ~F.col("while_complaint_open"),
        "stage_rule": ~message & ~F.coalesce(F.array_contains("stages", F.col("lifecycle_stage")), F.lit(False)),
        "not_eligible": ~message & ~F.coalesce(F.element_at("eligible", F.col("_pi")), F.lit(False)),
        "already_held": ~message & F.array_contains("held", F.col("product_id")),
        "quiet_period": active & (F.coalesce(F.col("tenure_days"), F.lit(0)) < policy.quiet_days),
        "cooldown_after_decline": active & F.coalesce(F.col("days_since_decline") < policy.cooldown_days, F.lit(False)),
        "recently_contacted": active & F.coalesce(since_campaign < F.col("repeat_after_days"), F.lit(False)),
        "frequency_cap": active & ((F.col("recent_total") >= policy.all_channels_cap) | (on_channel >= channel_cap)),
        "global_holdout": F.col("_global"),
        "holdout": in_campaign_holdout(policy, F.col("_bucket")),
        **_value_rules(policy),
    }


def _value_rules(policy, exempt: bool = True) -> dict:
    """harmed: an uplift model predicts the contact lowers the chance of buying by more than the margin
    (``tau < -harm_margin``), or the closure guard found that the offer's contacts close lines (``harm_note``,
    :func:`combos`); no_value: expected value not positive or a zero fit (with tau, the customer-product
    fit is tau's, so only the channel's counts). With ``exempt``, the exploration bucket's active candidates skip
    both here: :func:`decide` applies them again to those that do not get the exploration priority."""
    from pyspark.sql import functions as F

    skip = F.coalesce(F.col("explore"), F.lit(False)) if exempt else F.lit(False)
    tau = F.col("tau")
    zero_fit = (tau.isNull() & (F.col("fit_customer_product") <= 0)) | (F.col("fit_customer_channel") <= 0)
    guarded = F.col("harm_note").isNotNull() if policy.closure_guard else F.lit(False)
    return {
        "harmed": ~skip & (F.coalesce(tau < F.lit(-float(policy.harm_margin)), F.lit(False)) | guarded),
        "no_value": ~skip & (zero_fit | (F.col("expected_value") <= 0)),
    }


def fit_source_col():
    """Where the acceptance came from, for the reasons: ``uplift <family> tau 0.031`` where an uplift model scored
    the customer; else, on an offer family's active offers, ``uplift_note`` (:func:`combos`) then the propensity
    source, e.g. ``cold start: propensity x 0.30 (assumed) (n treated 40 < 500); model take_data decile 7``;
    else the propensity decile or the rule, as before; followed by the closure guard's ``harm_note`` where it
    marks the offer (:func:`combos`)."""
    from pyspark.sql import functions as F

    own = F.coalesce(F.element_at("fit_cp_source", F.col("_pi")), F.lit("rule"))
    source = (F.when(F.col("tau").isNotNull(), F.format_string("uplift %s tau %.3f", F.col("category"), F.col("tau")))
              .when(F.col("uplift_note").isNotNull(), F.concat_ws("; ", F.col("uplift_note"), own)).otherwise(own))
    return F.when(F.col("harm_note").isNotNull(), F.concat_ws("; ", source, F.col("harm_note"))).otherwise(source)


def candidates(frame, products, channels, camps, policy, combo_df, day: dt.date):
    """Pure transform: one row per customer (tags, segment, propensity, uplift, history, trial columns) -> one row
    per candidate with its fits, expected value, ``outcome`` = the first row-level rule it breaks (null when it
    breaks none), ``explored`` / ``explore`` (the exploration bucket: the pair / its active candidate),
    ``value_rule`` (the value rule it breaks, exploration or not), ``valued`` (passes the value rules, or explores;
    whatever the holdouts) and ``tau`` (null without an uplift model)."""
    from pyspark.sql import functions as F

    per_customer = _per_customer(frame, products, channels, camps, day)
    rows = per_customer.select("*", F.explode("_camps").alias("campaign_id")).drop("_camps").join(
        F.broadcast(combo_df), on="campaign_id", how="inner",
    ).where(~F.col("trial") | (F.col("product_id") == F.col("trial_product_id")))
    rows = _with_fits(_with_exploration(rows, policy))
    broken = _broken(policy)
    outcome = F.lit(None).cast("string")
    for rule in reversed(ROW_RULES):
        outcome = F.when(broken[rule], F.lit(rule)).otherwise(outcome)
    passive_touch = 1 - F.exp(-F.col("inbound_30d") / F.lit(30.0) * F.lit(float(policy.passive_horizon_days)))
    valued = ~broken["harmed"] & ~broken["no_value"]  # passes the value rules, held out or not (gold.cpc_offers)
    plain = _value_rules(policy, exempt=False)
    value_rule = F.when(plain["harmed"], F.lit("harmed")).when(plain["no_value"], F.lit("no_value"))
    return rows.select(
        "customer_id", "snapshot_date", "campaign_id", "campaign_kind", "priority", "urgent", "product_id", "category", "offer_name",
        "price", "channel", "channel_kind", "cost", "value", "lifecycle_stage", "service_tier",
        F.round("fit_customer_product", 4).alias("fit_customer_product"),
        F.round("fit_product_channel", 4).alias("fit_product_channel"),
        F.round("fit_customer_channel", 4).alias("fit_customer_channel"),
        F.round("expected_value", 4).alias("expected_value"),
        fit_source_col().alias("fit_source"),
        (passive_touch >= policy.passive_min_probability).alias("likely_passive"),
        outcome.alias("outcome"), "explored", "explore", value_rule.alias("value_rule"), valued.alias("valued"),
        F.round("tau", 4).alias("tau"),
    )


def _rank(*partition):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return F.row_number().over(Window.partitionBy(*partition).orderBy(*candidate_order()))


def assign(active, capacity: dict[str, int], rounds: int, log=log.info):
    """Active contacts under each channel's daily capacity, across all customers: deferred acceptance (the
    former method, ``assignment: deferred_acceptance`` in conf/policy.yaml; the default is the priced
    assignment, :func:`jobs.stages.cpc.assign.assign_priced`, whose total expected value was at least this one's
    on every instance tested: tests/test_assignment.py, bench/assignment_check.py).

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


def explorer_priority(active, capacity: dict[str, int], share: float):
    """The explorers' candidates that get the exploration priority (Spark twin of
    :func:`jobs.stages.cpc.pricing.explorer_priority`): each explorer's best active candidate (``explore``; ranked
    by ``assign.candidate_order``), then per channel at most ``pricing.quota`` of them, drawn by the salted hash of
    (``snapshot_date``, customer) (ties: customer id), a distributed top-k per channel. Returns the (customer_id,
    campaign_id, product_id, channel) keys, or None when no channel has a place for them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    places = {ch: n for ch, n in pricing.quota(capacity, share).items() if n > 0}
    if not places:
        return None
    mine = active.where(F.coalesce(F.col("explore"), F.lit(False)))
    best = mine.withColumn("_r", F.row_number().over(Window.partitionBy("customer_id").orderBy(*candidate_order()))).where("_r = 1")
    best = best.withColumn("_draw", holdout_bucket_col(pricing.EXPLORE_SALT, F.col("snapshot_date").cast("string"), F.col("customer_id")))
    parts = [best.where(F.col("channel") == ch).orderBy("_draw", "customer_id").limit(n).select(*KEYS) for ch, n in sorted(places.items())]
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def _with_priority(survived, capacity: dict[str, int], policy):
    """The active candidates past passive-first -> with ``explore_priority`` (:func:`explorer_priority`, within
    ``exploration_capacity_share`` of each channel's capacity). An explorer's candidate without the priority
    competes like everyone else's: the value rule it breaks (``value_rule``, skipped in :func:`candidates`)
    removes it now (rules 14-15 come before passive-first: its outcome, whatever passive-first said)."""
    from pyspark.sql import functions as F

    share = float(getattr(policy, "exploration_capacity_share", 0.0))
    pending = survived.where(F.col("outcome").isNull())
    boosted = explorer_priority(pending, capacity, share) if policy.exploration > 0 else None
    if boosted is None:
        flagged = survived.withColumn("explore_priority", F.lit(False))
    else:
        flagged = survived.join(boosted.withColumn("_p", F.lit(True)), on=KEYS, how="left").withColumn(
            "explore_priority", F.coalesce(F.col("_p"), F.lit(False))).drop("_p")
    demoted = F.coalesce(F.col("explore"), F.lit(False)) & ~F.col("explore_priority") & F.col("value_rule").isNotNull()
    return flagged.withColumn("outcome", F.when(demoted, F.col("value_rule")).otherwise(F.col("outcome"))).withColumn(
        "valued", F.when(demoted, F.lit(False)).otherwise(F.col("valued")))


def decide(cands, channels, policy, log=log.info, customers: int = 0):
    """Candidates with row-level outcomes -> every candidate with its final outcome (a step of ``STEPS``).
    ``customers`` (the day's customers) sizes a capacity given as a share. The exploration priority
    (``explore_priority``: :func:`_with_priority`) is assigned first after urgent service messages
    (:data:`EXPLORE_PRIORITY`)."""
    from pyspark.sql import functions as F

    defaults = {"explore": F.lit(False), "value_rule": F.lit(None).cast("string"), "valued": F.lit(True)}
    cands = cands.withColumns({c: v for c, v in defaults.items() if c not in cands.columns}).withColumn("explore_priority", F.lit(False))
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
    capacity = {c.id: fits.daily_capacity(c.capacity, customers) for c in channels if c.kind == "active"}
    survived = _with_priority(survived.drop("explore_priority"), capacity, policy).localCheckpoint()
    active = survived.where(F.col("outcome").isNull())
    pool = active.withColumn("expected_value", F.when(F.col("explore_priority"),
                                                      F.col("expected_value") + F.lit(EXPLORE_PRIORITY)).otherwise(F.col("expected_value")))
    if policy.assignment == "deferred_acceptance":
        taken = assign(pool, capacity, policy.assignment_rounds, log)
    else:
        taken = assign_priced(pool, capacity, policy.assignment_passes, log)
    taken = taken.withColumn("_taken", F.lit(True))
    reached = taken.select("customer_id").distinct().withColumn("_reached", F.lit(True))
    active = (
        active.join(taken, on=KEYS, how="left")
        .join(reached, on="customer_id", how="left")
        .withColumn("outcome", F.when(F.col("_taken"), F.lit("contact"))
                    .when(F.col("_reached"), F.lit("one_offer_a_day")).otherwise(F.lit("capacity")))
        .drop("_taken", "_reached")
    )
    done = cands.where(F.col("outcome").isNotNull()).unionByName(survived.where(F.col("outcome").isNotNull())) \
        .unionByName(passive).unionByName(active)
    return done.withColumn("step_no", step_no_col())


def reasons_col():
    """The decision's reasons as text; a candidate with the exploration priority's (``explore_priority``:
    contacted whatever the ranking, within the channel's exploration share) start with ``exploration; ``."""
    from pyspark.sql import functions as F

    text = F.format_string(
        "campaign %s; stage %s; product fit %.2f (%s); %s carries %s at %.2f; customer fit to %s %.2f; expected value %.2f",
        "campaign_id", "lifecycle_stage", "fit_customer_product", "fit_source", "channel", "category",
        "fit_product_channel", "channel", "fit_customer_channel", "expected_value",
    )
    return F.concat(F.when(F.coalesce(F.col("explore_priority"), F.lit(False)), F.lit("exploration; ")).otherwise(F.lit("")), text)


def not_chosen(decided):
    """For each (customer, campaign) with a candidate past both holdouts (a step of ``SELECTION``) but no
    contact and no placement: its best candidate (``_rank``, as for the held out: the offer it would have had
    first) with outcome ``not_chosen``. Lost to the value rules (harmed, no value), to one-a-day, to capacity, or
    to another campaign's offer."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pair = Window.partitionBy("customer_id", "campaign_id")
    past = decided.where(F.col("outcome").isin(*SELECTION)).withColumn(
        "_chosen", F.max(F.col("outcome").isin(*CHOSEN)).over(pair))
    lost = past.where(~F.col("_chosen")).drop("_chosen").withColumn("_r", _rank("customer_id", "campaign_id"))
    return lost.where("_r = 1").drop("_r").withColumn("outcome", F.lit(NOT_CHOSEN))


def active_eligible_pairs(decided):
    """The (customer_id, campaign_id) pairs with an active candidate past the eligibility rules (1-11: its step is
    ``global_holdout`` or later), with ``active_eligible`` true: in the holdout or the exploration bucket alike, the
    pair could have been contacted that day. Spark twin of :func:`jobs.stages.cpc.campaigns.active_eligible`."""
    from pyspark.sql import functions as F

    past = (F.col("channel_kind") == "active") & (F.col("step_no") >= F.lit(len(ELIGIBILITY)))
    return decided.where(past).select("customer_id", "campaign_id").distinct().withColumn("active_eligible", F.lit(True))


def decisions(decided, run_id: str):
    """The rows acted on: contacts, placements; and recorded, never acted on, one row per (customer, campaign)
    with the candidate it would have been offered first: in a holdout (the campaign's or the global one: the
    control groups), or eligible past both holdouts and not chosen (:func:`not_chosen`). Every eligible
    (customer, campaign) is thus treated, held out or not chosen. ``explored``: the (customer, campaign) is in the
    campaign's exploration bucket; ``active_eligible``: the pair had an active candidate past the eligibility rules
    (:func:`active_eligible_pairs`), on every row of the pair: the uplift models' arms are the exploration and
    holdout pairs with it (docs/models.md)."""
    from pyspark.sql import functions as F

    held = decided.where(F.col("outcome").isin(*HELD_OUT)).withColumn("_r", _rank("customer_id", "campaign_id", "outcome"))
    rows = (decided.where(F.col("outcome").isin(*CHOSEN)).unionByName(held.where("_r = 1").drop("_r"))
            .unionByName(not_chosen(decided)))
    rows = rows.join(active_eligible_pairs(decided), on=["customer_id", "campaign_id"], how="left")
    ref = F.substring(F.sha2(F.concat_ws("|", "snapshot_date", "customer_id", "campaign_id", "product_id", "channel"), 256), 1, 20)
    return rows.select(
        "snapshot_date", "customer_id", "campaign_id", "campaign_kind", "product_id", "category", "offer_name", "price",
        "channel", "channel_kind", "outcome", "expected_value", "fit_customer_product", "fit_product_channel",
        "fit_customer_channel", "fit_source", "cost", "value", "lifecycle_stage", "service_tier",
        reasons_col().alias("reasons"), ref.alias("contact_ref"), F.lit(run_id).alias("run_id"),
        F.coalesce(F.col("explored"), F.lit(False)).alias("explored"),
        F.coalesce(F.col("active_eligible"), F.lit(False)).alias("active_eligible"),
    )


def offers(decided, top_n: int):
    """Analysts' view: each customer's best offers (one per product, on its best channel) among the candidates
    the policy let through, ranked by expected value, with what became of each."""
    from pyspark.sql import functions as F

    # past the eligibility rules (the holdouts' candidates and after) and of value (or exploration's)
    ok = decided.where((F.col("step_no") >= STEPS.index(HELD_OUT[0])) & F.col("valued"))
    best = ok.withColumn("_r", _rank("customer_id", "product_id")).where("_r = 1").drop("_r")
    ranked = best.withColumn("rank", _rank("customer_id")).where(F.col("rank") <= top_n)
    return ranked.select(
        "customer_id", "snapshot_date", "rank", "campaign_id", "product_id", "category", "channel", "channel_kind",
        "expected_value", "fit_customer_product", "fit_product_channel", "fit_customer_channel", "fit_source",
        "lifecycle_stage", "service_tier", F.col("outcome").alias("decision"), reasons_col().alias("reasons"),
    )


def past_eligibility(cands):
    """The candidates no eligibility rule (1-11, ``ELIGIBILITY``) removed: all that :func:`decide`,
    :func:`decisions` and :func:`offers` read. The rest matter only to the funnel's counts (:func:`ineligible`)."""
    from pyspark.sql import functions as F

    return cands.where(~F.coalesce(F.col("outcome").isin(*ELIGIBILITY), F.lit(False)))


def ineligible(cands):
    """The candidates an eligibility rule removed, counted as :func:`funnel_rows` needs them: one row per campaign,
    customer, channel and rule (``outcome``, ``step_no``) with ``count``. Much smaller than the candidates: the
    products and the customers' columns are gone."""
    from pyspark.sql import functions as F

    return cands.where(F.col("outcome").isin(*ELIGIBILITY)).groupBy("campaign_id", "customer_id", "channel", "outcome").agg(
        F.count(F.lit(1)).alias("count")).withColumn("step_no", step_no_col())


def step_no_col():
    """A candidate's step: the position of its ``outcome`` in ``STEPS``."""
    from pyspark.sql import functions as F

    return F.element_at(literal_map([(s, F.lit(i)) for i, s in enumerate(STEPS)]), F.col("outcome"))


def funnel_rows(decided, day: dt.date, removed=None):
    """Which rule removed how many: per campaign and channel in candidates, per campaign in customers (a
    customer leaves a campaign at the step where its last candidate went: the largest step of its candidates).
    ``removed``: the candidates of the eligibility rules as :func:`ineligible` counts them, when ``decided`` holds
    only those :func:`past_eligibility` kept (the nightly); without it, ``decided`` holds every candidate."""
    from pyspark.sql import functions as F

    by_candidate = decided.groupBy("campaign_id", "channel", "step_no", "outcome").agg(F.count(F.lit(1)).alias("count"))
    per_customer = decided.groupBy("campaign_id", "customer_id").agg(F.max("step_no").alias("step_no"))
    if removed is not None:  # its rules are not in decided: its counts add rows, its steps join each pair's largest
        by_candidate = by_candidate.unionByName(
            removed.groupBy("campaign_id", "channel", "step_no", "outcome").agg(F.sum("count").alias("count")))
        per_customer = per_customer.unionByName(removed.select("campaign_id", "customer_id", "step_no")).groupBy(
            "campaign_id", "customer_id").agg(F.max("step_no").alias("step_no"))
    by_candidate = by_candidate.withColumn("grain", F.lit("candidate"))
    names = F.element_at(F.array(*[F.lit(s) for s in STEPS]), F.col("step_no") + 1)
    by_customer = per_customer.groupBy("campaign_id", "step_no").agg(F.count(F.lit(1)).alias("count")).select(
        "campaign_id", F.lit("all").alias("channel"), "step_no", names.alias("outcome"), "count", F.lit("customer").alias("grain"))
    return by_candidate.unionByName(by_customer).select(
        F.lit(day).alias("snapshot_date"), "grain", "campaign_id", "channel", "step_no", F.col("outcome").alias("step"),
        F.col("count").cast("long").alias("count"))
