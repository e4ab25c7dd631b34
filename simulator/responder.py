"""The simulated operator's campaign platform: what customers do with the lists the pipeline exports.

The pipeline publishes each day's lists (``exports/<date>/<channel>``); the contacts go out the next morning.
This module plays the SMS gateway, WeChat, the mail server, the IVR and the call centre: for every list row it
decides, from the simulator's hidden truth, whether the contact was delivered, opened (or answered), clicked,
accepted, declined, opted out or complained, and on which day, and delivers those events like any other
operator feed:

- ``responses_<YYYYMMDD>.csv.gz``: every event of the day, keyed by the ``contact_ref`` of the list row;
- an accepted offer is an order: it is added to that day's ``orders`` file (order id ``R...``, the outbound
  channel as the order's channel; a trial campaign's acceptance is the trial's ``trial_convert``);
- an opt-out is added to that day's ``optouts`` file for the channel it came through.

The day's files are rebuilt from the simulator's original delivery (kept once under ``truth/landing_base``)
plus every event dated that day, from the lists of the previous ``MAX_DELAY`` days (less the operator's own end of a
trial a campaign already converted): calling ``respond`` again
for a day writes the same bytes. It must run before that day is ingested (a closed day refuses a changed file).

The response model (all of it hidden from the pipeline, like the rest of ``truth/``; the parameters are the
profile's, ``simulator/profiles.py``):

    P(convert) = P(delivered | channel) x P(opened | channel, attention) x fatigue x P(accept | opened)
    attention  = how much the customer attends to the channel (their hidden inbound channel preference)
    P(accept | opened) = channel's rate x interest(customer, product)^2 x price factor x churn factor x fatigue
                         x [the customer is persuadable for the product's family and not a sleeping dog]
    fatigue    = exp(-fatigue_response_decay x the customer's outbound contacts in the fatigue window before)

``interest`` is the hidden affinity of the product's category (handsets: handset intent; a bigger plan: heavy
data use; the renewal bonus: a contract ending within 90 days), zero for a product already held. A sure thing
buys anyway (the simulator's own orders) and a lost cause never, so a contact converts neither; as a contact
does not change anyone's unprompted orders, P(convert) is also each contact's true incremental effect
(:meth:`World.uplift`). A sleeping dog never accepts; a delivered contact makes one opt out
``dog_optout_multiplier`` times as often and leave, ``dog_churn_lag_days`` later, with ``dog_contact_churn_prob``
for an offer of ``dog_contact_families`` (plan changes and retention on ``realistic``) and
``dog_other_contact_churn_prob`` for any other contact: the line's closure is added to that day's CRM file and
the customer's rows leave that and every later day's files (``truth/contact_churn.parquet`` records each provoked
closure). The same functions give the blind blast, the oracles and the CPC lists their expected conversions,
opt-outs and closures in the closed loop's headline (:meth:`World.p_convert`, :meth:`World.p_optout`,
:meth:`World.p_leave`, :meth:`World.harm`; ``simulator/headline.py``).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from jobs.platform.config import Paths, business
from schemas import DELIMITER, FILES
from simulator.generate import (
    ARROW_TYPES,
    INBOUND,
    PERSUADABLE,
    PLANS,
    RESPONSE_FAMILIES,
    SimSpec,
    _customers,
    _write,
    crm_table,
    interest,
)

log = logging.getLogger(__name__)

# The active (outbound) channels of conf/channels.yaml, in its order.
OUTBOUND = tuple(c["id"] for c in business("channels")["channels"] if c["kind"] == "active")
# the inbound channel whose hidden preference says how much a customer attends to each outbound channel
ATTENDS = {"sms_push": "sms_hall", "wechat": "app", "email": "web", "outbound_ivr": "ivr", "outbound_call": "agent"}
DELIVER = {"sms_push": 0.97, "wechat": 0.95, "email": 0.90, "outbound_ivr": 0.60, "outbound_call": 0.55}  # answered, for calls
OPEN = {"sms_push": 0.60, "wechat": 0.55, "email": 0.30, "outbound_ivr": 0.70, "outbound_call": 0.85}  # x attention
ACCEPT = {"sms_push": 0.006, "wechat": 0.007, "email": 0.006, "outbound_ivr": 0.01, "outbound_call": 0.06}  # x interest^2 ...
DECLINE = {"sms_push": 0.03, "wechat": 0.03, "email": 0.01, "outbound_ivr": 0.4, "outbound_call": 0.6}  # opened, not accepted
OPEN_DELAY = {"sms_push": 1, "wechat": 2, "email": 3, "outbound_ivr": 1, "outbound_call": 1}  # 0..n-1 days
ACCEPT_DELAY = {"sms_push": 3, "wechat": 3, "email": 3, "outbound_ivr": 1, "outbound_call": 1}
MAX_DELAY = 1 + 3 + 3  # sent the day after the decision, then opened, then accepted
TRIAL_CAMPAIGN = "trial_"
# The deliveries a provoked closure removes the customer from (from the day of the closure on).
AFTER_CLOSURE = ("crm_profile", "usage", "billing", "contacts", "complaints", "orders", "devices", "optouts", "responses")


@dataclass
class World:
    """The hidden truth ``respond`` and the headline need: customers, products, and lookups."""

    spec: SimSpec
    c: dict
    products: list[dict]
    held_cache: dict = field(default_factory=dict)
    lists_cache: dict = field(default_factory=dict)
    closed_by_contact: dict = field(default_factory=dict)  # customer index -> day index of the provoked closure

    @classmethod
    def load(cls, spec: SimSpec, paths: Paths | None = None) -> World:
        """The world of ``spec``; with ``paths``, the closures contacts provoked so far (truth/contact_churn.parquet)."""
        world = cls(spec, _customers(spec), list(business("products")["products"]))
        f = paths.truth / "contact_churn.parquet" if paths is not None else None
        if f is not None and f.exists():
            import pyarrow.parquet as pq

            t = pq.read_table(f).to_pydict()
            for cid, close in zip(t["customer_id"], t["close_date"], strict=True):
                world.closed_by_contact[int(cid[1:])] = world.day_index(close)
        return world

    @property
    def params(self):
        return self.spec.params

    @property
    def product_index(self) -> dict[str, int]:
        return {p["id"]: j for j, p in enumerate(self.products)}

    def day_index(self, day: dt.date) -> int:
        return (day - self.spec.start_date).days

    def base_alive(self, day: dt.date) -> np.ndarray:
        """Joined and not closed by the simulator's own churn (contacts apart)."""
        i = self.day_index(day)
        c = self.c
        return (c["tenure"] >= (self.spec.days - 1 - i)) & ~(c["churner"] & (c["churn_close"] <= i))

    def alive(self, day: dt.date) -> np.ndarray:
        out = self.base_alive(day)
        i = self.day_index(day)
        gone = [k for k, close in self.closed_by_contact.items() if close <= i]
        out[np.array(gone, dtype=np.int64)] = False
        return out

    def interest(self, idx: np.ndarray, prod: np.ndarray, day: dt.date) -> np.ndarray:
        """Hidden interest in [0, 1] of customer ``idx[k]`` in product ``prod[k]`` (index into ``products``)."""
        cats = np.array([p["category"] for p in self.products])[prod]
        return interest(self.c, cats, idx, self.day_index(day))

    def fatigue(self, prior: np.ndarray | None) -> np.ndarray | float:
        """Factor on opening and on accepting after ``prior`` earlier outbound contacts in the fatigue window."""
        return 1.0 if prior is None else np.exp(-self.params.fatigue_response_decay * prior)

    def p_convert(self, idx: np.ndarray, prod: np.ndarray, channel: np.ndarray, day: dt.date,
                  held: np.ndarray | None = None, prior: np.ndarray | None = None) -> np.ndarray:
        """True probability that a contact (customer, product, outbound channel) sent the day after ``day``
        ends in an order; ``prior``: each contact's customer's outbound contacts in the fatigue window before."""
        c = self.c
        i = self.day_index(day)
        prof = self.params
        fam = np.array([RESPONSE_FAMILIES.index(p["category"]) if p["category"] in RESPONSE_FAMILIES else 0
                        for p in self.products], dtype=np.int64)[prod]
        responds = (c["response"][idx, fam] == PERSUADABLE) & ~c["sleeping_dog"][idx]
        tired = np.broadcast_to(self.fatigue(prior), (len(idx),))
        price = np.array([float(p["price"]) for p in self.products])[prod]
        care = np.array([p["category"] == "care" for p in self.products])[prod]
        pref = c["chan_pref"]
        p = np.zeros(len(idx))
        for ch in OUTBOUND:
            m = channel == ch
            if not m.any():
                continue
            col = INBOUND.index(ATTENDS[ch])
            attention = np.clip(0.25 + 3.0 * pref[idx[m], col], 0, 1)
            inter = self.interest(idx[m], prod[m], day)
            price_factor = 1 - 0.5 * c["price_sensitivity"][idx[m]] * np.minimum(price[m] / 50.0, 1.0)
            churn = np.where(c["churner"][idx[m]] & (i >= c["churn_start"][idx[m]]), prof.churner_accept_factor, 1.0)
            accept = np.clip(ACCEPT[ch] * (inter / 0.3) ** 2 * price_factor * churn * tired[m], 0, 0.95)
            p[m] = DELIVER[ch] * OPEN[ch] * attention * tired[m] * accept
        p[care | ~responds] = 0.0
        p *= self.alive(day + dt.timedelta(days=1))[idx]
        if held is not None:
            p[held[idx, prod]] = 0.0
        return p

    def p_optout(self, idx: np.ndarray, ch: str, prior: np.ndarray | None = None) -> np.ndarray:
        """Probability that a delivered contact through outbound channel ``ch`` that is not accepted makes the
        customer opt out: complaint-prone customers 5x, calls and IVR 2.5x, a sleeping dog ``dog_optout_multiplier``
        x, and with fatigue (1 + ``fatigue_optout_growth`` x earlier contacts in the window). The responder draws
        its opt-outs with it; the headline's expected opt-outs (:meth:`harm`) are computed from it."""
        prof = self.params
        prone = self.c["complaint_prone"][idx]
        dog = self.c["sleeping_dog"][idx]
        p = 0.002 * (1 + 4 * prone) * (2.5 if ch.startswith("outbound") else 1) * np.where(dog, prof.dog_optout_multiplier, 1.0)
        return p if prior is None else p * (1 + prof.fatigue_optout_growth * prior)

    def dog_leave_prob(self, prod: np.ndarray) -> np.ndarray:
        """Per contact of product ``prod``: the probability that, delivered to a sleeping dog, it makes them leave:
        ``dog_contact_churn_prob`` when the product's family is one of ``dog_contact_families`` (or that is ``all``),
        else ``dog_other_contact_churn_prob``."""
        prof = self.params
        prod = np.asarray(prod, dtype=np.int64)
        full = float(prof.dog_contact_churn_prob)
        if prof.dog_contact_families == "all":
            return np.full(len(prod), full)
        cats = np.array([q["category"] for q in self.products], dtype=object)[prod]
        return np.where(np.isin(cats, list(prof.dog_contact_families)), full, float(prof.dog_other_contact_churn_prob))

    def p_leave(self, idx: np.ndarray, prod: np.ndarray) -> np.ndarray:
        """Probability that a delivered contact of product ``prod`` makes the customer leave, ``dog_churn_lag_days``
        later: :meth:`dog_leave_prob` for a sleeping dog, 0 for anyone else. The responder draws its closures with
        it."""
        return np.where(self.c["sleeping_dog"][idx], self.dog_leave_prob(prod), 0.0)

    def harm(self, idx: np.ndarray, prod: np.ndarray, channel: np.ndarray, day: dt.date,
             held: np.ndarray | None = None, prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per contact (sent the day after ``day``), the expected opt-outs and the expected closures it causes,
        from the responder's own probabilities: opt-out = :meth:`p_optout` x P(delivered and not accepted) =
        p_optout x (P(delivered) - :meth:`p_convert`); closure = P(delivered) x :meth:`p_leave`. Without the
        contact neither happens (the simulator's own opt-outs and churn do not depend on contacts). Zero for a
        customer closed by the next day, as :meth:`p_convert`."""
        optouts, closures = np.zeros(len(idx)), np.zeros(len(idx))
        p = self.p_convert(idx, prod, channel, day, held, prior)
        for ch in OUTBOUND:
            m = channel == ch
            if m.any():
                mine = None if prior is None else prior[m]
                optouts[m] = self.p_optout(idx[m], ch, mine) * (DELIVER[ch] - p[m])
                closures[m] = DELIVER[ch] * self.p_leave(idx[m], prod[m])
        alive = self.alive(day + dt.timedelta(days=1))[idx]
        return optouts * alive, closures * alive

    def lost_value(self, idx: np.ndarray) -> np.ndarray:
        """What a closure a contact provokes costs in the headline: ``lost_customer_months`` x the customer's
        monthly plan fee (simulator/generate.py PLANS, by brand)."""
        fee = np.array([PLANS[b][1] for b in self.c["brand"][idx]], dtype=np.float64)
        return fee * float(self.params.lost_customer_months)

    def uplift(self, idx: np.ndarray, prod: np.ndarray, channel: np.ndarray, day: dt.date,
               held: np.ndarray | None = None, prior: np.ndarray | None = None) -> np.ndarray:
        """True incremental effect of each contact: P(order | contacted) - P(order | not contacted). A contact
        changes no one's unprompted orders (sure things buy anyway), so it is :meth:`p_convert`."""
        return self.p_convert(idx, prod, channel, day, held, prior)

    def lists(self, paths: Paths, day: dt.date) -> dict[str, np.ndarray]:
        """:func:`read_lists`, kept (a published list does not change)."""
        key = (str(paths.root), day.isoformat())
        if key not in self.lists_cache:
            self.lists_cache[key] = read_lists(paths, self, day)
        return self.lists_cache[key]

    def prior_contacts(self, paths: Paths, decided: dt.date) -> np.ndarray:
        """Per customer: outbound contacts decided in the ``fatigue_window_days`` before ``decided``."""
        out = np.zeros(self.spec.customers, dtype=np.int64)
        if self.params.fatigue_response_decay == 0 and self.params.fatigue_optout_growth == 0:
            return out
        for back in range(1, int(self.params.fatigue_window_days) + 1):
            d = decided - dt.timedelta(days=back)
            if d < self.spec.start_date:
                break
            idx = self.lists(paths, d)["idx"]
            if len(idx):
                np.add.at(out, idx.astype(np.int64), 1)
        return out


# --- reading the lists and the operator's own files ----------------------------------------------------------

def read_lists(paths: Paths, world: World, day: dt.date) -> dict[str, np.ndarray]:
    """The outbound rows published for decision date ``day``: contact_ref, customer index, product index,
    channel, campaign (as a downstream system sees them: from the list's own columns)."""
    out = {k: [] for k in ("ref", "idx", "prod", "channel", "campaign")}
    folder = paths.export_day(day)
    if not (folder / "_SUCCESS").exists():
        return {k: np.array(v) for k, v in out.items()}
    c = world.c
    by_msisdn = {m: k for k, m in enumerate(c["msisdn"])}
    by_email = {e: k for k, e in enumerate(c["email"]) if e}
    pindex = world.product_index
    for ch in OUTBOUND:
        link = folder / ch
        if not link.exists():
            continue
        files = sorted(link.glob("*.csv.gz"))
        if not files:
            continue
        t = pacsv.read_csv(files[0], convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in
                           ("contact_ref", "msisdn", "customer_id", "email", "params", "template_id", "script_id", "product_id", "campaign_id")}))
        if t.num_rows == 0:
            continue
        d = t.to_pydict()
        if "customer_id" in d:
            idx = [int(x[1:]) for x in d["customer_id"]]
        elif "msisdn" in d:
            idx = [by_msisdn[x] for x in d["msisdn"]]
        else:
            idx = [by_email[x] for x in d["email"]]
        if "product_id" in d:
            prods = d["product_id"]
        else:
            prods = [dict(kv.split("=", 1) for kv in p.split(";"))["product"] for p in d["params"]]
        if "campaign_id" in d:
            camps = d["campaign_id"]
        else:  # T_<CHANNEL>_<CAMPAIGN>_<product> / S_<CAMPAIGN>_<product>
            key = "template_id" if "template_id" in d else "script_id"
            prefix = f"T_{ch.upper()}_" if key == "template_id" else "S_"
            camps = [tpl[len(prefix): -len(p) - 1].lower() for tpl, p in zip(d[key], prods, strict=True)]
        out["ref"] += d["contact_ref"]
        out["idx"] += idx
        out["prod"] += [pindex[p] for p in prods]
        out["channel"] += [ch] * t.num_rows
        out["campaign"] += camps
    return {"ref": np.array(out["ref"], dtype=object), "idx": np.array(out["idx"], dtype=np.int64),
            "prod": np.array(out["prod"], dtype=np.int64), "channel": np.array(out["channel"], dtype=object),
            "campaign": np.array(out["campaign"], dtype=object)}


