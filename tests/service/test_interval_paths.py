"""Issue 14, "Done when": the same record gets the same uncertainty interval on every path.

A handful of records is read from FHIR by the CDS Hooks service (so the card is about exactly these rows):
a relapsed man with Cockcroft-Gault renal function, a newly diagnosed woman whose renal function and ECOG
are unknown (imputed: still an interval), a woman with measured creatinine clearance and ECOG 2, and two
records outside the training data, which must get no interval on any path: a maintenance line (a setting
the session's models never saw) and a patient older than every training line.

The reference is ``/v1/predict``. Numeric paths (``/v1/predict/batch``, ``lenrisk score --interval`` with
the local and the Spark engine, the registered MLflow pyfunc's ``lower``/``upper``) must agree within
1e-9 and be null/NaN where it is null; the card's "95% range" text and the calculator page's range text
(whole percent) must be the API's bounds rounded to whole percent, halves up (as the page's
``Math.round``), or say there is none.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from decimal import ROUND_HALF_UP, Decimal

import jwt
import mlflow
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from features.schema import OUTCOMES
from service.api.app import create_app
from service.cds import cards
from tests.helpers import registry_service_settings
from tests.service.batch.test_spark_scoring import spark  # noqa: F401  (the session's Spark fixture)
from tests.service.cds.fhir_builders import (
    condition,
    ecog,
    full_prefetch,
    hook_request,
    lenalidomide,
    med,
    observation,
    patient,
    rvd_orders,
    searchset,
)
from tests.service.cds.test_cds_hooks import BASE, ISSUER, SIGN, mint
from tests.service.ui.test_calculator_page import _fill, browser, live, page  # noqa: F401

pytestmark = pytest.mark.slow  # the session's trained models (`trained`: ~10 s once)

TOLERANCE = 1e-9
CARD_ROWS = {"discontinuation": "Early stop for toxicity", "dose_reduction": "Dose reduction"}
Bounds = tuple[float, float] | None  # (lower, upper), None: no interval


def _dexamethasone():
    return med("dex-1", "3264", "dexamethasone", 40)


def _fhir_cases(top_age: float) -> dict[str, dict]:
    """Hook requests, one per record; ``top_age`` is the oldest training line's age."""
    older = full_prefetch()
    older["patient"] = patient(birth=f"{2026 - int(top_age) - 3}-01-01")  # the orders are of 2026-01-10
    unknowns = full_prefetch() | {
        "patient": patient(gender="female", birth="1958-06-02"),
        "conditions": searchset([condition("C90.00"), condition("E11.9", cid="c2")]),
        "creatinine": None,
        "weight": None,
        "ecog": searchset([]),
    }
    measured = full_prefetch() | {
        "patient": patient(gender="female", birth="1947-11-20"),
        "conditions": searchset([condition("C90.02"), condition("J44.9", cid="c2")]),
        "crcl": searchset([observation("2164-2", 43.5, "mL/min")]),
        "ecog": searchset([ecog(2)]),
    }
    maintenance = full_prefetch() | {"conditions": searchset([condition("C90.01")])}
    return {
        "relapsed": hook_request("order-sign", rvd_orders(), full_prefetch()),
        "unknowns": hook_request("order-sign", [lenalidomide(10), _dexamethasone()], unknowns),
        "measured": hook_request("order-sign", [lenalidomide(15), _dexamethasone()], measured),
        "maintenance": hook_request("order-sign", [lenalidomide(10)], maintenance),
        "older": hook_request("order-sign", rvd_orders(), older),
    }


OUTSIDE = ("maintenance", "older")


def _api_bounds(answer: dict) -> dict[str, Bounds]:
    out = {}
    for outcome in OUTCOMES:
        interval = answer[outcome]["interval"]
        if interval is not None:
            assert interval["level"] == 0.95
        out[outcome] = None if interval is None else (interval["lower"], interval["upper"])
    return out


def _bounds(lower: float, upper: float) -> Bounds:
    """A path's bounds as numbers; NaN or None on both sides is no interval (one-sided is an error)."""
    missing = [v is None or math.isnan(v) for v in (lower, upper)]
    assert missing[0] == missing[1], (lower, upper)
    return None if missing[0] else (float(lower), float(upper))


def _assert_same(path: str, got: dict[str, dict[str, Bounds]], reference: dict[str, dict[str, Bounds]]):
    """Every record's and outcome's bounds on ``path`` are the reference's, within :data:`TOLERANCE`."""
    assert got.keys() == reference.keys(), path
    for case, outcomes in reference.items():
        for outcome, expected in outcomes.items():
            shown = got[case][outcome]
            where = f"{path}: {case} {outcome}: {shown} != {expected}"
            if expected is None:
                assert shown is None, where
            else:
                assert shown is not None, where
                assert abs(shown[0] - expected[0]) <= TOLERANCE, where
                assert abs(shown[1] - expected[1]) <= TOLERANCE, where


