"""Uplift models: who buys *because* of a contact, on LightGBM, with the metrics that judge them on held-out data.

A propensity model (``models/propensity.py``) ranks customers by how likely they are to buy; a contact is worth
its cost only for those who buy because of it. The simulated operator (docs/simulator.md) has persuadables (buy
only if contacted), sure things (buy anyway), lost causes (never buy) and sleeping dogs (a contact harms them):
ranking by propensity puts the sure things first, and the money spent on them buys nothing. An uplift model
predicts the incremental probability ``tau(x) = P(y=1 | x, contacted) - P(y=1 | x, held out)``.

Data: a campaign's (or a product family's) eligible customers, each either contacted (treated, ``t = 1``) or held
out (control, ``t = 0``), their features ``x`` and whether they converted within the window (``y``). The
probability of treatment is **known by design**: the holdout is a salted hash bucket with a constant share per
campaign (``holdout:`` in ``conf/campaigns/*.yaml``), so ``e = P(t=1)`` is that constant (or the treated share of
the training rows), never estimated: no propensity-of-treatment model is fitted. This holds only where the
treated arm is itself random among the eligible (the pipeline's: the exploration bucket's eligible pairs, contacted
or not, intent-to-treat); the contacts chosen by expected value are a selection, see docs/models.md "Uplift models".
When only a share of the treated rows was contacted (``contact_rate``), the model's :meth:`UpliftModel.effect` is
its prediction divided by that share: the effect of a contact, not of being in the arm.

Two learners, both on LightGBM (``learner:`` in ``conf/models.yaml``, section ``uplift``):

- ``two_model`` (T-learner): a classifier ``mu1`` on the treated rows and ``mu0`` on the control rows;
  ``tau = mu1(x) - mu0(x)``. The baseline: each model spends its trees on the outcome's level, not on the
  difference, and the difference of two noisy fits is noisier still, above all where one arm is small.
- ``x_learner`` (Kunzel, Sekhon, Bickel & Yu, "Metalearners for estimating heterogeneous treatment effects using
  machine learning", PNAS 116(10), 2019): stage 1 fits ``mu0`` and ``mu1`` as above; stage 2 imputes each row's
  effect with the *other* arm's model, ``D1 = y - mu0(x)`` on the treated and ``D0 = mu1(x) - y`` on the control,
  and fits regressors ``tau1`` on the treated ``D1`` and ``tau0`` on the control ``D0``; stage 3 combines them,
  ``tau = e * tau0 + (1 - e) * tau1`` with the known ``e`` (Kunzel's choice ``g = e``): with many treated and few
  held out (``e`` = 0.9, a 10% holdout), ``tau0``'s imputations use the well-fitted ``mu1`` and get the weight
  (the rationale; measured below). The effect is fitted directly, so its trees split on what changes the effect.

The default is ``x_learner``, chosen on the synthetic cases of ``tests/test_uplift.py`` (20,000 customers, 5
features, four latent types whose shares depend on the features, the true effect known; 70/30 train / held-out;
``bench/uplift_check.py`` prints the tables kept in docs/models.md). Over five seeds at 20%, 50% and 90% treated
and two conversion levels, the X-learner's Spearman correlation with the true effect was at least the
T-learner's in five of the six settings (by 0.01 to 0.04; at 90% treated and the lower conversion level they tie,
0.811 against 0.813) and their Qini coefficients were within 0.006 of each other. The gain is small. Kunzel et
al. find the X-learner's advantage where the effect is simpler than the outcome (not so here: the effect is as
complex as the outcome) and where one arm is much larger (here, at 90% treated, it showed none). It costs two
more boosters; the T-learner stays as the baseline and a setting. The test's own case:
50% treated, Qini coefficient X 0.207, T 0.205, Spearman X 0.958, T 0.935; 90% treated, Qini X 0.190, T 0.195,
Spearman X 0.936, T 0.921. Ranking by the outcome's propensity (a model of ``P(y)`` that ignores the contact)
gets Qini -0.016 (50%) and 0.137 (90%: with nine in ten treated, ``P(y)`` contains the persuadables'
conversions): it finds the sure things, whom a contact does not change.

Everything is deterministic: every LightGBM seed is the setting's ``seed``, ``deterministic: true``, a fixed
thread count (``num_threads``), and the early-stopping rows are drawn with a seeded generator.

Metrics on held-out rows (:func:`report`): the Qini curve and coefficient (Radcliffe 2007), the uplift curve and
its area AUUC (Gutierrez & Gerardy 2017), the uplift by decile of predicted uplift, and the share of the
incremental conversions captured by the top 20% (the figure of Diemert et al.'s Criteo benchmark). The exact
definitions are in the functions' docstrings and docs/models.md.

The decision's value: :func:`expected_value` = ``tau x value - cost``; :func:`harmed` = ``tau < -harm_margin``
(not contacted). Cold start: :func:`cold_start` says why a history is too thin to train (too few treated, control
or conversions in an arm), and :func:`train_or_fall_back` then returns no model and the reason, e.g.
``cold start: propensity (n treated 40 < 500)``, for the decision to fall back to the propensity fit.

The pipeline's side, still without Spark: :func:`design_propensity` and :func:`pooling` (the known propensity of
the history's rows, campaigns pooled per product family), :func:`thin_dates` (one row per pair per repeat
interval), :func:`split_dates` and :func:`train_family` (the time-based split, cold start, the contact rate, the
report), the registry (:func:`save`, :func:`current`: ``<root>/models/
uplift_<family>/<version>/``) and :func:`scorer` (the ``mapInPandas`` batch function of the nightly scoring).
``jobs/stages/uplift.py`` builds the training rows from ``gold.campaign_outcomes`` and writes ``gold.uplift``; the
CPC decision reads them (docs/models.md, "Uplift models"). Nothing here reads the simulator.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field

from jobs.platform.config import ConfModel, business, validate

LEARNERS = ("x_learner", "two_model")
SOURCE = "conf/models.yaml"


# ---------------------------------------------------------------------------------------------------------
# Settings: the ``uplift:`` section of conf/models.yaml
# ---------------------------------------------------------------------------------------------------------
class UpliftConf(ConfModel):
    """``uplift:`` in ``conf/models.yaml`` (defaults explained in docs/models.md, "Uplift models")."""

    learner: Literal["x_learner", "two_model"] = "x_learner"
    min_treated: int = Field(500, ge=1)  # contacted customers in the history
    min_control: int = Field(500, ge=1)  # held-out customers in the history
    min_conversions_per_arm: int = Field(50, ge=1)  # conversions among the treated and among the control
    harm_margin: float = Field(0.0, ge=0, le=1)  # predicted tau below -margin: harmed, not contacted
    rank: bool = True  # false: the decision ignores gold.uplift and ranks by propensity (RANK_ENV overrides it)
    # ASSUMPTION (not measured): the share of a cold-start family's conversions a contact causes (docs/models.md)
    cold_start_incrementality: float = Field(0.3, ge=0, le=1)
    report_days: int = Field(7, ge=1)  # the newest matured decision dates, held out for the report
    history_days: int = Field(180, ge=1)  # decision dates read for training (the newest ones)
    max_train_rows: int = Field(1_000_000, ge=1)  # a seeded sample above this goes to the driver
    seed: int = 42
    valid_share: float = Field(0.2, gt=0, lt=1)  # rows of each fit kept aside for early stopping
    num_boost_round: int = Field(400, ge=1)
    early_stopping_rounds: int = Field(30, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)  # LightGBM's; the objective is set per stage


class _ModelsFileUplift(ConfModel):
    """The ``uplift:`` section read out of conf/models.yaml; the other keys are models.propensity's."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    uplift: UpliftConf = Field(default_factory=UpliftConf)


