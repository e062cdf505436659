"""Model choice by evidence: repeated, patient-grouped cross-validation of calibrated candidates.

Each candidate is fitted in every training fold; its out-of-fold margins are calibrated by cross-fitting
(the Platt calibrator for fold k is fitted on the other folds' out-of-fold margins), so the scored
probabilities are what the served, calibrated model would give. Proper scores (log loss, Brier) decide:
the boosted model replaces the simpler logistic model only when its log loss is lower by more than one
standard error of the paired per-fold difference (a one-standard-error rule; Hastie, Tibshirani &
Friedman, The Elements of Statistical Learning, 2nd ed., section 7.10). Lines of one patient always stay
in the same fold (seed 000: 107 lines in 78 patients).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from training.calibration import fit_platt
from training.estimators import BoostedSpec, LogisticSpec

Spec = LogisticSpec | BoostedSpec
N_SPLITS = 5
_STRATIFY_MAX_GROUPS = 20_000  # StratifiedGroupKFold loops over groups in Python; beyond this, GroupKFold


def default_repeats(n_rows: int) -> int:
    """More repeats where the variance is large: 10 under 1,000 rows, 3 under 20,000, else 1."""
    return 10 if n_rows < 1_000 else 3 if n_rows < 20_000 else 1


@dataclass(frozen=True)
class CVResult:
    """Per-fold scores of one candidate over all repeats, and repeat 0's out-of-fold predictions."""

    candidate: str
    log_loss: np.ndarray  # (repeats * folds,)
    brier: np.ndarray
    roc_auc: np.ndarray
    oof_margin: np.ndarray  # repeat 0, uncalibrated: the final calibrator is fitted on these
    oof_probability: np.ndarray  # repeat 0, cross-fitted calibrated probabilities

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of each score across folds and repeats."""
        out: dict[str, float] = {}
        for name in ("log_loss", "brier", "roc_auc"):
            values = getattr(self, name)
            out[f"{name}_mean"] = float(np.nanmean(values))
            out[f"{name}_sd"] = float(np.nanstd(values, ddof=1)) if values.size > 1 else float("nan")
        return out


def fold_ids(y: np.ndarray, groups: np.ndarray, *, seed: int, n_splits: int = N_SPLITS) -> np.ndarray:
    """Fold number (0..n_splits-1) of each row; lines of one patient share a fold, events stratified."""
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"cross-validation needs at least {n_splits} patients; got {n_groups}")
    if n_groups <= _STRATIFY_MAX_GROUPS:
        splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    else:
        splitter = GroupKFold(n_splits, shuffle=True, random_state=seed)
    folds = np.empty(len(y), dtype=np.int64)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        folds[test] = k
    return folds


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
    """Score ``spec`` by repeated grouped K-fold CV with cross-fitted Platt calibration."""
    scores: dict[str, list[float]] = {"log_loss": [], "brier": [], "roc_auc": []}
    oof_margin = oof_probability = np.empty(0)
    for repeat in range(n_repeats):
        folds = fold_ids(y, groups, seed=seed + repeat)
        margin = np.empty(len(y))
        for k in range(N_SPLITS):
            train = folds != k
            margin[~train] = spec.fit(X[train], y[train], seed=seed + repeat).margin(X[~train])
        probability = _cross_fitted_probability(margin, y, folds)
        for k in range(N_SPLITS):
            test = folds == k
            scores["log_loss"].append(log_loss(y[test], probability[test], labels=[0, 1]))
            scores["brier"].append(brier_score_loss(y[test], probability[test]))
            one_class = y[test].min() == y[test].max()
            scores["roc_auc"].append(np.nan if one_class else roc_auc_score(y[test], probability[test]))
        if repeat == 0:
            oof_margin, oof_probability = margin, probability
        if advance:
            advance()
    return CVResult(spec.name, *(np.array(v) for v in scores.values()), oof_margin, oof_probability)


def _cross_fitted_probability(margin: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    probability = np.empty(len(y))
    for k in np.unique(folds):
        test = folds == k
        calibrator = fit_platt(margin[~test], y[~test])
        probability[test] = expit(calibrator.logit(margin[test]))
    return probability


def choose(results: dict[str, CVResult], *, simple: str = "logistic") -> tuple[str, str]:
    """The chosen candidate and the reason, in words, by the one-standard-error rule on log loss."""
    best = min(results, key=lambda name: results[name].log_loss.mean())
    if best == simple:
        return simple, f"{simple} has the lowest cross-validated log loss"
    diff = results[best].log_loss - results[simple].log_loss  # paired per fold
    se = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else 0.0
    if -diff.mean() > se:
        return best, (
            f"{best} lowers cross-validated log loss by {-diff.mean():.4f} (paired SE {se:.4f}), "
            f"more than one standard error, versus {simple}"
        )
    return simple, (
        f"{best} lowers cross-validated log loss by only {-diff.mean():.4f} (paired SE {se:.4f}); "
        f"within one standard error the simpler {simple} is kept"
    )
