"""Log a training to MLflow, register both models, and move the ``champion`` alias by evidence.

One ``lenrisk train`` is one parent run (source, seed, data size, lenrisk version) with a nested run per
outcome holding its parameters, metrics, figures, tables, model card and the model itself, registered under
the outcome's model name. Every new version gets the alias ``challenger``; a model's first version is also
``champion`` (unless developed on too small a sample). A model that fails a gate (worse than the average risk,
inverted) is logged but not registered. :func:`promote` moves ``champion`` to the challenger when its
optimism-corrected log loss is no worse than the champion's on the challenger's own development data (or when
forced).

The logged model is *models from code* (:mod:`features.model.pyfunc`) with the native ``RiskModel``
directory as its only artifact, so nothing is pickled; its code is the runtime model and the record
contract only (:func:`runtime_code`).
"""

from __future__ import annotations

import dataclasses
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
from mlflow.types.schema import AnyType

from features.errors import LenriskError
from features.model.registry import (
    CHALLENGER,
    CHAMPION,
    CHAMPION_ON_DEVELOPMENT,
    COMPARED_CHAMPION_TAG,
    DIGEST_TAG,
    FAMILY_TAG,
    MLFLOW_ENV_DEFAULTS,
    MODEL_CARD_ARTIFACT,
    MODEL_NAMES,
    OUTCOME_TAG,
    PARENT_VERSION_TAG,
    PROMOTION_METRIC,
    REPO_ROOT,
    RUN_TAG,
    SMALL_SAMPLE_TAG,
    UPDATE_DATA_TAG,
    UPDATE_METHOD_TAG,
    RegistrySettings,
    load_registered,
)
from features.model.riskmodel import RiskModel
from features.schema import OUTCOMES, PREDICTOR_NAMES, RECORD_COLUMNS, Kind
from features.validate import validate_table
from training import evaluation
from training.card import ModelCard, SyntheticSource, UpdateCard, subgroup_markdown
from training.cohort.generate import generate_cohort
from training.cohort.params import parameter_sources
from training.pipeline import OutcomeResult, TrainingResult
from training.selection import N_SPLITS, SELECTION_RULE
from training.updating import METHOD_NAMES, Update

#: The logged model's code, run by MLflow on load (models from code); located, not imported (importing it
#: would declare the model to MLflow in this process).
PYFUNC_CODE = Path(importlib.util.find_spec("features.model.pyfunc").origin)
#: Import names of everything the logged model runs on, pinned to their installed distributions.
MODEL_IMPORTS = ("mlflow", "numpy", "pandas", "pyarrow", "scipy", "xgboost")


class RegistryError(LenriskError):
    """The registry lacks what a request needs: a registered model, an alias or a training metric."""


class NotRegisteredError(LenriskError):
    """A trained model failed a registration gate: logged with its card, not registered."""


@dataclass(frozen=True)
class RegisteredVersion:
    """What :func:`log_and_register` did with one outcome: its training run and, if the model is usable,
    the version registered (``version`` is None when the model failed a gate and was only logged)."""

    name: str
    version: str | None
    aliases: tuple[str, ...]
    run_id: str
    digest: str | None
    result: OutcomeResult

    @property
    def validated_log_loss(self) -> float:
        """The optimism-corrected log loss (the promotion metric)."""
        return self.result.validation.metrics["log_loss"].corrected


@dataclass(frozen=True)
class Promotion:
    """The comparison behind one ``promote`` decision (``champion`` is None when there is none).

    Both log losses are on the challenger's development data: the challenger's optimism-corrected, the
    champion's as it scored those patients, whom it was not developed on.
    """

    name: str
    champion: str | None
    champion_log_loss: float
    challenger: str
    challenger_log_loss: float
    promoted: bool
    decision: str


