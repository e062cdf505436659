"""False alarm rate and power of ``lenrisk monitor --labels`` (outcome monitoring) on generated streams.

Both models are logistic ``RiskModel`` s fitted on 4,000 lines of the default population
(``tests/outcome_stream.py``). Each stream is ``--lines`` new lines, scored, with outcomes, run through the
command's own path (file read, windows of ``--window`` every ``--step``, alert rule, 2,000 simulations):

* ``unshifted, generator outcomes``: new default lines with the generator's outcomes. An alert here is a
  false alarm as a user sees it (it includes the fitted models' own small miscalibration).
* ``unshifted, outcomes from the risks``: the same lines with outcomes drawn from the models' own risks,
  the null the rule is built for (nominal rate: 5% per run).
* ``shifted +0.7 / +0.3 from the middle``: the second half's intercepts moved (``shifted(log_odds=...)``):
  power, and how many lines after the shift the first alerting window ends.

Prints one line per scenario: runs, runs alerting (either outcome) with a Wilson 95% interval, and for the
shifted ones the median delay. Results: docs/monitor-labels.md.

Usage::

    .venv/bin/python benchmarks/outcome_monitoring_false_alarms.py [--streams 200] [--lines 4000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from statsmodels.stats.proportion import proportion_confint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.schema import OUTCOMES  # noqa: E402
from tests.outcome_stream import fit_models, scored_stream  # noqa: E402
from training.labelled_predictions import load_labelled  # noqa: E402
from training.outcome_monitoring import monitor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--shifted-streams", type=int, default=50)
    parser.add_argument("--lines", type=int, default=4000)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--step", type=int, default=250)
    args = parser.parse_args()
    models = fit_models()
    half = args.lines // 2
    scenarios = [
        ("unshifted, generator outcomes", args.streams, (args.lines,), (0.0,), False),
        ("unshifted, outcomes from the risks", args.streams, (args.lines,), (0.0,), True),
        ("shifted +0.3 from the middle", args.shifted_streams, (half, half), (0.0, 0.3), False),
        ("shifted +0.7 from the middle", args.shifted_streams, (half, half), (0.0, 0.7), False),
    ]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stream.csv"
        for name, runs, sizes, shifts, from_risks in scenarios:
            started, alerts, delays = time.perf_counter(), 0, []
            for seed in range(runs):
                stream = scored_stream(models, sizes, shifts, seed=10_000 + seed)
                if from_risks:
                    for outcome, column in OUTCOMES.items():
                        stream[column] = (rng.random(len(stream)) < stream[f"risk_{outcome}"]).astype(int)
                stream.to_csv(path, index=False)
                result = monitor(load_labelled(path), window=args.window, step=args.step)
                alerts += result.alert
                ends = [
                    w.last_row for o in result.outcomes.values() for w in o.alerts if w.last_row > sizes[0]
                ]
                if len(sizes) > 1 and ends:
                    delays.append(min(ends) - sizes[0])
            low, high = proportion_confint(alerts, runs, method="wilson")
            delay = f"; median delay {np.median(delays):.0f} lines after the shift" if delays else ""
            print(
                f"{name}: {alerts}/{runs} runs alert ({alerts / runs:.1%}, 95% CI {low:.1%} to {high:.1%})"
                f"{delay} [{time.perf_counter() - started:.0f}s]",
                flush=True,
            )


if __name__ == "__main__":
    main()
