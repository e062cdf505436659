"""Instability of the development procedure: how much a patient's risk depends on the sample it came from.

Each bootstrap model of the optimism bootstrap (:mod:`training.validation`: the whole procedure repeated on a
resample of patients) has predicted every development line (``Validation.predictions``, lines x resamples).
Against the original model's risk ``p`` of each line, following Riley & Collins (2023) as implemented in R
``pminternal`` (``prediction_stability``, ``mape_stability``, ``calibration_stability``,
``classification_stability``, ``dcurve_stability``):

- **prediction instability**: the bootstrap risks against ``p`` with, per line, their 2.5th and 97.5th
  percentiles (unsmoothed, as pminternal's default);
- **MAPE**: per line, the mean over resamples of ``|p_b - p|``; overall, the mean of those (equal to the mean
  over lines and resamples);
- **calibration instability**: each bootstrap model's smoothed calibration curve on the development data (a
  lowess of the outcome on its risks, as :func:`training.evaluation.reliability_figure`, where pminternal uses
  a GAM), evaluated at 100 points across its risks, over the original model's;
- **classification instability**: the share of resamples that put a line in another risk band than the
  original model does (its classification instability index), overall and across each cut point. The bands are
  the service's (:mod:`features.bands`, ``risk >= cut`` is above; pminternal's classes use ``>``). They are a
  service setting, so training applies the default rule to the development data's own average risk;
- **decision-curve instability**: each bootstrap model's net benefit on the development data.

Pure functions on arrays and matplotlib figures; nothing here knows about MLflow.

References
    Riley RD, Collins GS. Stability of clinical prediction models developed using statistical or machine
    learning methods. Biom J 2023;65:2200302.
    Rhodes S. pminternal: Internal Validation of Clinical Prediction Models. R package, R/stability_plot.R.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray
from statsmodels.nonparametric.smoothers_lowess import lowess

from features.bands import RiskBands
from training import evaluation

#: Lines drawn in the prediction instability scatter (a random sample; every number and curve uses all lines).
SCATTER_LINES = 2_000
#: Points at which each calibration curve is evaluated, across the range of its model's risks (pminternal).
CURVE_POINTS = 100
LEVEL = 0.95
_BOOT_COLOUR = (0.5, 0.5, 0.5)


def _check(original: ArrayLike, boot: ArrayLike) -> tuple[NDArray, NDArray]:
    """Risks (lines) and bootstrap risks (lines x resamples) as floats; ValueError names the broken rule."""
    p, pb = np.asarray(original, dtype=float), np.asarray(boot, dtype=float)
    if p.ndim != 1 or pb.ndim != 2 or len(p) != len(pb):
        raise ValueError(f"need risks of n lines and an n x B matrix (got shapes {p.shape} and {pb.shape})")
    if pb.shape[1] == 0 or len(p) == 0:
        raise ValueError("need at least one line and one bootstrap model")
    if not (np.isfinite(p).all() and np.isfinite(pb).all()):
        raise ValueError("risks must be finite")
    return p, pb


def cut_points(bands: RiskBands) -> dict[str, float]:
    """Each band's lower cut point by the band's name."""
    return {"intermediate": bands.intermediate, "high": bands.high}


def band_index(p: ArrayLike, bands: RiskBands) -> NDArray:
    """:meth:`RiskBands.band` of every risk as 0 (low), 1 (intermediate) or 2 (high)."""
    return np.searchsorted(list(cut_points(bands).values()), np.asarray(p, dtype=float), side="right")


def individual_mape(original: ArrayLike, boot: ArrayLike) -> NDArray:
    """Per line: the mean absolute difference between the bootstrap models' risks and the original's."""
    p, pb = _check(original, boot)
    return np.abs(pb - p[:, None]).mean(axis=1)


def classification_instability(original: ArrayLike, boot: ArrayLike, bands: RiskBands) -> NDArray:
    """Per line: the share of bootstrap models whose band differs from the original model's (the CII)."""
    p, pb = _check(original, boot)
    return (band_index(pb, bands) != band_index(p, bands)[:, None]).mean(axis=1)


