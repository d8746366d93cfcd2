"""Liveness (/healthz), readiness (/readyz) and Prometheus metrics (/metrics).

Under gunicorn each worker is a process, so when ``PROMETHEUS_MULTIPROC_DIR`` is set (the production
gunicorn config sets it) metrics are written to that folder and /metrics aggregates every worker.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from service.errors import NotReady
from service.state import get_state

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

bp = Blueprint("health", __name__)


class Metrics:
    """The service's Prometheus metrics, in a registry of their own (one per app instance)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "credit_decision_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "credit_decision_http_request_duration_seconds",
            "HTTP request latency by method and route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "credit_decision_decisions",
            "Decisions made, by outcome and risk band",
            ["decision", "risk_band"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The text exposition of every worker's metrics (or this process's when not under gunicorn)."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def _start_timer() -> None:
    g.credit_decision_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("credit_decision_started", None)
    route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    metrics = get_state().metrics
    metrics.requests.labels(request.method, route, str(response.status_code)).inc()
    if started is not None:
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
    return response


@bp.get("/healthz")
def healthz() -> dict[str, Any]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> dict[str, Any]:
    """Readiness: the model passed its startup self-check and the decision store is open."""
    state = get_state()
    if not state.ready or state.model is None:
        raise NotReady(state.not_ready_reason, headers={"Retry-After": "5"})
    info = state.model.info
    return {"status": "ready", "model": info.to_dict(), "spec_version": info.spec_version}


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics."""
    return Response(get_state().metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Register the blueprint and the request-metrics hooks."""
    app.register_blueprint(bp)
    app.before_request(_start_timer)
    app.after_request(_observe)
