"""MLflow logging, registration gates, aliases, promotion on the same data, the pyfunc model and the
``lenrisk train`` CLI.

Everything runs against real, temporary SQLite tracking stores (no mocked MLflow). The models are the
session's (``trained`` in tests/conftest.py: a small synthetic cohort, one cross-validation repeat), plus
trainings here: the same cohort with shuffled outcomes (no signal: never registered), another cohort of the
same population (a usable challenger), a small sample allowed explicitly, and the CLI's own end to end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.errors import ArtifactError, ContractError
from features.model.registry import (
    CHALLENGER,
    CHAMPION,
    DIGEST_TAG,
    MODEL_NAMES,
    REPO_ROOT,
    RUN_TAG,
    SMALL_SAMPLE_TAG,
    RegistrySettings,
)
from features.model.riskmodel import RiskModel
from features.schema import OUTCOMES, PREDICTOR_NAMES
from features.validate import validate_table
from service.cli import app
from tests.helpers import N_BOOT, tracking_uri_variable_kept
from training.candidates import SmallSampleError
from training.card import DESCRIPTION_LIMIT, ModelCard
from training.cohort.generate import generate_cohort
from training.pipeline import TrainingResult, train
from training.registry import RegisteredVersion, RegistryError, log_and_register, model_signature, promote

DISC, DR = MODEL_NAMES["discontinuation"], MODEL_NAMES["dose_reduction"]
CARD_SECTIONS = (
    "## Intended use",
    "## Data",
    "## Sample size",
    "## Outcome",
    "## Predictors and their timing",
    "## Model and how it was chosen",
    "## Calibration",
    "## Performance (TRIPOD+AI 23)",
    "## Performance by subgroup",
    "## Main predictors by SHAP",
    "## Limitations",
)


@pytest.fixture(scope="module")
def noise_trained(cohort: pd.DataFrame, trained: TrainingResult) -> TrainingResult:
    """The session's cohort with both outcomes shuffled: no signal at all, so no usable model."""
    noise = cohort.copy()
    rng = np.random.default_rng(5)
    for column in OUTCOMES.values():
        noise[column] = rng.permutation(noise[column].to_numpy())
    with tracking_uri_variable_kept():
        return train(noise, seed=trained.seed, source="noise", n_repeats=1, n_boot=N_BOOT)


@pytest.fixture(scope="module")
def other_trained(synthetic_source) -> TrainingResult:
    """Another cohort of the same population (a new seed): a usable challenger developed on other data."""
    frame = validate_table(generate_cohort(2000, 12, synthetic_source.settings)).raise_on_errors()
    with tracking_uri_variable_kept():
        return train(frame, seed=12, source="other", n_repeats=1, n_boot=N_BOOT)


def _store(tmp_path_factory, name: str) -> RegistrySettings:
    return RegistrySettings(mlflow_tracking_uri=None, mlruns_dir=tmp_path_factory.mktemp(name))


@pytest.fixture(scope="module")
def store(tmp_path_factory, trained, noise_trained, other_trained, synthetic_source):
    """The session's models (version 1), then the noise models (logged, not registered), then the other
    cohort's (version 2, compared with version 1 on its development data)."""
    settings = _store(tmp_path_factory, "mlruns")
    with tracking_uri_variable_kept():
        first = log_and_register(trained, settings, synthetic=synthetic_source)
        open_figures = plt.get_fignums()
        noise = log_and_register(noise_trained, settings)
        second = log_and_register(other_trained, settings)
    by_name = lambda logged: {r.name: r for r in logged}  # noqa: E731
    return settings, by_name(first), by_name(second), open_figures, by_name(noise)


def _client(settings: RegistrySettings) -> MlflowClient:
    mlflow.set_tracking_uri(settings.tracking_uri)
    return MlflowClient()


@pytest.mark.slow
def test_first_versions_are_champion_and_challenger_and_the_next_challenger_only(store):
    settings, first, second, _, _ = store
    client = _client(settings)
    for name in (DISC, DR):
        assert first[name].version == "1" and first[name].aliases == (CHALLENGER, CHAMPION)
        assert second[name].version == "2" and second[name].aliases == (CHALLENGER,)
        assert client.get_registered_model(name).aliases == {CHAMPION: 1, CHALLENGER: 2}
    assert settings.tracking_uri == f"sqlite:///{settings.mlruns_dir.resolve()}/mlflow.db"


