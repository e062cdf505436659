"""Scored streams with outcomes, as ``lenrisk score`` would write them once outcomes are added: for the
outcome monitoring tests, its benchmark and the figures of docs/monitor-labels.md.

Both models are logistic ``RiskModel`` s fitted directly on the generator's default population (no
registry, a second or two); streams are new lines of the default or a shifted population, scored by them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.encoding import FEATURE_NAMES, FeatureEncoder
from features.model.riskmodel import RiskModel
from features.schema import OUTCOMES
from features.validate import validate_table
from training.cohort.generate import generate_cohort
from training.cohort.shift import shifted
from training.estimators import LinearSpec


def fit_models(n: int = 4000, seed: int = 1) -> dict[str, RiskModel]:
    """Both outcomes' logistic models (every feature, shrunk, Platt-calibrated) on ``n`` default lines."""
    frame = validate_table(generate_cohort(n, seed), require_outcomes=True).raise_on_errors()
    encoder = FeatureEncoder().fit(frame)
    X = encoder.transform(frame)
    models = {}
    for outcome, column in OUTCOMES.items():
        estimator, calibrator = LinearSpec("full", FEATURE_NAMES).fit(X, frame[column].to_numpy())
        models[outcome] = RiskModel(outcome, encoder, estimator, calibrator)
    return models


def scored_stream(
    models: dict[str, RiskModel], sizes: tuple[int, ...], log_odds: tuple[float, ...], seed: int
) -> pd.DataFrame:
    """Consecutive blocks of new lines (block ``i``: ``sizes[i]`` lines, intercepts moved by
    ``log_odds[i]``), scored: a unique ``line_id``, a ``started`` date (one line a day), the outcomes
    and each outcome's ``risk_<outcome>``."""
    blocks = []
    for i, (n, shift) in enumerate(zip(sizes, log_odds, strict=True)):
        block = generate_cohort(n, seed * 1000 + i, params=shifted(log_odds=shift))
        blocks.append(validate_table(block, require_outcomes=True).raise_on_errors())
    frame = pd.concat(blocks, ignore_index=True)
    frame.insert(0, "line_id", [f"L{i:07d}" for i in range(len(frame))])
    frame["started"] = (np.datetime64("2025-01-01") + np.arange(len(frame))).astype(str)
    for outcome, model in models.items():
        frame[f"risk_{outcome}"] = model.probability(frame)
    return frame
