"""The tag engine on hand-written rows, and the catalogue's load-time checks."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.testing import assertDataFrameEqual

from jobs.platform.errors import CatalogueError
from jobs.stages.tags import apply_tags, check_types, load_catalogue
from tests.helpers import SNAPSHOT, base_frame


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


def test_catalogue_has_all_families_and_at_least_40_tags(cat):
    assert len(cat.tags) >= 40
    assert {"social", "value", "service", "marketing", "contact"} <= {t.family for t in cat.tags}


def test_tags_on_inline_rows(spark, cat):
    rows = [
        # elderly agent-lover on a contract ending in 20 days, calling the hotline a lot
        {"customer_id": "A", "birth_year": 1950, "activation_date": dt.date(2015, 1, 1), "contract_end_date": SNAPSHOT + dt.timedelta(days=20),
         "contacts_agent_30d": 4, "contacts_ivr_30d": 2, "contacts_hotline_30d": 6, "contacts_in_30d": 6, "optouts": ["sms_push"],
         "voice_out_min_prev23d": 230, "voice_out_min_7d": 7, "days_since_out_calls": 6},
        # young app user, new, heavy data
        {"customer_id": "B", "birth_year": 2004, "activation_date": SNAPSHOT - dt.timedelta(days=30), "contacts_app_30d": 3,
         "contacts_in_30d": 3, "data_mb_30d": 20000, "days_with_data_mb_30d": 30, "data_mb_7d": 7000, "data_mb_prev23d": 13000, "optouts": ["all"], "days_since_out_calls": 0},
        # nothing known: nulls everywhere
        {"customer_id": "C", "birth_year": None, "activation_date": None},
    ]
    out = apply_tags(base_frame(spark, cat, rows), cat).select(
        "customer_id", "soc_age", "soc_elderly", "val_contract_exp_1m", "svc_high_freq_caller", "mkt_traffic_drop",
        "svc_no_out_call_5d", "mkt_new_customer", "val_heavy_data", "cp_pref_channel", "cp_screen_swiper",
        "cp_optout_sms_push", "cp_optout_wechat",
    )
    expected = spark.createDataFrame(
        [
            ("A", 76, True, True, True, True, True, False, False, "agent", False, True, False),
            ("B", 22, False, False, False, False, False, True, True, "app", True, True, True),
            ("C", None, False, False, False, False, True, None, False, None, False, False, False),
        ],
        out.schema,
    )
    assertDataFrameEqual(out, expected)


def _bronze(spark, kind: str, rows: list[dict]):
    """Inline rows of a bronze table: every column of the file's contract, a neutral value where a row names none."""
    from schemas import FILES

    neutral = {"string": "x", "int": 0, "bigint": 0, "double": 0.0, "boolean": True, "date": SNAPSHOT,
               "timestamp": dt.datetime(2026, 11, 20, 12)}
    cols = FILES[kind].columns
    return spark.createDataFrame([tuple(r.get(c.name, neutral[c.type]) for c in cols) for r in rows], FILES[kind].spark_ddl())


