"""False alarm rate and power of ``lenrisk monitor --input`` (features.drift) on the project's generator.

The development data are the default synthetic development cohort (``scripts/up``: 10,000 lines, seed
2026, all settings). For each batch size of ``--sizes``: ``--batches`` unshifted batches of the generator
(seeds 1,000,000 and up, none shared with development) and as many batches of each shifted population
(``training.cohort.shift.shifted``: ages 3 or 8 years older; both outcomes' log-odds +0.7 and ages 8
years older). Prints per population and size the share of batches in which any field drifted (for
unshifted batches: the false alarm rate, targeted at 5%), how often age drifted, and, on the same bins, how
often two fixed cut-offs would flag any field: PSI > 0.1 (the conventional band; empty bins at 0.0001 as
Evidently does) and Jensen–Shannon > 0.1 (Evidently's default for large reference data).
Results: docs/monitor.md.

Usage::

    .venv/bin/python benchmarks/drift_false_alarms.py [--sizes 100,1000] [--batches 500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from features.drift import DriftProfile, compare
from features.encoding import FeatureEncoder
from features.validate import validate_table
from training.cohort.generate import generate_cohort
from training.cohort.shift import shifted

POPULATIONS = {
    "unshifted": {},
    "age +3 years": {"age_years": 3},
    "age +8 years": {"age_years": 8},
    "log-odds +0.7, age +8 years": {"log_odds": 0.7, "age_years": 8},
}
_EMPTY = 1e-4


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.maximum(p, _EMPTY), np.maximum(q, _EMPTY)
    return float(np.sum((q - p) * np.log(q / p)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--batches", type=int, default=500)
    args = parser.parse_args()

    development = validate_table(generate_cohort(10_000, 2026)).clean
    profile, encoder = DriftProfile.of(development), FeatureEncoder().fit(development)
    print(f"development: {profile.n} lines; {args.batches} batches per population and size\n")
    print("| population | batch size | any field drifted | age drifted | PSI > 0.1 | JS > 0.1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, shift in POPULATIONS.items():
        params = shifted(**shift)
        for n in (int(s) for s in args.sizes.split(",")):
            start = time.perf_counter()
            alarms = age = psi = js = 0
            for b in range(args.batches):
                rows = validate_table(generate_cohort(n, 1_000_000 + b, params=params)).clean
                report = compare(profile, encoder, rows)
                alarms += bool(report.drifted_fields)
                age += "age" in report.drifted_fields
                psi += any(_psi(np.array(f.development), np.array(f.batch)) > 0.1 for f in report.fields)
                js += any(f.value > 0.1 for f in report.fields)
            share = [f"{100 * c / args.batches:.1f}%" for c in (alarms, age, psi, js)]
            print(f"| {label} | {n:,} | {' | '.join(share)} |  <!-- {time.perf_counter() - start:.0f} s -->")


if __name__ == "__main__":
    main()
