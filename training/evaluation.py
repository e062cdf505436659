"""Performance of a binary risk model as a clinical reviewer checks it (TRIPOD+AI item 23).

Pure functions on arrays of outcomes ``y`` (0/1) and predicted risks ``p``: discrimination with a
(cluster) bootstrap interval, the calibration hierarchy of Van Calster et al., overall accuracy, decision
curves, subgroup tables and the matching figures. Nothing here knows about MLflow; the training pipeline logs
:func:`evaluate` as metrics and :func:`figures_for` as PNG artifacts.

Every public function checks its inputs once and raises :class:`ValueError` naming the rule broken. Statistics
that do not exist for the data at hand (an AUC with one outcome class, a calibration slope under perfect
separation) are returned as NaN rather than raised, so that a small validation fold never stops a run.

References
----------
.. [1] Van Calster B, Nieboer D, Vergouwe Y, et al. A calibration hierarchy for risk models was defined: from
   utopia to empirical data. J Clin Epidemiol 2016;74:167-176.
.. [2] Steyerberg EW. Clinical Prediction Models, 2nd ed. Springer 2019, chapter 15 (calibration intercept and
   slope).
.. [3] Vickers AJ, Elkin EB. Decision curve analysis: a novel method for evaluating prediction models.
   Med Decis Making 2006;26:565-574.
.. [4] Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall 1993 (percentile intervals);
   Field CA, Welsh AH. Bootstrapping clustered data. J R Stat Soc B 2007;69:369-390.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import roc_curve
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM
from statsmodels.nonparametric.smoothers_lowess import lowess
from statsmodels.stats.proportion import proportion_confint
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

from features.schema import REGIMEN_AGENTS

__all__ = [
    "AGE_BANDS",
    "DEFAULT_THRESHOLDS",
    "EPS",
    "REGIMEN_CLASSES",
    "Interval",
    "age_band",
    "auc",
    "calibration",
    "calibration_intervals",
    "decision_curve_figure",
    "discrimination",
    "evaluate",
    "figures_for",
    "net_benefit",
    "overall",
    "regimen_class",
    "reliability_figure",
    "roc_figure",
    "subgroup_table",
]

#: Probabilities are clipped to ``[EPS, 1 - EPS]`` before taking logits or logarithms.
EPS = 1e-12
#: Decision thresholds of the decision curve: 5% to 50% in steps of 1%.
DEFAULT_THRESHOLDS = np.round(np.arange(0.05, 0.51, 0.01), 2)
AGE_BANDS = ("<65", "65-74", ">=75")
REGIMEN_CLASSES = ("single agent", "doublet", "triplet")
# Weight matrices of one bootstrap block stay below this many cells (bounds memory for large n).
_BLOCK_CELLS = 1_000_000


class Interval(NamedTuple):
    """A point estimate with the bounds of its 95% confidence interval."""

    estimate: float
    lower: float
    upper: float


# --------------------------------------------------------------------------------------------------- inputs


def _check(y: ArrayLike, p: ArrayLike, groups: ArrayLike | None = None) -> tuple[NDArray, NDArray]:
    """Return ``y`` as 0/1 integers and ``p`` as floats, or raise ValueError naming the broken rule."""
    y_arr = np.asarray(y)
    p_arr = np.asarray(p, dtype=float)
    if y_arr.ndim != 1 or p_arr.ndim != 1:
        raise ValueError(f"y and p must be one-dimensional (got {y_arr.ndim} and {p_arr.ndim} dimensions)")
    if len(y_arr) != len(p_arr):
        raise ValueError(f"y and p must have the same length (got {len(y_arr)} and {len(p_arr)})")
    if len(y_arr) == 0:
        raise ValueError("y and p must not be empty")
    if groups is not None and len(groups) != len(y_arr):
        raise ValueError(f"groups must have the same length as y (got {len(groups)} and {len(y_arr)})")
    if groups is not None and pd.isna(np.asarray(groups)).any():
        raise ValueError("groups must not contain missing values")
    if y_arr.dtype.kind not in "biuf" or not np.isin(y_arr, (0, 1)).all():
        raise ValueError("y must contain only 0 and 1")
    if not np.isfinite(p_arr).all():
        raise ValueError(f"p must be finite ({int((~np.isfinite(p_arr)).sum())} NaN or infinite values)")
    if p_arr.min() < 0 or p_arr.max() > 1:
        raise ValueError(f"p must lie in [0, 1] (got values from {p_arr.min():g} to {p_arr.max():g})")
    return y_arr.astype(np.int8), p_arr


def _logit(p: NDArray) -> NDArray:
    q = np.clip(p, EPS, 1 - EPS)
    return np.log(q / (1 - q))


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


# ----------------------------------------------------------------------------------------- discrimination


def _weighted_auc(y: NDArray, p: NDArray, weights: NDArray) -> NDArray:
    """ROC AUC of each row of ``weights`` (replicates x observations), NaN where a class has no weight.

    Mann-Whitney form: the weighted share of (event, non-event) pairs ranked correctly, ties counting 1/2.
    """
    order = np.argsort(p, kind="stable")
    p_sorted, y_sorted = p[order], y[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]])  # first row of each distinct p
    w_sorted = weights[:, order]
    pos = np.add.reduceat(np.where(y_sorted, w_sorted, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(y_sorted, 0.0, w_sorted), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    concordant = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), concordant / (n_pos * n_neg), np.nan)


def _discrimination(y: NDArray, p: NDArray, groups: ArrayLike | None, n_boot: int, seed: int) -> Interval:
    estimate = float(_weighted_auc(y, p, np.ones((1, len(y))))[0])
    if np.isnan(estimate) or n_boot < 1:
        return Interval(estimate, float("nan"), float("nan"))
    # Each row belongs to a cluster; resampling clusters with replacement = multinomial cluster counts.
    clusters = np.arange(len(y)) if groups is None else pd.factorize(np.asarray(groups))[0]
    n_clusters = clusters.max() + 1
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // len(y))
    replicates = []
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        counts = rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=size)
        replicates.append(_weighted_auc(y, p, counts[:, clusters].astype(float)))
    aucs = np.concatenate(replicates)
    aucs = aucs[~np.isnan(aucs)]  # replicates with a single outcome class have no AUC
    if len(aucs) == 0:
        return Interval(estimate, float("nan"), float("nan"))
    lower, upper = np.percentile(aucs, [2.5, 97.5])
    return Interval(estimate, float(lower), float(upper))


def auc(y: ArrayLike, p: ArrayLike) -> float:
    """ROC AUC (c-statistic), ties counting 1/2; NaN with one outcome class."""
    y_arr, p_arr = _check(y, p)
    return float(_weighted_auc(y_arr, p_arr, np.ones((1, len(y_arr))))[0])


def discrimination(
    y: ArrayLike, p: ArrayLike, *, groups: ArrayLike | None = None, n_boot: int = 1000, seed: int = 0
) -> Interval:
    """ROC AUC (c-statistic) with a percentile bootstrap 95% confidence interval.

    Parameters
    ----------
    y : array-like of {0, 1}
        Observed outcomes.
    p : array-like of float in [0, 1]
        Predicted risks.
    groups : array-like, optional
        Cluster labels (patient ids). When given, whole patients are resampled (cluster bootstrap), since the
        treatment lines of one patient are not independent; otherwise rows are resampled.
    n_boot : int
        Bootstrap replicates; replicates drawing a single outcome class are skipped. ``0`` gives NaN bounds.
    seed : int
        Seed of the random generator, so intervals are reproducible.

    Returns
    -------
    Interval
        ``estimate`` (equal to :func:`sklearn.metrics.roc_auc_score`), ``lower`` and ``upper``; all NaN when
        ``y`` has a single class.

    References
    ----------
    Hanley JA, McNeil BJ. Radiology 1982;143:29-36 (AUC as the Mann-Whitney statistic). Efron & Tibshirani
    1993 (percentile bootstrap); Field & Welsh, J R Stat Soc B 2007;69:369 (cluster bootstrap).
    """
    y_arr, p_arr = _check(y, p, groups)
    return _discrimination(y_arr, p_arr, groups, n_boot, seed)


# --------------------------------------------------------------------------------------------- calibration


def _glm(y: NDArray, exog: NDArray, offset: NDArray | None = None):
    """The fitted logistic GLM, or None when its coefficients are not identified (one class, separation,
    no convergence)."""
    if y.min() == y.max():
        return None
    model = GLM(y, exog, family=families.Binomial(), offset=offset)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            result = model.fit()
        except (PerfectSeparationWarning, ConvergenceWarning, np.linalg.LinAlgError):
            return None
    return result if np.isfinite(result.params).all() else None


def _fit_logistic(y: NDArray, exog: NDArray, offset: NDArray | None = None) -> NDArray:
    """Maximum-likelihood logistic coefficients, or NaNs when they are not identified (separation)."""
    result = _glm(y, exog, offset)
    return np.full(exog.shape[1], np.nan) if result is None else result.params


def _calibration_in_the_large(y: NDArray, p: NDArray) -> float:
    lp = _logit(p)
    return float(_fit_logistic(y.astype(float), np.ones((len(y), 1)), offset=lp)[0])


def _calibration(y: NDArray, p: NDArray) -> dict[str, float]:
    lp = _logit(p)
    slope = (
        float("nan")
        if np.ptp(lp) == 0
        else float(_fit_logistic(y.astype(float), np.column_stack([np.ones_like(lp), lp]))[1])
    )
    return {
        "calibration_intercept": _calibration_in_the_large(y, p),
        "calibration_slope": slope,
        "observed_expected": _ratio(y.sum(), p.sum()),
    }


def calibration(y: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """Mean and weak calibration: calibration-in-the-large, calibration slope and the O/E ratio.

    Parameters
    ----------
    y : array-like of {0, 1}
        Observed outcomes.
    p : array-like of float in [0, 1]
        Predicted risks, clipped to ``[1e-12, 1 - 1e-12]`` before the logit.

    Returns
    -------
    dict
        ``calibration_intercept``
            Intercept ``a`` of ``logit P(y=1) = a + logit(p)`` (logit(p) as offset); 0 when the average
            risk is right, negative when risks are too high on average.
        ``calibration_slope``
            Slope ``b`` of ``logit P(y=1) = a + b logit(p)``; 1 is ideal, below 1 means predictions too
            extreme (overfitting), above 1 too moderate.
        ``observed_expected``
            Observed events over the sum of predicted risks; 1 is ideal.

        A coefficient that maximum likelihood cannot identify (one outcome class, perfect separation,
        no convergence, constant ``p`` for the slope) is NaN rather than an error.

    References
    ----------
    Van Calster B et al. J Clin Epidemiol 2016;74:167 (calibration hierarchy). Steyerberg EW. Clinical
    Prediction Models, 2nd ed., 2019, ch. 15 (logistic recalibration: intercept and slope). Cox DR. Biometrika
    1958;45:562.
    """
    return _calibration(*_check(y, p))


def _fit_logistic_ci(y: NDArray, exog: NDArray, offset: NDArray | None = None) -> list[Interval]:
    """Like :func:`_fit_logistic`, each coefficient with its 95% Wald interval (NaNs when not identified)."""
    result = _glm(y, exog, offset)
    bounds = None if result is None else np.asarray(result.conf_int(alpha=0.05))
    if bounds is None or not np.isfinite(bounds).all():
        return [Interval(float("nan"), float("nan"), float("nan"))] * exog.shape[1]
    return [
        Interval(float(e), float(lo), float(hi)) for e, (lo, hi) in zip(result.params, bounds, strict=True)
    ]


def calibration_intervals(y: ArrayLike, p: ArrayLike) -> dict[str, Interval]:
    """:func:`calibration`'s three measures, each with its 95% confidence interval (external validation).

    Returns
    -------
    dict of :class:`Interval`
        ``calibration_intercept`` and ``calibration_slope``: maximum-likelihood estimates with Wald
        intervals (the intercept with ``logit(p)`` as offset, the slope from ``a + b logit(p)``).
        ``observed_expected``: O/E with the interval ``exp(ln(O/E) +/- 1.96 sqrt((1 - O/N) / O))``
        (Debray TPA et al. BMJ 2017;356:i6460, table 2). NaN where not identified (no events, one class,
        separation).
    """
    y_arr, p_arr = _check(y, p)
    lp = _logit(p_arr)
    yf = y_arr.astype(float)
    (intercept,) = _fit_logistic_ci(yf, np.ones((len(yf), 1)), offset=lp)
    nan = Interval(float("nan"), float("nan"), float("nan"))
    slope = nan if np.ptp(lp) == 0 else _fit_logistic_ci(yf, np.column_stack([np.ones_like(lp), lp]))[1]
    observed, expected, n = float(yf.sum()), float(p_arr.sum()), len(yf)
    if observed > 0 and expected > 0:
        ratio = observed / expected
        half = 1.959964 * np.sqrt((1 - observed / n) / observed)
        oe = Interval(ratio, float(ratio * np.exp(-half)), float(ratio * np.exp(half)))
    else:
        oe = Interval(_ratio(observed, expected), float("nan"), float("nan"))
    return {"calibration_intercept": intercept, "calibration_slope": slope, "observed_expected": oe}


# -------------------------------------------------------------------------------------------------- overall


def _overall(y: NDArray, p: NDArray) -> dict[str, float]:
    prevalence = float(y.mean())
    brier = float(np.mean((p - y) ** 2))
    q = np.clip(p, EPS, 1 - EPS)
    return {
        "brier": brier,
        "scaled_brier": 1 - _ratio(brier, prevalence * (1 - prevalence)),
        "log_loss": float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))),
        "prevalence": prevalence,
        "mean_predicted": float(p.mean()),
        "n": len(y),
        "events": int(y.sum()),
    }


def overall(y: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """Overall accuracy: Brier score, scaled Brier score and log loss, with the sample's size and prevalence.

    Parameters
    ----------
    y : array-like of {0, 1}
        Observed outcomes.
    p : array-like of float in [0, 1]
        Predicted risks (clipped to ``[1e-12, 1 - 1e-12]`` for the log loss only).

    Returns
    -------
    dict
        ``brier`` (mean squared error of ``p``); ``scaled_brier``, ``1 - brier / (prevalence (1 -
        prevalence))``: 0 for the model predicting the prevalence to everyone, 1 for a perfect model, NaN with
        one outcome class; ``log_loss``; ``prevalence``; ``mean_predicted``; ``n``; ``events``.

    References
    ----------
    Brier GW. Mon Weather Rev 1950;78:1-3. Steyerberg EW et al. Epidemiology 2010;21:128-138 (scaled Brier).
    """
    return _overall(*_check(y, p))


def evaluate(
    y: ArrayLike, p: ArrayLike, *, groups: ArrayLike | None = None, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """All summary metrics in one flat dict with stable names, ready to log to MLflow.

    Keys: ``roc_auc``, ``roc_auc_ci_lower``, ``roc_auc_ci_upper`` (:func:`discrimination`), ``brier``,
    ``scaled_brier``, ``log_loss``, ``prevalence``, ``mean_predicted``, ``n``, ``events`` (:func:`overall`),
    ``calibration_intercept``, ``calibration_slope``, ``observed_expected`` (:func:`calibration`). All values
    are floats; undefined statistics are NaN. Parameters are those of :func:`discrimination`.
    """
    y_arr, p_arr = _check(y, p, groups)
    auc = _discrimination(y_arr, p_arr, groups, n_boot, seed)
    metrics = {"roc_auc": auc.estimate, "roc_auc_ci_lower": auc.lower, "roc_auc_ci_upper": auc.upper}
    metrics |= _overall(y_arr, p_arr) | _calibration(y_arr, p_arr)
    return {name: float(value) for name, value in metrics.items()}


# ----------------------------------------------------------------------------------------- net benefit


def net_benefit(y: ArrayLike, p: ArrayLike, thresholds: ArrayLike = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Net benefit of the model, of treating everyone and of treating no one (decision curve analysis).

    A patient is classed as "treat" (e.g. start at a reduced dose, monitor closely) when ``p >= threshold``;
    net benefit is ``TP/n - FP/n * pt / (1 - pt)`` at threshold probability ``pt``.

    Parameters
    ----------
    y : array-like of {0, 1}
        Observed outcomes.
    p : array-like of float in [0, 1]
        Predicted risks.
    thresholds : array-like of float in (0, 1)
        Threshold probabilities; pre-specify a clinically sensible range (default 5% to 50%).

    Returns
    -------
    pandas.DataFrame
        One row per threshold: ``threshold``, ``model``, ``treat_all`` (``prevalence - (1 - prevalence) *
        pt / (1 - pt)``) and ``treat_none`` (always 0).

    References
    ----------
    Vickers AJ, Elkin EB. Med Decis Making 2006;26:565-574. Vickers AJ, Van Calster B, Steyerberg EW. Diagn
    Progn Res 2019;3:18 (a simple, step-by-step guide).
    """
    y_arr, p_arr = _check(y, p)
    pt = np.asarray(thresholds, dtype=float).ravel()
    if len(pt) == 0 or not ((pt > 0) & (pt < 1)).all():
        raise ValueError("thresholds must be a non-empty set of numbers strictly between 0 and 1")
    n = len(y_arr)
    odds = pt / (1 - pt)
    treated = p_arr[None, :] >= pt[:, None]
    tp = (treated & (y_arr == 1)).sum(axis=1)
    fp = (treated & (y_arr == 0)).sum(axis=1)
    prevalence = y_arr.mean()
    return pd.DataFrame(
        {
            "threshold": pt,
            "model": tp / n - fp / n * odds,
            "treat_all": prevalence - (1 - prevalence) * odds,
            "treat_none": np.zeros_like(pt),
        }
    )


