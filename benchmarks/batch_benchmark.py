"""Batch scoring speed and memory, side by side in one run, for a linear and a boosted champion.

    .venv/bin/python benchmarks/batch_benchmark.py [--rows 1000000] [--big-rows 10000000] [--no-spark]

1. Trains both outcome models of each family in-process on a 10,000-line synthetic cohort (cross-validated
   Platt calibration, as ``lenrisk train`` does) and saves their artifacts.
2. Peak RSS of a process scoring ``--big-rows`` lines (``--explain none``, boosted champion), generated in
   1 M-line chunks: ``resource.getrusage(RUSAGE_CHILDREN)`` in a small launcher process.
3. Generates a ``--rows`` synthetic cohort as Parquet. Per family: end-to-end rows/s of
   ``service.batch.local.score_file`` (read, validate, score, write, reconcile, publish) with
   ``--explain none`` and ``--explain all``; the naive explanation baseline on the same encoded rows, compute
   only
   (``shap.TreeExplainer`` over the same booster, or ``(x - mean) / scale * coef`` for the linear model); the
   Spark engine (local mode, every core, session start excluded); a sequential stage profile.

Prints markdown tables; docs/batch.md records them. Compare within one run only: this machine is shared and
its timings move 20-30% between runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.encoding import FeatureEncoder  # noqa: E402
from features.model.riskmodel import RiskModel  # noqa: E402
from features.schema import OUTCOMES  # noqa: E402
from features.validate import validate_table  # noqa: E402
from service.batch.local import prepare_run, score_file  # noqa: E402
from service.batch.publish import sha256_file  # noqa: E402
from service.batch.read import BATCH_ROWS  # noqa: E402
from service.batch.score import Explain, output_schema, score_columns  # noqa: E402
from service.predictor import LoadedModel, Predictor, RiskBands  # noqa: E402
from training.cohort.generate import generate_cohort  # noqa: E402

FAMILIES = ("logistic", "xgboost")
TRAINING_ROWS = 10_000
SHAP_SAMPLE = 20_000  # rows explained by the naive TreeSHAP baseline
CHUNK_ROWS = 1_000_000  # generation chunk
ROW_GROUP_ROWS = 131_072  # several row groups per file, so Spark can split it


def train_models(folder: Path, families: tuple[str, ...] = FAMILIES) -> None:
    """Fit both outcomes with each family; save the artifacts under ``folder/<family>/<outcome>``."""
    from features.encoding import FEATURE_NAMES
    from training.estimators import BoostedSpec, LinearSpec

    frame = validate_table(generate_cohort(TRAINING_ROWS, seed=5)).raise_on_errors()
    encoder = FeatureEncoder().fit(frame)
    X, groups = encoder.transform(frame), frame["patient_id"].to_numpy()
    specs = {"logistic": LinearSpec("full", FEATURE_NAMES), "xgboost": BoostedSpec()}
    for family in families:
        spec = specs[family]
        for outcome, column in OUTCOMES.items():
            estimator, calibrator = spec.fit(X, frame[column].to_numpy(), groups=groups)
            RiskModel(outcome, encoder, estimator, calibrator).save(folder / family / outcome)


def load_family(folder: Path) -> Predictor:
    """The predictor of one family's saved artifacts (every file's digest verified on load)."""
    models = {}
    for outcome in OUTCOMES:
        digest = sha256_file(folder / outcome / "digests.json")
        model = RiskModel.load(folder / outcome, expected_digest=digest)
        models[outcome] = LoadedModel(
            name=f"{folder.name}-{outcome}", version="1", model=model, digest=digest
        )
    return Predictor(models, {o: RiskBands(0.2, 0.4) for o in OUTCOMES})


def write_cohort(path: Path, rows: int) -> None:
    """A synthetic cohort as Parquet, generated and written in chunks so memory stays flat."""
    writer = None
    for seed, start in enumerate(range(0, rows, CHUNK_ROWS)):
        chunk = generate_cohort(min(CHUNK_ROWS, rows - start), seed=1000 + seed)
        table = pa.Table.from_pandas(chunk, preserve_index=False).replace_schema_metadata(None)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    writer.close()


def score_rows_per_second(predictor: Predictor, source: Path, folder: Path, explain: Explain) -> float:
    paths, table = prepare_run(source, folder / f"scored-{explain}.parquet")
    start = time.perf_counter()
    counts = score_file(predictor, paths, table, explain=explain).counts
    return counts["read"] / (time.perf_counter() - start)


def naive_rows_per_second(predictor: Predictor, source: Path) -> tuple[str, float]:
    """Explanations of both outcomes by the textbook method on pre-encoded rows (compute only)."""
    frame = pq.ParquetFile(source).read_row_group(0).slice(0, SHAP_SAMPLE).to_pandas()
    X = next(iter(predictor.models.values())).model.encode(validate_table(frame).clean)
    elapsed = 0.0
    for loaded in predictor.models.values():
        estimator = loaded.model.estimator
        if loaded.model.family == "xgboost":
            import shap

            method, explainer = "shap.TreeExplainer", shap.TreeExplainer(estimator.booster)
            start = time.perf_counter()
            explainer.shap_values(X)
        else:
            method, start = "(x - mean) / scale * coef", time.perf_counter()
            _ = (X - estimator.mean) / estimator.scale * estimator.coef
        elapsed += time.perf_counter() - start
    return method, len(X) / elapsed


def spark_rows_per_second(predictors: dict[str, Predictor], source: Path, folder: Path) -> dict[str, float]:
    """Spark engine rows/s per family with ``--explain none``, after a warm-up run on the first 20,000 rows
    (Python workers started, models loaded); the session's start is not counted."""
    from service.batch.spark import plan_dataset_run, score_dataset
    from service.batch.spark_session import spark_session

    warm_up = folder / "warm-up.parquet"
    pq.write_table(pq.ParquetFile(source).read_row_group(0).slice(0, 20_000), warm_up)
    speeds = {}
    with spark_session() as spark:
        spark.sparkContext.setLogLevel("ERROR")
        for family, predictor in predictors.items():
            for name, path in (("warm-up", warm_up), ("timed", source)):
                run = plan_dataset_run(spark, str(path), str(folder / f"scored-spark-{family}-{name}"))
                start = time.perf_counter()
                counts = score_dataset(spark, predictor, run).counts
                speeds[family] = counts["read"] / (time.perf_counter() - start)
    return speeds


