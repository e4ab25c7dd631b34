"""Shared reference configuration, typed and checked: the products (``conf/products.yaml``), the channels
(``conf/channels.yaml``), the lifecycle stages (``conf/lifecycle.yaml``) and the service tiers
(``conf/tiers.yaml``).

The tag engine (product categories, generated tags), the segments, the CPC decision, the export and the
simulator all read these files; each loader here reads its file once per process and refuses it with a
:class:`~jobs.platform.errors.ConfigError` naming the file, the entry and the field. Rules over tags (a
product's ``eligible``, a channel's ``reach``, a stage's ``when``) are text here: the stage that knows the tag
catalogue checks them (``jobs.stages.cpc.fits``, ``jobs.stages.segments``).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from jobs.platform.config import CONF_DIR, ConfModel, Text, load_validated
from jobs.platform.errors import ConfigError

AUTH_LEVELS = ("weak", "medium", "strong")
Auth = Literal["weak", "medium", "strong"]
# Names that become parts of column and tag names (``<category>_held``, ``cp_optout_<channel>``).
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Share = Annotated[float, Field(ge=0, le=1)]

PRODUCTS = CONF_DIR / "products.yaml"
CHANNELS = CONF_DIR / "channels.yaml"
LIFECYCLE = CONF_DIR / "lifecycle.yaml"
TIERS = CONF_DIR / "tiers.yaml"


def daily_capacity(capacity: int | str | None, customers: int) -> int:
    """A channel's contacts for the day: a number, or ``"N%"`` of the day's customers (at least 1)."""
    if capacity is None:
        return 0
    text = str(capacity).strip()
    if text.endswith("%"):
        try:
            share = float(text[:-1])
        except ValueError:
            share = -1.0
        if not 0 < share <= 100:
            raise ValueError(f"capacity {capacity!r}: a share must be between 0% and 100%")
        return max(1, int(customers * share / 100))
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise ValueError(f"capacity {capacity!r}: give contacts a day (a positive whole number) or a share like '5%'")
    return value


# ---- conf/products.yaml ----------------------------------------------------------------------------------
class Product(ConfModel):
    id: str
    name_en: str
    name_zh: str
    category: Name
    price: float = Field(ge=0)  # yuan
    value: float  # expected monthly margin of one acceptance (yuan)
    stages: tuple[Name, ...] = Field(min_length=1)  # lifecycle stages in which it may be offered
    eligible: Text  # SQL condition over tags
    affinity: Text  # SQL expression over tags in [0, 1]
    propensity: str | None = None  # a model of conf/models.yaml


class ProductCatalogue(ConfModel):
    """``conf/products.yaml``: the categories' placement table (channel -> prior fit) and the products."""

    categories: dict[Name, dict[str, Share]]
    products: list[Product] = Field(min_length=1)

    def by_id(self) -> dict[str, Product]:
        return {p.id: p for p in self.products}

    def category_of(self) -> dict[str, str]:
        """Product id -> category."""
        return {p.id: p.category for p in self.products}


