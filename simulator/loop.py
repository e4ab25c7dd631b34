"""The closed loop over several simulated days, and the headline: CPC lists against a blind blast and an oracle.

``python -m simulator loop`` (``make loop``) in its own storage root (default ``var/loop``):

1. simulates an operator (customers, history days + loop days), loads the history before the loop and trains the
   propensity models the day before it (as ``make run`` does; needs 105 days of history, see
   ``Settings.history_days`` in ``models/propensity.py``);
2. for each loop day: the campaign platform answers the lists published on earlier days (``simulator/responder.py``
   writes the day's responses and adds the accepted orders and opt-outs to its files), then the nightly runs
   every stage (ingest ... export, evaluate), so each day's decisions see the responses so far: cooldown after
   a decline, opt-outs, product-channel and customer-channel fits learned from outcomes;
3. for each day's outbound offers (service messages apart), the same volume per channel is given to other list
   makers, and the hidden truth scores them all (expected conversions = sum of true conversion probabilities;
   expected value = sum of probability x the product's value):
   - blast: customers drawn at random among those the channel can reach (alive, not opted out of all
     marketing, with WeChat / an e-mail address where the channel needs it), offered the CPC list's products
     in the same mix;
   - oracle: the customers and products with the highest true conversion probability for the channel, one
     contact a customer a day across channels and no more than the contact policy's weekly cap (2 in 7 days),
     never the same customer and product twice in the loop, no product already held; products limited to those
     the channel carries (conf/products.yaml categories);
   - oracle by value: the same, choosing by true expected value (probability x value - cost), which is what
     the CPC decision itself maximises;
4. writes ``reports/loop/headline.json`` and ``headline.md`` and prints the table. ``python -m simulator loop --headline-only``
   recomputes it from a finished loop's root (lists and files; no Spark).

CPC's realised conversions (simulated acceptances, including those that land after the last loop day) are
reported beside its expected ones, as a check that the expectation is what the responses deliver.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

from jobs.platform.config import CONF_DIR, Paths, Settings, business, load_yaml, settings
from simulator.generate import SimSpec, generate
from simulator.responder import (
    OUTBOUND,
    World,
    deliveries_before,
    events_for,
    held_before,
    read_lists,
    respond,
)

log = logging.getLogger(__name__)


def _reachable(world: World, day: dt.date, ch: str, optout: np.ndarray) -> np.ndarray:
    c = world.c
    ok = world.alive(day) & world.alive(day + dt.timedelta(days=1)) & ~optout
    if ch == "wechat":
        ok &= c["has_wechat"]
    if ch == "email":
        ok &= np.array([e is not None for e in c["email"]])
    return ok


def _fill(world: World, day: dt.date, held: np.ndarray, pools: dict, sizes: dict[str, int], carries: dict[str, list[int]],
          score, taken: set[tuple[int, int]], capped: set[int], prior: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The oracle's lists: per channel, the ``sizes[ch]`` (customer, product) pairs with the highest ``score(p, product)``
    (p = true conversion probability), one contact a customer a day across channels, never a pair in ``taken``,
    nobody in ``capped`` (at the contact policy's weekly cap)."""
    best = {}
    for ch, pool in pools.items():
        top_s = np.full(len(pool), -np.inf)
        top_j = np.zeros(len(pool), dtype=np.int64)
        for j in carries[ch]:
            p = world.p_convert(pool, np.full(len(pool), j), np.full(len(pool), ch, dtype=object), day, held,
                                None if prior is None else prior[pool])
            sc = score(p, j, ch)
            sc[p <= 0] = -np.inf
            better = sc > top_s
            top_s[better], top_j[better] = sc[better], j
        best[ch] = (top_s, top_j)
    used: set[int] = set()
    out = {}
    for ch in sorted(best, key=lambda k: -best[k][0].max(initial=-np.inf)):  # the strongest channel chooses first
        top_s, top_j = best[ch]
        who, what = [], []
        for k in np.argsort(-top_s, kind="stable"):
            if len(who) >= sizes[ch] or not np.isfinite(top_s[k]):
                break
            c, j = int(pools[ch][k]), int(top_j[k])
            if c in used or c in capped or (c, j) in taken:
                continue
            used.add(c)
            taken.add((c, j))
            who.append(c)
            what.append(j)
        out[ch] = (np.array(who, dtype=np.int64), np.array(what, dtype=np.int64))
    return out


