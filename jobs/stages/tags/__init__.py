"""The tags stage: the catalogue in ``conf/tags.yaml`` -> ``gold.customer_tags`` for one snapshot date, then
``gold.tag_catalogue`` and the day's statistics (``gold.tag_stats``).

``catalogue`` loads and checks the catalogue, ``engine`` holds the pure transforms, ``incremental`` the window
state the features are read from (stepped from the day before, docs/incremental-tags.md), ``stats`` the daily
statistics and drift, ``doc`` the generated docs/tags.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from jobs.platform import lake
from jobs.platform.config import Paths, settings
from jobs.platform.errors import CatalogueError
from jobs.platform.expressions import check_expression
from jobs.platform.privacy import hash_key
from jobs.stages.tags import incremental
from jobs.stages.tags import stats as tagstats
from jobs.stages.tags.catalogue import (
    Catalogue,
    Tag,
    catalogue_frame,
    categories,
    check_types,
    definition,
    load_catalogue,
    mark_types_checked,
    product_categories,
    same_catalogue,
    types_checked,
    types_fingerprint,
)
from jobs.stages.tags.engine import apply_tags, base_frame, carry_forward, profile_asof, window_features

log = logging.getLogger(__name__)

__all__ = ["Catalogue", "CatalogueError", "Tag", "apply_tags", "base_frame", "carry_forward", "categories", "check_expression",
           "check_types", "definition", "load_catalogue", "product_categories", "profile_asof", "run", "window_features"]


def previous_snapshot(spark, paths: Paths, day: dt.date):
    """The tag table's last snapshot before ``day``, or None (its date: ``lake.last_partition_before``, from
    the table's log)."""
    from pyspark.sql import functions as F

    last = lake.last_partition_before(spark, paths, "gold.customer_tags", "snapshot_date", day)
    return None if last is None else lake.read(spark, paths, "gold.customer_tags").where(F.col("snapshot_date") == F.lit(last))


def catalogue_unchanged(spark, paths: Paths, cat: Catalogue) -> bool:
    """Whether ``gold.tag_catalogue`` already holds exactly what :func:`catalogue_frame` writes for ``cat`` (the
    same columns, the same rows): then the stage does not rewrite it (one small read, a row per tag, instead of
    an overwrite and a new Delta version every night)."""
    if not lake.exists(spark, paths, "gold.tag_catalogue"):
        return False
    table = lake.read(spark, paths, "gold.tag_catalogue")
    return same_catalogue([(f.name, f.dataType.simpleString()) for f in table.schema.fields], table.collect(), cat)


def _checked(spark, paths: Paths, cat: Catalogue | None) -> Catalogue:
    """The catalogue (``conf/tags.yaml`` when None), its types checked once per catalogue (catalogue.py, above
    ``types_fingerprint``)."""
    cat = cat or load_catalogue()
    types = types_fingerprint(cat, spark)
    if not types_checked(paths, types):
        check_types(spark, cat)
        mark_types_checked(paths, types)
    return cat


def _write(spark, paths: Paths, tags, where: str, cat: Catalogue, what: str) -> int:
    """Replace ``where``'s snapshots of ``gold.customer_tags`` with ``tags``, drop the cached wide frame, rewrite
    ``gold.tag_catalogue`` if it changed; returns the rows written (``lake.written_rows``: from the commit)."""
    lake.replace(tags, paths, "gold.customer_tags", where, merge_schema=True)
    n = lake.written_rows(spark, paths, "gold.customer_tags", where)
    spark.catalog.clearCache()
    if catalogue_unchanged(spark, paths, cat):
        log.info(f"tags {what}: gold.tag_catalogue unchanged, not rewritten")
    else:
        lake.replace(catalogue_frame(spark, cat), paths, "gold.tag_catalogue", None)
    return n


