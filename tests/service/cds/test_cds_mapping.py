"""The FHIR -> contract mapping of the CDS Hooks service (FHIR inputs from ``fhir_builders``)."""

from __future__ import annotations

import pytest

from service.cds import cards
from service.cds.fhir import FhirInputError, entries, parse_resource, resources
from service.cds.mapping import (
    NotScorable,
    age_at,
    cockcroft_gault,
    find_lenalidomide,
    map_call,
)
from tests.service.cds.fhir_builders import (
    SNOMED,
    bundle,
    condition,
    lenalidomide,
    med,
    observation,
    patient,
    rvd_orders,
    searchset,
)


def _map(orders=None, pat=None, conds=None, obs=None, overrides=None, active=None):
    orders = orders if orders is not None else rvd_orders()
    parsed = entries(bundle(orders), "context.draftOrders")
    order = find_lenalidomide(parsed, [])
    assert order is not None
    return map_call(
        patient=parse_resource(pat or patient(), "prefetch.patient"),
        order=order,
        other_orders=[p for _, p in parsed if p is not order.parsed],
        active_orders=active or [],
        conditions=resources(
            searchset(conds if conds is not None else [condition("C90.02")]), "c", ("Condition",)
        ),
        observations=resources(searchset(obs if obs is not None else []), "o", ("Observation",)),
        overrides=overrides or {},
        unavailable=[],
    )


def test_age_is_completed_years_at_the_order_date():
    from datetime import date

    assert age_at(date(1951, 3, 15), date(2026, 3, 14)) == 74
    assert age_at(date(1951, 3, 15), date(2026, 3, 15)) == 75
    # the order is authored 2026-01-10: born 1951-01-11 -> still 74, born 1951-01-10 -> 75
    assert _map(pat=patient(birth="1951-01-11")).fixed["age"] == 74
    assert _map(pat=patient(birth="1951-01-10")).fixed["age"] == 75


def test_cockcroft_gault_matches_a_hand_calculation():
    # (140 - 74) * 80 / (72 * 1.2) = 5280 / 86.4 = 61.11 mL/min; female x 0.85 = 51.94
    assert cockcroft_gault(age=74, weight_kg=80, creatinine_mg_dl=1.2, female=False) == pytest.approx(
        61.111, abs=1e-3
    )
    assert cockcroft_gault(age=74, weight_kg=80, creatinine_mg_dl=1.2, female=True) == pytest.approx(
        51.944, abs=1e-3
    )
    obs = [observation("2160-0", 1.2, "mg/dL"), observation("29463-7", 80, "kg")]
    mapped = _map(pat=patient(birth="1951-01-01"), obs=obs)  # 75 at 2026-01-10
    assert mapped.crcl_by_sex == {"male": pytest.approx((140 - 75) * 80 / 86.4, abs=0.05)}
    # SI creatinine (umol/L): 106.08 umol/L = 1.2 mg/dL
    mapped = _map(obs=[observation("2160-0", 106.08, "umol/L"), observation("29463-7", 80, "kg")])
    assert mapped.crcl_by_sex["male"] == pytest.approx(61.1, abs=0.1)


def test_measured_clearance_wins_and_egfr_is_the_fallback():
    obs = [
        observation("2164-2", 48, "mL/min"),
        observation("2160-0", 1.2, "mg/dL"),
        observation("29463-7", 80, "kg"),
    ]
    assert _map(obs=obs).crcl_by_sex == {"male": 48.0}
    mapped = _map(obs=[observation("98979-8", 55, "mL/min/{1.73_m2}")])
    assert mapped.crcl_by_sex == {"male": 55.0}
    assert any("eGFR" in line for line in mapped.read)


def test_stale_or_missing_renal_function_is_named():
    mapped = _map(obs=[observation("2160-0", 1.2, "mg/dL", when="2024-01-01")])
    assert mapped.crcl_by_sex == {"male": None}
    assert any("Renal function unknown" in m for m in mapped.missing)


@pytest.mark.parametrize("gender", ["other", "unknown", None])
def test_sex_other_or_unknown_is_computed_both_ways_and_flagged(gender):
    obs = [observation("2160-0", 1.2, "mg/dL"), observation("29463-7", 80, "kg")]
    mapped = _map(pat=patient(gender=gender), obs=obs)
    assert mapped.sexes == ["female", "male"]
    assert any(m.startswith("Sex:") for m in mapped.missing)
    rows = mapped.rows()
    assert {r["sex"] for r in rows} == {"female", "male"}
    female = next(r for r in rows if r["sex"] == "female")
    male = next(r for r in rows if r["sex"] == "male")
    assert female["crcl_ml_min"] == pytest.approx(male["crcl_ml_min"] * 0.85, abs=0.1)


