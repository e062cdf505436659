"""Model updating on local data (``training.updating``, ``lenrisk update``): the closed testing procedure,
the updated model (calibration on fresh data, SHAP additivity, its interval), refit eligibility, and the
registered challenger with its lineage.

The parent models are the session's (``trained``: 2,000 synthetic lines of two settings), registered here in
a store of this module's own, so the session's registry keeps its aliases. Local data come from the same
generator with both outcomes' intercepts shifted (``shifted(log_odds=0.7)``) or not shifted at all.
"""

from __future__ import annotations

import hashlib

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from scipy.special import logit as to_logit
from typer.testing import CliRunner

from features.model.registry import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAMES,
    PARENT_VERSION_TAG,
    UPDATE_DATA_TAG,
    UPDATE_METHOD_TAG,
    RegistrySettings,
    load_registered,
)
from features.schema import OUTCOMES
from features.validate import validate_table
from service.cli import app
from tests.helpers import tracking_uri_variable_kept
from training import evaluation, updating
from training.cohort.generate import generate_cohort
from training.cohort.shift import shifted
from training.registry import log_and_register, register_update
from training.updating import Fit, closed_test

DISC = MODEL_NAMES["discontinuation"]
SHIFT = 0.7
N_LOCAL = 1500
N_BOOT = 20


def _local(synthetic_source, n: int, seed: int, log_odds: float = SHIFT):
    frame = generate_cohort(n, seed, synthetic_source.settings, params=shifted(log_odds=log_odds))
    return validate_table(frame, require_outcomes=True).raise_on_errors()


@pytest.fixture(scope="module")
def shifted_local(synthetic_source):
    """1,500 local lines of a population whose outcomes are more frequent (log odds +0.7): a draw in which
    the procedure recalibrates both models, as it does in about 6 draws in 10 with these parents (the others
    refit; ``test_an_intercept_shift_is_updated_mostly_by_a_recalibration``, docs/update.md)."""
    return _local(synthetic_source, N_LOCAL, seed=22)


@pytest.fixture(scope="module")
def updated(trained, shifted_local):
    """Both session models updated on :func:`shifted_local`."""
    return {
        outcome: updating.update(result.model, shifted_local, seed=3, n_boot=N_BOOT)
        for outcome, result in trained.outcomes.items()
    }


def test_the_closed_test_steps_down_from_the_most_extensive_update():
    """Vergouwe et al. 2017: the top method against the original model first, then against each simpler
    update; the first it does not beat significantly is chosen. LR statistics through the original model."""
    fits = {
        "none": Fit("none", 0, -1000.0),
        "intercept": Fit("intercept", 1, -950.0),
        "recalibration": Fit("recalibration", 2, -949.5),
        "refit": Fit("refit", 6, -946.0),
    }
    chosen, tests = closed_test(fits)
    assert chosen == "intercept"
    assert [(t.method, t.against, t.df) for t in tests] == [("refit", "none", 6), ("refit", "intercept", 5)]
    assert tests[0].statistic == pytest.approx(108.0) and tests[0].significant
    assert tests[1].statistic == pytest.approx(8.0) and tests[1].p_value == pytest.approx(0.1562, abs=1e-4)
    # a refit far better than both recalibrations is chosen; no significant gain over the original: none
    assert closed_test({**fits, "refit": Fit("refit", 6, -930.0)})[0] == "refit"
    assert (
        closed_test({k: Fit(k, f.parameters, -1000.0 + f.parameters) for k, f in fits.items()})[0] == "none"
    )
    # without a refit, logistic recalibration is the top method (2 df against the original)
    chosen, tests = closed_test({k: v for k, v in fits.items() if k != "refit"})
    assert chosen == "intercept" and [(t.against, t.df) for t in tests] == [("none", 2), ("intercept", 1)]


