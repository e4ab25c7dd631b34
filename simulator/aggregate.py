"""Several closed loops in one headline: CPC against the blast and the oracles over seeds, with intervals, and the
targets of issue 22 (item 4) with what each measured, whether it is met and by how much it falls short.

``python -m simulator loops`` (``make headline``) runs the loops in sequence, each in its own root
(``<storage root>/loops/<profile>-seed<seed>``, and ``...-propensity`` for the propensity-ranked arm: the same seed
with ``CPC_UPLIFT_RANK=false``), then aggregates; ``python -m simulator headline ROOT...`` aggregates finished
loops. The aggregate is ``bench/results/headline.json`` and ``headline.md`` (and a copy of the JSON in the storage
root's ``reports/loop/headline.json``, which the campaign report shows).

Per profile, over the seeds of the uplift-ranked runs (the shipped setting): each list maker's incremental
conversions, gross and net incremental value, opt-outs and closures caused per 1,000 contacts, as the mean and a
95% t-interval over the seeds (mean +- t(0.975, n - 1) x sd / sqrt(n); n is given, and a single seed has no
interval); the CPC / blast ratio of incremental conversions per 1,000 contacts (the per-seed ratios, their mean
and interval), or ``null`` with the reason and both figures where the blast's interval includes zero; CPC's net
incremental value as a share of the value oracle's (per seed, mean, interval); uplift-ranked against
propensity-ranked CPC, paired by seed, only where an uplift model was used in the loop (:func:`uplift_vs_propensity`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tabulate import tabulate

from jobs.platform.config import Settings
from jobs.platform.provenance import git_state
from simulator.headline import LABELS, MAKERS, TARGETS, uplift_first_day, uplift_in_root

log = logging.getLogger(__name__)

PER_1000 = ("incremental_conversions", "gross_value", "optouts", "closures", "lost_value", "net_incremental_value")
HEADLINE = Path("reports") / "loop" / "headline.json"
DOCS = "docs/evaluation.md, section 'Headline'"


def interval(values: list[float | None]) -> dict:
    """Mean and 95% t-interval over the seeds' values (None values are left out and counted as ``missing``)."""
    v = [float(x) for x in values if x is not None]
    n = len(v)
    out: dict = {"mean": float(np.mean(v)) if v else None, "low": None, "high": None, "n": n, "missing": len(values) - n}
    if n >= 2:
        from scipy import stats

        sd = float(np.std(v, ddof=1))
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        out.update(low=out["mean"] - half, high=out["mean"] + half, sd=sd)
    elif n == 1:
        out["note"] = "one seed: no interval"
    return out


def includes_zero(ci: dict) -> bool:
    """The interval includes zero (or, without an interval, the single value is not positive)."""
    if ci["low"] is None:
        return ci["mean"] is None or ci["mean"] <= 0
    return ci["low"] <= 0 <= ci["high"] or ci["high"] < 0


# --- reading the runs ---------------------------------------------------------------------------------------------

def read_run(root: Path) -> dict:
    """One finished loop's headline (``<root>/reports/loop/headline.json``), with its uplift models read again from
    the root's registry (:func:`simulator.headline.uplift_in_root`)."""
    f = root / HEADLINE
    if not f.exists():
        raise FileNotFoundError(f"{f}: no headline; run `python -m simulator loop --root {root}` (or --headline-only) first")
    run = json.loads(f.read_text())
    days = [dt.date.fromisoformat(d) for d in run["loop_days"]]
    uplift = uplift_in_root(root, days[0], days[-1])
    uplift["first_day_possible"] = uplift_first_day(int(run.get("train_every") or 0))
    keep = ("profile", "seed", "customers", "history_days", "days", "seconds", "models_trained", "train_every",
            "lost_customer_months", "per_1000", "cpc_over_blast", "cpc_over_oracle", "cpc_net_value_over_oracle",
            "cpc_gross_value_over_oracle", "cpc_realised_conversions")
    return {**{k: run.get(k) for k in keep}, "days": len(days), "root": str(root), "uplift_rank": bool(run.get("uplift_rank", True)),
            "uplift": uplift, "all": run["channels"]["all"], "channels": {ch: t for ch, t in run["channels"].items() if ch != "all"}}


def _value(run: dict, maker: str, key: str) -> float | None:
    return (run["per_1000"].get(maker) or {}).get(key)


# --- per profile ------------------------------------------------------------------------------------------------

