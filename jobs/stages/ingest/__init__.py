"""Ingest: landing files -> archive -> checks -> bronze Delta tables, quarantine and the ingest ledger.

For each file kind and each delivery date given:
1. the raw file and its control file are copied to ``archive/<date>/`` first, whatever happens next;
2. file checks on the driver (cheap, no data pulled): delivered at all, control file present and well formed,
   MD5 of the gzip equal to the control's, UTF-8 header naming exactly the schema's columns;
3. Spark parses every line against the schema (``schemas.FILES``) and marks each bad row with its reasons:
   wrong number of fields, a value that is not of its type, a broken row-level expectation of the kind's
   Great Expectations suite, an event not on the delivery date, a duplicate key, a customer the CRM does not
   know as of that date;
4. Great Expectations runs the suite on the parsed rows;
5. a file is rejected whole when its row count differs from the control file, when table-level expectations
   fail, or when its bad rows exceed the suite's ``max_bad_row_share``;
6. good rows of accepted files replace the date's partition of ``bronze.<kind>``; bad rows (and every row of
   a rejected file) go to ``bronze.quarantine`` with reasons; the ledger records rows received = accepted +
   quarantined per file. A rerun replaces the same partitions, so it duplicates nothing.

Several dates of one kind are parsed and validated together (a backfill), one Great Expectations run per
kind and call: its fixed cost (about 2 s on Spark) would otherwise dominate a backfill of small files.

A night's kinds share one pass of the rest (:class:`_Call`): the ledger is read once for every kind's MD5 and
volume checks, the CRM's known customers are aggregated once (after the CRM file, which comes first) and cached,
and the quarantine is committed only for a kind that has rows to add or to replace there. After the CRM, the
kinds of a short range of dates run side by side (:func:`workers_for`: as many as Spark has cores, at most 4),
so one kind's small Spark jobs and Delta commits overlap another's; Great Expectations runs one suite at a time.

The package reads extract -> transform -> load: ``files`` (the driver-side file checks, no Spark),
``transform`` (the pure Spark transformations: parse, the bronze and quarantine rows), ``ledger`` (the ingest
ledger and the closed days); ``quality`` holds the Great Expectations suites. This module runs them per kind.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import threading
import time
from dataclasses import dataclass, field

from jobs.platform import arrow_lake, lake
from jobs.platform.config import Paths
from jobs.platform.errors import ConfigError, IngestError
from jobs.platform.logs import progress
from jobs.stages.ingest import quality
from jobs.stages.ingest.files import FileCheck, archive, check_file, scan_gzip, unrecognised
from jobs.stages.ingest.ledger import (
    Deliveries,
    close_day,
    closed_deliveries,
    ledger_row,
    reopen,
    write_ledger,
)
from jobs.stages.ingest.quality import VOLUME_DEFAULTS
from jobs.stages.ingest.transform import (
    QUARANTINE_DDL,
    bad_rows,
    first_reasons,
    good_rows,
    parse,
    raw_json,
    unparsed_rows,
)
from schemas import FILE_ORDER, FILES, FileSchema

__all__ = [
    "ConfigError",
    "FileCheck",
    "IngestError",
    "IngestReport",
    "archive",
    "check_file",
    "close_day",
    "closed_deliveries",
    "ingest",
    "ingest_kind",
    "parse",
    "quality",
    "raw_json",
    "reopen",
    "scan_gzip",
    "write_ledger",
]

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    files: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per file kind: the whole ingest of that kind
    validation_seconds: dict[str, float] = field(default_factory=dict)  # of which Great Expectations

    @property
    def rejected(self) -> list[dict]:
        return [f for f in self.files if f["status"] == "rejected"]

    def add(self, row: dict) -> None:
        self.files.append(row)


def _known_customers(spark, paths: Paths):
    """Customer ids and the first delivery date each was seen in the CRM."""
    from pyspark.sql import functions as F

    if not lake.exists(spark, paths, "bronze.crm_profile"):
        return spark.createDataFrame([], "customer_id string, _first_seen date")
    return (
        lake.read(spark, paths, "bronze.crm_profile")
        .groupBy("customer_id")
        .agg(F.min("delivery_date").alias("_first_seen"))
    )


def quarantined_kinds(paths: Paths, days: list[dt.date]) -> set[str] | None:
    """The file kinds with rows in bronze.quarantine on ``days`` (None: no quarantine table yet), from the partitions
    (kind, delivery date) of its files that hold rows, read from its Delta log in this process: no Spark job."""
    if not arrow_lake.exists(paths, "bronze.quarantine"):
        return None
    on = set(days)
    return {kind for kind, day in arrow_lake.partitions(paths, "bronze.quarantine", ["kind", "delivery_date"]) if day in on}


@dataclass
class _Call:
    """What one ingest call reads once and every file kind shares, instead of a query per kind: the closed days,
    the accepted deliveries so far (MD5s and volumes), the kinds with quarantined rows on the call's dates, and
    the CRM's known customers (aggregated over the CRM's history once, after the CRM file is ingested, and
    cached for the kinds that check their customers)."""

    spark: object
    paths: Paths
    days: list[dt.date]
    closed: dict[tuple[str, dt.date], str] = field(default_factory=dict)
    deliveries: Deliveries = field(default_factory=Deliveries)
    quarantined: set[str] | None = None  # None: no quarantine table yet
    _known: object = None
    # Kinds run side by side (:func:`ingest`): Great Expectations runs, quarantine writes and the shared state
    # above are taken one at a time.
    lock: threading.RLock = field(default_factory=threading.RLock)
    gx_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, spark, paths: Paths, days: list[dt.date]) -> _Call:
        return cls(spark, paths, days, closed_deliveries(spark, paths, days), Deliveries.read(spark, paths),
                   quarantined_kinds(paths, days))

    def known(self):
        with self.lock:
            if self._known is None:
                self._known = _known_customers(self.spark, self.paths).cache()
            return self._known

    def wrote(self, kind: str) -> None:
        """A kind's bronze partitions were replaced: the CRM's known customers are read again if it was the CRM."""
        if kind == "crm_profile":
            self.close()

    def close(self) -> None:
        with self.lock:
            if self._known is not None:
                self._known.unpersist()
                self._known = None


def _parse_and_validate(spark, call: _Call, schema: FileSchema, readable: list[FileCheck], report: IngestReport):
    """Parse the readable files together (cached): (parsed rows, per file {"received", "bad"}, the Great
    Expectations summary of the kind's suite run on them)."""
    from pyspark.sql import functions as F

    known = call.known() if schema.checks_customer else None
    parsed = parse(spark, schema, [c.path for c in readable], known).cache()
    rows = (
        parsed.groupBy("_source_file")
        .agg(F.count(F.lit(1)).alias("received"), F.sum((F.size("_reasons") > 0).cast("long")).alias("bad"))
        .collect()  # one row per file
    )
    stats = {r["_source_file"]: {"received": int(r["received"]), "bad": int(r["bad"] or 0)} for r in rows}
    with call.gx_lock:
        t0 = time.time()
        validation = quality.validate(schema.kind, parsed.select(*schema.names))
        report.validation_seconds[schema.kind] = time.time() - t0
    return parsed, stats, validation


def _volume(received: int, history: list[int], band: dict | None) -> tuple[str | None, str | None]:
    """(problem, note) of a day's row count against the median of recent accepted deliveries of its kind."""
    if band is None or len(history) < band["min_history"]:
        return None, None
    recent = history[-int(band["history"]):]
    median = statistics.median(recent)
    if median < band["min_median"]:
        return None, None
    ratio = received / median
    text = f"{received:,} rows, {ratio:.1%} of the median {median:,.0f} of the last {len(recent)} deliveries"
    if ratio < band["refuse_below"]:
        return f"volume too low: {text} (refused below {band['refuse_below']:.0%}): a partial or empty export?", None
    if ratio > band["refuse_above"]:
        return f"volume too high: {text} (refused above {band['refuse_above']:.0f}x)", None
    if not band["warn_below"] <= ratio <= band["warn_above"]:
        return None, f"volume outside the usual band: {text}"
    return None, None


def _file_problem(check: FileCheck, stats: dict, table_failures: list[dict], suite: quality.Suite,
                  history: list[int]) -> str | None:
    """Why a file is rejected whole, if it is: its driver-side problem, else its parsed rows against the
    control file, the suite's table-level expectations, its volume against recent deliveries and its bad rows
    (more than the suite's share, and more than its small-file count; never for a kind that keeps good rows)."""
    received, bad = stats["received"], stats["bad"]
    problem = check.problem
    if problem is None and received != check.control_rows:
        problem = f"row count mismatch: control file says {check.control_rows} rows, file has {received}"
    if problem is None and table_failures:
        problem = "table-level expectations failed: " + ", ".join(f["expectation"] for f in table_failures)
    if problem is None and check.problem is None:
        problem, note = _volume(received, history, suite.volume)
        check.notes += [note] if note else []
    if problem is None and received and suite.too_many_bad(bad, received):
        problem = (f"{bad} of {received} rows bad ({bad / received:.1%}), above the suite's limit of "
                   f"{suite.max_bad_row_share:.0%} (and of {suite.min_bad_rows} rows)")
    return problem


def _judge_files(checks: list[FileCheck], stats: dict[str, dict], validation: dict | None, suite: quality.Suite,
                 report: IngestReport, history: list[int]) -> tuple[set[str], dict[str, str]]:
    """Accept or reject each file, in date order, and add its ledger row to the report: (accepted names,
    rejected name -> problem). ``history``: rows of the kind's recent accepted deliveries, oldest first; each
    accepted file joins it for the next date's volume check."""
    table_failures = [f for f in (validation or {}).get("failed", []) if f["level"] == "table"]
    accepted, rejected = set(), {}
    for c in sorted(checks, key=lambda c: c.day):
        s = stats.get(c.name, {"received": c.lines or 0, "bad": 0})
        problem = _file_problem(c, s, table_failures, suite, history)
        if problem:
            rejected[c.name] = problem
        else:
            accepted.add(c.name)
            history.append(s["received"])
        report.add(ledger_row(c, s, problem, validation))
    return accepted, rejected


def _write_bronze_and_quarantine(spark, call: _Call, schema: FileSchema, checks: list[FileCheck], parsed,
                                 stats: dict[str, dict], accepted: set[str], rejected: dict[str, str]) -> None:
    """Good rows of accepted files replace their dates in ``bronze.<kind>``; bad rows, every row of a rejected
    file and every line of a file rejected before parsing (but readable) replace the kind's dates in the
    quarantine. The quarantine is not written when the kind has nothing in it on these dates and nothing to add
    (a clean night commits nothing there)."""
    kind, paths, days = schema.kind, call.paths, call.days
    bad_parts = []
    if parsed is not None:
        bad_parts.append(bad_rows(parsed, schema, accepted, rejected))
    unparsed = {c.path: c.problem for c in checks if c.problem and c.lines}
    if unparsed:  # rejected before parsing but readable: every line is kept in the quarantine, as received
        bad_parts.append(unparsed_rows(spark, schema, unparsed))
    accepted_days = sorted({c.day for c in checks if c.name in accepted})
    if accepted_days:  # a rejected delivery leaves what an earlier accepted one wrote untouched
        good = good_rows(parsed, schema, accepted)  # a file is accepted only once parsed
        # merge_schema: a contract that gains a column keeps the earlier deliveries (their rows read it as null).
        lake.replace(good, paths, f"bronze.{kind}", lake.in_dates("delivery_date", accepted_days), merge_schema=True)
        call.wrote(kind)
    adds = bool(rejected) or bool(unparsed) or any(s["bad"] for s in stats.values())
    with call.lock:
        if not adds and call.quarantined is not None and kind not in call.quarantined:
            return
        bad = spark.createDataFrame([], QUARANTINE_DDL)
        for part in bad_parts:
            bad = bad.unionByName(part)
        lake.replace(bad, paths, "bronze.quarantine", f"kind = '{kind}' AND {lake.in_dates('delivery_date', days)}",
                     merge_schema=True)
        call.quarantined = (call.quarantined or set()) | {kind}


def ingest_kind(spark, call: _Call, kind: str, report: IngestReport) -> None:
    """Ingest one file kind for the call's delivery dates (see the module's docstring)."""
    schema = FILES[kind]
    suite = quality.load_suite(kind)
    paths, days = call.paths, call.days
    checks = []
    earlier = call.deliveries.by_md5()
    for day in days:
        archive(paths, schema, day)
        checks.append(check_file(paths, schema, day, call.closed.get((kind, day)), earlier))
    readable = [c for c in checks if c.problem is None]
    parsed, stats, validation = None, {}, None
    if readable:
        parsed, stats, validation = _parse_and_validate(spark, call, schema, readable, report)
    history = call.deliveries.recent_volumes(kind, min(days), int((suite.volume or VOLUME_DEFAULTS)["history"]))
    accepted, rejected = _judge_files(checks, stats, validation, suite, report, history)
    _write_bronze_and_quarantine(spark, call, schema, checks, parsed, stats, accepted, rejected)
    # the first bad rows of each file, read only when a file has some (a clean night skips the query)
    bad_seen = parsed is not None and any(s["bad"] for s in stats.values())
    _report_files(checks, report, first_reasons(parsed) if bad_seen else {})
    if parsed is not None:
        parsed.unpersist()


def _report_files(checks: list[FileCheck], report: IngestReport, reasons: dict[str, list[tuple[int, str]]]) -> None:
    """One line per file for the person watching: what became of it, the notes, the first rows' reasons."""
    rows = {(r["kind"], r["delivery_date"], r["file"]): r for r in report.files}
    for c in checks:
        r = rows[(c.kind, c.day, c.name)]
        first = "; ".join(f"line {line}: {why}" for line, why in reasons.get(c.name, []))
        more = r["rows_quarantined"] - len(reasons.get(c.name, []))
        text = (f"REJECTED: {r['reason']}" if r["status"] == "rejected" else
                f"{r['rows_accepted']:,} rows accepted, {r['rows_quarantined']:,} quarantined")
        plain = r["status"] == "accepted" and not r["rows_quarantined"] and not c.notes
        if plain and len(checks) > 1:  # a history load of many days reports its files by exception
            continue
        log_ = log.info if plain else log.warning
        log_(f"ingest {c.day} {c.name}: {text}" + (f" ({'; '.join(c.notes)})" if c.notes else "")
             + (f"; first bad rows: {first}" + (f" (+{more:,} more in bronze.quarantine)" if more > 0 else "") if first else ""))


def _check_kinds(kinds: list[str] | None) -> None:
    """An unknown file kind is a mistake on the command line: refuse it before anything runs."""
    if kinds is None:
        return
    unknown = sorted(set(kinds) - set(FILES))
    if unknown:
        raise ConfigError(f"unknown file kind(s) {', '.join(unknown)}; the known kinds are {', '.join(FILE_ORDER)}")


def _unrecognised(paths: Paths, days: list[dt.date], report: IngestReport) -> None:
    """Every other file in the landing folders: archived, in the ledger, and reported (never silently ignored)."""
    for day in days:
        known = {n for s in FILES.values() for n in (s.file_name(day), s.control_name(day))}
        for c in unrecognised(paths, day, known):
            report.add(ledger_row(c, {"received": 0, "bad": 0}, c.problem, None, status="unrecognised"))
            log.warning(f"ingest {day} {c.name}: NOT INGESTED: {c.problem} (kept in {paths.archive_day(day) / 'unrecognised'})")


# Kinds ingested side by side for a short range of dates (the nightly: one day, where each kind's time is mostly
# fixed cost: planning, small Spark jobs, Delta commits, Great Expectations); a longer range (a backfill) parses
# many days of one kind at once and caches them, so its kinds run one after another to bound memory.
SIDE_BY_SIDE_MAX_DAYS = 7


def workers_for(spark, days: list[dt.date], workers: int | None = None) -> int:
    """How many file kinds run at once: ``workers`` if given, else the cores Spark has (at most 4) for a range of
    up to ``SIDE_BY_SIDE_MAX_DAYS`` dates, else 1."""
    if workers is not None:
        return max(1, int(workers))
    if len(days) > SIDE_BY_SIDE_MAX_DAYS:
        return 1
    return max(1, min(4, int(spark.sparkContext.defaultParallelism)))


def _run_kinds(spark, call: _Call, kinds: list[str], report: IngestReport, label: str, workers: int) -> None:
    """Ingest the kinds, the CRM first (the others check their customers against it), the rest ``workers`` at a
    time; each kind's line is logged as it ends. An error in one kind lets the others finish, then is raised."""
    def one(kind: str) -> None:
        t0 = time.time()
        ingest_kind(spark, call, kind, report)
        report.seconds[kind] = time.time() - t0
        mine = [f for f in report.files if f["kind"] == kind]
        log.info(
            f"ingest {label} {kind}: {sum(f['rows_accepted'] for f in mine)} rows accepted, "
            f"{sum(f['rows_quarantined'] for f in mine)} quarantined, "
            f"{sum(f['status'] == 'rejected' for f in mine)} files rejected ({report.seconds[kind]:.1f}s, "
            f"Great Expectations {report.validation_seconds.get(kind, 0.0):.1f}s)",
        )

    first = [k for k in kinds if not FILES[k].checks_customer]
    rest = [k for k in kinds if FILES[k].checks_customer]
    for kind in progress(first, f"ingest {label}"):
        one(kind)
    if workers <= 1 or len(rest) <= 1:
        for kind in progress(rest, f"ingest {label}"):
            one(kind)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
        futures = [pool.submit(one, kind) for kind in rest]
        for future in progress(futures, f"ingest {label}"):
            future.exception()  # wait for each; the first error is raised once all have ended
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]


