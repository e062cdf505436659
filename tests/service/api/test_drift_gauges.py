"""The service's input-drift gauges (service.api.metrics.DriftGauges) on the session's real registry: they
move under a shifted load and stay quiet under an unshifted one of the same size (issue 15, Done-when)."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from features.validate import validate_table
from tests.helpers import registry_service_settings
from training.cohort.generate import generate_cohort
from training.cohort.shift import shifted

pytestmark = pytest.mark.slow
WINDOW = 300


def _records(n: int, seed: int, settings: tuple[str, ...], **shift) -> list[dict]:
    rows = validate_table(generate_cohort(n, seed, settings, params=shifted(**shift))).clean
    predictors = rows.drop(columns=["patient_id", "discontinued_toxicity", "dose_reduced"])
    return json.loads(predictors.to_json(orient="records"))


def _post(api, records: list[dict]) -> None:
    for record in records[:20]:  # /v1/predict one by one, the rest in batches
        assert api.post("/v1/predict", json=record).status_code == 200
    for i in range(20, len(records), 100):
        assert api.post("/v1/predict/batch", json={"records": records[i : i + 100]}).status_code == 200


def _gauges(api) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(api.get("/metrics").text):
        if family.name.startswith("lenrisk_drift_"):
            for sample in family.samples:
                found.setdefault(family.name, {})[sample.labels.get("field", "")] = sample.value
    return found


def test_drift_gauges_move_under_a_shifted_load_and_stay_quiet_under_an_unshifted_one(
    start_api, registry, synthetic_source, tmp_path
):
    api = start_api(
        registry_service_settings(registry, f"sqlite:///{tmp_path / 'a.db'}", drift_window=WINDOW)
    )
    assert _gauges(api) == {"lenrisk_drift_window_records": {"": 0.0}}

    _post(api, _records(WINDOW, 101, synthetic_source.settings))
    quiet = _gauges(api)
    assert quiet["lenrisk_drift_window_records"][""] == WINDOW
    assert len(quiet["lenrisk_drift_drifted"]) == 15 and set(quiet["lenrisk_drift_drifted"].values()) == {0.0}
    assert all(
        quiet["lenrisk_drift_statistic"][f] <= quiet["lenrisk_drift_threshold"][f]
        for f in quiet["lenrisk_drift_statistic"]
    )

    _post(api, _records(WINDOW, 102, synthetic_source.settings, age_years=10))  # replaces the whole window
    moved = _gauges(api)
    assert moved["lenrisk_drift_window_records"][""] == WINDOW
    assert moved["lenrisk_drift_drifted"]["age"] == 1.0
    assert moved["lenrisk_drift_threshold"]["age"] == quiet["lenrisk_drift_threshold"]["age"]  # same size
    assert moved["lenrisk_drift_out_of_range_share"]["age"] > 0
    assert moved["lenrisk_drift_unseen_categories"]["setting"] == 0


def test_unseen_settings_are_counted_in_the_window(start_api, registry, tmp_path):
    api = start_api(registry_service_settings(registry, f"sqlite:///{tmp_path / 'a.db'}", drift_window=50))
    records = _records(120, 103, ("maintenance",))  # a setting the session's models never saw
    _post(api, records)
    gauges = _gauges(api)
    assert gauges["lenrisk_drift_window_records"][""] == 50  # bounded: the last 50 only
    assert gauges["lenrisk_drift_unseen_categories"]["setting"] == 50
    assert gauges["lenrisk_drift_drifted"]["setting"] == 1.0
