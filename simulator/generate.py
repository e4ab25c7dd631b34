"""Operator simulator: customers with hidden truth, and the daily files an operator's systems deliver.

Each customer gets hidden traits (churn intent, product affinities, channel preference, price sensitivity,
heavy data use, handset intent, complaint proneness). Behaviour in the files follows from them: a churner's
traffic fades and stops days before the line is closed, a price-sensitive customer tops up often in small
amounts and cancels paid services, a customer who prefers the app contacts us through the app, a customer
drawn to a product family spends more of their data on the applications that go with it (video for data
packs, music and reading for value-added services, games, travel for roaming, education and family apps for
family plans), and the device registry knows how long the current handset has been in use and how many came
before it.

How churners leave and how customers respond to contact follow the profile's parameters (``SimSpec.profile``;
one table with its sources and assumptions: ``simulator/profiles.py``, docs/simulator.md). In ``realistic`` (the
default) a few churners port their number and send the number-portability query hours before the port, most
leave silently with a weak, noisy decline in traffic, and contracts ending raise and time churn; each customer
is, per product family, persuadable, a sure thing (buys unprompted: the only unprompted orders) or a lost cause,
and a few are sleeping dogs a contact pushes away (``simulator/responder.py``). ``easy`` is the simulator as it
was before: most churners send the query around the day their intent starts and their traffic collapses.
The truth goes to ``truth/`` (Parquet), which the pipeline never reads; tests and benchmarks compare tags
and models against it.

Everything is vectorised with numpy per day, and every day's random stream is seeded from (seed, day), so the
same seed gives the same files, byte for byte (gzip headers carry no time stamp).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import sys
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jobs.platform.config import Paths, business
from schemas import APP_CATEGORIES, DELIMITER, FILES, FileSchema
from schemas.types import TYPES, arrow
from simulator.profiles import DEFAULT_PROFILE, Profile, check_name, profile

log = logging.getLogger(__name__)

CITIES = {
    "Guangzhou": ["Tianhe", "Yuexiu", "Haizhu"],
    "Shenzhen": ["Futian", "Nanshan", "Bao'an"],
    "Foshan": ["Chancheng", "Nanhai", "Shunde"],
    "Dongguan": ["Dongcheng", "Nancheng", "Changan"],
    "Shantou": ["Jinping", "Longhu", "Chaoyang"],
    "Zhanjiang": ["Chikan", "Xiashan", "Mazhang"],
}
OCCUPATIONS = ["worker", "office", "civil servant", "teacher", "merchant", "farmer", "driver", "it"]
# The passive (inbound) channels of conf/channels.yaml, in its order: a customer's hidden channel preference has
# one share per channel, in this order.
INBOUND = [c["id"] for c in business("channels")["channels"] if c["kind"] == "passive"]
# What an opt-out names: all marketing, or one active channel. The order is the one the daily draw indexes (kept so
# that the same seed gives the same files); the set is conf/channels.yaml's active channels (tests/test_simulator.py).
OPTOUT_CHANNELS = ["all", "sms_push", "outbound_call", "outbound_ivr", "wechat", "email"]
HANDSETS = [("Huawei", "Mate"), ("Xiaomi", "Redmi"), ("OPPO", "Reno"), ("vivo", "X"), ("Apple", "iPhone"), ("Honor", "Magic")]
TRIAL_DAYS = 30
# The product affinity each usage-file application category (schemas.APP_CATEGORIES) follows.
APP_AFFINITY = dict(zip(APP_CATEGORIES, ("data", "vas", "games", "roaming", "family"), strict=True))
PLANS = {"prepaid": ("PP18", 18.0), "regular": ("RG58", 58.0), "premium": ("GT128", 128.0)}


@dataclass(frozen=True)
class SimSpec:
    customers: int
    days: int
    end_date: dt.date
    seed: int = 42
    profile: str = DEFAULT_PROFILE  # the behaviour parameters (simulator/profiles.py)

    def __post_init__(self) -> None:
        check_name(self.profile)

    @property
    def params(self) -> Profile:
        return profile(self.profile)

    @property
    def start_date(self) -> dt.date:
        return self.end_date - dt.timedelta(days=self.days - 1)

    @classmethod
    def of(cls, paths: Paths) -> SimSpec:
        """The spec a root's files were simulated with (``truth/simulation.json``; without a profile: the original
        simulator, which is the ``easy`` profile)."""
        meta = json.loads((paths.truth / "simulation.json").read_text())
        return cls(int(meta["customers"]), int(meta["days"]), dt.date.fromisoformat(meta["end_date"]), int(meta["seed"]),
                   str(meta.get("profile", "easy")))

    def dates(self) -> list[dt.date]:
        return [self.start_date + dt.timedelta(days=i) for i in range(self.days)]


def _customers(spec: SimSpec) -> dict[str, np.ndarray]:
    """Static attributes and hidden truth of every customer (including those who join during the window).

    Two random streams, each drawn from in a fixed order: the order of the calls below is part of the
    simulation (changing it changes every file). The second stream holds the traits added later, so that
    adding them left the others as they were; the third the churn paths and response types of issue 22 (so the
    ``easy`` profile, the original simulator, writes the files it wrote before them).
    """
    prof = spec.params
    rng = np.random.default_rng([spec.seed, 1])
    rng2 = np.random.default_rng([spec.seed, 2])
    rng3 = np.random.default_rng([spec.seed, 3])
    profile, contract_soon = _profile(spec, rng)
    traits = _hidden_traits(spec, rng, profile, contract_soon, prof)
    handset = _handset(rng, rng2, profile["brand"])
    affinities = _affinities(rng, rng2, profile["age"], traits["heavy_data"])
    bases = _behaviour_bases(rng, profile["age"], traits["heavy_data"])
    history = _handset_and_port_out_history(rng2, traits["churn_start"], handset, prof)
    account = _account(rng, profile, traits["price_sensitivity"])
    optout_all = rng.random(spec.customers) < 0.04  # standing opt-outs, delivered on the first day
    c = {**profile, **account, **traits, **handset, **affinities, **history, **bases, "optout_all": optout_all}
    c.update(_churn_paths_and_response_types(spec, rng3, c, prof))
    return c


def contract_end_days(spec: SimSpec) -> np.ndarray:
    """Each customer's contract end as a day index (0 = the first simulated day; no contract: a very large number),
    as :func:`_customers` draws it. ``truth/customers.parquet`` does not hold it (the CRM files carry the date); it
    is redrawn from the seed: :func:`_profile` makes the first draws of the first stream, and nothing else."""
    profile, _ = _profile(spec, np.random.default_rng([spec.seed, 1]))
    return profile["contract_end_day"]


def _profile(spec: SimSpec, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """What the CRM knows of a customer (demographics, brand, tenure, contract), and whose contract ends soon."""
    n = spec.customers
    idx = np.arange(n)
    age = np.clip(rng.normal(40, 15, n), 16, 88).astype(int)
    gender = rng.choice(np.array(["M", "F"]), n)
    cities = np.array(list(CITIES))
    city = cities[rng.choice(len(cities), n, p=[0.3, 0.25, 0.15, 0.12, 0.1, 0.08])]
    district = np.array([CITIES[c][k] for c, k in zip(city, rng.integers(0, 3, n), strict=True)])
    occupation = np.array(OCCUPATIONS)[rng.integers(0, len(OCCUPATIONS), n)].astype(object)
    occupation[age < 23] = "student"
    occupation[age >= 62] = "retired"
    occupation[rng.random(n) < 0.05] = None  # unknown in CRM
    brand = rng.choice(np.array(["prepaid", "regular", "premium"]), n, p=[0.25, 0.55, 0.2])
    # Tenure: about 6% join during the simulated window, the rest over the past 12 years.
    tenure = rng.exponential(1400, n).astype(int) + 91
    joins_in_window = rng.random(n) < 0.06
    tenure[joins_in_window] = rng.integers(-(spec.days - 1), 1, joins_in_window.sum()) + (spec.days - 1)
    tenure = np.minimum(tenure, 4500)
    activation = np.array([spec.end_date - dt.timedelta(days=int(t)) for t in tenure])
    has_contract = (brand != "prepaid") & (rng.random(n) < 0.55)
    contract_left = rng.integers(-30, 720, n)
    soon = rng.random(n) < 0.12
    contract_left[soon] = rng.integers(0, 95, soon.sum())
    contract_end = np.array([spec.end_date + dt.timedelta(days=int(x)) if c else None for x, c in zip(contract_left, has_contract, strict=True)], dtype=object)
    # the day index (0 = the first simulated day) of the contract's end, for contract customers
    contract_end_day = np.where(has_contract, spec.days - 1 + contract_left, np.iinfo(np.int64).max // 2)
    contract_soon = has_contract & (contract_left >= 0) & (contract_left <= 90)
    profile = {
        "idx": idx,
        "customer_id": np.array([f"C{i:09d}" for i in idx]),
        "msisdn": np.array([f"1{3 + (i * 7919) % 7}{(i * 104729 + 1000003) % 1000000000:09d}" for i in idx]),
        "age": age,
        "birth_year": spec.end_date.year - age,
        "gender": gender,
        "city": city,
        "district": district,
        "occupation": occupation,
        "brand": brand,
        "activation": activation,
        "tenure": tenure,
        "has_contract": has_contract,
        "contract_end": contract_end,
        "contract_end_day": contract_end_day,
    }
    return profile, contract_soon


def _hidden_traits(spec: SimSpec, rng: np.random.Generator, profile: dict[str, np.ndarray],
                   contract_soon: np.ndarray, prof: Profile) -> dict[str, np.ndarray]:
    """Price sensitivity, heavy data use, complaint proneness, channel preference and churn intent.

    The churn risk score (a logistic of contract end, complaints, price sensitivity, prepaid, tenure) is, in the
    ``easy`` profile, the probability of churning within the simulated window; otherwise it is a relative risk,
    raised for contracts ending in the window and scaled so that the population churns ``annual_churn_rate`` a
    year, which gives the probability that a churn intent starts within the window's span.
    """
    n = spec.customers
    age, brand, tenure = profile["age"], profile["brand"], profile["tenure"]
    price_sens = np.clip(rng.beta(2, 3, n) + 0.25 * (brand == "prepaid") - 0.2 * (brand == "premium"), 0, 1)
    heavy_data = rng.random(n) < np.where(age < 35, 0.35, np.where(age < 55, 0.18, 0.04))
    complaint_prone = rng.random(n) < 0.08
    high_freq_caller = rng.random(n) < 0.03
    chan_pref = _channel_preference(rng, age)
    logit = -3.4 + 1.6 * contract_soon + 1.2 * complaint_prone + 1.3 * price_sens + 0.8 * (brand == "prepaid") - 0.6 * (tenure > 2000)
    churn_p = 1 / (1 + np.exp(-logit))
    if prof.annual_churn_rate is not None:
        ends_near = profile["contract_end_day"] < spec.days + 25
        risk = churn_p * np.where(ends_near, prof.contract_end_hazard_multiplier, 1.0)
        hazard = -np.log1p(-prof.annual_churn_rate) * risk / risk.mean()  # a year
        churn_p = -np.expm1(-hazard * (spec.days + 10) / 365.0)  # an intent starting in [-10, days)
    churner = (rng.random(n) < churn_p) & (tenure > 100)
    # A churner's intent starts at churn_start (day index; any decline in traffic starts then) and the line
    # closes churn_lead_days later.
    lo, hi = prof.churn_lead_days
    churn_start = rng.integers(-10, spec.days, n)
    churn_close = churn_start + rng.integers(lo, hi + 1, n)
    return {
        "price_sensitivity": price_sens,
        "price_sensitive": price_sens > 0.6,
        "heavy_data": heavy_data,
        "complaint_prone": complaint_prone,
        "high_freq_caller": high_freq_caller,
        "chan_pref": chan_pref,
        "churn_probability": churn_p,
        "churner": churner,
        "churn_start": churn_start,
        "churn_close": churn_close,
    }


def _channel_preference(rng: np.random.Generator, age: np.ndarray) -> np.ndarray:
    """Share of each INBOUND channel: Dirichlet, tilted by age (elderly prefer a human agent, the young the app/web)."""
    n = len(age)
    alpha = np.ones((n, len(INBOUND))) * 0.6
    alpha[:, 0] += np.where(age >= 60, 4.0, 0.3)
    alpha[:, 5] += np.where(age < 35, 2.5, 0.3)
    alpha[:, 2] += np.where((age >= 25) & (age < 50), 1.5, 0.2)
    alpha[:, 4] += np.where(age >= 45, 0.8, 0.1)
    return np.vstack([rng.dirichlet(a) for a in alpha]) if n <= 50000 else _fast_dirichlet(rng, alpha)


def _handset(rng: np.random.Generator, rng2: np.random.Generator, brand: np.ndarray) -> dict[str, np.ndarray]:
    """The current handset's age, the intent to change it, and who changes handsets often.

    Frequent changers draw from the second stream (only a frequent changer's handset age, and with it their
    handset intent, is redrawn).
    """
    n = len(brand)
    device_age = rng.integers(0, 1200, n)
    fc_draw = rng2.exponential(1 / 0.0064, n)

    def intent(age: np.ndarray) -> np.ndarray:  # grows with the handset's age; premium customers change sooner
        return (age - 500) / 900 + 0.2 * (brand == "premium")

    handset_intent = np.clip(intent(device_age) + rng.normal(0, 0.1, n), 0, 1)
    freq_changer = rng.random(n) < 0.07
    # A frequent changer's current handset is young: its age follows their own change rate.
    device_age = np.where(freq_changer, np.minimum(fc_draw, 1199).astype(int), device_age)
    handset_intent = np.where(freq_changer, np.clip(intent(device_age), 0, 1), handset_intent)
    return {"device_age": device_age, "handset_intent": handset_intent, "freq_changer": freq_changer}


def _affinities(rng: np.random.Generator, rng2: np.random.Generator, age: np.ndarray,
                heavy_data: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Product affinities, and the share of data spent on the application categories that go with them."""
    n = len(age)
    affinity = {cat: np.clip(rng.beta(1.2, 6, n), 0, 1) for cat in ("data", "sms", "voice", "vas", "games", "family", "roaming")}
    affinity["data"] = np.clip(affinity["data"] + 0.35 * heavy_data, 0, 1)
    affinity["games"] = np.clip(affinity["games"] + 0.3 * (age < 25), 0, 1)
    # Share of a customer's data spent on the application categories that go with each product affinity
    # (deep packet inspection sees the categories, not the affinity): a personal taste factor blurs it.
    app_share = {app: np.clip(0.25 * affinity[cat] * rng2.lognormal(0, 0.35, n), 0, 0.18) for app, cat in APP_AFFINITY.items()}
    return {"affinity": affinity, "app_share": app_share}


