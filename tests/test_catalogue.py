"""The full catalogue: size, named tags, every family on inline rows, quantile bands, carry-forward,
statistics with drift, the generated docs, and how well tags find the simulator's truth."""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from pathlib import Path

import pytest
from pyspark.testing import assertDataFrameEqual

from jobs.platform.errors import CatalogueError
from jobs.stages.tags import apply_tags, carry_forward, load_catalogue
from jobs.stages.tags.catalogue import check
from tests.helpers import SNAPSHOT, base_frame

NAMED = [
    "mkt_new_customer", "mkt_churn_prone", "val_high_spender", "val_heavy_data", "mkt_price_sensitive",
    "svc_complaint_sensitive", "mkt_handset_buyer", "mkt_freq_handset_changer", "cp_web_surfer", "cp_screen_swiper",
    "cp_elderly_prefer_agent", "svc_open_complaint", "svc_high_freq_caller", "mkt_value_added_user",
    "mkt_marketing_receptive", "val_contract_exp_1m", "val_contract_exp_2m", "val_contract_exp_3m", "svc_no_out_call_5d",
    "mkt_traffic_drop", "lc_stage", "tier_service",
]


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


def test_at_least_300_tags_with_the_brief_named_ones(cat):
    assert len(cat.tags) >= 300
    assert set(NAMED) <= set(cat.ids)
    assert {"social", "value", "service", "marketing", "contact", "lifecycle", "tier"} <= {t.family for t in cat.tags}
    assert {"rule", "band", "quantile_band", "trend", "recency", "top", "count"} <= {t.kind for t in cat.tags}
    assert all(t.name_zh and t.name_en and t.description and t.owner and t.version for t in cat.tags)


OLD = dt.date(2015, 1, 1)
FAMILY_CASES = {
    "social": (
        [{"customer_id": "a", "birth_year": 1990, "gender": "F", "city": "Shenzhen", "occupation": "it"},
         {"customer_id": "n", "birth_year": None, "gender": None, "city": "Foshan", "occupation": None}],
        ["soc_age_band", "soc_gender_age", "soc_first_tier_city", "soc_white_collar", "soc_birth_decade"],
        [("a", "35-44", "F 35-44", True, True, "1990s"), ("n", None, None, False, False, None)],
    ),
    "value": (
        [{"customer_id": "a", "activation_date": OLD, "total_fee_30d": 130.0, "plan_fee_30d": 58.0, "data_fee_30d": 60.0,
          "total_fee_7d": 14.0, "total_fee_prev23d": 116.0, "data_mb_30d": 16000.0, "brand": "premium"},
         {"customer_id": "n", "activation_date": None}],
        ["val_high_spender", "val_spend_band", "val_over_bundle", "val_data_band", "val_top_spend_component", "trend_total_fee_falling", "val_tenure_band"],
        [("a", True, "high", True, "15GB+", "data", True, "3y+"), ("n", False, "low", False, "<1GB", None, False, None)],
    ),
    "service": (
        [{"customer_id": "a", "open_complaints": 2, "contacts_hotline_30d": 5, "contacts_in_30d": 8, "complaint_contacts_30d": 4,
          "unresolved_contacts_30d": 2, "days_since_complaints_opened": 3, "days_with_usage_days_30d": 2},
         {"customer_id": "n"}],
        ["svc_open_complaint", "svc_high_freq_caller", "svc_complaint_rate", "svc_first_contact_resolution", "svc_days_since_complaint", "svc_silent_customer"],
        [("a", True, True, 0.5, 0.75, 3, True), ("n", False, False, None, None, None, True)],
    ),
    "marketing": (
        [{"customer_id": "a", "small_topups_30d": 3, "held_products": ["P_MUSIC", "P_NEWS"], "vas_held": 2, "held_vas": 2,
          "device_gen": 4, "device_brand": "Apple", "total_fee_30d": 90.0, "trials_30d": 1, "days_since_orders": 4},
         {"customer_id": "n"}],
        ["mkt_price_sensitive", "hold_p_music", "hold_any_vas", "mkt_value_added_user", "mkt_handset_buyer", "mkt_apple_user", "mkt_trial_active", "mkt_days_since_order"],
        [("a", True, True, True, True, True, True, True, 4), ("n", False, False, False, False, False, False, False, None)],
    ),
    "contact": (
        [{"customer_id": "a", "contacts_web_30d": 2, "contacts_wap_30d": 1, "contacts_agent_30d": 1, "contacts_in_30d": 4,
          "has_wechat": True, "email": None, "optouts": ["wechat"], "days_since_contacts_web": 2},
         {"customer_id": "n", "has_wechat": None}],
        ["cp_pref_channel", "cp_second_channel", "cp_web_surfer", "cp_channels_used_30d", "cp_has_wechat", "cp_optout_wechat", "cp_days_since_web", "cp_uses_agent"],
        [("a", "web", "agent", True, 3, True, True, 2, True), ("n", None, None, False, 0, False, False, None, False)],
    ),
    "lifecycle and tier": (
        [{"customer_id": "a", "activation_date": SNAPSHOT - dt.timedelta(days=10), "days_since_out_calls": 0},
         {"customer_id": "v", "activation_date": OLD, "vip_level": 2, "days_since_out_calls": 0, "contract_end_date": SNAPSHOT + dt.timedelta(days=45)}],
        ["lc_stage", "lc_is_onboarding", "tier_service", "tier_is_vip"],
        [("a", "onboarding", True, "new_customer", False), ("v", "decline", False, "vip", True)],
    ),
}


