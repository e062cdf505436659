"""Restricted cubic splines as Harrell's ``rms::rcs`` builds them: knots at fixed quantiles, basis linear
beyond the outer knots.

A continuous predictor ``x`` with ``k`` knots enters a linear model as ``x`` plus ``k - 2`` nonlinear terms
(``k - 1`` parameters), so a smooth, non-monotone effect costs two extra parameters at 4 knots instead of
a categorisation's many. Knots follow ``Hmisc::rcspline.eval``: quantiles 5, 35, 65, 95% for 4 knots (10,
50, 90% for 3; 5, 27.5, 50, 72.5, 95% for 5), the outer ones replaced by the 5th smallest and 5th largest
values when fewer than 100 values are given; fewer distinct values than knots + 2 use the inner distinct
values.

References
    Harrell FE. Regression Modeling Strategies, 2nd ed. Springer 2015, section 2.4.5 (knot quantiles, the
    basis scaled by (t_k - t_1)^2). Hmisc ``rcspline.eval`` (norm = 2).
"""

from __future__ import annotations

import numpy as np

#: Knot quantiles by number of knots (Harrell, RMS table 2.3).
QUANTILES = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.50, 0.725, 0.95),
}
_SMALL = 100  # below this many values the outer knots are the 5th smallest and largest values


def harrell_knots(x: np.ndarray, n_knots: int = 4) -> np.ndarray:
    """Knots for ``x`` (NaN ignored) as ``rcspline.eval`` places them by default.

    >>> np.round(harrell_knots(np.arange(1, 101), 4), 6).tolist()
    [5.95, 35.65, 65.35, 95.05]
    >>> harrell_knots(np.arange(1, 51), 4).tolist()
    [5.0, 18.15, 32.85, 46.0]
    """
    values = np.asarray(x, dtype=float)
    values = np.sort(values[~np.isnan(values)])
    distinct = np.unique(values)
    if len(distinct) - 2 <= n_knots:  # too few distinct values: the inner ones are the knots
        knots = distinct[1:-1]
        if len(knots) < 3:
            raise ValueError(f"a spline needs at least 5 distinct values; got {len(distinct)}")
        return knots
    knots = np.quantile(values, QUANTILES[n_knots])
    if len(values) < _SMALL:
        knots[0], knots[-1] = values[4], values[-5]
    knots = np.unique(knots)  # tied quantiles (a capped or heaped value) would divide by zero in the basis
    if len(knots) < 3:
        raise ValueError(f"fewer than 3 distinct knots ({len(knots)}): the values are too heaped")
    return knots


def rcs_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """The ``len(knots) - 2`` nonlinear columns of the restricted cubic spline of ``x`` (NaN stays NaN).

    Column j: ``[(x - t_j)+^3 - (x - t_{k-1})+^3 (t_k - t_j)/(t_k - t_{k-1}) + (x - t_k)+^3 (t_{k-1} - t_j)/
    (t_k - t_{k-1})] / (t_k - t_1)^2``; zero below ``t_j``, linear above ``t_k``.

    >>> np.round(rcs_basis(np.array([10.0, 96.0]), np.array([5.95, 35.65, 65.35, 95.05])), 6).tolist()
    [[0.008368, 0.0], [81.1, 20.433333]]
    """
    x = np.asarray(x, dtype=float)
    t = np.asarray(knots, dtype=float)
    k = len(t)
    scale = (t[-1] - t[0]) ** 2
    cube = lambda a: np.maximum(x - a, 0.0) ** 3  # noqa: E731
    tail_k, tail_k1 = cube(t[-1]), cube(t[-2])
    columns = [
        (cube(t[j]) - tail_k1 * (t[-1] - t[j]) / (t[-1] - t[-2]) + tail_k * (t[-2] - t[j]) / (t[-1] - t[-2]))
        / scale
        for j in range(k - 2)
    ]
    return np.column_stack(columns) if columns else np.empty((len(x), 0))
