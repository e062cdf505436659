"""``lenrisk validate``'s work: read a labelled file, validate registered versions on it, log and report.

:func:`run_validation` checks the file's header and the requested models before any work; validates every row
against the record contract (rows that break it, including a line without its outcome, are rejected with the
reason, never dropped: ``rows read == rows validated + rows rejected``); scores the validated rows with each
model and computes :func:`training.external.validate_model`; logs one MLflow run ``lenrisk-validate`` (data
digest and counts, the report) with a nested run per model version (tags naming the version, the
``external_*`` metrics, figures, tables and the report) and tags the version with that run
(:data:`VALIDATION_RUN_TAG`); and writes the report and the rejects atomically where asked.

No patient identifier reaches MLflow: the run holds counts of reject reasons, not the rejects.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from features.errors import FileFormatError, LenriskError
from features.model.registry import CHAMPION, MODEL_NAMES, RegistrySettings, load_registered
from features.schema import OUTCOMES, RECORD_NAMES
from features.tableio import atomic_write, read_table, table_format, write_table
from features.validate import EMPTY, check_table_columns, validate_table
from training.external import ExternalValidation, validate_model
from training.external_report import DataSummary, ModelRef, figures, render_report
from training.registry import RegistryError, configure_mlflow

__all__ = [
    "MISSING_OUTCOME",
    "VALIDATION_RUN_TAG",
    "ModelSpec",
    "PreparedData",
    "ValidationDataError",
    "ValidationRun",
    "parse_model_spec",
    "prepare_data",
    "run_validation",
]

#: Model version tag: the id of the version's latest external validation run.
VALIDATION_RUN_TAG = "last_external_validation_run"
#: Reject reason of a line whose outcome cell is empty.
MISSING_OUTCOME = "outcome missing; a line without its outcome cannot be validated"
_NAME_AT = re.compile(r"(?P<name>[^@\s]+)@(?P<selector>[^@\s]+)")
_OUTCOME_OF = {name: outcome for outcome, name in MODEL_NAMES.items()}


class ValidationDataError(LenriskError):
    """The validation file cannot validate the requested models (no outcome column, no valid row)."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model and the version to validate: an alias (``champion``) or a version number."""

    name: str
    selector: str

    @property
    def outcome(self) -> str:
        """The outcome the model predicts (from its registered name)."""
        return _OUTCOME_OF[self.name]

    @property
    def is_version(self) -> bool:
        """Whether the selector is a version number rather than an alias."""
        return self.selector.isdigit()


def parse_model_spec(text: str | None) -> list[ModelSpec]:
    """``NAME@ALIAS`` or ``NAME@VERSION`` as one spec; None: both models' ``champion``.

    Raises :class:`RegistryError` for another form or a name that is not one of lenrisk's models.
    """
    if text is None:
        return [ModelSpec(name, CHAMPION) for name in MODEL_NAMES.values()]
    match = _NAME_AT.fullmatch(text.strip())
    if not match:
        raise RegistryError(
            f"--model must be NAME@ALIAS or NAME@VERSION (e.g. {MODEL_NAMES['discontinuation']}"
            f"@{CHAMPION}); got {text!r}"
        )
    if match["name"] not in _OUTCOME_OF:
        raise RegistryError(
            f"no lenrisk model named {match['name']!r}; the models are {', '.join(MODEL_NAMES.values())}"
        )
    return [ModelSpec(match["name"], match["selector"])]


