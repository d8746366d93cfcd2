"""Human review of referred decisions (role ``reviewer``).

- ``GET /v1/reviews/codes``: the justification codes of the served policy;
- ``GET /v1/reviews/queue``: referred decisions not yet reviewed, oldest first, with their request, reasons and
  attributions;
- ``POST /v1/decisions/{id}/review`` ``{final_decision, justification_code, note}``: record the final decision, an
  audit event in the hash chain (the automated decision's record is never altered; a decision is reviewed once);
- ``GET /v1/decisions/{id}/review``: the review of a decision.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Response, jsonify, request

from service.api.decisions import DECISION_ID_PARAMETER, stored_json
from service.api.framework import Blueprint, guarded, problems, responds
from service.api.schemas import (
    AuditEventSchema,
    JustificationListSchema,
    ReviewBodySchema,
    ReviewQueuePageSchema,
    ReviewQueueQuerySchema,
)
from service.auth import current_principal
from service.decisions import utc_now
from service.errors import NotReady
from service.reviews import ReviewDesk, require_review
from service.serialize import event_json
from service.state import get_state


def desk() -> ReviewDesk:
    """The review desk over this worker's decision store and served policy."""
    service = get_state().service
    store = service.require_store()

    def policy() -> Any:
        served = service.served
        if served is None:
            raise NotReady("no model is being served; /readyz says why")
        return served.policy

    return ReviewDesk(store, policy=policy, clock=utc_now)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def blueprint() -> Blueprint:
    """The review endpoints."""
    bp = Blueprint("reviews", __name__, url_prefix="/v1", description="Human review of referred decisions")

    @bp.route("/reviews/codes", methods=["GET"])
    @responds(200, JustificationListSchema, description="The served policy's justification codes")
    @problems(503)
    @guarded("reviewer")
    def justification_codes() -> Response:
        """Justification codes a reviewer may give

        From the `review` section of the served policy (versioned data); empty when the policy takes no reviews.
        """
        policy, codes = desk().justifications()
        return _no_store(jsonify({"policy_version": policy.version, "codes": codes}))

    @bp.route("/reviews/queue", methods=["GET"])
    @responds(
        200,
        ReviewQueuePageSchema,
        description="One page of referred decisions awaiting review, oldest first",
        headers={"Link": {"schema": {"type": "string"}, "description": 'The next page (rel="next")'}},
    )
    @problems(400, 503)
    @guarded("reviewer")
    @bp.arguments(ReviewQueueQuerySchema, location="query", error_status_code=400)
    def review_queue(query: dict[str, Any]) -> Response:
        """The review queue

        Every referral without a review, oldest first, with the request, the reasons and the attributions the
        reviewer needs; follow `next_cursor` until it is null.
        """
        limit = int(query["limit"])
        page, next_cursor = desk().queue(
            since=query.get("from_"), until=query.get("to"), cursor=query.get("cursor"), limit=limit
        )
        response = jsonify({"items": [stored_json(s) for s in page], "limit": limit, "next_cursor": next_cursor})
        if next_cursor is not None:
            following = {**request.args.to_dict(), "cursor": next_cursor, "limit": str(limit)}
            response.headers["Link"] = f'<{request.path}?{urlencode(following)}>; rel="next"'
        return _no_store(response)

    @bp.route("/decisions/<decision_id>/review", methods=["POST"], parameters=[DECISION_ID_PARAMETER])
    @responds(201, AuditEventSchema, description="Recorded: the review's audit event")
    @problems(
        400, 404, 409, 413, 415, 422, 503,
        s409="Already reviewed, or the served policy defines no justification codes",
        s422="Invalid body: unknown justification code, or one that does not justify this final decision",
    )  # fmt: skip
    @guarded("reviewer")
    @bp.arguments(ReviewBodySchema)
    def review(body: dict[str, Any], decision_id: str) -> Response:
        """Record the final decision of a human review

        The reviewer's final decision (approve or decline), a justification code of the served policy and a note,
        recorded as an audit event in the hash chain naming the reviewer's key, the automated decision and whether
        the review overrides it. The automated decision's record is never altered. A decision is reviewed once.
        """
        stored = get_state().service.stored(decision_id)
        principal, role = current_principal()
        event = desk().record(
            stored,
            final_decision=body["final_decision"],
            justification_code=body["justification_code"],
            note=body["note"],
            actor=principal.record(role),
        )
        response = jsonify(event_json(event))
        response.status_code = 201
        return _no_store(response)

    @bp.route("/decisions/<decision_id>/review", methods=["GET"], parameters=[DECISION_ID_PARAMETER])
    @responds(200, AuditEventSchema, description="The review's audit event")
    @problems(404, 503)
    @guarded("reviewer")
    def get_review(decision_id: str) -> Response:
        """The review of a decision"""
        get_state().service.stored(decision_id)  # 404 for an unknown decision
        return _no_store(jsonify(event_json(require_review(desk(), decision_id).stored)))

    return bp