@dataclass(frozen=True)
class Settings:
    learner: str
    min_treated: int
    min_control: int
    min_conversions_per_arm: int
    harm_margin: float
    rank: bool
    cold_start_incrementality: float
    report_days: int
    history_days: int
    max_train_rows: int
    seed: int
    valid_share: float
    num_boost_round: int
    early_stopping_rounds: int
    params: dict[str, Any]


# Overrides ``uplift.rank`` for one process and its children without editing conf/ (``true`` or ``false``): the
# closed loop's propensity-ranked arm (``python -m simulator loops``, docs/evaluation.md "Headline") sets it to false.
RANK_ENV = "CPC_UPLIFT_RANK"


def load_settings(raw: dict[str, Any] | None = None) -> Settings:
    """The uplift settings of ``conf/models.yaml`` (or of ``raw``, the whole file as a mapping); a wrong value
    is a ConfigError naming the file and the field, e.g. ``conf/models.yaml: uplift.min_treated: ...``.
    ``CPC_UPLIFT_RANK`` (:data:`RANK_ENV`), when set, replaces ``uplift.rank``; the decision records the setting
    it used in ops.cpc_runs (``config_sha256``, jobs.stages.cpc.campaigns.decision_model_settings)."""
    data = raw if raw is not None else business("models")
    override = os.environ.get(RANK_ENV)
    if override is not None:
        data = {**(data or {}), "uplift": {**((data or {}).get("uplift") or {}), "rank": override}}
    conf = validate(_ModelsFileUplift, data, SOURCE if override is None else f"{SOURCE} with {RANK_ENV}={override}").uplift
    return Settings(**{f.name: getattr(conf, f.name) for f in dataclasses.fields(Settings)})


def _params(s: Settings, objective: str, seed: int) -> dict[str, Any]:
    return {"deterministic": True, "force_row_wise": True, "verbosity": -1, "num_threads": 1, **s.params,
            "objective": objective, "seed": seed, "bagging_seed": seed, "feature_fraction_seed": seed,
            "data_random_seed": seed}


