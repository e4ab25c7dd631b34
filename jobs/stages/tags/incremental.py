"""Incremental window state for the tag engine (issue 21, item 1): the Spark port of
``bench/incremental_reference.py``. Design: docs/incremental-tags.md.

**Not wired into the tags stage, and untested on Spark.** The Spark transforms below (``daily_delta``, ``step``,
``state_full``, ``features_from_state``, ``advance``) were written from the DuckDB reference, which is what has
been shown bit-equal to the full recompute (every feature, customer and day of the ``make run`` sample, all 359
tags on four days); they have never run. The pure-Python parts (``plan_of``, ``days_rewritten``) are tested in
``tests/test_tags_incremental.py`` without Spark. Before wiring: the tests listed in the design document.

The state of day D holds, per customer with a daily row in the last 90 days: each stored window's sum in whole
``SUM_SCALE`` units (BIGINT: exact, so adding today and subtracting the day leaving gives the full recompute's
integer), each window's count of days with the measure above zero, the last date each ``days_since`` measure
was above zero, the date of the last row and its balance. A window not starting today ([7, 29]) is the
difference of two stored ones when it can be ([0, 29] - [0, 6]). One step reads the state of D-1 and the daily
rows of the days where a window is entered or left (D, D-7, D-30, D-90 for the current catalogue).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from jobs.stages.tags.catalogue import Catalogue
from jobs.stages.tags.engine import SUM_SCALE

STATE_TABLE = "silver.tag_state"
STATE_LOG = "ops.tag_state_log"

Window = tuple[int, int]


@dataclass(frozen=True)
class Plan:
    """The state's columns for a catalogue, and how each window feature is read from them."""

    longest: int  # rows older than D - longest are outside every window
    stored: tuple[tuple[str, str, Window], ...]  # (sum | days_with, measure, (a, b)), a state column each
    since: tuple[str, ...]  # measures with a days_since feature: a last-seen date each
    features: tuple[tuple[str, str, str, Window], ...]  # (feature, kind, measure, window) in catalogue order

    @staticmethod
    def col(kind: str, measure: str, w: Window) -> str:
        return f"{'u' if kind == 'sum' else 'n'}_{measure}_{w[0]}_{w[1]}"

    def offsets(self) -> list[int]:
        """Days before D whose daily rows one step reads: D, and where each stored window is entered (a > 0)
        or left (b + 1)."""
        out = {0}
        for _, _, (a, b) in self.stored:
            out |= {a, b + 1}
        return sorted(out)

    def source(self, kind: str, measure: str, w: Window) -> tuple[str, str | None]:
        """The state column(s) a feature reads: (column, None) when stored, (minuend, subtrahend) when derived."""
        if (kind, measure, w) in self.stored:
            return Plan.col(kind, measure, w), None
        return Plan.col(kind, measure, (0, w[1])), Plan.col(kind, measure, (0, w[0] - 1))

    def columns(self) -> list[str]:
        return [Plan.col(k, m, w) for k, m, w in self.stored] + [f"seen_{m}" for m in self.since] + ["last_day", "balance"]

    def fingerprint(self) -> str:
        """Recorded with each state: a state built under another plan (windows or features changed) is not used."""
        text = json.dumps({"longest": self.longest, "stored": self.stored, "since": self.since, "scale": SUM_SCALE})
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_of(cat: Catalogue) -> Plan:
    """The state's plan: a window starting today is stored; a later window [a, b] is derived as [0, b] - [0, a-1]
    when both are stored for the same measure and kind, else stored itself."""
    longest = max(b for _, b in cat.windows.values())
    wins = {(k, m, tuple(cat.windows[w])) for k, m, w in cat.features.values() if k != "days_since"}
    starting = {x for x in wins if x[2][0] == 0}
    stored = set(starting)
    for k, m, (a, b) in wins - starting:
        if not ((k, m, (0, b)) in starting and (k, m, (0, a - 1)) in starting):
            stored.add((k, m, (a, b)))
    since = tuple(m for k, m, _ in cat.features.values() if k == "days_since")
    feats = tuple((name, k, m, tuple(cat.windows[w])) for name, (k, m, w) in cat.features.items())
    return Plan(longest=longest, stored=tuple(sorted(stored)), since=since, features=feats)


# ---------------------------------------------------------------------------------------------------------
# Spark transforms (untested on Spark)
# ---------------------------------------------------------------------------------------------------------
def _units(measure: str):
    """The unit expression of ``engine.window_features``, unchanged: both sides must round the same way."""
    from pyspark.sql import functions as F

    return F.round(F.col(measure) * SUM_SCALE).cast("long")


