"""CDS Hooks 2.0 cards from the predictions: summary < 140 characters, indicator from the risk bands,
Markdown detail (risks with their 95% range, factors in words, inputs as read, what is missing, model
versions, applicability warnings), source with the model card link, and a lower-starting-dose suggestion
when the discontinuation risk is high. The range stays in the detail: with it the summary could pass 140.

The suggestion follows the key study's conclusion (seed 000, ``000_ad520cc8950628f0.txt``): in patients at
high risk of discontinuation "Len could be started at lower dose and progressively increased according to
the tolerance". The lower dose is the next step down the dose ladder 25 -> 15 -> 10 -> 5 mg (the reduction
levels of seed 002, ``002_d25f452b84da1d30.txt``, Table 2); the update action carries the whole revised
MedicationRequest, as the specification requires.
"""

from __future__ import annotations

import copy
import re
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from service.cds.mapping import RXNORM, Mapped, lenalidomide_strength_code, tables
from service.predictor import Prediction

DOSE_LADDER = (25.0, 15.0, 10.0, 5.0)
SUMMARY_LIMIT = 139
OUTCOME_WORDS = {"discontinuation": "early stop for toxicity", "dose_reduction": "dose reduction"}
FIELD_WORDS = {
    "age": "age",
    "sex": "sex",
    "regimen": "regimen",
    "setting": "disease setting",
    "start_dose_mg": "starting dose",
    "renal_function": "renal function",
    "ecog": "performance status (ECOG)",
    "prior_lines": "prior lines of therapy",
    "comorbidities": "comorbidities",
}
OVERRIDE_SYSTEM = "https://lenrisk.org/cds/override-reason"
OVERRIDE_REASONS = [
    {"system": OVERRIDE_SYSTEM, "code": "dose-already-adjusted", "display": "Dose already individualised"},
    {"system": OVERRIDE_SYSTEM, "code": "protocol-dose", "display": "Dose set by a trial or protocol"},
    {"system": OVERRIDE_SYSTEM, "code": "inputs-wrong", "display": "Inputs read from the record are wrong"},
    {"system": OVERRIDE_SYSTEM, "code": "clinical-judgement", "display": "Clinical judgement"},
]


def whole_percent(p: float) -> int:
    """A probability in whole percent, halves up like the calculator page's ``Math.round(p * 100)``
    (Python's ``round`` takes halves to even: a bound of 12.5% read 12% here and 13% on the page)."""
    return int(Decimal(p * 100).to_integral_value(rounding=ROUND_HALF_UP))


def _pct(values: list[float]) -> str:
    lo, hi = whole_percent(min(values)), whole_percent(max(values))
    return f"{lo}%" if lo == hi else f"{lo}–{hi}%"


OUTSIDE_KINDS = ("outside_training_range", "not_seen_in_training")
RANGE_MEANING = (
    "The 95% range is the uncertainty of the model's estimate from the size of its development data, "
    "not uncertainty about whether this patient will have the outcome."
)


def _range(predictions: list[Prediction], outcome: str) -> str:
    """The 95% range of an outcome's risk in words ("24–41%"); over the alternatives, their union.

    None for any alternative (outside the training data, or a model without intervals) gives no range.
    """
    intervals = [p.outcomes[outcome].interval for p in predictions]
    if any(i is None for i in intervals):
        outside = any(w.get("kind") in OUTSIDE_KINDS for p in predictions for w in p.warnings)
        return "none: outside the development data" if outside else "none: this model gives none"
    return _pct([min(i[0] for i in intervals), max(i[1] for i in intervals)])


def _worst(bands: list[str]) -> str:
    return max(bands, key=("low", "intermediate", "high").index)


def next_lower_dose(dose: float) -> float | None:
    """The next step down the dose ladder (25 -> 15 -> 10 -> 5 mg), or None at or below 5 mg."""
    return next((step for step in DOSE_LADDER if step < dose), None)


