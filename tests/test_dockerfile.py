"""The container image recipe: hadolint-clean, multi-stage, locked environment, non-root, probed, pinned.

No Docker engine runs here, so the image is not built: hadolint lints the Dockerfile and the tests below
read its instructions (line continuations joined, comments dropped).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT = Path(sys.executable).parent / "hadolint"
SERVE = ["lenrisk", "serve", "--host", "0.0.0.0", "--port", "8000"]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, in order."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, each list starting with its FROM."""
    result: list[list[tuple[str, str]]] = []
    for instruction in parsed:
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(parsed) -> list[tuple[str, str]]:
    """The final stage: what the image is."""
    return stages(parsed)[-1]


def test_hadolint_reports_nothing(tmp_path):
    # Threshold "style" (the lowest level), a config of our own (no .hadolint.yaml can ignore rules) and no
    # inline `# hadolint ignore=` pragmas: every finding counts.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    command = [str(HADOLINT), "--no-color", "--format", "json", "--disable-ignore-pragma", "-c", str(config)]
    done = subprocess.run([*command, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert json.loads(done.stdout or "[]") == [], done.stdout
    assert done.returncode == 0, done.stderr


def test_multi_stage_with_locked_environment(parsed, runtime):
    all_stages = stages(parsed)
    assert len(all_stages) >= 2, "builder and runtime stages"
    builder = all_stages[0]
    assert re.search(r"\bAS\s+builder\b", builder[0][1], re.IGNORECASE)
    runs = " ".join(args for keyword, args in builder if keyword == "RUN")
    assert "pip install --no-cache-dir uv==0.13.8" in runs
    # The locked dependencies, then the project itself (a sync without --no-install-project).
    assert re.search(r"uv sync --frozen --no-dev(?! --no-install-project)", runs)
    copied = [args for keyword, args in runtime if keyword == "COPY"]
    assert any("--from=builder" in args and "/app" in args for args in copied), "venv + source from builder"
    installs = re.compile(r"\b(pip|uv) (install|sync)\b")
    assert not any(keyword == "RUN" and installs.search(args) for keyword, args in runtime)
    assert 'PATH="/app/.venv/bin:' in " ".join(args for keyword, args in runtime if keyword == "ENV")


def test_every_base_image_is_a_pinned_python_312_slim_tag(parsed):
    for _, args in (i for i in parsed if i[0] == "FROM"):
        image = next(word for word in args.split() if not word.startswith("--"))
        name, _, tag = image.partition(":")
        assert name == "python" and tag, f"{image}: an explicit tag"
        assert tag != "latest" and "latest" not in image
        assert tag.startswith("3.12-slim-"), f"{image}: Python 3.12, slim, a named Debian release"


def test_runs_as_a_non_root_user(runtime):
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert user.isdigit(), "numeric, so a runtime can verify it is not root"
    assert any(keyword == "RUN" and "useradd" in args and user in args for keyword, args in runtime)


def test_healthcheck_probes_healthz_with_python(runtime):
    checks = [args for keyword, args in runtime if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    check = checks[0]
    assert "/healthz" in check and "urllib" in check
    assert "curl" not in check and "wget" not in check, "the slim image has neither"
    assert re.search(r"--timeout=\d+s", check) and re.search(r"--interval=\d+s", check)


def test_serves_on_port_8000_with_models_from_tracking_uri_or_mounted_mlruns(runtime):
    assert ("EXPOSE", "8000") in runtime
    commands = [args for keyword, args in runtime if keyword == "CMD"]
    assert [json.loads(c) for c in commands][-1:] == [SERVE], "exec form, listening beyond loopback"
    env = " ".join(args for keyword, args in runtime if keyword == "ENV")
    assert "LENRISK_MLRUNS_DIR=/app/mlruns" in env
    assert any(keyword == "VOLUME" and "/app/mlruns" in args for keyword, args in runtime)
    # Credentials and the tracking URI come from the environment at run time, never from the image.
    assert not re.search(r"LENRISK_(API|ADMIN)_KEYS|AUDIT_HMAC_KEY|MLFLOW_TRACKING_URI|PASSWORD", env)


def test_nothing_is_fetched_or_added_from_outside_the_context(parsed):
    assert not any(keyword == "ADD" for keyword, _ in parsed), "COPY only"
    for keyword, args in parsed:
        if keyword == "COPY" and "--from=" not in args:
            *sources, _ = [w for w in shlex.split(args) if not w.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"


def test_dockerignore_keeps_environment_models_data_and_caches_out():
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    for required in (".git", ".venv", "mlruns", "data", "**/__pycache__", ".pytest_cache", ".ruff_cache"):
        assert required in patterns, f".dockerignore: {required}"
    assert not any(p.startswith("!") for p in patterns), "nothing re-included"
    copied = {"pyproject.toml", "uv.lock", "README.md", "features", "training", "service"}
    assert not copied & patterns, "the image's sources are in the build context"
