"""Platt scaling on the margin, as applied at prediction time (fitted by ``training.calibration``).

The calibrated log-odds are ``slope * margin + intercept``, an affine map, so SHAP values on the margin
scale multiplied by ``slope`` (base value: ``slope * base + intercept``) add up exactly to the calibrated
logit. Calibrating on the probability instead (what ``CalibratedClassifierCV`` does for an XGBoost model,
which has no ``decision_function``), or averaging a 5-fold ensemble, breaks that additivity
(``shared/reference/pitfalls.md``). Platt, in Advances in Large Margin Classifiers, MIT Press 1999.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlattCalibrator:
    """``calibrated logit = slope * margin + intercept``."""

    slope: float
    intercept: float

    def logit(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated log-odds."""
        return self.slope * margin + self.intercept

    def to_dict(self) -> dict[str, float | str]:
        """JSON state."""
        return {"method": "platt-on-margin", "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_dict(cls, state: dict) -> PlattCalibrator:
        """Rebuild from :meth:`to_dict` output."""
        return cls(slope=float(state["slope"]), intercept=float(state["intercept"]))