@pytest.fixture(scope="module")
def families(spark, cat):
    """Every family's rows tagged in one run, each customer named ``family:id`` (no tag checked here depends on
    the other customers of the frame: quantile bands do, and have their own tests below)."""
    rows = [{**r, "customer_id": f"{family}:{r['customer_id']}"} for family, (case, _, _) in FAMILY_CASES.items() for r in case]
    return apply_tags(base_frame(spark, cat, rows), cat).localCheckpoint()


@pytest.mark.parametrize("family", list(FAMILY_CASES))
def test_family_on_inline_rows(spark, families, family):
    from pyspark.sql import functions as F

    _, columns, expected = FAMILY_CASES[family]
    mine = families.where(F.col("customer_id").startswith(f"{family}:"))
    out = mine.select(F.substring_index("customer_id", ":", -1).alias("customer_id"), *columns)
    assertDataFrameEqual(out, spark.createDataFrame(expected, out.schema))


def test_quantile_bands_cut_at_equal_counts(spark):
    cat = load_catalogue(extra_tags=[
        {"id": "x_arpu_band", "family": "value", "type": "string", "kind": "quantile_band", "of": "val_arpu_30d", "bands": 4,
         "name_en": "t", "name_zh": "t", "description": "t"}])
    rows = [{"customer_id": f"c{i}", "total_fee_30d": float(i)} for i in range(1, 9)] + [{"customer_id": "z", "total_fee_30d": None}]
    out = apply_tags(base_frame(spark, cat, rows), cat).select("customer_id", "x_arpu_band")
    got = {r["customer_id"]: r["x_arpu_band"] for r in out.collect()}
    assert [got[f"c{i}"] for i in range(1, 9)] == ["Q1", "Q1", "Q2", "Q2", "Q3", "Q3", "Q4", "Q4"]
    assert got["z"] is None  # no value, no band


def test_quantile_bands_of_several_snapshot_dates_cut_each_date_at_its_own_points(spark):
    """Training computes its snapshots in one frame: each date's bands equal the bands of that date alone."""
    from pyspark.sql import functions as F

    cat = load_catalogue(extra_tags=[
        {"id": "x_arpu_band", "family": "value", "type": "string", "kind": "quantile_band", "of": "val_arpu_30d", "bands": 4,
         "name_en": "t", "name_zh": "t", "description": "t"}])
    cat.tags = [t for t in cat.tags if t.id in ("val_arpu_30d", "x_arpu_band")]
    check(cat)
    other = SNAPSHOT - dt.timedelta(days=7)
    first = base_frame(spark, cat, [{"customer_id": f"c{i}", "total_fee_30d": float(i)} for i in range(1, 9)])
    second = base_frame(spark, cat, [{"customer_id": f"c{i}", "total_fee_30d": float(i * i)} for i in range(1, 13)]
                        ).withColumn("snapshot_date", F.lit(other))

    def bands(df):
        return {(r["snapshot_date"], r["customer_id"]): r["x_arpu_band"] for r in apply_tags(df, cat).collect()}

    together = bands(first.unionByName(second))
    assert together == bands(first) | bands(second)
    assert together[(SNAPSHOT, "c8")] == "Q4" and together[(other, "c8")] == "Q3"  # 64 is in the third quarter of 1..144


def test_quantile_bands_do_not_depend_on_partitioning(spark):
    """A cluster splits the data differently from a laptop; the bands must not move (approximate percentiles did)."""
    cat = load_catalogue(extra_tags=[
        {"id": "x_arpu_band", "family": "value", "type": "string", "kind": "quantile_band", "of": "val_arpu_30d", "bands": 5,
         "name_en": "t", "name_zh": "t", "description": "t"}])
    cat.tags = [t for t in cat.tags if t.id in ("val_arpu_30d", "x_arpu_band")]  # the band and what it reads: the
    check(cat)  # engine's band code as it runs on the whole catalogue, without 300 unrelated tags three times over
    # 3,000 customers made by Spark (one template row crossed with a range), not sent row by row from Python
    template = base_frame(spark, cat, [{"customer_id": "c"}]).drop("customer_id", "total_fee_30d")
    base = spark.range(3000).selectExpr("concat('c', CAST(id AS STRING)) AS customer_id",
                                        "CAST((id * 7919) % 1009 AS DOUBLE) / 3 AS total_fee_30d").crossJoin(template)
    outs = [{r["customer_id"]: r["x_arpu_band"] for r in apply_tags(b, cat).select("customer_id", "x_arpu_band").collect()}
            for b in (base.coalesce(1), base.repartition(7, "customer_id"), base.orderBy("total_fee_30d").repartition(3))]
    assert outs[0] == outs[1] == outs[2]
    counts = Counter(outs[0].values())
    assert sorted(counts) == ["Q1", "Q2", "Q3", "Q4", "Q5"] and all(500 <= n <= 700 for n in counts.values())


