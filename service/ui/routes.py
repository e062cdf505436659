"""The clinician's risk calculator: one page at ``/`` and its assets under ``/ui/``, all served locally.

The form is rendered here from :mod:`features.schema` (every contract column, its range, unit, categories
and whether empty means unknown; nothing pre-filled), so the page cannot drift from the contract. The
outcomes' definitions and horizon and each outcome's risk bands with their source are rendered here too;
``static/app.js`` checks that no required field is empty, posts the record to ``v1/predict`` (relative to
the page, so a proxy may serve the page under a prefix and add the API key for its requests) and draws the
answer. The page and its assets need no API key, are left out of the OpenAPI document, and carry a
Content-Security-Policy allowing this origin only.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response

from features.schema import (
    COMORBIDITY_COLUMNS,
    COMORBIDITY_LABELS,
    OUTCOME_HORIZON,
    OUTCOME_TITLES,
    OUTCOMES,
    RECORD_COLUMNS,
    REGIMEN_LABELS,
    Column,
    Kind,
    outcome_definition,
)
from service.predictor import BAND_RULE, DEVELOPMENT_AVERAGE_RISK
from service.settings import ServiceSettings

STATIC = Path(__file__).parent / "static"

#: Every asset the page uses, with its media type; nothing else under ``/ui/`` is served.
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

#: Self only: no inline script or style, no third-party origin, no plugins, no framing by other sites.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

#: Clinical labels of the contract columns (a column missing here falls back to its description).
LABELS: dict[str, str] = {
    "patient_id": "Patient reference",
    "age": "Age",
    "sex": "Sex",
    "regimen": "Regimen",
    "setting": "Disease setting",
    "start_dose_mg": "Lenalidomide starting dose",
    "crcl_ml_min": "Creatinine clearance",
    "dialysis": "On dialysis",
    "ecog": "ECOG performance status",
    "prior_lines": "Prior lines of therapy",
    **{f"cm_{c}": label[0].upper() + label[1:] for c, label in COMORBIDITY_LABELS.items()},
}
#: Labels of category values (a value missing here is shown as spelled in the contract).
VALUE_LABELS: dict[str, dict[str, str]] = {
    "sex": {"female": "Female", "male": "Male"},
    "regimen": {code: f"{code} — {drugs}" for code, drugs in REGIMEN_LABELS.items()},
    "setting": {
        "newly_diagnosed": "Newly diagnosed",
        "maintenance": "Maintenance",
        "relapsed_refractory": "Relapsed / refractory",
        "al_amyloidosis": "AL amyloidosis",
    },
    "ecog": {
        "0": "0 — fully active",
        "1": "1 — restricted in strenuous activity",
        "2": "2 — ambulatory, capable of self-care",
        "3": "3 — limited self-care, in bed or chair > 50% of waking hours",
        "4": "4 — completely disabled",
    },
}
HINTS: dict[str, str] = {
    "patient_id": "Optional and pseudonymous; never logged. Do not enter names or record numbers.",
    "crcl_ml_min": "Cockcroft–Gault or eGFR.",
}
#: Labels of the explained fields that are not contract columns (SHAP groups).
FEATURE_LABELS: dict[str, str] = {"renal_function": "Renal function", "comorbidities": "Comorbidities"}

_SELECT_AT_MOST = 6  # an integer with at most this many values (ECOG) is a list, not a free number
_SELECT_LABEL_MAX = 24  # values with a longer label are radio buttons, whose labels wrap, not a select


def label(col: Column) -> str:
    """The clinical label of a contract column."""
    return LABELS.get(col.name, col.description[0].upper() + col.description[1:])


def _value_label(col: Column, value: str) -> str:
    return VALUE_LABELS.get(col.name, {}).get(value, value)


def _rule_hint(col: Column) -> str:
    unit = f" {col.unit}" if col.unit else ""
    if col.kind in (Kind.NUMBER, Kind.INTEGER):
        whole = ", whole number" if col.kind is Kind.INTEGER else ""
        text = f"{col.minimum:g}–{col.maximum:g}{unit}{whole}"
        text += "; leave empty if unknown." if col.nullable else "."
    elif col.nullable:
        text = "Leave empty if unknown."
    else:
        text = ""
    return " ".join(t for t in (HINTS.get(col.name, ""), text) if t)


def _required(col: Column) -> bool:
    """A value the clinician must enter (a box left unticked is an answer: no)."""
    return col.required_in_api and not col.nullable and col.kind is not Kind.BINARY


def _attrs(col: Column, control: str) -> str:
    kind = "binary" if col.kind is Kind.BINARY else col.kind.value
    return (
        f'class="field field-{control}" data-field="{escape(col.name)}" data-kind="{kind}" '
        f'data-control="{control}" data-nullable="{str(col.nullable).lower()}" '
        f'data-required="{str(_required(col)).lower()}"'
    )


def _described(col: Column, hint: str) -> str:
    name = escape(col.name)
    ids = ([f"{name}-hint"] if hint else []) + [f"{name}-error"]
    required = ' aria-required="true"' if _required(col) else ""
    return f'aria-describedby="{" ".join(ids)}"{required}'


def _hint_and_error(name: str, hint: str) -> str:
    hint_html = f'<p class="hint" id="{name}-hint">{escape(hint)}</p>' if hint else ""
    return hint_html + f'<p class="field-error" id="{name}-error" hidden></p>'


def _field(col: Column) -> str:
    """One contract column as labelled form control(s) with its hint and error slot; nothing pre-filled."""
    name, text, hint = escape(col.name), escape(label(col)), _rule_hint(col)
    values = [str(v) for v in col.allowed]
    if col.kind is Kind.INTEGER and col.maximum - col.minimum < _SELECT_AT_MOST:
        values = [str(v) for v in range(int(col.minimum), int(col.maximum) + 1)]
    if col.kind is Kind.BINARY:
        return (
            f'<div {_attrs(col, "checkbox")}><input type="checkbox" id="f-{name}" name="{name}" value="1" '
            f'{_described(col, hint)}><label for="f-{name}">{text}</label>'
            f"{_hint_and_error(name, hint)}</div>"
        )
    long_labels = any(len(_value_label(col, v)) > _SELECT_LABEL_MAX for v in values)
    if values and (len(values) <= 3 or long_labels):
        choices = [(v, v, _value_label(col, v)) for v in values]
        if col.nullable:
            choices.append(("", "unknown", "Unknown"))
        radios = "".join(
            f'<span class="choice"><input type="radio" id="f-{name}-{escape(key)}" name="{name}" '
            f'value="{escape(v)}"><label for="f-{name}-{escape(key)}">{escape(shown)}</label></span>'
            for v, key, shown in choices
        )
        stacked = " stacked" if long_labels else ""
        return (
            f'<fieldset {_attrs(col, "radio")} role="radiogroup" {_described(col, hint)}>'
            f"<legend>{text}</legend>"
            f'<div class="choices{stacked}">{radios}</div>{_hint_and_error(name, hint)}</fieldset>'
        )
    if values:
        empty = "Unknown" if col.nullable else "Choose…"
        options = f'<option value="">{empty}</option>' + "".join(
            f'<option value="{escape(v)}">{escape(_value_label(col, v))}</option>' for v in values
        )
        return (
            f'<div {_attrs(col, "select")}><label for="f-{name}">{text}</label>'
            f'<select id="f-{name}" name="{name}" {_described(col, hint)}>{options}</select>'
            f"{_hint_and_error(name, hint)}</div>"
        )
    if col.kind is Kind.STRING:
        control = (
            f'<input type="text" id="f-{name}" name="{name}" maxlength="{int(col.maximum or 64)}" '
            f'autocomplete="off" spellcheck="false" {_described(col, hint)}>'
        )
    else:
        step = "1" if col.kind is Kind.INTEGER else "any"
        mode = "numeric" if col.kind is Kind.INTEGER else "decimal"
        placeholder = ' placeholder="unknown"' if col.nullable else ""
        control = (
            f'<input type="number" id="f-{name}" name="{name}" inputmode="{mode}" step="{step}" '
            f'min="{col.minimum:g}" max="{col.maximum:g}"{placeholder} {_described(col, hint)}>'
        )
        if col.unit:
            control = f'<span class="with-unit">{control}<span class="unit">{escape(col.unit)}</span></span>'
    return (
        f'<div {_attrs(col, "input")}><label for="f-{name}">{text}</label>{control}'
        f"{_hint_and_error(name, hint)}</div>"
    )


def form_fields() -> str:
    """The form's controls for every contract column; the comorbidity flags grouped as checkboxes."""
    parts, comorbidities = [], []
    for col in RECORD_COLUMNS:
        if col.name in COMORBIDITY_COLUMNS:
            comorbidities.append(_field(col))
            continue
        if col.name == "patient_id":
            continue  # last: optional and not a predictor
        parts.append(_field(col))
    parts.append(
        '<fieldset class="group" id="comorbidities" aria-describedby="comorbidities-error">'
        "<legend>Comorbidities at the start of the line</legend>"
        f'<div class="checks">{"".join(comorbidities)}</div>'
        '<p class="field-error" id="comorbidities-error" hidden></p></fieldset>'
    )
    parts.append(_field(next(c for c in RECORD_COLUMNS if c.name == "patient_id")))
    return "\n".join(parts)


