"""The tag engine's transforms: every column a tag may use as of a snapshot date, then the whole catalogue in
a few ``select``s.

1. one aggregation over ``silver.customer_day`` for every window feature (conditional sums over the longest
   window, so a 7-day and a 30-day sum come from the same scan);
2. as-of state (profile, open complaints, device, holdings, opt-outs) from bronze, each a small scan;
3. one ``select`` per dependency layer of tags (tags that use other tags come in a later layer).

Point in time: everything for snapshot date D reads only rows dated up to D.
"""

from __future__ import annotations

import datetime as dt

from jobs.platform import lake
from jobs.platform.config import Paths
from jobs.platform.expressions import quoted, sql_string
from jobs.platform.privacy import hmac_sha256
from jobs.stages.tags.catalogue import BAND_DECIMALS, Catalogue, categories, product_categories


# ---------------------------------------------------------------------------------------------------------
# Inputs as of the snapshot date
# ---------------------------------------------------------------------------------------------------------
def profile_asof(spark, paths: Paths, day: dt.date, version: int | None = None):
    """The latest CRM record of every customer as of ``day`` (closed lines included; callers filter)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    crm = lake.read(spark, paths, "bronze.crm_profile", version).where(F.col("delivery_date") <= F.lit(day))
    w = Window.partitionBy("customer_id").orderBy(F.col("record_date").desc(), F.col("delivery_date").desc())
    return crm.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn", "delivery_date", "_source_file", "record_date")


SUM_SCALE = 10_000  # window sums add whole ten-thousandths (measures carry at most 4 decimals)


def window_features(daily, day: dt.date, cat: Catalogue):
    """Pure transform: silver.customer_day rows -> one row per customer with every window feature of the
    catalogue, in one aggregation. Rows after ``day`` (or older than the longest window) are ignored.

    Sums are added as whole ten-thousandths (longs), not doubles: a sum of doubles depends on the order of
    its terms, which depends on how the data are partitioned, so a cluster and a laptop would disagree in
    the last bits, and a tag that rounds a sum could then flip (seen in ``make cluster-run``)."""
    from pyspark.sql import functions as F

    longest = max(b for _, b in cat.windows.values())
    daily = daily.where(
        (F.col("day") <= F.lit(day)) & (F.col("day") >= F.lit(day - dt.timedelta(days=longest)))
    ).withColumn("_ago", F.datediff(F.lit(day), F.col("day")))
    # SQL text, one expression a feature: the Column API would make ~30,000 calls to Spark for the catalogue.
    aggs = [F.expr(feature_sql(name, kind, quoted(measure), cat.windows[window]))
            for name, (kind, measure, window) in cat.features.items()]
    aggs.append(F.expr("CAST(max_by(balance, day) AS DOUBLE) AS balance"))
    return daily.groupBy("customer_id").agg(*aggs)


def feature_sql(name: str, kind: str, measure: str, window: tuple[int, int]) -> str:
    """One window feature's aggregate over rows with ``_ago`` (days before the snapshot) as SQL text."""
    inside = f"(_ago BETWEEN {window[0]} AND {window[1]})"
    if kind == "sum":  # in whole 1/SUM_SCALE units: exact, so the same on any partitioning
        units = f"CAST(round({measure} * {SUM_SCALE}) AS BIGINT)"
        agg = f"CAST(sum(CASE WHEN {inside} THEN {units} ELSE 0 END) / {SUM_SCALE} AS DOUBLE)"
    elif kind == "days_with":
        agg = f"CAST(sum(CASE WHEN {inside} AND ({measure} > 0) THEN 1 ELSE 0 END) AS INT)"
    else:  # days_since
        agg = f"CAST(min(CASE WHEN {measure} > 0 THEN _ago END) AS INT)"
    return f"{agg} AS {quoted(name)}"