def test_quantile_band_errors():
    bad = {"id": "x_b", "family": "value", "type": "string", "kind": "quantile_band", "of": "soc_city", "bands": 4,
           "name_en": "t", "name_zh": "t", "description": "t"}
    with pytest.raises(CatalogueError, match="tag x_b: 'of' must name a numeric tag"):
        load_catalogue(extra_tags=[bad])
    with pytest.raises(CatalogueError, match="needs 'of'"):
        load_catalogue(extra_tags=[{**bad, "bands": 1}])
    user = {"id": "x_c", "family": "value", "type": "boolean", "expr": "val_arpu_quintile = 'Q5'", "name_en": "t", "name_zh": "t", "description": "t"}
    with pytest.raises(CatalogueError, match="tag x_c: cannot use quantile band"):
        load_catalogue(extra_tags=[user])


@pytest.mark.parametrize(("field", "value", "message"), [("kind", "magic", "unknown kind 'magic'"), ("empty", "zero", "empty must be one of")])
def test_kind_and_empty_rule_are_checked(field, value, message):
    entry = {"id": "x_t", "family": "value", "type": "boolean", "expr": "true", "name_en": "t", "name_zh": "t", "description": "t", field: value}
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(extra_tags=[entry])


def test_carry_keeps_the_last_value_when_today_is_empty(spark, cat):
    today = apply_tags(base_frame(spark, cat, [
        {"customer_id": "a", "occupation": None}, {"customer_id": "b", "occupation": "farmer"}, {"customer_id": "c", "occupation": None}]), cat)
    previous = apply_tags(base_frame(spark, cat, [{"customer_id": "a", "occupation": "teacher"}, {"customer_id": "b", "occupation": "driver"}]), cat)
    out = carry_forward(today, previous, cat).select("customer_id", "soc_occupation", "soc_student")
    expected = spark.createDataFrame([("a", "teacher", False), ("b", "farmer", False), ("c", None, False)], out.schema)
    assertDataFrameEqual(out, expected)


def test_tag_stats_shares_and_drift(spark, cat):
    from jobs.stages.tags import stats as tagstats

    small = load_catalogue(extra_tags=[])
    small.tags = [t for t in small.tags if t.id in ("soc_elderly", "soc_age")]
    today = spark.createDataFrame([("a", True, 70), ("b", False, 30), ("c", False, None), ("d", False, 40)],
                                  "customer_id string, soc_elderly boolean, soc_age int")
    stats = tagstats.stats(today, small)
    got = {(r["tag_id"], r["value"]): (r["customers"], r["share"]) for r in stats.collect()}
    assert got[("soc_elderly", "true")] == (1, 0.25) and got[("soc_elderly", "false")] == (3, 0.75)
    assert got[("soc_age", "(non-null)")] == (3, 0.75)
    previous = spark.createDataFrame([("soc_elderly", "true", 0.05), ("soc_elderly", "false", 0.95), ("soc_age", "(non-null)", 0.70)],
                                     "tag_id string, value string, share double")
    flagged = {(r["tag_id"], r["value"]): r["drift"] for r in tagstats.compare(stats, previous, 0.10).collect()}
    assert flagged == {("soc_elderly", "true"): True, ("soc_elderly", "false"): True, ("soc_age", "(non-null)"): False}


def test_docs_list_every_tag(cat):
    from jobs.stages.tags.doc import DOC, render

    assert DOC.read_text(encoding="utf-8") == render(cat), "docs/tags.md is stale: run `cpc catalogue-doc`"


@pytest.mark.e2e
def test_every_tag_has_a_value_for_some_customer_on_the_sample(spark, sample, cat):
    from pyspark.sql import functions as F

    from jobs.platform import lake

    stats = lake.read(spark, sample["paths"], "gold.tag_stats").where(F.col("snapshot_date") == F.lit(sample["spec"].end_date))
    empty = stats.where(((F.col("value") == "(null)") & (F.col("share") >= 1.0)) | ((F.col("value") == "(non-null)") & (F.col("customers") == 0)))
    assert [r["tag_id"] for r in empty.collect()] == []
    assert {r["tag_id"] for r in stats.select("tag_id").distinct().collect()} == set(cat.ids)


@pytest.mark.e2e
def test_tags_find_the_simulated_truth(spark, sample):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from truth_check import evaluate

    rows = {r["tag"]: r for r in evaluate(spark, sample["paths"], sample["spec"].end_date)}
    assert rows["val_heavy_data"]["precision"] >= 0.8 and rows["val_heavy_data"]["recall"] >= 0.5
    assert rows["cp_pref_channel"]["accuracy"] >= 0.4
    assert rows["mkt_churn_prone"]["precision"] >= 0.3
