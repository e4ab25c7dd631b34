"""Ingest: good files land in bronze, bad rows are quarantined with reasons, broken files are rejected with
an error naming the file, the raw file is always kept, and a rerun duplicates nothing."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import shutil

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.platform import lake
from jobs.platform.config import Paths
from jobs.platform.errors import ConfigError
from jobs.stages import ingest
from schemas import APP_CATEGORIES, FILES
from simulator.generate import SimSpec, generate

SPEC = SimSpec(customers=300, days=2, end_date=dt.date(2026, 11, 20), seed=5)
DAY1, DAY2 = SPEC.dates()
KINDS = ["crm_profile", "usage"]


def rewrite(paths: Paths, kind: str, day: dt.date, edit, fix_control: bool = True) -> None:
    """Edit a landing file's lines; recompute its control file unless told not to (a file altered in transit)."""
    schema = FILES[kind]
    path = paths.landing_day(day) / schema.file_name(day)
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
    lines = edit(lines)
    gz = gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0)
    path.write_bytes(gz)
    if fix_control:
        (paths.landing_day(day) / schema.control_name(day)).write_text(
            f"file={path.name}\nrows={len(lines) - 1}\nmd5={hashlib.md5(gz).hexdigest()}\n"
        )


def _copy(paths: Paths, to) -> Paths:
    """A private copy of a storage root: Delta tables name their files relative to the table, so a copied lake
    reads as the original (as ``copy_of`` in conftest relies on)."""
    shutil.copytree(paths.root, to, symlinks=True, dirs_exist_ok=True)
    return Paths(to)


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    """The simulated files of SPEC, generated once per module; nothing ingested. Tests work on copies."""
    paths = Paths(tmp_path_factory.mktemp("delivered"))
    generate(paths, SPEC, progress=False)
    return paths


@pytest.fixture(scope="module")
def day1_ingested(spark, delivered, tmp_path_factory):
    """``delivered`` with DAY1's KINDS ingested, once per module. Tests work on copies."""
    paths = _copy(delivered, tmp_path_factory.mktemp("day1_ingested"))
    ingest.ingest(spark, paths, [DAY1], KINDS)
    return paths


@pytest.fixture()
def root(day1_ingested, tmp_path):
    """The generated files with DAY1's KINDS ingested, private to the test: a copy of the module's template (the
    same files and tables a fresh generate + ingest gives, without redoing them for every test)."""
    return _copy(day1_ingested, tmp_path)


def ledger(spark, paths, kind, day):
    return lake.read(spark, paths, "ops.ingest_ledger").where((F.col("kind") == kind) & (F.col("delivery_date") == F.lit(day))).first()


def test_good_file_ingests(spark, root):
    report = ingest.ingest(spark, root, [DAY2], KINDS)
    assert report.rejected == []
    row = ledger(spark, root, "usage", DAY2)
    control_rows = int(dict(line.split("=", 1) for line in (root.landing_day(DAY2) / "usage_20261120.ctl").read_text().splitlines())["rows"])
    assert (row["status"], row["rows_received"], row["rows_accepted"], row["rows_quarantined"]) == ("accepted", control_rows, control_rows, 0)
    assert lake.read(spark, root, "bronze.usage").where(F.col("delivery_date") == F.lit(DAY2)).count() == control_rows
    assert row["expectations_evaluated"] > 5  # Great Expectations ran the suite