def _behaviour_bases(rng: np.random.Generator, age: np.ndarray, heavy_data: np.ndarray) -> dict[str, np.ndarray]:
    """Roaming, and the customer's usual daily voice minutes, data megabytes and SMS."""
    n = len(age)
    roamer = rng.random(n) < 0.04
    base_voice = rng.gamma(2.0, 6.0, n) * np.where(age >= 60, 0.7, 1.0)
    base_data = np.where(heavy_data, rng.lognormal(6.6, 0.5, n), rng.lognormal(4.8, 0.8, n))
    base_sms = rng.gamma(1.2, 2.0, n)
    return {"roamer": roamer, "base_voice": base_voice, "base_data": base_data, "base_sms": base_sms}


def _handset_and_port_out_history(rng2: np.random.Generator, churn_start: np.ndarray,
                                  handset: dict[str, np.ndarray], prof: Profile) -> dict[str, np.ndarray]:
    """Handsets in the 24 months before the current one was first seen (the device registry's history), and
    which churners port their number (``port_out_asks``; the day they ask is set here for the ``intent_start``
    timing, in :func:`_churn_paths_and_response_types` for ``before_port``)."""
    n = len(churn_start)
    daily_change = 0.0004 + 0.004 * handset["handset_intent"] + 0.006 * handset["freq_changer"]
    handsets_24m = 1 + rng2.poisson(np.maximum(730 - handset["device_age"], 0) * daily_change)
    port_out_day = churn_start + rng2.integers(-2, 2, n)
    port_out_asks = rng2.random(n) < prof.port_share_of_churners
    return {"handsets_24m": handsets_24m, "port_out_day": port_out_day, "port_out_asks": port_out_asks}


