"""``make run``'s Spark work in one process (``python -m simulator sample-run``): steps 2 to 5 of ``make run``.

After ``python -m simulator simulate`` (step 1), one process:

2. loads the history before the first nightly day (``cpc history --before``'s function): the run date R minus the
   warm-up days (``sample.warmup_days``, conf/env/local.yaml: 2);
3. trains the models as of the day before, with Airflow: the ``cpc_training`` DAG run in this process by Airflow's
   ``dag.test()``, what `airflow dags test cpc_training <date>` does (:mod:`jobs.airflow_glue.in_process`);
4. warms up (:mod:`simulator.warmup`): the nightly runs of the warm-up days, each after the simulated campaign
   platform's responses, then R's responses;
5. runs R's nightly with Airflow: the ``cpc_nightly`` DAG, by ``dag.test()`` in this process.

``make run`` then prints the summary (step 6, ``cpc summary``, without Spark). The steps ran as four processes
before (``cpc history``, `airflow dags test` twice, ``simulator warmup``); each started its own Spark and paid
the JVM's warm-up again (the same nightly costs 1.5-1.6x in a fresh process: docs/benchmarks.md). One process
pays it once. Each step can still be run alone, as before: those four commands, in that order.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from jobs.platform.config import Settings, settings
from simulator import warmup as warm

log = logging.getLogger(__name__)

__all__ = ["plan", "run"]


def plan(cfg: Settings, days: int) -> tuple[dt.date, dt.date, dt.date]:
    """``(first nightly day, training date, run date)`` for ``days`` warm-up days: the first nightly day is the
    first warm-up day (R without a warm-up); the models are trained as of the day before it, so that every 30-day
    label window ends in the history."""
    run_date = cfg.sample_end_date
    warm_days = warm.warmup_days(run_date, days)
    first = warm_days[0] if warm_days else run_date
    return first, first - dt.timedelta(days=1), run_date


def run(days: int | None = None, cfg: Settings | None = None) -> None:
    """Steps 2 to 5 of ``make run`` (the module's docstring) for ``days`` warm-up days (default: the sample's
    ``warmup_days``, else 0), in the environment's storage root, on the files ``simulate`` wrote there."""
    from jobs.airflow_glue.in_process import dag_test
    from jobs.orchestration import pipeline

    cfg = cfg or settings()
    days = int(cfg.sample.get("warmup_days", 0)) if days is None else days
    first, train_date, run_date = plan(cfg, days)
    warm.check(warm.spec_of(cfg.paths), run_date, days, cfg.paths)  # before any Spark work
    t0 = time.time()
    steps = [
        (f"loading the history before {first} (ingest + conform of earlier deliveries)",
         lambda: pipeline.history(first, cfg)),
        (f"training the propensity models as of {train_date} with Airflow (the cpc_training DAG, in this process)",
         lambda: dag_test("cpc_training", train_date)),
        (f"warm-up: {days} nightly runs before {run_date}, each after the simulated responses to the lists before it "
         f"(WARMUP_DAYS=0 skips)", lambda: warm.run(days, cfg)),
        (f"nightly DAG for {run_date} with Airflow (the cpc_nightly DAG, in this process)",
         lambda: dag_test("cpc_nightly", run_date)),
    ]
    for k, (what, step) in enumerate(steps, 2):
        t1 = time.time()
        log.info(f"run: {k}/6 {what}")
        step()
        log.info(f"run: {k}/6 done in {time.time() - t1:.0f} s")
    log.info(f"run: steps 2-5 done in {time.time() - t0:.0f} s, in one process")
