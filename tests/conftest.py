"""Shared fixtures: small valid records built from the contract."""

from __future__ import annotations

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
