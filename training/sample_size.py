"""Is there enough data to develop a model? Riley's minimum sample size, and what the data offer.

A model's predictions are only as stable as its data allow. Riley et al. give the smallest development set for
a logistic model with ``P`` predictor parameters (every estimated coefficient but the intercept: each spline
term and dummy counts) so that (1) the expected uniform shrinkage is at least ``S`` = 0.9, (2) the apparent
and adjusted Nagelkerke R² differ by at most 0.05, and (3) the overall risk is estimated within ±0.05. The
data side is the *effective* sample size: several lines of one patient are not independent, so the lines count
``n / (1 + (m - 1) ICC)`` (design effect; ``m`` lines per patient, ``ICC`` of the outcome within patients).

The anticipated Cox–Snell R² comes from an anticipated C statistic (the published discrimination of the key
study, ``shared/reference/clinical-evidence.md`` section 4) by the binormal model of Riley, Van Calster &
Collins: there by simulating 10⁶ draws, here by its large-sample limit computed with Gauss–Hermite quadrature
(the two agree to about 1e-3 in R²cs; a C of 0.89 at prevalence 0.174 gives 0.2910 against the simulation's
0.2902).

References
    Riley RD, Ensor J, Snell KIE, et al. Calculating the sample size required for developing a clinical
    prediction model. BMJ 2020;368:m441 (criteria 1-3, as coded in the R package pmsampsize 1.1.3,
    ``pmsampsize_bin.R``: each criterion rounded up on its own).
    Riley RD, Van Calster B, Collins GS. A note on estimating the Cox-Snell R² from a reported C statistic
    (AUROC) to inform sample size calculations for developing a prediction model with a binary outcome.
    Stat Med 2021;40:859-864.
    Kish L. Survey Sampling. Wiley 1965 (design effect); Donner A, Klar N. Design and Analysis of Cluster
    Randomization Trials in Health Research. Arnold 2000 (the ANOVA estimator of the ICC, binary outcome).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import log_expit
from scipy.stats import norm

#: Target expected uniform shrinkage (criterion 1), the BMJ 2020 default.
SHRINKAGE = 0.9
#: Criterion 2: apparent minus adjusted Nagelkerke R² at most this.
R2_GAP = 0.05
#: Criterion 3: overall risk within ± this (95% interval).
MARGIN = 0.05
_NODES, _WEIGHTS = hermegauss(80)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def max_r2_cs(prevalence: float) -> float:
    """The largest Cox–Snell R² a model can reach at ``prevalence``: ``1 - exp(2 lnL_null / n)``.

    >>> round(max_r2_cs(0.174), 7)
    0.6032087
    """
    _check_prevalence(prevalence)
    ll_null = prevalence * math.log(prevalence) + (1 - prevalence) * math.log(1 - prevalence)
    return 1 - math.exp(2 * ll_null)


def r2_cs_from_c(c: float, prevalence: float) -> float:
    """Cox–Snell R² of a logistic model with C statistic ``c`` at ``prevalence`` (binormal, equal variances).

    The linear predictor is N(0, 1) in non-events and N(mu, 1) in events, mu = sqrt(2) Phi^-1(C); the true
    model is then logistic with slope mu, and R²cs = 1 - exp(-2 (E[log-likelihood] - lnL_null)) per line.

    >>> round(r2_cs_from_c(0.89, 0.174), 4)
    0.291
    """
    _check_prevalence(prevalence)
    if not 0.5 <= c < 1:
        raise ValueError(f"C statistic must be in [0.5, 1), got {c}")
    mu = math.sqrt(2) * norm.ppf(c)
    a = math.log(prevalence / (1 - prevalence)) - mu**2 / 2
    expected = prevalence * _WEIGHTS @ log_expit(a + mu * (_NODES + mu)) + (1 - prevalence) * (
        _WEIGHTS @ log_expit(-(a + mu * _NODES))
    )
    ll_null = prevalence * math.log(prevalence) + (1 - prevalence) * math.log(1 - prevalence)
    return 1 - math.exp(-2 * (expected - ll_null))


@dataclass(frozen=True)
class Requirement:
    """Riley's minimum development size for one model: criteria 1-3 and what follows from them."""

    parameters: int
    prevalence: float
    r2_cs: float
    n1: int  # expected shrinkage >= SHRINKAGE
    n2: int  # Nagelkerke R² optimism <= R2_GAP
    n3: int  # overall risk within ± MARGIN
    shrinkage_2: float  # the shrinkage criterion 2 implies

    @property
    def minimum(self) -> int:
        """Lines needed: the largest of the three criteria."""
        return max(self.n1, self.n2, self.n3)

    @property
    def binding(self) -> str:
        """Which criterion sets the minimum (``"1"``, ``"2"`` or ``"3"``)."""
        return str(1 + [self.n1, self.n2, self.n3].index(self.minimum))

    def expected_shrinkage(self, n: float) -> float:
        """Expected uniform shrinkage at ``n`` lines: ``S = 1 + P / (n ln(1 - R²cs / S))`` solved for ``S``
        (the left side minus the right is negative as S approaches R²cs and positive at 1: one root)."""
        if self.parameters == 0:
            return 1.0

        def excess(s: float) -> float:
            return s - 1 - self.parameters / (n * math.log(1 - self.r2_cs / s))

        lo, hi = self.r2_cs + 1e-12, 1.0 - 1e-12
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
        return (lo + hi) / 2

    def events_per_parameter(self, n: float) -> float:
        """Events (lines of the rarer class) per candidate parameter at ``n`` lines; ``inf`` for P = 0."""
        events = n * min(self.prevalence, 1 - self.prevalence)
        return math.inf if self.parameters == 0 else events / self.parameters


