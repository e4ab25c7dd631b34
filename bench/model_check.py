"""Each propensity model against an oracle that knows the simulator's hidden truth.

The pipeline never reads ``truth/``; this report does. For every registered model trained as of ``--as-of``
it takes the model's held-out validation rows (customers at the validation snapshot T with their label from
(T, T + horizon]) and scores the same rows with the *true* probability of the event that the simulator used:

- churn: a churner whose traffic has started fading by T closes on a known day (1 if that day is in the
  window, else 0); anyone else closes in the window with their hidden churn probability times the chance
  that a churn starting after T closes inside the window;
- handset: 1 - (1 - daily change probability)^horizon, the daily probability from handset intent and the
  frequent-changer trait;
- take-up: 1 - prod over the family's products not held at T of (1 - affinity x 0.004)^horizon.

    .venv/bin/python bench/model_check.py --as-of 2026-11-19

Prints a markdown table (model AUC, oracle AUC, gap) and writes ``reports/models/oracle_<as-of>.json``.
No Spark: the held products at T are read from the Delta tag table with ``deltalake``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REACH = 0.05  # the target: model ROC-AUC within this of the oracle's


def _held(paths, snapshot: dt.date, ids) -> dict[str, set[str]]:
    from deltalake import DeltaTable

    table = DeltaTable(paths.table("gold.customer_tags"))
    data = table.to_pyarrow_table(filters=[("snapshot_date", "=", snapshot)],
                                  columns=["customer_id", "mkt_held_product_ids"]).to_pandas()
    data = data[data["customer_id"].isin(set(ids))]
    return {c: set((h or "").split(",")) - {""} for c, h in zip(data["customer_id"], data["mkt_held_product_ids"], strict=True)}


def oracle(model_meta: dict, rows, truth, sim: dict, products: list[dict], paths) -> np.ndarray:
    """The true event probability of each validation row (same order as ``rows``)."""
    horizon = int(model_meta["horizon_days"])
    start = dt.date.fromisoformat(sim["start_date"])
    days = int(sim["days"])
    t = truth.set_index("customer_id").loc[rows["customer_id"]]
    snap = dt.date.fromisoformat(model_meta["training_window"]["validation"][0])
    ti = (snap - start).days
    kind = model_meta["target"]["kind"]
    if kind == "closure":
        fading = t["churner"].to_numpy() & (t["churn_start"].to_numpy() <= ti)
        known = ((t["churn_close"].to_numpy() > ti) & (t["churn_close"].to_numpy() <= ti + horizon)).astype(float)
        # A churn not started by T: start uniform over the simulator's range, close 12..25 days after.
        span = days + 10
        inside = np.mean([max(0, min(ti + horizon - d, days - 1) - ti) for d in range(12, 26)]) / span
        later = t["churn_probability"].to_numpy() * (t["tenure"].to_numpy() > 100) * inside
        return np.where(fading, known, later)
    if kind == "device_change":
        daily = 0.0004 + 0.004 * t["handset_intent"].to_numpy() + 0.006 * t["freq_changer"].to_numpy()
        return 1 - (1 - daily) ** horizon
    cats = set(model_meta["target"]["categories"])
    fam = [p for p in products if p["category"] in cats and not p["id"].startswith("C_")]
    held = _held(paths, snap, rows["customer_id"])
    none = np.ones(len(rows))
    for p in fam:
        aff = t[f"affinity_{p['category']}"].to_numpy() if f"affinity_{p['category']}" in t else np.full(len(rows), 0.05)
        has = np.array([p["id"] in held.get(c, set()) for c in rows["customer_id"]])
        none *= np.where(has, 1.0, (1 - aff * 0.004) ** horizon)
    return 1 - none


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from jobs.platform.config import business, settings
    from jobs.stages.propensity import registry
    from models import propensity as pm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--as-of", required=True, type=dt.date.fromisoformat)
    args = ap.parse_args(argv)
    paths = settings().paths
    truth = pd.read_parquet(paths.truth / "customers.parquet")
    sim = json.loads((paths.truth / "simulation.json").read_text())
    if sim.get("profile", "easy") != "easy":  # a truth folder without a profile was written by the easy operator
        raise SystemExit(
            f"{paths.truth}: simulated with the {sim['profile']!r} profile; this oracle's probabilities are those of "
            "the 'easy' operator (docs/simulator.md) and would mislead here. Simulate with `--profile easy` to use it; "
            "an oracle for the other profiles is issue 22's work.")
    products = business("products")["products"]
    rows_out = []
    print("| model | validation rows | positives | model ROC-AUC | oracle ROC-AUC | gap | within 0.05 | model PR-AUC | oracle PR-AUC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for spec in pm.load_settings().models:
        reg = pm.current(registry(paths), spec.id, args.as_of)
        if reg is None:
            print(f"| {spec.id} | no model trained as of {args.as_of} | | | | | | | |")
            continue
        valid = pd.read_parquet(reg.path / "validation.parquet")
        o = oracle(reg.meta, valid, truth, sim, products, paths)
        y = valid["label"].to_numpy()
        m_auc, o_auc = pm.roc_auc(y, valid["probability"].to_numpy()), pm.roc_auc(y, o)
        row = {"model": spec.id, "version": reg.version, "rows": len(valid), "positives": int(y.sum()),
               "model_roc_auc": m_auc, "oracle_roc_auc": o_auc, "gap": o_auc - m_auc, "within": bool(o_auc - m_auc <= REACH),
               "model_pr_auc": pm.pr_auc(y, valid["probability"].to_numpy()), "oracle_pr_auc": pm.pr_auc(y, o)}
        rows_out.append(row)
        print(f"| {spec.id} | {row['rows']} | {row['positives']} | {m_auc:.3f} | {o_auc:.3f} | {row['gap']:+.3f} | "
              f"{'yes' if row['within'] else 'no'} | {row['model_pr_auc']:.3f} | {row['oracle_pr_auc']:.3f} |")
    out = paths.reports / "models" / f"oracle_{args.as_of.isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows_out, indent=2))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
