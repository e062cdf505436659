"""Platt scaling on the margin: one calibrator per model, fitted on out-of-fold margins.

The calibrated log-odds are ``slope * margin + intercept``, an affine map, so SHAP values on the margin
scale multiplied by ``slope`` (base value: ``slope * base + intercept``) add up exactly to the calibrated
logit. Calibrating on the probability instead (what ``CalibratedClassifierCV`` does for an XGBoost model,
which has no ``decision_function``), or averaging a 5-fold ensemble, breaks that additivity
(``shared/reference/pitfalls.md``). Platt, in Advances in Large Margin Classifiers, MIT Press 1999.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression


@dataclass(frozen=True)
class PlattCalibrator:
    """``calibrated logit = slope * margin + intercept``."""

    slope: float
    intercept: float

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        """Fit an unpenalised one-feature logistic regression of ``y`` on out-of-fold ``margin``."""
        fit = LogisticRegression(C=np.inf).fit(np.asarray(margin, dtype=float).reshape(-1, 1), y)
        return cls(slope=float(fit.coef_[0, 0]), intercept=float(fit.intercept_[0]))

    def logit(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated log-odds."""
        return self.slope * margin + self.intercept

    def to_dict(self) -> dict[str, float]:
        """JSON state."""
        return {"method": "platt-on-margin", "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_dict(cls, state: dict) -> PlattCalibrator:
        """Rebuild from :meth:`to_dict` output."""
        return cls(slope=float(state["slope"]), intercept=float(state["intercept"]))
