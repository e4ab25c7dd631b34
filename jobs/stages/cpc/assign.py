"""The priced assignment of active contacts under capacity, on Spark: the algorithm, its guarantees and its
pure-Python reference are in :mod:`jobs.stages.cpc.pricing`; this module mirrors that reference exactly (same
arithmetic, same ties). One row per customer (their best candidate per channel, pivoted to a column per
channel), prices as literals, column expressions only; what reaches the driver is a few numbers per channel
per pass. Spark actions per call: 2 (the customers' table and its counts); per tier (urgent messages when
there are any, then offers) at most ``passes`` evaluations, the repair and its counts, one count of who could
take the room left and one fill per channel with room left that someone could take (a tier where no channel
has more candidates than places: the repair only); 2 between the tiers. At most 2 x passes + 2 x channels + 10. Only a channel with more candidates than places is sorted
(its top capacity + 1 in a pass, its top capacity in the repair); the others keep every customer who chooses them."""

from __future__ import annotations

import logging

from jobs.stages.cpc import pricing

log = logging.getLogger(__name__)
COLS = ["customer_id", "campaign_id", "product_id", "channel", "urgent", "expected_value", "cost", "priority"]


def candidate_order():
    """A customer's candidates, best first: urgent service messages, then expected value; ties: lower cost,
    campaign priority, ids."""
    from pyspark.sql import functions as F

    return [F.col("urgent").desc(), F.col("expected_value").desc(), F.col("cost"), F.col("priority"), F.col("campaign_id"),
            F.col("product_id"), F.col("channel")]


def _greatest(cols):
    from pyspark.sql import functions as F

    return cols[0] if len(cols) == 1 else F.greatest(*cols)


def pruned(active):
    """The best candidate per (customer, channel): the only one a channel can take (one contact per customer)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rank = F.row_number().over(Window.partitionBy("customer_id", "channel").orderBy(*candidate_order()))
    return active.select(*COLS).withColumn("_r", rank).where("_r = 1").drop("_r")


def customers_table(best, channels: list[str]):
    """One row per customer: ``v<i>`` the expected value of their best candidate on channel i and ``u<i>`` 1 if
    it is urgent (null without a candidate there)."""
    from pyspark.sql import functions as F

    on = [F.col("channel") == ch for ch in channels]
    return best.where(F.col("channel").isin(channels)).groupBy("customer_id").agg(
        *[F.max(F.when(o, F.col("expected_value"))).alias(f"v{i}") for i, o in enumerate(on)],
        *[F.max(F.when(o, F.col("urgent").cast("int"))).alias(f"u{i}") for i, o in enumerate(on)])


def _surplus(values, prices):
    from pyspark.sql import functions as F

    return [v - F.lit(float(p)) for v, p in zip(values, prices, strict=True)]


def choice_col(values, prices):
    """Index of the customer's channel at the prices (highest value - price if positive, first on ties), or null."""
    from pyspark.sql import functions as F

    s = _surplus(values, prices)
    best = _greatest(s)
    pick = F.when(s[0] == best, F.lit(0))
    for i in range(1, len(s)):
        pick = pick.when(s[i] == best, F.lit(i))
    return F.when(best > 0, pick)


def margin_col(values, prices, c: int):
    """value_c - max(0, best value - price on another channel): :func:`pricing.margins`."""
    from pyspark.sql import functions as F

    s = _surplus(values, prices)
    return values[c] - _greatest([F.lit(0.0), *[x for i, x in enumerate(s) if i != c]])


