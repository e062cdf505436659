"""The synthetic cohort generator: contract validity, case mix, renal rule, joint outcomes, the CLI."""

from __future__ import annotations

import dataclasses
import re
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.errors import LenriskError
from features.schema import COMORBIDITY_COLUMNS, OUTCOME_COLUMNS, RECORD_COLUMNS, RECORD_NAMES, SETTINGS, Kind
from features.tableio import read_table
from features.validate import validate_table
from service.cli import app
from training.cohort.calibrate import CALIBRATED_SETTINGS, solve_intercepts
from training.cohort.generate import UnknownSettingError, allocate, generate_cohort, start_dose
from training.cohort.outcomes import Covariates, outcome_probabilities
from training.cohort.params import DEFAULT_PARAMS, SEED_FILES, TRIPLET_OR_MORE, Cited, parameter_sources

OUTCOMES = ["discontinued_toxicity", "dose_reduced"]
TRUTH = ["true_p_discontinued_toxicity", "true_p_dose_reduced"]


@pytest.fixture(scope="module")
def mixed() -> pd.DataFrame:
    return generate_cohort(20_000, 7, with_truth=True)


@pytest.fixture(scope="module")
def by_setting() -> dict[str, pd.DataFrame]:
    return {s: generate_cohort(30_000, 11, settings=[s], with_truth=True) for s in SETTINGS}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_same_seed_gives_the_same_table_and_another_seed_does_not():
    first = generate_cohort(3_000, 5, with_truth=True)
    pd.testing.assert_frame_equal(first, generate_cohort(3_000, 5, with_truth=True))
    assert not first.equals(generate_cohort(3_000, 6, with_truth=True))


def test_columns_are_the_contract_then_outcomes_then_truth_on_request():
    assert list(generate_cohort(100, 1).columns) == [*RECORD_NAMES, *OUTCOMES]
    assert list(generate_cohort(100, 1, with_truth=True).columns) == [*RECORD_NAMES, *OUTCOMES, *TRUTH]
    assert [c.name for c in OUTCOME_COLUMNS] == OUTCOMES


def test_every_cell_satisfies_the_contract(mixed):
    for col in RECORD_COLUMNS:
        values = mixed[col.name]
        present = values.dropna()
        assert col.nullable or len(present) == len(values), col.name
        if col.kind is Kind.CATEGORY:
            assert set(present) <= set(col.allowed), col.name
        elif col.kind is Kind.BINARY:
            assert set(present) <= {0, 1}, col.name
        elif col.kind is Kind.STRING:
            assert present.str.len().between(col.minimum, col.maximum).all()
            assert present.map(str.isprintable).all()
        else:
            assert present.between(col.minimum, col.maximum).all(), col.name
            if col.kind is Kind.INTEGER:
                assert (present == present.round()).all(), col.name
    for name in OUTCOMES:
        assert set(mixed[name]) == {0, 1}
    assert mixed[TRUTH].gt(0).all().all() and mixed[TRUTH].lt(1).all().all()
    assert 0.02 < mixed["crcl_ml_min"].isna().mean() < 0.04  # 3% assumed missing
    assert 0.06 < mixed["ecog"].isna().mean() < 0.10  # 8% assumed missing
    assert validate_table(mixed, require_outcomes=True).ok  # the project's contract gate agrees


def test_all_four_settings_are_mixed_by_the_documented_shares():
    counts = generate_cohort(1_000, 2)["setting"].value_counts()
    assert counts[list(SETTINGS)].tolist() == [350, 300, 300, 50]  # newly_diagnosed, maintenance, rr, AL
    restricted = generate_cohort(700, 2, settings=["maintenance", "al_amyloidosis"])["setting"]
    assert restricted.value_counts().to_dict() == {"maintenance": 600, "al_amyloidosis": 100}
    assert list(allocate(10, np.array([1.0, 1.0, 1.0]))) == [4, 3, 3]


def test_unknown_setting_is_a_clear_domain_error():
    with pytest.raises(UnknownSettingError, match=r"setting 'relapsed'; expected one of newly_diagnosed, "):
        generate_cohort(10, 1, settings=["relapsed"])
    assert issubclass(UnknownSettingError, LenriskError)


