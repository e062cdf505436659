"""The registration gates (``training.pipeline._problems``): a model is usable only if its validated log loss
beats the intercept-only model's, its validated calibration slope is above 0, nearly every resample could be
developed, and its performance could be estimated at all."""

from __future__ import annotations

import math

import numpy as np

from training.pipeline import _problems
from training.validation import METRICS, Validated, Validation


def _validation(log_loss: float, slope: float = 0.9, *, resamples: int = 200, failed: int = 0) -> Validation:
    values = {"roc_auc": 0.7, "calibration_intercept": 0.0, "observed_expected": 1.0, "brier": 0.2}
    values["log_loss"] = log_loss
    values["calibration_slope"] = slope
    metrics = {name: Validated(values[name], 0.0, values[name], values[name], resamples) for name in METRICS}
    return Validation(metrics, resamples, failed, np.empty((0, resamples)))


NULL = _validation(0.60, slope=math.nan)


def test_a_model_better_than_the_average_risk_with_a_positive_slope_passes():
    assert _problems("parsimonious", _validation(0.58), NULL) == []


def test_a_model_no_better_than_the_average_risk_is_refused():
    problems = _problems("full", _validation(0.60), NULL)
    assert problems == ["optimism-corrected log loss 0.6000 is not below the intercept-only model's 0.6000"]


def test_an_inverted_or_flat_ranking_is_refused_even_with_a_lower_log_loss():
    assert _problems("full", _validation(0.58, slope=-0.2), NULL) == [
        "optimism-corrected calibration slope -0.20 is not above 0 (inverted or flat)"
    ]
    assert len(_problems("full", _validation(0.58, slope=0.0), NULL)) == 1


def test_the_intercept_only_model_winning_is_a_refusal_without_a_slope_check():
    assert _problems("null", _validation(0.60, slope=math.nan), NULL) == [
        "no candidate predicts better than the average risk (the intercept-only model won)"
    ]


def test_a_slope_that_could_not_be_estimated_is_refused():
    problems = _problems("setting", _validation(0.58, slope=math.nan), NULL)
    assert problems == ["optimism-corrected calibration slope nan is not above 0 (inverted or flat)"]


def test_more_than_a_tenth_of_resamples_failing_is_refused():
    assert _problems("full", _validation(0.58, resamples=181, failed=19), NULL) == []
    problems = _problems("full", _validation(0.58, resamples=179, failed=21), NULL)
    assert problems == ["21 bootstrap resamples could not be developed"]


def test_unestimable_performance_is_refused():
    problems = _problems("full", _validation(math.nan), NULL)
    assert "the optimism-corrected performance could not be estimated" in problems
    assert any("is not below the intercept-only model's" in p for p in problems)
