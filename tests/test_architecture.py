"""The package layout is the architecture: features -> runtime model <- training; service apart; no import
runs back up; the served model carries no training code."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

PACKAGES = ("features", "training", "service")
#: What each package (or subpackage) may import from lenrisk's own packages.
ALLOWED = {
    "features": {"features"},
    "features.model": {"features"},
    "training": {"features", "training"},
    "service": {"features", "service"},
    "service.cli": {"features", "service", "training"},  # the commands that train and generate cohorts
}
#: Modules the served model and the app must not pull in: plotting, statistics, SHAP's own library,
#: the cohort generator, evaluation, and anything of training.
TRAINING_ONLY = ("matplotlib", "statsmodels", "shap", "training")


def _modules() -> list[tuple[str, Path]]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _rule(module: str) -> set[str]:
    owner = max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len)
    return ALLOWED[owner]


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_no_import_runs_back_up(module, path):
    ours = {name for name in _imports(path) if name.split(".")[0] in PACKAGES}
    wrong = sorted(name for name in ours if name.split(".")[0] not in _rule(module))
    assert not wrong, f"{module} imports {wrong}"
    if module.startswith("features.model"):  # the runtime model needs nothing of features' table I/O
        assert not {"features.tableio", "features.record"} & ours


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_only_the_cli_imports_typer_and_rich(module, path):
    ui = {name for name in _imports(path) if name.split(".")[0] in ("typer", "rich")}
    assert module.startswith("service.cli") or not ui, f"{module} imports {sorted(ui)}"


@pytest.mark.slow  # a fresh interpreter imports the app and MLflow, starts the app and loads both models
def test_the_app_and_the_served_model_load_no_training_code(registry, record, row, tmp_path):
    """Import the app, start it, then load the registered model through MLflow and predict, in a fresh
    interpreter: no plotting, statistics, SHAP library, cohort generator or evaluation module is loaded.

    The record (API form) and the row (contract form) come in as JSON arguments; the row is typed by the
    contract's validator, as a client of the logged model types its table (numbers as doubles)."""
    script = textwrap.dedent(
        """
        import json, sys, time
        import mlflow
        import pandas as pd
        from fastapi.testclient import TestClient
        from features.validate import validate_table
        from service.api.app import create_app
        from service.settings import ServiceSettings

        record, row = json.loads(sys.argv[1]), json.loads(sys.argv[2])
        settings = ServiceSettings(audit_url="sqlite:///audit.db")
        with TestClient(create_app(settings)) as client:
            deadline = time.monotonic() + 120
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, client.get("/readyz").text
                time.sleep(0.05)
            response = client.post("/v1/predict", json=record)
            assert response.status_code == 200, response.text
        model = mlflow.pyfunc.load_model("models:/lenalidomide-discontinuation@champion")
        print(model.predict(validate_table(pd.DataFrame([row])).raise_on_errors()).shape)
        print(json.dumps(sorted(sys.modules)))
        """
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry["settings"].tracking_uri,
        "LENRISK_MLRUNS_DIR": str(registry["root"]),
        "PYTHONPATH": str(REPO_ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(record), json.dumps(row)],
        env=env,
        cwd=tmp_path,  # the audit database goes here, not into the session's registry
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    shape, modules = out.stdout.strip().splitlines()[-2:]
    assert shape == "(1, 4)"  # probability, logit, lower, upper
    loaded = json.loads(modules)
    assert "service.api.app" in loaded and "features.model.riskmodel" in loaded
    assert not [m for m in loaded if m.split(".")[0] in TRAINING_ONLY]


#: What ``lenrisk --help`` must not wait for: heavy libraries, imported only by the commands that use them.
HEAVY = (
    *("mlflow", "pandas", "pyarrow", "scipy", "sklearn", "xgboost", "shap"),
    *("pyspark", "fastapi", "matplotlib"),
)


def test_the_cli_imports_no_heavy_library_until_a_command_runs():
    """Importing the CLI (all ``--help`` needs) loads none of :data:`HEAVY` and nothing of training."""
    roots = {*HEAVY, "training"}
    script = f"import service.cli, sys; print(sorted({{m.split('.')[0] for m in sys.modules}} & {roots!r}))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    help_ = subprocess.run(
        [Path(sys.executable).parent / "lenrisk", "--help"], capture_output=True, text=True, timeout=60
    )
    assert help_.returncode == 0 and "Usage: lenrisk" in help_.stdout, help_.stderr
