"""``lenrisk --help`` and every command's help, read as a new user reads them."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from service.cli import app


def _commands() -> dict[str, object]:
    return typer.main.get_command(app).commands


@pytest.mark.parametrize("args", [[], *([name] for name in _commands())], ids=lambda a: a[0] if a else "-")
def test_help_reads_without_the_code(args):
    """No jargon of the code's own (seed file names, a bare number for a default), no ``<bool>`` type on a
    flag, and every option and argument explained."""
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    text = re.sub(r"[\s│]+", " ", result.output)  # as read, whatever the wrapping
    assert "seed 000" not in text.lower() and "<bool>" not in text
    assert not re.search(r"\(\d[\d,]*\)", text), "a bare number in brackets: say what it is (default: ...)"
    if args:
        params = _commands()[args[0]].params
        assert params and not [p.name for p in params if not (p.help or "").strip()], "options without help"
