"""Coverage of the 95% uncertainty intervals against the generator's true risks, per outcome and method.

For each size of ``--sizes`` and each of ``--seeds`` seeds, train both models on a synthetic cohort
(``allow_small_sample``, one CV repeat, ``--bootstrap`` resamples) and score 5,000 new lines of the same
population, whose true risks are known. The first ``B`` refits of that training are exactly those of a
training with ``B`` resamples (the resamples are drawn in order from the seed), so one training gives
every ``B`` of ``--refits`` (none above ``--bootstrap``). Per size, ``B``, outcome and method it prints:
the share of new lines whose true risk lies inside their interval (pooled over seeds; the lowest and
highest seed), the mean width, and the share whose served risk lies inside; lines given no interval
(outside the training data) are left out. Methods, from the same refits:

- ``served``: the kernel's interval, ``RiskModel.interval`` (logit ± z · root-mean-square deviation of the
  refits' logits from the served logit);
- ``sd``: logit ± z · SD of the refits' logits (the kernel's before the root-mean-square width);
- ``sd, t``: the same with the t quantile of ``B - 1`` degrees of freedom;
- ``bias-corrected``: the basic bootstrap's centre ``2 · logit - mean of the refits' logits``, ± z · SD;
- ``percentiles``: the 2.5th-97.5th percentiles of the refits' risks.

``--deciles`` adds, per outcome and size (largest ``B``), coverage of ``sd`` and ``served`` by decile of true
risk, the mean error of the served logit against the true logit, the mean bootstrap SD, the seed-to-seed SD
of the served logit over that mean SD, and the refits' mean logit minus the served one. ``--cache DIR``
keeps each training's scores (``<lines>_<seed>_<B>.npz``) and reuses them. Results: docs/training.md.

Usage::

    .venv/bin/python benchmarks/interval_coverage.py [--sizes 300,1000] [--seeds 20] [--bootstrap 200]
        [--refits 50,200] [--cache DIR] [--deciles]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from unittest import mock

import numpy as np
from scipy.special import expit, logit
from scipy.stats import t as student

from features.model.riskmodel import INTERVAL_LEVEL, RiskModel
from features.schema import OUTCOMES
from features.validate import validate_table
from training import interval
from training.cohort.generate import generate_cohort
from training.pipeline import train

Z = student.ppf(0.5 + INTERVAL_LEVEL / 2, np.inf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="300,1000")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--refits", default="50,200")
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--deciles", action="store_true")
    args = parser.parse_args()

    refits = sorted(int(b) for b in args.refits.split(","))
    new = validate_table(generate_cohort(5_000, seed=999, with_truth=True)).clean
    for n in (int(s) for s in args.sizes.split(",")):
        runs = [_scores(n, seed, args.bootstrap, new, args.cache) for seed in range(1, args.seeds + 1)]
        for b in refits:
            print(f"\n{n:,} lines, {b} refits, {args.seeds} seeds\n")
            print("| outcome | method | coverage (lowest–highest seed) | mean width | served risk inside |")
            print("|---|---|---|---|---|")
            found: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
            for run in runs:
                for outcome in OUTCOMES:
                    given = run[f"{outcome}_given"]
                    served = run[f"{outcome}_logit"][given]
                    truth = logit(run[f"{outcome}_truth"][given])
                    logits = _logits(run, outcome)[given, :b]
                    for method, (lower, upper) in _methods(served, logits).items():
                        found[outcome, method].append(
                            (
                                float(np.mean((lower <= truth) & (truth <= upper))),
                                float(np.mean(expit(upper) - expit(lower))),
                                float(np.mean((lower <= served) & (served <= upper))),
                            )
                        )
            for (outcome, method), rows in found.items():
                v = np.array(rows)
                c, width, inside = v.mean(axis=0)
                print(
                    f"| {outcome} | {method} | {c:.3f} ({v[:, 0].min():.2f}–{v[:, 0].max():.2f}) "
                    f"| {width:.3f} | {inside:.3f} |"
                )
        if args.deciles:
            _deciles(n, runs)


def _scores(n: int, seed: int, n_boot: int, new, cache: Path | None) -> dict[str, np.ndarray]:
    """Per outcome, the served logit of the new lines, the refits' weights, which lines get an interval,
    the true risks, and each resample's chosen candidate; trained, or read from ``cache``."""
    path = cache / f"{n}_{seed}_{n_boot}.npz" if cache else None
    if path and path.exists():
        return dict(np.load(path))
    frame = validate_table(generate_cohort(n, seed)).raise_on_errors()
    chosen: list[str] = []
    original = interval.refit

    def refit(name, champion, *args, **kwargs):
        chosen.append(name)
        return original(name, champion, *args, **kwargs)

    with mock.patch.object(interval, "refit", refit):
        result = train(frame, seed=seed, source="x", n_boot=n_boot, n_repeats=1, allow_small_sample=True)
    out: dict[str, np.ndarray] = {}
    for i, (outcome, res) in enumerate(result.outcomes.items()):
        model: RiskModel = res.model
        X = model.encode(new)
        out |= {
            f"{outcome}_logit": model.logit_of(X),
            f"{outcome}_W": model.ensemble.weights,
            f"{outcome}_w0": model.ensemble.intercepts,
            f"{outcome}_given": ~model.outside_training(new),
            f"{outcome}_truth": new[f"true_p_{OUTCOMES[outcome]}"].to_numpy(),
            f"{outcome}_resample_choices": np.array(chosen[i :: len(OUTCOMES)]),
            "X": X,
        }
    if path:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **out)
    return out


