"""OpenAPI 3.1 at /openapi.json (apispec + marshmallow, from the very schemas that validate requests),
an offline docs page at /docs (served by us, no CDN) and /v1/schema describing the fields for integrators.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response

from service.api.docs_page import DOCS_CSS, DOCS_HTML, DOCS_JS
from service.api.schemas import APPLICATION_ID_PATTERN, ApiSchemas
from service.runtime import ServedModel
from service.state import get_state

PROBLEM = "application/problem+json"
DOCS_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'"

bp = Blueprint("openapi", __name__)


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": "Problem"}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON, body too deeply nested, empty body or invalid header",
        401: "No valid API key (`WWW-Authenticate: Bearer`)",
        403: "The API key does not hold the role this endpoint needs",
        404: "No such decision",
        409: "Idempotency-Key reused with a different body",
        413: "Body too large",
        415: "Content type is not application/json",
        422: "Invalid fields; `errors` names each one",
        503: "Not ready (model self-check failed or pending) or the decision store is unavailable",
    }
    return {str(code): _problem(text[code]) for code in codes}


SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyHeader": []}]


def _guarded(operation: dict[str, Any], role: str) -> dict[str, Any]:
    """An operation that needs an API key holding ``role``: security, the role and the 401/403 problems."""
    operation["security"] = SECURITY
    operation["x-required-roles"] = [role]
    operation["description"] = f"Needs an API key with the `{role}` role. " + operation.get("description", "")
    operation["responses"].update(_errors(401, 403))
    return operation


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _audit_filters() -> list[dict[str, Any]]:
    token = {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,64}$"}
    timestamp = {"type": "string", "format": "date-time"}
    return [
        _query("application_id", "Only this application", {"type": "string", "pattern": APPLICATION_ID_PATTERN}),
        _query("from", "Created at or after (ISO-8601 with a timezone)", timestamp),
        _query("to", "Created before (ISO-8601 with a timezone)", timestamp),
        _query("decision", "Only this outcome", {"type": "string", "enum": ["approve", "refer", "decline"]}),
        _query("risk_band", "Only this risk band", token),
        _query("reason_code", "Only decisions giving this reason code", token),
        _query("model_version", "Only decisions made by this model version", token),
    ]


def _package_version() -> str:
    try:
        return metadata.version("credit-decision")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_openapi(schemas: ApiSchemas, model: ServedModel, max_batch_items: int) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the served model's API."""
    info = model.info
    spec = APISpec(
        title="credit-decision",
        version=_package_version(),
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={
            "description": (
                "Explainable credit decisions: score, probability of default, risk band, decision and reason "
                "codes computed from exact SHAP attributions of the served ONNX model. "
                f"Served model: {info.name} {info.version} (feature spec {info.spec_version}, "
                f"policy {info.policy_version}, reason codes {info.catalog_version}).\n\n"
                "Access: send an API key as `Authorization: Bearer <key>` (or `X-API-Key: <key>`). Roles: "
                "`scorer` creates decisions; `auditor` reads, exports and replays records; `admin` lists models. "
                "No role implies another. Health, readiness, metrics, this document, /docs and /v1/schema are public."
            )
        },
    )
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "description": "API key"})
    spec.components.security_scheme(
        "apiKeyHeader", {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "API key"}
    )
    # dependencies first: a schema nested in a later one must be registered under its own name already
    for name, schema in (
        ("Problem", schemas.problem),
        ("Applicant", schemas.applicant),
        ("DecisionRequest", schemas.decision_request),
        ("BatchDecisionRequest", schemas.batch_request),
        ("DecisionResponse", schemas.decision_response),
        ("BatchDecisionResponse", schemas.batch_response),
        ("StoredDecision", schemas.stored_decision),
    ):
        spec.components.schema(name, schema=schema)
    example_request = {"application_id": "APP-2026-000123", "applicant": schemas.example_application}
    idempotency = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Retry safely: the same key and body return the stored decision (header Idempotent-Replayed)",
        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]{1,200}$"},
    }
    spec.path(
        path="/v1/decisions",
        operations={
            "post": _guarded(
                {
                    "summary": "Decide one application",
                    "description": (
                        "Validates the application against the feature spec, applies the policy rules, scores it with "
                        "the ONNX model and explains the score exactly. The decision is recorded durably before the "
                        "response is sent."
                    ),
                    "operationId": "createDecision",
                    "parameters": [idempotency],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": "DecisionRequest", "example": example_request}},
                    },
                    "responses": {
                        "201": {
                            "description": "The decision, recorded",
                            "headers": {
                                "Location": {"schema": {"type": "string"}, "description": "URL of the stored record"},
                                "Server-Timing": {"schema": {"type": "string"}},
                                "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}},
                            },
                            "content": {"application/json": {"schema": "DecisionResponse"}},
                        },
                        **_errors(400, 409, 413, 415, 422, 503),
                    },
                },
                "scorer",
            )
        },
    )
    spec.path(
        path="/v1/decisions:batch",
        operations={
            "post": _guarded(
                {
                    "summary": f"Decide up to {max_batch_items} applications",
                    "description": "Each item is validated, decided and recorded on its own; an invalid item does not "
                    "fail the others. Each item carries its own status and either a decision or a problem.",
                    "operationId": "createDecisionsBatch",
                    "parameters": [idempotency],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": "BatchDecisionRequest",
                                "example": {"applications": [example_request]},
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One result per item, in order",
                            "content": {"application/json": {"schema": "BatchDecisionResponse"}},
                        },
                        **_errors(400, 413, 415, 422, 503),
                    },
                },
                "scorer",
            )
        },
    )
    decision_id = {"name": "decision_id", "in": "path", "required": True, "schema": {"type": "string"}}
    spec.path(
        path="/v1/decisions/{decision_id}",
        operations={
            "get": _guarded(
                {
                    "summary": "The stored record of a decision",
                    "description": "Request, response, attributions, base value, margin, versions, who decided "
                    "and chain hashes.",
                    "operationId": "getDecision",
                    "parameters": [decision_id],
                    "responses": {
                        "200": {
                            "description": "The record",
                            "content": {"application/json": {"schema": "StoredDecision"}},
                        },
                        **_errors(404, 503),
                    },
                },
                "auditor",
            )
        },
    )
    spec.path(
        path="/v1/decisions",
        operations={
            "get": _guarded(
                {
                    "summary": "Search decision records",
                    "description": "Records matching every given filter, in chain order, one page at a time: "
                    'follow `next_cursor` (or the `Link: <...>; rel="next"` header) until it is null. An unknown, '
                    "repeated or invalid parameter is a 400 problem naming it.",
                    "operationId": "listDecisions",
                    "parameters": [
                        *_audit_filters(),
                        _query("cursor", "`next_cursor` of the previous page", {"type": "string", "minLength": 1}),
                        _query(
                            "limit", "Page size", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
                        ),
                    ],
                    "responses": {
                        "200": {
                            "description": "One page of records",
                            "headers": {"Link": {"schema": {"type": "string"}, "description": 'rel="next" page'}},
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["items", "limit", "next_cursor"],
                                        "properties": {
                                            "items": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/StoredDecision"},
                                            },
                                            "limit": {"type": "integer"},
                                            "next_cursor": {"type": ["string", "null"]},
                                        },
                                    }
                                }
                            },
                        },
                        **_errors(400, 503),
                    },
                },
                "auditor",
            )
        },
    )
    spec.path(
        path="/v1/decisions/export",
        operations={
            "get": _guarded(
                {
                    "summary": "Export decision records as CSV or JSON Lines",
                    "description": "Every record matching the filters, streamed in chain order with its hashes "
                    "(so an export can be re-verified).",
                    "operationId": "exportDecisions",
                    "parameters": [
                        _query(
                            "format", "Export format", {"type": "string", "enum": ["jsonl", "csv"], "default": "jsonl"}
                        ),
                        *_audit_filters(),
                    ],
                    "responses": {
                        "200": {
                            "description": "The records (an attachment)",
                            "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                            "content": {
                                "text/csv": {"schema": {"type": "string"}},
                                "application/x-ndjson": {"schema": {"type": "string"}},
                            },
                        },
                        **_errors(400, 503),
                    },
                },
                "auditor",
            )
        },
    )
    spec.path(
        path="/v1/decisions/{decision_id}/replay",
        operations={
            "post": _guarded(
                {
                    "summary": "Replay a decision with the exact model version recorded",
                    "description": "Re-decides the stored request with the recorded model version (its own feature "
                    "spec, policy and reason catalog) and lists every difference from what was recorded; numbers "
                    "are compared within 1e-9. Writes nothing.",
                    "operationId": "replayDecision",
                    "parameters": [decision_id],
                    "responses": {
                        "200": {
                            "description": "The replay report",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["decision_id", "identical", "differences"],
                                        "properties": {
                                            "decision_id": {"type": "string"},
                                            "identical": {"type": "boolean"},
                                            "model": {"type": "object"},
                                            "tolerance": {"type": "number"},
                                            "differences": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "properties": {
                                                        "field": {"type": "string"},
                                                        "recorded": {},
                                                        "replayed": {},
                                                    },
                                                },
                                            },
                                        },
                                    }
                                }
                            },
                        },
                        **_errors(404, 503),
                    },
                },
                "auditor",
            )
        },
    )
    spec.path(
        path="/v1/models",
        operations={
            "get": _guarded(
                {
                    "summary": "Model versions in the store",
                    "description": "Every model name and version, the champion, the served version and which "
                    "versions this process has loaded.",
                    "operationId": "listModels",
                    "responses": {"200": {"description": "The listing"}, **_errors(503)},
                },
                "admin",
            )
        },
    )
    spec.path(
        path="/v1/schema",
        operations={
            "get": {
                "summary": "The applicant fields for integrators",
                "operationId": "getFieldSchema",
                "security": [],
                "responses": {"200": {"description": "Fields with types, allowed values, ranges and units"}},
            }
        },
    )
    for path, summary in (
        ("/healthz", "Liveness"),
        ("/readyz", "Readiness: 503 until the startup self-check passed"),
        ("/metrics", "Prometheus metrics"),
    ):
        responses: dict[str, Any] = {"200": {"description": "OK"}}
        if path == "/readyz":
            responses.update(_errors(503))
        spec.path(path=path, operations={"get": {"summary": summary, "security": [], "responses": responses}})
    return spec.to_dict()


