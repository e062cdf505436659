"""Trained models behave as a reviewer expects on fresh synthetic patients (not the training data)."""

from __future__ import annotations

import numpy as np
import pytest

from features.validate import validate_table
from training import evaluation
from training.cohort.generate import generate_cohort

pytestmark = pytest.mark.slow  # every test uses the session's trained models (`trained`: ~10 s once)


@pytest.fixture(scope="module")
def external(registry):
    """20,000 new lines from the generator (another seed, all settings), with their true probabilities."""
    frame = generate_cohort(
        20_000, seed=909, settings=("relapsed_refractory", "newly_diagnosed"), with_truth=True
    )
    return validate_table(frame).clean


@pytest.mark.parametrize("outcome", ["discontinuation", "dose_reduction"])
def test_calibrated_on_new_patients(registry, external, outcome):
    model = registry["result"].outcomes[outcome].model
    column = {"discontinuation": "discontinued_toxicity", "dose_reduction": "dose_reduced"}[outcome]
    p = model.probability(external)
    cal = evaluation.calibration(external[column].to_numpy(), p)
    assert 0.8 <= cal["calibration_slope"] <= 1.2
    assert abs(cal["calibration_intercept"]) < 0.15
    # The model tracks the generator's true risk, not just the labels.
    truth = external[f"true_p_{column}"].to_numpy()
    assert np.corrcoef(p, truth)[0, 1] > 0.8


def test_discontinuation_risk_rises_with_age_and_triplets(registry, row):
    """Directional expectations from seed 000: age OR 1.08/yr, triplet OR 4.84 for stopping early."""
    import pandas as pd

    model = registry["result"].outcomes["discontinuation"].model
    base = pd.DataFrame(
        [{**row, "age": age, "regimen": regimen} for age in (55, 65, 75, 85) for regimen in ("Rd", "RCd")]
    )
    p = model.probability(base).reshape(4, 2)
    assert (np.diff(p, axis=0) > 0).all()  # older -> higher, for the doublet and the triplet
    assert (p[:, 1] > p[:, 0]).all()  # triplet -> higher at every age


def test_dose_reduction_higher_for_men(registry, row):
    """Seed 000: male sex was the only predictor of dose reduction (OR 3.63)."""
    import pandas as pd

    model = registry["result"].outcomes["dose_reduction"].model
    p = model.probability(pd.DataFrame([{**row, "sex": "female"}, {**row, "sex": "male"}]))
    odds = p / (1 - p)
    assert odds[1] / odds[0] > 1.8
