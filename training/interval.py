"""The refits an uncertainty interval is made of, one per bootstrap resample of the validation.

The optimism bootstrap (:mod:`training.validation`) already repeats the whole procedure on every resample;
carrying those B models (each with its own encoder, spline knots included) and scoring all of them per
request would be heavy. Instead, in each resample the candidate *that resample's procedure chose* is
refitted on the resample with the development encoder fixed, so every refit is a logistic model of the
same encoded features and the B refits collapse to one weight matrix
(:class:`features.model.ensemble.LinearEnsemble`). For the ``null``, ``setting`` and ``parsimonious``
candidates, whose columns do not depend on fitted knots or imputation values, the refit *is* the
resample's model; only the ``full`` model's spline and imputed columns differ. Keeping each resample's own
choice carries the selection uncertainty: refitting the development's choice everywhere covered the true
risks less often at 300 lines (docs/training.md, "Uncertainty intervals"). A resample that chose boosted
trees for a linear champion refits the champion's candidate instead. A boosted champion gets no ensemble
yet (its model has no interval).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.model.calibration import PlattCalibrator
from features.model.ensemble import LinearEnsemble
from features.model.estimators import LogisticModel
from features.model.riskmodel import RiskModel
from training.candidates import spec


def refit(
    chosen: str, champion: str, X: np.ndarray, y: np.ndarray, *, seed: int, groups: np.ndarray
) -> tuple[LogisticModel, PlattCalibrator] | None:
    """The resample's candidate ``chosen`` (or the ``champion``'s, if ``chosen`` is not linear) refitted on
    the resample's encoded rows ``X`` (development encoder); None for a boosted champion."""
    if spec(champion).family != "logistic":
        return None
    name = chosen if spec(chosen).family == "logistic" else champion
    return spec(name).fit(X, y, seed=seed, groups=groups)


def ensemble(fits: list[tuple[LogisticModel, PlattCalibrator] | None]) -> LinearEnsemble | None:
    """The refits of every resample as one :class:`LinearEnsemble` (None without refits)."""
    kept = [f for f in fits if f is not None]
    return LinearEnsemble.of(kept) if kept else None


def summary(model: RiskModel, frame: pd.DataFrame) -> dict[str, float]:
    """``interval_refits`` and the median and 90th-percentile ``interval_width`` of the development lines
    (logged to MLflow and kept in the model's info); empty without an interval."""
    if not model.has_interval:
        return {}
    lower, upper = model.interval_encoded(model.encode(frame))
    median, p90 = np.percentile(upper - lower, [50, 90])
    return {
        "interval_refits": model.ensemble.size,
        "interval_width_median": float(median),
        "interval_width_p90": float(p90),
    }
