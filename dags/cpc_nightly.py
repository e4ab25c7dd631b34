"""
### CPC nightly run

Turns the day's operator files into customer tags and each channel's target list:

`ingest` (control file, schema, Great Expectations suite; bronze Delta tables, quarantine, ledger)
-> `conform` (silver.customer_day) -> `tags` (gold.customer_tags, gold.tag_stats) -> `segments` (lifecycle
stage and service tier) and `propensity` (LightGBM scores of the models current on the date, gold.propensity
and the uplift models' gold.uplift; trained weekly by the `cpc_training` DAG) -> `score` (campaigns under the
contact policy, exploration contacts included: gold.cpc_decisions,
gold.cpc_funnel) -> `export` (one list per outbound channel and the placements, published atomically) ->
`evaluate` (responses and orders against the decisions and their holdouts: gold.campaign_outcomes,
gold.campaign_eval, the HTML report reports/campaigns_<date>.html).

Every task is keyed by the run's logical date (`ds`) and replaces exactly its own partitions, so any task of
any date can be cleared and rerun. Transient failures retry with exponential backoff; data errors (a broken
file, a bad tag definition, a contact-policy violation) fail at once. The run must finish within its
`dagrun_timeout`. The DAG only wires: its tasks and their order come from `jobs/orchestration/registry.py`,
the work is in `jobs/stages/`.

`airflow.nightly_tasks` in `conf/env/<CPC_ENV>.yaml` (or `CPC_NIGHTLY_TASKS`, seen by the DAG processor) picks the
wiring: `per_stage` (the default), one task per stage as above, each its own process and Spark JVM under a
scheduler; or `one`, a single task `nightly` running every stage in that order in one process, so the night pays
the JVM's start and JIT warm-up once (at 20,000 customers: eight fresh processes 728 s, the same stages in one warm
session 290 s, in one fresh process under `airflow dags test` 430 s; docs/benchmarks.md). Its log shows each
stage's start and seconds; data errors still fail at once and each finished stage is still recorded in
`ops.run_log`. A retry of `nightly` reruns every stage (each replaces its own partitions, as a rerun of the day
does; export republishes the lists; it costs the whole night again), and its deadline is the run's.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag

from jobs.airflow_glue import defaults as dag_defaults  # light: no Spark, no job code at parse time

default_args = dag_defaults.default_args(retry_delay=dt.timedelta(minutes=2), execution_timeout=dt.timedelta(hours=2))
dagrun_timeout = dt.timedelta(hours=5)


@dag(
    dag_id="cpc_nightly",
    schedule="0 2 * * *",
    start_date=dt.datetime(2026, 10, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dagrun_timeout,
    tags=["cpc", "nightly"],
    default_args=default_args,
    doc_md=__doc__,
)
def cpc_nightly():
    # airflow.nightly_tasks: per_stage (the default): one task per stage of jobs/orchestration/registry.py, each
    # after the stages it reads: ingest >> conform >> tags >> [segments, propensity] >> score >> export >> evaluate;
    # one: the one task `nightly` runs them in that order in one process, with the run's deadline as its own.
    dag_defaults.wire_nightly(night_timeout=dagrun_timeout)


cpc_nightly()
