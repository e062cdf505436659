"""What the service's drift window adds to a prediction: ``Predictor.predict_rows`` of one record, with and
without recording it in a :class:`features.drift_window.DriftWindow`, interleaved in one process so that
machine load affects both alike.

Trains a logistic model of each outcome on ``--n`` synthetic lines (no bootstrap), then times ``--reps``
rounds of each path and prints the medians per request and the added share. Results: docs/monitor.md.

Usage::

    .venv/bin/python benchmarks/drift_window_cost.py [--n 3000] [--reps 3000] [--window 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

from features.bands import RiskBands
from features.drift import DriftProfile
from features.drift_window import DriftWindow
from features.encoding import FEATURE_NAMES, FeatureEncoder
from features.model.riskmodel import RiskModel
from features.record import EXAMPLE_RECORD, PatientRecord
from features.schema import OUTCOMES
from features.validate import validate_table
from service.predictor import LoadedModel, Predictor
from training.cohort.generate import generate_cohort
from training.estimators import LinearSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=3000)
    parser.add_argument("--window", type=int, default=1000)
    args = parser.parse_args()

    frame = validate_table(generate_cohort(args.n, 5), require_outcomes=True).clean
    encoder = FeatureEncoder().fit(frame)
    X = encoder.transform(frame)
    models = {}
    for outcome, column in OUTCOMES.items():
        estimator, calibrator = LinearSpec("full", FEATURE_NAMES).fit(X, frame[column].to_numpy())
        models[outcome] = LoadedModel(outcome, "1", RiskModel(outcome, encoder, estimator, calibrator))
    predictor = Predictor(models, {o: RiskBands(0.2, 0.4) for o in models})
    window = DriftWindow(DriftProfile.of(frame), args.window)
    row = {
        k: v for k, v in PatientRecord.model_validate(EXAMPLE_RECORD).to_row().items() if k != "patient_id"
    }

    def plain() -> None:
        predictor.predict_rows([row])

    def recorded() -> None:
        predictions = predictor.predict_rows([row])
        window.observe([row], [p.warnings for p in predictions])

    times: dict[str, list[float]] = {"predict": [], "predict + drift window": []}
    for _ in range(args.reps):
        for name, call in (("predict", plain), ("predict + drift window", recorded)):
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["predict"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name}: median {median * 1e6:.0f} µs per request ({median / base - 1:+.1%})")


if __name__ == "__main__":
    main()
