"""bench/uplift_ceiling.py: the oracle, the observable ideal and random contact, and their figures.

By hand on small pair frames (ties shared out at a cut; random response types; a constant effect among
persuadables, where the observable ideal is worth exactly share_persuadable x (1 - share_sleeping_dog) of the
oracle at small volumes; the oracle's avoidance of sleeping dogs), and on tiny simulated operators (written
without Spark): the truth's flags and ``uplift_<family>`` against the redrawn world, the effect as the indicator x
the base effect, and the command's roots, skips and files.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bench import uplift_ceiling as uc
from jobs.platform.config import Paths
from simulator.generate import RESPONSE_FAMILIES, SimSpec, generate
from simulator.profiles import profile

DELIVER, CHURN = 0.97, 0.35


def _pairs(base, responds, dog=None, sure=None, lost=100.0, value=1.0, dog_share=0.0) -> pd.DataFrame:
    """A frame of pairs as bench/uplift_ceiling.py measures them: both contacts (conversions, value) alike; the
    effect is the base x the indicator; a dog's contact causes DELIVER x CHURN closures."""
    base = np.asarray(base, dtype=float)
    n = len(base)
    dog = np.zeros(n, dtype=bool) if dog is None else np.asarray(dog, dtype=bool)
    sure = np.zeros(n, dtype=bool) if sure is None else np.asarray(sure, dtype=bool)
    frame = {"sure": sure, "lost_value": np.full(n, lost)}
    for m, w in (("conversions", 1.0), ("value", value)):
        frame[f"base_{m}"] = base * w
        frame[f"effect_{m}"] = base * w * np.asarray(responds, dtype=bool)
        frame[f"closure_{m}"] = dog * DELIVER * CHURN
        frame[f"optout_{m}"] = np.zeros(n)
        frame[f"harm_expected_{m}"] = np.full(n, dog_share * DELIVER * CHURN)
    return pd.DataFrame(frame)


def _at(figs: dict, measure: str, ranking: str, volume: float) -> dict:
    return figs[measure][ranking]["at"][f"{volume:g}"]


def test_top_sums_share_out_the_tie_the_cut_splits():
    keys = [np.array([3.0, 2.0, 2.0, 1.0])]
    values = {"v": np.array([10.0, 4.0, 0.0, 1.0])}
    assert uc.top_sums(keys, values, 1)["v"] == 10
    assert uc.top_sums(keys, values, 2)["v"] == pytest.approx(12)  # half of the tie (4 + 0)
    assert uc.top_sums(keys, values, 2.5)["v"] == pytest.approx(13)  # three quarters of it
    assert uc.top_sums(keys, values, 3)["v"] == pytest.approx(14)
    assert uc.top_sums(keys, values, 4)["v"] == pytest.approx(15)
    assert uc.top_sums(keys, values, 0)["v"] == 0
    # a second key breaks the tie
    assert uc.top_sums([keys[0], np.array([0.0, 0.0, 1.0, 0.0])], values, 2)["v"] == pytest.approx(10)
    assert uc.top_sums([keys[0], np.array([0.0, 1.0, 0.0, 0.0])], values, 2)["v"] == pytest.approx(14)


def test_shares_of_the_realistic_profile():
    sh = uc.shares(profile("realistic"))
    assert sh["q"] == pytest.approx(0.12 * 0.9)
    assert sh["q_not_sure"] == pytest.approx(0.12 / 0.85 * 0.9)
    assert uc.shares(profile("easy"))["q"] == 1.0


