"""Risk bands: per-outcome cut points anchored on the development data's average risk, configurable."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from features.schema import OUTCOMES
from service.predictor import DEVELOPMENT_AVERAGE_RISK, RiskBands, default_bands
from service.settings import ServiceSettings
from training.cohort.params import DEFAULT_PARAMS


def _generator_average(outcome: str) -> float:
    """The default development cohort's expected rate: each setting's target weighted by its share."""
    target = {"discontinuation": "target_disc", "dose_reduction": "target_dr"}[outcome]
    by_name = DEFAULT_PARAMS.settings_by_name
    return sum(share * getattr(by_name[s], target).value for s, share in DEFAULT_PARAMS.setting_shares.value)


def test_default_bands_differ_by_outcome_and_follow_the_stated_rule(tmp_path):
    bands = ServiceSettings(mlruns_dir=tmp_path).bands

    assert bands["discontinuation"] != bands["dose_reduction"]
    for outcome in OUTCOMES:
        average = DEVELOPMENT_AVERAGE_RISK[outcome]
        # The stated anchor is the default development cohort's average risk (the generator's targets).
        assert average == pytest.approx(_generator_average(outcome), abs=0.005), outcome
        # Low below about the average (rounded up to 5%), high from twice that.
        assert bands[outcome] == default_bands(average)
        assert average <= bands[outcome].intermediate < average + 0.05
        assert bands[outcome].high == pytest.approx(2 * bands[outcome].intermediate)
        assert math.isclose(bands[outcome].intermediate * 20, round(bands[outcome].intermediate * 20))
    # A typical patient (the average risk) is low, not already intermediate.
    assert bands["dose_reduction"].band(DEVELOPMENT_AVERAGE_RISK["dose_reduction"]) == "low"


def test_cut_points_are_read_from_the_environment_as_two_numbers(monkeypatch, tmp_path):
    for name in ("LENRISK_DISCONTINUATION_BANDS", "LENRISK_DOSE_REDUCTION_BANDS"):
        monkeypatch.delenv(name, raising=False)
    assert ServiceSettings(mlruns_dir=tmp_path).bands_configured == dict.fromkeys(OUTCOMES, False)

    monkeypatch.setenv("LENRISK_DISCONTINUATION_BANDS", "0.15,0.30")
    monkeypatch.setenv("LENRISK_DOSE_REDUCTION_BANDS", " 0.25 , 0.5 ")

    settings = ServiceSettings(mlruns_dir=tmp_path)

    assert settings.bands == {
        "discontinuation": RiskBands(0.15, 0.30),
        "dose_reduction": RiskBands(0.25, 0.5),
    }
    assert settings.bands_configured == dict.fromkeys(OUTCOMES, True)


@pytest.mark.parametrize("bad", ["0.3", "0.3,0.2", "low,high", "0.1,0.2,0.3", "0,0.5"])
def test_malformed_cut_points_in_the_environment_are_refused_clearly(monkeypatch, tmp_path, bad):
    monkeypatch.setenv("LENRISK_DISCONTINUATION_BANDS", bad)
    with pytest.raises(ValidationError, match="cut points"):
        ServiceSettings(mlruns_dir=tmp_path)
