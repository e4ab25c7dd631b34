"""The simulator writes what the schemas declare, deterministically, and keeps its truth apart."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from jobs.platform.config import Paths, business
from schemas import DELIMITER, FILES
from simulator.generate import SimSpec, generate

SPEC = SimSpec(customers=150, days=3, end_date=dt.date(2026, 11, 20), seed=11)


def _digest(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_files(tmp_path):
    a, b = Paths(tmp_path / "a"), Paths(tmp_path / "b")
    generate(a, SPEC, progress=False)
    generate(b, SPEC, progress=False)
    assert _digest(a.landing) == _digest(b.landing)
    c = Paths(tmp_path / "c")
    generate(c, SimSpec(150, 3, SPEC.end_date, seed=12), progress=False)
    assert _digest(a.landing) != _digest(c.landing)


def test_files_match_schemas_and_controls(tmp_path):
    paths = Paths(tmp_path)
    generate(paths, SPEC, progress=False)
    for day in SPEC.dates():
        for kind, schema in FILES.items():
            data = paths.landing_day(day) / schema.file_name(day)
            control = dict(line.split("=", 1) for line in (paths.landing_day(day) / schema.control_name(day)).read_text().splitlines())
            lines = gzip.decompress(data.read_bytes()).decode("utf-8").splitlines()
            assert lines[0].split(DELIMITER) == schema.names, kind
            assert all(len(line.split(DELIMITER)) == len(schema.names) for line in lines[1:]), kind
            assert int(control["rows"]) == len(lines) - 1
            assert control["md5"] == hashlib.md5(data.read_bytes()).hexdigest()


def test_truth_kept_apart_and_complete(tmp_path):
    paths = Paths(tmp_path)
    generate(paths, SPEC, progress=False)
    truth = pq.read_table(paths.truth / "customers.parquet")
    assert truth.num_rows == SPEC.customers
    for col in ("churner", "price_sensitive", "preferred_channel", "affinity_data", "handset_intent"):
        assert col in truth.column_names
    assert not any(p.suffix == ".parquet" for p in paths.landing.rglob("*"))


def _read(paths: Paths, kind: str):
    import pandas as pd

    return pd.concat(pd.read_csv(f, sep=DELIMITER) for f in sorted(paths.landing.glob(f"*/{kind}_*.csv.gz")))


def test_hidden_traits_leave_the_traces_an_operator_sees(tmp_path):
    """What the models can learn from: the data by application category follows the product affinities, the
    device registry dates the current handset, and (realistic operator) only the few porting churners send the
    number-portability query, hours before the port, not weeks ahead: most churners leave no such trace."""
    from simulator.generate import APP_AFFINITY

    spec = SimSpec(customers=3000, days=30, end_date=dt.date(2026, 11, 20), seed=3)
    assert spec.profile == "realistic"
    paths = Paths(tmp_path)
    generate(paths, spec, progress=False)
    truth = pq.read_table(paths.truth / "customers.parquet").to_pandas().set_index("customer_id")
    usage = _read(paths, "usage").groupby("customer_id").sum(numeric_only=True)
    for app, category in APP_AFFINITY.items():
        share = usage[app] / usage["data_mb"].clip(lower=1)
        assert (usage[app] <= usage["data_mb"]).all()
        assert share.corr(truth.loc[usage.index, f"affinity_{category}"], method="spearman") > 0.8, app
    contacts = _read(paths, "contacts")
    asked = set(contacts.loc[contacts["purpose"] == "port_out_query", "customer_id"])
    started = truth[truth["churner"] & (truth["churn_start"] >= 2) & (truth["churn_start"] < spec.days - 2)]
    assert len(started) > 20 and len(asked & set(started.index)) <= 0.25 * len(started), "most churners do not ask"
    assert len(asked - set(truth.index[truth["churner"]])) <= 0.002 * spec.customers * spec.days
    devices = _read(paths, "devices")
    first = devices[devices["change_date"] == spec.start_date.isoformat()]
    assert (first["first_seen_date"] < first["change_date"]).mean() > 0.95 and (first["handsets_24m"] >= 1).all()
    later = devices[devices["change_date"] > spec.start_date.isoformat()]
    assert (later["first_seen_date"] == later["change_date"]).all()


def test_every_parameter_has_a_source_or_an_assumption():
    from simulator.profiles import PROFILES, SOURCES, TABLE

    assert len(TABLE) >= 20
    for p in TABLE:
        assert bool(p.source) != bool(p.assumption), p.name
        assert (p.assumption or "").strip() or p.source.split(":", 1)[0] in SOURCES, p.name
        assert set(p.values) == set(PROFILES) and p.meaning and p.unit, p.name


def test_profiles_differ_as_documented():
    from simulator.profiles import profile

    easy, real, hard = profile("easy"), profile("realistic"), profile("hard")
    assert easy.port_share_of_churners == 0.9 and easy.port_query_timing == "intent_start"
    assert 0.04 <= real.port_share_of_churners <= 0.075 and real.port_query_timing == "before_port"
    assert hard.port_share_of_churners < real.port_share_of_churners
    assert real.port_code_share_ported == 0.84 and real.port_query_lead_hours == (1, 24)
    assert hard.decline_depth_mean < real.decline_depth_mean < easy.decline_depth_mean
    assert easy.share_sleeping_dog == 0 < real.share_sleeping_dog < hard.share_sleeping_dog
    assert hard.share_persuadable < real.share_persuadable < easy.share_persuadable
    assert easy.fatigue_response_decay == 0 < real.fatigue_response_decay < hard.fatigue_response_decay
    for p in (real, hard):
        assert p.share_persuadable + p.share_sure_thing + p.share_lost_cause == pytest.approx(1)
    # the sleeping dogs' reaction is sized on Ascarza et al.: +3.6 points of churn among the contacted, for the kind
    # of contact the study measured (a plan recommendation in a churn-prevention campaign); other contacts far less
    assert real.share_sleeping_dog * real.dog_contact_churn_prob == pytest.approx(0.036, abs=0.005)
    assert real.dog_contact_families == ("plan", "retention") and easy.dog_contact_families == hard.dog_contact_families == "all"
    assert 0 < real.dog_other_contact_churn_prob <= 0.1 * 0.002 * real.dog_optout_multiplier


def test_a_sleeping_dog_leaves_at_the_full_rate_only_after_a_plan_or_retention_offer():
    """``realistic``: a delivered plan-change or renewal offer makes a sleeping dog leave with dog_contact_churn_prob,
    any other contact (offers of other families, service messages) with dog_other_contact_churn_prob; ``hard``: every
    contact at the full rate; nobody else is pushed away; the families named are the catalogue's."""
    from simulator.responder import World

    cats = business("products")["categories"]
    for name in ("realistic", "hard"):
        world = World.load(SimSpec(400, 3, SPEC.end_date, seed=3, profile=name))
        prof = world.params
        assert prof.dog_contact_families == "all" or set(prof.dog_contact_families) <= set(cats)
        prods = np.arange(len(world.products))
        fam = np.array([p["category"] for p in world.products])
        rate = world.dog_leave_prob(prods)
        full = np.isin(fam, ["plan", "retention"]) | (prof.dog_contact_families == "all")
        assert (rate[full] == prof.dog_contact_churn_prob).all() and full.any()
        assert (rate[~full] == prof.dog_other_contact_churn_prob).all() and (name == "hard" or (~full).any())
        dog = np.flatnonzero(world.c["sleeping_dog"])[:1].repeat(len(prods))
        other = np.flatnonzero(~world.c["sleeping_dog"])[:1].repeat(len(prods))
        assert np.array_equal(world.p_leave(dog, prods), rate) and (world.p_leave(other, prods) == 0).all()


