"""Evaluation: what became of each decision, and whether the campaigns work against their control groups.

Two tables, rebuilt by the nightly ``evaluate`` stage after the export:

``gold.campaign_outcomes``: one row per decision (contact, placement, holdout or global-holdout member, eligible
but not chosen) of the last ``lookback_days`` decision dates: the responses its contact_ref came back with
(delivered, opened, clicked, accepted, declined, opted out, complained), whether the customer ordered the
offered product within ``window_days`` after the decision, whoever sold it (so a holdout member's organic
order counts too: the comparison is intent-to-treat), with the price of the first such order as revenue, and
whether the customer's line was closed in that window (``closed``: bronze.crm_profile's status, whatever the
cause, so a contact's harm shows as more closures among the eligible than in the holdout). A decision's outcome
is final once its window has passed (``matured``). ``group`` is ``treated`` (contacts, placements),
``holdout`` (the campaign's control group), ``not_chosen`` (eligible past both holdouts, neither contacted
nor placed by the campaign: one-a-day, capacity) or ``global_holdout`` (held out of every campaign,
conf/policy.yaml ``global_holdout``).

``gold.campaign_eval``: as of the run date, per campaign, channel, product and service tier, and every
roll-up of them (``level`` names the dimensions kept, ``*`` stands for all): contacts, placements, responses,
conversions, revenue, cost, return; against the campaign's holdout, the naive reading (treated only):
conversion rates, absolute lift with a 95% confidence interval (normal approximation for a difference of
proportions), relative lift, incremental conversions; and the three-way reading (:func:`three_way`), which
separates targeting from contact: intent-to-treat (every eligible decision, treated or not chosen, against the
holdout, both random slices of the same eligible population), the contact's effect on the treated (ITT /
treated share, Bloom's estimator), the selection gap (naive lift minus that effect: what the choice of
customers, not the contact, accounts for), incremental conversions and value with intervals, and the
programme's lift against the global holdout (every campaign's effect together); the same three-way reading of
closures (:data:`CLOSURE_READING`: the contact's effect on closing the line, incremental closures with intervals).
Every group comes from the
same decision dates, so all had the same time to convert; ``matured_share`` says how much of a cell has had
the whole window (below 1 the reading is interim).

Caveats written into docs/evaluation.md: the naive lift compares the best of the eligible (the contacted) with
a random slice of them, so it overstates the contact's effect; the effect on the treated assumes the campaign
changes nothing for the eligible it did not choose; a cell counts decision rows, and a treated customer may
have several (placements on several passive channels) where a held-out or not-chosen one has one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import logging
import math
import time
from typing import Any, NamedTuple

from jobs.platform import arrow_lake, lake
from jobs.platform.config import Paths
from jobs.stages.cpc.campaigns import evaluation_settings
from jobs.stages.cpc.decide import CHOSEN
from jobs.stages.evaluate import rebuild, report

log = logging.getLogger(__name__)

Z95 = 1.959964
DIMS = ("campaign_id", "channel", "product_id", "service_tier")
EVENTS = ("delivered", "failed", "opened", "clicked", "accepted", "declined", "opted_out", "complained")


def settings() -> dict:
    """conf/policy.yaml ``evaluation`` (window_days, lookback_days): :func:`jobs.stages.cpc.campaigns.evaluation_settings`,
    shared with the uplift training."""
    return evaluation_settings()


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


class Group(NamedTuple):
    """One group of a cell: decisions ``n``, ``conversions``, and the sum and sum of squares of their revenue
    (numbers, or Spark columns for the twins)."""

    n: Any
    conversions: Any
    revenue: Any = 0.0
    revenue_sq: Any = 0.0


# The three-way reading's columns of gold.campaign_eval, in the table's order (after the counts).
THREE_WAY = ("treated_share", "itt_lift", "itt_lift_low", "itt_lift_high", "effect_on_treated", "effect_low", "effect_high",
             "selection_gap", "incremental_conversions_itt", "incremental_conversions_itt_low",
             "incremental_conversions_itt_high", "incremental_value", "incremental_value_low", "incremental_value_high",
             "programme_lift", "programme_lift_low", "programme_lift_high")


def mean_diff(n_a: int, s_a: float, q_a: float, n_b: int, s_b: float, q_b: float, z: float = Z95) -> dict:
    """Mean of group a minus mean of group b, from each group's size n, sum s and sum of squares q, with a
    normal-approximation interval from the groups' unbiased variances (Welch's standard error). None where a
    group is empty; the interval is None where a group has fewer than two (no variance to estimate)."""
    if not n_a or not n_b:
        return {"diff": None, "low": None, "high": None}
    diff = s_a / n_a - s_b / n_b
    if n_a < 2 or n_b < 2:
        return {"diff": diff, "low": None, "high": None}
    var_a = max((q_a - s_a * s_a / n_a) / (n_a - 1), 0.0)
    var_b = max((q_b - s_b * s_b / n_b) / (n_b - 1), 0.0)
    half = z * math.sqrt(var_a / n_a + var_b / n_b)
    return {"diff": diff, "low": diff - half, "high": diff + half}


def mean_diff_cols(n_a, s_a, q_a, n_b, s_b, q_b, z: float = Z95) -> dict:
    """Spark twin of :func:`mean_diff` over sum columns."""
    from pyspark.sql import functions as F

    both, enough = (n_a > 0) & (n_b > 0), (n_a > 1) & (n_b > 1)
    diff = F.when(both, s_a / n_a - s_b / n_b)
    var_a = F.when(enough, F.greatest((q_a - s_a * s_a / n_a) / (n_a - 1), F.lit(0.0)))
    var_b = F.when(enough, F.greatest((q_b - s_b * s_b / n_b) / (n_b - 1), F.lit(0.0)))
    half = F.when(enough, F.lit(z) * F.sqrt(var_a / n_a + var_b / n_b))
    return {"diff": diff, "low": diff - half, "high": diff + half}


def three_way(treated: Group, not_chosen: Group, holdout: Group, global_holdout: Group, z: float = Z95) -> dict:
    """The three-way reading of one cell (``THREE_WAY``), each estimate with its 95% interval:

    - intent-to-treat: the eligible (treated + not chosen) against the campaign's holdout, both random slices
      of the same eligible population (the holdout is drawn before selection): ``itt_lift``;
    - the contact's effect on the customers chosen (Bloom): ITT / ``treated_share`` (treated among the
      eligible), assuming the campaign changes nothing for the not chosen; its interval is the ITT's divided by
      the share (the share taken as known). ``selection_gap`` = naive lift (treated against holdout) minus
      this effect: how much of the naive lift is who was chosen rather than the contact;
    - incremental conversions and value at that scale (x treated): the ITT difference in conversion rate, and
      in revenue per eligible decision (unbiased variances), / share x treated;
    - the programme: every decision outside the global holdout (treated + not chosen + holdout) against the
      global holdout's, which includes the other campaigns' effects on the same customers and products.

    None where a group it needs is empty (no treated: no effect to scale)."""
    n_e, x_e = treated.n + not_chosen.n, treated.conversions + not_chosen.conversions
    itt = lift(n_e, x_e, holdout.n, holdout.conversions, z)
    naive = lift(treated.n, treated.conversions, holdout.n, holdout.conversions, z)
    value = mean_diff(n_e, treated.revenue + not_chosen.revenue, treated.revenue_sq + not_chosen.revenue_sq,
                      holdout.n, holdout.revenue, holdout.revenue_sq, z)
    programme = lift(n_e + holdout.n, x_e + holdout.conversions, global_holdout.n, global_holdout.conversions, z)
    share = treated.n / n_e if n_e else None

    def per_treated(v, scale=1.0):
        return None if v is None or not share else v / share * scale

    effect = [per_treated(itt[k]) for k in ("lift", "lift_low", "lift_high")]
    conversions = [per_treated(itt[k], treated.n) for k in ("lift", "lift_low", "lift_high")]
    money = [per_treated(value[k], treated.n) for k in ("diff", "low", "high")]
    gap = None if naive["lift"] is None or effect[0] is None else naive["lift"] - effect[0]
    readings = [share, itt["lift"], itt["lift_low"], itt["lift_high"], *effect, gap, *conversions, *money,
                programme["lift"], programme["lift_low"], programme["lift_high"]]
    return dict(zip(THREE_WAY, readings, strict=True))


def three_way_cols(treated: Group, not_chosen: Group, holdout: Group, global_holdout: Group, z: float = Z95) -> dict:
    """Spark twin of :func:`three_way` over count and sum columns."""
    from pyspark.sql import functions as F

    n_e, x_e = treated.n + not_chosen.n, treated.conversions + not_chosen.conversions
    itt = lift_cols(n_e, x_e, holdout.n, holdout.conversions, z)
    naive = lift_cols(treated.n, treated.conversions, holdout.n, holdout.conversions, z)
    value = mean_diff_cols(n_e, treated.revenue + not_chosen.revenue, treated.revenue_sq + not_chosen.revenue_sq,
                           holdout.n, holdout.revenue, holdout.revenue_sq, z)
    programme = lift_cols(n_e + holdout.n, x_e + holdout.conversions, global_holdout.n, global_holdout.conversions, z)
    share = F.when(n_e > 0, treated.n / n_e)

    def per_treated(v, scale=None):
        return F.when(share > 0, v / share * (scale if scale is not None else F.lit(1.0)))

    effect = [per_treated(itt[k]) for k in ("lift", "lift_low", "lift_high")]
    conversions = [per_treated(itt[k], treated.n) for k in ("lift", "lift_low", "lift_high")]
    money = [per_treated(value[k], treated.n) for k in ("diff", "low", "high")]
    readings = [share, itt["lift"], itt["lift_low"], itt["lift_high"], *effect, naive["lift"] - effect[0], *conversions,
                *money, programme["lift"], programme["lift_low"], programme["lift_high"]]
    return dict(zip(THREE_WAY, readings, strict=True))


# The three-way reading of closures, in gold.campaign_eval's order (after the closure counts): the contact's effect on
# closing the line within the window (per treated decision), the incremental closures it caused, the programme's
# lift in closures over the global holdout; each the THREE_WAY reading whose name it maps to, over closures.
CLOSURE_READING = {"closure_effect": "effect_on_treated", "closure_effect_low": "effect_low",
                   "closure_effect_high": "effect_high", "incremental_closures": "incremental_conversions_itt",
                   "incremental_closures_low": "incremental_conversions_itt_low",
                   "incremental_closures_high": "incremental_conversions_itt_high",
                   "programme_closure_lift": "programme_lift", "programme_closure_lift_low": "programme_lift_low",
                   "programme_closure_lift_high": "programme_lift_high"}


def closure_reading(treated: Group, not_chosen: Group, holdout: Group, global_holdout: Group, z: float = Z95) -> dict:
    """:data:`CLOSURE_READING` of one cell: :func:`three_way` with each group's closures as its ``conversions``."""
    tw = three_way(treated, not_chosen, holdout, global_holdout, z)
    return {name: tw[k] for name, k in CLOSURE_READING.items()}