@pytest.mark.slow
def test_a_model_no_better_than_the_average_risk_is_logged_but_never_registered(store):
    settings, _, _, _, noise = store
    client = _client(settings)
    for name in (DISC, DR):
        logged = noise[name]
        assert logged.version is None and logged.aliases == () and logged.digest is None
        assert logged.result.problems and not logged.result.usable
        run = client.get_run(logged.run_id)
        assert run.data.tags["registered"] == "false" and run.data.tags["not_usable_because"]
        card = mlflow.artifacts.load_text(f"runs:/{logged.run_id}/model_card.md")
        assert "## Not registered" in card and "(not registered)" in card
        versions = client.search_model_versions(f"name = '{name}'")
        assert sorted(str(v.version) for v in versions) == ["1", "2"]  # the noise models took no version


@pytest.mark.slow
def test_runs_hold_params_metrics_and_artifacts(store, synthetic_source):
    settings, first, _, open_figures, _ = store
    client = _client(settings)
    run = client.get_run(first[DISC].run_id)
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.params["source"] == synthetic_source.label()
    assert {"seed", "n_rows", "n_patients", "lenrisk_version", "synthetic_seed"} <= parent.data.params.keys()
    params, metrics = run.data.params, run.data.metrics
    assert params["chosen_family"] in ("logistic", "xgboost") and params["cv_repeats"] == "1"
    assert params["chosen_candidate"] in params["candidates_fitted"].split(",")
    assert params["candidates_fitted"] == "null,setting,parsimonious"  # 2,000 lines: not enough for "full"
    assert {"calibrator_slope", "calibrator_intercept", "selection_rule", "anticipated_c"} <= params.keys()
    assert params["bootstrap_resamples"] == str(N_BOOT) and params["small_sample"] == "False"
    assert any(key.startswith("hp_") for key in params)
    for metric in ("roc_auc", "calibration_slope", "calibration_intercept", "brier", "log_loss"):
        for suffix in ("", "_ci_lower", "_ci_upper", "_apparent", "_optimism"):
            assert np.isfinite(metrics[f"validated_{metric}{suffix}"]), metric + suffix
        assert metrics[f"validated_{metric}_ci_lower"] <= metrics[f"validated_{metric}_ci_upper"]
    assert metrics["validated_log_loss"] < metrics["null_validated_log_loss"]  # the gate it passed
    for key in ("riley_min_n", "n_parameters", "events_per_parameter", "effective_n", "applied_shrinkage"):
        assert np.isfinite(metrics[key]), key
    assert metrics["effective_n"] <= 2000 and metrics["riley_min_n"] <= metrics["effective_n"]
    assert {"cv_null_log_loss_mean", "cv_parsimonious_log_loss_sd"} <= metrics.keys()
    assert metrics["interval_refits"] == N_BOOT  # one refit per resample, none failed at 2,000 lines
    assert 0 < metrics["interval_width_median"] <= metrics["interval_width_p90"] < 0.5
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    expected = {
        "model_card.md",
        "subgroups.csv",
        "subgroups.md",
        "shap_importance.csv",
        "generator_parameters.csv",
        "sample_size.csv",
        "candidates.csv",
    }
    assert expected <= artifacts
    assert {
        "plots/roc.png",
        "plots/reliability.png",
        "plots/decision_curve.png",
        "plots/shap_beeswarm.png",
    } <= plots
    assert open_figures == []


@pytest.mark.slow
def test_the_version_description_summarises_the_logged_model_card(store):
    settings, first, _, _, _ = store
    client = _client(settings)
    description = client.get_model_version(DISC, "1").description
    assert len(description) <= DESCRIPTION_LIMIT
    assert "Synthetic data" in description and "Riley" in description and "shrinkage" in description
    assert "Optimism-corrected" in description and "AUC" in description
    assert f"`model_card.md` of training run `{first[DISC].run_id}`" in description
    assert "## " not in description  # a summary: the sections are in the card
    full = mlflow.artifacts.load_text(f"runs:/{first[DISC].run_id}/model_card.md")
    assert all(section in full for section in CARD_SECTIONS)
    assert "| sex | male |" in full  # the subgroup table itself


