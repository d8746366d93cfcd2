"""Errors as types, rendered in one place as ``application/problem+json`` (RFC 9457).

Hierarchy::

    ProblemError                      status, type, title (+ detail, field-level errors)
    ├── MalformedRequest         400  body is not JSON, too deeply nested, empty, bad header
    ├── InvalidParameter         400  a query parameter is invalid; ``errors`` names it
    ├── Unauthorized             401  no valid API key (with ``WWW-Authenticate: Bearer``)
    ├── Forbidden                403  the key does not hold the role the endpoint needs
    ├── NotFound                 404
    ├── PayloadTooLarge          413
    ├── UnsupportedMediaType     415  content type is not application/json (UTF-8)
    ├── ValidationFailed         422  fields are invalid; ``errors`` names each one
    └── NotReady                 503  the model failed its self-check or is not loaded

Also rendered here: the decision store's ``RecordsError`` subclasses (``StoreUnavailable`` 503,
``IdempotencyConflict`` 409, carrying ``http_status``), werkzeug's ``HTTPException`` (404, 405, 413, ...),
and any unexpected exception as a 500 whose body never echoes the exception text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from flask import Flask, Response, current_app, has_request_context, json, request
from werkzeug.exceptions import HTTPException

from service.records.errors import IdempotencyConflict, RecordsError

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:credit-decision:problem:"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldError:
    """One invalid field: dotted path (``applicant.age_years``) and what is wrong with it."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"field": self.field, "message": self.message}


class ProblemError(Exception):
    """Base of every expected failure: carries its HTTP status, problem type and title."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self, detail: str, errors: Sequence[FieldError] = (), headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        """The problem type URI."""
        return TYPE_PREFIX + self.slug


class MalformedRequest(ProblemError):
    """The body is not a JSON document we can read (malformed, too deep, empty) or a header is invalid."""

    status = 400
    slug = "malformed-request"
    title = "Malformed request"


class InvalidParameter(ProblemError):
    """A query parameter is unknown, malformed or out of range; ``errors`` names each one."""

    status = 400
    slug = "invalid-parameter"
    title = "Invalid query parameter"


class Unauthorized(ProblemError):
    """No API key, or one that is not valid."""

    status = 401
    slug = "unauthorized"
    title = "Unauthorized"


class Forbidden(ProblemError):
    """The API key is valid but does not hold the role this endpoint needs."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(ProblemError):
    """No such resource."""

    status = 404
    slug = "not-found"
    title = "Not found"


class PayloadTooLarge(ProblemError):
    """The body is larger than this endpoint accepts."""

    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(ProblemError):
    """The body is not ``application/json`` in UTF-8."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class ValidationFailed(ProblemError):
    """The JSON is well formed but fields are missing, unknown or invalid."""

    status = 422
    slug = "validation-error"
    title = "Invalid application"


class NotReady(ProblemError):
    """The service cannot decide: the model is not loaded or failed its startup self-check."""

    status = 503
    slug = "not-ready"
    title = "Service not ready"


_HTTP_SLUGS = {
    400: MalformedRequest.slug,
    401: Unauthorized.slug,
    403: Forbidden.slug,
    404: NotFound.slug,
    413: PayloadTooLarge.slug,
    415: UnsupportedMediaType.slug,
}


def problem_body(
    status: int,
    type_: str,
    title: str,
    detail: str | None = None,
    errors: Sequence[FieldError] = (),
    instance: str | None = None,
) -> dict[str, Any]:
    """The RFC 9457 problem object."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
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
    if isinstance(exc, ProblemError):
        return problem_body(exc.status, exc.type, exc.title, exc.detail, exc.errors, instance), exc.headers
    if isinstance(exc, RecordsError):
        status = int(exc.http_status)
        if isinstance(exc, IdempotencyConflict):
            detail = "this Idempotency-Key was already used with a different request body"
        elif status < 500:
            detail = str(exc)
        else:
            detail = "the decision could not be recorded or read durably, so none was returned; retry later"
            log.error("decision store error", exc_info=exc)
        headers = {"Retry-After": "5"} if status == 503 else {}
        return problem_body(status, TYPE_PREFIX + exc.problem_type, exc.title, detail, (), instance), headers
    if isinstance(exc, HTTPException) and exc.code is not None and 400 <= exc.code < 600 and exc.code != 500:
        code = exc.code
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        slug = _HTTP_SLUGS.get(code, _slugify(phrase))
        headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")}
        detail = (exc.description or phrase) if code < 500 else phrase
        return problem_body(code, TYPE_PREFIX + slug, phrase, detail, (), instance), headers
    log.error("unexpected error", exc_info=exc)
    return (
        problem_body(
            500, TYPE_PREFIX + ProblemError.slug, ProblemError.title, "an unexpected error occurred", (), instance
        ),
        {},
    )


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
    """Register the one renderer for every exception."""
    app.register_error_handler(Exception, render_problem)


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
