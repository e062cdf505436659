"""Tree-table kernel speed: SHAP contributions and margins against XGBoost's own predictor and TreeSHAP.

    .venv/bin/python benchmarks/treetable_benchmark.py [--rows 1000000] [--repeats 3]

Fits one boosted model (``BoostedSpec``, discontinuation) on 10,000 synthetic lines, encodes ``--rows`` fresh
synthetic lines, and times on them, in one call and in ``service.batch.read.BATCH_ROWS`` calls as batch
scoring makes them: ``TreeTables.contributions`` and ``TreeTables.margin`` against XGBoost's
``inplace_predict`` and ``shap.TreeExplainer`` (on 20,000 rows, scaled). Best of ``--repeats``, interleaved;
this machine is shared, so compare within one run.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import shap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.encoding import FeatureEncoder
from features.validate import validate_table
from service.batch.read import BATCH_ROWS
from training.cohort.generate import generate_cohort
from training.estimators import BoostedSpec


def best_of(repeats: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Fewest seconds of each run over ``repeats`` rounds, the runs interleaved so that drift hits all."""
    seconds: dict[str, float] = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return seconds


def map_batches(kernel: Callable[[np.ndarray], object], batches: list[np.ndarray]) -> None:
    for batch in batches:
        kernel(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    train = validate_table(generate_cohort(10_000, seed=5)).clean
    encoder = FeatureEncoder().fit(train)
    model = BoostedSpec().fit(encoder.transform(train), train["discontinued_toxicity"].to_numpy())
    tables = model.tables
    X = encoder.transform(validate_table(generate_cohort(args.rows, seed=1000)).clean)
    batches = [X[start : start + BATCH_ROWS] for start in range(0, len(X), BATCH_ROWS)]

    print(f"{len(X):,} rows, {len(tables.tree_start)} trees, {len(tables.cond_feature)} split conditions\n")

    kernels: dict[str, Callable[[np.ndarray], object]] = {
        "contributions": tables.contributions,
        "margin": tables.margin,
        "inplace_predict margin (float32 sums)": lambda x: model.booster.inplace_predict(
            x, predict_type="margin"
        ),
    }
    one_call = best_of(args.repeats, {name: functools.partial(k, X) for name, k in kernels.items()})
    batched = best_of(
        args.repeats, {name: functools.partial(map_batches, k, batches) for name, k in kernels.items()}
    )
    explainer, sample = shap.TreeExplainer(model.booster), X[:20_000]
    naive = best_of(args.repeats, {"": lambda: explainer.shap_values(sample)})[""] * len(X) / len(sample)

    print(f"| seconds per {len(X):,} rows | one call | {BATCH_ROWS:,}-row calls |\n|---|---|---|")
    for name in kernels:
        print(f"| {name} | {one_call[name]:.3f} | {batched[name]:.3f} |")
    print(f"| shap.TreeExplainer (20,000 rows, scaled) | {naive:.3f} | |")


if __name__ == "__main__":
    main()