@pytest.mark.slow
def test_the_champion_pyfunc_gives_the_risk_models_probabilities(store, trained, cohort):
    settings, _, _, _, _ = store
    _client(settings)
    model = mlflow.pyfunc.load_model(f"models:/{DISC}@{CHAMPION}")
    rows = cohort[["patient_id", *PREDICTOR_NAMES]].iloc[:300]
    out = model.predict(rows)
    expected = trained.outcomes["discontinuation"].model.probability(rows)
    assert list(out.columns) == ["probability", "logit", "lower", "upper"]
    assert (out.dtypes == np.float64).all()
    np.testing.assert_allclose(out["probability"].to_numpy(), expected, rtol=0, atol=1e-12)
    lower, upper = trained.outcomes["discontinuation"].model.interval(rows)
    np.testing.assert_array_equal(out["lower"], lower)
    np.testing.assert_array_equal(out["upper"], upper)
    assert (out["lower"] < out["probability"]).mean() > 0.9  # the registered model carries its ensemble
    # Optional inputs may be left out entirely (unknown renal function and ECOG).
    partial = model.predict(rows.drop(columns=["patient_id", "crcl_ml_min", "ecog"]).head(3))
    assert partial["probability"].between(0, 1).all()


@pytest.mark.slow
def test_the_pyfunc_refuses_invalid_rows_naming_row_column_and_rule_but_no_value(store, cohort):
    settings, _, _, _, _ = store
    _client(settings)
    model = mlflow.pyfunc.load_model(f"models:/{DR}/1")
    rows = cohort[list(PREDICTOR_NAMES)].head(3).copy()
    rows.loc[rows.index[1], "age"] = 123.4
    with pytest.raises(ContractError) as caught:
        model.predict(rows)
    message = str(caught.value)
    assert "row 2, column age: out of range" in message and "123.4" not in message
    assert [(e.row_number, e.column) for e in caught.value.errors] == [(2, "age")]


@pytest.mark.slow
def test_the_logged_model_has_no_pickles_and_its_digest_tag_guards_the_artifact(store, tmp_path):
    settings, first, _, _, _ = store
    client = _client(settings)
    version = client.get_model_version(DISC, "1")
    assert version.tags[DIGEST_TAG] == first[DISC].digest and version.tags[RUN_TAG] == first[DISC].run_id
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{DISC}/1", dst_path=str(tmp_path)))
    files = [p for p in local.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".cloudpickle", ".joblib")]
    assert "python_model.pkl" not in (local / "MLmodel").read_text()
    code = local / "code"  # the runtime model travels with the model, so it loads without lenrisk installed
    assert (code / "features" / "validate.py").is_file() and (code / "features/model/riskmodel.py").is_file()
    logged = {p.relative_to(code).as_posix() for p in code.rglob("*.py")}
    assert {p for p in logged if not p.startswith("features/")} == set()  # no training or service code
    assert not {"features/tableio.py", "features/record.py", "features/model/registry.py"} & logged
    assert not list(code.rglob("__pycache__"))
    artifact = local / "artifacts" / "risk_model"
    digests = artifact / "digests.json"
    assert hashlib.sha256(digests.read_bytes()).hexdigest() == version.tags[DIGEST_TAG]
    assert RiskModel.load(artifact, expected_digest=version.tags[DIGEST_TAG]).outcome == "discontinuation"

    encoder = artifact / "encoder.json"
    encoder.write_text(encoder.read_text().replace('"n":', '"n" :'))
    with pytest.raises(ArtifactError, match=r"encoder\.json does not match"):
        RiskModel.load(artifact, expected_digest=version.tags[DIGEST_TAG])
    # Re-signing the tampered file in digests.json does not help: the registry's digest no longer matches.
    table = json.loads(digests.read_text())
    table["encoder.json"] = hashlib.sha256(encoder.read_bytes()).hexdigest()
    digests.write_text(json.dumps(table, indent=1))
    with pytest.raises(ArtifactError, match="digest recorded"):
        RiskModel.load(artifact, expected_digest=version.tags[DIGEST_TAG])