# ---------------------------------------------------------------------------------------------------------
# Learners
# ---------------------------------------------------------------------------------------------------------
def boost(x: np.ndarray, y: np.ndarray, objective: str, s: Settings, seed: int | None = None):
    """One LightGBM booster (``binary`` for an outcome, ``regression`` for an imputed effect), early-stopped on a
    seeded ``valid_share`` of the rows; deterministic for the same rows, settings and seed."""
    import lightgbm as lgb

    seed = s.seed if seed is None else seed
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    valid = np.random.default_rng(seed).random(len(y)) < s.valid_share
    if not s.early_stopping_rounds or valid.all() or not valid.any():
        valid[:] = False
    params = _params(s, objective, seed)
    train_set = lgb.Dataset(x[~valid], label=y[~valid], free_raw_data=False)
    if not valid.any():
        return lgb.train(params, train_set, num_boost_round=s.num_boost_round)
    valid_set = lgb.Dataset(x[valid], label=y[valid], reference=train_set, free_raw_data=False)
    callbacks = [lgb.early_stopping(s.early_stopping_rounds, verbose=False)]
    return lgb.train(params, train_set, num_boost_round=s.num_boost_round, valid_sets=[valid_set], callbacks=callbacks)


@dataclass(frozen=True)
class UpliftModel:
    """A fitted uplift model: its LightGBM models as text (``mu0``, ``mu1``; the X-learner adds ``tau0``,
    ``tau1``), the propensity of treatment it was fitted with, the features in order, and ``contact_rate``: the
    share of its treated rows that were contacted (1 when the treatment is the contact itself; below 1 for the
    pipeline's intent-to-treat arms, where the treatment is being in the exploration bucket)."""

    learner: str
    propensity: float
    features: tuple[str, ...]
    models: dict[str, str]
    trees: dict[str, int]
    contact_rate: float = 1.0

    def predict(self, x, num_threads: int = 1) -> np.ndarray:
        """tau(x): the predicted incremental probability of converting in the treated arm, one per row (the effect
        of a contact when every treated row was contacted; the intent-to-treat effect otherwise: see
        :meth:`effect`). ``x`` is a matrix in the model's feature order, or a pandas frame holding the features
        (taken by name)."""
        x = _matrix(x, self.features)

        def run(name: str) -> np.ndarray:
            return _booster(self.models[name]).predict(x, num_threads=num_threads)

        if self.learner == "two_model":
            return run("mu1") - run("mu0")
        e = self.propensity
        return e * run("tau0") + (1 - e) * run("tau1")

    def effect(self, x, num_threads: int = 1) -> np.ndarray:
        """The predicted effect of a contact: :meth:`predict` (intent-to-treat) / ``contact_rate`` (Bloom's
        estimator: the arm's effect comes only through its contacted rows; the rate is the arm's, one number,
        not the customer's)."""
        return self.predict(x, num_threads=num_threads) / self.contact_rate


@functools.lru_cache(maxsize=64)
def _booster(text: str):
    import lightgbm as lgb

    return lgb.Booster(model_str=text)


def _matrix(x, features: tuple[str, ...] | None = None) -> np.ndarray:
    """Features as float64 (nulls as NaN, LightGBM's missing): a pandas frame's named columns in order, or an array."""
    if hasattr(x, "columns"):
        import pandas as pd

        cols = list(x.columns) if features is None else list(features)
        return np.column_stack([pd.to_numeric(x[c], errors="coerce").astype("float64").to_numpy() for c in cols])
    return np.asarray(x, dtype=np.float64)


def _arms(t, y) -> tuple[np.ndarray, np.ndarray]:
    t, y = np.asarray(t), np.asarray(y)
    if not np.isin(t, (0, 1)).all() or not np.isin(y, (0, 1)).all():
        raise ValueError("uplift: the treatment flag and the outcome must be 0/1 (or booleans)")
    return t.astype(bool), y.astype(np.float64)


def fit(x, t, y, s: Settings, *, propensity: float | None = None, learner: str | None = None,
        features: list[str] | None = None) -> UpliftModel:
    """Fit ``learner`` (default the setting's) on features ``x`` (rows x features), treatment flags ``t`` (1 =
    contacted, 0 = held out) and outcomes ``y`` (1 = converted in the window). ``propensity`` is P(t=1), known by
    design (1 - the campaign's holdout share); by default the treated share of the rows. ``x`` may be a pandas
    frame: its columns are then the features (``features`` names an array's columns)."""
    learner = learner or s.learner
    if learner not in LEARNERS:
        raise ValueError(f"uplift: unknown learner {learner!r}; known: {', '.join(LEARNERS)}")
    if features is None and hasattr(x, "columns"):
        features = [str(c) for c in x.columns]
    x = _matrix(x)
    t, y = _arms(t, y)
    e = float(t.mean()) if propensity is None else float(propensity)
    if not 0 < e < 1:
        raise ValueError(f"uplift: the propensity of treatment must be in (0, 1), not {e}")
    boosters = {"mu0": boost(x[~t], y[~t], "binary", s), "mu1": boost(x[t], y[t], "binary", s)}
    if learner == "x_learner":
        mu0 = boosters["mu0"].predict(x[t], num_threads=int(s.params.get("num_threads", 1)))
        mu1 = boosters["mu1"].predict(x[~t], num_threads=int(s.params.get("num_threads", 1)))
        boosters["tau1"] = boost(x[t], y[t] - mu0, "regression", s)
        boosters["tau0"] = boost(x[~t], mu1 - y[~t], "regression", s)
    names = tuple(features) if features is not None else tuple(f"x{i}" for i in range(x.shape[1]))
    return UpliftModel(learner, e, names, {k: b.model_to_string() for k, b in boosters.items()},
                       {k: int(b.num_trees()) for k, b in boosters.items()})


