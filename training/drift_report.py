"""The input-drift report a person reads: one self-contained HTML page (figures as PNG data URIs).

A summary (rows, the false alarm rate and how the thresholds were set), the table of every field, then for
each drifted field its development and batch distributions side by side over the profile's bins.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from features.drift import DriftReport, FieldDrift
from features.tableio import atomic_write

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1a1a1a; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.verdict { padding: .6rem .9rem; border-radius: 4px; font-weight: 600; }
.drifted { background: #fde8e8; border-left: 5px solid #b42318; }
.quiet { background: #e7f5ec; border-left: 5px solid #1b7f3b; }
table { border-collapse: collapse; width: 100%; margin-top: .6rem; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
tr.hit td { background: #fdf1f1; font-weight: 600; }
.note { color: #555; font-size: .9rem; }
img { max-width: 100%; }
"""


def write_drift_report(
    path: Path, report: DriftReport, *, rows: dict[str, Any], model: str, source: str
) -> None:
    """Write the report of ``report`` (``rows``: read/monitored/rejected counts) to ``path``, atomically."""
    with atomic_write(path, "w") as f:
        f.write(render(report, rows=rows, model=model, source=source))


def render(report: DriftReport, *, rows: dict[str, Any], model: str, source: str) -> str:
    """The report as one HTML document."""
    drifted = [f for f in report.fields if f.drifted]
    e = html.escape
    if drifted:
        verdict = (
            f'<p class="verdict drifted">Drift in {len(drifted)} of {len(report.fields)} fields: '
            f"{e(', '.join(f.field for f in drifted))}.</p>"
        )
    else:
        verdict = '<p class="verdict quiet">No field drifted from the development data.</p>'
    table_rows = "".join(_row(f) for f in report.fields)
    figures = "".join(
        f"<h2>{e(f.field)}</h2><img alt='{e(f.field)}: development and batch distributions' "
        f"src='data:image/png;base64,{_png(f, report)}'>"
        for f in drifted
    )
    rejected = f", {rows['rejected']} rejected (broke the record contract)" if rows["rejected"] else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lenrisk input drift: {e(source)}</title>
<style>{_STYLE}</style></head><body>
<h1>Input drift: {e(source)}</h1>
<p class="note">{rows["read"]} rows read: {rows["monitored"]} monitored{rejected}. Compared with the
development data of {e(model)} ({report.development_n} treatment lines).</p>
{verdict}
<p>For each field, the Jensen–Shannon distance between the development and this file's distributions
(0: the same, 1: nothing in common). A field drifted when its distance is above the threshold: the distance
that a file of {report.n} lines drawn from the development data itself exceeds in only
{report.alpha / len(report.fields):.2%} of draws (a {report.alpha:.0%} chance over all
{len(report.fields)} fields that an unchanged population flags anything). Smaller files need larger
distances: with few lines, chance alone moves the distribution.</p>
<table><thead><tr><th>field</th><th>distance</th><th>threshold</th><th>drifted</th>
<th>outside training range</th><th style="text-align:left">categories no training line had</th></tr></thead>
<tbody>{table_rows}</tbody></table>
{figures}
<p class="note">Method and sources: docs/monitor.md. Out-of-range shares and unseen categories are the
model's applicability checks, the same as the service's warnings.</p>
</body></html>
"""


def _row(f: FieldDrift) -> str:
    out_of_range = "" if f.out_of_range_share is None else f"{f.out_of_range_share:.1%}"
    unseen = ", ".join(f"{v} ({c})" for v, c in (f.unseen_categories or {}).items())
    return (
        f"<tr class='{'hit' if f.drifted else ''}'><td>{html.escape(f.field)}</td><td>{f.value:.3f}</td>"
        f"<td>{f.threshold:.3f}</td><td>{'yes' if f.drifted else 'no'}</td><td>{out_of_range}</td>"
        f"<td class='text'>{html.escape(unseen)}</td></tr>"
    )


def _png(f: FieldDrift, report: DriftReport) -> str:
    """Development and batch shares per bin, side by side, as a base64 PNG."""
    fig = Figure(figsize=(8.0, 3.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(f.labels))
    ax.bar(x - 0.2, f.development, 0.4, label=f"development ({report.development_n} lines)", color="#7a8ca3")
    ax.bar(x + 0.2, f.batch, 0.4, label=f"this file ({report.n} lines)", color="#b42318")
    ax.set_xticks(
        x, f.labels, rotation=30 if len(f.labels) > 6 else 0, ha="right" if len(f.labels) > 6 else "center"
    )
    ax.set_ylabel("share of lines")
    ax.set_title(f"{f.field}: distance {f.value:.3f} > threshold {f.threshold:.3f}", fontsize=11)
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode()