def requirement(
    parameters: int, prevalence: float, r2_cs: float, *, shrinkage: float = SHRINKAGE
) -> Requirement:
    """Riley's criteria 1-3 for ``parameters`` predictor parameters (pmsampsize's ``type="b"``).

    >>> r = requirement(24, 0.174, 0.288)
    >>> (r.n1, r.n2, r.n3, r.minimum)
    (623, 662, 221, 662)
    """
    _check_prevalence(prevalence)
    if parameters < 0:
        raise ValueError("parameters must be >= 0")
    top = max_r2_cs(prevalence)
    if not 0 < r2_cs < min(shrinkage, top):
        raise ValueError(f"anticipated R²cs {r2_cs} must be in (0, {min(shrinkage, top):.3f})")
    s2 = r2_cs / (r2_cs + R2_GAP * top)
    n1 = math.ceil(parameters / ((shrinkage - 1) * math.log(1 - r2_cs / shrinkage))) if parameters else 0
    n2 = math.ceil(parameters / ((s2 - 1) * math.log(1 - r2_cs / s2))) if parameters else 0
    n3 = math.ceil((1.96 / MARGIN) ** 2 * prevalence * (1 - prevalence))  # 1.96 as pmsampsize has it
    return Requirement(parameters, prevalence, r2_cs, n1, n2, n3, s2)


@dataclass(frozen=True)
class Effective:
    """What the data offer: lines, patients, the outcome's ICC within patients and the effective size."""

    n_lines: int
    n_patients: int
    icc: float
    design_effect: float

    @property
    def n(self) -> float:
        """Effective number of lines: ``n_lines / design_effect``."""
        return self.n_lines / self.design_effect


def effective_size(y: np.ndarray, patients: np.ndarray) -> Effective:
    """The design effect of several lines per patient on an outcome ``y`` (0/1), by the ANOVA ICC.

    ``ICC = (MSB - MSW) / (MSB + (m0 - 1) MSW)`` with ``m0`` the ANOVA's adjusted mean cluster size, clipped
    to [0, 1] (0 when every patient has one line); design effect ``1 + (m - 1) ICC`` with Kish's ``m =
    sum(m_i²) / n`` for unequal numbers of lines per patient.
    """
    y = np.asarray(y, dtype=float)
    _, group = np.unique(np.asarray(patients), return_inverse=True)
    sizes = np.bincount(group)
    k, n = len(sizes), len(y)
    if k == n or k < 2:
        return Effective(n, k, 0.0, 1.0)
    means = np.bincount(group, weights=y) / sizes
    msb = (sizes * (means - y.mean()) ** 2).sum() / (k - 1)
    msw = ((y - means[group]) ** 2).sum() / (n - k)
    m0 = (n - (sizes**2).sum() / n) / (k - 1)
    icc = float(np.clip((msb - msw) / (msb + (m0 - 1) * msw), 0, 1)) if msb + msw > 0 else 0.0
    return Effective(n, k, icc, 1 + ((sizes**2).sum() / n - 1) * icc)


def _check_prevalence(prevalence: float) -> None:
    if not 0 < prevalence < 1:
        raise ValueError(f"prevalence must be in (0, 1), got {prevalence}")
