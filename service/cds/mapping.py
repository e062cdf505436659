"""FHIR R4 resources of one CDS Hooks call -> contract rows, with every assumption named.

Reads only coded data, through the cited tables in ``service/cds/data`` (see its README):

- **age** from ``Patient.birthDate`` at the order date (``authoredOn`` of the lenalidomide order, else its
  timing start, else today);
- **sex** from ``Patient.gender`` (administrative); ``other``/``unknown``/absent use the US Core birth-sex
  extension when present, otherwise the risks are computed for *both* sexes and shown as a range;
- **regimen** from the RxNorm ingredients of the draft orders (plus the patient's active orders);
- **dose** from the lenalidomide order's ``doseQuantity`` (mg);
- **setting** from ICD-10 / SNOMED coded Conditions (ICD-10-CM C90.00/.01/.02 give the myeloma phase;
  otherwise every myeloma setting is scored and the range shown), or the request extension;
- **renal function**: measured creatinine clearance, else Cockcroft–Gault from serum creatinine, age, sex
  and weight, else eGFR (LOINC codes: ``data/observations.csv``); dialysis and comorbidities from ICD-10
  codes (Quan 2005).

Reference for the creatinine clearance estimate:
    Cockcroft DW, Gault MH. Prediction of creatinine clearance from serum creatinine.
    Nephron. 1976;16(1):31-41.
    CrCl (mL/min) = (140 - age) x weight (kg) / (72 x SCr (mg/dL)), x 0.85 if female.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources as package_data
from typing import Any

from features.schema import (
    AGENT_CLASSES,
    COLUMNS_BY_NAME,
    COMORBIDITIES,
    COMORBIDITY_LABELS,
    REGIMEN_AGENTS,
    REGIMEN_LABELS,
    REGIMENS,
    SETTINGS,
    partners,
)
from service.cds.fhir import (
    CodeableConcept,
    Condition,
    FhirInputError,
    MedicationRequest,
    Observation,
    Patient,
    codes,
    parse_when,
    status_code,
)

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = (
    "http://hl7.org/fhir/sid/icd-10",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10-gm",
)
US_CORE_BIRTHSEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
MYELOMA_SETTINGS = ("newly_diagnosed", "maintenance", "relapsed_refractory")
#: The regimen of lenalidomide with one partner agent (and the regimen's steroid, if ordered).
_BY_PARTNER = {p: regimen for regimen in REGIMENS if len(ps := partners(regimen)) == 1 for p in ps}
#: Observations older than this before the order date are not used (named in the card).
OBSERVATION_MAX_AGE = timedelta(days=90)
_USABLE_OBSERVATION = {"final", "amended", "corrected"}
_EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
_ACTIVE = {"active", "recurrence", "relapse"}
_ECOG_ANSWERS = {"LA9622-7": 0, "LA9623-5": 1, "LA9624-3": 2, "LA9625-0": 3, "LA9626-8": 4}


class NotScorable(Exception):  # noqa: N818 - a result, not a failure: the card says why
    """The call is about lenalidomide but the models cannot be applied; ``reason`` says why."""

    def __init__(self, reason: str, notes: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.notes = notes


# ---------------------------------------------------------------- tables


@dataclass(frozen=True)
class Tables:
    """The cited mapping tables, loaded once."""

    agents: dict[str, str]  # rxcui -> agent
    strengths: dict[str, tuple[float, str]]  # lenalidomide rxcui -> (strength mg, term type)
    conditions: list[dict[str, str]]
    observations: dict[str, tuple[str, ...]]  # quantity -> its LOINC codes, in the table's order


def _rows(name: str) -> list[dict[str, str]]:
    text = package_data.files("service.cds").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@cache
def tables() -> Tables:
    """The mapping tables of ``service/cds/data``."""
    agents, strengths = {}, {}
    for row in _rows("rxnorm_agents.csv"):
        agents[row["rxcui"]] = row["agent"]
        if row["strength_mg"]:
            strengths[row["rxcui"]] = (float(row["strength_mg"]), row["term_type"])
    observations: dict[str, tuple[str, ...]] = {}
    for row in _rows("observations.csv"):
        observations[row["quantity"]] = (*observations.get(row["quantity"], ()), row["loinc"])
    return Tables(
        agents=agents, strengths=strengths, conditions=_rows("conditions.csv"), observations=observations
    )


def loinc(quantity: str) -> tuple[str, ...]:
    """The LOINC codes read for ``quantity`` (``crcl``, ``creatinine``, ``egfr``, ``weight``, ``ecog``)."""
    return tables().observations[quantity]


def _loinc_words(quantity: str) -> str:
    return "LOINC " + " / ".join(loinc(quantity))


def _norm(code: str) -> str:
    return code.replace(".", "").upper()


def condition_matches(system: str, code: str) -> list[dict[str, str]]:
    """The condition-table rows a code matches (``exact``: itself; ``prefix``: it and more specific codes)."""
    out = []
    for row in tables().conditions:
        if row["system"] != system:
            continue
        exact = _norm(code) == _norm(row["code"])
        if exact or (row["match"] == "prefix" and _norm(code).startswith(_norm(row["code"]))):
            out.append(row)
    return out


def lenalidomide_strength_code(strength: float, term_type: str) -> str | None:
    """The lenalidomide RxNorm code of ``strength`` mg with the same term type (SCD, SBD, ...), if any."""
    for code, (mg, tty) in tables().strengths.items():
        if mg == strength and tty == term_type:
            return code
    return None


# ---------------------------------------------------------------- formulas


def cockcroft_gault(*, age: float, weight_kg: float, creatinine_mg_dl: float, female: bool) -> float:
    """Creatinine clearance (mL/min) by Cockcroft & Gault (Nephron 1976;16:31-41).

    >>> round(cockcroft_gault(age=74, weight_kg=80, creatinine_mg_dl=1.2, female=False), 1)
    61.1
    """
    crcl = (140 - age) * weight_kg / (72 * creatinine_mg_dl)
    return crcl * 0.85 if female else crcl


def age_at(birth: date, on: date) -> int:
    """Completed years from ``birth`` to ``on``."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