@pytest.mark.slow
def test_promote_compares_both_models_on_the_challengers_development_data(store, other_trained):
    settings, first, second, _, _ = store
    client = _client(settings)
    run = client.get_run(second[DISC].run_id)
    assert run.data.tags["compared_champion_version"] == "1"
    champion_loss = run.data.metrics["champion_log_loss_on_development"]
    frame = other_trained.frame  # the champion, scored on the challenger's development lines
    expected = first[DISC].result.model.probability(frame)
    y = frame["discontinued_toxicity"].to_numpy()
    assert champion_loss == pytest.approx(-np.mean(y * np.log(expected) + (1 - y) * np.log(1 - expected)))

    decisions = {d.name: d for d in promote(settings)}
    for name in (DISC, DR):
        d = decisions[name]
        assert d.challenger_log_loss == second[name].validated_log_loss
        assert d.promoted == (d.challenger_log_loss <= d.champion_log_loss)
        assert "on the same data" in d.decision
        expected_champion = 2 if d.promoted else 1
        assert client.get_registered_model(name).aliases == {CHAMPION: expected_champion, CHALLENGER: 2}
        assert promote(settings, [name], force=True)[0].promoted or d.promoted
    assert promote(settings, [DR])[0].decision == "already champion"


@pytest.mark.slow
def test_promote_refuses_a_challenger_compared_with_another_champion(
    tmp_path_factory, trained, other_trained
):
    settings = _store(tmp_path_factory, "promotion")
    client = _client(settings)
    with tracking_uri_variable_kept():
        log_and_register(trained, settings)  # version 1, champion
        log_and_register(other_trained, settings)  # version 2, compared with 1
        client.set_registered_model_alias(DISC, CHAMPION, "2")
        log_and_register(trained, settings)  # version 3, compared with 2 (disc) and 1 (dr)
        client.set_registered_model_alias(DISC, CHAMPION, "1")
        with pytest.raises(
            RegistryError, match="compared with version 2 at training, not with the champion 1"
        ):
            promote(settings, [DISC])
        forced = promote(settings, [DISC], force=True)
    assert forced[0].promoted and "forced" in forced[0].decision
    assert client.get_registered_model(DISC).aliases[CHAMPION] == 3


@pytest.mark.slow
def test_a_small_sample_model_is_flagged_and_never_champion_by_itself(tmp_path_factory):
    frame = validate_table(generate_cohort(400, 21)).raise_on_errors()
    with pytest.raises(SmallSampleError, match="too few lines"):
        train(frame, seed=21, source="small", n_boot=N_BOOT)
    with tracking_uri_variable_kept():
        result = train(frame, seed=21, source="small", n_boot=N_BOOT, allow_small_sample=True)
        usable = [o for o in result.outcomes.values() if o.usable]
        assert usable, "400 lines of the generator carry enough signal for at least one outcome"
        assert all(o.small_sample for o in result.outcomes.values())
        settings = _store(tmp_path_factory, "small")
        logged = {r.name: r for r in log_and_register(result, settings)}
        client = _client(settings)
        for outcome in usable:
            version = client.get_model_version(outcome.model_name, logged[outcome.model_name].version)
            assert version.tags[SMALL_SAMPLE_TAG] == "true" and version.aliases == [CHALLENGER]
            assert "too small a sample" in version.description
            with pytest.raises(RegistryError, match="too small a sample"):
                promote(settings, [outcome.model_name])


