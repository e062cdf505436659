"""Outcome monitoring: windows, the alert rule and its false alarm rate, the suggested update, and how
labelled predictions are read, joined and rejected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from training.labelled_predictions import REASONS, OutcomeRows, load_labelled
from training.outcome_monitoring import (
    IN_THE_LARGE,
    LOGISTIC,
    RecalibrationTest,
    monitor,
    monitor_outcome,
    window_bounds,
)


@pytest.fixture(scope="module")
def models():
    from tests.outcome_stream import fit_models

    return fit_models()


def _rows(p: np.ndarray, y: np.ndarray) -> OutcomeRows:
    return OutcomeRows("discontinuation", p, y.astype(np.int8), np.arange(1, len(y) + 1), None, len(y), 0, 0)


def test_windows_cover_the_stream_and_the_last_ends_at_the_newest_row():
    assert window_bounds(1000, 500, 200) == [(0, 500), (200, 700), (400, 900), (500, 1000)]
    assert window_bounds(1000, 500, 250) == [(0, 500), (250, 750), (500, 1000)]
    assert window_bounds(300, 500, 250) == [(0, 300)]
    assert window_bounds(0, 500, 250) == []
    with pytest.raises(ValueError, match="at least 1"):
        window_bounds(10, 0, 1)


def test_the_statistic_is_coxs_score_test_computed_directly():
    """Per window, U' I^-1 U with U and I written out as matrices; constant risks: (O - E)^2 / sum p(1-p)."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.8, 900)
    y = (rng.random(900) < expit(logit(p) * 0.7 + 0.3)).astype(float)
    bounds = [(0, 400), (300, 700), (500, 900)]
    got = RecalibrationTest(p, bounds).statistic(y)
    for (a, b), stat in zip(bounds, got, strict=True):
        X = np.column_stack([np.ones(b - a), logit(p[a:b])])
        u = X.T @ (y[a:b] - p[a:b])
        info = X.T @ (X * (p[a:b] * (1 - p[a:b]))[:, None])
        assert stat == pytest.approx(u @ np.linalg.solve(info, u), rel=1e-9)
    flat = np.full(200, 0.3)
    y_flat = (rng.random(200) < 0.4).astype(float)
    expected = (y_flat.sum() - 60) ** 2 / (200 * 0.3 * 0.7)
    assert RecalibrationTest(flat, [(0, 200)]).statistic(y_flat)[0] == pytest.approx(expected)


def test_the_critical_value_holds_the_false_alarm_rate_over_all_windows_of_a_stream():
    """400 streams of 3,000 rows drawn from calibrated risks, windows of 500 every 100: the run alerts
    (largest window above the critical value) in about 5% of streams; the per-window 95% chi-square rule,
    which ignores the 26 overlapping windows, alerts in far more."""
    rng = np.random.default_rng(1)
    p = expit(rng.normal(-0.8, 0.9, 3000))
    test = RecalibrationTest(p, window_bounds(3000, 500, 100))
    critical = np.quantile(test.simulated_maxima(2000, seed=2), 0.95)
    maxima = np.concatenate(
        [test.statistic((rng.random((100, 3000)) < p).astype(float)).max(1) for _ in range(4)]
    )
    assert 0.025 <= (maxima > critical).mean() <= 0.08
    assert (maxima > 5.991).mean() > 0.4  # chi-square(2) 95% per window: 52.5% of runs alert falsely
    assert critical > 9


def test_a_shifted_second_half_alerts_and_suggests_recalibration_in_the_large(models, tmp_path):
    """2,000 default lines then 2,000 with both intercepts moved by +0.7 log-odds: no window of the first half
    alerts, every window of the second half does, and the update is a new intercept."""
    from tests.outcome_stream import scored_stream

    stream = scored_stream(models, (2000, 2000), (0.0, 0.7), seed=5)
    stream.to_csv(tmp_path / "s.csv", index=False)
    result = monitor(load_labelled(tmp_path / "s.csv"))
    for name, o in result.outcomes.items():
        first = [w.alert for w in o.windows if w.last_row <= 2000]
        second = [w.alert for w in o.windows if w.first_row > 2000]
        assert len(first) == len(second) == 7 and not any(first) and all(second), name
        assert o.suggestion.method == IN_THE_LARGE and o.suggestion.window == len(o.windows) - 1
        assert all(w.observed_expected.lower > 1.2 for w in o.windows if w.first_row > 2000)
    assert result.alert


