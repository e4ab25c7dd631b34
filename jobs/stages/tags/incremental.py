"""Incremental window state for the tag engine (issue 21, item 1): the Spark port of
``bench/incremental_reference.py``. Design and status: docs/incremental-tags.md.

The state of day D (``silver.tag_state``, partition ``state_date``) holds, per customer with a daily row in the
last 90 days: each stored window's sum in whole ``SUM_SCALE`` units (BIGINT: exact, so adding today and
subtracting the day leaving gives the full recompute's integer), each window's count of days with the measure
above zero, the last date each ``days_since`` measure was above zero, the date of the last row and its balance.
A window not starting today ([7, 29]) is the difference of two stored ones when it can be ([0, 29] - [0, 6]).
One step reads the state of D-1 and the daily rows of the days where a window is entered or left (D, D-7,
D-30, D-90 for the current catalogue).

The tags stage reads its window features from here (:func:`features`): the state of D is stepped from the
latest valid state before D (rebuilt forward from the day before the first silver day rewritten since that
state was built: a rerun, a late file, a reopened day), or bootstrapped from the history when there is none
(no state, a gap older than ``tag_state_days``, another catalogue plan, a cleaned-up Delta log). ``full``
recomputes the features from the history (``engine.window_features``, the reference) and the state with them.
The weekly maintenance compares the stored state and its features with the full recompute on a sample of
customers (:func:`check`) and fails naming the first difference.

The SQL text below is the same for Spark and DuckDB but for two functions (``DIALECTS``): the Spark-free tests
run it in DuckDB against ``bench/duckdb_tags.py``'s full recompute.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from jobs.platform import arrow_lake, lake
from jobs.platform.config import Paths, business
from jobs.platform.errors import ConfigError, TagStateMismatch
from jobs.stages.tags.catalogue import Catalogue
from jobs.stages.tags.engine import SUM_SCALE, window_features

log = logging.getLogger(__name__)

SILVER = "silver.customer_day"
STATE_TABLE = "silver.tag_state"
STATE_LOG = "ops.tag_state_log"
CHECKS = "ops.tag_state_checks"
DEFAULT_STATE_DAYS = 14  # conf/maintenance.yaml tag_state_days
DEFAULT_MAX_STEPS = 6  # conf/maintenance.yaml tag_state_max_steps

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

    def types(self) -> list[tuple[str, str]]:
        """The state columns with their Spark types, in table order (``schemas``: silver.tag_state's open columns)."""
        kinds = {"u": "bigint", "n": "int", "s": "date", "l": "date", "b": "double"}
        return [(c, kinds[c[0]]) for c in self.columns()]

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
# SQL text of the transforms (Spark SQL; DuckDB for the Spark-free tests)
# ---------------------------------------------------------------------------------------------------------
# The only functions the two engines spell differently: days between two dates, the value at the latest key
# (Spark's max_by keeps a null value; DuckDB's arg_max skips it, arg_max_null keeps it), a quoted identifier.
DIALECTS = {
    "spark": {"days": "datediff({end}, {start})", "last": "max_by({value}, {key})", "quote": "`{name}`"},
    "duckdb": {"days": "({end} - {start})", "last": "arg_max_null({value}, {key})", "quote": '"{name}"'},
}


def date_sql(day: dt.date) -> str:
    return f"DATE '{day.isoformat()}'"


def _q(name: str, dialect: str) -> str:
    return DIALECTS[dialect]["quote"].format(name=name)


def units_sql(measure: str, dialect: str = "spark") -> str:
    """A daily value in whole 1/SUM_SCALE units: the expression of ``engine.feature_sql``, unchanged (both sides
    must round the same way)."""
    return f"CAST(round({_q(measure, dialect)} * {SUM_SCALE}) AS BIGINT)"


def ago_sql(day: dt.date, dialect: str = "spark") -> str:
    """Days before ``day`` of a daily row (``_ago``), as ``window_features`` counts them."""
    return DIALECTS[dialect]["days"].format(end=date_sql(day), start="day") + " AS _ago"


def delta_days(plan: Plan, day: dt.date) -> list[dt.date]:
    """The days whose daily rows the step to ``day`` reads."""
    return [day - dt.timedelta(days=k) for k in plan.offsets()]


def history_where(plan: Plan, day: dt.date) -> str:
    """The daily rows the full recompute of ``day`` reads: the longest window."""
    return f"day <= {date_sql(day)} AND day >= {date_sql(day - dt.timedelta(days=plan.longest))}"


def delta_aggs(plan: Plan, dialect: str = "spark") -> list[str]:
    """Aggregates per customer over the daily rows of :func:`delta_days` (with ``_ago``): what enters and leaves
    each stored window (``_d_<column>``), whether each days_since measure is above zero today (``_p_<m>``), a
    row today (``_today``) and its balance (``_balance``)."""
    out = []
    for kind, m, (a, b) in plan.stored:
        c, q = Plan.col(kind, m, (a, b)), _q(m, dialect)
        if kind == "sum":
            u = units_sql(m, dialect)
            out.append(f"CAST(sum(CASE WHEN _ago = {a} THEN {u} WHEN _ago = {b + 1} THEN -{u} "
                       f"ELSE CAST(0 AS BIGINT) END) AS BIGINT) AS _d_{c}")
        else:
            out.append(f"CAST(sum(CASE WHEN {q} > 0 AND _ago = {a} THEN 1 WHEN {q} > 0 AND _ago = {b + 1} THEN -1 "
                       f"ELSE 0 END) AS INT) AS _d_{c}")
    out += [f"CAST(max(CASE WHEN _ago = 0 AND {_q(m, dialect)} > 0 THEN 1 ELSE 0 END) AS INT) AS _p_{m}" for m in plan.since]
    out += ["CAST(max(CASE WHEN _ago = 0 THEN 1 ELSE 0 END) AS INT) AS _today",
            "CAST(max(CASE WHEN _ago = 0 THEN balance END) AS DOUBLE) AS _balance"]  # one row a customer and day
    return out


def step_cols(plan: Plan, day: dt.date) -> list[str]:
    """The state of ``day`` over yesterday's state full-outer-joined with the day's delta (same names in both
    dialects): sums and counts add the delta, a last-seen date moves to today or is forgotten once older than
    the longest window, the last row and its balance move to today's row when there is one."""
    cut, d = date_sql(day - dt.timedelta(days=plan.longest)), date_sql(day)
    out = []
    for kind, m, w in plan.stored:
        c = Plan.col(kind, m, w)
        out.append(f"CAST(coalesce({c}, 0) + coalesce(_d_{c}, 0) AS {'BIGINT' if kind == 'sum' else 'INT'}) AS {c}")
    out += [f"CAST(CASE WHEN _p_{m} = 1 THEN {d} WHEN seen_{m} >= {cut} THEN seen_{m} END AS DATE) AS seen_{m}"
            for m in plan.since]
    out += [f"CAST(CASE WHEN _today = 1 THEN {d} ELSE last_day END AS DATE) AS last_day",
            "CAST(CASE WHEN _today = 1 THEN _balance ELSE balance END AS DOUBLE) AS balance"]
    return out


def kept(plan: Plan, day: dt.date) -> str:
    """The customers the state of ``day`` keeps: a daily row in the longest window (every sum of the others is 0)."""
    return f"last_day >= {date_sql(day - dt.timedelta(days=plan.longest))}"


def state_full_aggs(plan: Plan, dialect: str = "spark") -> list[str]:
    """The state of a day from the rows of :func:`history_where` (with ``_ago``): one aggregation per customer."""
    out = []
    for kind, m, (a, b) in plan.stored:
        inside, c = f"_ago BETWEEN {a} AND {b}", Plan.col(kind, m, (a, b))
        if kind == "sum":
            out.append(f"CAST(sum(CASE WHEN {inside} THEN {units_sql(m, dialect)} ELSE 0 END) AS BIGINT) AS {c}")
        else:
            out.append(f"CAST(sum(CASE WHEN {inside} AND {_q(m, dialect)} > 0 THEN 1 ELSE 0 END) AS INT) AS {c}")
    out += [f"max(CASE WHEN {_q(m, dialect)} > 0 THEN day END) AS seen_{m}" for m in plan.since]
    last = DIALECTS[dialect]["last"].format(value="balance", key="day")
    return [*out, "max(day) AS last_day", f"CAST({last} AS DOUBLE) AS balance"]


def feature_cols(plan: Plan, day: dt.date, dialect: str = "spark") -> list[str]:
    """``window_features``' columns for ``day``, in its order and types, over a state: a sum is the same double
    (the integer cast to DOUBLE, divided by SUM_SCALE: Spark's division of a long sum by an int does the same),
    a day count an INT, days since from the last-seen date; then ``balance``."""
    cut = date_sql(day - dt.timedelta(days=plan.longest))
    out = []
    for name, kind, m, w in plan.features:
        if kind == "days_since":
            days = DIALECTS[dialect]["days"].format(end=date_sql(day), start=f"seen_{m}")
            out.append(f"CAST(CASE WHEN seen_{m} >= {cut} THEN {days} END AS INT) AS {_q(name, dialect)}")
            continue
        plus, minus = plan.source(kind, m, w)
        v = plus if minus is None else f"({plus} - {minus})"
        out.append(f"CAST({v} AS DOUBLE) / {SUM_SCALE} AS {_q(name, dialect)}" if kind == "sum"
                   else f"CAST({v} AS INT) AS {_q(name, dialect)}")
    return [*out, "CAST(balance AS DOUBLE) AS balance"]


# ---------------------------------------------------------------------------------------------------------
# Spark transforms (pure: DataFrames in, DataFrames out)
# ---------------------------------------------------------------------------------------------------------
def daily_delta(daily, day: dt.date, plan: Plan):
    """Per customer with a row on one of :func:`delta_days`: the aggregates of :func:`delta_aggs`. Four
    partitions of silver.customer_day are read (``day IN (...)`` on the partition column)."""
    from pyspark.sql import functions as F

    rows = daily.where(lake.in_dates("day", delta_days(plan, day))).selectExpr("*", ago_sql(day))
    return rows.groupBy("customer_id").agg(*[F.expr(s) for s in delta_aggs(plan)])


def step(state, delta, day: dt.date, plan: Plan):
    """The state of ``day`` from the state of the day before (``customer_id`` and :meth:`Plan.columns`) and
    :func:`daily_delta`; rows whose last daily row left the longest window are dropped (their sums are zero)."""
    joined = state.join(delta, on="customer_id", how="full")
    return joined.selectExpr("customer_id", *step_cols(plan, day)).where(kept(plan, day))


def state_full(daily, day: dt.date, plan: Plan, where: str | None = None):
    """The state of ``day`` from the history: the bootstrap, and the weekly check (``where``: its sample of
    customers, applied to the daily rows before the aggregation)."""
    from pyspark.sql import functions as F

    rows = daily.where(history_where(plan, day) + (f" AND ({where})" if where else "")).selectExpr("*", ago_sql(day))
    return rows.groupBy("customer_id").agg(*[F.expr(s) for s in state_full_aggs(plan)])


def features_from_state(state, day: dt.date, plan: Plan):
    """Exactly the columns, types and rows of ``engine.window_features`` for ``day``, read from its state."""
    return state.selectExpr("customer_id", *feature_cols(plan, day))


# ---------------------------------------------------------------------------------------------------------
# Invalidation: which days of silver.customer_day were rewritten after a version, and where to restart
# ---------------------------------------------------------------------------------------------------------
def stale_from(changed: set[dt.date], state_date: dt.date, longest: int) -> dt.date | None:
    """The first day whose state is wrong when the silver days ``changed`` were rewritten after the state of
    ``state_date`` was built, or None. A day X matters while it is still to be subtracted: X <= state_date
    (it was added) and X + longest + 1 > state_date (it has not left the longest window yet); an older day was
    added and subtracted with the same value, a later one was never added."""
    bad = [d for d in changed if state_date - dt.timedelta(days=longest + 1) < d <= state_date]
    return min(bad, default=None)


def choose_start(logged: dict[dt.date, int], changed_after: Callable[[int], set[dt.date] | None],
                 longest: int) -> dt.date | None:
    """The state to step from, among the ``logged`` valid states (date -> the silver version it was built
    from), or None (bootstrap). The latest one, unless silver days it depends on were rewritten since
    (``changed_after(version)``, :func:`jobs.platform.lake.days_rewritten`): then the latest state before the first such day,
    checked the same way against its own version (an older state depends on older days), and so on."""
    candidate = max(logged, default=None)
    while candidate is not None:
        changed = changed_after(logged[candidate])
        if changed is None:
            return None
        bad = stale_from(changed, candidate, longest)
        if bad is None:
            return candidate
        candidate = max((d for d in logged if d < bad), default=None)
    return None


def _setting(name: str, default: int, raw: dict | None) -> int:
    raw = business("maintenance") if raw is None else raw
    value = raw.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"conf/maintenance.yaml: {name}: {value!r} must be a whole number of days >= 1")
    return value