def indicator(bands: dict[str, str]) -> str:
    """``critical`` for a high discontinuation risk, ``warning`` for any other high or intermediate band."""
    if bands["discontinuation"] == "high":
        return "critical"
    return "warning" if any(b in ("high", "intermediate") for b in bands.values()) else "info"


def source(base_url: str, model_card_path: str) -> dict[str, Any]:
    """The card source: lenrisk, linking to the model card of the versions served."""
    return {
        "label": "lenrisk (models trained on synthetic data; not clinically validated)",
        "url": base_url.rstrip("/") + model_card_path,
        "topic": {
            "system": "https://lenrisk.org/cds/topic",
            "code": "lenalidomide-tolerance",
            "display": "Lenalidomide tolerance",
        },
    }


def _factors(prediction: Prediction, outcome: str, limit: int = 3) -> str:
    parts = []
    for name, shown, contribution in prediction.outcomes[outcome].contributions[:limit]:
        if abs(contribution) < 0.02:
            break
        if isinstance(shown, list):
            shown = ", ".join(shown) if shown else "none"
        elif isinstance(shown, float):
            shown = f"{shown:g}"
        elif isinstance(shown, str):
            shown = shown.replace("_", " ")
        direction = "raises" if contribution > 0 else "lowers"
        parts.append(f"{FIELD_WORDS.get(name, name)} ({shown}) {direction} it")
    return "; ".join(parts) if parts else "no single input stands out"


def risk_card(
    mapped: Mapped,
    predictions: list[Prediction],
    rows: list[dict[str, Any]],
    *,
    hook: str,
    base_url: str,
    model_card_path: str,
) -> dict[str, Any]:
    """The one card of a scored call (``predictions`` has one entry per row of the alternatives)."""
    first = predictions[0]
    probs = {o: [p.outcomes[o].probability for p in predictions] for o in OUTCOME_WORDS}
    bands = {o: _worst([p.outcomes[o].risk_band for p in predictions]) for o in OUTCOME_WORDS}
    ranged = len(predictions) > 1
    summary = (
        f"Lenalidomide: {_pct(probs['discontinuation'])} risk of early stop for toxicity, "
        f"{_pct(probs['dose_reduction'])} of dose reduction"
    )
    if ranged:
        summary += " (range: inputs missing)"
    elif mapped.missing:
        summary += " (some inputs missing)"
    summary = summary[:SUMMARY_LIMIT]

    lines = ["**Risk for this lenalidomide line** (calibrated probabilities)", ""]
    lines += ["| Outcome | Risk | 95% range | Band |", "|---|---|---|---|"]
    for outcome, words in OUTCOME_WORDS.items():
        lines.append(
            f"| {words.capitalize()} | {_pct(probs[outcome])} | {_range(predictions, outcome)} "
            f"| {bands[outcome]} |"
        )
    lines.append("")
    lines.append(RANGE_MEANING)
    lines.append("")
    if ranged:
        lines.append(
            f"The record left {len(rows)} possibilities open; the range spans them and the band shown "
            "is the highest. Main factors are for the first one."
        )
        lines.append("")
    for outcome, words in OUTCOME_WORDS.items():
        lines.append(f"**Main factors ({words}):** {_factors(first, outcome)}.")
        lines.append("")
    lines.append("**Inputs as read from the record:**")
    lines += [f"- {line}" for line in mapped.read]
    lines.append("")
    if mapped.missing:
        lines.append("**Missing or assumed inputs:**")
        lines += [f"- {line}" for line in mapped.missing]
        lines.append("")
    warnings = {w["message"] for p in predictions for w in p.warnings}
    if warnings:
        lines.append("**Applicability warnings:**")
        lines += [f"- {w}" for w in sorted(warnings)]
        lines.append("")
    models = ", ".join(f"{m.model.name} v{m.model.version}" for m in first.outcomes.values())
    lines.append(f"**Models:** {models}. Decision support only; the prescriber decides the dose.")

    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": indicator(bands),
        "detail": "\n".join(lines),
        "source": source(base_url, model_card_path),
        "overrideReasons": OVERRIDE_REASONS,
    }
    suggestion = dose_suggestion(mapped, bands["discontinuation"])
    if suggestion is not None:
        card["suggestions"] = [suggestion]
        card["selectionBehavior"] = "at-most-one"
        card["detail"] += (
            "\n\n**Suggestion:** the key real-life study (seed 000) concluded that patients at high risk of "
            "discontinuation could start lenalidomide at a lower dose and escalate according to tolerance."
        )
    return card


