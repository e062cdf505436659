"""The record contract (``shared/contract.md``) as data: one place for every column, type and rule.

One record is one lenalidomide-containing treatment line of one patient, as it stands on the day the line
starts. The pydantic model (:mod:`features.record`), the table validator (:mod:`features.validate`), the
encoder (:mod:`features.encoding`) and the cohort generator all read their columns, ranges and categories
from here, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """How a column's cells are typed."""

    STRING = "string"  # free text (patient_id)
    CATEGORY = "category"  # one of ``allowed``
    NUMBER = "number"  # real number in [minimum, maximum]
    INTEGER = "integer"  # whole number in [minimum, maximum]
    BINARY = "binary"  # 0 or 1


@dataclass(frozen=True)
class Column:
    """One column of the contract.

    ``nullable`` means an empty cell is allowed and means *unknown* (contract: "or empty").
    ``required_in_api`` is False only for ``patient_id`` (optional in the API, required in files).
    """

    name: str
    kind: Kind
    description: str
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[str, ...] = ()
    nullable: bool = False
    required_in_api: bool = True
    unit: str | None = None

    def rule(self) -> str:
        """The rule a cell of this column must satisfy, in words (used in error messages)."""
        if self.kind is Kind.CATEGORY:
            rule = "one of " + ", ".join(self.allowed)
        elif self.kind is Kind.BINARY:
            rule = "0 or 1"
        elif self.kind is Kind.STRING:
            rule = f"{int(self.minimum or 1)}–{int(self.maximum or 64)} printable characters"
        else:
            what = "an integer" if self.kind is Kind.INTEGER else "a number"
            rule = f"{what} from {_fmt(self.minimum)} to {_fmt(self.maximum)}"
        return rule + (", or empty (unknown)" if self.nullable else "")


def _fmt(x: float | None) -> str:
    return "" if x is None else (f"{x:g}")


SEXES = ("female", "male")
#: Agents of each contract regimen code, as the regimen names them (contract notes: R lenalidomide, d low-dose
#: dexamethasone, C cyclophosphamide, V bortezomib, K carfilzomib, D daratumumab, I ixazomib, E elotuzumab,
#: MP melphalan–prednisone). Every other regimen fact (number of agents, partner classes, labels, the
#: regimen of a set of FHIR orders) is derived from this table.
REGIMEN_AGENTS: dict[str, tuple[str, ...]] = {
    "R": ("lenalidomide",),
    "Rd": ("lenalidomide", "dexamethasone"),
    "RCd": ("lenalidomide", "cyclophosphamide", "dexamethasone"),
    "RVd": ("lenalidomide", "bortezomib", "dexamethasone"),
    "KRd": ("carfilzomib", "lenalidomide", "dexamethasone"),
    "DRd": ("daratumumab", "lenalidomide", "dexamethasone"),
    "IRd": ("ixazomib", "lenalidomide", "dexamethasone"),
    "ERd": ("elotuzumab", "lenalidomide", "dexamethasone"),
    "MPR": ("melphalan", "prednisone", "lenalidomide"),
}
#: Drug class of each agent. Partners are the anti-myeloma agents given with lenalidomide besides a steroid.
AGENT_CLASSES = {
    "lenalidomide": "immunomodulator",
    "dexamethasone": "steroid",
    "prednisone": "steroid",
    "cyclophosphamide": "alkylator",
    "melphalan": "alkylator",
    "bortezomib": "proteasome_inhibitor",
    "carfilzomib": "proteasome_inhibitor",
    "ixazomib": "proteasome_inhibitor",
    "daratumumab": "antibody",
    "elotuzumab": "antibody",
}
PARTNER_CLASSES = ("alkylator", "proteasome_inhibitor", "antibody")
REGIMENS = tuple(REGIMEN_AGENTS)


def partners(regimen: str) -> tuple[str, ...]:
    """The partner agents of ``regimen`` (neither lenalidomide nor a steroid)."""
    return tuple(a for a in REGIMEN_AGENTS[regimen] if AGENT_CLASSES[a] in PARTNER_CLASSES)


REGIMEN_LABELS = {
    regimen: "lenalidomide alone"
    if agents == ("lenalidomide",)
    else ", ".join("low-dose dexamethasone" if a == "dexamethasone" else a for a in agents)
    for regimen, agents in REGIMEN_AGENTS.items()
}
SETTINGS = ("newly_diagnosed", "maintenance", "relapsed_refractory", "al_amyloidosis")
COMORBIDITIES = ("cardiac", "diabetes", "pulmonary", "hepatic", "vte", "neuropathy")
COMORBIDITY_LABELS = {
    "cardiac": "heart disease",
    "diabetes": "diabetes",
    "pulmonary": "chronic lung disease",
    "hepatic": "liver disease",
    "vte": "prior venous thromboembolism",
    "neuropathy": "pre-existing peripheral neuropathy",
}