def figures(runs: list[dict]) -> dict:
    """List maker -> figure per 1,000 contacts -> :func:`interval` over the runs."""
    return {m: {k: interval([_value(r, m, k) for r in runs]) for k in PER_1000} for m in MAKERS}


def cpc_over_blast(runs: list[dict], figs: dict) -> dict:
    """The CPC / blast ratio of incremental conversions per 1,000 contacts: the per-seed ratios and their interval, or
    ``ratio: null`` with the reason and both figures where the blast's interval includes zero."""
    cpc, blast = figs["cpc"]["incremental_conversions"], figs["blast"]["incremental_conversions"]
    per_seed = {str(r["seed"]): r.get("cpc_over_blast") for r in runs}
    out = {"cpc_per_1000": cpc, "blast_per_1000": blast, "per_seed": per_seed}
    if includes_zero(blast):
        return {**out, "ratio": None, "reason": "the blast's incremental conversions per 1,000 contacts have an interval "
                "that includes zero (or are not positive): a ratio to it says nothing; compare the two figures"}
    return {**out, "ratio": interval(list(per_seed.values()))}


def value_share(runs: list[dict]) -> dict:
    """CPC's net incremental value as a share of the value oracle's, per seed and over the seeds (gross beside it)."""
    net = {str(r["seed"]): r.get("cpc_net_value_over_oracle") for r in runs}
    gross = {str(r["seed"]): r.get("cpc_gross_value_over_oracle") for r in runs}
    return {"net": interval(list(net.values())), "net_per_seed": net, "gross": interval(list(gross.values())),
            "gross_per_seed": gross}


def _why_no_model(r: dict) -> str:
    first = r["uplift"]["first_day_possible"]
    if first is None:
        return ("the loop never retrained (train_every 0): its only training, the day before the loop, has no decision "
                "outcome to learn from")
    if r["days"] < first:
        return f"{r['days']} loop days with retraining every {r['train_every']} days: a model can be used from loop day {first} at the earliest"
    return "long enough, but every family stayed in cold start (too few rows or conversions in an arm)"


def _not_measurable(arm: list[dict], paired: list[str]) -> str | None:
    """Why uplift-ranked CPC cannot be compared with propensity-ranked CPC in these runs, or None."""
    if not arm:
        return "no uplift-ranked run"
    if any(r["uplift"]["models"] for r in arm):
        return None if paired else ("no propensity-ranked run of the same seed to pair with (run `python -m simulator "
                                    "loops --propensity-arm`)")
    why = sorted({_why_no_model(r) for r in arm})
    cold = sorted({f"{f}: {reason}" for r in arm for f, reason in r["uplift"]["cold_start"].items()})
    return ("no uplift model was trained and used during the loops, so both arms ranked by propensity: " + "; ".join(why)
            + (f" (latest cold-start reasons: {'; '.join(cold)})" if cold else ""))


def uplift_vs_propensity(uplift_arm: list[dict], propensity_arm: list[dict]) -> dict:
    """Uplift-ranked against propensity-ranked CPC, paired by seed: the paired differences (uplift - propensity) of
    CPC's net incremental value and incremental conversions per 1,000 contacts and their intervals; measurable only
    where an uplift model was used during the uplift-ranked loops (:func:`simulator.headline.uplift_in_root`)."""
    by_seed = {r["seed"]: r for r in propensity_arm}
    paired = [str(r["seed"]) for r in uplift_arm if r["seed"] in by_seed]
    why = _not_measurable(uplift_arm, paired)
    needed = uplift_first_day(7)
    if why is not None:
        return {"measurable": False, "reason": why, "loop_days": sorted({r["days"] for r in uplift_arm}),
                "first_loop_day_with_a_model_if_retrained_weekly": needed,
                "note": f"an uplift model can be used from loop day {needed} at the earliest with --train-every 7, "
                        "if its arms have enough rows and conversions (conf/models.yaml uplift.min_*)"}
    out = {"measurable": True, "seeds": paired}
    for key in ("net_incremental_value", "incremental_conversions"):
        diffs = {s: _diff(r, by_seed[r["seed"]], key) for r in uplift_arm for s in [str(r["seed"])] if s in paired}
        out[key] = {"difference": interval(list(diffs.values())), "per_seed": diffs,
                    "uplift": interval([_value(r, "cpc", key) for r in uplift_arm if str(r["seed"]) in paired]),
                    "propensity": interval([_value(by_seed[r["seed"]], "cpc", key) for r in uplift_arm if str(r["seed"]) in paired])}
    return out


