"""Reading a JSON request body defensively: content type, size, nesting depth, duplicate keys.

Every failure here is a domain error the API answers with a 4xx problem; nothing the client sends can reach ``json.loads`` deep enough
to raise RecursionError, because the bracket depth is measured first with one regex pass.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from service.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"
# a whole JSON string (escapes included) or one bracket; strings are skipped so brackets inside them don't count
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPENERS = frozenset(b"[{")


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
    if request.mimetype != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(f"send the body as {JSON_MEDIA_TYPE} (got {request.mimetype or 'no content type'})")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"the body must be UTF-8 encoded (got charset={charset})")
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"the body is {request.content_length} bytes; this endpoint accepts at most {max_bytes}")
    request.max_content_length = max_bytes
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes") from None
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
        return json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise MalformedBody(f"the JSON body is nested deeper than {max_depth} levels") from None