def test_us_core_birth_sex_is_used_when_gender_is_other():
    ext = [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"}]
    mapped = _map(pat=patient(gender="other", extension=ext))
    assert mapped.sexes == ["female"]
    assert not any(m.startswith("Sex:") for m in mapped.missing)


@pytest.mark.parametrize(
    ("partners", "regimen"),
    [
        ([], "R"),
        ([("3264", "dexamethasone")], "Rd"),
        ([("358258", "bortezomib"), ("3264", "dexamethasone")], "RVd"),
        ([("3002", "cyclophosphamide"), ("3264", "dexamethasone")], "RCd"),
        ([("1302966", "carfilzomib"), ("3264", "dexamethasone")], "KRd"),
        ([("1721947", "daratumumab"), ("3264", "dexamethasone")], "DRd"),
        ([("1723735", "ixazomib"), ("3264", "dexamethasone")], "IRd"),
        ([("1726104", "elotuzumab"), ("3264", "dexamethasone")], "ERd"),
        ([("6718", "melphalan"), ("8640", "prednisone")], "MPR"),
    ],
)
def test_regimen_from_partner_drugs(partners, regimen):
    orders = [lenalidomide(), *(med(f"m{i}", code, name, 1) for i, (code, name) in enumerate(partners))]
    assert _map(orders=orders).fixed["regimen"] == regimen


def test_quadruplet_is_not_scored_but_said():
    orders = [*rvd_orders(), med("dara", "1721947", "daratumumab", 1800)]
    with pytest.raises(NotScorable, match="not trained on"):
        _map(orders=orders)


@pytest.mark.parametrize(
    ("conds", "settings"),
    [
        ([condition("E85.81")], ["al_amyloidosis"]),
        ([condition("23132008", system=SNOMED)], ["al_amyloidosis"]),
        ([condition("C90.00")], ["newly_diagnosed"]),
        ([condition("C90.01")], ["maintenance"]),
        ([condition("C90.02")], ["relapsed_refractory"]),
        ([condition("109989006", system=SNOMED)], ["newly_diagnosed", "maintenance", "relapsed_refractory"]),
    ],
)
def test_setting_from_conditions(conds, settings):
    mapped = _map(conds=conds)
    assert mapped.settings == settings
    if len(settings) > 1:
        assert any("Myeloma phase" in m for m in mapped.missing)


def test_no_myeloma_or_al_condition_is_not_scored():
    with pytest.raises(NotScorable, match="no active multiple myeloma"):
        _map(conds=[condition("I50.9")])


def test_dialysis_and_comorbidities_from_icd10():
    conds = [
        condition("C90.02"),
        condition("N18.6", cid="c2"),
        condition("E11.9", cid="c3"),
        condition("Z86.71", cid="c4", status="resolved"),
        condition("J44.9", cid="c5", status="resolved"),
    ]
    fixed = _map(conds=conds).fixed
    assert fixed["dialysis"] == 1
    assert (fixed["cm_diabetes"], fixed["cm_vte"], fixed["cm_pulmonary"], fixed["cm_cardiac"]) == (1, 1, 0, 0)


def test_missing_dose_is_not_guessed():
    orders = [med("len-1", "342369", "lenalidomide"), med("dex-1", "3264", "dexamethasone", 40)]
    with pytest.raises(NotScorable, match="no dose"):
        _map(orders=orders)


def test_prior_lines_default_is_flagged_and_extension_wins():
    mapped = _map()
    assert mapped.rows()[0]["prior_lines"] == 1
    assert any("Prior lines" in m for m in mapped.missing)
    assert _map(overrides={"prior_lines": 3}).rows()[0]["prior_lines"] == 3


def test_dose_ladder_and_revised_order_keep_the_resource_whole():
    assert [cards.next_lower_dose(d) for d in (25, 20, 15, 10, 5, 2.5)] == [15, 15, 10, 5, None, None]
    original = lenalidomide(25)
    revised = cards.revise_dose(original, 25, 15)
    assert original["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 25  # not mutated
    assert revised["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 15
    assert revised["dosageInstruction"][0]["text"].startswith("15 mg")
    assert revised["medicationCodeableConcept"]["coding"][0]["code"] == "643712"  # 15 MG Oral Capsule
    assert {k for k in original if k != "note"} <= set(revised)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"resourceType": "Condition", "id": "c9", "code": {"coding": "x"}, "subject": {}}, "Condition/c9"),
        ({"resourceType": "Observation", "id": "o1", "status": "final"}, "Observation/o1: code"),
        ({"resourceType": "Patient", "id": "p", "gender": "m"}, "Patient/p: gender"),
        ({"id": "x"}, "resourceType is missing"),
        ("not a resource", "expected a FHIR resource"),
    ],
)
def test_malformed_resources_name_the_resource(raw, message):
    with pytest.raises(FhirInputError, match=message):
        resources(searchset([patient(), raw]), "prefetch.x", ("Patient", "Condition", "Observation"))


def test_every_ordered_agent_has_a_class_and_every_partner_one_regimen():
    """The mapping derives regimens from ``features.schema``: each RxNorm agent must be classed there, and
    each partner agent must name exactly one regimen, with exactly one steroid."""
    from features.schema import AGENT_CLASSES, REGIMEN_AGENTS, partners
    from service.cds.mapping import tables

    assert set(tables().agents.values()) <= set(AGENT_CLASSES)
    single = {r: partners(r) for r in REGIMEN_AGENTS if len(partners(r)) == 1}
    assert sorted(p for (p,) in single.values()) == sorted({p for (p,) in single.values()})
    for regimen in single:
        assert [a for a in REGIMEN_AGENTS[regimen] if AGENT_CLASSES[a] == "steroid"], regimen
