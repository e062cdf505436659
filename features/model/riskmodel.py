"""A trained risk model: encoding -> estimator margin -> Platt calibration -> SHAP, and its native artifact.

This is the one scoring kernel. Training builds and evaluates it, the MLflow pyfunc wraps it, and the
service's predictor, batch scoring and Spark call it, so a record gets the same probability and explanation
everywhere.

Artifact layout (a directory; no pickles)::

    model.json       outcome, family, calibrator, lenrisk version, training summary
    encoder.json     fitted feature encoding (features.encoding)
    estimator.json   coefficients (logistic) or parameters (xgboost)
    booster.ubj      XGBoost native model (xgboost only)
    ensemble.json    the bootstrap refits behind the uncertainty interval: logistic weights
                     (features.model.ensemble) or, for a boosted model, calibrations and booster files
                     (features.model.boosted_ensemble); absent from artifacts registered before intervals:
                     such a model loads with no interval
    ensemble/*.ubj   the boosted refits' boosters, XGBoost native (boosted models only)
    profile.json     the development data's distribution per field, for drift monitoring (features.drift;
                     absent from artifacts registered before it)
    digests.json     SHA-256 of every file above, verified on load
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy.special import expit

from features.drift import FILE as PROFILE_FILE
from features.drift import DriftProfile
from features.encoding import FEATURE_NAMES, FeatureEncoder
from features.errors import ArtifactError
from features.model.boosted_ensemble import BoostedEnsemble
from features.model.calibration import PlattCalibrator
from features.model.ensemble import FILE as ENSEMBLE_FILE
from features.model.ensemble import LinearEnsemble
from features.model.estimators import BoostedModel, LogisticModel, load_estimator

FORMAT = "lenrisk.risk-model"
VERSION = 1
#: The nominal coverage of every uncertainty interval.
INTERVAL_LEVEL = 0.95
_Z = NormalDist().inv_cdf(0.5 + INTERVAL_LEVEL / 2)


@dataclass(frozen=True)
class Explanation:
    """SHAP values on the calibrated log-odds scale: ``base + values.sum(1) == logit(probability)``."""

    base: float
    values: np.ndarray  # (n, len(FEATURE_NAMES))
    logit: np.ndarray  # (n,)

    @property
    def probability(self) -> np.ndarray:
        """The calibrated probability."""
        return expit(self.logit)


@dataclass(frozen=True)
class RiskModel:
    """Encoder + estimator + calibrator for one outcome (``discontinuation`` or ``dose_reduction``)."""

    outcome: str
    encoder: FeatureEncoder
    estimator: LogisticModel | BoostedModel
    calibrator: PlattCalibrator
    info: dict[str, Any] = field(default_factory=dict)
    ensemble: LinearEnsemble | BoostedEnsemble | None = None  # bootstrap refits; None: no interval
    profile: DriftProfile | None = None  # development distribution (features.drift); None: registered before

    @property
    def family(self) -> str:
        """``logistic`` or ``xgboost``."""
        return self.estimator.family

    @property
    def has_interval(self) -> bool:
        """Whether the artifact carries the bootstrap refits an uncertainty interval is made of."""
        return self.ensemble is not None

    def encode(self, rows: Mapping[str, Any]) -> np.ndarray:
        """Encoded feature matrix of validated contract rows."""
        return self.encoder.transform(rows)

    def logit_of(self, X: np.ndarray) -> np.ndarray:
        """Calibrated log-odds of encoded rows."""
        return self.calibrator.logit(self.estimator.margin(X))

    def bulk_logit(self, X: np.ndarray) -> np.ndarray:
        """Calibrated log-odds of many encoded rows, without explanations (estimator's bulk margin)."""
        return self.calibrator.logit(self.estimator.bulk_margin(X))

    def bulk_probability(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability of many encoded rows, without explanations (estimator's bulk margin)."""
        return expit(self.bulk_logit(X))

    def probability(self, rows: Mapping[str, Any]) -> np.ndarray:
        """Calibrated probability of validated contract rows."""
        return expit(self.logit_of(self.encode(rows)))

    def interval_encoded(
        self, X: np.ndarray, *, logit: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds (calibrated probabilities) of the :data:`INTERVAL_LEVEL` uncertainty
        interval of encoded rows; NaN without an ensemble (:attr:`has_interval`). ``logit``: the rows'
        calibrated log-odds (:meth:`logit_of`, an explanation's ``logit`` or :meth:`bulk_logit`) if the
        caller has them; computed otherwise.

        On the log-odds scale, centred on the served risk: ``logit ± z · rms``, z the standard normal
        quantile of the level, ``rms`` the root-mean-square deviation of the row's logits under the ``B``
        bootstrap refits from the served logit, ``sqrt(SD² + (mean - logit)²)``
        (``rms_deviation``, closed form for :class:`LinearEnsemble`, one pass for :class:`BoostedEnsemble`):
        the bootstrap estimate of the served logit's root-mean-square error, its SD and its bias (Efron &
        Tibshirani 1993, chapters 6 and 10), mapped to probabilities. Where the refits agree on average with
        the served logit it is the standard bootstrap interval (logit ± z · SD, chapters 12-13); where they
        do not, as when many of a small sample's resamples choose a simpler candidate than its development
        did, it widens by that disagreement instead of moving away from the served risk, which it always
        contains. Chosen over the SD alone, the bias-corrected centre and the refits' percentiles by coverage
        of the generator's true risks per outcome at 300 and 1,000 lines (docs/training.md, "Uncertainty
        intervals").

        Estimation uncertainty only: not the patient's outcome, and not the extrapolation to inputs the
        model never saw (:meth:`interval` leaves those out). No applicability check here: encoded rows no
        longer show their raw values.
        """
        if self.ensemble is None:
            nan = np.full(X.shape[0], np.nan)
            return nan, nan.copy()
        logit = self.logit_of(X) if logit is None else logit
        half = _Z * self.ensemble.rms_deviation(X, logit)
        return expit(logit - half), expit(logit + half)

    def outside_training(self, rows: Mapping[str, Any]) -> np.ndarray:
        """Per row: a numeric input outside the training range or a category no training line had (the
        service's ``outside_training_range`` and ``not_seen_in_training`` warnings; unknown values are
        imputed as in training and do not count)."""
        outside = np.zeros(len(rows["age"]), dtype=bool)
        for _, kind, mask in self.encoder.applicability(rows):
            if kind != "unknown":
                outside |= mask
        return outside

    def interval(
        self,
        rows: Mapping[str, Any],
        *,
        encoded: np.ndarray | None = None,
        logit: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`interval_encoded` of validated contract rows, NaN for rows :meth:`outside_training`: there
        the risk is an extrapolation, and the refits, which share the model's form, would agree on it and
        give a deceptively narrow interval (e.g. a setting no training line had gets the same zero
        coefficient in every refit). ``encoded`` and ``logit``: the rows already encoded and their calibrated
        logit (:meth:`logit_of`, an explanation's ``logit`` or :meth:`bulk_logit`), if the caller has them."""
        X = self.encode(rows) if encoded is None else encoded
        lower, upper = self.interval_encoded(X, logit=logit)
        outside = self.outside_training(rows)
        lower[outside] = np.nan
        upper[outside] = np.nan
        return lower, upper

    def explain_encoded(self, X: np.ndarray) -> Explanation:
        """SHAP contributions of encoded rows, scaled onto the calibrated logit (exactly additive)."""
        base, phi = self.estimator.contributions(X)
        a, b = self.calibrator.slope, self.calibrator.intercept
        values = a * phi
        cal_base = a * base + b
        return Explanation(base=cal_base, values=values, logit=cal_base + values.sum(axis=1))

    def explain(self, rows: Mapping[str, Any]) -> Explanation:
        """SHAP contributions of validated contract rows on the calibrated logit scale."""
        return self.explain_encoded(self.encode(rows))

    def save(self, directory: Path) -> str:
        """Write the artifact into ``directory``; return its digest (SHA-256 of ``digests.json``)."""
        directory.mkdir(parents=True, exist_ok=True)
        model = {
            "format": FORMAT,
            "version": VERSION,
            "outcome": self.outcome,
            "family": self.family,
            "feature_names": list(FEATURE_NAMES),
            "calibrator": self.calibrator.to_dict(),
            "info": self.info,
        }
        (directory / "model.json").write_text(json.dumps(model, indent=1))
        (directory / "encoder.json").write_text(json.dumps(self.encoder.to_dict(), indent=1))
        files = ["model.json", "encoder.json", *self.estimator.save(directory)]
        if self.ensemble is not None:
            files += self.ensemble.save(directory)
        if self.profile is not None:
            files += self.profile.save(directory)
        digests = {name: _sha256(directory / name) for name in sorted(files)}
        (directory / "digests.json").write_text(json.dumps(digests, indent=1))
        return _sha256(directory / "digests.json")

    @classmethod
    def load(cls, directory: Path, *, expected_digest: str | None = None) -> RiskModel:
        """Load and verify an artifact written by :meth:`save`.

        Every file's SHA-256 must match ``digests.json``; with ``expected_digest`` (e.g. from the model
        registry) ``digests.json`` itself must match it too. Raises :class:`ArtifactError` otherwise.
        """
        directory = Path(directory)
        try:
            digests = json.loads((directory / "digests.json").read_text())
            if expected_digest is not None and _sha256(directory / "digests.json") != expected_digest:
                raise ArtifactError("digests.json does not match the digest recorded for this model version")
            for name, digest in digests.items():
                if _sha256(directory / name) != digest:
                    raise ArtifactError(f"{name} does not match its SHA-256 in digests.json")
            model = json.loads((directory / "model.json").read_text())
        except (OSError, ValueError) as err:
            raise ArtifactError(f"cannot read the model artifact in {directory.name}: {err}") from err
        if model.get("format") != FORMAT or model.get("version") != VERSION:
            raise ArtifactError(f"not a {FORMAT} v{VERSION} artifact")
        if model["feature_names"] != list(FEATURE_NAMES):
            raise ArtifactError("the artifact was trained on other features than this version of lenrisk's")
        encoder = FeatureEncoder.from_dict(json.loads((directory / "encoder.json").read_text()))
        return cls(
            outcome=model["outcome"],
            encoder=encoder,
            estimator=load_estimator(directory, model["family"]),
            calibrator=PlattCalibrator.from_dict(model["calibrator"]),
            info=model.get("info", {}),
            ensemble=_load_ensemble(directory) if ENSEMBLE_FILE in digests else None,
            profile=DriftProfile.load(directory) if PROFILE_FILE in digests else None,
        )


def _load_ensemble(directory: Path) -> LinearEnsemble | BoostedEnsemble:
    """The ensemble of the family ``ensemble.json`` names."""
    family = json.loads((directory / ENSEMBLE_FILE).read_text()).get("family")
    return (BoostedEnsemble if family == "xgboost" else LinearEnsemble).load(directory)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
