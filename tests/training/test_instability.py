"""Instability of the development procedure (training.instability): MAPE, classification instability, the
figures, and what the session's registered runs and model cards show (Riley & Collins 2023, pminternal)."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from matplotlib.patches import Rectangle
from mlflow import MlflowClient

from features.bands import RiskBands
from features.model.registry import MODEL_CARD_ARTIFACT
from training import instability as ins

BANDS = RiskBands(0.3, 0.6)
FIGURES = {
    f"instability_{name}.png"
    for name in ("prediction", "mape", "calibration", "classification", "decision_curve")
}
#: Four lines (low, exactly on the intermediate cut, intermediate, high) and three bootstrap models.
ORIGINAL = np.array([0.1, 0.3, 0.59, 0.7])
BOOT = np.array(
    [
        [0.1, 0.31, 0.65],  # low -> low, intermediate, high: 2 of 3 moved; crosses 0.3 twice, 0.6 once
        [0.29999, 0.3, 0.6],  # intermediate -> low, same, high (0.6 is high): 2 of 3; 0.3 once, 0.6 once
        [0.59, 0.61, 0.2],  # intermediate -> same, high, low: 2 of 3; 0.3 once, 0.6 once
        [0.7, 0.7, 0.7],  # high, never moved
    ]
)


def test_mape_of_known_predictions_is_the_hand_computed_value():
    original = np.array([0.1, 0.5])
    boot = np.array([[0.2, 0.1, 0.0], [0.5, 0.8, 0.3]])
    # Line 1: |0.1|, 0, |-0.1| -> 0.2 / 3; line 2: 0, 0.3, 0.2 -> 0.5 / 3; overall 0.7 / 6.
    np.testing.assert_allclose(ins.individual_mape(original, boot), [0.2 / 3, 0.5 / 3])
    s = ins.summary(original, boot, BANDS)
    assert s["instability_mape"] == pytest.approx(0.7 / 6)
    assert s["instability_mape"] == pytest.approx(np.abs(boot - original[:, None]).mean())
    assert s["instability_mape_median"] == pytest.approx(0.7 / 6)
    assert s["instability_mape_p90"] == pytest.approx(0.2 / 3 + 0.9 * 0.1)  # linear interpolation
    assert s["instability_mape_max"] == pytest.approx(0.5 / 3)


def test_identical_bootstrap_predictions_give_no_instability():
    p = np.linspace(0.01, 0.99, 50)  # across both cut points
    boot = np.repeat(p[:, None], 7, axis=1)
    s = ins.summary(p, boot, BANDS)
    assert s["instability_mape"] == s["instability_mape_p90"] == s["instability_mape_max"] == 0
    assert s["classification_instability"] == 0
    assert s["classification_instability_intermediate"] == s["classification_instability_high"] == 0
    assert not ins.classification_instability(p, boot, BANDS).any()


def test_classification_instability_counts_changes_across_each_cut_point():
    for p in [*ORIGINAL, *BOOT.ravel()]:  # the vectorised bands are the service's bands
        assert ["low", "intermediate", "high"][ins.band_index([p], BANDS)[0]] == BANDS.band(p)
    np.testing.assert_allclose(
        ins.classification_instability(ORIGINAL, BOOT, BANDS), [2 / 3, 2 / 3, 2 / 3, 0]
    )
    s = ins.summary(ORIGINAL, BOOT, BANDS)
    assert s["classification_instability"] == pytest.approx(6 / 12)
    assert s["classification_instability_intermediate"] == pytest.approx(4 / 12)  # 0.1 -> 0.65 crosses both
    assert s["classification_instability_high"] == pytest.approx(3 / 12)
    assert (s["instability_cut_intermediate"], s["instability_cut_high"]) == (0.3, 0.6)


def test_inputs_that_are_not_n_risks_and_an_n_by_b_matrix_are_refused():
    with pytest.raises(ValueError, match="at least one line and one bootstrap model"):
        ins.summary(ORIGINAL, np.empty((4, 0)), BANDS)
    with pytest.raises(ValueError, match="shapes"):
        ins.individual_mape(ORIGINAL, BOOT[:3])


def _drawn():
    """200 lines, B = 9 models whose risks scatter around the original's; one model gives everyone 0.4."""
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.9, 200)
    y = rng.binomial(1, p)
    boot = np.clip(p[:, None] + rng.normal(0, 0.05, (200, 9)), 0.001, 0.999)
    boot[:, 4] = 0.4
    return y, p, boot


