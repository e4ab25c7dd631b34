"""
### CPC table maintenance (weekly)

Deletes tag snapshots older than `tag_history_days`, compacts the large tables and vacuums every table with
`vacuum_retention_hours` (`conf/maintenance.yaml`). Keyed by the logical date like every task. The DAG only
wires; the work is in `jobs/maintenance.py`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from jobs import dag_defaults  # light: no Spark, no job code at parse time


@dag(
    dag_id="cpc_maintenance",
    schedule="0 5 * * 0",
    start_date=dt.datetime(2026, 10, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=6),
    tags=["cpc", "maintenance"],
    default_args=dag_defaults.default_args(retry_delay=dt.timedelta(minutes=10), execution_timeout=dt.timedelta(hours=5)),
    doc_md=__doc__,
)
def cpc_maintenance():
    @task
    def maintain(ds: str | None = None) -> dict:
        from jobs.airflow_support import run_stage

        return run_stage("maintain", ds)

    maintain()


cpc_maintenance()
