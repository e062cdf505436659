"""Model choice that knows its noise: repeated, patient-grouped cross-validation and a corrected one-SE rule.

Every candidate eligible by sample size (:mod:`training.candidates`) is scored by ``R`` x ``K``-fold
cross-validation grouped by patient and stratified by outcome, each fold fitting the candidate exactly as it
would be registered (fit, shrinkage or calibration included). The candidate with the lowest mean log loss is
the best; the simplest candidate whose paired per-fold log-loss difference to the best is within one
standard error is chosen. The folds' scores are not independent (their training sets overlap), so the
standard error is the corrected one of Nadeau & Bengio, ``sqrt((1/(R K) + n_test/n_train) var(d))``, not the
naive ``sqrt(var(d)/(R K))``, which is too small by a factor of about ``sqrt(1 + R K n_test/n_train)``.

References
    Nadeau C, Bengio Y. Inference for the generalization error. Mach Learn 2003;52:239-281; Bouckaert RR,
    Frank E. Evaluating the replicability of significance tests for comparing learning algorithms.
    PAKDD 2004 (the corrected repeated k-fold t-test).
    Hastie T, Tibshirani R, Friedman J. The Elements of Statistical Learning, 2nd ed., section 7.10 (the
    one-standard-error rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from training.calibration import fit_platt
from training.estimators import BoostedSpec, LinearSpec

Spec = LinearSpec | BoostedSpec
N_SPLITS = 5
_EPS = 1e-15


#: The selection rule in words (logged with each model and stated in its card).
SELECTION_RULE = (
    f"lowest mean log loss in repeated {N_SPLITS}-fold cross-validation grouped by patient; the simplest "
    "candidate within one Nadeau-Bengio-corrected standard error of the paired fold differences is chosen"
)


def default_repeats(n_rows: int) -> int:
    """Cross-validation repeats: 2 under 5,000 lines, else 1 (the corrected SE accounts for either)."""
    return 2 if n_rows < 5_000 else 1


@dataclass(frozen=True)
class CVResult:
    """Per-fold log loss of one candidate over all repeats, and its out-of-fold risks of the first repeat."""

    candidate: str
    log_loss: np.ndarray  # (repeats * folds,)
    oof_probability: np.ndarray  # repeat 0

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of the fold log losses."""
        sd = float(np.std(self.log_loss, ddof=1)) if self.log_loss.size > 1 else float("nan")
        return {"log_loss_mean": float(np.mean(self.log_loss)), "log_loss_sd": sd}


def fold_ids(y: np.ndarray, groups: np.ndarray, *, seed: int, n_splits: int = N_SPLITS) -> np.ndarray:
    """Fold number (0..n_splits-1) of each row; lines of one patient share a fold, events stratified.

    Patients are ordered by their event rate (ties in random order) and dealt to the folds in turn, so every
    fold gets about the same share of events and of lines; with one line per patient this is stratified
    K-fold. (scikit-learn's ``StratifiedGroupKFold`` searches the best fold patient by patient, which costs
    more than all the model fits of a bootstrap at development sizes.)
    """
    _, group = np.unique(groups, return_inverse=True)
    n_groups = int(group.max()) + 1
    if n_groups < n_splits:
        raise ValueError(f"cross-validation needs at least {n_splits} patients; got {n_groups}")
    rate = np.bincount(group, weights=y) / np.bincount(group)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n_groups), rate))
    fold_of = np.empty(n_groups, dtype=np.int64)
    fold_of[order] = (np.arange(n_groups) + rng.integers(n_splits)) % n_splits
    return fold_of[group]


def cross_validate(
    spec: Spec,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    n_repeats: int,
    seed: int = 0,
    advance: Callable[[], None] | None = None,
) -> CVResult:
    """Score ``spec`` by repeated grouped K-fold CV, each fold fitted and calibrated as registered.

    Linear candidates shrink within each fold's fit; boosted ones are calibrated by cross-fitting (the Platt
    calibrator of fold k is fitted on the other folds' out-of-fold margins). Raises ``ValueError`` when a
    fold's training rows have one outcome class.
    """
    scores: list[float] = []
    oof_probability = np.empty(0)
    for repeat in range(n_repeats):
        folds = fold_ids(y, groups, seed=seed + repeat)
        probability = np.empty(len(y))
        if isinstance(spec, BoostedSpec):
            margin = np.empty(len(y))
            for k in range(N_SPLITS):
                train = folds != k
                margin[~train] = spec.fit_margin(X[train], y[train], seed=seed + repeat)(X[~train])
            for k in range(N_SPLITS):
                test = folds == k
                probability[test] = expit(fit_platt(margin[~test], y[~test]).logit(margin[test]))
        else:
            for k in range(N_SPLITS):
                train = folds != k
                model, calibrator = spec.fit(X[train], y[train])
                probability[~train] = expit(calibrator.logit(model.margin(X[~train])))
        for k in range(N_SPLITS):
            test = folds == k
            p = np.clip(probability[test], _EPS, 1 - _EPS)
            scores.append(float(-np.mean(y[test] * np.log(p) + (1 - y[test]) * np.log(1 - p))))
        if repeat == 0:
            oof_probability = probability
        if advance:
            advance()
    return CVResult(spec.name, np.array(scores), oof_probability)


def corrected_se(differences: np.ndarray, *, n_splits: int = N_SPLITS) -> float:
    """Nadeau–Bengio standard error of the mean of ``R x K`` paired fold differences.

    >>> d = np.array([0.01, 0.03, -0.02, 0.04, 0.00, 0.02, 0.01, -0.01, 0.03, 0.02])
    >>> round(corrected_se(d), 10)  # K = 5, R = 2, n_test / n_train = 1/4
    0.0111728838
    """
    if differences.size < 2:
        return 0.0
    test_over_train = 1 / (n_splits - 1)
    return float(np.sqrt((1 / differences.size + test_over_train) * np.var(differences, ddof=1)))


def choose(results: dict[str, CVResult], order: list[str]) -> tuple[str, str]:
    """The chosen candidate and why, in words: the simplest (earliest in ``order``) within one corrected
    standard error of the lowest cross-validated log loss."""
    best = min(results, key=lambda name: results[name].log_loss.mean())
    for name in order:
        if name not in results:
            continue
        if name == best:
            return name, f"{name} has the lowest cross-validated log loss"
        diff = results[name].log_loss - results[best].log_loss  # paired per fold
        se = corrected_se(diff)
        if diff.mean() <= se:
            return name, (
                f"{name} is within one standard error (Nadeau–Bengio corrected) of the lowest "
                f"cross-validated log loss ({best}: {diff.mean():+.4f}, SE {se:.4f}), and simpler"
            )
    raise AssertionError("the best candidate is always in order")