class Laps:
    """Accumulates the seconds between successive :meth:`lap` calls under stage names."""

    def __init__(self, names: list[str]) -> None:
        self.seconds = dict.fromkeys(names, 0.0)
        self.start = time.perf_counter()

    def lap(self, name: str | None = None) -> None:
        now = time.perf_counter()
        if name is not None:
            self.seconds[name] += now - self.start
        self.start = now


def stage_profile(predictor: Predictor, source: Path, folder: Path) -> dict[str, float]:
    """Seconds per stage for the whole file, one stage after another (no overlap)."""
    laps = Laps(["read", "validate", "encode", "predict", "applicability", "explain", "write"])
    models = [loaded.model for loaded in predictor.models.values()]
    file = pq.ParquetFile(source)
    schema = output_schema(file.schema_arrow.remove_metadata(), Explain.NONE)
    with pq.ParquetWriter(folder / "profile.parquet", schema) as writer:
        batches = file.iter_batches(batch_size=BATCH_ROWS)
        laps.lap()
        for batch in batches:
            laps.lap("read")
            clean = validate_table(batch.to_pandas()).clean
            laps.lap("validate")
            X = models[0].encode(clean)
            laps.lap("encode")
            for model in models:
                model.bulk_probability(X)
            laps.lap("predict")
            predictor.applicability_flags(clean)
            laps.lap("applicability")
            for model in models:
                model.explain_encoded(X)
            laps.lap("explain")
            scores = score_columns(predictor, clean, Explain.NONE)
            output = pa.RecordBatch.from_arrays([*batch.columns, *scores], schema=schema)
            laps.lap()  # not counted: the same scores again, assembled for writing
            writer.write_batch(output)
            laps.lap("write")
    return laps.seconds


