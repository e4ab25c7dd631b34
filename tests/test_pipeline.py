"""The nightly run over the tiny sample: real Delta tables, no opted-out customer in any list, reruns stable."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.orchestration import pipeline
from jobs.platform import lake
from schemas import FILES

pytestmark = pytest.mark.e2e


def test_tables_are_real_delta_tables_other_readers_open(sample):
    from deltalake import DeltaTable

    paths = sample["paths"]
    for name in ("bronze.usage", "silver.customer_day", "gold.customer_tags", "gold.cpc_offers", "ops.ingest_ledger"):
        dt = DeltaTable(paths.table(name))
        assert dt.version() >= 0
        assert dt.to_pyarrow_table().num_rows > 0, name


def test_every_list_has_manifest_matching_its_file(sample):
    import gzip
    import hashlib

    folder = sample["paths"].export_day(sample["spec"].end_date)
    for link in (p for p in folder.iterdir() if p.is_symlink()):
        manifest = json.loads((link / "manifest.json").read_text())
        data = link / manifest["files"][0]["name"]
        assert hashlib.sha256(data.read_bytes()).hexdigest() == manifest["files"][0]["sha256"]
        lines = gzip.decompress(data.read_bytes()).decode().splitlines()
        assert len(lines) - 1 == manifest["rows"]
        assert lines[0].split(",") == manifest["columns"]


def test_no_opted_out_customer_in_any_list(spark, sample):
    """Opt-outs recomputed here from bronze, independently of the tag engine."""
    paths, day = sample["paths"], sample["spec"].end_date
    w = Window.partitionBy("customer_id", "channel").orderBy(F.col("event_ts").desc())
    optouts = (
        lake.read(spark, paths, "bronze.optouts").where(F.col("delivery_date") <= F.lit(day))
        .withColumn("rn", F.row_number().over(w)).where("rn = 1 and action = 'opt_out'")
        .select("customer_id", "channel")
    )
    opted_all = optouts.where("channel = 'all'").select("customer_id")
    assert opted_all.count() > 0, "the sample must contain opted-out customers for this test to mean anything"
    profile = lake.read(spark, paths, "bronze.crm_profile").select("customer_id", "msisdn", "email").distinct()
    folder = paths.export_day(day)
    total = 0
    for link in (p for p in folder.iterdir() if p.is_symlink()):
        listed = spark.read.option("header", True).csv(str(link / f"{link.name}_{day:%Y%m%d}.csv.gz"))
        key = "customer_id" if "customer_id" in listed.columns else ("msisdn" if "msisdn" in listed.columns else "email")
        ids = listed.join(profile, on=key, how="inner").select("customer_id") if key != "customer_id" else listed.select("customer_id")
        total += ids.count()
        assert ids.join(opted_all, on="customer_id", how="inner").count() == 0, link.name
        per_channel = optouts.where(F.col("channel") == link.name).select("customer_id")
        assert ids.join(per_channel, on="customer_id", how="inner").count() == 0, link.name
    assert total > 0


def _list_bytes(folder) -> dict[str, bytes]:
    """Each published list's data file, as a downstream system would download it."""
    out = {}
    for link in (p for p in folder.iterdir() if p.is_symlink()):
        manifest = json.loads((link / "manifest.json").read_text())
        out[link.name] = (link / manifest["files"][0]["name"]).read_bytes()
    return out


def test_rerunning_the_day_gives_the_same_tables_lists_and_decision_run(spark, sample):
    paths, day = sample["paths"], sample["spec"].end_date
    cond = f"snapshot_date = '{day}'"
    tables = ("gold.customer_tags", "gold.customer_segment", "gold.cpc_offers", "gold.cpc_decisions")
    before = {t: lake.read(spark, paths, t).where(cond).localCheckpoint() for t in tables}
    lists_before = _list_bytes(paths.export_day(day))
    pipeline.nightly(day)
    for table, df in before.items():
        assertDataFrameEqual(lake.read(spark, paths, table).where(cond), df)
    assert _list_bytes(paths.export_day(day)) == lists_before, "every list byte for byte as before"
    day_manifest = json.loads((paths.export_day(day) / "manifest.json").read_text())
    run_ids = {lake.read(spark, paths, "gold.cpc_decisions").where(cond).select("run_id").distinct().first()[0]}
    for link in (p for p in paths.export_day(day).iterdir() if p.is_symlink()):
        run_ids.add(json.loads((link / "manifest.json").read_text())["source"]["decision_run"]["run_id"])
    assert run_ids == {day_manifest["decision_run"]}, "the decisions, each list and the day name one decision run"
    ledger = lake.read(spark, paths, "ops.ingest_ledger").where(F.col("delivery_date") == F.lit(day))
    assert ledger.count() == len(FILES), "one ledger row per file, however often the day runs"
