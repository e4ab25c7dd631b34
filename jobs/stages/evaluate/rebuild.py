"""Which decision dates a night's evaluation rebuilds: each night costs the dates whose outcome can have changed,
not every date of the lookback (issue 21; docs/evaluation.md, "Each night rebuilds only what can change").

A decision's row of gold.campaign_outcomes is a function of its decision row (gold.cpc_decisions), the responses
naming its contact_ref (bronze.responses), the orders of its customer and offered product in the
``window_days`` after it, up to the run date (bronze.orders), and its customer's line closure in that window
(bronze.crm_profile). So once the night of ``P`` has written it, the
outcome of a decision dated ``d`` can differ on a later night ``D`` only when:

- its window was still open on ``P`` (``d > P - window_days``): days_observed, matured and the orders up to the
  run date move; the dates after ``P`` are new;
- the decisions of ``d`` were rewritten since the version ``P`` read (a rerun of the score stage);
- a response delivered after ``P`` names one of its contact_refs (an opt-out or a complaint weeks later);
- an order delivered after ``P`` falls in its window (an order of day ``o`` concerns ``o - window_days .. o - 1``);
- a closure delivered after ``P`` falls in its window (the same way, by the closure's record date).

Everything else that may have changed since ``P`` makes the night rebuild every date of the lookback (method
``full``, the computation as it was before this module; the reason is logged and kept in ``ops.evaluate_log``):
no evaluation before, the last one not before ``D`` (a rerun of a day, an older day run after later ones), other
``evaluation`` settings, other code for the outcomes (:func:`jobs.stages.evaluate.logic`, a fingerprint of the
transform's source and its constants), an input or the outcomes table deleted or re-created (its Delta table id),
gold.campaign_outcomes changed by anything but that night, a response, order or CRM
delivery dated ``P`` or before rewritten since (a rerun of ingest, a reopened day: what it removed cannot be
traced), or a Delta log that cannot tell what changed (cleaned up). ``cpc evaluate --full`` forces it.

The versions come from each table's Delta log (:func:`jobs.platform.lake.days_rewritten`, as the incremental
tag state uses), not from a scan of the data.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import NamedTuple

from jobs.platform import lake
from jobs.platform.config import Paths

log = logging.getLogger(__name__)

LOG = "ops.evaluate_log"
OUTCOMES = "gold.campaign_outcomes"
# The tables an outcome is made from, the partition column that dates their rows, and the column of
# ops.evaluate_log that keeps the version a night read.
INPUTS = {"gold.cpc_decisions": ("snapshot_date", "decisions_version"),
          "bronze.responses": ("delivery_date", "responses_version"),
          "bronze.orders": ("delivery_date", "orders_version"),
          "bronze.crm_profile": ("delivery_date", "crm_version")}
DELIVERIES = ("bronze.responses", "bronze.orders", "bronze.crm_profile")


class Previous(NamedTuple):
    """The latest evaluation's row of ``ops.evaluate_log``: its date, settings, and the versions it read and wrote."""

    eval_date: dt.date
    window_days: int
    lookback_days: int
    versions: dict[str, int | None]  # input table -> the version read (-1: the table did not exist; None: not kept)
    outcomes_version: int
    logic: str | None = None  # the fingerprint of the outcomes' code (None: a row written before it was kept)
    table_ids: dict[str, str] = {}  # input tables and OUTCOMES -> the Delta table's id (a re-created table has another)


def dates_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]


