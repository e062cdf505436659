"""Tests of training.evaluation on synthetic data whose true calibration and discrimination are known."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.metrics import roc_auc_score

from features.schema import REGIMENS
from training import evaluation as ev

N = 20_000


def simulate(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Perfectly calibrated risks (logit ~ N(-0.8, 1), prevalence ~0.33) and outcomes drawn from them."""
    rng = np.random.default_rng(seed)
    p = expit(rng.normal(-0.8, 1.0, n))
    return rng.binomial(1, p), p


@pytest.fixture(scope="module")
def calibrated() -> tuple[np.ndarray, np.ndarray]:
    return simulate(N)


# ------------------------------------------------------------------------------------------- calibration


def test_calibrated_predictions_have_slope_one_intercept_zero(calibrated):
    y, p = calibrated
    cal = ev.calibration(y, p)
    assert cal["calibration_slope"] == pytest.approx(1, abs=0.1)
    assert cal["calibration_intercept"] == pytest.approx(0, abs=0.05)
    assert cal["observed_expected"] == pytest.approx(1, abs=0.05)


def test_overconfident_predictions_have_slope_one_half(calibrated):
    y, p = calibrated
    cal = ev.calibration(y, expit(2 * logit(p)))
    assert cal["calibration_slope"] == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("shift", [-0.5, 0.5])
def test_shifted_predictions_give_intercept_of_opposite_sign(calibrated, shift):
    y, p = calibrated
    cal = ev.calibration(y, expit(logit(p) + shift))
    # Risks too high (shift > 0) need a negative correction, and fewer events are observed than expected.
    assert cal["calibration_intercept"] == pytest.approx(-shift, abs=0.07)
    assert np.sign(cal["observed_expected"] - 1) == -np.sign(shift)
    assert cal["calibration_slope"] == pytest.approx(1, abs=0.1)


