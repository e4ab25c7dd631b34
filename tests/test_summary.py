"""The run's summary reads the lake without Spark (jobs/platform/arrow_lake.py): Delta tables written here by the
``deltalake`` package, with only the columns the summary reads. tests/test_evaluation.py compares it with
Spark's counts on the sample's lake."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import write_deltalake

from jobs.orchestration import summary
from jobs.platform import arrow_lake
from jobs.platform.config import Paths, settings

DAY = dt.date(2026, 11, 20)
BEFORE = DAY - dt.timedelta(days=1)


def _write(paths: Paths, name: str, rows: list[dict], partition: str | None = None, mode: str = "append") -> None:
    write_deltalake(paths.table(name), pa.Table.from_pylist(rows), partition_by=[partition] if partition else None, mode=mode)


@pytest.fixture()
def lake(tmp_path):
    paths = Paths(tmp_path / "root")
    ledger = [{"kind": k, "delivery_date": d, "file": f"{k}_{d:%Y%m%d}.csv.gz", "status": st, "reason": why, "rows_received": n,
               "rows_quarantined": q} for d in (BEFORE, DAY)
              for k, st, why, n, q in (("billing", "accepted", None, 100, 2), ("usage", "rejected", "row count 49 != 50", 49, 0))]
    ledger += [{"kind": "unrecognised", "delivery_date": DAY, "file": f, "status": "unrecognised", "reason": f"no file kind is named {f!r}",
                "rows_received": 0, "rows_quarantined": 0} for f in ("notes.txt", "billing_copy.csv.gz")]
    _write(paths, "ops.ingest_ledger", ledger, "delivery_date")
    # written in two commits: the date's rows are in two files
    _write(paths, "gold.customer_tags", [{"customer_id": f"c{i}", "snapshot_date": d} for d in (BEFORE, DAY) for i in range(3)], "snapshot_date")
    _write(paths, "gold.customer_tags", [{"customer_id": "c9", "snapshot_date": DAY}], "snapshot_date")
    _write(paths, "gold.tag_catalogue", [{"tag_id": f"t{i}"} for i in range(5)])
    funnel_rows = [{"snapshot_date": DAY, "grain": "customer", "campaign_id": "c1", "channel": None, "step": s, "count": n}
                   for s, n in (("global_holdout", 1), ("holdout", 2), ("contact", 7))]
    funnel_rows.append({"snapshot_date": DAY, "grain": "candidate", "campaign_id": "c1", "channel": "sms", "step": "contact", "count": 7})
    _write(paths, "gold.cpc_funnel", funnel_rows, "snapshot_date")
    outcomes = [{"snapshot_date": d, "delivered": dv, "failed": False, "converted": cv}
                for d, dv, cv in ((BEFORE - dt.timedelta(days=2), None, False),  # no answer: null or false
                                  (BEFORE - dt.timedelta(days=1), None, True),   # converted, delivery unknown
                                  (BEFORE, True, False), (DAY, True, True))]     # the run date's own: not yet
    _write(paths, "gold.campaign_outcomes", outcomes, "snapshot_date")
    figures = dict.fromkeys(summary.EVAL_FIGURES, 0) | {"treated": 10, "lift": 0.01, "lift_low": -0.02, "lift_high": 0.04}
    _write(paths, "gold.campaign_eval", [{"eval_date": DAY, "level": lv, **figures} for lv in ("all", "campaign")], "eval_date")
    return paths


def test_rows_of_a_date_exact_from_the_files_and_a_table_without_a_date_whole(lake):
    assert arrow_lake.rows(lake, "gold.customer_tags", DAY) == 4
    assert arrow_lake.rows(lake, "gold.customer_tags", BEFORE) == 3
    assert arrow_lake.rows(lake, "gold.customer_tags") == 7
    assert arrow_lake.rows(lake, "gold.tag_catalogue", DAY) == 5, "an undated table counts whole"
    assert not arrow_lake.exists(lake, "gold.propensity")
    assert arrow_lake.rows(lake, "gold.propensity", DAY) is None
    with pytest.raises(FileNotFoundError, match="gold.propensity does not exist yet"):
        arrow_lake.read(lake, "gold.propensity", ["customer_id"])
    with pytest.raises(KeyError, match="schemas.TABLES"):
        arrow_lake.exists(lake, "gold.nope")


def test_distinct_dates_of_the_rows_that_match(lake):
    answered = ds.field("delivered") | ds.field("converted")
    got = arrow_lake.distinct(lake, "gold.campaign_outcomes", "snapshot_date", answered)
    assert got == [BEFORE - dt.timedelta(days=1), BEFORE, DAY], "null | false is no answer, null | true is one"
    pruned = arrow_lake.distinct(lake, "gold.campaign_outcomes", "snapshot_date", answered,
                                 [("snapshot_date", ">", BEFORE.isoformat())])
    assert pruned == [DAY], "the partitions a pruning filter leaves out are not read"


def test_the_summary_without_spark(lake, capsys):
    cfg = dataclasses.replace(settings("test"), paths=lake)
    out = summary.summary(DAY, cfg)
    assert {n: t["rows"] for n, t in out["tables"].items()} == {
        "ops.ingest_ledger": 4, "gold.customer_tags": 4, "gold.tag_catalogue": 5, "gold.cpc_funnel": 4,
        "gold.campaign_outcomes": 1, "gold.campaign_eval": 2}
    assert not out["tables"]["gold.tag_catalogue"]["of_date"] and out["tables"]["gold.campaign_eval"]["of_date"]
    assert out["ingest"] == {"billing": {"status": "accepted", "received": 100, "quarantined": 2, "reason": None},
                             "usage": {"status": "rejected", "received": 49, "quarantined": 0, "reason": "row count 49 != 50"}}
    assert [f["file"] for f in out["not_ingested"]] == ["billing_copy.csv.gz", "notes.txt"], "each file of no known kind"
    assert out["not_ingested"][1]["kept"] == str(lake.archive_day(DAY) / "unrecognised" / "notes.txt")
    assert len(out["campaigns"]) == 1 and "global holdout      1" in out["campaigns"][0] and "contacted      7" in out["campaigns"][0]
    e = out["evaluation"]
    assert (e["decision_days"], e["first"], e["last"]) == (2, (BEFORE - dt.timedelta(days=1)).isoformat(), BEFORE.isoformat())
    assert (e["treated"], e["lift"]) == (10, 0.01)
    assert (lake.reports / f"run_{DAY.isoformat()}.json").exists()
    summary.print_summary(out)
    printed = capsys.readouterr().out
    assert "usage        rejected        49 rows received, 0 quarantined (row count 49 != 50)" in printed
    assert "billing      accepted       100 rows received, 2 quarantined\n" in printed
    assert f"NOT INGESTED notes.txt: no file kind is named 'notes.txt' (kept as {lake.archive_day(DAY)}/unrecognised/notes.txt)" in printed


def test_a_process_that_read_rows_exits_cleanly(tmp_path):
    """With deltalake's default file system the process often aborted at exit after reading rows of a table of many
    files (exit code 134, "terminate called without an active exception": ``cpc funnel`` in 7 of 10 runs on
    ``make run``'s lake; delta-io/delta-rs#2184); arrow_lake reads through pyarrow's own local file system. A table of
    60 files, read in several fresh processes: with the default, most of them aborted."""
    import subprocess
    import sys

    paths = Paths(tmp_path / "root")
    for i in range(60):
        _write(paths, "gold.cpc_funnel", [{"snapshot_date": DAY - dt.timedelta(days=i % 20), "step": "contact", "count": i}],
               "snapshot_date")
    code = ("import sys; from pathlib import Path; from jobs.platform import arrow_lake; from jobs.platform.config import Paths; "
            "print(len(arrow_lake.read(Paths(Path(sys.argv[1])), 'gold.cpc_funnel', ['step', 'count'])))")
    runs = [subprocess.run([sys.executable, "-c", code, str(paths.root)], capture_output=True, text=True) for _ in range(6)]
    assert [(r.returncode, r.stdout.strip()) for r in runs] == [(0, "60")] * 6, [r.stderr[-300:] for r in runs]