@pytest.mark.slow
def test_an_intercept_shift_is_recalibrated_within_the_updates_own_precision(
    updated, shifted_local, synthetic_source
):
    """On 100,000 fresh shifted lines the parents' intercepts are off by ~0.7; after the update on 1,500 local
    lines what remains is within the update's own 95% interval (about ±0.11 at this size: ±0.02 needs tens
    of thousands of local lines, the next test)."""
    fresh = _local(synthetic_source, 100_000, seed=99)
    for outcome, u in updated.items():
        assert u.method in ("intercept", "recalibration"), (outcome, u.closed_test.tests)
        assert "refit" in u.closed_test.fits  # offered at 1,500 lines, and not chosen
        y = fresh[OUTCOMES[outcome]].to_numpy()
        after = evaluation.calibration(y, u.model.probability(fresh))
        before = evaluation.calibration(y, u.parent.probability(fresh))
        assert before["calibration_intercept"] > 0.4, (outcome, before)
        local = evaluation.calibration_intervals(
            shifted_local[OUTCOMES[outcome]].to_numpy(), u.parent.probability(shifted_local)
        )["calibration_intercept"]
        assert abs(after["calibration_intercept"]) <= (local.upper - local.lower) / 2


def _population_calibration(truth: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Calibration-in-the-large and slope against the true risks (a binomial GLM of the true risks), free of
    the sampling noise of fresh outcomes."""
    import statsmodels.api as sm

    lp = to_logit(p)
    binomial = sm.families.Binomial()
    intercept = sm.GLM(truth, np.ones((len(lp), 1)), family=binomial, offset=lp).fit().params[0]
    slope = sm.GLM(truth, sm.add_constant(lp), family=binomial).fit().params[1]
    return float(intercept), float(slope)


@pytest.mark.slow
def test_a_challenger_updated_on_a_large_local_sample_is_calibrated_within_the_issues_bounds(
    trained, synthetic_source
):
    """The issue's Done-when: the challenger's calibration-in-the-large on fresh shifted data within ±0.02
    and its slope within 0.9-1.1. The update's intercept has a standard error of about 1 / sqrt(n p (1 - p)),
    0.05 at 1,500 local lines, so the bound needs a large local sample: 100,000 lines (one draw, seed not
    chosen), judged on 100,000 fresh lines against their true risks."""
    local = _local(synthetic_source, 100_000, seed=2026)
    frame = generate_cohort(
        100_000, 2027, synthetic_source.settings, with_truth=True, params=shifted(log_odds=SHIFT)
    )
    fresh = validate_table(frame).clean
    for outcome, result in trained.outcomes.items():
        parent = result.model
        chosen = updating.select(parent, local, seed=1)
        assert chosen.chosen != "none", (outcome, chosen.tests)
        p = updating.risk(chosen.fit, fresh, parent.logit_of(parent.encode(fresh)))
        truth = fresh[f"true_p_{OUTCOMES[outcome]}"].to_numpy()
        before = _population_calibration(truth, parent.probability(fresh))
        intercept, slope = _population_calibration(truth, p)
        assert before[0] > 0.4, (outcome, before)
        assert abs(intercept) <= 0.02, (outcome, chosen.chosen, intercept)
        assert 0.9 <= slope <= 1.1, (outcome, chosen.chosen, slope)


@pytest.mark.slow
def test_an_intercept_shift_is_updated_mostly_by_a_recalibration(trained, synthetic_source):
    """Ten draws of 1,500 shifted lines: always an update, a recalibration in at least half. The parents
    were developed on 2,000 lines, so a local sample of 1,500 also detects their own estimation error and a
    refit wins the others (with parents of 10,000 lines: a recalibration in 40 of 40, docs/update.md)."""
    draws = [_local(synthetic_source, N_LOCAL, seed) for seed in range(100, 110)]
    for outcome, result in trained.outcomes.items():
        chosen = [updating.select(result.model, d, seed=1).chosen for d in draws]
        assert "none" not in chosen, (outcome, chosen)
        assert sum(c in ("intercept", "recalibration") for c in chosen) >= 5, (outcome, chosen)


@pytest.mark.slow
def test_the_updated_model_is_the_parent_recalibrated_and_its_shap_values_add_up(updated, shifted_local):
    for u in updated.values():
        fit, parent, model = u.closed_test.fit, u.parent, u.model
        assert model.encoder is parent.encoder and model.estimator is parent.estimator
        X = model.encode(shifted_local)
        np.testing.assert_allclose(
            model.logit_of(X), fit.intercept + fit.slope * parent.logit_of(X), rtol=0, atol=1e-10
        )
        explanation = model.explain(shifted_local)
        np.testing.assert_allclose(
            explanation.base + explanation.values.sum(axis=1),
            to_logit(model.probability(shifted_local)),
            atol=1e-8,
        )


@pytest.mark.slow
def test_the_updated_interval_follows_the_update_and_carries_its_uncertainty(updated, shifted_local):
    """Each of the parent's refits is followed by the update re-estimated on one local resample: for a
    recalibration-in-the-large the refits' intercepts move by the resampled intercepts, whose spread is the
    update's own standard error (Wald, from the local data); the interval still contains the served risk."""
    for outcome, u in updated.items():
        assert u.method == "intercept", outcome  # this draw (see shifted_local)
        moved = u.model.ensemble.intercepts - u.parent.ensemble.intercepts
        np.testing.assert_allclose(u.model.ensemble.weights, u.parent.ensemble.weights, rtol=0, atol=0)
        wald = evaluation.calibration_intervals(
            shifted_local[OUTCOMES[outcome]].to_numpy(), u.parent.probability(shifted_local)
        )["calibration_intercept"]
        se = (wald.upper - wald.lower) / (2 * 1.959964)
        assert 0.6 * se < moved.std(ddof=1) < 1.6 * se, (outcome, moved.std(ddof=1), se)
        assert abs(moved.mean() - u.closed_test.fit.intercept) < se
        X = u.model.encode(shifted_local)
        lower, upper = u.model.interval_encoded(X)
        risk = u.model.bulk_probability(X)
        assert ((lower < risk) & (risk < upper)).all()


@pytest.mark.slow
def test_the_update_procedure_is_validated_by_bootstrap_on_the_local_data(updated):
    for u in updated.values():
        v = u.validation.metrics
        assert u.validation.resamples == N_BOOT
        for name in ("calibration_intercept", "calibration_slope", "observed_expected", "roc_auc", "brier"):
            assert v[name].lower <= v[name].corrected <= v[name].upper, name
        assert abs(v["calibration_intercept"].corrected) < 0.15
        assert 0.8 < v["calibration_slope"].corrected < 1.25
        assert 0.9 < v["observed_expected"].corrected < 1.1


@pytest.mark.slow
def test_unshifted_local_data_mostly_need_no_update(trained, synthetic_source):
    """Ten draws of 1,500 lines of the development population: no update in most (6 and 7 of 10 here; the
    others refit, detecting the 2,000-line parents' own estimation error; with parents of 10,000 lines: no
    update in 38 of 40, docs/update.md)."""
    draws = [_local(synthetic_source, N_LOCAL, seed, 0.0) for seed in range(10)]
    for outcome, result in trained.outcomes.items():
        chosen = [updating.select(result.model, d, seed=1).chosen for d in draws]
        assert chosen.count("none") >= 6, (outcome, chosen)
        assert set(chosen) <= {"none", "refit"}, (outcome, chosen)


@pytest.mark.slow
def test_a_refit_is_not_offered_below_the_parsimonious_minimum(trained, synthetic_source):
    parent = trained.outcomes["discontinuation"].model
    small = _local(synthetic_source, 150, seed=4)
    closed = updating.select(parent, small, seed=1)
    assert "refit" not in closed.fits and "fewer than the" in closed.refit_not_offered
    assert closed.tests[0].method == "recalibration" and closed.tests[0].df == 2
    assert "refit" in updating.select(parent, _local(synthetic_source, N_LOCAL, seed=4), seed=1).fits


@pytest.fixture(scope="module")
def store(tmp_path_factory, trained, synthetic_source):
    """A store of this module's own holding the session's models as version 1 (champion)."""
    settings = RegistrySettings(mlflow_tracking_uri=None, mlruns_dir=tmp_path_factory.mktemp("update-mlruns"))
    with tracking_uri_variable_kept():
        log_and_register(trained, settings, synthetic=synthetic_source)
    return settings


@pytest.mark.slow
def test_the_update_is_registered_as_challenger_with_its_lineage(store, updated, shifted_local, tmp_path):
    u = updated["discontinuation"]
    with tracking_uri_variable_kept():
        registered = register_update(
            store, DISC, "1", u, frame=shifted_local, source="local.csv", data_sha256="ab" * 32
        )
        mlflow.set_tracking_uri(store.tracking_uri)
        client = MlflowClient()
        version = client.get_model_version(DISC, registered.version)
        run = client.get_run(registered.run_id)
        loaded = load_registered(client, DISC, registered.version, str(tmp_path))
        aliases = client.get_registered_model(DISC).aliases
    assert registered.version == "2" and registered.aliases == (CHALLENGER,)
    assert str(aliases[CHAMPION]) == "1"  # promotion stays `lenrisk promote`'s
    assert version.tags[PARENT_VERSION_TAG] == "1"
    assert version.tags[UPDATE_METHOD_TAG] == u.method
    assert version.tags[UPDATE_DATA_TAG] == "ab" * 32
    assert version.description.startswith(f"Update of {DISC} version 1 by ")
    metrics = run.data.metrics
    first = u.closed_test.tests[0]
    assert metrics[f"lr_test_{first.method}_vs_none_p_value"] == pytest.approx(first.p_value)
    for name in ("calibration_intercept", "calibration_slope", "observed_expected", "roc_auc", "brier"):
        assert metrics[f"validated_{name}_ci_lower"] <= metrics[f"validated_{name}"]
    assert "champion_log_loss_on_development" in metrics  # what `lenrisk promote` compares
    np.testing.assert_allclose(
        loaded.probability(shifted_local), u.model.probability(shifted_local), rtol=1e-12
    )
    card = mlflow.artifacts.load_text(f"runs:/{registered.run_id}/model_card.md")
    assert "## How the update was chosen" in card and "# The parent's card (version 1" in card
    assert f"\n## Model card: {DISC}, version 1\n" in card  # the parent's card, its headings one level down


@pytest.mark.slow
def test_lenrisk_update_registers_a_refit_of_a_shift_and_nothing_for_unshifted_data(
    store, synthetic_source, tmp_path, monkeypatch
):
    """End to end through the CLI. This draw of 1,500 shifted lines is one where the refit wins (about 4 in
    10 with these parents): the refit is registered with its own encoder and interval, and its SHAP values
    add up too. Unshifted lines: nothing registered, exit 0. A row breaking the contract: refused with its
    row, column and rule, exit 2."""
    monkeypatch.setenv("LENRISK_MLRUNS_DIR", str(store.mlruns_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()
    shifted_file, plain_file = tmp_path / "shifted.csv", tmp_path / "plain.csv"
    shifted_frame = generate_cohort(N_LOCAL, 31, synthetic_source.settings, params=shifted(log_odds=SHIFT))
    shifted_frame.to_csv(shifted_file, index=False)
    generate_cohort(N_LOCAL, 2, synthetic_source.settings).to_csv(plain_file, index=False)
    args = ["update", "--model", f"{DISC}@champion", "--bootstrap", "20", "--quiet"]
    with tracking_uri_variable_kept():
        result = runner.invoke(app, [*args, "--data", str(shifted_file)])
        assert result.exit_code == 0, result.output
        assert ": refit;" in result.output and "(challenger)" in result.output, result.output
        client = MlflowClient(store.tracking_uri)
        newest = client.get_model_version_by_alias(DISC, CHALLENGER)
        digest = hashlib.sha256(shifted_file.read_bytes()).hexdigest()
        assert newest.tags[UPDATE_DATA_TAG] == digest and newest.tags[PARENT_VERSION_TAG] == "1"
        assert newest.tags[UPDATE_METHOD_TAG] == "refit"
        refit = load_registered(client, DISC, newest.version, str(tmp_path / "refit"))
        result = runner.invoke(app, [*args, "--data", str(plain_file)])
        assert result.exit_code == 0, result.output
        assert "nothing registered" in result.output, result.output
        assert client.get_model_version_by_alias(DISC, CHALLENGER).version == newest.version
        bad = runner.invoke(app, ["update", "--data", str(plain_file), "--model", "no-such-model"])
        broken_file = tmp_path / "broken.csv"
        shifted_frame.assign(age=["abc", *shifted_frame["age"].iloc[1:]]).to_csv(broken_file, index=False)
        broken = runner.invoke(app, [*args, "--data", str(broken_file)])
        assert client.get_model_version_by_alias(DISC, CHALLENGER).version == newest.version
    assert bad.exit_code == 2 and "unknown model" in bad.output
    assert broken.exit_code == 2 and "row 1, column age" in broken.output, broken.output
    rows = validate_table(shifted_frame, require_outcomes=True).raise_on_errors()
    assert refit.has_interval and refit.ensemble.size == 20
    explanation = refit.explain(rows)
    np.testing.assert_allclose(
        explanation.base + explanation.values.sum(axis=1), to_logit(refit.probability(rows)), atol=1e-8
    )
