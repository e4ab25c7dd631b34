"""Propensity models: LightGBM on the tag snapshot, point in time, with a registry and reason codes.

A model predicts whether an event happens in ``(T, T + horizon]`` from the customer's tag snapshot at ``T``.
Targets are read from the operator's own later files (CRM closures, device changes, orders and trials),
never from the simulator's hidden truth. This module holds the logic that needs no Spark session: the
model specifications (``conf/models.yaml``), the feature contract, training on a pandas frame, metrics,
the registry on disk and the per-batch scoring function that Spark runs on executors (``mapInPandas``).
Spark orchestration (training sets, nightly scoring) is in ``jobs/stages/propensity.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from jobs.platform import business as business_conf
from jobs.platform.config import ConfModel, business, validate
from jobs.platform.errors import ConfigError, ModelMismatch
from models.uplift import UpliftConf, newest_as_of

log = logging.getLogger(__name__)

NUMERIC = {"boolean", "int", "bigint", "double", "float", "smallint", "tinyint"}
KINDS = {"closure", "device_change", "order"}




@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    kind: str
    categories: tuple[str, ...]
    tag: str

    @property
    def label(self) -> str:
        return f"label_{self.id}"


@dataclass(frozen=True)
class Settings:
    horizon_days: int
    snapshots: int
    step_days: int
    validation_snapshots: int
    seed: int
    max_train_rows: int
    reason_codes: int
    params: dict[str, Any]
    num_boost_round: int
    early_stopping_rounds: int
    bands: dict[str, int]
    models: tuple[ModelSpec, ...]

    def snapshot_dates(self, as_of: dt.date) -> list[dt.date]:
        """Snapshot dates for a model trained as of ``as_of``; the newest ``validation_snapshots`` are the
        validation dates. Every label window ends by ``as_of``. The validation snapshots come first: the newest is
        ``as_of - horizon``, then ``step_days`` back. The training snapshots are purged: the newest is one horizon
        before the oldest validation snapshot, so no training label falls after a validation date (overlapping
        windows would let a model remember which customers ordered and look better on validation than it is)."""
        h, step = dt.timedelta(days=self.horizon_days), dt.timedelta(days=self.step_days)
        valid = [as_of - h - step * k for k in range(self.validation_snapshots)]
        train = [min(valid) - h - step * k for k in range(self.snapshots - self.validation_snapshots)]
        return sorted(train + valid)

    def history_days(self, as_of: dt.date, feature_days: int = 30) -> int:
        """Days of deliveries up to ``as_of`` training needs: back to the oldest snapshot, and ``feature_days``
        of history behind it (the 30-day tag windows)."""
        return (as_of - self.snapshot_dates(as_of)[0]).days + feature_days


class TargetConf(ConfModel):
    kind: str | None = None  # closure, device_change or order (checked below, naming the model)
    categories: tuple[str, ...] = ()  # an order target: the product categories ordered or trialled


class ModelConf(ConfModel):
    id: str = ""
    name: str | None = None
    target: TargetConf = Field(default_factory=TargetConf)
    tag: str | None = None


class ModelsFile(ConfModel):
    """``conf/models.yaml``."""

    horizon_days: int = Field(ge=1)
    snapshots: int = Field(ge=1)
    step_days: int = Field(ge=1)
    validation_snapshots: int
    seed: int
    max_train_rows: int = Field(ge=1)
    reason_codes: int = Field(ge=0)
    params: dict[str, Any]  # LightGBM's parameters, passed as they are
    num_boost_round: int = Field(ge=1)
    early_stopping_rounds: int = Field(ge=0)
    bands: dict[str, int]  # risk band -> lowest validation decile in it
    models: list[ModelConf] = Field(default_factory=list)
    uplift: UpliftConf = Field(default_factory=UpliftConf)  # read by models.uplift.load_settings


def load_settings(raw: dict[str, Any] | None = None) -> Settings:
    conf = validate(ModelsFile, raw if raw is not None else business("models"), "conf/models.yaml")
    specs, seen = [], set()
    for m in conf.models:
        mid, kind = m.id, m.target.kind
        if not mid.isidentifier() or mid in seen:
            raise ConfigError(f"conf/models.yaml: model id {mid!r} is empty, not an identifier or repeated")
        if kind not in KINDS:
            raise ConfigError(f"conf/models.yaml: model {mid}: target kind {kind!r} is not one of {sorted(KINDS)}")
        cats = m.target.categories
        if kind == "order" and not cats:
            raise ConfigError(f"conf/models.yaml: model {mid}: an order target needs product categories")
        known = business_conf.products().categories
        if set(cats) - set(known):
            raise ConfigError(f"conf/models.yaml: model {mid}: target.categories: unknown category(ies) "
                              f"{sorted(set(cats) - set(known))} (conf/products.yaml: {', '.join(known)})")
        seen.add(mid)
        specs.append(ModelSpec(mid, m.name if m.name is not None else mid, kind, cats, m.tag if m.tag is not None else f"{mid}_band"))
    s = Settings(
        horizon_days=conf.horizon_days, snapshots=conf.snapshots, step_days=conf.step_days,
        validation_snapshots=conf.validation_snapshots, seed=conf.seed, max_train_rows=conf.max_train_rows,
        reason_codes=conf.reason_codes, params=dict(conf.params), num_boost_round=conf.num_boost_round,
        early_stopping_rounds=conf.early_stopping_rounds, bands=dict(conf.bands), models=tuple(specs),
    )
    if not 0 < s.validation_snapshots < s.snapshots:
        raise ConfigError("conf/models.yaml: validation_snapshots must be at least 1 and fewer than snapshots")
    return s


# ---------------------------------------------------------------------------------------------------------
# Features: every numeric or yes/no tag, in the tag table's order
# ---------------------------------------------------------------------------------------------------------
def feature_columns(schema_fields: list[tuple[str, str]], exclude: set[str] = frozenset()) -> list[tuple[str, str]]:
    """(name, type) of the tag table's columns a model may use: numbers and flags, not ids, dates or text."""
    skip = {"customer_id", "snapshot_date", "msisdn_hash", *exclude}
    return [(n, t) for n, t in schema_fields if n not in skip and t in NUMERIC]


