"""Benchmark ``lenrisk train --synthetic N``: both models, CV, calibration, evaluation, plots, registration.

Each repeat runs the real command in a fresh interpreter (so start-up and imports count) against its own
temporary SQLite tracking store; the median wall time is the headline figure (target: under 2 minutes
for N = 10,000 on 2 cores). One more in-process run, with the same library calls as the command, splits the
time into stages. The machine is noisy: compare figures from one run of this script only.

Usage::

    .venv/bin/python benchmarks/train_benchmark.py [--n 10000] [--repeats 3] [--seed 2026]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LENRISK = Path(sys.executable).with_name("lenrisk")


def run_command(n: int, seed: int) -> float:
    """Wall time of one ``lenrisk train --synthetic n --quiet`` into a temporary tracking store."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env["LENRISK_MLRUNS_DIR"] = tmp
        start = time.perf_counter()
        subprocess.run(
            [str(LENRISK), "train", "--synthetic", str(n), "--seed", str(seed), "--quiet"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start


def stages(n: int, seed: int) -> dict[str, float]:
    """Seconds per stage of one in-process training, timed around the calls ``lenrisk train`` makes."""
    from features.model.registry import RegistrySettings
    from features.validate import validate_table
    from training.card import SyntheticSource
    from training.cohort.generate import generate_cohort, resolve_settings
    from training.pipeline import train
    from training.registry import log_and_register

    marks: list[tuple[str, float]] = [("start", time.perf_counter())]

    def progress(description: str, total: int):
        marks.append((description, time.perf_counter()))

        def advance() -> None:
            marks.append((f"{description} (end)", time.perf_counter()))

        return advance

    source = SyntheticSource(n=n, seed=seed, settings=resolve_settings(None))
    frame = validate_table(generate_cohort(n, seed), require_outcomes=True).raise_on_errors()
    marks.append(("cohort", time.perf_counter()))
    result = train(frame, seed=seed, source=source.label(), progress=progress)
    marks.append(("trained", time.perf_counter()))
    with tempfile.TemporaryDirectory() as tmp:
        log_and_register(
            result, RegistrySettings(mlflow_tracking_uri=None, mlruns_dir=Path(tmp)), synthetic=source
        )
    marks.append(("registered", time.perf_counter()))

    times = dict(marks)
    cv_starts = [name for name, _ in marks if name.endswith("cross-validation")]
    out = {
        "generate + validate the cohort": times["cohort"] - times["start"],
        "split by patient, fit the encoding": times[cv_starts[0]] - times["cohort"],
    }
    for i, name in enumerate(cv_starts):
        outcome, end = name.split(":")[0], times[f"{name} (end)"]
        following = times[cv_starts[i + 1]] if i + 1 < len(cv_starts) else times["trained"]
        out[f"{outcome}: cross-validation of both candidates"] = end - times[name]
        out[f"{outcome}: refit, calibrate, evaluate, SHAP, figures"] = following - end
    out["MLflow: log runs, figures, tables, card; register both models"] = (
        times["registered"] - times["trained"]
    )
    out["total (in process, imports excluded)"] = times["registered"] - times["start"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="synthetic lines (default 10000)")
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end runs (default 3)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    walls = []
    for i in range(args.repeats):
        walls.append(run_command(args.n, args.seed))
        print(f"run {i + 1}: {walls[-1]:.1f} s", flush=True)
    print(
        f"lenrisk train --synthetic {args.n}: median {statistics.median(walls):.1f} s "
        f"(min {min(walls):.1f}, max {max(walls):.1f}; {args.repeats} runs, {os.cpu_count()} CPUs)"
    )
    print("\nStages of one in-process run:")
    for name, seconds in stages(args.n, args.seed).items():
        print(f"  {seconds:6.1f} s  {name}")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