def model_signature() -> ModelSignature:
    """Contract columns in, calibrated ``probability``, its ``logit`` and the uncertainty interval's ``lower``
    and ``upper`` bounds (NaN: no interval) out.

    Numeric columns are declared as any type: a registry file read with ``pandas.read_csv`` holds integer
    ages and ECOG, floats where a value is missing, and MLflow would refuse an int64 column declared double
    ("Can not safely convert int64 to float64"). The model checks every cell against the record contract
    itself (:func:`features.validate.validate_table`). Nullable columns and ``patient_id`` are optional.
    """
    inputs = [
        ColSpec(
            "string" if c.kind in (Kind.STRING, Kind.CATEGORY) else AnyType(),
            c.name,
            required=c.required_in_api and not c.nullable,
        )
        for c in RECORD_COLUMNS
    ]
    return ModelSignature(
        inputs=Schema(inputs),
        outputs=Schema([ColSpec("double", c) for c in ("probability", "logit", "lower", "upper")]),
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
    """Log one parent run with a nested run per outcome; register, describe, tag and alias each usable model.

    A model that failed a gate (:attr:`OutcomeResult.problems`) is logged with its card and figures so that
    reviewers can see why, and not registered. ``synthetic`` describes the generator call when the data are
    synthetic (shown in the model card and logged as parameters and ``generator_parameters.csv``).
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
                "bootstrap_resamples": result.n_boot,
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
    mlflow.log_params(_params(outcome, result))
    mlflow.log_metrics(_metrics(outcome))
    name = outcome.model_name
    with tempfile.TemporaryDirectory() as tmp:
        _log_files(outcome, Path(tmp) / "files", synthetic)
        card = ModelCard(
            outcome=outcome,
            source=result.source,
            seed=result.seed,
            n_boot=result.n_boot,
            synthetic=synthetic,
            run_id=run_id,
            lenrisk_version=_lenrisk_version(),
        )
        if not outcome.usable:
            mlflow.log_text(card.markdown(), MODEL_CARD_ARTIFACT)
            mlflow.set_tags({"registered": "false", "not_usable_because": "; ".join(outcome.problems)})
            return RegisteredVersion(name, None, (), run_id, None, outcome)
        compared = _score_champion(client, name, result.frame, outcome.outcome, Path(tmp) / "champion")
        version, digest = _log_model(name, outcome.model, Path(tmp))
    card = dataclasses.replace(card, version=version, digest=digest)
    mlflow.log_text(card.markdown(), MODEL_CARD_ARTIFACT)
    client.update_model_version(name, version, description=card.description())
    tags = {
        DIGEST_TAG: digest,
        FAMILY_TAG: outcome.model.family,
        OUTCOME_TAG: outcome.outcome,
        RUN_TAG: run_id,
    }
    if outcome.small_sample:
        tags[SMALL_SAMPLE_TAG] = "true"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    if compared is None and not outcome.small_sample:  # no champion yet: the first usable model is it
        client.set_registered_model_alias(name, CHAMPION, version)
    aliases = tuple(sorted(client.get_model_version(name, version).aliases))
    return RegisteredVersion(name, version, aliases, run_id, digest, outcome)


def _log_model(name: str, model: RiskModel, tmp: Path) -> tuple[str, str]:
    """Log ``model`` in the active run as models from code and register it under ``name``; return the
    version and the artifact's digest."""
    artifact = tmp / "risk_model"
    digest = model.save(artifact)
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(PYFUNC_CODE),
        artifacts={"risk_model": str(artifact)},
        model_config={"digest": digest, "outcome": model.outcome},
        code_paths=[str(runtime_code(tmp / "code"))],
        signature=model_signature(),
        input_example=input_example(),
        pip_requirements=list(pip_requirements()),
        registered_model_name=name,
    )
    return str(info.registered_model_version), digest