def _percent(p: float) -> str:
    return f"{p * 100:g}%"


def outcome_definitions() -> str:
    """What each outcome means and over what time (the contract's outcome definitions and horizon)."""
    items = "".join(
        f"<dt>{escape(OUTCOME_TITLES[o])}</dt><dd>{escape(outcome_definition(o))}</dd>" for o in OUTCOMES
    )
    return f'<dl class="definitions">{items}</dl><p class="hint horizon">{escape(OUTCOME_HORIZON)}</p>'


def risk_bands(settings: ServiceSettings) -> str:
    """Each outcome's cut points, whether the deployment set them, a slot for the development data's
    average risk (filled from ``v1/models``), and the rule and source of the defaults."""
    items = []
    for outcome, bands in settings.bands.items():
        low, high = _percent(bands.intermediate), _percent(bands.high)
        source = (
            "set by this deployment"
            if settings.bands_configured[outcome]
            else f"default, for an average of {DEVELOPMENT_AVERAGE_RISK[outcome]:.0%}"
        )
        items.append(
            f'<li data-outcome="{outcome}"><strong>{escape(OUTCOME_TITLES[outcome])}:</strong> '
            f"low below {low}, intermediate {low}–{high}, high from {high} ({source}); average risk in "
            f'the development data <span class="average-risk" data-outcome="{outcome}">…</span></li>'
        )
    return f'<ul>{"".join(items)}</ul><p class="hint">{escape(BAND_RULE)}</p>'


