"""The API end to end on a real registry: both calibrated risks, explanations that add up, one path."""

from __future__ import annotations

import math

import pandas as pd

from features.record import PatientRecord


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
        expected = result.model.probability(pd.DataFrame([row]))[0]
        assert answer["probability"] == expected
        assert answer["model"] == {"name": result.model_name, "version": "1"}
