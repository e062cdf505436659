"""``lenrisk score --engine spark`` on a real Spark standalone cluster: one master and two workers on
127.0.0.1, separate JVMs and Python workers (tests/spark_cluster.py), the driver a ``lenrisk`` process.

The workers run with a registry that does not exist: the executors get the verified artifacts from the
driver. Scores, explanations, rejects and counts equal the local engine's on each part; an executor's Python
worker killed mid-run is retried by Spark with no row lost or doubled; a driver killed mid-run publishes
nothing, leaves the previous publication intact, and the next run removes its leftovers.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from features.schema import RECORD_NAMES
from service.batch.score import Explain
from tests.helpers import same_scores
from tests.service.batch.dataset_checks import (
    assert_manifest_describes_the_files,
    local_reference,
    read_dataset,
)
from tests.spark_cluster import standalone_cluster
from training.cohort.generate import generate_cohort

pytestmark = [pytest.mark.slow, pytest.mark.external]  # Java: Spark runs in JVMs
LENRISK = Path(sys.executable).with_name("lenrisk")
NOWHERE = "/nonexistent/lenrisk-registry"  # the workers' registry: any attempt to use it fails


@pytest.fixture(scope="module")
def cluster():
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{NOWHERE}/mlflow.db", "LENRISK_MLRUNS_DIR": NOWHERE}
    with standalone_cluster(workers=2, cores=1, memory="1g", env=env) as running:
        yield running


def write_parts(root: Path, rows: int, parts: int, seed: int) -> list[Path]:
    """``rows`` lines as ``parts`` CSV files under ``root`` (one in a subfolder), with rejected rows in each:
    an unknown regimen, a non-numeric age, a row with a surplus field."""
    frame = generate_cohort(rows, seed=seed)[list(RECORD_NAMES)]
    paths = []
    for k in range(parts):
        path = root / ("older" if k == 0 else "") / f"part-{k}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = list(csv.reader(io.StringIO(frame.iloc[k::parts].to_csv(index=False))))
        lines[2][lines[0].index("regimen")] = "XYZ"
        lines[-3][lines[0].index("age")] = "seventy"
        lines[len(lines) // 2].append("surplus")
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(lines)
        path.write_text(out.getvalue())
        paths.append(path)
    return sorted(paths)


def lenrisk_score(cluster, registry, source: Path, output: Path, *extra: str) -> subprocess.Popen:
    """Start ``lenrisk score --engine spark`` on the cluster (its own process group); small input splits,
    so every part is several tasks."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYSPARK_SUBMIT_ARGS"},
        "LENRISK_MLRUNS_DIR": str(registry["root"]),
        "MLFLOW_TRACKING_URI": "",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_SUBMIT_ARGS": "--conf spark.sql.files.maxPartitionBytes=16384 "
        "--conf spark.executor.memory=512m --conf spark.ui.enabled=false pyspark-shell",
    }
    args = ["score", "--engine", "spark", "--spark-master", cluster.url, "--input", str(source)]
    return subprocess.Popen(
        [LENRISK, *args, "--output", str(output), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finished(process: subprocess.Popen, timeout: float = 600) -> tuple[str, str]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out, err


def executors_that_ran_tasks(cluster) -> set[int]:
    """The workers whose executors logged a task run, from the executors' logs in the work dirs."""
    return {
        i
        for i in range(cluster.workers)
        for log in cluster.worker_dir(i).glob("*/*/stderr")
        if "Running task" in log.read_text(errors="replace")
    }


def test_the_cluster_scores_a_dataset_as_the_local_engine_scores_each_part(
    cluster, registry, predictor, tmp_path
):
    parts = write_parts(tmp_path / "in", 1_200, 3, seed=41)
    out, _ = finished(
        lenrisk_score(cluster, registry, tmp_path / "in", tmp_path / "out", "--explain", "top3")
    )

    output, rejects, counts = local_reference(
        predictor, tmp_path / "in", parts, tmp_path / "local", Explain.TOP3
    )
    same_scores(output, read_dataset(tmp_path / "out" / "scored"))
    same_scores(rejects, read_dataset(tmp_path / "out" / "rejects"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"] == counts and counts["rejected"] == 9 and counts["read"] == 1_200
    assert f"{counts['read']} rows read = {counts['scored']} scored + 9 rejected" in out
    assert_manifest_describes_the_files(tmp_path / "out", manifest)
    assert len(manifest["output"]["parts"]) > 3  # several tasks
    assert executors_that_ran_tasks(cluster) == {0, 1}


def test_a_python_worker_killed_mid_run_is_retried_with_no_row_lost_or_doubled(
    cluster, registry, predictor, tmp_path
):
    parts = write_parts(tmp_path / "in", 12_000, 2, seed=42)
    run = lenrisk_score(cluster, registry, tmp_path / "in", tmp_path / "out", "--explain", "all")
    killed = cluster.kill_python_worker(timeout=240)
    _, err = finished(run)

    assert killed.forked
    assert "Lost task" in err  # Spark saw the task fail and ran it again
    output, rejects, counts = local_reference(
        predictor, tmp_path / "in", parts, tmp_path / "local", Explain.ALL
    )
    same_scores(output, read_dataset(tmp_path / "out" / "scored"))
    same_scores(rejects, read_dataset(tmp_path / "out" / "rejects"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"] == counts
    assert_manifest_describes_the_files(tmp_path / "out", manifest)


def test_a_driver_killed_mid_run_publishes_nothing_and_the_next_run_cleans_up(cluster, registry, tmp_path):
    write_parts(tmp_path / "in", 12_000, 2, seed=43)
    out = tmp_path / "out"
    finished(lenrisk_score(cluster, registry, tmp_path / "in", out))
    published = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    first = read_dataset(out / "scored")

    run = lenrisk_score(cluster, registry, tmp_path / "in", out, "--explain", "all")
    deadline = time.monotonic() + 300
    while not list(out.glob(".lenrisk-run-*/scored/_temporary/*/*")):  # executors are writing
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)  # the driver: its Python process and its JVM
    run.wait(timeout=60)

    left = {
        p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and ".lenrisk-run-" not in str(p)
    }
    assert left == published  # the previous run's publication, untouched
    assert list(out.glob(".lenrisk-run-*"))  # the killed run's staging folder, left behind

    finished(lenrisk_score(cluster, registry, tmp_path / "in", out))
    assert not list(out.glob(".lenrisk-run-*"))
    same_scores(first, read_dataset(out / "scored"))  # a re-run gives the same content
    assert_manifest_describes_the_files(out, json.loads((out / "manifest.json").read_text()))