# ------------------------------------------------------------------------------------------------ subgroups


def age_band(age: ArrayLike) -> pd.Categorical:
    """Age bands ``<65``, ``65-74`` and ``>=75`` (ordered categorical; missing ages stay missing)."""
    a = np.asarray(age, dtype=float)
    labels = np.select([a < 65, a < 75, a >= 75], AGE_BANDS, default=None)
    return pd.Categorical(labels, categories=AGE_BANDS, ordered=True)


def regimen_class(regimen: ArrayLike) -> pd.Categorical:
    """Regimen class by number of agents: ``single agent`` (R), ``doublet`` (Rd), ``triplet`` (the others).

    Raises ValueError on a code outside the record contract (``features.schema.REGIMEN_AGENTS``).
    """
    codes = pd.Series(np.asarray(regimen, dtype=object))
    unknown = sorted(set(codes.dropna()) - REGIMEN_AGENTS.keys())
    if unknown:
        raise ValueError(
            f"regimen must be one of {', '.join(REGIMEN_AGENTS)} (got {', '.join(map(str, unknown))})"
        )
    n_agents = {regimen: len(agents) for regimen, agents in REGIMEN_AGENTS.items()}
    labels = codes.map(n_agents).map(dict(enumerate(REGIMEN_CLASSES, start=1)))
    return pd.Categorical(labels, categories=REGIMEN_CLASSES, ordered=True)