def test_an_unshifted_stream_does_not_alert(models, tmp_path):
    from tests.outcome_stream import scored_stream

    scored_stream(models, (4000,), (0.0,), seed=6).to_csv(tmp_path / "s.csv", index=False)
    result = monitor(load_labelled(tmp_path / "s.csv"))
    assert not result.alert and len(result.outcomes["dose_reduction"].windows) == 15
    assert all(o.suggestion is None for o in result.outcomes.values())


def test_overconfident_risks_alert_and_suggest_logistic_recalibration():
    """Outcomes drawn with half the risks' log-odds (calibration slope 0.5, O:E near 1): the 2-df test sees
    what O:E cannot, and the slope's interval excluding 1 calls for a new slope too."""
    rng = np.random.default_rng(3)
    p = expit(rng.normal(-0.5, 1.5, 2000))
    y = (rng.random(2000) < expit(0.5 * logit(p) - 0.25)).astype(int)
    o = monitor_outcome(_rows(p, y), window=1000, step=500, level=0.975, simulations=500, seed=0)
    assert all(w.alert for w in o.windows)
    assert all(w.calibration_slope.upper < 0.75 for w in o.windows)
    assert o.suggestion.method == LOGISTIC


def _write(frame: pd.DataFrame, path):
    frame.to_csv(path, index=False)
    return path


def test_unknown_outcomes_are_skipped_and_unusable_rows_rejected_with_reasons(tmp_path):
    frame = pd.DataFrame(
        {
            "patient_id": ["A", "B", "C", "D", "E", "F"],
            "risk_discontinuation": ["0.2", "0.3", "abc", "1.5", "0.4", "0.5"],
            "risk_dose_reduction": ["0.1", "0.2", "0.3", "0.4", "", "0.6"],
            "discontinued_toxicity": ["1", "", "0", "1", "2", "0"],
            "dose_reduced": ["0", "1", " ", "1", "1", "yes"],
        }
    )
    labelled = load_labelled(_write(frame, tmp_path / "f.csv"))
    d, r = labelled.outcomes["discontinuation"], labelled.outcomes["dose_reduction"]
    assert (d.used, d.unlabelled, d.rejected) == (2, 1, 3) and list(d.row_numbers) == [1, 6]
    assert (r.used, r.unlabelled, r.rejected) == (3, 1, 2) and list(r.y) == [0, 1, 1]
    assert [(e.row_number, e.column, e.reason) for e in labelled.rejects] == [
        (3, "risk_discontinuation", REASONS["risk"]),
        (4, "risk_discontinuation", REASONS["risk"]),
        (5, "discontinued_toxicity", REASONS["label"]),
        (5, "risk_dose_reduction", REASONS["risk"]),
        (6, "dose_reduced", REASONS["label"]),
    ]
    assert labelled.reasons == {REASONS["risk"]: 3, REASONS["label"]: 2}


