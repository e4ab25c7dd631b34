"""Lifecycle stages and service tiers on hand-written rows (the CPC decision: tests/test_policy.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.testing import assertDataFrameEqual

from jobs.stages import segments
from jobs.stages.tags import apply_tags, load_catalogue
from tests.helpers import SNAPSHOT, base_frame

D = dt.timedelta
ACTIVE = {"days_since_out_calls": 0, "usage_days_7d": 7, "voice_out_min_7d": 70, "voice_out_min_prev23d": 230, "total_fee_30d": 40.0}
OLD = SNAPSHOT - D(days=1000)


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


def segmented(spark, cat, rows):
    _, tiers = segments.rules()
    tags = apply_tags(base_frame(spark, cat, rows), cat)
    return tags, segments.segment(tags, tiers)


def test_lifecycle_rules(spark, cat):
    rows = [
        {"customer_id": "onboard", "activation_date": SNAPSHOT - D(days=30), **ACTIVE},
        {"customer_id": "decline_contract", "activation_date": OLD, "contract_end_date": SNAPSHOT + D(days=60), **ACTIVE},
        {"customer_id": "decline_silent", "activation_date": OLD, **{**ACTIVE, "days_since_out_calls": 7}},
        {"customer_id": "decline_drop", "activation_date": OLD, **{**ACTIVE, "voice_out_min_7d": 5}},
        {"customer_id": "growth_contract", "activation_date": SNAPSHOT - D(days=400), "contract_end_date": SNAPSHOT + D(days=500), **ACTIVE},
        {"customer_id": "growth_first_year", "activation_date": SNAPSHOT - D(days=200), **ACTIVE},
        {"customer_id": "mature_contract", "activation_date": OLD, "contract_end_date": SNAPSHOT + D(days=200), **ACTIVE},
        {"customer_id": "mature", "activation_date": OLD, **ACTIVE},
    ]
    _, seg = segmented(spark, cat, rows)
    expected = spark.createDataFrame(
        [(r["customer_id"], r["customer_id"].split("_")[0] if r["customer_id"] != "onboard" else "onboarding") for r in rows],
        "customer_id string, lifecycle_stage string",
    )
    assertDataFrameEqual(seg.select("customer_id", "lifecycle_stage"), expected)


def test_service_tier_rules(spark, cat):
    rows = [
        {"customer_id": "k", "activation_date": OLD, "vip_level": 3, "open_complaints": 1, **ACTIVE},
        {"customer_id": "oc", "activation_date": OLD, "vip_level": 0, "open_complaints": 1, **ACTIVE},
        {"customer_id": "hf", "activation_date": OLD, "vip_level": 0, "contacts_hotline_30d": 6, **ACTIVE},
        {"customer_id": "new", "activation_date": SNAPSHOT - D(days=10), "vip_level": 0, **ACTIVE},
        {"customer_id": "reg", "activation_date": OLD, "vip_level": 0, **ACTIVE},
    ]
    _, seg = segmented(spark, cat, rows)
    expected = spark.createDataFrame(
        [("k", "key_customer", True, 0.98), ("oc", "open_complaint", False, 0.90), ("hf", "high_freq_caller", False, 0.83),
         ("new", "new_customer", True, 0.85), ("reg", "other_regular", True, 0.83)],
        "customer_id string, service_tier string, marketing_allowed boolean, answer_rate double",
    )
    assertDataFrameEqual(seg.select("customer_id", "service_tier", "marketing_allowed", "answer_rate"), expected)
