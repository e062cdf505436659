"""The outcome monitoring report a person reads: one self-contained HTML page (figures as PNG data URIs).

Per outcome: the verdict and the suggested update, O:E and the calibration slope over the windows with
their pointwise 95% bands and the alerting windows marked, then the windows as a table; at the end, how the
rows were counted and how the alert is decided.
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from html import escape

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.schema import OUTCOME_TITLES, OUTCOMES
from training.outcome_monitoring import Monitoring, OutcomeMonitoring, Window

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:0}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
.meta{color:#555}.alert{color:#b00020;font-weight:600}.ok{color:#1b6e20;font-weight:600}
.box{border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:10px 0;background:#fafafa}
table{border-collapse:collapse;font-size:.88em;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}th{background:#f0f0f0}
tr.alert td{background:#fde7ea}td.l,th.l{text-align:left}img{max-width:100%}
"""


def window_figure(o: OutcomeMonitoring, title: str, xlabel: str) -> Figure:
    """O:E (top) and calibration slope (bottom) of each window at its last row, with pointwise 95% bands;
    alerting windows in red."""
    ws = o.windows
    x = [_x(w.end) for w in ws]
    fig = Figure(figsize=(10, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    alert = np.array([w.alert for w in ws])
    for ax, name, label in (
        (top, "observed_expected", "Observed / expected events"),
        (bottom, "calibration_slope", "Calibration slope"),
    ):
        est, low, high = (np.array([getattr(w, name)[k] for w in ws], dtype=float) for k in range(3))
        ax.fill_between(x, low, high, color="C0", alpha=0.2, step=None, label="95% interval (each window)")
        ax.plot(x, est, color="C0", marker="o", ms=3, lw=1.5, label="Window estimate")
        ax.axhline(1, color="grey", ls="--", lw=1, label="Perfect calibration")
        if alert.any():
            ax.scatter(
                np.array(x, dtype=object)[alert], est[alert], color="#b00020", zorder=3, s=28, label="Alert"
            )
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title, x=0.01, ha="left")
    handles, labels = top.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncol=4)
    bottom.set_xlabel(xlabel)
    if isinstance(ws[0].end, str):
        fig.autofmt_xdate()
    return fig


