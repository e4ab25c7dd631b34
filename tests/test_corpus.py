"""The bad-input corpus: every way a delivery arrives broken, for every input file kind, with its expected
outcome, and a ledger that balances for each file (rows received = accepted + quarantined).

The corpus is built from one good simulated day: case i is delivered on its own date, so the whole corpus
goes through the real ingest job in one call (and a second call checks that a duplicate delivery changes
nothing).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib

import pytest
from pyspark.sql import functions as F

from jobs.platform import lake
from jobs.platform.config import Paths
from jobs.stages import ingest
from jobs.stages.ingest import quality
from schemas import DELIMITER, FILES
from simulator.generate import SimSpec, generate

BASE = dt.date(2026, 11, 1)
SPEC = SimSpec(customers=12000, days=1, end_date=BASE, seed=3)  # enough complaints for 2 bad rows to stay under 5%


def _alt(value: str) -> str:
    """A different value of the same kind (to make a conflicting duplicate)."""
    if value in ("true", "false"):
        return "false" if value == "true" else "true"
    try:
        return str(int(value) + 1)
    except ValueError:
        pass
    try:
        return str(float(value) + 1.5)
    except ValueError:
        return value + "x"


def _impossible(kind: str) -> tuple[str, str, str]:
    """(column, value, reason) breaking the kind's first range or set expectation on a non-key column."""
    schema = FILES[kind]
    for reason, exp in quality.load_suite(kind).row_rules():
        col, kw = exp["kwargs"]["column"], exp["kwargs"]
        if col in schema.keys:
            continue
        if exp["type"] == "expect_column_values_to_be_between":
            value = kw["min_value"] - 1 if kw.get("min_value") is not None else kw["max_value"] + 1
            return col, str(value), reason
        if exp["type"] == "expect_column_values_to_be_in_set":
            return col, "zzz", reason
    raise AssertionError(f"{kind}: no range or set expectation to break")


def _set(line: str, schema, col: str, value: str) -> str:
    fields = line.split(DELIMITER)
    fields[schema.names.index(col)] = value
    return DELIMITER.join(fields)


def _future(line: str, schema, day: dt.date) -> str:
    col = schema.event_col
    later = day + dt.timedelta(days=30)
    value = later.isoformat() if schema.col(col).type == "date" else f"{later.isoformat()} 10:00:00"
    return _set(line, schema, col, value)


# case -> (mutate(kind, schema, lines, day) -> lines | bytes | None, expected(kind) -> (status, reason, quarantined))
# quarantined: rows expected in quarantine; "all" = every data row of the file.
CASES = {
    "good": (lambda k, s, lines, d: lines, lambda k: ("accepted", None, 0)),
    "missing_column": (lambda k, s, lines, d: [x.rsplit(DELIMITER, 1)[0] for x in lines], lambda k: ("rejected", "missing columns", "all")),
    "extra_column": (lambda k, s, lines, d: [lines[0] + "|extra"] + [x + "|1" for x in lines[1:]], lambda k: ("rejected", "extra columns", "all")),
    "wrong_type": (
        lambda k, s, lines, d: [lines[0], _set(lines[1], s, next(c.name for c in s.columns if c.type != "string"), "xyz"), *lines[2:]],
        lambda k: ("accepted", f"{next(c.name for c in FILES[k].columns if c.type != 'string')}: not a", 1),
    ),
    "wrong_delimiter": (lambda k, s, lines, d: [x.replace(DELIMITER, ",") for x in lines], lambda k: ("rejected", "wrong delimiter", "all")),
    "gbk_encoding": (
        lambda k, s, lines, d: (lines[0] + "\n").encode() + "\n".join(
            _set(x, s, s.names[0], x.split(DELIMITER)[0] + "客户") for x in lines[1:]).encode("gbk") + b"\n",
        lambda k: ("rejected", "rows bad", "all"),
    ),
    "truncated_gzip": (None, lambda k: ("rejected", "truncated or corrupt gzip", 0)),
    "empty_file": (lambda k, s, lines, d: b"", lambda k: ("rejected", "empty file", 0)),
    "header_only": (lambda k, s, lines, d: lines[:1], lambda k: ("accepted", None, 0)),
    "control_mismatch": (None, lambda k: ("rejected", "row count mismatch", "all")),
    "duplicate_keys": (
        lambda k, s, lines, d: lines + [DELIMITER.join(lines[1].split(DELIMITER)[:-1] + [_alt(lines[1].split(DELIMITER)[-1])])],
        lambda k: ("accepted", "duplicate key with conflicting values", 2),
    ),
    "unknown_customer": (
        # (the CRM itself is left alone: a customer new to the CRM is simply a new customer)
        lambda k, s, lines, d: lines if not s.checks_customer else [lines[0], _set(lines[1], s, "customer_id", "C999999999"), *lines[2:]],
        lambda k: ("accepted", None, 0) if not FILES[k].checks_customer else ("accepted", "unknown customer", 1),
    ),
    "impossible_value": (
        lambda k, s, lines, d: [lines[0], _set(lines[1], s, _impossible(k)[0], _impossible(k)[1]), *lines[2:]],
        lambda k: ("accepted", _impossible(k)[2], 1),
    ),
    "future_date": (
        lambda k, s, lines, d: [lines[0], _future(lines[1], s, d), *lines[2:]],
        lambda k: ("accepted", "not on the delivery date", 1),
    ),
    "closed_day": (lambda k, s, lines, d: lines[:-1], lambda k: ("rejected", "is closed", "all")),
}
CASE_DAYS = {name: BASE + dt.timedelta(days=i + 1) for i, name in enumerate(CASES)}


