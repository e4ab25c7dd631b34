"""One run of a DAG in this process, as `airflow dags test DAG_ID DATE` runs it: Airflow's own ``dag.test()``.

`airflow dags test` parses the DAG, then calls ``dag.test(logical_date=...)``, which records the run in the
metadata database and runs every task in the calling process, in order. Called from a process that has already
run Spark work (``make run``'s one process: the history, then the training DAG, the warm-up, the nightly DAG),
the tasks find that process's Spark session and its warm JVM instead of starting a new one (a fresh process
costs the nightly about 100 s more at 20,000 customers: docs/benchmarks.md). The DAG files and the tasks are
the same as under a scheduler; only the process is shared.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from jobs.platform.errors import ConfigError, CpcError

log = logging.getLogger(__name__)


def dag_test(dag_id: str, day: dt.date) -> None:
    """Run ``dag_id`` for the logical date ``day`` (midnight UTC) in this process, as `airflow dags test` does.
    Raises :class:`ConfigError` if the DAG does not parse, :class:`CpcError` if the run does not succeed (the
    failed task's error is in the log above it)."""
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag

    folder = conf.get("core", "dags_folder")
    bag = DagBag(dag_folder=folder)
    dag = bag.get_dag(dag_id)
    if dag is None:
        errors = "; ".join(f"{f}: {e.strip().splitlines()[-1]}" for f, e in bag.import_errors.items())
        raise ConfigError(f"no DAG {dag_id!r} in {folder}" + (f" (import errors: {errors})" if errors else ""))
    t0 = time.monotonic()
    log.info(f"{dag_id} {day}: the DAG run in this process (as `airflow dags test {dag_id} {day}`)")
    run = dag.test(logical_date=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC))
    state = getattr(run, "state", None)
    if state != "success":  # DagRunState is a str enum
        raise CpcError(f"{dag_id} {day}: the DAG run ended {state} after {time.monotonic() - t0:.0f} s; the failed "
                       f"task's error is in the log above (rerun it alone: `airflow dags test {dag_id} {day}`)")
    log.info(f"{dag_id} {day}: the DAG run succeeded in {time.monotonic() - t0:.0f} s")
