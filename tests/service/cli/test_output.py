"""What ``lenrisk`` prints as it runs, where a new user meets it: progress lines in logs and pipes, and a
hint to the MLflow UI that can be pasted as printed."""

from __future__ import annotations

import io
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from service.cli import app
from service.cli.console import ProgressLines
from tests.helpers import REPO_ROOT

#: A progress line: time of day, what is being done, units done of the total and the percentage.
LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<what>.+): (?P<done>[\d,]+)/(?P<total>[\d,]+)(?: \w+)? \(\d+%\)")


def _progress(output: str) -> list[tuple[str, int, int]]:
    """(what, done, total) of each progress line, in order."""
    found = []
    for line in output.splitlines():
        if m := LINE.match(line):
            found.append((m["what"], int(m["done"].replace(",", "")), int(m["total"].replace(",", ""))))
    return found


def _last_progress_line(output: str) -> int:
    return max(i for i, line in enumerate(output.splitlines()) if LINE.match(line))


def _first(output: str, text: str) -> int:
    """Number of the first line that starts with ``text`` (after blanks)."""
    return next(i for i, line in enumerate(output.splitlines()) if line.strip().startswith(text))


def test_cohort_prints_progress_lines_when_not_a_terminal(tmp_path):
    """CliRunner's output is not a terminal, as in CI logs, nohup or a pipe: plain timestamped lines, from
    the start of each step to its end; none with --quiet."""
    out = tmp_path / "c.csv"
    result = CliRunner().invoke(app, ["cohort", "--n", "2000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert _progress(result.output) == [
        ("generating 2,000 lines", 0, 2),
        ("writing c.csv", 1, 2),
        ("writing c.csv", 2, 2),
    ]
    assert _last_progress_line(result.output) < _first(result.output, "wrote 2,000 lines")

    quiet = CliRunner().invoke(app, ["cohort", "--n", "2000", "--out", str(out), "--quiet"])
    assert quiet.exit_code == 0 and _progress(quiet.output) == []


def test_the_browse_hint_is_a_command_to_paste_from_the_project_root(monkeypatch):
    """The MLflow UI of this environment, with its port, then the address to open; a password is masked
    and a tracking server is given as its address."""
    from service.cli.train import _browse_hint

    monkeypatch.chdir(REPO_ROOT)
    command, then = _browse_hint("sqlite:////data/mlruns/mlflow.db").splitlines()
    argv = shlex.split(command)
    assert argv[0] == str(Path(sys.executable).parent.relative_to(REPO_ROOT) / "mlflow")
    assert os.access(argv[0], os.X_OK)
    assert argv[1:] == ["ui", "--backend-store-uri", "sqlite:////data/mlruns/mlflow.db", "--port", "5000"]
    assert then == "then open http://127.0.0.1:5000"
    assert "s3cret" not in _browse_hint("postgresql://lenrisk:s3cret@db/mlflow")
    assert _browse_hint("http://mlflow:5000") == "open http://mlflow:5000"


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """An empty embedded MLflow store for the CLI under test (the environment points the CLI at it)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LENRISK_MLRUNS_DIR", str(tmp_path / "mlruns"))
    monkeypatch.chdir(REPO_ROOT)  # where a user runs it from, so the hint's paths are relative to the root
    return tmp_path / "mlruns"


@pytest.mark.slow  # trains and registers both models (1,000 lines, 200 bootstrap resamples)
def test_train_reports_each_stage_as_lines_then_a_hint_that_runs(store):
    args = ["train", "--synthetic", "1000", "--seed", "4", "--setting", "newly_diagnosed", "--repeats", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = _progress(result.output)
    stages = list(dict.fromkeys(what for what, _, _ in lines))
    assert stages == [
        "cross-validated selection",
        "bootstrap validation (200 resamples)",
        "evaluation figures, subgroups, SHAP",
        "logging and registering in MLflow",
    ]
    for stage in stages:  # each from 0 to its total, never backwards
        done = [(d, t) for what, d, t in lines if what == stage]
        assert done[0][0] == 0 and done[-1][0] == done[-1][1]
        assert [d for d, _ in done] == sorted(d for d, _ in done)
    bootstrap = [d for what, d, _ in lines if what == stages[1]]
    assert bootstrap == list(range(0, 201, 20)), "every tenth of the resamples"
    text = result.output
    assert _last_progress_line(text) < _first(text, "Optimism-corrected")

    hint = _first(text, "Browse the runs and models:")
    command, then = (line.strip() for line in text.splitlines()[hint + 1 : hint + 3])
    argv = shlex.split(command)  # one line, however long
    assert os.access(argv[0], os.X_OK) and not Path(argv[0]).is_absolute()  # pasted from the project root
    assert argv[1:] == ["ui", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--port", "5000"]
    assert then == "then open http://127.0.0.1:5000"


def test_rows_of_unknown_count_get_a_line_at_the_start_and_the_end():
    """A CSV's row count is known only once read: no percentage, at most one line per 10 s, and the end."""
    stream = io.StringIO()
    with ProgressLines(Console(file=stream), unit="rows") as lines:
        task = lines.add_task("scoring")
        for _ in range(1000):
            lines.advance(task, 65_536)
    printed = [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()]
    assert printed == ["scoring: 0 rows", "scoring: 65,536,000 rows"]
