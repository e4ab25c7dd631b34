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
    types_checked,
    types_fingerprint,
)
from jobs.stages.tags.engine import apply_tags, base_frame, carry_forward, profile_asof, window_features

log = logging.getLogger(__name__)

__all__ = ["Catalogue", "CatalogueError", "Tag", "apply_tags", "base_frame", "carry_forward", "categories", "check_expression",
           "check_types", "definition", "load_catalogue", "product_categories", "profile_asof", "run", "window_features"]


def previous_snapshot(spark, paths: Paths, day: dt.date):
    """The tag table's last snapshot before ``day``, or None."""
    from pyspark.sql import functions as F

    if not lake.exists(spark, paths, "gold.customer_tags"):
        return None
    table = lake.read(spark, paths, "gold.customer_tags")
    last = table.where(F.col("snapshot_date") < F.lit(day)).agg(F.max("snapshot_date")).first()[0]
    return None if last is None else table.where(F.col("snapshot_date") == F.lit(last))


def run(spark, paths: Paths, day: dt.date, cat: Catalogue | None = None, stats: bool = True, full: bool = False,
        check: bool = False) -> dict[str, int]:
    """Compute and write the tag snapshot for ``day``, the catalogue table and (unless ``stats`` is off) the
    day's tag statistics. The window features come from the incremental state, which is stepped to ``day`` (or
    bootstrapped) and written on the way; ``full`` recomputes them from the history instead (the reference) and
    rebuilds the state of ``day`` from the history; ``check`` then compares the state of ``day`` and its features
    with the full recompute for every customer (raises on a difference)."""
    t0 = time.time()
    cat = cat or load_catalogue()
    types = types_fingerprint(cat, spark)
    if not types_checked(paths, types):  # a catalogue is checked once (catalogue.py, above types_fingerprint)
        check_types(spark, cat)
        mark_types_checked(paths, types)
    key = hash_key(settings().env, paths.root)
    feats = incremental.features(spark, paths, day, cat, full=full)
    tags = apply_tags(base_frame(spark, paths, day, cat, key, feats=feats), cat)
    tags = carry_forward(tags, previous_snapshot(spark, paths, day), cat)
    lake.replace(tags, paths, "gold.customer_tags", f"snapshot_date = '{day.isoformat()}'", merge_schema=True)
    spark.catalog.clearCache()
    lake.replace(catalogue_frame(spark, cat), paths, "gold.tag_catalogue", None)
    written = lake.read(spark, paths, "gold.customer_tags").where(f"snapshot_date = '{day.isoformat()}'")
    n = written.count()
    log.info(f"tags {day}: {len(cat.tags)} tags for {n} customers -> gold.customer_tags ({time.time() - t0:.1f}s)")
    if stats:
        tagstats.run(spark, paths, day, cat)
    if check:
        incremental.check(spark, paths, day, cat, per_mille=1000, state_date=day)
    return {"customers": n, "tags": len(cat.tags)}
