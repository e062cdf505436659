"""Coverage of the 95% uncertainty intervals against the generator's true risks.

For each size of ``--sizes`` and each of ``--seeds`` seeds, train both models on a synthetic cohort
(``allow_small_sample``, ``--bootstrap`` resamples, one CV repeat) and compute the interval of 5,000 new
lines of the same population, whose true risks are known. Prints per size, outcome and method: the share of
new lines whose true risk lies inside their interval (pooled over seeds; the lowest and highest seed), the
mean width, the share whose point estimate lies inside, and the share given no interval (outside the
training data: a setting a small cohort lacked; left out of the other columns). Two baselines, measured in
the same run on the same resamples: the 2.5th-97.5th percentiles of the same refits' risks, and the
served interval of refits of the *development's* choice in every resample (the fixed specification)
instead of each resample's own choice. Results: docs/training.md.

Usage::

    .venv/bin/python benchmarks/interval_coverage.py [--sizes 300,1000] [--seeds 10] [--bootstrap 100]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from unittest import mock

import numpy as np
from scipy.special import expit

from features.schema import OUTCOMES
from features.validate import validate_table
from training import interval
from training.cohort.generate import generate_cohort
from training.pipeline import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="300,1000")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--bootstrap", type=int, default=100)
    args = parser.parse_args()

    new = validate_table(generate_cohort(5_000, seed=999, with_truth=True)).clean
    fixed = mock.patch.object(interval, "refit", _fixed_specification(interval.refit))
    print(
        "| lines | outcome | refits | coverage (lowest–highest seed) | mean width | point inside "
        "| no interval |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        found: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
        for seed in range(1, args.seeds + 1):
            frame = validate_table(generate_cohort(n, seed)).raise_on_errors()
            for name, patch in (("resample's choice", None), ("fixed (baseline)", fixed)):
                with patch or mock.patch.object(interval, "refit", interval.refit):
                    result = train(
                        frame,
                        seed=seed,
                        source="x",
                        n_boot=args.bootstrap,
                        n_repeats=1,
                        allow_small_sample=True,
                    )
                for outcome, res in result.outcomes.items():
                    if not res.model.has_interval:
                        continue
                    truth = new[f"true_p_{OUTCOMES[outcome]}"].to_numpy()
                    point, given = res.model.probability(new), ~res.model.outside_training(new)
                    bounds = {"": res.model.interval(new)}
                    if patch is None:
                        risks = expit(res.model.ensemble.logits(res.model.encode(new)))
                        bounds[", percentiles"] = np.quantile(risks, [0.025, 0.975], axis=1)
                    for method, (lower, upper) in bounds.items():
                        found[outcome, name + method].append(
                            (
                                float(np.mean(((lower <= truth) & (truth <= upper))[given])),
                                float(np.mean((upper - lower)[given])),
                                float(np.mean(((lower <= point) & (point <= upper))[given])),
                                float(np.mean(~given)),
                            )
                        )
        for (outcome, name), rows in found.items():
            v = np.array(rows)
            c, width, inside, none = v.mean(axis=0)
            print(
                f"| {n:,} | {outcome} | {name} | {c:.3f} ({v[:, 0].min():.2f}–{v[:, 0].max():.2f}) "
                f"| {width:.3f} | {inside:.3f} | {none:.3f} |"
            )


def _fixed_specification(refit):
    """``interval.refit`` that ignores the resample's choice: the development's candidate every time."""
    return lambda chosen, champion, *args, **kwargs: refit(champion, champion, *args, **kwargs)


if __name__ == "__main__":
    main()