def state_days(raw: dict | None = None) -> int:
    """``tag_state_days`` of conf/maintenance.yaml: how many days of states are kept, and how far back the tags
    stage looks for a state to step from (an older gap means a bootstrap)."""
    return _setting("tag_state_days", DEFAULT_STATE_DAYS, raw)


def max_steps(raw: dict | None = None) -> int:
    """``tag_state_max_steps`` of conf/maintenance.yaml: the most days the tags stage steps (rebuilds forward) to
    reach its date; a state further back bootstraps instead (one read of the history costs about as much as six
    steps in the DuckDB reference)."""
    return _setting("tag_state_max_steps", DEFAULT_MAX_STEPS, raw)


# ---------------------------------------------------------------------------------------------------------
# The stored state: read, write, step forward, bootstrap
# ---------------------------------------------------------------------------------------------------------
def read_state(spark, paths: Paths, day: dt.date, plan: Plan):
    return (lake.read(spark, paths, STATE_TABLE).where(f"state_date = {date_sql(day)}")
            .select("customer_id", *plan.columns()))


def write_state(spark, paths: Paths, state, day: dt.date, plan: Plan, method: str, silver_version: int):
    """Replace the state of ``day`` (``silver.tag_state`` partition) and its row of ``ops.tag_state_log``, in that
    order (a log row names a state that is written); returns the state as written (read back: the next step's
    plan starts from the table, not from the lineage of every step before). The log row's count is the Delta
    commit's (``lake.written_rows``), not a scan of the partition just written."""
    t0 = time.time()
    out = state.selectExpr("customer_id", f"{date_sql(day)} AS state_date", *plan.columns())
    where = f"state_date = '{day.isoformat()}'"
    lake.replace(out, paths, STATE_TABLE, where, merge_schema=True)
    written = read_state(spark, paths, day, plan)
    n = lake.written_rows(spark, paths, STATE_TABLE, where)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    row = spark.createDataFrame([(day, method, silver_version, plan.fingerprint(), n, round(time.time() - t0, 3), now, True)],
                                "state_date date, method string, silver_version bigint, plan string, rows bigint, "
                                "seconds double, built_at timestamp, valid boolean")
    lake.replace(row, paths, STATE_LOG, f"state_date = '{day.isoformat()}'")
    log.info(f"tag state {day}: {method}, {n} customers -> {STATE_TABLE} ({time.time() - t0:.1f}s)")
    return written


