"""Fitting the Platt calibrator (:class:`features.model.calibration.PlattCalibrator`) on OOF margins."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from features.model.calibration import PlattCalibrator


def fit_platt(margin: np.ndarray, y: np.ndarray) -> PlattCalibrator:
    """An unpenalised one-feature logistic regression of ``y`` on out-of-fold ``margin``."""
    fit = LogisticRegression(C=np.inf).fit(np.asarray(margin, dtype=float).reshape(-1, 1), y)
    return PlattCalibrator(slope=float(fit.coef_[0, 0]), intercept=float(fit.intercept_[0]))