def plan(day: dt.date, window_days: int, lookback_days: int, previous: Previous | None,
         changed: dict[str, set[dt.date] | None], logic: str | None = None,
         table_ids: dict[str, str] | None = None) -> tuple[set[dt.date] | None, str]:
    """Pure: the decision dates of the lookback (``day - lookback_days``, ``day``] the night of ``day`` must
    rebuild before looking at what was delivered since (:func:`touched`), and why; None and the reason when it
    must rebuild every one (``full``). ``changed``: for each input table and for :data:`OUTCOMES`, the partition
    dates with a change of data since the version the previous evaluation read (wrote, for the outcomes); None
    where the Delta log cannot tell (or the table is gone). ``logic``: the fingerprint of the outcomes' code now
    (``jobs.stages.evaluate.logic``); ``table_ids``: the tables' Delta ids now (None: not compared)."""
    if previous is None:
        return None, "no evaluation before"
    p = previous.eval_date
    if p >= day:
        return None, f"the last evaluation is of {p}, not before {day}"
    if (previous.window_days, previous.lookback_days) != (window_days, lookback_days):
        return None, (f"settings changed (window_days {previous.window_days} -> {window_days}, "
                      f"lookback_days {previous.lookback_days} -> {lookback_days})")
    if previous.logic != logic:
        return None, f"the outcomes' code changed since the evaluation of {p} ({previous.logic} -> {logic})"
    for table, now_id in sorted((table_ids or {}).items()):
        if previous.table_ids.get(table, now_id) != now_id:
            return None, f"{table} was re-created since the evaluation of {p} (Delta table id {now_id})"
    for table, dates in changed.items():
        if dates is None:
            return None, f"{table}: its Delta log cannot tell what changed since the evaluation of {p}"
    if changed[OUTCOMES]:
        return None, f"{OUTCOMES} was written since the evaluation of {p} by something else"
    for table in DELIVERIES:
        old = sorted(d for d in changed[table] if d <= p)
        if old:
            return None, f"{table}: the delivery of {old[0]} was rewritten since the evaluation of {p}"
    since = day - dt.timedelta(days=lookback_days)
    dates = {d for d in dates_between(since + dt.timedelta(days=1), day) if d > p - dt.timedelta(days=window_days)}
    dates |= {d for d in changed["gold.cpc_decisions"] if since < d <= day}
    return dates, f"step from the evaluation of {p}"


def lookback(day: dt.date, lookback_days: int) -> str:
    """The SQL predicate of the decision dates the night of ``day`` evaluates: (``day - lookback_days``, ``day``]."""
    return f"snapshot_date > '{day - dt.timedelta(days=lookback_days)}' AND snapshot_date <= '{day}'"


def window_dates(order_days, window_days: int, since: dt.date, day: dt.date) -> set[dt.date]:
    """Pure: the decision dates within (``since``, ``day``] whose conversion window holds one of ``order_days``
    (an order of day ``o`` converts a decision of ``o - window_days`` .. ``o - 1``)."""
    out: set[dt.date] = set()
    for o in order_days:
        out |= {o - dt.timedelta(days=k) for k in range(1, window_days + 1)}
    return {d for d in out if since < d <= day}


def touched(spark, paths: Paths, previous: Previous, day: dt.date, since: dt.date, window_days: int,
            known: set[dt.date]) -> set[dt.date]:
    """The decision dates of the lookback outside ``known`` that what was delivered after the previous evaluation
    concerns: orders of the offered products and line closures (by the day ordered or closed, :func:`window_dates`)
    and responses (by the decisions whose contact_ref they name). Reads the days delivered since and the
    contact_refs of the decision dates not already rebuilt; collects dates only."""
    from pyspark.sql import functions as F

    new = (F.col("delivery_date") > F.lit(previous.eval_date)) & (F.col("delivery_date") <= F.lit(day))
    out: set[dt.date] = set()
    # the days ordered on and the days lines closed on, delivered since: a handful each
    for table, which, on in (("bronze.orders", F.col("action").isin("order", "trial_convert"), F.to_date("order_ts")),
                             ("bronze.crm_profile", F.col("status") == "closed", F.col("record_date"))):
        if lake.exists(spark, paths, table):
            days = [r[0] for r in lake.read(spark, paths, table).where(new & which).select(on).distinct().collect()]
            out |= window_dates(days, window_days, since, day)
    rest = sorted(set(dates_between(since + dt.timedelta(days=1), day)) - known - out)
    if rest and lake.exists(spark, paths, "bronze.responses"):
        refs = lake.read(spark, paths, "bronze.responses").where(new).select("contact_ref").distinct()
        named = (lake.read(spark, paths, "gold.cpc_decisions").where(lake.in_dates("snapshot_date", rest))
                 .select("snapshot_date", "contact_ref").join(refs, on="contact_ref", how="left_semi")
                 .select("snapshot_date").distinct().collect())  # dates
        out |= {r[0] for r in named}
    return out - known


def versions(spark, paths: Paths) -> dict[str, int]:
    """The current version of each input table (-1: it does not exist yet)."""
    return {t: lake.version(spark, paths, t) if lake.exists(spark, paths, t) else -1 for t in INPUTS}


def table_ids(spark, paths: Paths) -> dict[str, str]:
    """The Delta table id of each input table and of :data:`OUTCOMES` that exists: a table deleted and written
    again has another id, and its log may be as long as the old one."""
    return {t: lake.table_id(spark, paths, t) for t in (*INPUTS, OUTCOMES) if lake.exists(spark, paths, t)}


