"""The predictor's uncertainty interval per outcome, from the registered models (session registry): the
kernel's interval for the record, and none where an applicability warning says the risk is extrapolated."""

from __future__ import annotations

import pytest

from features.model.riskmodel import INTERVAL_LEVEL

pytestmark = pytest.mark.slow


def _kinds(prediction) -> set[str]:
    return {w["kind"] for w in prediction.warnings}


def test_every_outcome_carries_the_kernels_interval(predictor, row):
    [prediction] = predictor.predict_rows([row])
    assert not _kinds(prediction) & {"outside_training_range", "not_seen_in_training"}
    for outcome, answer in prediction.outcomes.items():
        assert answer.model.model.has_interval
        lower, upper, level = answer.interval
        assert level == INTERVAL_LEVEL == 0.95
        assert 0 < lower < answer.probability < upper < 1
        assert upper - lower < 0.5  # 2,000 lines: informative, not the whole scale
        model, columns = answer.model.model, {k: [v] for k, v in row.items()}
        # Centred on the served risk's own logit (the explanation's), passed rather than recomputed ...
        logit = model.explain(columns).logit
        kernel = model.interval(columns, logit=logit)
        assert (lower, upper) == (kernel[0][0], kernel[1][0]), outcome
        # ... which is the kernel's interval computing it itself, within rounding.
        alone = model.interval(columns)
        assert (lower, upper) == pytest.approx((alone[0][0], alone[1][0]), rel=1e-12, abs=0), outcome


def test_no_interval_where_the_risk_is_extrapolated(predictor, row):
    older = {**row, "age": predictor.models["discontinuation"].model.encoder.ranges_["age"]["max"] + 2}
    unseen = {**row, "setting": "maintenance"}  # the session's models never saw maintenance
    unknown = {**row, "crcl_ml_min": None}  # imputed as in training: still an interval
    older_p, unseen_p, unknown_p = predictor.predict_rows([older, unseen, unknown])
    assert "outside_training_range" in _kinds(older_p) and "not_seen_in_training" in _kinds(unseen_p)
    for prediction in (older_p, unseen_p):
        assert all(answer.interval is None for answer in prediction.outcomes.values())
        assert all(0 < answer.probability < 1 for answer in prediction.outcomes.values())
    assert all(answer.interval is not None for answer in unknown_p.outcomes.values())
