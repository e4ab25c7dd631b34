"""The closed loop's headline (issue 22, item 4), without Spark: harm from the responder's own probabilities, the
value oracle by net incremental value, per-1,000 figures, the aggregate over seeds with intervals and targets,
uplift vs propensity only when an uplift model existed, the report's section and the make target."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from jobs.platform.config import Paths
from simulator import aggregate
from simulator.generate import SimSpec, generate
from simulator.headline import (
    MAKERS,
    Tracks,
    compare_day,
    figures,
    headline,
    per_1000,
    uplift_first_day,
    uplift_in_root,
)
from simulator.responder import DELIVER, OUTBOUND, World, events_for
from tests.test_responder import _publish

ROOT = Path(__file__).resolve().parents[1]
SPEC = SimSpec(customers=3000, days=12, end_date=dt.date(2026, 11, 20), seed=5)
DAY = SPEC.end_date - dt.timedelta(days=6)
T_975_2 = 4.302652729911275  # t(0.975, 2 degrees of freedom): three seeds


@pytest.fixture(scope="module")
def world() -> World:
    return World.load(SPEC)


def _sms(world: World, idx: np.ndarray, product: str = "P_DATA_5G") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    j = world.product_index[product]
    return idx.astype(np.int64), np.full(len(idx), j, dtype=np.int64), np.full(len(idx), "sms_push", dtype=object)


def test_harm_is_the_responders_own_probability(world, monkeypatch):
    """Expected closures of a contact = P(delivered) x dog_contact_churn_prob for a sleeping dog offered a plan
    change (a family of dog_contact_families), x dog_other_contact_churn_prob for another offer, 0 for anyone else;
    expected opt-outs = the responder's opt-out probability x P(delivered, not accepted); and the responder draws
    with the same functions (a changed p_leave changes both)."""
    alive = world.alive(DAY + dt.timedelta(days=1))
    dogs = np.flatnonzero(world.c["sleeping_dog"] & alive)
    others = np.flatnonzero(~world.c["sleeping_dog"] & alive)[:2000]
    assert len(dogs) > 100
    idx, prod, chan = _sms(world, np.r_[dogs, others], "P_PLAN_UP")
    optouts, closures = world.harm(idx, prod, chan, DAY)
    dog = world.c["sleeping_dog"][idx]
    prof = world.params
    assert np.allclose(closures[dog], DELIVER["sms_push"] * prof.dog_contact_churn_prob) and (closures[~dog] == 0).all()
    data = _sms(world, idx, "P_DATA_5G")
    assert np.allclose(world.harm(*data, DAY)[1][dog], DELIVER["sms_push"] * prof.dog_other_contact_churn_prob)
    p = world.p_convert(idx, prod, chan, DAY)
    assert (p[dog] == 0).all(), "a sleeping dog never buys from a contact"
    assert np.allclose(optouts, world.p_optout(idx, "sms_push") * (DELIVER["sms_push"] - p))
    prone = world.c["complaint_prone"][idx]
    assert np.allclose(world.p_optout(idx, "sms_push")[dog], 0.002 * (1 + 4 * prone[dog]) * prof.dog_optout_multiplier)
    # the responder's draws over many decision days agree with the expectation
    lists = {"ref": np.array([f"r{k}" for k in range(len(idx))], dtype=object), "idx": idx, "prod": prod, "channel": chan,
             "campaign": np.full(len(idx), "cpc_daily", dtype=object)}
    left, out = 0, 0
    for back in range(6):
        ev = events_for(world, lists, DAY - dt.timedelta(days=back))
        left += int((ev["event"] == "leaves").sum())
        out += int((ev["event"] == "opted_out").sum())
    assert left == pytest.approx(6 * closures.sum(), rel=0.1)
    assert out == pytest.approx(6 * optouts.sum(), rel=0.15)
    monkeypatch.setattr(World, "p_leave", lambda self, i, prod: np.ones(len(i)))
    ev = events_for(world, lists, DAY)
    assert set(ev["idx"][ev["event"] == "leaves"]) == set(ev["idx"][ev["event"] == "delivered"])
    assert np.allclose(world.harm(idx, prod, chan, DAY)[1], DELIVER["sms_push"])


def test_a_customer_leaves_once_and_lost_value_is_months_of_the_plan_fee(world):
    dogs = np.flatnonzero(world.c["sleeping_dog"] & world.alive(DAY + dt.timedelta(days=1)))[:50]
    idx, prod, _ = _sms(world, dogs, "P_PLAN_UP")
    value = np.array([float(p["value"]) for p in world.products])
    survive = np.ones(world.spec.customers)
    first = figures(world, idx, prod, "sms_push", DAY, None, None, survive, value)
    second = figures(world, idx, prod, "sms_push", DAY, None, None, survive, value)
    q = DELIVER["sms_push"] * world.params.dog_contact_churn_prob
    assert first["closures"] == pytest.approx(50 * q) and second["closures"] == pytest.approx(50 * q * (1 - q))
    fee = {"prepaid": 18.0, "regular": 58.0, "premium": 128.0}
    lost = np.array([fee[b] for b in world.c["brand"][idx]]) * world.params.lost_customer_months
    assert np.allclose(world.lost_value(idx), lost)
    assert first["lost_value"] == pytest.approx(float((q * lost).sum()))
    assert first["net_value"] == pytest.approx(first["value"] - first["lost_value"]) and first["conversions"] == 0
    assert world.params.lost_customer_months == 12


def test_the_value_oracle_is_at_least_cpc_on_the_same_volume(world):
    """A CPC list of reachable customers (sleeping dogs among them) against the blast and the oracles of the same
    volume: the value oracle, which knows each contact's net incremental value, does at least as well as CPC, never
    contacts a sleeping dog, and its per-1,000 figures divide by its own contacts."""
    from jobs.platform.config import business

    rng = np.random.default_rng(1)
    who = rng.choice(np.flatnonzero(world.alive(DAY + dt.timedelta(days=1))), 400, replace=False)
    idx, prod, chan = _sms(world, who)
    lists = {"ref": np.array([f"r{k}" for k in range(len(idx))], dtype=object), "idx": idx, "prod": prod, "channel": chan,
             "campaign": np.full(len(idx), "cpc_daily", dtype=object)}
    cats = business("products")["categories"]
    carries = {ch: [j for j, p in enumerate(world.products) if ch in cats[p["category"]] and p["category"] != "care"] for ch in OUTBOUND}
    n = world.spec.customers
    held, optout = np.zeros((n, len(world.products)), dtype=bool), np.zeros(n, dtype=bool)
    tracks = Tracks(n)
    out = compare_day(world, lists, DAY, held, optout, tracks, carries, {"cpc_daily"}, tracks.capped(DAY, 7, 2))
    sms = out["sms_push"]
    assert set(sms) == set(MAKERS) and sms["cpc"]["rows"] == sms["blast"]["rows"] == sms["oracle_by_value"]["rows"] == 400
    assert sms["oracle_by_value"]["net_value"] >= sms["cpc"]["net_value"]
    assert sms["oracle_by_value"]["net_value"] >= sms["oracle"]["net_value"] - 1e-9
    assert sms["oracle"]["conversions"] >= max(sms["cpc"]["conversions"], sms["blast"]["conversions"])
    assert sms["oracle"]["closures"] == sms["oracle_by_value"]["closures"] == 0 < sms["cpc"]["closures"]
    k = per_1000(sms)
    assert k["cpc"]["incremental_conversions"] == pytest.approx(1000 * sms["cpc"]["conversions"] / 400)
    assert k["blast"]["net_incremental_value"] == pytest.approx(2.5 * sms["blast"]["net_value"])


# --- one loop's headline from its files, and the report's section ---------------------------------------------------

@pytest.fixture(scope="module")
def loop_root(tmp_path_factory, world) -> Path:
    """A finished 'loop' without Spark: the simulator's files and two days of published lists."""
    paths = Paths(tmp_path_factory.mktemp("loop"))
    generate(paths, SPEC, progress=False)
    for k, day in enumerate((DAY, DAY + dt.timedelta(days=1))):
        rows = [(c, "P_DATA_5G", "sms_push") for c in range(100 * k, 100 * k + 600)] + \
               [(c, "R_RENEW_BONUS", "outbound_call") for c in range(2000 + 50 * k, 2100 + 50 * k)]
        _publish(paths, world, day, rows)
    return paths.root