@pytest.mark.slow
def test_the_registered_model_predicts_a_plain_csv_read_by_pandas(store, trained, cohort, tmp_path):
    """Integer ages and ECOG (int64 columns), empty ECOG and CrCl: the plain MLflow API and
    ``mlflow models predict`` both score the file as the model does."""
    settings, _, _, _, _ = store
    rows = cohort[list(PREDICTOR_NAMES)].head(40).copy()
    rows["age"] = rows["age"].round().astype(int)
    rows.loc[rows.index[:3], ["ecog", "crcl_ml_min"]] = np.nan
    rows.to_csv(tmp_path / "lines.csv", index=False)
    frame = pd.read_csv(tmp_path / "lines.csv")
    assert frame["age"].dtype == frame["prior_lines"].dtype == np.int64
    expected = trained.outcomes["dose_reduction"].model.probability(frame)
    _client(settings)
    model = mlflow.pyfunc.load_model(f"models:/{DR}/1")
    np.testing.assert_allclose(model.predict(frame)["probability"].to_numpy(), expected, rtol=0, atol=1e-12)

    venv = Path(sys.executable).parent  # `mlflow models predict --env-manager local` runs from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri, "PATH": f"{venv}:{os.environ['PATH']}"}
    command = [
        str(venv / "mlflow"),
        "models",
        "predict",
        "-m",
        f"models:/{DR}/1",
        "-i",
        str(tmp_path / "lines.csv"),
    ]
    command += ["-t", "csv", "-o", str(tmp_path / "out.json"), "--env-manager", "local"]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    predicted = pd.DataFrame(json.loads((tmp_path / "out.json").read_text())["predictions"])
    np.testing.assert_allclose(predicted["probability"].to_numpy(), expected, rtol=0, atol=1e-12)


def test_pyfunc_signature_takes_what_a_registry_file_holds():
    """Numbers of any dtype (a CSV read by pandas holds int64 ages and ECOG); the model validates them."""
    signature = model_signature()
    kinds = {c.name: str(c.type) for c in signature.inputs.inputs}
    assert kinds["age"] == kinds["ecog"] == kinds["cm_vte"] == "Any"
    assert kinds["sex"] == kinds["regimen"] == "DataType.string"
    assert not next(c for c in signature.inputs.inputs if c.name == "crcl_ml_min").required


def test_promote_without_a_registered_model_is_a_domain_error(tmp_path_factory):
    settings = _store(tmp_path_factory, "empty")
    with pytest.raises(RegistryError, match="no registered model named 'lenalidomide-discontinuation'"):
        promote(settings)


def test_settings_are_read_from_the_environment_when_asked(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LENRISK_MLRUNS_DIR", str(tmp_path))
    settings = RegistrySettings()
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert settings.artifact_location == (tmp_path.resolve() / "artifacts").as_uri()
    assert settings.experiment_name == "lenrisk" and not list(tmp_path.iterdir())  # nothing created yet
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://postgres@127.0.0.1:5432/x")
    assert RegistrySettings().tracking_uri == "postgresql+psycopg2://postgres@127.0.0.1:5432/x"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert RegistrySettings().artifact_location is None  # the tracking server stores artifacts
    assert RegistrySettings().mlruns_dir == tmp_path and REPO_ROOT.joinpath("training").is_dir()


# ------------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_store(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LENRISK_MLRUNS_DIR", str(tmp_path / "mlruns"))
    return tmp_path / "mlruns"


def _flat(output: str) -> str:
    return re.sub(r"[\s│]+", " ", output)


def test_cli_refuses_contract_violations_with_row_reasons_before_any_run(cli_store, tmp_path):
    frame = generate_cohort(200, 3)
    frame["age"] = frame["age"].astype(object)
    frame.loc[4, "age"] = "old"
    frame.loc[6, "sex"] = "unknown"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "bad.csv"), "--quiet"])
    assert result.exit_code == 2, result.output
    text = _flat(result.output)
    assert "2 of 200 rows break the record contract" in text
    assert "row 5, column age: not a number" in text and "row 7, column sex: unknown value" in text
    assert not cli_store.exists()  # no tracking store, so no run


def test_cli_refuses_a_one_class_outcome(cli_store, tmp_path):
    frame = generate_cohort(300, 3)
    frame["dose_reduced"] = 0
    frame.to_parquet(tmp_path / "one_class.parquet", index=False)
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "one_class.parquet")])
    assert result.exit_code == 2, result.output
    assert "dose_reduced: only one class present" in _flat(result.output)
    assert not cli_store.exists()


