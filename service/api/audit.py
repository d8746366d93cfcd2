"""Auditor endpoints (role ``auditor``): search decision records, export them, replay a decision.

- ``GET /v1/decisions``: filtered by application_id, from/to (ISO-8601 with a timezone; ``from`` inclusive,
  ``to`` exclusive), decision, risk_band, reason_code and model_version; in chain (seq) order, cursor-paginated
  (``limit`` 1 to 1000, default 100; ``next_cursor`` in the body and a ``Link: <...>; rel="next"`` header).
- ``GET /v1/decisions/export?format=csv|jsonl``: the same filters, every matching record streamed page by page.
- ``POST /v1/decisions/{id}/replay``: re-decide the stored request with the recorded model version and report
  any difference (:mod:`service.replay`); writes nothing.

An unknown, repeated or invalid query parameter is a 400 problem whose ``errors`` name it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Response, jsonify, request

from service.api.decisions import DECISION_ID_PARAMETER, stored_json
from service.api.framework import Blueprint, guarded, problems, responds
from service.api.languages import CONTENT_LANGUAGE, CONTENT_LANGUAGE_HEADER, mark_language
from service.api.schemas import (
    DecisionExportSchema,
    DecisionPageSchema,
    DecisionSearchSchema,
    ReplayReportSchema,
)
from service.core.canonical import iso_utc
from service.core.recorded import PayloadError
from service.records.export import export_chunks
from service.state import get_state

EXPORT_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


def store_filters(query: dict[str, Any]) -> dict[str, Any]:
    """The store's search filters from a validated query."""
    names = {"from_": "since", "to": "until"}
    return {
        names.get(key, key): value
        for key, value in query.items()
        if key not in ("cursor", "limit", "format") and value is not None
    }


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def blueprint() -> Blueprint:
    """The auditor's search, export and replay endpoints."""
    bp = Blueprint("audit", __name__, url_prefix="/v1", description="Audit decision records")

    @bp.route("/decisions", methods=["GET"])
    @responds(
        200,
        DecisionPageSchema,
        description="One page of records, in chain order",
        headers={"Link": {"schema": {"type": "string"}, "description": 'The next page (rel="next")'}},
    )
    @problems(400, 503)
    @guarded("auditor")
    @bp.arguments(DecisionSearchSchema, location="query", error_status_code=400)
    def list_decisions(query: dict[str, Any]) -> Response:
        """Search decision records

        Records matching every given filter, in chain order, one page at a time: follow `next_cursor` (or the
        `Link: <...>; rel="next"` header) until it is null.
        """
        limit = int(query["limit"])
        store = get_state().service.require_store()
        page, next_cursor = store.search(**store_filters(query), cursor=query.get("cursor"), limit=limit)
        response = jsonify({"items": [stored_json(s) for s in page], "limit": limit, "next_cursor": next_cursor})
        if next_cursor is not None:
            following = {**request.args.to_dict(), "cursor": next_cursor, "limit": str(limit)}
            response.headers["Link"] = f'<{request.path}?{urlencode(following)}>; rel="next"'
        return _no_store(response)

    @bp.route("/decisions/export", methods=["GET"])
    @responds(
        200,
        {"type": "string"},
        content_type="text/csv",
        description="The records as CSV (an attachment), hashes included so an export can be re-verified",
        headers={"Content-Disposition": {"schema": {"type": "string"}}},
    )
    @responds(
        200,
        {"type": "string"},
        content_type="application/x-ndjson",
        description="The records as JSON Lines (an attachment)",
        success=True,
    )
    @problems(400, 503)
    @guarded("auditor")
    @bp.arguments(DecisionExportSchema, location="query", error_status_code=400)
    def export_decisions(query: dict[str, Any]) -> Response:
        """Export decision records as CSV or JSON Lines

        Every record matching the filters, streamed in chain order with its hashes.
        """
        fmt = str(query["format"])
        chunks = export_chunks(get_state().service.require_store(), fmt, **store_filters(query))
        stamp = iso_utc(datetime.now(UTC)).replace("-", "").replace(":", "").split(".")[0]
        response = Response(chunks, content_type=EXPORT_MEDIA_TYPES[fmt])
        response.headers["Content-Disposition"] = f'attachment; filename="decisions-{stamp}Z.{fmt}"'
        response.headers["X-Content-Type-Options"] = "nosniff"
        return _no_store(response)

    @bp.route("/decisions/<decision_id>/replay", methods=["POST"], parameters=[DECISION_ID_PARAMETER])
    @responds(
        200,
        ReplayReportSchema,
        description="The replay report (texts compared as recorded: in the deciding catalog's default language)",
        headers={CONTENT_LANGUAGE: CONTENT_LANGUAGE_HEADER[CONTENT_LANGUAGE]},
    )
    @problems(404, 503)
    @guarded("auditor")
    def replay_decision(decision_id: str) -> Response:
        """Replay a decision with the exact model version recorded

        Re-decides the stored request with the recorded model version (its own feature spec, policy and reason
        catalog) and lists every difference from what was recorded; numbers are compared within 1e-9. Writes
        nothing. Reason texts are compared as recorded, in the default language of the deciding reason catalog.
        """
        service = get_state().service
        report = service.replay(decision_id)
        try:
            catalog = service.catalog_of(service.recorded(decision_id))
        except PayloadError:
            catalog = None
        language = None if catalog is None else catalog.default_language
        return mark_language(jsonify(report.to_dict()), language, negotiated=False)

    return bp