def state_asof(spark, paths: Paths, day: dt.date):
    """Open complaints, current device, products held and opt-outs as of ``day``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    upto = F.col("delivery_date") <= F.lit(day)
    complaints = (
        lake.read(spark, paths, "bronze.complaints").where(upto)
        .groupBy("customer_id", "complaint_id")
        .agg(F.max(F.when(F.col("event") == "closed", 1).otherwise(0)).alias("closed"))
        .groupBy("customer_id").agg(F.sum(1 - F.col("closed")).cast("int").alias("open_complaints"))
    )
    dev = lake.read(spark, paths, "bronze.devices").where(upto)
    devices = dev.groupBy("customer_id").agg(
        F.max_by("brand", "change_date").alias("device_brand"),
        F.max_by("network_gen", "change_date").alias("device_gen"),
        F.max_by("price", "change_date").alias("device_price"),
        F.max_by("is_smartphone", "change_date").alias("device_is_smart"),
        # first_seen_date: the first delivery dates each handset back to when it was first seen (deliveries made
        # before the column existed read null: their change date stands in).
        F.max_by(F.coalesce("first_seen_date", "change_date"), "change_date").alias("device_since"),
        F.max_by("handsets_24m", "change_date").alias("device_handsets_24m"),
        F.sum(F.when(F.col("change_date") > F.lit(day - dt.timedelta(days=365)), 1).otherwise(0)).cast("int").alias("device_changes_365d"),
    )
    w = Window.partitionBy("customer_id", "product_id").orderBy(F.col("order_ts").desc(), F.col("order_id").desc())
    orders = lake.read(spark, paths, "bronze.orders").where(upto)
    cat_of = F.create_map(*[x for pid, c in product_categories().items() for x in (F.lit(pid), F.lit(c))])
    holdings = (
        orders.withColumn("_rn", F.row_number().over(w)).where("_rn = 1")
        .where(F.col("action").isin("order", "trial_start", "trial_convert"))
        .withColumn("_cat", cat_of[F.col("product_id")])
        .groupBy("customer_id")
        .agg(
            F.array_sort(F.collect_list("product_id")).alias("held_products"),
            F.sum(F.col("_cat").isin("vas", "games").cast("int")).cast("int").alias("held_vas"),
            *[F.sum((F.col("_cat") == c).cast("int")).cast("int").alias(f"{c}_held") for c in categories()],
        )
    )
    wo = Window.partitionBy("customer_id", "channel").orderBy(F.col("event_ts").desc())
    optouts = (
        lake.read(spark, paths, "bronze.optouts").where(upto)
        .withColumn("_rn", F.row_number().over(wo)).where("_rn = 1").where(F.col("action") == "opt_out")
        .groupBy("customer_id").agg(F.array_sort(F.collect_list("channel")).alias("optouts"))
    )
    return complaints, devices, holdings, optouts


def base_frame(spark, paths: Paths, day: dt.date, cat: Catalogue, hash_key: bytes | None = None, feats=None):
    """Every column a tag may use, one row per customer open on ``day``. ``feats``: the window features (the
    frame of :func:`window_features`; the tags stage reads them from the incremental state), else the full
    recompute."""
    from pyspark.sql import functions as F

    profile = profile_asof(spark, paths, day).where(F.col("status") != "closed").where(F.col("activation_date") <= F.lit(day))
    if feats is None:
        feats = window_features(lake.read(spark, paths, "silver.customer_day"), day, cat)
    df = profile.join(feats, on="customer_id", how="left")
    for part in state_asof(spark, paths, day):
        df = df.join(part, on="customer_id", how="left")
    fills = {name: 0 for name, (kind, _, _) in cat.features.items() if kind != "days_since"}
    fills.update({"open_complaints": 0, "held_vas": 0, "device_changes_365d": 0, **{f"{c}_held": 0 for c in categories()}})
    df = df.fillna(fills)
    empty = F.array().cast("array<string>")
    df = df.select(
        "*",
        F.lit(day).cast("date").alias("snapshot_date"),
    ).withColumn("held_products", F.coalesce("held_products", empty)).withColumn("optouts", F.coalesce("optouts", empty))
    if hash_key is not None:  # the analysts' table carries a keyed hash of the phone number, never the number
        df = df.withColumn("msisdn_hash", hmac_sha256(F.col("msisdn"), hash_key))
    return df.drop("msisdn")


def apply_tags(base, cat: Catalogue):
    """Base columns -> customer_id, snapshot_date and one column per tag (declared types).

    One ``select`` per dependency layer. Quantile bands come last: one aggregation computes every band's cut
    points for each snapshot date of the frame (a handful of numbers a date to the driver), then one more
    ``select``. The wide frame is cached for that aggregation and stays cached for the result: the caller drops
    it once the result is written (``spark.catalog.clearCache()``, as ``tags.run`` and ``bench/tag_alternatives.py``
    do). The cut points are exact percentiles
    of the value rounded to ``BAND_DECIMALS`` places: exact, so a cluster and a laptop cut the same bands
    whatever the partitioning (approximate percentiles did not); rounded, so the aggregation holds one count
    per distinct value (bounded) rather than one per customer.
    """
    from pyspark.sql import functions as F

    df = base
    # Each layer is one ``selectExpr`` of SQL text: one call to Spark for 300+ columns, where building each
    # tag as a Column costs a dozen round trips between Python and the JVM (seconds per run, most of the time
    # of a run on a few rows).
    for layer in cat.layers:
        cols = [tag_sql(t) for t in layer if t.kind != "quantile_band"]
        if cols:
            df = df.selectExpr("*", *cols)
    bands = [t for t in cat.tags if t.kind == "quantile_band"]
    if bands:
        df = df.cache()
        probs = {t.id: [i / t.bands for i in range(1, t.bands)] for t in bands}
        cuts = {r["snapshot_date"]: r for r in df.groupBy("snapshot_date").agg(
            *[F.percentile(F.round(F.col(t.band_of).cast("double"), BAND_DECIMALS), F.array(*[F.lit(p) for p in probs[t.id]])).alias(t.id)
              for t in bands]).collect()}  # a row per snapshot date in the frame (training's batch: a few)
        df = df.selectExpr("*", *[f"{band_sql(quoted(t.band_of), t.id, cuts)} AS {quoted(t.id)}" for t in bands])
    keep = ["msisdn_hash"] if "msisdn_hash" in df.columns else []
    return df.selectExpr(*[quoted(c) for c in ("customer_id", "snapshot_date", *keep, *cat.ids)])


def tag_sql(t) -> str:
    """A tag's column as SQL text: its expression cast to the declared type, the default where it gives null."""
    col = f"CAST(({t.expr}) AS {t.type})"
    if t.default is not None:
        col = f"COALESCE({col}, CAST({sql_string(t.default)} AS {t.type}))"
    return f"{col} AS {quoted(t.id)}"


