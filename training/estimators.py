"""How the two candidate families are fitted on encoded features (the fitted models:
:mod:`features.model.estimators`).

- :class:`LogisticSpec`: L2-penalised logistic regression on standardised features, penalty chosen by
  inner cross-validated log loss (scikit-learn ``LogisticRegressionCV``).
- :class:`BoostedSpec`: gradient-boosted trees (XGBoost) with monotone constraints where the clinical
  direction is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import xgboost as xgb
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

from features.encoding import FEATURE_NAMES
from features.model.estimators import BoostedModel, LogisticModel

#: Monotone constraints (+1 = risk non-decreasing in the feature) shared by both outcomes: older age
#: (seed 000: OR 1.08/yr for stopping; the evidence sheet's generator gives DR an age OR of 1.03), more
#: agents (seed 000: triplet OR 4.84 for stopping), worse performance status and more comorbidities
#: (clinically never protective; seed 000 found comorbidity near-null, which a flat effect satisfies).
MONOTONE_INCREASING = ("age", "n_agents", "ecog", "cm_count")


@dataclass(frozen=True)
class LogisticSpec:
    """How to fit a :class:`LogisticModel` (penalty grid, inner folds)."""

    name: ClassVar[str] = "logistic"
    Cs: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    inner_folds: int = 3

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int = 0) -> LogisticModel:
        """Standardise, then fit the L2 logistic model with the penalty of best inner CV log loss."""
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale == 0] = 1.0  # a constant feature gets weight 0 anyway; avoid dividing by 0
        folds = StratifiedKFold(self.inner_folds, shuffle=True, random_state=seed)
        fit = LogisticRegressionCV(
            Cs=list(self.Cs),
            cv=folds,
            scoring="neg_log_loss",
            max_iter=2000,
            l1_ratios=(0.0,),
            use_legacy_attributes=False,
        )
        fit.fit((X - mean) / scale, y)
        return LogisticModel(
            mean=mean,
            scale=scale,
            coef=fit.coef_[0].copy(),
            intercept=float(fit.intercept_[0]),
            C=float(fit.C_),
        )


@dataclass(frozen=True)
class BoostedSpec:
    """How to fit a :class:`BoostedModel`: shallow, shrunken trees suited to small tabular data."""

    name: ClassVar[str] = "xgboost"
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

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int = 0) -> BoostedModel:
        """Fit the booster with the monotone constraints, deterministically for ``seed``."""
        constraints = tuple(int(name in self.monotone_increasing) for name in FEATURE_NAMES)
        params = {**self.params, "seed": seed, "monotone_constraints": str(constraints).replace(" ", "")}
        dtrain = xgb.DMatrix(X, label=y, feature_names=list(FEATURE_NAMES))
        booster = xgb.train(params, dtrain, num_boost_round=self.num_boost_round)
        return BoostedModel.of(booster, params)
