"""Shared fixtures: small valid records built from the contract."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from features.schema import COMORBIDITY_COLUMNS


@pytest.fixture
def record() -> dict:
    """One valid API record (a 74-year-old man on RVd, relapsed/refractory, with heart disease)."""
    return {
        "age": 74,
        "sex": "male",
        "regimen": "RVd",
        "setting": "relapsed_refractory",
        "start_dose_mg": 25,
        "crcl_ml_min": 62.0,
        "dialysis": 0,
        "ecog": 1,
        "prior_lines": 2,
        "comorbidities": ["cardiac"],
    }


@pytest.fixture
def row(record) -> dict:
    """The same record as one contract row (cm_* flags)."""
    flags = {c: int(c == "cm_cardiac") for c in COMORBIDITY_COLUMNS}
    return {**{k: v for k, v in record.items() if k != "comorbidities"}, **flags, "patient_id": "P1"}


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> dict:
    """A real embedded MLflow store (SQLite) holding version 1 of both models, trained once per session.

    Small synthetic cohort (2,000 lines, one CV repeat) so the whole session pays a few seconds once.
    Returns the training settings, the registered versions and the training result.
    """
    from features.model.registry import RegistrySettings
    from features.validate import validate_table
    from training.card import SyntheticSource
    from training.cohort.generate import generate_cohort
    from training.pipeline import train
    from training.registry import log_and_register

    root = tmp_path_factory.mktemp("mlruns")
    settings = RegistrySettings(mlruns_dir=root, mlflow_tracking_uri=None)
    source = SyntheticSource(n=2000, seed=11, settings=("relapsed_refractory", "newly_diagnosed"))
    frame = validate_table(generate_cohort(source.n, source.seed, source.settings)).raise_on_errors()
    result = train(frame, seed=11, source=source.label(), n_repeats=1)
    versions = log_and_register(result, settings, synthetic=source)
    return {"settings": settings, "versions": versions, "result": result, "root": root}


@pytest.fixture
def service_settings(registry, tmp_path):
    """Service settings reading the session's registry, with a fresh SQLite audit store."""
    from service.settings import ServiceSettings

    # The tracking URI explicitly: mlflow.set_tracking_uri (during training) also sets MLFLOW_TRACKING_URI in
    # this process's environment, which would otherwise point the service at the last store trained.
    return ServiceSettings(
        mlruns_dir=registry["root"],
        mlflow_tracking_uri=registry["settings"].tracking_uri,
        audit_url=f"sqlite:///{tmp_path / 'audit.db'}",
    )


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


def same_scores(a, b) -> None:
    """Two scored Arrow tables are equal, column by column, bit for bit (also the explanations: every
    step of scoring is row by row, whatever the batch size or engine)."""
    assert a.schema == b.schema
    for name in a.column_names:
        assert a[name].equals(b[name]), name
