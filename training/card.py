"""The model card of a registered model version: markdown written with TRIPOD+AI in mind.

Collins GS et al., TRIPOD+AI, BMJ 2024;385:e078378; the item numbers are given in the section headings.
The card is logged as ``model_card.md`` in the training run, and the service shows it. The registry's
version description is a short summary that points to it (MLflow's SQL stores limit descriptions to 5,000
characters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from features.encoding import FEATURE_NAMES
from features.model.registry import MODEL_CARD_ARTIFACT
from features.schema import OUTCOME_COLUMNS, OUTCOMES, PREDICTORS, Column
from training.cohort.params import DEFAULT_PARAMS, SEED_FILES, CohortParams
from training.pipeline import OutcomeResult
from training.selection import N_SPLITS

#: The longest model version description MLflow's SQL stores accept (``String(5000)``).
DESCRIPTION_LIMIT = 5000
TOP_FEATURES = 10

#: Riley et al. (BMJ 2020;368:m441) minimum development sizes for 8 parameters, from the evidence sheet
#: (``shared/reference/clinical-evidence.md`` section 4): prevalence, C-statistic, lines, events.
RILEY_8_PARAMETERS = {
    "discontinuation": (0.318, 0.67, 893, 284),
    "dose_reduction": (0.308, 0.65, 1169, 361),
}
_EFFECTS = ("dr_male", "dr_age", "dr_triplet", "disc_age", "disc_triplet", "disc_dr", "comorbidity")

INTENDED_USE = """## Intended use (TRIPOD+AI 3, 15, 27)

- **When**: before a lenalidomide-containing line starts (at the order), from data known on that day.
- **Who**: the treating haematology team, as clinic decision support: a calibrated risk with its main
  contributing factors, e.g. to discuss a lower starting dose or closer monitoring.
- **Not** the sole basis of a decision, not for patients unlike the training case mix (the ranges seen in
  training travel with the model in `encoder.json`), and not a prediction of progression or survival.
- No decision threshold is built in: the decision curve (`plots/decision_curve.png`) shows the net benefit
  at thresholds of 5–50%, and any threshold needs clinical sign-off."""

MODEL_FAMILIES = """Candidates: L2-penalised logistic regression (penalty chosen by inner cross-validated log
loss) and gradient-boosted trees (XGBoost, monotone in age, number of agents, ECOG and comorbidity count).
Each was scored by {repeats} × {folds}-fold cross-validation grouped by patient on the development set,
with cross-fitted calibration (mean ± SD over folds). The boosted model is chosen only when it lowers the
log loss by more than one standard error of the paired per-fold difference. No resampling or class weights
were used, so predicted risks keep the observed prevalence."""

CALIBRATION = """## Calibration (TRIPOD+AI 12)

Platt scaling on the model's margin (log-odds), fitted once on the development set's out-of-fold margins:
calibrated logit = {slope:.4f} × margin + ({intercept:.4f}). Being affine, it keeps SHAP contributions
exactly additive.

Held-out: calibration intercept {cal_intercept} (target 0), slope {cal_slope} (target 1), observed/expected
{oe} (target 1); reliability diagram: `plots/reliability.png`."""

PERFORMANCE_NOTE = """AUC intervals: percentile bootstrap over whole patients. Scaled Brier = 1 − Brier /
Brier of predicting the prevalence for everyone. Out-of-fold figures come from the first cross-validation
repeat."""

EXPLANATIONS_NOTE = """Mean absolute SHAP value on the calibrated log-odds scale (a patient's contributions
add up to the logit of their risk). All features: `shap_importance.csv`; plot: `plots/shap_beeswarm.png`."""

PREDICTORS_NOTE = """All as they stand on the day the line starts; nothing measured later is used. Unknown
creatinine clearance or ECOG is imputed with the development median and flagged by an indicator feature;
every other field is required. The fields are encoded into {n} features (`features.encoding`)."""

LIMITATIONS = """## Limitations (TRIPOD+AI 26)