def _logits(run: dict[str, np.ndarray], outcome: str) -> np.ndarray:
    return run["X"] @ run[f"{outcome}_W"].T + run[f"{outcome}_w0"]


def _methods(served: np.ndarray, logits: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Bounds on the log-odds scale of each method (module docstring) from the served logits and the
    (rows, B) refits' logits."""
    sd, mean = logits.std(axis=1, ddof=1), logits.mean(axis=1)
    rms = np.sqrt(sd**2 + (mean - served) ** 2)
    t = student.ppf(0.5 + INTERVAL_LEVEL / 2, logits.shape[1] - 1)
    tail = (1 - INTERVAL_LEVEL) / 2
    return {
        "served": (served - Z * rms, served + Z * rms),
        "sd": (served - Z * sd, served + Z * sd),
        "sd, t": (served - t * sd, served + t * sd),
        "bias-corrected": (2 * served - mean - Z * sd, 2 * served - mean + Z * sd),
        "percentiles": tuple(np.quantile(logits, [tail, 1 - tail], axis=1)),
    }


def _deciles(n: int, runs: list[dict[str, np.ndarray]]) -> None:
    for outcome in OUTCOMES:
        truth = runs[0][f"{outcome}_truth"]
        decile = np.digitize(truth, np.quantile(truth, np.linspace(0.1, 0.9, 9)))
        served = np.array([r[f"{outcome}_logit"] for r in runs])
        given = np.array([r[f"{outcome}_given"] for r in runs])
        logits = [_logits(r, outcome) for r in runs]
        sd = np.array([v.std(axis=1, ddof=1) for v in logits])
        shift = np.array([v.mean(axis=1) for v in logits]) - served
        error = served - logit(truth)
        covered = {
            "sd": np.abs(error) <= Z * sd,
            "served": np.abs(error) <= Z * np.sqrt(sd**2 + shift**2),
        }
        print(f"\n{n:,} lines, {outcome}, by decile of true risk ({len(runs)} seeds)\n")
        print(
            "| decile | true risk | coverage sd | coverage served | mean error (logit) | mean SD "
            "| seed-to-seed SD / mean SD | refits' mean - served |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for k in range(11):
            m = decile == k if k < 10 else np.ones_like(decile, dtype=bool)
            g = given[:, m]
            print(
                f"| {k + 1 if k < 10 else 'all'} | {truth[m].min():.3f}–{truth[m].max():.3f} "
                f"| {covered['sd'][:, m][g].mean():.3f} | {covered['served'][:, m][g].mean():.3f} "
                f"| {error[:, m].mean():+.3f} | {sd[:, m].mean():.3f} "
                f"| {served[:, m].std(axis=0, ddof=1).mean() / sd[:, m].mean():.2f} "
                f"| {shift[:, m].mean():+.3f} |"
            )


if __name__ == "__main__":
    main()
