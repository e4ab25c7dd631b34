"""How much of the oracle's incremental value any targeting from the files can reach (issue 22's ceiling).

Issue 22 asks CPC to reach at least 70% of an oracle's incremental value at equal volume, and 10x a blind blast.
The oracle knows each customer's true incremental effect. In the simulator the response type of each customer x
product family (persuadable, sure thing, lost cause; ``type_draw``) and the sleeping-dog flag (``dog_draw``) are
drawn at random, independently of every other trait (simulator/generate.py ``_churn_paths_and_response_types``).
This benchmark measures, from a storage root's hidden truth, how far the best ranking that does not know those
flags can get, next to the oracle and to random contact. No Spark: numpy and pandas over the truth and the
operator's files.

**The per-pair effect.** For each customer x product family (``simulator.generate.RESPONSE_FAMILIES``) the effect
is that of the pair's best single contact on a reference day: the decision date is the simulation's last day
(``end_date``; sent the day after), the contact offers one product of the family through one outbound channel
that carries the product's category (conf/products.yaml ``categories``) and can reach the customer (WeChat and
e-mail only for customers who have them), with no earlier contact in the fatigue window. Its true incremental
effect is ``simulator.responder.World.uplift`` (= ``World.p_convert``: a contact changes nobody's unprompted
orders) of that contact:

    P(delivered | channel) x P(opened | channel) x attention x min(0.95, accept rate(channel)
    x (interest / 0.3)^2 x price factor x churn factor) x [persuadable for the family and not a sleeping dog]
    x [alive the day after] x [product not held]

with attention from the customer's hidden channel preference, interest the hidden affinity of the product's
category on the decision day (handset intent, heavy data use, contract end for the renewal bonus), the price
factor from the hidden price sensitivity and the product's price, the churn factor (``churner_accept_factor``)
for a churner whose intent has started, holdings from the orders files delivered up to the decision day, and a
fatigue factor of 1. Of the (product, channel) contacts the pair's is the one with the highest effect when the
indicator is set to 1 (``base``) for conversions, and the highest ``base`` x the product's ``value``
(conf/products.yaml, one month's margin of an acceptance) for value. Pairs: every family for every customer
who is alive on the decision day and the next and has not opted out of all marketing (the headline's pool,
``simulator.headline``).

The truth's ``uplift_<family>`` is not that effect: it is the factor (interest / 0.3)^2 x the same indicator on
the last day, without the channel (delivery, opening, attention, accept rate, the 0.95 cap), the product (price
factor, value, holdings), the churn factor and aliveness (``simulator.generate.incremental_interest``). It is
checked equal to the factor computed from the redrawn world, as are ``response_<family>`` and ``sleeping_dog``:
the world (``World.load``) is redrawn from the seed in ``truth/simulation.json``, which gives the hidden traits the
truth file does not hold (contract end, WeChat, e-mail).

**Rankings**, per family and over all pairs pooled:

- ``oracle``: by the true effect (ties: fewest expected closures first, so it never takes a sleeping dog while a
  pair without harm is left);
- ``observable``: the observable ideal, by the expected effect given everything about the customer except the
  hidden flags, i.e. ``base`` x share_persuadable x (1 - share_sleeping_dog) of the profile (the flags are drawn
  independently of everything, with those shares). It knows the hidden affinities, preferences and holdings
  exactly: an upper bound on any model of the files that cannot tell the flags apart;
- ``observable_knows_sure_things``: the same, also knowing which pairs are sure things (their expected effect is
  0, the others' ``base`` x share_persuadable / (share_persuadable + share_lost_cause) x (1 - share_sleeping_dog)).
  Sure things buy unprompted, so the orders files reveal many of them; this ranking knows all of them, and so
  bounds what a model can learn from the orders (before any contact, persuadables, lost causes and dogs leave the
  same traces: none). Where a closed loop ran, its responses reveal a little more (an acceptance: a persuadable
  who is not a dog; an opt-out or a provoked closure is likelier for a dog), which no ranking here uses: the
  accepted offers in the files and the closures contacts provoked are counted beside the figures;
- ``random``: contacts at random (its expectation, exact).

**Figures**: the share of all the true incremental conversions (value) the top 20% of pairs hold (Criteo's
benchmark: 77.7% for a real model on real data); at volumes of 1%, 5% and 20% of pairs, the incremental
conversions (value) captured, per 1,000 contacts, as a share of the oracle's at the same volume, and over
random's; the expected closures (P(delivered) x ``World.dog_leave_prob`` of the product for a sleeping dog,
``World.harm``) and
opt-outs caused per 1,000 contacts, each contact counted on its own; and, for value, the net value per 1,000
contacts (value - closures x ``World.lost_value``, ``lost_customer_months`` of the plan fee, an assumption of
the profile table); for net value, each ranking also by its expected net value (the observable ideal's: its
expected value - the dog share's expected closures x the lost value), with the number of pairs where that is
positive. Ties at a cut are shared out (the expected figure under random tie-breaking).

With ``--channel CH`` (repeatable), the pooled figures again with every contact through that one channel, over
the customers it reaches and the families it carries (as the headline compares at equal volume per channel).

    .venv/bin/python bench/uplift_ceiling.py --root var/bench/model_profiles --root var --channel sms_push

Writes ``--out`` (default ``bench/results/uplift_ceiling.json``) with the commit and a markdown table beside it
(``.md``). ``--root`` is a storage root (``truth/simulation.json``) or a folder of them (one per profile, as
``bench/model_profiles.py`` writes); a root whose truth or last landing day changed less than ``--min-age``
seconds ago is skipped (it may still be being written).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULT = Path(__file__).resolve().parent / "results" / "uplift_ceiling.json"
VOLUMES = (0.01, 0.05, 0.20)
TOP = 0.20
RANKINGS = ("oracle", "observable", "observable_knows_sure_things", "random")
LABELS = {"oracle": "oracle (true effect)", "observable": "observable ideal",
          "observable_knows_sure_things": "observable ideal + knows sure things", "random": "random"}
MEASURES = ("conversions", "value", "net_value")
CONTACTS = {"conversions": "conversions", "value": "value", "net_value": "value"}  # whose chosen contact a measure scores
CONTACT_KINDS = ("conversions", "value")  # each pair's best contact by conversions and by value
CRITEO_TOP20 = 0.777  # Diemert et al.: the top 20% by predicted uplift held 77.7% of the incremental conversions


# ---------------------------------------------------------------------------------------------------------
# The figures of one set of pairs (pure)
# ---------------------------------------------------------------------------------------------------------
def top_sums(keys: list[np.ndarray], values: dict[str, np.ndarray], k: float) -> dict[str, float]:
    """The sums of ``values`` over the ``k`` pairs (``k`` may be fractional) ranked first by ``keys`` (the first
    key first, each descending); pairs equal on every key are a tie group, and the group that the cut splits
    contributes its sums x the share of it taken (the expectation under random tie-breaking)."""
    n = len(keys[0])
    k = min(max(float(k), 0.0), float(n))
    if n == 0 or k == 0:
        return {name: 0.0 for name in values}
    order = np.lexsort([-np.asarray(key, dtype=float) for key in reversed(keys)])
    sorted_keys = [np.asarray(key, dtype=float)[order] for key in keys]
    new = np.ones(n, dtype=bool)
    new[1:] = np.logical_or.reduce([s[1:] != s[:-1] for s in sorted_keys])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    g = min(np.searchsorted(starts, k, side="right") - 1, len(starts) - 1)  # the group holding the cut
    out = {}
    for name, v in values.items():
        cum = np.concatenate([[0.0], np.cumsum(np.asarray(v, dtype=float)[order])])
        size = ends[g] - starts[g]
        out[name] = float(cum[starts[g]] + (cum[ends[g]] - cum[starts[g]]) * min(k - starts[g], size) / size)
    return out


def shares(params) -> dict[str, float]:
    """The profile's shares the observable rankings multiply by (response types and dogs are drawn with them):
    ``q`` = share_persuadable x (1 - share_sleeping_dog); ``q_not_sure`` = the same among pairs that are not sure
    things, share_persuadable / (share_persuadable + share_lost_cause) x (1 - share_sleeping_dog)."""
    persuadable, lost = float(params.share_persuadable), float(params.share_lost_cause)
    dog = float(params.share_sleeping_dog)
    return {"share_persuadable": persuadable, "share_sure_thing": float(params.share_sure_thing),
            "share_lost_cause": lost, "share_sleeping_dog": dog,
            "dog_contact_churn_prob": float(params.dog_contact_churn_prob),
            "dog_contact_families": params.dog_contact_families,
            "dog_other_contact_churn_prob": float(params.dog_other_contact_churn_prob),
            "q": persuadable * (1 - dog),
            "q_not_sure": (persuadable / (persuadable + lost) if persuadable + lost > 0 else 0.0) * (1 - dog)}


def arrays(pairs: pd.DataFrame, measure: str, q: float, q_not_sure: float) -> tuple[np.ndarray, dict, dict]:
    """One measure's true effect per pair, each ranking's keys (first key first: its expected effect, then minus
    its expected harm as a tie-break; for net value the harm is in the first key) and the harm of the pair's
    contact (``closure``, ``optout``; ``lost``: closures x the lost value).

    The oracle's harm is the true one; the observable rankings expect ``harm_expected_<contact>`` (the dog share's
    closures, the same for every pair a channel contacts) when given, else none."""
    contact = CONTACTS[measure]
    eff = pairs[f"effect_{contact}"].to_numpy(float)
    base = pairs[f"base_{contact}"].to_numpy(float)
    closure = pairs[f"closure_{contact}"].to_numpy(float)
    col = f"harm_expected_{contact}"
    expected = pairs[col].to_numpy(float) if col in pairs else np.zeros(len(pairs))
    lost = pairs["lost_value"].to_numpy(float)
    sure = pairs["sure"].to_numpy(bool)
    observable, knows_sure = q * base, np.where(sure, 0.0, q_not_sure * base)
    if measure == "conversions":
        harm, expected_harm = closure, expected
    else:
        harm, expected_harm = closure * lost, expected * lost
    if measure == "net_value":
        eff = eff - harm
        keys = {"oracle": [eff], "observable": [observable - expected_harm],
                "observable_knows_sure_things": [knows_sure - expected_harm]}
    else:
        keys = {"oracle": [eff, -harm], "observable": [observable, -expected_harm],
                "observable_knows_sure_things": [knows_sure, -expected_harm]}
    values = {"effect": eff, "closure": closure, "optout": pairs[f"optout_{contact}"].to_numpy(float), "lost": closure * lost}
    return eff, keys, values


def measure_set(pairs: pd.DataFrame, q: float, q_not_sure: float) -> dict:
    """Every figure of one set of pairs (one family, or all pooled). ``pairs`` has, per contact c (conversions,
    value: the pair's best contact for each), ``effect_c`` (true effect; for value x the product's value),
    ``base_c`` (the same with the type indicator set to 1), ``closure_c`` and ``optout_c`` (the expected
    closures and opt-outs that contact causes) and optionally ``harm_expected_c`` (the closures the observable
    rankings expect); ``sure`` (a sure thing) and ``lost_value`` (what a closure costs)."""
    n = len(pairs)
    out: dict = {"pairs": n}
    if n == 0:
        return out
    out["responders"] = float((pairs["effect_conversions"].to_numpy(float) > 0).mean())
    for m in MEASURES:
        eff, keys, values = arrays(pairs, m, q, q_not_sure)
        total = float(eff.sum())
        figs: dict = {"total": total, "per_1000_pairs": 1000 * total / n}
        for name in RANKINGS:
            def at(k: float, name=name, keys=keys, values=values) -> dict[str, float]:
                if name == "random":  # the expectation
                    return {v: float(a.sum()) * k / n for v, a in values.items()}
                return top_sums(keys[name], values, k)

            top = at(TOP * n)
            r: dict = {"top20_share": top["effect"] / total if total > 0 else None, "at": {}}
            for v in VOLUMES:
                s, contacts = at(v * n), v * n
                row = {"captured": s["effect"], "per_1000": 1000 * s["effect"] / contacts,
                       "closures_per_1000": 1000 * s["closure"] / contacts, "optouts_per_1000": 1000 * s["optout"] / contacts}
                if m == "value":
                    row["net_value_per_1000"] = 1000 * (s["effect"] - s["lost"]) / contacts
                r["at"][f"{v:g}"] = row
            figs[name] = r
        for name in RANKINGS:
            for v in VOLUMES:
                row = figs[name]["at"][f"{v:g}"]
                oracle, rnd = figs["oracle"]["at"][f"{v:g}"]["captured"], figs["random"]["at"][f"{v:g}"]["captured"]
                row["of_oracle"] = row["captured"] / oracle if oracle > 0 else None
                row["over_random"] = row["captured"] / rnd if rnd > 0 else None
        out[m] = figs
    return out


# ---------------------------------------------------------------------------------------------------------
# The pairs of a storage root, from its truth and files
# ---------------------------------------------------------------------------------------------------------
def _check_truth(paths, world, spec) -> dict:
    """The truth file against the redrawn world: response types, sleeping dogs and ``uplift_<family>``."""
    from simulator.generate import RESPONSE_FAMILIES, RESPONSE_TYPES, incremental_interest

    truth = pd.read_parquet(paths.truth / "customers.parquet")
    c = world.c
    if list(truth["customer_id"]) != list(c["customer_id"]):
        raise ValueError(f"{paths.root}: truth/customers.parquet's customers differ from the world redrawn from the seed")
    if not np.array_equal(truth["sleeping_dog"].to_numpy(bool), c["sleeping_dog"]):
        raise ValueError(f"{paths.root}: truth's sleeping_dog differs from the redrawn world")
    for j, fam in enumerate(RESPONSE_FAMILIES):
        if not np.array_equal(truth[f"response_{fam}"].to_numpy(str), np.array(RESPONSE_TYPES)[c["response"][:, j]]):
            raise ValueError(f"{paths.root}: truth's response_{fam} differs from the redrawn world")
        factor = incremental_interest(c, fam, spec.days - 1, spec.params)
        if not np.allclose(truth[f"uplift_{fam}"].to_numpy(float), factor, rtol=1e-12, atol=0):
            raise ValueError(f"{paths.root}: truth's uplift_{fam} differs from (interest / 0.3)^2 x the type indicator")
    return {"customers": len(truth), "checked": ["customer_id", "sleeping_dog", *(f"response_{f}" for f in RESPONSE_FAMILIES),
                                                 *(f"uplift_{f}" for f in RESPONSE_FAMILIES)]}


def _accepted(paths, spec) -> int:
    """Offers accepted in the root's responses files (a closed loop's contacts: each reveals a persuadable)."""
    from schemas import FILES
    from simulator.responder import read_delivery

    n = 0
    for d in spec.dates():
        f = paths.landing_day(d) / FILES["responses"].file_name(d)
        if f.exists():
            t = read_delivery(f, "responses")
            n += int(np.sum(np.array(t["event"].to_pylist(), dtype=object) == "accepted"))
    return n


def _family_pairs(ctx: dict, f: int, fam: str, combos: list[tuple[int, str]]) -> pd.DataFrame:
    """One family's pairs (:func:`root_pairs`): the base effect of each product x channel ``combos`` (checked to be
    the true effect over the persuadable-and-not-a-dog indicator), then each contact kind's best contact."""
    from simulator.generate import PERSUADABLE, SURE_THING

    world, idx, reach = ctx["world"], ctx["idx"], ctx["reach"]
    base = np.zeros((len(combos), len(idx)))
    responds = (world.c["response"][idx, f] == PERSUADABLE) & ~world.c["sleeping_dog"][idx]
    for k, (j, ch) in enumerate(combos):
        prod, chan = np.full(len(idx), j), np.full(len(idx), ch, dtype=object)
        b = ctx["world_all"].p_convert(idx, prod, chan, ctx["day"], ctx["held"])
        true = world.p_convert(idx, prod, chan, ctx["day"], ctx["held"])
        if not np.array_equal(true, b * responds):
            raise AssertionError(f"World.p_convert is not the indicator x the base effect for {fam}, {ch}")
        base[k] = np.where(reach[ch][idx], b, -1.0)  # a channel that cannot reach the customer is never chosen
    row = {"customer": idx, "family": fam, "sure": world.c["response"][idx, f] == SURE_THING,
           "persuadable": world.c["response"][idx, f] == PERSUADABLE, "dog": world.c["sleeping_dog"][idx],
           "lost_value": ctx["lost"]}
    for m in CONTACT_KINDS:
        row.update(_best_contact(ctx, m, base, combos))
    return pd.DataFrame(row)


