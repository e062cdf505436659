"""Benchmark the instability step of training (``training.instability``) against the evaluation figures.

Per outcome, training computes the instability summary and five figures from the ``lines x B`` bootstrap
predictions, beside the three evaluation figures of :func:`training.evaluation.figures_for` (the baseline,
timed in the same run on the same lines). Both are timed as the pipeline and the registry use them: built,
then saved as PNG. The cost depends on the number of lines and resamples only, not on the model, so the risks
are drawn: logits ~ N(-0.8, 1), each bootstrap model's a perturbation of them.

Usage::

    .venv/bin/python benchmarks/instability_benchmark.py [--lines 10000] [--resamples 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.special import expit

from features.bands import default_bands
from training import evaluation, instability


def _saved(figures: dict, folder: Path) -> None:
    for name, figure in figures.items():
        figure.savefig(folder / name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    logit = rng.normal(-0.8, 1.0, args.lines)
    p, y = expit(logit), rng.binomial(1, expit(logit))
    slopes, shifts = rng.normal(1, 0.1, args.resamples), rng.normal(0, 0.1, (args.lines, args.resamples))
    boot = expit(logit[:, None] * slopes + shifts)
    bands = default_bands(float(p.mean()))

    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    baseline, step = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            start = time.perf_counter()
            _saved(evaluation.figures_for(y, p, "Benchmark"), Path(tmp))
            baseline.append(time.perf_counter() - start)
            start = time.perf_counter()
            instability.summary(p, boot, bands)
            _saved(instability.figures(y, p, boot, bands, "Benchmark"), Path(tmp))
            step.append(time.perf_counter() - start)
    b, s = statistics.median(baseline), statistics.median(step)
    print(f"{args.lines} lines x {args.resamples} resamples, median of {args.repeats}:")
    print(f"  evaluation figures (baseline): {b:.2f} s")
    print(f"  instability summary + figures: {s:.2f} s = {s / b:.2f}x the baseline")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