def _diff(a: dict, b: dict, key: str) -> float | None:
    x, y = _value(a, "cpc", key), _value(b, "cpc", key)
    return None if x is None or y is None else x - y


# --- targets ----------------------------------------------------------------------------------------------------

def _ratio_target(ratio: dict, target: float, unit: str) -> dict:
    ci = ratio if "mean" in ratio else {}
    measured = ci.get("mean")
    met = measured is not None and measured >= target
    return {"target": target, "unit": unit, "measured": measured, "interval": [ci.get("low"), ci.get("high")], "n": ci.get("n"),
            "met": met, "shortfall": None if measured is None else max(target - measured, 0.0)}


def _blast_target(cob: dict) -> dict:
    """CPC at least 10x the blast in incremental conversions per 1,000 contacts. Without a ratio (the blast's interval
    includes zero) it is met when CPC's lower bound reaches 10x the blast's upper bound; the shortfall is then in
    incremental conversions per 1,000 contacts."""
    target = TARGETS["cpc_over_blast"]
    if cob["ratio"] is not None:
        return _ratio_target(cob["ratio"], target, "x: CPC / blast, incremental conversions per 1,000 contacts")
    cpc, blast = cob["cpc_per_1000"], cob["blast_per_1000"]
    low = cpc["low"] if cpc["low"] is not None else cpc["mean"]
    high = blast["high"] if blast["high"] is not None else blast["mean"]
    need = target * max(high or 0.0, 0.0)
    met = low is not None and low >= need and (low > 0)
    return {"target": target, "unit": "incremental conversions per 1,000 contacts: CPC's lower bound against 10x the "
            "blast's upper bound (no ratio: " + cob["reason"] + ")", "measured": None, "cpc_low": low, "blast_high": high,
            "met": met, "shortfall": None if low is None else max(need - low, 0.0)}


def _why(target: str, runs: list[dict], figs: dict, upv: dict) -> list[str]:
    """What the runs themselves say about a missed target (facts from the figures; the analysis is in the docs)."""
    out = [f"propensity models trained in {sum(bool(r['models_trained']) for r in runs)} of {len(runs)} runs; uplift models "
           f"used in {sum(bool(r['uplift']['models']) for r in runs)}"]
    if target == "cpc_over_blast":
        chans = sorted({ch for r in runs for ch in r["channels"]})
        for ch in chans:
            rs = [(r["channels"][ch].get("cpc", {}).get("conversions"), r["channels"][ch].get("blast", {}).get("conversions"))
                  for r in runs if ch in r["channels"]]
            c, b = sum(x or 0 for x, _ in rs), sum(y or 0 for _, y in rs)
            out.append(f"{ch}: CPC {c:.1f} against blast {b:.1f} incremental conversions over the runs"
                       + (f" ({c / b:.1f}x)" if b > 0 else ""))
    elif target == "cpc_net_value_over_oracle":
        c, o = figs["cpc"], figs["oracle_by_value"]
        out.append(f"per 1,000 contacts: CPC gross value {_m(c['gross_value'])}, closures caused {_m(c['closures'], '.2f')}, "
                   f"lost value {_m(c['lost_value'])}, net {_m(c['net_incremental_value'])}; the value oracle gross "
                   f"{_m(o['gross_value'])}, closures {_m(o['closures'], '.2f')}, net {_m(o['net_incremental_value'])}")
    elif not upv.get("measurable"):
        out.append(upv["reason"])
    return out + [f"analysis: {DOCS}"]


def targets(runs: list[dict], figs: dict, cob: dict, share: dict, upv: dict) -> dict:
    """Each target of issue 22, item 4: the measured figure, met, the shortfall (0 when met) and, when missed, why."""
    out = {"cpc_over_blast": _blast_target(cob),
           "cpc_net_value_over_oracle": _ratio_target(share["net"], TARGETS["cpc_net_value_over_oracle"],
                                                      "share: CPC's net incremental value / the value oracle's, equal volume")}
    if upv.get("measurable"):
        d = upv["net_incremental_value"]["difference"]
        met = d["low"] is not None and d["low"] > 0
        out["uplift_over_propensity"] = {
            "target": "uplift-ranked CPC ahead of propensity-ranked CPC by more than the interval",
            "unit": "net incremental value per 1,000 contacts, paired difference (uplift - propensity)",
            "measured": d["mean"], "interval": [d["low"], d["high"]], "n": d["n"], "met": met,
            "shortfall": None if d["low"] is None else max(-d["low"], 0.0)}
    else:
        out["uplift_over_propensity"] = {"target": "uplift-ranked CPC ahead of propensity-ranked CPC by more than the interval",
                                         "measurable": False, "measured": None, "met": False, "shortfall": None,
                                         "reason": upv["reason"]}
    for key, t in out.items():
        if not t["met"]:
            t["why"] = _why(key, runs, figs, upv)
    return out