def ingest(spark, paths: Paths, days: list[dt.date], kinds: list[str] | None = None, strict: bool = True,
           workers: int | None = None) -> IngestReport:
    """Ingest the given delivery dates. Raises IngestError naming every rejected file when ``strict``, and
    ConfigError naming an unknown file kind (before Spark is used). ``workers``: file kinds run at once
    (:func:`workers_for`)."""
    _check_kinds(kinds)
    kinds = [k for k in FILE_ORDER if kinds is None or k in kinds]
    report = IngestReport()
    days = sorted(set(days))
    call = _Call.open(spark, paths, days)
    label = days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]} ({len(days)} days)"
    try:
        _run_kinds(spark, call, kinds, report, label, workers_for(spark, days, workers))
    finally:
        call.close()
    # the ledger and the report in one order whatever order the kinds ended in
    order = {k: i for i, k in enumerate(FILE_ORDER)}
    report.files.sort(key=lambda f: (order.get(f["kind"], len(order)), f["delivery_date"], f["file"]))
    _unrecognised(paths, days, report)
    write_ledger(spark, paths, report, [*kinds, "unrecognised"], days)
    if strict and report.rejected:
        lines = [f"  {paths.landing_day(f['delivery_date']) / f['file']}: {f['reason']}" for f in report.rejected]
        raise IngestError(f"{len(report.rejected)} file(s) rejected (raw files kept in {paths.archive}):\n" + "\n".join(lines))
    return report
