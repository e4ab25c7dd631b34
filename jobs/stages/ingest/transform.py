"""Transform: landing files of one kind -> typed rows with their reasons, and the rows' bronze and quarantine
shapes. Pure Spark transformations: every function returns a DataFrame or a Column and writes nothing."""

from __future__ import annotations

from pathlib import Path

from jobs.platform.expressions import case_when, quoted, sql_string
from jobs.stages.ingest import quality
from schemas import FileSchema

QUARANTINE_DDL = "kind string, delivery_date date, _source_file string, raw string, reasons string, line bigint"


FILE_DATE = r"_(\d{8})\.csv"
DELIVERY_DATE = f"to_date(regexp_extract(_source_file, {sql_string(FILE_DATE)}, 1), 'yyyyMMdd') AS delivery_date"
"""The delivery date a landing file's name carries (``<kind>_<yyyymmdd>.csv.gz``), as SQL text."""


# What a value must look like to be read as its type: strict, so that a partial date ("2026-11") or a date with
# junk after it ("2026-11-21 xyz") is refused rather than read as something else, and NaN or infinity is no number.
PATTERNS = {
    "int": r"^[+-]?[0-9]+$",
    "bigint": r"^[+-]?[0-9]+$",
    "double": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$",
    "boolean": r"^(?i)(true|false)$",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "timestamp": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?$",
}
EXPECTED = {"date": " (expected YYYY-MM-DD)", "timestamp": " (expected YYYY-MM-DD HH:MM:SS)", "boolean": " (true or false)"}
NOT_FINITE = r"^[+-]?(?i)(nan|inf|infinity)$"
CONTROL = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"  # control characters (NUL among them); a tab is allowed
# A delimiter outside double quotes: a quoted field may hold the delimiter (CSV quoting, "" for a quote).
SPLIT_QUOTED = r'\|(?=(?:[^"]*"[^"]*")*[^"]*$)'
SPLIT_PLAIN = r"\|"
QUOTED_WHOLE = r'(?s)^"(.*)"$'  # a field in double quotes, its text captured


def numbered_lines(spark, files: list[Path]):
    """Every line of the files as read, with its file name and its number in the file (the header is line 1). A gzip file is not split, so its lines are consecutive ids in
    one partition: the number is the id less the file's first id, plus one."""
    from pyspark.sql import functions as F

    # The text is left exactly as read: any string function would turn bytes that are not UTF-8 into U+FFFD and
    # hide a GBK export. (A byte-order mark can only precede the header, line 1, which the file checks read.)
    # Lines are numbered per file path: two files of the same name from different folders are two files.
    read = spark.read.text([str(p) for p in files]).select(
        F.col("value"), F.col("_metadata.file_name").alias("_source_file"), F.col("_metadata.file_path").alias("_path"),
        F.monotonically_increasing_id().alias("_id"))
    first = read.groupBy("_path").agg(F.min("_id").alias("_first_id"))
    return read.join(F.broadcast(first), on="_path", how="inner").select(
        "value", "_source_file", (F.col("_id") - F.col("_first_id") + 1).alias("_line"))


# The line is parsed with SQL text (one projection a step): the Column API would make thousands of calls to Spark
# for the 20-30 columns of a file kind and their checks, each call costing more than parsing a small file.

def _fields(value: str) -> str:
    """The line's fields, split on the delimiter outside quotes (quotes are rare: the plain split otherwise)."""
    return case_when((f"contains({value}, '\"')", f"split({value}, {sql_string(SPLIT_QUOTED)}, -1)"),
                     otherwise=f"split({value}, {sql_string(SPLIT_PLAIN)}, -1)")


def _unquoted(raw: str) -> str:
    """A field's text: a field quoted whole ("engineer") is its text without the quotes, "" read as one quote."""
    inner = f"""regexp_replace(regexp_extract({raw}, {sql_string(QUOTED_WHOLE)}, 1), '""', '"')"""
    return case_when((f"{raw} RLIKE {sql_string(QUOTED_WHOLE)}", inner), otherwise=raw)


def _typed(text: str, type_: str) -> str:
    """The text as its type, or null when it does not look like one (see PATTERNS) or is no valid value."""
    if type_ == "string":
        return text
    return case_when((f"{text} RLIKE {sql_string(PATTERNS[type_])}", f"try_cast({text} AS {type_})"))