# ---------------------------------------------------------------- the mapped call


@dataclass
class Order:
    """The lenalidomide order found among the draft orders."""

    resource: dict[str, Any]  # the draft MedicationRequest as sent (for an update suggestion)
    parsed: MedicationRequest
    dose_mg: float | None


@dataclass
class Mapped:
    """The contract inputs read from one call: fixed fields, alternatives where the record is silent."""

    fixed: dict[str, Any]
    sexes: list[str]
    settings: list[str]
    crcl_by_sex: dict[str, float | None]
    order: Order
    read: list[str] = field(default_factory=list)  # how each input was read, in words
    missing: list[str] = field(default_factory=list)  # missing or assumed inputs, in words

    def rows(self) -> list[dict[str, Any]]:
        """One contract row per combination of the alternatives (one row when nothing is ambiguous)."""
        out = []
        for sex, setting in itertools.product(self.sexes, self.settings):
            prior = self.fixed["prior_lines"]
            if prior is None:
                prior = 0 if setting == "newly_diagnosed" else 1
            out.append(
                {
                    **self.fixed,
                    "sex": sex,
                    "setting": setting,
                    "prior_lines": prior,
                    "crcl_ml_min": self.crcl_by_sex[sex],
                }
            )
        return out


def _agent_of(concept: CodeableConcept | None) -> str | None:
    for code in codes(concept, RXNORM):
        agent = tables().agents.get(code)
        if agent:
            return agent
    return None


