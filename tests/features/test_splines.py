"""Restricted cubic splines as Harrell's Hmisc ``rcspline.eval`` computes them."""

from __future__ import annotations

import numpy as np
import pytest

from features.splines import harrell_knots, rcs_basis


@pytest.mark.parametrize(
    ("x", "n_knots", "expected"),
    [  # Hmisc rcspline.eval defaults (quantile type 7; under 100 values the 5th smallest/largest outside)
        (np.arange(1, 101), 4, [5.95, 35.65, 65.35, 95.05]),
        (np.arange(1, 101), 3, [10.9, 50.5, 90.1]),
        (np.arange(1, 101), 5, [5.95, 28.225, 50.5, 72.775, 95.05]),
        (np.arange(1, 1001), 5, [50.95, 275.725, 500.5, 725.275, 950.05]),
        (np.arange(1, 100), 4, [5, 35.3, 64.7, 95]),
        (np.arange(1, 51), 4, [5, 18.15, 32.85, 46]),
        (np.arange(1, 51), 3, [5, 25.5, 46]),
        (np.r_[np.zeros(30), np.arange(1, 5), np.full(30, 5)], 5, [1, 2, 3, 4]),  # few distinct values
    ],
)
def test_knots_equal_hmisc(x, n_knots, expected):
    np.testing.assert_allclose(harrell_knots(x.astype(float), n_knots), expected, atol=1e-9)


def test_basis_equals_hmisc_and_is_linear_beyond_the_last_knot():
    knots = harrell_knots(np.arange(1.0, 101), 4)
    rows = rcs_basis(np.array([10, 36, 50, 66, 96, 100.0]), knots)
    expected = [  # rcspline.eval(1:100, nk=4, inclx=TRUE), its .Rd example
        [0.008367768595, 0],
        [3.4180469271, 5.4006834778e-06],
        [10.7666930088, 0.372220506],
        [27.2760812074, 3.521373937],
        [81.1, 20.4333333333],
        [89.1, 23.1],
    ]
    np.testing.assert_allclose(rows, expected, rtol=1e-9, atol=1e-12)
    x = np.linspace(0, 200, 2001)
    basis = rcs_basis(x, knots)
    assert np.all(basis[x <= knots[0]] == 0)
    tail = basis[x >= knots[-1]]
    np.testing.assert_allclose(np.diff(tail, n=2, axis=0), 0, atol=1e-9)  # linear after the last knot
    assert np.all(np.diff(basis, axis=0) >= -1e-12)  # non-decreasing in x (monotone constraints rely on it)
    assert np.isnan(rcs_basis(np.array([np.nan]), knots)).all()


def test_too_few_distinct_values_are_refused():
    with pytest.raises(ValueError, match="at least 5 distinct"):
        harrell_knots(np.array([1.0, 1, 2, 2, 3, 3, 4]), 4)


def test_tied_quantiles_give_distinct_knots_or_no_spline():
    heaped = np.r_[np.arange(20.0, 60), np.full(60, 90.0)]  # eGFR reported as ">90" and stored as 90
    knots = harrell_knots(heaped, 4)
    assert len(knots) == len(np.unique(knots)) >= 3
    assert np.isfinite(rcs_basis(heaped, knots)).all()
    with pytest.raises(ValueError, match="too heaped"):
        harrell_knots(np.r_[np.arange(1.0, 7), np.full(200, 90.0)], 4)
