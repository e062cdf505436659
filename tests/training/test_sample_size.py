"""Riley's minimum sample size against the R package pmsampsize, and the effective sample size."""

from __future__ import annotations

import numpy as np
import pytest

from training.sample_size import effective_size, max_r2_cs, r2_cs_from_c, requirement


@pytest.mark.parametrize(
    ("r2", "parameters", "prevalence", "expected", "epp"),
    [  # pmsampsize 1.1.3, tests/testthat/test_bin.R (type "b", shrinkage 0.9)
        (0.288, 24, 0.174, (623, 662, 221, 662), 4.8),
        (0.55, 24, 0.174, (255, 532, 221, 532), 3.86),
        (0.288, 36, 0.174, (934, 992, 221, 992), 4.79),
        (0.288, 24, 0.25, (623, 590, 289, 623), 6.49),
    ],
)
def test_criteria_equal_the_r_package(r2, parameters, prevalence, expected, epp):
    r = requirement(parameters, prevalence, r2)
    assert (r.n1, r.n2, r.n3, r.minimum) == expected
    assert round(r.events_per_parameter(r.minimum), 2) == epp


def test_shrinkage_and_maximum_r2_equal_the_r_package():
    r = requirement(24, 0.174, 0.288)
    assert round(r.shrinkage_2, 3) == 0.905 and r.binding == "2"
    assert round(max_r2_cs(0.174), 3) == 0.603 and max_r2_cs(0.5) == pytest.approx(0.75)
    assert r.expected_shrinkage(r.n1) == pytest.approx(0.9, abs=1e-3)  # criterion 1 is S = 0.9
    assert r.expected_shrinkage(10 * r.n1) > 0.98


@pytest.mark.parametrize(
    ("c", "parameters", "prevalence", "r_n"),
    [  # printed by pmsampsize(type="b", cstatistic=..., parameters=..., prevalence=..., seed=123)
        (0.89, 6, 0.18, 227),
        (0.81, 6, 0.18, 266),
        (0.89, 24, 0.174, 661),  # the package's documented example (R output of an exact RNG port)
    ],
)
def test_the_c_statistic_route_is_within_two_lines_of_the_r_package(c, parameters, prevalence, r_n):
    """pmsampsize simulates 10^6 draws; the quadrature here is its large-sample limit (R²cs within 1e-3)."""
    assert abs(requirement(parameters, prevalence, r2_cs_from_c(c, prevalence)).minimum - r_n) <= 2


def test_no_parameters_need_only_the_overall_risk():
    r = requirement(0, 0.3, 0.1)
    assert (r.n1, r.n2) == (0, 0) and r.minimum == r.n3 == 323


def test_effective_size_counts_lines_of_one_patient_less():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(float)
    one_each = effective_size(y, np.arange(400))
    assert one_each.design_effect == 1 and one_each.n == 400
    twins = effective_size(np.repeat(y[:200], 2), np.repeat(np.arange(200), 2))  # both lines agree
    assert twins.icc == pytest.approx(1, abs=0.01) and twins.n == pytest.approx(200, rel=0.01)
    independent = effective_size(y, np.repeat(np.arange(200), 2))
    assert independent.icc < 0.1 and independent.n > 360