def check_features(model_features: list[tuple[str, str]], table_fields: list[tuple[str, str]], model: str) -> None:
    """Refuse to score when the model's features are not in the table with the types it was trained on."""
    have = dict(table_fields)
    missing = [n for n, _ in model_features if n not in have]
    changed = [f"{n} ({t} -> {have[n]})" for n, t in model_features if n in have and have[n] != t]
    if missing or changed:
        parts = []
        if missing:
            parts.append(f"missing from the tag table: {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
        if changed:
            parts.append(f"type changed: {', '.join(changed[:20])}")
        raise ModelMismatch(f"model {model}: its features do not match gold.customer_tags; {'; '.join(parts)}. "
                            "Retrain the model (cpc train) or restore the tags it was trained on.")


def matrix(pdf, features: list[str]) -> np.ndarray:
    """A pandas batch -> float64 matrix in the model's feature order (nulls as NaN: LightGBM's missing)."""
    import pandas as pd

    cols = [pd.to_numeric(pdf[f], errors="coerce").astype("float64").to_numpy() for f in features]
    return np.column_stack(cols) if cols else np.empty((len(pdf), 0))


def fingerprint(x: np.ndarray, y: np.ndarray, features: list[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(features).encode())
    h.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int8).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Metrics (no scikit-learn: a few lines of numpy)
# ---------------------------------------------------------------------------------------------------------
def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve with ties counted half (Mann-Whitney)."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    pos, neg = y.sum(), (~y).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision: the mean precision at each positive, best scores first."""
    y = np.asarray(y).astype(bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(p), kind="mergesort")
    hits = y[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def deciles(p: np.ndarray) -> list[float]:
    """The nine cut points between score deciles."""
    return [float(x) for x in np.quantile(p, [i / 10 for i in range(1, 10)])] if len(p) else []


def decile_of(p: np.ndarray, cuts: list[float]) -> np.ndarray:
    """1 (lowest scores) .. 10 (highest)."""
    return np.searchsorted(np.asarray(cuts), p, side="right") + 1


def quality(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """ROC-AUC, PR-AUC, lift by decile and calibration by decile of the validation scores."""
    y = np.asarray(y).astype(int)
    base = float(y.mean()) if len(y) else float("nan")
    cuts = deciles(p)
    dec = decile_of(p, cuts)
    lift, calib = [], []
    for d in range(10, 0, -1):
        m = dec == d
        n = int(m.sum())
        rate = float(y[m].mean()) if n else float("nan")
        lift.append({"decile": d, "customers": n, "positives": int(y[m].sum()), "rate": rate,
                     "lift": rate / base if n and base > 0 else float("nan")})
        calib.append({"decile": d, "mean_predicted": float(p[m].mean()) if n else float("nan"), "observed": rate})
    return {"rows": int(len(y)), "positives": int(y.sum()), "base_rate": base, "roc_auc": roc_auc(y, p),
            "pr_auc": pr_auc(y, p), "lift_by_decile": lift, "calibration": calib}


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------
def train(x_train, y_train, x_valid, y_valid, features: list[str], s: Settings, seed: int | None = None):
    """One LightGBM booster, deterministic for the same data, parameters and seed."""
    import lightgbm as lgb

    seed = s.seed if seed is None else seed
    params = {**s.params, "seed": seed, "bagging_seed": seed, "feature_fraction_seed": seed, "data_random_seed": seed}
    train_set = lgb.Dataset(x_train, label=y_train, feature_name=features, free_raw_data=False)
    valid_set = lgb.Dataset(x_valid, label=y_valid, reference=train_set, free_raw_data=False)
    callbacks = [lgb.early_stopping(s.early_stopping_rounds, verbose=False)] if s.early_stopping_rounds else []
    booster = lgb.train(params, train_set, num_boost_round=s.num_boost_round, valid_sets=[valid_set], callbacks=callbacks)
    return booster, params


# ---------------------------------------------------------------------------------------------------------
# Registry: <root>/models/<model id>/<version>/{model.txt, meta.json, validation.parquet}
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Registered:
    model: str
    version: str
    path: Path
    meta: dict[str, Any]

    @property
    def features(self) -> list[tuple[str, str]]:
        return [(f["name"], f["type"]) for f in self.meta["features"]]

    def model_text(self) -> str:
        return (self.path / "model.txt").read_text()


def save(registry: Path, model: str, as_of: dt.date, booster, meta: dict[str, Any], validation=None) -> Registered:
    """Write the model and its metadata. The version is the as-of date and the data fingerprint, so the same
    training twice lands in the same place with the same content."""
    version = f"{as_of.isoformat()}-{meta['data_fingerprint'][:10]}"
    path = registry / model / version
    path.mkdir(parents=True, exist_ok=True)
    text = booster.model_to_string()
    (path / "model.txt").write_text(text)
    meta = {**meta, "model": model, "version": version, "model_sha256": hashlib.sha256(text.encode()).hexdigest()}
    (path / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    if validation is not None:
        validation.to_parquet(path / "validation.parquet", index=False)
    return Registered(model, version, path, meta)


def versions(registry: Path, model: str) -> list[Registered]:
    folder = registry / model
    if not folder.exists():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if (p / "meta.json").exists() and (p / "model.txt").exists():
            out.append(Registered(model, p.name, p, json.loads((p / "meta.json").read_text())))
    return out


def current(registry: Path, model: str, day: dt.date) -> Registered | None:
    """The newest version trained as of ``day`` or earlier: a backfill of a past date scores with the
    model that existed then, never with one trained on later data."""
    return newest_as_of(versions(registry, model), day)



# ---------------------------------------------------------------------------------------------------------
# Scoring: a function Spark runs on each Arrow batch (mapInPandas)
# ---------------------------------------------------------------------------------------------------------
_BOOSTERS: dict[str, Any] = {}


def _booster(key: str, text: str):
    import lightgbm as lgb

    if key not in _BOOSTERS:
        _BOOSTERS[key] = lgb.Booster(model_str=text)
    return _BOOSTERS[key]


def band(dec: np.ndarray, bands: dict[str, int]) -> np.ndarray:
    """Decile -> 'high' / 'medium' / 'low' from the configured lowest decile of each band."""
    out = np.full(len(dec), "low", dtype=object)
    for name, lowest in sorted(bands.items(), key=lambda kv: kv[1]):
        out[dec >= lowest] = name
    return out


def scorer(models: list[dict[str, Any]], top_k: int, bands: dict[str, int]):
    """The batch function for ``mapInPandas``: each customer row -> one row per model with probability,
    decile, band and the ``top_k`` features that pushed the score up most (LightGBM contributions)."""

    def score_batches(batches: Iterator) -> Iterator:
        import pandas as pd

        for pdf in batches:
            if pdf.empty:
                continue
            out = []
            for m in models:
                booster = _booster(m["key"], m["text"].value if hasattr(m["text"], "value") else m["text"])
                x = matrix(pdf, m["features"])
                # One thread per task: Spark already runs a task per core.
                prob = booster.predict(x, num_threads=1)
                if top_k:  # TreeSHAP contributions: most of the scoring time (docs/models.md, Throughput)
                    contrib = booster.predict(x, pred_contrib=True, num_threads=1)[:, :-1]  # last column is the bias
                else:
                    contrib = np.zeros((len(pdf), 0))
                top = np.argsort(-contrib, axis=1, kind="mergesort")[:, :top_k]
                rows = np.arange(len(pdf))[:, None]
                names = np.asarray(m["features"], dtype=object)[top]
                dec = decile_of(prob, m["deciles"])
                out.append(pd.DataFrame({
                    "customer_id": pdf["customer_id"].to_numpy(),
                    "snapshot_date": pdf["snapshot_date"].to_numpy(),
                    "model": m["model"], "model_version": m["version"],
                    "probability": prob.astype("float64"), "decile": dec.astype("int32"),
                    "band": band(dec, bands),
                    "reason_features": list(names),
                    "reason_values": list(np.round(x[rows, top], 4)),
                    "reason_contributions": list(np.round(contrib[rows, top], 4)),
                }))
            yield pd.concat(out, ignore_index=True)

    return score_batches


SCORE_SCHEMA = (
    "customer_id string, snapshot_date date, model string, model_version string, probability double, decile int, "
    "band string, reason_features array<string>, reason_values array<double>, reason_contributions array<double>"
)
