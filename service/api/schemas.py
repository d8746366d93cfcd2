"""Marshmallow schemas built from the feature spec, policy and reason catalog of the served model.

Request schemas are strict: integer fields take JSON integers only (not 1.5, not ``true``, not ``"12"``),
numbers must be finite, categorical fields take the spec's codes, every field is required and unknown
fields are rejected, so no personal identifier or prohibited-basis attribute slips in. Response schemas
document what ``service.serialize`` produces; ``service.api.openapi`` turns both into OpenAPI.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from model_store.catalog import ReasonCatalog
from model_store.policy import Policy
from model_store.spec import FeatureSpec, Field
from service.errors import FieldError, ValidationFailed

APPLICATION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
# Python's "$" also matches before a trailing newline, so the compiled check anchors with \Z
APPLICATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")
PROHIBITED_MESSAGE = (
    "prohibited-basis attribute: never a model input; it may be supplied for fairness monitoring "
    "only, in the request's separate `monitoring` object"
)
ROOT = "body"


class StrictSchema(Schema):
    """Rejects unknown fields."""

    class Meta:
        unknown = RAISE


class StrictInteger(fields.Integer):
    """A JSON integer: rejects 1.5, booleans, strings and non-finite numbers.

    ``12.0`` is accepted as 12: JSON (RFC 8259) and JSON Schema's ``integer`` do not tell 12.0 from 12,
    so a client whose serializer writes integral numbers with a fraction still meets the published schema.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, float) and not isinstance(value, bool) and math.isfinite(value) and value.is_integer():
            value = int(value)
        return int(super()._validated(value))


class StrictNumber(fields.Float):
    """A finite JSON number: rejects strings, booleans, NaN and infinities."""

    def _validated(self, value: Any) -> float:
        if not isinstance(value, (int, float)):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


def _field_for(field: Field, example: Any) -> fields.Field:
    metadata: dict[str, Any] = {"description": field.description}
    if example is not None:
        metadata["example"] = example
    if field.kind == "categorical":
        metadata["x-labels"] = {c.code: c.label for c in field.values}
        return fields.String(
            required=True,
            validate=validate.OneOf(field.codes, error="Must be one of: {choices}."),
            metadata=metadata,
        )
    if field.unit:
        metadata["x-unit"] = field.unit
    lo, hi = field.minimum, field.maximum
    if field.dtype == "integer":
        rng = validate.Range(
            min=None if lo is None else math.ceil(lo),
            max=None if hi is None else math.floor(hi),
            error="Must be an integer from {min} to {max}.",
        )
        return StrictInteger(required=True, validate=rng, metadata=metadata)
    return StrictNumber(
        required=True, validate=validate.Range(min=lo, max=hi, error="Must be from {min} to {max}."), metadata=metadata
    )


