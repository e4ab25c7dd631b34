"""Campaigns (``conf/campaigns/*.yaml``) and the contact policy (``conf/policy.yaml``) as checked objects.

A campaign is configuration, not code: a target rule over tags, the products it offers (or ``trial``: the
product the customer is trialling), the channels it may use (or ``all``), its dates, its holdout share and a
priority (lower wins ties), and ``urgent: true`` for time-bound service messages (trial funnel, welcome
guide) that go before any sales offer when a customer can get one contact a day. ``kind: message`` campaigns (welcome guide, trial reminders) carry a fixed
``value`` instead of a product margin and skip the product's eligibility rules (the message is about a
product the customer already has or trials). ``while_complaint_open: true`` lets a campaign reach
customers with an open complaint (the ``open_complaint`` rule; default false: nobody with an open complaint
is contacted or shown an offer, whatever their tier). Everything is checked when loaded, with errors naming
the file and the field.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictBool, field_validator

from jobs.platform.config import CONF_DIR, ConfModel, Text, business, load_yaml, relative, validate
from jobs.platform.errors import CatalogueError, ConfigError
from jobs.platform.expressions import check_expression

log = logging.getLogger(__name__)

KINDS = ("offer", "message")
# Columns a campaign's target rule may use besides the tags (added by the CPC inputs).
EXTRA_COLUMNS = {"lifecycle_stage", "service_tier", "marketing_allowed", "trial_day", "trial_product_id", "days_since_trial_expired",
                 "expired_trial_category"}


@dataclass(frozen=True)
class Campaign:
    id: str
    name_en: str
    name_zh: str
    kind: str
    target: str
    products: tuple[str, ...]  # empty with ``trial``: the customer's trial product
    channels: tuple[str, ...]
    start: dt.date
    end: dt.date | None
    holdout: float
    priority: int
    repeat_after_days: int
    value: float | None = None
    stages: tuple[str, ...] | None = None  # the stages it sells in, instead of each product's own
    trial: bool = False
    urgent: bool = False
    while_complaint_open: bool = False  # may reach customers with an open complaint (open_complaint rule)
    source: str = ""

    def active_on(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class Policy:
    window_days: int
    all_channels_cap: int
    per_channel_cap: dict[str, int]
    max_active_per_day: int
    cooldown_days: int
    quiet_days: int
    passive_horizon_days: int
    passive_min_probability: float
    holdout_salt: str
    assignment_rounds: int
    top_offers: int
    placement_valid_days: int
    assignment: str = "priced"  # or "deferred_acceptance" (jobs.stages.cpc.decide.assign, the former method)
    assignment_passes: int = 10
    global_holdout: float = 0.0  # share of all customers no campaign contacts or places (0: none)
    exploration: float = 0.0  # share of each offer campaign's eligible customers contacted at random (0: none)
    # share of each active channel's daily capacity the exploration priority may take (the explorers beyond it compete
    # like everyone else: the value rules, the ranking)
    exploration_capacity_share: float = 0.10
    harm_margin: float = 0.0  # conf/models.yaml uplift.harm_margin: predicted tau below -margin is harmed (set by load_conf)
    closure_guard: bool = True  # an offer whose contacts measurably close lines is harmed (inputs.closure_harm)
    closure_guard_min_holdout: int = 500  # ... read only from cells with this many held-out decisions
    closure_guard_min_matured_share: float = 0.5  # ... and this share of their decisions past the window


# The bucket name of the global holdout: holdout_bucket(salt, GLOBAL_HOLDOUT, customer) < share x 10000. Reserved:
# no campaign may take this id.
GLOBAL_HOLDOUT = "__global__"


# The contact policy's rules in the order they are applied (docs/cpc.md); the first one a candidate breaks
# is its outcome. open_complaint follows tier_no_marketing: a customer with an open complaint gets no contact
# and no placement whatever their tier (a VIP or key customer ranks above the open-complaint tier), unless the
# campaign says ``while_complaint_open: true``. global_holdout and holdout come right after the eligibility rules
# (1-11) and before the value rules (harmed, no_value): their members are customers who would otherwise have been
# eligible, whatever a model thinks of them, so the control groups (and the uplift models' history) also cover
# the customers the ranking rejects; both are terminal, recorded and never contacted. harmed (an uplift model
# predicts the contact lowers the chance of buying) comes before no_value, which a negative tau would otherwise
# always take first. The exploration bucket (``exploration`` in conf/policy.yaml, right above each offer
# campaign's holdout bucket) is not a rule: one active candidate of each of a random set of its members, within
# ``exploration_capacity_share`` of each channel's capacity, skips harmed and no_value and goes to the assignment
# first, after urgent service messages; the members' other candidates meet the value rules like everyone's.
RULES = ("opt_out", "unreachable", "tier_no_marketing", "open_complaint", "stage_rule", "not_eligible",
         "already_held", "quiet_period", "cooldown_after_decline", "recently_contacted", "frequency_cap",
         "global_holdout", "holdout", "harmed", "no_value", "passive_first", "one_offer_a_day", "capacity")

# The eligibility rules: who may be offered what where (1-11), before both holdouts. A (customer, campaign) with an
# active candidate past them is ``active_eligible`` (gold.cpc_decisions): in either bucket, the holdout or the
# exploration one, it could have been contacted; the uplift models' two arms are such pairs.
ELIGIBILITY = RULES[: RULES.index("global_holdout")]


def active_eligible(candidates) -> set[tuple[str, str]]:
    """The (customer_id, campaign_id) pairs with an active candidate past the eligibility rules (its outcome not one
    of ``ELIGIBILITY``): Python twin of :func:`jobs.stages.cpc.decide.active_eligible_pairs`. ``candidates``: dicts
    with customer_id, campaign_id, channel_kind and outcome (the first rule broken, or a later step)."""
    return {(c["customer_id"], c["campaign_id"]) for c in candidates
            if c["channel_kind"] == "active" and c["outcome"] not in ELIGIBILITY}


# ---- conf/policy.yaml --------------------------------------------------------------------------------------
class FrequencyConf(ConfModel):
    window_days: int = Field(ge=1)
    all_channels: int = Field(ge=0)
    per_channel: dict[str, int] = Field(default_factory=dict)  # active channel -> cap


class PassiveFirstConf(ConfModel):
    horizon_days: int = Field(ge=1)
    min_probability: float


class EvaluationConf(ConfModel):
    """Read by jobs.stages.evaluate."""

    window_days: int = Field(14, ge=1)
    lookback_days: int = Field(28, ge=1)


class LearningConf(ConfModel):
    """Learning from responses and the acceptance calibration, read by the CPC inputs."""

    history_days: int = Field(90, ge=1)
    prior_strength: float = Field(3, ge=0)
    min_multiplier: float = Field(0.3, ge=0)
    max_multiplier: float = Field(2.0, ge=0)
    calibration_days: int = Field(28, ge=1)
    calibration_lag_days: int = Field(5, ge=0)
    prior_weight: float = Field(20, ge=0)
    accept_scale_prior: dict[str, float] = Field(default_factory=dict)


class PolicyConf(ConfModel):
    """``conf/policy.yaml``."""

    frequency: FrequencyConf
    max_active_contacts_per_day: int
    cooldown_after_decline_days: int = Field(ge=0)
    quiet_after_activation_days: int = Field(ge=0)
    passive_first: PassiveFirstConf
    holdout_salt: Text
    # The global holdout: this share of all customers gets no contact and no placement from any campaign.
    global_holdout: float = Field(0.0, ge=0, lt=0.5)
    # Exploration: this share of each offer campaign's eligible customers is contacted whatever the ranking says.
    exploration: float = Field(0.0, ge=0, lt=0.5)
    # ... within this share of each active channel's daily capacity (beyond it they compete like everyone else).
    exploration_capacity_share: float = Field(0.10, ge=0, le=1)
    assignment: Literal["priced", "deferred_acceptance"] = "priced"
    assignment_passes: int = Field(10, ge=1)
    assignment_rounds: int = Field(ge=1)
    top_offers: int = Field(ge=1)
    placement_valid_days: int = Field(ge=1)
    evaluation: EvaluationConf = Field(default_factory=EvaluationConf)
    learning: LearningConf = Field(default_factory=LearningConf)
    # Stop an offer's active contacts while the evaluation measures that they close lines (docs/cpc.md).
    closure_guard: bool = True
    closure_guard_min_holdout: int = Field(500, ge=1)
    closure_guard_min_matured_share: float = Field(0.5, ge=0, le=1)


def evaluation_settings(raw: dict[str, Any] | None = None) -> dict[str, int]:
    """conf/policy.yaml ``evaluation`` (validated with the whole file): ``window_days``, the days after a decision in
    which an order of the offered product counts (a decision's outcome is final after it; the uplift training's
    time split purges by it), and ``lookback_days``, the decision dates the evaluation rebuilds. Read by the
    ``evaluate`` and ``uplift`` stages, which may not import each other."""
    r = validate(PolicyConf, raw if raw is not None else business("policy"), "conf/policy.yaml").evaluation
    return {"window_days": r.window_days, "lookback_days": r.lookback_days}


def load_policy(raw: dict[str, Any] | None = None) -> Policy:
    r = validate(PolicyConf, raw if raw is not None else business("policy"), "conf/policy.yaml")
    policy = Policy(
        window_days=r.frequency.window_days, all_channels_cap=r.frequency.all_channels,
        per_channel_cap=dict(r.frequency.per_channel), max_active_per_day=r.max_active_contacts_per_day,
        cooldown_days=r.cooldown_after_decline_days, quiet_days=r.quiet_after_activation_days,
        passive_horizon_days=r.passive_first.horizon_days, passive_min_probability=r.passive_first.min_probability,
        holdout_salt=r.holdout_salt, assignment_rounds=r.assignment_rounds, top_offers=r.top_offers,
        placement_valid_days=r.placement_valid_days, assignment=r.assignment, assignment_passes=r.assignment_passes,
        global_holdout=r.global_holdout, exploration=r.exploration, exploration_capacity_share=r.exploration_capacity_share,
        closure_guard=r.closure_guard, closure_guard_min_holdout=r.closure_guard_min_holdout,
        closure_guard_min_matured_share=r.closure_guard_min_matured_share,
    )
    if policy.max_active_per_day != 1:
        raise ConfigError("conf/policy.yaml: max_active_contacts_per_day: only 1 is supported (one active contact a customer a day)")
    if not 0 <= policy.passive_min_probability <= 1:
        raise ConfigError("conf/policy.yaml: passive_first.min_probability must be within [0, 1]")
    return policy


# ---- conf/campaigns/*.yaml ----------------------------------------------------------------------------------
def _ids_or(words: tuple[str, ...]):
    """A field that holds a list of ids or one of ``words`` (``all``...), with one clear message when it is neither."""
    expected = f"give a list of ids or {' or '.join(repr(w) for w in words)}"

    def check(value: Any) -> Any:
        if isinstance(value, str):
            if value not in words:
                raise ValueError(f"{expected}, not {value!r}")
            return value
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{expected}, not {value!r}")
        return tuple(value)
    return check


class CampaignConf(ConfModel):
    """One campaign file. The rules that need the other files (known tags, products, channels, stages) are
    checked by :func:`parse`."""

    id: Text
    name_en: str | None = None
    name_zh: str = ""
    kind: str = "offer"
    target: Text  # SQL condition over tags
    products: str | tuple[str, ...]  # ids, "all", or "trial": the product the customer is trialling
    channels: str | tuple[str, ...]  # ids, or "all"
    start: dt.date
    end: dt.date | None = None
    holdout: float
    priority: int = 50  # lower wins ties
    repeat_after_days: int = Field(14, ge=0)
    value: float | None = None  # message campaigns: the value (yuan) of the message
    stages: tuple[str, ...] | None = None  # the stages it sells in, instead of each product's own
    urgent: bool = False
    # Opt-in to the open_complaint rule: reach customers with an open complaint. Strict: only true or
    # false (not 1, not the text "yes"), so a typo is an error naming the file and field, not a silent opt-in.
    while_complaint_open: StrictBool = False

    _products = field_validator("products", mode="before")(_ids_or(("all", "trial")))
    _channels = field_validator("channels", mode="before")(_ids_or(("all",)))


def parse(raw: dict[str, Any], source: str, product_ids: list[str], channel_ids: list[str], known: set[str],
          stages: set[str] | None = None) -> Campaign:
    """One campaign from its YAML mapping; ``source`` names the file in every error."""
    conf = validate(CampaignConf, raw, source, what="campaign")
    cid = conf.id
    if cid == GLOBAL_HOLDOUT:
        raise ConfigError(f"{source}: id: {GLOBAL_HOLDOUT!r} is reserved (the global holdout's bucket, conf/policy.yaml)")
    kind = conf.kind
    if kind not in KINDS:
        raise ConfigError(f"{source}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    try:
        target = check_expression(f"campaign {cid}", conf.target, known | EXTRA_COLUMNS)
    except CatalogueError as exc:
        raise ConfigError(f"{source}: target: {exc}") from exc
    trial = conf.products == "trial"
    products = tuple(product_ids) if conf.products == "all" else () if trial else tuple(conf.products)
    unknown = [p for p in products if p not in product_ids]
    if unknown:
        raise ConfigError(f"{source}: unknown product(s) {', '.join(unknown)} (conf/products.yaml)")
    channels = tuple(channel_ids) if conf.channels == "all" else tuple(conf.channels)
    unknown = [c for c in channels if c not in channel_ids]
    if unknown:
        raise ConfigError(f"{source}: unknown channel(s) {', '.join(unknown)} (conf/channels.yaml)")
    holdout = conf.holdout
    if not 0 <= holdout < 1:
        raise ConfigError(f"{source}: holdout must be a share in [0, 1), not {holdout}")
    if kind == "message" and conf.value is None:
        raise ConfigError(f"{source}: a message campaign needs a value (yuan) for its expected-value ranking")
    camp_stages = conf.stages or None
    if camp_stages and stages and set(camp_stages) - stages:
        raise ConfigError(f"{source}: unknown stage(s) {sorted(set(camp_stages) - stages)}")
    start, end = conf.start, conf.end
    if end and end < start:
        raise ConfigError(f"{source}: end {end} is before start {start}")
    return Campaign(
        id=cid, name_en=conf.name_en if conf.name_en is not None else cid, name_zh=conf.name_zh, kind=kind, target=target,
        products=products, channels=channels, start=start, end=end, holdout=holdout, priority=conf.priority,
        repeat_after_days=conf.repeat_after_days, value=conf.value, stages=camp_stages, trial=trial, urgent=conf.urgent,
        while_complaint_open=conf.while_complaint_open, source=source,
    )


def load(product_ids: list[str], channel_ids: list[str], known: set[str], folder: Path | None = None,
         stages: set[str] | None = None) -> list[Campaign]:
    """Every campaign under ``conf/campaigns/`` (sorted by priority, then id). Ids must be unique."""
    folder = folder or CONF_DIR / "campaigns"
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ConfigError(f"{folder}: no campaign files (*.yaml)")
    out: dict[str, Campaign] = {}
    for f in files:
        raw = load_yaml(f)
        if not isinstance(raw, dict):
            raise ConfigError(f"{relative(f)}: a campaign file holds one mapping (id, target, products, channels, ...)")
        c = parse(raw, relative(f), product_ids, channel_ids, known, stages)
        if c.id in out:
            raise ConfigError(f"{relative(f)}: id: campaign id {c.id!r} is already used by {out[c.id].source}")
        out[c.id] = c
    return sorted(out.values(), key=lambda c: (c.priority, c.id))


def offer_families(products, camps) -> list[str]:
    """The product families of the products the offer campaigns name: those an uplift model is trained for (and,
    until it is, in cold start). Pure."""
    by_id = {p.id: p.category for p in products}
    return sorted({by_id[pid] for c in camps if c.kind == "offer" for pid in c.products if pid in by_id})


def holdout_bucket(salt: str, campaign: str, customer: str) -> int:
    """The customer's bucket (0..9999) for a campaign's holdout: the same in Python and in Spark
    (``jobs.stages.cpc.decide.holdout_bucket_col``), stable across runs and machines."""
    digest = hashlib.sha256(f"{salt}|{campaign}|{customer}".encode()).hexdigest()
    return int(digest[:8], 16) % 10000


def bucket_limit(share: float) -> int:
    """A share as a bucket bound (0..10000), rounded half up as Spark's ``round`` does (the Spark twins use it)."""
    return int(math.floor(float(share) * 10000 + 0.5))