def _log_files(outcome: OutcomeResult, files: Path, synthetic: SyntheticSource | None) -> None:
    """Figures and tables of one outcome, logged as run artifacts."""
    (files / "plots").mkdir(parents=True)
    for name, figure in outcome.figures.items():
        figure.savefig(files / "plots" / name)
        plt.close(figure)
    outcome.subgroups.to_csv(files / "subgroups.csv", index=False)
    (files / "subgroups.md").write_text(subgroup_markdown(outcome.subgroups) + "\n")
    outcome.importance.to_csv(files / "shap_importance.csv", index=False)
    pd.DataFrame(outcome.adequacy.table()).to_csv(files / "sample_size.csv", index=False)
    pd.DataFrame([{"candidate": n, **cv.summary()} for n, cv in outcome.cv.items()]).to_csv(
        files / "candidates.csv", index=False
    )
    if synthetic:
        rows = parameter_sources(synthetic.params)
        pd.DataFrame(rows, columns=["scope", "name", "value", "source"]).to_csv(
            files / "generator_parameters.csv", index=False
        )
    mlflow.log_artifacts(str(files))


def _score_champion(
    client: MlflowClient, name: str, frame: pd.DataFrame, outcome: str, folder: Path
) -> str | None:
    """The champion version scored on the new development data, its log loss logged for ``promote``.

    None: there is no champion yet. A champion this version of lenrisk cannot load (an artifact of another
    feature definition) is not compared: the run says why, and only a forced promotion replaces it.
    """
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        return None
    if CHAMPION not in aliases:
        return None
    version = str(aliases[CHAMPION])
    try:
        champion = load_registered(client, name, version, str(folder))
    except LenriskError as err:  # e.g. ArtifactError, EncoderStateError: another feature definition
        mlflow.set_tag("champion_not_comparable", f"version {version}: {err}")
        return ""
    y = frame[OUTCOMES[outcome]].to_numpy()
    mlflow.log_metric(CHAMPION_ON_DEVELOPMENT, evaluation.overall(y, champion.probability(frame))["log_loss"])
    mlflow.set_tag(COMPARED_CHAMPION_TAG, version)
    return version


def _params(outcome: OutcomeResult, result: TrainingResult) -> dict[str, object]:
    model, check = outcome.model, outcome.adequacy
    estimator = model.estimator
    hyper = (
        {"hp_ridge_C": estimator.C}
        if model.family == "logistic"
        else {
            **{f"hp_{k}": v for k, v in estimator.params.items()},
            "hp_num_boost_round": estimator.booster.num_boosted_rounds(),
        }
    )
    return {
        "outcome": outcome.outcome,
        "outcome_column": OUTCOMES[outcome.outcome],
        "model_name": outcome.model_name,
        "chosen_candidate": outcome.chosen,
        "chosen_family": model.family,
        "chosen_because": outcome.reason,
        "candidates_fitted": ",".join(check.eligible),
        "selection_rule": SELECTION_RULE,
        "cv_repeats": model.info["cv_repeats"],
        "cv_folds": N_SPLITS,
        "bootstrap_resamples": result.n_boot,
        "calibration_method": "heuristic shrinkage" if model.family == "logistic" else "platt-on-margin",
        "calibrator_slope": model.calibrator.slope,
        "calibrator_intercept": model.calibrator.intercept,
        "anticipated_c": check.anticipated_c,
        "anticipated_r2_cs": round(check.r2_cs, 4),
        "small_sample": outcome.small_sample,
        **{k: v for k, v in outcome.data.items() if not isinstance(v, dict)},
        **hyper,
    }


