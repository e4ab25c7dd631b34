"""One run of a DAG in this process, as `airflow dags test DAG_ID DATE` runs it: Airflow's own ``dag.test()``.

`airflow dags test` parses the DAG, then calls ``dag.test(logical_date=...)``, which records the run in the
metadata database and runs every task in the calling process, in order. Called from a process that has already
run Spark work (``make run``'s one process: the history, then the training DAG, the warm-up, the nightly DAG),
the tasks find that process's Spark session and its warm JVM instead of starting a new one (a fresh process
costs the nightly about 100 s more at 20,000 customers: docs/benchmarks.md). The DAG files and the tasks are
the same as under a scheduler; only the process is shared.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shlex
import signal
import time
from typing import TYPE_CHECKING

from jobs.platform.errors import ConfigError, CpcError

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

log = logging.getLogger(__name__)

KEPT_SIGNALS = (signal.SIGTERM, signal.SIGALRM, signal.SIGINT)


def dag_test(dag_id: str, day: dt.date) -> DagRun:
    """Run ``dag_id`` for the logical date ``day`` (midnight UTC) in this process, as `airflow dags test` does;
    returns the DAG run. Raises :class:`ConfigError` if the DAG does not parse, :class:`CpcError` if the run does
    not succeed (the failed task's error is in the log above it)."""
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag

    folder = conf.get("core", "dags_folder")
    with _process_state_kept():  # the DAG file's import sets a SIGALRM handler for its timeout, and leaves it
        bag = DagBag(dag_folder=folder)
    dag = bag.get_dag(dag_id)
    if dag is None:
        errors = "; ".join(f"{f}: {e.strip().splitlines()[-1]}" for f, e in bag.import_errors.items())
        raise ConfigError(f"no DAG {dag_id!r} in {folder}" + (f" (import errors: {errors})" if errors else ""))
    t0 = time.monotonic()
    log.info(f"{dag_id} {day}: the DAG run in this process (as `airflow dags test {dag_id} {day}`)")
    with _process_state_kept():
        run = dag.test(logical_date=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC))
    state = getattr(run, "state", None)
    if state != "success":  # DagRunState is a str enum
        home = os.environ.get("AIRFLOW_HOME", "")
        rerun = (f"AIRFLOW_HOME={shlex.quote(home)} " if home else "") + f"airflow dags test {dag_id} {day}"
        raise CpcError(f"{dag_id} {day}: the DAG run ended {state} after {time.monotonic() - t0:.0f} s; the failed "
                       f"task's error is in the log above (rerun it alone: `{rerun}`)")
    log.info(f"{dag_id} {day}: the DAG run succeeded in {time.monotonic() - t0:.0f} s")
    return run


@contextlib.contextmanager
def _process_state_kept():
    """What ``dag.test()`` leaves behind in the calling process, put back afterwards: the task runner exports
    ``AIRFLOW_CTX_*`` (the DAG, task and run ids) into ``os.environ`` and installs its own SIGTERM handler, and
    a task's ``execution_timeout`` and the DAG file's import timeout their own SIGALRM handlers (SIGINT kept too,
    as insurance). Left in place, the next
    DAG's or the warm-up's audit rows would name the previous run's id, and SIGTERM would no longer stop the
    process."""
    env = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CTX_")}
    handlers = {sig: signal.getsignal(sig) for sig in KEPT_SIGNALS}
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("AIRFLOW_CTX_")]:
            if key not in env:
                del os.environ[key]
        os.environ.update(env)
        for sig, handler in handlers.items():
            if handler is not None:  # None: installed outside Python, cannot be put back from here
                signal.signal(sig, handler)