def in_exploration(salt: str, campaign: str, customer: str, holdout: float, share: float) -> bool:
    """True for a customer in an offer campaign's exploration bucket: their holdout bucket (same salt, same draw)
    in ``[holdout, holdout + share)`` x 10000, right above the campaign's holdout, so never in it. Python twin of
    :func:`jobs.stages.cpc.decide.in_exploration`."""
    b = holdout_bucket(salt, campaign, customer)
    return bucket_limit(holdout) <= b < bucket_limit(float(holdout) + float(share))


def decision_model_settings() -> dict[str, float | bool]:
    """The settings of conf/models.yaml the decision itself reads (validated, defaults included, with the
    ``CPC_UPLIFT_RANK`` override applied): the harm margin (rule harmed), the cold-start incrementality (the ranking
    of a family without a model) and whether it ranks by the uplift models at all (``uplift.rank``). The rest of that
    file trains models, whose versions ops.cpc_runs and the run id record apart."""
    from models import uplift as uplift_model

    s = uplift_model.load_settings()
    return {"uplift.harm_margin": float(s.harm_margin), "uplift.cold_start_incrementality": float(s.cold_start_incrementality),
            "uplift.rank": bool(s.rank)}


def config_fingerprint() -> str:
    """SHA-256 over the business configuration a decision depends on (policy, campaigns, products, channels, and
    :func:`decision_model_settings` as canonical JSON): ``config_sha256`` of ops.cpc_runs."""
    h = hashlib.sha256()
    for f in [CONF_DIR / "policy.yaml", CONF_DIR / "products.yaml", CONF_DIR / "channels.yaml",
              *sorted((CONF_DIR / "campaigns").glob("*.yaml"))]:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update(b"models.yaml")
    h.update(json.dumps(decision_model_settings(), sort_keys=True).encode())
    return h.hexdigest()
