"""Internal validation by the optimism bootstrap: how the whole development procedure does on new patients.

Harrell's enhanced bootstrap (Efron–Gong optimism): the procedure (encoding, candidate selection, fitting,
shrinkage, calibration) is run on the development data (apparent performance) and again on ``B`` bootstrap
resamples of *patients* (all lines of a drawn patient come along); each resample's model is scored on its
resample and on the original data, and the mean difference (the optimism) is subtracted from the apparent
performance. Confidence intervals come from the same resamples (no second level): for AUC, Brier score and
log loss the location-shifted percentile intervals of Noma et al. (the 2.5th and 97.5th percentiles of the
resamples' apparent performance, shifted by the optimism). Calibration-in-the-large is 0 in apparent
performance by construction (the intercept is re-estimated on the development data), and a shrunk model's
apparent slope is the inverse of its shrinkage factor, so the spread of their apparent values says nothing:
their intervals are the percentiles of the per-resample corrected values ``apparent - (boot_b - orig_b)``,
i.e. the spread of the optimism only (narrower than a full interval). The slope's optimism is the *median*
over resamples: a resample whose model is nearly flat (shrinkage near 0) has an apparent slope of 1/shrinkage,
unbounded, which would swamp a mean. A slope is undefined for a resample whose model predicts one risk for
everyone (it chose the intercept alone); those resamples are counted in ``defined``, and the validated slope
describes the resamples that found a signal. Each resample's predictions for the original lines are kept:
they are the instability of the procedure (Riley & Collins).

References
    Harrell FE. Regression Modeling Strategies, 2nd ed. Springer 2015, section 5.3.
    Steyerberg EW. Clinical Prediction Models, 2nd ed. Springer 2019, chapter 17.
    Noma H, Shinozaki T, Iba K, Teramukai S, Furukawa TA. Confidence intervals of prediction accuracy measures
    for multivariable prediction models based on the bootstrap-based optimism correction methods. Stat Med
    2021;40:5691-5701.
    Riley RD, Collins GS. Stability of clinical prediction models developed using statistical or machine
    learning methods. Biom J 2023;65:2200302.
    Field CA, Welsh AH. Bootstrapping clustered data. J R Stat Soc B 2007;69:369-390 (resampling clusters).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from training import evaluation

#: The metrics validated, each a function of (y, p); higher is better only for ``roc_auc``.
METRICS = ("roc_auc", "calibration_intercept", "calibration_slope", "observed_expected", "brier", "log_loss")
#: Metrics whose interval is the shifted percentile interval (the others: per-resample corrected values).
_SHIFTED = ("roc_auc", "brier", "log_loss")
#: Metrics whose optimism is the median over resamples (unbounded per-resample values; see above).
_MEDIAN = ("calibration_slope",)
LEVEL = 0.95


def score(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, calibration-in-the-large and slope, O:E, Brier and log loss of risks ``p`` for outcomes ``y``."""
    overall = evaluation.overall(y, p)
    calibration = evaluation.calibration(y, p)
    return {
        "roc_auc": evaluation.auc(y, p),
        "calibration_intercept": calibration["calibration_intercept"],
        "calibration_slope": calibration["calibration_slope"],
        "observed_expected": calibration["observed_expected"],
        "brier": overall["brier"],
        "log_loss": overall["log_loss"],
    }


@dataclass(frozen=True)
class Validated:
    """One metric: apparent, optimism, optimism-corrected, and the corrected value's confidence interval."""

    apparent: float
    optimism: float
    lower: float
    upper: float
    defined: int = 0  # resamples in which the metric was defined

    @property
    def corrected(self) -> float:
        """Apparent minus optimism."""
        return self.apparent - self.optimism


