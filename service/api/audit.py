"""Auditor endpoints (role ``auditor``): search decision records, export them, replay a decision.

- ``GET /v1/decisions``: filtered by application_id, from/to (ISO-8601 with a timezone; ``from`` inclusive,
  ``to`` exclusive), decision, risk_band, reason_code and model_version; in chain (seq) order, cursor-paginated
  (``limit`` 1 to 1000, default 100; ``next_cursor`` in the body and a ``Link: <...>; rel="next"`` header).
- ``GET /v1/decisions/export?format=csv|jsonl``: the same filters, every matching record streamed page by page.
- ``POST /v1/decisions/{id}/replay``: re-decide the stored request with the recorded model version and report
  any difference (see service.replay); writes nothing.

An unknown, repeated or invalid query parameter is a 400 problem whose ``errors`` name it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, jsonify, request

from service.api.decisions import request_hash
from service.api.schemas import APPLICATION_ID
from service.auth import require_role
from service.errors import FieldError, InvalidParameter, NotFound
from service.records import InvalidQuery
from service.records.cli import format_records, record_pages
from service.replay import replay_record
from service.serialize import iso_utc
from service.state import get_state

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
DECISIONS = ("approve", "refer", "decline")
EXPORT_FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
FILTERS = ("application_id", "from", "to", "decision", "risk_band", "reason_code", "model_version")
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")
_DECISION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
# a '+' in an unencoded query string arrives as a space: "...T10:00:00 02:00" means "+02:00"
_SPACE_OFFSET = re.compile(r" (\d{2}(?::?\d{2})?)\Z")

bp = Blueprint("audit", __name__, url_prefix="/v1")


def _invalid(parameter: str, message: str) -> InvalidParameter:
    return InvalidParameter(f"query parameter {parameter!r}: {message}", [FieldError(parameter, message)])


def _single_args(allowed: tuple[str, ...]) -> dict[str, str]:
    args: dict[str, str] = {}
    for name in request.args:
        values = request.args.getlist(name)
        if name not in allowed:
            raise _invalid(name, f"unknown parameter; allowed: {', '.join(allowed)}")
        if len(values) > 1:
            raise _invalid(name, "given more than once")
        args[name] = values[0]
    return args


def _moment(name: str, value: str) -> datetime:
    text = _SPACE_OFFSET.sub(r"+\1", value.strip())
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(name, "not an ISO-8601 datetime, e.g. 2026-01-31T00:00:00Z") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _invalid(name, "needs a timezone, e.g. 2026-01-31T00:00:00Z or +01:00")
    return moment.astimezone(UTC)


def search_filters(args: Mapping[str, str]) -> dict[str, Any]:
    """The store's search filters from validated query parameters."""
    filters: dict[str, Any] = {}
    if "application_id" in args:
        if not APPLICATION_ID.match(args["application_id"]):
            raise _invalid("application_id", "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")
        filters["application_id"] = args["application_id"]
    if "decision" in args:
        if args["decision"] not in DECISIONS:
            raise _invalid("decision", f"must be one of {', '.join(DECISIONS)}")
        filters["decision"] = args["decision"]
    for name in ("risk_band", "reason_code", "model_version"):
        if name in args:
            if not _TOKEN.match(args[name]):
                raise _invalid(name, "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")
            filters[name] = args[name]
    if "from" in args:
        filters["since"] = _moment("from", args["from"])
    if "to" in args:
        filters["until"] = _moment("to", args["to"])
    if "since" in filters and "until" in filters and filters["until"] < filters["since"]:
        raise _invalid("to", "must not be before 'from'")
    return filters


def _limit(args: Mapping[str, str]) -> int:
    raw = args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise _invalid("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _query_problem(exc: InvalidQuery) -> InvalidParameter:
    # every other argument is validated above, so what the store can still refuse is the cursor
    message = str(exc)
    return _invalid("limit" if "limit" in message else "cursor", message)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/decisions")
@require_role("auditor")
def list_decisions() -> Response:
    """Decision records matching the filters, in chain order, one page at a time."""
    args = _single_args((*FILTERS, "cursor", "limit"))
    filters = search_filters(args)
    limit = _limit(args)
    store = get_state().require_store()
    try:
        page, next_cursor = store.search(**filters, cursor=args.get("cursor"), limit=limit)
    except InvalidQuery as exc:
        raise _query_problem(exc) from None
    response = jsonify({"items": [stored.to_dict() for stored in page], "limit": limit, "next_cursor": next_cursor})
    if next_cursor is not None:
        following = {**args, "cursor": next_cursor, "limit": str(limit)}
        response.headers["Link"] = f'<{request.path}?{urlencode(following)}>; rel="next"'
    return _no_store(response)


@bp.get("/decisions/export")
@require_role("auditor")
def export_decisions() -> Response:
    """Every matching record, streamed as CSV or JSON Lines in chain order (hashes included, re-verifiable)."""
    args = _single_args((*FILTERS, "format"))
    fmt = args.get("format", "jsonl")
    if fmt not in EXPORT_FORMATS:
        raise _invalid("format", f"must be one of {', '.join(EXPORT_FORMATS)}")
    filters = search_filters(args)
    store = get_state().require_store()
    pages = record_pages(store, **filters)
    try:
        first = next(pages, None)  # read before streaming starts, so a failing store still gets a problem
    except InvalidQuery as exc:
        raise _query_problem(exc) from None

    def generate() -> Iterator[str]:
        yield format_records([] if first is None else first, fmt, header=True)
        for page in pages:
            yield format_records(page, fmt)

    stamp = iso_utc(datetime.now(UTC)).replace("-", "").replace(":", "").split(".")[0]
    response = Response(generate(), content_type=EXPORT_FORMATS[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="decisions-{stamp}Z.{fmt}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return _no_store(response)


@bp.post("/decisions/<decision_id>/replay")
@require_role("auditor")
def replay_decision(decision_id: str) -> dict[str, Any]:
    """Re-decide a stored request with the recorded model version and report any difference (writes nothing)."""
    state = get_state()
    store = state.require_store()
    if not _DECISION_ID.match(decision_id):
        raise NotFound(f"no decision {decision_id!r}")
    stored = store.get(decision_id)
    if stored is None:
        raise NotFound(f"no decision {decision_id!r}")
    return replay_record(stored, state.require_models(), request_hash).to_dict()


def init_app(app: Flask) -> None:
    """Register the auditor endpoints."""
    app.register_blueprint(bp)
