"""The figures and the one-page HTML report of an external validation (:mod:`training.external`).

The report is for a clinician deciding whether a model can be used on their patients: for each model a
verdict in plain words (miscalibrated or not, in which direction, with the intervals), the measures with their
95% intervals, the calibration curve and the decision curve, and the measures per subgroup, small cells saying
so. It is one self-contained HTML file (figures as PNG data URIs, no scripts, no external resources), readable
offline and printable.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_curve

from features.schema import OUTCOME_TITLES, outcome_definition
from training.evaluation import DEFAULT_THRESHOLDS, Interval
from training.external import (
    CURVE_KNOTS,
    MIN_CLASS,
    MIN_LINES,
    PRECISE_CLASS,
    SUMMARY_THRESHOLDS,
    ExternalValidation,
)

__all__ = [
    "DataSummary",
    "ModelRef",
    "calibration_figure",
    "decision_figure",
    "figures",
    "render_report",
    "verdict",
]

#: Subgroup levels as a clinician reads them (others are shown as they are).
LEVEL_NAMES = {
    ">=75": "≥75",
    "newly_diagnosed": "newly diagnosed",
    "relapsed_refractory": "relapsed/refractory",
    "al_amyloidosis": "AL amyloidosis",
}


@dataclass(frozen=True)
class ModelRef:
    """Which registered version was validated: its name, version and the alias it was asked by (or None)."""

    name: str
    version: str
    alias: str | None

    def __str__(self) -> str:
        return f"{self.name} version {self.version}" + (f" (@{self.alias})" if self.alias else "")


@dataclass(frozen=True)
class DataSummary:
    """The validation file and what became of its rows: ``rows_read == rows_validated + rows_rejected``."""

    file_name: str
    sha256: str
    rows_read: int
    rows_validated: int
    rows_rejected: int
    reject_reasons: Sequence[tuple[str, str, int]]  # (column, reason, lines), most frequent first
    created: str  # ISO date-time of the run


# ------------------------------------------------------------------------------------------------- figures


def calibration_figure(v: ExternalValidation, title: str) -> Figure:
    """Flexible calibration curve with its 95% band against the diagonal, and a histogram of the predictions.

    The curve is :func:`training.external.calibration_curve` (restricted cubic spline logistic calibration);
    without one (too few lines or events), only the diagonal and the histogram are drawn, with a note.
    """
    fig = Figure(figsize=(4.0, 4.2), layout="constrained")
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top = float(min(1.0, max(np.quantile(v.p, 0.995), v.performance.observed_risk) * 1.25 + 0.02))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="Perfect calibration")
    curve = v.curve
    if curve is not None:
        ax.fill_between(
            curve.predicted, curve.lower, curve.upper, color="C0", alpha=0.2, lw=0, label="95% CI"
        )
        ax.plot(curve.predicted, curve.observed, color="C0", lw=2, label="Observed risk (spline calibration)")
        top = max(top, float(min(1.0, curve.upper.max() * 1.05)))
    else:
        ax.text(
            0.5, 0.5, "Too few lines or events for a calibration curve", ha="center", transform=ax.transAxes
        )
    ax.set(xlim=(0, top), ylim=(0, top), ylabel="Observed risk")
    ax.set_title(title, fontsize=10)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.yaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(alpha=0.3)
    hist.hist(
        [v.p[v.y == 0], v.p[v.y == 1]],
        bins=np.linspace(0, top, 41),
        stacked=True,
        color=["lightgrey", "C3"],
        label=["No event", "Event"],
    )
    hist.set(xlabel="Predicted risk", ylabel="Lines")
    hist.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=3))
    hist.legend(loc="upper right", fontsize=7)
    return fig


def decision_figure(v: ExternalValidation, title: str) -> Figure:
    """Decision curve (Vickers & Elkin 2006): net benefit of the model, of treating all and of treating none
    over the thresholds of :attr:`Performance.net_benefit`; the y axis is cut at -0.05 below."""
    nb = v.performance.net_benefit
    fig = Figure(figsize=(4.0, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(nb["threshold"], nb["model"], color="C0", lw=2, label="Using the model")
    ax.plot(nb["threshold"], nb["treat_all"], color="C3", lw=1.5, label="Treat all")
    ax.plot(nb["threshold"], nb["treat_none"], color="black", lw=1.5, label="Treat none")
    top = max(v.performance.observed_risk, float(nb["model"].max())) * 1.1 + 0.01
    ax.set(
        xlim=(nb["threshold"].min(), nb["threshold"].max()),
        ylim=(-0.05, top),
        xlabel="Threshold risk at which one would act",
        ylabel="Net benefit",
    )
    ax.set_title(title, fontsize=10)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def _roc_figure(v: ExternalValidation, title: str) -> Figure:
    fig = Figure(figsize=(4.0, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="No discrimination (AUC 0.50)")
    if v.y.min() != v.y.max():
        fpr, tpr, _ = roc_curve(v.y, v.p)
        ax.plot(fpr, tpr, color="C0", lw=2, label=f"AUC {_ci(v.performance.roc_auc)}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="1 - specificity", ylabel="Sensitivity")
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def figures(v: ExternalValidation) -> dict[str, Figure]:
    """``calibration.png``, ``roc.png`` and ``decision_curve.png`` of one validation."""
    return {
        "calibration.png": calibration_figure(v, "Calibration"),
        "roc.png": _roc_figure(v, "Discrimination"),
        "decision_curve.png": decision_figure(v, "Decision curve"),
    }


def _png(fig: Figure, dpi: int = 110) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# ----------------------------------------------------------------------------------------------- the words


def _num(x: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}".replace("-", "−")


def _ci(i: Interval, digits: int = 2, *, short: bool = False) -> str:
    if math.isnan(i.lower):
        return _num(i.estimate, digits)
    to = ", " if short else " to "
    return f"{_num(i.estimate, digits)} ({_num(i.lower, digits)}{to}{_num(i.upper, digits)})"


def _ci_words(i: Interval) -> str:
    if math.isnan(i.lower):
        return f"{_num(i.estimate)}, no interval"
    return f"{_num(i.estimate)}, 95% CI {_num(i.lower)} to {_num(i.upper)}"


def _net_benefit_sentence(v: ExternalValidation) -> str:
    """Where deciding with the model beats both treating everyone and treating no one (decision curve)."""
    nb = v.performance.net_benefit
    better = (nb["model"] > np.maximum(nb["treat_all"], nb["treat_none"])).to_numpy()
    t = nb["threshold"].to_numpy()
    span = f"thresholds {t[0]:.0%} to {t[-1]:.0%}"
    if not better.any():
        return (
            f"Deciding with the model does no better than treating everyone or no one at any of the {span}."
        )
    starts = np.flatnonzero(better & ~np.r_[False, better[:-1]])
    ends = np.flatnonzero(better & ~np.r_[better[1:], False])
    ranges = ", ".join(
        f"{t[a]:.0%}" if a == b else f"{t[a]:.0%} to {t[b]:.0%}" for a, b in zip(starts, ends, strict=True)
    )
    return (
        f"Deciding with the model does better than treating everyone or no one at thresholds {ranges} "
        f"(of the {span} examined)."
    )


def verdict(v: ExternalValidation) -> tuple[str, list[str]]:
    """A headline and the sentences behind it, in plain words with the 95% intervals.

    Miscalibration is called only when an interval excludes perfection: calibration-in-the-large 0 (too high
    or too low on average) or slope 1 (too extreme or too moderate).
    """
    perf = v.performance
    a, b, oe = perf.calibration_intercept, perf.calibration_slope, perf.observed_expected
    sentences = []
    observed = (
        f"{perf.observed_risk:.1%} of lines had the event; "
        f"the model predicted {perf.mean_predicted:.1%} on average"
    )
    if math.isnan(a.estimate):
        return "Calibration cannot be assessed", [
            f"Calibration could not be estimated on these lines ({perf.events} of {perf.n} had the event; "
            "with a single outcome, or outcomes perfectly separated by the risks, there is nothing to fit)."
        ]
    gap = f"{perf.mean_predicted:.1%} predicted, {perf.observed_risk:.1%} observed"
    mean = f"observed/expected {_ci_words(oe)}; calibration-in-the-large {_ci_words(a)}, where 0 is perfect"
    if a.lower > 0:
        problems = [f"risks too low on average ({gap})"]
        sentences.append(
            f"Miscalibrated on average: the model <b>underestimates</b> the risk. {observed} ({mean})."
        )
    elif a.upper < 0:
        problems = [f"risks too high on average ({gap})"]
        sentences.append(
            f"Miscalibrated on average: the model <b>overestimates</b> the risk. {observed} ({mean})."
        )
    else:
        problems = []
        sentences.append(
            f"On average the predicted risk agrees with what was observed: {observed} "
            f"(observed/expected {_ci_words(oe)}; the interval contains 1)."
        )
    slope = f"calibration slope {_ci_words(b)}, where 1 is perfect"
    if b.upper < 1:
        problems.append("too extreme")
        sentences.append(
            "The predictions are <b>too extreme</b>: high risks are too high and low risks too low "
            f"({slope})."
        )
    elif b.lower > 1:
        problems.append("too moderate")
        sentences.append(
            "The predictions are <b>too moderate</b>: high risks are too low and low risks too high "
            f"({slope})."
        )
    elif not math.isnan(b.estimate):
        sentences.append(f"The spread of the predictions is right ({slope}; the interval contains 1).")
    auc = perf.roc_auc
    if not math.isnan(auc.estimate):
        sentences.append(
            f"It ranks a line with the event above one without it {auc.estimate:.0%} of the time "
            f"(AUC {_ci_words(auc)}; 0.5 is chance)."
        )
    sentences.append(_net_benefit_sentence(v))
    if v.imprecise:
        sentences.append(
            f"<b>Few events</b>: fewer than {PRECISE_CLASS} lines with or without the event, so the "
            "intervals are wide and the verdict is uncertain."
        )
    headline = "Miscalibrated: " + ", ".join(problems) if problems else "No evidence of miscalibration"
    return headline, sentences


# ---------------------------------------------------------------------------------------------- the report

_CSS = """
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;margin:18px auto;
max-width:1180px;padding:0 12px}
h1{font-size:20px;margin:0 0 2px}h2{font-size:16px;margin:0 0 4px}h3{font-size:13px;margin:10px 0 4px}
.meta{color:#555;margin:0 0 10px}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));
gap:14px}.card{border:1px solid #ddd;border-radius:6px;padding:10px 12px}
.verdict{padding:6px 10px;border-radius:4px;font-weight:600;margin:4px 0 6px}
.bad{background:#fde8e6;border-left:5px solid #c0392b}.good{background:#e8f5e9;border-left:5px solid #2e7d32}
p{margin:4px 0}table{border-collapse:collapse;width:100%;font-size:12px}
td,th{padding:2px 5px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.n{text-align:right;white-space:nowrap}.small{color:#777;font-style:italic}
.figs{display:flex;gap:6px}.figs img{width:50%;height:auto}.foot{color:#555;font-size:11px;margin-top:10px}
@media print{body{margin:0;max-width:none}.grid{grid-template-columns:1fr 1fr}}
"""


def _metrics_table(v: ExternalValidation) -> str:
    perf, curve = v.performance, v.curve
    nb = perf.net_benefit.set_index("threshold")
    rows = [
        ("Calibration-in-the-large", _ci(perf.calibration_intercept), "0"),
        ("Calibration slope", _ci(perf.calibration_slope), "1"),
        ("Observed / expected events", _ci(perf.observed_expected), "1"),
        ("AUC (c-statistic)", _ci(perf.roc_auc), "1; 0.5 is chance"),
        ("Brier score / scaled Brier", f"{_num(perf.brier, 3)} / {_num(perf.scaled_brier)}", "0 / 1"),
    ]
    if curve is not None:
        rows.append(
            ("ICI / E50 / E90 (absolute risk)", f"{curve.ici:.1%} / {curve.e50:.1%} / {curve.e90:.1%}", "0")
        )
    for t in SUMMARY_THRESHOLDS:
        if t in nb.index:
            rows.append(
                (
                    f"Net benefit at {t:.0%} threshold",
                    f"{_num(nb.at[t, 'model'], 3)} (treat all {_num(nb.at[t, 'treat_all'], 3)}, none 0)",
                    "higher is better",
                )
            )
    body = "".join(
        f"<tr><td>{escape(name)}</td><td class=n>{escape(value)}</td><td>{escape(target)}</td></tr>"
        for name, value, target in rows
    )
    return f"<table><tr><th>Measure</th><th>Estimate (95% CI)</th><th>Perfect</th></tr>{body}</table>"


def _subgroup_table(v: ExternalValidation) -> str:
    rows = []
    for s in v.subgroups:
        level = escape(LEVEL_NAMES.get(s.level, s.level))
        cells = f"<td>{escape(s.variable)}: {level}</td><td class=n>{s.n} ({s.events})</td>"
        if s.performance is None:
            cells += f"<td colspan=3 class=small>too small to estimate: {escape(s.too_small or '')}</td>"
        else:
            p = s.performance
            cells += "".join(
                f"<td class=n>{escape(_ci(i, short=True))}</td>"
                for i in (p.observed_expected, p.calibration_slope, p.roc_auc)
            )
        rows.append(f"<tr>{cells}</tr>")
    head = "".join(
        f"<th>{h}</th>" for h in ("Subgroup", "Lines (events)", "Observed / expected", "Slope", "AUC")
    )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _model_card(ref: ModelRef, v: ExternalValidation) -> str:
    title = OUTCOME_TITLES.get(v.outcome, v.outcome)
    headline, sentences = verdict(v)
    style = "good" if headline.startswith("No evidence") else "bad"
    figs = figures(v)
    images = "".join(
        f'<img alt="{escape(alt)}" src="{_png(figs[name])}">'
        for name, alt in (("calibration.png", "calibration curve"), ("decision_curve.png", "decision curve"))
    )
    return (
        f"<section class=card><h2>{escape(title)}</h2>"
        f"<p class=meta>{escape(outcome_definition(v.outcome))} Model: {escape(str(ref))}; "
        f"{v.performance.n} lines, {v.performance.events} with the event.</p>"
        f'<div class="verdict {style}">{escape(headline)}</div>'
        + "".join(f"<p>{s}</p>" for s in sentences)  # sentences hold <b> only, numbers formatted here
        + _metrics_table(v)
        + f"<div class=figs>{images}</div>"
        + "<h3>By subgroup</h3>"
        + _subgroup_table(v)
        + "</section>"
    )


def render_report(models: Sequence[tuple[ModelRef, ExternalValidation]], data: DataSummary) -> str:
    """The one-page, self-contained HTML report of the validations of ``models`` on one file."""
    rejected = ""
    if data.rows_rejected:
        reasons = "; ".join(f"{escape(c)}: {escape(r)} ({n})" for c, r, n in data.reject_reasons[:6])
        more = len(data.reject_reasons) - 6
        rejected = f" Rejected rows break the record contract: {reasons}" + (
            f"; {more} more" if more > 0 else ""
        )
    lo, hi = DEFAULT_THRESHOLDS.min(), DEFAULT_THRESHOLDS.max()
    cards = "".join(_model_card(ref, v) for ref, v in models)
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>External validation: {escape(data.file_name)}</title>
<style>{_CSS}</style></head><body>
<h1>Does the model work on these patients? External validation</h1>
<p class=meta>Data: <b>{escape(data.file_name)}</b> (SHA-256 {escape(data.sha256[:12])}…),
{escape(data.created)}.
{data.rows_read} rows read = {data.rows_validated} validated + {data.rows_rejected} rejected.{rejected}</p>
<div class=grid>{cards}</div>
<p class=foot>How to read this. <b>Calibration</b>: do predicted risks match observed
frequencies? Calibration-in-the-large above 0 (observed/expected above 1) means the model predicts too low on
average, below 0 too high; a slope below 1 means predictions are too extreme, above 1 too moderate (Van
Calster 2016). The curve is a logistic calibration on a restricted cubic spline ({CURVE_KNOTS} knots) of the
predicted log-odds, with a pointwise 95% band; ICI, E50 and E90 are the mean, median and 90th percentile
distance between the curve and the diagonal (Austin &amp; Steyerberg 2019). <b>Decision curve</b>: net
benefit of acting on the model against acting on everyone or no one, for thresholds {lo:.0%} to {hi:.0%}
(Vickers &amp; Elkin 2006). Intervals are 95%: Wald for intercept and slope, Debray 2017 for O/E, a
bootstrap of patients for the AUC. Subgroups with fewer than {MIN_LINES} lines or fewer than {MIN_CLASS}
lines with or without the event are not estimated.</p>
</body></html>
"""
