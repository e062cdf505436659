"""Solve each setting's outcome intercepts for its cited target rates.

The covariate effects are those of the relapsed/refractory model (evidence sheet 1.3, seed
``000_ad520cc8950628f0.txt``); only the two intercepts change per setting. They are solved once on a large
generated case mix and stored in :mod:`training.cohort.params`; rerun with::

    .venv/bin/python -m training.cohort.calibrate

Relapsed/refractory is not solved: it keeps the sheet's intercepts, which reproduce seed 000.
"""

from __future__ import annotations

from scipy.optimize import brentq

from training.cohort.generate import generate_cohort
from training.cohort.outcomes import Covariates, outcome_probabilities
from training.cohort.params import DEFAULT_PARAMS, CohortParams

CALIBRATED_SETTINGS = ("newly_diagnosed", "maintenance", "al_amyloidosis")
CALIBRATION_N = 400_000
CALIBRATION_SEED = 0


def solve_intercepts(
    setting: str, n: int = CALIBRATION_N, seed: int = CALIBRATION_SEED, params: CohortParams = DEFAULT_PARAMS
) -> tuple[float, float]:
    """Intercepts ``(dr, disc)`` at which the setting's mean true probabilities equal its targets.

    The DR intercept is solved first (DR does not depend on discontinuation), then the discontinuation
    intercept with DR integrated out, both by Brent's method on the mean over ``n`` generated lines.
    """
    sp = params.setting(setting)
    x = Covariates.from_frame(generate_cohort(n, seed, settings=[setting], params=params))
    model = params.outcome

    def dr_gap(a: float) -> float:
        return float(outcome_probabilities(x, model, a, 0.0).dose_reduced.mean()) - sp.target_dr.value

    dr = brentq(dr_gap, -15.0, 15.0, xtol=1e-6)

    def disc_gap(a: float) -> float:
        return float(outcome_probabilities(x, model, dr, a).discontinued.mean()) - sp.target_disc.value

    return dr, brentq(disc_gap, -15.0, 15.0, xtol=1e-6)


def main() -> None:
    """Print the solved intercepts of every calibrated setting, rounded as stored in ``params``."""
    for setting in CALIBRATED_SETTINGS:
        dr, disc = solve_intercepts(setting)
        print(f"{setting}: dr_intercept={dr:.4f} disc_intercept={disc:.4f}")


if __name__ == "__main__":
    main()
