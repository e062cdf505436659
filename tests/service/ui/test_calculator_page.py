"""The clinician's calculator page at ``/``: served from the contract, self-contained, and driven end to end.

The unit tests read the page through a TestClient: every contract field is a labelled control, nothing is
loaded from another origin, the page carries a strict Content-Security-Policy, it is not in the OpenAPI
document, and it loads without an API key when authentication is on.

The end-to-end tests start the real app under uvicorn on a free loopback port (models from the session's
MLflow registry) and drive Debian's Chromium headless through Playwright: a 78-year-old man on RVd gets
the same percentages the JSON API gives for the same record; age 150 gets the service's 422 shown next to
the age field; with authentication on the page says the deployment must provide access. Screenshots go to
``test-artifacts/`` (git-ignored); with ``LENRISK_UPDATE_SCREENSHOT=1`` the wide one is also copied to
``docs/calculator.png``. Chromium is not downloaded by Playwright here: without ``/usr/bin/chromium`` (or
``LENRISK_CHROMIUM``) these tests fail with the install command; they never skip.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest
import uvicorn

from features.record import PatientRecord
from features.schema import COMORBIDITY_COLUMNS, OUTCOMES, RECORD_COLUMNS, REGIMEN_LABELS, Kind
from service.api.app import create_app
from service.security import digest
from service.settings import ServiceSettings
from service.ui.routes import ASSETS, label
from tests.helpers import REPO_ROOT, registry_service_settings

pytestmark = pytest.mark.slow  # every test uses the session's trained models (`trained`: ~10 s once)

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = Path(os.environ.get("LENRISK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: A 78-year-old man starting RVd at relapse; creatinine clearance unknown (left empty in the form).
RECORD = {
    "age": 78,
    "sex": "male",
    "regimen": "RVd",
    "setting": "relapsed_refractory",
    "start_dose_mg": 15,
    "crcl_ml_min": None,
    "dialysis": 0,
    "ecog": 2,
    "prior_lines": 1,
    **{c: int(c in ("cm_cardiac", "cm_neuropathy")) for c in COMORBIDITY_COLUMNS},
}
#: A reference to another origin: absolute or protocol-relative src/href/action, CSS @import or url().
EXTERNAL = re.compile(
    r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//|https?://"""
)


def _settings(registry: dict, tmp: Path, **overrides) -> ServiceSettings:
    return registry_service_settings(registry, f"sqlite:///{tmp / 'audit.db'}", **overrides)


# ---- the page as served --------------------------------------------------------------------------------


def test_page_has_every_contract_field_and_no_external_asset(start_api, service_settings):
    client = start_api(service_settings, ready=False)
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp
    html = page.text
    for col in RECORD_COLUMNS:
        assert f'name="{col.name}"' in html, col.name
        assert f'data-field="{col.name}"' in html, col.name
        assert label(col) in html, col.name
    for code, drugs in REGIMEN_LABELS.items():
        assert f'value="{code}"' in html and drugs in html
    assert html.count('type="checkbox" id="f-cm_') == len(COMORBIDITY_COLUMNS)
    assert 'id="f-age"' in html and 'aria-describedby="age-hint age-error"' in html
    assert re.search(r"<form[^>]*\bnovalidate\b", html)
    assert 'aria-live="polite"' in html
    assert not EXTERNAL.search(html)
    assert "<style" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html)  # CSP: no inline code

    referenced = set(re.findall(r'(?:src|href)="(ui/[^"]+)"', html))
    assert referenced == {f"ui/{name}" for name in ASSETS}
    for path in referenced:
        asset = client.get("/" + path)
        assert asset.status_code == 200 and asset.headers["content-security-policy"] == csp
        text = re.sub(r'xmlns(?::\w+)?="[^"]*"', "", asset.text)  # an XML namespace names, never fetches
        assert not EXTERNAL.search(text), path
    assert client.get("/ui/../pyproject.toml").status_code == 404
    assert client.get("/ui/routes.py").status_code == 404

    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/ui") for p in paths)