def find_lenalidomide(draft_orders: list[tuple[dict[str, Any], Any]], selections: list[str]) -> Order | None:
    """The lenalidomide MedicationRequest among the draft orders (a selected one first), or None."""
    candidates = []
    for raw, parsed in draft_orders:
        if (
            isinstance(parsed, MedicationRequest)
            and _agent_of(parsed.medicationCodeableConcept) == "lenalidomide"
        ):
            ref = f"MedicationRequest/{parsed.id}"
            candidates.append((0 if ref in selections else 1, raw, parsed))
    if not candidates:
        return None
    _, raw, parsed = min(candidates, key=lambda c: c[0])
    return Order(resource=raw, parsed=parsed, dose_mg=_dose_mg(parsed))


def _dose_mg(order: MedicationRequest) -> float | None:
    for dosage in order.dosageInstruction:
        for dr in dosage.doseAndRate:
            q = dr.doseQuantity
            if q is None or q.value is None:
                continue
            unit = (q.code or q.unit or "").strip().lower()
            if unit == "mg":
                return q.value
            if unit == "g":
                return q.value * 1000
    return None


def _order_date(order: MedicationRequest, where: str) -> date | None:
    if order.authoredOn:
        return parse_when(order.authoredOn, f"{where}.authoredOn")
    for dosage in order.dosageInstruction:
        period = dosage.timing.repeat.boundsPeriod if dosage.timing and dosage.timing.repeat else None
        if period and period.start:
            return parse_when(period.start, f"{where}.dosageInstruction.timing.repeat.boundsPeriod.start")
    return None


def _regimen(others: list[MedicationRequest], active: list[MedicationRequest]) -> tuple[str, str]:
    """(regimen, how it was read); raises NotScorable for combinations outside the contract."""
    drafted = {_agent_of(m.medicationCodeableConcept) for m in others} - {None, "lenalidomide"}
    current = {
        _agent_of(m.medicationCodeableConcept)
        for m in active
        if m.status == "active" and m.intent in {"order", "original-order", "plan"}
    } - {None, "lenalidomide"}
    agents = drafted | current
    via = (
        ""
        if not (current - drafted)
        else f" (with {', '.join(sorted(current - drafted))} from active orders)"
    )
    partner = sorted(a for a in agents if a in _BY_PARTNER)
    if "melphalan" in partner and len(partner) > 1:
        raise NotScorable(
            "the regimen (melphalan with another partner drug) is outside the model's regimens", []
        )
    if len(partner) > 1:
        names = ", ".join(partner)
        raise NotScorable(
            f"the regimen (lenalidomide with {names}) is a combination the models were not trained on", []
        )
    steroids = {a for a in agents if AGENT_CLASSES[a] == "steroid"}
    if not partner:
        regimen = "Rd" if "dexamethasone" in steroids else "R"
        return regimen, f"{REGIMEN_LABELS[regimen]} in the orders{via}"
    regimen = _BY_PARTNER[partner[0]]
    how = f"{REGIMEN_LABELS[regimen]} in the orders{via}"
    (steroid,) = (a for a in REGIMEN_AGENTS[regimen] if AGENT_CLASSES[a] == "steroid")
    if steroid not in steroids:
        how += f"; no {steroid} order found, scored as {regimen}"
    return regimen, how


def _conditions(conditions: list[Condition]) -> dict[str, Any]:
    found: dict[str, Any] = {"disease": set(), "setting": set(), "dialysis": False, "comorbidities": set()}
    found["snomed_only"] = 0
    for c in conditions:
        if status_code(c.verificationStatus) in _EXCLUDED_VERIFICATION:
            continue
        clinical = status_code(c.clinicalStatus)
        active = clinical is None or clinical in _ACTIVE
        rows = [r for code in codes(c.code, *ICD10) for r in condition_matches("icd10", code)]
        rows += [r for code in codes(c.code, SNOMED) for r in condition_matches("snomed", code)]
        if not codes(c.code, *ICD10) and codes(c.code, SNOMED) and not rows:
            found["snomed_only"] += 1
        for r in rows:
            if r["maps_to"] == "comorbidity":
                if active or r["value"] == "vte":  # a past VTE counts as prior VTE
                    found["comorbidities"].add(r["value"])
            elif not active:
                continue
            elif r["maps_to"] == "disease":
                found["disease"].add(r["value"])
            elif r["maps_to"] == "setting":
                found["setting"].add(r["value"])
            elif r["maps_to"] == "dialysis":
                found["dialysis"] = True
    return found


