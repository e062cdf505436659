"""The standalone-cluster harness (``tests/spark_cluster.py``): a real master and two workers on 127.0.0.1,
jobs spread over both workers' executors, a killed Python task worker retried without losing or repeating
rows, and nothing left running after teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from tests.spark_cluster import ClusterError, executor_dir_worker, standalone_cluster

pytestmark = [
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
    pytest.mark.slow,
    pytest.mark.external,  # Java: Spark runs in JVMs
]

WORKERS = 2
NOWHERE = "http://127.0.0.1:9/nowhere"  # a tracking URI no executor can reach


@pytest.fixture(scope="module")
def cluster():
    with standalone_cluster(workers=WORKERS, cores=1, memory="1g", env={"MLFLOW_TRACKING_URI": NOWHERE}) as c:
        yield c
    nothing_left(c.folder, [c.master.pid, *c.worker_pids])


def nothing_left(folder, pids) -> None:
    """No process of the cluster runs any more (pgrep finds none with its folder) and its folder is gone."""
    leftovers = subprocess.run(["pgrep", "-af", str(folder)], capture_output=True, text=True).stdout
    assert leftovers == "", leftovers
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not folder.exists()


@pytest.fixture
def spark(cluster):
    """A driver on the cluster, both executors registered; stopped at the end of the test."""
    with cluster.session("lenrisk-cluster-tests") as session:
        yield session


def test_a_job_runs_on_the_executors_of_both_workers(cluster, spark):
    def where(partition, rows):
        import os
        import time

        time.sleep(0.3)
        yield partition, os.getpid(), os.getcwd(), os.environ.get("MLFLOW_TRACKING_URI"), sum(rows)

    tasks = spark.sparkContext.parallelize(range(1000), 8).mapPartitionsWithIndex(where).collect()

    assert sorted(t[0] for t in tasks) == list(range(8))
    assert sum(t[4] for t in tasks) == sum(range(1000))
    # an executor runs in <worker's work dir>/<app id>/<executor id>; its Python workers inherit that cwd
    assert {executor_dir_worker(cluster, t[2]) for t in tasks} == set(range(WORKERS))
    assert {t[3] for t in tasks} == {NOWHERE}  # the caller's environment reached the executors' Python
    # the tasks' processes descend from the worker JVMs the harness started
    python = {p.pid: p.worker for p in cluster.python_workers()}
    assert {python[t[1]] for t in tasks if t[1] in python} == set(range(WORKERS))
    assert os.getpid() not in {t[1] for t in tasks}


def test_a_killed_python_worker_is_retried_and_the_result_is_complete(cluster, spark, tmp_path):
    from pyspark import TaskContext

    n, partitions, started = 10_000, 6, tmp_path / "started"
    started.mkdir()

    def slow(rows):
        import os
        import time

        context = TaskContext.get()
        (started / f"{context.partitionId()}-{context.attemptNumber()}").write_text(str(os.getpid()))
        values = list(rows)
        time.sleep(3)
        yield context.partitionId(), context.attemptNumber(), len(values), sum(values)

    results: dict = {}

    def run():
        try:
            results["tasks"] = (
                spark.sparkContext.parallelize(range(n), partitions).mapPartitions(slow).collect()
            )
        except BaseException as err:
            results["error"] = err

    job = threading.Thread(target=run)
    job.start()
    deadline = time.monotonic() + 60
    while not (running := sorted(started.glob("*-0"))):  # a task under way, and the worker running it
        assert time.monotonic() < deadline and job.is_alive()
        time.sleep(0.05)
    killed = int(running[0].read_text())
    assert killed in {w.pid for w in cluster.python_workers() if w.forked}
    os.kill(killed, signal.SIGKILL)
    job.join(timeout=120)
    assert not job.is_alive()

    assert "error" not in results, results.get("error")
    tasks = results["tasks"]
    assert sorted(t[0] for t in tasks) == list(range(partitions))  # one result per partition, no duplicates
    assert sum(t[2] for t in tasks) == n and sum(t[3] for t in tasks) == sum(range(n))
    retried = running[0].name.split("-")[0]
    assert (started / f"{retried}-1").exists()  # the killed task ran again
    assert spark.sparkContext.getConf().get("spark.task.maxFailures", "4") == "4"


def test_teardown_leaves_nothing_running():
    with standalone_cluster(workers=1) as cluster:
        folder, pids = cluster.folder, [cluster.master.pid, *cluster.worker_pids]
        cluster.kill_worker(0)
        assert cluster.worker_processes[0].poll() is not None
        time.sleep(0.2)
    nothing_left(folder, pids)


def test_a_worker_that_cannot_start_is_reported_with_its_log():
    starting = standalone_cluster(workers=1, memory="lots")
    with pytest.raises(ClusterError, match=r"(?s)a cluster process exited.*--- worker-0\.log") as failed:
        starting.__enter__()
    assert "--- master.log" in str(failed.value)