def test_great_expectations_summary_is_what_one_basic_run_gives(spark, day1_ingested, monkeypatch):
    """The suite runs with Great Expectations' BOOLEAN_ONLY result first and with BASIC only when it fails: the
    summary (success, expectations evaluated, each failed one with its unexpected count) is what one BASIC run
    gives, on a clean frame and on a broken one."""
    from jobs.stages.ingest import quality

    clean = lake.read(spark, day1_ingested, "bronze.usage").select(*FILES["usage"].names).cache()
    ids = sorted(r["customer_id"] for r in clean.select("customer_id").limit(3).collect())
    broken = (clean.withColumn("voice_out_min", F.when(F.col("customer_id") == ids[0], F.lit(-5.0)).otherwise(F.col("voice_out_min")))
              .withColumn("data_mb", F.when(F.col("customer_id").isin(ids[1:]), F.lit(None)).otherwise(F.col("data_mb"))))
    real = quality._gx_validation("usage")
    once = [quality.summarise("usage", real.run(batch_parameters={"dataframe": df}, result_format=quality.RESULT_FORMAT))
            for df in (clean, broken)]  # one BASIC run each: the ingest before the change
    asked = []

    class Spy:
        def run(self, batch_parameters, result_format):
            asked.append(result_format["result_format"])
            return real.run(batch_parameters=batch_parameters, result_format=result_format)

    monkeypatch.setattr(quality, "_gx_validation", lambda kind: Spy())
    assert quality.validate("usage", clean) == once[0] and asked == ["BOOLEAN_ONLY"]
    assert quality.validate("usage", broken) == once[1] and asked == ["BOOLEAN_ONLY", "BOOLEAN_ONLY", "BASIC"]
    assert once[0]["success"] and once[0]["failed"] == [] and once[0]["evaluated"] == 25
    assert sorted(once[1]["failed"], key=lambda f: f["column"]) == [
        {"expectation": "expect_column_values_to_not_be_null", "column": "data_mb", "unexpected_count": 2, "level": "row"},
        {"expectation": "expect_column_values_to_be_between", "column": "voice_out_min", "unexpected_count": 1, "level": "row"},
    ]
    clean.unpersist()


APPS = "|1.0|0.0|0.0|0.0|0.0"  # video, content, game, travel, education MB
BAD_ROWS = {
    f"C000000001|2026-11-20|-5.0|1.0|1|0|10.0|0.0{APPS}": "voice_out_min: be between",
    f"C000000002|2026-11-20|2000.0|1.0|1|0|10.0|0.0{APPS}": "voice_out_min: be between",
    f"C000000003|2026-11-20|1.0|1.0|1|0|abc|0.0{APPS}": "data_mb: not a double",
    f"C999999999|2026-11-20|1.0|1.0|1|0|10.0|0.0{APPS}": "unknown customer",
    "C000000004|2026-11-20|1.0|1.0": f"expected {len(FILES['usage'].columns)} fields, found 4",
    f"C000000005|2026-11-27|1.0|1.0|1|0|10.0|0.0{APPS}": "usage_date: not on the delivery date",
    f"|2026-11-20|1.0|1.0|1|0|10.0|0.0{APPS}": "customer_id: not be null",
}


def test_bad_rows_are_quarantined_with_reasons(spark, root):
    def edit(lines):
        # drop the real rows of the customers used below, so that their bad rows are not key conflicts
        kept = [x for x in lines if not x.startswith(tuple(f"C00000000{i}|" for i in range(1, 6)))]
        return kept + list(BAD_ROWS) + [kept[1]]  # + an exact duplicate of a good row

    rewrite(root, "usage", DAY2, edit)
    report = ingest.ingest(spark, root, [DAY2], KINDS)
    assert report.rejected == []
    q = lake.read(spark, root, "bronze.quarantine").where((F.col("kind") == "usage") & (F.col("delivery_date") == F.lit(DAY2)))
    reasons = [r["reasons"] for r in q.collect()]
    for bad, why in BAD_ROWS.items():
        assert any(why in r for r in reasons), f"{bad!r} should be quarantined for {why!r}: {reasons}"
    assert any("duplicate row" in r for r in reasons)
    row = ledger(spark, root, "usage", DAY2)
    assert row["rows_quarantined"] == len(BAD_ROWS) + 1
    assert row["rows_received"] == row["rows_accepted"] + row["rows_quarantined"]
    assert (root.archive_day(DAY2) / "usage_20261120.csv.gz").exists()