def run(spark, paths: Paths, day: dt.date, cat: Catalogue | None = None, stats: bool = True, full: bool = False,
        check: bool = False) -> dict[str, int]:
    """Compute and write the tag snapshot for ``day``, the catalogue table and (unless ``stats`` is off) the
    day's tag statistics. The window features come from the incremental state, which is stepped to ``day`` (or
    bootstrapped) and written on the way; ``full`` recomputes them from the history instead (the reference) and
    rebuilds the state of ``day`` from the history; ``check`` then compares the state of ``day`` and its features
    with the full recompute for every customer (raises on a difference)."""
    t0 = time.time()
    cat = _checked(spark, paths, cat)
    key = hash_key(settings().env, paths.root)
    feats = incremental.features(spark, paths, day, cat, full=full)
    tags = apply_tags(base_frame(spark, paths, day, cat, key, feats=feats), cat)
    tags = carry_forward(tags, previous_snapshot(spark, paths, day), cat)
    n = _write(spark, paths, tags, f"snapshot_date = '{day.isoformat()}'", cat, str(day))  # one row per customer
    log.info(f"tags {day}: {len(cat.tags)} tags for {n} customers -> gold.customer_tags ({time.time() - t0:.1f}s)")
    if stats:
        tagstats.run(spark, paths, day, cat)
    if check:
        incremental.check(spark, paths, day, cat, per_mille=1000, state_date=day)
    return {"customers": n, "tags": len(cat.tags)}


def snapshots(spark, paths: Paths, days: list[dt.date], cat: Catalogue | None = None) -> dict[str, int]:
    """Compute and write the tag snapshots of several dates in one pass (training's snapshot dates, a week or a
    month apart): the same rows as :func:`run` for each date in turn (``stats`` off), in one frame and one
    commit. Each date's window features come from its state built from the history (the bootstrap's
    aggregation; the state is not written: no night steps from a date weeks back); the catalogue's tags are
    computed once over every date, each date's quantile bands cut at its own points; a ``carry`` tag's empty value
    is taken from the snapshot before it, the batch's own or a stored one, as the runs in turn would."""
    from pyspark.sql import functions as F

    t0 = time.time()
    days = sorted(set(days))
    if not days:
        return {"customer_snapshots": 0, "snapshots": 0, "tags": 0}
    cat = _checked(spark, paths, cat)
    key = hash_key(settings().env, paths.root)
    plan = incremental.plan_of(cat)
    daily = lake.read(spark, paths, incremental.SILVER, lake.version(spark, paths, incremental.SILVER))  # one version
    base = None
    for d in days:
        feats = incremental.features_from_state(incremental.state_full(daily, d, plan), d, plan)
        one = base_frame(spark, paths, d, cat, key, feats=feats)
        base = one if base is None else base.unionByName(one)
    wide = apply_tags(base, cat)
    # a date without customers writes nothing, so the date after it carries from the snapshot before it, as run
    present = {r[0] for r in wide.select("snapshot_date").distinct().collect()}  # at most len(days) rows
    carried = {}
    for d in days:
        stored = lake.last_partition_before(spark, paths, "gold.customer_tags", "snapshot_date", d)
        while stored in days:  # a stored date this commit replaces: the batch's own row (mine) or nothing
            stored = lake.last_partition_before(spark, paths, "gold.customer_tags", "snapshot_date", stored)
        mine = max((x for x in present if x < d), default=None)
        if mine is not None and (stored is None or mine > stored):
            previous = carried[mine]
        else:
            previous = None if stored is None else (lake.read(spark, paths, "gold.customer_tags")
                                                    .where(F.col("snapshot_date") == F.lit(stored)))
        carried[d] = carry_forward(wide.where(F.col("snapshot_date") == F.lit(d)), previous, cat)
    out = carried[days[0]]
    for d in days[1:]:
        out = out.unionByName(carried[d])
    n = _write(spark, paths, out, lake.in_dates("snapshot_date", days), cat, ", ".join(map(str, days)))
    log.info(f"tags {', '.join(map(str, days))}: {len(cat.tags)} tags, {n} customer snapshots in one pass -> "
             f"gold.customer_tags ({time.time() - t0:.1f}s)")
    return {"customer_snapshots": n, "snapshots": len(days), "tags": len(cat.tags)}
