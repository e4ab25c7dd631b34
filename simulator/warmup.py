"""``make run``'s warm-up: a few simulated days before the run date, so that the first campaign report has outcomes.

Without it ``make run`` runs one nightly, the run date R's: its decisions are the first, nothing has answered
them, and the campaign report (``reports/campaigns_<R>.html``) shows no lift, no response and no trial funnel.
With ``sample.warmup_days`` = n (conf/env/local.yaml: 2), ``make run`` loads the history before R - n, trains the
models as of R - n - 1, then warms up (:func:`run`; ``make run`` calls it from ``python -m simulator sample-run``,
:mod:`simulator.sample_run`, and ``python -m simulator warmup`` runs it alone):

1. checks, before any Spark work, that the landing files reach R and that the history before R - n is as long as
   the models' training needs (``history_needed``; the sample then has 104 + n + 1 days);
2. for each warm-up day R - n .. R - 1, runs the closed loop's day step (:func:`simulator.loop.day_step`): the
   simulated campaign platform answers the lists published before the day (``simulator/responder.py``), then the
   nightly runs every stage, from ingest to evaluate;
3. writes R's responses to the lists published so far, so that the Airflow nightly of R ingests them and
   evaluates the warm-up days' decisions: lift over the holdouts with its intervals, the response funnel, the
   trial funnel.

``WARMUP_DAYS=0`` (``--days 0``) does nothing: R is then the first decision day, as before. The warm-up runs
the nightly stages in this process (``jobs.orchestration.pipeline.nightly``, as ``cpc nightly`` and the loop
do), not through Airflow; the run date's nightly stays Airflow's. Changing the number of warm-up days on a
storage root that already ran R needs ``make clean`` first: R's delivery changes (its responses), and a closed
day refuses a changed file (``cpc reopen``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from jobs.platform.config import Paths, Settings, settings
from jobs.platform.errors import ConfigError
from simulator.generate import SimSpec
from simulator.loop import day_step, history_needed
from simulator.responder import World, respond

log = logging.getLogger(__name__)

__all__ = ["check", "run", "warmup_days"]


def warmup_days(run_date: dt.date, days: int) -> list[dt.date]:
    """The warm-up days before ``run_date``, oldest first: ``run_date - days`` .. ``run_date - 1``."""
    if days < 0:
        raise ConfigError(f"warm-up: {days} days; give 0 (no warm-up) or more")
    return [run_date - dt.timedelta(days=days - k) for k in range(days)]


def spec_of(paths: Paths) -> SimSpec:
    """The simulated operator in ``paths`` (``truth/simulation.json``), or an error saying how to make one."""
    if not (paths.truth / "simulation.json").exists():
        raise ConfigError(f"warm-up: no simulated operator in {paths.root} (no truth/simulation.json); "
                          f"run `python -m simulator simulate` first (make run does)")
    return SimSpec.of(paths)


def check(spec: SimSpec, run_date: dt.date, days: int, paths: Paths, models: bool = True) -> None:
    """Before any Spark work: the landing files cover every warm-up day and ``run_date``, and the deliveries before
    the first warm-up day are as many as training as of the day before it needs (``models``; without it, at least
    one). Raises a one-line :class:`ConfigError` saying what to do."""
    days_ = warmup_days(run_date, days)
    if not days_:
        return
    first = days_[0]
    missing = [d for d in (*days_, run_date) if not paths.landing_day(d).is_dir()]
    if run_date > spec.end_date or missing:
        raise ConfigError(f"warm-up: the landing files in {paths.landing} end on {spec.end_date} and lack "
                          f"{(missing or [run_date])[0]}; they must reach the run date {run_date}: simulate again with "
                          f"`python -m simulator simulate --clean --end {run_date}` (or set sample.end_date)")
    before = (first - spec.start_date).days  # deliveries before the first warm-up day
    needed = history_needed(first - dt.timedelta(days=1)) if models else 1
    if before < needed:
        what = (f"training as of {first - dt.timedelta(days=1)} needs {needed}" if models
                else "the warm-up needs at least one")
        raise ConfigError(f"warm-up: the sample's {spec.days} days ({spec.start_date}..{spec.end_date}) leave {before} "
                          f"before the first warm-up day {first}; {what}: raise sample.days to {spec.days + needed - before} "
                          f"in conf/env/<CPC_ENV>.yaml and simulate again (`python -m simulator simulate --clean`), or "
                          f"warm up fewer days (WARMUP_DAYS=0 skips the warm-up)")


def run(days: int, cfg: Settings | None = None, models: bool = True) -> list[dt.date]:
    """The warm-up (see the module's docstring) of ``days`` days before the sample's run date
    (``sample.end_date``), in the environment's storage root. ``models``: check that the history let the models
    train (``make run`` trains them before the warm-up). Returns the warm-up days run."""
    cfg = cfg or settings()
    if days == 0:
        log.info("warm-up: 0 days, nothing to do (the run date is the first decision day: its campaign report has no "
                 "outcomes yet)")
        return []
    run_date = cfg.sample_end_date
    days_ = warmup_days(run_date, days)
    spec = spec_of(cfg.paths)
    check(spec, run_date, days, cfg.paths, models)
    t0 = time.time()
    log.info(f"warm-up: {days} nightly runs {days_[0]}..{days_[-1]} before the run date {run_date}, each after the "
             f"simulated campaign platform's responses to the lists before it -> {cfg.paths.root}")
    world = World.load(spec)
    for k, day in enumerate(days_, 1):
        day_step(f"warm-up [{k}/{days}]", day, cfg, spec, world)
    log.info(f"warm-up: the responses on {run_date} to the lists published so far (the nightly of {run_date} ingests "
             f"them and evaluates the warm-up days' decisions)")
    respond(cfg.paths, spec, run_date, world)
    log.info(f"warm-up: done, {days} days in {time.time() - t0:.0f}s")
    return days_
