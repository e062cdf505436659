"""Peak RSS of batch scoring against the number of CSV rows the parser cannot split, in one run.

    .venv/bin/python benchmarks/batch_rejects_benchmark.py [--valid 200000] [--junk 550000 2200000 4400000]

Trains the linear champion (both outcomes, as ``batch_benchmark.py`` does), writes ``--valid`` synthetic
lines as CSV, then for each ``--junk`` count the same lines with that many truncated lines (a patient id and
an age: 2 fields instead of 17) in one run in the middle. Each file is scored by ``score_file``
(``--explain none``, Parquet out) in a child process whose peak RSS a small launcher reads
(``getrusage(RUSAGE_CHILDREN)``); the ratios are to the file without junk, measured in the same run.
docs/batch.md records the result.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from batch_benchmark import peak_rss_child, train_models

from features.schema import RECORD_NAMES
from training.cohort.generate import generate_cohort

JUNK_LINE = "P0000001,70\n"


def write_file(path: Path, lines: list[str], junk: int) -> None:
    """Header and ``lines``, with ``junk`` truncated lines after the first half of them."""
    half = len(lines) // 2 + 1
    with path.open("w") as f:
        f.writelines(lines[:half])
        for start in range(0, junk, 100_000):
            f.write(JUNK_LINE * min(100_000, junk - start))
        f.writelines(lines[half:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--valid", type=int, default=200_000, help="valid lines in every file")
    parser.add_argument("--junk", type=int, nargs="+", default=[550_000, 2_200_000, 4_400_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lenrisk-rejects-bench-") as tmp:
        folder = Path(tmp)
        print("training the linear champion ...", file=sys.stderr)
        train_models(folder / "models", ("logistic",))
        lines = generate_cohort(args.valid, seed=7)[list(RECORD_NAMES)].to_csv(index=False).splitlines(True)
        peaks = {}
        for junk in [0, *args.junk]:
            print(f"scoring {args.valid:,} valid + {junk:,} junk lines in a child ...", file=sys.stderr)
            source = folder / "input.csv"
            write_file(source, lines, junk)
            peaks[junk], _ = peak_rss_child(folder / "models" / "logistic", source, folder)
            source.unlink()
    print(f"\n{args.valid:,} valid CSV lines and a run of truncated lines; peak RSS of the scoring process\n")
    print("| junk lines | peak RSS (MiB) | ratio to no junk |\n|---|---|---|")
    for junk, peak in peaks.items():
        print(f"| {junk:,} | {peak:,.0f} | {peak / peaks[0]:.2f} |")


if __name__ == "__main__":
    main()
