"""How the candidate families are fitted on encoded features, calibration included (the fitted models:
:mod:`features.model.estimators`).

- :class:`LinearSpec`: logistic regression on a pre-specified subset of the encoded features, fitted by
  maximum likelihood (a weak ridge keeps the estimates finite when a rare category separates the outcome),
  then shrunk: every coefficient is multiplied by the heuristic uniform shrinkage factor
  ``gamma = (LR - P) / LR`` (LR: the model's likelihood-ratio chi-square, P its parameters) and the intercept
  is re-estimated with the shrunk linear predictor as an offset, so predicted and observed events agree.
  The factor is the expected calibration slope of the unshrunk model on new patients; shrinking by it is the
  model's calibration (``calibrated logit = gamma * margin + a``), fitted on the same data as the model. A
  fit whose LR does not exceed P gets ``gamma = 0``: it predicts the average risk, never an inverted ranking.
  This departs from the project's methods sheet, which names the bootstrap-corrected calibration slope as the
  factor: that slope is a product of the validation, so shrinking by it would leave the shrinkage itself
  unvalidated (or need a bootstrap inside every resample). The heuristic factor is part of each fit, the
  outer bootstrap validates it with everything else, and the validated slope (near 1 when it worked) is the
  check, reported beside it.
- :class:`BoostedSpec`: gradient-boosted trees (XGBoost) with monotone constraints where the clinical
  direction is known, Platt-calibrated on the margins of the same configuration out of fold.

References
    Van Houwelingen JC, Le Cessie S. Predictive value of statistical models. Stat Med 1990;9:1303-1325.
    Steyerberg EW. Clinical Prediction Models, 2nd ed. Springer 2019, section 13.2 (shrinkage, then the
    intercept re-estimated).
    Platt J. Probabilistic outputs for support vector machines. Advances in Large Margin Classifiers, MIT
    Press 1999.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import xgboost as xgb
from scipy.special import expit, log_expit
from sklearn.model_selection import StratifiedGroupKFold

from features.encoding import FEATURE_NAMES
from features.model.calibration import PlattCalibrator
from features.model.estimators import BoostedModel, LogisticModel
from training.calibration import fit_platt

#: Inverse ridge penalty on standardised coefficients (scikit-learn's C: the penalty is ||w||² / 2C): weak
#: enough to leave an identified fit unchanged in practice, strong enough to keep a separated category's
#: coefficient finite.
WEAK_RIDGE_C = 1_000.0
_TOLERANCE = 1e-10


def ridge_logistic(Z: np.ndarray, y: np.ndarray, *, C: float = WEAK_RIDGE_C) -> tuple[float, np.ndarray]:
    """Intercept and coefficients maximising the log-likelihood minus ``||w||² / 2C`` (intercept unpenalised).

    Newton–Raphson with step halving on the concave objective: the same optimum as scikit-learn's
    ``LogisticRegression(C=C, solver="newton-cholesky")``, without its per-call validation, which costs
    about ten times the fit itself on development-sized data and dominates a bootstrap of thousands of fits.
    """
    n, k = Z.shape
    design = np.column_stack([np.ones(n), Z])
    penalty = np.full(k + 1, 1 / C)
    penalty[0] = 0.0
    beta = np.zeros(k + 1)
    beta[0] = math.log(y.mean() / (1 - y.mean()))

    def objective(b: np.ndarray) -> float:
        return _log_likelihood(y, design @ b) - 0.5 * float(penalty @ b**2)

    current = objective(beta)
    for _ in range(100):
        p = expit(design @ beta)
        gradient = design.T @ (y - p) - penalty * beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while True:
            candidate = beta + size * step
            value = objective(candidate)
            if value >= current - 1e-12 or size < 1e-8:
                break
            size /= 2
        beta, current = candidate, value
        if np.max(np.abs(size * step)) < _TOLERANCE:
            break
    return float(beta[0]), beta[1:]


def _log_likelihood(y: np.ndarray, logit: np.ndarray) -> float:
    return float(np.sum(y * log_expit(logit) + (1 - y) * log_expit(-logit)))


def _intercept_with_offset(y: np.ndarray, offset: np.ndarray) -> float:
    """Maximum-likelihood ``a`` of ``logit P(y) = a + offset`` (Newton; the log-likelihood is concave)."""
    a = math.log(y.mean() / (1 - y.mean())) - float(np.mean(offset))
    for _ in range(50):
        p = expit(a + offset)
        step = float(np.sum(y - p)) / max(float(np.sum(p * (1 - p))), 1e-12)
        a += step
        if abs(step) < 1e-12:
            break
    return a


@dataclass(frozen=True)
class LinearSpec:
    """A logistic model of the encoded features ``columns`` (none: the intercept-only model)."""

    name: str
    columns: tuple[str, ...]
    family: ClassVar[str] = "logistic"

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, seed: int = 0, groups: np.ndarray | None = None
    ) -> tuple[LogisticModel, PlattCalibrator]:
        """Fit, shrink and re-estimate the intercept; ``ValueError`` if ``y`` has one class (``seed`` and
        ``groups`` are unused: the fit is deterministic and needs no folds)."""
        if y.min() == y.max():
            raise ValueError("one outcome class: no model can be fitted")
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale == 0] = 1.0
        coef = np.zeros(X.shape[1])
        index = [i for i in (FEATURE_NAMES.index(c) for c in self.columns) if X[:, i].std() > 0]
        prevalence = float(y.mean())
        intercept = math.log(prevalence / (1 - prevalence))
        if index:
            intercept, coef[index] = ridge_logistic((X[:, index] - mean[index]) / scale[index], y)
        model = LogisticModel(mean=mean, scale=scale, coef=coef, intercept=intercept, C=WEAK_RIDGE_C)
        margin = model.margin(X)
        lr = 2 * (
            _log_likelihood(y, margin)
            - _log_likelihood(y, np.full(len(y), math.log(prevalence / (1 - prevalence))))
        )
        gamma = 1.0 if not index else max(0.0, (lr - len(index)) / lr) if lr > 0 else 0.0
        return model, PlattCalibrator(slope=gamma, intercept=_intercept_with_offset(y, gamma * margin))


#: Monotone constraints (+1 = risk non-decreasing in the feature) shared by both outcomes: older age
#: (seed 000: OR 1.08/yr for stopping; the evidence sheet's generator gives DR an age OR of 1.03; the age
#: spline terms are non-decreasing in age, so constraining them keeps the risk monotone in age), a triplet
#: (seed 000: OR 4.84 for stopping) and worse performance status (clinically never protective).
MONOTONE_INCREASING = ("age", "age_rcs1", "age_rcs2", "triplet", "ecog")


@dataclass(frozen=True)
class BoostedSpec:
    """How to fit a :class:`BoostedModel`: shallow, shrunken trees suited to small tabular data."""

    name: ClassVar[str] = "xgboost"
    family: ClassVar[str] = "xgboost"
    params: dict[str, Any] = field(
        default_factory=lambda: {
            "objective": "binary:logistic",
            "eta": 0.05,
            "max_depth": 3,
            "min_child_weight": 5,
            "subsample": 0.8,
            "colsample_bynode": 0.8,
            "lambda": 5.0,
            "tree_method": "hist",
            "max_bin": 64,
            "nthread": 2,
        }
    )
    num_boost_round: int = 200
    monotone_increasing: tuple[str, ...] = MONOTONE_INCREASING
    calibration_folds: int = 5

    #: The encoded features the trees may split on (counted as parameters: a lower bound of what a tree
    #: ensemble estimates).
    columns: ClassVar[tuple[str, ...]] = FEATURE_NAMES

    def _train(self, X: np.ndarray, y: np.ndarray, seed: int) -> tuple[xgb.Booster, dict[str, Any]]:
        constraints = tuple(int(name in self.monotone_increasing) for name in FEATURE_NAMES)
        params = {**self.params, "seed": seed, "monotone_constraints": str(constraints).replace(" ", "")}
        dtrain = xgb.DMatrix(X, label=y, feature_names=list(FEATURE_NAMES))
        return xgb.train(params, dtrain, num_boost_round=self.num_boost_round), params

    def fit_margin(
        self, X: np.ndarray, y: np.ndarray, *, seed: int = 0
    ) -> Callable[[np.ndarray], np.ndarray]:
        """The margin function of a booster fitted on these rows (XGBoost's own predictor: no SHAP tables
        are compiled for a model that only scores held-out rows)."""
        booster, _ = self._train(X, y, seed)
        return lambda rows: booster.inplace_predict(rows, predict_type="margin").astype(np.float64)

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, seed: int = 0, groups: np.ndarray | None = None
    ) -> tuple[BoostedModel, PlattCalibrator]:
        """The booster on all rows, Platt-calibrated on out-of-fold margins of the same configuration."""
        booster, params, calibrator = self.fit_booster(X, y, seed=seed, groups=groups)
        return BoostedModel.of(booster, params), calibrator

    def fit_booster(
        self, X: np.ndarray, y: np.ndarray, *, seed: int = 0, groups: np.ndarray | None = None
    ) -> tuple[xgb.Booster, dict[str, Any], PlattCalibrator]:
        """:meth:`fit` without compiling the SHAP tables: the booster, its parameters and its calibration
        (what an uncertainty-interval refit keeps)."""
        groups = np.arange(len(y)) if groups is None else groups
        folds = StratifiedGroupKFold(self.calibration_folds, shuffle=True, random_state=seed)
        oof = np.empty(len(y))
        for train, test in folds.split(X, y, groups):
            oof[test] = self.fit_margin(X[train], y[train], seed=seed)(X[test])
        booster, params = self._train(X, y, seed)
        return booster, params, fit_platt(oof, y)