def test_lines_cluster_within_patients_as_in_seed_000(by_setting):
    rr = by_setting["relapsed_refractory"]
    assert rr["patient_id"].str.fullmatch(r"P\d{7}").all()
    per_patient = rr.groupby("patient_id", sort=False)
    assert per_patient.size().mean() == pytest.approx(107 / 78, abs=0.03)
    fixed = ["sex", "dialysis", *COMORBIDITY_COLUMNS]
    assert (per_patient[fixed].nunique() == 1).all().all()
    later = rr["patient_id"].eq(rr["patient_id"].shift())
    assert (rr["prior_lines"].diff()[later] == 1).all()
    assert (rr["age"].diff()[later] >= 0).all() and rr["age"].diff()[later].mean() > 1.0
    for setting in ("maintenance", "al_amyloidosis", "newly_diagnosed"):
        assert by_setting[setting]["patient_id"].is_unique


def test_relapsed_refractory_case_mix_follows_seed_000(by_setting):
    rr = by_setting["relapsed_refractory"]
    assert rr["age"].median() == pytest.approx(62, abs=1)
    assert rr["age"].between(38, 84).all()
    assert (rr["sex"] == "male").mean() == pytest.approx(0.55, abs=0.015)
    shares = rr["regimen"].value_counts(normalize=True)
    assert shares["Rd"] == pytest.approx(75 / 107, abs=0.015)
    assert shares["RCd"] == pytest.approx(17 / 107, abs=0.01)
    assert shares["RVd"] == pytest.approx(12 / 107, abs=0.01)
    assert (rr["prior_lines"] >= 1).all()


def test_maintenance_is_under_65_on_10_mg_single_agent(by_setting):
    m = by_setting["maintenance"]
    assert m["age"].max() < 65
    assert m["start_dose_mg"].max() == 10
    assert (m["start_dose_mg"] == 10).mean() > 0.98  # 5 mg only on dialysis
    assert (m["regimen"] == "R").mean() == pytest.approx(0.90, abs=0.01)
    assert (m["prior_lines"] == 0).all()


def test_al_amyloidosis_matches_seed_003(by_setting):
    al = by_setting["al_amyloidosis"]
    assert al["start_dose_mg"].max() == 15 and al["start_dose_mg"].min() == 5
    assert al["start_dose_mg"].median() == 10
    assert (al["sex"] == "male").mean() == pytest.approx(0.67, abs=0.015)
    assert al["age"].median() == pytest.approx(63, abs=1)
    assert al["dialysis"].mean() == pytest.approx(0.12, abs=0.01)
    assert al["crcl_ml_min"].median() == pytest.approx(53, abs=2)
    assert al["cm_cardiac"].mean() == pytest.approx(0.72, abs=0.015)
    assert al["prior_lines"].between(1, 4).all() and al["prior_lines"].median() == 1


def test_first_line_agent_counts_sex_and_renal_function_match_seed_004(by_setting):
    nd = by_setting["newly_diagnosed"]
    doublet = (nd["regimen"] == "Rd").mean()
    assert doublet == pytest.approx(186 / 476, abs=0.01)
    assert nd["regimen"].isin(TRIPLET_OR_MORE).mean() == pytest.approx(1 - 186 / 476, abs=0.01)
    assert (nd["regimen"] == "DRd").mean() == pytest.approx(15 / 476, abs=0.005)  # the quadruplets
    assert (nd["sex"] == "female").mean() == pytest.approx(202 / 476, abs=0.015)
    recorded = nd["crcl_ml_min"].dropna()
    assert (recorded < 60).mean() == pytest.approx(96 / 476, abs=0.02)
    assert (nd["prior_lines"] == 0).all()


