"""Outcome monitoring: each outcome's calibration over sliding windows of labelled rows, an alert when it
drifts, and the update to make.

Each window (``window`` consecutive labelled rows, moved on by ``step``; the last window always ends at the
newest row) reports O:E, the calibration intercept and slope with their pointwise 95% intervals
(:func:`training.evaluation.calibration_intervals`). Calibration drift in clinical models is mostly a
change of event rates, and sliding windows of recent outcomes are how it is seen (Davis SE et al. JAMIA
2017;24:1052; Davis SE et al. J Biomed Inform 2020;112:103611, dynamic calibration curves).

The alert rule, per outcome:

* statistic: Cox's recalibration test of a window, the 2-df score test of ``a = 0, b = 1`` in
  ``logit P(y) = a + b logit(p)`` (Cox DR. Biometrika 1958;45:562; Miller ME, Hui SL, Tierney WM. Stat Med
  1991;10:1213). It sees a shifted event rate (intercept) and over- or under-confident risks (slope); being a
  score test, it needs no fit per window and, for a simulated outcome, only window sums.
* multiple testing: overlapping windows are tested together. The critical value is the ``1 - alpha / k``
  quantile of the *largest* statistic over all the run's windows when the model is calibrated (each outcome
  drawn as Bernoulli(p) from the run's own risks; Monte Carlo, ``simulations`` draws): the single-step max-T
  procedure (Westfall PH, Young SS. Resampling-Based Multiple Testing. Wiley 1993): it takes the windows'
  dependence into account, whatever their overlap, up to Monte Carlo error.
  ``k`` is the number of outcomes monitored (Bonferroni). A run on calibrated models thus alerts falsely with
  probability at most ``alpha``, however many windows it has.
* suggestion: from the newest alerting window, logistic recalibration (``lenrisk update``'s intercept and
  slope) when its slope's 95% interval excludes 1, else recalibration-in-the-large (Steyerberg EW. Clinical
  Prediction Models, 2nd ed. 2019, ch. 20; ``lenrisk update`` confirms by the closed test of Vergouwe Y et
  al. Stat Med 2017;36:4529).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import logit

from features.schema import OUTCOMES
from training.evaluation import EPS, Interval, calibration_intervals
from training.labelled_predictions import RISK_PREFIX, Labelled, OutcomeRows

ALPHA = 0.05
#: Labelled rows per window: about 100 events at the outcomes' event rates (30-40%), the least for a
#: calibration estimate (Vergouwe Y et al. J Clin Epidemiol 2005;58:475; Collins GS et al. Stat Med
#: 2016;35:214).
WINDOW = 500
STEP = 250
#: Monte Carlo draws for the critical value (its 97.5% quantile has a Monte Carlo error of a few percent).
SIMULATIONS = 2000
SEED = 20201
IN_THE_LARGE = "recalibration_in_the_large"
LOGISTIC = "logistic_recalibration"
_CELLS = 4_000_000  # simulated outcomes held at once


@dataclass(frozen=True)
class Window:
    """One window of one outcome: rows ``first``..``stop - 1`` of the outcome's labelled rows.

    ``start`` and ``end`` are the first and last rows' order values (ISO dates or numbers), or their row
    numbers in the predictions file without an order column.
    """

    index: int
    first: int
    stop: int
    first_row: int
    last_row: int
    start: str | float | int
    end: str | float | int
    n: int
    events: int
    expected: float
    observed_expected: Interval
    calibration_intercept: Interval
    calibration_slope: Interval
    statistic: float
    alert: bool


@dataclass(frozen=True)
class Suggestion:
    """The update to try for one outcome, why, and the command."""

    outcome: str
    method: str
    window: int
    reason: str
    command: str


@dataclass(frozen=True)
class OutcomeMonitoring:
    """One outcome's windows, the critical value of the statistic, and the suggestion when it alerts."""

    rows: OutcomeRows
    windows: list[Window]
    critical_value: float
    suggestion: Suggestion | None

    @property
    def alerts(self) -> list[Window]:
        return [w for w in self.windows if w.alert]


@dataclass(frozen=True)
class Monitoring:
    """Every monitored outcome, with the settings of the run."""

    outcomes: dict[str, OutcomeMonitoring]
    labelled: Labelled
    window: int
    step: int
    alpha: float
    simulations: int

    @property
    def alert(self) -> bool:
        return any(o.alerts for o in self.outcomes.values())