def closure_reading_cols(z: float = Z95) -> dict:
    """Spark twin of :func:`closure_reading` over the cube's count columns."""
    from pyspark.sql import functions as F

    groups = [Group(F.col(n), F.col(x)) for n, x in (("treated", "closures"), ("not_chosen", "not_chosen_closures"),
                                                      ("holdout", "holdout_closures"),
                                                      ("global_holdout", "global_holdout_closures"))]
    tw = three_way_cols(*groups, z)
    return {name: tw[k] for name, k in CLOSURE_READING.items()}


def outcomes(decisions, responses, orders, day: dt.date, window_days: int, closures=None):
    """Pure transform: decisions x responses (by contact_ref) x orders of the offered product within the window
    x closures (``customer_id``, ``closed_on``: :func:`closures_of`; None: none known) -> one row per decision with
    its response flags, conversion and revenue, ``closed`` (a closed record of the line within the window, up to
    ``day``), ``explored`` (the decision's exploration flag; false for decisions recorded before the flag existed)
    and ``active_eligible`` (the pair had an active candidate past the eligibility rules; null, unknown, for
    decisions recorded before it existed): the uplift models' arms are the exploration and holdout pairs with it."""
    from pyspark.sql import functions as F

    explored = F.coalesce(F.col("explored"), F.lit(False)) if "explored" in decisions.columns else F.lit(False)
    eligible = F.col("active_eligible") if "active_eligible" in decisions.columns else F.lit(None).cast("boolean")

    flags = responses.groupBy("contact_ref").agg(*[F.max((F.col("event") == e).cast("int")).cast("boolean").alias(e) for e in EVENTS])
    dec = decisions.select(
        "snapshot_date", "contact_ref", "customer_id", "campaign_id", "campaign_kind", "product_id", "category", "channel",
        "channel_kind", "service_tier", "lifecycle_stage", "expected_value",
        # contact, placement: treated; holdout, global_holdout, not_chosen: a group of that name
        F.when(F.col("outcome").isin(*CHOSEN), F.lit("treated")).otherwise(F.col("outcome")).alias("group"),
        F.col("outcome"),
        F.when(F.col("outcome") == "contact", F.col("cost")).otherwise(F.lit(0.0)).alias("cost"),
        explored.alias("explored"), eligible.alias("active_eligible"),
    )
    conv = (
        dec.select("contact_ref", "customer_id", "product_id", "snapshot_date")
        .join(orders.select("customer_id", "product_id", "order_ts", F.to_date("order_ts").alias("order_day"), "price", "order_id"),
              on=["customer_id", "product_id"], how="inner")
        .where((F.col("order_day") > F.col("snapshot_date"))
               & (F.col("order_day") <= F.date_add("snapshot_date", window_days)) & (F.col("order_day") <= F.lit(day)))
        # revenue: the price of the first order in the window (by time, then order id: the same on every rebuild)
        .groupBy("contact_ref").agg(F.lit(True).alias("converted"), F.min_by("price", F.struct("order_ts", "order_id")).alias("revenue"),
                                    F.min("order_day").alias("converted_on"))
    )
    out = dec.join(flags, on="contact_ref", how="left").join(conv, on="contact_ref", how="left")
    if closures is not None:
        gone = (
            dec.select("contact_ref", "customer_id", "snapshot_date")
            .join(closures.select("customer_id", "closed_on"), on="customer_id", how="inner")
            .where((F.col("closed_on") > F.col("snapshot_date"))
                   & (F.col("closed_on") <= F.date_add("snapshot_date", window_days)) & (F.col("closed_on") <= F.lit(day)))
            .select("contact_ref").distinct().withColumn("_closed", F.lit(True))
        )
        out = out.join(gone, on="contact_ref", how="left")
    else:
        out = out.withColumn("_closed", F.lit(None).cast("boolean"))
    days_seen = F.least(F.datediff(F.lit(day), F.col("snapshot_date")), F.lit(window_days))
    return out.select(
        *[c for c in dec.columns if c not in ("explored", "active_eligible")],
        *[F.coalesce(F.col(e), F.lit(False)).alias(e) for e in EVENTS],
        F.coalesce("converted", F.lit(False)).alias("converted"), "converted_on",
        F.coalesce("revenue", F.lit(0.0)).alias("revenue"),
        days_seen.alias("days_observed"), (days_seen >= window_days).alias("matured"), "explored", "active_eligible",
        F.coalesce("_closed", F.lit(False)).alias("closed"),
    )