def test_an_unknown_profile_is_a_clear_error():
    from simulator.profiles import profile

    with pytest.raises(ValueError, match="unknown simulator profile 'medium'; known profiles: easy, realistic, hard"):
        SimSpec(10, 2, SPEC.end_date, profile="medium")
    with pytest.raises(ValueError, match="known profiles"):
        profile("Realistic")


def test_the_documented_table_is_the_code_table():
    from pathlib import Path

    from simulator.profiles import markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "simulator.md").read_text()
    begin, end = "<!-- table: python -m simulator params --markdown -->\n", "<!-- end of table -->"
    assert begin in doc and end in doc
    assert doc.split(begin, 1)[1].split(end, 1)[0] == markdown(), "regenerate: python -m simulator params --markdown"


@pytest.mark.parametrize("name", ["easy", "realistic", "hard"])
def test_same_seed_same_files_in_every_profile(tmp_path, name):
    a, b = Paths(tmp_path / "a"), Paths(tmp_path / "b")
    spec = SimSpec(300, 4, SPEC.end_date, seed=11, profile=name)
    generate(a, spec, progress=False)
    generate(b, spec, progress=False)
    assert _digest(a.landing) == _digest(b.landing) and _digest(a.truth) == _digest(b.truth)
    assert json.loads((a.truth / "simulation.json").read_text())["profile"] == name
    assert SimSpec.of(a) == spec


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    spec = SimSpec(customers=20000, days=35, end_date=dt.date(2026, 11, 20), seed=4)
    paths = Paths(tmp_path_factory.mktemp("realistic"))
    generate(paths, spec, progress=False)
    truth = pq.read_table(paths.truth / "customers.parquet").to_pandas().set_index("customer_id")
    return spec, paths, truth


