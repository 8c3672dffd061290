"""Prometheus metrics: one registry per app, or, with several workers, prometheus_client's
multiprocess mode, so /metrics reports every worker's counts whichever worker answers."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# Set (by `forecaster serve --workers N`, or by whoever runs several workers) before the
# workers start: prometheus_client then keeps every value in per-process files there.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._collectors: list[Collector] = []
        self.requests = Counter(
            "forecaster_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "forecaster_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["route", "method"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.predictions = Counter(
            "forecaster_predictions",
            "Forecasts served, by model version",
            ["model_version"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "forecaster_model_reloads",
            "Model loads by outcome (loaded, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.source_errors = Counter(
            "forecaster_data_source_errors",
            "History loads that failed, by kind (not_found, unavailable, invalid)",
            ["kind"],
            registry=self.registry,
        )
        self.forward_batch = Histogram(
            "forecaster_forward_batch_size",
            "Client-history forecasts per forward pass (micro-batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.log_rows = Counter(
            "forecaster_prediction_log_rows",
            "Prediction log rows by outcome: written; dropped (queue full); failed (write error)",
            ["outcome"],
            registry=self.registry,
        )

    def add_collector(self, collector: Collector) -> None:
        """A collector computed at scrape time (the live scores), in either mode."""
        self._collectors.append(collector)
        self.registry.register(collector)

    def exposition(self) -> bytes:
        """The /metrics body: this process's registry, or all workers' files aggregated."""
        directory = os.environ.get(MULTIPROC_DIR)
        if not directory:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        for collector in self._collectors:
            registry.register(collector)
        return generate_latest(registry)
