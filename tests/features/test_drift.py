"""Input drift (features.drift): the development profile, thresholds that depend on the batch size, the
verdicts on shifted and unshifted batches, and the profile travelling inside the model artifact."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.drift import ALPHA, DriftProfile, compare
from features.drift_window import DriftWindow
from features.encoding import FEATURE_NAMES, FeatureEncoder
from features.errors import ArtifactError
from features.model.riskmodel import RiskModel
from features.validate import validate_table
from training.cohort.generate import generate_cohort
from training.cohort.shift import shifted
from training.estimators import LinearSpec

SETTINGS = ("relapsed_refractory", "newly_diagnosed")  # two settings: the others are unseen in development


@pytest.fixture(scope="module")
def development():
    rows = validate_table(generate_cohort(4000, 1, SETTINGS), require_outcomes=True).clean
    return {"rows": rows, "profile": DriftProfile.of(rows), "encoder": FeatureEncoder().fit(rows)}


def _batch(n: int, seed: int, settings=SETTINGS, **shift):
    return validate_table(generate_cohort(n, seed, settings, params=shifted(**shift))).clean


def test_profile_counts_every_development_line_per_field(development):
    profile, rows = development["profile"], development["rows"]
    assert profile.n == 4000
    assert all(int(f.counts.sum()) == 4000 for f in profile.fields.values())
    age = profile.fields["age"]
    assert len(age.labels) == 11 and age.labels[-1] == "unknown"  # deciles: 10 bins and unknown
    np.testing.assert_allclose(age.proportions[:10], 0.1, atol=0.01)
    assert profile.fields["crcl_ml_min"].counts[-1] == rows["crcl_ml_min"].isna().sum() > 0
    assert profile.fields["ecog"].labels == ("< 0", "0", "1", "≥ 2", "unknown")
    setting = dict(zip(profile.fields["setting"].labels, profile.fields["setting"].counts, strict=True))
    assert setting["maintenance"] == setting["al_amyloidosis"] == 0
    assert profile.fields["sex"].bin_of("male") == 1 and profile.fields["cm_vte"].bin_of(1) == 1
    assert profile.fields["crcl_ml_min"].bin_of(None) == len(profile.fields["crcl_ml_min"].labels) - 1


def test_threshold_depends_on_the_batch_size(development):
    """A fixed cut-off (0.1, as Evidently's and PSI's) is too low for 100 lines and too high for 1,000."""
    profile = development["profile"]
    small, large = profile.threshold("age", 100), profile.threshold("age", 1000)
    assert small > 0.1 > large
    assert small / large == pytest.approx(np.sqrt(10), rel=0.25)  # sampling noise shrinks as 1/sqrt(n)
    assert profile.threshold("age", 100) == small  # reproducible (seeded by field and size)


def test_shifted_age_is_flagged_and_the_same_size_unshifted_is_not(development):
    profile, encoder = development["profile"], development["encoder"]
    plain = compare(profile, encoder, _batch(1000, 7))
    older = compare(profile, encoder, _batch(1000, 7, age_years=8))
    assert plain.drifted_fields == [] and plain.n == 1000
    assert older.drifted_fields == ["age"]
    age = next(f for f in older.fields if f.field == "age")
    assert age.value > age.threshold and age.out_of_range_share > 0  # some older than any development line
    assert plain.to_dict()["alpha_per_field"] == pytest.approx(ALPHA / 15)


def test_unseen_categories_and_out_of_range_come_from_the_encoders_applicability(development):
    profile, encoder = development["profile"], development["encoder"]
    rows = _batch(300, 8, settings=None)  # all four settings
    report = compare(profile, encoder, rows)
    setting = next(f for f in report.fields if f.field == "setting")
    expected = rows["setting"].value_counts()
    assert setting.unseen_categories == {
        "maintenance": expected["maintenance"],
        "al_amyloidosis": expected["al_amyloidosis"],
    }
    assert setting.drifted
    outside = {
        n: int(m.sum()) / 300 for n, k, m in encoder.applicability(rows) if k == "outside_training_range"
    }
    assert {
        f.field: f.out_of_range_share for f in report.fields if f.out_of_range_share is not None
    } == outside


@pytest.mark.slow
def test_false_alarms_over_fifty_unshifted_batches_of_100(development):
    profile, encoder = development["profile"], development["encoder"]
    fresh = _batch(5000, 2026)  # another seed than development's
    alarms = [compare(profile, encoder, fresh.iloc[i : i + 100]).drifted_fields for i in range(0, 5000, 100)]
    assert sum(bool(a) for a in alarms) / len(alarms) <= 0.10


@pytest.fixture(scope="module")
def model(development):
    """A logistic discontinuation model of the development rows (no profile)."""
    rows, encoder = development["rows"], development["encoder"]
    estimator, calibrator = LinearSpec("full", FEATURE_NAMES).fit(
        encoder.transform(rows), rows["discontinued_toxicity"].to_numpy()
    )
    return RiskModel("discontinuation", encoder, estimator, calibrator)


def test_profile_travels_in_the_artifact_digested(model, development, tmp_path):
    model = replace(model, profile=development["profile"])
    digest = model.save(tmp_path)
    assert "profile.json" in json.loads((tmp_path / "digests.json").read_text())
    again = RiskModel.load(tmp_path, expected_digest=digest).profile
    assert again.n == 4000 and again.fields["age"].cuts == development["profile"].fields["age"].cuts
    np.testing.assert_array_equal(
        again.fields["regimen"].counts, development["profile"].fields["regimen"].counts
    )

    state = json.loads((tmp_path / "profile.json").read_text())
    state["n"] = 5
    (tmp_path / "profile.json").write_text(json.dumps(state))
    with pytest.raises(ArtifactError, match=r"profile\.json does not match"):
        RiskModel.load(tmp_path)


def test_a_model_saved_without_a_profile_loads_without_one(model, tmp_path):
    model.save(tmp_path)
    assert not (tmp_path / "profile.json").exists()
    assert RiskModel.load(tmp_path).profile is None


def test_the_window_holds_exactly_the_last_records(development):
    """After more records than it holds, in singles and batches, the window's counts are those of the last
    ``size`` records, and its out-of-range and unseen counts those of their applicability warnings."""
    profile, encoder = development["profile"], development["encoder"]
    rows = _batch(700, 9, settings=None, age_years=4)  # unseen settings and ages above the development range
    records = rows.drop(columns=["patient_id", "discontinued_toxicity", "dose_reduced"]).to_dict("records")
    warnings = [
        [
            {"field": name, "kind": kind}
            for name, kind, mask in encoder.applicability(rows.iloc[[i]])
            if mask[0]
        ]
        for i in range(len(rows))
    ]
    window = DriftWindow(profile, 250)
    for start, stop in ((0, 1), (1, 2), (2, 400), (400, 401), (401, 700)):
        window.observe(records[start:stop], warnings[start:stop])
    expected = compare(profile, encoder, rows.iloc[-250:])
    got = window.report()
    assert window.n == got.n == 250
    for mine, theirs in zip(got.fields, expected.fields, strict=True):
        assert mine.batch == pytest.approx(theirs.batch, abs=1e-12), mine.field
        assert (mine.value, mine.threshold, mine.drifted) == pytest.approx(
            (theirs.value, theirs.threshold, theirs.drifted)
        )
        assert mine.out_of_range_share == theirs.out_of_range_share
        assert mine.unseen_categories == theirs.unseen_categories
    assert got.fields[0].out_of_range_share > 0 and "setting" in got.drifted_fields


def test_design_effect_of_patients_with_several_lines(development):
    """Every line duplicated under its patient: per-patient fields vary like half as many lines (design
    effect 2), and the thresholds are those of half the batch size; one line per patient: 1."""
    rows = development["rows"].drop_duplicates("patient_id").iloc[:1500]
    single = DriftProfile.of(rows)
    doubled = DriftProfile.of(pd.concat([rows, rows]))
    assert single.fields["sex"].design_effect == pytest.approx(1.0, abs=1e-3)  # k/(k-1) correction only
    assert doubled.fields["sex"].design_effect == pytest.approx(2.0, rel=0.01)
    assert doubled.fields["cm_vte"].design_effect == pytest.approx(2.0, rel=0.01)
    assert doubled.threshold("sex", 200) == pytest.approx(single.threshold("sex", 100), rel=0.1)
    assert doubled.threshold("sex", 200) > single.threshold("sex", 200) * 1.2
