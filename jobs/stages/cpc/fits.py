"""The three CPC fits, from configuration and history (the LightGBM deciles where the models have scored).

Three fits, each in [0, 1], each from configuration (``conf/products.yaml``, ``conf/channels.yaml``):
- customer-product: the propensity decile / 10 of the product's ``propensity`` model when that model scored
  the customer (``gold.propensity``), else the product's ``affinity`` expression over tags (the lifecycle
  stage, ``eligible`` and holdings are rules of the contact policy, applied in jobs/stages/cpc/decide.py);
- product-channel: :func:`product_channel_fits`, from the ``categories`` table as prior and the history of
  orders per contact, cost, effort, commission and authentication (weights in ``conf/channels.yaml``);
- customer-channel: the channel's ``preference`` expression over tags, zero when the channel cannot
  ``reach`` the customer (opted out, no WeChat, no e-mail).
All are Spark column expressions: scoring is a ``select``, no Python runs per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from jobs.platform import business
from jobs.platform.business import AUTH_LEVELS, daily_capacity  # noqa: F401 - callers use fits.daily_capacity
from jobs.platform.errors import CatalogueError
from jobs.platform.expressions import check_expression
from models.propensity import load_settings


@dataclass(frozen=True)
class Product:
    id: str
    name_en: str
    name_zh: str
    category: str
    price: float
    value: float
    stages: tuple[str, ...]
    eligible: str
    affinity: str
    propensity: str | None = None


@dataclass(frozen=True)
class Channel:
    id: str
    kind: str
    cost: float
    reach: str
    preference: str
    capacity: int | str | None = None  # contacts a day, or "N%" of the day's customers
    export: tuple[str, ...] = ()
    effort: float = 0.5
    commission: float = 0.0
    auth: str = "medium"
    display: str | None = None


def load(known_tags: set[str]) -> tuple[list[Product], list[Channel], dict[str, dict[str, float]]]:
    """Products, channels and the categories' placement table (``jobs.platform.business``, typed and checked),
    with every rule over tags checked against ``known_tags`` and every product's model against conf/models.yaml."""
    catalogue, chans = business.products(), business.channels()

    def rule(where: str, field: str, expr: str) -> str:
        return check_expression(f"{where}: {field}", expr, known_tags)

    products = []
    for i, p in enumerate(catalogue.products):
        where = f"conf/products.yaml: products[{i}] (id {p.id!r})"
        products.append(Product(
            id=p.id, name_en=p.name_en, name_zh=p.name_zh, category=p.category, price=p.price, value=p.value,
            stages=p.stages, eligible=rule(where, "eligible", p.eligible), affinity=rule(where, "affinity", p.affinity),
            propensity=p.propensity,
        ))
    channels = []
    for i, c in enumerate(chans.channels):
        where = f"conf/channels.yaml: channels[{i}] (id {c.id!r})"
        channels.append(Channel(
            id=c.id, kind=c.kind, cost=c.cost, reach=rule(where, "reach", c.reach),
            preference=rule(where, "preference", c.preference), capacity=c.capacity, export=c.export, effort=c.effort,
            commission=c.commission, auth=c.auth, display=c.display,
        ))
    model_ids = {m.id for m in load_settings().models}
    for i, p in enumerate(products):
        if p.propensity and p.propensity not in model_ids:
            raise CatalogueError(f"conf/products.yaml: products[{i}] (id {p.id!r}): propensity: model {p.propensity!r} is not in "
                                 f"conf/models.yaml ({', '.join(sorted(model_ids))})")
    categories = {cat: dict(fits) for cat, fits in catalogue.categories.items()}
    return products, channels, categories


def _unit(col):
    from pyspark.sql import functions as F

    return F.least(F.greatest(col.cast("double"), F.lit(0.0)), F.lit(1.0))


def product_fit(p: Product, columns: tuple[str, ...] | list[str] = ()):
    """The customer-product fit in [0, 1]: the product's model decile / 10 where that model scored the customer,
    its affinity rule otherwise. Eligibility, lifecycle stage and holdings are policy rules (jobs/stages/cpc/decide.py)."""
    from pyspark.sql import functions as F

    fit = F.coalesce(F.expr(p.affinity), F.lit(0.0))
    decile = f"prop_{p.propensity}_decile"
    if p.propensity and decile in columns:
        fit = F.coalesce(F.col(decile) / F.lit(10.0), fit)
    return _unit(fit)


def fit_source(p: Product, columns: tuple[str, ...] | list[str] = ()):
    """Where the customer-product fit came from, for the reasons: ``model <id> decile <d>`` or ``rule``."""
    from pyspark.sql import functions as F

    decile = f"prop_{p.propensity}_decile"
    if p.propensity and decile in columns:
        return F.coalesce(F.format_string(f"model {p.propensity} decile %d", F.col(decile)), F.lit("rule"))
    return F.lit("rule")


def customer_channel_fit(c: Channel):
    from pyspark.sql import functions as F

    return F.when(F.coalesce(F.expr(c.reach), F.lit(False)), _unit(F.coalesce(F.expr(c.preference), F.lit(0.0)))).otherwise(F.lit(0.0))


def product_channel_fits(products: list[Product], channels: list[Channel], categories: dict[str, dict[str, float]],
                         history: dict[tuple[str, str], int], contacts: dict[str, int],
                         settings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The product-channel fit of every product and every channel that carries its category, with its
    components (``conf/channels.yaml`` ``product_channel_fit``). ``history`` counts orders and trials per
    (product, channel); ``contacts`` counts inbound contacts per passive channel and contacts sent per active
    one, over the same window; success is relative to the best channel of the same kind. Small:
    products x channels rows, computed on the driver from aggregates."""
    s = settings or business.channels().product_channel_fit
    if isinstance(s, BaseModel):
        s = s.model_dump()
    w = {k: float(v) for k, v in s["weights"].items()}
    need = s.get("auth_needed", {})
    max_cost = max(c.cost for c in channels) or 1.0
    max_commission = max(c.commission for c in channels) or 1.0
    by_id = {c.id: c for c in channels}
    rows = []
    for p in products:
        carriers = categories[p.category]
        rates = {ch: history.get((p.id, ch), 0) / contacts[ch] for ch in carriers
                 if contacts.get(ch, 0) >= int(s["min_contacts"])}
        # relative to the best channel of the same kind: orders per inbound contact (passive) and acceptances
        # per contact sent (active) are different measures
        best = {kind: max((r for ch, r in rates.items() if by_id[ch].kind == kind), default=0.0) for kind in ("active", "passive")}
        for ch, prior in sorted(carriers.items()):
            c = by_id[ch]
            top = best[c.kind]
            success = rates[ch] / top if ch in rates and top > 0 else prior
            needed = need.get(p.category, "weak")
            auth = 1.0 if AUTH_LEVELS.index(c.auth) >= AUTH_LEVELS.index(needed) else float(s["weak_auth"])
            comp = {"prior": prior, "success": success, "cost": 1 - c.cost / max_cost, "effort": 1 - c.effort,
                    "commission": 1 - c.commission / max_commission, "authentication": auth}
            fit = sum(w[k] * v for k, v in comp.items()) / sum(w.values())
            rows.append({"product_id": p.id, "channel": ch, "fit": round(fit, 4),
                         "orders": history.get((p.id, ch), 0), "contacts": contacts.get(ch, 0),
                         "success_from_history": ch in rates, **{k: round(v, 4) for k, v in comp.items()}})
    return rows
