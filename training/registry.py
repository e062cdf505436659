"""Log a training to MLflow, register both models, and move the ``champion`` alias by evidence.

One ``lenrisk train`` is one parent run (source, seed, data size, lenrisk version) with a nested run per
outcome holding its parameters, metrics, figures, tables, model card and the model itself, registered under
the outcome's model name. Every new version gets the alias ``challenger``; a model's first version is also
``champion``. :func:`promote` moves ``champion`` to the challenger when its cross-validated log loss is no
worse (or when forced).

The logged model is *models from code* (:mod:`features.model.pyfunc`) with the native ``RiskModel``
directory as its only artifact, so nothing is pickled; its code is the runtime model and the record
contract only (:func:`runtime_code`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import modulefinder
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.types import ColSpec, Schema

from features.errors import LenriskError
from features.model.registry import (
    CHALLENGER,
    CHAMPION,
    DIGEST_TAG,
    FAMILY_TAG,
    MLFLOW_ENV_DEFAULTS,
    MODEL_CARD_ARTIFACT,
    MODEL_NAMES,
    OUTCOME_TAG,
    PROMOTION_METRIC,
    REPO_ROOT,
    RUN_TAG,
    RegistrySettings,
)
from features.schema import OUTCOMES, PREDICTOR_NAMES, RECORD_COLUMNS, Kind
from features.validate import validate_table
from training.card import ModelCard, SyntheticSource, subgroup_markdown
from training.cohort.generate import generate_cohort
from training.cohort.params import parameter_sources
from training.pipeline import OutcomeResult, TrainingResult
from training.selection import N_SPLITS

#: The logged model's code, run by MLflow on load (models from code); located, not imported (importing it
#: would declare the model to MLflow in this process).
PYFUNC_CODE = Path(importlib.util.find_spec("features.model.pyfunc").origin)
#: Import names of everything the logged model runs on, pinned to their installed distributions.
MODEL_IMPORTS = ("mlflow", "numpy", "pandas", "pyarrow", "scipy", "xgboost")
_MLFLOW_TYPES = {Kind.NUMBER: "double", Kind.INTEGER: "long", Kind.BINARY: "long"}


class RegistryError(LenriskError):
    """The registry lacks what a request needs: a registered model, an alias or a training metric."""


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version created by :func:`log_and_register`, with the training result behind it."""

    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    digest: str
    result: OutcomeResult

    @property
    def cv_log_loss(self) -> float:
        """The promotion metric of this version."""
        return self.result.cv[self.result.chosen].summary()["log_loss_mean"]


@dataclass(frozen=True)
class Promotion:
    """The comparison behind one ``promote`` decision (``champion`` is None when there is none)."""

    name: str
    champion: str | None
    champion_cv_log_loss: float
    challenger: str
    challenger_cv_log_loss: float
    promoted: bool
    decision: str


def model_signature() -> ModelSignature:
    """Contract columns in, calibrated ``probability`` and its ``logit`` out.

    Nullable columns are doubles (NaN = unknown, as in :func:`features.validate.validate_table`'s output)
    and, like ``patient_id``, optional.
    """
    inputs = [
        ColSpec(
            "double" if c.nullable else _MLFLOW_TYPES.get(c.kind, "string"),
            c.name,
            required=c.required_in_api and not c.nullable,
        )
        for c in RECORD_COLUMNS
    ]
    return ModelSignature(
        inputs=Schema(inputs), outputs=Schema([ColSpec("double", "probability"), ColSpec("double", "logit")])
    )


def input_example() -> pd.DataFrame:
    """Three synthetic records in the signature's types (never rows of the training data)."""
    return validate_table(generate_cohort(3, seed=0)).clean[list(PREDICTOR_NAMES)].reset_index(drop=True)