@pytest.mark.parametrize("threshold", [50.0, 60.0])
def test_starting_dose_follows_the_renal_rule_of_seed_002(threshold):
    cited = Cited(threshold, "assumption: test of the threshold parameter")
    params = dataclasses.replace(DEFAULT_PARAMS, renal_threshold_ml_min=cited)
    frame = generate_cohort(20_000, 3, settings=["relapsed_refractory", "newly_diagnosed"], params=params)
    known = frame.dropna(subset=["crcl_ml_min"])
    crcl, dose, dialysis = known["crcl_ml_min"], known["start_dose_mg"], known["dialysis"] == 1
    assert (dose[dialysis] == 5).all() and (crcl[dialysis] < 30).all()
    assert (dose[~dialysis & (crcl < threshold)] == 10).all()
    assert (dose[~dialysis & (crcl >= threshold)] == 25).all()
    assert ((crcl >= 50) & (crcl < 60) & ~dialysis & (dose == 10)).any() == (threshold == 60)


def test_start_dose_caps_but_never_raises_the_dose():
    base = np.array([25.0, 25.0, 15.0, 5.0, 25.0, 10.0])
    crcl = np.array([80.0, 49.9, 40.0, 40.0, 12.0, 12.0])
    dialysis = np.array([0, 0, 0, 0, 1, 1])
    assert list(start_dose(base, crcl, dialysis, DEFAULT_PARAMS)) == [25, 10, 10, 5, 5, 5]


def test_outcomes_are_joint_dose_reduction_raises_discontinuation(by_setting):
    for setting, frame in by_setting.items():
        by_dr = frame.groupby("dose_reduced")["discontinued_toxicity"].mean()
        assert by_dr[1] - by_dr[0] > 0.35, setting
    rr = by_setting["relapsed_refractory"]
    assert rr.loc[rr["dose_reduced"] == 1, "discontinued_toxicity"].mean() == pytest.approx(0.75, abs=0.02)


@pytest.mark.parametrize("setting", SETTINGS)
def test_rates_meet_the_cited_targets(by_setting, setting):
    sp, frame = DEFAULT_PARAMS.setting(setting), by_setting[setting]
    assert frame["discontinued_toxicity"].mean() == pytest.approx(sp.target_disc.value, abs=0.015)
    assert frame["dose_reduced"].mean() == pytest.approx(sp.target_dr.value, abs=0.015)
    assert frame[TRUTH[0]].mean() == pytest.approx(sp.target_disc.value, abs=0.01)


def test_truth_columns_are_the_model_probabilities_of_the_written_covariates(by_setting):
    frame = by_setting["maintenance"]
    sp = DEFAULT_PARAMS.setting("maintenance")
    p = outcome_probabilities(
        Covariates.from_frame(frame), DEFAULT_PARAMS.outcome, sp.dr_intercept.value, sp.disc_intercept.value
    )
    np.testing.assert_allclose(frame[TRUTH[0]], p.discontinued)
    np.testing.assert_allclose(frame[TRUTH[1]], p.dose_reduced)


def test_comorbidities_have_a_null_effect_as_seed_000_found():
    one = np.ones(1, dtype=bool)
    x = Covariates(age=np.array([70.0]), male=one, triplet=one, n_comorbidities=np.zeros(1))
    sick = dataclasses.replace(x, n_comorbidities=np.array([6.0]))
    healthy_p, sick_p = (outcome_probabilities(c, DEFAULT_PARAMS.outcome, -1.8, -2.8) for c in (x, sick))
    assert sick_p.discontinued == healthy_p.discontinued and sick_p.dose_reduced == healthy_p.dose_reduced


@pytest.mark.parametrize("setting", CALIBRATED_SETTINGS)
def test_stored_intercepts_are_what_the_solver_finds(setting):
    sp = DEFAULT_PARAMS.setting(setting)
    dr, disc = solve_intercepts(setting, n=60_000, seed=1)
    assert dr == pytest.approx(sp.dr_intercept.value, abs=0.05)
    assert disc == pytest.approx(sp.disc_intercept.value, abs=0.05)


def test_every_parameter_is_cited():
    rows = parameter_sources()
    assert len(rows) > 80
    for scope, name, _, source in rows:
        cited = any(f in source for f in SEED_FILES) or "clinical-evidence.md" in source
        assert cited or source.startswith(("assumption: ", "solved by ")), (scope, name)
    with pytest.raises(ValueError, match="names no seed file"):
        Cited(1.0, "a hunch")