def closures_of(crm_profile):
    """Pure transform: bronze.crm_profile rows -> ``customer_id``, ``closed_on``: every distinct ``closed`` record
    of a line, for :func:`outcomes` (a decision is closed when any of them falls in its window: a record then
    concerns only the decisions whose window holds it, which is what the nightly rebuild assumes)."""
    from pyspark.sql import functions as F

    return crm_profile.where(F.col("status") == "closed").select("customer_id", F.col("record_date").alias("closed_on")).distinct()


def logic() -> str:
    """The fingerprint of the outcomes' code: :func:`outcomes`' and :func:`closures_of`' sources, ``EVENTS`` and
    ``CHOSEN`` (12 hex digits). A night whose fingerprint differs from the evaluation before rebuilds every date (:mod:`rebuild`): the dates it
    would not rebuild were written by other code."""
    text = inspect.getsource(outcomes) + inspect.getsource(closures_of) + repr(EVENTS) + repr(CHOSEN)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _aggregates() -> list:
    """The cube's aggregates, every one a sum (so a cell's is the sum of its finer cells'): counts and money of the
    treated (contacts, placements), per group (holdout, not chosen, global holdout) its decisions, conversions,
    revenue and revenue squared (for the variances), the matured decisions and all decisions (``_matured``,
    ``_rows``: matured_share is their ratio), and per group the decisions whose line closed in the window."""
    from pyspark.sql import functions as F

    group = F.col("group")
    t, c, nc, g = (group == "treated"), (group == "holdout"), (group == "not_chosen"), (group == "global_holdout")

    def n(cond):
        return F.sum(cond.cast("long"))

    def money(cond, name):
        return [F.sum(F.when(cond, F.col("revenue")).otherwise(0.0)).alias(f"{name}_revenue"),
                F.sum(F.when(cond, F.col("revenue") * F.col("revenue")).otherwise(0.0)).alias(f"{name}_revenue_sq")]

    return [
        n(F.col("outcome") == "contact").alias("contacts"), n(F.col("outcome") == "placement").alias("placements"),
        *[n(t & F.col(e)).alias(e) for e in EVENTS],
        n(t & F.col("converted")).alias("conversions"),
        F.sum(F.when(t, F.col("revenue")).otherwise(0.0)).alias("revenue"), F.sum("cost").alias("cost"),
        n(t).alias("treated"), n(c).alias("holdout"), n(c & F.col("converted")).alias("holdout_conversions"),
        n(nc).alias("not_chosen"), n(nc & F.col("converted")).alias("not_chosen_conversions"),
        n(g).alias("global_holdout"), n(g & F.col("converted")).alias("global_holdout_conversions"),
        *money(t, "treated"), *money(c, "holdout"), *money(nc, "not_chosen"),
        F.sum(F.col("matured").cast("long")).alias("_matured"), F.count(F.lit(1)).alias("_rows"),
        *[n(cond & F.col("closed")).alias(name) for cond, name in ((t, "closures"), (c, "holdout_closures"),
                                                                     (nc, "not_chosen_closures"), (g, "global_holdout_closures"))],
    ]


