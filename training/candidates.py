"""The candidate models, from the intercept alone to boosted trees, and which of them the data can support.

Candidates, simplest first (the order the selection's one-SE rule prefers):

- ``null``: the intercept alone, the average risk for everyone: the baseline every model must beat;
- ``setting``: the disease setting alone (3 parameters);
- ``parsimonious``: pre-specified from the evidence: the key study's predictors, age, triple combination and
  sex (seed 000: age and triplet for stopping, sex for dose reduction), plus setting (6 parameters);
- ``full``: every encoded feature, restricted cubic splines for age and creatinine clearance (26 parameters);
- ``xgboost``: boosted trees on every feature.

A candidate is fitted only when the effective sample size meets Riley's minimum for its parameters
(:mod:`training.sample_size`), with the anticipated C statistic of the published key study
(:data:`ANTICIPATED_C`). Tree ensembles need far more data than a regression with as many features (van der
Ploeg et al.: over ten times the events per variable for stable discrimination), so ``xgboost`` needs ten
times the full linear model's minimum. Below the parsimonious model's minimum training is refused unless
the user allows it, and the model is then flagged as developed on too small a sample.

References
    Riley RD et al. BMJ 2020;368:m441. Van der Ploeg T, Austin PC, Steyerberg EW. Modern modelling
    techniques are data hungry: a simulation study for predicting dichotomous endpoints. BMC Med Res
    Methodol 2014;14:137.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.encoding import FEATURE_GROUPS, FEATURE_NAMES
from features.errors import LenriskError
from training.estimators import BoostedSpec, LinearSpec
from training.sample_size import Effective, Requirement, effective_size, r2_cs_from_c, requirement

SETTING = tuple(f for f in FEATURE_NAMES if FEATURE_GROUPS[f] == "setting")
#: Seed 000 (107 lines): age (OR 1.08/yr) and triple combination (OR 4.84) for stopping, male sex for dose
#: reduction ("the only predictive factor"); setting changes the base rates (evidence sheet, section 1).
PARSIMONIOUS = ("age", "male", "triplet", *SETTING)
CANDIDATES: tuple[LinearSpec | BoostedSpec, ...] = (
    LinearSpec("null", ()),
    LinearSpec("setting", SETTING),
    LinearSpec("parsimonious", PARSIMONIOUS),
    LinearSpec("full", FEATURE_NAMES),
    BoostedSpec(),
)
ORDER = [c.name for c in CANDIDATES]
#: The C statistic to plan with (``shared/reference/clinical-evidence.md`` section 4): seed 000's published
#: AUC 0.67 for stopping early; dose reduction assumed 0.65 (no AUC published).
ANTICIPATED_C = {"discontinuation": 0.67, "dose_reduction": 0.65}
#: Where each anticipated C comes from, as the model card states it.
ANTICIPATED_C_SOURCE = {
    "discontinuation": "the key study's published discrimination",
    "dose_reduction": "an assumption: no study publishes a C statistic for dose reduction",
}
#: How many times the full linear model's minimum a tree ensemble needs (van der Ploeg et al. 2014).
BOOSTED_FACTOR = 10


class SmallSampleError(LenriskError):
    """Too few (effective) lines for even the parsimonious model; training refused unless allowed."""


@dataclass(frozen=True)
class Adequacy:
    """One outcome's data against every candidate's sample-size requirement."""

    outcome: str
    effective: Effective
    prevalence: float
    anticipated_c: float
    r2_cs: float
    requirements: dict[str, Requirement]
    minimum: dict[str, int]  # lines needed per candidate (xgboost: BOOSTED_FACTOR x full)
    allowed_small: bool  # trained although the parsimonious minimum is not met

    @property
    def eligible(self) -> list[str]:
        """The candidates fitted: those whose minimum is met (null always; up to parsimonious if allowed)."""
        met = [c for c in ORDER if c == "null" or self.effective.n >= self.minimum[c]]
        if self.allowed_small and not self.met:
            met = ["null", "setting", "parsimonious"]
        return met

    @property
    def met(self) -> bool:
        """The effective sample meets the parsimonious model's minimum."""
        return self.effective.n >= self.minimum["parsimonious"]

    def table(self) -> list[dict[str, object]]:
        """One row per candidate: parameters, the lines each Riley criterion needs and the minimum, EPP and
        expected shrinkage at the effective size, whether it is met and whether the candidate was fitted (the
        intercept-only model always is: it is the baseline, even where its average risk is imprecise)."""
        rows = []
        for name, req in self.requirements.items():
            rows.append(
                {
                    "candidate": name,
                    "parameters": req.parameters,
                    "criterion_1": req.n1,
                    "criterion_2": req.n2,
                    "criterion_3": req.n3,
                    "min_lines": self.minimum[name],
                    "binding_criterion": "10 x full" if name == "xgboost" else req.binding,
                    "events_per_parameter_effective": req.events_per_parameter(self.effective.n),
                    "expected_shrinkage": req.expected_shrinkage(self.effective.n),
                    "met": self.effective.n >= self.minimum[name],
                    "fitted": name in self.eligible,
                }
            )
        return rows


def adequacy(
    outcome: str, y: np.ndarray, patients: np.ndarray, X: np.ndarray, *, allow_small_sample: bool
) -> Adequacy:
    """Check one outcome's development data (``X`` encoded) against every candidate (module docstring).

    A candidate's parameters are the encoded columns it uses that vary in ``X``: a setting absent from the
    data has no coefficient to estimate.
    """
    effective = effective_size(y, patients)
    prevalence = float(np.mean(y))
    c = ANTICIPATED_C[outcome]
    r2 = r2_cs_from_c(c, prevalence)
    varying = {name for name, spread in zip(FEATURE_NAMES, np.ptp(X, axis=0), strict=True) if spread > 0}
    requirements = {
        s.name: requirement(len(varying.intersection(s.columns)), prevalence, r2) for s in CANDIDATES
    }
    minimum = {name: r.minimum for name, r in requirements.items()}
    minimum["xgboost"] = BOOSTED_FACTOR * minimum["full"]
    return Adequacy(outcome, effective, prevalence, c, r2, requirements, minimum, allow_small_sample)


def refuse_small(checks: list[Adequacy]) -> None:
    """Raise :class:`SmallSampleError` naming what is missing when an outcome's data are too small."""
    short = [a for a in checks if not a.met and not a.allowed_small]
    if short:
        parts = [
            f"{a.outcome}: {a.effective.n:.0f} effective lines, {a.minimum['parsimonious']} needed for the "
            f"{len(PARSIMONIOUS)}-parameter parsimonious model (Riley criteria at prevalence "
            f"{a.prevalence:.3f}, anticipated C {a.anticipated_c})"
            for a in short
        ]
        raise SmallSampleError(
            "too few lines to develop a reliable model: "
            + "; ".join(parts)
            + ". Use more data, or --allow-small-sample to train anyway (the model is then flagged and never "
            "becomes champion by itself)"
        )


def spec(name: str) -> LinearSpec | BoostedSpec:
    """The candidate called ``name``."""
    return next(c for c in CANDIDATES if c.name == name)