@pytest.mark.slow
def test_a_million_lines_in_under_30_seconds():
    start = time.perf_counter()
    frame = generate_cohort(1_000_000, 1)
    assert time.perf_counter() - start < 30
    assert len(frame) == 1_000_000 and frame["patient_id"].is_monotonic_increasing


@pytest.mark.parametrize("name", ["c.parquet", "c.csv"])
def test_cli_writes_a_file_that_reads_back_as_the_generated_table(runner, tmp_path, name):
    out = tmp_path / name
    args = ["cohort", "--n", "500", "--seed", "1", "--out", str(out), "--quiet", "--with-truth"]
    result = runner.invoke(app, [*args, "--setting", "maintenance", "--setting", "al_amyloidosis"])
    assert result.exit_code == 0, result.output
    assert "wrote 500 lines" in result.output
    back = pd.read_parquet(out) if name.endswith("parquet") else pd.read_csv(out)
    expected = generate_cohort(500, 1, settings=["maintenance", "al_amyloidosis"], with_truth=True)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert back["ecog"].isna().any()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind
    assert validate_table(read_table(out), require_outcomes=True).ok


def test_cli_rejects_an_unknown_setting_with_the_allowed_ones(runner, tmp_path):
    out = str(tmp_path / "c.csv")
    result = runner.invoke(app, ["cohort", "--n", "10", "--out", out, "--setting", "myeloma"])
    assert result.exit_code == 2
    message = re.sub(r"[\s│]+", " ", result.output)
    assert "unknown setting 'myeloma'; expected one of newly_diagnosed, maintenance" in message
    assert not (tmp_path / "c.csv").exists()


def test_cli_rejects_an_unsupported_extension(runner, tmp_path):
    result = runner.invoke(app, ["cohort", "--n", "10", "--out", str(tmp_path / "c.xlsx")])
    assert result.exit_code == 2
    assert "'c.xlsx' must end in .csv or .parquet" in re.sub(r"[\s│]+", " ", result.output)


def test_cli_refuses_a_missing_directory_before_generating(runner, tmp_path):
    result = runner.invoke(app, ["cohort", "--n", "10", "--out", str(tmp_path / "missing" / "c.csv")])
    assert result.exit_code == 2
    assert "does not exist" in re.sub(r"[\s│]+", " ", result.output)


def test_a_shifted_population_is_older_and_riskier_with_the_same_effects(tmp_path):
    from scipy.special import logit

    from training.cohort.shift import shifted

    base = generate_cohort(20_000, seed=3, with_truth=True)
    moved = generate_cohort(20_000, seed=3, with_truth=True, params=shifted(log_odds=0.7, age_years=8))
    assert 6 < moved["age"].mean() - base["age"].mean() < 9
    assert moved["age"].max() <= 100 and validate_table(moved).raise_on_errors() is not None
    for column in ("true_p_dose_reduced", "true_p_discontinued_toxicity"):
        assert moved[column].mean() > base[column].mean() + 0.04
    # Intercepts only: the same lines, with dose-reduction log-odds exactly 0.7 higher (a one-step model).
    same = generate_cohort(20_000, seed=3, with_truth=True, params=shifted(log_odds=0.7))
    assert same["age"].equals(base["age"])
    delta = logit(same["true_p_dose_reduced"]) - logit(base["true_p_dose_reduced"])
    assert np.allclose(delta, 0.7)
    assert shifted() is DEFAULT_PARAMS
    out = tmp_path / "shifted.csv"
    result = CliRunner().invoke(
        app, ["cohort", "--n", "500", "--out", str(out), "--shift-age", "8", "--shift-log-odds", "0.7", "-q"]
    )
    assert result.exit_code == 0, result.output
    written = read_table(out)
    expected = generate_cohort(500, seed=0, params=shifted(log_odds=0.7, age_years=8))
    assert np.allclose(written["age"].astype(float), expected["age"])
