"""The API's marshmallow schemas: what each operation reads and answers, and so what /openapi.json says.

Request bodies of decisions are built from the served model's feature spec: each applicant field is a
:class:`SpecValue` that validates with the spec's own :meth:`~model_store.spec.Field.check` (the check the
batch file reader uses too) and documents its type, range and allowed codes from the same field. Unknown
fields are rejected, so no personal identifier or prohibited-basis attribute slips in.

Response schemas document what :mod:`service.serialize` and the views produce; the contract test checks
every answer against them. Reason codes, risk bands and field names are open strings in responses (the
current values are listed in the descriptions), so a new catalog, policy or spec version does not break
a generated client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any

import marshmallow as ma
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from model_store.catalog import LANGUAGE_TAG
from model_store.spec import MISSING, FeatureSpec, Field, InvalidValue
from model_store.vocabulary import (
    ACTIONS,
    APPLICATION_ID,
    APPLICATION_ID_PATTERN,
    APPLICATION_ID_RULE,
    MODEL_NAME,
    MODEL_NAME_PATTERN,
    MODEL_VERSION,
    MODEL_VERSION_PATTERN,
    POLICY_VERSION,
    POLICY_VERSION_PATTERN,
    TOKEN,
    TOKEN_PATTERN,
)
from service.api.framework import ProblemSchema
from service.inputs import Matches, StrictSchema
from service.records.model import EVENT_KINDS, SHADOW_KINDS

APPLICATION_ID_FIELD_METADATA = {
    "description": "The caller's reference for the application (no personal data)",
    "example": "APP-2026-000123",
}
EXPORT_FORMATS = ("jsonl", "csv")
REPORT_FORMATS = ("json", "csv", "html", "pdf")
MAX_SEARCH_LIMIT = 1000
DEFAULT_SEARCH_LIMIT = 100
MAX_OUTCOMES = 1000
#: Longest period one report covers (it reads the period before it too).
MAX_REPORT_PERIOD = timedelta(days=366)
#: How far in the future an observation may lie (clock skew between the poster and us).
OUTCOME_CLOCK_SKEW = timedelta(minutes=5)


# ---- fields ------------------------------------------------------------------------------------


class SpecValue(fields.Field):
    """One applicant field of the feature spec: validated by the spec's own check, documented from it."""

    def __init__(self, spec_field: Field, example: Any = None, **kwargs: Any) -> None:
        self.spec_field = spec_field
        metadata: dict[str, Any] = {"description": spec_field.description}
        if spec_field.kind == "categorical":
            metadata.update(type="string", enum=list(spec_field.codes))
            metadata["x-labels"] = {c.code: c.label for c in spec_field.values}
        else:
            metadata["type"] = spec_field.dtype
            low, high = spec_field.minimum, spec_field.maximum
            if low is not None:
                metadata["minimum"] = math.ceil(low) if spec_field.dtype == "integer" else low
            if high is not None:
                metadata["maximum"] = math.floor(high) if spec_field.dtype == "integer" else high
            if spec_field.unit:
                metadata["x-unit"] = spec_field.unit
        if example is not None:
            metadata["example"] = example
        if spec_field.missing:  # may be null or left out: a missing value
            metadata["type"] = [metadata["type"], "null"]
            if "enum" in metadata:
                metadata["enum"] = [*metadata["enum"], None]
            metadata["description"] += " (may be null or left out when not known)"
        super().__init__(
            required=not spec_field.missing, metadata=metadata, error_messages={"required": MISSING}, **kwargs
        )

    def deserialize(
        self, value: Any, attr: str | None = None, data: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        """The value as the spec's check accepts it (JSON semantics), or a ValidationError in its words."""
        if value is ma.missing:
            if self.spec_field.missing:
                return None
            raise self.make_error("required")
        try:
            return self.spec_field.check(value)
        except InvalidValue as exc:
            raise ValidationError(str(exc)) from None


class SpecApplicant(fields.Nested):
    """The applicant object of a feature spec: a valid one is checked in one pass over the spec's fields; anything
    wrong with it goes through marshmallow's full load, which names every invalid and unknown field."""

    def _deserialize(
        self,
        value: Any,
        attr: str | None,
        data: Mapping[str, Any] | None,
        partial: bool | Sequence[str] | AbstractSet[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        if isinstance(value, dict) and self._spec_values is not None and not partial:
            checked: dict[str, Any] = {}
            try:
                for name, spec_value in self._spec_values:
                    checked[name] = spec_value.deserialize(value.get(name, ma.missing))
            except ValidationError:
                pass
            else:
                if value.keys() <= checked.keys():  # no unknown field
                    return checked
        return super()._deserialize(value, attr, data, partial, **kwargs)

    @cached_property
    def _spec_values(self) -> tuple[tuple[str, SpecValue], ...] | None:
        """The schema's fields, when every one is a spec field (else None: marshmallow loads it)."""
        spec_values = tuple((name, f) for name, f in self.schema.fields.items() if isinstance(f, SpecValue))
        return spec_values if len(spec_values) == len(self.schema.fields) else None


class ApplicationId(fields.String):
    """The caller's application id (pattern from the shared vocabulary)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            validate=Matches(APPLICATION_ID, f"Must be {APPLICATION_ID_RULE}."),
            metadata={**APPLICATION_ID_FIELD_METADATA, "pattern": APPLICATION_ID_PATTERN},
            **kwargs,
        )


class AwareDateTime(fields.DateTime):
    """An ISO 8601 date-time with a time zone (``Z`` or an offset); a '+' sent unencoded as a space is read as '+'."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or len(value) > 40:
            raise ValidationError("Not an ISO-8601 date-time, e.g. 2026-01-31T00:00:00Z.")
        text = value.strip()
        if len(text) > 6 and text[-6] == " " and text[-5:-3].isascii() and text[-5:-3].isdigit():  # " 02:00": "+02:00"
            text = text[:-6] + "+" + text[-5:]
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError("Not an ISO-8601 date-time, e.g. 2026-01-31T00:00:00Z.") from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValidationError("Needs a time zone, e.g. 2026-01-31T00:00:00Z or +01:00.")
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Out of the supported date range.") from None


class Day(fields.Date):
    """A calendar day ``YYYY-MM-DD`` (UTC)."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> date:
        if not isinstance(value, str) or len(value) != 10:
            raise ValidationError("Must be a date YYYY-MM-DD (UTC).")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValidationError("Must be a date YYYY-MM-DD (UTC).") from None


class DigitsInteger(fields.Integer):
    """An integer query parameter written in ASCII digits only (no sign, no '²', no full-width digits)."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> int:
        if not isinstance(value, str) or not (value.isascii() and value.isdigit()) or len(value) > 9:
            raise self.make_error("invalid")
        return int(value)


# ---- requests built from the served model's spec -----------------------------------------------


@dataclass(frozen=True)
class RequestSchemas:
    """The request schemas of one served feature spec (generic ones when no model is served)."""

    spec: FeatureSpec | None
    decision_request: Schema
    batch_envelope: Schema
    batch_request: type[Schema]
    example_application: dict[str, Any]

    @property
    def prohibited(self) -> frozenset[str]:
        """Names of the prohibited-basis (monitoring-only) attributes."""
        if self.spec is None:
            return frozenset()
        return frozenset(
            name for m in self.spec.monitoring_only for name in (m.name, m.source_column, m.monitoring_field)
        )


def request_schemas(
    spec: FeatureSpec | None, example: Mapping[str, Any] | None, max_batch_items: int
) -> RequestSchemas:
    """Decision request schemas for a feature spec (``None``: generic, while no model is served)."""
    example_applicant = dict(example) if example else {}
    if spec is None:
        applicant: fields.Field = fields.Dict(
            required=True, metadata={"description": "The applicant fields of the served feature spec"}
        )
        monitoring: fields.Field = fields.Dict(required=False)
        name = "Generic"
    else:
        applicant_schema = StrictSchema.from_dict(
            {f.name: SpecValue(f, example_applicant.get(f.name)) for f in spec.fields}, name="Applicant"
        )
        applicant = SpecApplicant(
            applicant_schema, required=True, metadata={"description": "The applicant fields of the feature spec"}
        )
        monitoring_schema = StrictSchema.from_dict(
            {
                m.monitoring_field: fields.String(
                    validate=validate.OneOf(m.values),
                    metadata={"description": f"{m.basis}: for fairness monitoring only, never used in scoring"},
                )
                for m in spec.monitoring_only
            },
            name="Monitoring",
        )
        monitoring = fields.Nested(
            monitoring_schema,
            required=False,
            metadata={
                "description": "Optional prohibited-basis attributes for fairness monitoring only: recorded "
                "beside the decision for the compliance report, never passed to the model or the policy"
            },
        )
        name = ""
    decision_request = StrictSchema.from_dict(
        {"application_id": ApplicationId(required=True), "applicant": applicant, "monitoring": monitoring},
        name=f"{name}DecisionRequest",
    )
    prohibited = (
        frozenset(n for m in spec.monitoring_only for n in (m.name, m.source_column, m.monitoring_field))
        if spec is not None
        else frozenset()
    )
    decision_request.prohibited = prohibited  # type: ignore[attr-defined]
    envelope = StrictSchema.from_dict(
        {
            "applications": fields.List(
                fields.Raw(allow_none=True), required=True, validate=validate.Length(min=1, max=max_batch_items)
            )
        },
        name=f"{name}BatchEnvelope",
    )
    batch_request = StrictSchema.from_dict(
        {
            "applications": fields.List(
                fields.Nested(decision_request),
                required=True,
                validate=validate.Length(min=1, max=max_batch_items),
                metadata={"description": "Applications, each validated, decided and recorded on its own"},
            )
        },
        name=f"{name}BatchDecisionRequest",
    )
    batch_envelope = envelope()
    batch_envelope.body_limit = "max_batch_content_length"  # type: ignore[attr-defined]
    return RequestSchemas(spec, decision_request(), batch_envelope, batch_request, example_applicant)


# ---- decisions: responses ------------------------------------------------------------------------


class ReasonValueSchema(Schema):
    field = fields.String(required=True)
    value = fields.Raw(required=True, allow_none=True)
    label = fields.String(required=True)


class ContributionSchema(Schema):
    log_odds = fields.Float(required=True, metadata={"description": "Attribution toward default, log-odds"})
    score_points = fields.Float(required=True, metadata={"description": "The same in score points"})


class ReasonSchema(Schema):
    code = fields.String(
        required=True, metadata={"description": "Reason code of the recorded catalog version (codes may be added)"}
    )
    kind = fields.String(required=True, validate=validate.OneOf(["rule", "model"]))
    group = fields.String(required=True, allow_none=True, metadata={"description": "Reason group (model reasons)"})
    customer_text = fields.String(required=True)
    auditor_text = fields.String(required=True)
    adverse = fields.Boolean(required=True)
    values = fields.List(fields.Nested(ReasonValueSchema), required=True)
    contribution = fields.Nested(ContributionSchema, required=True, allow_none=True)


class RuleFiredSchema(Schema):
    code = fields.String(required=True)
    field = fields.String(required=True)
    operator = fields.String(required=True)
    threshold = fields.Raw(required=True, allow_none=True)
    action = fields.String(required=True, validate=validate.OneOf(["refer", "decline"]))
    description = fields.String(required=True)


class ScoreSchema(Schema):
    value = fields.Integer(required=True)
    min = fields.Integer(required=True)
    max = fields.Integer(required=True)


class ExplanationSchema(Schema):
    base_value = fields.Float(required=True, metadata={"description": "SHAP base value (log-odds)"})
    margin = fields.Float(required=True, metadata={"description": "Model log-odds of default"})
    attributions = fields.Dict(
        keys=fields.String(),
        values=fields.Float(),
        required=True,
        metadata={"description": "Exact SHAP attribution of each field (log-odds); sum + base = margin"},
    )


class ReasonStabilitySchema(Schema):
    top_reason = fields.Boolean(
        required=True,
        metadata={"description": "The first reason group leads the second by at least the version's top margin"},
    )
    reason_set = fields.Boolean(
        required=True,
        metadata={"description": "The last model reason given leads the next group by at least the set margin"},
    )


class RecourseChangeSchema(Schema):
    field = fields.String(required=True, metadata={"description": "An actionable field the spec lets recourse change"})
    from_ = fields.Raw(required=True, data_key="from", metadata={"description": "The applicant's value"})
    to = fields.Raw(required=True, metadata={"description": "The proposed value"})
    from_label = fields.String(required=True)
    to_label = fields.String(required=True)


class RecourseOptionSchema(Schema):
    changes = fields.List(fields.Nested(RecourseChangeSchema), required=True)
    cost = fields.Float(
        required=True,
        metadata={"description": "Sum of the relative changes |to - from| / max(|from|, step); a category change is 1"},
    )
    decision = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    score = fields.Integer(required=True)
    probability_of_default = fields.Float(required=True)


class RecourseSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["found", "none_found"]))
    fields_ = fields.List(
        fields.String(),
        required=True,
        data_key="fields",
        metadata={"description": "The fields recourse was allowed to change for this application"},
    )
    candidates = fields.Integer(required=True, metadata={"description": "Changed applications evaluated"})
    options = fields.List(
        fields.Nested(RecourseOptionSchema),
        required=True,
        metadata={"description": "Up to 3 proposals, fewest fields changed first, then smallest cost"},
    )


class ModelRefSchema(Schema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    sha256 = fields.String(required=True)
    family = fields.String(required=True)


class DecisionResponseSchema(Schema):
    decision_id = fields.String(required=True)
    application_id = fields.String(required=True)
    decision = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    score = fields.Nested(ScoreSchema, required=True)
    probability_of_default = fields.Float(required=True, validate=validate.Range(0.0, 1.0))
    risk_band = fields.String(required=True, metadata={"description": "Risk band of the recorded policy version"})
    reasons = fields.List(fields.Nested(ReasonSchema), required=True)
    rules_fired = fields.List(fields.Nested(RuleFiredSchema), required=True)
    explanation = fields.Nested(ExplanationSchema, required=True)
    model = fields.Nested(ModelRefSchema, required=True)
    policy_version = fields.String(required=True)
    catalog_version = fields.String(required=True)
    spec_version = fields.String(required=True)
    created_at = fields.String(required=True, metadata={"description": "UTC, ISO 8601"})
    latency_ms = fields.Float(
        required=True, allow_none=True, metadata={"description": "Server-side time to decide, ms"}
    )
    reason_stability = fields.Nested(
        ReasonStabilitySchema,
        metadata={
            "description": "Whether the top reason and the set of model reasons clear the model version's margin "
            "thresholds (its model card, Reason stability); absent when the version was trained without them"
        },
    )
    recourse = fields.Nested(
        RecourseSchema,
        metadata={
            "description": "What would change a refer or decline, when asked for with `?recourse=true` (recorded "
            "with the decision); absent otherwise and for an approval"
        },
    )


class BatchItemSchema(Schema):
    index = fields.Integer(required=True)
    status = fields.Integer(required=True, metadata={"description": "HTTP status this item would have had"})
    application_id = fields.String(allow_none=True)
    decision = fields.Nested(DecisionResponseSchema)
    problem = fields.Nested(ProblemSchema)


class BatchDecisionResponseSchema(Schema):
    items = fields.List(fields.Nested(BatchItemSchema), required=True)
    succeeded = fields.Integer(required=True)
    failed = fields.Integer(required=True)


class StoredDecisionSchema(Schema):
    seq = fields.Integer(required=True, metadata={"description": "Position in the hash chain"})
    prev_hash = fields.String(required=True)
    record_hash = fields.String(
        required=True, metadata={"description": "sha256(prev_hash + canonical JSON of the stored fields)"}
    )
    decision_id = fields.String(required=True)
    application_id = fields.String(required=True)
    created_at = fields.String(required=True)
    idempotency_key = fields.String(required=True, allow_none=True)
    request_hash = fields.String(required=True)
    decision = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    risk_band = fields.String(required=True)
    score = fields.Integer(required=True)
    model_name = fields.String(required=True)
    model_version = fields.String(required=True)
    reason_codes = fields.List(fields.String(), required=True)
    payload = fields.Dict(
        required=True,
        metadata={
            "description": "Everything else recorded, exactly as stored and hashed; `schema_version` (absent in "
            "the first version's records) tells its layout"
        },
    )
    request = fields.Dict(
        required=True,
        allow_none=True,
        metadata={"description": "The validated request as recorded (derived from payload; null if unreadable)"},
    )
    response = fields.Nested(
        DecisionResponseSchema,
        required=True,
        allow_none=True,
        metadata={"description": "The decision as answered (derived from payload; null if unreadable)"},
    )
    versions = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        allow_none=True,
        metadata={"description": "Every version the decision depended on, with hashes (derived from payload)"},
    )
    decided_by = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        allow_none=True,
        metadata={"description": "Who decided: API key id (first 12 hex of its sha256), label and role"},
    )


