"""Training of both outcome models: split, compare candidates, calibrate, evaluate, explain.

The steps, per outcome (``features.schema.OUTCOMES``):

1. Patients (not lines) are split into development (80%) and held-out test (20%) sets.
2. On development data, each candidate (``training.estimators``) is scored by repeated, patient-grouped
   cross-validation with cross-fitted calibration, and one is chosen (``training.selection.choose``).
3. The chosen candidate is refitted on all development data and Platt-calibrated on its out-of-fold
   margins: the registered model is exactly the one whose held-out performance is reported.
4. The held-out set gives discrimination with a bootstrap CI, calibration, reliability/ROC/decision
   curves and a subgroup table; SHAP values on the calibrated logit give the global importance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.model_selection import GroupShuffleSplit

from features.encoding import FEATURE_GROUPS, FEATURE_NAMES, FeatureEncoder
from features.errors import LenriskError
from features.model.registry import MODEL_NAMES
from features.model.riskmodel import RiskModel
from features.schema import OUTCOMES
from training import evaluation
from training.calibration import fit_platt
from training.estimators import BoostedSpec, LogisticSpec
from training.explain import beeswarm_figure, importance_table
from training.selection import CVResult, choose, cross_validate, default_repeats

MIN_EVENTS = 20
TEST_SHARE = 0.2
CANDIDATES = (LogisticSpec(), BoostedSpec())
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
    cv_metrics: dict[str, float]
    heldout_metrics: dict[str, float]
    subgroups: pd.DataFrame
    importance: pd.DataFrame
    figures: dict[str, Figure]
    data: dict[str, Any]


@dataclass
class TrainingResult:
    """Both outcomes' results, plus where the data came from."""

    outcomes: dict[str, OutcomeResult]
    source: str
    seed: int


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


def split_patients(frame: pd.DataFrame, *, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Development and held-out test sets, all lines of a patient on the same side."""
    splitter = GroupShuffleSplit(n_splits=1, test_size=TEST_SHARE, random_state=seed)
    dev, test = next(splitter.split(frame, groups=frame["patient_id"]))
    return frame.iloc[dev], frame.iloc[test]


def train(
    frame: pd.DataFrame,
    *,
    seed: int = 0,
    source: str,
    n_repeats: int | None = None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> TrainingResult:
    """Train, calibrate, evaluate and explain both outcome models on validated training rows.

    ``progress(description, total)`` (optional) returns a callable advanced once per unit of work.
    """
    check_outcomes(frame)
    dev, test = split_patients(frame, seed=seed)
    check_outcomes(dev)
    encoder = FeatureEncoder().fit(dev)
    X_dev, X_test = encoder.transform(dev), encoder.transform(test)
    repeats = n_repeats or default_repeats(len(dev))
    results = {}
    for outcome, column in OUTCOMES.items():
        advance = progress(f"{outcome}: cross-validation", repeats * len(CANDIDATES)) if progress else None
        results[outcome] = _train_outcome(
            outcome,
            encoder,
            dev,
            test,
            X_dev,
            X_test,
            dev[column].to_numpy(),
            test[column].to_numpy(),
            repeats=repeats,
            seed=seed,
            advance=advance,
        )
    return TrainingResult(outcomes=results, source=source, seed=seed)


def _train_outcome(
    outcome: str,
    encoder: FeatureEncoder,
    dev: pd.DataFrame,
    test: pd.DataFrame,
    X_dev: np.ndarray,
    X_test: np.ndarray,
    y_dev: np.ndarray,
    y_test: np.ndarray,
    *,
    repeats: int,
    seed: int,
    advance: Callable[[], None] | None,
) -> OutcomeResult:
    groups = dev["patient_id"].to_numpy()
    cv = {
        spec.name: cross_validate(spec, X_dev, y_dev, groups, n_repeats=repeats, seed=seed, advance=advance)
        for spec in CANDIDATES
    }
    chosen, reason = choose(cv)
    spec = next(s for s in CANDIDATES if s.name == chosen)
    estimator = spec.fit(X_dev, y_dev, seed=seed)
    calibrator = fit_platt(cv[chosen].oof_margin, y_dev)
    info = {"chosen_because": reason, "cv_repeats": repeats, "seed": seed}
    model = RiskModel(outcome=outcome, encoder=encoder, estimator=estimator, calibrator=calibrator, info=info)

    p_test = model.probability(test)
    title = f"{MODEL_NAMES[outcome]} ({chosen}), held-out patients"
    heldout = evaluation.evaluate(y_test, p_test, groups=test["patient_id"].to_numpy(), seed=seed)
    cv_metrics = evaluation.evaluate(y_dev, cv[chosen].oof_probability, groups=groups, seed=seed)
    subgroups = evaluation.subgroup_table(
        y_test,
        p_test,
        {
            "sex": test["sex"].to_numpy(),
            "age band": evaluation.age_band(test["age"].to_numpy()),
            "setting": test["setting"].to_numpy(),
            "regimen class": evaluation.regimen_class(test["regimen"].to_numpy()),
        },
    )
    sample = np.random.default_rng(seed).permutation(len(X_test))[:SHAP_SAMPLE]
    explanation = model.explain_encoded(X_test[sample])
    figures = evaluation.figures_for(y_test, p_test, title)
    figures["shap_beeswarm.png"] = beeswarm_figure(explanation, X_test[sample], title)
    return OutcomeResult(
        outcome=outcome,
        model_name=MODEL_NAMES[outcome],
        model=model,
        chosen=chosen,
        reason=reason,
        cv=cv,
        cv_metrics=cv_metrics,
        heldout_metrics=heldout,
        subgroups=subgroups,
        importance=importance_table(explanation),
        figures=figures,
        data={
            "n_rows": len(dev) + len(test),
            "n_patients": int(pd.concat([dev["patient_id"], test["patient_id"]]).nunique()),
            "n_development": len(dev),
            "n_test": len(test),
            "events_development": int(y_dev.sum()),
            "events_test": int(y_test.sum()),
            "prevalence": float(np.concatenate([y_dev, y_test]).mean()),
            "settings": {k: int(v) for k, v in dev["setting"].value_counts().items()},
            "n_features": len(FEATURE_NAMES),
            "n_feature_groups": len(set(FEATURE_GROUPS.values())),
        },
    )