def _m(ci: dict, spec: str = ",.1f") -> str:
    if ci["mean"] is None:
        return "-"
    text = format(ci["mean"], spec)
    return text if ci["low"] is None else f"{text} ({format(ci['low'], spec)} to {format(ci['high'], spec)})"


def profile_block(runs: list[dict]) -> dict:
    """Everything one profile's runs give: per run, per list maker, the ratios, uplift vs propensity, the targets."""
    arm = sorted((r for r in runs if r["uplift_rank"]), key=lambda r: r["seed"])
    prop = sorted((r for r in runs if not r["uplift_rank"]), key=lambda r: r["seed"])
    figs = figures(arm)
    cob = cpc_over_blast(arm, figs)
    share = value_share(arm)
    upv = uplift_vs_propensity(arm, prop)
    return {"seeds": [r["seed"] for r in arm], "n": len(arm), "figures_per_1000": figs, "cpc_over_blast": cob,
            "cpc_net_value_over_oracle": share, "uplift_vs_propensity": upv, "targets": targets(arm, figs, cob, share, upv)}


# --- the aggregate ----------------------------------------------------------------------------------------------

def provenance(argv: list[str], seconds: float | None = None) -> dict:
    """The commit (and whether the work tree had changes), the command line and the time taken."""
    return {**git_state(),
            "command": " ".join(argv), "seconds": None if seconds is None else round(seconds, 1),
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def display(profiles: dict) -> dict:
    """The compact block the campaign report shows (jobs/stages/evaluate/report.py reads only this)."""
    rows = []
    for name, p in profiles.items():
        for m in MAKERS:
            c, v = p["figures_per_1000"][m]["incremental_conversions"], p["figures_per_1000"][m]["net_incremental_value"]
            rows.append({"profile": name, "maker": LABELS[m], "n": c["n"], "incremental_conversions": c["mean"],
                         "incremental_conversions_low": c["low"], "incremental_conversions_high": c["high"],
                         "net_incremental_value": v["mean"], "net_incremental_value_low": v["low"], "net_incremental_value_high": v["high"]})
    return {"title": "CPC against a blind blast and oracles, per 1,000 contacts (mean and 95% interval over seeds)", "rows": rows}


def aggregate(roots: list[Path], argv: list[str], seconds: float | None = None) -> dict:
    """The aggregate of finished loops (each root's headline.json and uplift registry)."""
    runs = [read_run(Path(r)) for r in roots]
    profiles = {name: profile_block([r for r in runs if r["profile"] == name]) for name in sorted({r["profile"] for r in runs})}
    return {"provenance": provenance(argv, seconds),
            "settings": {k: sorted({r[k] for r in runs}, key=str) for k in ("customers", "days", "history_days", "train_every",
                                                                            "lost_customer_months", "profile", "seed")},
            "targets": {name: p["targets"] for name, p in profiles.items()}, "profiles": profiles,
            "runs": [{k: v for k, v in r.items() if k != "channels"} for r in runs], "display": display(profiles)}


def markdown(agg: dict) -> str:
    """The aggregate as markdown: per profile the list makers with intervals, the ratios, the targets; then the runs."""
    pv = agg["provenance"]
    lines = [f"# Closed-loop headline: {', '.join(agg['settings']['profile'])}, seeds {', '.join(map(str, agg['settings']['seed']))}", "",
             f"Commit {pv['commit']}{' (with uncommitted changes)' if pv['dirty'] else ''}; `{pv['command']}`; "
             f"customers {agg['settings']['customers']}, loop days {agg['settings']['days']}, history {agg['settings']['history_days']}, "
             f"retraining every {agg['settings']['train_every']} days (0: never), lost customer months {agg['settings']['lost_customer_months']}"
             + (f"; {pv['seconds']:,.0f} s" if pv.get("seconds") else "") + ".", ""]
    for name, p in agg["profiles"].items():
        lines += [f"## {name} ({p['n']} seed{'' if p['n'] == 1 else 's'}: {', '.join(map(str, p['seeds']))})", ""]
        rows = [[LABELS[m], _m(p["figures_per_1000"][m]["incremental_conversions"], ".2f"), _m(p["figures_per_1000"][m]["gross_value"]),
                 _m(p["figures_per_1000"][m]["closures"], ".2f"), _m(p["figures_per_1000"][m]["net_incremental_value"])] for m in MAKERS]
        lines += [tabulate(rows, ["per 1,000 contacts", "incremental conversions", "gross value", "closures caused", "net incremental value"],
                           tablefmt="pipe", disable_numparse=True), ""]
        t = [[k, _target_measured(v), "yes" if v["met"] else "no", _fmt(v.get("shortfall"))] for k, v in p["targets"].items()]
        lines += [tabulate(t, ["target", "measured", "met", "shortfall"], tablefmt="pipe", disable_numparse=True), ""]
        lines += [f"- {k}: " + "; ".join(v["why"]) for k, v in p["targets"].items() if v.get("why")] + [""]
    rows = [[r["profile"], r["seed"], "uplift" if r["uplift_rank"] else "propensity", r["days"], len(r["uplift"]["models"]),
             _fmt(_value(r, "cpc", "incremental_conversions")), _fmt(_value(r, "blast", "incremental_conversions")),
             _fmt(_value(r, "cpc", "net_incremental_value")), _fmt(_value(r, "oracle_by_value", "net_incremental_value")), r["root"]]
            for r in agg["runs"]]
    lines += ["## Runs (per 1,000 contacts)", "", tabulate(rows, ["profile", "seed", "ranking", "loop days", "uplift models",
                                                                 "CPC conv.", "blast conv.", "CPC net value", "oracle net value", "root"],
                                                          tablefmt="pipe", disable_numparse=True)]
    return "\n".join(lines) + "\n"


def _fmt(v, spec: str = ",.2f") -> str:
    return "-" if v is None else format(v, spec)


def _target_measured(t: dict) -> str:
    if t.get("measurable") is False:
        return "not measurable"
    if t["measured"] is None:
        return f"CPC low {_fmt(t.get('cpc_low'))} vs blast high {_fmt(t.get('blast_high'))} per 1,000"
    low, high = (t.get("interval") or [None, None])[:2]
    return _fmt(t["measured"], ",.3f") + ("" if low is None else f" ({low:,.3f} to {high:,.3f}, n {t['n']})")


def write(agg: dict, out: Path, report_root: Path | None = None) -> Path:
    """``out/headline.json`` and ``headline.md``; a copy of the JSON in ``report_root/reports/loop/`` for the report."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(agg, indent=2, default=str)
    (out / "headline.json").write_text(text)
    (out / "headline.md").write_text(markdown(agg))
    if report_root is not None:
        (report_root / HEADLINE).parent.mkdir(parents=True, exist_ok=True)
        (report_root / HEADLINE).write_text(text)
    return out / "headline.json"


# --- running the loops ------------------------------------------------------------------------------------------

@contextlib.contextmanager
def ranking(uplift: bool) -> Iterator[None]:
    """Within the block, the decision ranks by propensity when ``uplift`` is false (``CPC_UPLIFT_RANK=false``);
    otherwise conf/models.yaml decides, as in ``make loop``."""
    from models.uplift import RANK_ENV

    before = os.environ.get(RANK_ENV)
    if not uplift:
        os.environ[RANK_ENV] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RANK_ENV, None)
        else:
            os.environ[RANK_ENV] = before


def run_root(base: Path, profile: str, seed: int, uplift: bool) -> Path:
    return base / f"{profile}-seed{seed}{'' if uplift else '-propensity'}"


def run_loops(seeds: list[int], profiles: list[str], customers: int, days: int, history_days: int, base: Path,
              cfg: Settings, train_every: int = 0, propensity_arm: bool = False) -> list[Path]:
    """Every (profile, seed) loop in sequence, each in its own root under ``base`` (emptied first), and with
    ``propensity_arm`` the same seed again ranked by propensity. Returns the roots."""
    from simulator import loop

    roots = []
    for profile in profiles:
        for seed in seeds:
            for uplift in (True, False) if propensity_arm else (True,):
                root = run_root(base, profile, seed, uplift)
                t0 = time.time()
                log.info(f"loops: {profile} seed {seed}, {'uplift' if uplift else 'propensity'} ranking -> {root}")
                with ranking(uplift):
                    loop.run(customers, history_days, days, root, seed, cfg=cfg, profile=profile, train_every=train_every)
                log.info(f"loops: {root} done in {time.time() - t0:.0f}s")
                roots.append(root)
    return roots
