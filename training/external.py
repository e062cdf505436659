"""External validation of a registered risk model on a labelled local cohort (TRIPOD+AI item 12e/23).

:func:`validate_model` scores validated contract rows with a :class:`~features.model.riskmodel.RiskModel`
and returns an :class:`ExternalValidation`: the calibration hierarchy with 95% intervals
(calibration-in-the-large, slope, O:E; :func:`training.evaluation.calibration_intervals`), a flexible
calibration curve with its pointwise 95% band and the ICI, E50, E90 and Emax read off it, the AUC with a
cluster bootstrap interval, the Brier and scaled Brier scores, net benefit over the decision curve's
thresholds, and all of it again per subgroup (sex, age band, setting), where cells too small to estimate
anything say so instead of a number.

Nothing here knows about MLflow or files: :mod:`training.external_run` reads the file, logs the run and tags
the version; :mod:`training.external_report` draws the figures and writes the report.

References
----------
.. [1] Van Calster B, Nieboer D, Vergouwe Y, et al. A calibration hierarchy for risk models was defined: from
   utopia to empirical data. J Clin Epidemiol 2016;74:167-176 (mean, weak and moderate calibration; flexible
   curves by loess or splines).
.. [2] Austin PC, Steyerberg EW. Graphical assessment of internal and external calibration of logistic
   regression models by using loess smoothers. Stat Med 2014;33:517-535.
.. [3] Austin PC, Steyerberg EW. The Integrated Calibration Index (ICI) and related metrics for quantifying
   the calibration of logistic regression models. Stat Med 2019;38:4051-4065 (ICI, E50, E90; Emax after
   Harrell).
.. [4] Harrell FE. Regression Modeling Strategies, 2nd ed. Springer 2015, section 2.4.5 (restricted cubic
   splines, 3 knots at the 10th, 50th and 90th percentiles for small samples).
.. [5] Collins GS, Ogundimu EO, Altman DG. Sample size considerations for the external validation of a
   multivariable prognostic model: a resampling study. Stat Med 2016;35:214-226 (at least 100 events and 100
   non-events); Vergouwe Y et al. J Clin Epidemiol 2005;58:475-483.
.. [6] Peduzzi P et al. A simulation study of the number of events per variable in logistic regression
   analysis. J Clin Epidemiol 1996;49:1373-1379 (about 10 events per estimated coefficient).
.. [7] Vickers AJ, Elkin EB. Decision curve analysis. Med Decis Making 2006;26:565-574.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, logit
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

from features.model.riskmodel import RiskModel
from features.schema import OUTCOMES, SETTINGS, SEXES
from features.splines import harrell_knots, rcs_basis
from training.evaluation import (
    DEFAULT_THRESHOLDS,
    EPS,
    Interval,
    age_band,
    calibration_intervals,
    discrimination,
    net_benefit,
    overall,
)

__all__ = [
    "CURVE_KNOTS",
    "MIN_CLASS",
    "MIN_LINES",
    "PRECISE_CLASS",
    "SUMMARY_THRESHOLDS",
    "CalibrationCurve",
    "ExternalValidation",
    "Performance",
    "Subgroup",
    "assess",
    "calibration_curve",
    "subgroup_labels",
    "validate_model",
]

#: A subgroup cell is estimated only with at least this many lines and this many events and non-events (the
#: calibration curve of the whole file too). A project choice, not a published rule: the calibration slope
#: is a logistic fit (about 10 events per estimated coefficient, Peduzzi 1996), and at the floor (10 events
#: in 100 lines) the O:E interval already spans 0.55 to 1.80 times the estimate (Debray 2017's formula).
MIN_LINES = 100
MIN_CLASS = 10
#: Below this many events or non-events an external validation is imprecise (Collins 2016; Vergouwe 2005):
#: the whole-file results carry a warning.
PRECISE_CLASS = 100
#: Knots of the restricted cubic spline calibration curve (Harrell 2015, 3 for small samples).
CURVE_KNOTS = 3
#: Net benefit is summarised (report, metrics) at these thresholds; the curve spans DEFAULT_THRESHOLDS.
SUMMARY_THRESHOLDS = (0.1, 0.2, 0.3)
_Z = 1.959964
_NAN = Interval(float("nan"), float("nan"), float("nan"))


@dataclass(frozen=True)
class CalibrationCurve:
    """A flexible (moderate) calibration curve: observed risk as a smooth function of the predicted risk.

    Logistic regression of the outcome on a restricted cubic spline of ``logit(p)`` (:data:`CURVE_KNOTS` knots
    at Harrell's quantiles); ``observed`` is the fitted risk at each ``predicted`` grid value (from the 1st to
    the 99th percentile of the predictions, where the data support the curve) with its pointwise 95% Wald band
    ``lower``-``upper`` (on the log-odds scale, mapped back). ``ici``, ``e50``, ``e90`` and ``emax`` are the
    mean, median, 90th percentile and maximum of ``|curve(p_i) - p_i|`` over the validation rows (Austin &
    Steyerberg 2019).
    """

    predicted: NDArray
    observed: NDArray
    lower: NDArray
    upper: NDArray
    ici: float
    e50: float
    e90: float
    emax: float


@dataclass(frozen=True)
class Performance:
    """The validation measures of one cell (the whole file or a subgroup), each interval at 95%."""

    n: int
    events: int
    observed_risk: float
    mean_predicted: float
    calibration_intercept: Interval
    calibration_slope: Interval
    observed_expected: Interval
    roc_auc: Interval
    brier: float
    scaled_brier: float
    net_benefit: pd.DataFrame  # threshold, model, treat_all, treat_none (training.evaluation.net_benefit)

    @property
    def miscalibrated(self) -> bool:
        """Whether the intercept interval excludes 0 or the slope interval excludes 1 (NaN: no evidence)."""
        a, b = self.calibration_intercept, self.calibration_slope
        return bool(a.lower > 0 or a.upper < 0 or b.lower > 1 or b.upper < 1)


@dataclass(frozen=True)
class Subgroup:
    """One level of one subgroup variable: its measures, or why there are none (``too_small``)."""

    variable: str
    level: str
    n: int
    events: int
    performance: Performance | None
    too_small: str | None  # e.g. "fewer than 10 events"; None when estimated


@dataclass(frozen=True)
class ExternalValidation:
    """External validation of one model on one labelled cohort (see :func:`validate_model`).

    ``y`` and ``p`` are the outcomes and predicted risks of the validated rows (for the figures); ``curve`` is
    None when the file is too small or the spline fit is not identified.
    """

    outcome: str
    performance: Performance
    curve: CalibrationCurve | None
    subgroups: tuple[Subgroup, ...]
    y: NDArray
    p: NDArray

    @property
    def imprecise(self) -> bool:
        """Fewer than :data:`PRECISE_CLASS` events or non-events (Collins 2016)."""
        perf = self.performance
        return min(perf.events, perf.n - perf.events) < PRECISE_CLASS

    def metrics(self) -> dict[str, float]:
        """Flat ``external_*`` metrics (MLflow names): the four measures with ``_ci_lower``/``_ci_upper``,
        Brier and scaled Brier, ICI/E50/E90/Emax, net benefit at :data:`SUMMARY_THRESHOLDS`, counts."""
        perf = self.performance
        out: dict[str, float] = {}
        for name, value in (
            ("calibration_intercept", perf.calibration_intercept),
            ("calibration_slope", perf.calibration_slope),
            ("oe", perf.observed_expected),
            ("roc_auc", perf.roc_auc),
        ):
            out |= {
                f"external_{name}": value.estimate,
                f"external_{name}_ci_lower": value.lower,
                f"external_{name}_ci_upper": value.upper,
            }
        out |= {
            "external_brier": perf.brier,
            "external_scaled_brier": perf.scaled_brier,
            "external_n": perf.n,
            "external_events": perf.events,
            "external_observed_risk": perf.observed_risk,
            "external_mean_predicted": perf.mean_predicted,
        }
        if self.curve is not None:
            out |= {f"external_{k}": getattr(self.curve, k) for k in ("ici", "e50", "e90", "emax")}
        nb = perf.net_benefit.set_index("threshold")
        for t in SUMMARY_THRESHOLDS:
            if t in nb.index:
                out[f"external_net_benefit_{round(t * 100)}"] = nb.at[t, "model"]
                out[f"external_net_benefit_treat_all_{round(t * 100)}"] = nb.at[t, "treat_all"]
        return {k: float(v) for k, v in out.items()}

    def subgroup_frame(self) -> pd.DataFrame:
        """One row per subgroup cell: estimates and bounds, Brier scores and net benefit at
        :data:`SUMMARY_THRESHOLDS` (NaN, and the reason in ``too_small``, for small cells)."""
        rows = []
        for s in self.subgroups:
            row = {"variable": s.variable, "level": s.level, "n": s.n, "events": s.events}
            perf = s.performance
            for name in ("calibration_intercept", "calibration_slope", "observed_expected", "roc_auc"):
                value = getattr(perf, name) if perf else _NAN
                row |= {
                    name: value.estimate,
                    f"{name}_ci_lower": value.lower,
                    f"{name}_ci_upper": value.upper,
                }
            row |= {
                "brier": perf.brier if perf else np.nan,
                "scaled_brier": perf.scaled_brier if perf else np.nan,
            }
            nb = perf.net_benefit.set_index("threshold") if perf else None
            for t in SUMMARY_THRESHOLDS:
                row[f"net_benefit_{round(t * 100)}"] = nb.at[t, "model"] if perf and t in nb.index else np.nan
            row["too_small"] = s.too_small or ""
            rows.append(row)
        return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ measures


def _too_small(n: int, events: int) -> str | None:
    """Why a cell is not estimated (:data:`MIN_LINES`, :data:`MIN_CLASS`), or None."""
    if n < MIN_LINES:
        return f"fewer than {MIN_LINES} lines"
    if events < MIN_CLASS:
        return f"fewer than {MIN_CLASS} events"
    if n - events < MIN_CLASS:
        return f"fewer than {MIN_CLASS} lines without the event"
    return None


def calibration_curve(y: ArrayLike, p: ArrayLike, *, n_grid: int = 100) -> CalibrationCurve | None:
    """Restricted cubic spline logistic calibration curve with a pointwise 95% Wald band (see
    :class:`CalibrationCurve`); None when the fit is not identified (one class, separation, too few
    distinct predictions for the knots).

    References: Van Calster 2016 (flexible calibration curve); Harrell 2015 section 2.4.5 (spline); Austin &
    Steyerberg 2019 (ICI, E50, E90).
    """
    y_arr = np.asarray(y, dtype=float)
    p_arr = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    if y_arr.min() == y_arr.max():
        return None
    lp = logit(p_arr)
    try:
        knots = harrell_knots(lp, CURVE_KNOTS)
    except ValueError:
        return None

    def design(x: NDArray) -> NDArray:
        return np.column_stack([np.ones_like(x), x, rcs_basis(x, knots)])

    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            fit = GLM(y_arr, design(lp), family=families.Binomial()).fit()
        except (PerfectSeparationWarning, ConvergenceWarning, np.linalg.LinAlgError):
            return None
    beta, cov = np.asarray(fit.params), np.asarray(fit.cov_params())
    if not (np.isfinite(beta).all() and np.isfinite(cov).all()):
        return None
    grid = np.linspace(*np.quantile(p_arr, [0.01, 0.99]), n_grid)
    X = design(logit(grid))
    eta = X @ beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", X, cov, X))
    gap = np.abs(expit(design(lp) @ beta) - p_arr)
    return CalibrationCurve(
        predicted=grid,
        observed=expit(eta),
        lower=expit(eta - _Z * se),
        upper=expit(eta + _Z * se),
        ici=float(gap.mean()),
        e50=float(np.median(gap)),
        e90=float(np.quantile(gap, 0.9)),
        emax=float(gap.max()),
    )


def _performance(
    y: NDArray, p: NDArray, groups: NDArray | None, thresholds: ArrayLike, n_boot: int, seed: int
) -> Performance:
    cal = calibration_intervals(y, p)
    acc = overall(y, p)
    return Performance(
        n=len(y),
        events=int(y.sum()),
        observed_risk=float(y.mean()),
        mean_predicted=float(p.mean()),
        calibration_intercept=cal["calibration_intercept"],
        calibration_slope=cal["calibration_slope"],
        observed_expected=cal["observed_expected"],
        roc_auc=discrimination(y, p, groups=groups, n_boot=n_boot, seed=seed),
        brier=acc["brier"],
        scaled_brier=acc["scaled_brier"],
        net_benefit=net_benefit(y, p, thresholds),
    )


def subgroup_labels(frame: pd.DataFrame) -> dict[str, pd.Categorical]:
    """The subgroup variables of a validated contract frame: ``sex``, ``age band`` (<65, 65-74, >=75) and
    ``setting`` (TRIPOD+AI item 23b; categories in contract order)."""
    return {
        "sex": pd.Categorical(frame["sex"].to_numpy(dtype=object), categories=SEXES),
        "age band": age_band(frame["age"].to_numpy(dtype=float)),
        "setting": pd.Categorical(frame["setting"].to_numpy(dtype=object), categories=SETTINGS),
    }


def assess(
    outcome: str,
    y: ArrayLike,
    p: ArrayLike,
    *,
    subgroups: Mapping[str, pd.Categorical] | None = None,
    groups: ArrayLike | None = None,
    thresholds: ArrayLike = DEFAULT_THRESHOLDS,
    n_boot: int = 1000,
    seed: int = 0,
) -> ExternalValidation:
    """:class:`ExternalValidation` of predicted risks ``p`` against outcomes ``y`` (no model needed).

    ``subgroups`` maps a variable name to one categorical label per row (levels without rows are left out);
    ``groups`` are patient ids for the cluster bootstrap of the AUC (several lines per patient);
    ``thresholds`` the decision curve's (default 5% to 50%, see docs/validate.md).
    """
    y_arr = np.asarray(y).astype(np.int8)
    p_arr = np.asarray(p, dtype=float)
    g_arr = None if groups is None else np.asarray(groups)
    perf = _performance(y_arr, p_arr, g_arr, thresholds, n_boot, seed)
    curve = calibration_curve(y_arr, p_arr) if _too_small(perf.n, perf.events) is None else None
    cells = []
    for variable, labels in (subgroups or {}).items():
        cat = pd.Categorical(labels)
        for code, level in enumerate(cat.categories):
            mask = cat.codes == code
            n, events = int(mask.sum()), int(y_arr[mask].sum())
            if n == 0:
                continue
            small = _too_small(n, events)
            cell = None
            if small is None:
                cell = _performance(
                    y_arr[mask], p_arr[mask], None if g_arr is None else g_arr[mask], thresholds, n_boot, seed
                )
            cells.append(Subgroup(variable, str(level), n, events, cell, small))
    return ExternalValidation(outcome, perf, curve, tuple(cells), y_arr, p_arr)


def validate_model(
    model: RiskModel,
    frame: pd.DataFrame,
    *,
    thresholds: ArrayLike = DEFAULT_THRESHOLDS,
    n_boot: int = 1000,
    seed: int = 0,
) -> ExternalValidation:
    """Externally validate ``model`` on ``frame``: validated contract rows
    (``features.validate.validate_table(...).clean``) holding the model's outcome column
    (``features.schema.OUTCOMES[model.outcome]``).

    Risks are the served, calibrated probabilities; subgroups are :func:`subgroup_labels`; the AUC's bootstrap
    resamples patients (``patient_id``). Raises :class:`ValueError` when the outcome column is missing or not
    0/1 everywhere (``validate_table`` guarantees both for its clean rows).
    """
    column = OUTCOMES[model.outcome]
    if column not in frame.columns:
        raise ValueError(f"frame has no {column} column (the outcome of the {model.outcome} model)")
    y = frame[column].to_numpy()
    if len(y) == 0 or not np.isin(y, (0, 1)).all():
        raise ValueError(f"{column} must be 0 or 1 on every row, and there must be rows")
    p = model.probability(frame)
    return assess(
        model.outcome,
        y,
        p,
        subgroups=subgroup_labels(frame),
        groups=frame["patient_id"].to_numpy(dtype=object),
        thresholds=thresholds,
        n_boot=n_boot,
        seed=seed,
    )