def _best_contact(ctx: dict, m: str, base: np.ndarray, combos: list[tuple[int, str]]) -> dict:
    """The columns of contact kind ``m`` (by conversions or by value): each pair's best product and channel by the
    base effect, with its true effect, the harm the world draws for it and the harm expected from the shares."""
    from simulator.responder import DELIVER

    world, idx, value, day, held = ctx["world"], ctx["idx"], ctx["value"], ctx["day"], ctx["held"]
    weight = np.array([value[j] for j, _ in combos])[:, None] if m == "value" else 1.0
    best = np.argmax(base * weight, axis=0)
    prod = np.array([combos[k][0] for k in best])
    chan = np.array([combos[k][1] for k in best], dtype=object)
    b = np.maximum(base[best, np.arange(len(idx))], 0.0)
    true = np.zeros(len(idx))
    optouts, closures = np.zeros(len(idx)), np.zeros(len(idx))
    for k in np.unique(best):
        sel = best == k
        true[sel] = world.p_convert(idx[sel], prod[sel], chan[sel], day, held)
        optouts[sel], closures[sel] = world.harm(idx[sel], prod[sel], chan[sel], day, held)
    w = value[prod] if m == "value" else 1.0
    deliver = np.array([DELIVER[ch] for ch in chan])
    return {f"base_{m}": b * w, f"effect_{m}": true * w, f"closure_{m}": closures, f"optout_{m}": optouts,
            f"harm_expected_{m}": ctx["dog_share"] * deliver * world.dog_leave_prob(prod), f"channel_{m}": chan,
            f"product_{m}": np.array([world.products[j]["id"] for j in prod])}


