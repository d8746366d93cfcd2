"""Errors over HTTP: the one table from domain errors to problem types, and the one renderer.

Every error response is ``application/problem+json`` (RFC 9457) with field-level ``errors``. The domain
errors (:mod:`service.errors`) know no HTTP; :data:`PROBLEMS` gives each class its status, problem type
and title (the most specific class listed in an error's MRO wins). werkzeug's own HTTP errors (404 for an
unknown URL, 405, 413, ...) are rendered the same way, and anything else is a 500 whose body never echoes
the exception's text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app, has_request_context, json, request
from werkzeug.exceptions import HTTPException

from service.auth import challenge
from service.errors import (
    AccessDenied,
    Conflict,
    CreditDecisionError,
    DuplicateDecisionId,
    FieldError,
    Forbidden,
    IdempotencyConflict,
    InvalidHeader,
    InvalidInput,
    InvalidParameter,
    MalformedBody,
    ModelUnavailable,
    NoReviewCatalog,
    NotFound,
    NoticeNotRequired,
    NotReady,
    NotServable,
    OutcomeConflict,
    PayloadTooLarge,
    RateLimited,
    RecordsError,
    ReviewConflict,
    ServingConflict,
    StoreBusy,
    StoreFull,
    StoreUnavailable,
    Unauthenticated,
    UnknownDecisions,
    UnsupportedMediaType,
    ValidationFailed,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:credit-decision:problem:"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """How one kind of error is answered: HTTP status, problem type (slug) and title."""

    status: int
    slug: str
    title: str

    @property
    def type(self) -> str:
        """The problem type URI."""
        return TYPE_PREFIX + self.slug


INTERNAL = Problem(500, "internal-error", "Internal server error")

#: The one mapping of domain errors to HTTP. Listed from the most specific class to the least.
PROBLEMS: dict[type[CreditDecisionError], Problem] = {
    UnknownDecisions: Problem(422, "unknown-decision", "Outcome for an unknown decision"),
    NotServable: Problem(422, "not-servable", "Model version or policy cannot be served"),
    ValidationFailed: Problem(422, "validation-error", "Invalid request"),
    MalformedBody: Problem(400, "malformed-request", "Malformed request"),
    InvalidHeader: Problem(400, "malformed-request", "Malformed request"),
    InvalidParameter: Problem(400, "invalid-parameter", "Invalid query parameter"),
    UnsupportedMediaType: Problem(415, "unsupported-media-type", "Unsupported media type"),
    PayloadTooLarge: Problem(413, "payload-too-large", "Payload too large"),
    InvalidInput: Problem(400, "invalid-input", "Invalid input"),
    Unauthenticated: Problem(401, "unauthorized", "Unauthorized"),
    Forbidden: Problem(403, "forbidden", "Forbidden"),
    AccessDenied: Problem(403, "forbidden", "Forbidden"),
    NotFound: Problem(404, "not-found", "Not found"),
    IdempotencyConflict: Problem(409, "idempotency-conflict", "Idempotency key reused with a different request"),
    OutcomeConflict: Problem(409, "outcome-conflict", "Outcome conflicts with a recorded observation"),
    NoticeNotRequired: Problem(409, "notice-not-required", "No adverse-action notice is required"),
    ServingConflict: Problem(409, "serving-conflict", "The serving state does not allow this change"),
    ReviewConflict: Problem(409, "already-reviewed", "The decision has already been reviewed"),
    NoReviewCatalog: Problem(409, "no-review-catalog", "The served policy takes no reviews"),
    Conflict: Problem(409, "conflict", "Conflict"),
    RateLimited: Problem(429, "rate-limited", "Too many requests"),
    NotReady: Problem(503, "not-ready", "Service not ready"),
    StoreFull: Problem(503, "store-full", "Decision store full"),
    StoreBusy: Problem(503, "store-busy", "Decision store busy"),
    StoreUnavailable: Problem(503, "store-unavailable", "Decision store unavailable"),
    ModelUnavailable: Problem(503, "model-unavailable", "Model version unavailable"),
    DuplicateDecisionId: Problem(500, "duplicate-decision-id", "Duplicate decision id"),
    RecordsError: Problem(500, "records-error", "Decision store error"),
    CreditDecisionError: INTERNAL,
}

#: Problem types of werkzeug's HTTP errors (the rest get a slug of their reason phrase).
_HTTP_SLUGS = {400: "malformed-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
               413: "payload-too-large", 415: "unsupported-media-type", 429: "rate-limited"}  # fmt: skip

#: Details never shown to clients: what went wrong inside is logged, the client is told what to do.
_HIDDEN_DETAIL = {
    StoreUnavailable: "the decision could not be recorded or read durably, so none was returned; retry later",
    ModelUnavailable: "the model version cannot be loaded; /readyz and the logs say why",
    RecordsError: "the decision store failed; the logs say why",
}


def problem_for(error: type[CreditDecisionError]) -> Problem:
    """The problem of a domain error class: the entry of its nearest listed ancestor."""
    for cls in error.__mro__:
        found = PROBLEMS.get(cls)
        if found is not None:
            return found
    return INTERNAL


def problem_body(
    problem: Problem, detail: str | None, errors: Sequence[FieldError] = (), instance: str | None = None
) -> dict[str, Any]:
    """The RFC 9457 problem object."""
    body: dict[str, Any] = {"type": problem.type, "title": problem.title, "status": problem.status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = [e.to_dict() for e in errors]
    return body


def problem_of(exc: BaseException) -> tuple[dict[str, Any], dict[str, str]]:
    """Problem body and extra headers of any exception (the body never echoes unexpected exception text)."""
    instance = request.path if has_request_context() else None
    if isinstance(exc, CreditDecisionError):
        problem = problem_for(type(exc))
        detail = next((text for cls, text in _HIDDEN_DETAIL.items() if isinstance(exc, cls)), exc.detail)
        if problem.status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.detail, exc_info=exc if problem is INTERNAL else None)
        headers: dict[str, str] = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = challenge(exc.reason)
        if isinstance(exc, UnsupportedMediaType):
            headers["Accept-Post"] = "application/json"
        return problem_body(problem, detail, exc.errors, instance), headers
    if isinstance(exc, HTTPException) and exc.code is not None and 400 <= exc.code < 600 and exc.code != 500:
        code = exc.code
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        problem = Problem(code, _HTTP_SLUGS.get(code, _slugify(phrase)), phrase)
        headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")}
        detail = (exc.description or phrase) if code < 500 else phrase
        return problem_body(problem, detail, (), instance), headers
    log.error("unexpected error", exc_info=exc)
    return problem_body(INTERNAL, "an unexpected error occurred", (), instance), {}


def render_problem(exc: BaseException) -> Response:
    """The one renderer: any exception -> ``application/problem+json`` response."""
    body, headers = problem_of(exc)
    response = current_app.response_class(
        json.dumps(body, ensure_ascii=False), status=body["status"], mimetype=PROBLEM_MEDIA_TYPE
    )
    for key, value in headers.items():
        response.headers[key] = value
    return response


def init_app(app: Flask) -> None:
    """Register the one renderer for every exception (werkzeug's HTTP errors included)."""
    app.register_error_handler(HTTPException, render_problem)
    app.register_error_handler(Exception, render_problem)


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
