"""The closed loop over several simulated days, and its headline: CPC lists against a blind blast and oracles.

``python -m simulator loop`` (``make loop``) in its own storage root (default ``var/loop``):

1. simulates an operator (customers, history days + loop days), loads the history before the loop and trains the
   propensity and uplift models the day before it (as ``make run`` does; needs 105 days of history, see
   ``Settings.history_days`` in ``models/propensity.py``; the uplift models start in cold start: no decision has
   an outcome yet);
2. for each loop day (:func:`day_step`, which ``make run``'s warm-up, ``simulator/warmup.py``, runs too): the
   campaign platform answers the lists published on earlier days (``simulator/responder.py`` writes the day's
   responses and adds the accepted orders and opt-outs to its files), then the nightly runs every stage
   (ingest ... export, evaluate), so each day's decisions see the responses so far: cooldown after
   a decline, opt-outs, product-channel and customer-channel fits learned from outcomes. With ``train_every``
   (``--train-every``) the weekly ``train`` stage also runs every that many loop days, as of the day before, as
   the weekly DAG would: without it no uplift model can leave cold start during the loop
   (:func:`simulator.headline.uplift_first_day`);
3. the headline (``simulator/headline.py``): for each day's outbound offers, the same volume per channel given to
   a blind blast and two oracles, all scored by the hidden truth (incremental conversions, gross and net
   incremental value, the opt-outs and closures the contacts cause); writes ``reports/loop/headline.json`` and
   ``headline.md`` and prints the table. ``python -m simulator loop --headline-only`` recomputes it from a finished
   loop's root (lists and files; no Spark);
4. evaluates the last day again, so that the campaign report (``reports/campaigns_latest.html``) shows the
   headline.

Whether the decision ranks by the uplift models is conf/models.yaml ``uplift.rank`` or the ``CPC_UPLIFT_RANK``
override (``python -m simulator loops`` runs a propensity-ranked arm with it); the headline records which.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
import time
from pathlib import Path

from jobs.platform.config import Paths, Settings, settings
from simulator.generate import SimSpec, generate
from simulator.headline import headline
from simulator.responder import World, respond

log = logging.getLogger(__name__)
MARKER = ".cpc-loop"

__all__ = ["MARKER", "day_step", "headline", "history_needed", "run"]


def _fresh(root: Path) -> None:
    """Empty ``root`` (a loop changes its landing files and lake: always from the start), refusing a folder the loop
    did not make."""
    marker = root / MARKER
    if root.exists() and any(root.iterdir()) and not marker.exists():
        raise ValueError(f"{root} is not empty and was not made by `python -m simulator loop`; give an empty or new folder as --root "
                         f"(the loop empties its root first)")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    marker.write_text("made by python -m simulator loop: emptied at the start of each loop\n")


def history_needed(train_day: dt.date) -> int:
    """Days of deliveries up to ``train_day`` that training as of it needs (``Settings.history_days`` in
    ``models/propensity.py``: back to the oldest snapshot, and the 30-day tag windows behind it)."""
    from models import propensity as pm

    return pm.load_settings().history_days(train_day)


def _trainable(history_days: int, train_day: dt.date, train: bool) -> bool:
    needed = history_needed(train_day)
    if train and history_days < needed:
        log.info(f"loop: {history_days} days of history are too few to train the models (they need {needed}); "
                 f"the CPC uses the rule-based fits")
    return train and history_days >= needed


def day_step(label: str, day: dt.date, cfg: Settings, spec: SimSpec, world: World, started: float | None = None) -> None:
    """One day of the simulated operator, as the closed loop and ``make run``'s warm-up (``simulator/warmup.py``)
    run it: the campaign platform answers the lists published before ``day`` (its responses, orders and opt-outs
    must be in the day's files before the day is ingested), then the nightly runs every stage for ``day``. Logs
    ``<label> <day>: ...`` and the seconds since ``started`` (default: the step's own start)."""
    from jobs.orchestration import pipeline

    started = time.time() if started is None else started
    log.info(f"{label} {day}: responses to earlier lists, then the nightly run")
    respond(cfg.paths, spec, day, world)
    pipeline.nightly(day, cfg)
    log.info(f"{label} {day}: done ({time.time() - started:.0f}s)")


def run(customers: int, history_days: int, days: int, root: Path, seed: int = 42, end: dt.date | None = None,
        cfg: Settings | None = None, train: bool = True, profile: str | None = None, train_every: int = 0) -> dict:
    """The whole loop (see the module's docstring), in ``root``, which it empties first. Returns the headline."""
    from jobs.orchestration import pipeline
    from jobs.orchestration.registry import STAGES
    from models import uplift as um

    base = cfg or settings()
    cfg = dataclasses.replace(base, paths=Paths(root))
    paths = cfg.paths
    end = end or base.sample_end_date
    spec = SimSpec(customers, history_days + days, end, seed, profile or str(base.sample.get("profile", "realistic")))
    loop_days = spec.dates()[history_days:]
    t0 = time.time()
    _fresh(paths.root)
    log.info(f"loop: simulating {customers} customers, {spec.days} days {spec.start_date}..{end}, profile {spec.profile} -> {paths.root}")
    generate(paths, spec)
    pipeline.history(loop_days[0], cfg)
    train_day = loop_days[0] - dt.timedelta(days=1)
    trained = _trainable(history_days, train_day, train)
    if trained:
        log.info(f"loop: training the propensity models as of {train_day} (as `make run` does)")
        STAGES["train"](train_day, cfg)
    world = World.load(spec)
    for k, day in enumerate(loop_days, 1):
        t1 = time.time()
        if trained and train_every > 0 and k > 1 and (k - 1) % train_every == 0:
            log.info(f"loop [{k}/{len(loop_days)}] {day}: the weekly training as of {day - dt.timedelta(days=1)}")
            STAGES["train"](day - dt.timedelta(days=1), cfg)
        day_step(f"loop [{k}/{len(loop_days)}]", day, cfg, spec, world, started=t1)
    meta = {"customers": customers, "history_days": history_days, "seed": seed, "profile": spec.profile,
            "seconds": round(time.time() - t0, 1), "models_trained": trained, "train_every": train_every if trained else 0,
            "uplift_rank": um.load_settings().rank}
    summary = headline(paths, spec, loop_days, meta, world)
    STAGES["evaluate"](loop_days[-1], cfg)  # the campaign report again, now with the headline
    return summary
