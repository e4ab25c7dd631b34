"""What the DAGs need from Airflow, kept out of the DAG files: stage calls that do not retry data errors (one
stage a task, or the whole night in one task), and the failure callback.

A broken file, a bad catalogue or a policy violation will fail the same way on every retry, so those raise
``AirflowFailException`` (no retries); anything else (a lost executor, a full disk, a network blip) is left to
the task's retries with exponential backoff.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

from jobs.platform.config import settings
from jobs.platform.errors import NOT_RETRIED

log = logging.getLogger(__name__)


def run_stage(stage: str, ds: str | None):
    """Run one nightly stage for the run's logical date; data errors fail at once, without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.orchestration import pipeline
    from jobs.orchestration.registry import STAGES

    if not ds:
        raise ValueError(f"{stage}: no logical date (ds) given")
    try:
        result = STAGES[stage](ds)
    except NOT_RETRIED as exc:
        raise AirflowFailException(f"{stage} {ds}: data error, not retried: {exc}") from exc
    pipeline.record(ds, stage)
    return result


def run_nightly(ds: str | None) -> dict:
    """Every nightly stage of the registry, in order, for the run's logical date, in this one process: the one task
    of ``airflow.nightly_tasks: one``. Each goes through :func:`run_stage` (a data error fails at once, without
    retries; each finished stage is recorded in ``ops.run_log``); the first that fails stops the night. A retry of
    the task reruns every stage (each replaces its own partitions). Logs each stage's start and seconds."""
    from jobs.orchestration.registry import NIGHTLY_NAMES

    if not ds:
        raise ValueError("nightly: no logical date (ds) given")
    out, n, t_night = {}, len(NIGHTLY_NAMES), time.monotonic()
    for i, stage in enumerate(NIGHTLY_NAMES, 1):
        log.info("nightly %s: [%d/%d] %s started", ds, i, n, stage)
        t0 = time.monotonic()
        try:
            out[stage] = run_stage(stage, ds)
        except BaseException:
            log.error("nightly %s: [%d/%d] %s failed after %.1f s; not run: %s", ds, i, n, stage, time.monotonic() - t0,
                      ", ".join(NIGHTLY_NAMES[i:]) or "nothing")
            raise
        log.info("nightly %s: [%d/%d] %s done in %.1f s", ds, i, n, stage, time.monotonic() - t0)
    log.info("nightly %s: %d stages done in %.1f s", ds, n, time.monotonic() - t_night)
    return out


def notify_failure(context) -> None:
    """Failure callback: says why, in the task log and in ``reports/failures.jsonl`` for whoever watches."""
    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    record = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": context.get("run_id") or getattr(ti, "run_id", None),
        "logical_date": str(context.get("ds") or context.get("logical_date")),
        "try_number": getattr(ti, "try_number", None),
        "reason": f"{type(exc).__name__}: {exc}" if exc else "unknown",
    }
    log.error("cpc task failed: %s", json.dumps(record))
    reports = settings().paths.reports
    reports.mkdir(parents=True, exist_ok=True)
    with (reports / "failures.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