def _latest(observations: list[Observation], loincs: set[str], order_date: date) -> Observation | None:
    usable = []
    for o in observations:
        if o.status not in _USABLE_OBSERVATION or not set(codes(o.code, LOINC)) & loincs:
            continue
        when = parse_when(o.effectiveDateTime or o.issued, f"Observation/{o.id}.effectiveDateTime")
        if when is None or when > order_date + timedelta(days=1) or order_date - when > OBSERVATION_MAX_AGE:
            continue
        usable.append((when, o))
    return max(usable, key=lambda u: u[0])[1] if usable else None


def _quantity(o: Observation, units: dict[str, float]) -> float | None:
    q = o.valueQuantity
    if q is None or q.value is None:
        return None
    factor = units.get((q.code or q.unit or "").strip())
    return None if factor is None else q.value * factor


def _ecog(o: Observation | None) -> int | None:
    if o is None:
        return None
    if o.valueInteger is not None:
        value = o.valueInteger
    elif o.valueQuantity is not None and o.valueQuantity.value is not None:
        value = o.valueQuantity.value
    else:
        answer = codes(o.valueCodeableConcept, LOINC)
        value = _ECOG_ANSWERS.get(answer[0]) if answer else None
    if value is None or value != int(value) or not 0 <= value <= 4:
        return None
    return int(value)


def _sexes(patient: Patient) -> tuple[list[str], str | None, str]:
    """(alternatives, note when not male/female, how read)."""
    if patient.gender in ("male", "female"):
        return [patient.gender], None, f"{patient.gender} (Patient.gender)"
    birth_sex = next((e.valueCode for e in patient.extension if e.url == US_CORE_BIRTHSEX), None)
    recorded = patient.gender or "not recorded"
    if birth_sex in ("F", "M"):
        sex = "female" if birth_sex == "F" else "male"
        return [sex], None, f"{sex} (US Core birth sex; Patient.gender is {recorded})"
    note = (
        f"Sex: Patient.gender is {recorded} and no US Core birth sex is recorded; the models need male or "
        "female, so the risks were computed for both and are shown as a range"
    )
    return ["female", "male"], note, f"not male/female ({recorded}): both computed"


