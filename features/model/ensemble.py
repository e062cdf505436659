"""The bootstrap refits behind a served risk's uncertainty interval, in a native format.

Training (``training.pipeline``) refits the *chosen* specification (same family, columns, shrinkage rule
and calibration) on every bootstrap resample of patients, with the development encoder fixed (same spline
knots and imputation values), so every refit scores the same encoded row. A logistic refit with its Platt
calibration is one affine map of the encoded features::

    calibrated logit_b(x) = slope_b * (c_b + sum_j w_bj (x_j - m_bj) / s_bj) + a_b = x . W_b + w0_b

so the B refits collapse to a ``(B, features)`` weight matrix and ``B`` intercepts (``ensemble.json``):
``logits(X) = X @ W.T + w0``, one matrix product for every refit of every row. The spread the interval
needs, the standard deviation of a row's B logits, has the exact closed form ``sqrt(x~ S x~')`` with ``S``
the covariance of the refits' ``(w0, W)`` and ``x~ = (1, x)``: O(features²) per row whatever ``B``.

Their mean, ``X @ W.mean(0) + w0.mean()``, is one matrix-vector product. A boosted model's refits are
:class:`features.model.boosted_ensemble.BoostedEnsemble`, with the same interface. The interval made of
them (``features.model.riskmodel.RiskModel.interval_encoded``) is described there.
References: Riley RD, Collins GS. Biom J 2023;65:2200302 (the bootstrap models' spread of an individual's
predictions); Efron B, Tibshirani RJ. An Introduction to the Bootstrap, 1993, chapters 12-13 (the
standard bootstrap interval).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.encoding import FEATURE_NAMES
from features.errors import ArtifactError
from features.model.calibration import PlattCalibrator
from features.model.estimators import LogisticModel

FILE = "ensemble.json"


@dataclass(frozen=True)
class LinearEnsemble:
    """``B`` calibrated logistic refits as weights on the encoded features: ``logit = X @ W.T + w0``."""

    weights: np.ndarray  # (B, features)
    intercepts: np.ndarray  # (B,)

    @classmethod
    def of(cls, fits: Sequence[tuple[LogisticModel, PlattCalibrator]]) -> LinearEnsemble:
        """Fold each refit's standardisation and calibration into one weight vector and intercept."""
        weights, intercepts = [], []
        for model, calibrator in fits:
            w = model.coef / model.scale
            weights.append(calibrator.slope * w)
            intercepts.append(calibrator.slope * (model.intercept - model.mean @ w) + calibrator.intercept)
        return cls(np.array(weights).reshape(-1, len(FEATURE_NAMES)), np.array(intercepts))

    @property
    def size(self) -> int:
        """The number of refits ``B``."""
        return len(self.intercepts)

    def logits(self, X: np.ndarray) -> np.ndarray:
        """(rows, B) calibrated log-odds of encoded rows under every refit."""
        return X @ self.weights.T + self.intercepts

    def rms_deviation(self, X: np.ndarray, logit: np.ndarray) -> np.ndarray:
        """(rows,) root-mean-square deviation of each row's refit logits from ``logit`` (its served logit):
        ``sqrt(logit_sd² + (logit_mean - logit)²)``, in closed form."""
        return np.hypot(self.logit_sd(X), self.logit_mean(X) - logit)

    def recalibrated(self, intercept: float | np.ndarray, slope: float | np.ndarray) -> LinearEnsemble:
        """Every refit followed by the logistic recalibration ``intercept + slope * logit`` (a model update,
        ``training.updating``; one pair for all refits, or arrays of ``B``, one per refit):
        ``W' = slope W``, ``w0' = intercept + slope w0``."""
        slope, intercept = np.asarray(slope, dtype=float), np.asarray(intercept, dtype=float)
        return LinearEnsemble(slope[..., None] * self.weights, intercept + slope * self.intercepts)

    def logit_mean(self, X: np.ndarray) -> np.ndarray:
        """(rows,) mean of each encoded row's calibrated log-odds over the refits, in closed form
        (``X @ W.mean(0) + w0.mean()``): equal to ``logits(X).mean(axis=1)`` within rounding."""
        return X @ self._mean_weights + self._mean_intercept

    @functools.cached_property
    def _mean_weights(self) -> np.ndarray:
        return self.weights.mean(axis=0)

    @functools.cached_property
    def _mean_intercept(self) -> float:
        return float(self.intercepts.mean())

    @functools.cached_property
    def covariance(self) -> np.ndarray:
        """(1 + features)² covariance of the refits' intercepts and weights (``ddof=1``)."""
        return np.cov(np.column_stack([self.intercepts, self.weights]), rowvar=False)

    def logit_sd(self, X: np.ndarray) -> np.ndarray:
        """(rows,) standard deviation (``ddof=1``) of each encoded row's calibrated log-odds over the refits,
        in closed form: equal to ``logits(X).std(axis=1, ddof=1)`` within rounding."""
        S = self.covariance
        variance = S[0, 0] + 2 * X @ S[0, 1:] + np.einsum("ij,ij->i", X @ S[1:, 1:], X)
        return np.sqrt(np.maximum(variance, 0.0))

    def save(self, directory: Path) -> list[str]:
        """Write ``ensemble.json``; return the file names written."""
        state = {
            "family": "logistic",
            "feature_names": list(FEATURE_NAMES),
            "weights": self.weights.tolist(),
            "intercepts": self.intercepts.tolist(),
        }
        (directory / FILE).write_text(json.dumps(state))
        return [FILE]

    @classmethod
    def load(cls, directory: Path) -> LinearEnsemble:
        """Rebuild from ``ensemble.json``; :class:`ArtifactError` if it does not fit the features."""
        state = json.loads((directory / FILE).read_text())
        if state.get("family") != "logistic" or state.get("feature_names") != list(FEATURE_NAMES):
            raise ArtifactError(f"{FILE} does not hold logistic refits on this version's features")
        weights = np.array(state["weights"], dtype=float)
        intercepts = np.array(state["intercepts"], dtype=float)
        if weights.shape != (len(intercepts), len(FEATURE_NAMES)) or not len(intercepts):
            raise ArtifactError(f"{FILE} has weights of shape {weights.shape} for {len(intercepts)} refits")
        return cls(weights, intercepts)