def test_a_join_by_key_matches_the_outcomes_and_counts_what_did_not_match(tmp_path):
    predictions = pd.DataFrame(
        {
            "patient_id": ["P1"] * 6,
            "line_id": ["L1", "L2", "L3", "L4", "L4", ""],
            "risk_discontinuation": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "risk_dose_reduction": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "discontinued_toxicity": [0, 0, 0, 0, 0, 0],  # replaced by the outcomes file's
        }
    )
    outcomes = pd.DataFrame(
        {
            "line_id": ["L2", "L1", "L3", "L3", "L9", "L4", ""],
            "discontinued_toxicity": ["1", "", "1", "0", "1", "1", "1"],
        }
    )
    labelled = load_labelled(
        _write(predictions, tmp_path / "p.csv"), _write(outcomes, tmp_path / "o.csv"), key=["line_id"]
    )
    assert list(labelled.outcomes) == ["discontinuation"]
    d = labelled.outcomes["discontinuation"]
    assert list(d.row_numbers) == [2] and list(d.y) == [1]  # L1 not yet known; L3, L4 and "" rejected
    assert (d.used, d.unlabelled, d.rejected) == (1, 1, 4)
    assert labelled.join == {
        "rows_without_outcomes": 0,
        "outcome_rows_unmatched": 1,
        "outcome_rows_repeated_key": 2,
        "outcome_rows_empty_key": 1,
    }
    assert labelled.reasons == {
        REASONS["key_labels"]: 1,
        REASONS["key_predictions"]: 2,
        REASONS["key_empty"]: 1,
    }


def test_order_by_a_date_column_sorts_the_rows_and_rejects_rows_without_a_date(models, tmp_path):
    from tests.outcome_stream import scored_stream

    stream = scored_stream(models, (1200,), (0.0,), seed=7)
    shuffled = stream.sample(frac=1, random_state=0).reset_index(drop=True)
    shuffled.loc[5, "started"] = "not a date"
    labelled = load_labelled(_write(shuffled, tmp_path / "s.csv"), order_by="started")
    d = labelled.outcomes["discontinuation"]
    assert d.rejected == 1 and labelled.reasons == {REASONS["order"]: 1}
    expected = stream[stream["line_id"] != shuffled.loc[5, "line_id"]]
    assert list(shuffled.loc[d.row_numbers - 1, "line_id"]) == list(expected["line_id"])
    windows = monitor(labelled, window=500, step=500, simulations=200).outcomes["discontinuation"].windows
    assert (windows[0].start, windows[0].end) == ("2025-01-01", expected["started"].iloc[499])


def test_a_file_that_is_not_scored_is_refused(tmp_path):
    from features.errors import FileFormatError

    path = _write(pd.DataFrame({"patient_id": ["A"], "discontinued_toxicity": [1]}), tmp_path / "x.csv")
    with pytest.raises(FileFormatError, match="missing risk_discontinuation, risk_dose_reduction"):
        load_labelled(path)


def test_a_join_can_order_by_a_column_of_the_outcomes_file(tmp_path):
    predictions = pd.DataFrame({"line_id": ["L1", "L2", "L3"], "risk_discontinuation": [0.1, 0.2, 0.3]})
    predictions["risk_dose_reduction"] = 0.5
    outcomes = pd.DataFrame(
        {
            "line_id": ["L1", "L2", "L3"],
            "dose_reduced": [1, 0, 1],
            "recorded": ["2025-03-01", "2025-01-01", ""],
        }
    )
    labelled = load_labelled(
        _write(predictions, tmp_path / "p.csv"), _write(outcomes, tmp_path / "o.csv"), key=["line_id"],
        order_by="recorded",
    )  # fmt: skip
    r = labelled.outcomes["dose_reduction"]
    assert list(r.row_numbers) == [2, 1] and list(r.y) == [0, 1] and r.rejected == 1


def test_an_outcome_with_no_label_yet_has_no_window_and_no_alert(tmp_path):
    frame = pd.DataFrame(
        {"risk_discontinuation": [0.2] * 3, "risk_dose_reduction": [0.3] * 3, "dose_reduced": ["", "", ""]}
    )
    result = monitor(load_labelled(_write(frame, tmp_path / "f.csv")), simulations=100)
    o = result.outcomes["dose_reduction"]
    assert (o.windows, o.suggestion, o.rows.unlabelled, result.alert) == ([], None, 3, False)
    assert list(result.outcomes) == ["dose_reduction"]  # no discontinued_toxicity column: not monitored
