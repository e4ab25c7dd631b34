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
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from jobs.platform import lake
from jobs.platform.config import Paths
from jobs.platform.errors import IngestError
from jobs.stages.ingest import quality
from schemas import DELIMITER, FILE_ORDER, FILES, LEDGER, FileSchema

log = logging.getLogger(__name__)


@dataclass
class FileCheck:
    kind: str
    day: dt.date
    path: Path
    md5: str | None = None
    control_rows: int | None = None
    problem: str | None = None
    lines: int | None = None  # data lines counted on the driver (None when the gzip cannot be read)

    @property
    def name(self) -> str:
        return self.path.name


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


def _md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - file integrity, as the operator's control files use
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_control(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def archive(paths: Paths, schema: FileSchema, day: dt.date) -> None:
    """Copy the raw file and its control file to the archive, keeping an earlier different copy."""
    src_dir = paths.landing_day(day)
    dst_dir = paths.archive_day(day)
    for name in (schema.file_name(day), schema.control_name(day)):
        src = src_dir / name
        if not src.exists():
            continue
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / name
        if dst.exists() and _md5(dst) != _md5(src):
            dst.rename(dst.with_name(f"{name}.{_md5(dst)[:12]}"))
        if not dst.exists():
            shutil.copy2(src, dst)


def scan_gzip(path: Path) -> tuple[bytes, int]:
    """Decompress the whole file once, streaming: (header line, number of data lines). Raises on a truncated
    or corrupt gzip, which a Spark read would otherwise report as a cryptic task failure mid-job."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    newlines, head, last = 0, b"", b"\n"
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            while chunk:
                out = d.decompress(chunk)
                if out:
                    newlines += out.count(b"\n")
                    if len(head) < 65536 and b"\n" not in head:
                        head += out[:65536]
                    last = out[-1:]
                chunk = d.unused_data if d.eof else b""
                if d.eof and chunk:  # a second gzip member follows
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    if not d.eof:
        raise EOFError("the file ends before the gzip stream does")
    lines = newlines + (0 if last == b"\n" else 1)
    header = head.split(b"\n", 1)[0].rstrip(b"\r")
    return header, max(lines - 1, 0)


def check_file(paths: Paths, schema: FileSchema, day: dt.date, closed_md5: str | None = None) -> FileCheck:
    """File-level checks on the driver. ``problem`` says why the file cannot be parsed at all."""
    path = paths.landing_day(day) / schema.file_name(day)
    fc = FileCheck(schema.kind, day, path)
    control = paths.landing_day(day) / schema.control_name(day)
    if not path.exists():
        fc.problem = "file not delivered" + ("" if not control.exists() else " (its control file is there)")
        return fc
    if path.stat().st_size == 0:
        fc.problem = "empty file (0 bytes, not even a header)"
        return fc
    fc.md5 = _md5(path)
    if not control.exists():
        fc.problem = f"control file {control.name} missing"
        return fc
    ctl = _read_control(control)
    try:
        fc.control_rows = int(ctl["rows"])
        expected_md5 = ctl["md5"].lower()
    except (KeyError, ValueError):
        fc.problem = f"control file {control.name} malformed: needs rows=<int> and md5=<hex>, has {sorted(ctl)}"
        return fc
    if expected_md5 != fc.md5:
        fc.problem = f"checksum mismatch: control file says md5 {expected_md5}, file has {fc.md5} (truncated or altered in transit)"
        return fc
    try:
        header_bytes, fc.lines = scan_gzip(path)
    except (OSError, EOFError, zlib.error) as exc:
        fc.problem = f"truncated or corrupt gzip: {exc}"
        return fc
    try:
        header = header_bytes.decode("utf-8")
    except UnicodeDecodeError:
        fc.problem = "header is not UTF-8 (a GBK export?); files must be UTF-8"
        return fc
    if header == "":
        fc.problem = "no header line"
        return fc
    cols = header.split(DELIMITER)
    if cols != schema.names:
        if len(cols) == 1 and any(d in header for d in (",", "\t", ";")):
            fc.problem = f"wrong delimiter: header {header[:80]!r} is not separated by {DELIMITER!r}"
        else:
            missing = [c for c in schema.names if c not in cols]
            extra = [c for c in cols if c not in schema.names]
            fc.problem = (
                f"header does not match the schema: missing columns {missing}, extra columns {extra}"
                if missing or extra
                else f"columns out of order: {cols}"
            )
    if fc.problem is None and fc.lines != fc.control_rows:
        fc.problem = f"row count mismatch: control file says {fc.control_rows} rows, file has {fc.lines}"
    if fc.problem is None and closed_md5 is not None and closed_md5 != fc.md5:
        fc.problem = (f"day {day} is closed (its lists were published) and this delivery differs from the one "
                      f"ingested; run `cpc reopen --date {day}` to accept it and rerun the day")
    return fc


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


def parse(spark, schema: FileSchema, files: list[Path], known=None):
    """Parse landing files of one kind into typed columns plus ``_reasons`` (empty for a good row).

    Pure transformation: returns a DataFrame, writes nothing.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    n = len(schema.columns)
    header = DELIMITER.join(schema.names)
    lines = (
        spark.read.text([str(p) for p in files])
        .select(F.col("value"), F.col("_metadata.file_name").alias("_source_file"))
        .where((F.col("value") != header) & (F.col("value") != ""))
    )
    fields = F.split(F.col("value"), r"\|", -1)
    typed = [
        F.nullif(F.get(fields, F.lit(i)), F.lit("")).try_cast(c.type).alias(c.name)
        for i, c in enumerate(schema.columns)
    ]
    raw = [F.nullif(F.get(fields, F.lit(i)), F.lit("")).alias(f"_raw_{c.name}") for i, c in enumerate(schema.columns)]
    df = lines.select(
        "value",
        "_source_file",
        F.size(fields).alias("_nfields"),
        F.to_date(F.regexp_extract("_source_file", r"_(\d{8})\.csv", 1), "yyyyMMdd").alias("delivery_date"),
        *typed,
        *raw,
    )
    checks = [
        F.when(~F.is_valid_utf8(F.col("value")), F.lit("not UTF-8 text (a GBK export?)")),
        F.when(F.col("_nfields") != n, F.concat(F.lit(f"expected {n} fields, found "), F.col("_nfields").cast("string"))),
    ]
    for c in schema.columns:
        if c.type != "string":
            checks.append(
                F.when(
                    F.col(f"_raw_{c.name}").isNotNull() & F.col(c.name).isNull(),
                    F.lit(f"{c.name}: not a {c.type}"),
                )
            )
    for reason, exp in quality.load_suite(schema.kind).row_rules():
        checks.append(F.when(quality.violation(exp), F.lit(reason)))
    if schema.event_col:
        checks.append(
            F.when(
                F.to_date(F.col(schema.event_col)) != F.col("delivery_date"),
                F.lit(f"{schema.event_col}: not on the delivery date"),
            )
        )
    key_w = Window.partitionBy("delivery_date", *schema.keys)
    df = df.withColumn("_dup_n", F.count(F.lit(1)).over(key_w)).withColumn(
        "_dup_rank", F.row_number().over(key_w.orderBy("value"))
    ).withColumn("_dup_distinct", F.size(F.collect_set("value").over(key_w)))
    checks.append(
        F.when(F.col("_dup_distinct") > 1, F.lit("duplicate key with conflicting values")).when(
            F.col("_dup_rank") > 1, F.lit("duplicate row")
        )
    )
    if schema.checks_customer and known is not None:
        df = df.join(known, on="customer_id", how="left")
        checks.append(
            F.when(
                F.col("_first_seen").isNull() | (F.col("_first_seen") > F.col("delivery_date")),
                F.lit("unknown customer"),
            )
        )
    return df.withColumn("_reasons", F.array_compact(F.array(*checks)))


def _raw_json(schema: FileSchema):
    from pyspark.sql import functions as F

    return F.to_json(F.struct(*[F.col(f"_raw_{c.name}").alias(c.name) for c in schema.columns]))


def ingest_kind(spark, paths: Paths, kind: str, days: list[dt.date], report: IngestReport,
                closed: dict[tuple[str, dt.date], str] | None = None) -> None:
    """Ingest one file kind for the given delivery dates (see the module's docstring)."""
    from pyspark.sql import functions as F

    schema = FILES[kind]
    suite = quality.load_suite(kind)
    checks = []
    for day in days:
        archive(paths, schema, day)
        checks.append(check_file(paths, schema, day, (closed or {}).get((kind, day))))
    readable = [c for c in checks if c.problem is None]
    stats: dict[str, dict] = {}
    validation = None
    parsed = None
    if readable:
        known = _known_customers(spark, paths) if schema.checks_customer else None
        parsed = parse(spark, schema, [c.path for c in readable], known).cache()
        rows = (
            parsed.groupBy("_source_file")
            .agg(F.count(F.lit(1)).alias("received"), F.sum((F.size("_reasons") > 0).cast("long")).alias("bad"))
            .collect()  # one row per file
        )
        stats = {r["_source_file"]: {"received": int(r["received"]), "bad": int(r["bad"] or 0)} for r in rows}
        t0 = time.time()
        validation = quality.validate(kind, parsed.select(*schema.names))
        report.validation_seconds[kind] = time.time() - t0
    table_failures = [f for f in (validation or {}).get("failed", []) if f["level"] == "table"]
    accepted_names, rejected_names = set(), {}
    for c in checks:
        s = stats.get(c.name, {"received": c.lines or 0, "bad": 0})
        problem = c.problem
        if problem is None and s["received"] != c.control_rows:
            problem = f"row count mismatch: control file says {c.control_rows} rows, file has {s['received']}"
        if problem is None and table_failures:
            problem = "table-level expectations failed: " + ", ".join(f["expectation"] for f in table_failures)
        if problem is None and s["received"] and s["bad"] / s["received"] > suite.max_bad_row_share:
            problem = f"{s['bad']} of {s['received']} rows bad ({s['bad'] / s['received']:.1%}), above the suite's limit of {suite.max_bad_row_share:.0%}"
        if problem:
            rejected_names[c.name] = problem
        else:
            accepted_names.add(c.name)
        report.add({
            "kind": kind,
            "delivery_date": c.day,
            "file": c.name,
            "md5": c.md5,
            "status": "rejected" if problem else "accepted",
            "reason": problem,
            "rows_received": s["received"],
            "rows_accepted": 0 if problem else s["received"] - s["bad"],
            "rows_quarantined": s["received"] if problem else s["bad"],
            "expectations_evaluated": (validation or {}).get("evaluated", 0) if c in readable else 0,
            "expectations_failed": len((validation or {}).get("failed", [])) if c in readable else 0,
            "validation": json.dumps(validation, default=str) if validation and c in readable else None,
        })
    bronze_cols = f"{schema.spark_ddl()}, delivery_date date, _source_file string"
    good = spark.createDataFrame([], bronze_cols)
    bad_parts = []
    if parsed is not None:
        ok = F.col("_source_file").isin(sorted(accepted_names))
        good = parsed.where(ok & (F.size("_reasons") == 0)).select(*schema.names, "delivery_date", "_source_file")
        reasons = F.col("_reasons")
        if rejected_names:
            file_reason = F.create_map(*[x for k, v in rejected_names.items() for x in (F.lit(k), F.lit(f"file rejected: {v}"))])
            reasons = F.when(~ok, F.concat(F.array(file_reason[F.col("_source_file")]), reasons)).otherwise(reasons)
        bad_parts.append(parsed.where(~ok | (F.size("_reasons") > 0)).select(
            F.lit(kind).alias("kind"), "delivery_date", "_source_file", _raw_json(schema).alias("raw"),
            F.array_join(reasons, "; ").alias("reasons"),
        ))
    unparsed = [c for c in checks if c.problem and c.lines]
    if unparsed:  # rejected before parsing but readable: every line is kept in the quarantine, as received
        header = DELIMITER.join(schema.names)
        lines = spark.read.text([str(c.path) for c in unparsed]).select("value", F.col("_metadata.file_name").alias("_source_file"))
        first = F.first("value").over(_file_order())
        reason_of = F.create_map(*[x for c in unparsed for x in (F.lit(c.name), F.lit(f"file rejected: {c.problem}"))])
        bad_parts.append(
            lines.withColumn("_first", first).where((F.col("value") != F.col("_first")) & (F.col("value") != "") & (F.col("value") != header))
            .select(F.lit(kind).alias("kind"),
                    F.to_date(F.regexp_extract("_source_file", r"_(\d{8})\.csv", 1), "yyyyMMdd").alias("delivery_date"),
                    "_source_file", F.to_json(F.struct(F.col("value").alias("line"))).alias("raw"),
                    reason_of[F.col("_source_file")].alias("reasons"))
        )
    accepted_days = sorted({c.day for c in checks if c.name in accepted_names})
    if accepted_days:  # a rejected delivery leaves what an earlier accepted one wrote untouched
        # merge_schema: a contract that gains a column keeps the earlier deliveries (their rows read it as null).
        lake.replace(good, paths, f"bronze.{kind}", lake.in_dates("delivery_date", accepted_days), merge_schema=True)
    bad = spark.createDataFrame([], "kind string, delivery_date date, _source_file string, raw string, reasons string")
    for part in bad_parts:
        bad = bad.unionByName(part)
    lake.replace(bad, paths, "bronze.quarantine", f"kind = '{kind}' AND {lake.in_dates('delivery_date', days)}")
    if parsed is not None:
        parsed.unpersist()


def _file_order():  # noqa: N802 - reads as a window spec
    """Lines of one file in read order: the first is the header line, whatever it says."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return Window.partitionBy("_source_file").orderBy(F.monotonically_increasing_id()).rowsBetween(Window.unboundedPreceding, Window.currentRow)


def closed_deliveries(spark, paths: Paths, days: list[dt.date]) -> dict[tuple[str, dt.date], str]:
    """(kind, day) -> MD5 of the delivery the day's published lists were made from (``ops.closed_days``).
    A closed day takes the same delivery again (a rerun) but not a different one, until it is reopened."""
    if not lake.exists(spark, paths, "ops.closed_days"):
        return {}
    rows = lake.read(spark, paths, "ops.closed_days").where(lake.in_dates("run_date", days)).collect()  # one row per file
    return {(r["kind"], r["run_date"]): r["md5"] for r in rows}


def close_day(spark, paths: Paths, day: dt.date) -> None:
    """Record the deliveries a day's published lists were made from: the day is closed."""
    from pyspark.sql import functions as F

    accepted = (
        lake.read(spark, paths, LEDGER.name).where(F.col("delivery_date") == F.lit(day)).where("status = 'accepted'")
        .select(F.col("delivery_date").alias("run_date"), "kind", "md5")
    )
    lake.replace(accepted, paths, "ops.closed_days", f"run_date = '{day.isoformat()}'")


def reopen(spark, paths: Paths, day: dt.date) -> None:
    """Reopen a closed day so that a changed delivery is accepted; the day's lists are republished by its rerun.
    The lists already sent stay in ops.export_log and can be rebuilt (``cpc rebuild-list``)."""
    from delta.tables import DeltaTable

    if lake.exists(spark, paths, "ops.closed_days"):
        DeltaTable.forPath(spark, paths.table("ops.closed_days")).delete(f"run_date = '{day.isoformat()}'")
    log.info(f"reopen {day}: the day takes new deliveries; rerun it (`cpc nightly --date {day}`) to republish its lists")


def write_ledger(spark, paths: Paths, report: IngestReport, kinds: list[str], days: list[dt.date]) -> None:
    from pyspark.sql import types as T

    fields = [T.StructField(c.name, {"string": T.StringType(), "date": T.DateType(), "bigint": T.LongType(), "int": T.IntegerType()}[c.type], True) for c in LEDGER.columns]
    df = spark.createDataFrame([tuple(r[c.name] for c in LEDGER.columns) for r in report.files], T.StructType(fields))
    kinds_sql = ", ".join(repr(k) for k in kinds)
    lake.replace(df, paths, LEDGER.name, f"kind IN ({kinds_sql}) AND {lake.in_dates('delivery_date', days)}")


def ingest(spark, paths: Paths, days: list[dt.date], kinds: list[str] | None = None, strict: bool = True) -> IngestReport:
    """Ingest the given delivery dates. Raises IngestError naming every rejected file when ``strict``."""
    kinds = [k for k in FILE_ORDER if kinds is None or k in kinds]
    unknown = set(kinds or []) - set(FILES)
    if unknown:
        raise ValueError(f"unknown file kinds: {sorted(unknown)}")
    report = IngestReport()
    days = sorted(set(days))
    closed = closed_deliveries(spark, paths, days)
    label = days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]} ({len(days)} days)"
    for kind in kinds:
        t0 = time.time()
        ingest_kind(spark, paths, kind, days, report, closed)
        report.seconds[kind] = time.time() - t0
        mine = [f for f in report.files if f["kind"] == kind]
        log.info(
            f"ingest {label} {kind}: {sum(f['rows_accepted'] for f in mine)} rows accepted, "
            f"{sum(f['rows_quarantined'] for f in mine)} quarantined, "
            f"{sum(f['status'] == 'rejected' for f in mine)} files rejected ({report.seconds[kind]:.1f}s, "
            f"Great Expectations {report.validation_seconds.get(kind, 0.0):.1f}s)",
        )
    write_ledger(spark, paths, report, kinds, days)
    if strict and report.rejected:
        lines = [f"  {paths.landing_day(f['delivery_date']) / f['file']}: {f['reason']}" for f in report.rejected]
        raise IngestError(f"{len(report.rejected)} file(s) rejected (raw files kept in {paths.archive}):\n" + "\n".join(lines))
    return report