def _base_copy(paths: Paths, kind: str, day: dt.date) -> Path:
    """The simulator's original delivery of ``kind`` for ``day``, kept once before the first rewrite."""
    schema = FILES[kind]
    keep = paths.truth / "landing_base" / day.isoformat() / schema.file_name(day)
    if not keep.exists():
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(paths.landing_day(day) / schema.file_name(day), keep)
    return keep


def read_delivery(path: Path, kind: str) -> pa.Table:
    schema = FILES[kind]
    return pacsv.read_csv(io.BytesIO(gzip.decompress(path.read_bytes())), parse_options=pacsv.ParseOptions(delimiter=DELIMITER),
                          convert_options=pacsv.ConvertOptions(column_types={c.name: ARROW_TYPES[c.type] for c in schema.columns}))


def deliveries_before(paths: Paths, spec: SimSpec, kind: str, day: dt.date):
    """Every delivery of ``kind`` from the simulation's first day up to the day before ``day``, as Arrow tables."""
    d = spec.start_date
    while d < day:
        f = paths.landing_day(d) / FILES[kind].file_name(d)
        if f.exists():
            yield read_delivery(f, kind)
        d += dt.timedelta(days=1)


def held_before(paths: Paths, world: World, day: dt.date) -> np.ndarray:
    """customers x products: what each customer has bought and not cancelled before ``day``, from the orders
    files the operator delivered (an open trial is not a holding: converting it is what trial campaigns sell)."""
    key = day.isoformat()
    if key in world.held_cache:
        return world.held_cache[key]
    held = np.zeros((world.spec.customers, len(world.products)), dtype=bool)
    pindex = world.product_index
    for t in deliveries_before(paths, world.spec, "orders", day):
        cid = np.array([int(x[1:]) for x in t["customer_id"].to_pylist()], dtype=np.int64)
        pid = np.array([pindex.get(x, -1) for x in t["product_id"].to_pylist()], dtype=np.int64)
        action = np.array(t["action"].to_pylist(), dtype=object)
        for acts, value in ((("order", "trial_convert"), True), (("cancel",), False)):
            m = np.isin(action, acts) & (pid >= 0)
            held[cid[m], pid[m]] = value
    world.held_cache[key] = held
    return held