def root_pairs(root: Path, channel: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Every (customer, family) pair of the root's reference day (the module's docstring) with its figures'
    columns, and what was checked and counted on the way; with ``channel``, contacts through that channel only
    (the families it does not carry left out)."""
    from jobs.platform.config import Paths, business
    from simulator.generate import PERSUADABLE, RESPONSE_FAMILIES, SimSpec
    from simulator.headline import _optouts, _reachable
    from simulator.responder import OUTBOUND, World, held_before

    paths = Paths(Path(root))
    spec = SimSpec.of(paths)
    world = World.load(spec, paths)
    info = {"root": str(root), "profile": spec.profile, "customers": spec.customers, "days": spec.days,
            "seed": spec.seed, "end_date": spec.end_date.isoformat(), "truth_check": _check_truth(paths, world, spec)}
    day = spec.end_date
    nxt = day + dt.timedelta(days=1)
    held = held_before(paths, world, nxt)
    optout = _optouts(paths, world, nxt)
    reach = {ch: _reachable(world, day, ch, optout) for ch in OUTBOUND}
    pool = reach["sms_push"]  # alive on the day and the next, not opted out of all marketing
    if channel is not None:
        pool = pool & reach[channel]  # (WeChat, e-mail: only the customers who have them)
    idx = np.flatnonzero(pool)
    info.update({"decision_date": day.isoformat(), "pool": len(idx), "held_pairs": int(held.sum()),
                 "accepted_offers_in_files": _accepted(paths, spec), "closed_by_contact": len(world.closed_by_contact)})
    # The same world with every pair persuadable and nobody a sleeping dog: the effect with the indicator at 1.
    c_all = dict(world.c)
    c_all["response"] = np.full_like(world.c["response"], PERSUADABLE)
    c_all["sleeping_dog"] = np.zeros_like(world.c["sleeping_dog"])
    world_all = World(spec, c_all, world.products, closed_by_contact=dict(world.closed_by_contact))
    cats = business("products")["categories"]
    value = np.array([float(p["value"]) for p in world.products])
    prof = world.params
    lost = world.lost_value(idx)
    ctx = {"world": world, "world_all": world_all, "idx": idx, "reach": reach, "held": held, "day": day,
           "value": value, "lost": lost, "dog_share": float(prof.share_sleeping_dog)}
    frames = []
    for f, fam in enumerate(RESPONSE_FAMILIES):
        combos = [(j, ch) for j, p in enumerate(world.products) if p["category"] == fam
                  for ch in OUTBOUND if ch in cats[fam] and channel in (None, ch)]
        if not combos:
            if channel is None:
                raise ValueError(f"no outbound channel carries family {fam}")
            continue
        frames.append(_family_pairs(ctx, f, fam, combos))
    return pd.concat(frames, ignore_index=True), info


def measure_root(root: Path, channels: tuple[str, ...] = ()) -> dict:
    """The figures of one root: the profile's shares, the pairs' make-up, every family's and the pooled figures;
    for each of ``channels``, the pooled figures with every contact through that channel (``by_channel``)."""
    from jobs.platform.config import Paths
    from simulator.generate import RESPONSE_FAMILIES, SimSpec

    t0 = time.time()
    pairs, info = root_pairs(root)
    sh = shares(SimSpec.of(Paths(Path(root))).params)
    info["shares"] = sh
    info["measured_shares"] = {"persuadable": float(pairs["persuadable"].mean()), "sure_thing": float(pairs["sure"].mean()),
                               "sleeping_dog_customers": float(pairs.drop_duplicates("customer")["dog"].mean()),
                               "persuadable_not_dog": float((pairs["persuadable"] & ~pairs["dog"]).mean())}
    info["channels_chosen"] = {m: pairs[f"channel_{m}"][pairs[f"base_{m}"] > 0].value_counts().to_dict() for m in CONTACT_KINDS}
    info["pooled"] = measure_set(pairs, sh["q"], sh["q_not_sure"])
    _, keys, _ = arrays(pairs, "net_value", sh["q"], sh["q_not_sure"])
    info["positive_expected_net_pairs"] = {name: int((keys[name][0] > 0).sum()) for name in keys if name != "oracle"}
    info["families"] = {fam: measure_set(pairs[pairs["family"] == fam], sh["q"], sh["q_not_sure"]) for fam in RESPONSE_FAMILIES}
    info["by_channel"] = {}
    for ch in channels:
        only, _ = root_pairs(root, ch)
        info["by_channel"][ch] = {"families": sorted(set(only["family"])), **measure_set(only, sh["q"], sh["q_not_sure"])}
    info["seconds"] = round(time.time() - t0, 1)
    return info


# ---------------------------------------------------------------------------------------------------------
# Roots, the table, the command
# ---------------------------------------------------------------------------------------------------------
def _newest_mtime(root: Path) -> float:
    """The newest modification time of the files this benchmark reads: truth/ and the last landing day."""
    files = [f for f in (root / "truth").iterdir() if f.is_file()]
    days = sorted(d for d in (root / "landing").iterdir() if d.is_dir()) if (root / "landing").is_dir() else []
    if days:
        files += [f for f in days[-1].iterdir() if f.is_file()]
    return max(f.stat().st_mtime for f in files)


def find_roots(paths: list[Path], min_age: float, now: float | None = None) -> tuple[list[Path], list[dict]]:
    """The storage roots to measure: each path that is one (``truth/simulation.json``), else its sub-folders that
    are, in name order; a root whose files changed less than ``min_age`` seconds ago is skipped (with the reason),
    as it may still be being written."""
    now = time.time() if now is None else now
    found, skipped = [], []
    for p in paths:
        p = Path(p)
        candidates = [p] if (p / "truth" / "simulation.json").exists() else sorted(
            d for d in (p.iterdir() if p.is_dir() else []) if (d / "truth" / "simulation.json").exists())
        if not candidates:
            skipped.append({"root": str(p), "reason": "no truth/simulation.json in it or in a sub-folder"})
        for c in candidates:
            age = now - _newest_mtime(c)
            if age < min_age:
                skipped.append({"root": str(c), "reason": f"files changed {age:.0f} s ago (< {min_age:g} s): may be being written"})
            else:
                found.append(c)
    return found, skipped


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, spec: str = ",.2f") -> str:
    return "-" if v is None else format(v, spec)


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}x"


def _breakdown_tables(r: dict, vols: list[str], vol_names: list[str]) -> list[str]:
    """:func:`markdown`'s tables of one root per family and, when measured, per channel alone."""
    from tabulate import tabulate

    lines = []
    head = ["family", "pairs with effect > 0", "oracle: top 20% holds", "observable: top 20% holds",
            *(f"observable of oracle @{v}" for v in vol_names), *(f"value: observable of oracle @{v}" for v in vol_names),
            *(f"observable over random @{v}" for v in vol_names)]
    rows = []
    for fam, f in r["families"].items():
        c, v_ = f["conversions"], f["value"]
        rows.append([fam, _pct(f["responders"]), _pct(c["oracle"]["top20_share"]), _pct(c["observable"]["top20_share"]),
                     *(_pct(c["observable"]["at"][v]["of_oracle"]) for v in vols),
                     *(_pct(v_["observable"]["at"][v]["of_oracle"]) for v in vols),
                     *(_x(c["observable"]["at"][v]["over_random"]) for v in vols)])
    lines += ["**Per family** (conversions unless said):", "",
              tabulate(rows, head, tablefmt="pipe", disable_numparse=True, colalign=["left"] + ["right"] * (len(head) - 1)), ""]
    if r.get("by_channel"):
        head = ["channel only", "measure", "pairs", "observable: top 20% holds", *(f"observable of oracle @{v}" for v in vol_names),
                *(f"observable over random @{v}" for v in vol_names)]
        rows = [[ch, m, f"{b['pairs']:,}", _pct(b[m]["observable"]["top20_share"]),
                 *(_pct(b[m]["observable"]["at"][v]["of_oracle"]) for v in vols),
                 *(_x(b[m]["observable"]["at"][v]["over_random"]) for v in vols)]
                for ch, b in r["by_channel"].items() for m in ("conversions", "value")]
        lines += ["**Every contact through one channel** (pooled over the families it carries):", "",
                  tabulate(rows, head, tablefmt="pipe", disable_numparse=True, colalign=["left", "left"] + ["right"] * (len(head) - 2)), ""]
    return lines


