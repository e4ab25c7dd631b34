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
probability (service messages: scale 1). Where an uplift model of the product's family scored the customer
(gold.uplift), an active offer's acceptance is the model's ``tau`` instead: ``tau x value - cost``; once a family
has a model, the other active offers' acceptance is multiplied by an incrementality factor (measured by the
evaluation, else assumed: inputs.cold_start_ranking), so that both rank on one scale; with ``uplift.rank:
false`` in conf/models.yaml (or ``CPC_UPLIFT_RANK=false``) the decision reads no uplift score and every offer
ranks by propensity, as before the uplift models (the closed loop's comparison). The policy
(``conf/policy.yaml``) then removes candidates rule by rule, in a fixed order; the first rule a candidate breaks
is recorded as its outcome, so ``gold.cpc_funnel`` can say which rule removed how many candidates and customers:

    opt_out, unreachable, tier_no_marketing, open_complaint, stage_rule, not_eligible, already_held,
    quiet_period, cooldown_after_decline, recently_contacted, frequency_cap
                       (row by row, column expressions: who may be offered what where)
    global_holdout     a stable share of all customers no campaign contacts or places: recorded, never contacted
    holdout            the campaign's control group: recorded, never contacted
    harmed             an uplift model predicts the contact pushes the customer away (tau < -harm_margin), or
                       the closure guard: the evaluation found that the offer's contacts close lines
    no_value           expected value not positive
                       (an explorer's candidate with the exploration priority skips harmed and no_value)
    passive_first      a customer likely to come to a passive channel soon gets the offer placed there
    one_offer_a_day    one active contact a customer a day; one placement per passive touchpoint
    capacity           the channel's daily capacity went to other customers (a more valuable assignment)

What survives becomes a ``placement`` (passive channels) or a ``contact`` (active channels); a customer a
campaign could have reached past both holdouts but did not (no contact, no placement: value, one-a-day,
capacity) is recorded once per campaign as ``not_chosen`` with the offer it would have had first, never acted on,
so the evaluation can tell targeting from contact (docs/evaluation.md). Active contacts are
assigned across all customers by per-channel prices (``jobs.stages.cpc.assign``, reference
``jobs.stages.cpc.pricing``; deferred acceptance, :func:`assign`, on request), never first come first served;
the exploration priority (``exploration`` in conf/policy.yaml: one candidate per explorer, at most
``exploration_capacity_share`` of each channel's capacity, ``decide.explorer_priority``) right after urgent
service messages.
Everything is DataFrame work: per-customer maps, one explode, a broadcast join, windows by customer, and for
capacity per-channel top-k (``orderBy().limit()``, distributed); nothing customer-sized reaches the driver.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import asdict, replace

from jobs.platform import lake
from jobs.platform.config import Paths, business
from jobs.platform.errors import ConfigError
from jobs.stages.cpc import campaigns as campaign_conf
from jobs.stages.cpc import fits
from jobs.stages.cpc.decide import (
    HELD_OUT,
    NOT_CHOSEN,
    ROW_RULES,
    RULES,
    STEPS,
    assign,
    candidates,
    combos,
    decide,
    decisions,
    funnel_rows,
    holdout_bucket_col,
    in_campaign_holdout,
    in_exploration,
    in_global_holdout,
    ineligible,
    offers,
    past_eligibility,
)
from jobs.stages.cpc.inputs import (
    acceptance_scales,
    business_fingerprint,
    closure_harm,
    day_customers,
    decision_run_id,
    deliveries_fingerprint,
    history,
    input_versions,
    inputs,
    model_versions,
    product_channel_table,
    ranking_off,
    trials,
    uplift_ranking,
)
from jobs.stages.tags import load_catalogue
from models import uplift as uplift_model

__all__ = ["HELD_OUT", "NOT_CHOSEN", "ROW_RULES", "RULES", "STEPS", "acceptance_scales", "assign", "candidates", "closure_harm",
           "combos", "day_customers", "decide", "inputs", "decision_run_id", "history", "holdout_bucket_col", "in_campaign_holdout", "in_exploration", "in_global_holdout",
           "load_conf", "run", "trials"]
log = logging.getLogger(__name__)


def load_conf():
    """Products, channels, categories, campaigns and policy, all checked (errors name the file). The policy
    carries the uplift models' harm margin (conf/models.yaml ``uplift.harm_margin``, rule harmed)."""
    known = set(load_catalogue().ids) | {"lifecycle_stage", "service_tier"}
    products, channels, categories = fits.load(known)
    stages = {s["stage"] for s in business("lifecycle")["stages"]}
    camps = campaign_conf.load([p.id for p in products], [c.id for c in channels], known, stages=stages)
    policy = replace(campaign_conf.load_policy(), harm_margin=uplift_model.load_settings().harm_margin)
    check_exploration(camps, policy)
    active = {c.id for c in channels if c.kind == "active"}
    if set(policy.per_channel_cap) - active:
        raise ConfigError(f"conf/policy.yaml: frequency.per_channel names unknown or passive channel(s) "
                          f"{sorted(set(policy.per_channel_cap) - active)}; active channels: {sorted(active)}")
    if policy.assignment_rounds <= len(active):
        raise ConfigError(f"conf/policy.yaml: assignment_rounds must exceed the {len(active)} active channels")
    return products, channels, categories, camps, policy


def check_exploration(camps, policy) -> None:
    """Each offer campaign's exploration bucket sits right above its holdout: together they must stay below every
    customer (an error names the campaign's file and the field)."""
    for c in camps:
        if c.kind == "offer" and c.holdout + policy.exploration >= 1:
            raise ConfigError(f"{c.source}: holdout: {c.holdout} and the exploration share {policy.exploration} "
                              "(conf/policy.yaml: exploration) must together stay below 1")


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
    s = uplift_model.load_settings()
    used_models = model_versions(spark, paths, day, products, uplift=s.rank)
    harm = closure_harm(spark, paths, day, camps, policy)
    if harm:
        log.info(f"score {day}: closure guard: {len(harm)} offer(s) harmed: " + "; ".join(f"{c} {p}" for c, p in harm))
    run_id = decision_run_id(day, deliveries_fingerprint(spark, paths, day), business_fingerprint(), used_models, harm)
    frame = inputs(spark, paths, day, products, policy, camps, uplift=s.rank)
    scales = acceptance_scales(spark, paths, day, channels)
    notes, factors = uplift_ranking(spark, paths, day, products, camps, s.cold_start_incrementality) if s.rank \
        else ranking_off(products, camps)
    combo_df = combos(spark, products, channels, camps, pc_fit, day, {ch: v["scale"] for ch, v in scales.items()}, notes, factors,
                      harm)
    cands = candidates(frame, products, channels, camps, policy, combo_df, day).localCheckpoint()
    customers = day_customers(spark, paths, day)
    # Only the candidates past the eligibility rules go on to the decision (on the sample 53% of them): the
    # rest matter to the funnel alone, which gets their counts (a row per campaign, customer, channel and rule).
    removed = ineligible(cands).localCheckpoint()
    decided = decide(past_eligibility(cands), channels, policy, customers=customers).localCheckpoint()
    # merge_schema: a table written before the explored column gains it (older rows read null). The summary's
    # counts are observed on the rows as the write's own job writes them: no query reads them back. The observed
    # node sits in the write's last stage, so a retried task counts once; a shuffle added above it (a write that
    # repartitions) would let a retried stage count twice.
    from pyspark.sql import Observation

    counted = Observation("cpc_decisions_written")
    lake.replace(decisions(decided, run_id).observe(counted, *written_counts(channels)), paths, "gold.cpc_decisions", cond,
                 merge_schema=True)
    lake.replace(offers(decided, policy.top_offers), paths, "gold.cpc_offers", cond)
    lake.replace(funnel_rows(decided, day, removed), paths, "gold.cpc_funnel", cond)
    record = spark.createDataFrame([(
        day, run_id, json.dumps(versions, sort_keys=True), json.dumps(used_models, sort_keys=True),
        campaign_conf.config_fingerprint(), json.dumps(asdict(policy), sort_keys=True),
        ",".join(c.id for c in camps if c.active_on(day)),
    )], "snapshot_date date, run_id string, input_versions string, model_versions string, config_sha256 string, policy string, campaigns string")
    lake.replace(record, paths, "ops.cpc_runs", cond)
    log.info(f"score {day}: capacities for {customers} customers: " + ", ".join(
        f"{c.id} {fits.daily_capacity(c.capacity, customers)}" for c in channels if c.kind == "active"))
    if factors:
        log.info(f"score {day}: offers without an uplift score rank by propensity x incrementality: " + "; ".join(
            f"{f}: {notes[f]}" for f in sorted(factors)))
    log.info(f"score {day}: acceptance scales " + ", ".join(
        f"{ch} {v['scale']:.4f} ({v['accepted']}/{v['contacts']} accepted)" for ch, v in sorted(scales.items())))
    return _written(observed(counted, spark, paths, day), day, t0)


COUNTED = ("contact", "placement", "holdout", "global_holdout", NOT_CHOSEN)  # the outcomes the summary gives
OBSERVED_WAIT_S = 120.0  # how long the summary waits for the counts observed on the write (:func:`observed`)


def written_counts(channels) -> list:
    """The summary's counts of the day's gold.cpc_decisions rows, as aggregate columns for a pyspark
    ``Observation`` on the frame written: rows per outcome of :data:`COUNTED` (``outcome <name>``), contacts per
    active channel (``contact <channel>``) and exploration contacts (``explored``)."""
    from pyspark.sql import functions as F

    contact = F.col("outcome") == "contact"
    return [*(F.count_if(F.col("outcome") == o).alias(f"outcome {o}") for o in COUNTED),
            *(F.count_if(contact & (F.col("channel") == c.id)).alias(f"contact {c.id}") for c in channels if c.kind == "active"),
            F.count_if(contact & F.coalesce(F.col("explored"), F.lit(False))).alias("explored")]


def observed(counted, spark, paths: Paths, day: dt.date, wait_s: float = OBSERVED_WAIT_S) -> dict:
    """The counts ``counted`` (a pyspark ``Observation``) holds once the write has finished. Spark hands them over
    through its listener bus, which can drop events when its queue is full; ``Observation.get`` would then wait
    for ever. After ``wait_s`` seconds the day's partition is read back and counted instead (the stage's earlier
    way), with a warning."""
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="observed")
    try:
        return pool.submit(lambda: counted.get).result(timeout=wait_s)
    except concurrent.futures.TimeoutError:
        log.warning(f"score {day}: the counts observed on gold.cpc_decisions' write did not arrive in {wait_s:.0f} s; "
                    "counting the written partition instead")
        return read_back_counts(spark, paths, day)
    finally:
        pool.shutdown(wait=False)


def read_back_counts(spark, paths: Paths, day: dt.date) -> dict:
    """What :func:`written_counts` observes, counted from the day's gold.cpc_decisions as written: outcomes x
    channels rows."""
    from pyspark.sql import functions as F

    rows = lake.read(spark, paths, "gold.cpc_decisions").where(f"snapshot_date = '{day.isoformat()}'").groupBy("outcome", "channel").agg(
        F.count(F.lit(1)).alias("n"), F.sum(F.coalesce(F.col("explored"), F.lit(False)).cast("long")).alias("x")).collect()
    contacts = [r for r in rows if r["outcome"] == "contact"]
    return {**{f"outcome {o}": sum(r["n"] for r in rows if r["outcome"] == o) for o in COUNTED},
            **{f"contact {r['channel']}": r["n"] for r in contacts}, "explored": sum(int(r["x"] or 0) for r in contacts)}


def _written(seen: dict, day: dt.date, t0: float) -> dict:
    """The day's gold.cpc_decisions counted by outcome (contacts per channel, exploration contacts among them),
    logged and returned as the stage's summary: ``seen`` is what :func:`written_counts` gave on the rows the
    write wrote (:func:`observed`; a channel without contacts is left out, as grouping the rows would leave it out)."""
    counts = {o: int(seen[f"outcome {o}"]) for o in COUNTED}
    by_channel = {k.removeprefix("contact "): int(v) for k, v in seen.items() if k.startswith("contact ") and v}
    explored = int(seen["explored"])
    log.info(f"score {day}: {counts.get('contact', 0)} contacts ({', '.join(f'{k} {v}' for k, v in sorted(by_channel.items()))}; "
             f"{explored} of them exploration), {counts.get('placement', 0)} placements, {counts.get('holdout', 0)} in holdouts, "
             f"{counts.get('global_holdout', 0)} global holdout records, {counts.get(NOT_CHOSEN, 0)} eligible not chosen "
             f"-> gold.cpc_decisions, gold.cpc_funnel ({time.time() - t0:.1f}s)")
    return {"contacts": counts.get("contact", 0), "placements": counts.get("placement", 0),
            "holdout": counts.get("holdout", 0), "global_holdout": counts.get("global_holdout", 0),
            "not_chosen": counts.get(NOT_CHOSEN, 0), "by_channel": by_channel, "explored_contacts": explored}
