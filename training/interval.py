"""The refits an uncertainty interval is made of, one per bootstrap resample of the validation.

The optimism bootstrap (:mod:`training.validation`) already repeats the whole procedure on every resample;
carrying those B models (each with its own encoder, spline knots included) and scoring all of them per
request would be heavy. Instead, in each resample the candidate *that resample's procedure chose* is
refitted on the resample with the development encoder fixed, so every refit scores the same encoded row.
For a linear champion the refits are logistic models that collapse to one weight matrix
(:class:`features.model.ensemble.LinearEnsemble`). For the ``null``, ``setting`` and ``parsimonious``
candidates, whose columns do not depend on fitted knots or imputation values, the refit *is* the
resample's model; only the ``full`` model's spline and imputed columns differ. Keeping each resample's own
choice carries the selection uncertainty: refitting the development's choice everywhere covered the true
risks less often at 300 lines (docs/training.md, "Uncertainty intervals"). A resample whose choice is of
another family than the champion refits the champion's candidate instead: a linear champion's resample
that chose boosted trees refits the linear candidate, and a boosted champion's refits are always boosted
trees (the one boosted candidate, Platt-calibrated out of fold as the champion is), carried as B native
boosters and scored as one stacked table (:class:`features.model.boosted_ensemble.BoostedEnsemble`).
Boosted refits are kept for the first :data:`BOOSTED_REFITS` resamples only: each costs a booster fit and
out-of-fold calibration (seconds to minutes at the tens of thousands of lines a boosted champion needs) and
adds ~3 µs per refit to every served row, while 50 refits covered the true risks as often as 200 for the
linear family (docs/training.md, "Uncertainty intervals").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xgboost as xgb

from features.model.boosted_ensemble import BoostedEnsemble
from features.model.calibration import PlattCalibrator
from features.model.ensemble import LinearEnsemble
from features.model.estimators import LogisticModel
from features.model.riskmodel import RiskModel
from training.candidates import spec
from training.estimators import BoostedSpec

Refit = tuple[LogisticModel, PlattCalibrator] | tuple[xgb.Booster, PlattCalibrator]
#: How many resamples (the first ones) give a boosted champion a refit.
BOOSTED_REFITS = 50


def refit(
    chosen: str,
    champion: str,
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    groups: np.ndarray,
    resample: int = 1,
) -> Refit | None:
    """The resample's candidate ``chosen`` (or the ``champion``'s, if ``chosen`` is of another family)
    refitted on the resample's encoded rows ``X`` (development encoder): a logistic model or a booster,
    with its calibration; None for a boosted champion beyond resample number :data:`BOOSTED_REFITS`."""
    name = chosen if spec(chosen).family == spec(champion).family else champion
    candidate = spec(name)
    if isinstance(candidate, BoostedSpec):
        if resample > BOOSTED_REFITS:
            return None
        booster, _, calibrator = candidate.fit_booster(X, y, seed=seed, groups=groups)
        return booster, calibrator
    return candidate.fit(X, y, seed=seed, groups=groups)


def ensemble(fits: list[Refit | None]) -> LinearEnsemble | BoostedEnsemble | None:
    """The refits of the resamples as one ensemble of the champion's family (None without refits)."""
    fits = [f for f in fits if f is not None]
    if not fits:
        return None
    if isinstance(fits[0][0], xgb.Booster):
        return BoostedEnsemble.of(fits)
    return LinearEnsemble.of(fits)


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
