"""One way to get a Delta-enabled SparkSession; the master and settings come from configuration."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from jobs.platform import jvm
from jobs.platform.config import Settings, settings
from jobs.platform.jars import local_jars

SUBMIT = "submit"  # the master named by spark-submit (YARN, Kubernetes; docs/cluster.md)

# With the UI off the driver still keeps its status store (jobs, stages, SQL executions with their plan text) up to
# 1,000 of each by default, for as long as the process lives (a backfill over months, the test suite's one session).
# It was one of three holders of the test session's heap when CI at c0d0857 ran out of its 2 GB (the others: frames
# left cached, broadcast pages; CHANGELOG). The nightly reads none of it back; the environment's ``conf`` can raise these.
STATUS_RETENTION = {
    "spark.sql.ui.retainedExecutions": "50",
    "spark.ui.retainedJobs": "200",
    "spark.ui.retainedStages": "200",
    "spark.ui.dagGraph.retainedRootRDDs": "200",
}


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
    for key, value in STATUS_RETENTION.items():
        builder = builder.config(key, value)
    for key, value in cfg.spark_conf.items():
        builder = builder.config(key, value)
    archive = jvm.driver_options(cfg.spark_master, cfg.class_archive)
    if archive:
        builder = with_driver_options(builder, cfg, archive)
    return builder


def with_driver_options(builder, cfg: Settings, options: list[str]):
    """``options`` appended to the environment's own driver JVM options (read once, when the JVM starts)."""
    own = cfg.spark_conf.get("spark.driver.extraJavaOptions", "")
    return builder.config("spark.driver.extraJavaOptions", " ".join([own, *options]).strip())


def _workload(spark, folder: Path) -> None:
    """A small tour of what the stages do, so their classes are loaded (and archived) before the JVM exits."""
    from delta.tables import DeltaTable
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = spark.range(200).selectExpr("id", "CAST(id % 7 AS STRING) AS k", "CAST(id AS DOUBLE) / 3 AS x",
                                     "DATE'2026-11-20' - CAST(id % 30 AS INT) AS d")
    path = str(folder / "t")
    df.write.format("delta").partitionBy("d").save(path)
    DeltaTable.forPath(spark, path).alias("t").merge(df.alias("s"), "t.id = s.id").whenMatchedUpdateAll().execute()
    table = spark.read.format("delta").load(path)
    w = Window.partitionBy("k").orderBy("d")
    table.withColumn("r", F.row_number().over(w)).groupBy("k").agg(F.sum("x"), F.max("r")).join(
        table.select("k").distinct(), "k").localCheckpoint().count()
    table.write.mode("overwrite").parquet(str(folder / "p"))


def write_class_archive(target: str) -> None:
    """A session that writes the class-data archive when its JVM exits (run by ``jvm.build`` in a child process)."""
    cfg = settings()
    builder = with_driver_options(session_builder(cfg, "cpc-class-archive"), cfg, [f"-XX:ArchiveClassesAtExit={target}", jvm.QUIET])
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory(prefix="cpc-cds-") as folder:
        _workload(spark, Path(folder))
    proc = spark.sparkContext._gateway.proc  # the JVM: exit it and wait, so the archive is whole when we return
    spark.stop()
    proc.stdin.close()  # the gateway exits on end of input (System.exit): the archive is written on the way out
    proc.wait(timeout=300)


if __name__ == "__main__":
    if sys.argv[1:2] != ["write-class-archive"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m jobs.platform.spark write-class-archive FILE (make setup runs it: python -m jobs.platform.jvm archive)")
    write_class_archive(sys.argv[2])