@dataclass(frozen=True)
class Validation:
    """The optimism bootstrap of one outcome's procedure."""

    metrics: dict[str, Validated]
    resamples: int  # resamples that gave a model
    failed: int  # resamples whose procedure failed (e.g. one outcome class drawn)
    predictions: np.ndarray  # (lines, resamples): each resample's risk for every original line

    def flat(self, prefix: str = "validated_") -> dict[str, float]:
        """``validated_<metric>`` (corrected), ``_ci_lower``, ``_ci_upper``, ``_apparent``, ``_optimism``."""
        out: dict[str, float] = {}
        for name, v in self.metrics.items():
            out[f"{prefix}{name}"] = v.corrected
            out[f"{prefix}{name}_ci_lower"] = v.lower
            out[f"{prefix}{name}_ci_upper"] = v.upper
            out[f"{prefix}{name}_apparent"] = v.apparent
            out[f"{prefix}{name}_optimism"] = v.optimism
            out[f"{prefix}{name}_resamples"] = v.defined
        return out


#: ``develop(rows, b)`` runs the whole procedure on the given rows of the development data (``b = 0``: all of
#: them; ``b >= 1``: bootstrap resample ``b``, rows repeated) and returns, per outcome, ``risk(rows)``: the
#: fitted model's risks for any rows.
Develop = Callable[[np.ndarray, int], Mapping[str, Callable[[np.ndarray], np.ndarray]]]


def patient_resamples(patients: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """``n_boot`` bootstrap samples of rows, drawing patients with replacement (every line of a patient)."""
    _, group = np.unique(np.asarray(patients), return_inverse=True)
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(group.max() + 2))
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(starts) - 1, len(starts) - 1)
        samples.append(np.concatenate([order[starts[g] : starts[g + 1]] for g in drawn]))
    return samples


def optimism_bootstrap(
    develop: Develop,
    outcomes: Mapping[str, np.ndarray],
    patients: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    advance: Callable[[], None] | None = None,
) -> dict[str, Validation]:
    """Validate ``develop`` on every outcome in ``outcomes`` (name -> 0/1 per development line).

    A resample whose procedure raises ``ValueError`` (no model can be fitted on it) is skipped and counted as
    failed; a metric undefined in a resample (a calibration slope of constant risks) is left out of that
    metric's summary only.
    """
    everyone = np.arange(len(patients))
    models = develop(everyone, 0)
    apparent = {o: score(y, models[o](everyone)) for o, y in outcomes.items()}
    boot: dict[str, list[dict[str, float]]] = {o: [] for o in outcomes}
    orig: dict[str, list[dict[str, float]]] = {o: [] for o in outcomes}
    predictions: dict[str, list[np.ndarray]] = {o: [] for o in outcomes}
    failed = dict.fromkeys(outcomes, 0)
    for b, rows in enumerate(patient_resamples(patients, n_boot, seed), start=1):
        try:
            models = develop(rows, b)
        except ValueError:
            models = {}
        for outcome, y in outcomes.items():
            if outcome not in models:
                failed[outcome] += 1
                continue
            p_orig = models[outcome](everyone)
            in_sample, on_original = score(y[rows], models[outcome](rows)), score(y, p_orig)
            boot[outcome].append(in_sample)
            orig[outcome].append(on_original)
            predictions[outcome].append(p_orig)
        if advance:
            advance()
    return {
        o: _summarise(apparent[o], boot[o], orig[o], predictions[o], failed[o], len(patients))
        for o in outcomes
    }


def _summarise(
    apparent: dict[str, float],
    boot: list[dict[str, float]],
    orig: list[dict[str, float]],
    predictions: list[np.ndarray],
    failed: int,
    n_lines: int,
) -> Validation:
    tail = (1 - LEVEL) / 2
    metrics = {}
    for name in METRICS:
        in_sample = np.array([b[name] for b in boot], dtype=float)
        difference = in_sample - np.array([o[name] for o in orig], dtype=float)
        defined = np.isfinite(difference)
        if not defined.any():
            metrics[name] = Validated(apparent[name], math.nan, math.nan, math.nan)
            continue
        average = np.median if name in _MEDIAN else np.mean
        optimism = float(average(difference[defined]))
        if name in _SHIFTED:
            lo, hi = np.quantile(in_sample[defined], [tail, 1 - tail]) - optimism
        else:
            lo, hi = np.quantile(apparent[name] - difference[defined], [tail, 1 - tail])
        metrics[name] = Validated(apparent[name], optimism, float(lo), float(hi), int(defined.sum()))
    stacked = np.column_stack(predictions) if predictions else np.empty((n_lines, 0))
    return Validation(metrics, len(boot), failed, stacked)
