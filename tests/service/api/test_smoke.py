"""The API end to end on a real registry: both calibrated risks, explanations that add up, one path."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from features.record import PatientRecord

pytestmark = pytest.mark.slow  # every test uses the session's trained models (`trained`: ~10 s once)


def test_predict_matches_the_registered_models(registry, api, record):
    response = api.post("/v1/predict", json=record)
    assert response.status_code == 200
    body = response.json()
    assert body["request_id"] == response.headers["X-Request-ID"]
    row = PatientRecord.model_validate(record).to_row()
    for outcome, result in registry["result"].outcomes.items():
        answer = body[outcome]
        logit = answer["base_value"] + sum(c["contribution"] for c in answer["contributions"])
        assert abs(math.log(answer["probability"] / (1 - answer["probability"])) - logit) < 1e-9
        rows = pd.DataFrame([row])
        assert answer["probability"] == result.model.explain(rows).probability[0]  # the served path
        assert answer["probability"] == pytest.approx(result.model.probability(rows)[0], abs=1e-12)
        assert answer["model"] == {"name": result.model_name, "version": "1"}
