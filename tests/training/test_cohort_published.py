"""Seed 000's published analysis, refitted on generated relapsed/refractory lines (reduced sizes)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from typer.testing import CliRunner

from service.cli import app
from training.cohort import published
from training.cohort.generate import generate_cohort
from training.cohort.params import DEFAULT_PARAMS, Cited
from training.cohort.published import Comparison, population_comparisons, replicate_comparisons


@pytest.fixture(scope="module")
def population() -> dict[str, Comparison]:
    frame = generate_cohort(50_000, 3, settings=["relapsed_refractory"])
    rows = population_comparisons(frame, rate_tol=0.015, log_or_tol=0.10, link_tol=0.03)
    return {r.quantity: r for r in rows}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_rates_and_odds_ratios_reproduce_at_50_000_lines(population):
    checked = [r for r in population.values() if r.passed is not None]
    assert len(checked) == 10 and all(r.passed for r in checked), [r for r in checked if not r.passed]

    def value(quantity: str) -> float:
        return float(population[quantity].reproduced)

    assert value("discontinued for toxicity (34/107 lines)") == pytest.approx(0.318, abs=0.015)
    assert value("dose reduced (33/107 lines)") == pytest.approx(0.308, abs=0.015)
    assert value("OR age per year, disc ~ age + triplet") == pytest.approx(1.08, abs=0.006)
    assert value("OR triplet, disc ~ age + triplet") == pytest.approx(4.84, rel=0.12)
    assert value("OR male, DR ~ sex + age + triplet") == pytest.approx(3.63, rel=0.10)


def test_known_deviations_are_reported_not_checked(population):
    stops = population["stops preceded by a dose reduction (29/34)"]
    assert stops.passed is None and float(stops.published) == pytest.approx(0.853, abs=0.001)
    assert float(stops.reproduced) == pytest.approx(0.73, abs=0.03)


@pytest.mark.slow
def test_replicate_cohorts_of_107_lines_cover_the_published_intervals():
    rows = {r.quantity: r for r in replicate_comparisons(500, seed=1)}
    assert all(r.passed for r in rows.values() if r.passed is not None)
    assert float(rows["age-only ROC AUC, median"].reproduced) == pytest.approx(0.67, abs=0.02)
    coverage = float(rows["OR male inside the published 95% CI"].reproduced.rstrip("%")) / 100
    assert coverage >= 0.90
    assert rows["Youden age cut-off, median (share ≥ 69)"].passed is None


def test_a_generator_without_the_triplet_effect_fails_the_check():
    no_effect = Cited(0.0, "assumption: broken on purpose")
    outcome = dataclasses.replace(DEFAULT_PARAMS.outcome, disc_triplet=no_effect)
    params = dataclasses.replace(DEFAULT_PARAMS, outcome=outcome)
    frame = generate_cohort(20_000, 3, settings=["relapsed_refractory"], params=params)
    rows = {r.quantity: r for r in population_comparisons(frame, rate_tol=0.015, log_or_tol=0.10)}
    assert rows["OR triplet, disc ~ age + triplet"].passed is False
    assert rows["discontinued for toxicity (34/107 lines)"].passed is False


@pytest.mark.slow
def test_cli_validate_prints_the_table_and_passes(runner):
    args = ["cohort", "--validate", "--n", "100000", "--replicates", "500", "--seed", "0", "-q"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = re.sub(r"\s+", " ", result.output)
    assert "OR triplet, disc ~ age + triplet" in text and "4.840" in text and "FAIL" not in text


def test_cli_validate_exits_1_when_a_check_fails(runner, monkeypatch):
    failing = [Comparison("OR age per year", "1.080", "1.500", "ln OR ± 5%", False)]
    monkeypatch.setattr(published, "reproduce_published", lambda **kwargs: failing)
    result = runner.invoke(app, ["cohort", "--validate", "--quiet"])
    assert result.exit_code == 1
    assert "1 check(s) failed" in result.output and "FAIL" in result.output


def test_cli_validate_refuses_generation_options(runner, tmp_path):
    result = runner.invoke(app, ["cohort", "--validate", "--out", str(tmp_path / "c.csv")])
    assert result.exit_code == 2
    assert not (tmp_path / "c.csv").exists()
