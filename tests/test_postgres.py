"""Training and registration against a real PostgreSQL tracking store.

Uses the local server (127.0.0.1:5432, trust auth, user postgres) and a fresh database dropped afterwards.
A server that is down is started with ``pg_ctlcluster``; if it still cannot be reached the test fails: it
never skips.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from contextlib import closing
from pathlib import Path

import mlflow
import numpy as np
import psycopg2
import pytest
from mlflow import MlflowClient
from psycopg2 import sql

from features.schema import PREDICTOR_NAMES
from features.validate import validate_table
from training.cohort.generate import generate_cohort
from training.pipeline import MODEL_NAMES, train
from training.registry import CHALLENGER, CHAMPION, DIGEST_TAG, log_and_register
from training.settings import TrainingSettings

SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _connect(dbname: str = "postgres"):
    return psycopg2.connect(dbname=dbname, connect_timeout=3, **SERVER)


def _ensure_server() -> None:
    """Start the local cluster if it is down; raise if it cannot be reached afterwards."""
    try:
        _connect().close()
        return
    except psycopg2.OperationalError:
        version = next(p.name for p in Path("/etc/postgresql").iterdir())
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True, timeout=60
        )
    for _ in range(30):
        try:
            _connect().close()
            return
        except psycopg2.OperationalError:
            time.sleep(1)
    pytest.fail("PostgreSQL at 127.0.0.1:5432 is not reachable even after pg_ctlcluster start")


@pytest.fixture
def database():
    """A fresh, uniquely named database; dropped (with its connections) afterwards."""
    _ensure_server()
    name = f"lenrisk_test_{uuid.uuid4().hex[:12]}"
    admin = _connect()
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield f"postgresql://{SERVER['user']}@{SERVER['host']}:{SERVER['port']}/{name}"
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        admin.close()


def test_train_and_register_against_postgresql(database, tmp_path):
    cohort = validate_table(generate_cohort(1500, 21), require_outcomes=True).raise_on_errors()
    result = train(cohort, seed=2, source="postgres test", n_repeats=1)
    settings = TrainingSettings(mlflow_tracking_uri=database, mlruns_dir=tmp_path)

    registered = log_and_register(result, settings)

    assert settings.tracking_uri == database.replace("postgresql://", "postgresql+psycopg2://")
    assert [(r.name, r.version, r.aliases) for r in registered] == [
        (MODEL_NAMES["discontinuation"], "1", (CHALLENGER, CHAMPION)),
        (MODEL_NAMES["dose_reduction"], "1", (CHALLENGER, CHAMPION)),
    ]
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    version = client.get_model_version_by_alias(MODEL_NAMES["dose_reduction"], CHAMPION)
    assert version.tags[DIGEST_TAG] == registered[1].digest
    assert "## Limitations" in version.description
    with closing(_connect(database.rsplit("/", 1)[1])) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM model_versions")
        assert cursor.fetchone() == (2,)  # really stored in PostgreSQL

    mlflow.set_tracking_uri(settings.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAMES['dose_reduction']}@{CHAMPION}")
    rows = cohort[list(PREDICTOR_NAMES)].head(50)
    expected = result.outcomes["dose_reduction"].model.probability(rows)
    np.testing.assert_allclose(model.predict(rows)["probability"].to_numpy(), expected, rtol=0, atol=1e-12)
    assert (tmp_path / "artifacts").is_dir()  # artifacts under LENRISK_MLRUNS_DIR, not the working directory
