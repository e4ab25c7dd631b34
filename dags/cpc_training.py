"""
### CPC propensity model training (weekly)

Trains every model of `conf/models.yaml` (churn, handset purchase, product take-up) as of the logical date:
features from tag snapshots at dates T, labels from the operator's files in (T, T + horizon], a time-based
validation split, and registers each model with its metadata and quality report under `<root>/models`.
The nightly DAG's `propensity` task scores with the newest model trained as of its own date. The DAG only
wires; the work is in `jobs/propensity.py`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from jobs import dag_defaults  # light: no Spark, no job code at parse time


@dag(
    dag_id="cpc_training",
    schedule="0 4 * * 6",
    start_date=dt.datetime(2026, 10, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=6),
    tags=["cpc", "models"],
    default_args=dag_defaults.default_args(retry_delay=dt.timedelta(minutes=10), execution_timeout=dt.timedelta(hours=5)),
    doc_md=__doc__,
)
def cpc_training():
    @task
    def train(ds: str | None = None) -> dict:
        from jobs.airflow_support import run_stage

        return run_stage("train", ds)

    train()


cpc_training()