# ---------------------------------------------------------------------------------------------------------
# Cold start
# ---------------------------------------------------------------------------------------------------------
def cold_start(t, y, s: Settings) -> str | None:
    """Why this history is too thin to train an uplift model (the first threshold missed, with the counts), or
    None when it is enough: at least ``min_treated`` treated, ``min_control`` held-out customers and
    ``min_conversions_per_arm`` conversions in each arm."""
    t, y = _arms(t, y)
    n_t, n_c = int(t.sum()), int((~t).sum())
    y_t, y_c = int(y[t].sum()), int(y[~t].sum())
    checks = (("n treated", n_t, s.min_treated), ("n control", n_c, s.min_control),
              ("conversions treated", y_t, s.min_conversions_per_arm),
              ("conversions control", y_c, s.min_conversions_per_arm))
    for what, have, need in checks:
        if have < need:
            return f"{what} {have} < {need}"
    return None


def train_or_fall_back(x, t, y, s: Settings, **kwargs) -> tuple[UpliftModel | None, str]:
    """A fitted model and the reason for the decision (``uplift: x_learner (n treated ..., control ...)``), or
    None and ``cold start: propensity (<the threshold missed>)``: the caller then ranks by propensity and says so
    in the decision's reason. ``kwargs`` go to :func:`fit`."""
    why = cold_start(t, y, s)
    if why is not None:
        return None, f"cold start: propensity ({why})"
    model = fit(x, t, y, s, **kwargs)
    t = np.asarray(t).astype(bool)
    return model, f"uplift: {model.learner} (n treated {int(t.sum())}, control {int((~t).sum())})"


# ---------------------------------------------------------------------------------------------------------
# The decision's value
# ---------------------------------------------------------------------------------------------------------
def expected_value(tau, value, cost):
    """The value of a contact: the incremental probability it buys times the offer's value, less its cost."""
    return np.asarray(tau, dtype=np.float64) * np.asarray(value, dtype=np.float64) - np.asarray(cost, dtype=np.float64)


def harmed(tau, margin: float):
    """True where the contact is predicted to harm (``tau < -margin``): the customer is not contacted."""
    return np.asarray(tau, dtype=np.float64) < -float(margin)


def measured_incrementality(treated: int, conversions: int, not_chosen: int, not_chosen_conversions: int, holdout: int,
                            holdout_conversions: int, z: float = 1.959964) -> dict[str, float] | None:
    """The share of the treated's conversions that the contact caused, from the evaluation's counts of one product
    family's campaigns (gold.campaign_eval): the effect on the treated (Bloom: the intent-to-treat lift of the
    eligible, treated + not chosen, over the holdout, divided by the treated share; its 95% interval the lift's
    normal interval divided by the share, as jobs.stages.evaluate.three_way computes ``effect_on_treated``) over
    the treated conversion rate, within [0, 1] (a significantly negative effect counts as 0: no contact earns
    anything). None where a group is empty, nobody treated converted, or the interval holds zero (not measured).
    Returns factor, effect, low, high, rate_treated."""
    eligible, x_e = treated + not_chosen, conversions + not_chosen_conversions
    if not treated or not holdout or not conversions:
        return None
    p_e, p_c = x_e / eligible, holdout_conversions / holdout
    half = z * float(np.sqrt(p_e * (1 - p_e) / eligible + p_c * (1 - p_c) / holdout))
    share = treated / eligible
    effect, low, high = (p_e - p_c) / share, (p_e - p_c - half) / share, (p_e - p_c + half) / share
    if low <= 0 <= high:
        return None
    rate = conversions / treated
    return {"factor": min(max(effect / rate, 0.0), 1.0), "effect": effect, "low": low, "high": high, "rate_treated": rate}


# ---------------------------------------------------------------------------------------------------------
# Metrics on held-out rows (numpy; no scikit-learn)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cumulative:
    """Rows ranked by predicted uplift, best first, counted at the end of each block of equal scores (rows
    with the same score enter together, so a constant score is random targeting). Every array starts with
    the empty selection (0)."""

    share: np.ndarray  # share of all rows selected
    n_t: np.ndarray  # treated selected
    n_c: np.ndarray  # control selected
    y_t: np.ndarray  # conversions among the treated selected
    y_c: np.ndarray  # conversions among the control selected


