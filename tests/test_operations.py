"""Operations over copies of the tiny sample: backfills equal day-by-day runs and resume, the list as sent
is rebuilt exactly after a later rerun changed it, closed days refuse changed deliveries until reopened,
maintenance keeps what it must, and analysts reach the tables with Spark SQL and without Spark."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import logging

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.orchestration import pipeline
from jobs.orchestration.registry import STAGES
from jobs.platform import lake
from jobs.serving import analyst
from jobs.stages import export, ingest, maintenance
from jobs.stages.tags import incremental

pytestmark = pytest.mark.e2e
GOLD = ("gold.customer_tags", "gold.customer_segment", "gold.cpc_offers")


def test_backfill_equals_day_by_day_and_resumes(spark, sample, copy_of, caplog):
    end = sample["spec"].end_date
    days = [end - dt.timedelta(days=1), end]
    by_day, backfilled = copy_of("by_day"), copy_of("backfill")
    for day in days:  # one date after the other, as the nightly schedule would (the last one up to score: the
        # tables compared are written by tags, segments and score; the day before runs on, score reads its evaluation)
        pipeline.nightly(day, by_day, from_stage="tags", **({"to_stage": "score"} if day == days[-1] else {}))
    assert pipeline.backfill(days[0], days[1], backfilled, force=True, from_stage="tags") == days
    for run in (by_day, backfilled):  # the tag state is built as the dates go: bootstrapped, then stepped
        built = {r["state_date"]: r["method"] for r in lake.read(spark, run.paths, incremental.STATE_LOG).collect()}
        assert built == {days[0]: "bootstrap", days[1]: "step"}, built
    for table in GOLD:
        cond = lake.in_dates("snapshot_date", days)
        assertDataFrameEqual(lake.read(spark, backfilled.paths, table).where(cond), lake.read(spark, by_day.paths, table).where(cond))
    caplog.clear()
    caplog.set_level(logging.INFO, logger="jobs")
    assert pipeline.backfill(days[0], days[1], backfilled) == [], "a finished range has nothing left to do"
    assert "finished before, skipped" in caplog.text


def _lines(path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode().splitlines()


def test_list_as_sent_is_rebuilt_after_a_later_rerun(spark, sample, copy_of, tmp_path):
    cfg = copy_of("rebuild")
    paths, day = cfg.paths, sample["spec"].end_date
    channel = "sms_push"
    manifest = json.loads((paths.export_day(day) / channel / "manifest.json").read_text())
    sent = _lines(paths.export_day(day) / channel / manifest["files"][0]["name"])
    assert len(sent) > 1, "the sample's SMS list must not be empty"
    # A listed customer opts out in a late correction of the day's opt-out file: the day is closed, so the
    # changed delivery is refused until the day is reopened; the rerun then sends a different list.
    col = sent[0].split(",").index("msisdn")
    msisdn = sent[1].split(",")[col]
    crm = lake.read(spark, paths, "bronze.crm_profile").where(F.col("msisdn") == msisdn).first()
    name = f"optouts_{day:%Y%m%d}"
    landing = paths.landing_day(day)
    old = _lines(landing / f"{name}.csv.gz")
    new = old + [f"{crm['customer_id']}|{day} 23:00:00|sms_push|opt_out"]
    data = gzip.compress(("\n".join(new) + "\n").encode(), mtime=0)
    (landing / f"{name}.csv.gz").write_bytes(data)
    (landing / f"{name}.ctl").write_text(f"rows={len(new) - 1}\nmd5={hashlib.md5(data).hexdigest()}\n")
    # Only the changed kind is delivered again (the other nine files of the day are unchanged: ingesting them again
    # is a rerun that changes nothing, tests/test_corpus.py); the rerun then goes on from conform and stops after
    # export: what is asserted below is the export folder and the rebuild from the manifest's Delta versions;
    # evaluate runs after export and writes only gold.campaign_outcomes, gold.campaign_eval, gold.trial_funnel,
    # ops.evaluate_log and the HTML report, which none of it reads.
    with pytest.raises(ingest.IngestError, match="is closed"):
        ingest.ingest(spark, paths, [day], ["optouts"])
    ingest.reopen(spark, paths, day)
    ingest.ingest(spark, paths, [day], ["optouts"])
    pipeline.nightly(day, cfg, from_stage="conform", to_stage="export")
    resent = json.loads((paths.export_day(day) / channel / "manifest.json").read_text())
    assert resent["files"][0]["sha256"] != manifest["files"][0]["sha256"], "the rerun sent a different list"
    assert msisdn not in {x.split(",")[col] for x in _lines(paths.export_day(day) / channel / resent["files"][0]["name"])}
    # The first list, rebuilt from the Delta versions its manifest recorded, is exactly what was sent.
    rebuilt = export.rebuild(spark, paths, day, channel, tmp_path / "rebuilt", manifest)
    assert _lines(tmp_path / "rebuilt" / manifest["files"][0]["name"]) == sent
    assert rebuilt["rows"] == manifest["rows"]


def test_maintenance_compacts_vacuums_and_keeps_tag_history(spark, sample, copy_of, monkeypatch):
    cfg = copy_of("maintain")
    day = sample["spec"].end_date
    before = {t: lake.read(spark, cfg.paths, t).count() for t in GOLD}
    conf = {"vacuum_retention_hours": 168, "tag_history_days": 400, "optimize": ["gold.customer_tags", "bronze.usage"]}
    out = maintenance.run(spark, cfg.paths, day, conf)
    assert out["optimized"] == ["gold.customer_tags", "bronze.usage"] and "gold.cpc_offers" in out["vacuumed"]
    assert {t: lake.read(spark, cfg.paths, t).count() for t in GOLD} == before, "nothing inside the retention is lost"
    # Only the second run's tag-history deletion is asserted below. So it skips the tag-state check (a sample of 0:
    # the first run checked the same latest state, and no assertion reads the check) and vacuums gold.customer_tags
    # alone, not every table (a vacuum at 168 h changes no table's rows; the first run's vacuum is the one asserted).
    with monkeypatch.context() as m:
        m.setattr(maintenance, "TABLES", {"gold.customer_tags": maintenance.TABLES["gold.customer_tags"]})
        out = maintenance.run(spark, cfg.paths, day + dt.timedelta(days=1),
                              {**conf, "tag_history_days": 0, "optimize": [], "tag_state_check_per_mille": 0})
    assert out["tag_snapshots_deleted"]["gold.customer_tags"] == 1
    assert lake.read(spark, cfg.paths, "gold.customer_tags").count() == 0
    with pytest.raises(ValueError, match="7-day minimum"):
        maintenance.run(spark, cfg.paths, day, {**conf, "vacuum_retention_hours": 1})


def test_analysts_query_with_spark_sql_and_without_spark(spark, sample):
    paths, day = sample["paths"], sample["spec"].end_date
    cols, rows = analyst.query(spark, paths, f"SELECT lc_stage, count(*) AS n FROM gold.customer_tags WHERE snapshot_date = '{day}' GROUP BY lc_stage ORDER BY lc_stage")
    spark_counts = {r["lc_stage"]: r["n"] for r in rows}
    assert cols == ["lc_stage", "n"] and sum(spark_counts.values()) > 0

    import duckdb
    import polars as pl
    from deltalake import DeltaTable

    con = duckdb.connect()
    con.register("customer_tags", DeltaTable(paths.table("gold.customer_tags")).to_pyarrow_dataset())
    duck = dict(con.execute(f"SELECT lc_stage, count(*) FROM customer_tags WHERE snapshot_date = DATE '{day}' GROUP BY 1").fetchall())
    assert duck == spark_counts
    pol = pl.read_delta(paths.table("gold.customer_tags")).filter(pl.col("snapshot_date") == day).group_by("lc_stage").len()
    assert dict(zip(pol["lc_stage"].to_list(), pol["len"].to_list(), strict=True)) == spark_counts


def test_run_killed_mid_write_leaves_nothing_visible_and_the_rerun_completes(spark, sample, copy_of):
    """A real `cpc tags` process is killed (SIGKILL, no clean-up) while it writes the tag table's files; the
    table shows exactly what it showed before, and a rerun gives the output of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    run = copy_of("crash")
    day = sample["spec"].end_date
    table = "gold.customer_tags"
    uninterrupted = lake.read(spark, run.paths, table).where(F.col("snapshot_date") == F.lit(day)).toPandas()
    version_before = lake.version(spark, run.paths, table)
    folder = Path(run.paths.table(table)) / f"snapshot_date={day}"
    files_before = set(folder.glob("*.parquet"))
    env = {**os.environ, "CPC_ROOT": str(run.paths.root),
           # one row per file: the write of a 300-row snapshot takes seconds, so it can be caught in the middle
           "CPC_SPARK_CONF_JSON": json.dumps({"spark.sql.files.maxRecordsPerFile": "1", "spark.sql.adaptive.enabled": "false"})}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "tags", "--date", day.isoformat()], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, written = time.time() + 300, set()
    try:
        while time.time() < deadline and proc.poll() is None:
            written = set(folder.glob("*.parquet")) - files_before
            if len(written) >= 20:
                os.killpg(proc.pid, signal.SIGKILL)  # the driver, its JVM and the Python workers at once
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(written) >= 20, "the run finished or failed before it could be killed mid-write"
    assert proc.returncode == -signal.SIGKILL
    # The killed write's files are on disk, but no commit names them: readers see the table as before.
    assert lake.version(spark, run.paths, table) == version_before
    seen = lake.read(spark, run.paths, table).where(F.col("snapshot_date") == F.lit(day))
    assertDataFrameEqual(seen, spark.createDataFrame(uninterrupted, schema=seen.schema))
    # The rerun (the same stage, as Airflow's retry would run it) completes with the uninterrupted output.
    STAGES["tags"](day, run)
    rerun = lake.read(spark, run.paths, table).where(F.col("snapshot_date") == F.lit(day))
    assert lake.version(spark, run.paths, table) > version_before
    assertDataFrameEqual(rerun, spark.createDataFrame(uninterrupted, schema=rerun.schema))


