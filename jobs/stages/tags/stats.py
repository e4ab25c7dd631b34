"""Daily tag statistics -> ``gold.tag_stats``: the share of customers per tag value, the change against the
previous snapshot, and a drift warning when a share moves more than ``statistics.drift_limit`` (share points,
``conf/tags.yaml``).

Flags, texts and bands: one row per value (the 50 commonest values of a text tag, the rest as ``(other)``).
Numbers: one row ``(non-null)`` with the share of customers that have a value, and its mean.
A tag that is empty for every customer is reported too: that is a broken definition or a missing source.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from jobs.platform import lake
from jobs.platform.config import Paths
from jobs.platform.expressions import quoted, sql_string
from jobs.stages.tags.catalogue import Catalogue

log = logging.getLogger(__name__)

TOP_VALUES = 50


def stats(tags, cat: Catalogue):
    """Pure transform: one snapshot of the tag table -> (tag_id, family, value, customers, share, mean).

    The wide projections are SQL text, one call to Spark each: as Columns, the catalogue's ~360 tags cost
    thousands of calls between Python and the JVM (seconds of driver time a night; the same expressions)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    family = F.expr(f"map({', '.join(f'{sql_string(t.id)}, {sql_string(t.family)}' for t in cat.tags)})")
    categorical = [t.id for t in cat.tags if t.type in ("boolean", "string", "date")]
    numeric = [t.id for t in cat.tags if t.type in ("int", "bigint", "double")]
    parts = []
    if categorical:
        pairs = ", ".join(f"named_struct('tag_id', {sql_string(c)}, 'value', coalesce(CAST({quoted(c)} AS STRING), '(null)'))"
                          for c in categorical)
        long = tags.selectExpr(f"explode(array({pairs})) AS kv").select("kv.tag_id", "kv.value")
        counted = long.groupBy("tag_id", "value").agg(F.count(F.lit(1)).alias("customers"))
        w = Window.partitionBy("tag_id").orderBy(F.col("customers").desc(), "value")
        counted = (
            counted.withColumn("_rank", F.row_number().over(w))
            .withColumn("value", F.when(F.col("_rank") <= TOP_VALUES, F.col("value")).otherwise(F.lit("(other)")))
            .groupBy("tag_id", "value").agg(F.sum("customers").alias("customers"))
        )
        share = F.col("customers") / F.sum("customers").over(Window.partitionBy("tag_id"))
        parts.append(counted.select("tag_id", "value", F.col("customers").cast("long"), share.alias("share"),
                                    F.lit(None).cast("double").alias("mean")))
    if numeric:
        # One scan of the partition for the customers and every numeric tag's count and mean (a global aggregate).
        agg = tags.selectExpr("count(1) AS _customers", *[f"count({quoted(c)}) AS {quoted(f'n_{c}')}" for c in numeric],
                              *[f"avg({quoted(c)}) AS {quoted(f'm_{c}')}" for c in numeric]).first()
        n = agg["_customers"]
        rows = [(c, "(non-null)", int(agg[f"n_{c}"]), (agg[f"n_{c}"] / n) if n else 0.0, stable_mean(agg[f"m_{c}"]))
                for c in numeric]
        parts.append(tags.sparkSession.createDataFrame(rows, "tag_id string, value string, customers long, share double, mean double"))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.select("tag_id", family[F.col("tag_id")].alias("family"), "value", "customers", F.round("share", 6).alias("share"), "mean")


MEAN_DIGITS = 12
MEAN_ZERO = 1e-12  # below this in absolute value a mean is 0: a sum that cancels to zero leaves order-dependent dust


