"""Updating a registered model on local labelled data, the update chosen by a closed testing procedure.

The methods, from least to most data-hungry (Steyerberg, Clinical Prediction Models, 2nd ed. 2019, ch. 20;
Vergouwe et al. 2017):

- ``none``: the original model as it is (0 parameters estimated on the local data);
- ``intercept``: recalibration-in-the-large, ``logit p' = a + L`` with ``L`` the original calibrated logit as
  offset (1 parameter);
- ``recalibration``: logistic recalibration, ``logit p' = a + b L`` (2 parameters);
- ``refit``: the project's own development procedure run on the local data (new encoding, the candidates
  the local sample size supports, the corrected one-SE choice among them, shrinkage; ``training.candidates``
  and ``training.selection``), offered only when the local data meet the parsimonious model's minimum
  (Riley et al. BMJ 2020;368:m441); boosted trees are left out because the likelihood ratio test needs a
  number of parameters. Its parameters are the chosen candidate's encoded columns plus the intercept.

**Closed testing procedure** (Vergouwe Y, Nieboer D, Oostenbrink R, et al. A closed testing procedure to
select an appropriate method for updating prediction models. Stat Med 2017;36:4529-4539): every method's
log-likelihood on the local data is compared with the original model's, ``LR_k = 2 (ll_k - ll_none)`` on
``df_k`` = its parameters (the original model estimates nothing locally). Let ``K`` be the most extensive
method offered. (1) ``K`` against the original: not significant at ``alpha`` (0.05): no update. (2) Then
``K`` against each simpler update in turn, recalibration-in-the-large first: the first one that ``K`` is
not significantly better than, on ``LR_K - LR_j`` with ``df_K - df_j`` degrees of freedom, is chosen; if
``K`` beats all of them, ``K`` is. A refit is not nested in the recalibrations (it is penalised, and may
drop predictors), so its statistic against a simpler update is the difference of both statistics against
the original model; a negative difference counts as not significant. The paper's full text was not at hand:
the step order follows its abstract and a public R script applying it (docs/update.md).

The result is a new :class:`RiskModel`: for a recalibration the same encoder and estimator with the Platt
calibrator composed with the update (``a + b (s m + c) = (b s) m + (a + b c)``), so the SHAP values stay
additive on the updated logit; its uncertainty ensemble is recalibrated too, each refit paired with the
update re-estimated on one bootstrap resample of the local data, so the interval also carries the
update's own estimation uncertainty. A refit brings its own encoder and the bootstrap refits of its
candidate on the local data (``training.interval``).

**Validation**: the whole procedure (closed test and update) is repeated on bootstrap resamples of the
local patients and the optimism subtracted (``training.validation.optimism_bootstrap``: AUC, calibration
intercept and slope, O:E, Brier, log loss, with intervals).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit
from scipy.stats import chi2
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

from features.encoding import FeatureEncoder
from features.errors import LenriskError
from features.model.boosted_ensemble import BoostedEnsemble
from features.model.calibration import PlattCalibrator
from features.model.ensemble import LinearEnsemble
from features.model.riskmodel import RiskModel
from features.schema import OUTCOMES
from training import interval
from training.candidates import ORDER, adequacy, spec
from training.selection import choose, cross_validate, default_repeats
from training.validation import Validation, optimism_bootstrap

#: The update methods, least to most data-hungry.
METHODS = ("none", "intercept", "recalibration", "refit")
#: What each method is called in reports.
METHOD_NAMES = {
    "none": "no update",
    "intercept": "recalibration-in-the-large",
    "recalibration": "logistic recalibration",
    "refit": "refit",
}
#: Significance level of each test of the closed procedure (Vergouwe et al. 2017).
ALPHA = 0.05
N_BOOT = 200


class UpdateError(LenriskError, ValueError):
    """The local data cannot support an update (one outcome class, separation, no convergence)."""


@dataclass(frozen=True)
class Fit:
    """One update method fitted on the local data: its log-likelihood there and what it estimated."""

    method: str
    parameters: int
    log_likelihood: float
    intercept: float = 0.0  # recalibrations: logit p' = intercept + slope * L
    slope: float = 1.0
    model: RiskModel | None = None  # refit only
    candidate: str = ""  # refit only: the candidate chosen on the local data


@dataclass(frozen=True)
class Test:
    """One likelihood ratio test of the closed procedure: is ``method`` better than ``against``?"""

    method: str
    against: str
    statistic: float
    df: int
    p_value: float
    significant: bool


@dataclass(frozen=True)
class ClosedTest:
    """The fitted methods, the tests made in order, the chosen method, and why a refit was not offered."""

    fits: dict[str, Fit]
    tests: list[Test]
    chosen: str
    refit_not_offered: str = ""  # empty when a refit was offered

    @property
    def fit(self) -> Fit:
        """The chosen method's fit."""
        return self.fits[self.chosen]


