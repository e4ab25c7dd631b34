"""The priced assignment of active contacts under capacity (jobs.stages.cpc.pricing, its Spark twin
jobs.stages.cpc.assign): on known-answer cases and random instances, against the exact optimum (the
transportation linear programme, integral) and against deferred acceptance (the former method, written here in
pure Python as jobs.stages.cpc.decide.assign runs it on Spark); every policy guarantee; the Spark version equals
the reference, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.sparse import lil_matrix

from jobs.platform.config import business
from jobs.platform.errors import ConfigError
from jobs.stages.cpc import campaigns, pricing

PASSES = 10  # conf/policy.yaml assignment_passes
SCHEMA = ("customer_id string, campaign_id string, product_id string, channel string, urgent boolean, "
          "expected_value double, cost double, priority int")


def rows_of(cases):
    """(customer, channel, value[, urgent]) -> candidate dicts, as tests/test_policy.py::_assign builds them."""
    return [dict(zip(pricing.FIELDS, (r[0], "camp", "P", r[1], len(r) > 3 and r[3], r[2], 0.01, 1), strict=True)) for r in cases]


def deferred_acceptance(rows, capacity, rounds=30):
    """decide.assign in pure Python: free customers propose their best candidate on a channel that has not
    refused them; each channel keeps urgent, then highest value, up to capacity (ties: customer id)."""
    mine: dict[str, list] = {}
    for r in sorted(rows, key=pricing.order_key):
        mine.setdefault(r["customer_id"], []).append(r)
    held: dict[str, list] = {}
    holding, refused = set(), set()
    for _ in range(rounds):
        proposals: dict[str, list] = {}
        for cust, rs in mine.items():
            pick = None if cust in holding else next((r for r in rs if (cust, r["channel"]) not in refused), None)
            if pick:
                proposals.setdefault(pick["channel"], []).append(pick)
        if not proposals:
            break
        for ch, new in proposals.items():
            pool = sorted(held.get(ch, []) + new, key=lambda r: (not r["urgent"], -r["expected_value"], r["customer_id"]))
            held[ch] = pool[: int(capacity.get(ch, 0))]
            holding |= {r["customer_id"] for r in held[ch]}
            for r in pool[len(held[ch]):]:
                refused.add((r["customer_id"], ch))
                holding.discard(r["customer_id"])
    return {(r["customer_id"], r["campaign_id"], r["product_id"], r["channel"]) for rs in held.values() for r in rs}


def optimum(rows, capacity) -> float:
    """The largest total expected value under capacity and one contact per customer (linear programme)."""
    best = pricing.prune(rows)
    keys = sorted(best)
    custs = {c: i for i, c in enumerate(sorted({k[0] for k in keys}))}
    chans = {c: i for i, c in enumerate(sorted({k[1] for k in keys}))}
    a = lil_matrix((len(custs) + len(chans), len(keys)))
    for j, (cust, ch) in enumerate(keys):
        a[custs[cust], j] = 1
        a[len(custs) + chans[ch], j] = 1
    bound = [1] * len(custs) + [int(capacity.get(ch, 0)) for ch in chans]
    value = np.array([best[k]["expected_value"] for k in keys])
    res = linprog(-value, A_ub=a.tocsr(), b_ub=bound, bounds=(0, 1), method="highs")
    assert res.status == 0
    return -res.fun


def total(rows, got) -> float:
    ev = {(r["customer_id"], r["campaign_id"], r["product_id"], r["channel"]): r["expected_value"] for r in rows}
    return sum(ev[g] for g in got)


def instance(seed, n=200, k=4, urgent=0.0, decimals=4):
    """``n`` customers x ``k`` channels, 0-2 campaigns a channel, values growing with the channel, capacities
    5-30% of the customers; ``urgent``: share of urgent candidates; few ``decimals`` make ties."""
    rng = np.random.default_rng(seed)
    chans = [f"ch{j}" for j in range(k)]
    rows = []
    for i in range(n):
        for j, ch in enumerate(chans):
            for camp in range(rng.integers(0, 3) if rng.random() < 0.6 else 0):
                rows.append(dict(customer_id=f"c{i:04d}", campaign_id=f"k{camp}", product_id=f"p{j}", channel=ch,
                                 urgent=bool(rng.random() < urgent), expected_value=round(float(rng.gamma(2.0, 1.0 + j)), decimals) + 0.001,
                                 cost=0.01 * j, priority=1))
    return rows, {ch: int(rng.integers(n // 20, n * 3 // 10)) for ch in chans}


def check_rules(rows, capacity, got):
    """No channel over capacity; one contact per customer; urgent first; no room left that a customer without a
    contact could take."""
    chans = [g[3] for g in got]
    assert all(chans.count(ch) <= capacity.get(ch, 0) for ch in set(chans))
    reached = [g[0] for g in got]
    assert len(reached) == len(set(reached))
    best = pricing.prune(rows)
    urgent_on = {ch: [g for g in got if g[3] == ch and best[(g[0], ch)]["urgent"]] for ch in set(chans)}
    for (cust, ch), r in best.items():
        if r["urgent"] and not any(g[0] == cust and best[(cust, g[3])]["urgent"] for g in got):
            assert len(urgent_on.get(ch, [])) == capacity.get(ch, 0), f"{cust}'s urgent message on {ch} left out"
        if cust not in reached and r["expected_value"] > 0:
            assert chans.count(ch) == capacity.get(ch, 0), f"room left on {ch} for {cust}"


KNOWN = [  # tests/test_policy.py: the three known-answer cases of deferred acceptance
    ([("A", "sms", 9.0), ("A", "wechat", 1.0), ("B", "sms", 8.0), ("C", "sms", 7.0), ("C", "wechat", 3.0),
      ("D", "wechat", 5.0), ("E", "sms", 6.0)], {"sms": 2, "wechat": 1}, {("A", "sms"), ("B", "sms"), ("D", "wechat")}),
    ([("A", "sms", 9.0), ("A", "wechat", 1.0), ("B", "sms", 8.0), ("C", "sms", 7.0), ("C", "wechat", 3.0),
      ("D", "wechat", 5.0), ("E", "sms", 6.0)], {"sms": 2, "wechat": 2},
     {("A", "sms"), ("B", "sms"), ("D", "wechat"), ("C", "wechat")}),
    ([("L1", "sms", 0.1), ("L2", "sms", 0.1), ("X", "call", 10.0), ("X", "sms", 5.0), ("Y", "call", 12.0)],
     {"sms": 2, "call": 1}, {("Y", "call"), ("X", "sms"), ("L1", "sms")}),
    ([("U", "sms", 1.0, True), ("V", "sms", 9.0), ("W", "wechat", 0.5, True), ("W", "email", 50.0)],
     {"sms": 1, "wechat": 5, "email": 5}, {("U", "sms"), ("W", "wechat")}),
    # Urgent messages take all the room: no offer goes out.
    ([("U", "sms", 1.0, True), ("V", "sms", 9.0), ("V", "wechat", 2.0), ("T", "wechat", 0.2, True)],
     {"sms": 1, "wechat": 1}, {("U", "sms"), ("T", "wechat")}),
    # Deferred acceptance gives SMS to A (10 > 9.5) and leaves B out (10 in all); prices send A to WeChat (18.5).
    ([("A", "sms", 10.0), ("A", "wechat", 9.0), ("B", "sms", 9.5)], {"sms": 1, "wechat": 1}, {("A", "wechat"), ("B", "sms")}),
]


@pytest.mark.parametrize(("cases", "capacity", "expected"), KNOWN)
def test_priced_reference_on_known_answers(cases, capacity, expected):
    rows = rows_of(cases)
    got = pricing.assign_priced(rows, capacity, PASSES)
    assert {(g[0], g[3]) for g in got} == expected
    assert total(rows, got) >= total(rows, deferred_acceptance(rows, capacity)) - 1e-9
    if not any(len(c) > 3 for c in cases):
        assert total(rows, got) == pytest.approx(optimum(rows, capacity))
    check_rules(rows, capacity, got)


def test_deferred_acceptance_in_python_gives_the_known_answers_of_decide_assign():
    for cases, capacity, expected in KNOWN[:4]:
        assert {(g[0], g[3]) for g in deferred_acceptance(rows_of(cases), capacity)} == expected


def test_priced_reference_on_random_instances_is_near_optimal_and_never_below_deferred_acceptance():
    to_opt, to_da = [], []
    for seed in range(60):
        rows, capacity = instance(seed)
        got = pricing.assign_priced(rows, capacity, PASSES)
        check_rules(rows, capacity, got)
        priced, da, best = total(rows, got), total(rows, deferred_acceptance(rows, capacity)), optimum(rows, capacity)
        assert priced >= da - 1e-9, f"seed {seed}: priced {priced} < deferred acceptance {da}"
        assert priced >= 0.995 * best, f"seed {seed}: priced {priced} vs optimum {best}"
        to_opt.append(priced / best)
        to_da.append(priced / da)
    assert np.mean(to_opt) > 0.999 and np.mean(to_da) > 1.005


def test_priced_reference_with_urgent_messages_and_ties_keeps_every_rule():
    for seed in range(30):
        rows, capacity = instance(seed, n=120, urgent=0.15, decimals=0)
        got = pricing.assign_priced(rows, capacity, PASSES)
        check_rules(rows, capacity, got)
        assert got == pricing.assign_priced(list(reversed(rows)), capacity, PASSES)  # deterministic, whatever the order


def test_more_passes_settle_the_prices_at_the_optimum():
    for seed in range(10):
        rows, capacity = instance(seed)
        assert total(rows, pricing.assign_priced(rows, capacity, 60)) >= 0.999 * optimum(rows, capacity)


def test_a_single_pass_and_edge_cases_keep_the_rules():
    rows, capacity = instance(3, n=80)
    check_rules(rows, capacity, pricing.assign_priced(rows, capacity, 1))
    assert pricing.assign_priced([], {"sms": 3}, PASSES) == set()
    assert pricing.assign_priced(rows_of([("A", "sms", 1.0)]), {"sms": 0, "wechat": 2}, PASSES) == set()
    assert pricing.assign_priced(rows_of([("A", "sms", 1.0)]), {}, PASSES) == set()


def test_policy_names_the_assignment_and_refuses_an_unknown_one():
    policy = campaigns.load_policy()
    assert (policy.assignment, policy.assignment_passes) == ("priced", PASSES)
    raw = dict(business("policy"))
    with pytest.raises(ConfigError, match="policy.yaml"):
        campaigns.load_policy({**raw, "assignment": "first_come"})
    with pytest.raises(ConfigError, match="policy.yaml"):
        campaigns.load_policy({**raw, "assignment_passes": 0})
    assert campaigns.load_policy({**raw, "assignment": "deferred_acceptance"}).assignment == "deferred_acceptance"


# ---- Spark: the twin equals the reference -------------------------------------------------------------------
def _spark_assign(spark, rows, capacity, passes=PASSES):
    from jobs.stages.cpc.assign import assign_priced

    df = spark.createDataFrame([tuple(r[f] for f in pricing.FIELDS) for r in rows], SCHEMA)
    got = assign_priced(df, capacity, passes, log=lambda *_: None).collect()
    return {(r["customer_id"], r["campaign_id"], r["product_id"], r["channel"]) for r in got}


def test_spark_priced_assignment_equals_the_reference_on_known_answers(spark):
    """The known-answer cases side by side in one Spark run (each case's customers and channels named apart, so
    no case shares a channel or a customer with another): the Spark twin equals the reference on the whole, and
    each case gets its known answer (the reference per case: test_priced_reference_on_known_answers)."""
    cases = [[(f"k{i}:{r[0]}", f"k{i}:{r[1]}", *r[2:]) for r in rows] for i, (rows, _, _) in enumerate(KNOWN)]
    capacity = {f"k{i}:{ch}": cap for i, (_, caps, _) in enumerate(KNOWN) for ch, cap in caps.items()}
    rows = rows_of([r for case in cases for r in case])
    got = _spark_assign(spark, rows, capacity)
    assert got == pricing.assign_priced(rows, capacity, PASSES)
    for i, (_, _, expected) in enumerate(KNOWN):
        assert {(g[0], g[3]) for g in got if g[0].startswith(f"k{i}:")} == {(f"k{i}:{c}", f"k{i}:{ch}") for c, ch in expected}, i


def test_spark_priced_assignment_equals_the_reference_on_a_random_instance(spark):
    rows, capacity = instance(7, n=100, k=4, urgent=0.1, decimals=1)  # ties, urgent messages, several passes
    capacity["ch3"] = 0  # a channel without room
    for passes in (1, PASSES):
        got = _spark_assign(spark, rows, capacity, passes)
        assert got == pricing.assign_priced(rows, capacity, passes)
        check_rules(rows, capacity, got)


# ---------------------------------------------------------------------------------------------------------
# The exploration priority (issue 22 review): a pre-step, within exploration_capacity_share of each channel
# ---------------------------------------------------------------------------------------------------------
def explorer_rows(seed=3, n=120, channels=("email", "sms_push", "wechat")):
    """Random candidates of n customers on the channels, a third of the customers explorers (``explore``), values
    negative to positive (explorers' candidates may have no value: they skipped the value rules)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        for ch in channels:
            if rng.random() < 0.7:
                for camp in ("a", "b"):
                    rows.append({**dict(zip(pricing.FIELDS, (f"c{i:03d}", camp, f"P{rng.integers(3)}", ch, False,
                                                             round(float(rng.normal(0.5, 1.0)), 3), 0.01, 1), strict=True)),
                                 "explore": i % 3 == 0})
    return rows


def test_the_exploration_quota_by_hand():
    """pricing.quota: the share of each channel's daily capacity, rounded down (0.29 x 100 is 29, not 28)."""
    assert pricing.quota({"sms_push": 935, "outbound_call": 37, "email": 1, "x": 100}, 0.10) == {
        "email": 0, "outbound_call": 3, "sms_push": 93, "x": 10}
    assert pricing.quota({"x": 100}, 0.29) == {"x": 29} and pricing.quota({"x": 7}, 0.0) == {"x": 0}
    assert pricing.quota({"x": 7}, 1.0) == {"x": 7}


def test_explorer_priority_keeps_each_channel_within_its_quota_one_candidate_per_explorer():
    """pricing.explorer_priority: only explorers' candidates, one per explorer (its best: order_key), at most the
    quota per channel, the same set for the same day and rows whatever their order, another draw another day; with
    room for all, every explorer gets its best candidate."""
    import datetime as dt

    rows, day = explorer_rows(), dt.date(2026, 11, 20)
    capacity = {"email": 30, "sms_push": 50, "wechat": 20}
    got = pricing.explorer_priority(rows, capacity, 0.1, day)
    per = {ch: sum(1 for k in got if k[3] == ch) for ch in capacity}
    assert per == {"email": 3, "sms_push": 5, "wechat": 2}, per
    explorers = {r["customer_id"] for r in rows if r["explore"]}
    assert {k[0] for k in got} <= explorers and len({k[0] for k in got}) == len(got)
    best = {c: min((r for r in rows if r["customer_id"] == c and r["explore"]), key=pricing.order_key) for c in explorers}
    assert all(k == tuple(best[k[0]][f] for f in ("customer_id", "campaign_id", "product_id", "channel")) for k in got)
    assert pricing.explorer_priority(list(reversed(rows)), capacity, 0.1, day) == got
    assert pricing.explorer_priority(rows, capacity, 0.1, day + dt.timedelta(days=1)) != got, "a new draw each day"
    everyone = pricing.explorer_priority(rows, {ch: 1000 for ch in capacity}, 1.0, day)
    assert {k[0] for k in everyone} == explorers
    assert pricing.explorer_priority(rows, capacity, 0.0, day) == set()


def test_spark_explorer_priority_equals_the_reference(spark):
    """decide.explorer_priority (Spark: a window per customer, a distributed top-k per channel) equals
    pricing.explorer_priority on the random candidates; None when no channel has a place."""
    import datetime as dt

    from jobs.stages.cpc.decide import explorer_priority

    rows, day = explorer_rows(), dt.date(2026, 11, 20)
    capacity = {"email": 30, "sms_push": 50, "wechat": 20}
    df = spark.createDataFrame([(*[r[f] for f in pricing.FIELDS], r["explore"], day) for r in rows],
                               SCHEMA + ", explore boolean, snapshot_date date")
    for share in (0.1, 0.5):
        got = {tuple(r) for r in explorer_priority(df, capacity, share).collect()}
        assert got == pricing.explorer_priority(rows, capacity, share, day) and got, share
    assert explorer_priority(df, capacity, 0.01) is None