#: Runs its arguments as a child and prints that child's peak RSS (KiB). A process forked from this benchmark
#: would inherit its high-water mark (Linux keeps ``ru_maxrss`` across exec), so a small launcher forks it.
LAUNCHER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_child(models: Path, source: Path, folder: Path) -> tuple[float, float]:
    """(peak RSS in MiB, rows/s) of a process scoring ``source`` with ``--explain none``."""
    command = [sys.executable, __file__, "--child", str(models), str(source), str(folder / "big.parquet")]
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command], check=True, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    rows, peak_kib = map(int, result.stdout.split())
    return peak_kib / 1024, rows / elapsed


def child(models: Path, source: Path, output: Path) -> None:
    predictor = load_family(models)
    paths, table = prepare_run(source, output)
    print(score_file(predictor, paths, table).counts["read"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000, help="rows of the peak-RSS run (0: skip)")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--child", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    with tempfile.TemporaryDirectory(prefix="lenrisk-batch-bench-") as tmp:
        folder = Path(tmp)
        print(f"training both families on {TRAINING_ROWS} lines ...", file=sys.stderr)
        train_models(folder / "models")
        if args.big_rows:
            print(f"generating {args.big_rows:,} lines and scoring them in a child ...", file=sys.stderr)
            write_cohort(folder / "big-input.parquet", args.big_rows)
            rss, big_speed = peak_rss_child(
                folder / "models" / "xgboost", folder / "big-input.parquet", folder
            )
            (folder / "big-input.parquet").unlink()
        print(f"generating {args.rows:,} lines ...", file=sys.stderr)
        source = folder / "input.parquet"
        write_cohort(source, args.rows)

        results, profiles, predictors = {}, {}, {}
        for family in FAMILIES:
            predictor = predictors[family] = load_family(folder / "models" / family)
            print(f"{family}: scoring ...", file=sys.stderr)
            results[family] = {
                mode: score_rows_per_second(predictor, source, folder, mode)
                for mode in (Explain.NONE, Explain.ALL)
            }
            results[family]["naive"] = naive_rows_per_second(predictor, source)
            profiles[family] = stage_profile(predictor, source, folder)
        spark = {} if args.no_spark else spark_rows_per_second(predictors, source, folder)

    print(
        f"\n{args.rows:,} rows, Parquet in and out, 2 cores; rows/s end to end (read to published manifest)\n"
    )
    columns = [
        "explain none",
        "explain all",
        "naive explanation (compute only)",
        "all / naive",
        "Spark, none",
    ]
    print("| champion | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 1) + "|")
    for family, row in results.items():
        method, naive = row["naive"]
        on_spark = f"{spark[family]:,.0f}" if family in spark else "not run"
        print(
            f"| {family} | {row[Explain.NONE]:,.0f} | {row[Explain.ALL]:,.0f} | {naive:,.0f} ({method}) "
            f"| {row[Explain.ALL] / naive:.1f}x | {on_spark} |"
        )
    print("\nStage profile, seconds for the whole file, stages run one after another (no overlap)\n")
    names = list(next(iter(profiles.values())))
    print("| champion | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 1) + "|")
    for family, seconds in profiles.items():
        print(f"| {family} | " + " | ".join(f"{seconds[n]:.2f}" for n in names) + " |")
    if args.big_rows:
        print(
            f"\nPeak RSS scoring {args.big_rows:,} rows (xgboost, explain none, child process): "
            f"{rss:,.0f} MiB; {big_speed:,.0f} rows/s including interpreter start and model load"
        )


if __name__ == "__main__":
    main()