def cumulative(y, t, score) -> Cumulative:
    t, y = _arms(t, y)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    t, y, score = t[order], y[order], score[order]
    ends = np.flatnonzero(np.r_[score[1:] != score[:-1], True]) if len(score) else np.array([], dtype=int)

    def at_ends(v: np.ndarray) -> np.ndarray:
        return np.r_[0.0, np.cumsum(v)[ends]]

    return Cumulative(np.r_[0.0, (ends + 1) / max(len(score), 1)], at_ends(t), at_ends(~t), at_ends(y * t),
                      at_ends(y * ~t))


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def qini_curve(y, t, score) -> tuple[np.ndarray, np.ndarray]:
    """Radcliffe (2007, "Using control groups to target on predicted lift"): for the top share of rows by
    predicted uplift, the incremental conversions scaled to the treated count,
    ``Q = y_t - y_c * n_t / n_c`` (the control term is 0 while no control row is selected). Returns (share, Q)."""
    c = cumulative(y, t, score)
    return c.share, c.y_t - c.y_c * _ratio(c.n_t, c.n_c)


def uplift_curve(y, t, score) -> tuple[np.ndarray, np.ndarray]:
    """Gutierrez & Gerardy (2017, "Causal inference and uplift modelling: a review of the literature"): for the
    top share of rows, the difference of the conversion rates times the rows selected,
    ``U = (y_t / n_t - y_c / n_c) * (n_t + n_c)``: the incremental conversions had all of them been contacted
    (0 while an arm has no row selected). Returns (share, U)."""
    c = cumulative(y, t, score)
    both = (c.n_t > 0) & (c.n_c > 0)
    return c.share, np.where(both, (_ratio(c.y_t, c.n_t) - _ratio(c.y_c, c.n_c)) * (c.n_t + c.n_c), 0.0)


def _area(x: np.ndarray, v: np.ndarray) -> float:
    return float(np.sum((v[1:] + v[:-1]) / 2 * np.diff(x))) if len(x) > 1 else 0.0


def qini_coefficient(y, t, score) -> float:
    """Radcliffe's Qini coefficient: the area between the Qini curve and the random line (from (0, 0) to
    (1, Q(1))), divided by the same area for the best ranking of these outcomes (treated converters first,
    control converters last, everyone else in between). 0 is random targeting, 1 the best possible; below 0
    worse than random. NaN when the best ranking is no better than random."""
    y, t = np.asarray(y), np.asarray(t)
    share, q = qini_curve(y, t, score)
    best = np.where(y.astype(bool), np.where(t.astype(bool), 1.0, -1.0), 0.0)
    share_b, q_b = qini_curve(y, t, best)
    random_area = q[-1] / 2
    top = _area(share_b, q_b) - random_area
    return (_area(share, q) - random_area) / top if top > 0 else float("nan")


def auuc(y, t, score) -> float:
    """Area under the uplift curve (Gutierrez & Gerardy 2017) over the share of rows selected, per row:
    ``integral of U(s) / N ds``, trapezoids between the curve's points. Random targeting gives about
    ``ATE / 2`` (:func:`report` gives both)."""
    share, u = uplift_curve(y, t, score)
    return _area(share, u) / max(len(np.asarray(y)), 1)


def top_share(y, t, score, share: float = 0.2) -> float:
    """The share of the incremental conversions captured by the top ``share`` of rows by predicted uplift:
    ``U(share) / U(1)`` on the uplift curve (linear between its points). The Criteo benchmark (Diemert et al.)
    reports 77.7% for its top 20%. Above 1 when the rest harms on balance (sleeping dogs); NaN when ``U(1) <= 0``."""
    s, u = uplift_curve(y, t, score)
    return float(np.interp(share, s, u) / u[-1]) if u[-1] > 0 else float("nan")


def uplift_by_decile(y, t, score) -> list[dict[str, Any]]:
    """Rows ranked by predicted uplift, best first, cut into ten groups of equal size (decile 10 = highest):
    per group the treated and control counts, their conversion rates and the observed uplift (treated rate -
    control rate; NaN where an arm is empty), and the mean predicted uplift."""
    t, y = _arms(t, y)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    out = []
    for d, rows in zip(range(10, 0, -1), np.array_split(order, 10), strict=True):
        tt, yy = t[rows], y[rows]
        r_t = float(yy[tt].mean()) if tt.any() else float("nan")
        r_c = float(yy[~tt].mean()) if (~tt).any() else float("nan")
        out.append({"decile": d, "treated": int(tt.sum()), "control": int((~tt).sum()), "rate_treated": r_t,
                    "rate_control": r_c, "uplift": r_t - r_c,
                    "mean_predicted": float(score[rows].mean()) if len(rows) else float("nan")})
    return out