def runtime_code(directory: Path) -> Path:
    """Copy into ``directory`` the lenrisk modules the logged model imports, and return its ``features``.

    The modules are found by following the imports of :data:`PYFUNC_CODE` (``modulefinder``, no code run),
    so the logged model carries the runtime model and the record contract it validates against, and no
    training, evaluation or service code.
    """
    finder = modulefinder.ModuleFinder(path=[str(REPO_ROOT)])
    finder.run_script(str(PYFUNC_CODE))
    for module in finder.modules.values():
        source = Path(module.__file__ or "")
        if module.__name__.split(".")[0] == "features" and source.is_file():
            target = directory / source.relative_to(REPO_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return directory / "features"


@cache
def pip_requirements() -> tuple[str, ...]:
    """``name==version`` of the installed distribution behind each of :data:`MODEL_IMPORTS` (cached)."""
    providers = importlib.metadata.packages_distributions()
    names = [name if name in providers[name] else providers[name][0] for name in MODEL_IMPORTS]
    return tuple(f"{name}=={importlib.metadata.version(name)}" for name in names)


def configure_mlflow(settings: RegistrySettings) -> str:
    """Point MLflow at ``settings`` for this process and return the experiment id, creating it if missing.

    Sets the :data:`~features.model.registry.MLFLOW_ENV_DEFAULTS` that are not set yet, the tracking URI and
    the active experiment; a new experiment gets :attr:`RegistrySettings.artifact_location`.
    """
    from mlflow.telemetry import set_telemetry_client

    for name, value in MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    set_telemetry_client()  # re-reads MLFLOW_DISABLE_TELEMETRY (mlflow creates its client on import)
    if settings.mlflow_tracking_uri is None:
        settings.mlruns_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        try:
            experiment_id = mlflow.create_experiment(
                settings.experiment_name, artifact_location=settings.artifact_location
            )
        except MlflowException as err:  # created concurrently by another process
            if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment_id = mlflow.get_experiment_by_name(settings.experiment_name).experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def log_and_register(
    result: TrainingResult, settings: RegistrySettings, *, synthetic: SyntheticSource | None = None
) -> list[RegisteredVersion]:
    """Log one parent run with a nested run per outcome; register, describe, tag and alias each model.

    ``synthetic`` describes the generator call when the data are synthetic (shown in the model card and
    logged as parameters and ``generator_parameters.csv``).
    """
    experiment_id = configure_mlflow(settings)
    client = MlflowClient()
    data = next(iter(result.outcomes.values())).data
    with mlflow.start_run(experiment_id=experiment_id, run_name="lenrisk-train"):
        mlflow.log_params(
            {
                "source": result.source,
                "seed": result.seed,
                "n_rows": data["n_rows"],
                "n_patients": data["n_patients"],
                "lenrisk_version": _lenrisk_version(),
                **(_synthetic_params(synthetic) if synthetic else {}),
            }
        )
        registered = []
        for outcome in result.outcomes.values():
            with mlflow.start_run(run_name=outcome.model_name, nested=True) as run:
                registered.append(_log_outcome(client, result, outcome, run.info.run_id, synthetic))
    return registered


def _log_outcome(
    client: MlflowClient,
    result: TrainingResult,
    outcome: OutcomeResult,
    run_id: str,
    synthetic: SyntheticSource | None,
) -> RegisteredVersion:
    mlflow.log_params(_params(outcome))
    mlflow.log_metrics(_metrics(outcome))
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp) / "files"
        (files / "plots").mkdir(parents=True)
        for name, figure in outcome.figures.items():
            figure.savefig(files / "plots" / name)
            plt.close(figure)
        outcome.subgroups.to_csv(files / "subgroups.csv", index=False)
        (files / "subgroups.md").write_text(subgroup_markdown(outcome.subgroups) + "\n")
        outcome.importance.to_csv(files / "shap_importance.csv", index=False)
        if synthetic:
            rows = parameter_sources(synthetic.params)
            pd.DataFrame(rows, columns=["scope", "name", "value", "source"]).to_csv(
                files / "generator_parameters.csv", index=False
            )
        mlflow.log_artifacts(str(files))

        artifact = Path(tmp) / "risk_model"
        digest = outcome.model.save(artifact)
        info = mlflow.pyfunc.log_model(
            name=outcome.model_name,
            python_model=str(PYFUNC_CODE),
            artifacts={"risk_model": str(artifact)},
            model_config={"digest": digest, "outcome": outcome.outcome},
            code_paths=[str(runtime_code(Path(tmp) / "code"))],
            signature=model_signature(),
            input_example=input_example(),
            pip_requirements=list(pip_requirements()),
            registered_model_name=outcome.model_name,
        )
    name, version = outcome.model_name, str(info.registered_model_version)
    card = ModelCard(
        outcome=outcome,
        source=result.source,
        seed=result.seed,
        synthetic=synthetic,
        version=version,
        run_id=run_id,
        digest=digest,
        lenrisk_version=_lenrisk_version(),
    )
    mlflow.log_text(card.markdown(), MODEL_CARD_ARTIFACT)
    client.update_model_version(name, version, description=card.description())
    tags = {DIGEST_TAG: digest, FAMILY_TAG: outcome.chosen, OUTCOME_TAG: outcome.outcome, RUN_TAG: run_id}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    if version == "1":
        client.set_registered_model_alias(name, CHAMPION, version)
    aliases = tuple(sorted(client.get_model_version(name, version).aliases))
    return RegisteredVersion(name, version, aliases, run_id, digest, outcome)