def _metrics(outcome: OutcomeResult) -> dict[str, float]:
    check, chosen = outcome.adequacy, outcome.chosen
    requirement = check.requirements[chosen]
    metrics = outcome.validation.flat()
    metrics["null_validated_log_loss"] = outcome.null.metrics["log_loss"].corrected
    metrics["bootstrap_failed"] = outcome.validation.failed
    metrics |= outcome.instability
    metrics |= {
        f"cv_{name}_{key}": value for name, cv in outcome.cv.items() for key, value in cv.summary().items()
    }
    metrics |= {f"oof_{key}": value for key, value in outcome.oof_metrics.items()}
    metrics |= {
        "riley_min_n": check.minimum[chosen],
        "n_parameters": requirement.parameters,
        "events_per_parameter": min(requirement.events_per_parameter(check.effective.n), 1e9),
        "effective_n": check.effective.n,
        "icc": check.effective.icc,
        "expected_shrinkage": requirement.expected_shrinkage(check.effective.n),
        "applied_shrinkage": outcome.model.calibrator.slope,
        "average_risk": outcome.model.info["average_risk"],
    }
    metrics |= {k: v for k, v in outcome.model.info.items() if k.startswith("interval_")}
    return {k: float(v) for k, v in metrics.items()}


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
    """Move ``champion`` to the ``challenger`` version of each model when it does no worse on the same data.

    The challenger's optimism-corrected log loss on its development data is compared with the champion's
    log loss on those same patients, scored at registration. A challenger developed on too small a sample,
    one compared with another champion than today's, or a model without a champion is promoted only with
    ``force``. ``models`` defaults to both registered models. Every model is checked before any alias
    moves; a missing model, alias or metric raises :class:`RegistryError`.
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
    if champion == challenger:
        return Promotion(name, champion, math.nan, challenger, math.nan, False, "already champion")
    version = client.get_model_version(name, challenger)
    run = client.get_run(version.run_id) if version.run_id else None
    new = run.data.metrics.get(PROMOTION_METRIC) if run else None
    if new is None:
        raise RegistryError(
            f"version {challenger} of {name} has no {PROMOTION_METRIC} metric in its training run"
        )
    compared = run.data.tags.get(COMPARED_CHAMPION_TAG)
    old = run.data.metrics.get(CHAMPION_ON_DEVELOPMENT, math.nan) if compared == champion else math.nan
    refusal = (
        f"version {challenger} was developed on too small a sample"
        if version.tags.get(SMALL_SAMPLE_TAG) == "true"
        else f"{name} has no {CHAMPION!r} version"
        if champion is None
        else f"version {challenger} was compared with version {compared or 'none'} at training, not with the "
        f"champion {champion}; retrain to compare both on the same data"
        if compared != champion
        else None
    )
    if refusal and not force:
        raise RegistryError(f"{refusal}; `lenrisk promote --force` makes version {challenger} the champion")
    if refusal:
        promoted, decision = True, f"forced ({refusal})"
    elif new <= old:
        promoted, decision = True, f"promoted ({new - old:+.4f} on the same data)"
    elif force:
        promoted, decision = True, f"forced ({new - old:+.4f} worse on the same data)"
    else:
        promoted, decision = False, f"kept ({new - old:+.4f} worse on the same data)"
    return Promotion(name, champion, float(old), challenger, float(new), promoted, decision)


@dataclass(frozen=True)
class RegisteredUpdate:
    """What :func:`register_update` did: the update run and, if an update was chosen, the version."""

    name: str
    parent_version: str
    version: str | None  # None: no update chosen, nothing registered
    aliases: tuple[str, ...]
    run_id: str
    digest: str | None
    update: Update


def resolve_version(client: MlflowClient, name: str, alias_or_version: str) -> str:
    """The version behind an alias (``champion``) or a version number; :class:`RegistryError` if none."""
    if alias_or_version.isdigit():
        version = alias_or_version
    else:
        try:
            return str(client.get_model_version_by_alias(name, alias_or_version).version)
        except MlflowException as err:
            raise RegistryError(f"{name} has no version with alias {alias_or_version!r}") from err
    try:
        client.get_model_version(name, version)
    except MlflowException as err:
        raise RegistryError(f"{name} has no version {version}") from err
    return version


def load_parent(settings: RegistrySettings, name: str, alias_or_version: str, folder: Path):
    """The registered version to update, ``(version, RiskModel)``, its artifact digest verified."""
    configure_mlflow(settings)
    client = MlflowClient()
    version = resolve_version(client, name, alias_or_version)
    return version, load_registered(client, name, version, str(folder))


def register_update(
    settings: RegistrySettings,
    name: str,
    parent_version: str,
    update: Update,
    *,
    frame: pd.DataFrame,
    source: str,
    data_sha256: str,
) -> RegisteredUpdate:
    """Log the update run (closed test, validation, lineage) and, when an update was chosen, register the
    updated model as a new version of ``name`` with lineage tags and the alias ``challenger`` (never
    ``champion``: that is ``lenrisk promote``'s). With no update chosen the run is logged and nothing is
    registered. ``frame``: the local rows (the champion is scored on them for ``promote``)."""
    experiment_id = configure_mlflow(settings)
    client = MlflowClient()
    lineage = {
        PARENT_VERSION_TAG: parent_version,
        UPDATE_METHOD_TAG: update.method,
        UPDATE_DATA_TAG: data_sha256,
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}-update") as run:
        run_id = run.info.run_id
        mlflow.set_tags(
            {**lineage, "parent_model": name, "registered": str(update.model is not None).lower()}
        )
        mlflow.log_params(_update_params(name, parent_version, update, source, data_sha256))
        mlflow.log_metrics(_update_metrics(update))
        with tempfile.TemporaryDirectory() as tmp:
            parent_run = client.get_model_version(name, parent_version).run_id
            card = UpdateCard(
                update=update,
                name=name,
                parent_version=parent_version,
                source=source,
                data_sha256=data_sha256,
                run_id=run_id,
                lenrisk_version=_lenrisk_version(),
                parent_card=_parent_card(parent_run, Path(tmp) / "parent"),
            )
            if update.model is None:
                mlflow.log_text(card.markdown(), MODEL_CARD_ARTIFACT)
                return RegisteredUpdate(name, parent_version, None, (), run_id, None, update)
            _score_champion(client, name, frame, update.model.outcome, Path(tmp) / "champion")
            version, digest = _log_model(name, update.model, Path(tmp))
        card = dataclasses.replace(card, version=version, digest=digest)
        mlflow.log_text(card.markdown(), MODEL_CARD_ARTIFACT)
    client.update_model_version(name, version, description=card.description())
    tags = {
        DIGEST_TAG: digest,
        FAMILY_TAG: update.model.family,
        OUTCOME_TAG: update.model.outcome,
        RUN_TAG: run_id,
        **lineage,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    aliases = tuple(sorted(client.get_model_version(name, version).aliases))
    return RegisteredUpdate(name, parent_version, version, aliases, run_id, digest, update)


def _parent_card(run_id: str | None, folder: Path) -> str | None:
    """The parent's model card from its training run, or None if it has none."""
    if not run_id:
        return None
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=MODEL_CARD_ARTIFACT, dst_path=str(folder)
        )
    except MlflowException:
        return None
    return Path(path).read_text()


