"""The registered MLflow model, as *models from code*: this file is logged as the model's code.

MLflow copies this file and the ``features`` modules it imports (the record contract and the runtime model;
``training.registry.runtime_code``) into the logged model and runs it on load, so nothing is pickled: the
model's state is the native :class:`~features.model.riskmodel.RiskModel` directory (JSON + XGBoost
UBJSON) logged as the ``risk_model`` artifact, verified on load against the SHA-256 digest carried in the
model config (``model_config["digest"]``).

``predict`` takes contract rows (a DataFrame; ``patient_id``, ``crcl_ml_min`` and ``ecog`` may be absent)
and returns the calibrated ``probability``, its ``logit`` and the bounds of its 95% uncertainty interval,
``lower`` and ``upper`` (``RiskModel.interval``: NaN for a model registered without one and for rows
outside the training data), as float64 columns, one row per input row.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext
from scipy.special import expit

from features.errors import ContractError
from features.model.riskmodel import RiskModel
from features.validate import validate_table

#: Optional inputs filled in when absent: unknown renal function and ECOG; a placeholder patient id.
_OPTIONAL = ("crcl_ml_min", "ecog")
_SHOWN_ERRORS = 10


class RiskModelPyfunc(PythonModel):
    """Calibrated risk of one outcome for contract rows; invalid rows are refused, never guessed."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load and verify the native artifact (every file's SHA-256 and the recorded digest)."""
        self.model = RiskModel.load(
            Path(context.artifacts["risk_model"]), expected_digest=context.model_config["digest"]
        )

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """``probability`` (calibrated), ``logit``, ``lower`` and ``upper`` per row; :class:`ContractError`
        if any row is invalid.

        The error names the row, column and rule of each broken rule (the first few in the message, all in
        ``errors``), never a value.
        """
        rows = model_input.reset_index(drop=True)
        for name in _OPTIONAL:
            if name not in rows:
                rows[name] = np.nan
        if "patient_id" not in rows:
            rows["patient_id"] = [f"row {i}" for i in range(1, len(rows) + 1)]
        checked = validate_table(rows)
        if checked.errors:
            shown = "; ".join(str(e) for e in checked.errors[:_SHOWN_ERRORS])
            more = len(checked.errors) - _SHOWN_ERRORS
            raise ContractError(
                f"{len(checked.rejected)} of {checked.n_rows} rows break the record contract: {shown}"
                + (f"; and {more} more" if more > 0 else ""),
                checked.errors,
            )
        X = self.model.encode(checked.clean)
        logit = self.model.logit_of(X)
        lower, upper = self.model.interval(checked.clean, encoded=X, logit=logit)
        return pd.DataFrame(
            {"probability": expit(logit), "logit": logit, "lower": lower, "upper": upper}, dtype=np.float64
        )


mlflow.models.set_model(RiskModelPyfunc())
