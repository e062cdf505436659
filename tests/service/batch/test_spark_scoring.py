"""The Spark engine (pyspark, local[2]) scores a dataset of parts exactly as the local engine scores each
part: same rows, scores and explanations, same rejects with the same row identity (part, row number), across
several partitions and Arrow batches; it publishes the datasets and the manifest last, or nothing."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features.errors import FileFormatError
from features.schema import OUTCOMES, RECORD_NAMES
from features.validate import validate_table
from service.batch.hadoop_fs import FileSystemError
from service.batch.publish import BatchPathError, ReconciliationError
from service.batch.score import Explain
from service.batch.spark import SparkJobError, plan_dataset_run, score_dataset
from tests.helpers import same_scores
from tests.service.batch.dataset_checks import (
    assert_manifest_describes_the_files,
    local_reference,
    read_dataset,
    with_local_types,
)
from training.cohort.generate import generate_cohort

N = 300
pytestmark = [
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
    pytest.mark.slow,
    pytest.mark.external,  # Java: Spark runs in a JVM
]


@pytest.fixture(scope="session")
def spark():
    """A local[2] session that splits even small files into several partitions and Arrow batches."""
    from pyspark.sql import SparkSession

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYSPARK_PYTHON", sys.executable)
        session = (
            SparkSession.builder.master("local[2]")
            .appName("lenrisk-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.files.maxPartitionBytes", "16k")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", "50")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        yield session
        session.stop()


@pytest.fixture(scope="module")
def bad_csv() -> bytes:
    """N rows with CRLF line ends, a byte-order mark and bad rows early, late and at partition-sized gaps."""
    frame = generate_cohort(N, seed=21)[list(RECORD_NAMES)]
    frame["note"] = "a, b"
    rows = list(csv.reader(io.StringIO(frame.to_csv(index=False))))
    for k in (3, 150, 290):
        rows[k][rows[0].index("regimen")] = "XYZ"
    rows[77][rows[0].index("age")] = "seventy"
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    lines = out.getvalue().split("\r\n")[:-1]
    lines[120] = lines[0]  # the header again
    lines[200] = ""  # an empty line
    lines[250] += ",surplus"
    lines[-1] = lines[-1][:20]  # truncated last row, no final line end
    return b"\xef\xbb\xbf" + "\r\n".join(lines).encode()


def run_spark(spark, predictor, source, output, **options):
    return score_dataset(
        spark,
        predictor,
        plan_dataset_run(spark, str(source), str(output), partition_by=options.pop("partition_by", ())),
        **options,
    )


def test_a_csv_dataset_scores_and_rejects_as_the_local_engine_scores_each_part(
    spark, predictor, bad_csv, tmp_path
):
    root = tmp_path / "in"
    (root / "2026").mkdir(parents=True)
    (root / "a lines.csv").write_bytes(bad_csv)
    clean = generate_cohort(120, seed=24)[list(RECORD_NAMES)].assign(note="c")  # bad_csv's columns
    clean.to_csv(root / "2026" / "b.csv", index=False)
    clean.head(0).to_csv(root / "2026" / "c.csv", index=False)  # a header and no row
    (root / "_SUCCESS").write_text("")  # hidden: not a part
    (root / "2026" / ".b.csv.crc").write_text("")
    parts = [root / "2026" / "b.csv", root / "2026" / "c.csv", root / "a lines.csv"]  # sorted by path
    assert spark.read.text(str(root / "a lines.csv")).rdd.getNumPartitions() > 1

    told = []
    summary = run_spark(spark, predictor, root, tmp_path / "out", explain=Explain.TOP3, progress=told.append)
    assert sum(told) == N + 120 and all(rows > 0 for rows in told)
    output, rejects, counts = local_reference(predictor, root, parts, tmp_path / "local", Explain.TOP3)

    same_scores(output, read_dataset(tmp_path / "out" / "scored"))
    same_scores(rejects, read_dataset(tmp_path / "out" / "rejects"))
    assert summary.counts == counts
    assert counts == {"read": N + 120, "scored": N + 120 - 8, "rejected": 8, "reject_lines": 35}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(summary.manifest))
    assert [p["path"] for p in manifest["input"]["parts"]] == ["2026/b.csv", "2026/c.csv", "a lines.csv"]
    assert [p["rows"] for p in manifest["input"]["parts"]] == [120, 0, N]
    assert manifest["engine"] == "spark" and manifest["models"]["discontinuation"]["version"] == "1"
    assert_manifest_describes_the_files(tmp_path / "out", manifest)
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.endswith(".crc")) == [
        "_SUCCESS",
        "manifest.json",
        "rejects",
        "scored",
    ]


def test_a_parquet_glob_partitioned_by_setting_keeps_the_input_types(spark, predictor, tmp_path):
    frame = generate_cohort(N, seed=22)
    frame["visit"] = pd.array(np.arange(N), dtype="int32")
    frame.loc[[10, 260], "sex"] = "Male"
    root = tmp_path / "in"
    root.mkdir()
    for k, rows in enumerate((frame.iloc[:100], frame.iloc[100:])):
        table = pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False)
        pq.write_table(table, root / f"part-{k}.parquet", row_group_size=60)
    (root / "notes.txt").write_text("not matched by the glob")

    summary = run_spark(
        spark,
        predictor,
        root / "part-*.parquet",
        tmp_path / "out",
        explain=Explain.ALL,
        partition_by=("setting",),
    )
    parts = [root / "part-0.parquet", root / "part-1.parquet"]
    output, rejects, counts = local_reference(predictor, root, parts, tmp_path / "local", Explain.ALL)

    scored = tmp_path / "out" / "scored"
    assert {p.name for p in scored.iterdir() if p.is_dir()} == {
        f"setting={s}" for s in set(output["setting"].to_pylist())
    }
    on_spark = read_dataset(scored)
    setting, expected = on_spark["setting"].cast(pa.string()), output["setting"].cast(pa.string())
    output, on_spark = output.drop_columns("setting"), on_spark.drop_columns("setting")
    assert on_spark.schema.field("visit").type == pa.int32()
    same_scores(output, with_local_types(on_spark, output))
    assert setting.equals(expected)
    same_scores(rejects, read_dataset(tmp_path / "out" / "rejects"))
    assert summary.counts == counts == {"read": N, "scored": N - 2, "rejected": 2, "reject_lines": 2}
    assert summary.manifest["output"]["partition_by"] == ["setting"]
    assert_manifest_describes_the_files(
        tmp_path / "out", json.loads((tmp_path / "out" / "manifest.json").read_text())
    )


def test_spark_gives_the_local_engines_intervals(spark, predictor, registry, tmp_path):
    """Several partitions and Arrow batches; lines outside the training data (null) early and late."""
    frame = generate_cohort(N, seed=23, settings=("relapsed_refractory", "newly_diagnosed"))
    top = registry["result"].outcomes["discontinuation"].model.encoder.ranges_["age"]["max"]
    frame.loc[[4, 270], "age"] = top + 2
    frame.loc[[130, 299], "setting"] = "maintenance"
    (tmp_path / "in").mkdir()
    source = tmp_path / "in" / "lines.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), source, row_group_size=60)
    summary = run_spark(spark, predictor, source, tmp_path / "out", interval=True)
    local, _, _ = local_reference(
        predictor, source.parent, [source], tmp_path / "local", Explain.NONE, interval=True
    )

    on_spark = with_local_types(read_dataset(tmp_path / "out" / "scored"), local)
    bounds = [f"{o}_{b}" for o in OUTCOMES for b in ("lower", "upper")]
    same_scores(local.drop_columns(bounds), on_spark.drop_columns(bounds))
    assert summary.manifest["interval"] == 0.95
    clean = validate_table(frame).clean
    for o in OUTCOMES:
        lower, upper = registry["result"].outcomes[o].model.interval(clean)
        nulls = np.flatnonzero(np.isnan(lower))
        assert {4, 130, 270, 299} <= set(nulls.tolist()) and len(nulls) < N // 2
        for name, kernel in ((f"{o}_lower", lower), (f"{o}_upper", upper)):
            assert on_spark[name].null_count == local[name].null_count == len(nulls)
            assert on_spark[name].is_null().equals(local[name].is_null())
            here, there = (t[name].to_numpy(zero_copy_only=False) for t in (local, on_spark))
            # matrix products of other batch sizes: equal within float64 rounding, not bit for bit
            np.testing.assert_allclose(there, here, rtol=1e-12, atol=0)  # NaN where NaN
            np.testing.assert_allclose(there, kernel, rtol=1e-12, atol=0)


def test_a_whole_part_problem_on_an_executor_publishes_nothing(spark, predictor, bad_csv, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "lines.csv").write_bytes(bad_csv[:-3000] + b"\xe9" + bad_csv[-3000:])
    with pytest.raises(FileFormatError, match=r"^lines.csv: cannot be read as CSV \(not UTF-8 text\)$"):
        run_spark(spark, predictor, tmp_path / "in", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_parts_that_do_not_hold_the_rows_counted_publish_nothing(spark, predictor, tmp_path, monkeypatch):
    from service.batch import spark as engine

    (tmp_path / "in").mkdir()
    generate_cohort(150, seed=27)[list(RECORD_NAMES)].to_csv(tmp_path / "in" / "lines.csv", index=False)
    run_spark(spark, predictor, tmp_path / "in", tmp_path / "out")
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    described = engine.describe_parts
    monkeypatch.setattr(engine, "describe_parts", lambda *args: described(*args)[1:])  # a part unaccounted
    with pytest.raises(
        ReconciliationError, match=r"^rows in the parts 150, scored 150, rejected 0, written "
    ):
        run_spark(spark, predictor, tmp_path / "in", tmp_path / "out")
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before


@pytest.fixture
def packed(spark):
    """Session settings under which Spark packs many small parts into one task (no open cost) and sizes
    splits from the cores it counts (``leafNodeDefaultParallelism``); restored afterwards."""
    keys = ("spark.sql.files.openCostInBytes", "spark.sql.files.maxPartitionBytes")
    keys += ("spark.sql.leafNodeDefaultParallelism",)
    before = {key: spark.conf.get(key, None) for key in keys}
    spark.conf.set("spark.sql.files.openCostInBytes", "1")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "1m")
    spark.conf.set("spark.sql.leafNodeDefaultParallelism", "2")
    yield spark
    for key, value in before.items():
        spark.conf.unset(key) if value is None else spark.conf.set(key, value)


def small_parts(root: Path, count: int, rows: int) -> list[Path]:
    """``count`` CSV parts of ``rows`` lines, one bad regimen in each, under ``root``."""
    frame = generate_cohort(count * rows, seed=28)[list(RECORD_NAMES)]
    frame.loc[frame.index[::rows] + 1, "regimen"] = "XYZ"
    root.mkdir()
    for k in range(count):
        frame.iloc[k * rows : (k + 1) * rows].to_csv(root / f"part-{k:02d}.csv", index=False)
    return sorted(root.glob("*.csv"))


def test_many_small_parts_packed_into_few_tasks_keep_their_row_identity(packed, predictor, tmp_path):
    parts = small_parts(tmp_path / "in", 12, 25)
    assert packed.read.text([str(p) for p in parts]).rdd.getNumPartitions() < 6  # several parts a task
    summary = run_spark(packed, predictor, tmp_path / "in", tmp_path / "out", explain=Explain.TOP3)
    output, rejects, counts = local_reference(
        predictor, tmp_path / "in", parts, tmp_path / "local", Explain.TOP3
    )
    same_scores(output, read_dataset(tmp_path / "out" / "scored"))
    same_scores(rejects, read_dataset(tmp_path / "out" / "rejects"))
    assert summary.counts == counts and counts["rejected"] == 12


def test_rows_are_numbered_from_the_same_blocks_when_the_cluster_grows_between_passes(
    packed, predictor, tmp_path, monkeypatch
):
    """Executors joining after the line count would make Spark cut the CSV parts into smaller blocks for
    the scoring pass; the run pins the split size, so both passes see the same blocks."""
    from service.batch import spark as engine

    parts = small_parts(tmp_path / "in", 2, 300)
    counted = engine._count_rows

    def then_more_cores(*args):
        result = counted(*args)
        packed.conf.set("spark.sql.leafNodeDefaultParallelism", "8")
        return result

    monkeypatch.setattr(engine, "_count_rows", then_more_cores)
    summary = run_spark(packed, predictor, tmp_path / "in", tmp_path / "out")
    output, _, counts = local_reference(predictor, tmp_path / "in", parts, tmp_path / "local", Explain.NONE)
    assert summary.counts == counts
    same_scores(output, read_dataset(tmp_path / "out" / "scored"))
    assert packed.conf.get("spark.sql.files.minPartitionNum", None) is None  # restored


def test_a_part_spark_cannot_read_stops_the_run_with_a_domain_error(spark, predictor, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    table = pa.Table.from_pandas(generate_cohort(200, seed=29), preserve_index=False)
    pq.write_table(table, root / "lines.parquet", compression="snappy")
    data = bytearray((root / "lines.parquet").read_bytes())
    data[200:1200] = bytes(range(256)) * 3 + bytes(232)  # data pages broken, footer intact
    (root / "lines.parquet").write_bytes(bytes(data))
    run = plan_dataset_run(spark, str(root), str(tmp_path / "out"))  # the footer reads fine
    with pytest.raises(SparkJobError, match=r"^the Spark job failed \(\w+\); the cause is in the"):
        score_dataset(spark, predictor, run)
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_file_system_refusals_are_domain_errors(spark, tmp_path):
    with pytest.raises(
        FileSystemError, match=r"^cannot use nosuchfs://bucket/in \(UnsupportedFileSystemException"
    ):
        plan_dataset_run(spark, "nosuchfs://bucket/in", str(tmp_path / "out"))


def test_reconciliation_is_per_part(spark):
    from service.batch.dataset_input import InputDataset, InputPart
    from service.batch.hadoop_fs import FileInfo
    from service.batch.spark import _reconcile_parts

    parts = tuple(InputPart(FileInfo(f"file:/in/{n}", 1, 1), n, 10) for n in ("a.csv", "b.csv"))
    source = InputDataset("file:/in", True, ".csv", pa.schema([]), parts)
    rows = {"file:/in/a.csv": 10, "file:/in/b.csv": 10}
    fine = {"scored": 9, "rejected": 1, "identities": 10}
    _reconcile_parts(source, rows, {"a.csv": fine, "b.csv": fine})
    lost_and_doubled = {  # the totals agree (20 = 20): a row of a.csv lost, one of b.csv scored twice
        "a.csv": {"scored": 9, "rejected": 0, "identities": 9},
        "b.csv": {"scored": 11, "rejected": 0, "identities": 10},
    }
    with pytest.raises(
        ReconciliationError, match=r"^a.csv: rows in the part 10, scored 9, rejected 0, distinct"
    ):
        _reconcile_parts(source, rows, lost_and_doubled)
    with pytest.raises(ReconciliationError, match=r"^b.csv: rows in the part 10, scored 11"):
        _reconcile_parts(source, rows, {"a.csv": fine, "b.csv": lost_and_doubled["b.csv"]})


def test_a_glob_skips_hidden_folders_and_lists_a_part_once(spark, tmp_path):
    root = tmp_path / "in"
    for folder in ("2025", "2026", "_temporary/0", ".staging"):
        (root / folder).mkdir(parents=True)
        generate_cohort(5, seed=1)[list(RECORD_NAMES)].to_csv(root / folder / "a.csv", index=False)
    run = plan_dataset_run(spark, f"{root}/{{*,2025}}", str(tmp_path / "out"))
    assert [p.name for p in run.source.parts] == ["2025/a.csv", "2026/a.csv"]


def test_a_rerun_replaces_the_published_run_and_removes_a_killed_runs_leftovers(spark, predictor, tmp_path):
    (tmp_path / "in").mkdir()
    generate_cohort(150, seed=25)[list(RECORD_NAMES)].to_csv(tmp_path / "in" / "lines.csv", index=False)
    out = tmp_path / "out"
    first = run_spark(spark, predictor, tmp_path / "in", out)
    rows = read_dataset(out / "scored")
    killed = out / ".lenrisk-run-0123456789abcdef0123456789abcdef"  # as a killed driver leaves it
    (killed / "scored").mkdir(parents=True)
    (killed / "scored" / "part-0.parquet").write_text("half")

    second = run_spark(spark, predictor, tmp_path / "in", out)
    assert second.counts == first.counts
    same_scores(rows, read_dataset(out / "scored"))  # the same content
    assert not killed.exists()
    assert_manifest_describes_the_files(out, json.loads((out / "manifest.json").read_text()))

    (out / "_SUCCESS").unlink()  # a run killed while publishing: unmarked datasets
    (tmp_path / "in" / "lines.csv").write_text("not,the,contract\n")
    with pytest.raises(FileFormatError):
        run_spark(spark, predictor, tmp_path / "in", out)  # refused before any change to the folder
    assert (out / "scored").exists()
    (tmp_path / "in" / "lines.csv").unlink()
    generate_cohort(40, seed=26)[list(RECORD_NAMES)].to_csv(tmp_path / "in" / "lines.csv", index=False)
    assert run_spark(spark, predictor, tmp_path / "in", out).counts["read"] == 40
    assert read_dataset(out / "scored").num_rows == 40


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (
            {"a.csv": "x", "b.parquet": "x"},
            r"/in: the parts must all be .csv or all .parquet \(found .csv, .parquet\)$",
        ),
        ({"a.csv": "x", "b.txt": "x"}, r"/in: the parts must all be .csv or all .parquet"),
        ({"_a.csv": "x"}, r"/in: no .csv or .parquet file there$"),
        ({"a.csv": "HEADER", "b.csv": "patient_id\n"}, r"^b.csv: its columns differ from those of a.csv$"),
        ({"a.parquet": "not parquet"}, r"^a.parquet: cannot be read as Parquet \(malformed Parquet\)$"),
        ({"a.csv": "patient_id,age\n1,2\n"}, r"missing"),
    ],
)
def test_input_parts_are_checked_before_anything_runs(spark, tmp_path, layout, message):
    root = tmp_path / "in"
    root.mkdir()
    header = ",".join(RECORD_NAMES) + "\n"
    for name, text in layout.items():
        (root / name).write_text(header if text == "HEADER" else text)
    with pytest.raises(FileFormatError, match=message):
        plan_dataset_run(spark, str(root), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_output_folders_that_cannot_be_used_are_refused(spark, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    generate_cohort(5, seed=1)[list(RECORD_NAMES)].to_csv(root / "a.csv", index=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    for output, message in (
        (root / "out", r"^out: the output folder must be outside the input, and not hold any of it$"),
        (tmp_path, r"must be outside the input, and not hold any of it"),
        (tmp_path / "notes", r"^notes: the folder holds other files than a lenrisk run's \(mine.txt\)"),
        (tmp_path / "missing" / "out", r"^out: the folder .*/missing does not exist$"),
        (root / "a.csv", r"must be outside"),
    ):
        with pytest.raises(BatchPathError, match=message):
            plan_dataset_run(spark, str(root), str(output))
    with pytest.raises(BatchPathError, match=r"^cannot partition by regimen: only by setting$"):
        plan_dataset_run(spark, str(root), str(tmp_path / "out"), partition_by=("regimen",))
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep"
    (tmp_path / "alike" / "scored").mkdir(parents=True)  # named as a run's, but no run's manifest
    with pytest.raises(BatchPathError, match=r"^alike: the folder holds other files than a lenrisk run's; "):
        plan_dataset_run(spark, str(root), str(tmp_path / "alike"))
    (tmp_path / "alike" / "manifest.json").write_text('{"engine": "local"}')
    with pytest.raises(BatchPathError, match=r"^alike: the folder holds other files"):
        plan_dataset_run(spark, str(root), str(tmp_path / "alike"))
    (tmp_path / "alike" / "manifest.json").write_text('{"engine": "spark"}')
    plan_dataset_run(spark, str(root), str(tmp_path / "alike"))  # a previous Spark run's
    beside = plan_dataset_run(spark, str(root / "a.csv"), str(root / "out"))  # a file's folder is not input
    assert beside.output.root == f"file:{root}/out" and not (root / "out").exists()


def test_cli_runs_the_spark_engine_in_the_active_session(spark, registry, bad_csv, tmp_path, monkeypatch):
    from service import cli
    from service.cli.score import score

    if "score" not in {command.name for command in cli.app.registered_commands}:
        monkeypatch.setattr(cli.app, "registered_commands", [*cli.app.registered_commands])
        cli.app.command("score")(score)
    monkeypatch.setenv("LENRISK_MLRUNS_DIR", str(registry["root"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "lines.csv").write_bytes(bad_csv)
    args = ["score", "--input", tmp_path / "lines.csv", "--output", tmp_path / "out", "--engine", "spark"]
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert f"{N} rows read = {N - 8} scored + 8 rejected" in result.output
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["engine"] == "spark"
    assert not spark.sparkContext._jsc.sc().isStopped()  # the CLI leaves a session it did not create running
    for extra, message in (
        (["--rejects", str(tmp_path / "r.csv")], "with --engine spark the rejects are the dataset"),
    ):
        result = CliRunner().invoke(cli.app, [str(a) for a in args] + extra)
        assert result.exit_code == 2 and message in result.output


def test_the_registered_model_runs_as_a_spark_udf_on_a_plain_csv(spark, registry, cohort, tmp_path):
    """``mlflow.pyfunc.spark_udf`` on a registry file read as it comes: integer ages and ECOG (int64), some
    ECOG and CrCl empty; the risks equal the model's own."""
    import mlflow

    rows = cohort[list(RECORD_NAMES)].head(60).copy()
    rows["age"] = rows["age"].round().astype(int)
    rows.loc[rows.index[:5], "ecog"] = np.nan
    rows.loc[rows.index[5:10], "crcl_ml_min"] = np.nan
    rows.to_csv(tmp_path / "lines.csv", index=False)
    frame = pd.read_csv(tmp_path / "lines.csv")
    assert frame["age"].dtype == np.int64
    mlflow.set_tracking_uri(registry["settings"].tracking_uri)
    udf = mlflow.pyfunc.spark_udf(
        spark,
        "models:/lenalidomide-discontinuation/1",
        result_type="probability double, logit double",
        env_manager="local",
    )
    scored = spark.createDataFrame(frame).withColumn("risk", udf(*frame.columns)).toPandas()
    expected = registry["result"].outcomes["discontinuation"].model.probability(frame)
    np.testing.assert_allclose(
        scored["risk"].map(lambda r: r["probability"]).to_numpy(), expected, atol=1e-12
    )