# Response types of a customer for a product family (the ``response`` matrix, customers x RESPONSE_FAMILIES).
PERSUADABLE, SURE_THING, LOST_CAUSE = 0, 1, 2
RESPONSE_TYPES = ("persuadable", "sure_thing", "lost_cause")
RESPONSE_FAMILIES = tuple(k for k in business("products")["categories"] if k != "care")


def _churn_paths_and_response_types(spec: SimSpec, rng3: np.random.Generator, c: dict[str, np.ndarray],
                                    prof: Profile) -> dict[str, np.ndarray]:
    """Issue 22's hidden truth, from the third stream in a fixed order (every draw made in every profile).

    - Churn paths: a churner whose contract ends in the window (or within 25 days after it) leaves, with
      ``contract_end_path_share``, a few days after the contract's end; a porting churner
      (``port_share_of_churners``) sends the CXXZ query ``port_query_lead_hours`` before the port, on the line's
      last active day (``before_port`` timing); the others leave silently. Any churner's activity declines by a
      depth of their own (``decline_depth_mean`` +- ``decline_depth_sd``) at ``decline_per_day``.
    - Customers who ask and stay: for every porter, (1 - ``port_code_share_ported``) / ``port_code_share_ported``
      non-churners ask on a random day.
    - Response types per product family (persuadable, sure thing, lost cause) and sleeping dogs.
    """
    n = spec.customers
    churner = c["churner"]
    depth = np.clip(rng3.normal(prof.decline_depth_mean, prof.decline_depth_sd, n), 0.0, 0.95)
    ce_draw = rng3.random(n)
    g_lo, g_hi = prof.contract_end_grace_days or (0, 0)
    grace = rng3.integers(g_lo, g_hi + 1, n)
    lo, hi = prof.churn_lead_days
    lead = rng3.integers(lo, hi + 1, n)
    port_second = rng3.integers(9 * 3600, 21 * 3600, n)  # when the port completes on the line's last day
    q_lo, q_hi = prof.port_query_lead_hours or (0, 0)
    query_lead = rng3.uniform(q_lo * 3600, q_hi * 3600, n).astype(np.int64)
    abandon_draw = rng3.random(n)
    abandon_day = rng3.integers(0, spec.days, n)
    dog_draw = rng3.random(n)
    type_draw = rng3.random((n, len(RESPONSE_FAMILIES)))

    ends_near = c["contract_end_day"] < spec.days + 25
    contract_path = churner & ends_near & (ce_draw < prof.contract_end_path_share)
    churn_close = np.where(contract_path, c["contract_end_day"] + grace, c["churn_close"])
    churn_start = np.where(contract_path, churn_close - lead, c["churn_start"])
    ports = churner & c["port_out_asks"]
    port_out_day, port_out_second = c["port_out_day"], np.full(n, -1)
    if prof.port_query_timing == "before_port":
        asked_at = (churn_close - 1) * 86400 + port_second - query_lead  # seconds from the first day's midnight
        port_out_day, port_out_second = asked_at // 86400, asked_at % 86400
    path = np.where(~churner, "", np.where(ports, "port", np.where(contract_path, "contract_end", "silent")))
    share = prof.port_code_share_ported
    abandon_p = ports.sum() / max((~churner).sum(), 1) * (1 - share) / share
    abandons = ~churner & (abandon_draw < abandon_p)
    if prof.share_sure_thing == 0 and prof.share_lost_cause == 0:
        response = np.full((n, len(RESPONSE_FAMILIES)), PERSUADABLE, dtype=np.int8)
    else:
        response = np.where(type_draw < prof.share_persuadable, PERSUADABLE,
                            np.where(type_draw < prof.share_persuadable + prof.share_sure_thing, SURE_THING, LOST_CAUSE)).astype(np.int8)
    return {
        "churn_start": churn_start, "churn_close": churn_close, "churn_path": path, "ports": ports,
        "port_out_day": port_out_day, "port_out_second": port_out_second,
        "decline_floor": np.round(1 - depth, 6), "abandons_port": abandons, "abandon_day": abandon_day,
        "sleeping_dog": dog_draw < prof.share_sleeping_dog, "response": response,
    }


