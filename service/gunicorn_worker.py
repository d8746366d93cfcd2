"""gunicorn's sync worker answering its own errors as ``application/problem+json``, like the app does.

gunicorn rejects some requests before the app sees them: a request line over ``limit_request_line`` (414), a
header over ``limit_request_field_size`` or more than ``limit_request_fields`` headers (431), a malformed request
line or header, e.g. a NUL byte (400), an unsupported transfer coding (501). Its worker writes those answers as an
HTML page (:func:`gunicorn.util.write_error`). :class:`ProblemSyncWorker` keeps gunicorn's own decision of status,
reason and logging (``Worker.handle_error``) and only changes how the answer is written: an RFC 9457 problem
with the same type URIs as the app's. A sync worker handles one request at a time in its process, so
swapping the writer for the duration of one ``handle_error`` call cannot affect another request.

It also takes SIGHUP (which gunicorn's worker leaves to kill it) as "re-read the API key file".

Enabled by ``worker_class`` in :mod:`service.gunicorn_conf`.
"""

from __future__ import annotations

import json
import re
import signal
import socket
from http import HTTPStatus
from typing import Any

from flask import Flask
from gunicorn import util
from gunicorn.workers.sync import SyncWorker

from service.auth import expire_keys

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:credit-decision:problem:"
#: Problem types the app uses for the same statuses (service.api.problems); the rest are slugs of the reason.
_SLUGS = {400: "malformed-request", 403: "forbidden", 500: "internal-error"}
_MAX_DETAIL = 300


def problem_bytes(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP/1.1 answer (``Connection: close``) carrying an ``application/problem+json`` body."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = reason or "Error"
    slug = _SLUGS.get(status) or re.sub(r"[^a-z0-9]+", "-", phrase.lower()).strip("-")
    detail = message if status < 500 else ""
    body: dict[str, Any] = {"type": TYPE_PREFIX + slug, "title": phrase, "status": status}
    if detail:
        body["detail"] = detail[:_MAX_DETAIL]
    payload = json.dumps(body, ensure_ascii=True).encode("ascii")
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nConnection: close\r\nContent-Type: {PROBLEM_MEDIA_TYPE}\r\n"
        f"Content-Length: {len(payload)}\r\nCache-Control: no-store\r\n\r\n"
    )
    return head.encode("latin-1") + payload


def write_problem(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for :func:`gunicorn.util.write_error`, writing a problem instead of an HTML page."""
    util.write_nonblock(sock, problem_bytes(int(status_int), str(reason), str(mesg)))


class ProblemSyncWorker(SyncWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's sync worker, its own error answers written as problems; SIGHUP re-reads the API key file.

    (SIGHUP to the master makes gunicorn start fresh workers, which read the key file as they start; SIGHUP to a
    worker, which gunicorn would let kill it, has it re-read the key file at its next request instead.)
    """

    def init_signals(self) -> None:
        """gunicorn's worker signals, and SIGHUP: re-read the key file at the next request."""
        super().init_signals()
        signal.signal(signal.SIGHUP, self._reread_keys)
        signal.siginterrupt(signal.SIGHUP, False)

    def _reread_keys(self, _signum: int, _frame: Any) -> None:
        app = getattr(self, "wsgi", None)
        if isinstance(app, Flask):
            expire_keys(app)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's handling (status, reason, log lines), written by :func:`write_problem`."""
        html_writer = util.write_error
        util.write_error = write_problem
        try:
            super().handle_error(req, client, addr, exc)
        finally:
            util.write_error = html_writer