def test_random_types_the_observable_ideal_is_the_base_ranking():
    """Types drawn independently of the base effect: the observable ideal's top 20% holds what sorting by the base
    gives by hand, about the base's own concentration; the oracle's top 20% holds everything (fewer responders)."""
    rng = np.random.default_rng(1)
    n = 100_000
    base = rng.gamma(0.5, 1.0, n)
    responds = rng.random(n) < 0.108
    figs = uc.measure_set(_pairs(base, responds), q=0.108, q_not_sure=0.127)
    effect = base * responds
    top = np.argsort(-base)[: n // 5]
    by_hand = effect[top].sum() / effect.sum()
    assert figs["conversions"]["observable"]["top20_share"] == pytest.approx(by_hand, rel=1e-12)
    assert figs["conversions"]["observable"]["top20_share"] == pytest.approx(base[top].sum() / base.sum(), abs=0.02)
    assert figs["conversions"]["oracle"]["top20_share"] == pytest.approx(1.0)
    assert figs["conversions"]["random"]["top20_share"] == pytest.approx(0.2)
    for v in uc.VOLUMES:
        k = int(v * n)
        oracle = np.sort(effect)[::-1][:k].sum()
        observable = effect[np.argsort(-base)[:k]].sum()
        assert _at(figs, "conversions", "observable", v)["of_oracle"] == pytest.approx(observable / oracle, rel=1e-9)
        assert _at(figs, "conversions", "random", v)["of_oracle"] == pytest.approx(v * effect.sum() / oracle, rel=1e-9)
        assert _at(figs, "conversions", "observable", v)["over_random"] == pytest.approx(observable / (v * effect.sum()), rel=1e-9)
        assert _at(figs, "conversions", "oracle", v)["per_1000"] == pytest.approx(1000 * oracle / k, rel=1e-9)
    assert figs["responders"] == pytest.approx(responds.mean())


def _constant_case(n: int = 10_000):
    """A constant effect among persuadables; persuadable 12%, sure thing 15%, sleeping dog 10% of customers, each
    pattern independent of the others (so persuadable and not a dog is exactly 10.8%, as realistic's shares)."""
    i = np.arange(n)
    persuadable = (i % 1000) < 120
    sure = ((i % 1000) >= 120) & ((i % 1000) < 270)
    dog = i % 10 == 3
    responds = persuadable & ~dog
    assert responds.mean() == pytest.approx(0.108)
    return _pairs(np.ones(n), responds, dog=dog, sure=sure, dog_share=0.1), responds


def test_constant_effect_the_observable_ideal_is_worth_the_share_of_responders():
    pairs, responds = _constant_case()
    sh = uc.shares(profile("realistic"))
    figs = uc.measure_set(pairs, sh["q"], sh["q_not_sure"])
    for v in (0.01, 0.05):  # below the 10.8% of responders
        assert _at(figs, "conversions", "observable", v)["of_oracle"] == pytest.approx(sh["q"])
        assert _at(figs, "conversions", "observable", v)["over_random"] == pytest.approx(1.0)  # no better than random
        assert _at(figs, "conversions", "oracle", v)["over_random"] == pytest.approx(1 / 0.108)
        # knowing the sure things, the ideal picks among the others, of whom 10.8 / 85 respond
        assert _at(figs, "conversions", "observable_knows_sure_things", v)["of_oracle"] == pytest.approx(sh["q_not_sure"])
    # at 20% the oracle has every responder, the observable ideal 20% of them
    assert _at(figs, "conversions", "observable", 0.2)["of_oracle"] == pytest.approx(0.2)
    assert figs["conversions"]["observable"]["top20_share"] == pytest.approx(0.2)
    assert figs["value"]["observable"]["top20_share"] == pytest.approx(0.2)


def test_the_oracle_avoids_sleeping_dogs_an_observable_ranking_cannot():
    pairs, _ = _constant_case()
    sh = uc.shares(profile("realistic"))
    figs = uc.measure_set(pairs, sh["q"], sh["q_not_sure"])
    for v in uc.VOLUMES:  # even at 20%, past the responders: the rest of its picks are not dogs
        assert _at(figs, "conversions", "oracle", v)["closures_per_1000"] == 0
        assert _at(figs, "value", "oracle", v)["closures_per_1000"] == 0
        assert _at(figs, "net_value", "oracle", v)["closures_per_1000"] == 0
        # dogs are 10% of every pattern: an observable ranking contacts them at their share
        assert _at(figs, "conversions", "observable", v)["closures_per_1000"] == pytest.approx(1000 * 0.1 * DELIVER * CHURN)
        assert _at(figs, "conversions", "random", v)["closures_per_1000"] == pytest.approx(1000 * 0.1 * DELIVER * CHURN)
    # net value: value - closures x lost value (100 a closure here)
    row = _at(figs, "value", "observable", 0.01)
    assert row["net_value_per_1000"] == pytest.approx(row["per_1000"] - row["closures_per_1000"] * 100)
    assert _at(figs, "net_value", "oracle", 0.01)["per_1000"] == pytest.approx(1000.0)
    assert _at(figs, "net_value", "observable", 0.01)["per_1000"] == pytest.approx(1000 * (0.108 - 0.1 * DELIVER * CHURN * 100))
    assert figs["net_value"]["observable"]["top20_share"] is None  # the total is a loss: no share of it


# --- against the simulator ---------------------------------------------------------------------------------------

SPEC = {"realistic": SimSpec(500, 6, dt.date(2026, 11, 20), 7, "realistic"),
        "easy": SimSpec(500, 6, dt.date(2026, 11, 20), 7, "easy")}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    parent = tmp_path_factory.mktemp("uplift_ceiling")
    for name, spec in SPEC.items():
        generate(Paths(parent / name), spec, progress=False)
    (parent / "not_a_root").mkdir()
    return parent


def test_the_pairs_of_a_simulated_root(roots):
    pairs, info = uc.root_pairs(roots / "realistic")
    assert "sleeping_dog" in info["truth_check"]["checked"] and "uplift_data" in info["truth_check"]["checked"]
    assert len(pairs) == info["pool"] * len(RESPONSE_FAMILIES)
    responds = pairs["persuadable"] & ~pairs["dog"]
    for m in uc.CONTACT_KINDS:
        assert np.array_equal(pairs[f"effect_{m}"].to_numpy(), pairs[f"base_{m}"].to_numpy() * responds.to_numpy())
        # a contact causes closures only for a dog
        assert (pairs.loc[~pairs["dog"], f"closure_{m}"] == 0).all()
        dogs = pairs[pairs["dog"]]
        deliver = dogs[f"channel_{m}"].map({"sms_push": 0.97, "wechat": 0.95, "email": 0.90, "outbound_ivr": 0.60,
                                             "outbound_call": 0.55})
        rate = np.where(dogs["family"].isin(["plan", "retention"]), 0.35, 0.002)  # realistic: dog_contact_families
        assert np.allclose(dogs[f"closure_{m}"], deliver * rate)
    truth = pd.read_parquet(roots / "realistic" / "truth" / "customers.parquet")
    for fam in RESPONSE_FAMILIES:
        mine = pairs[pairs["family"] == fam]
        factor = truth[f"uplift_{fam}"].to_numpy()[mine["customer"].to_numpy()]
        assert (factor[mine["effect_conversions"].to_numpy() > 0] > 0).all()  # an effect only where the truth has one
    fam = pairs[pairs["family"] == "family"]  # one product, P_FAMILY (value 15): value = 15 x conversions
    value = fam["base_value"] / fam["base_conversions"].where(fam["base_conversions"] > 0)
    assert set(value.dropna().round(6)) == {15.0}


def test_one_channel_only(roots):
    pairs, info = uc.root_pairs(roots / "realistic", "email")
    assert set(pairs["channel_conversions"]) == set(pairs["channel_value"]) == {"email"}
    assert "handset" not in set(pairs["family"])  # e-mail does not carry handsets (conf/products.yaml)
    everyone, _ = uc.root_pairs(roots / "realistic")
    assert info["pool"] < everyone["customer"].nunique()  # only the customers with an e-mail address
    r = uc.measure_root(roots / "realistic", ("email",))
    assert r["by_channel"]["email"]["pairs"] == len(pairs)


def test_a_changed_truth_is_refused(roots, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(roots / "realistic", copy)
    f = copy / "truth" / "customers.parquet"
    t = pd.read_parquet(f)
    t.loc[0, "sleeping_dog"] = not t.loc[0, "sleeping_dog"]
    t.to_parquet(f)
    with pytest.raises(ValueError, match="sleeping_dog"):
        uc.root_pairs(copy)


def test_easy_the_observable_ideal_is_the_oracle(roots):
    r = uc.measure_root(roots / "easy")
    assert r["shares"]["q"] == 1.0
    for m in uc.MEASURES:
        for v in uc.VOLUMES:
            assert _at(r["pooled"], m, "observable", v)["of_oracle"] == pytest.approx(1.0)
            assert _at(r["pooled"], m, "oracle", v)["closures_per_1000"] == 0


def test_realistic_measured_shares_and_a_ceiling_below_the_oracle(roots):
    r = uc.measure_root(roots / "realistic")
    assert r["measured_shares"]["persuadable_not_dog"] == pytest.approx(0.108, abs=0.03)
    assert r["pooled"]["conversions"]["oracle"]["top20_share"] == pytest.approx(1.0)
    assert _at(r["pooled"], "conversions", "observable", 0.01)["of_oracle"] < 0.7
    assert set(r["families"]) == set(RESPONSE_FAMILIES)
    assert 0 <= r["positive_expected_net_pairs"]["observable"] <= r["pooled"]["pairs"]


def test_the_command_finds_roots_skips_fresh_ones_and_writes_its_files(roots, tmp_path, capsys):
    found, skipped = uc.find_roots([roots], min_age=3600)  # just written: may be being written
    assert found == [] and {s["root"] for s in skipped} == {str(roots / "easy"), str(roots / "realistic")}
    found, skipped = uc.find_roots([roots, tmp_path / "nothing"], min_age=0)
    assert found == [roots / "easy", roots / "realistic"] and skipped[0]["root"] == str(tmp_path / "nothing")
    out = tmp_path / "res" / "ceiling.json"
    assert uc.main(["--root", str(roots / "not_a_root"), "--out", str(out)]) == 1 and not out.exists()
    assert "not_a_root" in capsys.readouterr().err
    assert uc.main(["--root", str(roots), "--root", str(roots / "realistic"), "--out", str(out), "--min-age", "0"]) == 0
    result = json.loads(out.read_text())
    assert [r["profile"] for r in result["roots"]] == ["easy", "realistic", "realistic"]
    assert "commit" in result["provenance"] and result["command"].startswith("python bench/uplift_ceiling.py --root")
    text = out.with_suffix(".md").read_text()
    assert "observable ideal" in text and "## realistic" in text
    assert "observable ideal" in capsys.readouterr().out