def test_customer_day_has_a_row_per_customer_and_day_with_any_activity(spark):
    """The daily aggregates: one row per (customer, day) that any kind has a row for, each measure from its own
    kind (sums over the day's rows), 0 where the customer had none of it that day, never null."""
    from jobs.stages.conform import MEASURE_NAMES, customer_day

    d, d1 = SNAPSHOT, SNAPSHOT + dt.timedelta(days=1)
    at = dt.datetime(2026, 11, 20, 9)
    frames = {
        "usage": _bronze(spark, "usage", [{"customer_id": "A", "usage_date": d, "data_mb": 12.5, "out_calls": 3}]),
        "billing": _bronze(spark, "billing", [{"customer_id": "A", "bill_date": d, "total_fee": 2.25, "payment": 10.0,
                                                "balance": 7.5}]),
        "contacts": _bronze(spark, "contacts", [
            {"contact_id": "c1", "customer_id": "B", "contact_ts": at, "channel": "agent", "direction": "in",
             "purpose": "complaint", "duration_s": 60, "resolved": False},
            {"contact_id": "c2", "customer_id": "B", "contact_ts": at, "channel": "app", "direction": "in",
             "purpose": "purchase", "duration_s": 30, "resolved": True}]),
        "complaints": _bronze(spark, "complaints", [{"customer_id": "B", "event_ts": at, "event": "opened"}]),
        "orders": _bronze(spark, "orders", [{"customer_id": "A", "order_ts": at, "action": "order", "price": 5.0}]),
        "devices": _bronze(spark, "devices", [{"customer_id": "C", "change_date": d1}]),
    }
    out = customer_day(frames)
    assert out.columns == ["customer_id", "day", *MEASURE_NAMES]
    rows = {(r["customer_id"], r["day"]): r.asDict() for r in out.collect()}  # three rows
    assert set(rows) == {("A", d), ("B", d), ("C", d1)}
    assert all(v is not None for r in rows.values() for v in r.values())
    a, b, c = rows["A", d], rows["B", d], rows["C", d1]
    assert (a["usage_days"], a["data_mb"], a["out_calls"], a["total_fee"], a["topups"], a["balance"], a["orders"],
            a["order_value"], a["contacts_in"]) == (1, 12.5, 3, 2.25, 1, 7.5, 1, 5.0, 0)
    assert (b["contacts_in"], b["contacts_hotline"], b["contact_seconds"], b["complaint_contacts"],
            b["purchase_contacts"], b["unresolved_contacts"], b["complaints_opened"], b["usage_days"]) == (2, 1, 90, 1, 1, 1, 1, 0)
    assert c["device_changes"] == 1 and sum(v for k, v in c.items() if k in MEASURE_NAMES) == 1


def test_snapshot_uses_only_data_up_to_its_date(spark, cat):
    """A day after the snapshot date never reaches the snapshot's window features."""
    from pyspark.sql import functions as F

    from jobs.stages.conform import MEASURE_NAMES
    from jobs.stages.tags import window_features

    daily = spark.createDataFrame(
        [("A", SNAPSHOT - dt.timedelta(days=1), 10.0), ("A", SNAPSHOT + dt.timedelta(days=1), 999.0),
         ("A", SNAPSHOT - dt.timedelta(days=40), 555.0)],
        "customer_id string, day date, data_mb double",
    ).select("*", *[F.lit(0.0).alias(m) for m in MEASURE_NAMES if m != "data_mb"])
    row = window_features(daily, SNAPSHOT, cat).first()
    assert (row["data_mb_7d"], row["data_mb_30d"], row["days_since_usage_days"]) == (10.0, 10.0, None)


def _tag(**over):
    base = {"id": "x_test", "family": "value", "type": "boolean", "expr": "val_arpu_30d > 1",
            "name_en": "Test", "name_zh": "测试", "description": "a test tag"}
    return {**base, **over}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([_tag(id="val_arpu_30d")], "tag val_arpu_30d: duplicate id"),
        ([_tag(expr="no_such_column > 1")], "tag x_test: unknown column(s) or tag(s): no_such_column"),
        ([_tag(id="x_a", expr="x_b"), _tag(id="x_b", expr="x_a")], "circular reference"),
        ([_tag(expr="reflect('java.lang.Runtime', 'getRuntime') is not null")], "tag x_test: function(s) not allowed in tag expressions: reflect"),
        ([_tag(expr="java_method('java.lang.System', 'exit', 0) = 1")], "not allowed in tag expressions: java_method"),
        ([_tag(family="gossip")], "tag x_test: unknown family 'gossip'"),
        ([_tag(type="list")], "tag x_test: unknown type 'list'"),
        ([{"id": "x_test", "family": "value"}], "tag x_test: missing type, expr"),
    ],
    ids=["duplicate", "unknown-column", "cycle", "reflect", "java_method", "family", "type", "missing-fields"],
)
def test_catalogue_load_errors_name_the_tag(extra, message):
    with pytest.raises(CatalogueError) as err:
        load_catalogue(extra_tags=extra)
    assert message in str(err.value)


def test_wrong_type_is_refused_naming_the_tag(spark):
    cat = load_catalogue(extra_tags=[_tag(id="x_wrong", type="boolean", expr="soc_city")])
    with pytest.raises(CatalogueError, match="tag x_wrong: declared boolean but its expression gives string"):
        check_types(spark, cat)


def test_shipped_catalogue_types_check(spark, cat):
    check_types(spark, cat)