class DecisionPageSchema(Schema):
    items = fields.List(fields.Nested(StoredDecisionSchema), required=True)
    limit = fields.Integer(required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class DifferenceSchema(Schema):
    field = fields.String(required=True)
    recorded = fields.Raw(allow_none=True)
    replayed = fields.Raw(allow_none=True)


class ReplayReportSchema(Schema):
    decision_id = fields.String(required=True)
    identical = fields.Boolean(required=True)
    model = fields.Dict(required=True)
    tolerance = fields.Float(required=True)
    differences = fields.List(fields.Nested(DifferenceSchema), required=True)


class NoticeFactorSchema(Schema):
    rank = fields.Integer(required=True)
    code = fields.String(required=True)
    kind = fields.String(required=True)
    text = fields.String(required=True)
    values = fields.List(fields.String(), required=True)
    score_points = fields.Float(required=True, allow_none=True)


class NoticeScoreSchema(Schema):
    value = fields.Integer(required=True)
    min = fields.Integer(required=True)
    max = fields.Integer(required=True)
    higher_is_better = fields.Boolean(required=True)


class NoticeSchema(Schema):
    language = fields.String(required=True, metadata={"description": "The notice's language (as Content-Language)"})
    decision_id = fields.String(required=True)
    application_id = fields.String(required=True)
    decision = fields.String(required=True)
    decision_date = fields.String(required=True)
    created_at = fields.String(required=True)
    principal_reasons = fields.List(fields.Nested(NoticeFactorSchema), required=True)
    score = fields.Nested(NoticeScoreSchema, required=True)
    key_factors = fields.List(fields.Nested(NoticeFactorSchema), required=True)
    inquiries_factor = fields.Nested(NoticeFactorSchema, required=True, allow_none=True)
    inquiries_note = fields.String(required=True)
    model = fields.Dict(required=True)
    policy_version = fields.String(required=True)
    catalog_version = fields.String(required=True)
    recourse = fields.List(
        fields.String(),
        required=True,
        allow_none=True,
        metadata={
            "description": "What could change the decision, one sentence per recorded proposal; null when "
            "the decision was recorded without recourse"
        },
    )
    recourse_note = fields.String(required=True, allow_none=True)


# ---- queries ---------------------------------------------------------------------------------------


def _token(description: str) -> fields.String:
    return fields.String(
        validate=Matches(TOKEN, "Must be 1 to 64 characters of A-Z a-z 0-9 . _ : -."),
        metadata={"description": description, "pattern": TOKEN_PATTERN},
    )


class DecisionFilterSchema(StrictSchema):
    """The audit search filters (shared by search and export)."""

    application_id = ApplicationId()
    from_ = AwareDateTime(data_key="from", metadata={"description": "Created at or after (ISO-8601 with a time zone)"})
    to = AwareDateTime(metadata={"description": "Created before (ISO-8601 with a time zone)"})
    decision = fields.String(validate=validate.OneOf(ACTIONS), metadata={"description": "Only this outcome"})
    risk_band = _token("Only this risk band")
    reason_code = _token("Only decisions giving this reason code")
    model_version = _token("Only decisions made by this model version")

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if "from_" in data and "to" in data and data["to"] < data["from_"]:
            raise ValidationError("Must not be before 'from'.", field_name="to")


class DecisionSearchSchema(DecisionFilterSchema):
    cursor = fields.String(
        validate=validate.Length(min=1, max=200), metadata={"description": "`next_cursor` of the previous page"}
    )
    limit = DigitsInteger(
        load_default=DEFAULT_SEARCH_LIMIT,
        validate=validate.Range(1, MAX_SEARCH_LIMIT, error=f"Must be an integer from 1 to {MAX_SEARCH_LIMIT}."),
        metadata={"description": "Page size", "default": DEFAULT_SEARCH_LIMIT},
    )


class DecisionExportSchema(DecisionFilterSchema):
    format = fields.String(
        load_default="jsonl", validate=validate.OneOf(EXPORT_FORMATS), metadata={"description": "Export format"}
    )


class DecideQuerySchema(StrictSchema):
    recourse = fields.Boolean(
        load_default=False,
        metadata={
            "description": "true: a refer or decline also gets `recourse`, the smallest changes to actionable fields "
            "that would get it approved under the same model and policy; recorded with the decision"
        },
    )


class NoticeQuerySchema(StrictSchema):
    format = fields.String(
        validate=validate.OneOf(["json", "html"]),
        metadata={"description": "json (default) or a printable html page; `Accept: text/html` also asks for html"},
    )
    lang = fields.String(
        validate=Matches(LANGUAGE_TAG, "Must be a language tag such as en or zh-Hans."),
        metadata={
            "description": "The notice's language (e.g. `en`, `zh-Hans`, `zh-CN`), instead of `Accept-Language`; "
            "a language the deciding reason catalog does not offer is a 400",
            "pattern": LANGUAGE_TAG.pattern,
        },
    )
    bilingual = fields.Boolean(
        metadata={
            "description": "html only: the notice in the asked language, then in each other language of the "
            "deciding reason catalog on pages of their own"
        }
    )


class ReportQuerySchema(StrictSchema):
    from_ = Day(data_key="from", required=True, metadata={"description": "First day (UTC), inclusive"})
    to = Day(required=True, metadata={"description": "Last day (UTC), exclusive"})
    model = fields.String(
        validate=Matches(MODEL_NAME, "Must be a model name (lower-case letters, digits and -)."),
        metadata={"description": "Only decisions of this model name", "pattern": MODEL_NAME_PATTERN},
    )
    format = fields.String(load_default="json", validate=validate.OneOf(REPORT_FORMATS))

    @validates_schema
    def _period(self, data: dict[str, Any], **_kwargs: Any) -> None:
        first, end = data.get("from_"), data.get("to")
        if first is None or end is None:
            return
        if end <= first:
            raise ValidationError("Must be after from.", field_name="to")
        if end - first > MAX_REPORT_PERIOD:
            raise ValidationError(f"The period may cover at most {MAX_REPORT_PERIOD.days} days.", field_name="to")
        if first - date.min < end - first:  # the report compares with the period before, which must exist
            raise ValidationError("The period before this one would start before year 1.", field_name="from")


class ComparisonQuerySchema(StrictSchema):
    from_ = Day(data_key="from", required=True, metadata={"description": "First day (UTC), inclusive"})
    to = Day(required=True, metadata={"description": "Last day (UTC), exclusive"})
    kind = fields.String(
        load_default="challenger",
        validate=validate.OneOf(SHADOW_KINDS),
        metadata={"description": "challenger (another model version) or policy (a candidate policy)"},
    )
    format = fields.String(load_default="json", validate=validate.OneOf(REPORT_FORMATS))

    @validates_schema
    def _period(self, data: dict[str, Any], **_kwargs: Any) -> None:
        first, end = data.get("from_"), data.get("to")
        if first is None or end is None:
            return
        if end <= first:
            raise ValidationError("Must be after from.", field_name="to")
        if end - first > MAX_REPORT_PERIOD:
            raise ValidationError(f"The period may cover at most {MAX_REPORT_PERIOD.days} days.", field_name="to")


# ---- outcomes ----------------------------------------------------------------------------------


class OutcomesResultSchema(Schema):
    received = fields.Integer(required=True)
    stored = fields.Integer(required=True)
    unchanged = fields.Integer(required=True)


# ---- health, models, field catalog ----------------------------------------------------------------


class HealthSchema(Schema):
    status = fields.String(required=True)


class ReadySchema(Schema):
    status = fields.String(required=True)
    model = fields.Dict(required=True)
    policy_version = fields.String(required=True)
    shadows = fields.List(fields.Dict(), required=True)
    serving_state_seq = fields.Integer(required=True)
    spec_version = fields.String(required=True)
    worker = fields.Integer(
        required=True, metadata={"description": "The answering worker's process id (each worker switches on its own)"}
    )


class ModelListingSchema(Schema):
    champion = fields.Dict(required=True, allow_none=True)
    serving = fields.Dict(required=True, allow_none=True)
    models = fields.List(fields.Dict(), required=True)


class FieldCatalogSchema(Schema):
    spec_version = fields.String(required=True)
    policy_version = fields.String(required=True)
    catalog_version = fields.String(required=True)
    request = fields.Dict(required=True)
    fields_ = fields.List(fields.Dict(), required=True, data_key="fields")
    never_accepted = fields.List(fields.Dict(), required=True)
    score = fields.Dict(required=True)
    risk_bands = fields.List(fields.Dict(), required=True)
    rules = fields.List(fields.Dict(), required=True)
    max_reasons = fields.Integer(required=True)
    reason_codes = fields.List(fields.Dict(), required=True)


# ---- lifecycle: the serving state, admin actions, audit events, shadows ---------------------------

NOTE_FIELD_METADATA = {"description": "Why (kept in the audit event)"}


def _note() -> fields.String:
    return fields.String(load_default="", validate=validate.Length(max=500), metadata=NOTE_FIELD_METADATA)


def _model_name() -> fields.String:
    return fields.String(
        required=True,
        validate=Matches(MODEL_NAME, "Must be a model name (lower-case letters, digits and -)."),
        metadata={"pattern": MODEL_NAME_PATTERN, "example": "lender-gbt"},
    )


def _model_version() -> fields.String:
    return fields.String(
        required=True,
        validate=Matches(MODEL_VERSION, "Must be a model version: v1, v2, ..."),
        metadata={"pattern": MODEL_VERSION_PATTERN, "example": "v2"},
    )


def _policy_version(required: bool) -> fields.String:
    return fields.String(
        required=required,
        allow_none=not required,
        load_default=None if not required else ma.missing,
        validate=Matches(POLICY_VERSION, "Must be 1 to 100 characters of A-Z a-z 0-9 . _ - (not starting with . _ -)."),
        metadata={"pattern": POLICY_VERSION_PATTERN, "description": "A stored candidate policy version"},
    )


class PromoteSchema(StrictSchema):
    name = _model_name()
    version = _model_version()
    policy = _policy_version(required=False)
    note = _note()


class NoteSchema(StrictSchema):
    note = _note()


class ChallengerSchema(StrictSchema):
    name = _model_name()
    version = _model_version()
    note = _note()


class PolicyShadowSchema(StrictSchema):
    policy = _policy_version(required=True)
    note = _note()


class PolicyUploadSchema(StrictSchema):
    policy_yaml = fields.String(
        required=True,
        validate=validate.Length(min=1, max=256 * 1024),
        metadata={"description": "The policy file's text (YAML)"},
    )
    reason_codes_yaml = fields.String(
        required=True,
        validate=validate.Length(min=1, max=256 * 1024),
        metadata={"description": "The reason catalog file's text (YAML)"},
    )
    note = _note()


class TargetSchema(Schema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    policy = fields.String(required=True, allow_none=True)


class ServingStateSchema(Schema):
    champion = fields.Nested(TargetSchema, required=True, allow_none=True)
    challenger = fields.Nested(TargetSchema, required=True, allow_none=True)
    policy_shadow = fields.String(required=True, allow_none=True)
    previous = fields.List(fields.Nested(TargetSchema), required=True)
    source = fields.String(
        required=True, metadata={"description": "chain (a control event), registry (training) or settings (pinned)"}
    )
    seq = fields.Integer(required=True, metadata={"description": "The control event's position in the chain"})


class AuditEventSchema(Schema):
    seq = fields.Integer(required=True)
    event_id = fields.String(required=True)
    created_at = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "promotion, rollback, shadow_on, ... (may grow)"})
    actor = fields.Dict(required=True)
    details = fields.Dict(required=True)
    serving_state = fields.Dict(required=True, allow_none=True)
    prev_hash = fields.String(required=True)
    record_hash = fields.String(required=True)