def subgroup_table(y: ArrayLike, p: ArrayLike, subgroups: Mapping[str, ArrayLike]) -> pd.DataFrame:
    """Discrimination and calibration-in-the-large within each level of each subgroup variable.

    Parameters
    ----------
    y : array-like of {0, 1}
        Observed outcomes.
    p : array-like of float in [0, 1]
        Predicted risks.
    subgroups : mapping of str to array-like
        Subgroup variable name (e.g. ``"sex"``, ``"age_band"``) to one label per row. Levels appear in
        category order for categoricals (see :func:`age_band`, :func:`regimen_class`), sorted otherwise;
        missing labels form a level named ``"missing"`` so that counts add up to ``n`` within each variable.

    Returns
    -------
    pandas.DataFrame
        One row per (``variable``, ``level``) with ``n``, ``events``, ``roc_auc`` (NaN with one class),
        ``observed`` (event rate), ``expected`` (mean predicted risk), ``observed_expected`` and
        ``calibration_intercept`` (calibration-in-the-large; NaN with one class).

    References
    ----------
    Collins GS et al. TRIPOD+AI, BMJ 2024;385:e078378, items 14 and 23b (performance by subgroup). Van Calster
    B et al. J Clin Epidemiol 2016;74:167.
    """
    y_arr, p_arr = _check(y, p)
    rows = []
    for variable, labels in subgroups.items():
        if len(labels) != len(y_arr):
            raise ValueError(f"subgroup {variable!r} must have one label per row (got {len(labels)})")
        cat = pd.Categorical(labels)
        levels = [(str(level), cat.codes == code) for code, level in enumerate(cat.categories)]
        levels.append(("missing", cat.codes == -1))
        for level, mask in levels:
            if not mask.any():
                continue
            ys, ps = y_arr[mask], p_arr[mask]
            rows.append(
                {
                    "variable": variable,
                    "level": level,
                    "n": int(mask.sum()),
                    "events": int(ys.sum()),
                    "roc_auc": float(_weighted_auc(ys, ps, np.ones((1, len(ys))))[0]),
                    "observed": float(ys.mean()),
                    "expected": float(ps.mean()),
                    "observed_expected": _ratio(ys.sum(), ps.sum()),
                    "calibration_intercept": _calibration_in_the_large(ys, ps),
                }
            )
    columns = ["variable", "level", "n", "events", "roc_auc", "observed", "expected", "observed_expected"]
    return pd.DataFrame(rows, columns=[*columns, "calibration_intercept"])