def test_the_figures_draw_every_bootstrap_model_and_line():
    y, p, boot = _drawn()
    figures = ins.figures(y, p, boot, BANDS, "Test")
    assert set(figures) == FIGURES

    ax = figures["instability_prediction.png"].axes[0]
    (points,) = ax.collections
    assert len(points.get_offsets()) == 200 * 9  # every line under every model (fewer than SCATTER_LINES)
    diagonal, lower, upper = ax.lines
    order = np.argsort(p)
    np.testing.assert_allclose(lower.get_ydata(), np.quantile(boot[order], 0.025, axis=1))
    np.testing.assert_allclose(upper.get_ydata(), np.quantile(boot[order], 0.975, axis=1))
    np.testing.assert_allclose(diagonal.get_ydata(), [0, 1])

    ax = figures["instability_calibration.png"].axes[0]
    assert len(ax.lines) == 1 + 9 + 1  # ideal, B bootstrap curves, the developed model's
    curves = ax.lines[1:-1]
    assert [len(c.get_xdata()) for c in curves] == [ins.CURVE_POINTS] * 4 + [1] + [ins.CURVE_POINTS] * 4
    assert curves[4].get_ydata()[0] == pytest.approx(y.mean())  # one risk for all: one point, the event rate
    assert [t.get_text() for t in ax.get_legend().get_texts()][1] == "Bootstrap models (B = 9)"

    ax = figures["instability_classification.png"].axes[0]
    np.testing.assert_allclose(
        ax.collections[0].get_offsets(), np.column_stack([p, ins.classification_instability(p, boot, BANDS)])
    )
    assert [line.get_xdata()[0] for line in ax.lines] == [0.3, 0.6]  # the cut points

    ax = figures["instability_decision_curve.png"].axes[0]
    assert len(ax.lines) == 9 + 3  # B bootstrap curves, the developed model's, treat all, treat none

    scatter, hist = figures["instability_mape.png"].axes
    np.testing.assert_allclose(scatter.collections[0].get_offsets()[:, 1], ins.individual_mape(p, boot))
    assert sum(isinstance(a, Rectangle) for a in hist.patches) == 40


# ---------------------------------------------------------------------- the session's training and registry


@pytest.mark.slow
def test_the_registered_runs_log_the_instability_metrics_figures_and_card_section(registry):
    mlflow.set_tracking_uri(registry["settings"].tracking_uri)
    client = MlflowClient()
    for logged in registry["versions"]:
        result = logged.result
        original = result.model.probability(registry["result"].frame)
        boot = result.validation.predictions
        assert boot.shape[1] == result.validation.resamples > 0
        metrics = client.get_run(logged.run_id).data.metrics
        assert metrics["instability_mape"] == pytest.approx(np.abs(boot - original[:, None]).mean())
        assert 0 < metrics["instability_mape"] < 0.2
        assert (
            metrics["instability_mape_median"]
            <= metrics["instability_mape_p90"]
            <= metrics["instability_mape_max"]
        )
        cut = metrics["instability_cut_intermediate"]
        assert cut == pytest.approx(np.ceil(original.mean() * 20 - 1e-9) / 20)  # the default rule
        assert metrics["instability_cut_high"] == pytest.approx(2 * cut)
        moved = ((boot >= cut) != (original >= cut)[:, None]).mean()
        assert metrics["classification_instability_intermediate"] == pytest.approx(moved)
        assert 0 < moved <= metrics["classification_instability"] < 0.5
        plots = {a.path for a in client.list_artifacts(logged.run_id, "plots")}
        assert {f"plots/{name}" for name in FIGURES} <= plots
        card = mlflow.artifacts.load_text(f"runs:/{logged.run_id}/{MODEL_CARD_ARTIFACT}")
        section = card.split("## Stability of individual predictions (Riley & Collins 2023)")[1].split(
            "\n## "
        )[0]
        assert f"{100 * metrics['instability_mape']:.1f} percentage points" in section
        assert f"another band for {metrics['classification_instability']:.1%}" in section
        assert "Biom J 2023;65:2200302" in section
