"""Campaigns (``conf/campaigns/*.yaml``) and the contact policy (``conf/policy.yaml``) as checked objects.

A campaign is configuration, not code: a target rule over tags, the products it offers (or ``trial``: the
product the customer is trialling), the channels it may use (or ``all``), its dates, its holdout share and a
priority (lower wins ties), and ``urgent: true`` for time-bound service messages (trial funnel, welcome
guide) that go before any sales offer when a customer can get one contact a day. ``kind: message`` campaigns (welcome guide, trial reminders) carry a fixed
``value`` instead of a product margin and skip the product's eligibility rules (the message is about a
product the customer already has or trials). Everything is checked when loaded, with errors naming the
file and the field.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.platform.config import CONF_DIR, business, load_yaml
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


# The contact policy's rules in the order they are applied (docs/cpc.md); the first one a candidate breaks
# is its outcome.
RULES = ("opt_out", "unreachable", "tier_no_marketing", "stage_rule", "not_eligible", "already_held", "quiet_period",
         "cooldown_after_decline", "recently_contacted", "frequency_cap", "no_value", "holdout", "passive_first",
         "one_offer_a_day", "capacity")


def load_policy(raw: dict[str, Any] | None = None) -> Policy:
    r = raw if raw is not None else business("policy")
    try:
        freq = r["frequency"]
        pf = r["passive_first"]
        policy = Policy(
            window_days=int(freq["window_days"]), all_channels_cap=int(freq["all_channels"]),
            per_channel_cap={k: int(v) for k, v in freq["per_channel"].items()},
            max_active_per_day=int(r["max_active_contacts_per_day"]), cooldown_days=int(r["cooldown_after_decline_days"]),
            quiet_days=int(r["quiet_after_activation_days"]), passive_horizon_days=int(pf["horizon_days"]),
            passive_min_probability=float(pf["min_probability"]), holdout_salt=str(r["holdout_salt"]),
            assignment_rounds=int(r["assignment_rounds"]), top_offers=int(r["top_offers"]),
            placement_valid_days=int(r["placement_valid_days"]),
        )
    except KeyError as exc:
        raise ConfigError(f"conf/policy.yaml: missing setting {exc}") from exc
    if policy.max_active_per_day != 1:
        raise ConfigError("conf/policy.yaml: max_active_contacts_per_day: only 1 is supported (one active contact a customer a day)")
    if not 0 <= policy.passive_min_probability <= 1:
        raise ConfigError("conf/policy.yaml: passive_first.min_probability must be within [0, 1]")
    return policy


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"{where}: not a date (YYYY-MM-DD): {value!r}") from exc


def parse(raw: dict[str, Any], source: str, product_ids: list[str], channel_ids: list[str], known: set[str],
          stages: set[str] | None = None) -> Campaign:
    """One campaign from its YAML mapping; ``source`` names the file in every error."""
    def need(key: str) -> Any:
        if key not in raw:
            raise ConfigError(f"{source}: missing field {key!r}")
        return raw[key]

    cid = str(need("id"))
    kind = str(raw.get("kind", "offer"))
    if kind not in KINDS:
        raise ConfigError(f"{source}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    try:
        target = check_expression(f"campaign {cid}", str(need("target")), known | EXTRA_COLUMNS)
    except CatalogueError as exc:
        raise ConfigError(f"{source}: target: {exc}") from exc
    prods = need("products")
    trial = prods == "trial"
    products = tuple(product_ids) if prods == "all" else () if trial else tuple(prods)
    unknown = [p for p in products if p not in product_ids]
    if unknown:
        raise ConfigError(f"{source}: unknown product(s) {', '.join(unknown)} (conf/products.yaml)")
    chans = need("channels")
    channels = tuple(channel_ids) if chans == "all" else tuple(chans)
    unknown = [c for c in channels if c not in channel_ids]
    if unknown:
        raise ConfigError(f"{source}: unknown channel(s) {', '.join(unknown)} (conf/channels.yaml)")
    holdout = float(need("holdout"))
    if not 0 <= holdout < 1:
        raise ConfigError(f"{source}: holdout must be a share in [0, 1), not {holdout}")
    value = raw.get("value")
    if kind == "message" and value is None:
        raise ConfigError(f"{source}: a message campaign needs a value (yuan) for its expected-value ranking")
    camp_stages = tuple(raw["stages"]) if raw.get("stages") else None
    if camp_stages and stages and set(camp_stages) - stages:
        raise ConfigError(f"{source}: unknown stage(s) {sorted(set(camp_stages) - stages)}")
    start = _date(need("start"), f"{source}: start")
    end = _date(raw["end"], f"{source}: end") if raw.get("end") else None
    if end and end < start:
        raise ConfigError(f"{source}: end {end} is before start {start}")
    return Campaign(
        id=cid, name_en=str(raw.get("name_en", cid)), name_zh=str(raw.get("name_zh", "")), kind=kind, target=target,
        products=products, channels=channels, start=start, end=end, holdout=holdout, priority=int(raw.get("priority", 50)),
        repeat_after_days=int(raw.get("repeat_after_days", 14)), value=float(value) if value is not None else None,
        stages=camp_stages, trial=trial, urgent=bool(raw.get("urgent", False)), source=source,
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
            raise ConfigError(f"{f}: a campaign file holds one mapping (id, target, products, channels, ...)")
        source = str(f.relative_to(CONF_DIR.parent)) if f.is_relative_to(CONF_DIR.parent) else str(f)
        c = parse(raw, source, product_ids, channel_ids, known, stages)
        if c.id in out:
            raise ConfigError(f"{f}: campaign id {c.id!r} is already used by {out[c.id].source}")
        out[c.id] = c
    return sorted(out.values(), key=lambda c: (c.priority, c.id))


def holdout_bucket(salt: str, campaign: str, customer: str) -> int:
    """The customer's bucket (0..9999) for a campaign's holdout: the same in Python and in Spark
    (``jobs.cpc.holdout_bucket_col``), stable across runs and machines."""
    digest = hashlib.sha256(f"{salt}|{campaign}|{customer}".encode()).hexdigest()
    return int(digest[:8], 16) % 10000


def config_fingerprint() -> str:
    """SHA-256 over the business configuration a decision depends on (policy, campaigns, products, channels)."""
    h = hashlib.sha256()
    for f in [CONF_DIR / "policy.yaml", CONF_DIR / "products.yaml", CONF_DIR / "channels.yaml",
              *sorted((CONF_DIR / "campaigns").glob("*.yaml"))]:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