# -------------------------------------------------------------------------------------------------- figures


def _fmt(x: float) -> str:
    return "NaN" if np.isnan(x) else f"{x:.2f}"


def reliability_figure(y: ArrayLike, p: ArrayLike, title: str, *, n_bins: int = 10) -> Figure:
    """Reliability diagram: binned observed risk with 95% CIs, a loess calibration curve and a risk histogram.

    Bins are quantiles of ``p`` (about equal numbers of patients); each point is the mean predicted risk
    against the observed event rate with a Wilson 95% interval. The smoothed curve is a lowess of ``y`` on
    ``p`` without robustness iterations (they are meant for continuous outcomes). The text box gives the
    calibration intercept, slope and O/E of :func:`calibration`. Beneath, a histogram of predicted risks by
    outcome shows where the curve is supported by data.

    References
    ----------
    Van Calster B et al. J Clin Epidemiol 2016;74:167 (moderate calibration: flexible curve). Van Calster B et
    al. BMC Med 2019;17:230 (Calibration: the Achilles heel of predictive analytics).
    """
    y_arr, p_arr = _check(y, p)
    fig = Figure(figsize=(6.4, 7.2), layout="constrained")
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})

    edges = np.unique(np.quantile(p_arr, np.linspace(0, 1, n_bins + 1)))
    bins = np.clip(np.searchsorted(edges, p_arr, side="right") - 1, 0, max(len(edges) - 2, 0))
    counts = np.bincount(bins)
    keep = counts > 0
    events = np.bincount(bins, weights=y_arr)[keep]
    counts = counts[keep]
    mean_p = (np.bincount(bins, weights=p_arr)[keep]) / counts
    observed = events / counts
    low, high = proportion_confint(events, counts, alpha=0.05, method="wilson")
    smooth = lowess(y_arr, p_arr, frac=2 / 3, it=0, return_sorted=True)

    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="Ideal calibration")
    ax.plot(smooth[:, 0], smooth[:, 1], color="C0", lw=2, label="Smoothed calibration curve (lowess)")
    ax.errorbar(
        mean_p,
        observed,
        yerr=[observed - low, high - observed],
        fmt="o",
        color="C1",
        capsize=3,
        label=f"Observed by risk group ({len(counts)} quantile bins, 95% CI)",
    )
    cal = _calibration(y_arr, p_arr)
    ax.text(
        0.98,
        0.02,
        f"Calibration intercept {_fmt(cal['calibration_intercept'])} (target 0)\n"
        f"Calibration slope {_fmt(cal['calibration_slope'])} (target 1)\n"
        f"Observed/expected {_fmt(cal['observed_expected'])} (target 1)\n"
        f"n = {len(y_arr)}, events = {int(y_arr.sum())}",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=9,
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "lightgrey"},
    )
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="Observed proportion with the outcome", title=title)
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3)

    hist_bins = np.linspace(0, 1, 51)
    hist.hist(
        [p_arr[y_arr == 0], p_arr[y_arr == 1]],
        bins=hist_bins,
        stacked=True,
        color=["lightgrey", "C3"],
        label=["No event", "Event"],
    )
    hist.set(xlabel="Predicted risk", ylabel="Count")
    hist.yaxis.set_major_locator(MaxNLocator(integer=True))
    hist.legend(loc="upper right", fontsize=8)
    return fig


