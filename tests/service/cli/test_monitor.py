"""``lenrisk monitor --input`` on the session's registry: a shifted file drifts (exit 3), an unshifted one
of the same size does not (exit 0), rows breaking the contract are counted, the JSON and HTML are written,
and a model registered without a development profile is refused (exit 2)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from features.model.registry import RegistrySettings
from features.tableio import write_table
from service import cli
from tests.helpers import tracking_uri_variable_kept
from training.cohort.generate import generate_cohort
from training.cohort.shift import shifted

pytestmark = pytest.mark.slow


@pytest.fixture
def monitor(registry, monkeypatch):
    """``monitor(*args)``: ``lenrisk monitor *args`` through the root CLI on the session registry."""
    monkeypatch.setenv("LENRISK_MLRUNS_DIR", str(registry["root"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return lambda *args: CliRunner().invoke(cli.app, ["monitor", *map(str, args)])


def _file(tmp_path, name, synthetic_source, n=1000, seed=41, **shift):
    frame = generate_cohort(n, seed, synthetic_source.settings, params=shifted(**shift))
    frame.loc[3, "age"] = 5  # breaks the contract (18-100): rejected and counted, not monitored
    path = tmp_path / name
    write_table(frame, path)
    return path


def test_a_shifted_file_drifts_and_an_unshifted_one_of_the_same_size_does_not(
    monitor, synthetic_source, tmp_path
):
    plain = _file(tmp_path, "plain.csv", synthetic_source)
    older = _file(tmp_path, "older.parquet", synthetic_source, log_odds=0.7, age_years=8)

    quiet = monitor("--input", plain, "--json", tmp_path / "plain.json", "--quiet")
    moved = monitor("--input", older, "--json", tmp_path / "older.json", "--html", tmp_path / "older.html")

    assert quiet.exit_code == 0, quiet.output
    assert moved.exit_code == 3, moved.output
    assert "drifted fields: age" in moved.output and "JS distance" in moved.output  # the rich table
    assert "JS distance" not in quiet.output  # --quiet: the verdict line only
    report = json.loads((tmp_path / "plain.json").read_text())
    assert report["drifted_fields"] == [] and report["n"] == 999 and report["alpha"] == 0.05
    assert report["rows"] == {
        "read": 1000,
        "monitored": 999,
        "rejected": 1,
        "reject_reasons": {"age: out of range; expected a number from 18 to 100": 1},
    }
    shifted_report = json.loads((tmp_path / "older.json").read_text())
    assert "age" in shifted_report["drifted_fields"]
    age = shifted_report["fields"]["age"]
    assert age["statistic"] == "jensen_shannon_distance" and age["drifted"] is True
    assert age["value"] > age["threshold"] == report["fields"]["age"]["threshold"]  # same size, same bar
    assert age["out_of_range_share"] > 0
    assert shifted_report["fields"]["setting"]["unseen_categories"] == {}
    page = (tmp_path / "older.html").read_text()
    assert "Drift in" in page and "<img alt='age: development and batch distributions'" in page
    assert "src='data:image/png;base64," in page and "http" not in page  # self-contained


def test_a_model_registered_without_a_profile_is_refused(trained, synthetic_source, tmp_path, monkeypatch):
    from training.registry import log_and_register

    result = copy.copy(trained)
    result.outcomes = {o: copy.copy(r) for o, r in trained.outcomes.items()}
    for r in result.outcomes.values():
        r.model = replace(r.model, profile=None)  # as models registered before drift monitoring
    settings = RegistrySettings(mlruns_dir=tmp_path / "mlruns", mlflow_tracking_uri=None)
    with tracking_uri_variable_kept():
        log_and_register(result, settings, synthetic=synthetic_source)
    monkeypatch.setenv("LENRISK_MLRUNS_DIR", str(tmp_path / "mlruns"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    outcome = CliRunner().invoke(
        cli.app, ["monitor", "--input", str(_file(tmp_path, "plain.csv", synthetic_source, n=50))]
    )

    assert outcome.exit_code == 2
    assert "registered without a development profile" in outcome.output


def test_an_unknown_model_is_a_clear_error(monitor, synthetic_source, tmp_path):
    outcome = monitor("--input", _file(tmp_path, "a.csv", synthetic_source, n=50), "--model", "nope@champion")
    assert outcome.exit_code == 2 and "no registered version nope@champion" in outcome.output
