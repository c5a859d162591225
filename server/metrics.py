"""Prometheus metrics of the gateway, on a registry of its own (one per app instance).

Exposed at ``GET /metrics``: requests by route and status, a latency histogram by route,
time to first token of streams, prompt and completion tokens, errors by type, engine state.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)


class GatewayMetrics:
    """The gateway's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "perennial_requests", "HTTP requests.", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "perennial_request_latency_seconds",
            "Request latency (to the last byte).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "perennial_time_to_first_token_seconds",
            "Streaming: time to the first chunk.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("perennial_tokens", "Tokens processed.", ["kind"], registry=r)
        self.errors = Counter("perennial_errors", "Errors answered, by type.", ["type"], registry=r)
        self.engine_up = Gauge(
            "perennial_engine_up", "1 when at least one serving replica is ready.", registry=r
        )
        self.replica_up = Gauge(
            "perennial_replica_up", "1 when the replica is ready and in rotation.", ["replica"], registry=r
        )
        self.replica_outstanding = Gauge(
            "perennial_replica_outstanding", "Requests outstanding on the replica.", ["replica"], registry=r
        )
        self.replica_requests = Gauge(
            "perennial_replica_requests", "Requests the replica answered.", ["replica"], registry=r
        )
        self.replica_retried_away = Gauge(
            "perennial_replica_retried_away",
            "Requests that could not reach the replica and went to another.",
            ["replica"],
            registry=r,
        )
        self.disk_free = Gauge(
            "perennial_data_disk_free_bytes",
            "Free bytes on the file system of the data directory.",
            registry=r,
        )
        self.engine_restarts = Gauge(
            "perennial_engine_restarts", "Restarts of the serving replicas (all together).", registry=r
        )
        self.chats_in_flight = Gauge(
            "perennial_chats_in_flight", "Chat completions being served now.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