def test_page_loads_without_a_key_when_authentication_is_on(start_api, registry, tmp_path):
    settings = _settings(registry, tmp_path, api_keys={"clinic": digest(secrets.token_urlsafe(32))})
    client = start_api(settings, ready=False)
    assert client.get("/").status_code == 200
    for name in ASSETS:
        assert client.get(f"/ui/{name}").status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert 'type="password"' not in client.get("/").text


# ---- end to end in Chromium -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(settings: ServiceSettings, *, ready: bool) -> Iterator[str]:
    """The real app under uvicorn in a thread on a free loopback port; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz" if ready else f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or not thread.is_alive():
                raise AssertionError(f"the app did not become {'ready' if ready else 'alive'} on {base}")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, through Playwright (no browser download); fails if it is missing."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the calculator's end-to-end tests need it. Install Debian's "
            "package (apt-get update && apt-get install -y chromium) or set LENRISK_CHROMIUM to its path.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def live(registry, tmp_path_factory) -> Iterator[str]:
    """Base URL of the real app (auth off, both models loaded)."""
    with _serve(_settings(registry, tmp_path_factory.mktemp("calculator")), ready=True) as base:
        yield base


@pytest.fixture
def page(browser):
    """A fresh page; fails the test on any console error (a CSP violation is one) or off-origin request."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    tab = context.new_page()
    problems: list[str] = []
    # Chromium logs every 4xx answer as a console error; the tests check those statuses themselves.
    answered = "Failed to load resource: the server responded with a status of 4"
    tab.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" and not m.text.startswith(answered) else None,
    )
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.on(
        "request",
        lambda r: None if r.url.startswith("http://127.0.0.1:") else problems.append(f"request to {r.url}"),
    )
    tab.problems = problems
    yield tab
    context.close()


def _fill(page, record: dict) -> None:
    page.fill("#f-age", str(record["age"]))
    page.check(f"#f-sex-{record['sex']}")
    page.check(f"#f-regimen-{record['regimen']}")
    page.select_option("#f-setting", record["setting"])
    page.fill("#f-start_dose_mg", str(record["start_dose_mg"]))
    page.fill("#f-crcl_ml_min", "" if record["crcl_ml_min"] is None else str(record["crcl_ml_min"]))
    page.set_checked("#f-dialysis", record["dialysis"] == 1)
    page.check(f"#f-ecog-{'unknown' if record['ecog'] is None else record['ecog']}")
    page.fill("#f-prior_lines", str(record["prior_lines"]))
    for c in COMORBIDITY_COLUMNS:
        page.set_checked(f"#f-{c}", record[c] == 1)


def _shown(probability: float) -> str:
    return f"{probability * 100:.1f}%"


