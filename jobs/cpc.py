"""CPC scoring: every customer's best customer-product-channel offers for the day -> ``gold.cpc_offers``.

Expected value of offering product p to customer u through channel c:

    EV = fit(u, p) * fit(p, c) * fit(u, c) * value(p) - cost(c)

Per customer and product the best reachable channel is taken (cheap, passive channels win ties because
they cost less: the brief's "passive before active, low cost before high cost"); the customer's offers are
ranked by EV and the top ``TOP_N`` kept. All of it is column expressions on one row per customer (an array
of candidate structs, sorted and sliced), so it needs no shuffle and scales with the customer count.

Never offered: customers whose tier forbids marketing (open complaint, high-frequency caller), customers
who opted out of all marketing, products outside the customer's lifecycle stage (none in onboarding but the
welcome guide), and products already held.
"""

from __future__ import annotations

import datetime as dt
import time

from jobs import lake
from jobs.config import Paths
from jobs.tags import load_catalogue
from models import rules

TOP_N = 3


def score(frame, products, channels, categories, top_n: int = TOP_N):
    """Pure transform: tags joined with segments -> one row per customer offer (rank 1 = best)."""
    from pyspark.sql import functions as F

    eligible = F.coalesce(F.col("marketing_allowed"), F.lit(False)) & ~F.coalesce(F.col("cp_optout_all"), F.lit(True))
    # Pass 1: every fit once, as a column (so the candidate expressions below reference, not repeat, them).
    fits = frame.where(eligible).select(
        "customer_id", "snapshot_date", "lifecycle_stage", "service_tier",
        *[rules.customer_product_fit(p, frame.columns).alias(f"_cp_{p.id}") for p in products],
        *[rules.customer_channel_fit(c).alias(f"_cc_{c.id}") for c in channels],
    )
    by_id = {c.id: c for c in channels}
    candidates = []
    for p in products:
        fit_cp = F.col(f"_cp_{p.id}")
        per_channel = []
        for ch_id, fit_pc in categories[p.category].items():
            c, fit_cc = by_id[ch_id], F.col(f"_cc_{ch_id}")
            ev = fit_cp * F.lit(fit_pc) * fit_cc * F.lit(p.value) - F.lit(c.cost)
            per_channel.append(
                F.when(fit_cc > 0, F.struct(
                    ev.alias("expected_value"), F.lit(-c.cost).alias("neg_cost"), F.lit(ch_id).alias("channel"),
                    F.lit(c.kind).alias("channel_kind"), F.lit(fit_pc).alias("fit_product_channel"),
                    fit_cc.alias("fit_customer_channel"),
                ))
            )
        best = F.greatest(*per_channel)
        candidates.append(
            F.when((fit_cp > 0) & best.isNotNull() & (best["expected_value"] > 0), F.struct(
                best["expected_value"].alias("expected_value"), F.lit(p.id).alias("product_id"),
                F.lit(p.category).alias("category"), best["channel"].alias("channel"),
                best["channel_kind"].alias("channel_kind"), fit_cp.alias("fit_customer_product"),
                best["fit_product_channel"].alias("fit_product_channel"),
                best["fit_customer_channel"].alias("fit_customer_channel"),
            ))
        )
    offers = F.slice(F.sort_array(F.array_compact(F.array(*candidates)), asc=False), 1, top_n)
    ranked = fits.select(
        "customer_id", "snapshot_date", "lifecycle_stage", "service_tier",
        F.posexplode(offers).alias("_pos", "o"),
    )
    return ranked.select(
        "customer_id", "snapshot_date", (F.col("_pos") + 1).alias("rank"), "o.product_id", "o.category", "o.channel",
        "o.channel_kind", F.round("o.expected_value", 4).alias("expected_value"),
        F.round("o.fit_customer_product", 4).alias("fit_customer_product"),
        F.round("o.fit_product_channel", 4).alias("fit_product_channel"),
        F.round("o.fit_customer_channel", 4).alias("fit_customer_channel"),
        "lifecycle_stage", "service_tier",
        F.format_string(
            "stage %s; product fit %.2f; %s carries %s at %.2f; customer fit to %s %.2f",
            "lifecycle_stage", "o.fit_customer_product", "o.channel", "o.category", "o.fit_product_channel",
            "o.channel", "o.fit_customer_channel",
        ).alias("reasons"),
    )


def inputs(spark, paths: Paths, day: dt.date, products=()):
    """Tags + segments (+ the propensity deciles of the models the products name, when scored that day)."""
    from jobs import propensity

    cond = f"snapshot_date = '{day.isoformat()}'"
    tags = lake.read(spark, paths, "gold.customer_tags").where(cond)
    seg = lake.read(spark, paths, "gold.customer_segment").where(cond).drop("snapshot_date")
    frame = tags.join(seg, on="customer_id", how="inner")
    models = sorted({p.propensity for p in products if p.propensity})
    scores = propensity.wide(spark, paths, day, models) if models else None
    return frame if scores is None else frame.join(scores, on="customer_id", how="left")


def run(spark, paths: Paths, day: dt.date) -> dict[str, int]:
    t0 = time.time()
    products, channels, categories = rules.load(set(load_catalogue().ids) | {"lifecycle_stage", "service_tier"})
    offers = score(inputs(spark, paths, day, products), products, channels, categories)
    lake.replace(offers, paths, "gold.cpc_offers", f"snapshot_date = '{day.isoformat()}'")
    written = lake.read(spark, paths, "gold.cpc_offers").where(f"snapshot_date = '{day.isoformat()}'")
    n = written.count()
    customers = written.where("rank = 1").count()
    print(f"score {day}: {n} offers for {customers} customers -> gold.cpc_offers ({time.time() - t0:.1f}s)", flush=True)
    return {"offers": n, "customers": customers}