def report(y, t, score, contact_rate: float = 1.0) -> dict[str, Any]:
    """Everything above for one ranking of held-out rows; ``ate`` is the treated arm's effect (intent-to-treat when
    not every treated row was contacted) and ``ate_per_contact`` that / ``contact_rate``. The curves rank by
    ``score`` (a positive scale such as the contact rate changes no ranking)."""
    t_, y_ = _arms(t, y)
    r_t = float(y_[t_].mean()) if t_.any() else float("nan")
    r_c = float(y_[~t_].mean()) if (~t_).any() else float("nan")
    return {"rows": int(len(y_)), "treated": int(t_.sum()), "control": int((~t_).sum()),
            "rate_treated": r_t, "rate_control": r_c, "ate": r_t - r_c, "contact_rate": float(contact_rate),
            "ate_per_contact": (r_t - r_c) / contact_rate if contact_rate > 0 else float("nan"),
            "qini_coefficient": qini_coefficient(y, t, score), "auuc": auuc(y, t, score),
            "auuc_random": (r_t - r_c) / 2, "top20_share": top_share(y, t, score, 0.2),
            "uplift_by_decile": uplift_by_decile(y, t, score)}


# ---------------------------------------------------------------------------------------------------------
# The pipeline's history (jobs/stages/uplift.py builds the rows): arms, known propensity, pooling, time split
# ---------------------------------------------------------------------------------------------------------
def design_propensity(holdout: float, exploration: float) -> float:
    """P(t=1) of one campaign's training row, known by design: its treated rows are its exploration pairs (the
    hash bucket right above its holdout, share ``exploration`` of its eligible pairs), its control rows its
    holdout pairs (share ``holdout``), both drawn from the same eligible pairs (``active_eligible``): ``x / (x + h)``;
    0 without exploration (the campaign has no treated row)."""
    total = float(holdout) + float(exploration)
    return float(exploration) / total if total > 0 else 0.0


def pooling(e_by_campaign: dict[str, float]) -> tuple[float, dict[str, float]]:
    """One family's model pools its campaigns, whose design propensities differ (a 5% holdout against a 10% one).
    Pooled as they are, the campaign with more treated rows would weigh on the treated side: a confounder. So
    every treated row is kept and each campaign's control rows are thinned (a stable hash draw) to the share
    ``keep_c = e_c (1 - e*) / ((1 - e_c) e*)``, which makes every campaign's treated share the common
    ``e* = max e_c``. Campaigns with ``e_c`` outside (0, 1) (no exploration, or no holdout) cannot compare and are
    left out. Returns (e*, {campaign: keep_c}); (0.0, {}) when no campaign can compare."""
    usable = {c: float(e) for c, e in e_by_campaign.items() if 0 < e < 1}
    if not usable:
        return 0.0, {}
    top = max(usable.values())
    return top, {c: e * (1 - top) / ((1 - e) * top) for c, e in sorted(usable.items())}


def split_dates(dates, report_days: int, purge_days: int) -> tuple[list, list]:
    """The time-based split of the matured decision dates: the newest ``report_days`` are the report's; training
    takes the dates whose outcome window (``purge_days``, the evaluation's window) ends by the first report date,
    so no training label falls inside a report row's window (purged, as the propensity models' split is)."""
    import datetime as dt

    ordered = sorted(set(dates))
    report = ordered[-report_days:] if report_days > 0 else []
    if not report:
        return [], []
    first = report[0]
    return [d for d in ordered if d + dt.timedelta(days=purge_days) <= first], report


def thin_dates(dates, interval: int) -> list:
    """One row per pair per ``interval`` days: the earliest date, then each next date at least ``interval`` days
    after the last one kept (greedy). Applied to each (customer, campaign)'s decision dates in both arms alike: a
    contacted explorer is held back for about the interval by its own contact (repeat interval, cooldown, caps),
    while a holdout member is eligible every day; thinned, both give one row per interval whatever happened in
    between. Python twin of the Spark thinning in ``jobs.stages.uplift.training_rows``."""
    kept: list = []
    for d in sorted(set(dates)):
        if not kept or (d - kept[-1]).days >= interval:
            kept.append(d)
    return kept


def contact_rate(t, contacted) -> float:
    """The share of the treated rows (``t`` = 1: the exploration arm) that were contacted; NaN without a treated row."""
    t, contacted = np.asarray(t).astype(bool), np.asarray(contacted).astype(bool)
    return float(contacted[t].mean()) if t.any() else float("nan")


def fingerprint(x: np.ndarray, t, y, features: list[str]) -> str:
    """SHA-256 of the training rows (features in order, treatment, outcome): the registry version's suffix."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps(list(features)).encode())
    for part in (np.ascontiguousarray(x, dtype=np.float64), np.asarray(t, dtype=np.int8), np.asarray(y, dtype=np.int8)):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class FamilyFit:
    """What training left for one family: the model (None in cold start), the reason for the decision (``uplift:
    x_learner (...)`` or ``cold start: propensity (...)``), the report on the held-out dates (None without one),
    the rows' counts and dates, and the held-out rows with their predicted tau (for the registry)."""

    model: UpliftModel | None
    reason: str
    report: dict[str, Any] | None
    window: dict[str, Any]
    fingerprint: str = ""
    heldout: Any = None


