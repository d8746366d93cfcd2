"""Prometheus metrics of one app instance, in a registry of their own (never module globals).

The prometheus_client metrics are safe to update from several threads (they lock), and the busy-time
accounting takes a lock of its own, so request threads of a gthread worker share one instance.

Under gunicorn each worker is a process, so when ``PROMETHEUS_MULTIPROC_DIR`` is set (the production
gunicorn config sets it) metrics are written to that folder and the exposition aggregates every worker.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from service.core.recorded import RecordedDecision

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Series:
    """A labelled metric's children, each looked up once per label values (``labels()`` costs several times the
    ``inc()``/``observe()`` it precedes). Safe across request threads: a race at worst looks a child up twice, and
    prometheus_client hands out the same child."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class Metrics:
    """Request counts and latencies by route, decisions by outcome and band, reason codes given."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
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
        # bounded labels: codes come from the reason catalogs, decisions are three
        self.reasons = Counter(
            "credit_decision_reasons",
            "Reason codes given, by code and decision (each code once per decision; an alert on a code's share of "
            "declines and referrals: rate of the code's refer+decline series over the decisions' refer+decline)",
            ["code", "decision"],
            registry=self.registry,
        )
        self.request_series, self.latency_series = Series(self.requests), Series(self.latency)
        self._decision_series, self._reason_series = Series(self.decisions), Series(self.reasons)

        self.shadow_decisions = Counter(
            "credit_decision_shadow_decisions",
            "Shadow decisions recorded, by kind (challenger, policy)",
            ["kind"],
            registry=self.registry,
        )
        self.shadow_skipped = Counter(
            "credit_decision_shadow_skipped",
            "Live requests not shadowed, by kind and reason (queue_full: the shadow fell behind; busy: the worker was busy and the shadow had used its CPU share; error)",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.shadow_queue = Gauge(
            "credit_decision_shadow_queue_depth",
            "Live requests waiting for their shadow decisions",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.switches = Counter(
            "credit_decision_serving_switches",
            "Times this worker switched what it serves (champion or shadows)",
            registry=self.registry,
        )

        # Wall time during which at least one request was in progress in this process (the shadow's CPU budget
        # reads it: busy or not). With several request threads, overlapping requests count once, so it never
        # runs ahead of the clock; a lock keeps the count exact between threads.
        self._busy_lock = threading.Lock()
        self._in_flight = 0
        self._busy_since = 0.0
        self._busy_total = 0.0
        self._clock = clock

    # ---- requests in progress ----------------------------------------------------------------------
    def request_started(self) -> None:
        """A request of this process started (any thread)."""
        with self._busy_lock:
            if self._in_flight == 0:
                self._busy_since = self._clock()
            self._in_flight += 1

    def request_finished(self) -> None:
        """A request started with :meth:`request_started` finished."""
        with self._busy_lock:
            if self._in_flight == 0:
                return
            self._in_flight -= 1
            if self._in_flight == 0:
                self._busy_total += self._clock() - self._busy_since

    @property
    def busy_seconds(self) -> float:
        """Seconds of wall time this process spent with at least one request in progress, up to now."""
        with self._busy_lock:
            running = self._clock() - self._busy_since if self._in_flight else 0.0
            return self._busy_total + running

    # ---- hooks of the decision service, the shadow runner and the serving watcher ------------------
    def shadowed(self, kind: str, n: int) -> None:
        """``n`` shadow decisions of ``kind`` were recorded."""
        self.shadow_decisions.labels(kind).inc(n)

    def skipped(self, kind: str, reason: str, n: int) -> None:
        """``n`` requests were not shadowed by ``kind``."""
        self.shadow_skipped.labels(kind, reason).inc(n)

    def queue_depth(self, depth: int) -> None:
        """Requests waiting for their shadows now."""
        self.shadow_queue.set(depth)

    def switched(self, before: object, after: object) -> None:
        """The serving watcher applied a new serving state."""
        self.switches.inc()

    def decided(self, recorded: RecordedDecision) -> None:
        """Count a new decision (the decision service's hook)."""
        decision = recorded.decision
        self._decision_series(decision.decision, decision.risk_band).inc()
        for code in dict.fromkeys(r.code for r in decision.reasons):
            self._reason_series(code, decision.decision).inc()

    def exposition(self) -> bytes:
        """The text exposition of every worker's metrics (or this process's when not under gunicorn)."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