@pytest.mark.external
def test_calculator_matches_the_api_and_shows_field_errors(page, live):
    page.goto(f"{live}/")
    page.locator("#about-models").get_by_text("AUC", exact=False).first.wait_for()
    about = page.inner_text("#about")
    assert "sole basis of a decision" in about and "Synthetic data" in about and "95% CI" in about

    _fill(page, RECORD)
    page.press("#f-prior_lines", "Enter")  # keyboard submit
    page.wait_for_selector("#result-dose_reduction .probability")

    expected = httpx.post(f"{live}/v1/predict", json=RECORD, timeout=30).json()
    for outcome in ("discontinuation", "dose_reduction"):
        card = f"#result-{outcome}"
        assert page.inner_text(f"{card} .probability") == _shown(expected[outcome]["probability"])
        assert page.inner_text(f"{card} .band").lower() == f"{expected[outcome]['risk_band']} risk"
        assert f"version {expected[outcome]['model']['version']}" in page.inner_text(f"{card} .model-version")
        age = next(c for c in expected[outcome]["contributions"] if c["feature"] == "age")
        words = "raises risk" if age["contribution"] > 0 else "lowers risk"
        items = page.locator(f"{card} .contribution").all_text_contents()  # what a screen reader reads
        assert any(item.startswith(f"Age 78 years: {words}") for item in items), items
        assert len(items) == len(expected[outcome]["contributions"])
    warnings = page.inner_text("#warnings")
    assert "Creatinine clearance" in warnings and "unknown" in warnings
    assert [w["field"] for w in expected["warnings"]].count("crcl_ml_min") == 1

    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#f-prior_lines").blur()
    shot = ARTIFACTS / "calculator.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("LENRISK_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, REPO_ROOT / "docs" / "calculator.png")

    # Narrow screen: one column, nothing wider than the viewport.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(ARTIFACTS / "calculator-narrow.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # An impossible age reaches the service (the form does not validate in the browser) and its 422 is
    # shown next to the age field, tied to the input for screen readers, with focus moved there.
    page.fill("#f-age", "150")
    page.click("#submit")
    error = page.locator("#age-error")
    error.wait_for(state="visible")
    assert "100" in error.inner_text()
    assert page.locator("[data-field=age] #age-error").count() == 1
    assert "age-error" in page.get_attribute("#f-age", "aria-describedby")
    assert page.get_attribute("#f-age", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "f-age"
    assert page.locator("#result-discontinuation").count() == 0
    page.screenshot(path=str(ARTIFACTS / "calculator-error.png"), full_page=True)
    assert page.problems == []


@pytest.mark.external
def test_calculator_with_authentication_on_explains_access(page, registry, tmp_path):
    settings = _settings(registry, tmp_path, api_keys={"clinic": digest(secrets.token_urlsafe(32))})
    with _serve(settings, ready=False) as base:
        page.goto(f"{base}/")
        page.wait_for_selector("#access:not([hidden])")
        assert "requires an API key" in page.inner_text("#access")
        assert page.inner_text("#risk-bands").count("development data n/a") == len(OUTCOMES)
        _fill(page, RECORD)
        page.click("#submit")
        page.wait_for_selector("#results .problem")
        assert "deployment does not provide one" in page.inner_text("#results")
        assert page.locator("input[type=password]").count() == 0
        page.screenshot(path=str(ARTIFACTS / "calculator-auth.png"), full_page=True)
    assert page.problems == []


# ---- what a clinician reads: horizon, bands, no silent defaults, plain words (issue 13, 22-25) -----

#: Required entries a clinician must make (binary flags are ticked or not; nullable ones may stay unknown).
REQUIRED = [c for c in RECORD_COLUMNS if c.required_in_api and not c.nullable and c.kind is not Kind.BINARY]
DEVELOPER_NAMES = ("encoder.json", "decision_curve.png", "average training line")
FILE_NAME = re.compile(r"[\w/.-]+\.(?:json|png|csv|md|py)\b")
PLAIN_PHRASE = "compared with an average patient in the development data"


def _horizon_stated(text: str) -> None:
    text = " ".join(text.split())
    assert "during the treatment line" in text
    assert "median of 5.8 months" in text and "107" in text  # the key study's time to a toxicity stop


def test_outcome_horizon_is_stated_on_the_page_in_the_card_and_in_the_api_docs(start_api, service_settings):
    client = start_api(service_settings)

    page = unescape(re.sub(r"<[^>]+>", " ", client.get("/").text))
    _horizon_stated(page)
    for model in client.get("/v1/models").json()["models"]:
        outcome = " ".join(section_lines(model["model_card"], "## Outcome"))
        _horizon_stated(outcome)
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for outcome in OUTCOMES:
        _horizon_stated(schemas["PredictionOut"]["properties"][outcome]["description"])
    assert "during the treatment line" in schemas["OutcomeOut"]["properties"]["probability"]["description"]


def section_lines(card: str, heading: str) -> list[str]:
    """The lines of one ``## `` section of a markdown card."""
    lines = card.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rest = lines[start + 1 :]
    return rest[: next((i for i, line in enumerate(rest) if line.startswith("## ")), len(rest))]


def _percent(p: float) -> str:
    return f"{p * 100:g}%"


@pytest.mark.external
def test_configured_cut_points_change_the_band_served_and_shown_with_their_source(
    page, registry, tmp_path, monkeypatch
):
    monkeypatch.setenv("LENRISK_DISCONTINUATION_BANDS", "0.01,0.02")  # every discontinuation risk is high
    monkeypatch.delenv("LENRISK_DOSE_REDUCTION_BANDS", raising=False)
    settings = _settings(registry, tmp_path)
    dose_reduction = ServiceSettings(mlruns_dir=registry["root"]).bands["dose_reduction"]  # the default
    with _serve(settings, ready=True) as base:
        answer = httpx.post(f"{base}/v1/predict", json=RECORD, timeout=30).json()
        cuts = answer["discontinuation"]["risk_band_cut_points"]
        assert cuts == {"intermediate_from": 0.01, "high_from": 0.02}
        assert answer["discontinuation"]["risk_band"] == "high"
        assert answer["dose_reduction"]["risk_band_cut_points"] == {
            "intermediate_from": dose_reduction.intermediate,
            "high_from": dose_reduction.high,
        }
        averages = {
            m["outcome"]: m["metrics"]["average_risk"]
            for m in httpx.get(f"{base}/v1/models", timeout=30).json()["models"]
        }

        page.goto(f"{base}/")
        page.locator("#risk-bands .average-risk").first.wait_for()
        page.wait_for_function("!document.querySelector('#risk-bands').textContent.includes('…')")
        shown = {o: page.inner_text(f"#risk-bands [data-outcome={o}]") for o in OUTCOMES}
        assert "low below 1%" in shown["discontinuation"] and "high from 2%" in shown["discontinuation"]
        assert "set by this deployment" in shown["discontinuation"]
        assert f"low below {_percent(dose_reduction.intermediate)}" in shown["dose_reduction"]
        assert f"high from {_percent(dose_reduction.high)}" in shown["dose_reduction"]
        for outcome, average in averages.items():
            assert f"average risk in the development data {round(100 * average)}%" in shown[outcome]
        rule = page.inner_text("#risk-bands")
        assert "twice" in rule and "average risk" in rule and "107 lines" in rule  # the rule and its source

        _fill(page, RECORD)
        page.click("#submit")
        page.wait_for_selector("#result-discontinuation .band")
        assert page.inner_text("#result-discontinuation .band").lower() == "high risk"
        card = page.inner_text("#result-discontinuation")
        assert "low below 1%" in card and "high from 2%" in card
        assert f"{round(100 * averages['discontinuation'])}%" in card
    assert page.problems == []


@pytest.mark.external
def test_required_fields_start_empty_and_an_empty_one_is_named_without_a_request(page, live):
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.url.endswith("/v1/predict") else None)
    page.goto(f"{live}/")

    for col in REQUIRED:
        field = f"[data-field={col.name}]"
        if page.locator(f"{field} input[type=radio]").count():
            assert page.locator(f"{field} input:checked").count() == 0, col.name
        else:
            assert page.input_value(f"#f-{col.name}") == "", col.name

    page.click("#submit")
    page.wait_for_selector("#form-error:not([hidden])")
    summary = page.inner_text("#form-error")
    for col in REQUIRED:
        assert label(col) in summary, col.name
        assert page.inner_text(f"#{col.name}-error") == "Required."
    assert page.evaluate("document.activeElement.id") == "f-age"

    _fill(page, RECORD)
    page.fill("#f-start_dose_mg", "")
    page.click("#submit")
    page.wait_for_selector("#start_dose_mg-error:not([hidden])")
    assert page.locator(".field-error:not([hidden])").count() == 1
    assert "Lenalidomide starting dose" in page.inner_text("#form-error")
    assert posted == [] and page.locator("#result-discontinuation").count() == 0

    page.fill("#f-start_dose_mg", str(RECORD["start_dose_mg"]))
    page.click("#submit")
    page.wait_for_selector("#result-dose_reduction .probability")
    assert len(posted) == 1 and page.locator("#form-error").is_hidden()
    assert page.problems == []