def _cold(why: str, window: dict[str, Any] | None = None) -> FamilyFit:
    return FamilyFit(None, f"cold start: propensity ({why})", None, window or {})


def _contacted(pdf) -> np.ndarray:
    """The rows' ``contacted`` flags; without the column every treated row counts as contacted (the treatment is
    the contact itself)."""
    t = pdf["t"].to_numpy().astype(bool)
    return pdf["contacted"].fillna(False).to_numpy().astype(bool) & t if "contacted" in pdf.columns else t


def _window(pdf, is_train, is_report, train_dates, report_dates) -> dict[str, Any]:
    t, c = pdf["t"].to_numpy().astype(bool), _contacted(pdf)
    return {"train_dates": [d.isoformat() for d in train_dates], "report_dates": [d.isoformat() for d in report_dates],
            "rows_train": int(is_train.sum()), "treated_train": int((t & is_train).sum()),
            "control_train": int((~t & is_train).sum()), "rows_report": int(is_report.sum()),
            "treated_report": int((t & is_report).sum()), "control_report": int((~t & is_report).sum()),
            "treated_share_observed": float(t[is_train].mean()) if is_train.any() else float("nan"),
            "contacted_train": int((c & is_train).sum()), "contact_rate": contact_rate(t[is_train], c[is_train])}


def train_family(pdf, features: list[str], s: Settings, propensity: float, purge_days: int) -> FamilyFit:
    """One family's model from its training rows (pandas: ``snapshot_date``, ``customer_id``, ``t``, ``y``,
    optionally ``contacted``, and the features): the time split (:func:`split_dates`), cold start on the training
    dates (:func:`train_or_fall_back`; also when no treated row was contacted), the treated arm's contact rate on the
    training dates (:func:`contact_rate`: the model's ``effect`` is its intent-to-treat prediction / the rate), and
    the report (:func:`report`) of the model's ranking on the report dates."""
    if pdf is None or pdf.empty:
        return _cold("no matured outcomes")
    if not 0 < propensity < 1:
        return _cold("no campaign with both an exploration bucket and a holdout")
    train_dates, report_dates = split_dates(pdf["snapshot_date"], s.report_days, purge_days)
    is_train = pdf["snapshot_date"].isin(train_dates).to_numpy()
    is_report = pdf["snapshot_date"].isin(report_dates).to_numpy()
    window = _window(pdf, is_train, is_report, train_dates, report_dates)
    if not train_dates:
        n = pdf["snapshot_date"].nunique()
        return _cold(f"{n} matured decision dates: the newest {s.report_days} are the report's and none is "
                     f"{purge_days} days before them", window)
    x, t, y = _matrix(pdf, tuple(features)), pdf["t"].to_numpy().astype(int), pdf["y"].to_numpy().astype(int)
    model, reason = train_or_fall_back(x[is_train], t[is_train], y[is_train], s, propensity=propensity,
                                       features=list(features))
    if model is None:
        return FamilyFit(None, reason, None, window)
    rate = window["contact_rate"]
    if not rate > 0:
        return _cold(f"no contact among the {window['treated_train']} treated rows", window)
    model = dataclasses.replace(model, contact_rate=rate)
    itt = model.predict(x[is_report])
    t_r, y_r = t[is_report], y[is_report]
    rep = report(y_r, t_r, itt, rate) if t_r.any() and (~t_r.astype(bool)).any() else None
    heldout = pdf.loc[is_report, ["snapshot_date", "customer_id"]].assign(t=t_r, y=y_r, tau_itt=itt, tau=itt / rate)
    return FamilyFit(model, reason, rep, window, fingerprint(x[is_train], t[is_train], y[is_train], features), heldout)


# ---------------------------------------------------------------------------------------------------------
# Registry: <root>/models/uplift_<family>/<version>/{mu0,mu1[,tau0,tau1]}.txt, meta.json, report.parquet
# ---------------------------------------------------------------------------------------------------------
def registry_name(family: str) -> str:
    return f"uplift_{family}"


@dataclass(frozen=True)
class Registered:
    """One registered version of a family: a model, or a cold start (``meta["boosters"]`` empty) with its reason."""

    family: str
    version: str
    path: Any
    meta: dict[str, Any]

    @property
    def reason(self) -> str:
        return str(self.meta.get("reason", ""))

    @property
    def has_model(self) -> bool:
        return bool(self.meta.get("boosters"))

    @property
    def features(self) -> list[tuple[str, str]]:
        return [(f["name"], f["type"]) for f in self.meta.get("features", [])]

    def texts(self) -> dict[str, str]:
        return {name: (self.path / f"{name}.txt").read_text() for name in sorted(self.meta.get("boosters", {}))}

    def model(self) -> UpliftModel | None:
        if not self.has_model:
            return None
        m = self.meta
        return UpliftModel(m["learner"], float(m["propensity"]), tuple(n for n, _ in self.features), self.texts(),
                           {k: int(v) for k, v in m["trees"].items()}, float(m.get("contact_rate", 1.0)))


