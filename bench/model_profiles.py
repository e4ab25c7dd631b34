"""The propensity models' quality on each simulated operator profile (issue 22: "report the models' quality
under each profile"), measured in one run with the same size, seed and dates.

    .venv/bin/python bench/model_profiles.py                       # easy, realistic, hard; 20,000 customers
    .venv/bin/python bench/model_profiles.py --profiles realistic --customers 5000

For each profile, in its own storage root under ``--root`` (emptied first): the simulator writes ``--days`` days
of files ending ``--end-date`` (``python -m simulator simulate``'s function), the history is loaded
(``cpc history``'s function: ingest and conform of every day), and the models are trained as of ``--end-date``
(the weekly ``train`` stage's propensity training: snapshots, purged time split and validation as in
conf/models.yaml). Everything runs in one process and one Spark session, one profile after the other.

Each model's figures come from its own held-out validation rows (the registry's ``validation.parquet``): ROC-AUC
with a bootstrap interval over those rows, PR-AUC, base rate, the top tenth's lift and the share of the
positives it holds (ties at the cut shared out), and the three strongest features: what an operator's data
scientist would see. Beside them, the oracle's ROC-AUC on the same rows (``bench/model_check.py``: the simulator's
true probability of the event, from the root's hidden truth; the pipeline never reads it, this benchmark does).
``--measure-only`` measures the roots of an earlier run again without Spark. Writes ``--out`` (default
``bench/results/model_profiles.json``) after each profile, with the commit, and a markdown table beside it (``.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("bench.model_profiles")
RESULT = Path(__file__).resolve().parent / "results" / "model_profiles.json"
BOOTSTRAP = 200  # resamples of the validation rows for each ROC-AUC interval
LEVEL = 0.95


# ---------------------------------------------------------------------------------------------------------
# Figures of one model's validation rows (pure)
# ---------------------------------------------------------------------------------------------------------
def auc_interval(y: np.ndarray, p: np.ndarray, resamples: int = BOOTSTRAP, seed: int = 0,
                 level: float = LEVEL) -> tuple[float, float]:
    """A percentile bootstrap interval of the ROC-AUC over the rows (resampled with replacement, seeded);
    resamples without a positive or without a negative are skipped. (nan, nan) when none is usable."""
    from models.propensity import roc_auc

    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            values.append(roc_auc(y[i], p[i]))
    if not values:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def top_decile(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(lift, share of all positives) of the tenth of the rows with the highest scores. Rows tied with the score
    at the cut count in proportion to the places left for them (the expectation over random tie-breaks), so a
    model with few distinct scores gets neither more nor less than a tenth of the rows. (nan, nan) without a
    positive."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    if len(y) == 0 or y.sum() == 0:
        return float("nan"), float("nan")
    k = len(y) / 10
    cut = np.sort(p)[::-1][max(0, int(np.ceil(k)) - 1)]
    above, tied = p > cut, p == cut
    left = k - above.sum()
    hits = y[above].sum() + y[tied].sum() * left / tied.sum()
    share = float(hits / y.sum())
    return share * y.sum() / k / y.mean(), share


def model_figures(meta: dict, validation, seed: int = 0) -> dict:
    """One registered model's row: its validation figures (``validation``: a frame with ``label`` and
    ``probability``) and what its registry metadata says (metrics, trees, strongest features)."""
    from models.propensity import pr_auc, roc_auc

    y, p = validation["label"].to_numpy(), validation["probability"].to_numpy()
    low, high = auc_interval(y, p, seed=seed)
    lift, share = top_decile(y, p)
    return {"rows": int(len(y)), "positives": int(y.sum()), "base_rate": float(y.mean()) if len(y) else float("nan"),
            "roc_auc": roc_auc(y, p), "roc_auc_low": low, "roc_auc_high": high, "pr_auc": pr_auc(y, p),
            "top_decile_lift": lift, "top_decile_share": share,
            "trees": int(meta["best_iteration"]),
            "top_features": [f["feature"] for f in meta.get("top_features_by_gain", [])[:3]],
            "validation_snapshot": meta["training_window"]["validation"][0]}


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    """The result as a markdown page: per model, each profile's ROC-AUC with its interval, base rate, top-decile
    lift and share; then the strongest features and each profile's timings."""
    from tabulate import tabulate

    s = result["settings"]
    profiles = [p for p in s["profiles"] if p in result["profiles"]]
    lines = ["# Propensity models on each simulated operator profile", "",
             f"Commit {result['provenance']['commit']}{' (uncommitted changes)' if result['provenance']['dirty'] else ''}; "
             f"`{result['command']}`; {s['customers']:,} customers, {s['days']} days of files ending {s['end_date']}, "
             f"seed {s['seed']}, trained as of {s['end_date']}; ROC-AUC intervals: {int(LEVEL * 100)}% bootstrap over "
             f"the validation rows ({BOOTSTRAP} resamples). Written by `bench/model_profiles.py`.", ""]
    again = result.get("measured_again")
    if again:
        lines += [f"Simulated and trained by `{(again.get('command') or '').strip()}` at {(again.get('from') or {}).get('commit')}; "
                  "the figures above measured again from its roots (`--measure-only`).", ""]
    models = sorted({m for p in profiles for m in result["profiles"][p].get("models", {})})
    rows = []
    for m in models:
        for p in profiles:
            f = result["profiles"][p].get("models", {}).get(m)
            if f is None:
                rows.append([m, p, *["-"] * 6])
                continue
            oracle = f.get("oracle_roc_auc")
            rows.append([m, p, f"{f['roc_auc']:.3f} ({f['roc_auc_low']:.3f} to {f['roc_auc_high']:.3f})",
                         "-" if oracle is None else f"{oracle:.3f}", "-" if oracle is None else f"{oracle - f['roc_auc']:+.3f}",
                         f"{f['positives']:,} ({f['base_rate']:.2%})", f"{f['top_decile_lift']:.2f}", f"{f['top_decile_share']:.0%}"])
    headers = ["model", "profile", "ROC-AUC (95% interval)", "oracle ROC-AUC", "gap", "positives (base rate)",
               "top-tenth lift", "top-tenth share of positives"]
    lines += [tabulate(rows, headers, tablefmt="pipe", disable_numparse=True), ""]
    feats = [[m] + [", ".join(result["profiles"][p].get("models", {}).get(m, {}).get("top_features", [])) or "-" for p in profiles]
             for m in models]
    lines += ["## Strongest features (gain)", "", tabulate(feats, ["model", *profiles], tablefmt="pipe"), ""]
    runs = [[p, *(f"{result['profiles'][p].get('seconds', {}).get(k, float('nan')):.0f}" for k in ("simulate", "history", "train")),
             result["profiles"][p].get("error") or "-"] for p in profiles]
    lines += ["## Runs (seconds)", "", tabulate(runs, ["profile", "simulate", "history", "train", "error"], tablefmt="pipe"), ""]
    return "\n".join(lines)


