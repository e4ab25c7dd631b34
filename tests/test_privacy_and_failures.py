"""Personal data stays where it belongs, and Airflow fails data errors at once but retries the rest."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import pytest
from pyspark.sql import functions as F

from jobs.platform import lake
from jobs.platform.privacy import hash_key, hmac_sha256


def test_keyed_hash_is_hmac_sha256(spark):
    key = b"a-test-key-that-is-not-a-secret"
    df = spark.createDataFrame([("13800000001",), ("13912345678",), (None,)], "msisdn string")
    got = [r[0] for r in df.select(hmac_sha256(F.col("msisdn"), key)).collect()]
    want = [hmac.new(key, m.encode(), hashlib.sha256).hexdigest() for m in ("13800000001", "13912345678")] + [None]
    assert got == want


def test_hash_key_comes_from_the_environment_outside_local(tmp_path, monkeypatch):
    from jobs.platform.errors import ConfigError

    monkeypatch.delenv("CPC_HASH_KEY", raising=False)
    with pytest.raises(ConfigError, match="CPC_HASH_KEY"):
        hash_key("cluster", tmp_path)
    monkeypatch.setenv("CPC_HASH_KEY", "from-env")
    assert hash_key("cluster", tmp_path) == b"from-env"
    monkeypatch.delenv("CPC_HASH_KEY")
    local = hash_key("local", tmp_path)
    assert local == hash_key("local", tmp_path) and (tmp_path / "secrets" / "hash.key").stat().st_mode & 0o077 == 0


@pytest.mark.e2e
def test_tag_table_has_the_hash_not_the_number(spark, sample, cfg):
    paths = sample["paths"]
    tags = lake.read(spark, paths, "gold.customer_tags")
    assert "msisdn" not in tags.columns and "msisdn_hash" in tags.columns
    key = hash_key(cfg.env, paths.root)
    crm = lake.read(spark, paths, "bronze.crm_profile").select("customer_id", "msisdn").dropDuplicates(["customer_id"])
    row = tags.join(crm, on="customer_id", how="inner").select("msisdn", "msisdn_hash").first()
    assert row["msisdn_hash"] == hmac.new(key, row["msisdn"].encode(), hashlib.sha256).hexdigest()


@pytest.mark.e2e
def test_each_export_carries_only_its_channels_fields_and_is_audited(spark, sample):
    from jobs.platform.config import business
    from jobs.stages.export import PLACEMENT_COLUMNS

    paths, day = sample["paths"], sample["spec"].end_date
    wanted = {c["id"]: list(c["export"]) for c in business("channels")["channels"] if c["kind"] == "active"}
    wanted["placements"] = list(PLACEMENT_COLUMNS)
    for channel, columns in wanted.items():
        manifest = json.loads((paths.export_day(day) / channel / "manifest.json").read_text())
        assert manifest["columns"] == columns
    audit = lake.read(spark, paths, "ops.export_audit").where(F.col("run_date") == F.lit(day))
    assert {r["channel"] for r in audit.select("channel").distinct().collect()} == set(wanted)
    assert audit.where(F.col("published_by").isNull() | F.col("sha256").isNull() | F.col("published_at").isNull()).count() == 0


def test_data_errors_are_not_retried(spark, tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.airflow_glue.tasks import run_stage

    monkeypatch.setenv("CPC_ROOT", str(tmp_path))  # nothing delivered there
    with pytest.raises(AirflowFailException, match=r"(?s)data error, not retried.*file not delivered"):
        run_stage("ingest", "2026-11-20")


def test_failure_callback_reports_the_reason(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from jobs.airflow_glue.tasks import notify_failure

    monkeypatch.setenv("CPC_ROOT", str(tmp_path))
    ti = SimpleNamespace(dag_id="cpc_nightly", task_id="ingest", run_id="r1", try_number=1)
    notify_failure({"task_instance": ti, "exception": ValueError("boom"), "ds": "2026-11-20"})
    record = json.loads((tmp_path / "reports" / "failures.jsonl").read_text().splitlines()[-1])
    assert record["task_id"] == "ingest" and record["reason"] == "ValueError: boom" and record["logical_date"] == "2026-11-20"


def test_dag_retries_with_backoff_and_has_a_deadline(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).get_dag("cpc_nightly")
    assert dag.dagrun_timeout is not None
    for t in dag.tasks:
        assert t.retries >= 1 and t.retry_exponential_backoff and t.execution_timeout is not None
        assert t.on_failure_callback
