"""Lifecycle stage and service tier of every customer -> ``gold.customer_segment``.

The rules are ordered SQL conditions over tags in ``conf/lifecycle.yaml`` and ``conf/tiers.yaml``; the tag
engine computes them as the tags ``lc_stage`` and ``tier_service`` (one ``CASE WHEN`` each). This job checks
the rules, and publishes each customer's stage and tier with the tier's service standards (answer rate,
first-contact resolution, complaint deadline, first channels, whether marketing is allowed), which IVR
smart routing and the CPC contact policy read."""

from __future__ import annotations

import datetime as dt
import logging
import time

from jobs.platform import business, lake
from jobs.platform.business import Stage, Tier
from jobs.platform.config import Paths
from jobs.platform.errors import CatalogueError
from jobs.platform.expressions import check_expression
from jobs.stages.tags.catalogue import load_catalogue

log = logging.getLogger(__name__)


def _check_rules(kind: str, rules: list[tuple[str, str]], known: set[str]) -> None:
    """``rules``: (name, condition) in order. Each condition is checked against the tags; the last must be
    ``true`` so that every customer gets one. (Names and fields are checked by the typed loaders.)"""
    seen = set()
    for name, when in rules:
        if name in seen:
            raise CatalogueError(f"{kind} {name}: listed twice")
        seen.add(name)
        check_expression(f"{kind} {name}", when, known)
    if rules[-1][1].strip().lower() != "true":
        raise CatalogueError(f"{kind}: the last rule must be 'true' so every customer gets one")


def rules() -> tuple[list[Stage], list[Tier]]:
    """The lifecycle stages (conf/lifecycle.yaml) and service tiers (conf/tiers.yaml), typed, in order, with
    their conditions checked against the tag catalogue."""
    known = set(load_catalogue().ids)
    stages = business.lifecycle().stages
    tiers = business.tiers().tiers
    _check_rules("lifecycle stage", [(s.stage, s.when) for s in stages], known)
    _check_rules("service tier", [(t.tier, t.when) for t in tiers], known)
    return stages, tiers


def segment(tags, tiers: list[Tier]):
    """Pure transform: the tag table -> one row per customer with stage, tier and the tier's standards."""
    from pyspark.sql import functions as F

    tier_attrs = tags.sparkSession.createDataFrame(
        [(t.tier, t.answer_rate, t.first_contact_resolution, t.complaint_deadline_h, ",".join(t.first_channels),
          t.marketing_allowed, i + 1) for i, t in enumerate(tiers)],
        "service_tier string, answer_rate double, first_contact_resolution double, complaint_deadline_h int, "
        "first_channels string, marketing_allowed boolean, tier_priority int",
    )
    out = tags.select(
        "customer_id",
        "snapshot_date",
        F.col("lc_stage").alias("lifecycle_stage"),
        F.col("tier_service").alias("service_tier"),
    )
    return out.join(F.broadcast(tier_attrs), on="service_tier", how="left").select(
        "customer_id", "snapshot_date", "lifecycle_stage", "service_tier", "tier_priority", "answer_rate",
        "first_contact_resolution", "complaint_deadline_h", "first_channels", "marketing_allowed",
    )


def run(spark, paths: Paths, day: dt.date) -> dict[str, int]:
    t0 = time.time()
    _, tiers = rules()
    tags = lake.read(spark, paths, "gold.customer_tags").where(f"snapshot_date = '{day.isoformat()}'")
    lake.replace(segment(tags, tiers), paths, "gold.customer_segment", f"snapshot_date = '{day.isoformat()}'")
    counts = {
        r["lifecycle_stage"]: r["n"]
        for r in lake.read(spark, paths, "gold.customer_segment").where(f"snapshot_date = '{day.isoformat()}'")
        .groupBy("lifecycle_stage").count().withColumnRenamed("count", "n").collect()  # a handful of rows
    }
    log.info(f"segments {day}: lifecycle {dict(sorted(counts.items()))} -> gold.customer_segment ({time.time() - t0:.1f}s)")
    return counts
