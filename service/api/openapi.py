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
        404: "No such decision",
        409: "Idempotency-Key reused with a different body",
        413: "Body too large",
        415: "Content type is not application/json",
        422: "Invalid fields; `errors` names each one",
        503: "Not ready (model self-check failed or pending) or the decision store is unavailable",
    }
    return {str(code): _problem(text[code]) for code in codes}


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
                f"policy {info.policy_version}, reason codes {info.catalog_version})."
            )
        },
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
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    }
    spec.path(
        path="/v1/decisions",
        operations={
            "post": {
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
            }
        },
    )
    spec.path(
        path="/v1/decisions:batch",
        operations={
            "post": {
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
            }
        },
    )
    spec.path(
        path="/v1/decisions/{decision_id}",
        operations={
            "get": {
                "summary": "The stored record of a decision",
                "description": "Request, response, attributions, base value, margin, versions and chain hashes.",
                "operationId": "getDecision",
                "parameters": [
                    {"name": "decision_id", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "The record", "content": {"application/json": {"schema": "StoredDecision"}}},
                    **_errors(404, 503),
                },
            }
        },
    )
    spec.path(
        path="/v1/schema",
        operations={
            "get": {
                "summary": "The applicant fields for integrators",
                "operationId": "getFieldSchema",
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
        spec.path(path=path, operations={"get": {"summary": summary, "responses": responses}})
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