@dataclass(frozen=True)
class ApiSchemas:
    """The request and response schemas of one served model version."""

    spec: FeatureSpec
    applicant: type[Schema]
    decision_request: type[Schema]
    batch_envelope: type[Schema]
    batch_request: type[Schema]
    decision_response: type[Schema]
    batch_response: type[Schema]
    stored_decision: type[Schema]
    problem: type[Schema]
    example_application: dict[str, Any]
    # One instance per schema class, built on first use: constructing a marshmallow Schema deep-copies its
    # declared fields (about 100 µs a request for the default spec), and loading does not mutate the instance.
    _instances: dict[type[Schema], Schema] = dataclass_field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def load_request(self, payload: Any) -> dict[str, Any]:
        """Validate one decision request; raises ValidationFailed naming every invalid field."""
        return self._load(self.decision_request, payload)

    def load_batch(self, payload: Any) -> list[Any]:
        """Validate the batch envelope (not its items); returns the raw items."""
        return list(self._load(self.batch_envelope, payload)["applications"])

    def _load(self, schema: type[Schema], payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise ValidationFailed(
                "the request body must be a JSON object", [FieldError(ROOT, "Must be a JSON object.")]
            )
        try:
            instance = self._instances.get(schema)
            if instance is None:
                instance = self._instances.setdefault(schema, schema())
            loaded: dict[str, Any] = instance.load(payload)
        except ValidationError as exc:
            errors = field_errors(exc.messages, self.prohibited)
            raise ValidationFailed(f"{len(errors)} invalid field(s)", errors) from None
        return loaded

    @property
    def prohibited(self) -> frozenset[str]:
        """Names of the prohibited-basis (monitoring-only) attributes."""
        return frozenset(
            name for m in self.spec.monitoring_only for name in (m.name, m.source_column, m.monitoring_field)
        )


def field_errors(messages: Any, prohibited: frozenset[str] = frozenset(), prefix: str = "") -> list[FieldError]:
    """Flatten marshmallow's nested messages into sorted dotted-path field errors."""
    out: list[FieldError] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if key == "_schema":
                out.extend(field_errors(value, prohibited, prefix))
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            if str(key) in prohibited and prefix != "monitoring":
                out.append(FieldError(path, PROHIBITED_MESSAGE))
            else:
                out.extend(field_errors(value, prohibited, path))
    elif isinstance(messages, list | tuple):
        for message in messages:
            out.extend(field_errors(message, prohibited, prefix))
    else:
        out.append(FieldError(prefix or ROOT, str(messages)))
    return sorted(set(out), key=lambda e: (e.field, e.message))


def build_schemas(
    spec: FeatureSpec,
    policy: Policy,
    catalog: ReasonCatalog,
    example: Mapping[str, Any] | None = None,
    max_batch_items: int = 100,
) -> ApiSchemas:
    """Request and response schemas for one feature spec, policy and catalog."""
    example_applicant = dict(example) if example else None
    applicant = StrictSchema.from_dict(
        {f.name: _field_for(f, (example_applicant or {}).get(f.name)) for f in spec.fields}, name="Applicant"
    )
    application_id = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=64),
            validate.Regexp(APPLICATION_ID, error="Must be 1 to 64 characters of A-Z a-z 0-9 . _ : -"),
        ],
        metadata={
            "description": "The caller's reference for the application (no personal data)",
            "example": "APP-2026-000123",
            "pattern": APPLICATION_ID_PATTERN,
        },
    )
    monitoring = StrictSchema.from_dict(
        {
            m.monitoring_field: fields.String(
                validate=validate.OneOf(m.values),
                metadata={"description": f"{m.basis}: for fairness monitoring only, never used in scoring"},
            )
            for m in spec.monitoring_only
        },
        name="Monitoring",
    )
    decision_request = StrictSchema.from_dict(
        {
            "application_id": application_id,
            "applicant": fields.Nested(
                applicant, required=True, metadata={"description": "The applicant fields of the feature spec"}
            ),
            "monitoring": fields.Nested(
                monitoring,
                required=False,
                metadata={
                    "description": "Optional prohibited-basis attributes for fairness monitoring only: recorded "
                    "beside the decision for the compliance report, never passed to the model or the policy"
                },
            ),
        },
        name="DecisionRequest",
    )
    batch_envelope = StrictSchema.from_dict(
        {
            "applications": fields.List(
                fields.Raw(allow_none=True), required=True, validate=validate.Length(min=1, max=max_batch_items)
            )
        },
        name="BatchEnvelope",
    )
    batch_request = StrictSchema.from_dict(
        {
            "applications": fields.List(
                fields.Nested(decision_request),
                required=True,
                validate=validate.Length(min=1, max=max_batch_items),
                metadata={"description": "Applications, each validated and decided on its own"},
            )
        },
        name="BatchDecisionRequest",
    )
    responses = _response_schemas(spec, policy, catalog)
    return ApiSchemas(
        spec=spec,
        applicant=applicant,
        decision_request=decision_request,
        batch_envelope=batch_envelope,
        batch_request=batch_request,
        example_application=example_applicant or {},
        **responses,
    )