def _update_params(
    name: str, parent_version: str, update: Update, source: str, data_sha256: str
) -> dict[str, object]:
    closed = update.closed_test
    fit = closed.fit
    return {
        "parent_model": name,
        "parent_version": parent_version,
        "update_method": update.method,
        "update_method_name": METHOD_NAMES[update.method],
        "update_intercept": fit.intercept,
        "update_slope": fit.slope,
        "refit_offered": not closed.refit_not_offered,
        "refit_not_offered_because": closed.refit_not_offered or "-",
        "refit_candidate": closed.fits["refit"].candidate if "refit" in closed.fits else "-",
        "alpha": update.alpha,
        "bootstrap_resamples": update.n_boot,
        "source": source,
        "update_data_sha256": data_sha256,
        "n_rows": update.n_lines,
        "n_patients": update.n_patients,
        "events": update.events,
        "lenrisk_version": _lenrisk_version(),
    }


def _update_metrics(update: Update) -> dict[str, float]:
    """Each method's log-likelihood and LR statistic against the original model, every test of the closed
    procedure, and the validation of the procedure (``validated_*``, as for a trained model)."""
    closed = update.closed_test
    metrics = update.validation.flat()
    for method, fit in closed.fits.items():
        metrics[f"loglik_{method}"] = fit.log_likelihood
        metrics[f"parameters_{method}"] = fit.parameters
        metrics[f"lr_{method}_vs_none"] = 2 * (fit.log_likelihood - closed.fits["none"].log_likelihood)
    for t in closed.tests:
        prefix = f"lr_test_{t.method}_vs_{t.against}"
        metrics |= {f"{prefix}_statistic": t.statistic, f"{prefix}_df": t.df, f"{prefix}_p_value": t.p_value}
    return {k: float(v) for k, v in metrics.items()}
