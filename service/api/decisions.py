"""Decision endpoints: thin views over :class:`service.decisions.DecisionService`.

Each view reads the request (authenticated key, validated body, idempotency header), calls the service
and renders what it returns; deciding, idempotency and recording live in the service. The record is
committed before the response leaves; a retry with the same ``Idempotency-Key`` and body gets the
recorded decision back (``Idempotent-Replayed: true``) without the model running again.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response, g, jsonify, request

from model_store.vocabulary import (
    APPLICATION_ID,
    DECISION_ID_PATTERN,
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_KEY_PATTERN,
    IDEMPOTENCY_KEY_RULE,
)
from service.api.framework import Blueprint, documented, guarded, problems, responds
from service.api.languages import ACCEPT_LANGUAGE_PARAMETER, CONTENT_LANGUAGE_HEADER, localized, mark_language
from service.api.problems import problem_of
from service.api.schemas import (
    BatchDecisionResponseSchema,
    DecideQuerySchema,
    DecisionResponseSchema,
    RequestSchemas,
    StoredDecisionSchema,
)
from service.auth import current_principal
from service.core.recorded import ApplicationRequest, PayloadError, RecordedDecision
from service.decisions import Decided, Timings, batch_item_key, legacy_batch_item_key
from service.errors import CreditDecisionError, InvalidHeader
from service.inputs import load_valid
from service.records import StoredRecord
from service.serialize import decision_json
from service.state import get_state

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
IDEMPOTENCY_PARAMETER = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": False,
    "description": "Retry safely: the same key and body return the recorded decision (header Idempotent-Replayed); "
    "the same key with another body is a 409",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": IDEMPOTENCY_KEY_PATTERN},
}
DECISION_ID_PARAMETER = {
    "name": "decision_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": DECISION_ID_PATTERN},
}
TIMING_HEADERS = {"Server-Timing": {"schema": {"type": "string"}, "description": "decide;dur=…, store;dur=… (ms)"}}
#: The path of a decision's record under the blueprint's prefix (the decision id follows; it needs no quoting).
RECORD_PATH = "/decisions/"
REPLAYED = {"schema": {"type": "string", "enum": ["true"]}, "description": "Present on an idempotent retry"}


def stored_json(stored: StoredRecord) -> dict[str, Any]:
    """A stored record as the auditor API shows it: as stored (hashes, payload) plus its typed views.

    A payload that cannot be read (only a changed record's: ``audit verify`` names it) shows as stored,
    with null views.
    """
    try:
        recorded = RecordedDecision.of(stored.record)
    except PayloadError:
        return {**stored.to_dict(), "request": None, "response": None, "versions": None, "decided_by": None}
    model = recorded.payload.model
    return {
        **stored.to_dict(),
        "request": recorded.request.to_json(),
        "response": decision_json(recorded),
        "versions": {
            "model_name": recorded.model_name,
            "model_version": recorded.model_version,
            "model_sha256": model.sha256,
            "manifest_sha256": model.manifest_sha256,
            "model_family": model.family,
            "spec_version": model.spec_version,
            "policy_version": model.policy_version,
            "catalog_version": model.catalog_version,
        },
        "decided_by": dict(recorded.payload.decided_by),
    }


def _idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise InvalidHeader(f"the {IDEMPOTENCY_HEADER} header must be {IDEMPOTENCY_KEY_RULE}")
    return key


def _request_of(validated: dict[str, Any]) -> ApplicationRequest:
    return ApplicationRequest(validated["application_id"], validated["applicant"], validated.get("monitoring"))


def _server_timing(timings: Timings) -> str:
    return f"decide;dur={timings.decide_ms:.3f}, store;dur={timings.store_ms:.3f}"


def _started() -> float:
    started = g.get("credit_decision_started")
    return float(started) if isinstance(started, float) else time.perf_counter()


def blueprint(schemas: RequestSchemas) -> Blueprint:
    """The decision endpoints, validating requests against the served model's feature spec."""
    bp = Blueprint("decisions", __name__, url_prefix="/v1", description="Decide applications")
    example = {"application_id": "APP-2026-000123", "applicant": schemas.example_application}

    @bp.route("/decisions", methods=["POST"], parameters=[IDEMPOTENCY_PARAMETER, ACCEPT_LANGUAGE_PARAMETER])
    @responds(
        201,
        DecisionResponseSchema,
        description="The decision, recorded (reasons' customer texts in the negotiated language)",
        headers={
            "Location": {"schema": {"type": "string"}, "description": "URL of the stored record"},
            **TIMING_HEADERS,
            REPLAYED_HEADER: REPLAYED,
            **CONTENT_LANGUAGE_HEADER,
        },
    )
    @problems(400, 409, 413, 415, 422, 503)
    @guarded("scorer")
    @bp.arguments(DecideQuerySchema, location="query", error_status_code=400)
    @bp.arguments(schemas.decision_request, example=example)
    def create_decision(query: dict[str, Any], validated: dict[str, Any]) -> Response:
        """Decide one application

        Validates the application against the feature spec, applies the policy rules, scores it with the ONNX
        model and explains the score exactly. The decision is recorded durably before the response is sent.
        With `?recourse=true` a refer or decline also says what would change it: the smallest changes to the
        fields the feature spec lets recourse change that get the application approved, each verified by the
        same model and policy; recorded with the decision and shown in its notice.
        """
        principal, role = current_principal()
        service = get_state().service
        decided, timings = service.decide_one(
            _request_of(validated),
            decided_by=principal.record(role),
            idempotency_key=_idempotency_key(),
            started=_started(),
            recourse=bool(query["recourse"]),
        )
        shown, language = localized(decided.recorded, service.catalog_of(decided.recorded))
        response = mark_language(jsonify(decision_json(shown)), language)
        response.status_code = 201
        # the record's URL as url_for(".get_decision") builds it, without building it through the URL map per request
        response.headers["Location"] = (
            f"{request.script_root}{bp.url_prefix}{RECORD_PATH}{decided.recorded.decision_id}"
        )
        response.headers["Server-Timing"] = _server_timing(timings)
        if decided.replayed:
            response.headers[REPLAYED_HEADER] = "true"
        return response

    @bp.route("/decisions:batch", methods=["POST"], parameters=[IDEMPOTENCY_PARAMETER, ACCEPT_LANGUAGE_PARAMETER])
    @documented(
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": schemas.batch_request, "example": {"applications": [example]}}},
        }
    )
    @responds(
        200,
        BatchDecisionResponseSchema,
        description="One result per item, in order; each item carries its own status and a decision or a problem",
        headers={**TIMING_HEADERS, REPLAYED_HEADER: REPLAYED, **CONTENT_LANGUAGE_HEADER},
    )
    @problems(400, 413, 415, 422, 503)
    @guarded("scorer")
    @bp.arguments(schemas.batch_envelope)
    def create_decisions_batch(envelope: dict[str, Any]) -> Response:
        """Decide several applications

        Each item is validated, decided and recorded on its own; an invalid item fails alone (with the status
        and problem it would have had on its own), the others are decided together. An `Idempotency-Key` makes
        the whole batch safe to retry: item i is recorded under `<key> [<i>]`, apart from single requests' keys;
        `Idempotent-Replayed: true` only when every item was a replay.
        """
        items = envelope["applications"]
        key = _idempotency_key()
        results: list[dict[str, Any]] = [{} for _ in items]
        requests: list[ApplicationRequest] = []
        positions: list[int] = []
        loader = schemas.decision_request
        for index, item in enumerate(items):
            try:
                validated = load_valid(loader, item)
            except CreditDecisionError as exc:
                results[index] = _item_problem(index, item, exc)
                continue
            requests.append(_request_of(validated))
            positions.append(index)
        principal, role = current_principal()
        keys = None if key is None else [batch_item_key(key, index) for index in positions]
        legacy = None if key is None else [legacy_batch_item_key(key, index) for index in positions]
        service = get_state().service
        decided, timings = service.decide(
            requests,
            decided_by=principal.record(role),
            idempotency_keys=keys,
            legacy_batch_keys=legacy,
            started=_started(),
        )
        replays: list[bool] = []
        languages: set[str] = set()
        for index, request_, result in zip(positions, requests, decided, strict=True):
            if isinstance(result, Decided):
                replays.append(result.replayed)
                shown, language = localized(result.recorded, service.catalog_of(result.recorded))
                languages.update([language] if language else [])
                body = decision_json(shown)
                results[index] = {
                    "index": index,
                    "status": 201,
                    "application_id": request_.application_id,
                    "decision": body,
                }
            else:
                results[index] = _item_problem(index, request_.to_json(), result)
        succeeded = sum(1 for r in results if r["status"] == 201)
        response = jsonify({"items": results, "succeeded": succeeded, "failed": len(results) - succeeded})
        mark_language(response, ", ".join(sorted(languages)) or None)
        response.headers["Server-Timing"] = _server_timing(timings)
        if replays and len(replays) == len(items) and all(replays):
            response.headers[REPLAYED_HEADER] = "true"
        return response

    @bp.route(
        f"{RECORD_PATH}<decision_id>", methods=["GET"], parameters=[DECISION_ID_PARAMETER, ACCEPT_LANGUAGE_PARAMETER]
    )
    @responds(
        200,
        StoredDecisionSchema,
        description="The record (as stored; its `response` view in the negotiated language)",
        headers=CONTENT_LANGUAGE_HEADER,
    )
    @problems(404, 503)
    @guarded("auditor")
    def get_decision(decision_id: str) -> Response:
        """The stored record of a decision

        The record as stored and hashed (request, decision, attributions, versions, who decided, chain hashes),
        with the request and the decision as answered derived from it.
        """
        service = get_state().service
        stored = service.stored(decision_id)
        body = stored_json(stored)
        language = None
        if body["response"] is not None:
            recorded = RecordedDecision.of(stored.record)
            shown, language = localized(recorded, service.catalog_of(recorded))
            if shown is not recorded:
                body["response"] = decision_json(shown)
        response = mark_language(jsonify(body), language)
        response.headers["Cache-Control"] = "no-store"
        return response

    return bp


def _item_problem(index: int, item: Any, exc: CreditDecisionError) -> dict[str, Any]:
    problem, _headers = problem_of(exc)
    application_id = item.get("application_id") if isinstance(item, dict) else None
    echo = isinstance(application_id, str) and APPLICATION_ID.match(application_id) is not None
    return {
        "index": index,
        "status": problem["status"],
        "application_id": application_id if echo else None,
        "problem": problem,
    }
