"""
### CPC nightly run

Turns the day's operator files into customer tags and each channel's target list:

`ingest` (control file, schema, Great Expectations suite; bronze Delta tables, quarantine, ledger)
-> `conform` (silver.customer_day) -> `tags` (gold.customer_tags) -> `segments` (lifecycle stage and
service tier) -> `score` (gold.cpc_offers) -> `export` (one list per outbound channel, published atomically).

Every task is keyed by the run's logical date (`ds`) and replaces exactly its own partitions, so any task of
any date can be cleared and rerun. The DAG only wires; the work is in `jobs/`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

default_args = {
    "owner": "data-factory",
    "retries": 1,
    "retry_delay": dt.timedelta(minutes=5),
}


@dag(
    dag_id="cpc_nightly",
    schedule="0 2 * * *",
    start_date=dt.datetime(2026, 10, 1),
    catchup=False,
    max_active_runs=1,
    tags=["cpc", "nightly"],
    default_args=default_args,
    doc_md=__doc__,
)
def cpc_nightly():
    @task
    def ingest(ds: str | None = None) -> dict:
        from jobs.pipeline import run_ingest

        return run_ingest(ds)

    @task
    def conform(ds: str | None = None) -> int:
        from jobs.pipeline import run_conform

        return run_conform(ds)

    @task
    def tags(ds: str | None = None) -> dict:
        from jobs.pipeline import run_tags

        return run_tags(ds)

    @task
    def segments(ds: str | None = None) -> dict:
        from jobs.pipeline import run_segments

        return run_segments(ds)

    @task
    def score(ds: str | None = None) -> dict:
        from jobs.pipeline import run_score

        return run_score(ds)

    @task
    def export(ds: str | None = None) -> list:
        from jobs.pipeline import run_export

        return run_export(ds)

    ingest() >> conform() >> tags() >> segments() >> score() >> export()


cpc_nightly()