def interest(c: dict, cats: np.ndarray, idx: np.ndarray, i: int) -> np.ndarray:
    """Hidden interest in [0, 1] of customer ``idx[k]`` in a product of category ``cats[k]`` on day index ``i``: the
    affinity of the category (handsets: handset intent; a bigger plan: heavy data use; the renewal bonus: a
    contract ending within 90 days). The responder's acceptance grows with its square."""
    out = np.zeros(len(idx))
    for cat, aff in c["affinity"].items():
        m = cats == cat
        out[m] = aff[idx[m]]
    m = cats == "handset"
    out[m] = 0.8 * c["handset_intent"][idx[m]]
    m = cats == "plan"
    out[m] = 0.1 + 0.4 * c["heavy_data"][idx[m]] * (1 - c["price_sensitivity"][idx[m]])
    m = cats == "retention"
    left = c["contract_end_day"][idx[m]] - i
    out[m] = np.where((left >= 0) & (left <= 90), 0.6, 0.05)
    return out


def incremental_interest(c: dict, family: str, i: int, prof: Profile) -> np.ndarray:
    """Each customer's true incremental effect of an offer of ``family`` on day index ``i``, as the factor the
    responder multiplies a channel's base acceptance by: (interest / 0.3)^2 for a persuadable who is not a
    sleeping dog, else 0 (a sure thing buys anyway, a lost cause never, a sleeping dog never from a contact).
    P(convert | contacted) - P(convert | not contacted) of a given contact is this x the channel's delivery,
    opening and base acceptance x price, churn and fatigue factors (``simulator.responder.World.uplift``)."""
    n = len(c["customer_id"])
    idx = np.arange(n)
    base = (interest(c, np.full(n, family), idx, i) / 0.3) ** 2
    j = RESPONSE_FAMILIES.index(family)
    return np.where((c["response"][:, j] == PERSUADABLE) & ~c["sleeping_dog"], base, 0.0)


def crm_table(c: dict, ids: np.ndarray, day: dt.date, status: np.ndarray) -> pa.Table:
    """CRM rows of customers ``ids`` on ``day`` with their ``status`` (one per id)."""
    plan_id = np.array([PLANS[b][0] for b in c["brand"][ids]])
    fee = np.array([PLANS[b][1] for b in c["brand"][ids]])
    return pa.table({
        "customer_id": c["customer_id"][ids], "msisdn": c["msisdn"][ids], "gender": c["gender"][ids],
        "birth_year": pa.array(c["birth_year"][ids], pa.int32()), "city": c["city"][ids], "district": c["district"][ids],
        "occupation": pa.array(list(c["occupation"][ids]), pa.string()),
        "activation_date": pa.array(list(c["activation"][ids]), pa.date32()), "brand": c["brand"][ids],
        "plan_id": plan_id, "monthly_fee": fee,
        "contract_end_date": pa.array(list(c["contract_end"][ids]), pa.date32()),
        "credit_level": pa.array(c["credit_level"][ids], pa.int32()), "vip_level": pa.array(c["vip_level"][ids], pa.int32()),
        "has_wechat": c["has_wechat"][ids], "email": pa.array(list(c["email"][ids]), pa.string()),
        "status": status, "record_date": _date_array(day, len(ids)),
    })


def _account(rng: np.random.Generator, profile: dict[str, np.ndarray], price_sens: np.ndarray) -> dict[str, np.ndarray]:
    """Credit and VIP levels, and whether the customer can be reached by WeChat and email."""
    idx, age, brand = profile["idx"], profile["age"], profile["brand"]
    n = len(idx)
    vip = np.where(brand == "premium", rng.choice([0, 1, 2, 3], n, p=[0.4, 0.3, 0.2, 0.1]), rng.choice([0, 1], n, p=[0.93, 0.07]))
    return {
        "credit_level": np.clip(np.round(5 - 3 * price_sens + rng.normal(0, 0.7, n)), 1, 5).astype(int),
        "vip_level": vip,
        "has_wechat": rng.random(n) < np.where(age < 60, 0.85, 0.35),
        "email": np.array([f"c{i}@mail.example.cn" if r < 0.3 else None for i, r in zip(idx, rng.random(n), strict=True)], dtype=object),
    }


