"""Generate a synthetic cohort of contract records with both outcomes, vectorised and deterministic.

Each setting is drawn from its own random stream (``SeedSequence(seed)``, one child per setting in
:data:`features.schema.SETTINGS` order, one for the row order), so a given ``(n, seed, settings, params)``
always gives the same table. Case mix and effects come from :mod:`training.cohort.params`, where every
value names its seed file; the outcomes come from :mod:`training.cohort.outcomes`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from features.errors import LenriskError
from features.schema import COLUMNS_BY_NAME, COMORBIDITY_COLUMNS, OUTCOME_COLUMNS, RECORD_NAMES, SETTINGS
from training.cohort.outcomes import Covariates, draw_outcomes, outcome_probabilities
from training.cohort.params import DEFAULT_PARAMS, TRIPLET_OR_MORE, CohortParams, SettingParams

OUTCOME_NAMES: tuple[str, ...] = tuple(c.name for c in OUTCOME_COLUMNS)
#: ``--with-truth`` columns: the true marginal probability of each outcome given the covariates.
TRUTH_NAMES: tuple[str, ...] = tuple(f"true_p_{name}" for name in OUTCOME_NAMES)
_DISC, _DR = OUTCOME_NAMES  # discontinued_toxicity, dose_reduced
_TRUE_P = dict(zip(OUTCOME_NAMES, TRUTH_NAMES, strict=True))
_CRCL = COLUMNS_BY_NAME["crcl_ml_min"]
_PRIOR_LINES = COLUMNS_BY_NAME["prior_lines"]


class UnknownSettingError(LenriskError, ValueError):
    """A requested setting is not one of the contract's settings."""


def resolve_settings(settings: Iterable[str] | str | None) -> tuple[str, ...]:
    """The requested settings in contract order, all of them when ``settings`` is None or empty.

    Raises
    ------
    UnknownSettingError
        If a name is not one of :data:`features.schema.SETTINGS`.
    """
    requested = [settings] if isinstance(settings, str) else list(settings or ())
    if unknown := [s for s in requested if s not in SETTINGS]:
        raise UnknownSettingError(
            f"unknown setting {', '.join(map(repr, unknown))}; expected one of {', '.join(SETTINGS)}"
        )
    return tuple(s for s in SETTINGS if s in requested) if requested else SETTINGS


def allocate(n: int, shares: np.ndarray) -> np.ndarray:
    """Split ``n`` lines by ``shares`` (renormalised) with the largest-remainder rule."""
    raw = n * shares / shares.sum()
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def start_dose(
    base_mg: np.ndarray, crcl: np.ndarray, dialysis: np.ndarray, params: CohortParams
) -> np.ndarray:
    """Lenalidomide starting dose after the renal rule of seed 002 (``002_d25f452b84da1d30.txt``).

    CrCl below ``params.renal_threshold_ml_min`` (50 mL/min by default): at most 10 mg; CrCl below 30 on
    dialysis: 5 mg. Doses already below the cap (e.g. maintenance 10 mg, AL 5 mg) are kept.
    """
    capped = np.where(
        crcl < params.renal_threshold_ml_min.value, np.minimum(base_mg, params.renal_dose_mg.value), base_mg
    )
    on_dialysis = (dialysis == 1) & (crcl < params.dialysis_crcl_below.value)
    return np.where(on_dialysis, params.dialysis_dose_mg.value, capped)


