"""The stage registry, written once: every stage a date can run, in order, with what it does and what it needs.

The nightly DAG builds its tasks and their order from :data:`NIGHTLY`, the weekly DAGs from :data:`WEEKLY`,
the CLI its stage commands from :data:`STAGES`, and the tests check the DAG against it. Each stage is a
function of (run date, settings): it gets a Spark session from the settings, runs the stage module's ``run``
and returns a small JSON-able summary.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from jobs.platform.config import Settings, parse_date, settings
from jobs.platform.spark import get_spark


@dataclass(frozen=True)
class Stage:
    name: str
    doc: str
    after: tuple[str, ...]  # the stages whose output it reads (the DAG's upstream tasks)
    call: Callable[..., object]  # (spark, paths, day) -> summary

    def __call__(self, day: dt.date | str, cfg: Settings | None = None, **options):
        """Run the stage for ``day``; ``options`` go to the stage's function (``cpc tags --full``: full=True)."""
        cfg = cfg or settings()
        return self.call(get_spark(cfg), cfg.paths, parse_date(day), **options)


def _ingest(spark, paths, day):
    from jobs.stages import ingest

    report = ingest.ingest(spark, paths, [day])
    return {"files": len(report.files), "rejected": len(report.rejected),
            "seconds": round(sum(report.seconds.values()), 2),
            "validation_seconds": round(sum(report.validation_seconds.values()), 2)}


def _conform(spark, paths, day):
    from jobs.stages import conform

    return conform.run(spark, paths, [day])


def _tags(spark, paths, day, full=False, check=False):
    from jobs.stages import tags

    return tags.run(spark, paths, day, full=full, check=check)


def _segments(spark, paths, day):
    from jobs.stages import segments

    return segments.run(spark, paths, day)


def _propensity(spark, paths, day):
    from jobs.stages import propensity, uplift

    return {**propensity.score(spark, paths, day), "uplift": uplift.score(spark, paths, day)}


def _score(spark, paths, day):
    from jobs.stages import cpc

    return cpc.run(spark, paths, day)


def _export(spark, paths, day):
    from jobs.stages import export

    return export.run(spark, paths, day)


def _evaluate(spark, paths, day, full=False):
    from jobs.stages import evaluate

    return evaluate.run(spark, paths, day, full=full)


def _train(spark, paths, day):
    from jobs.stages import propensity, uplift

    out = {r.model: r.version for r in propensity.train(spark, paths, day)}
    return {**out, **{f"uplift_{r.family}": r.version for r in uplift.train(spark, paths, day)}}


def _maintain(spark, paths, day):
    from jobs.stages import maintenance

    return maintenance.run(spark, paths, day)


# Stage modules are imported when a stage runs, not when this registry is read: the DAG files read it at
# parse time, and the scheduler must not import Spark code to draw a graph.
NIGHTLY: tuple[Stage, ...] = (
    Stage("ingest", "landing files -> bronze tables, quarantine, ledger (control file, schema, Great Expectations)", (), _ingest),
    Stage("conform", "bronze -> silver.customer_day (daily aggregates)", ("ingest",), _conform),
    Stage("tags", "silver + bronze state -> gold.customer_tags, gold.tag_catalogue, gold.tag_stats", ("conform",), _tags),
    Stage("segments", "tags -> gold.customer_segment (lifecycle stage, service tier)", ("tags",), _segments),
    Stage("propensity", "tags -> gold.propensity, gold.uplift (the LightGBM propensity and uplift models current on the date)",
          ("tags",), _propensity),
    Stage("score", "the CPC decision under the contact policy -> gold.cpc_decisions, cpc_offers, cpc_funnel",
          ("segments", "propensity"), _score),
    Stage("export", "one list per outbound channel and the placements, published atomically", ("score",), _export),
    Stage("evaluate", "outcomes, lift over the holdouts, trial funnel, HTML report", ("export",), _evaluate),
)
WEEKLY: tuple[Stage, ...] = (
    Stage("train", "train and register the propensity models, then the uplift models (from gold.campaign_outcomes), as of the date",
          (), _train),
    Stage("maintain", "tag-state check against the full recompute, tag-state and tag-history retention, compaction, vacuum",
          (), _maintain),
)
STAGES: dict[str, Stage] = {s.name: s for s in (*NIGHTLY, *WEEKLY)}
NIGHTLY_NAMES: tuple[str, ...] = tuple(s.name for s in NIGHTLY)