def roc_figure(
    y: ArrayLike,
    p: ArrayLike,
    title: str,
    *,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Figure:
    """ROC curve with the AUC and its bootstrap 95% CI (see :func:`discrimination`) in the legend.

    References
    ----------
    Hanley JA, McNeil BJ. Radiology 1982;143:29-36.
    """
    y_arr, p_arr = _check(y, p, groups)
    auc = _discrimination(y_arr, p_arr, groups, n_boot, seed)
    fig = Figure(figsize=(6.4, 6.0), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="No discrimination (AUC 0.50)")
    if len(np.unique(y_arr)) == 2:
        fpr, tpr, _ = roc_curve(y_arr, p_arr)
        label = f"Model: AUC {auc.estimate:.2f} (95% CI {_fmt(auc.lower)} to {_fmt(auc.upper)})"
        ax.plot(fpr, tpr, color="C0", lw=2, label=label)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        title=title,
        xlabel="1 - specificity (false-positive rate)",
        ylabel="Sensitivity (true-positive rate)",
    )
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def decision_curve_figure(
    y: ArrayLike, p: ArrayLike, title: str, thresholds: ArrayLike = DEFAULT_THRESHOLDS
) -> Figure:
    """Decision curve: net benefit of the model, treat-all and treat-none over the threshold range.

    See :func:`net_benefit`. The y axis is cut at -0.05 below, where treat-all falls away at high thresholds.

    References
    ----------
    Vickers AJ, Elkin EB. Med Decis Making 2006;26:565-574.
    """
    nb = net_benefit(y, p, thresholds)
    prevalence = float(np.mean(np.asarray(y, dtype=float)))
    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = fig.subplots()
    ax.plot(nb["threshold"], nb["model"], color="C0", lw=2, label="Model")
    ax.plot(nb["threshold"], nb["treat_all"], color="C3", lw=1.5, label="Treat all")
    ax.plot(nb["threshold"], nb["treat_none"], color="black", lw=1.5, label="Treat none")
    top = max(prevalence, float(nb["model"].max())) * 1.1 + 0.01
    ax.set(
        xlim=(nb["threshold"].min(), nb["threshold"].max()),
        ylim=(-0.05, top),
        title=title,
        xlabel="Threshold probability (risk at which one would act)",
        ylabel="Net benefit",
    )
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.legend(loc="upper right", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def figures_for(
    y: ArrayLike,
    p: ArrayLike,
    name: str,
    *,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Figure]:
    """The three evaluation figures for one model and data set, keyed by PNG file name.

    Returns ``{"reliability.png", "roc.png", "decision_curve.png"}`` figures titled with ``name`` (e.g.
    ``"Discontinuation, test set"``). Save with ``fig.savefig(path, dpi=...)``; no pyplot state is touched.
    """
    return {
        "reliability.png": reliability_figure(y, p, f"{name}: calibration"),
        "roc.png": roc_figure(y, p, f"{name}: discrimination", groups=groups, n_boot=n_boot, seed=seed),
        "decision_curve.png": decision_curve_figure(y, p, f"{name}: decision curve"),
    }
