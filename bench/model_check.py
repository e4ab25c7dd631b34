"""Each propensity model against an oracle that knows the simulator's hidden truth.

The pipeline never reads ``truth/``; this report does. For every registered model trained as of ``--as-of`` in
the storage root ``--root`` it takes the model's held-out validation rows (customers at the validation snapshot T
with their label from (T, T + horizon]) and scores the same rows with the *true* probability of the event under
the simulator's process, given the simulator's hidden state at T (``truth/customers.parquet``; the profile, seed
and dates from ``truth/simulation.json``; a truth without a profile was written by the ``easy`` operator).

``easy`` (the formulas of the oracle before issue 22, unchanged):

- churn: a churner whose intent has started by T closes on a known day (1 if that day is in the window, else
  0); anyone else closes in the window with their hidden churn probability times the chance that a churn
  starting after T closes inside the window;
- handset: 1 - (1 - daily change probability)^horizon, the daily probability from handset intent and the
  frequent-changer trait;
- take-up: 1 - prod over the family's products not held at T of (1 - affinity x 0.004)^horizon.

``realistic`` and ``hard`` (one set of formulas, the parameters of ``simulator/profiles.py``;
:func:`true_probability`): the oracle enumerates how the customer's churn can unfold in the window (a churner
whose intent has started by T: their known intent start and closure day; anyone else: every intent start in
the window and closure day the simulator can draw, random or at the contract's end, weighted by the
probability of the draws given that no intent had started by T) and, under each, computes the event's
probability day by day as the simulator draws it:

- churn: the probability that the line closes in (T, T + horizon];
- handset: 1 - (1 - daily change probability)^(days the line is open in the window);
- take-up: 1 - the probability that no product of the family is ordered or trialled: a product not held at T
  is ordered on a day the line is open with affinity x ``organic_daily_rate`` x the day's activity (only by a
  sure thing of the product's family); a product held at T can be cancelled and then ordered again.

One approximation: a product held at T as a trial that expires in the window and is then ordered again is not
counted (which held products are trials is in neither the truth nor the tags). Not modelled, in any profile: what
the closed loop's contacts do (orders they lead to, closures they provoke: ``truth/contact_churn.parquet``), which
is not part of the simulator's own files; on a root the loop has run on, labels include them.

    .venv/bin/python bench/model_check.py --as-of 2026-11-19
    .venv/bin/python bench/model_check.py --as-of 2026-11-20 --root var/bench/model_profiles/realistic

Prints a markdown table (model AUC, oracle AUC, gap) and writes ``reports/models/oracle_<as-of>.json`` under the
root (or ``--out``). No Spark: the held products at T are read from the Delta tag table with ``deltalake``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REACH = 0.05  # the target: model ROC-AUC within this of the oracle's
# The simulator's daily probabilities that are not profile parameters (simulator/generate.py, Operator):
HANDSET_DAILY = (0.0004, 0.004, 0.006)  # _devices: base + x handset intent + x frequent changer
CANCEL_DAILY = (0.002, 0.02)  # _orders: a held product's cancellation, base + x price sensitivity^2
DEFAULT_AFFINITY = 0.05  # _orders: the affinity of a category without one


def _held(paths, snapshot: dt.date, ids) -> dict[str, set[str]]:
    from deltalake import DeltaTable

    table = DeltaTable(paths.table("gold.customer_tags"))
    data = table.to_pyarrow_table(filters=[("snapshot_date", "=", snapshot)],
                                  columns=["customer_id", "mkt_held_product_ids"]).to_pandas()
    data = data[data["customer_id"].isin(set(ids))]
    return {c: set((h or "").split(",")) - {""} for c, h in zip(data["customer_id"], data["mkt_held_product_ids"], strict=True)}


def contract_end_day(sim: dict, truth) -> np.ndarray:
    """Each truth row's contract end as a day index (no contract: a very large number), in the truth's row order.

    ``truth/customers.parquet`` does not hold it: it is redrawn from the seed in ``simulation.json`` with the
    simulator's own code (``simulator.generate.contract_end_days``, as ``simulator.responder.World`` redraws the
    whole world), and checked against the truth's ``has_contract``.
    """
    from simulator.generate import SimSpec, contract_end_days

    spec = SimSpec(int(sim["customers"]), int(sim["days"]), dt.date.fromisoformat(sim["end_date"]), int(sim["seed"]),
                   str(sim.get("profile", "easy")))
    ced = contract_end_days(spec)
    has = ced < np.iinfo(np.int64).max // 4
    if len(ced) != len(truth) or not np.array_equal(has, truth["has_contract"].to_numpy(dtype=bool)):
        raise SystemExit("truth/customers.parquet does not match the customers the simulator draws from its "
                         "simulation.json (seed, size, dates): written by another version of the simulator?")
    return ced


# ---------------------------------------------------------------------------------------------------------
# The realistic and hard profiles
# ---------------------------------------------------------------------------------------------------------
Group = tuple[np.ndarray | float, list[tuple[np.ndarray, np.ndarray | int]]]


def churn_paths(t, ti: int, horizon: int, days: int, prof, ced: np.ndarray) -> Iterator[Group]:
    """How each row's churn can unfold in the window (T, T + horizon], T being day index ``ti``.

    Yields groups ``(intent start, [(weight, closure day), ...])`` (per row arrays, or one number for all rows),
    each weight the probability of that intent start and closure day given the hidden state at T; what the
    weights leave of 1 is "no intent starts in the window". The simulator (``simulator/generate.py``,
    ``_hidden_traits`` and ``_churn_paths_and_response_types``) draws a churner with probability
    ``churn_probability`` (already scaled to ``annual_churn_rate`` and raised by ``contract_end_hazard_multiplier``)
    among customers with tenure over 100 days; a churner whose contract ends before day ``days + 25`` leaves at
    its end with ``contract_end_path_share``: closure ``contract_end_grace_days`` after the end, intent start
    ``churn_lead_days`` before the closure; any other churner's intent starts uniformly on days -10 .. days - 1
    and the line closes ``churn_lead_days`` later. Porting or leaving silently changes the traces, not the days.

    - A churner whose intent started by T: their own intent start and closure day (weight 1).
    - Anyone else: by Bayes, churner given no intent started by T with probability p / (1 - p B), B the
      probability that a churner's intent starts by T; then every start in the window on each path.
    """
    n = len(t)
    churner = t["churner"].to_numpy(dtype=bool)
    start, close = t["churn_start"].to_numpy(), t["churn_close"].to_numpy()
    p = t["churn_probability"].to_numpy(dtype=float) * (t["tenure"].to_numpy() > 100)
    fading = churner & (start <= ti)
    lo, hi = prof.churn_lead_days
    g_lo, g_hi = prof.contract_end_grace_days or (0, 0)
    n_lead, n_grace = hi - lo + 1, g_hi - g_lo + 1
    share = prof.contract_end_path_share * (ced < days + 25)
    span = days + 10  # the random path's intent starts: days -10 .. days - 1
    b_random = min(max(ti + 11, 0), span) / span
    b_contract = np.zeros(n)
    for g in range(g_lo, g_hi + 1):
        for lead in range(lo, hi + 1):
            b_contract += (ced + g - lead <= ti) / (n_grace * n_lead)
    b = (1 - share) * b_random + share * b_contract
    post = np.where(fading, 0.0, p / (1 - p * b))
    yield start, [(fading.astype(float), close)]
    w_random = post * (1 - share) / (span * n_lead)
    for s in range(ti + 1, min(ti + horizon, days - 1) + 1):
        yield float(s), [(w_random, s + lead) for lead in range(lo, hi + 1)]
    if share.any():
        w_contract = post * share / (n_grace * n_lead)
        for delta in range(g_lo - hi, g_hi - lo + 1):  # intent start - contract end = grace - lead
            s = ced + delta
            w = w_contract * ((s > ti) & (s <= ti + horizon))
            yield s, [(w, ced + g) for g in range(g_lo, g_hi + 1) if lo <= g - delta <= hi]


def _no_event(groups: Iterator[Group], n: int, ti: int, horizon: int,
              trajectory: Callable[[np.ndarray | float], np.ndarray]) -> np.ndarray:
    """P(no event in the window): the mixture over ``groups`` of ``trajectory(start)[:, j]`` (P(no event in the
    window's first j days), the line open), j the days the line is open in the window."""
    out, total = np.zeros(n), np.zeros(n)
    for start, members in groups:
        if not any(np.any(w) for w, _close in members):
            continue  # no row can take this path
        traj = trajectory(start)
        for w, close in members:
            j = np.broadcast_to(np.clip(np.minimum(np.asarray(close) - 1, ti + horizon) - ti, 0, horizon), (n,))
            out += w * traj[np.arange(n), j]
            total += w
    return out + (1 - total) * trajectory(np.inf)[:, horizon]


def true_probability(kind: str, t, ti: int, horizon: int, days: int, prof, ced: np.ndarray,
                     family: list[dict] | None = None, held: np.ndarray | None = None) -> np.ndarray:
    """The event's probability in (T, T + horizon] for each truth row ``t`` (customers alive at T, day index
    ``ti``) under the profile ``prof`` (realistic, hard): ``kind`` closure, device_change or order (``family``:
    the products of the target's categories; ``held``: rows x family, held at T).

    Exact for the simulator's process given the hidden state at T, with one approximation: a product held at T
    as a trial that expires (not converts) in the window and is then ordered again is not counted (which held
    products are trials is in neither the truth nor the tags); only its cancellation and reorder are.
    """
    n = len(t)
    if kind == "closure":
        out = np.zeros(n)
        for _start, members in churn_paths(t, ti, horizon, days, prof, ced):
            for w, close in members:
                out += w * ((np.asarray(close) > ti) & (np.asarray(close) <= ti + horizon))
        return out
    if kind == "device_change":
        daily = HANDSET_DAILY[0] + HANDSET_DAILY[1] * t["handset_intent"].to_numpy() + HANDSET_DAILY[2] * t["freq_changer"].to_numpy()
        powers = (1 - daily)[:, None] ** np.arange(horizon + 1)[None, :]
        return 1 - _no_event(churn_paths(t, ti, horizon, days, prof, ced), n, ti, horizon, lambda _s: powers)
    if kind != "order":
        raise ValueError(f"unknown target kind {kind!r}")
    rate = np.zeros((n, len(family)))
    for k, p in enumerate(family):
        cat = p["category"]
        aff = t[f"affinity_{cat}"].to_numpy(dtype=float) if f"affinity_{cat}" in t else np.full(n, DEFAULT_AFFINITY)
        buys = (t[f"response_{cat}"].to_numpy() == "sure_thing") if prof.organic_buyers == "sure_things" else np.ones(n, bool)
        rate[:, k] = aff * prof.organic_daily_rate * buys
    out = np.zeros(n)
    m = (rate > 0).any(axis=1)  # the others never order unprompted
    if not m.any():
        return out
    sub, q, h0, ced_m = t[m], rate[m], held[m].astype(float), ced[m]
    cancel = (CANCEL_DAILY[0] + CANCEL_DAILY[1] * sub["price_sensitivity"].to_numpy(dtype=float) ** 2)[:, None]
    floor = sub["decline_floor"].to_numpy(dtype=float)
    ramp = 1.0 / prof.decline_per_day

    def trajectory(start):
        """Day by day, per product: ``free`` = P(not held, not ordered yet), ``held_`` = P(held since T, not
        cancelled); an order ends it. Column j: P(no order in the window's first j days)."""
        held_, free = h0.copy(), 1 - h0
        traj = np.ones((len(sub), horizon + 1))
        for j in range(1, horizon + 1):
            i = ti + j
            act = np.where(i >= start, np.maximum(1 - (i - start) / ramp, floor), 1.0)  # Operator._activity
            free = free * (1 - q * act[:, None]) + held_ * cancel
            held_ = held_ * (1 - cancel)
            traj[:, j] = (free + held_).prod(axis=1)
        return traj

    out[m] = 1 - _no_event(churn_paths(sub, ti, horizon, days, prof, ced_m), len(sub), ti, horizon, trajectory)
    return out


# ---------------------------------------------------------------------------------------------------------
# The easy profile (the oracle as it was before issue 22)
# ---------------------------------------------------------------------------------------------------------
def _oracle_easy(kind: str, t, ti: int, horizon: int, days: int, family: list[dict],
                 held: np.ndarray | None) -> np.ndarray:
    n = len(t)
    if kind == "closure":
        fading = t["churner"].to_numpy() & (t["churn_start"].to_numpy() <= ti)
        known = ((t["churn_close"].to_numpy() > ti) & (t["churn_close"].to_numpy() <= ti + horizon)).astype(float)
        # A churn not started by T: start uniform over the simulator's range, close 12..25 days after.
        span = days + 10
        inside = np.mean([max(0, min(ti + horizon - d, days - 1) - ti) for d in range(12, 26)]) / span
        later = t["churn_probability"].to_numpy() * (t["tenure"].to_numpy() > 100) * inside
        return np.where(fading, known, later)
    if kind == "device_change":
        daily = HANDSET_DAILY[0] + HANDSET_DAILY[1] * t["handset_intent"].to_numpy() + HANDSET_DAILY[2] * t["freq_changer"].to_numpy()
        return 1 - (1 - daily) ** horizon
    none = np.ones(n)
    for k, p in enumerate(family):
        aff = t[f"affinity_{p['category']}"].to_numpy() if f"affinity_{p['category']}" in t else np.full(n, DEFAULT_AFFINITY)
        none *= np.where(held[:, k], 1.0, (1 - aff * 0.004) ** horizon)
    return 1 - none


def oracle(model_meta: dict, rows, truth, sim: dict, products: list[dict], paths,
           held: dict[str, set[str]] | None = None, ced: np.ndarray | None = None) -> np.ndarray:
    """The true event probability of each validation row (same order as ``rows``), under the profile the truth
    was simulated with. ``held`` (customer -> product ids held at the validation snapshot) defaults to the tag
    table's, ``ced`` (each truth row's contract end day) to :func:`contract_end_day`."""
    from simulator.profiles import check_name, profile

    horizon = int(model_meta["horizon_days"])
    start = dt.date.fromisoformat(sim["start_date"])
    days = int(sim["days"])
    name = check_name(str(sim.get("profile", "easy")))
    index = truth.set_index("customer_id")
    t = index.loc[rows["customer_id"]]
    snap = dt.date.fromisoformat(model_meta["training_window"]["validation"][0])
    ti = (snap - start).days
    kind = model_meta["target"]["kind"]
    family, held_m = [], None
    if kind == "order":
        cats = set(model_meta["target"]["categories"])
        family = [p for p in products if p["category"] in cats and not p["id"].startswith("C_")]
        held = _held(paths, snap, rows["customer_id"]) if held is None else held
        held_m = np.array([[p["id"] in held.get(c, set()) for p in family] for c in rows["customer_id"]],
                          dtype=bool).reshape(len(rows), len(family))
    if name == "easy":
        return _oracle_easy(kind, t, ti, horizon, days, family, held_m)
    ced = contract_end_day(sim, truth) if ced is None else np.asarray(ced)
    ced_rows = ced[index.index.get_indexer(rows["customer_id"])]
    return true_probability(kind, t, ti, horizon, days, profile(name), ced_rows, family, held_m)


def scored_validation(paths, as_of: dt.date) -> Iterator[tuple[str, object, object, np.ndarray | None]]:
    """For each model of conf/models.yaml: (model id, its version current on ``as_of`` or None, its validation rows
    or None, the oracle's probability of each row or None), reading the root's truth once."""
    import pandas as pd

    from jobs.platform.config import business
    from jobs.stages.propensity import registry
    from models import propensity as pm

    truth = pd.read_parquet(paths.truth / "customers.parquet")
    sim = json.loads((paths.truth / "simulation.json").read_text())
    products = business("products")["products"]
    ced = None if sim.get("profile", "easy") == "easy" else contract_end_day(sim, truth)
    for spec in pm.load_settings().models:
        reg = pm.current(registry(paths), spec.id, as_of)
        if reg is None:
            yield spec.id, None, None, None
            continue
        valid = pd.read_parquet(Path(reg.path) / "validation.parquet")
        yield spec.id, reg, valid, oracle(reg.meta, valid, truth, sim, products, paths, ced=ced)


def main(argv: list[str] | None = None) -> int:
    from jobs.platform.config import Paths, settings
    from models import propensity as pm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--as-of", required=True, type=dt.date.fromisoformat)
    ap.add_argument("--root", type=Path, default=None,
                    help="storage root whose truth/, models/ and gold tags to read (default: the configured one, e.g. var)")
    ap.add_argument("--out", type=Path, default=None, help="result file (default: <root>/reports/models/oracle_<as-of>.json)")
    args = ap.parse_args(argv)
    paths = Paths(args.root) if args.root is not None else settings().paths
    sim = json.loads((paths.truth / "simulation.json").read_text())
    print(f"{paths.root}: profile {sim.get('profile', 'easy')}, {sim['customers']} customers, {sim['days']} days "
          f"{sim['start_date']} to {sim['end_date']}\n")
    rows_out = []
    print("| model | validation rows | positives | model ROC-AUC | oracle ROC-AUC | gap | within 0.05 | model PR-AUC | oracle PR-AUC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, reg, valid, o in scored_validation(paths, args.as_of):
        if reg is None:
            print(f"| {model} | no model trained as of {args.as_of} | | | | | | | |")
            continue
        y = valid["label"].to_numpy()
        m_auc, o_auc = pm.roc_auc(y, valid["probability"].to_numpy()), pm.roc_auc(y, o)
        row = {"model": model, "version": reg.version, "rows": len(valid), "positives": int(y.sum()),
               "model_roc_auc": m_auc, "oracle_roc_auc": o_auc, "gap": o_auc - m_auc, "within": bool(o_auc - m_auc <= REACH),
               "model_pr_auc": pm.pr_auc(y, valid["probability"].to_numpy()), "oracle_pr_auc": pm.pr_auc(y, o)}
        rows_out.append(row)
        print(f"| {model} | {row['rows']} | {row['positives']} | {m_auc:.3f} | {o_auc:.3f} | {row['gap']:+.3f} | "
              f"{'yes' if row['within'] else 'no'} | {row['model_pr_auc']:.3f} | {row['oracle_pr_auc']:.3f} |")
    out = args.out if args.out is not None else paths.reports / "models" / f"oracle_{args.as_of.isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows_out, indent=2))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
