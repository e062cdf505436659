"""The Spark engine (pyspark, local[2]) scores a file exactly as the local engine does: same rows, same
scores, same rejects with the same row numbers, across several partitions and Arrow batches."""

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
import pyarrow.csv as pv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features.errors import FileFormatError
from features.schema import OUTCOMES, RECORD_NAMES
from features.validate import validate_table
from service.batch.local import prepare_run, score_file
from service.batch.publish import sha256_file
from service.batch.score import Explain
from service.batch.spark import score_file_spark
from tests.helpers import same_scores
from tests.service.batch.test_batch import manifest_paths_follow_the_rule
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


def score_both(spark, predictor, source, tmp_path, suffix, explain, **options):
    """Score ``source`` with each engine; return both manifests."""
    manifests = {}
    for engine in ("local", "spark"):
        paths, table = prepare_run(source, tmp_path / f"{engine}{suffix}")
        if engine == "local":
            manifests[engine] = score_file(predictor, paths, table, explain=explain, **options).manifest
        else:
            manifests[engine] = score_file_spark(
                spark, predictor, paths, table, explain=explain, **options
            ).manifest
    return manifests


def test_csv_scores_and_rejects_match_the_local_engine(spark, predictor, bad_csv, tmp_path):
    source = tmp_path / "lines.csv"
    source.write_bytes(bad_csv)
    assert spark.read.text(source.as_uri()).rdd.getNumPartitions() > 1
    manifests = score_both(spark, predictor, source, tmp_path, ".csv", Explain.TOP3)

    local, on_spark = pv.read_csv(tmp_path / "local.csv"), pv.read_csv(tmp_path / "spark.csv")
    same_scores(local, on_spark)
    assert sha256_file(tmp_path / "local.rejects.csv") == sha256_file(tmp_path / "spark.rejects.csv")
    rejects = pv.read_csv(tmp_path / "spark.rejects.csv").to_pandas()
    assert sorted(set(rejects.row_number)) == [3, 77, 120, 150, 200, 250, 290, N]
    assert manifests["spark"]["counts"] == manifests["local"]["counts"]
    assert manifests["spark"]["counts"]["read"] == N and manifests["spark"]["counts"]["scored"] == N - 8
    assert manifests["spark"]["engine"] == "spark"
    assert manifests["spark"]["models"] == manifests["local"]["models"]
    for engine in ("local", "spark"):
        assert manifest_paths_follow_the_rule(tmp_path / f"{engine}.csv.manifest.json") == {
            "input": "lines.csv",
            "output": f"{engine}.csv",
            "rejects": f"{engine}.rejects.csv",
        }


def test_parquet_scores_match_the_local_engine_with_input_types_kept(spark, predictor, tmp_path):
    frame = generate_cohort(N, seed=22)
    frame["visit"] = pd.array(np.arange(N), dtype="int32")
    frame.loc[[10, 260], "sex"] = "Male"
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "lines.parquet", row_group_size=60
    )
    manifests = score_both(spark, predictor, tmp_path / "lines.parquet", tmp_path, ".parquet", Explain.ALL)

    local, on_spark = pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "spark.parquet")
    assert on_spark.schema.field("visit").type == pa.int32()
    same_scores(local, on_spark)
    assert sha256_file(tmp_path / "local.rejects.csv") == sha256_file(tmp_path / "spark.rejects.csv")
    assert manifests["spark"]["counts"] == {"read": N, "scored": N - 2, "rejected": 2, "reject_lines": 2}


def test_spark_gives_the_local_engines_intervals(spark, predictor, registry, tmp_path):
    """Several partitions and Arrow batches; lines outside the training data (null) early and late."""
    frame = generate_cohort(N, seed=23, settings=("relapsed_refractory", "newly_diagnosed"))
    top = registry["result"].outcomes["discontinuation"].model.encoder.ranges_["age"]["max"]
    frame.loc[[4, 270], "age"] = top + 2
    frame.loc[[130, 299], "setting"] = "maintenance"
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "lines.parquet", row_group_size=60
    )
    manifests = score_both(
        spark, predictor, tmp_path / "lines.parquet", tmp_path, ".parquet", Explain.NONE, interval=True
    )

    local, on_spark = pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "spark.parquet")
    assert local.schema == on_spark.schema
    bounds = [f"{o}_{b}" for o in OUTCOMES for b in ("lower", "upper")]
    same_scores(local.drop_columns(bounds), on_spark.drop_columns(bounds))
    assert manifests["spark"]["interval"] == manifests["local"]["interval"] == 0.95
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


def test_a_whole_file_problem_on_an_executor_stops_the_run_before_any_output(
    spark, predictor, bad_csv, tmp_path
):
    source = tmp_path / "lines.csv"
    source.write_bytes(bad_csv[:-3000] + b"\xe9" + bad_csv[-3000:])
    paths, table = prepare_run(source, tmp_path / "out.csv")
    with pytest.raises(FileFormatError, match=r"^lines.csv: cannot be read as CSV \(not UTF-8 text\)$"):
        score_file_spark(spark, predictor, paths, table)
    assert [p.name for p in tmp_path.iterdir()] == ["lines.csv"]


def test_cli_runs_the_spark_engine_in_the_active_session(spark, registry, bad_csv, tmp_path, monkeypatch):
    from service import cli
    from service.cli.score import score

    if "score" not in {command.name for command in cli.app.registered_commands}:
        monkeypatch.setattr(cli.app, "registered_commands", [*cli.app.registered_commands])
        cli.app.command("score")(score)
    monkeypatch.setenv("LENRISK_MLRUNS_DIR", str(registry["root"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "lines.csv").write_bytes(bad_csv)
    args = ["score", "--input", tmp_path / "lines.csv", "--output", tmp_path / "out.csv", "--engine", "spark"]
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert f"{N} rows read = {N - 8} scored + 8 rejected" in result.output
    assert json.loads((tmp_path / "out.csv.manifest.json").read_text())["engine"] == "spark"
    assert not spark.sparkContext._jsc.sc().isStopped()  # the CLI leaves a session it did not create running


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
    args = ["score", "--input", "lines.csv", "--output", "out.csv", "--engine", "spark", "--quiet"]
    result = subprocess.run(
        [lenrisk, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stderr.splitlines()) <= {"WARNING: Using incubator modules: jdk.incubator.vector"}
    manifest = tmp_path / "out.csv.manifest.json"
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
    from service.batch.spark import _local_master

    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS", raising=False)
    if submit_args is not None:
        monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", submit_args)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    if defaults is not None:
        (tmp_path / "spark-defaults.conf").write_text(defaults)
    assert _local_master() is local