def logged_states(spark, paths: Paths, plan: Plan, before: dt.date, since: dt.date | None = None) -> dict[dt.date, int]:
    """The valid states of ``plan`` logged for dates in [``since``, ``before``): date -> silver version. At most
    ``tag_state_days`` rows (maintenance deletes older ones), read from the log table in this process
    (``arrow_lake``: no Spark job; a null ``valid`` is not valid, as in SQL)."""
    import pyarrow.dataset as ds

    if not (lake.exists(spark, paths, STATE_LOG) and lake.exists(spark, paths, STATE_TABLE)):
        return {}
    where = (ds.field("plan") == plan.fingerprint()) & (ds.field("valid") == True) & (ds.field("state_date") < before)  # noqa: E712
    if since:
        where = where & (ds.field("state_date") >= since)
    rows = arrow_lake.read(paths, STATE_LOG, ["state_date", "silver_version"], where=where)
    return {r["state_date"]: int(r["silver_version"]) for r in rows}


def start_state(spark, paths: Paths, day: dt.date, plan: Plan, retention_days: int, silver_version: int) -> dt.date | None:
    """The date of the stored state :func:`advance` steps from towards ``day``, or None (bootstrap): the latest
    valid state of this plan before ``day`` and within ``retention_days``, moved back before any silver day
    rewritten since it was built, up to ``silver_version`` (the version the step reads; :func:`choose_start`)."""
    logged = logged_states(spark, paths, plan, day, day - dt.timedelta(days=retention_days))
    table = paths.table(SILVER)
    return choose_start(logged, lambda v: lake.days_rewritten(table, v, current_version=silver_version), plan.longest)


