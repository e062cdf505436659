"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.predictor import Predictor


class Metrics:
    """Request counts and latencies by route and status, loaded model versions, reload failures and whether
    the last load failed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
