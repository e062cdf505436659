"""A Spark standalone cluster on 127.0.0.1 for tests and benchmarks: one master and N workers, each its own
JVM started with pyspark's own launcher (``$SPARK_HOME/bin/spark-class``; the pip package has no
``sbin/start-*.sh``), each in its own process group, logs in files of a temporary folder.

    with standalone_cluster(workers=2, cores=1, memory="1g", env={"MLFLOW_TRACKING_URI": "..."}) as cluster:
        spark = SparkSession.builder.master(cluster.url).config(map=cluster.session_conf()).getOrCreate()
        wait_for_executors(spark, cluster.workers)
        ...

The Python processes of the executors (``pyspark.daemon`` and the task workers it forks) are found by
reading ``/proc`` (no psutil): :meth:`StandaloneCluster.python_workers`. Teardown sends SIGTERM, then
SIGKILL, to every process group it started and removes the temporary folder; nothing is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Master, then workers: how long to wait for each to come up on this (slow, shared) machine.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 30
_PYSPARK_MODULES = ("pyspark.daemon", "pyspark.worker")


class ClusterError(RuntimeError):
    """The cluster did not come up (the message carries the tail of every log)."""


def spark_home() -> Path:
    """``SPARK_HOME`` when set, else the pyspark package folder (it has ``bin/spark-class`` and ``jars``)."""
    if os.environ.get("SPARK_HOME"):
        return Path(os.environ["SPARK_HOME"])
    import pyspark

    return Path(pyspark.__file__).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------- /proc reading


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line joined by spaces) of every process readable now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])  # after "pid (comm) state"
        table[int(entry)] = (parent, cmdline.replace(b"\0", b" ").decode(errors="replace").strip())
    return table


def descendants(pid: int, table: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...), from ``/proc``."""
    table = _processes() if table is None else table
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return sorted(found)


def _is_pyspark(cmdline: str) -> bool:
    return any(module in cmdline.split() for module in _PYSPARK_MODULES)


@dataclass(frozen=True)
class PythonWorker:
    """A Python process of an executor: the ``pyspark.daemon`` (``forked`` False, child of the executor JVM)
    or a task worker it forked (``forked`` True: same command line, parent the daemon)."""

    pid: int
    parent: int
    worker: int  # index of the cluster worker whose JVM it descends from
    forked: bool
    cmdline: str


# ------------------------------------------------------------------------------------------------ cluster