def advance(spark, paths: Paths, day: dt.date, plan: Plan, daily, silver_version: int, *, full: bool = False,
            retention_days: int | None = None, most_steps: int | None = None):
    """The state of ``day``, written: stepped day by day from :func:`start_state` (every state on the way written
    too, so a later rerun can restart from any of them), or from the history (:func:`state_full`) when there is
    none, it is more than ``most_steps`` days back, or ``full``. ``daily`` is silver.customer_day at
    ``silver_version`` (recorded with each state). Settings default to conf/maintenance.yaml's."""
    start = None if full else start_state(spark, paths, day, plan, retention_days or state_days(), silver_version)
    most_steps = most_steps or max_steps()
    if start is not None and (day - start).days > most_steps:
        log.info(f"tag state {day}: the state to step from ({start}) is more than {most_steps} days back: bootstrap")
        start = None
    if start is None:
        method = "full" if full else "bootstrap"
        return write_state(spark, paths, state_full(daily, day, plan), day, plan, method, silver_version)
    state = read_state(spark, paths, start, plan)
    if start < day - dt.timedelta(days=1):
        log.info(f"tag state {day}: rebuilding forward from the state of {start} ({(day - start).days} steps)")
    for k in range(1, (day - start).days + 1):
        d = start + dt.timedelta(days=k)
        method = "step" if d == day else "rebuild"  # rebuild: a day before ``day`` built again
        state = write_state(spark, paths, step(state, daily_delta(daily, d, plan), d, plan), d, plan, method,
                            silver_version)
    return state