def summary(original: ArrayLike, boot: ArrayLike, bands: RiskBands) -> dict[str, float]:
    """The figures logged as metrics.

    ``instability_mape`` (overall), its per-line ``_median``, ``_p90`` and ``_max``;
    ``classification_instability`` (share of line x resample pairs in another band), and
    ``classification_instability_<band>`` across that band's lower cut point, which is
    ``instability_cut_<band>``.
    """
    p, pb = _check(original, boot)
    per_line = individual_mape(p, pb)
    out = {
        "instability_mape": float(per_line.mean()),
        "instability_mape_median": float(np.median(per_line)),
        "instability_mape_p90": float(np.quantile(per_line, 0.9)),
        "instability_mape_max": float(per_line.max()),
        "classification_instability": float(classification_instability(p, pb, bands).mean()),
    }
    for name, cut in cut_points(bands).items():
        out[f"classification_instability_{name}"] = float(((pb >= cut) != (p >= cut)[:, None]).mean())
        out[f"instability_cut_{name}"] = cut
    return out


# -------------------------------------------------------------------------------------------------- figures


def _axes(fig: Figure, title: str, xlabel: str, ylabel: str):
    ax = fig.subplots()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return ax


def prediction_instability_figure(
    original: ArrayLike, boot: ArrayLike, title: str, *, seed: int = 0
) -> Figure:
    """Bootstrap models' risks against the original model's, per line, with the 95% percentile bounds."""
    p, pb = _check(original, boot)
    n, b = pb.shape
    shown = np.random.default_rng(seed).permutation(n)[:SCATTER_LINES]
    order = np.argsort(p, kind="stable")
    tail = (1 - LEVEL) / 2
    bounds = np.quantile(pb[order], [tail, 1 - tail], axis=1)
    fig = Figure(figsize=(6.4, 6.0), layout="constrained")
    ax = _axes(
        fig,
        f"{title}: prediction instability",
        "Risk from the developed model",
        f"Risk from the bootstrap models (B = {b})",
    )
    ax.scatter(
        np.repeat(p[shown], b),
        pb[shown].ravel(),
        s=2,
        color=_BOOT_COLOUR,
        alpha=0.1,
        linewidths=0,
        rasterized=True,
        label=f"{len(shown)} of {n} lines x {b} models",
    )
    ax.plot([0, 1], [0, 1], ls="-", color="C0", lw=1, label="Same risk")
    for k, bound in enumerate(bounds):
        ax.plot(
            p[order],
            bound,
            ls="--",
            color="black",
            lw=0.8,
            label=f"{tail:.1%}/{1 - tail:.1%} percentiles" if k == 0 else "_nolegend_",
        )
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=9)
    return fig


def mape_figure(original: ArrayLike, boot: ArrayLike, title: str) -> Figure:
    """Each line's MAPE against its original risk, and the distribution of the per-line MAPE."""
    p, pb = _check(original, boot)
    per_line = individual_mape(p, pb)
    fig = Figure(figsize=(10.0, 4.6), layout="constrained")
    ax, hist = fig.subplots(1, 2)
    ax.scatter(p, per_line, s=4, color=_BOOT_COLOUR, alpha=0.4, linewidths=0, rasterized=True)
    ax.set(
        xlim=(0, 1),
        ylim=(0, None),
        title=f"{title}: MAPE by risk",
        xlabel="Risk from the developed model",
        ylabel=f"Mean absolute prediction error (B = {pb.shape[1]})",
    )
    ax.grid(alpha=0.3)
    hist.hist(per_line, bins=40, color="lightgrey", edgecolor="grey")
    for value, label, style in (
        (per_line.mean(), "mean", "-"),
        (np.median(per_line), "median", "--"),
        (np.quantile(per_line, 0.9), "90th percentile", ":"),
    ):
        hist.axvline(value, color="black", ls=style, label=f"{label} {value:.3f}")
    hist.set(title="Per-line MAPE", xlabel="Mean absolute prediction error", ylabel="Lines")
    hist.legend(fontsize=9)
    return fig