#: Every list entry of the form shown whole: a select at least as wide as its longest option (text, padding,
#: arrow), and no label clipped or running past the form.
_CLIPPED_CHOICES = """() => {
  const form = document.getElementById("record-form").getBoundingClientRect();
  const ctx = document.createElement("canvas").getContext("2d");
  const clipped = [];
  for (const select of document.querySelectorAll("#record-form select")) {
    const style = getComputedStyle(select);
    ctx.font = style.font;
    const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 20;
    for (const option of select.options) {
      if (ctx.measureText(option.text).width > room) clipped.push(option.text);
    }
  }
  for (const label of document.querySelectorAll("#record-form label")) {
    const box = label.getBoundingClientRect();
    const cut = label.scrollWidth > label.clientWidth + 1 || box.right > form.right + 1;
    if (cut) clipped.push(label.textContent);
  }
  return clipped;
}"""


@pytest.mark.external
def test_page_words_are_plain_and_regimen_names_are_shown_whole(page, live):
    page.goto(f"{live}/")
    page.locator("#about-models").get_by_text("AUC", exact=False).first.wait_for()
    _fill(page, RECORD)
    page.click("#submit")
    page.wait_for_selector("#result-dose_reduction .probability")

    text = page.evaluate("document.body.textContent")  # the folded full model cards included
    for name in DEVELOPER_NAMES:
        assert name not in text, name
    assert PLAIN_PHRASE in " ".join(text.split())
    assert not FILE_NAME.findall(page.inner_text("body"))  # what a clinician reads names no file

    for code, drugs in REGIMEN_LABELS.items():
        entry = page.locator("[data-field=regimen] label", has_text=re.compile(rf"^{re.escape(code)} — "))
        assert entry.count() == 1, code
        assert entry.inner_text() == f"{code} — {drugs}" and entry.is_visible()
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        assert page.evaluate(_CLIPPED_CHOICES) == [], width
    assert page.problems == []