def compare_day(world: World, lists: dict[str, np.ndarray], day: dt.date, held: np.ndarray, optout: np.ndarray,
                taken: dict[str, set], carries: dict[str, list[int]], offer_campaigns: set[str],
                capped: dict[str, set[int]], contacted: dict[str, dict[int, list[dt.date]]],
                prior: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Expected conversions and value of the day's CPC offers (service messages apart), a blind blast and two
    oracles of the same size per channel: one choosing by true conversion probability, one by true expected
    value (probability x the product's value - the channel's cost, what CPC itself maximises).

    Contact fatigue: ``prior`` (the CPC lists' contacts in the fatigue window before, per customer) for the
    CPC; each oracle's own earlier choices for it; none for the blast (random customers each day)."""
    rng = np.random.default_rng([world.spec.seed, 8000 + day.toordinal() % 100000])
    value = np.array([float(p["value"]) for p in world.products])
    cost = {c["id"]: float(c["cost"]) for c in business("channels")["channels"]}
    offers = np.isin(lists["campaign"], sorted(offer_campaigns))
    out: dict[str, dict[str, float]] = {}
    pools, sizes = {}, {}

    window = int(world.params.fatigue_window_days)

    def own_prior(seen: dict[int, list[dt.date]]) -> np.ndarray:
        out = np.zeros(world.spec.customers, dtype=np.int64)
        for c, days in seen.items():
            out[c] = sum(0 < (day - d).days <= window for d in days)
        return out

    def score_of(idx, prod, ch, before=None):
        p = world.p_convert(idx, prod, np.full(len(idx), ch, dtype=object), day, held, None if before is None else before[idx])
        return float(p.sum()), float((p * value[prod]).sum())

    for ch in OUTBOUND:
        m = (lists["channel"] == ch) & offers
        n = int(m.sum())
        if not n:
            continue
        pool = np.flatnonzero(_reachable(world, day, ch, optout))
        pick = rng.choice(pool, size=min(n, len(pool)), replace=False)
        prods = rng.choice(lists["prod"][m], size=len(pick), replace=True)
        c_conv, c_val = score_of(lists["idx"][m], lists["prod"][m], ch, prior)
        b_conv, b_val = score_of(pick, prods, ch)
        out[ch] = {"rows": n, "cpc": c_conv, "blast": b_conv, "cpc_value": c_val, "blast_value": b_val}
        pools[ch], sizes[ch] = pool, n
    for name, score in (("oracle", lambda p, j, ch: p), ("oracle_by_value", lambda p, j, ch: p * value[j] - cost[ch])):
        before = own_prior(contacted[name])
        chosen = _fill(world, day, held, pools, sizes, carries, score, taken[name], capped[name], before)
        for ch, (who, what) in chosen.items():
            for c in who:
                contacted[name].setdefault(int(c), []).append(day)
            conv, val = score_of(who, what, ch, before) if len(who) else (0.0, 0.0)
            out[ch][name] = conv
            out[ch][f"{name}_value"] = val
    return out


def _optouts(paths: Paths, world: World, day: dt.date) -> np.ndarray:
    """Customers opted out of all marketing before ``day``, from the optouts files delivered."""
    out = np.zeros(world.spec.customers, dtype=bool)
    for t in deliveries_before(paths, world.spec, "optouts", day):
        d = t.to_pydict()
        for cid, ch, action in zip(d["customer_id"], d["channel"], d["action"], strict=True):
            if ch == "all":
                out[int(cid[1:])] = action == "opt_out"
    return out


KEYS = ("rows", "cpc", "blast", "oracle", "oracle_by_value", "cpc_value", "blast_value", "oracle_value", "oracle_by_value_value")


def headline_table(per_day: list[dict], realised: int) -> tuple[dict, str]:
    tot: dict[str, dict[str, float]] = {}
    for day in per_day:
        for ch, v in day["channels"].items():
            t = tot.setdefault(ch, dict.fromkeys(KEYS, 0.0))
            for k in KEYS:
                t[k] += v.get(k, 0.0)
    tot["all"] = {k: sum(t[k] for t in tot.values()) for k in KEYS}

    def ratio(a, b):
        return a / b if b else None

    def x(r):
        return "-" if r is None else f"{r:.1f}x"

    def pct(r):
        return "-" if r is None else f"{100 * r:.0f}%"

    headers = ["channel", "offers sent", "CPC conversions", "blast", "oracle", "CPC / blast", "CPC / oracle", "CPC value",
               "oracle by value: conversions, value", "CPC value / oracle's"]
    rows = [[ch, f"{int(t['rows']):,}", f"{t['cpc']:.2f}", f"{t['blast']:.2f}", f"{t['oracle']:.2f}",
             x(ratio(t["cpc"], t["blast"])), pct(ratio(t["cpc"], t["oracle"])), f"{t['cpc_value']:,.0f}",
             f"{t['oracle_by_value']:.2f}, {t['oracle_by_value_value']:,.0f}", pct(ratio(t["cpc_value"], t["oracle_by_value_value"]))]
            for ch, t in tot.items()]
    # Cells as formatted here (tabulate does not reparse them as numbers); all but the channel right-aligned.
    lines = [tabulate(rows, headers, tablefmt="pipe", disable_numparse=True,
                      colalign=["left"] + ["right"] * (len(headers) - 1))]
    a = tot["all"]
    summary = {"channels": tot, "cpc_over_blast": ratio(a["cpc"], a["blast"]), "cpc_over_oracle": ratio(a["cpc"], a["oracle"]),
               "cpc_value_over_blast": ratio(a["cpc_value"], a["blast_value"]),
               "cpc_value_over_oracle_by_value": ratio(a["cpc_value"], a["oracle_by_value_value"]),
               "cpc_realised_conversions": realised, "targets": {"cpc_over_blast": 10.0, "cpc_over_oracle": 0.7}}
    lines += ["", "Conversions are expected conversions (sum of the true conversion probabilities of the contacts); value is "
              "expected margin (probability x the product's value). Offers only: service messages (welcome guide, trial "
              "messages) are not counted.",
              f"CPC realised conversions (simulated acceptances of the same offers): {realised:,} against {a['cpc']:.1f} expected."]
    return summary, "\n".join(lines)


def run(customers: int, history_days: int, days: int, root: Path, seed: int = 42, end: dt.date | None = None,
        cfg: Settings | None = None, train: bool = True, profile: str | None = None) -> dict:
    """The whole loop (see the module's docstring), in ``root``, which it empties first. Returns the headline."""
    from jobs.orchestration import pipeline
    from jobs.orchestration.registry import STAGES
    from models import propensity as pm

    base = cfg or settings()
    cfg = dataclasses.replace(base, paths=Paths(root))
    paths = cfg.paths
    end = end or base.sample_end_date
    spec = SimSpec(customers, history_days + days, end, seed, profile or str(base.sample.get("profile", "realistic")))
    loop_days = spec.dates()[history_days:]
    t0 = time.time()
    marker = paths.root / ".cpc-loop"
    if paths.root.exists() and any(paths.root.iterdir()) and not marker.exists():
        raise ValueError(f"{paths.root} is not empty and was not made by `python -m simulator loop`; give an empty or new folder as --root "
                         f"(the loop empties its root first)")
    shutil.rmtree(paths.root, ignore_errors=True)  # a loop changes its landing files and lake: always from the start
    paths.root.mkdir(parents=True)
    marker.write_text("made by python -m simulator loop: emptied at the start of each loop\n")
    log.info(f"loop: simulating {customers} customers, {spec.days} days {spec.start_date}..{end}, profile {spec.profile} -> {paths.root}")
    generate(paths, spec)
    pipeline.history(loop_days[0], cfg)
    train_day = loop_days[0] - dt.timedelta(days=1)
    needed = pm.load_settings().history_days(train_day)
    trainable = history_days >= needed
    if train and trainable:
        log.info(f"loop: training the propensity models as of {train_day} (as `make run` does)")
        STAGES["train"](train_day, cfg)
    elif train:
        log.info(f"loop: {history_days} days of history are too few to train the models (they need {needed}); "
              f"the CPC uses the rule-based fits")
    world = World.load(spec)
    for k, day in enumerate(loop_days, 1):
        t1 = time.time()
        log.info(f"loop [{k}/{len(loop_days)}] {day}: responses to earlier lists, then the nightly run")
        respond(paths, spec, day, world)
        pipeline.nightly(day, cfg)
        log.info(f"loop [{k}/{len(loop_days)}] {day}: done ({time.time() - t1:.0f}s)")
    meta = {"customers": customers, "history_days": history_days, "seed": seed, "profile": spec.profile, "seconds": round(time.time() - t0, 1),
            "models_trained": train and trainable}
    return headline(paths, spec, loop_days, meta, world)


def headline(paths: Paths, spec: SimSpec, loop_days: list[dt.date], meta: dict, world: World | None = None) -> dict:
    """CPC against the blast and the oracles over the loop's days, from what the loop left in ``paths``: the
    published lists, and the operator's files as delivered (holdings and opt-outs up to each day). Driver-side
    numpy over the lists and the truth; no Spark. Writes reports/loop/headline.json and headline.md."""
    from jobs.stages.cpc.campaigns import load_policy

    world = world or World.load(spec, paths)
    policy = load_policy()
    cats = business("products")["categories"]
    carries = {ch: [j for j, p in enumerate(world.products) if ch in cats[p["category"]] and p["category"] != "care"] for ch in OUTBOUND}
    offer_campaigns = {c["id"] for c in (load_yaml(f) for f in sorted((CONF_DIR / "campaigns").glob("*.yaml"))) if c.get("kind") == "offer"}
    taken = {"oracle": set(), "oracle_by_value": set()}
    contacted: dict[str, dict[int, list[dt.date]]] = {"oracle": {}, "oracle_by_value": {}}
    per_day, realised = [], 0
    for day in loop_days:
        lists = read_lists(paths, world, day)
        held = held_before(paths, world, day + dt.timedelta(days=1))
        optout = _optouts(paths, world, day + dt.timedelta(days=1))
        capped = {name: {c for c, days in seen.items() if sum((day - d).days < policy.window_days for d in days) >= policy.all_channels_cap}
                  for name, seen in contacted.items()}
        prior = world.prior_contacts(paths, day)
        channels = compare_day(world, lists, day, held, optout, taken, carries, offer_campaigns, capped, contacted, prior)
        ev = events_for(world, lists, day, held, prior)
        realised += int(((ev["event"] == "accepted") & np.isin(ev["campaign"], sorted(offer_campaigns))).sum())
        per_day.append({"date": day.isoformat(), "channels": channels})
        c, b, o = (sum(v[k] for v in channels.values()) for k in ("cpc", "blast", "oracle"))
        log.info(f"loop headline {day}: expected conversions of the offers: CPC {c:.1f}, blast {b:.1f}, oracle {o:.1f}")
    summary, table = headline_table(per_day, realised)
    summary.update({**meta, "loop_days": [d.isoformat() for d in loop_days], "root": str(paths.root), "per_day": per_day})
    out = paths.reports / "loop"
    out.mkdir(parents=True, exist_ok=True)
    (out / "headline.json").write_text(json.dumps(summary, indent=2, default=str))
    title = (f"Closed loop: {meta['customers']:,} customers, {len(loop_days)} days {loop_days[0]}..{loop_days[-1]} after "
             f"{meta['history_days']} days of history, seed {meta['seed']}, profile {meta.get('profile', spec.profile)}, "
             f"{'propensity models trained' if meta.get('models_trained') else 'rule-based fits (no models)'}")
    (out / "headline.md").write_text(f"### {title}\n\n{table}\n")
    log.info(f"\n{title}\n\n{table}\n\nReport: {paths.reports / 'campaigns_latest.html'}\nHeadline: {out / 'headline.md'}")
    return summary