# ---------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class PreparedData:
    """The validated rows (record and outcome columns), the reject lines and the file's summary."""

    frame: pd.DataFrame
    rejects: pd.DataFrame  # row_number, patient_id, column, reason (as batch scoring's rejects)
    summary: DataSummary


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_data(path: Path, outcomes: Sequence[str]) -> PreparedData:
    """Read ``path`` (CSV or Parquet) and validate each row's record columns and ``outcomes``' columns.

    Other columns (another outcome not validated, extras) are ignored. Raises :class:`FileFormatError` for
    an unreadable file or missing record columns, and :class:`ValidationDataError` for a missing outcome
    column.
    """
    path = Path(path)
    raw = read_table(path)
    check_table_columns(list(raw.columns))
    columns = [OUTCOMES[o] for o in outcomes]
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise ValidationDataError(
            f"{path.name} has no outcome column {', '.join(missing)}: external validation needs the observed "
            "outcome of every line (0 or 1)"
        )
    validation = validate_table(raw[[*RECORD_NAMES, *columns]])
    errors = [
        replace(e, reason=MISSING_OUTCOME) if e.column in columns and e.reason == EMPTY else e
        for e in validation.errors
    ]
    rejects = pd.DataFrame(
        {
            "row_number": pd.array([e.row_number for e in errors], dtype="int64"),
            "patient_id": pd.array([e.patient_id for e in errors], dtype="str"),
            "column": pd.array([e.column for e in errors], dtype="str"),
            "reason": pd.array([e.reason for e in errors], dtype="str"),
        }
    )
    reasons = Counter((e.column, e.reason) for e in errors)
    summary = DataSummary(
        file_name=path.name,
        sha256=_sha256(path),
        rows_read=validation.n_rows,
        rows_validated=len(validation.clean),
        rows_rejected=len(validation.rejected),
        reject_reasons=[(c, r, n) for (c, r), n in reasons.most_common()],
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    return PreparedData(validation.clean, rejects, summary)


# -------------------------------------------------------------------------------------------------- models


def _resolve(client: MlflowClient, spec: ModelSpec) -> ModelRef:
    """The version ``spec`` names, or :class:`RegistryError` saying what is missing."""
    try:
        if spec.is_version:
            version = client.get_model_version(spec.name, spec.selector)
        else:
            version = client.get_model_version_by_alias(spec.name, spec.selector)
    except MlflowException as err:
        try:
            aliases = client.get_registered_model(spec.name).aliases
        except MlflowException:
            raise RegistryError(
                f"no registered model named {spec.name!r}; train one with `lenrisk train`"
            ) from err
        what = f"version {spec.selector}" if spec.is_version else f"alias {spec.selector!r}"
        known = ", ".join(f"{a} (version {v})" for a, v in aliases.items()) or "none"
        raise RegistryError(f"{spec.name} has no {what}; its aliases: {known}") from err
    return ModelRef(spec.name, str(version.version), None if spec.is_version else spec.selector)


# ----------------------------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class ValidationRun:
    """What :func:`run_validation` did: the parent run, each model's validation and nested run, the data."""

    run_id: str
    models: list[tuple[ModelRef, ExternalValidation, str]]  # (version, validation, nested run id)
    data: DataSummary
    html: str


def _log_model_run(ref: ModelRef, v: ExternalValidation, data: DataSummary, html: str) -> str:
    tags = {
        "validation": "external",
        "model_name": ref.name,
        "model_version": ref.version,
        "model_alias": ref.alias or "",
        "outcome": v.outcome,
        "data_file": data.file_name,
        "data_sha256": data.sha256,
        "rows_read": str(data.rows_read),
        "rows_scored": str(data.rows_validated),
        "rows_rejected": str(data.rows_rejected),
    }
    with mlflow.start_run(run_name=f"validate {ref.name} v{ref.version}", nested=True, tags=tags) as run:
        mlflow.log_metrics(v.metrics())
        for name, fig in figures(v).items():
            mlflow.log_figure(fig, name)
        mlflow.log_text(v.subgroup_frame().to_csv(index=False), "subgroups.csv")
        mlflow.log_text(v.performance.net_benefit.to_csv(index=False), "net_benefit.csv")
        if v.curve is not None:
            curve = pd.DataFrame(
                {
                    "predicted": v.curve.predicted,
                    "observed": v.curve.observed,
                    "lower": v.curve.lower,
                    "upper": v.curve.upper,
                }
            )
            mlflow.log_text(curve.to_csv(index=False), "calibration_curve.csv")
        mlflow.log_text(html, "report.html")
        return run.info.run_id


def run_validation(
    settings: RegistrySettings,
    data_path: Path,
    model: str | None = None,
    *,
    report: Path | None = None,
    rejects: Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    note: Callable[[str], None] | None = None,
) -> ValidationRun:
    """Validate ``model`` (``NAME@ALIAS``/``NAME@VERSION``; None: both champions) on ``data_path``.

    Checks, in order and before any output: the model spec, the output paths' formats, the file's header and
    outcome columns, the registry's versions. Then validates the rows, scores, logs (see the module), and
    writes ``report`` (HTML) and ``rejects`` (CSV/Parquet, only when given) atomically. A file without one
    valid row raises :class:`ValidationDataError` after writing the rejects.
    """
    say = note or (lambda _: None)
    specs = parse_model_spec(model)
    if rejects is not None:
        table_format(Path(rejects))
    if report is not None and Path(report).suffix.lower() not in (".html", ".htm"):
        raise FileFormatError(f"{Path(report).name}: the report is HTML; name it .html")
    for path in (p for p in (report, rejects) if p is not None):
        if not Path(path).resolve().parent.is_dir():
            raise FileFormatError(f"{Path(path).name}: no folder {Path(path).resolve().parent}")
        if Path(path).resolve() == Path(data_path).resolve():
            raise FileFormatError(f"{Path(path).name}: would overwrite the data file")
    data = prepare_data(Path(data_path), [s.outcome for s in specs])
    experiment_id = configure_mlflow(settings)
    client = MlflowClient()
    refs = [_resolve(client, spec) for spec in specs]
    summary = data.summary
    say(f"{summary.rows_read} rows read = {summary.rows_validated} valid + {summary.rows_rejected} rejected")
    if rejects is not None:
        write_table(data.rejects, Path(rejects))
    if summary.rows_validated == 0:
        raise ValidationDataError(
            f"no row of {summary.file_name} passes the record contract; nothing to validate"
        )
    results = []
    with tempfile.TemporaryDirectory(prefix="lenrisk-validate-") as folder:
        for ref in refs:
            say(f"validating {ref}")
            risk_model = load_registered(client, ref.name, ref.version, folder)
            results.append((ref, validate_model(risk_model, data.frame, n_boot=n_boot, seed=seed)))
    html = render_report(results, summary)
    tags = {
        "validation": "external",
        "data_file": summary.file_name,
        "data_sha256": summary.sha256,
        "rows_read": str(summary.rows_read),
        "rows_scored": str(summary.rows_validated),
        "rows_rejected": str(summary.rows_rejected),
        "models": ", ".join(f"{r.name}:{r.version}" for r, _ in results),
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name="lenrisk-validate", tags=tags) as parent:
        reasons = pd.DataFrame(summary.reject_reasons, columns=["column", "reason", "lines"])
        mlflow.log_text(reasons.to_csv(index=False), "reject_reasons.csv")
        mlflow.log_text(html, "report.html")
        logged = []
        for ref, v in results:
            run_id = _log_model_run(ref, v, summary, html)
            client.set_model_version_tag(ref.name, ref.version, VALIDATION_RUN_TAG, run_id)
            logged.append((ref, v, run_id))
    if report is not None:
        with atomic_write(Path(report), "w") as f:
            f.write(html)
    return ValidationRun(parent.info.run_id, logged, summary, html)