def evaluate(frame, values, caps: list[int], prices: list[float], tight: list[bool]):
    """One action: how many customers choose each channel at the prices, and each tight channel's capacity-th
    and (capacity + 1)-th largest margin (a channel with no more candidates than places has no (capacity + 1)-th:
    its price stays, :func:`pricing.next_prices`). Returns (counts, {channel index: (last in, first out or None)})."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    chosen = frame.select(choice_col(values, prices).alias("c")).where("c is not null").groupBy("c").count()
    tops = None
    for c, cap in enumerate(caps):
        if cap > 0 and tight[c]:
            top = frame.where(values[c].isNotNull()).select(F.lit(c).alias("c"), margin_col(values, prices, c).alias("x"))
            top = top.orderBy(F.col("x").desc()).limit(cap + 1).withColumn("_cap", F.lit(cap))
            tops = top if tops is None else tops.unionByName(top)
    out = chosen.select("c", F.lit("n").alias("kind"), F.col("count").cast("double").alias("x"))
    if tops is not None:
        rn = F.row_number().over(Window.partitionBy("c").orderBy(F.col("x").desc()))
        ranked = tops.withColumn("_rn", rn).where(F.col("_rn") >= F.col("_cap"))
        out = out.unionByName(ranked.select(
            "c", F.when(F.col("_rn") == F.col("_cap"), F.lit("in")).otherwise(F.lit("out")).alias("kind"), "x"))
    rows = out.collect()  # at most 3 rows a channel
    n = [0] * len(caps)
    stats: dict[int, list] = {}
    for r in rows:
        if r["kind"] == "n":
            n[r["c"]] = int(r["x"])
        else:
            stats.setdefault(r["c"], [None, None])[0 if r["kind"] == "in" else 1] = r["x"]
    return n, stats


def tier_prices(frame, values, caps: list[int], tight: list[bool], passes: int, log=log.info) -> list[float]:
    """:func:`pricing.prices_for` on Spark: the last prices evaluated, one action per pass."""
    prices = [0.0] * len(caps)
    for p in range(1, passes + 1):
        n, stats = evaluate(frame, values, caps, prices, tight)
        over = [i for i, cap in enumerate(caps) if n[i] > cap]
        log(f"  assign pass {p}: prices {[round(x, 4) for x in prices]}, chosen {n}, capacity {caps}")
        if not over:
            return prices
        new = [pricing.new_price(prices[i], *stats.get(i, (None, None))) if caps[i] > 0 else prices[i] for i in range(len(caps))]
        if p == passes or new == prices:
            if new != prices:
                log(f"  assign: prices still moving after {passes} passes; the repair keeps every channel within capacity")
            return prices
        prices = new
    return prices


def repair(frame, values, caps: list[int], prices: list[float], channels: list[str], tight: list[bool]):
    """Each channel keeps its choosers of highest value up to capacity (ties: customer id); a channel with no
    more candidates than places keeps them all, without a sort. One action; returns the kept (customer_id,
    channel), checkpointed."""
    from pyspark.sql import functions as F

    chosen = frame.select("customer_id", *values, choice_col(values, prices).alias("_c"))
    loose = [i for i, cap in enumerate(caps) if cap > 0 and not tight[i]]
    name = F.element_at(F.array(*[F.lit(ch) for ch in channels]), F.col("_c") + 1)
    kept = chosen.where(F.col("_c").isin(loose)).select("customer_id", name.alias("channel"))
    for i, cap in enumerate(caps):
        if cap > 0 and tight[i]:
            mine = chosen.where(F.col("_c") == i).orderBy(F.col(f"_v{i}").desc(), F.col("customer_id")).limit(cap)
            kept = kept.unionByName(mine.select("customer_id", F.lit(channels[i]).alias("channel")))
    return kept.localCheckpoint()


def fill(frame, values, room: list[int], kept, channels: list[str]):
    """Room left, channel by channel, to customers without a contact who have a candidate of positive value
    there, highest first (ties: customer id). One action to find the channels with room that any customer
    without a contact could take (the others have none later either: filling only takes customers away), then
    one action per such channel."""
    from pyspark.sql import functions as F

    if any(r > 0 for r in room):
        free = frame.join(kept.select("customer_id"), on="customer_id", how="left_anti")
        takers = free.agg(*[F.count(F.when(F.col(f"_v{i}") > 0, 1)).alias(f"t{i}") for i in range(len(room))]).first()
        room = [r if takers[f"t{i}"] else 0 for i, r in enumerate(room)]
    for i, r in enumerate(room):
        if r > 0:
            free = frame.select("customer_id", *values).join(kept.select("customer_id"), on="customer_id", how="left_anti")
            take = free.where(F.col(f"_v{i}") > 0).orderBy(F.col(f"_v{i}").desc(), F.col("customer_id")).limit(r)
            kept = kept.unionByName(take.select("customer_id", F.lit(channels[i]).alias("channel"))).localCheckpoint()
    return kept


def tier(frame, values, caps: list[int], tight: list[bool], passes: int, channels: list[str], log=log.info):
    """One tier (:func:`pricing.tier`): prices, repair, fill; returns the kept (customer_id, channel). ``values``
    are expressions over ``frame``, one per channel (null where the channel has no room); ``tight[i]``: channel
    i may have more candidates than places (False only when it surely has not: its price stays zero and it
    refuses nobody). No tight channel: the prices stay zero, nobody is refused and nothing is left to fill."""
    from pyspark.sql import functions as F

    frame = frame.select("customer_id", *[v.alias(f"_v{i}") for i, v in enumerate(values)])
    values = [F.col(f"_v{i}") for i in range(len(caps))]
    slack = not any(t and cap > 0 for t, cap in zip(tight, caps, strict=True))
    prices = [0.0] * len(caps) if slack else tier_prices(frame, values, caps, tight, passes, log)
    kept = repair(frame, values, caps, prices, channels, tight)
    if slack:
        return kept
    n = counts(kept)
    return fill(frame, values, [cap - n.get(channels[i], 0) for i, cap in enumerate(caps)], kept, channels)


def counts(kept) -> dict[str, int]:
    return {r["channel"]: int(r["count"]) for r in kept.groupBy("channel").count().collect()}  # a row a channel


def assign_priced(active, capacity: dict[str, int], passes: int, log=log.info):
    """Active contacts under each channel's daily capacity by prices (:mod:`jobs.stages.cpc.pricing`): urgent
    messages first, then offers on the capacity left. Returns (customer_id, campaign_id, product_id, channel),
    the same as :func:`jobs.stages.cpc.decide.assign`."""
    from pyspark.sql import functions as F

    channels = sorted(ch for ch, cap in capacity.items() if int(cap) > 0)
    best = pruned(active)
    if not channels:
        return best.select(*COLS[:4]).limit(0)
    wide = customers_table(best, channels).localCheckpoint()
    k, caps = len(channels), [int(capacity[ch]) for ch in channels]
    n = wide.agg(*[F.count(F.when(F.col(f"u{i}") == u, 1)).alias(f"n{u}_{i}") for u in (1, 0) for i in range(k)]).first()
    log(f"  assign: {k} channels {channels}, capacity {caps}; urgent candidates {[n[f'n1_{i}'] for i in range(k)]}, "
        f"offers {[n[f'n0_{i}'] for i in range(k)]}")
    taken = None
    if any(n[f"n1_{i}"] for i in range(k)):
        first = [F.when(F.col(f"u{i}") == 1, F.col(f"v{i}")) for i in range(k)]
        taken = tier(wide, first, caps, [n[f"n1_{i}"] > caps[i] for i in range(k)], passes, channels, log)
        used = counts(taken)
        caps = [cap - used.get(ch, 0) for ch, cap in zip(channels, caps, strict=True)]
        wide = wide.join(taken.select("customer_id"), on="customer_id", how="left_anti").localCheckpoint()
    offers = [F.when(F.col(f"u{i}") == 0, F.col(f"v{i}")) if caps[i] > 0 else F.lit(None).cast("double") for i in range(k)]
    # n0 counts the offers before urgent messages took their customers: an upper bound, so a channel found
    # loose here surely is
    second = tier(wide, offers, caps, [n[f"n0_{i}"] > caps[i] for i in range(k)], passes, channels, log)
    taken = second if taken is None else taken.unionByName(second)
    return taken.join(best, on=["customer_id", "channel"]).select(*COLS[:4])