def write(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(result))


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------
def measure(root: Path, as_of: dt.date, seed: int) -> dict:
    """The figures of every model trained as of ``as_of`` in ``root`` (none trained: left out), each beside the
    oracle's ROC-AUC on the same validation rows (``bench/model_check.py``: the simulator's true probability of the
    event, read from the root's hidden truth, which only this benchmark reads)."""
    from bench import model_check
    from jobs.platform.config import Paths
    from models import propensity as pm

    out = {}
    for model, reg, valid, truth_p in model_check.scored_validation(Paths(root), as_of):
        if reg is None:
            continue
        f = model_figures(reg.meta, valid, seed=seed)
        f["oracle_roc_auc"] = pm.roc_auc(valid["label"].to_numpy(), truth_p)
        f["gap"] = f["oracle_roc_auc"] - f["roc_auc"]
        out[model] = f
    return out


def run_profile(cfg, name: str, customers: int, days: int, end: dt.date, seed: int, root: Path) -> dict:
    """Simulate, load and train one profile in ``root`` (emptied first); its figures and timings."""
    from jobs.orchestration import pipeline
    from jobs.platform.config import Paths
    from jobs.platform.spark import get_spark
    from jobs.stages import propensity
    from simulator.generate import SimSpec, generate

    shutil.rmtree(root, ignore_errors=True)
    cfg = dataclasses.replace(cfg, paths=Paths(root))
    out: dict = {"root": str(root), "seconds": {}}
    t = time.time()
    generate(cfg.paths, SimSpec(customers, days, end, seed, name), progress=False)
    out["seconds"]["simulate"] = round(time.time() - t, 1)
    log.info(f"model profiles: {name}: simulated {customers:,} customers x {days} days in {out['seconds']['simulate']:.0f}s")
    t = time.time()
    pipeline.history(end + dt.timedelta(days=1), cfg)
    out["seconds"]["history"] = round(time.time() - t, 1)
    t = time.time()
    propensity.train(get_spark(cfg), cfg.paths, end)
    out["seconds"]["train"] = round(time.time() - t, 1)
    out["models"] = measure(root, end, seed)
    log.info(f"model profiles: {name}: " + ", ".join(f"{m} {f['roc_auc']:.3f}" for m, f in out["models"].items()))
    return out


def main(argv: list[str] | None = None) -> int:
    from jobs.platform.config import PROJECT_DIR, settings
    from jobs.platform.logs import setup
    from jobs.platform.provenance import git_state
    from simulator.profiles import PROFILES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--days", type=int, default=105, help="days of files; training as of the last needs 104 (conf/models.yaml)")
    ap.add_argument("--end-date", type=dt.date.fromisoformat, default=dt.date(2026, 11, 20))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--root", type=Path, default=PROJECT_DIR / "var" / "bench" / "model_profiles",
                    help="one storage root per profile under it (emptied first)")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--measure-only", action="store_true",
                    help="no simulation or training: measure the models already trained in each root again (no Spark); "
                         "the timings are kept from --out")
    args = ap.parse_args(argv)
    setup()
    cfg = settings()
    result = {"provenance": git_state(), "command": "python bench/model_profiles.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "settings": {"profiles": args.profiles, "customers": args.customers, "days": args.days,
                           "end_date": args.end_date.isoformat(), "seed": args.seed, "env": cfg.env},
              "profiles": {}}
    if args.measure_only:
        before = json.loads(args.out.read_text()) if args.out.exists() else {}
        for name in args.profiles:
            kept = before.get("profiles", {}).get(name, {})
            result["profiles"][name] = {**kept, "root": str(args.root / name),
                                        "models": measure(args.root / name, args.end_date, args.seed)}
        result["measured_again"] = {"from": before.get("provenance"), "command": before.get("command")}
        write(result, args.out)
        print(markdown(result))
        return 0
    t0 = time.time()
    for name in args.profiles:
        try:
            result["profiles"][name] = run_profile(cfg, name, args.customers, args.days, args.end_date, args.seed, args.root / name)
        except Exception as e:  # noqa: BLE001 -- one profile's failure (e.g. no positives on `hard`) is a finding, not the end
            result["profiles"][name] = {"error": f"{type(e).__name__}: {e}"}
        result["seconds"] = round(time.time() - t0, 1)
        write(result, args.out)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