{data}
- **Small-sample uncertainty.** The key published cohort had 107 lines. Below the Riley minimum sizes above,
  expect optimism and a calibration slope below 1 on new data; read the confidence intervals.
- **Competing events.** Progression and death can end a line before toxicity would; the outcome is binary
  over the line, without a horizon or a competing-risks model.
- **No external validation.** Only internal validation (patient-grouped cross-validation and a held-out
  split of the same source); validate on local data before any clinical use.
- **Missing inputs.** Unknown creatinine clearance or ECOG is imputed with the development median plus an
  unknown flag; other missing fields are refused. Patients unlike the training data are extrapolations."""

SYNTHETIC_LIMITATION = """- **Synthetic data.** The model learned the generator's assumptions, not real
  patients: its performance shows how well the method recovers a known structure, not how it would do in
  clinic."""
FILE_LIMITATION = """- **Single data source.** All performance figures are internal (held-out patients of the
  same file)."""


@dataclass(frozen=True)
class SyntheticSource:
    """How a synthetic training cohort was made: ``generate_cohort(n, seed, settings, params=params)``."""

    n: int
    seed: int
    settings: tuple[str, ...]
    params: CohortParams = DEFAULT_PARAMS

    def label(self) -> str:
        """One-line description, used as the training source."""
        return f"synthetic cohort (n={self.n}, seed={self.seed}, settings={','.join(self.settings)})"


@dataclass(frozen=True)
class ModelCard:
    """Everything a card shows about one registered version."""

    outcome: OutcomeResult
    source: str
    seed: int
    synthetic: SyntheticSource | None
    version: str
    run_id: str
    digest: str
    lenrisk_version: str

    def markdown(self) -> str:
        """The card."""
        o = self.outcome
        cal, h = o.model.calibrator, o.heldout_metrics
        sections = [
            self._header(),
            INTENDED_USE,
            self._data(),
            self._outcome(),
            self._predictors(),
            self._model(),
            CALIBRATION.format(
                slope=cal.slope,
                intercept=cal.intercept,
                cal_intercept=_num(h["calibration_intercept"]),
                cal_slope=_num(h["calibration_slope"]),
                oe=_num(h["observed_expected"]),
            ),
            self._performance(),
            self._subgroups(),
            self._explanations(),
            self._limitations(),
        ]
        return "\n\n".join(sections) + "\n"

    def description(self) -> str:
        """The registry's version description: what the model is, its key figures, and where the card is."""
        o, d, h = self.outcome, self.outcome.data, self.outcome.heldout_metrics
        auc = f"{_num(h['roc_auc'])} ({_num(h['roc_auc_ci_lower'])}–{_num(h['roc_auc_ci_upper'])})"
        lines = [
            self._header(),
            "",
            f"- Data: {self.source}; {d['n_rows']} lines of {d['n_patients']} patients, prevalence "
            f"{d['prevalence']:.3f}. Sample size: {self._sample_size()}",
            f"- Held-out test ({d['n_test']} lines): AUC {auc}, calibration intercept "
            f"{_num(h['calibration_intercept'])}, slope {_num(h['calibration_slope'])}.",
            f"- Chosen because {o.reason}.",
            *([SYNTHETIC_LIMITATION.replace("\n ", "")] if self.synthetic else []),
            "",
            f"The model card (TRIPOD+AI: intended use, data, predictors, model, calibration, performance, "
            f"subgroups, explanations, limitations) is the artifact `{MODEL_CARD_ARTIFACT}` of training run "
            f"`{self.run_id}`; the service shows it at `/v1/models`.",
        ]
        return "\n".join(lines)[:DESCRIPTION_LIMIT]

    def _header(self) -> str:
        o = self.outcome
        return "\n".join(
            [
                f"# Model card: {o.model_name}, version {self.version}",
                "",
                "Predicts, for one lenalidomide-containing treatment line, the probability of "
                f"`{OUTCOMES[o.outcome]}`: {_outcome_column(o.outcome).description}.",
                "",
                f"- Model family: **{o.chosen}**, Platt-calibrated; lenrisk {self.lenrisk_version}",
                f"- Training run: `{self.run_id}`; training seed {self.seed}",
                f"- Artifact SHA-256 (of `digests.json`): `{self.digest}`",
            ]
        )

    def _data(self) -> str:
        d = self.outcome.data
        lines = ["## Data (TRIPOD+AI 5, 6, 10, 16)", ""]
        if self.synthetic is not None:
            s = self.synthetic
            call = f"generate_cohort(n={s.n}, seed={s.seed}, settings={list(s.settings)})"
            seeds = ", ".join(f"`{f}`" for f in SEED_FILES)
            lines += [
                f"**Synthetic data: no real patient is in it.** Generated by `training.cohort.{call}`, a "
                "joint model of dose reduction and discontinuation whose parameters are cited from five "
                f"published studies (seed files {seeds}; `shared/reference/clinical-evidence.md` section "
                "1), with stated assumptions where no study reports a value. Every parameter and its "
                "source: run artifact `generator_parameters.csv`.",
                "",
                *_generator_table(s.params),
            ]
        else:
            lines.append(
                f"Trained on the file **{self.source}** in the record contract's schema, validated row by "
                "row before training. Its provenance is the responsibility of whoever supplied it."
            )
        settings = ", ".join(f"{name} {count}" for name, count in d["settings"].items())
        lines += [
            "",
            f"- Lines (rows): {d['n_rows']} from {d['n_patients']} patients; "
            f"prevalence {d['prevalence']:.3f}",
            f"- Split by patient (no patient on both sides): development {d['n_development']} lines "
            f"({d['events_development']} events), held-out test {d['n_test']} lines "
            f"({d['events_test']} events)",
            f"- Development lines by setting: {settings}",
            f"- Sample size: {self._sample_size()}",
        ]
        return "\n".join(lines)

    def _sample_size(self) -> str:
        prevalence, c, n_min, events_min = RILEY_8_PARAMETERS[self.outcome.outcome]
        d = self.outcome.data
        meets = d["n_development"] >= n_min and d["events_development"] >= events_min
        return (
            f"Riley et al. (BMJ 2020;368:m441) require at least {n_min} lines ({events_min} events) "
            f"for 8 parameters at prevalence {prevalence} and C {c}; this model has {d['n_features']} "
            "encoded features, which needs more. The development set "
            f"{'meets' if meets else 'does NOT meet'} the 8-parameter minimum."
        )

    def _outcome(self) -> str:
        column = _outcome_column(self.outcome.outcome)
        horizon = (
            "There is no fixed horizon: the outcome counts over the whole line, and progression or death "
            "before any toxicity ends follow-up for it (a competing event, see the limitations)."
        )
        return (
            "## Outcome (TRIPOD+AI 8)\n\n"
            f"`{column.name}` = 1: {column.description}; 0 otherwise (record contract). {horizon}"
        )

    @staticmethod
    def _predictors() -> str:
        head = "## Predictors and their timing (TRIPOD+AI 9, 11)\n\n"
        head += PREDICTORS_NOTE.format(n=len(FEATURE_NAMES))
        rows = [(f"`{c.name}`", c.description, c.unit or "", c.rule()) for c in PREDICTORS]
        return head + "\n\n" + "\n".join(_table(("field", "meaning", "unit", "allowed"), rows))

    def _model(self) -> str:
        o = self.outcome
        rows = []
        for name, cv in o.cv.items():
            s = cv.summary()
            rows.append(
                (
                    f"**{name}**" if name == o.chosen else name,
                    f"{_num(s['log_loss_mean'], 4)} ± {_num(s['log_loss_sd'], 4)}",
                    f"{_num(s['brier_mean'], 4)} ± {_num(s['brier_sd'], 4)}",
                    f"{_num(s['roc_auc_mean'])} ± {_num(s['roc_auc_sd'])}",
                )
            )
        return "\n".join(
            [
                "## Model and how it was chosen (TRIPOD+AI 12, 13, 22)",
                "",
                MODEL_FAMILIES.format(repeats=o.model.info.get("cv_repeats"), folds=N_SPLITS),
                "",
                *_table(("candidate", "CV log loss", "CV Brier", "CV AUC"), rows),
                "",
                f"**Chosen: {o.chosen}**, because {o.reason}. It was refitted on all development data.",
            ]
        )

    def _performance(self) -> str:
        rows = [
            (
                label,
                f"{_num(m['roc_auc'])} ({_num(m['roc_auc_ci_lower'])}–{_num(m['roc_auc_ci_upper'])})",
                _num(m["brier"], 4),
                _num(m["scaled_brier"]),
                _num(m["log_loss"], 4),
                f"{int(m['n'])} / {int(m['events'])}",
            )
            for label, m in (
                ("held-out test", self.outcome.heldout_metrics),
                ("development, out-of-fold", self.outcome.cv_metrics),
            )
        ]
        headers = ("data", "AUC (95% CI)", "Brier", "scaled Brier", "log loss", "n / events")
        lines = ["## Performance (TRIPOD+AI 23)", "", *_table(headers, rows)]
        return "\n".join([*lines, "", PERFORMANCE_NOTE])

    def _subgroups(self) -> str:
        head = (
            "## Performance by subgroup (TRIPOD+AI 14, 23b)\n\n"
            "Held-out test set, by sex, age band, setting and regimen class."
        )
        return head + "\n\n" + subgroup_markdown(self.outcome.subgroups)

    def _explanations(self) -> str:
        top = self.outcome.importance.head(TOP_FEATURES)
        rows = [(f"`{r.feature}`", r.field, _num(r.mean_abs_shap)) for r in top.itertuples()]
        return "\n".join(
            [
                "## Main predictors by SHAP (held-out set)",
                "",
                EXPLANATIONS_NOTE,
                "",
                *_table(("feature", "field", "mean abs SHAP"), rows),
            ]
        )

    def _limitations(self) -> str:
        return LIMITATIONS.format(data=SYNTHETIC_LIMITATION if self.synthetic else FILE_LIMITATION)


