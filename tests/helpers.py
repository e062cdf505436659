"""Plain helpers the tests share (no fixtures): ``from tests.helpers import same_scores``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from features.schema import COMORBIDITY_COLUMNS, REGIMENS, SETTINGS

if TYPE_CHECKING:
    import pandas as pd

#: The repository root (tests/ is one level below it).
REPO_ROOT = Path(__file__).resolve().parents[1]
TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"

#: Bootstrap resamples of the tests' trainings: enough to exercise the validation, few enough to be quick
#: (training uses 200; the statistical tests that need more say so).
N_BOOT = 20


def same_scores(a, b) -> None:
    """Two scored Arrow tables are equal, column by column, bit for bit (also the explanations: every
    step of scoring is row by row, whatever the batch size or engine)."""
    assert a.schema == b.schema
    for name in a.column_names:
        assert a[name].equals(b[name]), name


def registry_service_settings(registry: dict, audit_url: str, **fields):
    """``ServiceSettings`` reading the session's registry (the ``registry`` fixture), its tracking URI pinned.

    ``mlflow.set_tracking_uri`` (called whenever a test trains and registers) exports MLFLOW_TRACKING_URI,
    which ServiceSettings prefers over ``mlruns_dir``: without the explicit URI the app would load the
    models of whichever store was configured last in this process.
    """
    from service.settings import ServiceSettings

    return ServiceSettings(
        mlruns_dir=registry["root"],
        mlflow_tracking_uri=registry["settings"].tracking_uri,
        audit_url=audit_url,
        **fields,
    )


@contextlib.contextmanager
def tracking_uri_variable_kept() -> Iterator[None]:
    """``MLFLOW_TRACKING_URI`` as it was on entry, again on exit (set to that value, or unset).

    ``mlflow.set_tracking_uri`` exports the variable (training and registering call it), so anything that
    registers would otherwise point every later ``ServiceSettings()`` and subprocess at its store, perhaps a
    PostgreSQL database dropped since.
    """
    saved = os.environ.get(TRACKING_URI_VARIABLE)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(TRACKING_URI_VARIABLE, None)
        else:
            os.environ[TRACKING_URI_VARIABLE] = saved


def frame_with_known_effects(n: int, seed: int) -> pd.DataFrame:
    """Contract rows with a known age and triplet effect on the outcome ``y`` (two lines per patient)."""
    import numpy as np
    import pandas as pd
    from scipy.special import expit

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "patient_id": [f"P{i // 2}" for i in range(n)],
            "age": rng.normal(64, 10, n).clip(18, 100),
            "sex": rng.choice(["female", "male"], n),
            "regimen": rng.choice(REGIMENS, n),
            "setting": rng.choice(SETTINGS, n),
            "start_dose_mg": rng.choice([5.0, 10.0, 15.0, 25.0], n),
            "crcl_ml_min": np.where(rng.random(n) < 0.05, np.nan, rng.normal(70, 20, n).clip(5, 250)),
            "dialysis": (rng.random(n) < 0.03).astype(int),
            "ecog": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 3, n)),
            "prior_lines": rng.integers(0, 4, n),
            **{c: (rng.random(n) < 0.1).astype(int) for c in COMORBIDITY_COLUMNS},
        }
    )
    triplet = frame["regimen"].isin(["RCd", "RVd", "KRd", "DRd", "IRd", "ERd", "MPR"])
    frame["y"] = (rng.random(n) < expit(-1.5 + 0.08 * (frame["age"] - 62) + 1.2 * triplet)).astype(int)
    return frame
