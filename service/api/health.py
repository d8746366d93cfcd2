"""Liveness (/healthz), readiness (/readyz) and Prometheus metrics (/metrics), plus the request timer."""

from __future__ import annotations

import logging
import os
import time

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.framework import Blueprint, problems, public, responds
from service.api.schemas import HealthSchema, ReadySchema
from service.errors import NotReady, StoreUnavailable
from service.state import get_state

log = logging.getLogger(__name__)


def blueprint() -> Blueprint:
    """The operator endpoints."""
    bp = Blueprint("health", __name__, description="Health, readiness and metrics")

    @bp.route("/healthz", methods=["GET"])
    @responds(200, HealthSchema, description="The process answers")
    @public
    def healthz() -> Response:
        """Liveness"""
        return jsonify({"status": "ok"})

    @bp.route("/readyz", methods=["GET"])
    @responds(200, ReadySchema, description="Ready: the served model passed its self-check, the store is open")
    @problems(503, s503="Not ready (or the decision store cannot be reached); `detail` says why (for operators)")
    @public
    def readyz() -> Response:
        """Readiness: 503 until the startup self-check passed, or while this worker cannot serve the champion

        Names the version this worker serves (it follows promotions and rollbacks within the poll interval), its
        policy, what runs in shadow, and the position of the serving state's control event in the audit chain.
        """
        service = get_state().service
        service.retry_startup()
        if not service.ready or service.served is None:
            error = NotReady(service.not_ready_reason)
            error.retry_after = 5
            raise error
        try:  # a store that went away since startup (database down, disk gone) makes the worker not ready
            service.require_store().ping()
        except StoreUnavailable as exc:
            log.warning("not ready: %s", exc.detail)
            error = NotReady(f"the decision store cannot be reached ({type(exc).__name__}); the logs say why")
            error.retry_after = exc.retry_after
            raise error from exc
        info = service.served.info
        return jsonify(
            {
                "status": "ready",
                "model": info.to_dict(),
                "spec_version": info.spec_version,
                "policy_version": info.policy_version,
                "shadows": [{"kind": s.kind, **s.model.info.to_dict()} for s in service.serving.shadows],
                "serving_state_seq": service.serving.state.seq,
                "worker": os.getpid(),
            }
        )

    @bp.route("/metrics", methods=["GET"])
    @responds(200, {"type": "string"}, content_type="text/plain", description="Prometheus text exposition")
    @public
    def metrics() -> Response:
        """Prometheus metrics"""
        return Response(get_state().metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

    return bp


def _start_timer() -> None:
    g.credit_decision_started = time.perf_counter()
    get_state().metrics.request_started()
    g.credit_decision_in_flight = True


def _observe(response: Response) -> Response:
    started = g.pop("credit_decision_started", None)
    route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    metrics = get_state().metrics
    metrics.request_series(request.method, route, str(response.status_code)).inc()
    if started is not None:
        metrics.latency_series(request.method, route).observe(time.perf_counter() - started)
    return response


def _finished(_exc: BaseException | None) -> None:
    if g.pop("credit_decision_in_flight", False):  # teardown runs whatever happened to the request
        get_state().metrics.request_finished()


def init_app(app: Flask) -> None:
    """Time and count every request."""
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.teardown_request(_finished)