def _typed_lines(spark, schema: FileSchema, files: list[Path]):
    """Every data line with its number in the file and its fields: raw (``_raw_<name>``, as received), text
    (``_txt_<name>``, unquoted) and typed (``<name>``, null when not of its type). A byte-order mark before the
    header and blank lines are format slips, not rows: they are dropped here and noted by the file checks."""
    lines = numbered_lines(spark, files).where("_line > 1 AND value != ''").selectExpr("*", f"{_fields('value')} AS _f")
    raw = [f"nullif(get(_f, {i}), '') AS {quoted('_raw_' + c.name)}" for i, c in enumerate(schema.columns)]
    df = lines.selectExpr("value", "_source_file", "_line", "size(_f) AS _nfields", DELIVERY_DATE, *raw)
    text = [f"nullif({_unquoted(quoted('_raw_' + c.name))}, '') AS {quoted('_txt_' + c.name)}" for c in schema.columns]
    df = df.selectExpr("*", *text)
    return df.selectExpr("*", *[f"{_typed(quoted('_txt_' + c.name), c.type)} AS {quoted(c.name)}" for c in schema.columns])


def _reason(cond: str, reason: str) -> str:
    """The reason (a fixed text) where the condition holds, else null; a reason built from the row's values is a
    ``case_when`` of its own SQL."""
    return case_when((cond, sql_string(reason)))


def _value_checks(schema: FileSchema) -> list[str]:
    """Reasons a value is wrong: control characters, too long, not of its type (NaN and infinity named as such),
    an id padded with spaces or in lower case. SQL text, one expression a check."""
    checks = []
    for c in schema.columns:
        raw, text, typed = quoted(f"_raw_{c.name}"), quoted(f"_txt_{c.name}"), quoted(c.name)
        checks.append(_reason(f"{raw} RLIKE {sql_string(CONTROL)}", f"{c.name}: control character (e.g. NUL) in the value"))
        if c.limit:
            too_long = sql_string(f"{c.name}: longer than {c.limit} characters (")
            checks.append(case_when((f"length({text}) > {c.limit}", f"concat({too_long}, CAST(length({text}) AS STRING), ')')")))
        if c.type != "string":
            wrong = f"{text} IS NOT NULL AND {typed} IS NULL"
            checks.append(case_when((f"({wrong}) AND {text} RLIKE {sql_string(NOT_FINITE)}", sql_string(f"{c.name}: not a finite number (NaN or infinity)")),
                                    (wrong, sql_string(f"{c.name}: not a {c.type}{EXPECTED.get(c.type, '')}"))))
    for name in schema.ids:
        text = quoted(f"_txt_{name}")
        checks.append(_reason(f"{text} != trim({text})", f"{name}: padded with spaces"))
        if name == "customer_id":
            checks.append(_reason(f"{text} != upper({text})", f"{name}: in lower case (customer ids are upper case)"))
    return checks


def _field_checks(schema: FileSchema) -> list[str]:
    """Reasons of a line on its own: encoding, field count, values, the suite's row-level expectations, date."""
    n = len(schema.columns)
    checks = [
        _reason("NOT is_valid_utf8(value)", "not UTF-8 text (a GBK export?)"),
        case_when((f"_nfields != {n}", f"concat('expected {n} fields, found ', CAST(_nfields AS STRING))")),
        *_value_checks(schema),
    ]
    for reason, exp in quality.load_suite(schema.kind).row_rules():
        checks.append(_reason(quality.violation(exp), reason))
    if schema.event_col:
        checks.append(_reason(f"to_date({quoted(schema.event_col)}) != delivery_date", f"{schema.event_col}: not on the delivery date"))
    return checks