def test_cli_spark_engine_under_quiet_prints_only_the_result(registry, bad_csv, tmp_path):
    """``lenrisk score --engine spark --quiet`` in a fresh process (its own JVM, as a user starts it): no
    Spark start-up notices (log4j profile, default log level, loopback host name, native-hadoop), no pandas
    FutureWarning; only the result line on stdout. The one line left is the JVM's own notice of the
    incubator module Spark's launcher always adds, which no option silences."""
    (tmp_path / "lines.csv").write_bytes(bad_csv)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("SPARK_LOCAL_IP", "PYSPARK_SUBMIT_ARGS")},
        "LENRISK_MLRUNS_DIR": str(registry["root"]),
        "MLFLOW_TRACKING_URI": "",
    }
    lenrisk = Path(sys.executable).with_name("lenrisk")
    args = ["score", "--input", "lines.csv", "--output", "out", "--engine", "spark", "--quiet"]
    result = subprocess.run(
        [lenrisk, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stderr.splitlines()) <= {"WARNING: Using incubator modules: jdk.incubator.vector"}
    manifest = f"file:{tmp_path}/out/manifest.json"
    assert result.stdout.splitlines() == [
        f"{N} rows read = {N - 8} scored + 8 rejected (35 reject lines); manifest {manifest}"
    ]


@pytest.mark.parametrize(
    ("submit_args", "defaults", "local"),
    [
        (None, None, True),
        ("--master local[2] pyspark-shell", None, True),
        ("--master yarn --deploy-mode client pyspark-shell", None, False),
        ("--conf spark.master=k8s://https://k:443 pyspark-shell", None, False),
        (None, "# spark.master  spark://master:7077\nspark.master  yarn\n", False),
        (None, "# spark.master  spark://master:7077\n", True),
    ],
)
def test_spark_local_ip_is_only_defaulted_in_local_mode(monkeypatch, tmp_path, submit_args, defaults, local):
    from service.batch.spark_session import _local_master

    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS", raising=False)
    if submit_args is not None:
        monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", submit_args)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    if defaults is not None:
        (tmp_path / "spark-defaults.conf").write_text(defaults)
    assert _local_master() is local
