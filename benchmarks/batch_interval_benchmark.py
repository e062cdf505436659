"""What ``lenrisk score --interval`` costs: end-to-end rows/s of the local engine with and without the
interval columns, side by side in one run.

    .venv/bin/python benchmarks/batch_interval_benchmark.py [--rows 1000000] [--lines 2000] [--repeats 3]

1. Trains both outcome models in-process on ``--lines`` synthetic lines as ``lenrisk train`` does
   (``training.pipeline.train``, ``--bootstrap`` resamples; the linear champion carries the bootstrap refits
   its interval is made of; the interval's cost does not depend on their number, the closed form is
   O(features²) a row). A boosted pair without an interval is trained as ``batch_benchmark.py`` does.
2. Generates a ``--rows`` synthetic cohort as Parquet (``batch_benchmark.write_cohort``).
3. Per champion, ``service.batch.local.score_file`` (read, validate, score, write, hash, reconcile, publish)
   with ``--explain none``, without and with ``--interval``, alternating, ``--repeats`` times each; prints
   the best and the median rows/s. Then the score columns alone (``score_columns`` on the validated
   chunks, one thread, best of ``--repeats``): the seconds the interval adds per 1 M lines.

Compare within one run only: this machine is shared and its timings move 20-30% between runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from batch_benchmark import load_family, train_models, write_cohort  # noqa: E402

from features.schema import OUTCOMES  # noqa: E402
from features.validate import validate_table  # noqa: E402
from service.batch.local import prepare_run, score_file  # noqa: E402
from service.batch.read import BATCH_ROWS  # noqa: E402
from service.batch.score import Explain, score_columns  # noqa: E402
from service.predictor import LoadedModel, Predictor, RiskBands  # noqa: E402
from training.cohort.generate import generate_cohort  # noqa: E402
from training.pipeline import train  # noqa: E402


def linear_champion(lines: int, bootstrap: int) -> Predictor:
    """Both outcomes developed by the training pipeline; their models must carry an interval."""
    frame = validate_table(generate_cohort(lines, seed=1)).raise_on_errors()
    result = train(frame, seed=1, source="benchmark", n_boot=bootstrap, allow_small_sample=True)
    models = {}
    for outcome in OUTCOMES:
        model = result.outcomes[outcome].model
        if not model.has_interval:
            raise SystemExit(f"{outcome}: the developed {model.family} model has no interval")
        models[outcome] = LoadedModel(name=f"linear-{outcome}", version="1", model=model, digest="0" * 64)
    return Predictor(models, {o: RiskBands(0.2, 0.4) for o in OUTCOMES})


def rows_per_second(predictor: Predictor, source: Path, output: Path, interval: bool) -> float:
    paths, table = prepare_run(source, output)
    start = time.perf_counter()
    counts = score_file(predictor, paths, table, explain=Explain.NONE, interval=interval).counts
    return counts["read"] / (time.perf_counter() - start)


def compute_seconds(predictor: Predictor, chunks: list, interval: bool, repeats: int) -> float:
    """Seconds of ``score_columns`` over every chunk, one thread, best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for clean in chunks:
            score_columns(predictor, clean, Explain.NONE, interval=interval)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--bootstrap", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        predictors = {"linear": linear_champion(args.lines, args.bootstrap)}
        train_models(folder / "models", ("xgboost",))
        predictors["boosted"] = load_family(folder / "models" / "xgboost")
        source = folder / "lines.parquet"
        write_cohort(source, args.rows)
        print(f"{args.rows:,} lines, --explain none, rows/s (best / median of {args.repeats})\n")
        print("| champion | family | without --interval | with --interval | with / without (best) |")
        print("|---|---|---|---|---|")
        for name, predictor in predictors.items():
            speeds: dict[bool, list[float]] = {False: [], True: []}
            rows_per_second(predictor, source, folder / "warm-up.parquet", False)
            for run in range(args.repeats):
                for interval in (False, True):
                    output = folder / f"{name}-{interval}-{run}.parquet"
                    speeds[interval].append(rows_per_second(predictor, source, output, interval))
                    output.unlink()
            family = next(iter(predictor.models.values())).model.family
            cells = [f"{max(s):,.0f} / {statistics.median(s):,.0f}" for s in (speeds[False], speeds[True])]
            ratio = max(speeds[True]) / max(speeds[False])
            print(f"| {name} | {family} | {cells[0]} | {cells[1]} | {ratio:.2f} |")
        chunks = [
            validate_table(batch.to_pandas()).clean
            for batch in pq.ParquetFile(source).iter_batches(batch_size=BATCH_ROWS)
        ]
        print("\nScore columns only (one thread, best of the repeats), seconds for the file:\n")
        print("| champion | without --interval | with --interval | added |")
        print("|---|---|---|---|")
        for name, predictor in predictors.items():
            without, with_ = (compute_seconds(predictor, chunks, i, args.repeats) for i in (False, True))
            print(f"| {name} | {without:.2f} | {with_:.2f} | {with_ - without:+.2f} |")


if __name__ == "__main__":
    main()
