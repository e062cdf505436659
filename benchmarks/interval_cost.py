"""What the uncertainty interval costs: in training, per served record, and in bulk.

1. Training (``--lines`` lines, ``--bootstrap`` resamples, in process): the time spent in the interval's
   refits (``training.interval.refit``) against the whole bootstrap validation it runs inside. With
   ``--boosted`` the boosted candidate is chosen wherever it is eligible (at least ~35,000 generated
   lines), so the champion is boosted and its refits are boosters (``benchmarks/boosted_interval_cost.py``
   measures scoring their stacked tables); without it the interval refits of a boosted champion cost
   nothing, as before boosted intervals existed.
2. One record: ``RiskModel.interval_encoded`` of one encoded row, and ``interval`` with its applicability
   check, each with the calibrated logit recomputed and passed by the caller (as the predictor passes its
   explanation's), against ``explain_encoded`` (probability and SHAP, today's per-record work), medians of
   2,000 calls.
3. Bulk: ``interval_encoded`` of 1 M encoded rows, logit recomputed and passed (as batch scoring passes
   its bulk logits), against ``bulk_probability`` (the batch fast path), rows/s (median of 5 runs).

Usage::

    .venv/bin/python benchmarks/interval_cost.py [--lines 1000] [--bootstrap 200] [--boosted]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np

from features.validate import validate_table
from training import interval, pipeline
from training.cohort.generate import generate_cohort
from training.pipeline import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--boosted", action="store_true", help="choose boosted trees wherever eligible")
    args = parser.parse_args()

    frame = validate_table(generate_cohort(args.lines, seed=1)).raise_on_errors()
    spent = [0.0]
    refit = interval.refit

    def timed(*a, **k):
        start = time.perf_counter()
        try:
            return refit(*a, **k)
        finally:
            spent[0] += time.perf_counter() - start

    stages: dict[str, float] = {}

    def progress(description: str, total: int):
        stages[description] = time.perf_counter()
        return lambda: None

    choose = pipeline.choose

    def boosted_first(cv, order):
        return ("xgboost", "forced by the benchmark") if "xgboost" in cv else choose(cv, order)

    forced = mock.patch.object(pipeline, "choose", boosted_first if args.boosted else choose)
    with mock.patch.object(interval, "refit", timed), forced:
        start = time.perf_counter()
        result = train(
            frame, seed=1, source="x", n_boot=args.bootstrap, allow_small_sample=True, progress=progress
        )
        end = time.perf_counter()
    names = list(stages)
    boot = next(n for n in names if n.startswith("bootstrap"))
    after = names[names.index(boot) + 1]
    bootstrap = stages[after] - stages[boot]
    print(
        f"training, {args.lines} lines, {args.bootstrap} resamples: whole {end - start:.1f} s, bootstrap "
        f"validation {bootstrap:.1f} s, of which interval refits {spent[0]:.2f} s "
        f"({spent[0] / bootstrap:.1%} of the bootstrap, {1e3 * spent[0] / args.bootstrap:.2f} ms a resample)"
    )

    model = result.outcomes["discontinuation"].model
    print(f"champion family {model.family}, {model.ensemble.size if model.has_interval else 0} refits")
    X = model.encode(frame)
    one = X[:1]
    columns = {name: [value] for name, value in frame.iloc[0].items()}
    logit = model.explain_encoded(one).logit
    for name, call in (
        ("explain_encoded (baseline)", lambda: model.explain_encoded(one)),
        ("interval_encoded, logit recomputed", lambda: model.interval_encoded(one)),
        ("interval_encoded, logit passed", lambda: model.interval_encoded(one, logit=logit)),
        (
            "interval with the applicability check, logit recomputed",
            lambda: model.interval(columns, encoded=one),
        ),
        (
            "interval with the applicability check, logit passed (the predictor's call)",
            lambda: model.interval(columns, encoded=one, logit=logit),
        ),
    ):
        times = []
        for _ in range(2_000):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        print(f"one record, {name}: median {1e6 * np.median(times):.1f} µs")

    big = X[np.random.default_rng(0).integers(0, len(X), 1_000_000)]
    bulk = model.bulk_logit(big)
    for name, call in (
        ("bulk_probability (baseline)", lambda: model.bulk_probability(big)),
        ("interval_encoded, logit recomputed", lambda: model.interval_encoded(big)),
        ("interval_encoded, logit passed (batch)", lambda: model.interval_encoded(big, logit=bulk)),
    ):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        print(f"1 M rows, {name}: {1e6 / np.median(times):,.0f} rows/s (median of 5)")


if __name__ == "__main__":
    main()