def _fast_dirichlet(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    g = rng.gamma(alpha)
    return g / g.sum(axis=1, keepdims=True)


def _write(paths: Paths, schema: FileSchema, day: dt.date, table: pa.Table) -> None:
    """Write one delivery: gzip CSV with header, and its control file (rows, md5 of the gzip file)."""
    table = table.select(schema.names)
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(delimiter=DELIMITER, include_header=True, quoting_style="needed"))
    raw = buf.getvalue().replace(b'"', b"")  # operator exports are unquoted
    gz = gzip.compress(raw, compresslevel=5, mtime=0)
    folder = paths.landing_day(day)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / schema.file_name(day)).write_bytes(gz)
    control = f"file={schema.file_name(day)}\nrows={table.num_rows}\nmd5={hashlib.md5(gz).hexdigest()}\n"  # noqa: S324 - file checksum, not security
    (folder / schema.control_name(day)).write_text(control)


ARROW_TYPES = {name: arrow(name) for name in TYPES}  # the project's one type map (schemas.types)


def empty_table(schema: FileSchema) -> pa.Table:
    return pa.table({c.name: pa.array([], ARROW_TYPES[c.type]) for c in schema.columns})


def _ts(day: dt.date, seconds: np.ndarray) -> pa.Array:
    base = np.datetime64(day.isoformat(), "s")
    return pa.array(base + seconds.astype("timedelta64[s]"), type=pa.timestamp("s"))


def _date_array(day: dt.date, n: int) -> pa.Array:
    return pa.array([day] * n, type=pa.date32())


