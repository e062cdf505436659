"""``lenrisk monitor --labels``: exit codes, the JSON, the HTML page,
the join by key and the refusals, on streams scored by models fitted on the default population."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from service.cli import app

COMMAND = ["monitor"]
WINDOW_KEYS = {
    "index",
    "start",
    "end",
    "first_row",
    "last_row",
    "n",
    "events",
    "expected",
    "observed_expected",
    "calibration_intercept",
    "calibration_slope",
    "statistic",
    "alert",
}


def _run(*args):
    return CliRunner().invoke(app, [*COMMAND, *map(str, args)])


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> dict:
    """Scored files with outcomes: 4,000 default lines; 2,000 default then 2,000 shifted by +0.7 log-odds."""
    from tests.outcome_stream import fit_models, scored_stream

    folder = tmp_path_factory.mktemp("streams")
    models = fit_models()
    unshifted = scored_stream(models, (4000,), (0.0,), seed=6)
    shifted = scored_stream(models, (2000, 2000), (0.0, 0.7), seed=5)
    unshifted.to_csv(folder / "unshifted.csv", index=False)
    shifted.to_csv(folder / "shifted.csv", index=False)
    return {"folder": folder, "unshifted": unshifted}


def test_an_unshifted_stream_exits_0_and_the_json_has_every_window(streams, tmp_path):
    out = tmp_path / "m.json"
    result = _run("--labels", streams["folder"] / "unshifted.csv", "--json", out)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("no alert")
    report = json.loads(out.read_text())
    assert report["alerts"] == [] and report["suggestion"] == {}
    assert (report["window"], report["step"], report["alpha"]) == (500, 250, 0.05)
    for name in ("discontinuation", "dose_reduction"):
        o = report["outcomes"][name]
        assert o["rows"] == {"read": 4000, "used": 4000, "unlabelled": 0, "rejected": 0}
        assert len(o["windows"]) == 15 and all(set(w) == WINDOW_KEYS for w in o["windows"])
        assert [(w["start"], w["end"]) for w in o["windows"]][-1] == (3501, 4000)  # row numbers
        assert all(w["statistic"] < o["critical_value"] and not w["alert"] for w in o["windows"])
        oe = o["windows"][0]["observed_expected"]
        assert oe["lower"] < oe["estimate"] < oe["upper"]


def test_a_shifted_stream_exits_3_with_alerts_a_suggestion_and_a_report(streams, tmp_path):
    out, page = tmp_path / "m.json", tmp_path / "m.html"
    result = _run(
        "--labels", streams["folder"] / "shifted.csv", "--order-by", "started", "--json", out, "--html", page
    )
    assert result.exit_code == 3, result.output
    assert "ALERT: calibration drifted" in result.output
    report = json.loads(out.read_text())
    assert {a["outcome"] for a in report["alerts"]} == {"discontinuation", "dose_reduction"}
    assert all(a["start"] > "2030-06-01" for a in report["alerts"])  # dates: the second half only
    for s in report["suggestion"].values():
        assert s["method"] == "recalibration_in_the_large" and s["command"].startswith(
            "lenrisk update --data"
        )
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 2 and "ALERT" in html
    assert "src='http" not in html and "<script" not in html  # self-contained


def test_outcomes_joined_by_key_count_the_lines_without_an_outcome_and_the_unmatched(streams, tmp_path):
    stream = streams["unshifted"]
    outcome_columns = ["discontinued_toxicity", "dose_reduced"]
    stream.drop(columns=outcome_columns).to_csv(tmp_path / "scored.csv", index=False)
    outcomes = stream.loc[:2999, ["line_id", *outcome_columns]]
    unknown = pd.DataFrame({"line_id": ["X1", "X2"], "discontinued_toxicity": [1, 0], "dose_reduced": [0, 0]})
    pd.concat([outcomes, unknown]).to_csv(tmp_path / "outcomes.csv", index=False)
    out = tmp_path / "m.json"
    result = _run(
        "--predictions", tmp_path / "scored.csv", "--labels", tmp_path / "outcomes.csv", "--key", "line_id",
        "--json", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["join"] == {
        "rows_without_outcomes": 1000,
        "outcome_rows_unmatched": 2,
        "outcome_rows_repeated_key": 0,
        "outcome_rows_empty_key": 0,
    }
    assert report["outcomes"]["discontinuation"]["rows"] == {
        "read": 4000,
        "used": 3000,
        "unlabelled": 1000,
        "rejected": 0,
    }
    assert report["key"] == ["line_id"] and report["predictions"] == "scored.csv"


def test_rejected_lines_are_counted_and_written_with_their_reasons(streams, tmp_path):
    stream = streams["unshifted"].head(600).astype({"risk_discontinuation": object, "dose_reduced": object})
    stream.loc[[3, 7], "risk_discontinuation"] = "n/a"
    stream.loc[[10, 11, 12], "dose_reduced"] = ""
    stream.to_csv(tmp_path / "s.csv", index=False)
    result = _run("--labels", tmp_path / "s.csv", "--rejects", tmp_path / "r.csv", "--quiet")
    assert result.exit_code == 0, result.output
    assert "discontinuation: 600 lines read = 598 monitored + 0 without outcome + 2 rejected" in result.output
    assert "dose_reduction: 600 lines read = 597 monitored + 3 without outcome + 0 rejected" in result.output
    assert "┃" not in result.output and "from" not in result.output  # --quiet: no table
    rejects = pd.read_csv(tmp_path / "r.csv")
    assert rejects["row_number"].tolist() == [4, 8]
    assert set(rejects["column"]) == {"risk_discontinuation"}


def test_files_that_cannot_be_monitored_exit_2(streams, tmp_path):
    pd.DataFrame({"patient_id": ["A"], "dose_reduced": [1]}).to_csv(tmp_path / "x.csv", index=False)
    result = _run("--labels", tmp_path / "x.csv")
    assert result.exit_code == 2 and "expected a file written by lenrisk score" in result.output
    result = _run("--labels", streams["folder"] / "shifted.csv", "--order-by", "nope")
    assert result.exit_code == 2 and "no column 'nope'" in result.output
    result = _run("--labels", streams["folder"] / "shifted.csv", "--key", "line_id")
    assert result.exit_code == 2 and "give --predictions too" in result.output


@pytest.mark.slow  # the session's registered models
def test_a_file_written_by_lenrisk_score_is_monitored_once_outcomes_are_added(lenrisk, cohort, tmp_path):
    """The real scored output (every input column carried through, then the scores): outcomes added after
    scoring, some not yet known."""
    outcome_columns = ["discontinued_toxicity", "dose_reduced"]
    lines = cohort.head(800)
    lines.drop(columns=outcome_columns).to_csv(tmp_path / "in.csv", index=False)
    scored_path = tmp_path / "scored.csv"
    assert lenrisk("--input", tmp_path / "in.csv", "--output", scored_path, "--quiet").exit_code == 0
    scored = pd.read_csv(scored_path, dtype=str, keep_default_na=False)
    scored[outcome_columns] = lines[outcome_columns].astype(str).to_numpy()
    scored.loc[700:, "discontinued_toxicity"] = ""
    scored.to_csv(scored_path, index=False)
    out = tmp_path / "m.json"
    result = _run("--labels", scored_path, "--window", 300, "--step", 200, "--json", out)
    assert result.exit_code in (0, 3), result.output
    rows = json.loads(out.read_text())["outcomes"]["discontinuation"]["rows"]
    assert rows == {"read": 800, "used": 700, "unlabelled": 100, "rejected": 0}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((), "--input"),
        (("--input", "a.csv", "--labels", "b.csv"), "--labels"),
        (("--labels", "b.csv", "--model", "lenalidomide-discontinuation@champion"), "--model"),
        (("--input", "a.csv", "--order-by", "start_date"), "--labels"),
    ],
)
def test_input_and_labels_are_one_check_or_the_other(args, named):
    result = _run(*args)
    assert result.exit_code == 2 and named in result.output
