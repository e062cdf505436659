"""Development of both outcome models on all the data, checked for sample size and validated by bootstrap.

The steps, per outcome (``features.schema.OUTCOMES``):

1. **Sample size** (:mod:`training.candidates`): the effective number of lines against Riley's minimum for
   each candidate; candidates the data cannot support are not fitted; below the parsimonious model's
   minimum, training is refused unless explicitly allowed.
2. **Development on all lines**: the feature encoding is fitted, every eligible candidate is scored by
   repeated patient-grouped cross-validation, one is chosen by the corrected one-SE rule
   (:mod:`training.selection`), and it is fitted, shrunk or calibrated, on all lines.
3. **Internal validation** (:mod:`training.validation`): the whole of step 2 is repeated on ``n_boot``
   bootstrap resamples of patients; the optimism-corrected AUC, calibration and Brier score, with confidence
   intervals, are what the model is reported with; the resample models' risks for every line show how
   unstable the individual predictions are (:mod:`training.instability`).
4. **Gates**: a model is usable only if it beats the intercept-only model on the optimism-corrected log loss
   and its corrected calibration slope is positive; the registry registers nothing else.
5. Out-of-fold risks of the chosen candidate give the reliability, ROC and decision curves and the subgroup
   table; SHAP values on the calibrated logit give the global importance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.special import expit

from features.bands import default_bands
from features.drift import DriftProfile
from features.encoding import FEATURE_GROUPS, FEATURE_NAMES, FeatureEncoder
from features.errors import LenriskError
from features.model.registry import MODEL_NAMES
from features.model.riskmodel import RiskModel
from features.schema import OUTCOMES
from training import evaluation, instability, interval
from training.candidates import ORDER, Adequacy, adequacy, refuse_small, spec
from training.explain import beeswarm_figure, importance_table
from training.selection import N_SPLITS, CVResult, choose, cross_validate, default_repeats
from training.validation import Validation, optimism_bootstrap

MIN_EVENTS = 20
N_BOOT = 200
SHAP_SAMPLE = 2_000  # rows explained for the global summary and the beeswarm plot


class InsufficientDataError(LenriskError):
    """Training data that cannot support a model (one class, or too few events)."""


@dataclass
class OutcomeResult:
    """Everything training learned and measured for one outcome; the registry logs all of it."""

    outcome: str
    model_name: str
    model: RiskModel
    chosen: str
    reason: str
    cv: dict[str, CVResult]
    adequacy: Adequacy
    validation: Validation
    null: Validation  # the intercept-only model, validated on the same resamples
    oof_metrics: dict[str, float]
    subgroups: pd.DataFrame
    importance: pd.DataFrame
    figures: dict[str, Figure]
    data: dict[str, Any]
    problems: list[str] = field(default_factory=list)  # why the model is not usable (empty: usable)
    instability: dict[str, float] = field(default_factory=dict)  # training.instability.summary (metrics)

    @property
    def usable(self) -> bool:
        """Beats the null model, calibration slope above 0: may be registered."""
        return not self.problems

    @property
    def small_sample(self) -> bool:
        """Developed although the sample is below the parsimonious model's minimum (explicitly allowed)."""
        return not self.adequacy.met


@dataclass
class TrainingResult:
    """Both outcomes' results, where the data came from, and the development data (kept in memory only)."""

    outcomes: dict[str, OutcomeResult]
    source: str
    seed: int
    n_boot: int
    frame: pd.DataFrame


def check_outcomes(frame: pd.DataFrame) -> None:
    """Refuse data with one class or fewer than :data:`MIN_EVENTS` of the rarer class for an outcome."""
    for column in OUTCOMES.values():
        y = frame[column].to_numpy()
        events, non_events = int(y.sum()), int(len(y) - y.sum())
        if events == 0 or non_events == 0:
            raise InsufficientDataError(
                f"{column}: only one class present ({events} events in {len(y)} rows)"
            )
        if min(events, non_events) < MIN_EVENTS:
            raise InsufficientDataError(
                f"{column}: {min(events, non_events)} {'events' if events < non_events else 'non-events'} "
                f"in {len(y)} rows; at least {MIN_EVENTS} of each class are needed to fit and validate"
            )


def check_sample_size(frame: pd.DataFrame, *, allow_small_sample: bool) -> dict[str, Adequacy]:
    """Each outcome's :class:`Adequacy`; :class:`SmallSampleError` if too small and not allowed."""
    checks = _adequacy(frame, FeatureEncoder().fit(frame).transform(frame), allow_small_sample)
    refuse_small(list(checks.values()))
    return checks