def band_sql(col: str, tag: str, cuts: dict) -> str:
    """A band tag's SQL text from its cut points by snapshot date (``cuts``: date -> a row holding ``tag``'s
    cut points). One date (the nightly): :func:`quantile_band` itself. Several (training's snapshots computed in
    one pass): each date's bands cut at that date's own points, as if it had been computed alone."""
    if len(cuts) <= 1:  # no row (an empty frame: no cut points) or one date
        return quantile_band(col, [p for r in cuts.values() for p in (r[tag] or [])])
    whens = "".join(f" WHEN snapshot_date = DATE '{d.isoformat()}' THEN {quantile_band(col, list(r[tag] or []))}"
                    for d, r in sorted(cuts.items()))
    return f"CASE{whens} END"


def quantile_band(col: str, cuts: list[float]) -> str:
    """'Q1' (lowest) .. 'Qn' from ascending cut points, as SQL text over the column ``col``; null stays null.
    A cut point is written as the exact text of the double (``repr``) cast to DOUBLE, so nothing is rounded."""
    whens = "".join(f" WHEN {col} <= CAST('{float(c)!r}' AS DOUBLE) THEN 'Q{i}'" for i, c in enumerate(cuts, start=1))
    return f"CASE WHEN {col} IS NULL THEN CAST(NULL AS STRING){whens} ELSE 'Q{len(cuts) + 1}' END"


def carry_forward(tags, previous, cat: Catalogue):
    """Tags whose empty-value rule is ``carry`` keep the customer's value from the previous snapshot when
    today's is null. ``previous`` is the last snapshot before today (or None on the first day)."""
    from pyspark.sql import functions as F

    carry = [t.id for t in cat.tags if t.empty == "carry"]
    if not carry or previous is None:
        return tags
    prev = previous.select("customer_id", *[F.col(c).alias(f"_prev_{c}") for c in carry])
    joined = tags.join(prev, on="customer_id", how="left")
    keep = ["msisdn_hash"] if "msisdn_hash" in tags.columns else []
    return joined.select(
        "customer_id", "snapshot_date", *keep,
        *[F.coalesce(F.col(c), F.col(f"_prev_{c}")).alias(c) if c in carry else F.col(c) for c in cat.ids],
    )