def markdown(result: dict) -> str:
    """The results as markdown tables: per root, the pooled figures of each measure, then per family."""
    from tabulate import tabulate

    vols = [f"{v:g}" for v in VOLUMES]
    vol_names = [f"{100 * v:g}%" for v in VOLUMES]
    lines = [f"# Uplift ceiling: the oracle, the observable ideal and random contact (commit "
             f"{(result['provenance'].get('commit') or '?')[:10]}{', dirty tree' if result['provenance'].get('dirty') else ''})", "",
             f"Command: `{result['command']}`", ""]
    for s in result.get("skipped", []):
        lines.append(f"Skipped {s['root']}: {s['reason']}.")
    for r in result["roots"]:
        sh = r["shares"]
        lines += ["", f"## {r['profile']}: {r['root']}", "",
                  f"{r['customers']:,} customers, seed {r['seed']}, decision date {r['decision_date']}; {r['pool']:,} customers "
                  f"in the pool x {len(r['families'])} families = {r['pooled']['pairs']:,} pairs. Profile shares: persuadable "
                  f"{sh['share_persuadable']:g}, sure thing {sh['share_sure_thing']:g}, sleeping dog {sh['share_sleeping_dog']:g} "
                  f"(q = {sh['q']:.4f}; measured: persuadable and not a dog {r['measured_shares']['persuadable_not_dog']:.4f} of "
                  f"the pairs, pairs with an effect > 0 {r['pooled']['responders']:.4f}). Offers accepted in the files: "
                  f"{r['accepted_offers_in_files']:,}; closures provoked by contacts: {r['closed_by_contact']:,}. Pairs whose "
                  f"expected net value is positive for the observable ideal: {r['positive_expected_net_pairs']['observable']:,} "
                  f"(knowing the sure things: {r['positive_expected_net_pairs']['observable_knows_sure_things']:,}).", ""]
        for m, title in (("conversions", "incremental conversions"), ("value", "gross incremental value (yuan)"),
                         ("net_value", "net incremental value (yuan: value - closures x lost value)")):
            f = r["pooled"][m]
            head = ["ranking", "top 20% holds", *(f"of oracle @{v}" for v in vol_names),
                    *(f"over random @{v}" for v in vol_names), *(f"per 1,000 @{v}" for v in vol_names),
                    *(f"closures / 1,000 @{v}" for v in vol_names)]
            rows = [[LABELS[n], _pct(f[n]["top20_share"]), *(_pct(f[n]["at"][v]["of_oracle"]) for v in vols),
                     *(_x(f[n]["at"][v]["over_random"]) for v in vols), *(_num(f[n]["at"][v]["per_1000"]) for v in vols),
                     *(_num(f[n]["at"][v]["closures_per_1000"], ".1f") for v in vols)] for n in RANKINGS]
            lines += [f"**All pairs pooled, {title}** (total {_num(f['total'], ',.1f')}):", "",
                      tabulate(rows, head, tablefmt="pipe", disable_numparse=True, colalign=["left"] + ["right"] * (len(head) - 1)), ""]
        lines += _breakdown_tables(r, vols, vol_names)
    lines += ["", "Pairs: customer x product family, each with its best single contact on the decision date (no earlier "
              "contact). Effect: `World.uplift` of that contact (true conversion probability; value: x the product's "
              "value). Observable ideal: ranks by the effect with the persuadable-and-not-dog indicator replaced by its "
              "probability (it knows every hidden trait but the flags); + knows sure things: also knows which pairs are "
              "sure things. Random: the expectation. Volumes are shares of the pairs; ties at a cut shared out. "
              "Closures: expected closures the contacts provoke (sleeping dogs), each contact on its own. "
              f"Criteo's benchmark: a real model's top 20% held {100 * CRITEO_TOP20:.1f}% of the incremental conversions. "
              "See bench/uplift_ceiling.py."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from jobs.platform.config import PROJECT_DIR
    from jobs.platform.provenance import git_state

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, action="append", default=None,
                    help="a storage root, or a folder of roots (one per profile); repeatable "
                         "(default: var/bench/model_profiles)")
    ap.add_argument("--out", type=Path, default=RESULT, help="result JSON (a .md table is written beside it)")
    ap.add_argument("--channel", action="append", default=[], choices=["sms_push", "wechat", "email", "outbound_ivr", "outbound_call"],
                    help="also measure with every contact through this channel (the families it carries); repeatable")
    ap.add_argument("--min-age", type=float, default=60.0,
                    help="skip a root whose files changed less than this many seconds ago (default 60)")
    args = ap.parse_args(argv)
    t0 = time.time()
    roots, skipped = find_roots(args.root or [PROJECT_DIR / "var" / "bench" / "model_profiles"], args.min_age)
    if not roots:
        print("no root to measure (nothing written):\n" + "\n".join(f"  {s['root']}: {s['reason']}" for s in skipped),
              file=sys.stderr)
        return 1
    result = {"provenance": git_state(),
              "command": "python bench/uplift_ceiling.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "volumes": list(VOLUMES), "top": TOP, "criteo_top20": CRITEO_TOP20, "skipped": skipped,
              "roots": [measure_root(r, tuple(args.channel)) for r in roots]}
    result["seconds"] = round(time.time() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
