"""The scoring kernel: additivity on the calibrated logit, monotone constraints, safe native artifacts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shap
from scipy.special import expit, logit

from features.encoding import FEATURE_NAMES, FeatureEncoder
from features.errors import ArtifactError
from features.model.estimators import BoostedModel
from features.model.riskmodel import RiskModel
from features.schema import COMORBIDITY_COLUMNS, REGIMENS, SETTINGS
from training.calibration import fit_platt
from training.estimators import BoostedSpec, LogisticSpec
from training.selection import CVResult, choose, cross_validate, fold_ids


def _frame(n: int, seed: int) -> pd.DataFrame:
    """Contract rows with a known age and triplet effect on the outcome (two lines per patient)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "patient_id": [f"P{i // 2}" for i in range(n)],
            "age": rng.normal(64, 10, n).clip(18, 100),
            "sex": rng.choice(["female", "male"], n),
            "regimen": rng.choice(REGIMENS, n),
            "setting": rng.choice(SETTINGS, n),
            "start_dose_mg": rng.choice([5.0, 10.0, 15.0, 25.0], n),
            "crcl_ml_min": np.where(rng.random(n) < 0.05, np.nan, rng.normal(70, 20, n).clip(5, 250)),
            "dialysis": (rng.random(n) < 0.03).astype(int),
            "ecog": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 3, n)),
            "prior_lines": rng.integers(0, 4, n),
            **{c: (rng.random(n) < 0.1).astype(int) for c in COMORBIDITY_COLUMNS},
        }
    )
    triplet = frame["regimen"].isin(["RCd", "RVd", "KRd", "DRd", "IRd", "ERd", "MPR"])
    frame["y"] = (rng.random(n) < expit(-1.5 + 0.08 * (frame["age"] - 62) + 1.2 * triplet)).astype(int)
    return frame


@pytest.fixture(scope="module")
def fitted() -> dict:
    frame = _frame(3000, seed=3)
    encoder = FeatureEncoder().fit(frame)
    X, y, groups = encoder.transform(frame), frame["y"].to_numpy(), frame["patient_id"].to_numpy()
    models = {}
    for spec in (LogisticSpec(), BoostedSpec()):
        cv = cross_validate(spec, X, y, groups, n_repeats=1, seed=0)
        calibrator = fit_platt(cv.oof_margin, y)
        models[spec.name] = RiskModel("discontinuation", encoder, spec.fit(X, y, seed=0), calibrator)
    return {"frame": frame, "X": X, "y": y, "models": models}


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


@pytest.mark.parametrize("feature", ["age", "n_agents", "ecog", "cm_count"])
def test_boosted_risk_never_decreases_where_constrained(fitted, feature):
    model = fitted["models"]["xgboost"]
    j = FEATURE_NAMES.index(feature)
    rows = np.repeat(fitted["X"][:100], 30, axis=0)
    grid = np.tile(np.linspace(fitted["X"][:, j].min(), fitted["X"][:, j].max(), 30), 100)
    rows[:, j] = grid
    risk = expit(model.logit_of(rows)).reshape(100, 30)
    assert (np.diff(risk, axis=1) >= -1e-7).all()
    if feature == "age":  # the simulated age effect is learned, not just allowed
        assert (risk[:, -1] - risk[:, 0]).mean() > 0.2


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


def test_folds_keep_patients_together(fitted):
    folds = fold_ids(fitted["y"], fitted["frame"]["patient_id"].to_numpy(), seed=0)
    per_patient = pd.Series(folds).groupby(fitted["frame"]["patient_id"].to_numpy()).nunique()
    assert per_patient.max() == 1 and set(folds) == {0, 1, 2, 3, 4}


def _cv(name: str, losses: list[float]) -> CVResult:
    arr = np.array(losses)
    return CVResult(name, arr, arr / 3, np.full(arr.size, 0.7), np.zeros(1), np.zeros(1))


def test_one_standard_error_rule():
    logistic = _cv("logistic", [0.60, 0.61, 0.59, 0.60, 0.62])
    clearly_better = _cv("xgboost", [0.55, 0.56, 0.54, 0.55, 0.57])
    barely_better = _cv("xgboost", [0.61, 0.60, 0.58, 0.61, 0.60])
    assert choose({"logistic": logistic, "xgboost": clearly_better})[0] == "xgboost"
    chosen, reason = choose({"logistic": logistic, "xgboost": barely_better})
    assert chosen == "logistic" and "within one standard error" in reason
    worse = _cv("xgboost", [0.65, 0.66, 0.64, 0.65, 0.67])
    assert choose({"logistic": logistic, "xgboost": worse})[0] == "logistic"


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
