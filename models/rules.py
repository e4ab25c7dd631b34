"""Rule-based fit scores: the CPC model until the LightGBM propensity models exist.

Three fits, each in [0, 1], each from configuration (``conf/products.yaml``, ``conf/channels.yaml``):
- customer-product: the propensity decile / 10 of the product's ``propensity`` model when that model scored
  the customer (``gold.propensity``), else the product's ``affinity`` expression over tags; zero outside the product's lifecycle
  stages, when not ``eligible``, or when the customer already holds it;
- product-channel: how well a channel carries the product's category (``categories`` table);
- customer-channel: the channel's ``preference`` expression over tags, zero when the channel cannot
  ``reach`` the customer (opted out, no WeChat, no e-mail).
All are Spark column expressions: scoring is a ``select``, no Python runs per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.config import business
from jobs.tags import CatalogueError, check_expression


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
    capacity: int | None = None
    export: tuple[str, ...] = ()


def load(known_tags: set[str]) -> tuple[list[Product], list[Channel], dict[str, dict[str, float]]]:
    raw: dict[str, Any] = business("products")
    categories = {c: {ch: float(v) for ch, v in fits.items()} for c, fits in raw["categories"].items()}
    products = []
    for p in raw["products"]:
        if p["category"] not in categories:
            raise CatalogueError(f"product {p['id']}: unknown category {p['category']!r}")
        products.append(Product(
            id=p["id"], name_en=p["name_en"], name_zh=p["name_zh"], category=p["category"], price=float(p["price"]),
            value=float(p["value"]), stages=tuple(p["stages"]),
            eligible=check_expression(f"product {p['id']}", str(p["eligible"]), known_tags),
            affinity=check_expression(f"product {p['id']}", str(p["affinity"]), known_tags),
            propensity=p.get("propensity"),
        ))
    channels = []
    for c in business("channels")["channels"]:
        channels.append(Channel(
            id=c["id"], kind=c["kind"], cost=float(c["cost"]),
            reach=check_expression(f"channel {c['id']}", str(c["reach"]), known_tags),
            preference=check_expression(f"channel {c['id']}", str(c["preference"]), known_tags),
            capacity=c.get("capacity"), export=tuple(c.get("export", ())),
        ))
    from models.propensity import load_settings

    model_ids = {m.id for m in load_settings().models}
    for p in products:
        if p.propensity and p.propensity not in model_ids:
            raise CatalogueError(f"product {p.id}: propensity model {p.propensity!r} is not in conf/models.yaml ({', '.join(sorted(model_ids))})")
    ids = {c.id for c in channels}
    for cat, fits in categories.items():
        if set(fits) - ids:
            raise CatalogueError(f"category {cat}: unknown channel(s) {sorted(set(fits) - ids)}")
    return products, channels, categories


def _unit(col):
    from pyspark.sql import functions as F

    return F.least(F.greatest(col.cast("double"), F.lit(0.0)), F.lit(1.0))


def customer_product_fit(p: Product, columns: tuple[str, ...] | list[str] = ()):
    from pyspark.sql import functions as F

    allowed = (
        F.col("lifecycle_stage").isin(list(p.stages))
        & F.coalesce(F.expr(p.eligible), F.lit(False))
        & ~F.array_contains(F.split(F.coalesce(F.col("mkt_held_product_ids"), F.lit("")), ","), p.id)
    )
    fit = F.coalesce(F.expr(p.affinity), F.lit(0.0))
    decile = f"prop_{p.propensity}_decile"
    if p.propensity and decile in columns:  # the model's decile when it scored the customer, the rule otherwise
        fit = F.coalesce(F.col(decile) / F.lit(10.0), fit)
    return F.when(allowed, _unit(fit)).otherwise(F.lit(0.0))


def customer_channel_fit(c: Channel):
    from pyspark.sql import functions as F

    return F.when(F.coalesce(F.expr(c.reach), F.lit(False)), _unit(F.coalesce(F.expr(c.preference), F.lit(0.0)))).otherwise(F.lit(0.0))
