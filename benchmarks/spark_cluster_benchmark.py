"""Scoring on a local Spark standalone cluster, side by side in one run with the local engine.

    .venv/bin/python benchmarks/spark_cluster_benchmark.py [--rows 1000000] [--files 8] [--no-driver-cost]

1. Trains both outcome models on 2,000 synthetic lines (the tests' recipe: one cross-validation repeat, 20
   bootstrap resamples) and registers them, as ``lenrisk train`` does (models from code,
   ``features/model/pyfunc.py``), in a temporary SQLite MLflow store; both become ``champion``.
2. Writes ``--rows`` synthetic lines (``generate_cohort``, the training settings) as a Parquet dataset of
   ``--files`` files, and the same rows as one Parquet file for the local engine.
3. Engines (:data:`ENGINES`), each timed on the same rows, rows/s and ratio to the local engine:
   - local engine: ``service.batch.local.prepare_run`` + ``score_file`` (``--explain none``), read to
     published manifest, one file;
   - the lenrisk Spark engine (``service.batch.spark.plan_dataset_run`` + ``score_dataset``, what
     ``lenrisk score --engine spark`` runs, ``--explain none``) on a standalone cluster of 1 and of 2
     workers, the dataset in, both datasets and the manifest published; after a warm-up run on a sample of
     every file;
   - ``mlflow.pyfunc.spark_udf(spark, "models:/<name>@champion", env_manager="local")`` of both outcomes
     (two UDF columns, result ``probability double``) on a standalone cluster of 1 and of 2 workers (1 core,
     1 GiB each; ``tests/spark_cluster.py``), prediction only, forced by a write to Spark's ``noop`` sink;
     session start, executor registration, the UDFs' creation (the driver reads the registry) and a
     warm-up job with the same UDFs on a sample of every file (Python workers started, models loaded) are
     not timed. The executors get ``MLFLOW_TRACKING_URI`` pointing nowhere: only the driver reads the
     registry.
4. Driver cost: peak RSS (``VmHWM``) and CPU seconds (``utime + stime``) of the driver's process tree (the
   Python driver and its JVM) for the lenrisk engine and for ``spark_udf`` on 2 workers over ``--rows``
   and 4 x ``--rows`` lines (the same files hard-linked four times; the lenrisk engine names them apart),
   each in a fresh process sampled from ``/proc`` every
   0.1 s; session start included (the same for both sizes), no warm-up. "seconds (job)" is the job alone.

Prints markdown tables. Compare within one run only: this machine is shared and its timings move 20-30%
between runs. ``--rows 20000`` checks that it works in a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.schema import RECORD_NAMES  # noqa: E402
from tests.spark_cluster import standalone_cluster, wait_for_executors  # noqa: E402
from training.cohort.generate import generate_cohort  # noqa: E402

SETTINGS = ("relapsed_refractory", "newly_diagnosed")  # the training cohort's (as tests/conftest.py)
TRAINING_ROWS = 2000
CHUNK_ROWS = 250_000  # generation chunk
NOWHERE = "http://127.0.0.1:9/no-registry-on-executors"
WARM_UP_ROWS = 5000
SAMPLE_SECONDS = 0.1
DRIVER_PROCESSES = ("python", "java")  # java: spark-submit's launcher and the driver JVM


@dataclass(frozen=True)
class Bench:
    """What every engine measurement gets: the same rows as a dataset folder and as one file."""

    rows: int
    dataset: Path  # folder of Parquet files (Spark engines)
    single: Path  # the same rows in one Parquet file (local engine)
    registry: Path  # the MLflow store's folder (LENRISK_MLRUNS_DIR)
    tracking_uri: str
    folder: Path  # scratch space


# ------------------------------------------------------------------------------------------------ set-up


def train_and_register(root: Path) -> str:
    """Both models trained on the tests' small cohort and registered in a SQLite store under ``root``;
    returns its tracking URI."""
    from features.model.registry import RegistrySettings
    from features.validate import validate_table
    from training.card import SyntheticSource
    from training.pipeline import train
    from training.registry import log_and_register

    source = SyntheticSource(n=TRAINING_ROWS, seed=11, settings=SETTINGS)
    frame = validate_table(generate_cohort(source.n, source.seed, source.settings), require_outcomes=True)
    trained = train(frame.raise_on_errors(), seed=11, source=source.label(), n_repeats=1, n_boot=20)
    settings = RegistrySettings(mlruns_dir=root, mlflow_tracking_uri=None)
    versions = log_and_register(trained, settings, synthetic=source)
    assert all("champion" in v.aliases for v in versions), versions
    return settings.tracking_uri


def write_rows(folder: Path, single: Path, rows: int, files: int) -> None:
    """``rows`` contract lines (no outcomes) as ``files`` Parquet files in ``folder``, and as ``single``."""
    folder.mkdir()
    per_file = -(-rows // files)
    writer = None
    for i, start in enumerate(range(0, rows, per_file)):
        chunks = []
        for offset in range(start, min(start + per_file, rows), CHUNK_ROWS):
            n = min(CHUNK_ROWS, start + per_file - offset, rows - offset)
            chunks.append(generate_cohort(n, seed=1000 + offset // CHUNK_ROWS + i * 7919, settings=SETTINGS))
        tables = [pa.Table.from_pandas(c[list(RECORD_NAMES)], preserve_index=False) for c in chunks]
        table = pa.concat_tables(tables).replace_schema_metadata(None)
        pq.write_table(table, folder / f"part-{i:05d}.parquet", row_group_size=65_536)
        writer = writer or pq.ParquetWriter(single, table.schema)
        writer.write_table(table, row_group_size=65_536)
    writer.close()


def hard_linked(dataset: Path, target: Path, times: int) -> Path:
    """A folder holding every file of ``dataset`` ``times`` times (hard links: no copy)."""
    target.mkdir()
    for k in range(times):
        for path in sorted(dataset.glob("*.parquet")):
            os.link(path, target / f"{k}-{path.name}")
    return target


# ------------------------------------------------------------------------------------------------ engines


@dataclass(frozen=True)
class Speed:
    """An engine's timed run: rows/s, and the machine's cores busy meanwhile (every process: the cluster's
    JVMs and Python workers, the driver; from ``/proc/stat``)."""

    rows_per_second: float
    cores_busy: float


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@contextlib.contextmanager
def timed(rows: int, result: list[Speed]) -> Iterator[None]:
    """Time the block; append its :class:`Speed` over ``rows``."""
    (busy, total), start = _cpu_ticks(), time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    busy_after, total_after = _cpu_ticks()
    cores = (os.cpu_count() or 1) * (busy_after - busy) / max(total_after - total, 1)
    result.append(Speed(rows / elapsed, cores))


def local_engine_rows_per_second(bench: Bench) -> Speed:
    """``lenrisk score`` local engine, ``--explain none``: read, validate, score, write, publish."""
    from service.batch.local import prepare_run, score_file
    from service.model_store import load_predictor
    from service.settings import ServiceSettings

    predictor = load_predictor(
        ServiceSettings(mlruns_dir=bench.registry, mlflow_tracking_uri=bench.tracking_uri)
    )
    paths, table = prepare_run(bench.single, bench.folder / "local-scored.parquet")
    speed: list[Speed] = []
    with timed(bench.rows, speed):
        counts = score_file(predictor, paths, table).counts
    (bench.folder / "local-scored.parquet").unlink()
    assert counts["read"] == bench.rows, counts
    return speed[0]


@contextlib.contextmanager
def cluster_session(workers: int) -> Iterator:
    """A standalone cluster of ``workers`` workers (1 core, 1 GiB) and a driver session on it, every
    executor registered; the executors see no registry."""
    with (
        standalone_cluster(workers=workers, env={"MLFLOW_TRACKING_URI": NOWHERE}) as cluster,
        cluster.session("lenrisk-cluster-benchmark") as spark,
    ):
        yield spark


def champion_udfs(spark, tracking_uri: str) -> dict:
    """``spark_udf`` of each outcome's champion (the registry read here, on the driver only)."""
    import mlflow

    from service.settings import ServiceSettings

    mlflow.set_tracking_uri(tracking_uri)
    return {
        outcome: mlflow.pyfunc.spark_udf(
            spark, f"models:/{name}@champion", result_type="probability double", env_manager="local"
        )
        for outcome, name in ServiceSettings(mlflow_tracking_uri=tracking_uri).model_names.items()
    }


