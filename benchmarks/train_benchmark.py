"""Benchmark ``lenrisk train``: sample-size check, selection, 200 bootstrap resamples, registration.

Each repeat runs the real command in a fresh interpreter (so start-up and imports count) against its own
temporary SQLite tracking store, for each size of ``--sizes``; the median wall time per size is the
headline figure (targets: 107 and 1,000 lines in 60 s or less, 10,000 lines in 2 minutes or less, on 2
cores). Every size runs with ``--allow-small-sample`` (no effect where the data meet the parsimonious
model's minimum), so small sizes are timed rather than refused; a run whose models fail a gate exits 2
(logged, not registered) and still counts. One more in-process run of the
largest size splits the time into stages. The machine is noisy: compare figures from one run of this
script only.

Usage::

    .venv/bin/python benchmarks/train_benchmark.py [--sizes 107,1000,10000] [--repeats 3] [--seed 2026]
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


def run_command(n: int, seed: int) -> tuple[float, int]:
    """Wall time and exit code of one ``lenrisk train --synthetic n --quiet`` into a temporary store."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env["LENRISK_MLRUNS_DIR"] = tmp
        args = [str(LENRISK), "train", "--synthetic", str(n), "--seed", str(seed), "--quiet"]
        args.append("--allow-small-sample")
        start = time.perf_counter()
        code = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        if code not in (0, 2):
            raise RuntimeError(f"lenrisk train --synthetic {n} exited {code}")
        return time.perf_counter() - start, code


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
        marks.append((description.split(" (")[0], time.perf_counter()))
        return lambda: None

    source = SyntheticSource(n=n, seed=seed, settings=resolve_settings(None))
    frame = validate_table(generate_cohort(n, seed), require_outcomes=True).raise_on_errors()
    marks.append(("cohort", time.perf_counter()))
    result = train(frame, seed=seed, source=source.label(), allow_small_sample=True, progress=progress)
    marks.append(("trained", time.perf_counter()))
    with tempfile.TemporaryDirectory() as tmp:
        log_and_register(
            result, RegistrySettings(mlflow_tracking_uri=None, mlruns_dir=Path(tmp)), synthetic=source
        )
    marks.append(("registered", time.perf_counter()))
    t = dict(marks)
    return {
        "generate + validate the cohort": t["cohort"] - t["start"],
        "sample size, encoding, cross-validated selection, final fits": t["bootstrap validation"]
        - t["cohort"],
        "bootstrap validation (the whole procedure per resample)": t["evaluation figures, subgroups, SHAP"]
        - t["bootstrap validation"],
        "evaluation figures, subgroups, SHAP": t["trained"] - t["evaluation figures, subgroups, SHAP"],
        "MLflow: log runs, figures, tables, card; register": t["registered"] - t["trained"],
        "total (in process, imports excluded)": t["registered"] - t["start"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="107,1000,10000", help="synthetic lines, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end runs per size (default 3)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for n in sizes:
        runs = [run_command(n, args.seed) for _ in range(args.repeats)]
        walls = [wall for wall, _ in runs]
        codes = sorted({code for _, code in runs})
        print(
            f"lenrisk train --synthetic {n}: median {statistics.median(walls):.1f} s (min {min(walls):.1f}, "
            f"max {max(walls):.1f}; {args.repeats} runs; exit {codes})",
            flush=True,
        )
    print(f"\nStages of one in-process run of {max(sizes)} lines:")
    timed = stages(max(sizes), args.seed)
    for name, seconds in timed.items():
        print(f"  {seconds:6.1f} s  {name}")
    from training.pipeline import N_BOOT  # the default resamples, which the stages run uses

    development = timed["sample size, encoding, cross-validated selection, final fits"]
    per_resample = timed["bootstrap validation (the whole procedure per resample)"] / N_BOOT
    print(
        f"  one bootstrap resample: {per_resample:.2f} s = {per_resample / development:.2f}x the development "
        "on all lines (the baseline, same run)"
    )
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