def test_a_history_load_in_batches_gives_the_tables_of_one_batch(spark, sample, copy_of, caplog):
    """The sample's history was loaded in one batch (conftest); its last four dates loaded again in batches of two
    dates (``storage.history_batch_mb`` just over two days' landing files): every bronze table and
    silver.customer_day on those dates as before, and the batches said in the log."""
    import dataclasses

    end = sample["spec"].end_date
    days = [end - dt.timedelta(days=n) for n in (4, 3, 2, 1)]
    cfg = copy_of("batched")
    sizes = [sum(f.stat().st_size for f in cfg.paths.landing_day(d).iterdir()) for d in days]
    cfg = dataclasses.replace(cfg, history_batch_mb=(max(sizes[0] + sizes[1], sizes[2] + sizes[3]) + 1) / 2**20)
    assert pipeline.history_batches(cfg.paths, days, cfg.history_batch_mb) == [days[:2], days[2:]]
    caplog.set_level(logging.INFO, logger="jobs")
    assert pipeline.history(end, cfg, start=days[0]) == days
    assert "history: batch 1/2" in caplog.text and "history: batch 2/2" in caplog.text
    for table in [f"bronze.{k}" for k in ingest.FILE_ORDER] + ["silver.customer_day"]:
        cond = lake.in_dates("day" if table.startswith("silver") else "delivery_date", days)
        assertDataFrameEqual(lake.read(spark, cfg.paths, table).where(cond), lake.read(spark, sample["paths"], table).where(cond))
