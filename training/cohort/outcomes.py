"""The joint outcome model: dose reduction first, then discontinuation for toxicity given it.

Seed 000 (``000_ad520cc8950628f0.txt``) found that most stops for toxicity followed a dose reduction, and
the evidence sheet's section 1.3 shows its rates, odds ratios and AUC are only reproduced when the two
outcomes are linked: ``P(DR)`` depends on sex, age and triplet; ``P(disc)`` on age, triplet and DR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from features.schema import COMORBIDITY_COLUMNS
from training.cohort.params import TRIPLET_OR_MORE, OutcomeModel


@dataclass(frozen=True)
class Covariates:
    """The record fields the outcome model uses, as arrays of one length."""

    age: np.ndarray
    male: np.ndarray
    triplet: np.ndarray
    n_comorbidities: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Covariates:
        """Read the covariates from contract columns (``age``, ``sex``, ``regimen``, ``cm_*``)."""
        return cls(
            age=frame["age"].to_numpy(float),
            male=(frame["sex"] == "male").to_numpy(),
            triplet=frame["regimen"].isin(TRIPLET_OR_MORE).to_numpy(),
            n_comorbidities=frame[list(COMORBIDITY_COLUMNS)].sum(axis=1).to_numpy(float),
        )


@dataclass(frozen=True)
class OutcomeProbabilities:
    """True probabilities of each line: of DR, and of discontinuation without and with DR."""

    dose_reduced: np.ndarray
    discontinued_without_dr: np.ndarray
    discontinued_with_dr: np.ndarray

    @property
    def discontinued(self) -> np.ndarray:
        """Marginal probability of discontinuation given the covariates (DR integrated out)."""
        p = self.dose_reduced
        return p * self.discontinued_with_dr + (1 - p) * self.discontinued_without_dr


def outcome_probabilities(
    x: Covariates, model: OutcomeModel, dr_intercept: float, disc_intercept: float
) -> OutcomeProbabilities:
    """Probabilities of both outcomes under ``model`` with one setting's intercepts.

    Parameters
    ----------
    x
        Covariates of the lines.
    model
        Shared covariate effects (evidence sheet 1.3 for seed 000).
    dr_intercept, disc_intercept
        The setting's intercepts on the logit scale.
    """
    age = x.age - model.age_center.value
    cm = model.comorbidity.value * x.n_comorbidities
    lp_dr = (
        dr_intercept
        + model.dr_male.value * x.male
        + model.dr_age.value * age
        + model.dr_triplet.value * x.triplet
        + cm
    )
    lp_disc = disc_intercept + model.disc_age.value * age + model.disc_triplet.value * x.triplet + cm
    return OutcomeProbabilities(
        dose_reduced=expit(lp_dr),
        discontinued_without_dr=expit(lp_disc),
        discontinued_with_dr=expit(lp_disc + model.disc_dr.value),
    )


def draw_outcomes(p: OutcomeProbabilities, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``(dose_reduced, discontinued)`` as 0/1 arrays: DR first, then discontinuation given DR."""
    dose_reduced = rng.random(p.dose_reduced.size) < p.dose_reduced
    p_disc = np.where(dose_reduced, p.discontinued_with_dr, p.discontinued_without_dr)
    discontinued = rng.random(p_disc.size) < p_disc
    return dose_reduced.astype(np.int64), discontinued.astype(np.int64)