def field_catalog(schemas: ApiSchemas, model: ServedModel) -> dict[str, Any]:
    """The applicant fields described for integrators (served at /v1/schema)."""
    spec = schemas.spec
    fields: list[dict[str, Any]] = []
    for f in spec.fields:
        entry: dict[str, Any] = {
            "name": f.name,
            "type": "string" if f.kind == "categorical" else f.dtype,
            "kind": f.kind,
            "required": True,
            "description": f.description,
            "reason_group": f.reason_group,
        }
        if f.kind == "categorical":
            entry["allowed_values"] = [{"code": c.code, "label": c.label} for c in f.values]
        else:
            entry["range"] = {"minimum": f.minimum, "maximum": f.maximum}
            entry["unit"] = f.unit
        fields.append(entry)
    policy = model.bundle.policy
    return {
        "spec_version": spec.version,
        "policy_version": policy.version,
        "catalog_version": model.bundle.catalog.version,
        "request": {
            "application_id": {
                "type": "string",
                "pattern": APPLICATION_ID_PATTERN,
                "description": "Your reference for the application; never put personal data in it",
            },
            "applicant": "an object with exactly the fields below; unknown fields are rejected",
        },
        "fields": fields,
        "never_accepted": [
            {
                "name": m.name,
                "basis": m.basis,
                "note": "prohibited basis: rejected as an applicant field; may be supplied only in the request's "
                f"`monitoring` object as `{m.monitoring_field}` (one of {list(m.values)}), never used in scoring",
            }
            for m in spec.monitoring_only
        ],
        "score": {"minimum": policy.scaling.min_score, "maximum": policy.scaling.max_score, "higher_is": "lower risk"},
        "risk_bands": [{"band": b.band, "min_score": b.min_score, "decision": b.decision} for b in policy.bands],
        "rules": [
            {"code": r.code, "field": r.field, "operator": r.operator, "value": r.value, "action": r.action}
            for r in policy.rules
        ],
    }


@bp.get("/openapi.json")
def openapi_json() -> dict[str, Any]:
    """The OpenAPI document."""
    state = get_state()
    model, schemas = state.require_model()
    if state.openapi is None:
        state.openapi = build_openapi(schemas, model, state.settings.max_batch_items)
    return state.openapi


@bp.get("/v1/schema")
def field_schema() -> dict[str, Any]:
    """The applicant fields for integrators."""
    model, schemas = get_state().require_model()
    return field_catalog(schemas, model)


def _static(body: str, mimetype: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Security-Policy"] = DOCS_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/docs")
def docs() -> Response:
    """The offline API docs page."""
    return _static(DOCS_HTML, "text/html")


@bp.get("/docs/docs.js")
def docs_js() -> Response:
    """Script of the docs page."""
    return _static(DOCS_JS, "text/javascript")


@bp.get("/docs/docs.css")
def docs_css() -> Response:
    """Style of the docs page."""
    return _static(DOCS_CSS, "text/css")


def init_app(app: Flask) -> None:
    """Register the OpenAPI, schema and docs endpoints."""
    app.register_blueprint(bp)
