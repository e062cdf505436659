"""The model card of a trained model: markdown written with TRIPOD+AI in mind.

Collins GS et al., TRIPOD+AI, BMJ 2024;385:e078378; the item numbers are given in the section headings.
The card is logged as ``model_card.md`` in the training run (also for a model that failed a gate and was not
registered), and the service shows it. The registry's version description is a short summary that points to
it (MLflow's SQL stores limit descriptions to 5,000 characters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from features.encoding import FEATURE_NAMES
from features.model.registry import MODEL_CARD_ARTIFACT
from features.model.riskmodel import INTERVAL_LEVEL
from features.schema import OUTCOME_COLUMNS, OUTCOME_HORIZON, OUTCOMES, PREDICTORS, Column
from training.candidates import ANTICIPATED_C_SOURCE, BOOSTED_FACTOR, PARSIMONIOUS
from training.cohort.params import DEFAULT_PARAMS, S0, SEED_FILES, CohortParams
from training.pipeline import OutcomeResult
from training.sample_size import MARGIN, R2_GAP, SHRINKAGE
from training.selection import SELECTION_RULE
from training.updating import METHOD_NAMES, Test, Update

#: The longest model version description MLflow's SQL stores accept (``String(5000)``).
DESCRIPTION_LIMIT = 5000
TOP_FEATURES = 10
_EFFECTS = ("dr_male", "dr_age", "dr_triplet", "disc_age", "disc_triplet", "disc_dr", "comorbidity")
_LABELS = {
    "roc_auc": "AUC (c-statistic)",
    "calibration_intercept": "calibration-in-the-large (target 0)",
    "calibration_slope": "calibration slope (target 1)",
    "brier": "Brier score",
    "log_loss": "log loss",
}

INTENDED_USE = """## Intended use (TRIPOD+AI 3, 15, 27)

- **When**: before a lenalidomide-containing line starts (at the order), from data known on that day.
- **Who**: the treating haematology team, as clinic decision support: a calibrated risk with its main
  contributing factors, e.g. to discuss a lower starting dose or closer monitoring.
- **Not** the sole basis of a decision, not for patients unlike the development data (the model keeps the
  ranges seen in development and warns about any input outside them), and not a prediction of
  progression or survival.
