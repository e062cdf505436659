"""The uncertainty interval in the scoring kernel: the ensemble's closed form, the artifact carrying it
(digests, tampering, artifacts from before intervals), the pyfunc columns, and no interval outside the
training data. Coverage against the generator's truth: tests/training/test_interval_coverage.py.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy.special import expit
from scipy.special import logit as logit_of

from features.encoding import FEATURE_NAMES
from features.errors import ArtifactError
from features.model.pyfunc import RiskModelPyfunc
from features.model.riskmodel import INTERVAL_LEVEL, RiskModel
from training import interval
from training.candidates import PARSIMONIOUS
from training.validation import patient_resamples

N_REFITS = 40


@pytest.fixture(scope="module")
def refitted(fitted) -> dict:
    """The ``fitted`` logistic model with an ensemble of full-model refits on patient resamples, and the
    refits themselves."""
    frame, X, y = fitted["frame"], fitted["X"], fitted["y"]
    groups = frame["patient_id"].to_numpy()
    fits = [
        interval.refit("full", "full", X[rows], y[rows], seed=b, groups=groups[rows])
        for b, rows in enumerate(patient_resamples(groups, N_REFITS, seed=5))
    ]
    model = dataclasses.replace(fitted["models"]["logistic"], ensemble=interval.ensemble(fits))
    return {"model": model, "fits": fits}


def test_the_ensemble_is_every_refits_calibrated_logit_in_closed_form(refitted, fitted):
    model, X = refitted["model"], fitted["X"][:300]
    explicit = np.column_stack([cal.logit(est.margin(X)) for est, cal in refitted["fits"]])
    np.testing.assert_allclose(model.ensemble.logits(X), explicit, rtol=0, atol=1e-10)
    sd, mean = explicit.std(axis=1, ddof=1), explicit.mean(axis=1)
    np.testing.assert_allclose(model.ensemble.logit_sd(X), sd, rtol=1e-9)
    np.testing.assert_allclose(model.ensemble.logit_mean(X), mean, rtol=0, atol=1e-10)
    lower, upper = model.interval_encoded(X)
    logit = model.logit_of(X)
    # Half-width: z times the refits' root-mean-square deviation from the served logit.
    rms = np.sqrt(sd**2 + (mean - logit) ** 2)
    assert (rms > sd).all() and np.abs(mean - logit).max() > 0.01  # the shift counts
    np.testing.assert_allclose(lower, expit(logit - 1.959964 * rms), rtol=1e-6)
    np.testing.assert_allclose(upper, expit(logit + 1.959964 * rms), rtol=1e-6)
    assert INTERVAL_LEVEL == 0.95 and model.ensemble.size == N_REFITS


def test_the_interval_is_a_spread_around_the_risk(refitted, fitted):
    model, X = refitted["model"], fitted["X"]
    lower, upper = model.interval_encoded(X)
    point = model.bulk_probability(X)
    width = upper - lower
    assert ((lower > 0) & (lower < upper) & (upper < 1)).all()
    # 3,000 lines, 26 parameters: some points of risk wide, and wider where the risk is near one half.
    assert 0.05 < np.median(width) < 0.25
    assert np.median(width[np.abs(point - 0.5) < 0.1]) > np.median(width[point < 0.1])
    # Centred on the served risk on the log-odds scale: it always contains it.
    assert ((lower < point) & (point < upper)).all()
    # And close to the refits' own 2.5th-97.5th percentiles (3,000 lines: nearly normal log-odds).
    percentiles = np.quantile(expit(model.ensemble.logits(X)), [0.025, 0.975], axis=1)
    assert np.median(np.abs(percentiles[1] - percentiles[0] - width) / width) < 0.15


def test_the_logit_a_caller_has_gives_the_same_interval(refitted, fitted):
    model, X, rows = refitted["model"], fitted["X"][:500], fitted["frame"].head(500)
    fresh = model.interval_encoded(X)
    for a, b in zip(model.interval_encoded(X, logit=model.logit_of(X)), fresh, strict=True):
        np.testing.assert_array_equal(a, b)
    # The explained path's logit (the predictor's) and the bulk one (batch): equal within rounding.
    for logit in (model.explain_encoded(X).logit, model.bulk_logit(X)):
        for a, b in zip(model.interval_encoded(X, logit=logit), fresh, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
        for a, b in zip(model.interval(rows, encoded=X, logit=logit), model.interval(rows), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    # The logit passed is the one used, not recomputed: the interval is centred on it.
    moved = model.logit_of(X) + 1.0
    lower, upper = model.interval_encoded(X, logit=moved)
    np.testing.assert_allclose((logit_of(lower) + logit_of(upper)) / 2, moved, rtol=1e-9)


def test_the_artifact_carries_the_ensemble_verified(refitted, fitted, tmp_path):
    model, X = refitted["model"], fitted["X"][:100]
    digest = model.save(tmp_path)
    assert "ensemble.json" in json.loads((tmp_path / "digests.json").read_text())
    loaded = RiskModel.load(tmp_path, expected_digest=digest)
    assert loaded.has_interval
    for a, b in zip(loaded.interval_encoded(X), model.interval_encoded(X), strict=True):
        np.testing.assert_array_equal(a, b)

    state = json.loads((tmp_path / "ensemble.json").read_text())
    state["intercepts"][0] += 0.5
    (tmp_path / "ensemble.json").write_text(json.dumps(state))
    with pytest.raises(ArtifactError, match=r"ensemble\.json does not match"):
        RiskModel.load(tmp_path)
    (tmp_path / "ensemble.json").unlink()
    with pytest.raises(ArtifactError, match="cannot read"):
        RiskModel.load(tmp_path)


def test_an_artifact_from_before_intervals_loads_without_one(fitted, tmp_path):
    old = fitted["models"]["logistic"]  # no ensemble: what was saved before intervals existed
    digest = old.save(tmp_path)
    assert "ensemble.json" not in json.loads((tmp_path / "digests.json").read_text())
    loaded = RiskModel.load(tmp_path, expected_digest=digest)
    assert not loaded.has_interval
    lower, upper = loaded.interval(fitted["frame"].head(3))
    assert np.isnan(lower).all() and np.isnan(upper).all()
    np.testing.assert_array_equal(loaded.probability(fitted["frame"]), old.probability(fitted["frame"]))


def test_no_interval_for_inputs_outside_the_training_data(refitted, fitted):
    model, frame = refitted["model"], fitted["frame"]
    rows = frame.head(4).copy().reset_index(drop=True)
    rows.loc[1, "age"] = model.encoder.ranges_["age"]["max"] + 1  # older than anyone in training
    rows.loc[2, "crcl_ml_min"] = np.nan  # unknown: imputed as in training, still an interval
    lower, upper = model.interval(rows)
    assert np.isnan(lower[1]) and np.isnan(upper[1])
    assert np.isfinite(lower[[0, 2, 3]]).all() and (upper[[0, 2, 3]] > lower[[0, 2, 3]]).all()
    assert model.outside_training(rows).tolist() == [False, True, False, False]


def test_a_category_no_training_line_had_gets_no_interval(refitted, fitted):
    model = refitted["model"]
    encoder = dataclasses.replace(
        model.encoder, categories_={**model.encoder.categories_, "setting": {"maintenance": 0}}
    )
    narrowed = dataclasses.replace(model, encoder=encoder)
    rows = fitted["frame"].head(50)
    outside = (rows["setting"] == "maintenance").to_numpy()
    assert outside.any() and not outside.all()
    lower, _ = narrowed.interval(rows)
    np.testing.assert_array_equal(np.isnan(lower), outside)


def test_the_pyfunc_returns_the_interval_columns(refitted, fitted):
    pyfunc = RiskModelPyfunc()
    pyfunc.model = refitted["model"]
    rows = fitted["frame"].drop(columns="y").head(20)
    out = pyfunc.predict(None, rows)
    assert list(out.columns) == ["probability", "logit", "lower", "upper"]
    assert (out.dtypes == np.float64).all()
    lower, upper = refitted["model"].interval(rows)
    np.testing.assert_array_equal(out["lower"], lower)
    np.testing.assert_array_equal(out["upper"], upper)
    assert ((out["lower"] <= out["upper"]) & out["lower"].notna()).all()
    pyfunc.model = fitted["models"]["logistic"]  # registered before intervals: NaN bounds, same columns
    out = pyfunc.predict(None, rows)
    assert out[["lower", "upper"]].isna().all().all() and out["probability"].notna().all()


def test_a_resample_choosing_trees_refits_the_linear_champion(fitted):
    X, y = fitted["X"][:400], fitted["y"][:400]
    groups = fitted["frame"]["patient_id"].to_numpy()[:400]
    model, calibrator = interval.refit("xgboost", "parsimonious", X, y, seed=0, groups=groups)
    used = np.flatnonzero(model.coef)
    assert {FEATURE_NAMES[i] for i in used} == set(PARSIMONIOUS)
    assert calibrator.slope > 0


def test_a_recalibrated_ensemble_is_every_refit_followed_by_the_update(refitted, fitted):
    """``recalibrated(a, b)``: each refit's calibrated logit L becomes a + b L (a model update)."""
    ensemble, X = refitted["model"].ensemble, fitted["X"][:200]
    updated = ensemble.recalibrated(0.7, 0.8)
    np.testing.assert_allclose(updated.logits(X), 0.7 + 0.8 * ensemble.logits(X), rtol=0, atol=1e-10)
    np.testing.assert_allclose(updated.logit_sd(X), 0.8 * ensemble.logit_sd(X), rtol=1e-9)
    assert updated.size == ensemble.size