#: Printable characters only (no C0/C1 control characters); the API and the file validator share this rule.
PATIENT_ID_CHARACTER = r"[^\x00-\x1f\x7f-\x9f]"
PATIENT_ID_PATTERN = rf"^{PATIENT_ID_CHARACTER}{{1,64}}$"

PATIENT_ID = Column(
    "patient_id",
    Kind.STRING,
    "pseudonymous patient identifier; never logged",
    minimum=1,
    maximum=64,
    required_in_api=False,
)

PREDICTORS: tuple[Column, ...] = (
    Column("age", Kind.NUMBER, "age at the start of the line", 18, 100, unit="years"),
    Column("sex", Kind.CATEGORY, "administrative sex (FHIR Patient.gender)", allowed=SEXES),
    Column("regimen", Kind.CATEGORY, "lenalidomide-containing regimen", allowed=REGIMENS),
    Column("setting", Kind.CATEGORY, "disease setting of the line", allowed=SETTINGS),
    Column("start_dose_mg", Kind.NUMBER, "lenalidomide starting dose", 2.5, 25, unit="mg"),
    Column(
        "crcl_ml_min",
        Kind.NUMBER,
        "creatinine clearance (Cockcroft–Gault) or eGFR",
        5,
        250,
        nullable=True,
        unit="mL/min",
    ),
    Column("dialysis", Kind.BINARY, "on dialysis at the start of the line"),
    Column("ecog", Kind.INTEGER, "ECOG performance status", 0, 4, nullable=True),
    Column("prior_lines", Kind.INTEGER, "lines of therapy before this one", 0, 20),
    *(
        Column(
            f"cm_{c}", Kind.BINARY, f"comorbidity present at the start of the line: {COMORBIDITY_LABELS[c]}"
        )
        for c in COMORBIDITIES
    ),
)

RECORD_COLUMNS: tuple[Column, ...] = (PATIENT_ID, *PREDICTORS)
COLUMNS_BY_NAME: dict[str, Column] = {c.name: c for c in RECORD_COLUMNS}
PREDICTOR_NAMES: tuple[str, ...] = tuple(c.name for c in PREDICTORS)
RECORD_NAMES: tuple[str, ...] = tuple(c.name for c in RECORD_COLUMNS)
COMORBIDITY_COLUMNS: tuple[str, ...] = tuple(f"cm_{c}" for c in COMORBIDITIES)

#: Outcome columns (training data only) and the short names the models and the API use for them.
OUTCOMES: dict[str, str] = {
    "discontinuation": "discontinued_toxicity",
    "dose_reduction": "dose_reduced",
}
OUTCOME_COLUMNS: tuple[Column, ...] = (
    Column(
        "discontinued_toxicity",
        Kind.BINARY,
        "lenalidomide stopped early for a reason other than progression (toxicity, intolerance)",
    ),
    Column("dose_reduced", Kind.BINARY, "lenalidomide dose reduced during the line"),
)

#: Each outcome's model as a clinician reads its name (calculator page, reports).
OUTCOME_TITLES: dict[str, str] = {
    "discontinuation": "Early discontinuation for toxicity",
    "dose_reduction": "Dose reduction during the line",
}

#: When both outcomes count, as the models define them: the one text the calculator page, the model card
#: and the API documentation state. The figures are the key study's (seed ``000_ad520cc8950628f0.txt``).
OUTCOME_HORIZON = (
    "Counted at any time during the treatment line, from the start of lenalidomide until the line ends, "
    "with no fixed time window; a line that ends for progression or death first counts as no event. In the "
    "key study (a retrospective single-centre study of 107 lenalidomide lines in 78 patients with relapsed "
    "or refractory myeloma, 2008–2015), lines stopped for toxicity had lasted a median of 5.8 months, "
    "against 11.7 months for lines stopped for progression."
)


def outcome_definition(outcome: str) -> str:
    """What the model of ``outcome`` predicts, as a sentence (its outcome column's description)."""
    column = next(c for c in OUTCOME_COLUMNS if c.name == OUTCOMES[outcome])
    return f"{column.description[0].upper()}{column.description[1:]}."


def outcome_statement(outcome: str) -> str:
    """What the model of ``outcome`` predicts and over what time, with the source of the time."""
    return f"{outcome_definition(outcome)} {OUTCOME_HORIZON}"