# ---- the uncertainty range beside each risk (issue 14) ------------------------------------------------

BAND_ORDER = ("low", "intermediate", "high")


def _band(p: float, cuts: dict) -> str:
    return "high" if p >= cuts["high_from"] else "intermediate" if p >= cuts["intermediate_from"] else "low"


def _band_words(interval: dict, cuts: dict) -> str:
    """What the page must say of the band(s) an interval spans, computed here independently of the page."""
    spanned = BAND_ORDER[
        BAND_ORDER.index(_band(interval["lower"], cuts)) : BAND_ORDER.index(_band(interval["upper"], cuts))
        + 1
    ]
    if len(spanned) == 1:
        return f"The range lies within the {spanned[0]} band."
    return (
        "The range spans the "
        + (" and ".join(spanned) if len(spanned) == 2 else "low, intermediate and high")
        + " bands."
    )


def _kernel_interval(registry, outcome: str, record: dict) -> tuple[float, float]:
    row = PatientRecord.model_validate(record).to_row()
    lower, upper = registry["result"].outcomes[outcome].model.interval({k: [v] for k, v in row.items()})
    return float(lower[0]), float(upper[0])


@pytest.mark.external
def test_each_risk_shows_the_apis_range_and_the_bands_it_spans_in_words(page, live, registry):
    page.goto(f"{live}/")
    _fill(page, RECORD)
    page.click("#submit")
    page.wait_for_selector("#result-dose_reduction .range-text")

    expected = httpx.post(f"{live}/v1/predict", json=RECORD, timeout=30).json()
    for outcome in OUTCOMES:
        card = f"#result-{outcome}"
        interval, cuts = expected[outcome]["interval"], expected[outcome]["risk_band_cut_points"]
        assert (interval["lower"], interval["upper"]) == pytest.approx(
            _kernel_interval(registry, outcome, RECORD), rel=1e-12, abs=1e-15
        )
        shown = f"{round(interval['lower'] * 100)}%–{round(interval['upper'] * 100)}%"
        assert page.inner_text(f"{card} .range-values") == f"95% range {shown}"
        assert 0 < interval["lower"] < expected[outcome]["probability"] < interval["upper"] < 1
        assert page.inner_text(f"{card} .range-bands") == _band_words(interval, cuts)
        assert "not uncertainty about whether this patient will have the outcome" in page.inner_text(card)
        assert page.locator(f"{card} .range-none").count() == 0
    assert page.problems == []