def _write(paths: Paths, kind: str, day: dt.date, data: bytes, rows: int, md5: str | None = None) -> None:
    schema = FILES[kind]
    folder = paths.landing_day(day)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / schema.file_name(day)).write_bytes(data)
    (folder / schema.control_name(day)).write_text(f"rows={rows}\nmd5={md5 or hashlib.md5(data).hexdigest()}\n")


def _deliver(paths: Paths, kind: str, day: dt.date, case: str, base_lines: list[str]) -> int:
    """Write the case's file for ``day``; returns its number of data lines as delivered."""
    schema = FILES[kind]
    lines = [x.replace(BASE.isoformat(), day.isoformat()).replace(f"{BASE:%Y%m%d}", f"{day:%Y%m%d}") for x in base_lines]
    mutate = CASES[case][0]
    if case == "truncated_gzip":
        data = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
        cut = data[: len(data) * 6 // 10]
        _write(paths, kind, day, cut, len(lines) - 1)  # the sender computed the checksum of what it sent
        return 0
    if case == "control_mismatch":
        data = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
        _write(paths, kind, day, data, len(lines) - 1 + 5)
        return len(lines) - 1
    out = mutate(kind, schema, lines, day)
    if isinstance(out, bytes):
        raw = out
        n = max(out.count(b"\n") - 1, 0)
    else:
        raw = ("\n".join(out) + "\n").encode()
        n = len(out) - 1
    data = gzip.compress(raw, mtime=0) if raw else b""
    _write(paths, kind, day, data, n)
    return n


def _responses(crm_lines: list[str]) -> list[str]:
    """60 delivered-and-opened responses of CRM customers on the base day, as the campaign platform sends them."""
    out = []
    for k, line in enumerate(crm_lines[1:31]):
        ref = hashlib.sha256(str(k).encode()).hexdigest()[:20]
        cid = line.split(DELIMITER)[0]
        out += [DELIMITER.join([ref, cid, f"{BASE.isoformat()} 10:00:00", "sms_push", e, ""]) for e in ("delivered", "opened")]
    return out


@pytest.fixture(scope="module")
def corpus(spark, tmp_path_factory):
    paths = Paths(tmp_path_factory.mktemp("corpus"))
    generate(paths, SPEC, progress=False)
    base_lines = {}
    for kind, schema in FILES.items():
        base_lines[kind] = gzip.decompress((paths.landing_day(BASE) / schema.file_name(BASE)).read_bytes()).decode().splitlines()
    base_lines["responses"] += _responses(base_lines["crm_profile"])  # no list went out on the base day: make some
    for kind in FILES:
        assert len(base_lines[kind]) > 41, f"{kind}: the base day needs 41+ rows so that 2 bad rows stay under the 5% limit"
    # The closed day: first delivered good, ingested with the base day, and its lists published (export log).
    closed = CASE_DAYS["closed_day"]
    for kind in FILES:
        _deliver(paths, kind, closed, "good", base_lines[kind])
    ingest.ingest(spark, paths, [BASE, closed])
    ingest.close_day(spark, paths, closed)  # as the export does once the day's lists are published
    delivered = {}
    for case, day in CASE_DAYS.items():
        for kind in FILES:
            delivered[(kind, case)] = _deliver(paths, kind, day, case, base_lines[kind])
    days = sorted(CASE_DAYS.values())
    report = ingest.ingest(spark, paths, days, strict=False)
    ledger = lake.read(spark, paths, "ops.ingest_ledger").where(lake.in_dates("delivery_date", days)).localCheckpoint()
    quarantine = lake.read(spark, paths, "bronze.quarantine").where(lake.in_dates("delivery_date", days)).localCheckpoint()
    return {"paths": paths, "report": report, "ledger": ledger, "quarantine": quarantine, "delivered": delivered, "days": days}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", list(FILES))
def test_corpus_case_has_its_expected_outcome(corpus, kind, case):
    status, reason, quarantined = CASES[case][1](kind)
    day = CASE_DAYS[case]
    row = corpus["ledger"].where((F.col("kind") == kind) & (F.col("delivery_date") == F.lit(day))).collect()
    assert len(row) == 1, "one ledger row per delivered file"
    row = row[0]
    assert row["status"] == status, row["reason"]
    if status == "rejected":
        assert reason in row["reason"]
        assert FILES[kind].file_name(day) in [f["file"] for f in corpus["report"].rejected]
    assert row["rows_received"] == row["rows_accepted"] + row["rows_quarantined"], "the ledger balances"
    expected_q = corpus["delivered"][(kind, case)] if quarantined == "all" else quarantined
    assert row["rows_quarantined"] == expected_q
    if quarantined == "all" or status == "accepted":
        assert row["rows_received"] == corpus["delivered"][(kind, case)]
    q = corpus["quarantine"].where((F.col("kind") == kind) & (F.col("delivery_date") == F.lit(day)))
    assert q.count() == expected_q, "every quarantined row is kept, with its reasons"
    if reason and status == "accepted":
        assert q.where(F.col("reasons").contains(reason)).count() >= 1
    assert (corpus["paths"].archive_day(day) / FILES[kind].file_name(day)).exists(), "the raw file is kept"


def test_gbk_rows_are_named_as_such(corpus):
    q = corpus["quarantine"].where(F.col("delivery_date") == F.lit(CASE_DAYS["gbk_encoding"]))
    assert q.count() > 0 and q.where(~F.col("reasons").contains("not UTF-8")).count() == 0


def test_duplicate_delivery_changes_nothing(spark, corpus):
    paths, days = corpus["paths"], corpus["days"]
    ingest.ingest(spark, paths, days, strict=False)
    from pyspark.testing import assertDataFrameEqual

    again = lake.read(spark, paths, "ops.ingest_ledger").where(lake.in_dates("delivery_date", days))
    cols = ["kind", "delivery_date", "file", "md5", "status", "reason", "rows_received", "rows_accepted", "rows_quarantined"]
    assertDataFrameEqual(again.select(*cols), corpus["ledger"].select(*cols))
    assertDataFrameEqual(lake.read(spark, paths, "bronze.quarantine").where(lake.in_dates("delivery_date", days)), corpus["quarantine"])


def test_strict_ingest_raises_naming_every_rejected_file(spark, corpus):
    day = CASE_DAYS["empty_file"]
    with pytest.raises(ingest.IngestError) as err:
        ingest.ingest(spark, corpus["paths"], [day], ["usage", "optouts"])
    assert f"usage_{day:%Y%m%d}.csv.gz: empty file" in str(err.value)
    assert f"optouts_{day:%Y%m%d}.csv.gz: empty file" in str(err.value)