def _adequacy(frame: pd.DataFrame, X: np.ndarray, allow_small_sample: bool) -> dict[str, Adequacy]:
    patients = frame["patient_id"].to_numpy()
    return {
        o: adequacy(o, frame[c].to_numpy(), patients, X, allow_small_sample=allow_small_sample)
        for o, c in OUTCOMES.items()
    }


@dataclass(frozen=True)
class _Developed:
    """One run of the development procedure on some rows: per outcome the model, its CV and choice."""

    encoder: FeatureEncoder
    models: dict[str, RiskModel]
    cv: dict[str, dict[str, CVResult]]
    chosen: dict[str, tuple[str, str]]


class _Procedure:
    """The development procedure (step 2) on any rows of the development frame: what the bootstrap repeats."""

    def __init__(self, frame: pd.DataFrame, checks: dict[str, Adequacy], *, repeats: int, seed: int) -> None:
        self.frame, self.checks, self.repeats, self.seed = frame, checks, repeats, seed
        self.patients = frame["patient_id"].to_numpy()
        self.y = {o: frame[c].to_numpy() for o, c in OUTCOMES.items()}

    def develop(
        self,
        rows: np.ndarray,
        *,
        seed: int,
        resample: bool = False,
        advance: Callable[[], None] | None = None,
    ) -> _Developed:
        """The procedure on ``rows``. A bootstrap ``resample`` checks its own sample size (never refusing:
        below the parsimonious minimum it fits what an allowed small sample would)."""
        data = self.frame.iloc[rows]
        encoder = FeatureEncoder().fit(data)
        X, groups = encoder.transform(data), self.patients[rows]
        checks = _adequacy(data, X, allow_small_sample=True) if resample else self.checks
        models, cvs, chosen = {}, {}, {}
        for outcome, y_all in self.y.items():
            y = y_all[rows]
            names = checks[outcome].eligible
            cvs[outcome] = {
                n: cross_validate(spec(n), X, y, groups, n_repeats=self.repeats, seed=seed, advance=advance)
                for n in names
            }
            chosen[outcome] = choose(cvs[outcome], ORDER)
            estimator, calibrator = spec(chosen[outcome][0]).fit(X, y, seed=seed, groups=groups)
            models[outcome] = RiskModel(outcome, encoder, estimator, calibrator)
        return _Developed(encoder, models, cvs, chosen)

    def risks(self, developed: _Developed, rows: np.ndarray) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        """Per outcome ``risk(lines)`` of ``developed`` (the procedure run on ``rows``), and of the
        intercept-only model of the same rows (``<outcome>:null``)."""
        X_all = developed.encoder.transform(self.frame)
        out: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        for outcome, model in developed.models.items():
            out[outcome] = lambda r, m=model: expit(m.logit_of(X_all[r]))
            average = float(self.y[outcome][rows].mean())
            out[f"{outcome}:null"] = lambda r, a=average: np.full(len(r), a)
        return out


