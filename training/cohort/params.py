"""Cited parameters of the synthetic cohort: the case mix of each setting and the joint outcome model.

Every value is a :class:`Cited` pair of the value and its source. A source names a seed file of
``shared/seeds`` in full, the evidence sheet (``shared/reference/clinical-evidence.md``, "sheet"), or
starts with ``assumption:`` followed by the reasoning when no seed gives the value.

The relapsed/refractory outcome model is the working parameterisation of sheet section 1.3, which
reproduces the published analysis of seed 000 (see :mod:`training.cohort.published`). The other settings
share its covariate effects and have their own intercepts, solved for cited target rates by
``python -m training.cohort.calibrate`` (:mod:`training.cohort.calibrate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from features.schema import COMORBIDITIES, REGIMEN_AGENTS, REGIMENS, SETTINGS

S0 = "000_ad520cc8950628f0.txt"
S1 = "001_3b68cfb96f9eda6f.txt"
S2 = "002_d25f452b84da1d30.txt"
S3 = "003_4e235ec996188fc4.txt"
S4 = "004_50469b434ff3173b.txt"
SHEET = "clinical-evidence.md"
SEED_FILES = (S0, S1, S2, S3, S4)

#: Regimen codes with three or more agents: the "triple combination" of seed 000 (all but R and Rd).
TRIPLET_OR_MORE = tuple(regimen for regimen, agents in REGIMEN_AGENTS.items() if len(agents) >= 3)

_SOLVED = (
    "solved by `python -m training.cohort.calibrate` (n = 400 000, seed 0) for target_dr and target_disc"
)


@dataclass(frozen=True)
class Cited[T]:
    """A parameter value and where it comes from.

    The source names a seed file or the evidence sheet, or starts with ``assumption: `` (and the reason)
    or ``solved by `` (the command that solved it, for calibrated intercepts).
    """

    value: T
    source: str

    def __post_init__(self) -> None:
        cites = any(f in self.source for f in (*SEED_FILES, SHEET))
        if not (cites or self.source.startswith(("assumption: ", "solved by "))):
            raise ValueError(
                f"source {self.source!r} names no seed file, no {SHEET}, no assumption, no solver"
            )


@dataclass(frozen=True)
class OutcomeModel:
    """Covariate effects (log odds ratios) shared by all settings; intercepts are per setting.

    ``logit P(DR) = a_DR + dr_male·male + dr_age·(age − age_center) + dr_triplet·triplet
    + comorbidity·n_cm`` and ``logit P(disc | DR) = a_disc + disc_age·(age − age_center)
    + disc_triplet·triplet + disc_dr·DR + comorbidity·n_cm`` (sheet 1.3, seed 000).
    """

    age_center: Cited[float] = Cited(62.0, f"{S0}: median age 62; {SHEET} 1.3 centres age at 62")
    dr_male: Cited[float] = Cited(math.log(3.63), f"{SHEET} 1.3: ln(3.63), male OR on DR of {S0}")
    dr_age: Cited[float] = Cited(math.log(1.03), f"{SHEET} 1.3 working parameterisation: ln(1.03)/year")
    dr_triplet: Cited[float] = Cited(math.log(2.0), f"{SHEET} 1.3 working parameterisation: ln(2.0)")
    disc_age: Cited[float] = Cited(
        0.0928, f"{SHEET} 1.3 working parameterisation (given DR); refits to {S0}'s age OR 1.08/year"
    )
    disc_triplet: Cited[float] = Cited(
        1.852, f"{SHEET} 1.3 working parameterisation (given DR); refits to {S0}'s triplet OR 4.84"
    )
    disc_dr: Cited[float] = Cited(
        3.394,
        f"{SHEET} 1.3: DR → discontinuation link; {S0}: 'in 75% of the cases' DR was followed by a stop",
    )
    comorbidity: Cited[float] = Cited(
        0.0,
        f"{S0}: comorbidities 'not associated' with DR or early stop; OR 1 per comorbidity, both outcomes",
    )


@dataclass(frozen=True)
class SettingParams:
    """Case mix and outcome intercepts of one disease setting.

    Lines per patient are ``1 + Poisson(lines_per_patient − 1)``; a patient keeps sex, dialysis and
    comorbidities across lines, and each later line is older (gamma-distributed gap of mean
    ``years_between_lines``, shape 2) with one more prior line.
    """

    setting: str
    age_mean: Cited[float]  # of the untruncated normal, at line level
    age_sd: Cited[float]
    age_range: Cited[tuple[float, float]]
    male_share: Cited[float]
    regimen_shares: Cited[tuple[tuple[str, float], ...]]
    base_dose_shares: Cited[tuple[tuple[float, float], ...]]  # dose (mg) before the renal rule
    crcl_median: Cited[float]  # mL/min, not on dialysis, at age ``age_mean``
    crcl_log_sd: Cited[float]
    dialysis_share: Cited[float]
    ecog_shares: Cited[tuple[float, float, float, float, float]]  # ECOG 0..4
    prior_lines_first: Cited[int]  # fixed part at the patient's first line in the cohort
    prior_lines_extra_mean: Cited[float]  # Poisson mean added at the first line
    prior_lines_max: Cited[int]  # cap at the first line
    lines_per_patient: Cited[float]
    years_between_lines: Cited[float]
    comorbidity_shares: Cited[tuple[tuple[str, float], ...]]
    dr_intercept: Cited[float]
    disc_intercept: Cited[float]
    target_dr: Cited[float]
    target_disc: Cited[float]

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ValueError(f"unknown setting {self.setting!r}; expected one of {', '.join(SETTINGS)}")
        codes = [c for c, _ in self.regimen_shares.value]
        if unknown := sorted(set(codes) - set(REGIMENS)):
            raise ValueError(f"{self.setting}: unknown regimen codes {unknown}")
        if [c for c, _ in self.comorbidity_shares.value] != list(COMORBIDITIES):
            raise ValueError(f"{self.setting}: comorbidity shares must list {', '.join(COMORBIDITIES)}")
        for name in ("regimen_shares", "base_dose_shares", "ecog_shares"):
            shares = getattr(self, name).value
            total = sum(s[1] if isinstance(s, tuple) else s for s in shares)
            if not math.isclose(total, 1.0, abs_tol=1e-9):
                raise ValueError(f"{self.setting}: {name} sum to {total}, not 1")


_CM_ASSUMED = "assumption: no seed reports comorbidity prevalence; typical myeloma-cohort values"
_CM_NULL = f"; they only shape the case mix (null effect, {S0})"

RELAPSED_REFRACTORY = SettingParams(
    setting="relapsed_refractory",
    age_mean=Cited(62.0, f"{S0}: median age 62 (38–84); {SHEET} 1.3: N(62, 10) truncated to 38–84"),
    age_sd=Cited(10.0, f"{SHEET} 1.3: SD 10 reproduces the age-only AUC 0.67 (0.55–0.79) of {S0}"),
    age_range=Cited((38.0, 84.0), f"{S0}: age range 38–84"),
    male_share=Cited(0.55, f"{SHEET} row 10: ≈55% male implied by OR 3.63 and 25/33 male DR lines ({S0})"),
    regimen_shares=Cited(
        (
            ("Rd", 75 / 107),
            ("RCd", 17 / 107),
            ("RVd", 12 / 107),
            ("KRd", 0.75 / 107),
            ("IRd", 0.75 / 107),
            ("ERd", 0.75 / 107),
            ("DRd", 0.75 / 107),
        ),
        f"{S0}: Len-dex 75, Len-dex-cyclophosphamide 17, Len-dex-bortezomib 12 of 107 lines; the 3 other "
        "triplets are unnamed, assumption: spread evenly over KRd/IRd/ERd/DRd",
    ),
    base_dose_shares=Cited(((25.0, 1.0),), f"{S2}, {S4}: standard dose 25 mg once daily"),
    crcl_median=Cited(
        70.0, "assumption: not reported in 000; moderately reduced for age 62 after prior therapy"
    ),
    crcl_log_sd=Cited(0.4, "assumption: puts about 23% of lines below 50 mL/min"),
    dialysis_share=Cited(0.02, "assumption: not reported in 000; dialysis-dependent myeloma is uncommon"),
    ecog_shares=Cited((0.30, 0.45, 0.18, 0.06, 0.01), "assumption: not reported in 000; relapsed cohort"),
    prior_lines_first=Cited(1, f"{S0}: relapsed or refractory myeloma, so at least one prior line"),
    prior_lines_extra_mean=Cited(0.8, "assumption: not reported in 000; median 1–2 prior lines"),
    prior_lines_max=Cited(10, "assumption: cap on prior lines at the first Len line in the cohort"),
    lines_per_patient=Cited(107 / 78, f"{S0}: 107 lines in 78 patients (1.37 per patient)"),
    years_between_lines=Cited(
        1.5, f"assumption: a Len line lasts 5.8–11.7 months ({S0}) and another line usually comes between"
    ),
    comorbidity_shares=Cited(
        (
            ("cardiac", 0.18),
            ("diabetes", 0.15),
            ("pulmonary", 0.08),
            ("hepatic", 0.03),
            ("vte", 0.10),
            ("neuropathy", 0.30),
        ),
        _CM_ASSUMED + "; neuropathy raised by prior bortezomib/thalidomide" + _CM_NULL,
    ),
    dr_intercept=Cited(-1.833, f"{SHEET} 1.3 working parameterisation (reproduces {S0}; not re-solved)"),
    disc_intercept=Cited(-2.841, f"{SHEET} 1.3 working parameterisation (reproduces {S0}; not re-solved)"),
    target_dr=Cited(33 / 107, f"{S0}: dose reduced in 33 of 107 lines"),
    target_disc=Cited(34 / 107, f"{S0}: 34 discontinuations for toxicity, 34/107 lines ({SHEET} 1.2 item 1)"),
)

MAINTENANCE = SettingParams(
    setting="maintenance",
    age_mean=Cited(56.0, f"assumption: {S1} enrols patients < 65 after transplant; centre below that cap"),
    age_sd=Cited(6.0, f"assumption: spread of a transplant-eligible population capped at 65 ({S1})"),
    age_range=Cited((30.0, 64.9), f"{S1}: all patients younger than 65; assumption: lower bound 30"),
    male_share=Cited(1 - 202 / 476, f"{S4}: 202/476 female in first-line Len patients (maintenance follows)"),
    regimen_shares=Cited(
        (
            ("R", 0.90),
            ("Rd", 0.04),
            ("IRd", 0.012),
            ("RVd", 0.012),
            ("KRd", 0.012),
            ("DRd", 0.012),
            ("ERd", 0.012),
        ),
        f"{S2}: single-agent R is the standard; trials add prednisone (coded Rd) or ixazomib, bortezomib, "
        "carfilzomib, daratumumab, elotuzumab (coded IRd/RVd/KRd/DRd/ERd); assumption: shares 90/4/1.2 each",
    ),
    base_dose_shares=Cited(((10.0, 1.0),), f"{S1}: 10 mg for 3 months then 15 mg; {S2}: 10 mg most common"),
    crcl_median=Cited(
        90.0, "assumption: transplant-eligible patients < 65 mostly have normal renal function"
    ),
    crcl_log_sd=Cited(0.3, "assumption: puts about 3% of lines below 50 mL/min"),
    dialysis_share=Cited(0.005, "assumption: dialysis is rare after transplant"),
    ecog_shares=Cited((0.55, 0.38, 0.06, 0.01, 0.0), "assumption: fit patients after transplant"),
    prior_lines_first=Cited(0, "assumption: maintenance is part of the first line (IMWG line definition)"),
    prior_lines_extra_mean=Cited(0.0, "assumption: maintenance is part of the first line"),
    prior_lines_max=Cited(0, "assumption: maintenance is part of the first line"),
    lines_per_patient=Cited(1.0, f"{S1}: one maintenance per patient"),
    years_between_lines=Cited(0.0, "assumption: unused with one line per patient"),
    comorbidity_shares=Cited(
        (
            ("cardiac", 0.08),
            ("diabetes", 0.08),
            ("pulmonary", 0.05),
            ("hepatic", 0.02),
            ("vte", 0.08),
            ("neuropathy", 0.15),
        ),
        _CM_ASSUMED + "; transplant-fit and younger, neuropathy from bortezomib induction" + _CM_NULL,
    ),
    dr_intercept=Cited(-1.7242, _SOLVED),
    disc_intercept=Cited(-1.7844, _SOLVED),
    target_dr=Cited(
        0.27 * 33 / 34, f"assumption: no seed gives a maintenance DR rate; {S0}'s DR:stop ratio 33:34 kept"
    ),
    target_disc=Cited(0.27, f"{S2} Table 1 and {S1} (IFM 2005-02): 27% discontinued for AEs on lenalidomide"),
)

AL_AMYLOIDOSIS = SettingParams(
    setting="al_amyloidosis",
    age_mean=Cited(63.0, f"{S3}: median age 63 (range 42–82)"),
    age_sd=Cited(9.0, f"assumption: range 42–82 in 50 patients ({S3}) spans about 4.4 SD"),
    age_range=Cited((42.0, 82.0), f"{S3}: range 42–82"),
    male_share=Cited(0.67, f"{S3}: 67% male"),
    regimen_shares=Cited(
        (("Rd", 0.6), ("RCd", 0.3), ("MPR", 0.1)),
        f"{S3}: lenalidomide-dexamethasone with or without cyclophosphamide or melphalan (melphalan coded "
        "MPR); assumption: mix 60/30/10, not reported",
    ),
    base_dose_shares=Cited(
        ((15.0, 0.45), (10.0, 0.45), (5.0, 0.10)),
        f"{S3}: median dose 10 mg (5–15), no patient on 25 mg; assumption: 45/45/10 before the renal rule",
    ),
    crcl_median=Cited(58.0, f"{S3}: median eGFR 53 with 12% on dialysis, so about 58 off dialysis"),
    crcl_log_sd=Cited(0.5, f"assumption: wide, kidneys involved in 75% ({S3})"),
    dialysis_share=Cited(0.12, f"{S3}: 12% on dialysis"),
    ecog_shares=Cited(
        (0.25, 0.45, 0.22, 0.08, 0.0), f"assumption: not reported; Mayo stage III in 38% ({S3})"
    ),
    prior_lines_first=Cited(1, f"{S3}: median 1 prior therapy (range 1–4)"),
    prior_lines_extra_mean=Cited(0.5, f"{S3}: median 1 (range 1–4); assumption: Poisson(0.5) extra lines"),
    prior_lines_max=Cited(4, f"{S3}: range 1–4"),
    lines_per_patient=Cited(1.0, f"{S3}: 50 patients, one Len salvage each"),
    years_between_lines=Cited(0.0, "assumption: unused with one line per patient"),
    comorbidity_shares=Cited(
        (
            ("cardiac", 0.72),
            ("diabetes", 0.10),
            ("pulmonary", 0.08),
            ("hepatic", 0.24),
            ("vte", 0.08),
            ("neuropathy", 0.33),
        ),
        f"{S3}: heart involved in 72%, liver 24%, peripheral nerve 33% (organ involvement coded as the "
        "comorbidity); " + _CM_ASSUMED + " for diabetes, lung, VTE" + _CM_NULL,
    ),
    dr_intercept=Cited(-2.3833, _SOLVED),
    disc_intercept=Cited(-3.3513, _SOLVED),
    target_dr=Cited(
        0.26 * 33 / 34,
        f"assumption: {S3} gives no DR rate ('dose adjustments commonly required'); {S0} ratio",
    ),
    target_disc=Cited(0.26, f"{S3}: 26% discontinued for toxicity"),
)

NEWLY_DIAGNOSED = SettingParams(
    setting="newly_diagnosed",
    age_mean=Cited(63.4, f"{S4}: group medians 61.8/65.4/63.3 (n 218/184/74), weighted 63.4"),
    age_sd=Cited(9.5, f"{S4}: IQRs about 56–69, width ≈ 1.35 SD"),
    age_range=Cited((30.0, 90.0), "assumption: not reported; adult first-line range"),
    male_share=Cited(1 - 202 / 476, f"{S4}: female 95 + 80 + 27 = 202 of 476"),
    regimen_shares=Cited(
        (
            ("Rd", 186 / 476),
            ("RVd", 0.75 * 275 / 476),
            ("KRd", 0.15 * 275 / 476),
            ("RCd", 0.05 * 275 / 476),
            ("MPR", 0.05 * 275 / 476),
            ("DRd", 15 / 476),
        ),
        f"{S4}: doublet 186, triplet 275, quadruplet 15 of 476; partners not itemised, assumption: triplets "
        "75% RVd, 15% KRd, 5% RCd, 5% MPR; quadruplets (daratumumab added to RVd) coded DRd, the contract "
        "code that keeps the antibody",
    ),
    base_dose_shares=Cited(((25.0, 1.0),), f"{S2}, {S4}: standard dose 25 mg once daily"),
    crcl_median=Cited(83.0, f"{S4}: eGFR < 60 in 96/476 (20%); median 83, log-SD 0.35 give 20% below 60"),
    crcl_log_sd=Cited(0.35, f"{S4}: eGFR < 60 in 20%"),
    dialysis_share=Cited(0.01, "assumption: not reported in 004; dialysis at diagnosis is uncommon"),
    ecog_shares=Cited((0.35, 0.45, 0.15, 0.05, 0.0), "assumption: not reported in 004"),
    prior_lines_first=Cited(0, f"{S4}: first-line therapy"),
    prior_lines_extra_mean=Cited(0.0, f"{S4}: first-line therapy"),
    prior_lines_max=Cited(0, f"{S4}: first-line therapy"),
    lines_per_patient=Cited(1.0, f"{S4}: one first line per patient"),
    years_between_lines=Cited(0.0, "assumption: unused with one line per patient"),
    comorbidity_shares=Cited(
        (
            ("cardiac", 0.18),
            ("diabetes", 0.15),
            ("pulmonary", 0.08),
            ("hepatic", 0.03),
            ("vte", 0.06),
            ("neuropathy", 0.10),
        ),
        _CM_ASSUMED + _CM_NULL,
    ),
    dr_intercept=Cited(-1.0530, _SOLVED),
    disc_intercept=Cited(-5.0302, _SOLVED),
    target_dr=Cited(0.535, f"{SHEET} section 2: Larocca 2021, reduced in 45% vs 62% (midpoint); not a seed"),
    target_disc=Cited(0.27, f"{SHEET} section 2: Larocca 2021, stopped for AEs 24% vs 30% (midpoint)"),
)


@dataclass(frozen=True)
class CohortParams:
    """All parameters of the generator: outcome model, settings, mix, renal dose rule and missingness."""

    outcome: OutcomeModel = OutcomeModel()
    settings: tuple[SettingParams, ...] = (NEWLY_DIAGNOSED, MAINTENANCE, RELAPSED_REFRACTORY, AL_AMYLOIDOSIS)
    setting_shares: Cited[tuple[tuple[str, float], ...]] = Cited(
        (
            ("newly_diagnosed", 0.35),
            ("maintenance", 0.30),
            ("relapsed_refractory", 0.30),
            ("al_amyloidosis", 0.05),
        ),
        "assumption: no seed gives the mix; AL is far rarer than myeloma and gets Len as salvage only "
        f"({S3}); first-line, maintenance and relapsed lines are similarly common",
    )
    renal_threshold_ml_min: Cited[float] = Cited(
        50.0, f"{S2}: CrCl < 50 mL/min starts at 10 mg (EU label; US label uses 60, {SHEET} note a)"
    )
    renal_dose_mg: Cited[float] = Cited(10.0, f"{S2}: start 10 mg below the renal threshold")
    dialysis_crcl_below: Cited[float] = Cited(
        30.0, f"{S2}: 'creatinine clearance of < 30 requiring dialysis'"
    )
    dialysis_dose_mg: Cited[float] = Cited(5.0, f"{S2}: 5 mg once daily, given after dialysis")
    dialysis_crcl_range: Cited[tuple[float, float]] = Cited(
        (5.0, 15.0), "assumption: residual clearance of dialysis-dependent patients (contract minimum 5)"
    )
    crcl_missing_share: Cited[float] = Cited(0.03, "assumption: a few % of lines without a recorded CrCl")
    ecog_missing_share: Cited[float] = Cited(0.08, "assumption: ECOG is often unrecorded in routine care")
    settings_by_name: dict[str, SettingParams] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {s.setting: s for s in self.settings}
        if sorted(by_name) != sorted(SETTINGS) or len(self.settings) != len(SETTINGS):
            raise ValueError(f"settings must cover each of {', '.join(SETTINGS)} once")
        if sorted(s for s, _ in self.setting_shares.value) != sorted(SETTINGS):
            raise ValueError(f"setting_shares must cover each of {', '.join(SETTINGS)} once")
        object.__setattr__(self, "settings_by_name", by_name)

    def setting(self, name: str) -> SettingParams:
        """The parameters of setting ``name``."""
        return self.settings_by_name[name]


DEFAULT_PARAMS = CohortParams()


def parameter_sources(params: CohortParams = DEFAULT_PARAMS) -> list[tuple[str, str, object, str]]:
    """Every cited parameter as ``(scope, name, value, source)`` rows, for documentation and audits."""
    rows: list[tuple[str, str, object, str]] = []
    for scope, obj in (
        ("outcome", params.outcome),
        ("cohort", params),
        *((s.setting, s) for s in params.settings),
    ):
        for f in fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, Cited):
                rows.append((scope, f.name, value.value, value.source))
    return rows