def _params(outcome: OutcomeResult) -> dict[str, object]:
    model = outcome.model
    estimator = model.estimator
    hyper = (
        {"hp_C": estimator.C}
        if outcome.chosen == "logistic"
        else {
            **{f"hp_{k}": v for k, v in estimator.params.items()},
            "hp_num_boost_round": estimator.booster.num_boosted_rounds(),
        }
    )
    return {
        "outcome": outcome.outcome,
        "outcome_column": OUTCOMES[outcome.outcome],
        "model_name": outcome.model_name,
        "chosen_family": outcome.chosen,
        "chosen_because": outcome.reason,
        "cv_repeats": model.info["cv_repeats"],
        "cv_folds": N_SPLITS,
        "calibration_method": "platt-on-margin",
        "calibrator_slope": model.calibrator.slope,
        "calibrator_intercept": model.calibrator.intercept,
        **{k: v for k, v in outcome.data.items() if not isinstance(v, dict)},
        **hyper,
    }


def _metrics(outcome: OutcomeResult) -> dict[str, float]:
    metrics = {}
    for name, cv in outcome.cv.items():
        metrics |= {f"cv_{name}_{key}": value for key, value in cv.summary().items()}
    chosen = outcome.cv[outcome.chosen].summary()
    for score in ("log_loss", "brier", "roc_auc"):
        metrics[f"cv_{score}"] = chosen[f"{score}_mean"]
        metrics[f"cv_{score}_sd"] = chosen[f"{score}_sd"]
    metrics |= {f"oof_{key}": value for key, value in outcome.cv_metrics.items()}
    metrics |= {f"test_{key}": value for key, value in outcome.heldout_metrics.items()}
    return metrics


def _synthetic_params(synthetic: SyntheticSource) -> dict[str, object]:
    return {
        "synthetic_n": synthetic.n,
        "synthetic_seed": synthetic.seed,
        "synthetic_settings": ",".join(synthetic.settings),
    }


def _lenrisk_version() -> str:
    return importlib.metadata.version("lenrisk")


def promote(
    settings: RegistrySettings, models: Sequence[str] | None = None, *, force: bool = False
) -> list[Promotion]:
    """Move ``champion`` to the ``challenger`` version of each model when its CV log loss is no worse.

    ``models`` defaults to both registered models. With ``force`` the challenger is promoted regardless
    (also when no champion exists). Every model is checked before any alias moves; a missing model,
    alias or metric raises :class:`RegistryError`.
    """
    configure_mlflow(settings)
    client = MlflowClient()
    decisions = [_decide(client, name, force) for name in (models or list(MODEL_NAMES.values()))]
    for d in decisions:
        if d.promoted:
            client.set_registered_model_alias(d.name, CHAMPION, d.challenger)
    return decisions


def _decide(client: MlflowClient, name: str, force: bool) -> Promotion:
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        raise RegistryError(f"no registered model named {name!r}; train one with `lenrisk train`") from err
    if CHALLENGER not in aliases:
        raise RegistryError(f"{name} has no {CHALLENGER!r} version; train one with `lenrisk train`")
    challenger = str(aliases[CHALLENGER])
    champion = str(aliases[CHAMPION]) if CHAMPION in aliases else None
    if champion is None and not force:
        raise RegistryError(
            f"{name} has no {CHAMPION!r} version; `lenrisk promote --force` makes version {challenger} "
            "the champion"
        )
    new = _cv_log_loss(client, name, challenger)
    old = _cv_log_loss(client, name, champion) if champion else math.nan
    if champion == challenger:
        promoted, decision = False, "already champion"
    elif new <= old:
        promoted, decision = True, f"promoted ({new - old:+.4f})"
    elif force:
        promoted, decision = True, f"forced ({new - old:+.4f} worse)" if champion else "forced (no champion)"
    else:
        promoted, decision = False, f"kept ({new - old:+.4f} worse)"
    return Promotion(name, champion, old, challenger, new, promoted, decision)


def _cv_log_loss(client: MlflowClient, name: str, version: str) -> float:
    run_id = client.get_model_version(name, version).run_id
    value = client.get_run(run_id).data.metrics.get(PROMOTION_METRIC) if run_id else None
    if value is None:
        raise RegistryError(
            f"version {version} of {name} has no {PROMOTION_METRIC} metric in its training run"
        )
    return float(value)