def test_one_loops_headline_carries_the_new_figures_and_the_report_shows_it(loop_root):
    from jobs.stages.evaluate import report

    paths = Paths(loop_root)
    days = [DAY, DAY + dt.timedelta(days=1)]
    meta = {"customers": SPEC.customers, "history_days": SPEC.days - 2, "seed": SPEC.seed, "models_trained": False,
            "uplift_rank": True, "train_every": 0}
    summary = headline(paths, SPEC, days, meta)
    saved = json.loads((paths.reports / "loop" / "headline.json").read_text())
    assert saved["per_1000"]["cpc"]["contacts"] == 2 * (600 + 100) and saved["days"] == 2 and saved["lost_customer_months"] == 12
    assert set(saved["channels"]["all"]) == set(MAKERS)
    for m in MAKERS:
        t = saved["channels"]["all"][m]
        assert t["net_value"] == pytest.approx(t["value"] - t["lost_value"])
    assert saved["cpc_over_blast"] == pytest.approx(summary["per_1000"]["cpc"]["incremental_conversions"]
                                                    / summary["per_1000"]["blast"]["incremental_conversions"])
    assert saved["uplift"] == {"models": [], "cold_start": {}, "first_day_possible": None}
    assert "net incremental value / 1,000" in (paths.reports / "loop" / "headline.md").read_text()
    bench = report.benchmark(paths)
    assert [r["maker"] for r in bench["rows"]] == ["CPC", "blind blast", "oracle by conversions", "oracle by net value"]
    page = report.render(DAY, [], [], {"window_days": 14, "lookback_days": 28}, 0, None, bench)
    assert "Closed-loop benchmark" in page and f"{bench['rows'][0]['incremental_conversions']:,.2f}" in page
    assert "Closed-loop benchmark" not in report.render(DAY, [], [], {"window_days": 14, "lookback_days": 28}, 0)
    (paths.reports / "loop" / "headline.json").write_text("{not json")
    assert report.benchmark(paths) is None
    (paths.reports / "loop" / "headline.json").write_text(json.dumps(saved))


