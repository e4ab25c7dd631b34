"""Transform: landing files of one kind -> typed rows with their reasons, and the rows' bronze and quarantine
shapes. Pure Spark transformations: every function returns a DataFrame or a Column and writes nothing."""

from __future__ import annotations

from pathlib import Path

from jobs.stages.ingest import quality
from schemas import DELIMITER, FileSchema

QUARANTINE_DDL = "kind string, delivery_date date, _source_file string, raw string, reasons string"


def _delivery_date():
    """The delivery date a landing file's name carries (``<kind>_<yyyymmdd>.csv.gz``)."""
    from pyspark.sql import functions as F

    return F.to_date(F.regexp_extract("_source_file", r"_(\d{8})\.csv", 1), "yyyyMMdd").alias("delivery_date")


def _typed_lines(spark, schema: FileSchema, files: list[Path]):
    """Every data line with its fields: typed (``<name>``, null when not of its type) and raw (``_raw_<name>``)."""
    from pyspark.sql import functions as F

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
    return lines.select("value", "_source_file", F.size(fields).alias("_nfields"), _delivery_date(), *typed, *raw)


def _field_checks(schema: FileSchema) -> list:
    """Reasons of a line on its own: encoding, field count, types, the suite's row-level expectations, date."""
    from pyspark.sql import functions as F

    n = len(schema.columns)
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
    return checks


def _with_duplicates(df, schema: FileSchema):
    """(df with the columns the check needs, the duplicate-key check) over the kind's keys per delivery date."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key_w = Window.partitionBy("delivery_date", *schema.keys)
    df = df.withColumn("_dup_n", F.count(F.lit(1)).over(key_w)).withColumn(
        "_dup_rank", F.row_number().over(key_w.orderBy("value"))
    ).withColumn("_dup_distinct", F.size(F.collect_set("value").over(key_w)))
    check = F.when(F.col("_dup_distinct") > 1, F.lit("duplicate key with conflicting values")).when(
        F.col("_dup_rank") > 1, F.lit("duplicate row")
    )
    return df, check


def parse(spark, schema: FileSchema, files: list[Path], known=None):
    """Parse landing files of one kind into typed columns plus ``_reasons`` (empty for a good row).

    Pure transformation: returns a DataFrame, writes nothing.
    """
    from pyspark.sql import functions as F

    df = _typed_lines(spark, schema, files)
    checks = _field_checks(schema)
    df, duplicate = _with_duplicates(df, schema)
    checks.append(duplicate)
    if schema.checks_customer and known is not None:
        df = df.join(known, on="customer_id", how="left")
        checks.append(
            F.when(
                F.col("_first_seen").isNull() | (F.col("_first_seen") > F.col("delivery_date")),
                F.lit("unknown customer"),
            )
        )
    return df.withColumn("_reasons", F.array_compact(F.array(*checks)))


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
        F.array_join(reasons, "; ").alias("reasons"),
    )


def _file_order():  # noqa: N802 - reads as a window spec
    """Lines of one file in read order: the first is the header line, whatever it says."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return Window.partitionBy("_source_file").orderBy(F.monotonically_increasing_id()).rowsBetween(Window.unboundedPreceding, Window.currentRow)


def unparsed_rows(spark, schema: FileSchema, rejected: dict[Path, str]):
    """The quarantine rows of files rejected before parsing but readable (file path -> problem): every line
    but the header, kept as received."""
    from pyspark.sql import functions as F

    header = DELIMITER.join(schema.names)
    lines = spark.read.text([str(p) for p in rejected]).select("value", F.col("_metadata.file_name").alias("_source_file"))
    first = F.first("value").over(_file_order())
    reason_of = _file_reasons({p.name: problem for p, problem in rejected.items()})
    return (
        lines.withColumn("_first", first).where((F.col("value") != F.col("_first")) & (F.col("value") != "") & (F.col("value") != header))
        .select(F.lit(schema.kind).alias("kind"), _delivery_date(), "_source_file",
                F.to_json(F.struct(F.col("value").alias("line"))).alias("raw"),
                reason_of[F.col("_source_file")].alias("reasons"))
    )