def with_risks(frame, udfs: dict):
    """``frame`` with one UDF column per outcome over the contract columns."""
    from pyspark.sql import functions as sf

    columns = [sf.col(name) for name in RECORD_NAMES]
    for outcome, udf in udfs.items():
        frame = frame.withColumn(f"risk_{outcome}", udf(*columns))
    return frame


def noop_write(frame) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
        frame.write.format("noop").mode("overwrite").save()


def spark_udf_rows_per_second(bench: Bench, workers: int) -> Speed:
    """``mlflow.pyfunc.spark_udf`` of both champions on a ``workers``-worker standalone cluster, after a
    warm-up job on a sample of every file with the same UDFs (MLflow caches a loaded model per Python
    worker and per ``spark_udf`` call: a new call would load the models again in every Python worker)."""
    with cluster_session(workers) as spark:
        udfs = champion_udfs(spark, bench.tracking_uri)
        frame = spark.read.parquet(bench.dataset.as_uri())
        noop_write(with_risks(frame.sample(fraction=min(1.0, WARM_UP_ROWS / bench.rows), seed=0), udfs))
        speed: list[Speed] = []
        with timed(bench.rows, speed):
            noop_write(with_risks(frame, udfs))
    return speed[0]


def bench_predictor(bench: Bench):
    """Both champions, loaded and verified from the bench's registry as ``lenrisk score`` loads them."""
    from service.model_store import load_predictor
    from service.settings import ServiceSettings

    return load_predictor(ServiceSettings(mlruns_dir=bench.registry, mlflow_tracking_uri=bench.tracking_uri))