def features(spark, paths: Paths, day: dt.date, cat: Catalogue, full: bool = False):
    """The window features of ``day`` for the tags stage (``window_features``' frame), with the state of ``day``
    written on the way. ``full``: the features by the full recompute, and the state from the history."""
    plan = plan_of(cat)
    version = lake.version(spark, paths, SILVER)
    daily = lake.read(spark, paths, SILVER, version)
    state = advance(spark, paths, day, plan, daily, version, full=full)
    return window_features(daily, day, cat) if full else features_from_state(state, day, plan)


def invalidate(spark, paths: Paths, since: dt.date | None = None) -> None:
    """Mark the states from ``since`` on (every state when None) invalid: the tags stage no longer steps from
    them (it steps from an earlier one, or bootstraps)."""
    from delta.tables import DeltaTable

    if lake.exists(spark, paths, STATE_LOG):
        cond = "valid" + (f" AND state_date >= {date_sql(since)}" if since else "")
        DeltaTable.forPath(spark, paths.table(STATE_LOG)).update(cond, {"valid": "false"})
        log.info(f"tag state: states {'from ' + since.isoformat() if since else 'of every date'} marked invalid")


def prune(spark, paths: Paths, cut: dt.date) -> None:
    """Delete the states dated before ``cut`` and their log rows (maintenance's retention)."""
    from delta.tables import DeltaTable

    for table in (STATE_TABLE, STATE_LOG):
        if lake.exists(spark, paths, table):
            DeltaTable.forPath(spark, paths.table(table)).delete(f"state_date < {date_sql(cut)}")


# ---------------------------------------------------------------------------------------------------------
# The check: the stored state against the full recompute, on a sample of customers
# ---------------------------------------------------------------------------------------------------------
def differences(left, right, columns: list[str], what: str):
    """(customer_id, kind, name, stored, expected) for every value of ``columns`` that differs between
    ``left`` (stored) and ``right`` (recomputed), joined on customer_id; a customer on one side only gives one
    row named ``(customer)``. Values are compared as text: a double's text names its bits (0.0 and -0.0
    differ), null equals only null."""
    def side(df, tag):
        return df.selectExpr("customer_id", f"true AS _in_{tag}",
                             *[f"CAST(`{c}` AS STRING) AS `_{tag}_{c}`" for c in columns])

    j = side(left, "l").join(side(right, "r"), on="customer_id", how="full")
    presence = ("CASE WHEN _in_l IS NULL OR _in_r IS NULL THEN named_struct('name', '(customer)', "
                "'stored', CASE WHEN _in_l THEN 'present' ELSE 'absent' END, "
                "'expected', CASE WHEN _in_r THEN 'present' ELSE 'absent' END) END")
    values = [f"CASE WHEN _in_l AND _in_r AND NOT (`_l_{c}` <=> `_r_{c}`) THEN named_struct('name', '{c}', "
              f"'stored', `_l_{c}`, 'expected', `_r_{c}`) END" for c in columns]
    return (j.selectExpr("customer_id", f"explode(filter(array({', '.join([presence, *values])}), x -> x IS NOT NULL)) AS d")
            .selectExpr("customer_id", f"'{what}' AS kind", "d.`name` AS name", "d.`stored` AS stored", "d.`expected` AS expected"))


