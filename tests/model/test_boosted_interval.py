"""The uncertainty interval of a boosted model: B boosted refits compiled to one stacked table (every
refit's calibrated logit as XGBoost computes it), the artifact carrying them (digests, tampering, foreign
boosters), recalibration of both ensembles, the pyfunc columns, and the champion's refits in training."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xgboost as xgb
from scipy.special import expit

from features.encoding import FEATURE_NAMES
from features.errors import ArtifactError
from features.model.boosted_ensemble import BoostedEnsemble
from features.model.calibration import PlattCalibrator
from features.model.ensemble import LinearEnsemble
from features.model.pyfunc import RiskModelPyfunc
from features.model.riskmodel import RiskModel
from training import candidates, interval
from training.estimators import BoostedSpec
from training.validation import patient_resamples

N_REFITS = 6
#: Fewer, single-threaded rounds than the candidate's 200: the refits' form, quickly.
QUICK = BoostedSpec(num_boost_round=40, params={**BoostedSpec().params, "nthread": 1}, calibration_folds=3)


@pytest.fixture(scope="module")
def boosted(fitted) -> dict:
    """The ``fitted`` boosted model with an ensemble of boosted refits on patient resamples of 1,000 of its
    lines, and the refits themselves (booster, calibration)."""
    X, y = fitted["X"][:1000], fitted["y"][:1000]
    groups = fitted["frame"]["patient_id"].to_numpy()[:1000]
    fits = []
    for b, rows in enumerate(patient_resamples(groups, N_REFITS, seed=5)):
        booster, _, calibrator = QUICK.fit_booster(X[rows], y[rows], seed=b, groups=groups[rows])
        fits.append((booster, calibrator))
    ensemble = interval.ensemble(fits)
    model = dataclasses.replace(fitted["models"]["xgboost"], ensemble=ensemble)
    return {"model": model, "fits": fits}


def _xgboost_logits(fits, X: np.ndarray) -> np.ndarray:
    """(rows, B) every refit's calibrated logit by XGBoost's own predictor, one call per booster."""
    matrix = xgb.DMatrix(X, feature_names=list(FEATURE_NAMES))
    return np.column_stack([c.logit(b.predict(matrix, output_margin=True)) for b, c in fits])


def test_the_stacked_tables_give_every_refits_calibrated_logit(boosted, fitted):
    ensemble, X = boosted["model"].ensemble, fitted["X"][:500]
    assert isinstance(ensemble, BoostedEnsemble) and ensemble.size == N_REFITS
    explicit = _xgboost_logits(boosted["fits"], X)
    logits = ensemble.logits(X)
    assert logits.shape == (500, N_REFITS)
    np.testing.assert_allclose(logits, explicit, rtol=0, atol=1e-5)  # XGBoost sums its trees in float32
    np.testing.assert_array_equal(ensemble.logits(X[7:8]), logits[7:8])  # one row: the same pass
    np.testing.assert_allclose(ensemble.logit_sd(X), np.std(logits, axis=1, ddof=1), rtol=1e-12, atol=0)
    assert np.median(ensemble.logit_sd(X)) > 0.05  # the refits disagree: a real spread


def test_bulk_rows_are_scored_in_chunks_equal_to_row_by_row(boosted, fitted, monkeypatch):
    from features.model import boosted_ensemble

    ensemble, X = boosted["model"].ensemble, fitted["X"][:50]
    whole = ensemble.logits(X)
    monkeypatch.setattr(boosted_ensemble, "_BYTES_PER_CHUNK", 1)  # one row per chunk
    np.testing.assert_array_equal(ensemble.logits(X), whole)


def test_a_boosted_model_gets_an_interval_on_every_path(boosted, fitted):
    model, frame, X = boosted["model"], fitted["frame"], fitted["X"]
    assert model.family == "xgboost" and model.has_interval
    lower, upper = model.interval_encoded(X)
    point = model.bulk_probability(X)
    assert np.isfinite(lower).all() and np.isfinite(upper).all()
    assert ((lower <= point) & (point <= upper)).all() and (upper > lower).all()
    rows = frame.drop(columns="y").head(30)
    row_lower, row_upper = model.interval(rows)  # the predictor's call, applicability checked
    np.testing.assert_array_equal(row_lower, lower[:30])
    np.testing.assert_array_equal(row_upper, upper[:30])
    assert 0.02 < np.median(upper - lower) < 0.5


def test_the_pyfunc_fills_lower_and_upper_for_a_boosted_model(boosted, fitted):
    pyfunc = RiskModelPyfunc()
    pyfunc.model = boosted["model"]
    rows = fitted["frame"].drop(columns="y").head(20)
    out = pyfunc.predict(None, rows)
    lower, upper = boosted["model"].interval(rows)
    assert out[["lower", "upper"]].notna().all().all()
    np.testing.assert_array_equal(out["lower"], lower)
    np.testing.assert_array_equal(out["upper"], upper)
    assert ((out["lower"] <= out["probability"]) & (out["probability"] <= out["upper"])).all()


def test_the_artifact_carries_the_boosters_verified(boosted, fitted, tmp_path):
    model, X = boosted["model"], fitted["X"][:100]
    digest = model.save(tmp_path)
    digests = json.loads((tmp_path / "digests.json").read_text())
    assert {"ensemble.json", "ensemble/refit_000.ubj", f"ensemble/refit_{N_REFITS - 1:03d}.ubj"} <= set(
        digests
    )
    loaded = RiskModel.load(tmp_path, expected_digest=digest)
    assert isinstance(loaded.ensemble, BoostedEnsemble) and loaded.ensemble.size == N_REFITS
    for a, b in zip(loaded.interval_encoded(X), model.interval_encoded(X), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.save(tmp_path / "again") == digest  # the same bytes written again

    booster = tmp_path / "ensemble" / "refit_002.ubj"
    raw = bytearray(booster.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    booster.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match=r"ensemble/refit_002\.ubj does not match"):
        RiskModel.load(tmp_path)


def _redigest(directory) -> None:
    """Rewrite digests.json over the files it lists (a consistent artifact with a wrong content)."""
    import hashlib

    digests = json.loads((directory / "digests.json").read_text())
    fresh = {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in digests}
    (directory / "digests.json").write_text(json.dumps(fresh))


def test_boosters_on_other_features_or_missing_calibrations_are_refused(boosted, fitted, tmp_path):
    boosted["model"].save(tmp_path)
    other = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgb.DMatrix(fitted["X"][:200, :3], label=fitted["y"][:200], feature_names=["a", "b", "c"]),
        num_boost_round=2,
    )
    (tmp_path / "ensemble" / "refit_001.ubj").write_bytes(bytes(other.save_raw(raw_format="ubj")))
    _redigest(tmp_path)
    with pytest.raises(ArtifactError, match=r"refit_001\.ubj was trained on other features"):
        RiskModel.load(tmp_path)

    state = json.loads((tmp_path / "ensemble.json").read_text())
    state["calibrators"] = state["calibrators"][:-1]
    (tmp_path / "ensemble.json").write_text(json.dumps(state))
    _redigest(tmp_path)
    with pytest.raises(ArtifactError, match=f"lists {N_REFITS} boosters for {N_REFITS - 1} calibrations"):
        RiskModel.load(tmp_path)


def test_deeper_trees_are_refused_by_the_tables(fitted):
    deep = xgb.train(
        {"objective": "binary:logistic", "max_depth": 5, "nthread": 1},
        xgb.DMatrix(fitted["X"][:1000], label=fitted["y"][:1000], feature_names=list(FEATURE_NAMES)),
        num_boost_round=3,
    )
    with pytest.raises(ArtifactError, match="deeper than 3"):
        BoostedEnsemble.of([(deep, PlattCalibrator(1.0, 0.0))])


def test_recalibrating_an_ensemble_maps_every_refits_logit(boosted, fitted):
    X = fitted["X"][:200]
    ensemble = boosted["model"].ensemble
    moved = ensemble.recalibrated(-0.3, 0.8)
    np.testing.assert_allclose(moved.logits(X), -0.3 + 0.8 * ensemble.logits(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(moved.logit_sd(X), 0.8 * ensemble.logit_sd(X), rtol=1e-12)

    linear_fits = [interval.refit("full", "full", X, fitted["y"][:200], seed=0, groups=np.arange(200))]
    linear_fits.append(
        interval.refit("parsimonious", "full", X, fitted["y"][:200], seed=0, groups=np.arange(200))
    )
    linear = interval.ensemble(linear_fits)
    assert isinstance(linear, LinearEnsemble)
    moved = linear.recalibrated(0.5, 1.3)
    np.testing.assert_allclose(moved.logits(X), 0.5 + 1.3 * linear.logits(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(moved.logit_sd(X), 1.3 * linear.logit_sd(X), rtol=1e-9, atol=1e-10)

    # One update per refit (a model update re-estimated on each local resample, training.updating).
    for each in (ensemble, linear):
        a, b = np.linspace(-0.5, 0.5, each.size), np.linspace(0.7, 1.3, each.size)
        np.testing.assert_allclose(each.recalibrated(a, b).logits(X), a + b * each.logits(X), atol=1e-10)


def test_a_boosted_parent_updated_by_recalibration_keeps_an_interval(boosted, fitted):
    """``lenrisk update`` on a boosted parent: each refit followed by one local resample's recalibration."""
    from training import updating

    parent, X = boosted["model"], fitted["X"][:300]
    chosen = updating.ClosedTest(
        fits={"recalibration": updating.Fit("recalibration", 2, -1.0, intercept=0.4, slope=0.9)},
        tests=[],
        chosen="recalibration",
    )
    model = updating._updated(parent, chosen, [(0.4, 0.9), (0.5, 1.0)], [])
    assert model.has_interval and isinstance(model.ensemble, BoostedEnsemble)
    expected = np.array([(0.4, 0.9), (0.5, 1.0)] * N_REFITS)[:N_REFITS]
    np.testing.assert_allclose(
        model.ensemble.logits(X), expected[:, 0] + expected[:, 1] * parent.ensemble.logits(X), atol=1e-10
    )
    lower, upper = model.interval_encoded(X)
    p = model.bulk_probability(X)
    assert np.all((lower <= p) & (p <= upper)) and np.isfinite(lower).all()


