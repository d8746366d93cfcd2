"""flask-smorest, fitted to this API: request parsing, documented errors and access control in one place.

Every view declares, with decorators beside its code, what it reads (``blp.arguments``: a JSON body or
query parameters, parsed and validated by the same marshmallow schema the OpenAPI document shows), what
it answers (:func:`responds`), every problem it can answer (:func:`problems`) and the role it needs
(:func:`guarded`, which also enforces it). flask-smorest generates the OpenAPI document from those
declarations, so it cannot forget an endpoint or a status; a test checks every URL rule is in it and the
contract test checks the live answers against it.

The parser reads JSON bodies with :func:`service.api.body.read_json` (media type, size limit, nesting
depth, duplicate keys, UTF-8) and turns validation errors into the domain's ``ValidationFailed`` (body,
422) or ``InvalidParameter`` (query, 400) with dotted field paths; a query parameter given twice is
refused rather than silently taking the first value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar, cast

import flask_smorest
import marshmallow as ma
from flask import Request
from webargs.flaskparser import FlaskParser

from service.api.body import read_json
from service.auth import require_role
from service.errors import FieldError, InvalidParameter
from service.inputs import field_errors, validation_failed
from service.state import get_state

PROBLEM_MEDIA_TYPE = "application/problem+json"
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
#: Body limit per schema: the name of the setting holding it (``Settings`` attribute).
BODY_LIMIT_ATTRIBUTE = "body_limit"

F = TypeVar("F", bound=Callable[..., Any])

_PROBLEM_TEXT = {
    400: "Malformed request: the body is not readable JSON, or a header or query parameter is invalid",
    401: "No valid API key (`WWW-Authenticate: Bearer`)",
    403: "The API key does not hold the role this operation needs",
    404: "No such resource",
    409: "Conflicts with what is recorded",
    413: "Body too large",
    415: "Content type is not application/json (UTF-8)",
    422: "Invalid fields; `errors` names each one",
    429: "The API key exceeded its role's rate limit (`RATE_LIMIT`); see Retry-After",
    500: "Internal error (the body never holds internal details)",
    503: "Not ready (model self-check failed or pending) or the decision store is unavailable; see Retry-After",
}


class FieldErrorSchema(ma.Schema):
    """One invalid field or parameter."""

    field = ma.fields.String(required=True, metadata={"description": "Dotted path, e.g. applicant.<field> or limit"})
    message = ma.fields.String(required=True)


class ProblemSchema(ma.Schema):
    """An RFC 9457 problem: every error answer of this API."""

    type = ma.fields.String(required=True, metadata={"description": "Problem type URI"})
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String()
    instance = ma.fields.String()
    errors = ma.fields.List(
        ma.fields.Nested(FieldErrorSchema), metadata={"description": "Field-level errors (dotted paths)"}
    )


class Parser(FlaskParser):
    """webargs' Flask parser reading bodies defensively and raising the domain's errors."""

    DEFAULT_UNKNOWN_BY_LOCATION: dict[str, str | None] = {  # noqa: RUF012 (a class-level table, as in webargs)
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": None,  # the schema's own Meta.unknown (RAISE): an unknown parameter is an error
        "querystring": None,
    }

    def load_json(self, req: Request, schema: ma.Schema) -> Any:
        """The request's JSON body within the schema's size limit (415, 413 and 400 problems otherwise)."""
        settings = get_state().settings
        limit_name = getattr(schema, BODY_LIMIT_ATTRIBUTE, "max_content_length")
        return read_json(req, int(getattr(settings, limit_name)), settings.max_json_depth)

    def load_querystring(self, req: Request, schema: ma.Schema) -> Any:
        """The query parameters; a parameter given more than once is an error, not a silent first value."""
        repeated = sorted(name for name in req.args if len(req.args.getlist(name)) > 1)
        if repeated:
            raise InvalidParameter(
                f"query parameter(s) given more than once: {', '.join(repeated)}",
                [FieldError(name, "given more than once") for name in repeated],
            )
        return super().load_querystring(req, schema)

    def handle_error(
        self,
        error: ma.ValidationError,
        req: Request,
        schema: ma.Schema,
        *,
        error_status_code: int | None,
        error_headers: Mapping[str, str] | None,
    ) -> NoReturn:
        """Validation errors as domain errors naming every field (query: 400, body: 422)."""
        messages = error.messages if isinstance(error.messages, Mapping) else {"json": error.messages}
        location, inner = next(iter(messages.items()))
        if location in ("query", "querystring"):
            errors = field_errors(inner)
            if len(errors) == 1:
                raise InvalidParameter(f"query parameter {errors[0].field!r}: {errors[0].message}", errors)
            names = ", ".join(sorted({e.field for e in errors}))
            raise InvalidParameter(f"invalid query parameters: {names}", errors)
        raise validation_failed(inner, schema)


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]  # flask-smorest is untyped
    """A flask-smorest blueprint using :class:`Parser`; each operation's id is its view's name in camelCase."""

    ARGUMENTS_PARSER = Parser()

    def arguments(self, schema: Any, **kwargs: Any) -> Any:
        """``flask_smorest.Blueprint.arguments`` with a schema class instantiated once, here: webargs would build an
        instance of a class at every request (a schema instance holds no per-load state, so one serves them all)."""
        return super().arguments(schema() if isinstance(schema, type) else schema, **kwargs)

    def _store_endpoint_docs(self, endpoint: str, obj: Any, parameters: Any, tags: Any, **options: Any) -> None:
        super()._store_endpoint_docs(endpoint, obj, parameters, tags, **options)
        head, *rest = endpoint.split("_")
        operation_id = head + "".join(word.capitalize() for word in rest)
        for method, doc in self._docs[endpoint].items():
            if method != "parameters" and isinstance(doc, dict):
                doc.setdefault("manual_doc", {}).setdefault("operationId", operation_id)


class Api(flask_smorest.Api):  # type: ignore[misc]  # flask-smorest is untyped
    """flask-smorest's Api without its own error handler or default error response: every error is a
    documented ``application/problem+json`` problem rendered by :mod:`service.api.problems`."""

    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self) -> None:
        """The app registers the one problem renderer itself."""


def _apidoc(view: Any) -> dict[str, Any]:
    """The documentation flask-smorest collects on a view (``_apidoc``), created on first use."""
    doc: dict[str, Any] = view.__dict__.setdefault("_apidoc", {})
    return doc


def responds(
    status: int,
    schema: Any = None,
    *,
    description: str,
    content_type: str | None = None,
    headers: dict[str, Any] | None = None,
    success: bool = True,
) -> Callable[[F], F]:
    """Document one answer of a view, as ``blp.response``/``blp.alt_response`` do, without wrapping it.

    The views build their own responses (one serialisation, headers set where they are decided), so
    flask-smorest's response wrappers would only add a call layer per documented status to every request.
    """

    def decorate(view: F) -> F:
        entry: dict[str, Any] = {"description": description}
        if schema is not None:
            entry["schema"] = schema() if isinstance(schema, type) else schema
        if headers:
            entry["headers"] = headers
        entry["content_type"] = content_type
        doc = _apidoc(view)
        doc.setdefault("response", {}).setdefault("responses", {}).setdefault(status, []).append(entry)
        if success:
            doc.setdefault("success_status_codes", []).append(status)
        return view

    return decorate


def documented(**operation: Any) -> Callable[[F], F]:
    """Add fields to a view's OpenAPI operation (as ``blp.doc`` does, without wrapping it)."""

    def decorate(view: F) -> F:
        manual = _apidoc(view).setdefault("manual_doc", {})
        for key, value in operation.items():
            if isinstance(value, dict) and isinstance(manual.get(key), dict):
                manual[key] = {**manual[key], **value}
            else:
                manual[key] = value
        return view

    return decorate


def problems(*statuses: int, **descriptions: str) -> Callable[[F], F]:
    """Document the problems a view can answer (each an ``application/problem+json`` Problem)."""

    def decorate(view: F) -> F:
        for status in statuses:
            text = descriptions.get(f"s{status}", _PROBLEM_TEXT.get(status, "Problem"))
            view = responds(status, ProblemSchema, description=text, content_type=PROBLEM_MEDIA_TYPE, success=False)(
                view
            )
        return view

    return decorate


def guarded(*roles: str) -> Callable[[F], F]:
    """The caller's API key must hold one of ``roles``: enforced, and documented (security, 401, 403, 429)."""

    def decorate(view: F) -> F:
        view = documented(security=SECURITY, **{"x-required-roles": sorted(roles)})(view)
        view = problems(401, 403, 429)(view)
        return cast(F, require_role(*roles)(view))

    return decorate


def public(view: F) -> F:
    """A view anyone may call: documented with an empty security requirement."""
    return documented(security=[])(view)
