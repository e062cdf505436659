"""MLflow logging, registration, aliases, promotion, the pyfunc model and the ``lenrisk train`` CLI.

Everything runs against real, temporary SQLite tracking stores (no mocked MLflow). The models are the
session's (``trained`` in tests/conftest.py: a small synthetic cohort, one cross-validation repeat), plus
one training here on the same cohort with shuffled outcomes, and the CLI's own end-to-end training.
"""

from __future__ import annotations

import hashlib
import json
import re
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
    RegistrySettings,
)
from features.model.riskmodel import RiskModel
from features.schema import OUTCOMES, PREDICTOR_NAMES
from service.cli import app
from tests.helpers import tracking_uri_variable_kept
from training.card import DESCRIPTION_LIMIT
from training.cohort.generate import generate_cohort
from training.pipeline import TrainingResult, train
from training.registry import RegisteredVersion, RegistryError, log_and_register, promote

DISC, DR = MODEL_NAMES["discontinuation"], MODEL_NAMES["dose_reduction"]
CARD_SECTIONS = (
    "## Intended use",
    "## Data",
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
    """The session's cohort with both outcomes shuffled: pure noise, so a worse cross-validated log loss.

    Trained with the session's seed, so both are cross-validated on the same development set and folds.
    """
    noise = cohort.copy()
    rng = np.random.default_rng(5)
    for column in OUTCOMES.values():
        noise[column] = rng.permutation(noise[column].to_numpy())
    with tracking_uri_variable_kept():
        return train(noise, seed=trained.seed, source="noise", n_repeats=1)


def _store(tmp_path_factory, name: str) -> RegistrySettings:
    return RegistrySettings(mlflow_tracking_uri=None, mlruns_dir=tmp_path_factory.mktemp(name))


@pytest.fixture(scope="module")
def store(tmp_path_factory, trained, noise_trained, synthetic_source):
    """A store with version 1 (the session's models, real outcomes) and version 2 (noise) of both models."""
    settings = _store(tmp_path_factory, "mlruns")
    with tracking_uri_variable_kept():
        first = log_and_register(trained, settings, synthetic=synthetic_source)
        open_figures = plt.get_fignums()
        second = log_and_register(noise_trained, settings)
    return settings, {r.name: r for r in first}, {r.name: r for r in second}, open_figures


def _client(settings: RegistrySettings) -> MlflowClient:
    mlflow.set_tracking_uri(settings.tracking_uri)
    return MlflowClient()


@pytest.mark.slow
def test_first_versions_are_champion_and_challenger_and_the_next_challenger_only(store):
    settings, first, second, _ = store
    client = _client(settings)
    for name in (DISC, DR):
        assert first[name].version == "1" and first[name].aliases == (CHALLENGER, CHAMPION)
        assert second[name].version == "2" and second[name].aliases == (CHALLENGER,)
        assert client.get_registered_model(name).aliases == {CHAMPION: 1, CHALLENGER: 2}
    assert settings.tracking_uri == f"sqlite:///{settings.mlruns_dir.resolve()}/mlflow.db"


@pytest.mark.slow
def test_runs_hold_params_metrics_and_artifacts(store, synthetic_source):
    settings, first, _, open_figures = store
    client = _client(settings)
    run = client.get_run(first[DISC].run_id)
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.params["source"] == synthetic_source.label()
    assert {"seed", "n_rows", "n_patients", "lenrisk_version", "synthetic_seed"} <= parent.data.params.keys()
    params, metrics = run.data.params, run.data.metrics
    assert params["chosen_family"] in ("logistic", "xgboost") and params["cv_repeats"] == "1"
    assert {"calibrator_slope", "calibrator_intercept"} <= params.keys()
    assert any(key.startswith("hp_") for key in params)
    for key in ("cv_logistic_log_loss_mean", "cv_xgboost_brier_sd", "cv_log_loss", "test_roc_auc"):
        assert np.isfinite(metrics[key]), key
    assert metrics["cv_log_loss"] == metrics[f"cv_{params['chosen_family']}_log_loss_mean"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    expected = {
        "model_card.md",
        "subgroups.csv",
        "subgroups.md",
        "shap_importance.csv",
        "generator_parameters.csv",
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
    settings, first, _, _ = store
    client = _client(settings)
    description = client.get_model_version(DISC, "1").description
    assert len(description) <= DESCRIPTION_LIMIT
    assert "Synthetic data" in description and "Riley" in description and "Platt" in description
    assert f"`model_card.md` of training run `{first[DISC].run_id}`" in description
    assert "## " not in description  # a summary: the sections are in the card
    full = mlflow.artifacts.load_text(f"runs:/{first[DISC].run_id}/model_card.md")
    assert all(section in full for section in CARD_SECTIONS)
    assert "| sex | male |" in full  # the subgroup table itself


@pytest.mark.slow
def test_the_champion_pyfunc_gives_the_risk_models_probabilities(store, trained, cohort):
    settings, _, _, _ = store
    _client(settings)
    model = mlflow.pyfunc.load_model(f"models:/{DISC}@{CHAMPION}")
    rows = cohort[["patient_id", *PREDICTOR_NAMES]].iloc[:300]
    out = model.predict(rows)
    expected = trained.outcomes["discontinuation"].model.probability(rows)
    assert list(out.columns) == ["probability", "logit"] and out["probability"].dtype == np.float64
    np.testing.assert_allclose(out["probability"].to_numpy(), expected, rtol=0, atol=1e-12)
    # Optional inputs may be left out entirely (unknown renal function and ECOG).
    partial = model.predict(rows.drop(columns=["patient_id", "crcl_ml_min", "ecog"]).head(3))
    assert partial["probability"].between(0, 1).all()


@pytest.mark.slow
def test_the_pyfunc_refuses_invalid_rows_naming_row_column_and_rule_but_no_value(store, cohort):
    settings, _, _, _ = store
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
    settings, first, _, _ = store
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
def test_promote_moves_the_champion_only_when_cv_log_loss_is_no_worse(
    tmp_path_factory, trained, noise_trained
):
    settings = _store(tmp_path_factory, "promotion")
    client = _client(settings)
    log_and_register(trained, settings)
    log_and_register(noise_trained, settings)  # version 2: worse

    kept = promote(settings)
    assert [(d.name, d.promoted) for d in kept] == [(DISC, False), (DR, False)]
    assert kept[0].challenger_cv_log_loss > kept[0].champion_cv_log_loss and "kept" in kept[0].decision
    assert client.get_registered_model(DISC).aliases[CHAMPION] == 1

    forced = promote(settings, [DISC], force=True)
    assert forced[0].promoted and "forced" in forced[0].decision
    assert client.get_registered_model(DISC).aliases[CHAMPION] == 2
    assert client.get_registered_model(DR).aliases[CHAMPION] == 1

    log_and_register(trained, settings)  # version 3: real outcomes again
    moved = {d.name: d for d in promote(settings)}
    assert moved[DISC].promoted and moved[DISC].challenger_cv_log_loss < moved[DISC].champion_cv_log_loss
    assert moved[DR].promoted and moved[DR].challenger_cv_log_loss == moved[DR].champion_cv_log_loss
    assert {n: client.get_registered_model(n).aliases for n in (DISC, DR)} == {
        DISC: {CHAMPION: 3, CHALLENGER: 3},
        DR: {CHAMPION: 3, CHALLENGER: 3},
    }
    assert promote(settings, [DR])[0].decision == "already champion"


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
    args = ["train", "--synthetic", "1500", "--seed", "4", "--setting", "maintenance", "--repeats", "1"]
    result = CliRunner().invoke(app, [*args, "--setting", "newly_diagnosed", "--quiet"])
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert DISC in text and DR in text and "challenger, champion" in text
    assert "Training on" not in text  # --quiet: only the final table
    assert (cli_store / "mlflow.db").exists() and (cli_store / "artifacts").is_dir()

    result = CliRunner().invoke(app, ["promote"])
    assert result.exit_code == 0, result.output
    assert _flat(result.output).count("already champion") == 2


def test_cli_needs_exactly_one_data_source(cli_store):
    assert CliRunner().invoke(app, ["train"]).exit_code == 2
    assert CliRunner().invoke(app, ["train", "--data", "x.csv", "--synthetic", "10"]).exit_code == 2
    assert CliRunner().invoke(app, ["train", "--data", "x.csv", "--setting", "maintenance"]).exit_code == 2


@pytest.mark.slow
def test_registered_version_reports_the_promotion_metric(store):
    settings, first, _, _ = store
    registered: RegisteredVersion = first[DISC]
    run = _client(settings).get_run(registered.run_id)
    assert registered.cv_log_loss == run.data.metrics["cv_log_loss"]
