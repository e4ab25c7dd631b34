"""The priced assignment of active contacts under capacity, in pure Python and numpy: the reference that
:func:`jobs.stages.cpc.assign.assign_priced` (Spark) mirrors exactly, ties included.

The problem. Each customer has active candidates (campaign x product x channel) with an expected value; each
active channel has a daily capacity; a customer gets at most one active contact a day. Maximise the total
expected value of the contacts, urgent service messages first. With one contact per customer it is an
assignment (transportation) problem, whose linear programme is integral; its dual has one price per channel.

**Pruning.** Per (customer, channel) only the best candidate counts (urgent first, then expected value; ties:
lower cost, campaign priority, campaign, product): a customer takes at most one contact, so a channel that
takes them takes their best candidate there. The pruned rows are what :func:`jobs.stages.cpc.decide.decide`
reports as ``one_offer_a_day`` (their customer is reached) or ``capacity`` (not reached), as before.

**Two tiers.** Urgent service messages are assigned first, on the full capacities, among urgent candidates
only; offers then get what capacity is left, among the customers urgent messages did not reach. No offer ever
takes a place an urgent message could have had.

**Prices (one tier).** Channel c has a price ``lambda_c >= 0``. At given prices a customer takes the channel of
highest ``value - lambda`` if it is positive (ties: the first channel in sorted order). The customer's *margin*
for c is what c is worth to them over their best alternative: ``value_c - max(0, max_{c' != c} value_c' -
lambda_c')``; c is their choice when the margin exceeds lambda_c. A pass evaluates the prices: if no channel
is chosen by more customers than it holds, they are final; otherwise every channel's price moves, all at once,
halfway between the capacity-th and the (capacity + 1)-th largest margin of its customers (unchanged when it
has no more customers than places; never lowered): the price at which exactly ``capacity`` customers would
choose it were the other prices held. Starting from zero the prices only rise (a customer's margin for c
grows when the other channels get dearer) and settle at market-clearing prices, where each customer's choice
is an optimal assignment (complementary slackness of the dual: a channel with a positive price is full). At
most ``passes`` passes (``assignment_passes``); the prices of the last pass are kept.

**Repair and fill.** Each channel keeps, among the customers who chose it at the final prices, the
``capacity`` of highest expected value (value - price: the same order; ties: customer id): never more than
its capacity, whatever the passes reached. Then each channel in sorted order offers its room left to the
customers still without a contact who have a candidate of positive value on it, highest expected value first (ties: customer
id): no place stays empty while a customer without a contact could take it.

Guarantees: no channel over capacity; at most one contact per customer, on a candidate with positive value;
an urgent message left out had every channel it could use filled with urgent messages; no channel with room
left while a customer without a contact has a candidate on it; deterministic (ties by the sorted order of
channels and customer ids). When the prices settle within the passes the total expected value is the
optimum; on random instances 10 passes come within 0.2% of it (tests/test_assignment.py).
"""

from __future__ import annotations

import math

import numpy as np

from jobs.stages.cpc.campaigns import holdout_bucket

FIELDS = ("customer_id", "campaign_id", "product_id", "channel", "urgent", "expected_value", "cost", "priority")


def order_key(row: dict):
    """A candidate's rank among a customer's candidates (smaller first): the order of ``assign.candidate_order``."""
    return (not row["urgent"], -row["expected_value"], row["cost"], row["priority"], row["campaign_id"],
            row["product_id"], row["channel"])