class Operator:
    """Generates the daily deliveries of a simulated operator for a date range."""

    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        self.p = spec.params
        self.c = _customers(spec)
        self.products = [p for p in business("products")["products"] if not p["id"].startswith("C_")]
        n = spec.customers
        self.held = np.zeros((n, len(self.products)), dtype=bool)
        self.open_complaints: dict[str, tuple[int, str, int]] = {}
        self.trials: dict[tuple[int, int], int] = {}  # (customer, product) -> day the trial started
        self.balance = np.where(self.c["brand"] == "prepaid", 30.0, 0.0)

    # --- per-day helpers -------------------------------------------------------------------------------
    def _alive(self, i: int) -> np.ndarray:
        c = self.c
        joined = c["tenure"] >= (self.spec.days - 1 - i)
        closed = c["churner"] & (c["churn_close"] <= i)
        return joined & ~closed

    def _activity(self, i: int) -> np.ndarray:
        """Traffic multiplier: 1 normally; for a churner after churn_start, falling at ``decline_per_day`` to
        their own floor (``easy``: to 0.05 within 10 days; ``realistic``: a weak decline, none for some)."""
        c = self.c
        fade = np.maximum(1 - (i - c["churn_start"]) / (1.0 / self.p.decline_per_day), c["decline_floor"])
        return np.where(c["churner"] & (i >= c["churn_start"]), fade, 1.0)

    def day(self, i: int, paths: Paths) -> dict[str, int]:
        """Write day ``i``'s deliveries. Returns rows written per file kind.

        The day has one random stream, drawn from by each delivery in turn: the order of the calls below is
        part of the simulation (changing it changes every file).
        """
        day = self.spec.start_date + dt.timedelta(days=i)
        rng = np.random.default_rng([self.spec.seed, 1000 + i])
        alive = self._alive(i)
        act = self._activity(i)
        tables = {"crm_profile": self._crm(i, day, rng, alive)}
        tables["usage"], users = self._usage(i, day, rng, alive, act)
        tables["billing"] = self._billing(day, rng, alive, tables["usage"], users)
        tables["contacts"], callers, purpose = self._contacts(i, day, rng, alive)
        tables["complaints"] = self._complaints(i, day, rng, callers, purpose)
        tables["orders"] = self._orders(i, day, rng, alive, act)
        tables["devices"] = self._devices(i, day, rng, alive)
        tables["optouts"] = self._optouts(i, day, rng, alive)
        # Campaign responses: none until the pipeline's lists go out (simulator/responder.py rewrites the day's file).
        tables["responses"] = empty_table(FILES["responses"])
        for kind, table in tables.items():
            _write(paths, FILES[kind], day, table)
        return {kind: table.num_rows for kind, table in tables.items()}

    def _crm(self, i: int, day: dt.date, rng: np.random.Generator, alive: np.ndarray) -> pa.Table:
        """CRM: everyone on the first day; then new lines, closures and a few plan changes."""
        spec, c = self.spec, self.c
        if i == 0:
            crm_mask = alive.copy()
        else:
            new = alive & (c["tenure"] == (spec.days - 1 - i))
            closing = c["churner"] & (c["churn_close"] == i)
            changed = alive & (rng.random(spec.customers) < 0.002)
            crm_mask = new | closing | changed
        status = np.where(c["churner"] & (c["churn_close"] <= i), "closed", "active")
        ids = np.flatnonzero(crm_mask)
        return crm_table(c, ids, day, status[ids])

    def _usage(self, i: int, day: dt.date, rng: np.random.Generator, alive: np.ndarray,
               act: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """Usage, and the customers it has rows for (in row order).

        A day without any usage is common for light users and for fading churners.
        """
        spec, c = self.spec, self.c
        n = spec.customers
        used = alive & (rng.random(n) < 0.9 * np.sqrt(act))
        ids = np.flatnonzero(used)
        a = act[ids]
        weekend = day.weekday() >= 5
        voice_out = np.round(rng.gamma(1.5, c["base_voice"][ids] / 1.5) * a * (0.8 if weekend else 1.0), 1)
        out_calls = rng.poisson(np.maximum(voice_out / 2.5, 0.01))
        out_calls = np.where(a < 0.3, 0, out_calls)  # a fading churner stops calling out
        voice_out = np.where(out_calls == 0, 0.0, voice_out)
        data_mb = np.round(rng.lognormal(np.log(c["base_data"][ids] + 1), 0.4) * a, 1)
        usage = pa.table({
            "customer_id": c["customer_id"][ids], "usage_date": _date_array(day, len(ids)),
            "voice_out_min": voice_out, "voice_in_min": np.round(rng.gamma(1.5, c["base_voice"][ids] / 1.8) * a, 1),
            "out_calls": pa.array(out_calls, pa.int32()), "sms_out": pa.array(rng.poisson(c["base_sms"][ids] * a), pa.int32()),
            "data_mb": data_mb, "roaming_min": np.where(c["roamer"][ids] & (rng.random(len(ids)) < 0.2), np.round(rng.gamma(2, 5, len(ids)), 1), 0.0),
        })
        # Data by application category: the customer's share for the category, varying from day to day (own
        # stream, so the columns above are as they were before these were added).
        arng = np.random.default_rng([spec.seed, 4000 + i])
        for app in APP_AFFINITY:
            mb = np.round(data_mb * c["app_share"][app][ids] * arng.lognormal(-0.18, 0.6, len(ids)), 1)
            usage = usage.append_column(app, pa.array(np.minimum(mb, data_mb)))
        return usage, ids

    def _billing(self, day: dt.date, rng: np.random.Generator, alive: np.ndarray, usage: pa.Table,
                 users: np.ndarray) -> pa.Table:
        """Billing: daily plan fee, charges for the day's usage over the bundle, VAS fees of held services, top-ups."""
        c = self.c
        ids_all = np.flatnonzero(alive)
        fee_all = np.array([PLANS[b][1] for b in c["brand"][ids_all]]) / 30.0
        u_index = np.full(self.spec.customers, -1)
        u_index[users] = np.arange(len(users))
        ui = u_index[ids_all]
        has_u = ui >= 0
        vo = np.where(has_u, usage["voice_out_min"].to_numpy()[np.maximum(ui, 0)], 0.0)
        dm = np.where(has_u, usage["data_mb"].to_numpy()[np.maximum(ui, 0)], 0.0)
        voice_fee = np.round(np.maximum(vo - 10, 0) * 0.15, 2)
        data_fee = np.round(np.maximum(dm - 200, 0) * 0.01 * (1 - 0.7 * c["price_sensitivity"][ids_all]), 2)
        sms_fee = np.round(np.where(has_u, usage["sms_out"].to_numpy()[np.maximum(ui, 0)], 0) * 0.1, 2)
        vas_prices = np.array([p["price"] for p in self.products], dtype=float)
        vas_mask = np.array([p["category"] in ("vas", "games") for p in self.products])
        vas_fee = np.round((self.held[ids_all][:, vas_mask] * vas_prices[vas_mask]).sum(axis=1) / 30.0, 2)
        total = np.round(fee_all + voice_fee + data_fee + sms_fee + vas_fee, 2)
        ps = c["price_sensitivity"][ids_all]
        prepaid = c["brand"][ids_all] == "prepaid"
        topup_p = np.where(prepaid, 0.04 + 0.25 * ps, 0.0)
        topup = rng.random(len(ids_all)) < topup_p
        amount = np.where(ps > 0.6, rng.choice([10.0, 20.0], len(ids_all)), rng.choice([50.0, 100.0], len(ids_all)))
        payment = np.where(topup, amount, 0.0)
        postpaid_pay = (~prepaid) & (day.day == 5)
        payment = np.where(postpaid_pay, np.round(total * 30, 2), payment)
        self.balance[ids_all] = np.round(self.balance[ids_all] + payment - total, 2)
        return pa.table({
            "customer_id": c["customer_id"][ids_all], "bill_date": _date_array(day, len(ids_all)),
            "plan_fee": np.round(fee_all, 2), "voice_fee": voice_fee, "sms_fee": sms_fee, "data_fee": data_fee,
            "vas_fee": vas_fee, "total_fee": total, "payment": payment, "balance": self.balance[ids_all],
        })

    def _contacts(self, i: int, day: dt.date, rng: np.random.Generator,
                  alive: np.ndarray) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """Contacts, and the customer and purpose of each inbound contact (before the port-out queries).

        Inbound through the customer's preferred channels; complaints and care calls.
        """
        c, n = self.c, self.spec.customers
        rate = np.where(c["high_freq_caller"], 0.35, 0.03) * (1 + 2 * c["complaint_prone"]) * (1 + self.p.churner_inbound_contact_uplift * (c["churner"] & (i >= c["churn_start"])))
        k = rng.poisson(rate * alive)
        cid = np.repeat(np.arange(n), k)
        m = len(cid)
        cum = c["chan_pref"][cid].cumsum(axis=1)
        ch_idx = (rng.random(m)[:, None] > cum).sum(axis=1).clip(0, len(INBOUND) - 1)
        channel = np.array(INBOUND)[ch_idx]
        purpose = rng.choice(np.array(["enquiry", "billing", "complaint", "purchase", "care"]), m, p=[0.45, 0.25, 0.08, 0.12, 0.10])
        purpose = np.where(c["complaint_prone"][cid] & (rng.random(m) < 0.3), "complaint", purpose)
        contacts = pa.table({
            "contact_id": np.array([f"K{day:%Y%m%d}{j:08d}" for j in range(m)]), "customer_id": c["customer_id"][cid],
            "contact_ts": _ts(day, rng.integers(8 * 3600, 22 * 3600, m)), "channel": channel,
            "direction": np.full(m, "in"), "purpose": purpose,
            "duration_s": pa.array(np.where(np.isin(channel, ["agent", "ivr"]), rng.integers(30, 900, m), rng.integers(5, 300, m)), pa.int32()),
            "resolved": rng.random(m) < np.where(purpose == "complaint", 0.5, 0.9),
        })
        queries = self._port_out_queries(i, day, alive, contacts.schema, first=m)
        if queries is not None:
            contacts = pa.concat_tables([contacts, queries])
        return contacts, cid, purpose

    def _port_out_queries(self, i: int, day: dt.date, alive: np.ndarray, schema: pa.Schema,
                          first: int) -> pa.Table | None:
        """Number-portability queries (None if nobody asks), numbered from ``first`` after the day's other contacts.

        Porting churners send one (``easy``: around the day their intent starts; otherwise hours before the
        port, on the line's last day or the day before); some customers ask and stay (they got the code and did
        not port), and a few ask out of curiosity. Their own stream, so the day's other contacts are as they
        were before these were added.
        """
        c = self.c
        prng = np.random.default_rng([self.spec.seed, 5000 + i])
        porting = c["churner"] & c["port_out_asks"] & (c["port_out_day"] == i)
        asks = alive & (porting | (c["abandons_port"] & (c["abandon_day"] == i))
                        | (prng.random(self.spec.customers) < self.p.curious_query_daily))
        q = np.flatnonzero(asks)
        if not len(q):
            return None
        seconds = prng.integers(8 * 3600, 22 * 3600, len(q))
        timed = porting[q] & (c["port_out_second"][q] >= 0)
        seconds = np.where(timed, c["port_out_second"][q], seconds)
        return pa.table({
            "contact_id": np.array([f"K{day:%Y%m%d}{first + j:08d}" for j in range(len(q))]), "customer_id": c["customer_id"][q],
            "contact_ts": _ts(day, seconds), "channel": np.full(len(q), "sms_hall"),
            "direction": np.full(len(q), "in"), "purpose": np.full(len(q), "port_out_query"),
            "duration_s": pa.array(prng.integers(5, 30, len(q)), pa.int32()), "resolved": np.full(len(q), True),
        }, schema=schema)

    def _complaints(self, i: int, day: dt.date, rng: np.random.Generator, callers: np.ndarray,
                    purpose: np.ndarray) -> pa.Table:
        """Complaints: opened from the day's complaint contacts (``callers``, ``purpose``); closed 1-6 days later."""
        c = self.c
        rows: dict[str, list] = {k: [] for k in ("complaint_id", "customer_id", "event_ts", "event", "category", "severity")}

        def add(key: str, ci: int, event: str, cat: str, sev: int) -> None:
            for col, value in zip(rows, (key, c["customer_id"][ci], int(rng.integers(8 * 3600, 22 * 3600)), event, cat, sev), strict=True):
                rows[col].append(value)

        opened = callers[(purpose == "complaint") & (rng.random(len(callers)) < 0.6)]
        for j, ci in enumerate(opened):
            key = f"Q{day:%Y%m%d}{j:06d}"
            cat = str(rng.choice(["network", "billing", "service", "marketing"]))
            self.open_complaints[key] = (int(ci), cat, i + int(rng.integers(1, 7)))
            add(key, int(ci), "opened", cat, int(rng.integers(1, 4)))
        for key in sorted(k for k, v in self.open_complaints.items() if v[2] == i):
            ci, cat, _ = self.open_complaints.pop(key)
            add(key, ci, "closed", cat, 1)
        return pa.table({
            "complaint_id": pa.array(rows["complaint_id"], pa.string()), "customer_id": pa.array(rows["customer_id"], pa.string()),
            "event_ts": _ts(day, np.array(rows["event_ts"], dtype=np.int64)), "event": pa.array(rows["event"], pa.string()),
            "category": pa.array(rows["category"], pa.string()), "severity": pa.array(rows["severity"], pa.int32()),
        })

    def _orders(self, i: int, day: dt.date, rng: np.random.Generator, alive: np.ndarray, act: np.ndarray) -> pa.Table:
        """Orders, cancellations and trials: on the first day, existing subscriptions are delivered as a migration load.

        Later orders are unprompted: by everyone (``organic_buyers: everyone``) or by the sure things of the
        product's family only. They look like any order; a contact-led one differs only by its channel.
        """
        c, n = self.c, self.spec.customers
        cats = np.array([p["category"] for p in self.products])
        aff = np.column_stack([c["affinity"].get(cat, np.full(n, 0.05)) for cat in cats])
        if i == 0:
            take = (rng.random(aff.shape) < aff * 0.5) & alive[:, None] & np.isin(cats, ["vas", "games", "data", "family"])[None, :]
        else:
            take = (rng.random(aff.shape) < aff * self.p.organic_daily_rate * act[:, None]) & alive[:, None] & ~self.held
            if self.p.organic_buyers == "sure_things":
                fam = np.array([RESPONSE_FAMILIES.index(cat) for cat in cats])
                take &= c["response"][:, fam] == SURE_THING
        cancel = self.held & (rng.random(aff.shape) < (0.002 + 0.02 * c["price_sensitivity"][:, None] ** 2)) & alive[:, None]
        oc, op = np.nonzero(take)
        cc, cp = np.nonzero(cancel)
        self.held[oc, op] = True
        self.held[cc, cp] = False
        trial = np.isin(cats[op], ["data", "vas"]) & (rng.random(len(op)) < 0.3) & (i > 0)
        action = np.concatenate([np.where(trial, "trial_start", "order"), np.full(len(cc), "cancel")])
        who = np.concatenate([oc, cc])
        what = np.concatenate([op, cp])
        for ci, pi in zip(oc[trial], op[trial], strict=True):
            self.trials[(int(ci), int(pi))] = i
        ending = sorted(k for k, start in self.trials.items() if start + TRIAL_DAYS == i)
        if ending:
            ended_who, ended_what, ended_action = self._end_trials(i, ending, aff, alive)
            who = np.concatenate([who, ended_who])
            what = np.concatenate([what, ended_what])
            action = np.concatenate([action, ended_action])
        k = len(who)
        pref = c["chan_pref"][who].argmax(axis=1) if k else np.array([], dtype=int)
        return pa.table({
            "order_id": np.array([f"O{day:%Y%m%d}{j:08d}" for j in range(k)]), "customer_id": c["customer_id"][who],
            "order_ts": _ts(day, rng.integers(0, 86399, k)), "product_id": np.array([self.products[p]["id"] for p in what]),
            "action": action, "channel": np.array(INBOUND)[pref] if k else np.array([], dtype=str),
            "price": np.array([float(self.products[p]["price"]) for p in what]),
        })

    def _end_trials(self, i: int, ending: list[tuple[int, int]], aff: np.ndarray,
                    alive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """End the trials that started TRIAL_DAYS ago: customers, products and actions of the order rows.

        At its end a trial converts (likelier with the customer's affinity, less likely for the
        price-sensitive) or expires. Its own random stream, so the rest of the day is unchanged.
        """
        c = self.c
        trng = np.random.default_rng([self.spec.seed, 3000 + i])
        eci = np.array([k[0] for k in ending])
        epi = np.array([k[1] for k in ending])
        p_convert = np.clip(0.1 + 0.6 * aff[eci, epi] - 0.15 * c["price_sensitivity"][eci], 0.02, 0.9) * alive[eci]
        converts = trng.random(len(ending)) < p_convert
        self.held[eci[~converts], epi[~converts]] = False
        for k in ending:
            del self.trials[k]
        return eci, epi, np.where(converts, "trial_convert", "trial_expire")

    def _devices(self, i: int, day: dt.date, rng: np.random.Generator, alive: np.ndarray) -> pa.Table:
        """Devices: handset changes, likelier with handset intent and for frequent changers."""
        c, n = self.c, self.spec.customers
        p_change = alive * (0.0004 + 0.004 * c["handset_intent"] + 0.006 * c["freq_changer"])
        if i == 0:  # the device each customer uses when the window opens
            p_change = alive * 1.0
        dev = np.flatnonzero(rng.random(n) < p_change)
        h = rng.integers(0, len(HANDSETS), len(dev))
        gen = np.where(i == 0, np.clip(5 - c["device_age"][dev] // 400, 3, 5), 5)
        if i == 0:  # the handset in use when the window opens, first seen device_age days before
            first_seen = pa.array([day - dt.timedelta(days=int(a)) for a in c["device_age"][dev]], pa.date32())
        else:
            c["handsets_24m"][dev] += 1
            first_seen = _date_array(day, len(dev))
        return pa.table({
            "customer_id": c["customer_id"][dev], "change_date": _date_array(day, len(dev)), "first_seen_date": first_seen,
            "handsets_24m": pa.array(c["handsets_24m"][dev], pa.int32()),
            "tac": np.array([f"{86000000 + int(x) * 97 % 999999:08d}" for x in h]),
            "brand": np.array([HANDSETS[x][0] for x in h]), "model": np.array([f"{HANDSETS[x][1]} {int(g)}0" for x, g in zip(h, gen, strict=True)]),
            "is_smartphone": rng.random(len(dev)) < 0.97, "network_gen": pa.array(gen, pa.int32()),
            "price": np.round(rng.choice([999.0, 1999.0, 3999.0, 6999.0], len(dev), p=[0.3, 0.35, 0.25, 0.1]), 2),
        })

    def _optouts(self, i: int, day: dt.date, rng: np.random.Generator, alive: np.ndarray) -> pa.Table:
        """Opt-outs: the standing ones arrive on the first day; then a trickle."""
        c = self.c
        if i == 0:
            oo = np.flatnonzero(c["optout_all"] & alive)
            chans = np.full(len(oo), "all")
        else:
            oo = np.flatnonzero(alive & (rng.random(self.spec.customers) < 0.0008))
            chans = np.array(OPTOUT_CHANNELS)[rng.integers(0, len(OPTOUT_CHANNELS), len(oo))]
            c["optout_all"][oo[chans == "all"]] = True
        return pa.table({
            "customer_id": c["customer_id"][oo], "event_ts": _ts(day, rng.integers(0, 86399, len(oo))),
            "channel": chans, "action": np.full(len(oo), "opt_out"),
        })

    def truth(self) -> pa.Table:
        c = self.c
        cols = {
            k: c[k]
            for k in ("customer_id", "age", "brand", "tenure", "has_contract", "price_sensitivity", "price_sensitive", "heavy_data",
                      "complaint_prone", "high_freq_caller", "churn_probability", "churner", "churn_start", "churn_close",
                      "device_age", "handset_intent", "freq_changer", "roamer",
                      "churn_path", "ports", "port_out_day", "decline_floor", "abandons_port", "sleeping_dog")
        }
        cols["port_out_day"] = np.where(c["churner"] & c["ports"], c["port_out_day"], -1)
        for j, fam in enumerate(RESPONSE_FAMILIES):
            cols[f"response_{fam}"] = np.array(RESPONSE_TYPES)[c["response"][:, j]]
            cols[f"uplift_{fam}"] = incremental_interest(c, fam, self.spec.days - 1, self.spec.params)
        cols["preferred_channel"] = np.array(INBOUND)[c["chan_pref"].argmax(axis=1)]
        for j, ch in enumerate(INBOUND):
            cols[f"pref_{ch}"] = c["chan_pref"][:, j]
        for cat, v in c["affinity"].items():
            cols[f"affinity_{cat}"] = v
        return pa.table(cols)


def generate(paths: Paths, spec: SimSpec, progress: bool = True) -> dict[str, int]:
    """Write every day's landing files and the hidden truth. Returns rows written per file kind."""
    t0 = time.time()
    op = Operator(spec)
    totals: dict[str, int] = {}
    for i in range(spec.days):
        counts = op.day(i, paths)
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        if progress and (i == spec.days - 1 or i % 5 == 0):
            log.info(f"simulate: day {i + 1}/{spec.days} ({spec.start_date + dt.timedelta(days=i)}) written, {time.time() - t0:.1f}s")
    paths.truth.mkdir(parents=True, exist_ok=True)
    pq.write_table(op.truth(), paths.truth / "customers.parquet")
    meta = {"customers": spec.customers, "days": spec.days, "start_date": spec.start_date.isoformat(),
            "end_date": spec.end_date.isoformat(), "seed": spec.seed, "profile": spec.profile, "rows": totals}
    (paths.truth / "simulation.json").write_text(json.dumps(meta, indent=2))
    return totals


if __name__ == "__main__":  # pragma: no cover - use `python -m simulator simulate`
    sys.exit("use: python -m simulator simulate")
