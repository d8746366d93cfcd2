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

from typing import Any

from flask import Response, jsonify

from service.api.framework import Blueprint, guarded, problems, responds
from service.api.schemas import OutcomesResultSchema
from service.inputs import OutcomesRequestSchema, observed_outcomes
from service.state import get_state


def blueprint() -> Blueprint:
    """The outcomes endpoint."""
    bp = Blueprint("outcomes", __name__, url_prefix="/v1", description="Observed outcomes for back-testing")

    @bp.route("/outcomes", methods=["POST"])
    @responds(200, OutcomesResultSchema, description="What was stored")
    @problems(400, 409, 413, 415, 422, 503, s409="An observation is already recorded with the other outcome")
    @guarded("admin")
    @bp.arguments(OutcomesRequestSchema)
    def post_outcomes(validated: dict[str, Any]) -> Response:
        """Record observed outcomes of past decisions

        All or nothing: an unknown decision or an invalid item stores nothing (422 naming each one).
        """
        return jsonify(get_state().service.record_outcomes(observed_outcomes(validated)).to_dict())

    return bp
