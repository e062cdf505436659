"""How the closed testing procedure of ``lenrisk update`` chooses, and how calibrated its update is, over many
local samples (docs/update.md).

A parent model is developed as the tests develop theirs (``--dev`` synthetic lines of two settings, seed 11,
one cross-validation repeat); then, for each of ``--draws`` local samples of ``--local`` lines, shifted by
``--shift`` on the log-odds scale (0: the development population), the procedure chooses an update
(``training.updating.select``: no bootstrap), and the updated model's calibration-in-the-large and slope are
measured on 100,000 fresh lines of the same local population.

    .venv/bin/python benchmarks/update_selection.py [--dev 2000] [--local 1500] [--shift 0.7] [--draws 20]
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
from scipy.special import expit

from features.schema import OUTCOMES
from features.validate import validate_table
from training import evaluation, updating
from training.cohort.generate import generate_cohort
from training.cohort.shift import shifted
from training.pipeline import train

SETTINGS = ("relapsed_refractory", "newly_diagnosed")


def cohort(n: int, seed: int, shift: float):
    frame = generate_cohort(n, seed, SETTINGS, params=shifted(log_odds=shift))
    return validate_table(frame, require_outcomes=True).raise_on_errors()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=int, default=2000)
    parser.add_argument("--local", type=int, default=1500)
    parser.add_argument("--shift", type=float, default=0.7)
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    parents = train(cohort(args.dev, 11, 0.0), seed=11, source="benchmark", n_repeats=1, n_boot=5)
    fresh = cohort(100_000, 99, args.shift)
    print(f"parent: {args.dev} lines; local: {args.local} lines, shift {args.shift:+g}; {args.draws} draws")
    for outcome, result in parents.outcomes.items():
        parent, y = result.model, fresh[OUTCOMES[outcome]].to_numpy()
        fresh_logit = parent.logit_of(parent.encode(fresh))
        chosen, citl, slope = collections.Counter(), [], []
        for seed in range(1000, 1000 + args.draws):
            closed = updating.select(parent, cohort(args.local, seed, args.shift), seed=1)
            chosen[closed.chosen] += 1
            fit = closed.fit
            p = fit.model.probability(fresh) if fit.model else expit(fit.intercept + fit.slope * fresh_logit)
            c = evaluation.calibration(y, p)
            citl.append(c["calibration_intercept"])
            slope.append(c["calibration_slope"])
        citl_a, slope_a = np.abs(citl), np.array(slope)
        print(
            f"{outcome} (parent: {result.chosen}): chosen {dict(chosen)}; on fresh data |CITL| median "
            f"{np.median(citl_a):.3f}, within ±0.02 in {np.mean(citl_a <= 0.02):.0%}; slope in 0.9-1.1 in "
            f"{np.mean((slope_a >= 0.9) & (slope_a <= 1.1)):.0%}"
        )


if __name__ == "__main__":
    main()