def sample_sql(run_date: dt.date, per_mille: int) -> str:
    """The check's customers: ``per_mille`` of 1000 by a hash of the id and the run date (another sample each week)."""
    return f"pmod(xxhash64(customer_id, '{run_date.isoformat()}'), 1000) < {int(per_mille)}"


def check(spark, paths: Paths, run_date: dt.date, cat: Catalogue, per_mille: int, state_date: dt.date | None = None) -> dict:
    """Compare the latest valid state up to ``run_date`` (or the state of ``state_date``) with the full
    recompute from the silver version it was built from, on a sample of customers: the state against
    :func:`state_full`, its features against ``window_features``, every column and customer. Writes a row of
    ``ops.tag_state_checks``; on any difference marks every state invalid (the next night bootstraps) and
    raises :class:`TagStateMismatch` naming the first differing feature (or state column), customer and day."""
    t0, plan = time.time(), plan_of(cat)
    upto = (state_date or run_date) + dt.timedelta(days=1)
    logged = logged_states(spark, paths, plan, upto, state_date)
    if not logged or per_mille <= 0:
        log.info(f"tag state check {run_date}: nothing to check ({'no valid state' if not logged else 'sample of 0'})")
        return {"checked": False}
    day = max(logged)
    sample = sample_sql(run_date, per_mille)
    daily = lake.read(spark, paths, SILVER, logged[day])
    stored = read_state(spark, paths, day, plan).where(sample).localCheckpoint()  # read twice below: one scan
    diffs = (differences(features_from_state(stored, day, plan), window_features(daily.where(sample), day, cat),
                         [f[0] for f in plan.features] + ["balance"], "feature")
             .unionByName(differences(stored, state_full(daily, day, plan, sample), plan.columns(), "state")))
    diffs = diffs.localCheckpoint()
    n = diffs.count()
    first = [r.asDict() for r in diffs.orderBy("kind", "customer_id", "name").limit(20).collect()]  # <= 20 rows
    result = {"checked": True, "run_date": run_date, "state_date": day, "silver_version": logged[day],
              "per_mille": per_mille, "customers": stored.count(), "columns": len(plan.features) + 1 + len(plan.columns()),
              "differences": n, "examples": json.dumps(first), "seconds": round(time.time() - t0, 3)}
    _record_check(spark, paths, result)
    if n:
        invalidate(spark, paths)
        f = first[0]
        raise TagStateMismatch(
            f"tag state of {day} differs from the full recompute: {n} value(s) for {result['customers']} sampled "
            f"customers (silver.customer_day v{logged[day]}); first: {f['kind']} {f['name']}, customer "
            f"{f['customer_id']}: stored {f['stored']}, full recompute {f['expected']}. Every state is marked invalid: "
            f"the next tags run bootstraps from the history. Details: {CHECKS}")
    log.info(f"tag state check {run_date}: the state of {day} equals the full recompute for {result['customers']} "
             f"customers, {result['columns']} columns ({result['seconds']:.1f}s)")
    return result


def _record_check(spark, paths: Paths, r: dict) -> None:
    row = spark.createDataFrame(
        [(r["run_date"], r["state_date"], r["silver_version"], r["per_mille"], r["customers"], r["columns"],
          r["differences"], r["examples"], r["seconds"], dt.datetime.now(dt.UTC).replace(tzinfo=None))],
        "run_date date, state_date date, silver_version bigint, per_mille int, customers bigint, columns int, "
        "differences bigint, examples string, seconds double, checked_at timestamp")
    lake.replace(row, paths, CHECKS, f"run_date = '{r['run_date'].isoformat()}'")