@dataclass
class StandaloneCluster:
    """A running standalone cluster (see :func:`standalone_cluster`)."""

    folder: Path
    master_port: int
    webui_port: int
    cores: int
    memory: str
    env: dict[str, str]
    master: subprocess.Popen | None = None
    worker_processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def json_url(self) -> str:
        return f"http://127.0.0.1:{self.webui_port}/json"

    @property
    def workers(self) -> int:
        return len(self.worker_processes)

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.worker_processes]

    def worker_dir(self, i: int) -> Path:
        """Worker ``i``'s work dir: its executors run in ``<dir>/<app id>/<executor id>`` (their cwd)."""
        return self.folder / f"worker-{i}"

    def session_conf(self, *, executor_memory: str = "512m") -> dict[str, str]:
        """Options for a driver on this cluster: loopback driver, no UI, one core per executor, and the
        scheduler waits for every worker's executor before running the first job (up to 60 s)."""
        return {
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.executor.cores": "1",
            "spark.executor.memory": executor_memory,
            "spark.cores.max": str(self.workers * self.cores),
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "60s",
        }

    @contextlib.contextmanager
    def session(self, app_name: str) -> Iterator[SparkSession]:
        """A driver session on this cluster (:meth:`session_conf`, this interpreter on the executors), its
        logs errors only, every executor registered; stopped at the end."""
        from pyspark.sql import SparkSession

        before = os.environ.get("PYSPARK_PYTHON")
        os.environ["PYSPARK_PYTHON"] = sys.executable  # read once, when the context starts
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
                builder = SparkSession.builder.master(self.url).appName(app_name)
                spark = builder.config(map=self.session_conf()).getOrCreate()
        finally:
            if before is None:
                del os.environ["PYSPARK_PYTHON"]
            else:
                os.environ["PYSPARK_PYTHON"] = before
        try:
            spark.sparkContext.setLogLevel("ERROR")
            if spark.sparkContext.master != self.url:
                raise ClusterError(f"another session is active, on {spark.sparkContext.master}")
            wait_for_executors(spark, self.workers)
            yield spark
        finally:
            spark.stop()

    # ------------------------------------------------------------------------------------------ status

    def status(self) -> dict:
        """The master's JSON status (workers, applications)."""
        with urllib.request.urlopen(self.json_url, timeout=5) as response:
            return json.load(response)

    def alive_workers(self) -> int:
        try:
            return sum(w["state"] == "ALIVE" for w in self.status()["workers"])
        except (OSError, ValueError, KeyError):  # not listening yet
            return 0

    def logs(self) -> dict[str, str]:
        """The last lines of every process's log, by file name."""
        tails = {}
        for path in sorted(self.folder.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()
            tails[path.name] = "\n".join(lines[-LOG_TAIL_LINES:])
        return tails

    def _fail(self, message: str) -> ClusterError:
        logs = "\n".join(f"--- {name} (tail)\n{text}" for name, text in self.logs().items())
        return ClusterError(f"{message}\n{logs}")

    # ------------------------------------------------------------------------------------------ python

    def python_workers(self) -> list[PythonWorker]:
        """The executors' Python processes (``pyspark.daemon``/``pyspark.worker``) below the worker JVMs."""
        table = _processes()
        found = []
        for i, worker in enumerate(self.worker_pids):
            for pid in descendants(worker, table):
                parent, cmdline = table[pid]
                if _is_pyspark(cmdline):
                    forked = parent in table and _is_pyspark(table[parent][1])
                    found.append(PythonWorker(pid, parent, i, forked, cmdline))
        return found

    def kill_python_worker(self, *, timeout: float = 30.0) -> PythonWorker:
        """SIGKILL a forked task worker that is computing (its CPU time grew over 0.2 s), not the daemon and
        not an idle pooled worker, so the task running in it fails and Spark retries it; waits up to
        ``timeout`` for one; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            forked = {p.pid: p for p in self.python_workers() if p.forked}
            before = {pid: _cpu_seconds(pid) for pid in forked}
            time.sleep(0.2)
            busy = [pid for pid in forked if _cpu_seconds(pid) > before[pid] >= 0]
            for pid in busy:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    return forked[pid]
            if time.monotonic() > deadline:
                raise self._fail(f"no Python task worker computed within {timeout}s")

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i``'s whole process group: its JVM, its executors and their Python processes."""
        process = self.worker_processes[i]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)

    # ------------------------------------------------------------------------------------ start / stop

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("wb")
        try:
            return subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.folder,
                start_new_session=True,  # its own process group: killpg reaches the JVM and its children
            )
        finally:
            log.close()

    def _wait(self, what: str, ready) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            dead = [p for p in self._all() if p.poll() is not None]
            if dead:
                raise self._fail(f"{what}: a cluster process exited with code {dead[0].returncode}")
            if time.monotonic() > deadline:
                raise self._fail(f"{what}: not within {START_TIMEOUT:.0f}s")
            time.sleep(0.2)

    def start(self, workers: int) -> None:
        master = f"--host 127.0.0.1 --port {self.master_port} --webui-port {self.webui_port}"
        self.master = self._spawn("master", ["org.apache.spark.deploy.master.Master", *master.split()])
        self._wait(f"master on {self.url}", lambda: self._status_or_none() is not None)
        for i in range(workers):
            self.worker_dir(i).mkdir()
            options = f"--host 127.0.0.1 --cores {self.cores} --memory {self.memory} --webui-port 0"
            args = [*options.split(), "--work-dir", str(self.worker_dir(i)), self.url]
            self.worker_processes.append(
                self._spawn(f"worker-{i}", ["org.apache.spark.deploy.worker.Worker", *args])
            )
        self._wait(f"{workers} ALIVE workers at {self.json_url}", lambda: self.alive_workers() == workers)

    def _status_or_none(self) -> dict | None:
        try:
            return self.status()
        except (OSError, ValueError):
            return None

    def _all(self) -> list[subprocess.Popen]:
        return [p for p in (self.master, *self.worker_processes) if p is not None]

    def stop(self) -> None:
        """SIGTERM every process group (workers first), then SIGKILL what is left; reap the launchers."""
        processes = [*self.worker_processes, *([self.master] if self.master else [])]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for process in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline and any(_group_alive(p.pid) for p in processes):
                time.sleep(0.1)
            for process in processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.1)
            if not any(_group_alive(p.pid) for p in processes):
                break


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` so far; -1 when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _group_alive(group: int) -> bool:
    """Whether any process of process group ``group`` still exists (zombies of our own launchers aside)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == group and fields[0] != "Z":
                return True
    return False


@contextlib.contextmanager
def standalone_cluster(
    workers: int = 2, cores: int = 1, memory: str = "1g", env: Mapping[str, str] | None = None
) -> Iterator[StandaloneCluster]:
    """Start a master and ``workers`` workers (``cores`` cores and ``memory`` each) on free loopback ports;
    yield once the master's JSON endpoint lists them all ALIVE; stop everything and remove the folder.

    Every process gets this environment plus ``SPARK_HOME``, ``SPARK_LOCAL_IP=127.0.0.1``,
    ``PYSPARK_PYTHON`` (this interpreter) and ``env`` (the executors inherit the worker's environment).
    """
    folder = Path(tempfile.mkdtemp(prefix="lenrisk-spark-cluster-"))
    environment = {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        **(env or {}),
    }
    cluster = StandaloneCluster(folder, free_port(), free_port(), cores, memory, environment)
    try:
        cluster.start(workers)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def wait_for_executors(spark: SparkSession, count: int, timeout: float = 60.0) -> None:
    """Wait until ``count`` executors (the driver aside) have registered with ``spark``'s context."""
    tracker = spark.sparkContext._jsc.sc()
    deadline = time.monotonic() + timeout
    while tracker.getExecutorMemoryStatus().size() - 1 < count:
        if time.monotonic() > deadline:
            raise ClusterError(f"{count} executors did not register within {timeout}s")
        time.sleep(0.1)


def executor_dir_worker(cluster: StandaloneCluster, cwd: str) -> int | None:
    """The index of the worker whose work dir holds ``cwd`` (a task's working directory), if any."""
    for i in range(cluster.workers):
        if Path(cwd).is_relative_to(cluster.worker_dir(i)):
            return i
    return None


if __name__ == "__main__":  # a quick manual check: start, print the status, stop
    with standalone_cluster() as running:
        print(running.url, running.worker_pids, running.alive_workers(), file=sys.stderr)