def map_call(
    *,
    patient: Patient,
    order: Order,
    other_orders: list[MedicationRequest],
    active_orders: list[MedicationRequest],
    conditions: list[Condition],
    observations: list[Observation],
    overrides: dict[str, Any],
    unavailable: list[str],
    today: date | None = None,
) -> Mapped:
    """Contract inputs for the lenalidomide ``order``; raises NotScorable when the models cannot apply."""
    read: list[str] = []
    missing: list[str] = [f"{what} could not be obtained from the EHR" for what in unavailable]
    today = today or datetime.now(UTC).date()
    order_date = _order_date(order.parsed, f"MedicationRequest/{order.parsed.id}") or today
    # age
    birth = parse_when(patient.birthDate, f"Patient/{patient.id}.birthDate")
    if birth is None:
        raise NotScorable("the patient's birth date is not recorded, so age is unknown", missing)
    age = age_at(birth, order_date)
    if patient.birthDate and len(patient.birthDate) < 10:
        missing.append(
            f"Age: birthDate is only partial ({len(patient.birthDate)} characters); age {age} is approximate"
        )
    young, old = _range("age")
    if age < young:
        raise NotScorable(f"the models apply to adults ({young:g} or older)", missing)
    if age > old:
        missing.append(f"Age {age} is above the contract's {old:g} years; scored as {old:g}")
        age = int(old)
    read.append(f"Age {age} years at the order date {order_date.isoformat()} (Patient.birthDate)")
    # sex
    sexes, sex_note, sex_read = _sexes(patient)
    read.append(f"Sex: {sex_read}")
    if sex_note:
        missing.append(sex_note)
    # regimen and dose
    regimen, regimen_read = _regimen(other_orders, active_orders)
    read.append(f"Regimen {regimen}: {regimen_read}")
    dose = order.dose_mg
    if dose is None:
        raise NotScorable(
            "the lenalidomide order has no dose in mg (dosageInstruction.doseAndRate.doseQuantity)", missing
        )
    low, high = _range("start_dose_mg")
    if not low <= dose <= high:
        raise NotScorable(
            f"the lenalidomide dose {dose:g} mg is outside the models' range {low:g}-{high:g} mg", missing
        )
    read.append(f"Starting dose {dose:g} mg (lenalidomide order)")
    # setting
    found = _conditions(conditions)
    settings = _settings(found, overrides, read, missing)
    # prior lines
    prior = overrides.get("prior_lines")
    if prior is not None:
        read.append(f"Prior lines {prior} (request extension)")
    elif settings != ["newly_diagnosed"]:
        missing.append(
            "Prior lines of therapy are not coded in FHIR; scored as 0 when newly diagnosed and 1 otherwise "
            "(send the request extension `lenrisk-prior-lines` to give the number)"
        )
    # renal function
    crcl_by_sex = _renal(observations, order_date, age, sexes, read, missing)
    if found["dialysis"]:
        read.append("Dialysis: yes (ICD-10 N18.6 / Z99.2 / Z49 condition)")
    else:
        read.append("Dialysis: no dialysis condition found")
    # ECOG
    ecog = _ecog(_latest(observations, set(loinc("ecog")), order_date))
    if ecog is None:
        missing.append(
            f"ECOG performance status ({_loinc_words('ecog')}) within {OBSERVATION_MAX_AGE.days} days: "
            "not found"
        )
    else:
        read.append(f"ECOG {ecog} ({_loinc_words('ecog')})")
    # comorbidities
    present = sorted(found["comorbidities"], key=COMORBIDITIES.index)
    read.append(
        "Comorbidities: "
        + (", ".join(COMORBIDITY_LABELS[c] for c in present) if present else "none coded")
        + " (ICD-10, Quan 2005)"
    )
    if found["snomed_only"]:
        missing.append(
            f"{found['snomed_only']} condition(s) coded in SNOMED CT only were not checked for comorbidities"
        )
    fixed = {
        "age": float(age),
        "regimen": regimen,
        "start_dose_mg": float(dose),
        "dialysis": int(found["dialysis"]),
        "ecog": ecog,
        "prior_lines": prior,
        **{f"cm_{c}": int(c in found["comorbidities"]) for c in COMORBIDITIES},
    }
    return Mapped(
        fixed=fixed,
        sexes=sexes,
        settings=settings,
        crcl_by_sex=crcl_by_sex,
        order=order,
        read=read,
        missing=missing,
    )


def _settings(
    found: dict[str, Any], overrides: dict[str, Any], read: list[str], missing: list[str]
) -> list[str]:
    if overrides.get("setting"):
        read.append(f"Setting {overrides['setting']} (request extension)")
        return [overrides["setting"]]
    diseases = found["disease"]
    if not diseases:
        raise NotScorable(
            "no active multiple myeloma (ICD-10 C90.0, SNOMED 109989006) or AL amyloidosis "
            "(ICD-10-CM E85.81, SNOMED 23132008) condition was found",
            missing,
        )
    settings = []
    if "al_amyloidosis" in diseases:
        settings.append("al_amyloidosis")
    if "myeloma" in diseases:
        phases = sorted(found["setting"], key=SETTINGS.index)
        settings.extend(phases or MYELOMA_SETTINGS)
        if not phases:
            missing.append(
                "Myeloma phase: the condition codes do not say newly diagnosed, maintenance or relapsed "
                "(ICD-10-CM C90.00/.01/.02); every myeloma setting was scored and the range is shown"
            )
    if len(diseases) > 1:
        missing.append("Both myeloma and AL amyloidosis are coded; both settings were scored")
    read.append("Setting: " + ", ".join(s.replace("_", " ") for s in settings) + " (coded conditions)")
    return settings