@pytest.mark.slow
def test_cli_trains_registers_and_promotes(cli_store):
    args = ["train", "--synthetic", "1000", "--seed", "4", "--setting", "maintenance", "--repeats", "1"]
    result = CliRunner().invoke(app, [*args, "--setting", "newly_diagnosed", "--quiet"])
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert DISC in text and DR in text and "challenger, champion" in text
    assert "Optimism-corrected (200 bootstrap resamples)" in text and "null log loss" in text
    assert "Training on" not in text and "Sample size" not in text  # --quiet: only the final table
    assert "cross-validated selection" not in text  # nor progress, on a terminal or not
    assert (cli_store / "mlflow.db").exists() and (cli_store / "artifacts").is_dir()

    result = CliRunner().invoke(app, ["promote"])
    assert result.exit_code == 0, result.output
    assert _flat(result.output).count("already champion") == 2


def test_cli_refuses_too_small_a_sample_before_fitting_and_says_what_is_needed(cli_store):
    result = CliRunner().invoke(app, ["train", "--synthetic", "150", "--seed", "3"])
    assert result.exit_code == 2, result.output
    text = _flat(result.output)
    assert "Sample size (Riley criteria; effective lines)" in text  # shown before anything is fitted
    assert "too few lines to develop a reliable model" in text and "--allow-small-sample" in text
    assert "needed for the 6-parameter parsimonious model" in text
    assert not cli_store.exists()  # nothing trained, nothing logged


def test_cli_needs_exactly_one_data_source(cli_store):
    assert CliRunner().invoke(app, ["train"]).exit_code == 2
    assert CliRunner().invoke(app, ["train", "--data", "x.csv", "--synthetic", "10"]).exit_code == 2
    assert CliRunner().invoke(app, ["train", "--data", "x.csv", "--setting", "maintenance"]).exit_code == 2


def test_cli_refuses_fewer_than_200_bootstrap_resamples(cli_store):
    result = CliRunner().invoke(app, ["train", "--synthetic", "1000", "--bootstrap", "50"])
    assert result.exit_code == 2 and "200" in _flat(result.output)
    assert not cli_store.exists()


@pytest.mark.slow
def test_registered_version_reports_the_promotion_metric(store):
    settings, first, _, _, _ = store
    registered: RegisteredVersion = first[DISC]
    run = _client(settings).get_run(registered.run_id)
    assert registered.validated_log_loss == run.data.metrics["validated_log_loss"]


def _intended_use(card: str) -> str:
    return card.split("## Intended use", 1)[1].split("\n## ", 1)[0]


@pytest.mark.slow
def test_the_registered_card_says_served_risks_carry_an_interval_of_estimation_uncertainty_only(registry):
    _client(registry["settings"])
    for registered in registry["versions"]:
        model = registered.result.model
        assert registered.version is not None and model.has_interval
        card = mlflow.artifacts.load_text(f"runs:/{registered.run_id}/model_card.md")
        text = " ".join(_intended_use(card).split())
        lower, upper = model.interval(registry["result"].frame)  # the development lines, recomputed
        median, p90 = 100 * np.percentile(upper - lower, [50, 90])
        assert 0 < median < p90 < 100
        assert (
            "every served risk carries a 95% interval of the model's estimation uncertainty only (the "
            f"spread of the risk over {model.ensemble.size} bootstrap refits of the model on resamples of "
            f"the development data; on the development lines it is {median:.1f} percentage points wide at "
            f"the median, {p90:.1f} at the 90th percentile), not uncertainty about the patient's outcome; "
            "none is given for a patient outside the development data" in text
        ), text
        assert model.ensemble.size == model.info["interval_refits"] > 1

    # A model without refits (one trained before intervals) says it gives none.
    registered = registry["versions"][0]
    bare = dataclasses.replace(
        registered.result, model=dataclasses.replace(registered.result.model, ensemble=None)
    )
    card = ModelCard(
        outcome=bare, source="s", seed=0, n_boot=N_BOOT, synthetic=None, run_id="r", lenrisk_version="0"
    ).markdown()
    text = " ".join(_intended_use(card).split())
    assert "this model gives no interval with its risks" in text and "95% interval" not in text