def _with_duplicates(df, schema: FileSchema):
    """(df with the columns the check needs, the duplicate-key check) over the kind's keys per delivery date."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key_w = Window.partitionBy("delivery_date", *schema.keys)
    df = df.withColumn("_dup_n", F.count(F.lit(1)).over(key_w)).withColumn(
        "_dup_rank", F.row_number().over(key_w.orderBy("value"))
    ).withColumn("_dup_distinct", F.size(F.collect_set("value").over(key_w)))
    check = case_when(("_dup_distinct > 1", "'duplicate key with conflicting values'"), ("_dup_rank > 1", "'duplicate row'"))
    return df, check


def parse(spark, schema: FileSchema, files: list[Path], known=None):
    """Parse landing files of one kind into typed columns plus ``_reasons`` (empty for a good row).

    Pure transformation: returns a DataFrame, writes nothing.
    """
    df = _typed_lines(spark, schema, files)
    checks = _field_checks(schema)
    df, duplicate = _with_duplicates(df, schema)
    checks.append(duplicate)
    if schema.checks_customer and known is not None:
        df = df.join(known, on="customer_id", how="left")
        checks.append(_reason("(_first_seen IS NULL OR _first_seen > delivery_date)"
                              " AND customer_id = upper(trim(customer_id))",  # a malformed id says so above
                              "unknown customer"))
    return df.selectExpr("*", f"array_compact(array({', '.join(checks)})) AS _reasons")


def first_reasons(parsed, per_file: int = 3) -> dict[str, list[tuple[int, str]]]:
    """The first bad rows of each file (line number, reasons), for the person watching the run: at most
    ``per_file`` rows a file reach the driver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    bad = parsed.where(F.size("_reasons") > 0).withColumn(
        "_rn", F.row_number().over(Window.partitionBy("_source_file").orderBy("_line")))
    out: dict[str, list[tuple[int, str]]] = {}
    for r in bad.where(F.col("_rn") <= per_file).select("_source_file", "_line", F.array_join("_reasons", "; ").alias("r")).collect():
        out.setdefault(r["_source_file"], []).append((int(r["_line"]), r["r"]))
    return {k: sorted(v) for k, v in out.items()}


def raw_json(schema: FileSchema):
    """A parsed row's fields as received, as one JSON string (the quarantine's ``raw``)."""
    from pyspark.sql import functions as F

    return F.to_json(F.struct(*[F.col(f"_raw_{c.name}").alias(c.name) for c in schema.columns]))


def _file_reasons(rejected: dict[str, str]):
    """A map column: file name -> ``file rejected: <problem>``."""
    from pyspark.sql import functions as F

    return F.create_map(*[x for k, v in rejected.items() for x in (F.lit(k), F.lit(f"file rejected: {v}"))])


def good_rows(parsed, schema: FileSchema, accepted: set[str]):
    """The bronze rows: the good rows of the accepted files."""
    from pyspark.sql import functions as F

    ok = F.col("_source_file").isin(sorted(accepted))
    return parsed.where(ok & (F.size("_reasons") == 0)).select(*schema.names, "delivery_date", "_source_file")


def bad_rows(parsed, schema: FileSchema, accepted: set[str], rejected: dict[str, str]):
    """The quarantine rows of parsed files: bad rows, and every row of a rejected file (its problem first)."""
    from pyspark.sql import functions as F

    ok = F.col("_source_file").isin(sorted(accepted))
    reasons = F.col("_reasons")
    if rejected:
        file_reason = _file_reasons(rejected)
        reasons = F.when(~ok, F.concat(F.array(file_reason[F.col("_source_file")]), reasons)).otherwise(reasons)
    return parsed.where(~ok | (F.size("_reasons") > 0)).select(
        F.lit(schema.kind).alias("kind"), "delivery_date", "_source_file", raw_json(schema).alias("raw"),
        F.array_join(reasons, "; ").alias("reasons"), F.col("_line").cast("bigint").alias("line"),
    )


def unparsed_rows(spark, schema: FileSchema, rejected: dict[Path, str]):
    """The quarantine rows of files rejected before parsing but readable (file path -> problem): every line
    but the header and blank lines, kept as received, with its line number."""
    from pyspark.sql import functions as F

    reason_of = _file_reasons({p.name: problem for p, problem in rejected.items()})
    return (
        numbered_lines(spark, list(rejected)).where((F.col("_line") > 1) & (F.col("value") != ""))
        .select(F.lit(schema.kind).alias("kind"), F.expr(DELIVERY_DATE), "_source_file",
                F.to_json(F.struct(F.col("value").alias("line"))).alias("raw"),
                reason_of[F.col("_source_file")].alias("reasons"), F.col("_line").cast("bigint").alias("line"))
    )
