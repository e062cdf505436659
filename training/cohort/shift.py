"""A population unlike the development one: what external validation, model updating and drift monitoring
are tested on.

Two shifts, the commonest in practice: a different baseline risk (both outcomes' intercepts moved in every
setting; changing event rates drive most calibration drift of clinical models, Davis SE et al. JAMIA
2017;24:1052) and an older population (every setting's ages moved, mean and truncation range). Covariate
effects are unchanged, so a recalibration of the intercept is the right update for the first shift alone.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from features.schema import COLUMNS_BY_NAME
from training.cohort.params import DEFAULT_PARAMS, Cited, CohortParams, SettingParams

_AGE = COLUMNS_BY_NAME["age"]


def shifted(
    params: CohortParams = DEFAULT_PARAMS, *, log_odds: float = 0.0, age_years: float = 0.0
) -> CohortParams:
    """``params`` with both outcomes' intercepts moved by ``log_odds`` and ages by ``age_years`` (mean and
    truncation range, kept within the contract's ages) in every setting."""
    if log_odds == 0 and age_years == 0:
        return params
    source = f"assumption: shifted population (log-odds {log_odds:+g}, age {age_years:+g} years)"
    return replace(params, settings=tuple(_shift(s, log_odds, age_years, source) for s in params.settings))


def _shift(s: SettingParams, log_odds: float, age_years: float, source: str) -> SettingParams:
    low, high = s.age_range.value
    return replace(
        s,
        age_mean=Cited(s.age_mean.value + age_years, source),
        age_range=Cited(
            tuple(
                float(a)
                for a in np.clip([low, high], _AGE.minimum - age_years, _AGE.maximum - age_years) + age_years
            ),
            source,
        ),
        dr_intercept=Cited(s.dr_intercept.value + log_odds, source),
        disc_intercept=Cited(s.disc_intercept.value + log_odds, source),
    )
