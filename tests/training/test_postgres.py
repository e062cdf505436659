"""Registration against a real PostgreSQL tracking store.

Uses the local server (127.0.0.1:5432, trust auth, user postgres) and a fresh database dropped afterwards.
The ``postgres_database`` fixture (tests/conftest.py) starts a server that is down and never skips. What is
registered is the session's training result (``trained``): the point here is the PostgreSQL store.
"""

from __future__ import annotations

from contextlib import closing

import mlflow
import numpy as np
import psycopg2
import pytest
from mlflow import MlflowClient

from features.model.registry import CHALLENGER, CHAMPION, DIGEST_TAG, MODEL_NAMES, RegistrySettings
from features.schema import PREDICTOR_NAMES
from training.registry import log_and_register

pytestmark = [pytest.mark.slow, pytest.mark.external]


def test_register_against_postgresql(postgres_database, trained, cohort, tmp_path):
    database = postgres_database
    result = trained
    settings = RegistrySettings(mlflow_tracking_uri=database, mlruns_dir=tmp_path)

    registered = log_and_register(result, settings)

    assert settings.tracking_uri == database.replace("postgresql://", "postgresql+psycopg2://")
    assert [(r.name, r.version, r.aliases) for r in registered] == [
        (MODEL_NAMES["discontinuation"], "1", (CHALLENGER, CHAMPION)),
        (MODEL_NAMES["dose_reduction"], "1", (CHALLENGER, CHAMPION)),
    ]
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    version = client.get_model_version_by_alias(MODEL_NAMES["dose_reduction"], CHAMPION)
    assert version.tags[DIGEST_TAG] == registered[1].digest
    assert "model_card.md" in version.description
    assert "## Limitations" in mlflow.artifacts.load_text(f"runs:/{version.run_id}/model_card.md")
    with closing(psycopg2.connect(database)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM model_versions")
        assert cursor.fetchone() == (2,)  # really stored in PostgreSQL

    mlflow.set_tracking_uri(settings.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAMES['dose_reduction']}@{CHAMPION}")
    rows = cohort[list(PREDICTOR_NAMES)].head(50)
    expected = result.outcomes["dose_reduction"].model.probability(rows)
    np.testing.assert_allclose(model.predict(rows)["probability"].to_numpy(), expected, rtol=0, atol=1e-12)
    assert (tmp_path / "artifacts").is_dir()  # artifacts under LENRISK_MLRUNS_DIR, not the working directory