@pytest.mark.parametrize(
    ("edit", "fix_control", "problem"),
    [
        (lambda lines: lines[: len(lines) // 2], False, "checksum mismatch"),
        (lambda lines: [lines[0].replace("|roaming_min", "")] + lines[1:], True, "missing columns ['roaming_min']"),
        (lambda lines: [lines[0].replace("|", ",")] + lines[1:], True, "wrong delimiter"),
        (lambda lines: [x.replace("|", ";") if i else x for i, x in enumerate(lines)], True, "rows bad"),
    ],
    ids=["truncated", "missing-column", "wrong-delimiter", "mostly-bad-rows"],
)
def test_broken_file_is_rejected_naming_file_and_problem(spark, root, edit, fix_control, problem):
    rewrite(root, "usage", DAY2, edit, fix_control)
    with pytest.raises(ingest.IngestError) as err:
        ingest.ingest(spark, root, [DAY2], KINDS)
    assert "usage_20261120.csv.gz" in str(err.value)
    assert problem in str(err.value)
    assert (root.archive_day(DAY2) / "usage_20261120.csv.gz").exists(), "the raw file is kept"
    row = ledger(spark, root, "usage", DAY2)
    assert row["status"] == "rejected" and problem in row["reason"]
    assert row["rows_received"] == row["rows_accepted"] + row["rows_quarantined"]


def test_empty_and_undelivered_files_are_rejected(spark, root):
    (root.landing_day(DAY2) / "usage_20261120.csv.gz").write_bytes(b"")
    (root.landing_day(DAY2) / "crm_profile_20261120.csv.gz").unlink()
    with pytest.raises(ingest.IngestError) as err:
        ingest.ingest(spark, root, [DAY2], KINDS)
    assert "usage_20261120.csv.gz: empty file" in str(err.value)
    assert "crm_profile_20261120.csv.gz: file not delivered" in str(err.value)


def test_rerun_of_a_day_changes_nothing(spark, root):
    rewrite(root, "usage", DAY2, lambda lines: lines + [f"C999999999|2026-11-20|1.0|1.0|1|0|10.0|0.0{APPS}"])
    ingest.ingest(spark, root, [DAY2], KINDS)
    first = {t: lake.read(spark, root, t).localCheckpoint() for t in ("bronze.usage", "bronze.crm_profile", "bronze.quarantine", "ops.ingest_ledger")}
    ingest.ingest(spark, root, [DAY2], KINDS)
    for table, before in first.items():
        assertDataFrameEqual(lake.read(spark, root, table), before)


def test_a_contract_that_gains_columns_keeps_earlier_deliveries(spark, root):
    """bronze.usage written before the application-category columns existed: the next delivery adds them
    (Delta schema merge), the earlier rows stay and read them as null, and the daily aggregates still build."""
    from jobs.stages import conform

    new = list(APP_CATEGORIES)
    old = lake.read(spark, root, "bronze.usage")
    n_day1 = old.count()
    lake.replace(old.drop(*new), root, "bronze.usage", None)  # the table as the previous contract left it
    assert not set(new) & set(lake.read(spark, root, "bronze.usage").columns)
    ingest.ingest(spark, root, [DAY2], KINDS)
    usage = lake.read(spark, root, "bronze.usage")
    assert set(new) <= set(usage.columns)
    day1 = usage.where(F.col("delivery_date") == F.lit(DAY1))
    assert day1.count() == n_day1 and day1.where(F.col("video_mb").isNotNull()).count() == 0
    assert usage.where((F.col("delivery_date") == F.lit(DAY2)) & F.col("video_mb").isNull()).count() == 0
    ingest.ingest(spark, root, [DAY2], [k for k in FILES if k not in KINDS and k != "responses"])
    assert conform.run(spark, root, [DAY1, DAY2]) > 0


def _versions(spark, paths: Paths, table: str) -> int:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, paths.table(table)).history().count()


def test_a_clean_night_commits_nothing_to_the_quarantine_and_a_rerun_clears_it(spark, root):
    """The quarantine is written only where it has rows to add or to replace: a clean delivery leaves it alone,
    a bad one adds its rows, and the corrected delivery's rerun of the same day removes them."""
    ingest.ingest(spark, root, [DAY2], KINDS)
    before = _versions(spark, root, "bronze.quarantine")
    ingest.ingest(spark, root, [DAY2], KINDS)
    assert _versions(spark, root, "bronze.quarantine") == before, "a clean rerun commits nothing to the quarantine"
    landed = root.landing_day(DAY2) / FILES["usage"].file_name(DAY2)
    control = root.landing_day(DAY2) / FILES["usage"].control_name(DAY2)
    good = landed.read_bytes(), control.read_text()
    rewrite(root, "usage", DAY2, lambda lines: lines + [f"C999999999|2026-11-20|1.0|1.0|1|0|10.0|0.0{APPS}"])
    ingest.ingest(spark, root, [DAY2], KINDS)
    in_quarantine = lake.read(spark, root, "bronze.quarantine").where(F.col("delivery_date") == F.lit(DAY2))
    assert in_quarantine.count() == 1
    landed.write_bytes(good[0])
    control.write_text(good[1])
    ingest.ingest(spark, root, [DAY2], KINDS)
    assert lake.read(spark, root, "bronze.quarantine").where(F.col("delivery_date") == F.lit(DAY2)).count() == 0


@pytest.mark.e2e  # every file kind of two days, the second twice
def test_kinds_side_by_side_give_the_same_tables_as_one_after_another(spark, delivered, tmp_path):
    """Every file kind of a day, with bad rows in two of them, ingested by two workers and by one: the same
    bronze tables, quarantine and ledger (the ledger's rows in the same order)."""
    one = _copy(delivered, tmp_path / "workers1")
    ingest.ingest(spark, one, [DAY1])
    rewrite(one, "usage", DAY2, lambda lines: lines + [f"C999999999|2026-11-20|1.0|1.0|1|0|10.0|0.0{APPS}"])
    rewrite(one, "billing", DAY2, lambda lines: lines + [lines[1]])
    # DAY1 (every kind, default workers) is ingested once and copied for the 2-worker root: both roots start DAY2
    # from the same files and tables, as before, and only DAY2's ingest (the one under test) runs with 1 and 2.
    roots = {1: one, 2: _copy(one, tmp_path / "workers2")}
    for workers, paths in roots.items():
        report = ingest.ingest(spark, paths, [DAY2], workers=workers)
        assert [f["kind"] for f in report.files][:2] == ["crm_profile", "billing"]
    for table in ["bronze.quarantine", "ops.ingest_ledger", *(f"bronze.{k}" for k in FILES)]:
        assertDataFrameEqual(lake.read(spark, roots[2], table), lake.read(spark, roots[1], table))
    assert lake.read(spark, roots[2], "bronze.quarantine").where(F.col("delivery_date") == F.lit(DAY2)).count() == 2


# ---- driver-side checks, no Spark ---------------------------------------------------------------------------

USAGE_HEADER = "|".join(FILES["usage"].names).encode()


def _gz(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_scan_gzip_counts_data_lines_and_keeps_the_header(tmp_path):
    good = _gz(tmp_path, "good.csv.gz", gzip.compress(USAGE_HEADER + b"\r\na|1\nb|2\nc|3\n"))
    assert ingest.scan_gzip(good)[:2] == (USAGE_HEADER, 3)
    no_final_newline = _gz(tmp_path, "open.csv.gz", gzip.compress(b"h\na\nb"))
    assert ingest.scan_gzip(no_final_newline)[:2] == (b"h", 2)
    header_only = _gz(tmp_path, "header.csv.gz", gzip.compress(b"h\n"))
    assert ingest.scan_gzip(header_only)[:2] == (b"h", 0)
    assert ingest.scan_gzip(_gz(tmp_path, "nothing.csv.gz", gzip.compress(b"")))[:2] == (b"", 0)


def test_scan_gzip_reads_every_member_of_a_multi_member_file(tmp_path):
    # a member boundary inside a line, and one inside the header: the members are one text
    multi = gzip.compress(b"he") + gzip.compress(b"ader\na|1\nb|") + gzip.compress(b"") + gzip.compress(b"2\nc|3\n")
    assert ingest.scan_gzip(_gz(tmp_path, "multi.csv.gz", multi))[:2] == (b"header", 3)


def test_scan_gzip_spans_chunks(tmp_path):
    body = b"".join(b"C%09d|1.0\n" % i for i in range(300_000))  # > 1 MiB of text: several reads
    assert ingest.scan_gzip(_gz(tmp_path, "big.csv.gz", gzip.compress(b"h\n" + body)))[:2] == (b"h", 300_000)


@pytest.mark.parametrize("cut", [0.5, -4], ids=["in-the-data", "in-the-trailer"])
def test_scan_gzip_raises_on_a_truncated_file(tmp_path, cut):
    whole = gzip.compress(b"h\n" + b"".join(b"C%09d|1.0\n" % i for i in range(2000)))
    end = int(len(whole) * cut) if isinstance(cut, float) else cut
    with pytest.raises(EOFError):
        ingest.scan_gzip(_gz(tmp_path, "cut.csv.gz", whole[:end]))


def test_scan_gzip_raises_on_a_file_that_is_not_gzip(tmp_path):
    with pytest.raises(gzip.BadGzipFile):
        ingest.scan_gzip(_gz(tmp_path, "plain.csv.gz", USAGE_HEADER + b"\na|1\n"))


def _delivered(tmp_path, data: bytes, rows: int) -> Paths:
    """A usage delivery of DAY1 with the given bytes and a control file that agrees with them."""
    paths = Paths(tmp_path)
    schema = FILES["usage"]
    day_dir = paths.landing_day(DAY1)
    day_dir.mkdir(parents=True, exist_ok=True)
    (day_dir / schema.file_name(DAY1)).write_bytes(data)
    (day_dir / schema.control_name(DAY1)).write_text(f"rows={rows}\nmd5={hashlib.md5(data).hexdigest()}\n")
    return paths


@pytest.mark.parametrize(
    ("data", "rows", "problem"),
    [
        (gzip.compress(USAGE_HEADER + b"\na\nb\n"), 2, None),
        (gzip.compress(USAGE_HEADER + b"\na\n") + gzip.compress(b"b\n"), 2, None),
        (gzip.compress(USAGE_HEADER + b"\na\nb\n"), 3, "row count mismatch: control file says 3 rows, file has 2"),
        (gzip.compress(USAGE_HEADER + b"\n" + b"x" * 5000)[:40], 1, "truncated or corrupt gzip: "),
        (gzip.compress(USAGE_HEADER + b"\na\n") + b"garbage", 1, "truncated or corrupt gzip: "),
        (USAGE_HEADER + b"\na\n", 1, "not a gzip file: "),
    ],
    ids=["good", "multi-member", "row-count", "truncated", "trailing-garbage", "not-gzip"],
)
def test_check_file_reports_the_gzip_scan(tmp_path, data, rows, problem):
    fc = ingest.check_file(_delivered(tmp_path, data, rows), FILES["usage"], DAY1)
    if problem is None:
        assert (fc.problem, fc.lines, fc.control_rows) == (None, rows, rows)
    else:
        assert fc.problem is not None and fc.problem.startswith(problem), fc.problem


def test_unknown_file_kind_is_refused_before_spark_is_used(tmp_path):
    with pytest.raises(ConfigError) as err:
        ingest.ingest(None, Paths(tmp_path), [DAY1], ["usage", "usgae", "bills"])
    message = str(err.value)
    assert "bills" in message and "usgae" in message
    assert "known kinds" in message and all(kind in message for kind in FILES)
    assert not any(tmp_path.iterdir()), "nothing was archived or written"


def test_scan_gzip_names_a_byte_order_mark_and_blank_lines(tmp_path):
    scan = ingest.scan_gzip(_gz(tmp_path, "bom.csv.gz", gzip.compress(b"\xef\xbb\xbf" + USAGE_HEADER + b"\na|1\n\nb|2\n\r\n")))
    assert scan == (USAGE_HEADER, 2, 2, True)


def test_a_byte_order_mark_and_a_trailing_blank_line_are_noted_not_refused(tmp_path):
    data = gzip.compress(b"\xef\xbb\xbf" + USAGE_HEADER + b"\na\nb\n\n")
    fc = ingest.check_file(_delivered(tmp_path, data, 2), FILES["usage"], DAY1)
    assert (fc.problem, fc.lines) == (None, 2)
    assert any("byte-order mark" in n for n in fc.notes) and any("1 blank line" in n for n in fc.notes)


def test_a_file_delivered_again_under_another_name_is_named_as_such(tmp_path):
    data = gzip.compress(USAGE_HEADER + b"\na\nb\n")
    paths = _delivered(tmp_path, data, 2)
    earlier = {hashlib.md5(data).hexdigest(): ("usage_20261101.csv.gz", DAY1 - dt.timedelta(days=1))}
    fc = ingest.check_file(paths, FILES["usage"], DAY1, earlier=earlier)
    assert fc.problem.startswith("identical to usage_20261101.csv.gz delivered for"), fc.problem


def test_a_file_refused_for_its_checksum_still_has_its_lines_counted(tmp_path):
    paths = _delivered(tmp_path, gzip.compress(USAGE_HEADER + b"\na\nb\n"), 2)
    (paths.landing_day(DAY1) / FILES["usage"].control_name(DAY1)).write_text("rows=2\nmd5=" + "0" * 32 + "\n")
    fc = ingest.check_file(paths, FILES["usage"], DAY1)
    assert fc.problem.startswith("checksum mismatch") and (fc.lines, fc.control_rows) == (2, 2)


def test_files_of_no_known_kind_and_second_copies_are_archived_and_named(tmp_path):
    from jobs.stages.ingest.files import unrecognised

    paths = _delivered(tmp_path, gzip.compress(USAGE_HEADER + b"\na\n"), 1)
    folder = paths.landing_day(DAY1)
    (folder / "mystery_20261102.csv.gz").write_bytes(b"x")
    (folder / "usage_copy.csv.gz").write_bytes((folder / FILES["usage"].file_name(DAY1)).read_bytes())
    known = {FILES["usage"].file_name(DAY1), FILES["usage"].control_name(DAY1)}
    found = {c.name: c.problem for c in unrecognised(paths, DAY1, known)}
    assert set(found) == {"mystery_20261102.csv.gz", "usage_copy.csv.gz"}
    assert found["usage_copy.csv.gz"].startswith(f"a second copy of {FILES['usage'].file_name(DAY1)}")
    assert "no file kind is named" in found["mystery_20261102.csv.gz"]
    assert {p.name for p in (paths.archive_day(DAY1) / "unrecognised").iterdir()} == set(found)


def test_bad_rows_refuse_a_file_by_share_and_count_and_never_opt_outs():
    from jobs.stages.ingest import quality

    usage, optouts = quality.load_suite("usage"), quality.load_suite("optouts")
    assert not usage.too_many_bad(1, 18), "1 bad row of 18: judged by a count, the 17 good ones are kept"
    assert usage.too_many_bad(11, 18) and not usage.too_many_bad(900, 18000) and usage.too_many_bad(901, 18000)
    assert not optouts.too_many_bad(17, 18), "opt-outs keep their good rows whatever the share of bad ones"
    assert optouts.too_many_bad(18, 18), "but a file with no good row at all is a broken delivery"


def test_volume_band_against_recent_deliveries():
    from jobs.stages.ingest import _volume
    from jobs.stages.ingest.quality import VOLUME_DEFAULTS

    band = dict(VOLUME_DEFAULTS)
    history = [18000, 18100, 17900, 18050, 17950]
    assert _volume(0, history, band)[0].startswith("volume too low: 0 rows, 0.0% of the median 18,000")
    assert _volume(18000, history[:4], band) == (None, None), "too little history: no check"
    assert _volume(5000, history, band)[1].startswith("volume outside the usual band")
    assert _volume(18000, history, band) == (None, None)
    assert _volume(0, [50] * 10, band) == (None, None), "small kinds are not judged by volume"
    assert _volume(0, history, None) == (None, None), "a kind without a band"


def test_deliveries_give_md5s_and_recent_volumes_per_kind():
    from jobs.stages.ingest.ledger import Deliveries

    d = dt.date(2026, 11, 1)
    rows = [("usage", d + dt.timedelta(days=i), f"usage_{i}.csv.gz", f"m{i}", 100 + i) for i in range(6)]
    rows += [("billing", d, "billing_0.csv.gz", None, 7)]
    seen = Deliveries(tuple(sorted(rows)))
    assert seen.by_md5()["m2"] == ("usage_2.csv.gz", d + dt.timedelta(days=2))
    assert len(seen.by_md5()) == 6, "a file without an MD5 is not recognised by one"
    assert seen.recent_volumes("usage", d + dt.timedelta(days=4), 3) == [101, 102, 103]
    assert seen.recent_volumes("usage", d, 3) == []
    assert seen.recent_volumes("billing", d + dt.timedelta(days=9), 14) == [7]
    assert Deliveries().recent_volumes("usage", d, 14) == [] and Deliveries().by_md5() == {}


def test_the_ingest_s_and_the_decision_s_ledger_reads_without_spark_give_what_spark_s_queries_gave(spark, tmp_path):
    """The kinds with quarantined rows on an ingest call's days (from the quarantine's partitions) and the
    decision's fingerprint of the deliveries (from the ledger), read in the process (``arrow_lake``), equal the
    Spark queries they replace: rejected files, a null and a non-ASCII MD5, other dates and a quarantine partition
    emptied by a rerun included; without the tables they give what they gave before."""
    from pyspark.sql import types as T

    from jobs.stages.cpc.inputs import deliveries_fingerprint
    from jobs.stages.ingest import _Call
    from schemas import LEDGER, QUARANTINE
    from schemas.types import spark as spark_type

    def frame(table, rows):
        return spark.createDataFrame(rows, T.StructType([T.StructField(c.name, spark_type(c.type), True) for c in table.columns]))

    paths = Paths(tmp_path)
    d = dt.date(2026, 11, 18)
    days = [d, d + dt.timedelta(days=1)]
    assert _Call.open(spark, paths, days).quarantined is None and deliveries_fingerprint(spark, paths, d) == "no deliveries"
    blank = {c.name: None for c in LEDGER.columns}
    ledger = [{**blank, "kind": k, "delivery_date": d + dt.timedelta(days=i), "file": f"{k}_{i}.csv.gz", "md5": md5,
               "status": status, "rows_received": 10 + i, "rows_accepted": 10 + i, "rows_quarantined": 0}
              for k, i, md5, status in [("usage", -1, "a", "accepted"), ("usage", 0, "b", "accepted"), ("usage", 1, "c", "rejected"),
                                        ("billing", 0, None, "accepted"), ("billing", 1, "é", "accepted"), ("billing", 2, "f", "accepted")]]
    lake.replace(frame(LEDGER, [tuple(r[c.name] for c in LEDGER.columns) for r in ledger]), paths, LEDGER.name, None)
    bad = [(k, d + dt.timedelta(days=i), f"{k}_{i}.csv.gz", "{}", "why", 2) for k, i in [("usage", 0), ("billing", 1), ("orders", 3), ("devices", 1)]]
    lake.replace(frame(QUARANTINE, bad), paths, QUARANTINE.name, None)
    lake.replace(frame(QUARANTINE, []), paths, QUARANTINE.name, f"kind = 'devices' AND delivery_date = '{d + dt.timedelta(days=1)}'")

    want = {r[0] for r in lake.read(spark, paths, QUARANTINE.name).where(lake.in_dates("delivery_date", days)).select("kind").distinct().collect()}
    assert _Call.open(spark, paths, days).quarantined == want == {"usage", "billing"}, "the emptied partition is not a kind"
    assert _Call.open(spark, paths, [d + dt.timedelta(days=2)]).quarantined == set(), "a table, no kind on the day"
    for day in [d - dt.timedelta(days=2), d, d + dt.timedelta(days=1), d + dt.timedelta(days=5)]:
        accepted = lake.read(spark, paths, LEDGER.name).where((F.col("delivery_date") <= F.lit(day)) & (F.col("status") == "accepted"))
        key = F.concat_ws("|", "kind", F.col("delivery_date").cast("string"), F.coalesce("md5", F.lit("")))
        spark_digest = accepted.agg(F.sha2(F.concat_ws(",", F.array_sort(F.collect_list(key))), 256)).first()[0]
        assert deliveries_fingerprint(spark, paths, day) == spark_digest, day


def test_kinds_run_side_by_side_for_a_night_and_one_at_a_time_for_a_backfill():
    class Context:
        defaultParallelism = 2

    class Session:
        sparkContext = Context()

    night, backfill = [DAY1], [DAY1 + dt.timedelta(days=i) for i in range(ingest.SIDE_BY_SIDE_MAX_DAYS + 1)]
    assert ingest.workers_for(Session(), night) == 2
    assert ingest.workers_for(Session(), backfill) == 1
    assert ingest.workers_for(Session(), backfill, workers=3) == 3
    Context.defaultParallelism = 64
    assert ingest.workers_for(Session(), night) == 4
