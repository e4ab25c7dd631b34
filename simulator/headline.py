"""The closed loop's headline: CPC's published offers against a blind blast and two oracles, scored by the truth.

For each loop day's outbound offers (service messages apart), the same volume per channel is given to other list
makers, and the hidden truth (:class:`simulator.responder.World`) scores them all:

- blast: customers drawn at random among those the channel can reach (alive, not opted out of all marketing,
  with WeChat / an e-mail address where the channel needs it), offered the CPC list's products in the same mix;
- oracle: the customers and products with the highest true conversion probability for the channel, one contact
  a customer a day across channels and no more than the contact policy's weekly cap (2 in 7 days), never the same
  customer and product twice in the loop, no product already held; products limited to those the channel carries
  (conf/products.yaml categories);
- oracle by value: the same, choosing by the true net incremental value of the contact (below), which is what it
  means to know each customer's true incremental effect.

Per list maker and channel (:data:`FIGURES`), from the responder's own probabilities:

- ``conversions``: incremental conversions, the sum of the true conversion probabilities (a contact changes
  nobody's unprompted orders, so each contact's conversion probability is its incremental effect,
  :meth:`World.uplift`); ``value``: the same weighted by the product's value (conf/products.yaml: one month's
  margin of an acceptance), the gross incremental value;
- ``optouts``: expected opt-outs the contacts cause, ``closures``: expected closures they provoke (sleeping dogs,
  :meth:`World.harm`; a customer leaves once, so a list maker's later contacts of a customer count only the
  chance that its earlier ones did not already make them leave);
- ``lost_value``: closures x the customer's lost value (:meth:`World.lost_value`: ``lost_customer_months`` of the
  plan fee, an assumption of the profile table); ``net_value`` = value - lost_value, the net incremental value.

Contact fatigue: the CPC lists' own contacts in the fatigue window before (per customer) for the CPC, each
oracle's own earlier choices for it, none for the blast (random customers each day). ``per_1000`` divides by each
list maker's own contacts (an oracle may find fewer customers a contact can convert than the CPC sent).

:func:`headline` writes ``reports/loop/headline.json`` and ``headline.md``; ``python -m simulator loop
--headline-only`` recomputes it from a finished loop's root (lists and files; no Spark). :func:`uplift_in_root`
says whether an uplift model was registered during a loop, and :func:`uplift_first_day` from which loop day one
can be. Several loops are aggregated by ``simulator/aggregate.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tabulate import tabulate

from jobs.platform.config import CONF_DIR, Paths, business, load_yaml
from simulator.generate import SimSpec
from simulator.responder import OUTBOUND, World, deliveries_before, events_for, held_before, read_lists

log = logging.getLogger(__name__)

MAKERS = ("cpc", "blast", "oracle", "oracle_by_value")
LABELS = {"cpc": "CPC", "blast": "blind blast", "oracle": "oracle by conversions", "oracle_by_value": "oracle by net value"}
FIGURES = ("rows", "conversions", "value", "optouts", "closures", "lost_value", "net_value")
ORACLES = ("oracle", "oracle_by_value")
# The targets of issue 22, item 4 (docs/evaluation.md "Headline").
TARGETS = {"cpc_over_blast": 10.0, "cpc_net_value_over_oracle": 0.7}


@dataclass
class Tracks:
    """What each list maker did on the loop's earlier days: the oracles' (customer, product) pairs and contact
    days, and per list maker the chance that each customer has not yet been made to leave by its contacts."""

    customers: int
    taken: dict[str, set] = field(default_factory=lambda: {k: set() for k in ORACLES})
    contacted: dict[str, dict[int, list[dt.date]]] = field(default_factory=lambda: {k: {} for k in ORACLES})
    survive: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.survive = {k: np.ones(self.customers) for k in MAKERS}

    def prior(self, name: str, day: dt.date, window: int) -> np.ndarray:
        """Per customer, the oracle's own contacts in the fatigue window before ``day``."""
        out = np.zeros(self.customers, dtype=np.int64)
        for c, days in self.contacted[name].items():
            out[c] = sum(0 < (day - d).days <= window for d in days)
        return out

    def capped(self, day: dt.date, window_days: int, cap: int) -> dict[str, set[int]]:
        """Per oracle, the customers at the contact policy's cap (``cap`` contacts in ``window_days``)."""
        return {name: {c for c, days in seen.items() if sum((day - d).days < window_days for d in days) >= cap}
                for name, seen in self.contacted.items()}


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
    """The oracle's lists: per channel, the ``sizes[ch]`` (customer, product) pairs with the highest ``score(p, product,
    channel)`` (p = true conversion probability, one per customer of the channel's pool; pairs a contact cannot
    convert, p = 0, are never chosen), one contact a customer a day across channels, never a pair in ``taken``,
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


def figures(world: World, idx: np.ndarray, prod: np.ndarray, ch: str, day: dt.date, held: np.ndarray | None,
            prior: np.ndarray | None, survive: np.ndarray, value: np.ndarray) -> dict[str, float]:
    """:data:`FIGURES` of one list maker's contacts through ``ch`` decided on ``day``; ``prior``: per customer, the list
    maker's contacts in the fatigue window before (None: no fatigue); ``survive`` (per customer, the chance its
    earlier contacts have not made them leave) is updated."""
    idx, prod = np.asarray(idx, dtype=np.int64), np.asarray(prod, dtype=np.int64)
    chan = np.full(len(idx), ch, dtype=object)
    mine = None if prior is None else prior[idx]
    p = world.p_convert(idx, prod, chan, day, held, mine)
    optouts, leave = world.harm(idx, prod, chan, day, held, mine)
    closures = survive[idx] * leave
    np.multiply.at(survive, idx, 1 - leave)
    gross = float((p * value[prod]).sum())
    lost = float((closures * world.lost_value(idx)).sum())
    return {"rows": len(idx), "conversions": float(p.sum()), "value": gross, "optouts": float(optouts.sum()),
            "closures": float(closures.sum()), "lost_value": lost, "net_value": gross - lost}


def _oracle_scores(world: World, day: dt.date, pools: dict, value: np.ndarray):
    """(name, score) of the two oracles: true conversion probability, and true net incremental value, probability
    x value - expected closure x lost value (the channel's cost is left out: at equal volume per channel every list
    maker pays the same). The expected closure is the contact's own (:meth:`World.harm` of product ``j`` through
    ``ch``: the harm depends on the product's family), computed once per channel and product."""
    penalty: dict[tuple[str, int], np.ndarray] = {}

    def cost(j: int, ch: str) -> np.ndarray:
        if (ch, j) not in penalty:
            pool = pools[ch]
            _, leave = world.harm(pool, np.full(len(pool), j, dtype=np.int64), np.full(len(pool), ch, dtype=object), day)
            penalty[(ch, j)] = leave * world.lost_value(pool)
        return penalty[(ch, j)]

    return (("oracle", lambda p, j, ch: p), ("oracle_by_value", lambda p, j, ch: p * value[j] - cost(j, ch)))


