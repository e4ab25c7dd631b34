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

The response model (all of it hidden from the pipeline, like the rest of ``truth/``):

    P(convert) = P(delivered | channel) x P(opened | channel, attention) x P(accept | opened)
    attention  = how much the customer attends to the channel (their hidden inbound channel preference)
    P(accept | opened) = channel's rate x interest(customer, product)^2 x price factor x churn factor

``interest`` is the hidden affinity of the product's category (handsets: handset intent; a bigger plan: heavy
data use; the renewal bonus: a contract ending within 90 days), zero for a product already held. The same
function gives the blind blast and the oracle their expected conversions (``simulator/loop.py``).
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
from simulator.generate import ARROW_TYPES, INBOUND, SimSpec, _customers, _write

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


@dataclass
class World:
    """The hidden truth ``respond`` and the headline need: customers, products, and lookups."""

    spec: SimSpec
    c: dict
    products: list[dict]
    held_cache: dict = field(default_factory=dict)

    @classmethod
    def load(cls, spec: SimSpec) -> World:
        return cls(spec, _customers(spec), list(business("products")["products"]))

    @property
    def product_index(self) -> dict[str, int]:
        return {p["id"]: j for j, p in enumerate(self.products)}

    def day_index(self, day: dt.date) -> int:
        return (day - self.spec.start_date).days

    def alive(self, day: dt.date) -> np.ndarray:
        i = self.day_index(day)
        c = self.c
        return (c["tenure"] >= (self.spec.days - 1 - i)) & ~(c["churner"] & (c["churn_close"] <= i))

    def interest(self, idx: np.ndarray, prod: np.ndarray, day: dt.date) -> np.ndarray:
        """Hidden interest in [0, 1] of customer ``idx[k]`` in product ``prod[k]`` (index into ``products``)."""
        c = self.c
        cats = np.array([p["category"] for p in self.products])[prod]
        out = np.zeros(len(idx))
        for cat, aff in c["affinity"].items():
            m = cats == cat
            out[m] = aff[idx[m]]
        m = cats == "handset"
        out[m] = 0.8 * c["handset_intent"][idx[m]]
        m = cats == "plan"
        out[m] = 0.1 + 0.4 * c["heavy_data"][idx[m]] * (1 - c["price_sensitivity"][idx[m]])
        m = cats == "retention"
        end = c["contract_end"][idx[m]]
        soon = np.array([e is not None and 0 <= (e - day).days <= 90 for e in end], dtype=bool)
        out[m] = np.where(soon, 0.6, 0.05)
        return out

    def p_convert(self, idx: np.ndarray, prod: np.ndarray, channel: np.ndarray, day: dt.date,
                  held: np.ndarray | None = None) -> np.ndarray:
        """True probability that a contact (customer, product, outbound channel) sent the day after ``day``
        ends in an order."""
        c = self.c
        i = self.day_index(day)
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
            churn = np.where(c["churner"][idx[m]] & (i >= c["churn_start"][idx[m]]), 0.2, 1.0)
            accept = np.clip(ACCEPT[ch] * (inter / 0.3) ** 2 * price_factor * churn, 0, 0.95)
            p[m] = DELIVER[ch] * OPEN[ch] * attention * accept
        p[care] = 0.0
        p *= self.alive(day + dt.timedelta(days=1))[idx]
        if held is not None:
            p[held[idx, prod]] = 0.0
        return p


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