def save(registry, family: str, as_of, fitted: FamilyFit, meta: dict[str, Any]) -> Registered:
    """Write one family's outcome of a training as of ``as_of``: the boosters' texts and ``meta.json`` (version
    ``<as-of>-<fingerprint>``), or a cold start's ``meta.json`` alone (version ``<as-of>-cold-start``), and the
    report rows. The same training twice lands in the same folder with the same content (``trained_at`` aside)."""
    import hashlib
    import json

    model = fitted.model
    version = f"{as_of.isoformat()}-{fitted.fingerprint[:10]}" if model is not None else f"{as_of.isoformat()}-cold-start"
    path = registry / registry_name(family) / version
    path.mkdir(parents=True, exist_ok=True)
    boosters = {}
    if model is not None:
        for name, text in sorted(model.models.items()):
            (path / f"{name}.txt").write_text(text)
            boosters[name] = hashlib.sha256(text.encode()).hexdigest()
        meta = {**meta, "learner": model.learner, "propensity": model.propensity, "trees": model.trees,
                "contact_rate": model.contact_rate}
    meta = {**meta, "family": family, "version": version, "as_of": as_of.isoformat(), "reason": fitted.reason,
            "boosters": boosters, "report": fitted.report, "window": fitted.window, "data_fingerprint": fitted.fingerprint}
    (path / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    if fitted.heldout is not None:
        fitted.heldout.to_parquet(path / "report.parquet", index=False)
    return Registered(family, version, path, meta)


def versions(registry, family: str) -> list[Registered]:
    import json

    folder = registry / registry_name(family)
    if not folder.exists():
        return []
    return [Registered(family, p.name, p, json.loads((p / "meta.json").read_text()))
            for p in sorted(folder.iterdir()) if (p / "meta.json").exists()]


def current(registry, family: str, day) -> Registered | None:
    """The newest version trained as of ``day`` or earlier (a model or a cold start): a backfill of a past date
    uses what existed then."""
    return newest_as_of(versions(registry, family), day)


def newest_as_of(regs: list, day):
    """Of registered versions (each with ``meta["as_of"]``, an ISO date), the newest trained as of ``day`` or earlier
    (ties: the later ``trained_at``), or None; models.propensity.current reads it too."""
    usable = [r for r in regs if r.meta["as_of"] <= day.isoformat()]
    return max(usable, key=lambda r: (r.meta["as_of"], r.meta.get("trained_at", ""))) if usable else None


def families(registry) -> list[str]:
    """Every family with a registered version."""
    prefix = registry_name("")
    return sorted(p.name[len(prefix):] for p in registry.glob(f"{prefix}*") if p.is_dir()) if registry.exists() else []


# ---------------------------------------------------------------------------------------------------------
# Nightly scoring: a function Spark runs on each Arrow batch (mapInPandas), as models.propensity.scorer
# ---------------------------------------------------------------------------------------------------------
SCORE_SCHEMA = "customer_id string, snapshot_date date, category string, model_version string, tau double"
_MODELS: dict[str, UpliftModel] = {}


def _payload_model(m: dict[str, Any]) -> UpliftModel:
    """The model of one scorer payload entry, built once per executor process (its texts may be a broadcast)."""
    if m["key"] not in _MODELS:
        texts = m["texts"].value if hasattr(m["texts"], "value") else m["texts"]
        _MODELS[m["key"]] = UpliftModel(m["learner"], float(m["propensity"]), tuple(m["features"]), dict(texts),
                                        dict(m.get("trees", {})), float(m.get("contact_rate", 1.0)))
    return _MODELS[m["key"]]


def scorer(models: list[dict[str, Any]]):
    """The batch function for ``mapInPandas``: each customer row -> one row per family model with ``tau``, the
    predicted incremental probability of converting when contacted (:meth:`UpliftModel.effect`: the
    intent-to-treat prediction / the arm's contact rate; one LightGBM thread per task: Spark already runs a task
    per core). ``models``: per family ``key`` (unique per version), ``family``, ``version``, ``learner``,
    ``propensity``, ``features`` (names in order), ``texts`` (booster name -> text, or a broadcast of that),
    ``trees`` and ``contact_rate`` (1 when absent)."""

    def score_batches(batches: Iterator) -> Iterator:
        import pandas as pd

        for pdf in batches:
            if pdf.empty:
                continue
            out = [pd.DataFrame({"customer_id": pdf["customer_id"].to_numpy(), "snapshot_date": pdf["snapshot_date"].to_numpy(),
                                 "category": m["family"], "model_version": m["version"],
                                 "tau": _payload_model(m).effect(pdf, num_threads=1).astype("float64")})
                   for m in models]
            yield pd.concat(out, ignore_index=True)

    return score_batches