class ServingSchema(Schema):
    state = fields.Nested(ServingStateSchema, required=True)
    worker = fields.Dict(required=True, metadata={"description": "What the answering worker serves now"})


class LifecycleResultSchema(Schema):
    event = fields.Nested(AuditEventSchema, required=True)
    state = fields.Nested(ServingStateSchema, required=True)


class AuditEventPageSchema(Schema):
    items = fields.List(fields.Nested(AuditEventSchema), required=True)
    limit = fields.Integer(required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class PeriodPageSchema(StrictSchema):
    """Query of a paged listing in chain order over a period: ``from``, ``to``, ``cursor``, ``limit``."""

    from_ = AwareDateTime(data_key="from", metadata={"description": "Created at or after (ISO-8601 with a time zone)"})
    to = AwareDateTime(metadata={"description": "Created before (ISO-8601 with a time zone)"})
    cursor = fields.String(
        validate=validate.Length(min=1, max=200), metadata={"description": "`next_cursor` of the previous page"}
    )
    limit = DigitsInteger(
        load_default=DEFAULT_SEARCH_LIMIT,
        validate=validate.Range(1, MAX_SEARCH_LIMIT, error=f"Must be an integer from 1 to {MAX_SEARCH_LIMIT}."),
        metadata={"description": "Page size", "default": DEFAULT_SEARCH_LIMIT},
    )

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if "from_" in data and "to" in data and data["to"] < data["from_"]:
            raise ValidationError("Must not be before 'from'.", field_name="to")


class EventSearchSchema(PeriodPageSchema):
    kind = fields.String(validate=validate.OneOf(EVENT_KINDS), metadata={"description": "Only this kind of event"})


class ShadowDecisionSchema(Schema):
    seq = fields.Integer(required=True)
    shadow_id = fields.String(required=True)
    decision_id = fields.String(required=True, metadata={"description": "The champion decision it shadows"})
    created_at = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": "challenger or policy"})
    model = fields.Dict(required=True)
    policy_version = fields.String(required=True)
    catalog_version = fields.String(required=True)
    decision = fields.String(required=True)
    score = fields.Integer(required=True)
    risk_band = fields.String(required=True)
    probability_of_default = fields.Float(required=True)
    reasons = fields.List(fields.Nested(ReasonSchema), required=True)
    rules_fired = fields.List(fields.Nested(RuleFiredSchema), required=True)
    attributions = fields.Dict(keys=fields.String(), values=fields.Float(), required=True)
    prev_hash = fields.String(required=True)
    record_hash = fields.String(required=True)


class ShadowListSchema(Schema):
    decision_id = fields.String(required=True)
    shadows = fields.List(fields.Nested(ShadowDecisionSchema), required=True)


class PolicyVersionSchema(Schema):
    policy_version = fields.String(required=True)
    catalog_version = fields.String(required=True)
    validated_with_spec = fields.String(required=True)
    created_at = fields.String(required=True)
    note = fields.String(required=True)
    files = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class PolicyListSchema(Schema):
    policies = fields.List(fields.Nested(PolicyVersionSchema), required=True)


# ---- human review ---------------------------------------------------------------------------------------------
class ReviewQueueQuerySchema(PeriodPageSchema):
    """The review queue's query: referrals decided in [``from``, ``to``), one page after ``cursor``."""


class ReviewQueuePageSchema(Schema):
    items = fields.List(
        fields.Nested(StoredDecisionSchema),
        required=True,
        metadata={"description": "Referred decisions not yet reviewed, oldest first (request, reasons, attributions)"},
    )
    limit = fields.Integer(required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class JustificationSchema(Schema):
    code = fields.String(required=True)
    text = fields.String(required=True)
    outcomes = fields.List(fields.String(), required=True, metadata={"description": "Final decisions it may justify"})


class JustificationListSchema(Schema):
    policy_version = fields.String(required=True, metadata={"description": "The served policy that defines them"})
    codes = fields.List(fields.Nested(JustificationSchema), required=True)


class ReviewBodySchema(StrictSchema):
    final_decision = fields.String(
        required=True,
        validate=validate.OneOf(("approve", "decline")),
        metadata={"description": "The reviewer's final decision (a referral is not final)"},
    )
    justification_code = fields.String(
        required=True,
        validate=validate.Length(min=1, max=40),
        metadata={"description": "A code of the served policy's review catalog (`GET /v1/reviews/codes`)"},
    )
    note = fields.String(
        load_default="",
        validate=validate.Length(max=2000),
        metadata={"description": "The reviewer's free-text justification (kept in the audit chain)"},
    )


class PrincipalSchema(Schema):
    key_id = fields.String(required=True, metadata={"description": "The first 12 hex digits of the key's sha256"})
    label = fields.String(required=True)
    roles = fields.List(fields.String(), required=True, metadata={"description": "scorer, auditor, admin, reviewer"})
