"""What a boosted model's uncertainty interval costs to load and to score (``BoostedEnsemble``).

Trains ``--distinct`` boosters of the boosted candidate (200 depth-3 trees each, single-threaded) on
patient resamples of ``--lines`` generated lines, repeats them up to ``--refits`` refits (the tables'
work does not depend on whether trees repeat; only the distinct conditions, a few thousand at most, do),
then measures:

1. the artifact: its size on disk (UBJ boosters + JSON calibrations), ``of`` (compile the stacked tables)
   and ``load`` (read, parse each booster, compile);
2. one row: ``logit_sd`` (all B refits' logits, then their SD: what ``interval_encoded`` adds per outcome)
   against the model's own ``explain_encoded`` (margin and SHAP of one booster, today's per-record
   work) and against calling XGBoost's predictor once per refit, medians of ``--calls`` calls;
3. many rows: ``logit_sd`` of 10,000 rows (rows/s);
4. with ``--refit-lines N``: training's cost, one ``training.interval.refit`` of a boosted champion (the
   candidate's five out-of-fold boosters for the calibration and the final one) against a full linear
   champion's, on a patient resample of N generated lines.

Usage::

    .venv/bin/python benchmarks/boosted_interval_cost.py [--refits 200] [--distinct 200] [--lines 3000]
        [--refit-lines 40000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

from features.encoding import FEATURE_NAMES, FeatureEncoder
from features.model.boosted_ensemble import BoostedEnsemble
from features.model.calibration import PlattCalibrator
from features.model.estimators import BoostedModel
from features.validate import validate_table
from training import interval
from training.cohort.generate import generate_cohort
from training.estimators import BoostedSpec
from training.validation import patient_resamples


def timed(call) -> tuple[float, float]:
    """Wall and CPU seconds of one call (CPU time: this process's, steadier on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_us(call, calls: int) -> str:
    """Median wall and CPU microseconds of ``calls`` calls."""
    wall, cpu = np.median([timed(call) for _ in range(calls)], axis=0)
    return f"median {1e6 * wall:,.0f} µs wall, {1e6 * cpu:,.0f} µs CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refits", type=int, default=200)
    parser.add_argument("--distinct", type=int, default=200)
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--refit-lines", type=int, default=0, help="also time one refit on this many lines")
    args = parser.parse_args()

    frame = validate_table(generate_cohort(args.lines, seed=1), require_outcomes=True).raise_on_errors()
    X = FeatureEncoder().fit(frame).transform(frame)
    y = frame["discontinued_toxicity"].to_numpy()
    spec = BoostedSpec(params={**BoostedSpec().params, "nthread": 1})
    start = time.perf_counter()
    boosters = []
    for b, rows in enumerate(patient_resamples(frame["patient_id"].to_numpy(), args.distinct, seed=1)):
        boosters.append(spec._train(X[rows], y[rows], b)[0])  # the final fit, without calibration
    print(f"trained {args.distinct} boosters in {time.perf_counter() - start:.1f} s")
    rng = np.random.default_rng(0)
    calibrations = [
        PlattCalibrator(float(rng.uniform(0.8, 1.2)), float(rng.normal(0, 0.1))) for _ in range(args.refits)
    ]
    fits = [(boosters[b % args.distinct], calibrations[b]) for b in range(args.refits)]

    wall, cpu = timed(lambda: BoostedEnsemble.of(fits))
    print(
        f"compile {args.refits} refits x 200 trees (BoostedEnsemble.of): {wall:.2f} s wall, {cpu:.2f} s CPU"
    )
    ensemble = BoostedEnsemble.of(fits)
    with tempfile.TemporaryDirectory() as tmp:
        names = ensemble.save(Path(tmp))
        size = sum((Path(tmp) / n).stat().st_size for n in names)
        wall, cpu = timed(lambda: BoostedEnsemble.load(Path(tmp)))
        print(
            f"artifact: {len(names)} files, {size / 1e6:.1f} MB; load (read, parse, compile) "
            f"{wall:.2f} s wall, {cpu:.2f} s CPU"
        )
    print(
        f"tables: {len(ensemble.trees.cond_feature) - 1} distinct conditions, "
        f"{len(ensemble.trees.leaves) // 8} trees"
    )

    one = X[:1]
    model = BoostedModel.of(boosters[0], spec.params)
    matrix = xgb.DMatrix(one, feature_names=list(FEATURE_NAMES))
    for name, call, calls in (
        ("margin + SHAP of the model (baseline, one booster)", lambda: model.contributions(one), args.calls),
        (f"logit_sd over {args.refits} refits (stacked tables)", lambda: ensemble.logit_sd(one), args.calls),
        (
            f"XGBoost predict, once per refit ({args.refits} calls)",
            lambda: [b.predict(matrix, output_margin=True) for b, _ in fits],
            5,
        ),
    ):
        print(f"one row, {name}: {median_us(call, calls)}")
    many = X[rng.integers(0, len(X), 10_000)]
    wall, cpu = timed(lambda: ensemble.logit_sd(many))
    print(
        f"10,000 rows, logit_sd over {args.refits} refits: {wall:.2f} s wall ({10_000 / wall:,.0f} rows/s), "
        f"{cpu:.2f} s CPU ({10_000 / cpu:,.0f} rows/s)"
    )

    if args.refit_lines:
        big = validate_table(
            generate_cohort(args.refit_lines, seed=1), require_outcomes=True
        ).raise_on_errors()
        X, y = FeatureEncoder().fit(big).transform(big), big["discontinued_toxicity"].to_numpy()
        groups = big["patient_id"].to_numpy()
        rows = next(iter(patient_resamples(groups, 1, seed=1)))
        for champion in ("full", "xgboost"):
            wall, cpu = timed(
                lambda c=champion: interval.refit(c, c, X[rows], y[rows], seed=1, groups=groups[rows])
            )
            print(
                f"one refit of a {champion} champion, {args.refit_lines:,} lines: {wall:.2f} s wall, "
                f"{cpu:.2f} s CPU"
            )


if __name__ == "__main__":
    main()
