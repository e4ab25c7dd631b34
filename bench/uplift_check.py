"""The uplift learners on the synthetic case with a known effect: the figures of docs/models.md, "Uplift models".

Pure Python, no Spark, one LightGBM thread; the synthetic customers are those of ``tests/test_uplift.py``
(``synthetic``: four latent types whose shares depend on five features, the true effect known). Two tables:

1. the test's own case (20,000 customers, seed 7, 70/30 train / held-out split), at 50% and 90% treated: Qini
   coefficient, AUUC (and the random line's), the top 20%'s share of the incremental conversions, the Spearman
   correlation with the true tau(x), for the X-learner, the T-learner, a model of the outcome's propensity that
   ignores the contact, a random ranking and the true tau itself (the best any model can rank);
2. five seeds at 20%, 50% and 90% treated and two conversion levels (0.6 and 0.15 for a type that converts):
   the learners' and the propensity ranking's mean Spearman (and the lowest) and mean Qini coefficient.

    .venv/bin/python bench/uplift_check.py            # both tables, about half a minute on one core
    .venv/bin/python bench/uplift_check.py --seeds 0  # the first table only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import uplift as u  # noqa: E402
from tests.test_uplift import case, settings, synthetic  # noqa: E402

RANKINGS = ("x_learner", "two_model", "propensity", "random")


def case_table() -> list[str]:
    rows = ["| treated share | ranking | Qini coefficient | AUUC (random line) | top 20% share | Spearman with true tau |",
            "|---|---|---:|---:|---:|---:|"]
    for share in (0.5, 0.9):
        c = case(share)
        d = c["data"]
        ho = d["held_out"]
        reports = {**c["reports"], "true tau": u.report(d["y"][ho], d["t"][ho], d["tau"][ho])}
        rho = {**c["spearman"], "true tau": 1.0}
        for name in (*RANKINGS, "true tau"):
            r = reports[name]
            rows.append(f"| {share} | {name} | {r['qini_coefficient']:.3f} | {r['auuc']:.4f} ({r['auuc_random']:.4f}) "
                        f"| {r['top20_share']:.2f} | {rho[name]:.3f} |")
    return rows


def one_seed(share: float, seed: int, convert: float) -> dict[str, tuple[float, float]]:
    """Spearman with the true tau and Qini coefficient on the held-out rows, per ranking."""
    s = settings()
    d = synthetic(20_000, share, seed, convert)
    tr, ho = ~d["held_out"], d["held_out"]
    scores = {learner: u.fit(d["x"][tr], d["t"][tr], d["y"][tr], s, learner=learner, propensity=share).predict(d["x"][ho])
              for learner in ("x_learner", "two_model")}
    scores["propensity"] = u.boost(d["x"][tr], d["y"][tr], "binary", s).predict(d["x"][ho], num_threads=1)
    return {k: (float(spearmanr(v, d["tau"][ho])[0]), u.qini_coefficient(d["y"][ho], d["t"][ho], v))
            for k, v in scores.items()}


def seeds_table(seeds: int) -> list[str]:
    rows = ["| convert | treated share | X-learner Spearman (lowest) | T-learner Spearman (lowest) | propensity Spearman "
            "| X Qini | T Qini | propensity Qini |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for convert in (0.6, 0.15):
        for share in (0.2, 0.5, 0.9):
            runs = [one_seed(share, 100 + k, convert) for k in range(seeds)]

            def mean(name: str, i: int, runs=runs) -> float:
                return float(np.mean([r[name][i] for r in runs]))

            def low(name: str, runs=runs) -> float:
                return float(np.min([r[name][0] for r in runs]))

            rows.append(f"| {convert} | {share} | {mean('x_learner', 0):.3f} ({low('x_learner'):.3f}) "
                        f"| {mean('two_model', 0):.3f} ({low('two_model'):.3f}) | {mean('propensity', 0):.3f} "
                        f"| {mean('x_learner', 1):.3f} | {mean('two_model', 1):.3f} | {mean('propensity', 1):.3f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the second table (0: leave it out)")
    args = ap.parse_args(argv)
    print("\n".join(case_table()))
    if args.seeds:
        print()
        print("\n".join(seeds_table(args.seeds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