def daily_delta(daily, day: dt.date, plan: Plan):
    """Per customer with a row on one of the days a step reads: what enters and leaves each stored window
    (``_d_<col>``), whether each days_since measure is above zero on ``day`` (``_p_<m>``), the presence of a row
    on ``day`` (``_today``) and its balance (``_balance``)."""
    from pyspark.sql import functions as F

    days = [day - dt.timedelta(days=k) for k in plan.offsets()]
    rows = daily.where(F.col("day").isin(days)).withColumn("_ago", F.datediff(F.lit(day), F.col("day")))
    ago = F.col("_ago")
    aggs = []
    for kind, m, (a, b) in plan.stored:
        if kind == "sum":
            u = _units(m)
            aggs.append(F.sum(F.when(ago == a, u).when(ago == b + 1, -u).otherwise(F.lit(0).cast("long")))
                        .alias(f"_d_{Plan.col(kind, m, (a, b))}"))
        else:
            pos = F.col(m) > 0
            aggs.append(F.sum(F.when(pos & (ago == a), 1).when(pos & (ago == b + 1), -1).otherwise(0)).cast("int")
                        .alias(f"_d_{Plan.col(kind, m, (a, b))}"))
    aggs += [F.max(((ago == 0) & (F.col(m) > 0)).cast("int")).alias(f"_p_{m}") for m in plan.since]
    aggs += [F.max((ago == 0).cast("int")).alias("_today"),
             F.max_by(F.col("balance"), F.when(ago == 0, F.lit(1))).cast("double").alias("_balance")]
    return rows.groupBy("customer_id").agg(*aggs)


def step(state, delta, day: dt.date, plan: Plan):
    """The state of ``day`` from the state of the day before and ``daily_delta``; rows whose last daily row left
    the longest window are dropped (their sums are zero)."""
    from pyspark.sql import functions as F

    j = state.join(delta, on="customer_id", how="full")
    today = F.coalesce(F.col("_today"), F.lit(0)) == 1
    cut = F.lit(day - dt.timedelta(days=plan.longest))
    cols = []
    for kind, m, w in plan.stored:
        c = Plan.col(kind, m, w)
        typ = "long" if kind == "sum" else "int"
        cols.append((F.coalesce(F.col(c), F.lit(0).cast(typ)) + F.coalesce(F.col(f"_d_{c}"), F.lit(0).cast(typ))).cast(typ).alias(c))
    cols += [F.when(F.col(f"_p_{m}") == 1, F.lit(day)).when(F.col(f"seen_{m}") >= cut, F.col(f"seen_{m}"))
             .cast("date").alias(f"seen_{m}") for m in plan.since]
    cols += [F.when(today, F.lit(day)).otherwise(F.col("last_day")).cast("date").alias("last_day"),
             F.when(today, F.col("_balance")).otherwise(F.col("balance")).cast("double").alias("balance")]
    return j.select("customer_id", *cols).where(F.col("last_day") >= cut)


def state_full(daily, day: dt.date, plan: Plan):
    """The state of ``day`` from the history: the bootstrap, and the weekly check (on a sample of customers)."""
    from pyspark.sql import functions as F

    rows = daily.where((F.col("day") <= F.lit(day)) & (F.col("day") >= F.lit(day - dt.timedelta(days=plan.longest)))) \
        .withColumn("_ago", F.datediff(F.lit(day), F.col("day")))
    aggs = []
    for kind, m, (a, b) in plan.stored:
        inside = F.col("_ago").between(a, b)
        if kind == "sum":
            aggs.append(F.sum(F.when(inside, _units(m)).otherwise(0)).cast("long").alias(Plan.col(kind, m, (a, b))))
        else:
            aggs.append(F.sum(F.when(inside & (F.col(m) > 0), 1).otherwise(0)).cast("int").alias(Plan.col(kind, m, (a, b))))
    aggs += [F.max(F.when(F.col(m) > 0, F.col("day"))).alias(f"seen_{m}") for m in plan.since]
    aggs += [F.max("day").alias("last_day"), F.max_by("balance", "day").cast("double").alias("balance")]
    return rows.groupBy("customer_id").agg(*aggs)


def features_from_state(state, day: dt.date, plan: Plan):
    """Exactly the columns and types of ``engine.window_features`` for ``day``, read from its state."""
    from pyspark.sql import functions as F

    cols = []
    for name, kind, m, w in plan.features:
        if kind == "days_since":
            seen = F.col(f"seen_{m}")
            cols.append(F.when(seen >= F.lit(day - dt.timedelta(days=plan.longest)),
                               F.datediff(F.lit(day), seen)).cast("int").alias(name))
            continue
        plus, minus = plan.source(kind, m, w)
        v = F.col(plus) if minus is None else F.col(plus) - F.col(minus)
        # long / int is a double division in Spark, as in window_features' (sum / SUM_SCALE).cast("double")
        cols.append((v / SUM_SCALE).cast("double").alias(name) if kind == "sum" else v.cast("int").alias(name))
    return state.select("customer_id", *cols, F.col("balance").cast("double").alias("balance"))