def test_calibration_is_nan_when_not_identified():
    separated = ev.calibration([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert np.isnan(separated["calibration_slope"])
    assert np.isfinite(separated["calibration_intercept"])
    one_class = ev.calibration([0, 0, 0], [0.1, 0.2, 0.3])
    assert np.isnan(one_class["calibration_intercept"]) and np.isnan(one_class["calibration_slope"])
    assert one_class["observed_expected"] == 0


# ---------------------------------------------------------------------------------------- discrimination


@pytest.mark.parametrize("decimals", [None, 1])
def test_auc_matches_sklearn_and_ci_contains_it(calibrated, decimals):
    y, p = calibrated
    p = p if decimals is None else np.round(p, decimals)  # rounding creates many ties
    auc = ev.discrimination(y, p, n_boot=200)
    assert auc.estimate == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert auc.lower < auc.estimate < auc.upper


def test_ci_narrows_with_n():
    small = ev.discrimination(*simulate(200), n_boot=500)
    large = ev.discrimination(*simulate(5000), n_boot=500)
    assert (large.upper - large.lower) < 0.5 * (small.upper - small.lower)


def test_cluster_bootstrap_widens_ci_for_duplicated_patients():
    y, p = simulate(300, seed=3)
    # Five identical lines per patient: rows are not independent, so resampling rows is overconfident.
    y5, p5, ids = np.repeat(y, 5), np.repeat(p, 5), np.repeat(np.arange(300), 5)
    naive = ev.discrimination(y5, p5, n_boot=500)
    clustered = ev.discrimination(y5, p5, groups=ids, n_boot=500)
    assert clustered.estimate == naive.estimate
    assert (clustered.upper - clustered.lower) > 1.5 * (naive.upper - naive.lower)


def test_bootstrap_is_reproducible_and_fast():
    y, p = simulate(2000)
    start = time.perf_counter()
    first = ev.discrimination(y, p, n_boot=1000, seed=7)
    assert time.perf_counter() - start < 3  # ~0.2 s measured; generous for a noisy machine
    assert ev.discrimination(y, p, seed=7) == first
    assert ev.discrimination(y, p, seed=8) != first


def test_auc_is_nan_with_one_class():
    auc = ev.discrimination([1, 1, 1], [0.2, 0.5, 0.7])
    assert all(np.isnan(auc))


# -------------------------------------------------------------------------------------- overall, evaluate


def test_scaled_brier_is_zero_for_the_prevalence_model(calibrated):
    y, _ = calibrated
    result = ev.overall(y, np.full(len(y), y.mean()))
    assert result["scaled_brier"] == pytest.approx(0, abs=1e-12)
    assert result["brier"] == pytest.approx(y.mean() * (1 - y.mean()))
    assert (result["n"], result["events"]) == (len(y), y.sum())


def test_evaluate_returns_flat_float_metrics(calibrated):
    y, p = calibrated
    metrics = ev.evaluate(y[:2000], p[:2000], n_boot=100)
    assert set(metrics) == {
        "roc_auc", "roc_auc_ci_lower", "roc_auc_ci_upper", "brier", "scaled_brier", "log_loss",
        "calibration_intercept", "calibration_slope", "observed_expected", "prevalence", "mean_predicted",
        "n", "events",
    }  # fmt: skip
    assert all(type(v) is float for v in metrics.values())
    assert metrics["n"] == 2000 and metrics["events"] == y[:2000].sum()
    assert 0 < metrics["scaled_brier"] < metrics["roc_auc"] < 1


# ------------------------------------------------------------------------------------------- net benefit


def test_net_benefit_reference_strategies_and_perfect_model(calibrated):
    y, p = calibrated
    thresholds = np.array([0.05, 0.1, 0.25, 0.5])
    prevalence = y.mean()
    nb = ev.net_benefit(y, p, thresholds)
    assert list(nb.columns) == ["threshold", "model", "treat_all", "treat_none"]
    expected_all = prevalence - (1 - prevalence) * thresholds / (1 - thresholds)
    np.testing.assert_allclose(nb["treat_all"], expected_all, atol=1e-12)
    assert (nb["treat_none"] == 0).all()
    assert (nb["model"] > nb["treat_all"]).all() and (nb["model"] > 0).all()
    perfect = ev.net_benefit(y, y.astype(float), thresholds)
    np.testing.assert_allclose(perfect["model"], prevalence, atol=1e-12)


def test_net_benefit_counts_by_hand():
    y, p = [1, 0, 1, 0], [0.8, 0.6, 0.3, 0.1]
    nb = ev.net_benefit(y, p, [0.5])  # treat the first two: one TP, one FP
    assert nb["model"].iloc[0] == pytest.approx(1 / 4 - 1 / 4 * 1)


# --------------------------------------------------------------------------------------------- subgroups


def test_age_band_and_regimen_class():
    assert list(ev.age_band([64.9, 65, 74.9, 75, 90])) == ["<65", "65-74", "65-74", ">=75", ">=75"]
    assert set(ev.REGIMEN_AGENTS) == set(REGIMENS)
    classes = ev.regimen_class(["R", "Rd", "KRd", "MPR"])
    assert list(classes) == ["single agent", "doublet", "triplet", "triplet"]
    with pytest.raises(ValueError, match="regimen must be one of"):
        ev.regimen_class(["Rd", "VRd"])


def test_subgroup_table_counts_add_up(calibrated):
    y, p = calibrated
    rng = np.random.default_rng(1)
    sex = rng.choice(["female", "male"], len(y)).astype(object)
    sex[:10] = None
    table = ev.subgroup_table(
        y, p, {"age_band": ev.age_band(rng.uniform(40, 90, len(y))), "sex": pd.Series(sex)}
    )
    assert list(table.columns) == [
        "variable", "level", "n", "events", "roc_auc", "observed", "expected", "observed_expected",
        "calibration_intercept",
    ]  # fmt: skip
    assert list(table["level"]) == ["<65", "65-74", ">=75", "female", "male", "missing"]
    sums = table.groupby("variable")[["n", "events"]].sum()
    assert (sums["n"] == len(y)).all() and (sums["events"] == y.sum()).all()
    female = (sex == "female").astype(bool)
    row = table.set_index(["variable", "level"]).loc[("sex", "female")]
    assert row["roc_auc"] == pytest.approx(roc_auc_score(y[female], p[female]), abs=1e-12)
    assert row["observed_expected"] == pytest.approx(row["observed"] / row["expected"])
    assert table.loc[table["n"] > 1000, "calibration_intercept"].abs().max() < 0.15


def test_subgroup_with_one_class_has_nan_auc():
    table = ev.subgroup_table([0, 0, 1, 0], [0.1, 0.2, 0.7, 0.4], {"g": ["a", "a", "b", "b"]})
    assert np.isnan(table.loc[table["level"] == "a", "roc_auc"]).all()
    assert table.loc[table["level"] == "b", "roc_auc"].item() == 1.0


# ----------------------------------------------------------------------------------------------- figures


def test_figures_render_and_save_as_png(calibrated, tmp_path):
    y, p = calibrated
    figures = ev.figures_for(y[:1000], p[:1000], "Discontinuation, test set", n_boot=100)
    assert set(figures) == {"reliability.png", "roc.png", "decision_curve.png"}
    for name, fig in figures.items():
        assert fig.axes[0].get_title().startswith("Discontinuation, test set")
        assert fig.axes[0].get_xlabel() or fig.axes[-1].get_xlabel()
        fig.savefig(tmp_path / name, dpi=80)
        assert (tmp_path / name).stat().st_size > 1000


def test_figures_survive_tiny_single_class_data(tmp_path):
    y, p = [0, 0, 0, 0, 0], [0.1, 0.2, 0.2, 0.4, 0.3]
    for fig in ev.figures_for(y, p, "tiny", n_boot=10).values():
        fig.savefig(tmp_path / "tiny.png")


# -------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 1], [0.1, 0.2], "same length"),
        ([], [], "must not be empty"),
        ([0, 2], [0.1, 0.2], "only 0 and 1"),
        (["no", "yes"], [0.1, 0.2], "only 0 and 1"),
        ([0, 1], [0.1, np.nan], "finite"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
        ([[0, 1]], [[0.1, 0.2]], "one-dimensional"),
    ],
)
def test_invalid_input_raises(y, p, message):
    with pytest.raises(ValueError, match=message):
        ev.evaluate(y, p)


def test_invalid_groups_and_thresholds_raise():
    with pytest.raises(ValueError, match="groups must have the same length"):
        ev.discrimination([0, 1], [0.1, 0.9], groups=[1])
    with pytest.raises(ValueError, match="groups must not contain missing"):
        ev.discrimination([0, 1], [0.1, 0.9], groups=["a", None])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        ev.net_benefit([0, 1], [0.1, 0.9], [0.0, 0.5])
    with pytest.raises(ValueError, match="one label per row"):
        ev.subgroup_table([0, 1], [0.1, 0.9], {"sex": ["female"]})


def test_calibration_intervals_match_the_point_estimates_and_cover_perfection(calibrated):
    y, p = calibrated
    point, ci = ev.calibration(y, p), ev.calibration_intervals(y, p)
    for name in ("calibration_intercept", "calibration_slope", "observed_expected"):
        assert ci[name].estimate == pytest.approx(point[name], rel=1e-6)
        assert ci[name].lower < ci[name].estimate < ci[name].upper
    assert ci["calibration_intercept"].lower < 0 < ci["calibration_intercept"].upper
    assert ci["calibration_slope"].lower < 1 < ci["calibration_slope"].upper
    assert ci["observed_expected"].lower < 1 < ci["observed_expected"].upper


def test_calibration_intervals_exclude_perfection_for_risks_twice_too_high(calibrated):
    y, p = calibrated
    ci = ev.calibration_intervals(y, np.clip(2 * p, 0, 1))
    assert ci["observed_expected"].upper < 1
    assert ci["calibration_intercept"].upper < 0
    o, e, n = y.sum(), np.clip(2 * p, 0, 1).sum(), len(y)
    half = 1.959964 * np.sqrt((1 - o / n) / o)
    assert ci["observed_expected"].lower == pytest.approx(o / e * np.exp(-half))


def test_calibration_intervals_are_nan_without_events():
    ci = ev.calibration_intervals(np.zeros(20, dtype=int), np.full(20, 0.2))
    assert np.isnan(ci["calibration_slope"].estimate) and np.isnan(ci["observed_expected"].lower)
