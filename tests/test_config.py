"""Environments: the master comes from configuration, or from spark-submit when the environment says so."""

from __future__ import annotations

import pytest

from jobs.platform.config import settings
from jobs.platform.errors import ConfigError
from jobs.platform.spark import SUBMIT, session_builder


def test_master_comes_from_the_environment_file(monkeypatch):
    monkeypatch.delenv("CPC_SPARK_MASTER", raising=False)
    assert session_builder(settings("local"))._options["spark.master"] == "local[2]"
    assert session_builder(settings("cluster"))._options["spark.master"] == "spark://127.0.0.1:7077"
    monkeypatch.setenv("CPC_SPARK_MASTER", "local[1]")
    assert session_builder(settings("local"))._options["spark.master"] == "local[1]"


def test_submit_leaves_the_master_to_spark_submit(monkeypatch):
    monkeypatch.delenv("CPC_SPARK_MASTER", raising=False)
    cfg = settings("submit")
    assert cfg.spark_master == SUBMIT
    options = session_builder(cfg)._options
    assert "spark.master" not in options  # a master set in code would win over spark-submit --master
    assert options["spark.sql.shuffle.partitions"] == "400"
    assert "io.delta.sql.DeltaSparkSessionExtension" in options["spark.sql.extensions"]


def test_unknown_environment_names_the_known_ones():
    with pytest.raises(ConfigError, match="known environments: cluster, local, submit, test"):
        settings("prod")