def events_for(world: World, lists: dict[str, np.ndarray], decided: dt.date, held: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every event of the contacts decided on ``decided`` (sent the next day), with its date. Deterministic:
    one random stream per decision date and channel, drawn in list order."""
    cols = {k: [] for k in ("ref", "idx", "prod", "channel", "campaign", "event", "day", "second")}
    sent = decided + dt.timedelta(days=1)
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
        p_all = world.p_convert(idx, prod, np.full(n, ch, dtype=object), decided, held)
        p_accept_given_open = np.minimum(p_all / (DELIVER[ch] * OPEN[ch] * attention), 1.0)
        delivered = u[0] < DELIVER[ch]
        opened = delivered & (u[1] < OPEN[ch] * attention)
        clicked = opened & (u[2] < 0.4) & np.isin(ch, ("sms_push", "wechat", "email"))
        accepted = opened & (u[3] < p_accept_given_open)
        declined = opened & ~accepted & (u[4] < DECLINE[ch])
        prone = world.c["complaint_prone"][idx]
        opted_out = delivered & ~accepted & (u[5] < 0.002 * (1 + 4 * prone) * (2.5 if ch.startswith("outbound") else 1))
        complained = delivered & ~accepted & prone & (u[6] < 0.01)
        for event, mask, delay in (
            ("delivered", delivered, 0), ("failed", ~delivered, 0), ("opened", opened, d_open), ("clicked", clicked, d_open),
            ("accepted", accepted, d_open + d_acc), ("declined", declined, d_open), ("opted_out", opted_out, d_open),
            ("complained", complained, d_open),
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


def respond(paths: Paths, spec: SimSpec, day: dt.date, world: World | None = None) -> dict[str, int]:
    """Write ``day``'s responses file and add the day's accepted orders and opt-outs to its orders and optouts
    files, from every list published in the ``MAX_DELAY`` days before. Returns event counts."""
    world = world or World.load(spec)
    parts = []
    for back in range(1, MAX_DELAY + 1):
        decided = day - dt.timedelta(days=back)
        lists = read_lists(paths, world, decided)
        if len(lists["ref"]):
            held = held_before(paths, world, decided + dt.timedelta(days=1))
            ev = events_for(world, lists, decided, held)
            mine = ev["day"] == day
            parts.append({k: v[mine] for k, v in ev.items()})
    ev = {k: np.concatenate([p[k] for p in parts]) if parts else np.array([], dtype=object)
          for k in ("ref", "idx", "prod", "channel", "campaign", "event", "second")}
    order = np.lexsort((ev["event"].astype(str), ev["ref"].astype(str))) if len(ev["ref"]) else np.array([], dtype=int)
    ev = {k: v[order] for k, v in ev.items()}
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
    _write(paths, FILES["responses"], day, responses)

    # Accepted offers are orders; a trial campaign's acceptance converts the trial, so the operator's own end of
    # that trial (converted or expired, in the original file) no longer happens.
    orders = read_delivery(_base_copy(paths, "orders", day), "orders")
    held = held_before(paths, world, day)
    pindex = world.product_index
    ended_before = np.array([a in ("trial_convert", "trial_expire") and p in pindex and bool(held[int(cid[1:]), pindex[p]])
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
    _write(paths, FILES["orders"], day, pa.concat_tables([orders, extra.cast(orders.schema)]))

    oo = ev["event"] == "opted_out"
    optouts = read_delivery(_base_copy(paths, "optouts", day), "optouts")
    extra = pa.table({
        "customer_id": pa.array(list(c["customer_id"][ev["idx"][oo].astype(int)]), pa.string()), "event_ts": ts.filter(pa.array(oo)),
        "channel": pa.array(list(ev["channel"][oo]), pa.string()), "action": pa.array(["opt_out"] * int(oo.sum()), pa.string()),
    })
    _write(paths, FILES["optouts"], day, pa.concat_tables([optouts, extra.cast(optouts.schema)]))
    counts = {e: int((ev["event"] == e).sum()) for e in ("delivered", "failed", "opened", "clicked", "accepted", "declined", "opted_out", "complained")}
    log.info(f"respond {day}: {len(ev['ref'])} events ({', '.join(f'{k} {v}' for k, v in counts.items() if v)}) -> "
          f"{FILES['responses'].file_name(day)}; {counts['accepted']} orders, {counts['opted_out']} opt-outs added")
    return counts