def page_config() -> dict[str, object]:
    """What the script needs to word the answer: labels, allowed rules, outcomes."""
    return {
        "labels": {c.name: label(c) for c in RECORD_COLUMNS} | FEATURE_LABELS,
        "units": {c.name: c.unit for c in RECORD_COLUMNS if c.unit},
        "rules": {c.name: c.rule() for c in RECORD_COLUMNS},
        "values": VALUE_LABELS,
        "regimens": REGIMEN_LABELS,
        "comorbidities": COMORBIDITY_LABELS,
        "outcomes": {o: OUTCOME_TITLES.get(o, o) for o in OUTCOMES},
    }


def render_page(settings: ServiceSettings) -> str:
    """The calculator page: the static template with the contract's form, the outcomes' definitions, the
    risk bands and the script's config."""
    template = (STATIC / "index.html").read_text(encoding="utf-8")
    return (
        template.replace("<!--FORM-->", form_fields())
        .replace("<!--OUTCOMES-->", outcome_definitions())
        .replace("<!--BANDS-->", risk_bands(settings))
        .replace("{{CONFIG}}", escape(json.dumps(page_config(), ensure_ascii=False), quote=True))
    )


def build_router(settings: ServiceSettings) -> APIRouter:
    """The page at ``/`` and its static assets under ``/ui/``: no API key, not in the OpenAPI document."""
    router = APIRouter(include_in_schema=False)
    page = render_page(settings).encode()
    assets = {name: (STATIC / name).read_bytes() for name in ASSETS}

    @router.get("/", include_in_schema=False)
    async def calculator() -> Response:
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    @router.get("/ui/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in assets:
            raise HTTPException(status_code=404, detail="not found")
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return Response(assets[name], media_type=ASSETS[name], headers=headers)

    return router
