"""``POST /v1/outcomes``: observed outcomes (repaid = good, defaulted = bad) posted back for past decisions.

Role ``admin``: posting outcomes writes to the audit database, and the ``auditor`` role stays read-only
(auditors must be able to trust that nothing they can do changes what they audit); the loan-servicing
job that reports repayments runs with an admin key. Outcomes go to their own table and never touch the
hash-chained decision records; the period report's back-testing reads them.

Body::

    {"outcomes": [{"decision_id": "...", "outcome": "good" | "bad", "observed_at": "2026-03-31T00:00:00Z"}]}

``observed_at`` is an ISO 8601 date-time with a time zone, or a date (midnight UTC). The batch is all
or nothing: 422 naming each invalid item or unknown decision, 409 if an observation is already
recorded with the other outcome; 200 with ``{received, stored, unchanged}`` otherwise.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Blueprint, Flask, request

from service.api.body import read_json
from service.auth import require_role
from service.errors import FieldError, ValidationFailed
from service.records.outcomes import OUTCOMES, ObservedOutcome, UnknownDecisions, record_outcomes
from service.state import get_state

MAX_OUTCOMES = 1000
#: How far in the future an observation may lie (clock skew between the poster and us).
CLOCK_SKEW = timedelta(minutes=5)
_DECISION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_ITEM_KEYS = frozenset({"decision_id", "outcome", "observed_at"})

bp = Blueprint("outcomes", __name__, url_prefix="/v1")


def parse_observed_at(value: Any) -> datetime:
    """An ISO 8601 date-time with a time zone, or a date (midnight UTC); ValueError otherwise."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise ValueError("must be an ISO 8601 date-time with a time zone, e.g. 2026-03-31T00:00:00Z")
    if len(value) == 10:
        day = date.fromisoformat(value)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("needs a time zone (e.g. a trailing Z for UTC)")
    return moment.astimezone(UTC)


def parse_outcomes(payload: Any, now: datetime) -> list[ObservedOutcome]:
    """Validate the body; raises a 422 problem naming every invalid field."""
    if not isinstance(payload, dict):
        raise ValidationFailed("the body must be a JSON object", [FieldError("$", "must be an object")])
    errors: list[FieldError] = [FieldError(key, "unknown field") for key in sorted(set(payload) - {"outcomes"})]
    items = payload.get("outcomes")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_OUTCOMES:
        errors.append(FieldError("outcomes", f"must be a list of 1 to {MAX_OUTCOMES} outcomes"))
        raise ValidationFailed("invalid outcomes", errors)
    parsed: list[ObservedOutcome] = []
    for index, item in enumerate(items):
        where = f"outcomes[{index}]"
        if not isinstance(item, dict):
            errors.append(FieldError(where, "must be an object"))
            continue
        errors.extend(FieldError(f"{where}.{key}", "unknown field") for key in sorted(set(item) - _ITEM_KEYS))
        decision_id, outcome, observed = item.get("decision_id"), item.get("outcome"), item.get("observed_at")
        bad = len(errors)
        if not isinstance(decision_id, str) or not _DECISION_ID.match(decision_id):
            errors.append(FieldError(f"{where}.decision_id", "must be a decision id (1-64 of A-Z a-z 0-9 _ -)"))
        if outcome not in OUTCOMES:
            errors.append(FieldError(f"{where}.outcome", "must be 'good' (repaid) or 'bad' (defaulted)"))
        observed_at: datetime | None = None
        try:
            observed_at = parse_observed_at(observed)
        except ValueError as exc:
            errors.append(FieldError(f"{where}.observed_at", str(exc)))
        if observed_at is not None and observed_at > now + CLOCK_SKEW:
            errors.append(FieldError(f"{where}.observed_at", "lies in the future"))
        if len(errors) == bad and observed_at is not None:
            parsed.append(ObservedOutcome(str(decision_id), "good" if outcome == "good" else "bad", observed_at))
    if errors:
        raise ValidationFailed(f"{len(errors)} invalid field(s); nothing was stored", errors)
    return parsed


@bp.post("/outcomes")
@require_role("admin")
def post_outcomes() -> dict[str, Any]:
    """Record observed outcomes of past decisions, all or nothing."""
    state = get_state()
    store = state.require_store()
    payload = read_json(request, state.settings.max_batch_content_length, state.settings.max_json_depth)
    now = datetime.now(UTC)
    outcomes = parse_outcomes(payload, now)
    try:
        result = record_outcomes(store, outcomes, recorded_at=now)
    except UnknownDecisions as exc:
        index = {o.decision_id: i for i, o in reversed(list(enumerate(outcomes)))}
        errors = [FieldError(f"outcomes[{index[d]}].decision_id", f"no decision {d}") for d in exc.decision_ids]
        raise ValidationFailed(f"{len(exc.decision_ids)} unknown decision(s); nothing was stored", errors) from None
    return result.to_dict()


def init_app(app: Flask) -> None:
    """Register the outcomes endpoint."""
    app.register_blueprint(bp)
