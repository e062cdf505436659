"""The two fitted model families as loaded for prediction, each saved in a native format.

Both give a *margin* (log-odds before calibration) and exact SHAP contributions on that scale
(``training.estimators`` fits them):

- :class:`LogisticModel`: logistic regression on standardised features. Its SHAP values are exact and
  closed-form for independent features: ``phi_j = w_j * z_j`` with ``z`` standardised on the training
  data, base value = intercept (Lundberg & Lee, NeurIPS 2017, linear SHAP). Saved as JSON coefficients.
- :class:`BoostedModel`: gradient-boosted trees (XGBoost). Margins and TreeSHAP values come from the
  booster compiled to lookup tables (:mod:`features.model.treetable`: XGBoost's own per-tree
  ``pred_contribs``, identical to ``shap.TreeExplainer``), so they add up exactly in float64 and cost
  microseconds per row. Saved as XGBoost UBJSON plus JSON.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xgboost as xgb

from features.encoding import FEATURE_NAMES
from features.errors import ArtifactError
from features.model.treetable import TreeTables


class Estimator(ABC):
    """A fitted model family: margin, SHAP contributions on the margin scale, native save."""

    family: ClassVar[str]

    @abstractmethod
    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds before calibration, equal to the SHAP base value plus the SHAP values."""

    def bulk_margin(self, X: np.ndarray) -> np.ndarray:
        """:meth:`margin` of many rows by the family's fastest path (equal within float rounding)."""
        return self.margin(X)

    @abstractmethod
    def contributions(self, X: np.ndarray) -> tuple[float, np.ndarray]:
        """The SHAP base value and the (n, features) SHAP values on the margin scale."""

    @abstractmethod
    def save(self, directory: Path) -> list[str]:
        """Write the native files into ``directory``; return their names."""


@dataclass(frozen=True)
class LogisticModel(Estimator):
    """Fitted logistic regression: ``margin = intercept + sum_j coef_j * (x_j - mean_j) / scale_j``."""

    family: ClassVar[str] = "logistic"
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    C: float

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds before calibration."""
        return self.intercept + ((X - self.mean) / self.scale) @ self.coef

    def bulk_margin(self, X: np.ndarray) -> np.ndarray:
        """:meth:`margin` of many rows as one matrix-vector product on the raw features."""
        weights = self.coef / self.scale
        return (self.intercept - self.mean @ weights) + X @ weights

    def contributions(self, X: np.ndarray) -> tuple[float, np.ndarray]:
        """Exact linear SHAP values on the margin scale: ``base + phi.sum(1) == margin(X)``."""
        return self.intercept, ((X - self.mean) / self.scale) * self.coef

    def save(self, directory: Path) -> list[str]:
        """Write ``estimator.json``; return the file names written."""
        state = {
            "family": self.family,
            "feature_names": list(FEATURE_NAMES),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "C": self.C,
        }
        (directory / "estimator.json").write_text(json.dumps(state, indent=1))
        return ["estimator.json"]

    @classmethod
    def load(cls, directory: Path) -> LogisticModel:
        """Rebuild from ``estimator.json``."""
        s = _read_state(directory, cls.family)
        return cls(
            mean=np.array(s["mean"]),
            scale=np.array(s["scale"]),
            coef=np.array(s["coef"]),
            intercept=float(s["intercept"]),
            C=float(s["C"]),
        )


@dataclass(frozen=True)
class BoostedModel(Estimator):
    """Fitted XGBoost booster and its compiled tables (margin = raw log-odds output)."""

    family: ClassVar[str] = "xgboost"
    booster: xgb.Booster
    params: dict[str, Any]
    tables: TreeTables

    @classmethod
    def of(cls, booster: xgb.Booster, params: dict[str, Any]) -> BoostedModel:
        """The model of a trained ``booster`` (trained on :data:`FEATURE_NAMES`), its tables compiled."""
        return cls(booster=booster, params=params, tables=TreeTables.compile(booster))

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds before calibration: SHAP base value plus the sum of the SHAP values, in float64 (also
        the fastest bulk path: the tables cost less CPU than XGBoost's own float32 prediction)."""
        return self.tables.margin(X)

    def contributions(self, X: np.ndarray) -> tuple[float, np.ndarray]:
        """TreeSHAP values on the margin scale and the (constant) base value."""
        return self.tables.base, self.tables.contributions(X)

    def save(self, directory: Path) -> list[str]:
        """Write ``booster.ubj`` (XGBoost's native UBJSON) and ``estimator.json``."""
        (directory / "booster.ubj").write_bytes(bytes(self.booster.save_raw(raw_format="ubj")))
        state = {"family": self.family, "feature_names": list(FEATURE_NAMES), "params": self.params}
        (directory / "estimator.json").write_text(json.dumps(state, indent=1))
        return ["estimator.json", "booster.ubj"]

    @classmethod
    def load(cls, directory: Path) -> BoostedModel:
        """Rebuild from ``booster.ubj`` and ``estimator.json``."""
        s = _read_state(directory, cls.family)
        booster = xgb.Booster(params={"nthread": s["params"].get("nthread", 2)})
        booster.load_model(bytearray((directory / "booster.ubj").read_bytes()))
        if booster.feature_names != list(FEATURE_NAMES):
            raise ArtifactError("booster.ubj was trained on other features than this version of lenrisk's")
        return cls.of(booster, s["params"])


FAMILIES: dict[str, type[LogisticModel] | type[BoostedModel]] = {
    "logistic": LogisticModel,
    "xgboost": BoostedModel,
}


def load_estimator(directory: Path, family: str) -> LogisticModel | BoostedModel:
    """Load the estimator of ``family`` saved in ``directory``."""
    if family not in FAMILIES:
        raise ArtifactError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES[family].load(directory)


def _read_state(directory: Path, family: str) -> dict[str, Any]:
    state = json.loads((directory / "estimator.json").read_text())
    if state.get("family") != family:
        raise ArtifactError(f"estimator.json holds a {state.get('family')!r} model, not {family!r}")
    if state.get("feature_names") != list(FEATURE_NAMES):
        raise ArtifactError("estimator.json was trained on other features than this version of lenrisk's")
    return state