@dataclass(frozen=True)
class Update:
    """An updated model with how it was chosen and how the procedure validates on the local data."""

    parent: RiskModel
    model: RiskModel | None  # None: no update chosen
    closed_test: ClosedTest
    validation: Validation
    n_lines: int
    n_patients: int
    events: int
    n_boot: int
    alpha: float

    @property
    def method(self) -> str:
        """The chosen method (:data:`METHODS`)."""
        return self.closed_test.chosen


def _log_likelihood(y: np.ndarray, logit: np.ndarray) -> float:
    return float(np.sum(y * log_expit(logit) + (1 - y) * log_expit(-logit)))


def _glm(y: np.ndarray, exog: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """Maximum-likelihood logistic coefficients; :class:`UpdateError` when they are not identified."""
    if y.min() == y.max():
        raise UpdateError("the local data have one outcome class only: no update can be estimated")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            params = GLM(y, exog, family=families.Binomial(), offset=offset).fit().params
        except (PerfectSeparationWarning, ConvergenceWarning, np.linalg.LinAlgError) as err:
            raise UpdateError(f"the recalibration could not be estimated: {err}") from err
    if not np.isfinite(params).all():
        raise UpdateError("the recalibration could not be estimated (infinite coefficients)")
    return np.asarray(params, dtype=float)


def recalibrations(y: np.ndarray, logit: np.ndarray) -> dict[str, Fit]:
    """``none``, ``intercept`` and ``recalibration`` fitted to outcomes ``y`` given the original logits."""
    ones = np.ones_like(logit)
    (a,) = _glm(y, ones[:, None], offset=logit)
    a2, b2 = _glm(y, np.column_stack([ones, logit]))
    return {
        "none": Fit("none", 0, _log_likelihood(y, logit)),
        "intercept": Fit("intercept", 1, _log_likelihood(y, a + logit), intercept=float(a)),
        "recalibration": Fit(
            "recalibration", 2, _log_likelihood(y, a2 + b2 * logit), intercept=float(a2), slope=float(b2)
        ),
    }


def refit_refusal(outcome: str, frame: pd.DataFrame, X: np.ndarray) -> str:
    """Why a refit is not offered on ``frame`` (encoded ``X``); empty when it is (Riley's minimum met)."""
    y, patients = frame[OUTCOMES[outcome]].to_numpy(), frame["patient_id"].to_numpy()
    check = adequacy(outcome, y, patients, X, allow_small_sample=False)
    if check.met:
        return ""
    return (
        f"{check.effective.n:.0f} effective local lines, fewer than the {check.minimum['parsimonious']} the "
        f"parsimonious model needs (Riley criteria at prevalence {check.prevalence:.3f})"
    )


def refit(outcome: str, frame: pd.DataFrame, *, seed: int, repeats: int | None = None) -> Fit:
    """The development procedure on the local data, linear candidates only (module docstring)."""
    encoder = FeatureEncoder().fit(frame)
    X = encoder.transform(frame)
    y, groups = frame[OUTCOMES[outcome]].to_numpy(), frame["patient_id"].to_numpy()
    check = adequacy(outcome, y, groups, X, allow_small_sample=False)
    names = [n for n in check.eligible if spec(n).family == "logistic"]
    n_repeats = repeats or default_repeats(len(frame))
    cvs = {n: cross_validate(spec(n), X, y, groups, n_repeats=n_repeats, seed=seed) for n in names}
    chosen, _ = choose(cvs, ORDER)
    estimator, calibrator = spec(chosen).fit(X, y, seed=seed, groups=groups)
    model = RiskModel(outcome, encoder, estimator, calibrator)
    parameters = check.requirements[chosen].parameters + 1
    return Fit("refit", parameters, _log_likelihood(y, model.logit_of(X)), model=model, candidate=chosen)


def closed_test(fits: dict[str, Fit], alpha: float = ALPHA) -> tuple[str, list[Test]]:
    """The chosen method and the tests made, in order (Vergouwe et al. 2017; module docstring)."""
    offered = [m for m in METHODS if m in fits]
    top = fits[offered[-1]]
    statistic = {m: 2 * (f.log_likelihood - fits["none"].log_likelihood) for m, f in fits.items()}
    tests = []
    for simpler in offered[:-1]:
        lr = statistic[top.method] - statistic[simpler]
        df = top.parameters - fits[simpler].parameters
        p = float(chi2.sf(lr, df)) if lr > 0 else 1.0
        tests.append(Test(top.method, simpler, float(lr), df, p, p < alpha))
        if p >= alpha:
            return simpler, tests
    return top.method, tests


def select(
    parent: RiskModel, frame: pd.DataFrame, *, seed: int, alpha: float = ALPHA, repeats: int | None = None
) -> ClosedTest:
    """Fit every method the local data support and choose one by the closed test."""
    y = frame[OUTCOMES[parent.outcome]].to_numpy().astype(float)
    fits = recalibrations(y, parent.logit_of(parent.encode(frame)))
    refusal = refit_refusal(parent.outcome, frame, FeatureEncoder().fit(frame).transform(frame))
    if not refusal:
        fits["refit"] = refit(parent.outcome, frame, seed=seed, repeats=repeats)
    chosen, tests = closed_test(fits, alpha)
    return ClosedTest(fits, tests, chosen, refusal)


def risk(fit: Fit, frame: pd.DataFrame, logit: np.ndarray) -> np.ndarray:
    """The risks of ``fit``'s updated model for the rows of ``frame``, whose original logits are ``logit``."""
    if fit.model is not None:
        return fit.model.probability(frame)
    return expit(fit.intercept + fit.slope * logit)


def update(
    parent: RiskModel,
    frame: pd.DataFrame,
    *,
    seed: int = 0,
    n_boot: int = N_BOOT,
    alpha: float = ALPHA,
    repeats: int | None = None,
    advance: Callable[[], None] | None = None,
) -> Update:
    """Choose, fit and validate the update of ``parent`` on validated local rows with outcomes."""
    outcome = parent.outcome
    y = frame[OUTCOMES[outcome]].to_numpy()
    patients = frame["patient_id"].to_numpy()
    chosen = select(parent, frame, seed=seed, alpha=alpha, repeats=repeats)
    logit = parent.logit_of(parent.encode(frame))
    X_refit = chosen.fit.model.encode(frame) if chosen.fit.model is not None else None
    repeated: list[tuple[float, float]] = []  # the chosen recalibration re-estimated on every resample
    refits: list = []  # the chosen refit candidate on every resample (training.interval)

    def develop(rows: np.ndarray, b: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        if b == 0:
            return {outcome: lambda r: risk(chosen.fit, frame.iloc[r], logit[r])}
        sample = frame.iloc[rows].reset_index(drop=True)
        resampled = select(parent, sample, seed=seed + b, alpha=alpha, repeats=repeats)
        if chosen.chosen in ("intercept", "recalibration"):
            fit = recalibrations(y[rows].astype(float), logit[rows])[chosen.chosen]
            repeated.append((fit.intercept, fit.slope))
        elif chosen.chosen == "refit":
            local = resampled.fits.get("refit")
            refits.append(
                interval.refit(
                    local.candidate if local else chosen.fit.candidate,
                    chosen.fit.candidate,
                    X_refit[rows],
                    y[rows],
                    seed=seed + b,
                    groups=patients[rows],
                )
            )
        if advance:
            advance()
        return {outcome: lambda r, f=resampled.fit: risk(f, frame.iloc[r], logit[r])}

    validation = optimism_bootstrap(develop, {outcome: y}, patients, n_boot=n_boot, seed=seed)[outcome]
    model = _updated(parent, chosen, repeated, refits)
    if model is not None:
        average = float(risk(chosen.fit, frame, logit).mean())
        info = {"update_method": chosen.chosen, "average_risk": average, "small_sample": False}
        model = dataclasses.replace(model, info=info | interval.summary(model, frame))
    return Update(
        parent=parent,
        model=model,
        closed_test=chosen,
        validation=validation,
        n_lines=len(frame),
        n_patients=int(frame["patient_id"].nunique()),
        events=int(y.sum()),
        n_boot=n_boot,
        alpha=alpha,
    )


def _updated(
    parent: RiskModel, chosen: ClosedTest, repeated: list[tuple[float, float]], refits: list
) -> RiskModel | None:
    fit = chosen.fit
    if fit.method == "none":
        return None
    if fit.method == "refit":
        return dataclasses.replace(fit.model, ensemble=interval.ensemble(refits))
    c = parent.calibrator
    calibrator = PlattCalibrator(slope=fit.slope * c.slope, intercept=fit.intercept + fit.slope * c.intercept)
    ensemble = _paired(parent.ensemble, repeated) if parent.ensemble is not None and repeated else None
    return dataclasses.replace(parent, calibrator=calibrator, ensemble=ensemble)


def _paired(ensemble: LinearEnsemble | BoostedEnsemble, repeated: list[tuple[float, float]]):
    """Refit ``i`` of the original model followed by the update re-estimated on local resample ``i`` (cycled
    when there are fewer resamples than refits): both sources of estimation uncertainty, independent."""
    pairs = np.array([repeated[i % len(repeated)] for i in range(ensemble.size)])
    return ensemble.recalibrated(pairs[:, 0], pairs[:, 1])