def dose_suggestion(mapped: Mapped, discontinuation_band: str) -> dict[str, Any] | None:
    """An update of the draft lenalidomide order to the next lower dose, for a high discontinuation risk."""
    dose = mapped.order.dose_mg
    if discontinuation_band != "high" or dose is None:
        return None
    lower = next_lower_dose(dose)
    if lower is None:
        return None
    revised = revise_dose(mapped.order.resource, dose, lower)
    return {
        "label": f"Start lenalidomide at {lower:g} mg instead of {dose:g} mg, escalating as tolerated",
        "uuid": str(uuid.uuid4()),
        "isRecommended": True,
        "actions": [
            {
                "type": "update",
                "description": f"Change the lenalidomide starting dose from {dose:g} mg to {lower:g} mg",
                "resource": revised,
            }
        ],
    }


def revise_dose(resource: dict[str, Any], dose: float, lower: float) -> dict[str, Any]:
    """The whole draft MedicationRequest with its dose lowered; strength codings and dose text kept true."""
    revised = copy.deepcopy(resource)
    for dosage in revised.get("dosageInstruction", []):
        for dr in dosage.get("doseAndRate", []):
            q = dr.get("doseQuantity")
            if isinstance(q, dict) and str(q.get("code") or q.get("unit") or "").lower() in ("mg", "g"):
                q["value"] = lower if str(q.get("code") or q.get("unit")).lower() == "mg" else lower / 1000
        if isinstance(dosage.get("text"), str):
            dosage["text"] = re.sub(
                rf"\b{dose:g}\s*mg\b", f"{lower:g} mg", dosage["text"], flags=re.IGNORECASE
            )
    concept = revised.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        kept = []
        for coding in concept.get("coding", []):
            strength = tables().strengths.get(coding.get("code")) if coding.get("system") == RXNORM else None
            if strength is None:
                kept.append(coding)
                continue
            code = lenalidomide_strength_code(lower, strength[1])
            if code is not None:  # same term type at the new strength; otherwise drop the stale strength code
                kept.append({**coding, "code": code, "display": _display(code)})
        if not kept:
            kept.append({"system": RXNORM, "code": "342369", "display": "lenalidomide"})
        concept["coding"] = kept
        if isinstance(concept.get("text"), str):
            concept["text"] = re.sub(
                rf"\b{dose:g}\s*mg\b", f"{lower:g} mg", concept["text"], flags=re.IGNORECASE
            )
    notes = revised.setdefault("note", [])
    if isinstance(notes, list):
        notes.append(
            {
                "text": f"Starting dose lowered from {dose:g} mg to {lower:g} mg, to be escalated as "
                "tolerated (lenrisk: high risk of early discontinuation for toxicity)."
            }
        )
    return revised


def _display(code: str) -> str:
    mg, tty = tables().strengths[code]
    form = " Oral Capsule" if tty in ("SCD", "SBD") else ""
    brand = " [Revlimid]" if tty.startswith("SB") else ""
    return f"lenalidomide {mg:g} MG{form}{brand}"


def not_scored_card(reason: str, notes: list[str], *, base_url: str, model_card_path: str) -> dict[str, Any]:
    """An info card saying why no risk is shown (never a silent guess)."""
    detail = [f"lenrisk did not compute a risk: {reason}."]
    if notes:
        detail += ["", "**Missing or assumed inputs:**", *[f"- {n}" for n in notes]]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": "Lenalidomide tolerance risk not computed: inputs missing or out of scope"[:SUMMARY_LIMIT],
        "indicator": "info",
        "detail": "\n".join(detail),
        "source": source(base_url, model_card_path),
    }