def generate_cohort(
    n: int,
    seed: int,
    settings: Iterable[str] | str | None = None,
    with_truth: bool = False,
    params: CohortParams = DEFAULT_PARAMS,
) -> pd.DataFrame:
    """Generate ``n`` treatment lines in the contract schema plus both outcomes.

    Parameters
    ----------
    n
        Number of lines (rows), at least 1.
    seed
        Seed of the random streams; the same arguments always give the same table.
    settings
        Settings to draw from (default all four, mixed by ``params.setting_shares``, an assumption);
        a subset keeps the same relative shares.
    with_truth
        Add ``true_p_discontinued_toxicity`` and ``true_p_dose_reduced``, the true marginal
        probabilities of each outcome given the line's covariates.
    params
        Cited generator parameters.

    Returns
    -------
    pandas.DataFrame
        Contract columns in contract order, then ``discontinued_toxicity`` and ``dose_reduced`` (and the
        truth columns). Lines of one patient are consecutive, in order of ``prior_lines``; patients are
        shuffled across settings and numbered ``P0000001``, ``P0000002``, ... in order of appearance.

    Raises
    ------
    UnknownSettingError
        If a setting is not a contract setting.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    chosen = resolve_settings(settings)
    shares = dict(params.setting_shares.value)
    counts = allocate(n, np.array([shares[s] for s in chosen]))
    streams = np.random.SeedSequence(seed).spawn(len(SETTINGS) + 1)
    blocks = [
        _setting_block(params.setting(s), int(k), np.random.default_rng(streams[SETTINGS.index(s)]), params)
        for s, k in zip(chosen, counts, strict=True)
        if k
    ]
    offsets = np.cumsum([0] + [int(b["patient"][-1]) + 1 for b in blocks])
    patient = np.concatenate([b["patient"] + off for b, off in zip(blocks, offsets, strict=False)])
    cols = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0] if key != "patient"}
    cols["setting"] = np.repeat([s for s, k in zip(chosen, counts, strict=True) if k], counts[counts > 0])

    # Shuffle whole patients (lines stay together and in order), then number them as they appear.
    rank = np.empty(offsets[-1], dtype=np.int64)
    rank[np.random.default_rng(streams[-1]).permutation(offsets[-1])] = np.arange(offsets[-1])
    order = np.lexsort((cols["prior_lines"], rank[patient]))
    number = pd.Series(rank[patient[order]] + 1)
    cols = {key: values[order] for key, values in cols.items()}
    cols["patient_id"] = ("P" + number.astype(str).str.zfill(7)).to_numpy()

    ecog = cols["ecog"]
    cols["ecog"] = pd.arrays.IntegerArray(np.nan_to_num(ecog).astype(np.int64), np.isnan(ecog))
    names = list(RECORD_NAMES) + list(OUTCOME_NAMES) + (list(TRUTH_NAMES) if with_truth else [])
    return pd.DataFrame({name: cols[name] for name in names})


def _setting_block(sp: SettingParams, n: int, rng: np.random.Generator, params: CohortParams) -> dict:
    """``n`` lines of one setting as arrays keyed by column name (plus the local ``patient`` index)."""
    k = _lines_per_patient(n, sp.lines_per_patient.value, rng)
    n_patients = k.size
    first = np.cumsum(k) - k
    patient = np.repeat(np.arange(n_patients), k)
    line = np.arange(n) - first[patient]

    # Age: the patient's first line from a truncated normal, later lines older by gamma-distributed gaps.
    gap = np.where(line > 0, rng.gamma(2.0, sp.years_between_lines.value / 2, n), 0.0)
    offset = np.cumsum(gap)
    offset -= offset[first][patient]
    span = offset[first + k - 1]
    lo, hi = sp.age_range.value
    mean, sd = sp.age_mean.value - offset.mean(), sp.age_sd.value  # line-level ages keep the setting's mean
    cdf_lo = ndtr((lo - mean) / sd)
    cdf_hi = ndtr((np.maximum(hi - span, lo + 0.1) - mean) / sd)
    base_age = mean + sd * ndtri(cdf_lo + rng.random(n_patients) * (cdf_hi - cdf_lo))
    age = np.clip(np.round(base_age[patient] + offset, 1), lo, hi)

    male = (rng.random(n_patients) < sp.male_share.value)[patient]
    dialysis = (rng.random(n_patients) < sp.dialysis_share.value)[patient].astype(np.int64)
    cm = {
        col: (rng.random(n_patients) < share)[patient].astype(np.int64)
        for col, (_, share) in zip(COMORBIDITY_COLUMNS, sp.comorbidity_shares.value, strict=True)
    }
    first_prior = sp.prior_lines_first.value + rng.poisson(sp.prior_lines_extra_mean.value, n_patients)
    prior_lines = np.minimum(first_prior, sp.prior_lines_max.value)[patient] + line
    prior_lines = np.minimum(prior_lines, _PRIOR_LINES.maximum).astype(np.int64)

    codes, code_p = zip(*sp.regimen_shares.value, strict=True)
    regimen = rng.choice(np.array(codes), size=n, p=np.array(code_p))

    # Renal function: log-normal CrCl scaled by the (140 - age) term of Cockcroft-Gault; dialysis below 30.
    age_term = (140 - age) / (140 - sp.age_mean.value)
    crcl = sp.crcl_median.value * age_term * np.exp(sp.crcl_log_sd.value * rng.standard_normal(n))
    d_lo, d_hi = params.dialysis_crcl_range.value
    crcl = np.where(dialysis == 1, rng.uniform(d_lo, d_hi, n), crcl)
    crcl = np.round(np.clip(crcl, _CRCL.minimum, _CRCL.maximum), 1)
    doses, dose_p = zip(*sp.base_dose_shares.value, strict=True)
    dose = start_dose(rng.choice(np.array(doses), size=n, p=np.array(dose_p)), crcl, dialysis, params)

    ecog = rng.choice(5, size=n, p=np.array(sp.ecog_shares.value)).astype(float)
    ecog[rng.random(n) < params.ecog_missing_share.value] = np.nan
    recorded_crcl = np.where(rng.random(n) < params.crcl_missing_share.value, np.nan, crcl)

    covariates = Covariates(
        age=age, male=male, triplet=np.isin(regimen, TRIPLET_OR_MORE), n_comorbidities=sum(cm.values())
    )
    p = outcome_probabilities(covariates, params.outcome, sp.dr_intercept.value, sp.disc_intercept.value)
    dose_reduced, discontinued = draw_outcomes(p, rng)
    return {
        "patient": patient,
        "age": age,
        "sex": np.where(male, "male", "female"),
        "regimen": regimen,
        "start_dose_mg": dose,
        "crcl_ml_min": recorded_crcl,
        "dialysis": dialysis,
        "ecog": ecog,
        "prior_lines": prior_lines,
        **cm,
        _DISC: discontinued,
        _DR: dose_reduced,
        _TRUE_P[_DISC]: p.discontinued,
        _TRUE_P[_DR]: p.dose_reduced,
    }


def _lines_per_patient(n: int, mean: float, rng: np.random.Generator) -> np.ndarray:
    """Lines of each patient, ``1 + Poisson(mean - 1)``, with the last patient cut so they sum to ``n``."""
    if mean <= 1:
        return np.ones(n, dtype=np.int64)
    size = int(n / mean) + 16
    draws = [1 + rng.poisson(mean - 1, size)]
    while sum(d.sum() for d in draws) < n:
        draws.append(1 + rng.poisson(mean - 1, size))
    k = np.concatenate(draws)
    total = np.cumsum(k)
    last = int(np.searchsorted(total, n))
    k = k[: last + 1]
    k[-1] -= total[last] - n
    return k