def test_realistic_porting_churners_ask_hours_before_the_port(realistic):
    spec, paths, truth = realistic
    churners = truth[truth["churner"]]
    ports = churners["churn_path"] == "port"
    assert set(churners["churn_path"]) <= {"port", "silent", "contract_end"}
    assert 0.03 <= ports.mean() <= 0.10, "only the documented share of churners ports (6%)"
    contacts = _read(paths, "contacts")
    queries = contacts[contacts["purpose"] == "port_out_query"].copy()
    queries["day"] = (pd.to_datetime(queries["contact_ts"]) - pd.Timestamp(spec.start_date)).dt.days
    # every porter whose last day is in the window asks, on the last day or the day before (hours before the port)
    closing = churners[ports & (churners["churn_close"] >= 3) & (churners["churn_close"] <= spec.days)]
    assert len(closing) >= 5
    first = queries.groupby("customer_id")["day"].min()
    lead = closing["churn_close"] - first.reindex(closing.index)
    assert lead.notna().all() and lead.between(1, 2).all(), "the query comes within a day of the closure"
    # silent churners send none beyond the curious (0.02% of customers a day)
    silent = set(churners.index[churners["churn_path"] == "silent"])
    assert len(silent & set(queries["customer_id"])) <= 0.0002 * len(silent) * spec.days * 3 + 3
    # some customers ask and stay (authorisation codes that led to no port: 16% in the Fujian pilot)
    assert truth["abandons_port"].sum() >= 1 and not truth.loc[truth["abandons_port"], "churner"].any()


def test_realistic_churn_paths_and_rate(realistic):
    spec, _paths, truth = realistic
    churners = truth[truth["churner"]]
    # about 25% a year over the span of intents (days + 10)
    expected = 1 - 0.75 ** ((spec.days + 10) / 365)
    assert churners.shape[0] / len(truth) == pytest.approx(expected, rel=0.35)
    ce = churners[churners["churn_path"] == "contract_end"]
    assert len(ce) >= 5 and ce["has_contract"].all()
    # contract-end churners close within the grace days after the contract's end
    from simulator.generate import _customers

    c = _customers(spec)
    end_day = pd.Series(c["contract_end_day"], index=c["customer_id"])
    assert (ce["churn_close"] - end_day.loc[ce.index]).between(0, 14).all()


def test_silent_churners_decline_only_weakly(realistic):
    spec, paths, truth = realistic
    usage = _read(paths, "usage")
    usage["day"] = (pd.to_datetime(usage["usage_date"]) - pd.Timestamp(spec.start_date)).dt.days
    silent = truth[truth["churner"] & (truth["churn_path"] == "silent") & (truth["churn_start"] >= 5)
                   & (truth["churn_close"] <= spec.days)]
    assert len(silent) >= 20
    u = usage[usage["customer_id"].isin(silent.index)].join(silent[["churn_start", "churn_close"]], on="customer_id")
    before = u[u["day"] < u["churn_start"]].groupby("customer_id")["data_mb"].mean()
    last = u[u["day"] >= u["churn_close"] - 5].groupby("customer_id")["data_mb"].mean()
    ratio = (last / before).dropna()
    assert 0.45 < ratio.median() < 1.2, "a weak decline: the last days look much like before"
    assert (ratio > 0.9).mean() > 0.15, "noisy: some churners do not decline at all"
    assert silent["decline_floor"].mean() == pytest.approx(0.7, abs=0.06)


def test_sure_things_buy_without_contact_and_no_one_else_does(realistic):
    from simulator.generate import RESPONSE_FAMILIES

    spec, paths, truth = realistic
    orders = _read(paths, "orders")
    later = orders[(orders["order_ts"] > f"{spec.start_date} 23:59:59") & orders["action"].isin(["order", "trial_start"])]
    cats = {p["id"]: p["category"] for p in business("products")["products"]}
    fam = later["product_id"].map(cats)
    kind = [truth.at[c, f"response_{f}"] for c, f in zip(later["customer_id"], fam, strict=True)]
    assert len(later) > 100 and set(kind) == {"sure_thing"}, "unprompted purchases come from sure things only"
    for f in RESPONSE_FAMILIES:
        shares = truth[f"response_{f}"].value_counts(normalize=True)
        assert shares["persuadable"] == pytest.approx(0.12, abs=0.02) and shares["sure_thing"] == pytest.approx(0.15, abs=0.02)
        assert (truth.loc[truth[f"response_{f}"] != "persuadable", f"uplift_{f}"] == 0).all()
        assert (truth.loc[truth["sleeping_dog"], f"uplift_{f}"] == 0).all()
    assert truth["sleeping_dog"].mean() == pytest.approx(0.10, abs=0.015)


def test_the_simulators_channels_are_the_configured_ones():
    from jobs.platform.config import business
    from simulator.generate import INBOUND, OPTOUT_CHANNELS
    from simulator.responder import OUTBOUND

    channels = business("channels")["channels"]
    assert INBOUND == [c["id"] for c in channels if c["kind"] == "passive"]
    assert list(OUTBOUND) == [c["id"] for c in channels if c["kind"] == "active"]
    assert set(OPTOUT_CHANNELS) == {"all", *OUTBOUND}
