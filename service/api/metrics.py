"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from features.drift_window import DriftWindow
from service.predictor import Prediction, Predictor


class Metrics:
    """Request counts and latencies by route and status, loaded model versions, reload failures, whether
    the last load failed, and input drift over the last ``drift_window`` scored records."""

    def __init__(self, drift_window: int = 1000) -> None:
        self.registry = CollectorRegistry()
        self.drift = DriftGauges(drift_window)
        self.registry.register(self.drift)
        self.requests = Counter(
            "lenrisk_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lenrisk_request_duration_seconds",
            "HTTP request latency by route and status",
            ["route", "status"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.model_version = Gauge(
            "lenrisk_model_version_info",
            "1 for each loaded model version",
            ["outcome", "name", "version"],
            registry=self.registry,
        )
        self.reload_failures = Counter(
            "lenrisk_model_reload_failures", "Model loads or reloads that failed", registry=self.registry
        )
        self.rate_limited = Counter(
            "lenrisk_rate_limited",
            "Requests refused with 429, by limit (client: a client's budget; failed_auth: an address's)",
            ["scope"],
            registry=self.registry,
        )
        self.reload_failing = Gauge(
            "lenrisk_model_reload_failing",
            "1 while the last model load or reload failed (the versions loaded before, if any, keep serving)",
            registry=self.registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one request and its latency."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route, str(status)).observe(seconds)

    def set_models(self, predictor: Predictor) -> None:
        """Expose the versions now served (and only those)."""
        self.model_version.clear()
        for outcome, loaded in predictor.models.items():
            self.model_version.labels(outcome, loaded.name, loaded.version).set(1)
        self.drift.set_models(predictor)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class DriftGauges(Collector):
    """Input drift of the last ``size`` scored records against the served models' development profile
    (:mod:`features.drift_window`), computed at each scrape. A window starts empty when the models change;
    models registered without a profile expose only ``lenrisk_drift_window_records`` at 0."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.window: DriftWindow | None = None

    def set_models(self, predictor: Predictor) -> None:
        """A new, empty window on the first outcome's development profile (both outcomes of one training
        share it)."""
        profile = next(iter(predictor.models.values())).model.profile
        self.window = None if profile is None else DriftWindow(profile, self.size)

    def observe(self, rows: Sequence[Mapping[str, Any]], predictions: Sequence[Prediction]) -> None:
        """Record scored rows: their bins and their applicability warnings (O(fields) per row)."""
        if self.window is not None:
            self.window.observe(rows, [p.warnings for p in predictions])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        window = self.window
        yield GaugeMetricFamily(
            "lenrisk_drift_window_records",
            "Scored records in the input-drift window (at most LENRISK_DRIFT_WINDOW)",
            value=0 if window is None else window.n,
        )
        if window is None or window.n == 0:
            return
        report = window.report()
        gauges = {
            "statistic": "Jensen-Shannon distance (base 2) of the window's distribution from development's",
            "threshold": "The statistic's threshold at this window size (Bonferroni-corrected null quantile)",
            "drifted": "1 when the statistic is above its threshold",
            "out_of_range_share": "Share of window records with the number outside the training range",
            "unseen_categories": "Window records with a category no training line had",
        }
        families = {
            k: GaugeMetricFamily(f"lenrisk_drift_{k}", text, labels=["field"]) for k, text in gauges.items()
        }
        for f in report.fields:
            families["statistic"].add_metric([f.field], f.value)
            families["threshold"].add_metric([f.field], f.threshold)
            families["drifted"].add_metric([f.field], float(f.drifted))
            if f.out_of_range_share is not None:
                families["out_of_range_share"].add_metric([f.field], f.out_of_range_share)
            if f.unseen_categories is not None:
                families["unseen_categories"].add_metric([f.field], sum(f.unseen_categories.values()))
        yield from families.values()