def previous(spark, paths: Paths) -> Previous | None:
    """The latest evaluation's row of ``ops.evaluate_log`` (by the time it was built), or None."""
    if not (lake.exists(spark, paths, LOG) and lake.exists(spark, paths, OUTCOMES)):
        return None
    row = lake.read(spark, paths, LOG).orderBy("built_at", ascending=False).first()  # one row a date
    if row is None:
        return None
    row = row.asDict()
    return Previous(row["eval_date"], row["window_days"], row["lookback_days"],
                    {t: None if row.get(col) is None else int(row[col]) for t, (_, col) in INPUTS.items()},
                    int(row["outcomes_version"]),
                    row.get("logic"), json.loads(row.get("table_ids") or "{}"))


def changes(paths: Paths, prev: Previous, now: dict[str, int]) -> dict[str, set[dt.date] | None]:
    """For each input table and :data:`OUTCOMES`, the dates of its partitions with a change of data since the
    version ``prev`` read (wrote), read from the Delta logs; None where the log cannot tell (or the previous
    evaluation kept no version of the table: it was written before the table was an input)."""
    out: dict[str, set[dt.date] | None] = {}
    for table, (column, _) in INPUTS.items():
        if prev.versions.get(table, None) is None:
            out[table] = None
        elif now[table] < 0:  # no table: nothing changed if there was none either, else it cannot tell
            out[table] = set() if prev.versions[table] < 0 else None
        else:
            out[table] = lake.days_rewritten(paths.table(table), prev.versions[table], column, current_version=now[table])
    out[OUTCOMES] = lake.days_rewritten(paths.table(OUTCOMES), prev.outcomes_version, "snapshot_date")
    return out


def choose(spark, paths: Paths, day: dt.date, window_days: int, lookback_days: int, now: dict[str, int],
           logic: str, full: bool = False) -> tuple[set[dt.date] | None, str, dict[str, str] | None]:
    """The decision dates the night of ``day`` rebuilds (None: every date of the lookback), why, and the tables'
    Delta ids when it asked for them (:func:`record` keeps them: the night's writes do not change them)."""
    if full:
        return None, "asked for (--full)", None
    prev = previous(spark, paths)
    if prev is None:
        return None, "no evaluation before", None
    ids = table_ids(spark, paths)
    dates, reason = plan(day, window_days, lookback_days, prev, changes(paths, prev, now), logic, ids)
    if dates is None:
        return None, reason, ids
    since = day - dt.timedelta(days=lookback_days)
    more = touched(spark, paths, prev, day, since, window_days, dates)
    if more:
        reason += f"; {len(more)} older dates named by what was delivered since"
    return dates | more, reason, ids


def record(spark, paths: Paths, day: dt.date, method: str, reason: str, dates_rebuilt: int, now: dict[str, int],
           window_days: int, lookback_days: int, seconds: float, logic: str, ids: dict[str, str] | None = None) -> None:
    """Replace the row of ``day`` in ``ops.evaluate_log``, with the outcomes table's version just written, the
    outcomes' code fingerprint and the tables' Delta ids (``ids``, as :func:`choose` read them; asked again when it
    did not, or the outcomes table did not exist yet)."""
    if ids is None or OUTCOMES not in ids:
        ids = table_ids(spark, paths)
    row = {"eval_date": day, "method": method, "reason": reason, "dates_rebuilt": dates_rebuilt,
           **{col: now[t] for t, (_, col) in INPUTS.items()}, "outcomes_version": lake.version(spark, paths, OUTCOMES),
           "window_days": window_days, "lookback_days": lookback_days, "seconds": round(seconds, 3),
           "built_at": dt.datetime.now(dt.UTC).replace(tzinfo=None), "logic": logic,
           "table_ids": json.dumps(ids, sort_keys=True)}
    row["crm_version"] = row.pop("crm_version")  # added after the others: the table's last column
    schema = ("eval_date date, method string, reason string, dates_rebuilt int, decisions_version bigint, "
              "responses_version bigint, orders_version bigint, outcomes_version bigint, window_days int, "
              "lookback_days int, seconds double, built_at timestamp, logic string, table_ids string, crm_version bigint")
    lake.replace(spark.createDataFrame([tuple(row.values())], schema), paths, LOG, f"eval_date = '{day.isoformat()}'",
                 merge_schema=True)
