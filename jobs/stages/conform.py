"""Conform: bronze events -> ``silver.customer_day``, one row per customer per day with any activity.

Tag windows (7, 30, 90 days...) sum these daily aggregates instead of rescanning raw history, so the nightly
cost stays flat however long the history grows. Each measure is declared once below, as SQL over its
bronze table; a new daily measure is one line here.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time

from jobs.platform import lake
from jobs.platform.config import Paths, business
from schemas import APP_CATEGORIES

log = logging.getLogger(__name__)

# The passive (inbound) channels of conf/channels.yaml, in its order: one daily contact count each.
INBOUND = tuple(c["id"] for c in business("channels")["channels"] if c["kind"] == "passive")

# bronze table -> (the day column, [(measure, SQL aggregate)])
MEASURES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "usage": ("usage_date", [
        ("usage_days", "count(1)"),
        ("voice_out_min", "sum(voice_out_min)"),
        ("voice_in_min", "sum(voice_in_min)"),
        ("out_calls", "sum(out_calls)"),
        ("sms_out", "sum(sms_out)"),
        ("data_mb", "sum(data_mb)"),
        ("roaming_min", "sum(roaming_min)"),
        *[(app, f"sum({app})") for app in APP_CATEGORIES],
    ]),
    "billing": ("bill_date", [
        ("total_fee", "sum(total_fee)"),
        ("plan_fee", "sum(plan_fee)"),
        ("data_fee", "sum(data_fee)"),
        ("voice_fee", "sum(voice_fee)"),
        ("vas_fee", "sum(vas_fee)"),
        ("payment", "sum(payment)"),
        ("topups", "sum(cast(payment > 0 as int))"),
        ("small_topups", "sum(cast(payment > 0 and payment <= 20 as int))"),
        ("balance", "max(balance)"),
    ]),
    "contacts": ("to_date(contact_ts)", [
        ("contacts_in", "sum(cast(direction = 'in' as int))"),
        ("contacts_out", "sum(cast(direction = 'out' as int))"),
        *[(f"contacts_{ch}", f"sum(cast(direction = 'in' and channel = '{ch}' as int))") for ch in INBOUND],
        ("contacts_hotline", "sum(cast(direction = 'in' and channel in ('agent', 'ivr') as int))"),
        ("complaint_contacts", "sum(cast(purpose = 'complaint' as int))"),
        ("purchase_contacts", "sum(cast(purpose = 'purchase' as int))"),
        ("port_out_queries", "sum(cast(purpose = 'port_out_query' as int))"),
        ("unresolved_contacts", "sum(cast(not resolved as int))"),
        ("contact_seconds", "sum(duration_s)"),
    ]),
    "complaints": ("to_date(event_ts)", [
        ("complaints_opened", "sum(cast(event = 'opened' as int))"),
        ("complaints_closed", "sum(cast(event = 'closed' as int))"),
    ]),
    "orders": ("to_date(order_ts)", [
        ("orders", "sum(cast(action = 'order' as int))"),
        ("cancels", "sum(cast(action = 'cancel' as int))"),
        ("trials", "sum(cast(action = 'trial_start' as int))"),
        ("trial_converts", "sum(cast(action = 'trial_convert' as int))"),
        ("order_value", "sum(case when action in ('order', 'trial_convert') then price else 0 end)"),
    ]),
    "devices": ("change_date", [
        ("device_changes", "count(1)"),
    ]),
}

MEASURE_NAMES = [m for _, (_, ms) in MEASURES.items() for m, _ in ms]
_twice = sorted({m for m in MEASURE_NAMES if MEASURE_NAMES.count(m) > 1})
if _twice:  # customer_day takes each measure's max over every kind's rows: a name in two kinds would merge them
    raise ValueError(f"jobs/stages/conform.py: MEASURES names {_twice} in more than one kind")


def customer_day(frames: dict[str, object]):
    """Pure transform: bronze DataFrames by kind -> one row per (customer_id, day) with every measure (0 when
    the customer had none of it that day).

    Each kind is aggregated by (customer, day) on its own; the parts are then stacked (each row null in the
    other kinds' measures) and folded into one row per (customer, day) by one more aggregation: a measure comes
    from one kind only, so its ``max`` over the stacked rows is that kind's value, or null where the kind has no
    row. The same rows as full outer joins of the parts, without a join (and a shuffle of the joined rows) for
    each kind after the first."""
    from pyspark.sql import functions as F

    parts = []
    for kind, (day_col, measures) in MEASURES.items():
        df = frames[kind]
        parts.append(
            df.groupBy("customer_id", F.expr(day_col).alias("day")).agg(*[F.expr(sql).alias(name) for name, sql in measures])
        )
    stacked = functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    return stacked.groupBy("customer_id", "day").agg(
        *[F.coalesce(F.max(m), F.lit(0)).alias(m) for m in MEASURE_NAMES],
    )


def run(spark, paths: Paths, days: list[dt.date]) -> int:
    """Rebuild ``silver.customer_day`` for the given days from bronze; returns rows written."""
    t0 = time.time()
    cond = lake.in_dates("delivery_date", days)
    frames = {kind: lake.read(spark, paths, f"bronze.{kind}").where(cond) for kind in MEASURES}
    where = lake.in_dates("day", days)
    lake.replace(customer_day(frames).where(where), paths, "silver.customer_day", where, merge_schema=True)
    n = lake.written_rows(spark, paths, "silver.customer_day", where)
    label = days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]}"
    log.info(f"conform {label}: silver.customer_day {n} rows ({time.time() - t0:.1f}s)")
    return n