def stable_mean(mean) -> float | None:
    """A tag's mean to ``MEAN_DIGITS`` significant digits, 0 below ``MEAN_ZERO``. Spark adds the partitions' sums of a
    double column in the order their tasks finish, so two runs over the same rows can differ in the last bits (seen:
    two `make run`s from fresh checkouts, 223 of 671 rows of a night's statistics differing by about 1e-16 of the
    mean). Rounded, they are the same unless the exact mean lies within those bits of a rounding boundary: about 6 in
    100,000 such means, so about one night in 75 at that size still shows one mean differing in its 12th digit. An
    exact sum (decimals) would be order-free but costs BigDecimal arithmetic per value at a million customers."""
    if mean is None:
        return None
    mean = float(mean)
    return 0.0 if abs(mean) < MEAN_ZERO else float(f"{mean:.{MEAN_DIGITS}g}")


def compare(today, previous, limit: float):
    """Add the previous snapshot's share, the change and the drift flag."""
    from pyspark.sql import functions as F

    if previous is None:
        return today.select("*", F.lit(None).cast("double").alias("prev_share"), F.lit(None).cast("double").alias("share_change"),
                            F.lit(False).alias("drift"))
    prev = previous.select("tag_id", "value", F.col("share").alias("prev_share"))
    joined = today.join(prev, on=["tag_id", "value"], how="left")
    change = F.round(F.col("share") - F.coalesce(F.col("prev_share"), F.lit(0.0)), 6)
    return joined.select("*", change.alias("share_change"), (F.abs(change) > F.lit(limit)).alias("drift"))


def run(spark, paths: Paths, day: dt.date, cat: Catalogue) -> dict:
    """Write the statistics of ``day`` (``gold.tag_stats`` partition) from that day's tag snapshot, against the
    latest earlier snapshot of the statistics. The result is small (bounded by the catalogue: at most
    ``TOP_VALUES`` + 1 rows per tag, not by customers), so it is computed once, collected, written from the
    collected rows, and the log's figures (drift, empty tags, rows) are read from them: no read back."""
    from pyspark.sql import functions as F

    t0 = time.time()
    tags = lake.read(spark, paths, "gold.customer_tags").where(F.col("snapshot_date") == F.lit(day)).select("customer_id", *cat.ids)
    previous = None
    last = lake.last_partition_before(spark, paths, "gold.tag_stats", "snapshot_date", day)
    if last is not None:
        previous = lake.read(spark, paths, "gold.tag_stats").where(F.col("snapshot_date") == F.lit(last))
    out = compare(stats(tags, cat), previous, cat.drift_limit).select(F.lit(day).cast("date").alias("snapshot_date"), "*")
    rows = out.collect()  # bounded by the catalogue (above), not by customers
    lake.replace(spark.createDataFrame(rows, out.schema), paths, "gold.tag_stats", f"snapshot_date = '{day.isoformat()}'")
    drift, empty = drifting(rows), empty_tags(rows)
    for r in drift:
        log.info(f"tag drift {day}: {r['tag_id']} = {r['value']}: share {r['prev_share'] or 0:.3f} -> {r['share']:.3f} "
              f"(limit {cat.drift_limit:.2f})")
    if empty:
        log.info(f"tag stats {day}: WARNING {len(empty)} tag(s) empty for every customer: {', '.join(sorted(empty)[:20])}")
    log.info(f"tag stats {day}: {len(rows)} rows -> gold.tag_stats, {len(drift)} drift warning(s) ({time.time() - t0:.1f}s)")
    return {"drift": len(drift), "empty": empty}


def drifting(rows, most: int = 10) -> list:
    """The rows flagged ``drift``, the largest change first, at most ``most`` (what the log shows)."""
    return sorted((r for r in rows if r["drift"]), key=lambda r: abs(r["share_change"]), reverse=True)[:most]


def empty_tags(rows) -> list[str]:
    """Tags empty for every customer: a flag, text or band whose ``(null)`` value has the whole share, a number
    with no ``(non-null)`` customer."""
    return [r["tag_id"] for r in rows
            if (r["value"] == "(null)" and r["share"] is not None and r["share"] >= 1.0)
            or (r["value"] == "(non-null)" and r["customers"] == 0)]