def subgroup_markdown(table: pd.DataFrame) -> str:
    """A subgroup table (``training.evaluation.subgroup_table``) as markdown."""
    rows = [
        (
            r.variable,
            r.level,
            r.n,
            r.events,
            *map(_num, (r.roc_auc, r.observed, r.expected, r.observed_expected)),
        )
        for r in table.itertuples()
    ]
    return "\n".join(_table(("variable", "level", "n", "events", "AUC", "observed", "expected", "O/E"), rows))


def _generator_table(params: CohortParams) -> list[str]:
    rows = [
        (
            f"outcome model: {name}",
            _num(getattr(params.outcome, name).value),
            getattr(params.outcome, name).source,
        )
        for name in _EFFECTS
    ]
    shares = ", ".join(f"{name} {share:.0%}" for name, share in params.setting_shares.value)
    rows.append(("setting mix", shares, params.setting_shares.source))
    rows += [
        (
            f"{sp.setting}: target P(dose reduction), P(discontinuation)",
            f"{_num(sp.target_dr.value)}, {_num(sp.target_disc.value)}",
            f"{sp.target_dr.source}; {sp.target_disc.source}",
        )
        for sp in params.settings
    ]
    intro = "Key generator parameters (effects are log odds ratios):"
    return [intro, "", *_table(("parameter", "value", "source"), rows)]


def _outcome_column(outcome: str) -> Column:
    return next(c for c in OUTCOME_COLUMNS if c.name == OUTCOMES[outcome])


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Lines of a markdown table; pipes and line breaks in cells are escaped."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |")
    return lines


def _num(x: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"
