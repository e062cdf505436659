"""``lenrisk validate``: a shifted file on the session registry's champions, logged as MLflow runs linked to
the versions, rejects counted and written, the report written; domain errors exit 2."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.model.registry import MODEL_NAMES
from features.tableio import read_table
from service import cli
from training.cohort.generate import generate_cohort
from training.cohort.shift import shifted
from training.external_run import MISSING_OUTCOME, VALIDATION_RUN_TAG

EXPERIMENT = "external-validation-tests"  # not the training runs' experiment of the session registry
DISC, DOSE = MODEL_NAMES["discontinuation"], MODEL_NAMES["dose_reduction"]
NAMES = [
    f"external_{m}{s}"
    for m in ("calibration_intercept", "calibration_slope", "oe", "roc_auc")
    for s in ("", "_ci_lower", "_ci_upper")
] + ["external_brier", "external_scaled_brier"]


@pytest.fixture
def validate(registry, monkeypatch):
    """``validate(*args)`` runs ``lenrisk validate *args`` on the session registry, in its own experiment."""
    monkeypatch.setenv("LENRISK_MLRUNS_DIR", str(registry["root"]))
    monkeypatch.setenv("LENRISK_EXPERIMENT_NAME", EXPERIMENT)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return lambda *args: CliRunner().invoke(cli.app, ["validate", *map(str, args)])


@pytest.fixture(scope="module")
def shifted_file(tmp_path_factory, synthetic_source):
    """1,200 shifted lines (log-odds +0.7, 8 years older) as CSV, three of them broken: a line without its
    discontinuation outcome, one with a non-numeric age, one with both outcomes empty."""
    params = shifted(log_odds=0.7, age_years=8)
    frame = generate_cohort(1203, seed=5, settings=synthetic_source.settings, params=params).astype(object)
    frame.loc[10, "discontinued_toxicity"] = None
    frame.loc[20, "age"] = "old"
    frame.loc[30, ["discontinued_toxicity", "dose_reduced"]] = None
    path = tmp_path_factory.mktemp("validate") / "shifted.csv"
    frame.to_csv(path, index=False)
    return path


def _client(registry):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=registry["settings"].tracking_uri)


def test_validate_logs_runs_tags_versions_and_counts_rejects(validate, registry, shifted_file, tmp_path):
    report = tmp_path / "report.html"
    result = validate("--data", shifted_file, "--report", report, "--bootstrap", 100)
    assert result.exit_code == 0, result.output
    assert "1203 rows read = 1200 validated + 3 rejected" in result.output
    assert result.output.count("Miscalibrated: risks too low") == 2

    rejects = read_table(tmp_path / "report.rejects.csv")  # beside the report by default
    assert list(rejects.columns) == ["row_number", "patient_id", "column", "reason"]
    lines = set(zip(rejects["row_number"], rejects["column"], rejects["reason"], strict=True))
    assert ("11", "discontinued_toxicity", MISSING_OUTCOME) in lines
    assert ("31", "discontinued_toxicity", MISSING_OUTCOME) in lines and (
        "31",
        "dose_reduced",
        MISSING_OUTCOME,
    ) in lines
    assert any(row == "21" and column == "age" for row, column, _ in lines)

    html = report.read_text()
    assert "1203 rows read = 1200 validated + 3 rejected" in html
    assert html.count("the model <b>underestimates</b> the risk") == 2
    assert html.count("data:image/png;base64,") == 4  # calibration and decision curve of each model

    client = _client(registry)
    digest = hashlib.sha256(shifted_file.read_bytes()).hexdigest()
    for name in (DISC, DOSE):
        version = client.get_model_version_by_alias(name, "champion")
        run = client.get_run(version.tags[VALIDATION_RUN_TAG])
        tags, metrics = run.data.tags, run.data.metrics
        assert tags["model_name"] == name and tags["model_version"] == str(version.version)
        assert tags["model_alias"] == "champion" and tags["data_sha256"] == digest
        assert (tags["rows_read"], tags["rows_scored"], tags["rows_rejected"]) == ("1203", "1200", "3")
        assert set(NAMES) <= set(metrics)
        assert metrics["external_calibration_intercept_ci_lower"] > 0
        assert metrics["external_oe_ci_lower"] > 1
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {
            "report.html",
            "calibration.png",
            "roc.png",
            "decision_curve.png",
            "subgroups.csv",
        } <= artifacts
        parent = client.get_run(tags["mlflow.parentRunId"])
        assert parent.info.run_name == "lenrisk-validate" and parent.data.tags["rows_rejected"] == "3"


def test_validate_one_version_needs_only_its_outcome(validate, registry, tmp_path):
    """``NAME@VERSION`` validates that version alone; the other outcome's column may be missing."""
    frame = generate_cohort(300, seed=6).drop(columns="discontinued_toxicity")
    data = tmp_path / "dose.parquet"
    frame.to_parquet(data)
    result = validate("--data", data, "--model", f"{DOSE}@1", "--bootstrap", 0)
    assert result.exit_code == 0, result.output
    assert f"{DOSE} v1" in result.output and DISC not in result.output
    run = _client(registry).get_run(_client(registry).get_model_version(DOSE, "1").tags[VALIDATION_RUN_TAG])
    assert run.data.tags["model_alias"] == "" and run.data.tags["rows_scored"] == "300"


@pytest.mark.parametrize(
    ("model", "drop", "message"),
    [
        (f"{DISC}@nosuch", None, f"{DISC} has no alias 'nosuch'"),
        (f"{DISC}@99", None, f"{DISC} has no version 99"),
        ("other-model@champion", None, "no lenrisk model named 'other-model'"),
        ("champion", None, "--model must be NAME@ALIAS or NAME@VERSION"),
        (None, ["discontinued_toxicity", "dose_reduced"], "no outcome column discontinued_toxicity"),
        (f"{DOSE}@champion", ["dose_reduced"], "no outcome column dose_reduced"),
    ],
)
def test_domain_errors_exit_2(validate, tmp_path, model, drop, message):
    data = tmp_path / "lines.csv"
    generate_cohort(50, seed=7).drop(columns=drop or []).to_csv(data, index=False)
    result = validate("--data", data, *(["--model", model] if model else []))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_file_of_broken_rows_writes_its_rejects_and_exits_2(validate, tmp_path):
    frame = generate_cohort(5, seed=8).astype(object)
    frame["discontinued_toxicity"] = None
    data, rejects = tmp_path / "broken.csv", tmp_path / "broken.rejects.csv"
    frame.to_csv(data, index=False)
    result = validate("--data", data, "--model", f"{DISC}@champion", "--rejects", rejects)
    assert result.exit_code == 2 and "no row of broken.csv passes the record contract" in result.output
    written = pd.read_csv(rejects)
    assert list(written["row_number"]) == [1, 2, 3, 4, 5] and set(written["reason"]) == {MISSING_OUTCOME}


@pytest.mark.parametrize(
    ("option", "name", "message"),
    [
        ("--report", "missing/report.html", "no folder"),
        ("--report", "report.pdf", "the report is HTML"),
        ("--rejects", "rejects.txt", "unsupported file type"),
        ("--rejects", "lines.csv", "would overwrite the data file"),
    ],
)
def test_unusable_output_paths_exit_2_before_any_work(validate, tmp_path, option, name, message):
    data = tmp_path / "lines.csv"
    generate_cohort(50, seed=9).to_csv(data, index=False)
    result = validate("--data", data, option, tmp_path / name)
    assert result.exit_code == 2 and message in result.output, result.output
    assert data.read_text().startswith("patient_id")
