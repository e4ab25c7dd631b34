"""One way to get a Delta-enabled SparkSession; the master and settings come from configuration."""

from __future__ import annotations

import os
import sys

from jobs.platform.config import Settings, settings
from jobs.platform.jars import local_jars

SUBMIT = "submit"  # the master named by spark-submit (YARN, Kubernetes; docs/cluster.md)


def get_spark(cfg: Settings | None = None, app_name: str = "cpc-factory"):
    """The active session, or a new one built from ``conf/env/<CPC_ENV>.yaml``.

    Airflow's ``dags test`` runs every task in one process, so the nightly run starts Spark once.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = session_builder(cfg or settings(), app_name).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def session_builder(cfg: Settings, app_name: str = "cpc-factory"):
    """The session's settings from configuration (nothing starts until ``getOrCreate``)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if cfg.spark_master != SUBMIT:  # `master: submit`: spark-submit's --master applies (a master set here would win)
        builder = builder.master(cfg.spark_master)
    builder = (
        builder
        .config("spark.jars", ",".join(local_jars()))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        # Delta rebuilds a table's state with this many tasks; the default 50 is tuned for clusters.
        .config("spark.databricks.delta.snapshotPartitions", str(max(2, cfg.shuffle_partitions)))
        # File listings (Delta VACUUM among them) default to 10,000 tasks: sized for clusters, slow locally.
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", str(max(2, cfg.shuffle_partitions)))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.adaptive.enabled", "true")
    )
    for key, value in cfg.spark_conf.items():
        builder = builder.config(key, value)
    return builder