def score_on_spark(spark, predictor, dataset: Path, output: Path) -> dict[str, int]:
    """The lenrisk Spark engine over ``dataset`` into ``output`` (``--explain none``); its counts."""
    from service.batch.spark import plan_dataset_run, score_dataset

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
        return score_dataset(spark, predictor, plan_dataset_run(spark, str(dataset), str(output))).counts


def lenrisk_engine_rows_per_second(bench: Bench, workers: int) -> Speed:
    """``lenrisk score --engine spark`` (the library under it) on a ``workers``-worker standalone cluster:
    read, validate, score, write both datasets, describe the parts, reconcile, publish; after a warm-up
    run on a sample of every file (Python workers started, models loaded), as for ``spark_udf``."""
    predictor = bench_predictor(bench)
    sample = bench.folder / "warm-up"
    sample.mkdir(exist_ok=True)
    for path in sorted(bench.dataset.glob("*.parquet")):
        rows = pq.read_table(path).slice(0, WARM_UP_ROWS // len(list(bench.dataset.glob("*.parquet"))) + 1)
        pq.write_table(rows, sample / path.name)
    with cluster_session(workers) as spark:
        score_on_spark(spark, predictor, sample, bench.folder / f"warm-up-out-{workers}")
        speed: list[Speed] = []
        with timed(bench.rows, speed):
            counts = score_on_spark(spark, predictor, bench.dataset, bench.folder / f"lenrisk-out-{workers}")
    assert counts["read"] == bench.rows, counts
    return speed[0]


#: Engine name -> rows/s on the bench's rows. The local engine first: the others are compared with it.
ENGINES: dict[str, Callable[[Bench], Speed]] = {
    "local engine (one process)": local_engine_rows_per_second,
    "lenrisk Spark engine, 1 worker x 1 core": functools.partial(lenrisk_engine_rows_per_second, workers=1),
    "lenrisk Spark engine, 2 workers x 1 core": functools.partial(lenrisk_engine_rows_per_second, workers=2),
    "spark_udf, 1 worker x 1 core": functools.partial(spark_udf_rows_per_second, workers=1),
    "spark_udf, 2 workers x 1 core": functools.partial(spark_udf_rows_per_second, workers=2),
}


# ------------------------------------------------------------------------------------------- driver cost


def _proc_tree(pid: int) -> list[int]:
    from tests.spark_cluster import descendants

    return [pid, *descendants(pid)]


def _sample(pid: int) -> tuple[str, int, float] | None:
    """(command name, VmHWM KiB, CPU seconds) of ``pid`` now, or None when gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return stat[stat.index("(") + 1 : stat.rindex(")")], hwm, cpu


def driver_cost(command: list[str], env: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Run ``command``; per process of its tree (by command name): peak RSS (MiB) and CPU seconds, sampled
    from ``/proc`` every 0.1 s until it exits (the last 0.1 s of a process's CPU may be missed)."""
    seen: dict[int, tuple[str, int, float]] = {}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as process:
        while process.poll() is None:
            for pid in _proc_tree(process.pid):
                sample = _sample(pid)
                if sample is not None:
                    name, hwm, cpu = sample
                    seen[pid] = (name, max(hwm, seen.get(pid, (name, 0, 0.0))[1]), cpu)
            time.sleep(SAMPLE_SECONDS)
        output = process.stdout.read()
    if process.returncode != 0:
        raise RuntimeError(f"{command} exited with {process.returncode}")
    cost: dict[str, dict[str, float]] = {}
    for command_name, hwm, cpu in seen.values():
        name = command_name if command_name in DRIVER_PROCESSES else "other (launcher scripts)"
        entry = cost.setdefault(name, {"processes": 0, "peak_rss_mib": 0.0, "cpu_s": 0.0})
        entry["processes"] += 1
        entry["peak_rss_mib"] = max(entry["peak_rss_mib"], hwm / 1024)
        entry["cpu_s"] += cpu
    cost["_result"] = json.loads(output.splitlines()[-1])
    return cost


def driver_child(engine: str, url: str, bench: Bench, dataset: Path, rows: int) -> None:
    """The child of :func:`driver_cost`: ``engine`` (``spark_udf`` or ``lenrisk``) over ``dataset`` on the
    running cluster at ``url``; prints the job's seconds."""
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    conf = json.loads(os.environ["LENRISK_BENCH_SPARK_CONF"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
        spark = SparkSession.builder.master(url).config(map=conf).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    wait_for_executors(spark, int(conf["spark.cores.max"]))
    if engine == "spark_udf":
        udfs = champion_udfs(spark, bench.tracking_uri)
        start = time.perf_counter()
        noop_write(with_risks(spark.read.parquet(dataset.as_uri()), udfs))
    else:
        predictor = bench_predictor(bench)
        start = time.perf_counter()
        assert score_on_spark(spark, predictor, dataset, bench.folder / f"driver-out-{rows}")["read"] == rows
    elapsed = time.perf_counter() - start
    spark.stop()
    print(json.dumps({"rows": rows, "seconds": elapsed}))


DRIVER_ENGINES = ("lenrisk", "spark_udf")


def driver_costs(bench: Bench, times: tuple[int, ...] = (1, 4)) -> dict[str, dict[int, dict]]:
    """Driver cost of each engine on 2 workers over ``times`` x the rows, each size in a fresh process."""
    costs: dict[str, dict[int, dict]] = {}
    with standalone_cluster(workers=2, env={"MLFLOW_TRACKING_URI": NOWHERE}) as cluster:
        env = {**os.environ, "LENRISK_BENCH_SPARK_CONF": json.dumps(cluster.session_conf())}
        for k in times:
            dataset = bench.dataset if k == 1 else hard_linked(bench.dataset, bench.folder / f"x{k}", k)
            rows = k * bench.rows
            for engine in DRIVER_ENGINES:
                command = [sys.executable, __file__, "--driver-child", engine, cluster.url]
                command += [
                    bench.tracking_uri,
                    str(bench.registry),
                    str(bench.folder),
                    str(dataset),
                    str(rows),
                ]
                costs.setdefault(engine, {})[rows] = driver_cost(command, env)
    return costs


# ------------------------------------------------------------------------------------------------ report


def print_speeds(rows: int, speeds: dict[str, Speed]) -> None:
    local = next(iter(speeds.values())).rows_per_second
    print(f"\n{rows:,} rows, Parquet; prediction of both outcomes, no explanation; rows/s\n")
    print(f"| engine | rows/s | / local engine | cores busy (of {os.cpu_count()}) |\n|---|---|---|---|")
    for name, speed in speeds.items():
        print(
            f"| {name} | {speed.rows_per_second:,.0f} | {speed.rows_per_second / local:.2f}x "
            f"| {speed.cores_busy:.2f} |"
        )


def print_costs(engine: str, costs: dict[int, dict]) -> None:
    print(
        f"\nDriver of {engine} on 2 workers: its process tree, session start included; (n) processes seen, "
        "peak RSS the largest of them, CPU their sum\n"
    )
    print("| rows | seconds (job) | process | peak RSS MiB | CPU s |\n|---|---|---|---|---|")
    totals = {}
    for rows, cost in costs.items():
        result = cost.pop("_result")
        peak = sum(cost[name]["peak_rss_mib"] for name in DRIVER_PROCESSES if name in cost)
        totals[rows] = (peak, sum(entry["cpu_s"] for entry in cost.values()))
        for name, entry in sorted(cost.items()):
            print(
                f"| {rows:,} | {result['seconds']:.1f} | {name} ({entry['processes']:.0f}) "
                f"| {entry['peak_rss_mib']:,.0f} | {entry['cpu_s']:.1f} |"
            )
    (small, (peak_small, cpu_small)), (large, (peak_large, cpu_large)) = (
        min(totals.items()),
        max(totals.items()),
    )
    print(
        f"\n{large:,} rows / {small:,} rows: driver peak RSS (python + JVM) {peak_large / peak_small:.2f}x, "
        f"driver CPU seconds {cpu_large / cpu_small:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8, help="Parquet files of the Spark engines' dataset")
    parser.add_argument("--no-driver-cost", action="store_true")
    parser.add_argument("--driver-child", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver_child:
        engine, url, uri, registry, folder, dataset, rows = args.driver_child
        bench = Bench(int(rows), Path(dataset), Path(dataset), Path(registry), uri, Path(folder))
        driver_child(engine, url, bench, Path(dataset), int(rows))
        return

    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    with tempfile.TemporaryDirectory(prefix="lenrisk-cluster-bench-") as tmp:
        folder = Path(tmp)
        print(f"training and registering on {TRAINING_ROWS} lines ...", file=sys.stderr)
        tracking_uri = train_and_register(folder / "mlruns")
        print(f"generating {args.rows:,} lines ...", file=sys.stderr)
        write_rows(folder / "dataset", folder / "single.parquet", args.rows, args.files)
        bench = Bench(
            args.rows, folder / "dataset", folder / "single.parquet", folder / "mlruns", tracking_uri, folder
        )
        speeds = {}
        for name, measure in ENGINES.items():
            print(f"{name} ...", file=sys.stderr)
            speeds[name] = measure(bench)
        costs = {} if args.no_driver_cost else driver_costs(bench)
    print_speeds(args.rows, speeds)
    for engine, engine_costs in costs.items():
        print_costs(engine, engine_costs)


if __name__ == "__main__":
    main()
