"""Decision endpoints: thin views — read and validate, decide, serialize, record durably, respond.

Creating decisions needs the ``scorer`` role, reading a record the ``auditor`` role (see service.auth);
each record names the key that made it (key id, label, role), never the key itself.

The record is committed before the response leaves; a failed write fails the request (503), never
drops the record. A retry with the same ``Idempotency-Key`` and body gets the stored response back.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request, url_for

from service.api.body import read_json
from service.api.schemas import APPLICATION_ID, ApiSchemas
from service.auth import current_principal, require_role
from service.core.decision import Decision
from service.errors import MalformedRequest, NotFound, ProblemError, problem_of
from service.records import DecisionStore
from service.records.errors import RecordsError
from service.records.model import DecisionRecord, StoredRecord, canonical_json
from service.runtime import ServedModel
from service.serialize import decision_to_json, versions_of
from service.state import ServiceState, get_state

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}\Z")
_DECISION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")

bp = Blueprint("decisions", __name__, url_prefix="/v1")


@dataclass(frozen=True)
class Outcome:
    """One decided application, recorded: the stored response and whether it was an idempotent replay."""

    stored: StoredRecord
    replayed: bool
    body: dict[str, Any]


def new_decision_id() -> str:
    """A fresh decision id (uuid4, hex)."""
    return uuid.uuid4().hex


def request_hash(validated: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a validated request."""
    return hashlib.sha256(canonical_json(validated).encode("utf-8")).hexdigest()


def _idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise MalformedRequest(f"the {IDEMPOTENCY_HEADER} header must be 1 to 200 visible ASCII characters")
    return key


@dataclass(frozen=True)
class _Call:
    """What every decision view starts from: a ready service, the parsed body and the idempotency key."""

    state: ServiceState
    model: ServedModel
    schemas: ApiSchemas
    store: DecisionStore
    payload: Any
    idempotency_key: str | None
    started: float
    decided_by: dict[str, str]

    @classmethod
    def begin(cls, batch: bool) -> _Call:
        """Check readiness, read the JSON body within the endpoint's limits and the idempotency key."""
        started = time.perf_counter()
        state = get_state()
        model, schemas, store = state.require_ready()
        settings = state.settings
        limit = settings.max_batch_content_length if batch else settings.max_content_length
        payload = read_json(request, limit, settings.max_json_depth)
        principal, role = current_principal()
        key = _idempotency_key()
        return cls(state, model, schemas, store, payload, key, started, principal.record(role))

    def record(self, validated: dict[str, Any], decision: Decision, key: str | None, latency_ms: float) -> Outcome:
        """Serialize one decision and commit its record; an idempotent retry gets the stored response."""
        decision_id = new_decision_id()
        created_at = datetime.now(UTC)
        info = self.model.info
        scaling = self.model.bundle.policy.scaling
        body = decision_to_json(
            decision_id=decision_id,
            application_id=validated["application_id"],
            decision=decision,
            model=info,
            score_range=(scaling.min_score, scaling.max_score),
            created_at=created_at,
            latency_ms=latency_ms,
        )
        record = DecisionRecord(
            decision_id=decision_id,
            application_id=validated["application_id"],
            created_at=created_at,
            idempotency_key=key,
            request_hash=request_hash(validated),
            decision=decision.decision,
            risk_band=decision.risk_band,
            score=decision.score,
            model_name=info.name,
            model_version=info.version,
            reason_codes=tuple(r.code for r in decision.reasons),
            payload={
                "request": validated,
                "response": body,
                "attributions": dict(decision.attributions),
                "base_value": decision.base_value,
                "margin": decision.margin,
                "versions": versions_of(info),
                "latency": {"decide_ms": body["latency_ms"]},
                "decided_by": self.decided_by,
            },
        )
        stored = self.store.save(record)
        if stored.record.decision_id != decision_id:
            return Outcome(stored=stored, replayed=True, body=stored.record.payload["response"])
        self.state.metrics.decisions.labels(decision.decision, decision.risk_band).inc()
        return Outcome(stored=stored, replayed=False, body=body)

    def server_timing(self, decided: float) -> str:
        """Server-Timing header: time to decide, then time to record."""
        done = time.perf_counter()
        return f"decide;dur={(decided - self.started) * 1000:.3f}, store;dur={(done - decided) * 1000:.3f}"


@bp.post("/decisions")
@require_role("scorer")
def create_decision() -> Response:
    """Decide one application and record it."""
    call = _Call.begin(batch=False)
    validated = call.schemas.load_request(call.payload)
    decision = call.model.engine.decide_many([validated["applicant"]])[0]
    decided = time.perf_counter()
    outcome = call.record(validated, decision, call.idempotency_key, (decided - call.started) * 1000.0)
    response = jsonify(outcome.body)
    response.status_code = 201
    response.headers["Location"] = url_for(".get_decision", decision_id=outcome.stored.record.decision_id)
    response.headers["Server-Timing"] = call.server_timing(decided)
    if outcome.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


@bp.post("/decisions:batch")
@require_role("scorer")
def create_decisions_batch() -> Response:
    """Decide up to MAX_BATCH_ITEMS applications; an invalid item fails alone, with its own problem."""
    call = _Call.begin(batch=True)
    items = call.schemas.load_batch(call.payload)
    results: list[dict[str, Any]] = [{} for _ in items]
    valid: list[tuple[int, dict[str, Any]]] = []
    for index, item in enumerate(items):
        try:
            valid.append((index, call.schemas.load_request(item)))
        except ProblemError as exc:
            results[index] = _item_problem(index, item, exc)
    decisions = call.model.engine.decide_many([v["applicant"] for _, v in valid])
    decided = time.perf_counter()
    latency_ms = (decided - call.started) * 1000.0
    replays: list[bool] = []
    for (index, validated), decision in zip(valid, decisions, strict=True):
        key = None if call.idempotency_key is None else f"{call.idempotency_key}#{index}"
        try:
            outcome = call.record(validated, decision, key, latency_ms)
        except RecordsError as exc:
            results[index] = _item_problem(index, validated, exc)
            continue
        replays.append(outcome.replayed)
        results[index] = {
            "index": index,
            "status": 201,
            "application_id": validated["application_id"],
            "decision": outcome.body,
        }
    succeeded = sum(1 for r in results if r["status"] == 201)
    response = jsonify({"items": results, "succeeded": succeeded, "failed": len(results) - succeeded})
    response.headers["Server-Timing"] = call.server_timing(decided)
    if replays and all(replays):
        response.headers[REPLAYED_HEADER] = "true"
    return response


def _item_problem(index: int, item: Any, exc: Exception) -> dict[str, Any]:
    problem, _headers = problem_of(exc)
    application_id = item.get("application_id") if isinstance(item, dict) else None
    echo = isinstance(application_id, str) and APPLICATION_ID.match(application_id) is not None
    return {
        "index": index,
        "status": problem["status"],
        "application_id": application_id if echo else None,
        "problem": problem,
    }


@bp.get("/decisions/<decision_id>")
@require_role("auditor")
def get_decision(decision_id: str) -> dict[str, Any]:
    """The stored record of one decision: request, response, attributions, versions and chain hashes."""
    store = get_state().require_store()
    if not _DECISION_ID.match(decision_id):
        raise NotFound(f"no decision {decision_id!r}")
    stored = store.get(decision_id)
    if stored is None:
        raise NotFound(f"no decision {decision_id!r}")
    return stored.to_dict()


def init_app(app: Flask) -> None:
    """Register the decision endpoints."""
    app.register_blueprint(bp)
