"""The runtime model's scoring kernel: additivity on the calibrated logit, TreeSHAP equality, safe native
artifacts, tree tables, and the bulk path agreeing with the explained one.

The models are the session's ``fitted`` fixture (tests/conftest.py); how they are fitted is tested in
tests/training/test_selection.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import shap
from scipy.special import logit

from features.encoding import FEATURE_NAMES
from features.errors import ArtifactError
from features.model.estimators import BoostedModel
from features.model.riskmodel import RiskModel


@pytest.mark.parametrize("family", ["logistic", "xgboost"])
def test_shap_adds_up_to_the_calibrated_logit(fitted, family):
    model = fitted["models"][family]
    rows = fitted["frame"].iloc[:500]
    explanation = model.explain(rows)
    served = model.probability(rows)
    np.testing.assert_allclose(
        explanation.base + explanation.values.sum(axis=1), explanation.logit, atol=1e-12
    )
    np.testing.assert_allclose(explanation.logit, logit(served), atol=1e-9)
    assert model.calibrator.slope != 1.0  # the scaling onto the calibrated logit is really exercised


def test_xgboost_contributions_equal_shap_treeexplainer(fitted):
    model = fitted["models"]["xgboost"]
    X = fitted["X"][:200]
    base, ours = model.estimator.contributions(X)
    explainer = shap.TreeExplainer(model.estimator.booster)
    np.testing.assert_allclose(ours, explainer.shap_values(X), atol=1e-5)
    assert base == pytest.approx(float(np.ravel(explainer.expected_value)[0]), abs=1e-5)


def test_linear_shap_is_the_closed_form(fitted):
    model = fitted["models"]["logistic"]
    X = fitted["X"][:50]
    est = model.estimator
    _, phi = est.contributions(X)
    np.testing.assert_allclose(phi, (X - est.mean) / est.scale * est.coef)
    np.testing.assert_allclose(np.mean(est.contributions(fitted["X"])[1], axis=0), 0, atol=1e-12)


def test_artifact_round_trip_and_tamper_detection(fitted, tmp_path):
    model = fitted["models"]["xgboost"]
    digest = model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "booster.ubj",
        "digests.json",
        "encoder.json",
        "estimator.json",
        "model.json",
    ]
    again = RiskModel.load(tmp_path, expected_digest=digest)
    rows = fitted["frame"].iloc[:100]
    np.testing.assert_array_equal(again.probability(rows), model.probability(rows))
    assert isinstance(again.estimator, BoostedModel)

    with pytest.raises(ArtifactError, match="recorded for this model version"):
        RiskModel.load(tmp_path, expected_digest="0" * 64)
    state = json.loads((tmp_path / "model.json").read_text())
    state["calibrator"]["slope"] = 5.0
    (tmp_path / "model.json").write_text(json.dumps(state))
    with pytest.raises(ArtifactError, match=r"model\.json does not match"):
        RiskModel.load(tmp_path)


def test_logistic_artifact_is_plain_json(fitted, tmp_path):
    fitted["models"]["logistic"].save(tmp_path)
    state = json.loads((tmp_path / "estimator.json").read_text())
    assert state["family"] == "logistic" and len(state["coef"]) == len(FEATURE_NAMES)
    rows = fitted["frame"].iloc[:100]
    np.testing.assert_allclose(
        RiskModel.load(tmp_path).probability(rows), fitted["models"]["logistic"].probability(rows), rtol=1e-15
    )


def test_tree_tables_equal_xgboost(fitted):
    import xgboost as xgb

    estimator = fitted["models"]["xgboost"].estimator
    X = fitted["X"]
    reference = estimator.booster.predict(
        xgb.DMatrix(X, feature_names=list(FEATURE_NAMES)), pred_contribs=True
    )
    base, phi = estimator.contributions(X)
    np.testing.assert_allclose(phi, reference[:, :-1], atol=1e-5)  # XGBoost's own float32 TreeSHAP
    np.testing.assert_allclose(
        estimator.margin(X), estimator.booster.inplace_predict(X, predict_type="margin"), atol=1e-5
    )
    np.testing.assert_allclose(base + phi.sum(axis=1), estimator.margin(X), atol=1e-12)  # float64: exact


@pytest.mark.parametrize("family", ["logistic", "xgboost"])
def test_bulk_probability_agrees_with_the_explained_path(fitted, family):
    model = fitted["models"][family]
    X = fitted["X"]
    explained = model.explain_encoded(X).probability
    # float64 both ways, the same terms summed in another order
    np.testing.assert_allclose(model.bulk_probability(X), explained, atol=1e-12)


def _assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype == np.float64
    np.testing.assert_array_equal(actual.view(np.uint64), expected.view(np.uint64))


def _registry_like(X: np.ndarray, *, repeat: bool, seed: int = 0) -> np.ndarray:
    """Many rows from ``X``: 200 rows drawn again and again, or every row with jittered age and CrCl."""
    rng = np.random.default_rng(seed)
    if repeat:
        rows = X[rng.integers(0, 200, 5000)]
    else:
        rows = np.tile(X, (2, 1))
        for name in ("age", "crcl_ml_min"):
            rows[:, FEATURE_NAMES.index(name)] += rng.uniform(-5, 5, len(rows))
    rows[7, FEATURE_NAMES.index("age")] = np.nan  # compares False, like a value below every threshold
    return rows


@pytest.mark.parametrize("repeat", [True, False])
def test_tree_tables_give_the_same_bits_whatever_the_chunk(fitted, repeat):
    tables = fitted["models"]["xgboost"].estimator.tables
    rows = _registry_like(fitted["X"], repeat=repeat)
    for chunk in (65_536, 97):  # one chunk, and many with a partial last one
        _assert_same_bits(tables.contributions(rows, chunk=chunk), tables._shap_sums(rows, 65_536))
        _assert_same_bits(tables.margin(rows, chunk=chunk), tables.margin(rows))


def test_tree_tables_batch_kernel_adds_what_the_api_path_adds(fitted):
    """Column-wise (many rows) and one gather (<= 64 rows): the same table values, summed tree by tree."""
    tables = fitted["models"]["xgboost"].estimator.tables
    X = fitted["X"]
    api = np.concatenate([tables.contributions(X[i : i + 64]) for i in range(0, len(X), 64)])
    np.testing.assert_array_equal(tables._shap_sums(X, 1000), api)
    np.testing.assert_array_equal(tables.contributions(X), api)