# ---- conf/channels.yaml ----------------------------------------------------------------------------------
class Channel(ConfModel):
    id: Name
    kind: Literal["active", "passive"]
    cost: float = Field(ge=0)  # yuan per contact
    reach: Text  # SQL condition over tags
    preference: Text  # SQL expression over tags in [0, 1]
    capacity: int | str | None = None  # contacts a day, or "N%" of the day's customers (active channels)
    export: tuple[str, ...] = ()  # active channels: the columns of the downstream system's list, in order
    effort: Share = 0.5
    commission: float = Field(0.0, ge=0)
    auth: Auth = "medium"
    display: str | None = None  # passive channels: how a placement is shown

    @field_validator("capacity", mode="before")
    @classmethod
    def _capacity(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("give contacts a day (a positive whole number) or a share like '5%'")
        daily_capacity(value, 1)  # the message says what is wrong
        return value

    @model_validator(mode="after")
    def _active_needs_capacity(self) -> Channel:
        if self.kind == "active" and self.capacity is None:
            raise ValueError("an active channel needs a daily capacity")
        if self.kind == "active" and not self.export:
            raise ValueError("an active channel needs its export columns")
        return self


class FitWeights(ConfModel):
    prior: float = Field(ge=0)
    success: float = Field(ge=0)
    cost: float = Field(ge=0)
    effort: float = Field(ge=0)
    commission: float = Field(ge=0)
    authentication: float = Field(ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> FitWeights:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("at least one weight must be positive")
        return self


class ProductChannelFit(ConfModel):
    history_days: int = Field(ge=1)
    min_contacts: int = Field(ge=0)
    weak_auth: Share
    weights: FitWeights
    auth_needed: dict[str, Auth] = Field(default_factory=dict)  # category -> authentication it needs


class ChannelConf(ConfModel):
    """``conf/channels.yaml``."""

    channels: list[Channel] = Field(min_length=1)
    product_channel_fit: ProductChannelFit

    def by_id(self) -> dict[str, Channel]:
        return {c.id: c for c in self.channels}

    def ids(self, kind: str | None = None) -> list[str]:
        return [c.id for c in self.channels if kind is None or c.kind == kind]


# ---- conf/lifecycle.yaml and conf/tiers.yaml ---------------------------------------------------------------
class Stage(ConfModel):
    stage: Name
    zh: str | None = None
    when: Text  # SQL condition over tags; the first stage whose condition holds is the customer's
    rule: str = ""  # the business rule in words
    focus: str = ""
    selling: str = ""


class Lifecycle(ConfModel):
    stages: list[Stage] = Field(min_length=1)


class Tier(ConfModel):
    tier: Name
    zh: str | None = None
    when: Text  # SQL condition over tags; tried in order of priority
    # the tier's service standards, published with it in gold.customer_segment
    answer_rate: Share
    first_contact_resolution: Share
    complaint_deadline_h: int = Field(ge=1)
    first_channels: tuple[str, ...] = Field(min_length=1)
    marketing_allowed: bool


class Tiers(ConfModel):
    tiers: list[Tier] = Field(min_length=1)


def _unique(items: list[Any], key: str, source: str, section: str) -> None:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        name = getattr(item, key)
        if name in seen:
            raise ConfigError(f"{source}: {section}[{i}] ({key} {name!r}): {key}: already used by {section}[{seen[name]}]")
        seen[name] = i


@functools.cache
def lifecycle() -> Lifecycle:
    conf = load_validated(LIFECYCLE, Lifecycle)
    _unique(conf.stages, "stage", "conf/lifecycle.yaml", "stages")
    return conf


@functools.cache
def tiers() -> Tiers:
    conf = load_validated(TIERS, Tiers)
    _unique(conf.tiers, "tier", "conf/tiers.yaml", "tiers")
    return conf


@functools.cache
def channels() -> ChannelConf:
    conf = load_validated(CHANNELS, ChannelConf)
    _unique(conf.channels, "id", "conf/channels.yaml", "channels")
    return conf


@functools.cache
def products() -> ProductCatalogue:
    """The product catalogue; its categories, channels and stages are checked against conf/channels.yaml
    and conf/lifecycle.yaml."""
    conf = load_validated(PRODUCTS, ProductCatalogue)
    src = "conf/products.yaml"
    _unique(conf.products, "id", src, "products")
    channel_ids = set(channels().ids())
    stage_names = [s.stage for s in lifecycle().stages]
    for cat, fits in conf.categories.items():
        unknown = sorted(set(fits) - channel_ids)
        if unknown:
            raise ConfigError(f"{src}: categories.{cat}: unknown channel(s) {unknown} (conf/channels.yaml: {', '.join(sorted(channel_ids))})")
    for i, p in enumerate(conf.products):
        where = f"{src}: products[{i}] (id {p.id!r})"
        if p.category not in conf.categories:
            raise ConfigError(f"{where}: category: unknown category {p.category!r} (categories: {', '.join(conf.categories)})")
        unknown = [s for s in p.stages if s not in stage_names]
        if unknown:
            raise ConfigError(f"{where}: stages: unknown stage(s) {unknown} (conf/lifecycle.yaml: {', '.join(stage_names)})")
    unknown = sorted(set(channels().product_channel_fit.auth_needed) - set(conf.categories))
    if unknown:
        raise ConfigError(f"conf/channels.yaml: product_channel_fit.auth_needed: unknown category(ies) {unknown} (conf/products.yaml)")
    return conf