def test_a_boosted_champions_refits_are_boosted_whatever_the_resample_chose(fitted, monkeypatch):
    quick = tuple(QUICK if c.name == "xgboost" else c for c in candidates.CANDIDATES)
    monkeypatch.setattr(candidates, "CANDIDATES", quick)
    X, y = fitted["X"][:400], fitted["y"][:400]
    groups = fitted["frame"]["patient_id"].to_numpy()[:400]
    for chosen in ("parsimonious", "xgboost"):
        booster, calibrator = interval.refit(chosen, "xgboost", X, y, seed=0, groups=groups)
        assert isinstance(booster, xgb.Booster) and booster.num_boosted_rounds() == 40
        assert isinstance(calibrator, PlattCalibrator) and calibrator.slope > 0
    assert interval.ensemble([]) is None and interval.ensemble([None]) is None
    beyond = interval.BOOSTED_REFITS + 1
    assert interval.refit("xgboost", "xgboost", X, y, seed=0, groups=groups, resample=beyond) is None
    assert interval.refit("full", "full", X, y, seed=0, groups=groups, resample=beyond) is not None
    logits = expit(interval.ensemble([(booster, calibrator), None]).logits(X))
    assert logits.shape == (400, 1) and ((logits > 0) & (logits < 1)).all()