# --- the aggregate over seeds -----------------------------------------------------------------------------------------

def _fake_run(root: Path, seed: int, cpc: float, blast: float, net: float, oracle_net: float, uplift_rank: bool = True,
              train_every: int = 0) -> Path:
    """A loop root holding only a headline.json with the figures the aggregate reads."""
    k = {m: {"contacts": 1000, "incremental_conversions": v, "gross_value": 100.0, "optouts": 1.0, "closures": c,
             "lost_value": 10.0, "net_incremental_value": n}
         for m, v, c, n in (("cpc", cpc, 3.0, net), ("blast", blast, 3.4, -200.0), ("oracle", 20.0, 0.0, 900.0),
                            ("oracle_by_value", 18.0, 0.0, oracle_net))}
    totals = {m: {"rows": 1000, "conversions": k[m]["incremental_conversions"], "net_value": k[m]["net_incremental_value"]} for m in MAKERS}
    run = {"profile": "realistic", "seed": seed, "customers": 20000, "history_days": 105, "models_trained": True, "train_every": train_every,
           "uplift_rank": uplift_rank, "lost_customer_months": 12, "loop_days": ["2026-11-13", "2026-11-14", "2026-11-15"],
           "per_1000": k, "cpc_over_blast": cpc / blast if blast > 0 else None, "cpc_net_value_over_oracle": net / oracle_net,
           "cpc_gross_value_over_oracle": 1.0, "channels": {"all": totals, "sms_push": totals}}
    (root / "reports" / "loop").mkdir(parents=True)
    (root / "reports" / "loop" / "headline.json").write_text(json.dumps(run))
    return root


def test_the_aggregate_gives_means_intervals_and_targets(tmp_path):
    roots = [_fake_run(tmp_path / f"s{s}", s, cpc, blast, net, 1000.0)
             for s, cpc, blast, net in ((42, 3.0, 0.3, 500.0), (43, 4.0, 0.5, 600.0), (44, 5.0, 0.4, 700.0))]
    agg = aggregate.aggregate(roots, ["python -m simulator headline", "..."], 12.5)
    p = agg["profiles"]["realistic"]
    cpc = p["figures_per_1000"]["cpc"]["incremental_conversions"]
    half = T_975_2 * 1.0 / math.sqrt(3)  # the three values 3, 4, 5: sd 1
    assert (cpc["mean"], cpc["n"]) == (4.0, 3) and cpc["low"] == pytest.approx(4 - half) and cpc["high"] == pytest.approx(4 + half)
    ratios = [10.0, 8.0, 12.5]
    r = p["cpc_over_blast"]["ratio"]
    assert r["mean"] == pytest.approx(np.mean(ratios)) and r["high"] - r["mean"] == pytest.approx(
        T_975_2 * np.std(ratios, ddof=1) / math.sqrt(3))
    t = agg["targets"]["realistic"]
    assert t["cpc_over_blast"]["met"] is True and t["cpc_over_blast"]["shortfall"] == 0.0
    value = t["cpc_net_value_over_oracle"]
    assert value["measured"] == pytest.approx(0.6) and value["met"] is False and value["shortfall"] == pytest.approx(0.1)
    assert value["why"] and "closures caused" in value["why"][1]
    assert agg["provenance"]["command"] == "python -m simulator headline ..." and agg["provenance"]["seconds"] == 12.5
    assert agg["provenance"]["commit"] and isinstance(agg["provenance"]["dirty"], bool)
    assert agg["settings"]["seed"] == [42, 43, 44] and agg["settings"]["customers"] == [20000]
    assert [row["n"] for row in agg["display"]["rows"]] == [3] * 4
    path = aggregate.write(agg, tmp_path / "results", tmp_path / "storage")
    assert json.loads(path.read_text())["targets"] == json.loads(json.dumps(agg["targets"]))
    assert (tmp_path / "storage" / "reports" / "loop" / "headline.json").exists()
    assert "| cpc_net_value_over_oracle |" in (tmp_path / "results" / "headline.md").read_text()