# --- the events ------------------------------------------------------------------------------------------------

def events_for(world: World, lists: dict[str, np.ndarray], decided: dt.date, held: np.ndarray | None = None,
               prior: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every event of the contacts decided on ``decided`` (sent the next day), with its date; ``prior``: per
    customer, outbound contacts in the fatigue window before (:meth:`World.prior_contacts`; None: no fatigue).
    Deterministic: one random stream per decision date and channel, drawn in list order, and one more for the
    closures contacts provoke (event ``leaves``, dated on the closure; not a campaign-platform event)."""
    cols = {k: [] for k in ("ref", "idx", "prod", "channel", "campaign", "event", "day", "second")}
    sent = decided + dt.timedelta(days=1)
    prof = world.params
    lag_lo, lag_hi = prof.dog_churn_lag_days or (1, 1)
    for k, ch in enumerate(OUTBOUND):
        m = lists["channel"] == ch
        n = int(m.sum())
        if not n:
            continue
        rng = np.random.default_rng([world.spec.seed, 7000 + decided.toordinal() % 100000, k])
        u = rng.random((7, n))
        d_open = rng.integers(0, OPEN_DELAY[ch], n)
        d_acc = rng.integers(0, ACCEPT_DELAY[ch], n)
        secs = rng.integers(9 * 3600, 21 * 3600, n)
        idx, prod = lists["idx"][m], lists["prod"][m]
        col = INBOUND.index(ATTENDS[ch])
        attention = np.clip(0.25 + 3.0 * world.c["chan_pref"][idx, col], 0, 1)
        mine = None if prior is None else prior[idx]
        p_open = OPEN[ch] * attention * world.fatigue(mine)
        p_all = world.p_convert(idx, prod, np.full(n, ch, dtype=object), decided, held, mine)
        p_accept_given_open = np.minimum(p_all / (DELIVER[ch] * p_open), 1.0)
        delivered = u[0] < DELIVER[ch]
        opened = delivered & (u[1] < p_open)
        clicked = opened & (u[2] < 0.4) & np.isin(ch, ("sms_push", "wechat", "email"))
        accepted = opened & (u[3] < p_accept_given_open)
        declined = opened & ~accepted & (u[4] < DECLINE[ch])
        opted_out = delivered & ~accepted & (u[5] < world.p_optout(idx, ch, mine))
        complained = delivered & ~accepted & world.c["complaint_prone"][idx] & (u[6] < 0.01)
        drng = np.random.default_rng([world.spec.seed, 9000 + decided.toordinal() % 100000, k])
        leaves = delivered & (drng.random(n) < world.p_leave(idx, prod))
        d_leave = drng.integers(lag_lo, lag_hi + 1, n)
        for event, mask, delay in (
            ("delivered", delivered, 0), ("failed", ~delivered, 0), ("opened", opened, d_open), ("clicked", clicked, d_open),
            ("accepted", accepted, d_open + d_acc), ("declined", declined, d_open), ("opted_out", opted_out, d_open),
            ("complained", complained, d_open), ("leaves", leaves, d_leave),
        ):
            delay = np.broadcast_to(delay, (n,))
            cols["ref"].append(lists["ref"][m][mask])
            cols["idx"].append(idx[mask])
            cols["prod"].append(prod[mask])
            cols["channel"].append(np.full(int(mask.sum()), ch, dtype=object))
            cols["campaign"].append(lists["campaign"][m][mask])
            cols["event"].append(np.full(int(mask.sum()), event, dtype=object))
            cols["day"].append(np.array([sent + dt.timedelta(days=int(x)) for x in delay[mask]], dtype=object))
            cols["second"].append(secs[mask] + 60 * (event in ("accepted", "opted_out", "complained")))
    if not cols["ref"]:
        return {k: np.array([], dtype=object) for k in cols}
    return {k: np.concatenate(v) for k, v in cols.items()}


def _order_id(ref: str) -> str:
    return "R" + hashlib.sha256(ref.encode()).hexdigest()[:15].upper()


def provoked_closures(paths: Paths, world: World, day: dt.date) -> dict[int, tuple[int, str, dt.date]]:
    """The closures contacts decided before ``day`` provoke (sleeping dogs): customer index -> (day index of the
    closure, contact_ref, decision date), the first for a customer, among customers the simulator's own churn
    has not closed by then. Updates ``world.closed_by_contact`` and writes ``truth/contact_churn.parquet``."""
    if world.params.dog_contact_churn_prob == 0 and world.params.dog_other_contact_churn_prob == 0:
        return {}
    found: dict[int, tuple[int, str, dt.date]] = {}
    decided = world.spec.start_date
    while decided < day:
        lists = world.lists(paths, decided)
        if len(lists["ref"]):
            ev = events_for(world, lists, decided)
            m = ev["event"] == "leaves"
            for ref, k, d in zip(ev["ref"][m], ev["idx"][m].astype(int), ev["day"][m], strict=True):
                close = world.day_index(d)
                if (k not in found or close < found[k][0]) and world.base_alive(d)[k]:
                    found[int(k)] = (close, str(ref), decided)
        decided += dt.timedelta(days=1)
    world.closed_by_contact = {k: v[0] for k, v in found.items()}
    keys = sorted(found)
    t = pa.table({"customer_id": pa.array([world.c["customer_id"][k] for k in keys], pa.string()),
                  "contact_ref": pa.array([found[k][1] for k in keys], pa.string()),
                  "decided": pa.array([found[k][2] for k in keys], pa.date32()),
                  "close_date": pa.array([world.spec.start_date + dt.timedelta(days=found[k][0]) for k in keys], pa.date32())})
    import pyarrow.parquet as pq

    paths.truth.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, paths.truth / "contact_churn.parquet")
    return found


def _without_closed(table: pa.Table, gone: set[str]) -> pa.Table:
    if not gone or table.num_rows == 0:
        return table
    keep = ~np.isin(np.array(table["customer_id"].to_pylist(), dtype=object), sorted(gone))
    return table.filter(pa.array(keep))


def day_events(paths: Paths, world: World, day: dt.date) -> dict[str, np.ndarray]:
    """The events that happen on ``day`` for every list published in the ``MAX_DELAY`` days before, in a stable
    order (contact reference, then event)."""
    parts = []
    for back in range(1, MAX_DELAY + 1):
        decided = day - dt.timedelta(days=back)
        lists = world.lists(paths, decided)
        if len(lists["ref"]):
            held = held_before(paths, world, decided + dt.timedelta(days=1))
            ev = events_for(world, lists, decided, held, world.prior_contacts(paths, decided))
            mine = (ev["day"] == day) & (ev["event"] != "leaves")
            parts.append({k: v[mine] for k, v in ev.items()})
    ev = {k: np.concatenate([p[k] for p in parts]) if parts else np.array([], dtype=object)
          for k in ("ref", "idx", "prod", "channel", "campaign", "event", "second")}
    order = np.lexsort((ev["event"].astype(str), ev["ref"].astype(str))) if len(ev["ref"]) else np.array([], dtype=int)
    return {k: v[order] for k, v in ev.items()}


def close_lines(paths: Paths, world: World, day: dt.date, gone: set, closing: np.ndarray) -> None:
    """The day's other deliveries without the lines contacts made leave, and a CRM row for each line closing today."""
    kept = paths.truth / "landing_base" / day.isoformat()
    for kind in ("crm_profile", "usage", "billing", "contacts", "complaints", "devices"):
        if not gone and not (kept / FILES[kind].file_name(day)).exists():
            continue  # nothing to change: the simulator's delivery stays as written
        table = _without_closed(read_delivery(_base_copy(paths, kind, day), kind), gone)
        if kind == "crm_profile" and len(closing):
            closed = crm_table(world.c, closing, day, np.full(len(closing), "closed")).cast(table.schema)
            table = pa.concat_tables([table, closed])
        _write(paths, FILES[kind], day, table)


def respond(paths: Paths, spec: SimSpec, day: dt.date, world: World | None = None) -> dict[str, int]:
    """Write ``day``'s responses file and add the day's accepted orders and opt-outs to its orders and optouts
    files, from every list published in the ``MAX_DELAY`` days before; close the lines contacts made leave (CRM
    row on the closure day, no rows from then on). Returns event counts."""
    world = world or World.load(spec, paths)
    i = world.day_index(day)
    closures = provoked_closures(paths, world, day)
    gone = {world.c["customer_id"][k] for k, v in closures.items() if v[0] <= i}
    closing = np.array(sorted(k for k, v in closures.items() if v[0] == i), dtype=np.int64)
    ev = day_events(paths, world, day)
    c = world.c
    base = np.datetime64(day.isoformat(), "s")
    ts = pa.array(base + ev["second"].astype("int64").astype("timedelta64[s]"), type=pa.timestamp("s"))
    acc = ev["event"] == "accepted"
    order_ids = np.array([_order_id(r) if a else None for r, a in zip(ev["ref"], acc, strict=True)], dtype=object)
    responses = pa.table({
        "contact_ref": pa.array(list(ev["ref"]), pa.string()), "customer_id": pa.array(list(c["customer_id"][ev["idx"].astype(int)]), pa.string()),
        "event_ts": ts, "channel": pa.array(list(ev["channel"]), pa.string()), "event": pa.array(list(ev["event"]), pa.string()),
        "order_id": pa.array(list(order_ids), pa.string()),
    })
    _write(paths, FILES["responses"], day, _without_closed(responses, gone))

    # Accepted offers are orders; a trial campaign's acceptance converts the trial, so the operator's own end of
    # that trial (converted or expired, in the original file) no longer happens.
    orders = read_delivery(_base_copy(paths, "orders", day), "orders")
    held = held_before(paths, world, day)
    pindex = world.product_index
    # (and an unprompted order of a product a campaign has sold the customer since: it was bought once)
    ended_before = np.array([a in ("trial_convert", "trial_expire", "order") and p in pindex and bool(held[int(cid[1:]), pindex[p]])
                             for cid, p, a in zip(orders["customer_id"].to_pylist(), orders["product_id"].to_pylist(),
                                                  orders["action"].to_pylist(), strict=True)], dtype=bool)
    orders = orders.filter(pa.array(~ended_before)) if len(ended_before) else orders
    a = {k: v[acc] for k, v in ev.items()}
    prices = np.array([float(p["price"]) for p in world.products])
    extra = pa.table({
        "order_id": pa.array(list(order_ids[acc]), pa.string()), "customer_id": pa.array(list(c["customer_id"][a["idx"].astype(int)]), pa.string()),
        "order_ts": ts.filter(pa.array(acc)), "product_id": pa.array([world.products[int(j)]["id"] for j in a["prod"]], pa.string()),
        "action": pa.array(["trial_convert" if str(x).startswith(TRIAL_CAMPAIGN) else "order" for x in a["campaign"]], pa.string()),
        "channel": pa.array(list(a["channel"]), pa.string()), "price": pa.array(prices[a["prod"].astype(int)], pa.float64()),
    })
    _write(paths, FILES["orders"], day, _without_closed(pa.concat_tables([orders, extra.cast(orders.schema)]), gone))

    oo = ev["event"] == "opted_out"
    optouts = read_delivery(_base_copy(paths, "optouts", day), "optouts")
    extra = pa.table({
        "customer_id": pa.array(list(c["customer_id"][ev["idx"][oo].astype(int)]), pa.string()), "event_ts": ts.filter(pa.array(oo)),
        "channel": pa.array(list(ev["channel"][oo]), pa.string()), "action": pa.array(["opt_out"] * int(oo.sum()), pa.string()),
    })
    _write(paths, FILES["optouts"], day, _without_closed(pa.concat_tables([optouts, extra.cast(optouts.schema)]), gone))
    close_lines(paths, world, day, gone, closing)
    counts = {e: int((ev["event"] == e).sum()) for e in ("delivered", "failed", "opened", "clicked", "accepted", "declined", "opted_out", "complained")}
    counts["closed_by_contact"] = len(closing)
    log.info(f"respond {day}: {len(ev['ref'])} events ({', '.join(f'{k} {v}' for k, v in counts.items() if v)}) -> "
          f"{FILES['responses'].file_name(day)}; {counts['accepted']} orders, {counts['opted_out']} opt-outs added")
    return counts