def whole_percent(p: float) -> int:
    """A risk in whole percent, halves up: JavaScript's ``Math.round(p * 100)`` (the calculator's rule) for
    p >= 0, on the exact value of the float product."""
    return int(Decimal(p * 100).to_integral_value(rounding=ROUND_HALF_UP))


def _card_range(detail: str, outcome: str) -> str:
    line = next(line for line in detail.splitlines() if line.startswith(f"| {CARD_ROWS[outcome]} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][2]


@pytest.fixture(scope="module")
def served(registry, tmp_path_factory) -> dict:
    """The records as the CDS service read them, its cards, and the API's single and batch answers."""
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "ehr-key-1"}
    issuers = {ISSUER: {"client": "ehr-a", "jwks": {"keys": [jwk]}, "fhir_servers": []}}
    top = registry["result"].outcomes["discontinuation"].model.encoder.ranges_["age"]["max"]
    audit = tmp_path_factory.mktemp("paths") / "audit.db"
    scored: list[list[dict]] = []
    built = cards.risk_card

    def spy(mapped, predictions, rows, **kwargs):
        scored.append([dict(r) for r in rows])
        return built(mapped, predictions, rows, **kwargs)

    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as stack:
        patch.setenv("LENRISK_CDS_ISSUERS", json.dumps(issuers))
        patch.setenv("LENRISK_CDS_PUBLIC_BASE_URL", BASE)
        patch.setattr(cards, "risk_card", spy)
        client = stack.enter_context(
            TestClient(create_app(registry_service_settings(registry, f"sqlite:///{audit}")))
        )
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "models not loaded within 60 s"
            time.sleep(0.05)
        records, card_details = {}, {}
        for case, request in _fhir_cases(top).items():
            headers = {"Authorization": f"Bearer {mint(key, BASE + SIGN)}"}
            response = client.post(SIGN, json=request, headers=headers)
            assert response.status_code == 200, response.text
            (card,) = response.json()["cards"]
            [row] = scored.pop()  # one reading of the record: sex and setting are coded
            records[case], card_details[case] = row, card["detail"]
        single = {}
        for case, record in records.items():
            response = client.post("/v1/predict", json=record)
            assert response.status_code == 200, response.text
            single[case] = response.json()
        batch = client.post("/v1/predict/batch", json={"records": list(records.values())})
        assert batch.status_code == 200, batch.text
    reference = {case: _api_bounds(answer) for case, answer in single.items()}
    return {
        "records": records,
        "cards": card_details,
        "single": single,
        "batch": dict(zip(records, batch.json()["results"], strict=True)),
        "reference": reference,
        "top_age": top,
    }


def _batch_lines(served: dict) -> pd.DataFrame:
    """The records as a registry file, one line each, named by case."""
    return pd.DataFrame([{"patient_id": case, **row} for case, row in served["records"].items()])


def _file_bounds(path) -> dict[str, dict[str, Bounds]]:
    scored = pq.read_table(path).to_pandas()
    return {
        line.patient_id: {
            o: _bounds(getattr(line, f"{o}_lower"), getattr(line, f"{o}_upper")) for o in OUTCOMES
        }
        for line in scored.itertuples()
    }


def test_the_records_are_varied_and_two_lie_outside_the_training_data(served):
    records, reference = served["records"], served["reference"]
    assert records["unknowns"]["crcl_ml_min"] is None and records["unknowns"]["ecog"] is None
    assert records["measured"]["crcl_ml_min"] == 43.5 and records["measured"]["sex"] == "female"
    assert records["maintenance"]["setting"] == "maintenance"
    assert records["older"]["age"] > served["top_age"]
    assert {r["regimen"] for r in records.values()} == {"RVd", "Rd", "R"}
    for case, answer in served["single"].items():
        kinds = {w["kind"] for w in answer["warnings"]}
        assert bool(kinds & {"outside_training_range", "not_seen_in_training"}) == (case in OUTSIDE), case
        for outcome, bounds in reference[case].items():
            if case in OUTSIDE:
                assert bounds is None, case
            else:  # a real interval around the served risk
                assert 0 < bounds[0] < answer[outcome]["probability"] < bounds[1] < 1, case
    assert "unknown" in {w["kind"] for w in served["single"]["unknowns"]["warnings"]}


def test_batch_api_local_batch_scoring_pyfunc_and_card_give_the_apis_interval(
    served, registry, lenrisk, tmp_path
):
    reference = served["reference"]
    _assert_same("/v1/predict/batch", {c: _api_bounds(a) for c, a in served["batch"].items()}, reference)

    pq.write_table(pa.Table.from_pandas(_batch_lines(served), preserve_index=False), tmp_path / "in.parquet")
    result = lenrisk("--input", tmp_path / "in.parquet", "--output", tmp_path / "out.parquet", "--interval")
    assert result.exit_code == 0, result.output
    _assert_same("lenrisk score --interval (local)", _file_bounds(tmp_path / "out.parquet"), reference)

    mlflow.set_tracking_uri(registry["settings"].tracking_uri)
    lines = _batch_lines(served).drop(columns="patient_id")
    pyfunc = {case: {} for case in served["records"]}
    for outcome in OUTCOMES:
        name = registry["result"].outcomes[outcome].model_name
        out = mlflow.pyfunc.load_model(f"models:/{name}/1").predict(lines)
        for case, lower, upper in zip(served["records"], out["lower"], out["upper"], strict=True):
            pyfunc[case][outcome] = _bounds(lower, upper)
    _assert_same("MLflow pyfunc", pyfunc, reference)

    for case, detail in served["cards"].items():
        for outcome, bounds in reference[case].items():
            shown = _card_range(detail, outcome)
            if bounds is None:
                assert shown == "none: outside the development data", (case, outcome)
            else:
                lo, hi = (whole_percent(b) for b in bounds)
                assert lo < hi, (case, outcome)
                assert shown == f"{lo}–{hi}%", (case, outcome)


@pytest.mark.external  # Java: Spark runs in a JVM
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_the_spark_engine_gives_the_apis_interval(served, spark, lenrisk, tmp_path):  # noqa: F811
    pq.write_table(pa.Table.from_pandas(_batch_lines(served), preserve_index=False), tmp_path / "in.parquet")
    args = ["--input", tmp_path / "in.parquet", "--output", tmp_path / "out"]
    result = lenrisk(*args, "--interval", "--engine", "spark")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["engine"] == "spark"
    got = _file_bounds(tmp_path / "out" / "scored")
    _assert_same("lenrisk score --interval --engine spark", got, served["reference"])


@pytest.mark.external  # Chromium
def test_the_calculator_shows_the_apis_interval(served, page, live):  # noqa: F811
    """The page posts the record to /v1/predict and shows the range it answers: checked on what is shown
    (whole percent) and on the exact bounds the page kept (``data-lower``/``data-upper``)."""
    sent: list[dict] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/v1/predict") else None)
    page.goto(f"{live}/")
    shown: dict[str, dict[str, Bounds]] = {}
    for case, record in served["records"].items():
        page.evaluate("document.getElementById('results').replaceChildren()")
        _fill(page, record)
        page.click("#submit")
        page.wait_for_selector("#result-dose_reduction .range")
        assert {k: sent[-1].get(k) for k in record} == record, case  # the page scored this very record
        shown[case] = {}
        for outcome, bounds in served["reference"][case].items():
            card = f"#result-{outcome}"
            if bounds is None:
                assert page.locator(f"{card} .range-text").count() == 0, case
                assert page.inner_text(f"{card} .range-none").startswith(
                    "No range: this patient lies outside"
                )
                shown[case][outcome] = None
                continue
            text = page.locator(f"{card} .range-text")
            assert text.inner_text() == f"{whole_percent(bounds[0])}%–{whole_percent(bounds[1])}%", case
            shown[case][outcome] = (
                float(text.get_attribute("data-lower")),
                float(text.get_attribute("data-upper")),
            )
    _assert_same("calculator page", shown, served["reference"])
    assert len(sent) == len(served["records"])
    assert page.problems == []


#: Bounds whose percentages are exact halves in float64 (12.5%, 24.5%, 37.5%, 62.5%): where rounding
#: halves to even (Python's ``round``) and halves up (``Math.round``) part.
HALVES = {"discontinuation": (0.125, 0.245), "dose_reduction": (0.375, 0.625)}


@pytest.mark.external  # Chromium
def test_a_half_percent_bound_reads_alike_on_card_and_page(served, predictor, page, live):  # noqa: F811
    """The card and the page round the same interval alike: the service's real answer for a record, with
    bounds set on half percents (what a real interval hits only by chance), shown by each."""
    record = served["records"]["relapsed"]
    answer = copy.deepcopy(served["single"]["relapsed"])
    [prediction] = predictor.predict_rows([record])
    outcomes = {}
    for outcome, (lower, upper) in HALVES.items():
        assert all((b * 100) % 1 == 0.5 for b in (lower, upper))
        answer[outcome]["interval"] = {"lower": lower, "upper": upper, "level": 0.95}
        outcomes[outcome] = dataclasses.replace(prediction.outcomes[outcome], interval=(lower, upper, 0.95))
    halved = dataclasses.replace(prediction, outcomes=outcomes)

    page.route("**/v1/predict", lambda route: route.fulfill(status=200, json=answer))
    page.goto(f"{live}/")
    _fill(page, record)
    page.click("#submit")
    page.wait_for_selector("#result-dose_reduction .range-text")
    for outcome, (lower, upper) in HALVES.items():
        expected = (whole_percent(lower), whole_percent(upper))
        assert page.inner_text(f"#result-{outcome} .range-text") == "{}%–{}%".format(*expected)
        assert cards._range([halved], outcome) == "{}–{}%".format(*expected), outcome
    assert page.problems == []
