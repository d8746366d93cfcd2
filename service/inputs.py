"""Validation of the inputs every transport shares: marshmallow schemas and their errors as domain errors.

Transport-neutral (no Flask, no click): the HTTP views parse with these schemas through webargs, the
commands with :func:`load_valid`, and both get the same ``ValidationFailed`` naming every invalid field
with the same dotted paths (``outcomes[1].observed_at``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import marshmallow as ma
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from model_store.vocabulary import DECISION_ID, DECISION_ID_PATTERN, DECISION_ID_RULE
from service.errors import FieldError, ValidationFailed
from service.records.outcomes import ObservedOutcome

MAX_OUTCOMES = 1000
#: How far in the future an observation may lie (clock skew between the poster and us).
OUTCOME_CLOCK_SKEW = timedelta(minutes=5)


class Matches(validate.Validator):
    """The value matches one of the shared vocabulary's compiled patterns (documented by ``pattern`` metadata)."""

    def __init__(self, pattern: re.Pattern[str], error: str) -> None:
        self.pattern = pattern
        self.message = error

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or self.pattern.match(value) is None:
            raise ValidationError(self.message)
        return value


class StrictSchema(Schema):
    """Rejects unknown fields."""

    class Meta:
        unknown = RAISE


ROOT = "body"
PROHIBITED_MESSAGE = (
    "prohibited-basis attribute: never a model input; it may be supplied for fairness monitoring "
    "only, in the request's separate `monitoring` object"
)


def field_errors(messages: Any, prohibited: frozenset[str] = frozenset(), prefix: str = "") -> list[FieldError]:
    """Flatten marshmallow's nested messages into sorted dotted-path field errors."""
    out: list[FieldError] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if key == "_schema":
                out.extend(field_errors(value, prohibited, prefix))
                continue
            if isinstance(key, int):  # an item of a list
                path = f"{prefix or ROOT}[{key}]"
            else:
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


def validation_failed(messages: Any, schema: ma.Schema) -> ValidationFailed:
    """The domain error of marshmallow's messages for a body (prohibited attributes named as such)."""
    errors = field_errors(messages, getattr(schema, "prohibited", frozenset()))
    return ValidationFailed(f"{len(errors)} invalid field(s)", errors)


def load_valid(schema: ma.Schema, data: Any) -> Any:
    """``schema.load(data)``, or ValidationFailed naming every invalid field (batch items, CLI input)."""
    try:
        return schema.load(data)
    except ma.ValidationError as exc:
        raise validation_failed(exc.messages, schema) from None


class ObservedAt(fields.Field):
    """An ISO 8601 date-time with a time zone, or a date (midnight UTC)."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not 10 <= len(value) <= 40:
            raise ValidationError("Must be an ISO 8601 date-time with a time zone, e.g. 2026-03-31T00:00:00Z.")
        try:
            if len(value) == 10:
                day = date.fromisoformat(value)
                moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            else:
                moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                "Must be an ISO 8601 date-time with a time zone, e.g. 2026-03-31T00:00:00Z."
            ) from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValidationError("Needs a time zone (e.g. a trailing Z for UTC).")
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Out of the supported date range.") from None
        if moment > datetime.now(UTC) + OUTCOME_CLOCK_SKEW:
            raise ValidationError("Lies in the future.")
        return moment


class OutcomeSchema(StrictSchema):
    decision_id = fields.String(
        required=True,
        validate=Matches(DECISION_ID, f"Must be a decision id ({DECISION_ID_RULE})."),
        metadata={"pattern": DECISION_ID_PATTERN},
    )
    outcome = fields.String(
        required=True,
        validate=validate.OneOf(["good", "bad"], error="Must be 'good' (repaid) or 'bad' (defaulted)."),
    )
    observed_at = ObservedAt(
        required=True,
        metadata={"type": "string", "description": "ISO 8601 date-time with a time zone, or a date (midnight UTC)"},
    )


class OutcomesRequestSchema(StrictSchema):
    body_limit = "max_batch_content_length"
    outcomes = fields.List(
        fields.Nested(OutcomeSchema), required=True, validate=validate.Length(min=1, max=MAX_OUTCOMES)
    )


def observed_outcomes(validated: Mapping[str, Any]) -> list[ObservedOutcome]:
    """The outcomes of a validated :class:`OutcomesRequestSchema` body."""
    return [ObservedOutcome(o["decision_id"], o["outcome"], o["observed_at"]) for o in validated["outcomes"]]