# ---------------------------------------------------------------------------------------------------------
# Invalidation: which days of silver.customer_day were rewritten after a version
# ---------------------------------------------------------------------------------------------------------
def days_rewritten(table_path: str | Path, after_version: int, partition: str = "day") -> set[dt.date] | None:
    """The ``partition`` values of every file added or removed by the Delta commits after ``after_version``,
    read from the table's ``_delta_log`` JSON commits; None when a commit file is missing (the log was cleaned
    up: the caller must assume everything changed and bootstrap)."""
    log = Path(table_path) / "_delta_log"
    versions = sorted(int(p.stem) for p in log.glob("*.json") if p.stem.isdigit())
    later = [v for v in versions if v > after_version]
    if later and later != list(range(after_version + 1, later[-1] + 1)):
        return None
    out: set[dt.date] = set()
    for v in later:
        for line in (log / f"{v:020d}.json").read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            for kind in ("add", "remove"):
                value = (action.get(kind) or {}).get("partitionValues", {}).get(partition)
                if value:
                    out.add(dt.date.fromisoformat(value))
    return out


def stale_from(changed: set[dt.date], state_date: dt.date, longest: int) -> dt.date | None:
    """The first day whose state is wrong when the silver days ``changed`` were rewritten after the state of
    ``state_date`` was built, or None. A day X matters while it is still to be subtracted: X <= state_date
    (it was added) and X + longest + 1 > state_date (it has not left the longest window yet); an older day was
    added and subtracted with the same value, a later one was never added."""
    bad = [d for d in changed if state_date - dt.timedelta(days=longest + 1) < d <= state_date]
    return min(bad, default=None)


def start_state(spark, paths, day: dt.date, plan: Plan, retention_days: int) -> dt.date | None:
    """The date of the stored state ``advance`` steps from towards ``day``, or None (bootstrap): the latest
    logged state before ``day`` built under this plan, moved back to the day before the first rewritten silver
    day it depends on; None when that state is not retained or the Delta log cannot tell."""
    from pyspark.sql import functions as F

    from jobs.platform import lake

    if not (lake.exists(spark, paths, STATE_LOG) and lake.exists(spark, paths, STATE_TABLE)):
        return None
    rows = (lake.read(spark, paths, STATE_LOG)
            .where((F.col("plan") == plan.fingerprint()) & (F.col("state_date") < F.lit(day)))
            .orderBy(F.col("state_date").desc()).limit(1).collect())
    if not rows:
        return None
    last = rows[0]
    changed = days_rewritten(paths.table("silver.customer_day"), last["silver_version"])
    if changed is None:
        return None
    bad = stale_from(changed, last["state_date"], plan.longest)
    start = last["state_date"] if bad is None else bad - dt.timedelta(days=1)
    return start if start >= day - dt.timedelta(days=retention_days) else None


def advance(spark, paths, day: dt.date, cat: Catalogue, retention_days: int = 14):
    """The state of ``day``, written to ``silver.tag_state`` (partition ``state_date``) with a row of
    ``ops.tag_state_log`` per state written: stepped (and rebuilt forward where silver changed) from
    ``start_state``, or bootstrapped from the history. Sketch: untested on Spark."""
    from pyspark.sql import functions as F

    from jobs.platform import lake

    plan = plan_of(cat)
    daily = lake.read(spark, paths, "silver.customer_day")
    silver_version = lake.version(spark, paths, "silver.customer_day")

    def write(state, d: dt.date, method: str):
        lake.replace(state.withColumn("state_date", F.lit(d)), paths, STATE_TABLE, f"state_date = '{d.isoformat()}'",
                     merge_schema=True)
        row = [(d, method, silver_version, plan.fingerprint(), dt.datetime.now(dt.UTC))]
        lake.replace(spark.createDataFrame(row, "state_date date, method string, silver_version long, plan string, "
                                                "built_at timestamp"),
                     paths, STATE_LOG, f"state_date = '{d.isoformat()}'", merge_schema=True)
        return lake.read(spark, paths, STATE_TABLE).where(F.col("state_date") == F.lit(d)).drop("state_date")

    start = start_state(spark, paths, day, plan, retention_days)
    if start is None:
        return write(state_full(daily, day, plan), day, "bootstrap")
    state = lake.read(spark, paths, STATE_TABLE).where(F.col("state_date") == F.lit(start)).drop("state_date")
    for k in range(1, (day - start).days + 1):  # every day's state is written: a later rerun restarts from any
        d = start + dt.timedelta(days=k)
        state = write(step(state, daily_delta(daily, d, plan), d, plan), d, "step" if d == day and k == 1 else "rebuild")
    return state
