"""Scoring one chunk of an input file: validate every row against the contract, score the valid ones.

Valid rows are scored by :class:`service.predictor.Predictor`, the object behind ``/v1/predict``: same
encoding, calibration, applicability flags and explanations. The output rows are the input columns
unchanged, then the score columns (:func:`score_schema`); every broken rule of a rejected row is one line of
the rejects (:data:`REJECT_SCHEMA`). With ``interval``, each outcome's risk is followed by the bounds of its
uncertainty interval (:meth:`Predictor.intervals`, the API's), null where there is none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import expit

from features.errors import RowError
from features.schema import OUTCOME_COLUMNS, OUTCOMES, RECORD_NAMES
from features.validate import validate_table
from service.batch.explain import Explain
from service.predictor import FIELDS, Predictor

if TYPE_CHECKING:
    from service.batch.read import Chunk

TOP_K = 3
REJECT_SCHEMA = pa.schema(
    [
        ("row_number", pa.int64()),
        ("patient_id", pa.string()),
        ("column", pa.string()),
        ("reason", pa.string()),
    ]
)
#: A dataset row's identity, in its output and its rejects: the input file (relative to the input folder)
#: and the row's number in that file.
IDENTITY_SCHEMA = pa.schema([("input_file", pa.string()), ("row_number", pa.int64())])
_VALIDATED = (*RECORD_NAMES, *(c.name for c in OUTCOME_COLUMNS))  # outcomes are checked when present


def score_schema(explain: Explain, *, interval: bool = False) -> pa.Schema:
    """The columns scoring appends to the input's, in order."""
    fields = [(f"risk_{o}", pa.float64()) for o in OUTCOMES]
    if interval:
        fields += [(f"{o}_{bound}", pa.float64()) for o in OUTCOMES for bound in ("lower", "upper")]
    fields += [(f"model_version_{o}", pa.string()) for o in OUTCOMES]
    fields.append(("applicability", pa.string()))
    for o in OUTCOMES:
        if explain is Explain.TOP3:
            for k in range(1, TOP_K + 1):
                fields += [(f"{o}_top{k}_feature", pa.string()), (f"{o}_top{k}_contribution", pa.float64())]
        elif explain is Explain.ALL:
            fields += [(f"shap_{o}_base", pa.float64())] + [(f"shap_{o}_{f}", pa.float64()) for f in FIELDS]
    return pa.schema(fields)


def output_schema(input_schema: pa.Schema, explain: Explain, *, interval: bool = False) -> pa.Schema:
    """Input columns unchanged, then the score columns."""
    return pa.schema([*input_schema, *score_schema(explain, interval=interval)])


@dataclass(frozen=True)
class Scored:
    """One chunk scored: output rows (input columns, then scores), reject lines, and its row counts."""

    output: pa.RecordBatch
    rejects: pa.RecordBatch
    rows: int  # rows of the chunk, scored or rejected
    rejected: int  # rows rejected (a row breaking three rules has three reject lines)
    row_numbers: np.ndarray  # int64, the row number of each output row


def score_chunk(
    predictor: Predictor, chunk: Chunk, explain: Explain, schema: pa.Schema, *, interval: bool = False
) -> Scored:
    """Validate a chunk against the contract, score its valid rows, and collect a reject line per broken rule.

    ``schema`` is :func:`output_schema` of the input (with the same ``interval``). Reject lines are ordered
    by row, then contract column.
    """
    batch = chunk.batch
    frame = batch.select([name for name in _VALIDATED if name in batch.schema.names]).to_pandas(
        split_blocks=True  # one array per column: no copy into 2-D blocks
    )
    validation = validate_table(frame)
    errors = [replace(e, row_number=int(chunk.row_numbers[e.row_number - 1])) for e in validation.errors]
    numbers = chunk.row_numbers
    if validation.rejected.size:
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[validation.rejected] = False
        batch, numbers = batch.filter(pa.array(keep)), numbers[keep]
    scores = score_columns(predictor, validation.clean, explain, interval=interval)
    lines = pa.concat_batches([reject_batch(errors), chunk.unsplit])
    lines = lines.take(np.argsort(lines.column(0).to_numpy(), kind="stable"))  # keeps column order
    return Scored(
        output=pa.RecordBatch.from_arrays([*batch.columns, *scores], schema=schema),
        rejects=lines,
        rows=chunk.batch.num_rows + chunk.unsplit.num_rows,
        rejected=int(validation.rejected.size) + chunk.unsplit.num_rows,
        row_numbers=numbers,
    )


def score_columns(
    predictor: Predictor, clean: pd.DataFrame, explain: Explain, *, interval: bool = False
) -> list[pa.Array]:
    """The :func:`score_schema` columns for validated rows, from the same predictor calls as the API."""
    n = len(clean)
    if n == 0:
        return [pa.array([], type=f.type) for f in score_schema(explain, interval=interval)]
    encoded = predictor.encode(clean)
    if explain is Explain.NONE:
        logits, explained = predictor.logits(clean, encoded=encoded), {}
    else:
        explained = predictor.explain_columns(clean, encoded=encoded)
        logits = {o: explanation.logit for o, (explanation, _) in explained.items()}
    arrays = [pa.array(expit(logits[o]), pa.float64()) for o in OUTCOMES]
    if interval:
        bounds = predictor.intervals(clean, encoded=encoded, logits=logits)
        arrays += [
            pa.array(b, pa.float64(), from_pandas=True) for o in OUTCOMES for b in bounds[o]
        ]  # NaN: null
    arrays += [pa.repeat(pa.scalar(predictor.models[o].version, pa.string()), n) for o in OUTCOMES]
    arrays.append(predictor.applicability_flags(clean))
    names = pa.array(FIELDS, pa.string())
    for o in OUTCOMES if explained else ():
        explanation, grouped = explained[o]
        if explain is Explain.TOP3:
            order = np.argsort(-np.abs(grouped), axis=1, kind="stable")[:, :TOP_K]  # as the API orders them
            top = np.take_along_axis(grouped, order, axis=1)
            for k in range(TOP_K):
                arrays += [names.take(pa.array(order[:, k])), pa.array(top[:, k])]
        else:
            arrays.append(pa.array(np.full(n, explanation.base)))
            arrays += [pa.array(column) for column in np.ascontiguousarray(grouped.T)]
    return arrays


def reject_batch(errors: list[RowError]) -> pa.RecordBatch:
    """Reject lines as a :data:`REJECT_SCHEMA` batch."""
    return pa.RecordBatch.from_arrays(
        [
            pa.array([e.row_number for e in errors], pa.int64()),
            pa.array([e.patient_id for e in errors], pa.string()),
            pa.array([e.column for e in errors], pa.string()),
            pa.array([e.reason for e in errors], pa.string()),
        ],
        schema=REJECT_SCHEMA,
    )
