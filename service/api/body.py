"""Reading a JSON request body defensively: content type, size, nesting depth, duplicate keys, and values
JSON allows but this API cannot hold.

Every failure here is a domain error the API answers with a 4xx problem; nothing the client sends can reach ``json.loads`` deep enough
to raise RecursionError, because the bracket depth is measured first with one regex pass. Two things JSON's grammar allows are
refused here, naming where they are (``applications[0].applicant.<field>``):

- an integer longer than Python converts (``sys.get_int_max_str_digits``, 4300 digits): 422, the value is out of every range;
- a lone UTF-16 surrogate escape (``"\\ud800"``) in a key or a string: 400, it is not a Unicode character (RFC 7493, I-JSON),
  could not be stored as UTF-8, and could not even be echoed in an error message.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

from flask import Request
from gunicorn.http.errors import ParseException as ServerParseError
from werkzeug.exceptions import RequestEntityTooLarge

from service.errors import FieldError, MalformedBody, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

JSON_MEDIA_TYPE = "application/json"
#: Content-Type headers that are JSON in UTF-8 as they stand (any other is parsed: case, parameters, spaces)
_PLAIN_JSON = frozenset({JSON_MEDIA_TYPE, f"{JSON_MEDIA_TYPE}; charset=utf-8", f"{JSON_MEDIA_TYPE};charset=utf-8"})
# a whole JSON string (escapes included) or one bracket; strings are skipped so brackets inside them don't count
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPENERS = frozenset(b"[{")
# a \u escape of a UTF-16 surrogate (paired or not): only bodies holding one are searched for lone ones
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
#: Shown for the first few offending places only.
_MAX_NAMED = 20


class _TooLongInteger:
    """Stands in for an integer literal too long to convert, until its place in the document is named."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _TooLongInteger:
    limit = sys.get_int_max_str_digits()
    digits = len(text) - (text[0] == "-")
    if limit and digits > limit:
        return _TooLongInteger(digits)
    return int(text)


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent or 'body'}[{key}]"
    return f"{parent}.{key}" if parent else key


def _walk(document: Any) -> Iterator[tuple[str, Any, bool]]:
    """(path, value, is_key) of every object key and every leaf value of a parsed document."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                yield _path(path, key), key, True
                stack.append((_path(path, key), child))
        elif isinstance(node, list):
            stack.extend((_path(path, index), child) for index, child in enumerate(node))
        else:
            yield path, node, False


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def printable(text: str) -> str:
    """``text`` with every lone surrogate written as its escape (``\\ud800``): safe to encode as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if _has_surrogate(text) else text


def json_depth_exceeds(body: bytes, max_depth: int) -> bool:
    """Whether the bracket nesting of ``body`` goes deeper than ``max_depth`` (cheap, no parsing)."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    depth = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if len(token) != 1:
            continue
        if token[0] in _OPENERS:
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedBody(f"duplicate key {key!r} in a JSON object")
        out[key] = value
    return out


def read_json(request: Request, max_bytes: int, max_depth: int) -> Any:
    """The request body parsed as JSON; UnsupportedMediaType, PayloadTooLarge or MalformedBody otherwise."""
    if request.headers.get("Content-Type") not in _PLAIN_JSON:  # the usual header needs no parsing
        if request.mimetype != JSON_MEDIA_TYPE:
            got = request.mimetype or "no content type"
            raise UnsupportedMediaType(f"send the body as {JSON_MEDIA_TYPE} (got {got})")
        charset = request.mimetype_params.get("charset", "utf-8").lower()
        if charset not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"the body must be UTF-8 encoded (got charset={charset})")
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"the body is {request.content_length} bytes; this endpoint accepts at most {max_bytes}")
    # one byte more than allowed is read: a body without a length (chunked) that stops at the limit is whole, one
    # that goes on is too large (werkzeug's limited stream ends quietly at the limit, which would cut it silently)
    request.max_content_length = max_bytes + 1
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes") from None
    except (ServerParseError, OSError) as exc:  # a broken chunked encoding, the client gone mid-body
        raise MalformedBody(f"the body could not be read: {type(exc).__name__}") from None
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    if not body.strip():
        raise MalformedBody("the request body is empty; send a JSON object")
    if json_depth_exceeds(body, max_depth):
        raise MalformedBody(f"the JSON body is nested deeper than {max_depth} levels")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        document = json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise MalformedBody(f"the JSON body is nested deeper than {max_depth} levels") from None
    except ValueError:  # an integer longer than Python converts: read again, marking them, to name where they are
        _reject_too_long_integers(json.loads(text, object_pairs_hook=_reject_duplicates, parse_int=_parse_int))
        raise MalformedBody("the body is not valid JSON") from None
    if _SURROGATE_ESCAPE.search(body):
        _reject_lone_surrogates(document)
    return document


def _reject_lone_surrogates(document: Any) -> None:
    """MalformedBody naming every key or string holding a lone surrogate (escaped, so the problem can be sent)."""
    places = {
        FieldError(printable(path) or "body", "this key holds" if is_key else "this value holds")
        for path, leaf, is_key in _walk(document)
        if isinstance(leaf, str) and _has_surrogate(leaf)
    }
    if places:
        raise MalformedBody(
            "the body holds a lone UTF-16 surrogate escape (e.g. \\ud800 without its pair), which is not a Unicode "
            "character; send text as valid surrogate pairs or plain UTF-8",
            [
                FieldError(e.field, f"{e.message} a lone UTF-16 surrogate escape")
                for e in sorted(places, key=lambda e: e.field)[:_MAX_NAMED]
            ],
        )


def _reject_too_long_integers(document: Any) -> None:
    """ValidationFailed naming every integer too long to convert (a document holding none passes)."""
    limit = sys.get_int_max_str_digits()
    places = sorted(
        {
            FieldError(path or "body", f"an integer of {leaf.digits} digits; at most {limit} digits are read")
            for path, leaf, _is_key in _walk(document)
            if isinstance(leaf, _TooLongInteger)
        },
        key=lambda e: e.field,
    )
    if places:
        raise ValidationFailed(f"{len(places)} invalid field(s): integer too long", places[:_MAX_NAMED])
