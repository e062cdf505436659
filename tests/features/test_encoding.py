"""The one feature encoding: derived features, explicit unknowns, JSON state that round-trips exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.encoding import (
    FEATURE_GROUPS,
    FEATURE_NAMES,
    REGIMEN_COMPONENTS,
    EncoderStateError,
    FeatureEncoder,
)
from features.errors import ContractError
from features.schema import PREDICTOR_NAMES, REGIMENS


def _value(X, name, i=0):
    return X[i, FEATURE_NAMES.index(name)]


@pytest.fixture
def frame(row) -> pd.DataFrame:
    rows = [
        row,
        {**row, "regimen": "RCd", "crcl_ml_min": 40.0, "ecog": 2, "sex": "female"},
        {**row, "regimen": "R", "crcl_ml_min": 25.0, "ecog": None, "setting": "maintenance"},
        {**row, "regimen": "MPR", "crcl_ml_min": None, "dialysis": 1, "cm_vte": 1},
    ]
    return pd.DataFrame(rows)


def test_derived_features(frame):
    X = FeatureEncoder().fit(frame).transform(frame)
    assert X.shape == (4, len(FEATURE_NAMES))
    assert [_value(X, "triplet", i) for i in range(4)] == [1, 1, 0, 1]  # RVd, RCd, R, MPR
    assert [_value(X, "single_agent", i) for i in range(4)] == [0, 0, 1, 0]
    assert [_value(X, "partner_alkylator", i) for i in range(4)] == [0, 1, 0, 1]
    assert [_value(X, "partner_antibody", i) for i in range(4)] == [0, 0, 0, 0]  # RVd: the reference triplet
    assert [_value(X, "dialysis", i) for i in range(4)] == [0, 0, 0, 1]
    assert [_value(X, "male", i) for i in range(4)] == [1, 0, 1, 1]
    assert _value(X, "setting_maintenance", 2) == 1 and _value(X, "setting_relapsed_refractory", 2) == 0
    assert not any(name.startswith("setting_newly") for name in FEATURE_NAMES)  # the reference setting
    assert [_value(X, "cm_vte", i) for i in range(4)] == [0, 0, 0, 1]


def test_no_encoded_column_is_a_function_of_the_others():
    """Full column rank with the intercept on a varied cohort: every coefficient of a linear model is
    identified (no count beside the flags it sums, no one-hot beside the intercept)."""
    from features.validate import validate_table
    from training.cohort.generate import generate_cohort

    rows = validate_table(generate_cohort(3000, seed=2)).clean
    X = FeatureEncoder().fit(rows).transform(rows)
    design = np.column_stack([np.ones(len(X)), X])
    assert np.linalg.matrix_rank(design) == design.shape[1]


def test_age_and_creatinine_clearance_enter_as_restricted_cubic_splines():
    from features.splines import rcs_basis
    from features.validate import validate_table
    from training.cohort.generate import generate_cohort

    rows = validate_table(generate_cohort(500, seed=3)).clean
    enc = FeatureEncoder().fit(rows)
    assert len(enc.knots_["age"]) == len(enc.knots_["crcl_ml_min"]) == 4
    knots = np.percentile(rows["age"], [5, 35, 65, 95])
    np.testing.assert_allclose(enc.knots_["age"], knots)
    X = enc.transform(rows)
    expected = rcs_basis(rows["age"].to_numpy(), knots)
    np.testing.assert_allclose(
        X[:, [FEATURE_NAMES.index("age_rcs1"), FEATURE_NAMES.index("age_rcs2")]], expected
    )


def test_unknowns_are_imputed_and_flagged(frame):
    enc = FeatureEncoder().fit(frame)
    assert enc.impute_ == {"crcl_ml_min": 40.0, "ecog": 1.0}  # medians of the known values
    X = enc.transform(frame)
    assert _value(X, "crcl_unknown", 3) == 1 and _value(X, "crcl_ml_min", 3) == 40.0
    assert _value(X, "ecog_unknown", 2) == 1 and _value(X, "ecog", 2) == 1.0
    assert _value(X, "crcl_unknown", 0) == 0


def test_single_record_path_equals_frame_path(frame):
    enc = FeatureEncoder().fit(frame)
    batch = enc.transform(frame)
    for i, rec in enumerate(frame.to_dict("records")):
        one = enc.transform({k: [None if pd.isna(v) else v] for k, v in rec.items()})
        np.testing.assert_array_equal(one[0], batch[i])


def test_large_frame_uses_the_same_codes(frame):
    enc = FeatureEncoder().fit(frame)
    big = pd.concat([frame] * 50, ignore_index=True)  # above the small-input threshold
    np.testing.assert_array_equal(enc.transform(big)[:4], enc.transform(frame))


def test_state_is_json_and_round_trips(frame):
    enc = FeatureEncoder().fit(frame)
    state = json.loads(json.dumps(enc.to_dict()))
    again = FeatureEncoder.from_dict(state)
    np.testing.assert_array_equal(again.transform(frame), enc.transform(frame))
    assert state["ranges"]["age"]["min"] == 74.0
    assert state["categories"]["regimen"]["RVd"] == 1 and set(state["categories"]["regimen"]) == set(REGIMENS)


def test_state_for_another_feature_definition_is_refused(frame):
    state = FeatureEncoder().fit(frame).to_dict()
    with pytest.raises(EncoderStateError):
        FeatureEncoder.from_dict({**state, "feature_names": [*FEATURE_NAMES, "extra"]})
    with pytest.raises(EncoderStateError):
        FeatureEncoder.from_dict({**state, "version": 99})
    with pytest.raises(EncoderStateError):
        FeatureEncoder().transform(frame)  # not fitted


def test_unknown_category_is_a_contract_error(frame):
    enc = FeatureEncoder().fit(frame)
    with pytest.raises(ContractError, match="regimen"):
        enc.transform(frame.assign(regimen="VRd"))


def test_a_category_that_is_not_text_is_a_contract_error(frame):
    enc = FeatureEncoder().fit(frame)
    many = frame.sample(200, replace=True, random_state=0).reset_index(drop=True)
    for not_text in ([1] * len(many), [np.nan] * len(many)):  # a list, as a mapping of columns can hold
        with pytest.raises(ContractError, match="sex: "):
            enc.transform({**many.to_dict("list"), "sex": not_text})


def test_every_feature_explains_a_contract_field():
    groups = set(FEATURE_GROUPS.values())
    fields = {*PREDICTOR_NAMES, "renal_function", "comorbidities"}
    assert groups <= fields
    assert set(REGIMEN_COMPONENTS) == set(REGIMENS)


@pytest.mark.parametrize("module", ["features.encoding", "service.cds.mapping"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