@pytest.mark.slow
def test_training_gives_a_boosted_champion_its_refits(monkeypatch):
    from features.validate import validate_table
    from training import pipeline
    from training.cohort.generate import generate_cohort

    quick = tuple(QUICK if c.name == "xgboost" else c for c in candidates.CANDIDATES)
    monkeypatch.setattr(candidates, "CANDIDATES", quick)
    monkeypatch.setattr(candidates, "BOOSTED_FACTOR", 0)  # eligible at any size
    choose = pipeline.choose
    monkeypatch.setattr(
        pipeline, "choose", lambda cv, order: ("xgboost", "forced") if "xgboost" in cv else choose(cv, order)
    )
    frame = validate_table(generate_cohort(1000, seed=4), require_outcomes=True).raise_on_errors()
    result = pipeline.train(frame, seed=4, source="test", n_boot=3, n_repeats=1)
    for outcome in result.outcomes.values():
        model = outcome.model
        assert outcome.chosen == "xgboost" and isinstance(model.ensemble, BoostedEnsemble)
        assert model.ensemble.size == model.info["interval_refits"] == 3
        lower, upper = model.interval(frame.head(50))
        point = model.probability(frame.head(50))
        assert np.isfinite(lower).all() and ((lower <= point) & (point <= upper)).all()
        assert 0 < model.info["interval_width_median"] < 0.5