- No decision threshold is built in: the decision curve of the training run shows the net benefit at
  thresholds of 5–50%, and any threshold needs clinical sign-off.
{uncertainty}"""

UNCERTAINTY_NOTE = """- **Uncertainty**: every served risk carries a {level:.0%} interval of the
  model's estimation uncertainty only (the spread of the risk over {refits} bootstrap refits of the model on
  resamples of the development data; on the development lines it is {median:.1f} percentage points wide at
  the median, {p90:.1f} at the 90th percentile), not uncertainty about the patient's outcome; none is given
  for a patient outside the development data (an input outside its ranges or a category it never had),
  where the risk is extrapolated."""

NO_UNCERTAINTY_NOTE = """- **Uncertainty**: this model gives no interval with its risks (it was registered
  without the bootstrap refits an interval of estimation uncertainty is made of), so a served risk shows no
  range."""

CANDIDATES_NOTE = """Candidates, simplest first: the intercept alone (the average risk for everyone), setting
alone, a parsimonious model pre-specified from the key study ({parsimonious}), every feature (restricted cubic
splines for age and creatinine clearance) and boosted trees. A candidate was fitted only if the effective
sample size meets its minimum (boosted trees: {boosted} times the full model's). Linear candidates are fitted
by maximum likelihood (a weak ridge keeps separated categories finite) and shrunk; boosted trees are
Platt-calibrated out of fold. Selection: {rule}. Each fold fits the candidate exactly as registered
(shrinkage or calibration included)."""

PERFORMANCE_NOTE = """Internal validation by the optimism bootstrap (Harrell): the whole development
procedure (encoding, the sample-size check of which candidates may be fitted, selection, fitting, shrinkage)
was repeated on {n_boot} resamples of patients ({failed} failed); apparent minus optimism is the corrected
figure. The optimism is the mean over resamples, except the calibration slope's: the median, since a nearly
flat resample model has an unbounded apparent slope. The slope is defined only where the resample's model
ranks patients at all ({slope_resamples} of {n_boot} resamples; the others chose the average risk), so it
describes the resamples that found a signal. 95% intervals: AUC, Brier and log loss by the location-shifted
bootstrap (Noma et al., Stat Med 2021), calibration by the spread of the resample models' calibration on the
development data (the optimism's spread only). Calibration-in-the-large is the intercept with the linear
predictor as offset. The model was developed on all lines: there is no held-out split."""

STABILITY_NOTE = """Each of the {resamples} bootstrap models (the whole procedure repeated on a resample of
patients) predicted every development line. On average, a line's risk from a bootstrap model differs from
this model's by {points:.1f} percentage points (mean absolute prediction error, MAPE {mape:.3f}); per line,
the MAPE has a median of {median:.3f} and a 90th percentile of {p90:.3f} (largest {largest:.3f}). Risk bands
here follow the service's default rule on this development data's average risk ({average:.3f}): intermediate
from {intermediate:.0%}, high from {high:.0%} (the service's configured bands may differ). A bootstrap model
put a line in another band for {moved:.1%} of line-model pairs: across the {intermediate:.0%} cut point for
{moved_intermediate:.1%}, across the {high:.0%} cut point for {moved_high:.1%}. These figures show how much
a patient's risk depends on which patients happened to be in the development data; the training run's
plots show it per line (prediction, MAPE, calibration, classification and decision-curve instability,
`plots/instability_*`). Riley RD, Collins GS. Stability of
clinical prediction models developed using statistical or machine learning methods. Biom J 2023;65:2200302."""

EXPLANATIONS_NOTE = """Mean absolute SHAP value on the calibrated log-odds scale, over the development lines
(a patient's contributions add up to the logit of their risk). The explanation starts from the base value,
the average log-odds of the development patients, and each field moves it to the patient's own log-odds; the
development patients' average predicted risk is {average}. All features: `shap_importance.csv`; plot:
`plots/shap_beeswarm.png`."""

PREDICTORS_NOTE = """All as they stand on the day the line starts; nothing measured later is used. Unknown
creatinine clearance or ECOG is imputed with the development median and flagged by an indicator feature;
every other field is required. The fields are encoded into {n} features, none a function of the others
(`features.encoding`): age and creatinine clearance as restricted cubic splines (4 knots, Harrell), the
regimen by triple combination, single agent and partner class, setting against newly diagnosed."""

LIMITATIONS = """## Limitations (TRIPOD+AI 26)

{data}
- **Sample size.** Read the sample-size section: below a candidate's minimum, that candidate was not fitted;
  a model developed below the parsimonious model's minimum is flagged and never becomes champion by itself.
- **Competing events.** Progression and death can end a line before toxicity would; the outcome is binary
  over the line, without a fixed time window or a competing-risks model.
- **No external validation.** Internal validation only (the optimism bootstrap on the development data);
  validate on local data before any clinical use.
- **Missing inputs.** Unknown creatinine clearance or ECOG is imputed with the development median plus an
  unknown flag; other missing fields are refused. Patients unlike the training data are extrapolations."""

SYNTHETIC_LIMITATION = """- **Synthetic data.** The model learned the generator's assumptions, not real
  patients: its performance shows how well the method recovers a known structure, not how it would do in
  clinic."""
FILE_LIMITATION = """- **Single data source.** All performance figures are internal (bootstrap resamples of
  the same file)."""


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
    """Everything a card shows about one trained model (``version`` and ``digest``: once registered)."""

    outcome: OutcomeResult
    source: str
    seed: int
    n_boot: int
    synthetic: SyntheticSource | None
    run_id: str
    lenrisk_version: str
    version: str | None = None
    digest: str | None = None

    def markdown(self) -> str:
        """The card."""
        sections = [
            self._header(),
            *([self._not_registered()] if self.outcome.problems else []),
            self._intended_use(),
            self._data(),
            self._sample_size(),
            self._outcome(),
            self._predictors(),
            self._model(),
            self._calibration(),
            self._performance(),
            self._stability(),
            self._subgroups(),
            self._explanations(),
            self._limitations(),
        ]
        return "\n\n".join(sections) + "\n"

    def description(self) -> str:
        """The registry's version description: what the model is, its key figures, and where the card is."""
        o, d, v = self.outcome, self.outcome.data, self.outcome.validation.metrics
        check = o.adequacy
        lines = [
            self._header(),
            "",
            f"- Data: {self.source}; {d['n_rows']} lines of {d['n_patients']} patients, prevalence "
            f"{d['prevalence']:.3f}. Sample size: {check.effective.n:.0f} effective lines; the "
            f"{o.chosen} model needs {check.minimum[o.chosen]} (Riley)"
            + (" — **developed on too small a sample (allowed explicitly)**" if o.small_sample else ""),
            f"- Optimism-corrected ({self.n_boot} bootstrap resamples): AUC {_ci(v['roc_auc'])}, "
            f"calibration slope {_ci(v['calibration_slope'], 2)}, calibration-in-the-large "
            f"{_ci(v['calibration_intercept'])}, Brier {_ci(v['brier'])}.",
            f"- Chosen because {o.reason}; shrinkage {o.model.calibrator.slope:.3f}.",
            *([SYNTHETIC_LIMITATION.replace("\n ", "")] if self.synthetic else []),
            "",
            f"The model card (TRIPOD+AI: intended use, data, sample size, predictors, model, calibration, "
            f"performance, subgroups, explanations, limitations) is the artifact `{MODEL_CARD_ARTIFACT}` of "
            f"training run `{self.run_id}`; the service shows it at `/v1/models`.",
        ]
        return "\n".join(lines)[:DESCRIPTION_LIMIT]

    def _header(self) -> str:
        o = self.outcome
        version = f", version {self.version}" if self.version else " (not registered)"
        lines = [
            f"# Model card: {o.model_name}{version}",
            "",
            "Predicts, for one lenalidomide-containing treatment line, the probability of "
            f"`{OUTCOMES[o.outcome]}`: {_outcome_column(o.outcome).description}.",
            "",
            f"- Model: **{o.chosen}** ({o.model.family}); lenrisk {self.lenrisk_version}",
            f"- Training run: `{self.run_id}`; training seed {self.seed}",
        ]
        if self.digest:
            lines.append(f"- Artifact SHA-256 (of `digests.json`): `{self.digest}`")
        if o.small_sample:
            lines.append(
                "- **Developed on fewer lines than the parsimonious model's minimum sample size**, allowed "
                "explicitly (`--allow-small-sample`): flagged in every answer, never champion by itself."
            )
        return "\n".join(lines)

    def _intended_use(self) -> str:
        model, info = self.outcome.model, self.outcome.model.info
        if not model.has_interval:
            return INTENDED_USE.format(uncertainty=NO_UNCERTAINTY_NOTE)
        note = UNCERTAINTY_NOTE.format(
            level=INTERVAL_LEVEL,
            refits=model.ensemble.size,
            median=100 * info["interval_width_median"],
            p90=100 * info["interval_width_p90"],
        )
        return INTENDED_USE.format(uncertainty=note)

    def _not_registered(self) -> str:
        problems = "\n".join(f"- {p}" for p in self.outcome.problems)
        return (
            f"## Not registered\n\nThis model failed the registration gates and is not usable:\n\n{problems}"
        )

    def _data(self) -> str:
        d = self.outcome.data
        lines = ["## Data (TRIPOD+AI 5, 6, 16)", ""]
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
            f"- Lines (rows): {d['n_rows']} from {d['n_patients']} patients; {d['events']} events, "
            f"prevalence {d['prevalence']:.3f}; all lines develop the model (no held-out split)",
            f"- Lines by setting: {settings}",
        ]
        return "\n".join(lines)

    def _sample_size(self) -> str:
        check = self.outcome.adequacy
        eff = check.effective
        rows = [
            (
                r["candidate"],
                r["parameters"],
                f"{r['min_lines']} ({r['binding_criterion']})",
                _num(r["events_per_parameter_effective"], 1),
                _num(r["expected_shrinkage"], 2),
                "yes" if r["fitted"] else "no",
            )
            for r in check.table()
        ]
        intro = (
            f"Riley et al. (BMJ 2020;368:m441): the smallest development set for expected shrinkage ≥ "
            f"{SHRINKAGE} (criterion 1), optimism in Nagelkerke R² ≤ {R2_GAP} (2) and the overall risk "
            f"within ±{MARGIN} (3), at the data's prevalence {check.prevalence:.3f} and a Cox–Snell R² of "
            f"{check.r2_cs:.4f}, which an anticipated C statistic of {check.anticipated_c} gives "
            f"({ANTICIPATED_C_SOURCE[check.outcome]}; R² by Riley, Van Calster & Collins, Stat Med 2021). "
            "Effective "
            f"lines: {eff.n:.0f} ({eff.n_lines} lines of {eff.n_patients} patients, outcome ICC within "
            f"patients {eff.icc:.3f}, design effect {eff.design_effect:.3f})."
        )
        verdict = (
            "The data meet the parsimonious model's minimum."
            if check.met
            else "**The data do not meet the parsimonious model's minimum**; training was allowed explicitly."
        )
        headers = (
            "candidate",
            "parameters",
            "lines needed (criterion)",
            "EPP",
            "expected shrinkage",
            "fitted",
        )
        return "\n".join(
            ["## Sample size (TRIPOD+AI 10)", "", intro, "", *_table(headers, rows), "", verdict]
        )

    def _outcome(self) -> str:
        column = _outcome_column(self.outcome.outcome)
        return (
            "## Outcome (TRIPOD+AI 8)\n\n"
            f"`{column.name}` = 1: {column.description}; 0 otherwise (record contract). {OUTCOME_HORIZON} "
            f"(Key study: seed `{S0}`. Progression and death are competing events: see the limitations.)"
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
                )
            )
        note = CANDIDATES_NOTE.format(
            parsimonious=", ".join(PARSIMONIOUS), boosted=BOOSTED_FACTOR, rule=SELECTION_RULE
        )
        return "\n".join(
            [
                "## Model and how it was chosen (TRIPOD+AI 12, 13, 22)",
                "",
                note,
                "",
                *_table(("candidate", "CV log loss (mean ± SD over folds)"), rows),
                "",
                f"**Chosen: {o.chosen}**, because {o.reason}. It was fitted on all lines.",
            ]
        )

    def _calibration(self) -> str:
        o = self.outcome
        cal = o.model.calibrator
        if o.model.family == "logistic":
            how = (
                "Uniform shrinkage (Van Houwelingen & le Cessie, Stat Med 1990): every coefficient is "
                f"multiplied by the heuristic factor (LR − P) / LR = {cal.slope:.4f}, the expected "
                "calibration slope of the unshrunk model on new patients, and the intercept is re-estimated "
                "with the shrunk linear predictor as offset, so predicted and observed events agree. The "
                "factor is computed in each fit, so the bootstrap validates it with the rest of the "
                "procedure; the validated calibration slope (Performance) checks it, and is near 1 when the "
                "shrinkage was right. (The bootstrap-corrected slope is the other usual factor; it would "
                "leave the shrinkage itself unvalidated.)"
            )
        else:
            how = "Platt scaling of the booster's margin, fitted on out-of-fold margins of the same trees"
        return (
            "## Calibration and shrinkage (TRIPOD+AI 12)\n\n"
            f"{how}: calibrated logit = {cal.slope:.4f} × margin + ({cal.intercept:.4f}). Being affine, it "
            "keeps SHAP contributions exactly additive. Reliability diagram (out of fold): "
            "`plots/reliability.png`."
        )

    def _performance(self) -> str:
        o = self.outcome
        rows = [
            (
                label,
                _num(m.apparent, 3),
                _num(m.optimism, 3),
                _ci(m, 3 if name != "calibration_slope" else 2),
            )
            for name, label in _LABELS.items()
            for m in [o.validation.metrics[name]]
        ]
        null = o.null.metrics["log_loss"].corrected
        note = PERFORMANCE_NOTE.format(
            n_boot=self.n_boot,
            failed=o.validation.failed,
            slope_resamples=o.validation.metrics["calibration_slope"].defined,
        )
        return "\n".join(
            [
                "## Performance (TRIPOD+AI 23)",
                "",
                *_table(("metric", "apparent", "optimism", "optimism-corrected (95% CI)"), rows),
                "",
                f"The intercept-only model (the average risk for everyone): optimism-corrected log loss "
                f"{_num(null, 4)}.",
                "",
                note,
            ]
        )

    def _stability(self) -> str:
        head = "## Stability of individual predictions (Riley & Collins 2023)\n\n"
        s = self.outcome.instability
        if not s:
            return head + "Not estimated: no bootstrap resample gave a model."
        return head + STABILITY_NOTE.format(
            resamples=self.outcome.validation.resamples,
            mape=s["instability_mape"],
            points=100 * s["instability_mape"],
            median=s["instability_mape_median"],
            p90=s["instability_mape_p90"],
            largest=s["instability_mape_max"],
            average=self.outcome.model.info["average_risk"],
            intermediate=s["instability_cut_intermediate"],
            high=s["instability_cut_high"],
            moved=s["classification_instability"],
            moved_intermediate=s["classification_instability_intermediate"],
            moved_high=s["classification_instability_high"],
        )

    def _subgroups(self) -> str:
        head = (
            "## Performance by subgroup (TRIPOD+AI 14, 23b)\n\n"
            "Out-of-fold risks of the chosen candidate (first cross-validation repeat; the same folds chose "
            "it, so slightly optimistic), by sex, age band, setting and regimen class. AUC and O/E are shown "
            f"for cells of at least {SUBGROUP_MIN_LINES} lines and {SUBGROUP_MIN_EVENTS} events and "
            "non-events."
        )
        return head + "\n\n" + subgroup_markdown(self.outcome.subgroups)

    def _explanations(self) -> str:
        top = self.outcome.importance.head(TOP_FEATURES)
        rows = [(f"`{r.feature}`", r.field, _num(r.mean_abs_shap)) for r in top.itertuples()]
        note = EXPLANATIONS_NOTE.format(average=f"{self.outcome.model.info['average_risk']:.3f}")
        return "\n".join(
            ["## Main predictors by SHAP", "", note, "", *_table(("feature", "field", "mean abs SHAP"), rows)]
        )

    def _limitations(self) -> str:
        return LIMITATIONS.format(data=SYNTHETIC_LIMITATION if self.synthetic else FILE_LIMITATION)


def _ci(m, digits: int = 3) -> str:
    """``corrected (lower–upper)`` of a validated metric."""
    return f"{_num(m.corrected, digits)} ({_num(m.lower, digits)}–{_num(m.upper, digits)})"


#: A subgroup cell reports AUC and O/E only with at least this many lines and events (and non-events):
#: below, the estimates are too imprecise to show (``shared/reference/clinical-methods.md`` section 2).
SUBGROUP_MIN_LINES, SUBGROUP_MIN_EVENTS = 100, 10
_TOO_FEW = "too few lines or events"


def subgroup_markdown(table: pd.DataFrame) -> str:
    """A subgroup table (``training.evaluation.subgroup_table``) as markdown; small cells say so."""
    rows = []
    for r in table.itertuples():
        enough = r.n >= SUBGROUP_MIN_LINES and min(r.events, r.n - r.events) >= SUBGROUP_MIN_EVENTS
        estimates = (_num(r.roc_auc), _num(r.observed_expected)) if enough else (_TOO_FEW, "")
        rows.append(
            (
                r.variable,
                r.level,
                r.n,
                r.events,
                estimates[0],
                *map(_num, (r.observed, r.expected)),
                estimates[1],
            )
        )
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


UPDATE_INTERVAL_NOTE = """The {level:.0%} interval of every served risk pairs each of the parent's
{refits} bootstrap refits with the update re-estimated on one bootstrap resample of the local data, so it
carries both the original model's and the update's estimation uncertainty (not the choice of the update
method, and not the patient's outcome)."""

UPDATE_REFIT_INTERVAL_NOTE = """The {level:.0%} interval of every served risk comes from {refits} bootstrap
refits of the refitted model's candidate on the local data (the original model plays no part in it)."""


@dataclass(frozen=True)
class UpdateCard:
    """The card of a model updated on local data (``training.updating``): the update section, then the
    parent's card (``parent_card``, when it could be read from the parent's training run)."""

    update: Update
    name: str
    parent_version: str
    source: str
    data_sha256: str
    run_id: str
    lenrisk_version: str
    version: str | None = None
    digest: str | None = None
    parent_card: str | None = None

    def markdown(self) -> str:
        """The card."""
        parent = (
            f"\n\n# The parent's card (version {self.parent_version}, before the update)\n\n"
            + re.sub(r"^(#+) ", r"#\1 ", self.parent_card, flags=re.MULTILINE)
            if self.parent_card
            else ""
        )
        return self._section() + parent + "\n"

    def description(self) -> str:
        """The registry's version description: parent, method, data and the validated figures."""
        u, v = self.update, self.update.validation.metrics
        lines = [
            f"Update of {self.name} version {self.parent_version} by "
            f"{METHOD_NAMES[u.method]} ({u.method}) on {self.source}: {u.n_lines} local lines of "
            f"{u.n_patients} patients, {u.events} events (SHA-256 {self.data_sha256}).",
            "",
            f"- Chosen by the closed testing procedure (Vergouwe et al. 2017, alpha {u.alpha}): "
            + "; ".join(_test_words(t) for t in u.closed_test.tests)
            + ".",
            f"- The update procedure on the local data, optimism-corrected ({u.n_boot} bootstrap resamples): "
            f"AUC {_ci(v['roc_auc'])}, calibration-in-the-large {_ci(v['calibration_intercept'])}, slope "
            f"{_ci(v['calibration_slope'], 2)}, O:E {_ci(v['observed_expected'], 2)}, "
            f"Brier {_ci(v['brier'])}.",
            "- Registered as challenger only: `lenrisk promote` decides whether it becomes champion.",
            "",
            f"The model card is the artifact `{MODEL_CARD_ARTIFACT}` of update run `{self.run_id}`.",
        ]
        return "\n".join(lines)[:DESCRIPTION_LIMIT]

    def _section(self) -> str:
        u, closed = self.update, self.update.closed_test
        version = f", version {self.version}" if self.version else " (not registered: no update chosen)"
        fits = [
            (
                METHOD_NAMES[f.method] + (f" ({f.candidate})" if f.candidate else ""),
                f.parameters,
                _num(f.log_likelihood, 1),
                _num(2 * (f.log_likelihood - closed.fits["none"].log_likelihood), 2),
                _num(f.intercept) if f.method in ("intercept", "recalibration") else "",
                _num(f.slope) if f.method == "recalibration" else "",
            )
            for f in closed.fits.values()
        ]
        tests = [(t.method, t.against, _num(t.statistic, 2), t.df, f"{t.p_value:.3g}") for t in closed.tests]
        v = u.validation.metrics
        names = {
            "roc_auc": "AUC",
            "calibration_intercept": "calibration-in-the-large",
            "calibration_slope": "calibration slope",
            "observed_expected": "O:E",
            "brier": "Brier score",
            "log_loss": "log loss",
        }
        validation = [(label, _num(v[k].apparent), _ci(v[k])) for k, label in names.items()]
        lines = [
            f"# Model card: {self.name}{version}, updated on local data (TRIPOD+AI 12f)",
            "",
            f"- Parent: {self.name} version {self.parent_version}; method: **{METHOD_NAMES[u.method]}**",
            f"- Local data: {self.source}, {u.n_lines} lines of {u.n_patients} patients, {u.events} events; "
            f"SHA-256 `{self.data_sha256}`",
            f"- Update run: `{self.run_id}`; lenrisk {self.lenrisk_version}",
            *([f"- Artifact SHA-256 (of `digests.json`): `{self.digest}`"] if self.digest else []),
            "",
            "## How the update was chosen",
            "",
            "Closed testing procedure (Vergouwe Y et al. Stat Med 2017;36:4529): each update's likelihood "
            "ratio statistic against the original model on the local data, the most extensive update offered "
            f"tested against the original model first, then against each simpler update (alpha {u.alpha}); "
            "the simplest update it does not beat significantly is chosen.",
            "",
            *_table(("method", "parameters", "log-likelihood", "LR vs original", "intercept", "slope"), fits),
            "",
            *_table(("method", "against", "LR statistic", "df", "p"), tests),
            "",
            f"Refit: {'not offered: ' if closed.refit_not_offered else 'offered'}{closed.refit_not_offered}.",
            "",
            f"## Validation on the local data ({u.n_boot} bootstrap resamples of the whole update procedure)",
            "",
            *_table(("measure", "apparent", "optimism-corrected (95% CI)"), validation),
        ]
        model = u.model
        if model is not None and model.has_interval:
            note = UPDATE_REFIT_INTERVAL_NOTE if u.method == "refit" else UPDATE_INTERVAL_NOTE
            lines += ["", "## Uncertainty", "", note.format(level=INTERVAL_LEVEL, refits=model.ensemble.size)]
        return "\n".join(lines)


def _test_words(t: Test) -> str:
    verdict = "better" if t.significant else "not better"
    return f"{t.method} {verdict} than {t.against} (LR {t.statistic:.2f}, df {t.df}, p {t.p_value:.3g})"