def report_html(result: Monitoring, sources: dict[str, object]) -> str:
    """The whole page; ``sources`` names the files and columns read (shown as given)."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>lenrisk outcome monitoring</title>"
        f"<style>{_STYLE}</style></head><body><h1>Outcome monitoring: is the model still calibrated?</h1>",
        f"<p class='meta'>{_sources_line(sources)}. Windows of {result.window:,} labelled lines, every "
        f"{result.step:,}; written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>",
    ]
    order = sources.get("order_by")
    xlabel = f"Last line of the window ({order})" if order else "Last line of the window (row number)"
    for name, o in result.outcomes.items():
        parts.append(_outcome_section(name, o, xlabel))
    parts.append(_counts_section(result))
    parts.append(_method_section(result))
    parts.append("</body></html>")
    return "\n".join(parts)


def _outcome_section(name: str, o: OutcomeMonitoring, xlabel: str) -> str:
    title = f"{OUTCOME_TITLES.get(name, name)} ({OUTCOMES[name]})"
    if not o.windows:
        return f"<h2>{escape(title)}</h2><p>No labelled lines yet: nothing to monitor.</p>"
    if o.suggestion is not None:
        s = o.suggestion
        verdict = (
            f"<p class='alert'>ALERT: calibration has drifted in {len(o.alerts)} of {len(o.windows)} "
            "windows.</p>"
            f"<p>Suggested update: <b>{s.method.replace('_', ' ')}</b>. {escape(s.reason)}.</p>"
            f"<p><code>{escape(s.command)}</code></p>"
        )
    else:
        verdict = (
            "<p class='ok'>No alert: no window's calibration differs from the model's beyond chance "
            f"({len(o.windows)} windows).</p>"
        )
    rows = "".join(_window_row(w) for w in o.windows)
    return (
        f"<h2>{escape(title)}</h2><div class='box'>{verdict}</div>"
        f"<img alt='O:E and calibration slope over windows' src='{_png(window_figure(o, title, xlabel))}'>"
        "<table><tr><th>#</th><th class='l'>from</th><th class='l'>to</th><th>lines</th><th>events</th>"
        "<th>expected</th><th>O:E (95% CI)</th><th>intercept (95% CI)</th><th>slope (95% CI)</th>"
        f"<th>statistic</th><th class='l'>alert</th></tr>{rows}</table>"
        f"<p class='meta'>A window alerts when its statistic exceeds {o.critical_value:.1f}.</p>"
    )


def _window_row(w: Window) -> str:
    return (
        f"<tr class='{'alert' if w.alert else ''}'><td>{w.index}</td>"
        f"<td class='l'>{escape(str(w.start))}</td><td class='l'>{escape(str(w.end))}</td>"
        f"<td>{w.n:,}</td><td>{w.events:,}</td><td>{w.expected:.1f}</td>"
        f"<td>{_ci(w.observed_expected)}</td><td>{_ci(w.calibration_intercept)}</td>"
        f"<td>{_ci(w.calibration_slope)}</td><td>{w.statistic:.1f}</td>"
        f"<td class='l'>{'ALERT' if w.alert else ''}</td></tr>"
    )


def _counts_section(result: Monitoring) -> str:
    rows = "".join(
        f"<tr><td class='l'>{escape(OUTCOME_TITLES.get(n, n))}</td>"
        f"<td>{o.rows.read:,}</td><td>{o.rows.used:,}</td>"
        f"<td>{o.rows.unlabelled:,}</td><td>{o.rows.rejected:,}</td></tr>"
        for n, o in result.outcomes.items()
    )
    labelled = result.labelled
    reasons = "".join(f"<li>{escape(r)}: {c:,} lines</li>" for r, c in labelled.reasons.items())
    join = ""
    if labelled.join is not None:
        join = (
            "<p>Join: "
            + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in labelled.join.items())
            + ".</p>"
        )
    return (
        "<h2>Lines read</h2><table><tr><th class='l'>outcome</th><th>read</th><th>monitored</th>"
        f"<th>no outcome yet</th><th>rejected</th></tr>{rows}</table>{join}"
        + (f"<p>Reject lines by reason:</p><ul>{reasons}</ul>" if reasons else "<p>No line rejected.</p>")
    )


def _method_section(result: Monitoring) -> str:
    k = len(result.outcomes)
    return (
        "<h2>How the alert is decided</h2><p>Each window is tested for calibration with Cox's recalibration "
        "score test (intercept 0 and slope 1 together, 2 degrees of freedom; Cox 1958, Miller et al. 1991). "
        "Because the windows overlap and are many, a window alerts only when its statistic exceeds what the "
        f"largest window of the run would reach in {1 - result.alpha / k:.1%} of {result.simulations:,} runs "
        "simulated from a calibrated model with the same risks (max-T, Westfall &amp; Young 1993), split "
        f"between the {k} outcome(s) (Bonferroni): with calibrated models the whole report alerts falsely at "
        f"most {result.alpha:.0%} of the time. The 95% intervals drawn are per window (Debray et al. 2017 "
        "for O:E, Wald for intercept and slope) and are not adjusted. On calibration drift and windows: "
        "Davis et al., JAMIA 2017 and J Biomed Inform 2020.</p>"
    )


def _sources_line(sources: dict[str, object]) -> str:
    shown = {k: v for k, v in sources.items() if v not in (None, [], ())}
    if shown.get("labels") == shown.get("predictions"):  # one file: the scored file with outcomes added
        shown = {"file": shown.pop("labels"), **{k: v for k, v in shown.items() if k != "predictions"}}
    return "; ".join(f"{escape(k.replace('_', ' '))}: {escape(str(v))}" for k, v in shown.items())


def _ci(i) -> str:
    if not np.isfinite(i.estimate):
        return "–"
    bounds = f" ({_f(i.lower)} to {_f(i.upper)})" if np.isfinite(i.lower) else ""
    return f"{_f(i.estimate)}{bounds}"


def _f(x: float) -> str:
    text = f"{x:.2f}"
    return "0.00" if text == "-0.00" else text


def _x(value: str | float | int):
    return pd.Timestamp(value).to_pydatetime() if isinstance(value, str) else value


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