def train(
    frame: pd.DataFrame,
    *,
    seed: int = 0,
    source: str,
    n_boot: int = N_BOOT,
    n_repeats: int | None = None,
    allow_small_sample: bool = False,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> TrainingResult:
    """Develop, validate and explain both outcome models on validated training rows.

    ``progress(description, total)`` (optional) returns a callable advanced once per unit of work.
    """
    check_outcomes(frame)
    checks = check_sample_size(frame, allow_small_sample=allow_small_sample)
    repeats = n_repeats or default_repeats(len(frame))
    procedure = _Procedure(frame, checks, repeats=repeats, seed=seed)
    everyone = np.arange(len(frame))
    n_cv = repeats * sum(len(a.eligible) for a in checks.values())
    advance = progress("cross-validated selection", n_cv) if progress else None
    developed = procedure.develop(everyone, seed=seed, advance=advance)
    advance = progress(f"bootstrap validation ({n_boot} resamples)", n_boot) if progress else None
    outcomes = {o: procedure.y[o] for o in OUTCOMES} | {f"{o}:null": procedure.y[o] for o in OUTCOMES}

    X_dev = developed.encoder.transform(frame)
    refits: dict[str, list] = {o: [] for o in OUTCOMES}  # per resample, for the uncertainty interval

    def develop(rows: np.ndarray, b: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        if b == 0:
            return procedure.risks(developed, rows)
        resampled = procedure.develop(rows, seed=seed + b, resample=True)
        for o, fits in refits.items():
            chosen = resampled.chosen[o][0], developed.chosen[o][0]
            y, groups = procedure.y[o][rows], procedure.patients[rows]
            fits.append(interval.refit(*chosen, X_dev[rows], y, seed=seed + b, groups=groups, resample=b))
        return procedure.risks(resampled, rows)

    validations = optimism_bootstrap(
        develop,
        outcomes,
        procedure.patients,
        n_boot=n_boot,
        seed=seed,
        advance=advance,
    )
    advance = progress("evaluation figures, subgroups, SHAP", len(OUTCOMES)) if progress else None
    results, profile = {}, DriftProfile.of(frame)
    for o in OUTCOMES:
        results[o] = _result(
            o, frame, developed, validations[o], validations[f"{o}:null"], checks[o], seed=seed
        )
        model = replace(results[o].model, ensemble=interval.ensemble(refits[o]), profile=profile)
        results[o].model = replace(model, info=model.info | interval.summary(model, frame))
        if advance:
            advance()
    return TrainingResult(outcomes=results, source=source, seed=seed, n_boot=n_boot, frame=frame)


def _result(
    outcome: str,
    frame: pd.DataFrame,
    developed: _Developed,
    validation: Validation,
    null: Validation,
    check: Adequacy,
    *,
    seed: int,
) -> OutcomeResult:
    model = developed.models[outcome]
    chosen, reason = developed.chosen[outcome]
    cv = developed.cv[outcome]
    y = frame[OUTCOMES[outcome]].to_numpy()
    groups = frame["patient_id"].to_numpy()
    oof = cv[chosen].oof_probability
    title = f"{MODEL_NAMES[outcome]} ({chosen}), out of fold"
    subgroups = evaluation.subgroup_table(
        y,
        oof,
        {
            "sex": frame["sex"].to_numpy(),
            "age band": evaluation.age_band(frame["age"].to_numpy()),
            "setting": frame["setting"].to_numpy(),
            "regimen class": evaluation.regimen_class(frame["regimen"].to_numpy()),
        },
    )
    X = developed.encoder.transform(frame)
    sample = np.random.default_rng(seed).permutation(len(X))[:SHAP_SAMPLE]
    explanation = model.explain_encoded(X[sample])
    figures = evaluation.figures_for(y, oof, title, groups=groups, seed=seed)
    figures["shap_beeswarm.png"] = beeswarm_figure(explanation, X[sample], title)
    probability = model.probability(frame)
    stability = {}
    if validation.resamples:  # the bootstrap models' risks against the model's (bands: the default rule)
        bands, name = default_bands(float(probability.mean())), f"{MODEL_NAMES[outcome]} ({chosen})"
        stability = instability.summary(probability, validation.predictions, bands)
        figures |= instability.figures(y, probability, validation.predictions, bands, name, seed=seed)
    info = {
        "chosen_because": reason,
        "cv_repeats": len(cv[chosen].log_loss) // N_SPLITS,
        "seed": seed,
        "average_risk": float(probability.mean()),
        "small_sample": not check.met,
    }
    model = RiskModel(outcome, model.encoder, model.estimator, model.calibrator, info=info)
    return OutcomeResult(
        outcome=outcome,
        model_name=MODEL_NAMES[outcome],
        model=model,
        chosen=chosen,
        reason=reason,
        cv=cv,
        adequacy=check,
        validation=validation,
        null=null,
        oof_metrics=evaluation.evaluate(y, oof, groups=groups, seed=seed),
        subgroups=subgroups,
        importance=importance_table(explanation),
        figures=figures,
        data={
            "n_rows": len(frame),
            "n_patients": int(frame["patient_id"].nunique()),
            "events": int(y.sum()),
            "prevalence": float(y.mean()),
            "settings": {k: int(v) for k, v in frame["setting"].value_counts().items()},
            "n_features": len(FEATURE_NAMES),
            "n_feature_groups": len(set(FEATURE_GROUPS.values())),
        },
        problems=_problems(chosen, validation, null),
        instability=stability,
    )


def _problems(chosen: str, validation: Validation, null: Validation) -> list[str]:
    """Why a model must not be used: not better than the average risk, or an inverted or flat ranking."""
    problems = []
    loss, null_loss = validation.metrics["log_loss"].corrected, null.metrics["log_loss"].corrected
    if chosen == "null":
        problems.append("no candidate predicts better than the average risk (the intercept-only model won)")
    elif not loss < null_loss:
        problems.append(
            f"optimism-corrected log loss {loss:.4f} is not below the intercept-only model's {null_loss:.4f}"
        )
    slope = validation.metrics["calibration_slope"].corrected
    if chosen != "null" and not slope > 0:
        problems.append(f"optimism-corrected calibration slope {slope:.2f} is not above 0 (inverted or flat)")
    if validation.resamples < 0.9 * (validation.resamples + validation.failed):
        problems.append(f"{validation.failed} bootstrap resamples could not be developed")
    if not math.isfinite(loss):
        problems.append("the optimism-corrected performance could not be estimated")
    return problems