def compare_day(world: World, lists: dict[str, np.ndarray], day: dt.date, held: np.ndarray, optout: np.ndarray,
                tracks: Tracks, carries: dict[str, list[int]], offer_campaigns: set[str], capped: dict[str, set[int]],
                prior: np.ndarray | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Channel -> list maker -> :data:`FIGURES` for the day's CPC offers (service messages apart), a blind blast and
    the two oracles of the same size per channel. ``prior``: the CPC lists' contacts in the fatigue window before,
    per customer (:meth:`World.prior_contacts`)."""
    rng = np.random.default_rng([world.spec.seed, 8000 + day.toordinal() % 100000])
    value = np.array([float(p["value"]) for p in world.products])
    offers = np.isin(lists["campaign"], sorted(offer_campaigns))
    out: dict[str, dict[str, dict[str, float]]] = {}
    pools, sizes = {}, {}
    for ch in OUTBOUND:
        m = (lists["channel"] == ch) & offers
        n = int(m.sum())
        if not n:
            continue
        pool = np.flatnonzero(_reachable(world, day, ch, optout))
        pick = rng.choice(pool, size=min(n, len(pool)), replace=False)
        prods = rng.choice(lists["prod"][m], size=len(pick), replace=True)
        out[ch] = {"cpc": figures(world, lists["idx"][m], lists["prod"][m], ch, day, held, prior, tracks.survive["cpc"], value),
                   "blast": figures(world, pick, prods, ch, day, held, None, tracks.survive["blast"], value)}
        pools[ch], sizes[ch] = pool, n
    window = int(world.params.fatigue_window_days)
    for name, score in _oracle_scores(world, day, pools, value):
        before = tracks.prior(name, day, window)
        chosen = _fill(world, day, held, pools, sizes, carries, score, tracks.taken[name], capped[name], before)
        for ch, (who, what) in chosen.items():
            for c in who:
                tracks.contacted[name].setdefault(int(c), []).append(day)
            out[ch][name] = figures(world, who, what, ch, day, held, before, tracks.survive[name], value)
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


# --- totals, per 1,000 contacts, the table ----------------------------------------------------------------------

def totals(per_day: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Channel (and ``all``) -> list maker -> :data:`FIGURES` summed over the days."""
    tot: dict[str, dict[str, dict[str, float]]] = {}
    for day in per_day:
        for ch, makers in day["channels"].items():
            for name, figs in makers.items():
                t = tot.setdefault(ch, {}).setdefault(name, dict.fromkeys(FIGURES, 0.0))
                for k in FIGURES:
                    t[k] += figs.get(k, 0.0)
    tot["all"] = {name: {k: sum(t.get(name, {}).get(k, 0.0) for t in tot.values()) for k in FIGURES} for name in MAKERS}
    return tot


def per_1000(t: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    """List maker -> its figures per 1,000 of its own contacts (None without a contact) and its contacts."""
    out = {}
    for name in MAKERS:
        f = t.get(name, {})
        n = f.get("rows", 0.0)

        def k(key: str, f=f, n=n) -> float | None:
            return 1000 * f.get(key, 0.0) / n if n else None

        out[name] = {"contacts": int(n), "incremental_conversions": k("conversions"), "gross_value": k("value"),
                     "optouts": k("optouts"), "closures": k("closures"), "lost_value": k("lost_value"),
                     "net_incremental_value": k("net_value")}
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is not positive (a ratio to nothing, or to a loss, says nothing)."""
    return a / b if a is not None and b is not None and b > 0 else None


def summarise(per_day: list[dict], realised: int) -> dict:
    """The headline's figures: totals per channel, per 1,000 contacts, the ratios the targets read."""
    tot = totals(per_day)
    k = per_1000(tot["all"])
    conv = {name: k[name]["incremental_conversions"] for name in MAKERS}
    net = {name: k[name]["net_incremental_value"] for name in MAKERS}
    gross = {name: k[name]["gross_value"] for name in MAKERS}
    return {"channels": tot, "per_1000": k,
            "cpc_over_blast": ratio(conv["cpc"], conv["blast"]), "cpc_over_oracle": ratio(conv["cpc"], conv["oracle"]),
            "cpc_net_value_over_oracle": ratio(net["cpc"], net["oracle_by_value"]),
            "cpc_gross_value_over_oracle": ratio(gross["cpc"], gross["oracle_by_value"]),
            "cpc_realised_conversions": realised, "targets": dict(TARGETS)}


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table(summary: dict) -> str:
    """The headline as markdown: per 1,000 contacts by list maker, then per channel."""
    k = summary["per_1000"]
    head = ["list maker", "contacts", "incremental conversions / 1,000", "gross value / 1,000", "opt-outs caused / 1,000",
            "closures caused / 1,000", "net incremental value / 1,000"]
    rows = [[LABELS[n], f"{k[n]['contacts']:,}", _fmt(k[n]["incremental_conversions"], ".2f"), _fmt(k[n]["gross_value"], ",.1f"),
             _fmt(k[n]["optouts"], ".2f"), _fmt(k[n]["closures"], ".2f"), _fmt(k[n]["net_incremental_value"], ",.1f")] for n in MAKERS]
    align = ["left"] + ["right"] * (len(head) - 1)
    lines = [tabulate(rows, head, tablefmt="pipe", disable_numparse=True, colalign=align), ""]
    head = ["channel", "CPC offers", "CPC conv.", "blast", "oracle", "CPC / blast", "CPC / oracle", "CPC net value",
            "blast net value", "oracle by value: net value", "CPC / oracle's net value"]
    rows = []
    for ch, t in summary["channels"].items():
        c, b, o, v = (t.get(n, {}) for n in MAKERS)
        rows.append([ch, f"{int(c.get('rows', 0)):,}", _fmt(c.get("conversions"), ".2f"), _fmt(b.get("conversions"), ".2f"),
                     _fmt(o.get("conversions"), ".2f"), _fmt(ratio(c.get("conversions"), b.get("conversions")), ".1f") + "x",
                     _fmt(ratio(c.get("conversions"), o.get("conversions")), ".0%"), _fmt(c.get("net_value"), ",.0f"),
                     _fmt(b.get("net_value"), ",.0f"), _fmt(v.get("net_value"), ",.0f"),
                     _fmt(ratio(c.get("net_value"), v.get("net_value")), ".0%")])
    lines += [tabulate(rows, head, tablefmt="pipe", disable_numparse=True, colalign=["left"] + ["right"] * (len(head) - 1)), "",
              "Incremental conversions: the sum of the contacts' true conversion probabilities (each contact's true "
              "incremental effect). Gross value: the same x the product's value. Net incremental value: gross value - "
              "expected closures the contacts provoke (sleeping dogs) x the customer's lost value "
              f"(lost_customer_months of the plan fee, an assumption). Offers only. "
              f"CPC realised conversions (simulated acceptances of the same offers): {summary['cpc_realised_conversions']:,} "
              f"against {summary['channels']['all']['cpc']['conversions']:.1f} expected."]
    return "\n".join(lines)


def display(summary: dict, spec: SimSpec, days: int) -> dict:
    """The compact block the campaign report shows (jobs/stages/evaluate/report.py reads only this): per list maker,
    incremental conversions and net incremental value per 1,000 contacts (one run: no interval)."""
    k = summary["per_1000"]
    rows = [{"profile": spec.profile, "maker": LABELS[m], "n": 1, "incremental_conversions": k[m]["incremental_conversions"],
             "net_incremental_value": k[m]["net_incremental_value"]} for m in MAKERS]
    return {"title": f"one loop of {days} days, seed {spec.seed}, {spec.customers:,} customers (no interval: one seed)",
            "rows": rows}


# --- uplift models in a loop's root -----------------------------------------------------------------------------

def uplift_first_day(train_every: int) -> int | None:
    """The first loop day (1 = the first) whose decision can use an uplift model, when the loop retrains every
    ``train_every`` days (None when it never retrains: the training before the loop has no outcome). A model needs
    a decision date whose outcome window (conf/policy.yaml ``evaluation.window_days``) closed, then ``report_days``
    newer matured dates for its report, with a purge of one window between them (models.uplift.split_dates): the
    training as of ``first loop day - 1 + window + report_days + window`` is the first that can train one; the
    next decision uses it. Enough rows and conversions in each arm (``min_treated``, ``min_control``,
    ``min_conversions_per_arm``) are a further condition, which depends on the customers and is not counted here."""
    from jobs.stages.cpc.campaigns import evaluation_settings
    from models import uplift as um

    if train_every <= 0:
        return None
    window = evaluation_settings()["window_days"]
    offset = window + um.load_settings().report_days + window  # days after (first loop day - 1)
    return math.ceil(offset / train_every) * train_every + 1


def uplift_in_root(root: Path, first: dt.date, last: dt.date) -> dict:
    """The uplift registry of a loop's root (``<root>/models/uplift_<family>/``): the models (not cold starts)
    trained as of a date from the day before ``first`` to the day before ``last`` (so a loop decision used them:
    the nightly scores and the decision ranks by the model current on its date), and each family's latest
    cold-start reason."""
    from models import uplift as um

    registry = root / "models"
    models, cold = [], {}
    for family in um.families(registry):
        for r in um.versions(registry, family):
            as_of = dt.date.fromisoformat(r.meta["as_of"])
            if not first - dt.timedelta(days=1) <= as_of < last:
                continue
            if r.has_model:
                models.append({"family": family, "version": r.version, "as_of": r.meta["as_of"], "reason": r.reason})
            else:
                cold[family] = r.reason
    return {"models": models, "cold_start": cold}


# --- the whole headline of a loop --------------------------------------------------------------------------------

def _days(paths: Paths, world: World, loop_days: list[dt.date]) -> tuple[list[dict], int]:
    from jobs.stages.cpc.campaigns import load_policy

    policy = load_policy()
    cats = business("products")["categories"]
    carries = {ch: [j for j, p in enumerate(world.products) if ch in cats[p["category"]] and p["category"] != "care"] for ch in OUTBOUND}
    offer_campaigns = {c["id"] for c in (load_yaml(f) for f in sorted((CONF_DIR / "campaigns").glob("*.yaml"))) if c.get("kind") == "offer"}
    tracks = Tracks(world.spec.customers)
    per_day, realised = [], 0
    for day in loop_days:
        lists = read_lists(paths, world, day)
        held = held_before(paths, world, day + dt.timedelta(days=1))
        optout = _optouts(paths, world, day + dt.timedelta(days=1))
        prior = world.prior_contacts(paths, day)
        capped = tracks.capped(day, policy.window_days, policy.all_channels_cap)
        channels = compare_day(world, lists, day, held, optout, tracks, carries, offer_campaigns, capped, prior)
        ev = events_for(world, lists, day, held, prior)
        realised += int(((ev["event"] == "accepted") & np.isin(ev["campaign"], sorted(offer_campaigns))).sum())
        per_day.append({"date": day.isoformat(), "channels": channels})
        c, b, o = (sum(v.get(k, {}).get("conversions", 0.0) for v in channels.values()) for k in ("cpc", "blast", "oracle"))
        log.info(f"loop headline {day}: expected conversions of the offers: CPC {c:.1f}, blast {b:.1f}, oracle {o:.1f}")
    return per_day, realised


def headline(paths: Paths, spec: SimSpec, loop_days: list[dt.date], meta: dict, world: World | None = None) -> dict:
    """CPC against the blast and the oracles over the loop's days, from what the loop left in ``paths``: the
    published lists, and the operator's files as delivered (holdings and opt-outs up to each day). Driver-side
    numpy over the lists and the truth; no Spark. Writes reports/loop/headline.json and headline.md."""
    world = world or World.load(spec, paths)
    per_day, realised = _days(paths, world, loop_days)
    summary = summarise(per_day, realised)
    uplift = uplift_in_root(paths.root, loop_days[0], loop_days[-1])
    uplift["first_day_possible"] = uplift_first_day(int(meta.get("train_every") or 0))
    summary.update({**meta, "profile": meta.get("profile", spec.profile), "days": len(loop_days), "loop_days": [d.isoformat() for d in loop_days], "root": str(paths.root),
                    "lost_customer_months": world.params.lost_customer_months, "uplift": uplift,
                    "display": display(summary, spec, len(loop_days)), "per_day": per_day})
    out = paths.reports / "loop"
    out.mkdir(parents=True, exist_ok=True)
    (out / "headline.json").write_text(json.dumps(summary, indent=2, default=str))
    ranking = "uplift ranking on" if meta.get("uplift_rank", True) else "uplift ranking off (propensity)"
    title = (f"Closed loop: {meta['customers']:,} customers, {len(loop_days)} days {loop_days[0]}..{loop_days[-1]} after "
             f"{meta['history_days']} days of history, seed {meta['seed']}, profile {meta.get('profile', spec.profile)}, "
             f"{'propensity models trained' if meta.get('models_trained') else 'rule-based fits (no models)'}, {ranking}, "
             f"{len(uplift['models'])} uplift models used")
    text = table(summary)
    (out / "headline.md").write_text(f"### {title}\n\n{text}\n")
    log.info(f"\n{title}\n\n{text}\n\nReport: {paths.reports / 'campaigns_latest.html'}\nHeadline: {out / 'headline.md'}")
    return summary