def _response_schemas(spec: FeatureSpec, policy: Policy, catalog: ReasonCatalog) -> dict[str, type[Schema]]:
    codes = [r.code for r in catalog.rule_reasons + catalog.model_reasons]
    field_names = list(spec.field_names)
    bands = [b.band for b in policy.bands]
    decisions = ["approve", "refer", "decline"]

    field_error = Schema.from_dict(
        {"field": fields.String(required=True), "message": fields.String(required=True)}, name="FieldError"
    )
    problem = Schema.from_dict(
        {
            "type": fields.String(required=True, metadata={"description": "Problem type URI"}),
            "title": fields.String(required=True),
            "status": fields.Integer(required=True),
            "detail": fields.String(),
            "instance": fields.String(),
            "errors": fields.List(
                fields.Nested(field_error), metadata={"description": "Field-level errors (dotted paths)"}
            ),
        },
        name="Problem",
    )
    reason_value = Schema.from_dict(
        {
            "field": fields.String(required=True, validate=validate.OneOf(field_names)),
            "value": fields.Raw(required=True, allow_none=True),
            "label": fields.String(required=True),
        },
        name="ReasonValue",
    )
    contribution = Schema.from_dict(
        {
            "log_odds": fields.Float(required=True, metadata={"description": "Attribution toward default, log-odds"}),
            "score_points": fields.Float(required=True, metadata={"description": "The same in score points"}),
        },
        name="Contribution",
    )
    reason = Schema.from_dict(
        {
            "code": fields.String(required=True, validate=validate.OneOf(codes)),
            "kind": fields.String(required=True, validate=validate.OneOf(["rule", "model"])),
            "group": fields.String(required=True, allow_none=True, validate=validate.OneOf(spec.reason_groups)),
            "customer_text": fields.String(required=True),
            "auditor_text": fields.String(required=True),
            "adverse": fields.Boolean(required=True),
            "values": fields.List(fields.Nested(reason_value), required=True),
            "contribution": fields.Nested(contribution, required=True, allow_none=True),
        },
        name="Reason",
    )
    rule_fired = Schema.from_dict(
        {
            "code": fields.String(required=True),
            "field": fields.String(required=True, validate=validate.OneOf(field_names)),
            "operator": fields.String(required=True),
            "threshold": fields.Raw(required=True, allow_none=True),
            "action": fields.String(required=True, validate=validate.OneOf(["refer", "decline"])),
            "description": fields.String(required=True),
        },
        name="RuleFired",
    )
    score = Schema.from_dict(
        {
            "value": fields.Integer(
                required=True, validate=validate.Range(policy.scaling.min_score, policy.scaling.max_score)
            ),
            "min": fields.Integer(required=True),
            "max": fields.Integer(required=True),
        },
        name="Score",
    )
    explanation = Schema.from_dict(
        {
            "base_value": fields.Float(required=True, metadata={"description": "SHAP base value (log-odds)"}),
            "margin": fields.Float(required=True, metadata={"description": "Model log-odds of default"}),
            "attributions": fields.Dict(
                keys=fields.String(validate=validate.OneOf(field_names)),
                values=fields.Float(),
                required=True,
                metadata={"description": "Exact SHAP attribution of each field (log-odds); sum + base = margin"},
            ),
        },
        name="Explanation",
    )
    model = Schema.from_dict(
        {
            "name": fields.String(required=True),
            "version": fields.String(required=True),
            "sha256": fields.String(required=True),
            "family": fields.String(required=True),
        },
        name="ModelRef",
    )
    decision_response = Schema.from_dict(
        {
            "decision_id": fields.String(required=True),
            "application_id": fields.String(required=True),
            "decision": fields.String(required=True, validate=validate.OneOf(decisions)),
            "score": fields.Nested(score, required=True),
            "probability_of_default": fields.Float(required=True, validate=validate.Range(0.0, 1.0)),
            "risk_band": fields.String(required=True, validate=validate.OneOf(bands)),
            "reasons": fields.List(fields.Nested(reason), required=True),
            "rules_fired": fields.List(fields.Nested(rule_fired), required=True),
            "explanation": fields.Nested(explanation, required=True),
            "model": fields.Nested(model, required=True),
            "policy_version": fields.String(required=True),
            "catalog_version": fields.String(required=True),
            "spec_version": fields.String(required=True),
            "created_at": fields.String(required=True, metadata={"description": "UTC, ISO 8601"}),
            "latency_ms": fields.Float(required=True, metadata={"description": "Server-side time to decide, ms"}),
        },
        name="DecisionResponse",
    )
    batch_item = Schema.from_dict(
        {
            "index": fields.Integer(required=True),
            "status": fields.Integer(required=True, metadata={"description": "HTTP status this item would have had"}),
            "application_id": fields.String(allow_none=True),
            "decision": fields.Nested(decision_response),
            "problem": fields.Nested(problem),
        },
        name="BatchItem",
    )
    batch_response = Schema.from_dict(
        {
            "items": fields.List(fields.Nested(batch_item), required=True),
            "succeeded": fields.Integer(required=True),
            "failed": fields.Integer(required=True),
        },
        name="BatchDecisionResponse",
    )
    stored_payload = Schema.from_dict(
        {
            "request": fields.Dict(required=True, metadata={"description": "The validated request"}),
            "response": fields.Nested(decision_response, required=True),
            "attributions": fields.Dict(keys=fields.String(), values=fields.Float(), required=True),
            "base_value": fields.Float(required=True),
            "margin": fields.Float(required=True),
            "versions": fields.Dict(keys=fields.String(), values=fields.String(), required=True),
            "latency": fields.Dict(keys=fields.String(), values=fields.Float(), required=True),
            "decided_by": fields.Dict(
                keys=fields.String(),
                values=fields.String(),
                metadata={"description": "Who decided: API key id (first 12 hex of its sha256), label and role"},
            ),
        },
        name="StoredPayload",
    )
    stored_decision = Schema.from_dict(
        {
            "seq": fields.Integer(required=True, metadata={"description": "Position in the hash chain"}),
            "prev_hash": fields.String(required=True),
            "record_hash": fields.String(
                required=True, metadata={"description": "sha256(prev_hash + canonical JSON of the other fields)"}
            ),
            "decision_id": fields.String(required=True),
            "application_id": fields.String(required=True),
            "created_at": fields.String(required=True),
            "idempotency_key": fields.String(required=True, allow_none=True),
            "request_hash": fields.String(required=True),
            "decision": fields.String(required=True, validate=validate.OneOf(decisions)),
            "risk_band": fields.String(required=True, validate=validate.OneOf(bands)),
            "score": fields.Integer(required=True),
            "model_name": fields.String(required=True),
            "model_version": fields.String(required=True),
            "reason_codes": fields.List(fields.String(validate=validate.OneOf(codes)), required=True),
            "payload": fields.Nested(stored_payload, required=True),
        },
        name="StoredDecision",
    )
    return {
        "decision_response": decision_response,
        "batch_response": batch_response,
        "stored_decision": stored_decision,
        "problem": problem,
    }