def evaluation(outcome_rows, day: dt.date):
    """Pure transform: outcomes -> one row per cell of the cube over DIMS (``level`` lists the dimensions
    kept), with counts, money, the naive lift (treated against the campaign's holdout) and the three-way
    reading (:func:`three_way`: intent-to-treat, effect on the treated, selection gap, incremental conversions
    and value, programme lift against the global holdout). Treated and control decisions come from the same
    decision dates, so they have had the same time to convert; ``matured_share`` says how much of the cell has
    had the whole window (below 1: an interim reading, every rate still rising).

    In two steps: the finest cells (one per campaign, channel, product and tier: hundreds) from the outcome rows,
    then the cube over those cells, each aggregate summed again. The same figures as a cube over the rows, which
    would expand every row into each of the 16 roll-ups (16 x lookback_days of decisions)."""
    from pyspark.sql import functions as F

    cells = outcome_rows.groupBy(*DIMS).agg(*_aggregates())
    sums = [c for c in cells.columns if c not in DIMS]
    return figures(cells.cube(*DIMS).agg(*[F.sum(c).alias(c) for c in sums], *[F.grouping(d).alias(f"_g_{d}") for d in DIMS]), day)


def figures(cube, day: dt.date):
    """Pure transform: the cube's sums (:func:`_aggregates`, with ``_g_<dim>`` the grouping flags) -> the rows of
    gold.campaign_eval (:func:`evaluation`)."""
    from pyspark.sql import functions as F

    level = F.concat_ws(",", *[F.when(F.col(f"_g_{d}") == 0, F.lit(d.removesuffix("_id"))) for d in DIMS])
    lc = lift_cols(F.col("treated"), F.col("conversions"), F.col("holdout"), F.col("holdout_conversions"))
    groups = {name: Group(F.col(name), F.col(conv), F.col(f"{name}_revenue"), F.col(f"{name}_revenue_sq"))
              for name, conv in (("treated", "conversions"), ("not_chosen", "not_chosen_conversions"),
                                 ("holdout", "holdout_conversions"))}
    tw = three_way_cols(groups["treated"], groups["not_chosen"], groups["holdout"],
                        Group(F.col("global_holdout"), F.col("global_holdout_conversions")))
    return cube.select(
        F.lit(day).alias("eval_date"), F.when(level == "", F.lit("all")).otherwise(level).alias("level"),
        *[F.when(F.col(f"_g_{d}") == 1, F.lit("*")).otherwise(F.coalesce(F.col(d), F.lit("(none)"))).alias(d) for d in DIMS],
        "contacts", "placements", *EVENTS, "conversions", F.round("revenue", 2).alias("revenue"), F.round("cost", 2).alias("cost"),
        F.round(F.col("revenue") - F.col("cost"), 2).alias("return"),
        F.when(F.col("cost") > 0, F.round((F.col("revenue") - F.col("cost")) / F.col("cost"), 3)).alias("roi"),
        "treated", "holdout", "holdout_conversions", F.round(F.col("_matured") / F.col("_rows"), 4).alias("matured_share"),
        *[lc[k].alias(k) for k in ("rate_treated", "rate_control", "lift", "lift_low", "lift_high", "relative_lift")],
        (lc["lift"] * F.col("treated")).alias("incremental_conversions"),
        (F.coalesce(lc["lift_low"] > 0, F.lit(False))).alias("significant"),
        "not_chosen", "not_chosen_conversions", "global_holdout", "global_holdout_conversions",
        *[tw[k].alias(k) for k in THREE_WAY],
        "closures", "holdout_closures", "not_chosen_closures", "global_holdout_closures",
        *[col.alias(name) for name, col in closure_reading_cols().items()],
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


FIGURES = ("contacts", "delivered", "opened", "accepted", "conversions", "revenue", "cost", "holdout", "rate_treated",
           "rate_control", "lift", "lift_low", "lift_high", "matured_share", "not_chosen", "global_holdout",
           "effect_on_treated", "effect_low", "effect_high", "selection_gap", "incremental_value", "incremental_value_low",
           "incremental_value_high", "programme_lift", "programme_lift_low", "programme_lift_high", "incremental_closures",
           "incremental_closures_low", "incremental_closures_high")


def _signed(v, fmt: str = "+.4f") -> str:
    return "-" if v is None else format(v, fmt)


def headline(total: dict | None) -> tuple[dict, str]:
    """The ``all`` cell of gold.campaign_eval -> its headline figures (``FIGURES``; None for a reading it
    lacks) and the log line's words: the naive lift, the effect on the treated with the selection gap, the
    incremental value and the programme lift, each with its 95% interval."""
    if not total:
        return {}, "no holdout to compare with yet"
    t = {k: total.get(k) for k in FIGURES}
    if t["lift"] is None:
        return t, "no holdout to compare with yet"
    text = (f"lift {t['lift']:+.4f} [{t['lift_low']:+.4f}, {t['lift_high']:+.4f}] "
            f"({t['rate_treated']:.4f} treated vs {t['rate_control']:.4f} holdout, {t['matured_share']:.0%} of decisions matured)")
    if t["effect_on_treated"] is not None:
        text += (f"; effect on the treated {t['effect_on_treated']:+.4f} [{_signed(t['effect_low'])}, {_signed(t['effect_high'])}]"
                 f" (selection gap {_signed(t['selection_gap'])}), incremental value {_signed(t['incremental_value'], '+,.2f')}"
                 f" [{_signed(t['incremental_value_low'], '+,.2f')}, {_signed(t['incremental_value_high'], '+,.2f')}]")
    if t["incremental_closures"] is not None:
        text += (f"; closures caused {t['incremental_closures']:+,.1f} [{_signed(t['incremental_closures_low'], '+,.1f')}, "
                 f"{_signed(t['incremental_closures_high'], '+,.1f')}]")
    if t["programme_lift"] is not None:
        text += (f"; programme lift over the global holdout {t['programme_lift']:+.4f} "
                 f"[{_signed(t['programme_lift_low'])}, {_signed(t['programme_lift_high'])}]")
    return t, text


def rebuild_outcomes(spark, paths: Paths, day: dt.date, s: dict, full: bool = False) -> tuple[str, int]:
    """Rewrite gold.campaign_outcomes for the decision dates of the lookback whose outcome can have changed since
    the evaluation before (:func:`rebuild.choose`; every date when it cannot tell, or ``full``) and log it in
    ops.evaluate_log. Returns the method (full, step) and the number of dates rebuilt."""
    from pyspark.sql import functions as F

    t0 = time.time()
    since = day - dt.timedelta(days=s["lookback_days"])
    fingerprint = logic()
    now = rebuild.versions(spark, paths)  # before reading: a write after it is seen as a change by the next night
    dates, why, ids = rebuild.choose(spark, paths, day, s["window_days"], s["lookback_days"], now, fingerprint, full=full)
    # the dates read and replaced: every date of the lookback, or those chosen
    selected = rebuild.lookback(day, s["lookback_days"]) if dates is None else lake.in_dates("snapshot_date", dates)
    decisions = lake.read(spark, paths, "gold.cpc_decisions").where(selected)
    window = (F.col("delivery_date") > F.lit(since)) & (F.col("delivery_date") <= F.lit(day))

    def delivered(table: str, empty: str):
        """The window's deliveries of ``table``; none (``empty``'s columns) before the table exists."""
        return lake.read(spark, paths, table).where(window) if lake.exists(spark, paths, table) else \
            spark.createDataFrame([], empty)

    responses = delivered("bronze.responses", "contact_ref string, event string")
    orders = lake.read(spark, paths, "bronze.orders").where(window & F.col("action").isin("order", "trial_convert"))
    crm = delivered("bronze.crm_profile", "customer_id string, status string, record_date date")
    lake.replace(outcomes(decisions, responses, orders, day, s["window_days"], closures_of(crm)), paths, rebuild.OUTCOMES,
                 selected, merge_schema=True)
    method, n_dates = ("full", s["lookback_days"]) if dates is None else ("step", len(dates))
    rebuild.record(spark, paths, day, method, why, n_dates, now, s["window_days"], s["lookback_days"], time.time() - t0, fingerprint,
                   ids)
    log.info(f"evaluate {day}: outcomes of {n_dates} of the {s['lookback_days']} decision dates rebuilt ({method}: {why}; "
             f"{time.time() - t0:.1f}s)")
    return method, n_dates


def run(spark, paths: Paths, day: dt.date, full: bool = False) -> dict:
    """Rebuild the outcomes of the last ``lookback_days`` decision dates (those that can have changed:
    :func:`rebuild_outcomes`) and the evaluation as of ``day`` over every one of them, then write the HTML report.
    Returns the headline figures."""
    import pyarrow.dataset as ds
    from pyspark.sql import functions as F

    t0 = time.time()
    s = settings()
    since = day - dt.timedelta(days=s["lookback_days"])
    if not lake.exists(spark, paths, "gold.cpc_decisions"):
        log.info(f"evaluate {day}: no decisions yet")
        return {}
    method, n_dates = rebuild_outcomes(spark, paths, day, s, full=full)
    out = lake.read(spark, paths, rebuild.OUTCOMES).where(rebuild.lookback(day, s["lookback_days"]))  # as now written
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
    if lake.exists(spark, paths, "bronze.responses"):  # today's responses naming no decision of the window (or the 10 days before)
        responses = lake.read(spark, paths, "bronze.responses")
        known = lake.read(spark, paths, "gold.cpc_decisions").where(
            F.col("snapshot_date") > F.lit(since - dt.timedelta(days=10))).select("contact_ref")
        unmatched = responses.where(F.col("delivery_date") == F.lit(day)).join(known, on="contact_ref", how="left_anti").count()
    # campaigns x channels rows, read in this process (arrow_lake), not by a Spark query
    rows = arrow_lake.read(paths, "gold.campaign_eval", None, day, ds.field("level").isin(["all", "campaign", "channel", "campaign,channel"]))
    trend = [r.asDict() for r in out.where(F.col("outcome").isin("contact", "holdout"))
             .groupBy("snapshot_date", "group").agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("converted").cast("int")).alias("x"))
             .orderBy("snapshot_date", "group").collect()]  # dates x 2 rows
    path = report.write(paths, day, rows, trend, s, unmatched, trials)
    total = next((r for r in rows if r["level"] == "all"), None)
    out_figures, reading = headline(total)
    out_figures.update({"report": str(path), "unmatched_responses": unmatched, "outcomes": {"method": method, "dates": n_dates},
                    "trials": {st: sum(t["trials"] for t in trials if t["status"] == st) for st in ("open", "converted", "expired", "cancelled")}})
    log.info(f"evaluate {day}: decisions since {since + dt.timedelta(days=1)}: "
          f"{(total or {}).get('contacts', 0)} contacts, {(total or {}).get('accepted', 0)} accepted, "
          f"{(total or {}).get('conversions', 0)} conversions; {reading}; {unmatched} responses unmatched "
          f"-> gold.campaign_outcomes, gold.campaign_eval, {path} ({time.time() - t0:.1f}s)")
    return out_figures
