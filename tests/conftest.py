"""The one shared fixture set: the example record, the session's cohort, models and registry, the app,
PostgreSQL and the scoring CLI. Plain helper functions are in ``tests/helpers.py``."""

from __future__ import annotations

import contextlib
import copy
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from features.record import EXAMPLE_RECORD
from features.schema import COMORBIDITY_COLUMNS
from tests.helpers import (
    N_BOOT,
    frame_with_known_effects,
    registry_service_settings,
    tracking_uri_variable_kept,
)

if TYPE_CHECKING:  # heavy imports happen in the fixtures that need them
    import pandas as pd


@pytest.fixture(autouse=True)
def _tracking_uri_variable_restored():
    """MLFLOW_TRACKING_URI as it was before each test, again after it (see ``tracking_uri_variable_kept``)."""
    with tracking_uri_variable_kept():
        yield


@pytest.fixture(autouse=True, scope="session")
def _rate_limits_off():
    """Rate limits off for the session (tests fire requests fast); the tests of the limits turn them on."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LENRISK_RATE_LIMIT_ENABLED", "false")
        yield


@pytest.fixture
def record() -> dict:
    """The example record (``features.record.EXAMPLE_RECORD``): a 74-year-old man starting RVd at relapse,
    CrCl 62 mL/min, ECOG 1, two prior lines, heart disease. A copy each test may change."""
    return copy.deepcopy(EXAMPLE_RECORD)


@pytest.fixture
def row(record) -> dict:
    """The same record as one contract row (cm_* flags)."""
    flags = {c: int(c == "cm_cardiac") for c in COMORBIDITY_COLUMNS}
    return {**{k: v for k, v in record.items() if k != "comorbidities"}, **flags, "patient_id": "P1"}


# ----------------------------------------------------------------------- the session's models, trained once


@pytest.fixture(scope="session")
def synthetic_source():
    """How the session's training cohort is generated: 2,000 lines of two settings (maintenance and AL
    amyloidosis are never seen in training, so the service's not-seen-in-training warnings can be tested)."""
    from training.card import SyntheticSource

    return SyntheticSource(n=2000, seed=11, settings=("relapsed_refractory", "newly_diagnosed"))


@pytest.fixture(scope="session")
def cohort(synthetic_source) -> pd.DataFrame:
    """The session's training cohort, validated (outcomes included)."""
    from features.validate import validate_table
    from training.cohort.generate import generate_cohort

    s = synthetic_source
    return validate_table(generate_cohort(s.n, s.seed, s.settings), require_outcomes=True).raise_on_errors()


@pytest.fixture(scope="session")
def trained(cohort, synthetic_source):
    """Both outcome models trained once per session on :func:`cohort` (one cross-validation repeat)."""
    from training.pipeline import train

    with tracking_uri_variable_kept():
        return train(cohort, seed=11, source=synthetic_source.label(), n_repeats=1, n_boot=N_BOOT)


@pytest.fixture(scope="session")
def registry(tmp_path_factory, trained, synthetic_source) -> dict:
    """A real embedded MLflow store (SQLite) holding version 1 of both models: :func:`trained`, registered.

    Returns the registry settings, the registered versions, the training result and the store's directory.
    """
    from features.model.registry import RegistrySettings
    from training.registry import log_and_register

    root = tmp_path_factory.mktemp("mlruns")
    settings = RegistrySettings(mlruns_dir=root, mlflow_tracking_uri=None)
    with tracking_uri_variable_kept():
        versions = log_and_register(trained, settings, synthetic=synthetic_source)
    return {"settings": settings, "versions": versions, "result": trained, "root": root}


@pytest.fixture(scope="session")
def predictor(registry):
    """The service's predictor (both champions) loaded from the session's registry."""
    from service.model_store import load_predictor
    from service.settings import ServiceSettings

    return load_predictor(
        ServiceSettings(mlruns_dir=registry["root"], mlflow_tracking_uri=registry["settings"].tracking_uri)
    )


@pytest.fixture(scope="session")
def fitted() -> dict:
    """A logistic (every feature, shrunk) and a boosted (Platt-calibrated out of fold) discontinuation
    model (``RiskModel``) on 3,000 rows with a known age and triplet effect (``frame_with_known_effects``)."""
    from features.encoding import FEATURE_NAMES, FeatureEncoder
    from features.model.riskmodel import RiskModel
    from training.estimators import BoostedSpec, LinearSpec

    frame = frame_with_known_effects(3000, seed=3)
    encoder = FeatureEncoder().fit(frame)
    X, y, groups = encoder.transform(frame), frame["y"].to_numpy(), frame["patient_id"].to_numpy()
    estimator, calibrator = LinearSpec("full", FEATURE_NAMES).fit(X, y)
    models = {"logistic": RiskModel("discontinuation", encoder, estimator, calibrator)}
    estimator, calibrator = BoostedSpec().fit(X, y, seed=0, groups=groups)
    models["xgboost"] = RiskModel("discontinuation", encoder, estimator, calibrator)
    return {"frame": frame, "X": X, "y": y, "models": models}


# ------------------------------------------------------------------------------------------------ the app


@pytest.fixture
def service_settings(registry, tmp_path):
    """Service settings on the session's registry (tracking URI pinned), with a fresh SQLite audit store."""
    return registry_service_settings(registry, f"sqlite:///{tmp_path / 'audit.db'}")


def _wait_ready(client, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"models not loaded within {timeout}s: {client.get('/readyz').json()}")
        time.sleep(0.05)


@pytest.fixture
def start_api():
    """``start_api(settings, ready=True)``: a TestClient of a new app (lifespan run), closed after the test.

    With ``ready`` it waits until /readyz is 200 (the lifespan loads the models in the background).
    """
    from fastapi.testclient import TestClient

    from service.api.app import create_app

    with contextlib.ExitStack() as stack:

        def start(settings, *, ready: bool = True, timeout: float = 60.0, **options):
            client = stack.enter_context(TestClient(create_app(settings, **options)))
            if ready:
                _wait_ready(client, timeout)
            return client

        yield start


@pytest.fixture
def api(start_api, service_settings):
    """A ready TestClient on the session's registry (auth off, fresh audit store)."""
    return start_api(service_settings)


POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _postgres(dbname: str = "postgres"):
    import psycopg2

    return psycopg2.connect(dbname=dbname, connect_timeout=3, **POSTGRES)


def _ensure_postgres() -> None:
    """Start the local cluster if it is down; fail (never skip) if it still cannot be reached."""
    import psycopg2

    try:
        _postgres().close()
        return
    except psycopg2.OperationalError:
        version = next(p.name for p in Path("/etc/postgresql").iterdir())
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False, timeout=60
        )
    for _ in range(30):
        try:
            _postgres().close()
            return
        except psycopg2.OperationalError:
            time.sleep(1)
    pytest.fail("PostgreSQL at 127.0.0.1:5432 is not reachable, even after pg_ctlcluster start")


@pytest.fixture
def postgres_database():
    """``postgresql://`` URL of a fresh, uniquely named database on the local server; dropped afterwards."""
    from psycopg2 import sql

    _ensure_postgres()
    name = f"lenrisk_test_{uuid.uuid4().hex[:12]}"
    admin = _postgres()
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield f"postgresql://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@pytest.fixture
def lenrisk(registry, monkeypatch):
    """``lenrisk(*args)`` runs ``lenrisk score *args`` through the root CLI on the session registry."""
    from typer.testing import CliRunner

    from service import cli

    monkeypatch.setenv("LENRISK_MLRUNS_DIR", str(registry["root"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli.app, ["score", *map(str, args)])