def _renal(
    observations: list[Observation],
    order_date: date,
    age: float,
    sexes: list[str],
    read: list[str],
    missing: list[str],
) -> dict[str, float | None]:
    low, high = _range("crcl_ml_min")

    def clip(value: float, how: str) -> float:
        if not low <= value <= high:
            missing.append(
                f"Renal function {value:.0f} mL/min ({how}) is outside {low:g}-{high:g} mL/min; clipped"
            )
        return round(min(max(value, low), high), 1)

    measured = _latest(observations, set(loinc("crcl")), order_date)
    value = _quantity(measured, {"mL/min": 1.0}) if measured else None
    if value is not None:
        read.append(f"Creatinine clearance {value:.0f} mL/min (measured, {_loinc_words('crcl')})")
        return dict.fromkeys(sexes, clip(value, "measured"))
    creatinine = _latest(observations, set(loinc("creatinine")), order_date)
    weight = _latest(observations, set(loinc("weight")), order_date)
    scr = (
        _quantity(creatinine, {"mg/dL": 1.0, "umol/L": 1 / 88.4, "µmol/L": 1 / 88.4}) if creatinine else None
    )
    kg = (
        _quantity(weight, {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237})
        if weight
        else None
    )
    if scr is not None and kg is not None and scr > 0:
        by_sex = {
            s: clip(
                cockcroft_gault(age=age, weight_kg=kg, creatinine_mg_dl=scr, female=s == "female"),
                "Cockcroft-Gault",
            )
            for s in sexes
        }
        shown = " / ".join(f"{v:.0f}" for v in by_sex.values())
        read.append(
            f"Creatinine clearance {shown} mL/min by Cockcroft-Gault (Nephron 1976) from serum creatinine "
            f"{scr:.2f} mg/dL, weight {kg:.0f} kg, age {age:.0f}"
        )
        return by_sex
    egfr = _latest(observations, set(loinc("egfr")), order_date)
    value = _quantity(egfr, {"mL/min/{1.73_m2}": 1.0, "mL/min/1.73m2": 1.0, "mL/min": 1.0}) if egfr else None
    if value is not None:
        code = next(c for c in loinc("egfr") if c in codes(egfr.code, LOINC))
        read.append(f"Renal function from eGFR {value:.0f} mL/min/1.73 m² (LOINC {code}; no CrCl available)")
        if scr is not None and kg is None:
            missing.append(
                f"Body weight ({_loinc_words('weight')}) not found, so Cockcroft-Gault could not be computed"
            )
        return dict.fromkeys(sexes, clip(value, "eGFR"))
    parts = []
    if scr is None:
        parts.append(f"serum creatinine ({_loinc_words('creatinine')})")
    if kg is None:
        parts.append(f"body weight ({_loinc_words('weight')})")
    missing.append(
        f"Renal function unknown: no creatinine clearance, eGFR, or {' and '.join(parts)} within "
        f"{OBSERVATION_MAX_AGE.days} days; the models treat it as unknown"
    )
    return dict.fromkeys(sexes, None)


def _range(name: str) -> tuple[float, float]:
    """The contract's range of column ``name`` (``features.schema``)."""
    column = COLUMNS_BY_NAME[name]
    return float(column.minimum), float(column.maximum)


def check_subject(reference: str | None, patient_id: str, where: str) -> None:
    """Refuse a resource about another patient than the one in context (a mixed-up prefetch)."""
    if reference is None:
        return
    if reference.rsplit("/", 2)[-2:] != ["Patient", patient_id]:
        raise FhirInputError(
            f"{where}: subject does not reference the patient in context (Patient/{patient_id})"
        )