def window_bounds(n: int, size: int, step: int) -> list[tuple[int, int]]:
    """``(first, stop)`` of windows of ``size`` rows every ``step`` rows, the last ending at row ``n``; one
    window of all rows when there are fewer than ``size``; none when ``n`` is 0."""
    if size < 1 or step < 1:
        raise ValueError(f"window and step must be at least 1 (got {size} and {step})")
    if n == 0:
        return []
    if n <= size:
        return [(0, n)]
    bounds = [(start, start + size) for start in range(0, n - size + 1, step)]
    if bounds[-1][1] < n:
        bounds.append((n - size, n))
    return bounds


class RecalibrationTest:
    """Cox's 2-df recalibration score statistic of every window, for observed or simulated outcomes.

    Window sums are products with a sparse rows x windows indicator matrix, so a block of simulated streams
    costs one sparse product.
    """

    def __init__(self, p: np.ndarray, bounds: list[tuple[int, int]]) -> None:
        self.p = np.asarray(p, dtype=float)
        self.lp = logit(np.clip(self.p, EPS, 1 - EPS))
        rows = np.concatenate([np.arange(a, b) for a, b in bounds])
        columns = np.repeat(np.arange(len(bounds)), [b - a for a, b in bounds])
        members = sparse.csc_array((np.ones(len(rows)), (rows, columns)), shape=(len(self.p), len(bounds)))
        # y @ scores: each window's sum(y) then sum(y logit p); minus p @ scores: the score U
        self.scores = sparse.hstack([members, sparse.diags_array(self.lp) @ members], format="csc")
        self.centre = self.p @ self.scores
        w = self.p * (1 - self.p)  # information of the intercept, per row
        self.a, self.b, self.c = (x @ members for x in (w, w * self.lp, w * self.lp**2))
        self.det = self.a * self.c - self.b**2

    def statistic(self, y: np.ndarray) -> np.ndarray:
        """The statistic of each window for outcomes ``y`` (rows last; leading axis: simulations).

        ``U' I^-1 U`` with the score ``U = (sum(y - p), sum((y - p) logit p))`` and its information ``I`` at
        ``a = 0, b = 1``; the 1-df intercept test where every risk of a window is the same (``I`` singular).
        """
        u1, u2 = np.split(y @ self.scores - self.centre, 2, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            two = (self.c * u1**2 - 2 * self.b * u1 * u2 + self.a * u2**2) / self.det
            return np.where(self.det > 1e-10 * self.a * self.c, two, u1**2 / self.a)

    def simulated_maxima(self, simulations: int, seed: int) -> np.ndarray:
        """The largest window statistic of each of ``simulations`` streams drawn from calibrated risks."""
        rng = np.random.default_rng(seed)
        block = max(1, _CELLS // len(self.p))
        maxima = []
        for done in range(0, simulations, block):
            y = rng.random((min(block, simulations - done), len(self.p))) < self.p
            maxima.append(np.nanmax(self.statistic(y.astype(float)), axis=1))
        return np.concatenate(maxima)


def monitor(
    labelled: Labelled,
    *,
    window: int = WINDOW,
    step: int = STEP,
    alpha: float = ALPHA,
    simulations: int = SIMULATIONS,
    seed: int = SEED,
) -> Monitoring:
    """Windows, statistics, alerts and suggestions for every outcome of ``labelled`` (see the module)."""
    window_bounds(1, window, step)  # checks the sizes before any work
    k = len(labelled.outcomes)
    outcomes = {
        name: monitor_outcome(
            rows, window=window, step=step, level=1 - alpha / k, simulations=simulations, seed=seed
        )
        for name, rows in labelled.outcomes.items()
    }
    return Monitoring(outcomes, labelled, window, step, alpha, simulations)


def monitor_outcome(
    rows: OutcomeRows, *, window: int, step: int, level: float, simulations: int, seed: int
) -> OutcomeMonitoring:
    """One outcome's windows; a window alerts when its statistic exceeds the ``level`` quantile of the
    simulated maxima."""
    bounds = window_bounds(rows.used, window, step)
    if not bounds:
        return OutcomeMonitoring(rows, [], float("nan"), None)
    test = RecalibrationTest(rows.p, bounds)
    critical = float(np.quantile(test.simulated_maxima(simulations, seed), level))
    statistics = test.statistic(rows.y.astype(float))
    windows = []
    for index, ((first, stop), stat) in enumerate(zip(bounds, statistics, strict=True)):
        y, p = rows.y[first:stop], rows.p[first:stop]
        intervals = calibration_intervals(y, p)
        windows.append(
            Window(
                index=index,
                first=first,
                stop=stop,
                first_row=int(rows.row_numbers[first]),
                last_row=int(rows.row_numbers[stop - 1]),
                start=_display(rows, first),
                end=_display(rows, stop - 1),
                n=stop - first,
                events=int(y.sum()),
                expected=float(p.sum()),
                observed_expected=intervals["observed_expected"],
                calibration_intercept=intervals["calibration_intercept"],
                calibration_slope=intervals["calibration_slope"],
                statistic=float(stat),
                alert=bool(stat > critical),
            )
        )
    return OutcomeMonitoring(
        rows, windows, critical, suggest(rows.outcome, windows, rows_numbered=rows.order is None)
    )


def suggest(outcome: str, windows: list[Window], *, rows_numbered: bool = True) -> Suggestion | None:
    """The update the newest alerting window calls for (see the module), or None without an alert;
    ``rows_numbered``: the windows' start and end are row numbers (else order values)."""
    alerting = [w for w in windows if w.alert]
    if not alerting:
        return None
    w = alerting[-1]
    oe, slope = w.observed_expected, w.calibration_slope
    slope_off = not slope.lower <= 1 <= slope.upper  # NaN bounds (no events): not shown to be off
    method = LOGISTIC if slope_off else IN_THE_LARGE
    reason = (
        f"Window {w.index} ({'rows ' if rows_numbered else ''}{w.start} to {w.end}): O:E {_ci(oe)}, "
        f"calibration slope {_ci(slope)}; "
        + (
            "the slope is off as well as the intercept"
            if slope_off
            else "the slope's interval includes 1, so only the intercept is shown to have drifted"
        )
    )
    command = (
        f"lenrisk update --data FILE  (FILE: recent labelled lines, e.g. rows {w.first_row} to {w.last_row} "
        f"of the predictions with their outcomes; lenrisk update chooses the method by a closed test)"
    )
    return Suggestion(outcome, method, w.index, reason, command)


def _ci(i: Interval) -> str:
    return f"{i.estimate:.2f} ({i.lower:.2f} to {i.upper:.2f})"


def _display(rows: OutcomeRows, position: int) -> str | float | int:
    """The order value of a row for reports (ISO date or number), else its row number."""
    if rows.order is None:
        return int(rows.row_numbers[position])
    value = rows.order[position]
    if isinstance(value, np.datetime64):
        stamp = pd.Timestamp(value)
        return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()
    return int(value) if float(value).is_integer() else float(value)


def as_json(result: Monitoring, sources: dict[str, object]) -> dict:
    """The run as JSON-ready data: ``sources`` (files, key, order column), settings, per outcome its row
    counts, critical value and windows (start, end, n, events, O:E, intercept and slope with 95% intervals,
    statistic, alert), then the top-level ``alerts`` and, per alerting outcome, the ``suggestion``. NaN:
    null."""
    labelled = result.labelled
    return {
        **sources,
        "window": result.window,
        "step": result.step,
        "alpha": result.alpha,
        "simulations": result.simulations,
        "rule": "Cox recalibration score test (2 df) per window; critical value: the 1 - alpha/k quantile of "
        "the largest window statistic of streams simulated from the risks (k outcomes)",
        "join": labelled.join,
        "rejected_reasons": labelled.reasons,
        "outcomes": {
            name: {
                "label_column": OUTCOMES[name],
                "risk_column": f"{RISK_PREFIX}{name}",
                "rows": {
                    "read": o.rows.read,
                    "used": o.rows.used,
                    "unlabelled": o.rows.unlabelled,
                    "rejected": o.rows.rejected,
                },
                "critical_value": _number(o.critical_value),
                "windows": [_window_json(w) for w in o.windows],
            }
            for name, o in result.outcomes.items()
        },
        "alerts": [
            {
                "outcome": name,
                "window": w.index,
                "start": w.start,
                "end": w.end,
                "statistic": _number(w.statistic),
                "critical_value": _number(o.critical_value),
            }
            for name, o in result.outcomes.items()
            for w in o.alerts
        ],
        "suggestion": {
            name: {"method": s.method, "window": s.window, "reason": s.reason, "command": s.command}
            for name, o in result.outcomes.items()
            if (s := o.suggestion) is not None
        },
    }


def _window_json(w: Window) -> dict:
    return {
        "index": w.index,
        "start": w.start,
        "end": w.end,
        "first_row": w.first_row,
        "last_row": w.last_row,
        "n": w.n,
        "events": w.events,
        "expected": _number(w.expected),
        **{
            name: {"estimate": _number(i.estimate), "lower": _number(i.lower), "upper": _number(i.upper)}
            for name, i in (
                ("observed_expected", w.observed_expected),
                ("calibration_intercept", w.calibration_intercept),
                ("calibration_slope", w.calibration_slope),
            )
        },
        "statistic": _number(w.statistic),
        "alert": w.alert,
    }


def _number(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)