def test_no_ratio_when_the_blast_interval_includes_zero(tmp_path):
    roots = [_fake_run(tmp_path / f"s{s}", s, cpc, blast, 500.0, 1000.0)
             for s, cpc, blast in ((42, 3.0, 0.01), (43, 4.0, 0.5), (44, 5.0, 0.02))]
    p = aggregate.aggregate(roots, ["x"])["profiles"]["realistic"]
    blast = p["figures_per_1000"]["blast"]["incremental_conversions"]
    assert blast["low"] < 0 < blast["high"]
    cob = p["cpc_over_blast"]
    assert cob["ratio"] is None and "includes zero" in cob["reason"]
    assert cob["cpc_per_1000"]["mean"] == 4.0 and cob["blast_per_1000"] == blast
    t = p["targets"]["cpc_over_blast"]
    assert t["met"] is False and t["measured"] is None
    assert t["shortfall"] == pytest.approx(10 * blast["high"] - cob["cpc_per_1000"]["low"])


def test_uplift_vs_propensity_is_not_measurable_without_an_uplift_model(tmp_path):
    roots = []
    for s in (42, 43, 44):
        for rank in (True, False):
            root = _fake_run(tmp_path / f"s{s}{rank}", s, 4.0, 0.4, 500.0 + 10 * rank, 1000.0, uplift_rank=rank)
            cold = root / "models" / "uplift_data" / "2026-11-12-cold-start"
            cold.mkdir(parents=True)
            cold.joinpath("meta.json").write_text(json.dumps({"as_of": "2026-11-12", "reason": "cold start: propensity (no matured outcomes)",
                                                              "boosters": {}}))
            roots.append(root)
    p = aggregate.aggregate(roots, ["x"])["profiles"]["realistic"]
    upv = p["uplift_vs_propensity"]
    assert upv["measurable"] is False and "train_every 0" in upv["reason"] and "no matured outcomes" in upv["reason"]
    assert upv["first_loop_day_with_a_model_if_retrained_weekly"] == 36 == uplift_first_day(7)
    assert p["targets"]["uplift_over_propensity"]["met"] is False and p["targets"]["uplift_over_propensity"]["measurable"] is False
    assert uplift_first_day(0) is None and uplift_first_day(10) == 41
    # with a model used during the loop (registered as of a loop day), the paired difference
    for root in roots:
        model = root / "models" / "uplift_data" / "2026-11-13-abc"
        model.mkdir(parents=True)
        model.joinpath("meta.json").write_text(json.dumps({"as_of": "2026-11-13", "reason": "uplift: x_learner", "boosters": {"mu0": "x"}}))
    assert uplift_in_root(roots[0], dt.date(2026, 11, 13), dt.date(2026, 11, 15))["models"][0]["version"] == "2026-11-13-abc"
    upv = aggregate.aggregate(roots, ["x"])["profiles"]["realistic"]["uplift_vs_propensity"]
    d = upv["net_incremental_value"]["difference"]
    assert upv["measurable"] is True and d["mean"] == pytest.approx(10.0) and d["low"] == pytest.approx(10.0)


def test_the_make_target_is_listed_in_help():
    makefile = (ROOT / "Makefile").read_text()
    assert "\nheadline: setup\n" in makefile and "python -m simulator loops" in makefile
    proc = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "make headline" in proc.stdout and "make loop " in proc.stdout
