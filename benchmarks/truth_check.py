"""Check the validated figures against the generator's truth at a clinic's sample size.

For each size of ``--sizes`` and each of ``--seeds`` seeds, train both models on a synthetic cohort (with
``allow_small_sample``, ``--bootstrap`` resamples) and score them on 20,000 new lines of the same
population. Prints, per size: how many models are usable (pass the gates), the range and mean of validated
minus new-patient AUC and calibration slope, the models' AUC on new patients, and the true risks' AUC (the
ceiling). The baseline is the truth itself, measured in the same run. Results: docs/training.md.

Usage::

    .venv/bin/python benchmarks/truth_check.py [--sizes 107,300,1000] [--seeds 5] [--bootstrap 50]
"""

from __future__ import annotations

import argparse

import numpy as np

from features.schema import OUTCOMES
from features.validate import validate_table
from training import evaluation
from training.cohort.generate import generate_cohort
from training.pipeline import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="107,300,1000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=50)
    args = parser.parse_args()

    new = validate_table(generate_cohort(20_000, seed=999, with_truth=True)).clean
    truth = {o: evaluation.auc(new[c], new[f"true_p_{c}"]) for o, c in OUTCOMES.items()}
    print("true-risk AUC on new patients:", {o: round(v, 3) for o, v in truth.items()})
    print("lines  usable  AUC gap (min, max, mean)     slope gap (min, max, mean)   AUC on new patients")
    for n in (int(s) for s in args.sizes.split(",")):
        auc_gaps, slope_gaps, aucs, usable, total = [], [], [], 0, 0
        for seed in range(1, args.seeds + 1):
            frame = validate_table(generate_cohort(n, seed)).raise_on_errors()
            result = train(frame, seed=seed, source=f"{n}", n_boot=args.bootstrap, allow_small_sample=True)
            for outcome, res in result.outcomes.items():
                total += 1
                if not res.usable:
                    continue
                usable += 1
                y, p = new[OUTCOMES[outcome]].to_numpy(), res.model.probability(new)
                validated = res.validation.metrics
                auc = evaluation.auc(y, p)
                aucs.append(auc)
                auc_gaps.append(validated["roc_auc"].corrected - auc)
                slope = evaluation.calibration(y, p)["calibration_slope"]
                slope_gaps.append(validated["calibration_slope"].corrected - slope)
        print(
            f"{n:>5}  {usable:>2}/{total:<3}  {_range(auc_gaps, 3):<27}  {_range(slope_gaps, 2):<27}  "
            f"{_range(aucs, 3, mean=False)}"
        )


def _range(values: list[float], digits: int, *, mean: bool = True) -> str:
    if not values:
        return "—"
    v = np.asarray(values)
    text = f"{v.min():+.{digits}f} to {v.max():+.{digits}f}" if mean else f"{v.min():.3f}–{v.max():.3f}"
    return text + (f" (mean {v.mean():+.{digits}f})" if mean else "")


if __name__ == "__main__":
    main()