@pytest.mark.external
def test_range_words_follow_the_cut_points_and_a_record_outside_the_data_gets_none_with_why(
    page, registry, tmp_path, monkeypatch
):
    with _serve(_settings(registry, tmp_path), ready=True) as base:
        first = httpx.post(f"{base}/v1/predict", json=RECORD, timeout=30).json()
    interval = first["discontinuation"]["interval"]
    lo, hi = interval["lower"], interval["upper"]
    # intermediate from inside the range, high above it: the range spans the low and intermediate bands;
    # then high from inside it too: the range spans all three.
    for cuts, words in (
        ((lo + (hi - lo) / 3, 0.99), "The range spans the low and intermediate bands."),
        (
            (lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3),
            "The range spans the low, intermediate and high bands.",
        ),
        ((0.001, 0.002), "The range lies within the high band."),
    ):
        monkeypatch.setenv("LENRISK_DISCONTINUATION_BANDS", f"{cuts[0]:.6f},{cuts[1]:.6f}")
        sub = tmp_path / f"bands-{cuts[0]:.6f}-{cuts[1]:.6f}"
        sub.mkdir()
        with _serve(_settings(registry, sub), ready=True) as base:
            answer = httpx.post(f"{base}/v1/predict", json=RECORD, timeout=30).json()
            assert answer["discontinuation"]["interval"] == interval
            assert _band_words(interval, answer["discontinuation"]["risk_band_cut_points"]) == words
            page.goto(f"{base}/")
            _fill(page, RECORD)
            page.click("#submit")
            page.wait_for_selector("#result-discontinuation .range-bands")
            assert page.inner_text("#result-discontinuation .range-bands") == words
    monkeypatch.delenv("LENRISK_DISCONTINUATION_BANDS")

    # An age above every training line's: scored (extrapolated) but given no range, and the page says why.
    top = registry["result"].outcomes["discontinuation"].model.encoder.ranges_["age"]["max"]
    older = {**RECORD, "age": int(top) + 2}
    (tmp_path / "outside").mkdir()
    with _serve(_settings(registry, tmp_path / "outside"), ready=True) as base:
        answer = httpx.post(f"{base}/v1/predict", json=older, timeout=30).json()
        assert "outside_training_range" in {w["kind"] for w in answer["warnings"]}
        page.goto(f"{base}/")
        _fill(page, older)
        page.click("#submit")
        page.wait_for_selector("#result-dose_reduction .range-none")
        for outcome in OUTCOMES:
            assert answer[outcome]["interval"] is None
            card = f"#result-{outcome}"
            assert page.locator(f"{card} .range-text").count() == 0
            none = page.inner_text(f"{card} .range-none")
            assert none.startswith("No range: this patient lies outside the data the model was developed on")
            assert page.inner_text(f"{card} .probability") == _shown(answer[outcome]["probability"])
    assert page.problems == []


@pytest.mark.external
def test_a_model_without_intervals_is_said_to_give_none(page, live):
    """The service's real answer with the intervals nulled and no extrapolation warning: what a model
    registered before intervals gives (the session's models all carry one)."""
    answer = httpx.post(f"{live}/v1/predict", json=RECORD, timeout=30).json()
    assert not {"outside_training_range", "not_seen_in_training"} & {w["kind"] for w in answer["warnings"]}
    for outcome in OUTCOMES:
        assert answer[outcome]["interval"] is not None
        answer[outcome]["interval"] = None
    page.route("**/v1/predict", lambda route: route.fulfill(status=200, json=answer))
    page.goto(f"{live}/")
    _fill(page, RECORD)
    page.click("#submit")
    page.wait_for_selector("#result-dose_reduction .range-none")
    for outcome in OUTCOMES:
        card = f"#result-{outcome}"
        assert page.inner_text(f"{card} .range-none") == (
            "No range: this model version does not give one for its risks."
        )
        assert page.locator(f"{card} .range-text, {card} .range-bands").count() == 0
        assert page.inner_text(f"{card} .probability") == _shown(answer[outcome]["probability"])
    assert page.problems == []