def _curve(y: NDArray, p: NDArray) -> tuple[NDArray, NDArray]:
    """Lowess calibration curve of ``y`` on ``p`` (no robustness iterations) at :data:`CURVE_POINTS`."""
    if np.ptp(p) == 0:  # a model that gives everyone one risk: its curve is one point
        return p[:1], np.array([y.mean()])
    x = np.linspace(p.min(), p.max(), CURVE_POINTS)
    return x, lowess(y, p, frac=2 / 3, it=0, xvals=x)


def calibration_instability_figure(y: ArrayLike, original: ArrayLike, boot: ArrayLike, title: str) -> Figure:
    """The bootstrap models' calibration curves on the development data over the original model's."""
    p, pb = _check(original, boot)
    y_arr = np.asarray(y, dtype=float)
    b = pb.shape[1]
    fig = Figure(figsize=(6.4, 6.0), layout="constrained")
    ax = _axes(fig, f"{title}: calibration instability", "Predicted risk", "Observed proportion (lowess)")
    ax.plot([0, 1], [0, 1], ls=":", color="C0", lw=1, label="Ideal calibration")
    for k in range(b):
        x, observed = _curve(y_arr, pb[:, k])
        ax.plot(
            x,
            observed,
            color=_BOOT_COLOUR,
            alpha=0.3,
            lw=0.8,
            marker="." if len(x) == 1 else None,
            label=f"Bootstrap models (B = {b})" if k == 0 else "_nolegend_",
        )
    ax.plot(*_curve(y_arr, p), ls="--", color="black", lw=2, label="Developed model")
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=9)
    return fig


def classification_instability_figure(
    original: ArrayLike, boot: ArrayLike, bands: RiskBands, title: str
) -> Figure:
    """Each line's classification instability index against its original risk, with the cut points."""
    p, pb = _check(original, boot)
    cii = classification_instability(p, pb, bands)
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = _axes(
        fig,
        f"{title}: classification instability",
        "Risk from the developed model",
        f"Share of bootstrap models giving another band (B = {pb.shape[1]})",
    )
    ax.scatter(p, cii, s=4, color=_BOOT_COLOUR, alpha=0.4, linewidths=0, rasterized=True)
    for name, cut in cut_points(bands).items():
        ax.axvline(cut, ls="--", color="black", lw=1)
        ax.annotate(f" {name} from {cut:.0%}", (cut, 1.0), fontsize=9, va="top")
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    return fig


def decision_curve_instability_figure(
    y: ArrayLike, original: ArrayLike, boot: ArrayLike, title: str
) -> Figure:
    """The bootstrap models' decision curves on the development data over the original model's."""
    p, pb = _check(original, boot)
    b = pb.shape[1]
    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = _axes(fig, f"{title}: decision curve instability", "Threshold probability", "Net benefit")
    for k in range(b):
        nb = evaluation.net_benefit(y, pb[:, k])
        label = f"Bootstrap models (B = {b})" if k == 0 else "_nolegend_"
        ax.plot(nb["threshold"], nb["model"], color=_BOOT_COLOUR, alpha=0.3, lw=0.8, label=label)
    nb = evaluation.net_benefit(y, p)
    ax.plot(nb["threshold"], nb["model"], ls="--", color="black", lw=2, label="Developed model")
    ax.plot(nb["threshold"], nb["treat_all"], color="C3", lw=1.5, label="Treat all")
    ax.plot(nb["threshold"], nb["treat_none"], color="C0", lw=1.5, label="Treat none")
    ax.set(xlim=(nb["threshold"].min(), nb["threshold"].max()), ylim=(-0.05, None))
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.legend(loc="upper right", fontsize=9)
    return fig


def figures(
    y: ArrayLike, original: ArrayLike, boot: ArrayLike, bands: RiskBands, name: str, *, seed: int = 0
) -> dict[str, Figure]:
    """The five instability figures, keyed by PNG file name (``instability_*.png``), titled with ``name``."""
    return {
        "instability_prediction.png": prediction_instability_figure(original, boot, name, seed=seed),
        "instability_mape.png": mape_figure(original, boot, name),
        "instability_calibration.png": calibration_instability_figure(y, original, boot, name),
        "instability_classification.png": classification_instability_figure(original, boot, bands, name),
        "instability_decision_curve.png": decision_curve_instability_figure(y, original, boot, name),
    }
