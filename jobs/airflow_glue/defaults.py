"""Defaults every DAG of the project shares. Light on purpose: DAG files import it at parse time, so it
imports nothing heavy (the failure callback imports the job code only when a task has failed)."""

from __future__ import annotations

import datetime as dt


def on_failure(context) -> None:
    from jobs.airflow_glue.tasks import notify_failure

    notify_failure(context)


def stage_task(stage: str):
    """An Airflow task that runs one registered stage for the run's logical date (``jobs.airflow_glue.tasks``)."""
    from airflow.sdk import task

    @task(task_id=stage)
    def run(ds: str | None = None):
        from jobs.airflow_glue.tasks import run_stage

        return run_stage(stage, ds)

    return run()


NIGHTLY_TASK = "nightly"  # the one task of ``airflow.nightly_tasks: one``


def nightly_task(execution_timeout: dt.timedelta):
    """One Airflow task, ``nightly``, that runs every nightly stage of the registry in order for the run's logical
    date in its one process (``jobs.airflow_glue.tasks.run_nightly``): one Spark session, one JVM warm-up a night.
    Its deadline is the whole night's (``execution_timeout``), not one stage's."""
    from airflow.sdk import task

    @task(task_id=NIGHTLY_TASK, execution_timeout=execution_timeout)
    def run(ds: str | None = None):
        from jobs.airflow_glue.tasks import run_nightly

        return run_nightly(ds)

    return run()


def wire_nightly(night_timeout: dt.timedelta) -> None:
    """Inside a DAG definition, as ``airflow.nightly_tasks`` of the environment (or ``CPC_NIGHTLY_TASKS``) says:
    ``per_stage`` (the default), one task per nightly stage of the registry, each after the stages it reads;
    ``one``, the one task ``nightly`` (:func:`nightly_task`, its deadline ``night_timeout``). Runs at parse time:
    ``settings()`` reads one YAML file with yaml and pydantic, which Airflow has already imported."""
    from jobs.platform.config import settings

    if settings().nightly_tasks == "one":
        nightly_task(night_timeout)
        return
    from jobs.orchestration.registry import NIGHTLY

    tasks = {s.name: stage_task(s.name) for s in NIGHTLY}
    for s in NIGHTLY:
        for upstream in s.after:
            tasks[upstream] >> tasks[s.name]


def default_args(retry_delay: dt.timedelta, execution_timeout: dt.timedelta, retries: int = 2) -> dict:
    """Owner, retries with exponential backoff for transient failures, a task deadline, the failure callback.
    (Data errors are not retried: see jobs.airflow_glue.tasks.run_stage.)"""
    return {
        "owner": "data-factory",
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=30),
        "execution_timeout": execution_timeout,
        "on_failure_callback": on_failure,
    }


def weekly_stage_dag(dag_id: str, stage: str, schedule: str, doc_md: str, tags: list[str]):
    """A weekly DAG of one task that runs one stage for its logical date (training, maintenance)."""
    from airflow.sdk import dag

    @dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=dt.datetime(2026, 10, 1),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=dt.timedelta(hours=6),
        tags=tags,
        default_args=default_args(retry_delay=dt.timedelta(minutes=10), execution_timeout=dt.timedelta(hours=5)),
        doc_md=doc_md,
    )
    def weekly():
        stage_task(stage)

    return weekly()