def prune(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """(customer_id, channel) -> the customer's best candidate on the channel."""
    best: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = (row["customer_id"], row["channel"])
        if key not in best or order_key(row) < order_key(best[key]):
            best[key] = row
    return best


def margins(values: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Customers x channels: value - max(0, best value - price on another channel); -inf without a candidate."""
    surplus = values - prices
    out = np.full(values.shape, -np.inf)
    for c in range(values.shape[1]):
        others = np.delete(surplus, c, axis=1)
        alt = np.maximum(0.0, others.max(axis=1)) if others.shape[1] else np.zeros(len(values))
        has = np.isfinite(values[:, c])
        out[has, c] = values[has, c] - alt[has]
    return out


def new_price(old: float, last_in: float | None, first_out: float | None) -> float:
    """A channel's next price from the capacity-th largest margin (``last_in``) and the next one (``first_out``,
    None when no more customers than places): halfway between them, never below 0 nor the old price."""
    if first_out is None or last_in is None:
        return old
    return max(old, 0.0, (float(last_in) + float(first_out)) / 2)


def next_prices(values: np.ndarray, capacity: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """One pass: each channel's price moves between the capacity-th and the next largest margin of its customers
    at the current prices (:func:`new_price`), all channels at once."""
    m = margins(values, prices)
    new = prices.copy()
    for c in range(values.shape[1]):
        desc = np.sort(m[np.isfinite(values[:, c]), c])[::-1]
        k = int(capacity[c])
        if k > 0 and len(desc) > k:
            new[c] = new_price(float(prices[c]), float(desc[k - 1]), float(desc[k]))
    return new


def prices_for(values: np.ndarray, capacity: np.ndarray, passes: int) -> tuple[np.ndarray, int]:
    """The last prices evaluated in at most ``passes`` passes from zero, and the passes run. A pass evaluates
    the prices: it stops there when every channel is chosen by no more customers than it holds, or when no
    price would move; otherwise it moves them (:func:`next_prices`)."""
    prices = np.zeros(values.shape[1])
    for p in range(1, passes + 1):
        chosen = choices(values, prices)
        if (np.bincount(chosen[chosen >= 0], minlength=len(capacity)) <= capacity).all():
            return prices, p
        new = next_prices(values, capacity, prices)
        if p == passes or np.array_equal(new, prices):
            return prices, p
        prices = new
    return prices, passes


def choices(values: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Each customer's channel at the prices: highest value - price if positive (first channel on ties), else -1."""
    surplus = values - prices
    best = surplus.max(axis=1) if values.shape[1] else np.full(len(values), -np.inf)
    first = np.argmax(surplus == best[:, None], axis=1)
    return np.where(best > 0, first, -1)


def repair_and_fill(values: np.ndarray, capacity: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Customers -> channel index (-1: none). Rows are customers in id order. Each channel keeps its choosers
    of highest value (value - price: the same order) up to capacity (ties: customer id); then, channel by
    channel, room left goes to customers without a contact, positive values only, highest first (ties: customer id)."""
    n, k = values.shape
    chosen = choices(values, prices)
    got = np.full(n, -1)
    ids = np.arange(n)
    for c in range(k):
        mine = ids[chosen == c]
        keep = mine[np.lexsort((mine, -values[mine, c]))][: int(capacity[c])]
        got[keep] = c
    for c in range(k):
        room = int(capacity[c]) - int((got == c).sum())
        free = ids[(got == -1) & (values[:, c] > 0)]
        if room > 0 and len(free):
            got[free[np.lexsort((free, -values[free, c]))][:room]] = c
    return got


def tier(values: np.ndarray, capacity: np.ndarray, passes: int) -> tuple[np.ndarray, int]:
    """One tier: prices, then repair and fill. Returns customers -> channel index (-1: none), passes run."""
    values = np.where(capacity > 0, values, -np.inf)  # a channel without room takes nobody
    prices, ran = prices_for(values, capacity, passes)
    return repair_and_fill(values, capacity, prices), ran


def assign_priced(rows: list[dict], capacity: dict[str, int], passes: int) -> set[tuple[str, str, str, str]]:
    """Active candidates (dicts with ``FIELDS``) -> the contacts (customer_id, campaign_id, product_id, channel):
    urgent messages first, then offers on the capacity left, each tier by prices, repair and fill."""
    best = prune(rows)
    if not best:
        return set()
    customers = sorted({c for c, _ in best})
    channels = sorted({ch for _, ch in best})
    at = {c: i for i, c in enumerate(customers)}
    values = np.full((len(customers), len(channels)), -np.inf)
    urgent = np.zeros(values.shape, dtype=bool)
    for (cust, ch), row in best.items():
        values[at[cust], channels.index(ch)] = float(row["expected_value"])
        urgent[at[cust], channels.index(ch)] = bool(row["urgent"])
    cap = np.array([int(capacity.get(ch, 0)) for ch in channels])
    first, _ = tier(np.where(urgent, values, -np.inf), cap, passes)
    left = cap - np.bincount(first[first >= 0], minlength=len(channels))
    rest = np.where(~urgent & (first == -1)[:, None], values, -np.inf)
    second, _ = tier(rest, left, passes)
    got = np.where(first >= 0, first, second)
    out = set()
    for i, c in enumerate(got):
        if c >= 0:
            row = best[(customers[i], channels[c])]
            out.add((row["customer_id"], row["campaign_id"], row["product_id"], row["channel"]))
    return out


# ---------------------------------------------------------------------------------------------------------
# The exploration priority: a pre-step of the assignment (jobs.stages.cpc.decide.explorer_priority is the Spark twin)
# ---------------------------------------------------------------------------------------------------------
# The salt of the day's draw of which explorers get the priority (independent of the holdout's draw).
EXPLORE_SALT = "cpc-explore-priority"


def quota(capacity: dict[str, int], share: float) -> dict[str, int]:
    """Per active channel, the places the exploration priority may take: ``share`` of its daily capacity, rounded
    down (``exploration_capacity_share`` in conf/policy.yaml)."""
    return {ch: int(math.floor(float(share) * int(cap) + 1e-9)) for ch, cap in sorted(capacity.items())}


def explorer_priority(rows: list[dict], capacity: dict[str, int], share: float, day) -> set[tuple[str, str, str, str]]:
    """The explorers' candidates that get the exploration priority (they skip the value rules and are assigned right
    after urgent messages): each explorer's best active candidate (``explore`` rows; :func:`order_key`), then per
    channel at most its :func:`quota`, drawn at random by ``holdout_bucket(EXPLORE_SALT, day, customer)`` (ties:
    customer id; a new draw each day, the same on a rerun). An explorer whose best candidate's channel is full gets
    no priority: its candidates compete like everyone else's. Returns (customer_id, campaign_id, product_id, channel)."""
    best: dict[str, dict] = {}
    for row in rows:
        if row.get("explore") and (row["customer_id"] not in best or order_key(row) < order_key(best[row["customer_id"]])):
            best[row["customer_id"]] = row
    out = set()
    for ch, n in quota(capacity, share).items():
        mine = sorted((r for r in best.values() if r["channel"] == ch),
                      key=lambda r: (holdout_bucket(EXPLORE_SALT, day.isoformat(), r["customer_id"]), r["customer_id"]))
        out |= {(r["customer_id"], r["campaign_id"], r["product_id"], r["channel"]) for r in mine[:n]}
    return out
