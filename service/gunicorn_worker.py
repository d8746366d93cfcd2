"""gunicorn's sync and threaded workers answering their own errors as ``application/problem+json``, like the app does.

gunicorn rejects some requests before the app sees them: a request line over ``limit_request_line`` (414), a
header over ``limit_request_field_size`` or more than ``limit_request_fields`` headers (431), a malformed request
line or header, e.g. a NUL byte (400), an unsupported transfer coding (501). Its worker writes those answers as an
HTML page (:func:`gunicorn.util.write_error`). :class:`ProblemThreadWorker` (gthread, the default) and
:class:`ProblemSyncWorker` keep gunicorn's own decision of status, reason and logging (``Worker.handle_error``) and
only change how the answer is written: an RFC 9457 problem with the same type URIs as the app's.

It also takes SIGHUP (which gunicorn's worker leaves to kill it) as "re-read the API key file".

Chosen by ``worker_class`` in :mod:`service.gunicorn_conf` (``GUNICORN_THREADS``).
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
from gunicorn.workers.gthread import ThreadWorker
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


class _ProblemAnswers:
    """What both worker classes add to gunicorn's: its own error answers written as problems, SIGHUP re-reads
    the API key file.

    (SIGHUP to the master makes gunicorn start fresh workers, which read the key file as they start; SIGHUP to a
    worker, which gunicorn would let kill it, has it re-read the key file at its next request instead.)
    """

    def init_process(self) -> None:
        """Write gunicorn's error answers as problems in this worker process, then run gunicorn's worker.

        gunicorn's ``Worker.handle_error`` (status, reason, log lines) is the only caller of
        :func:`gunicorn.util.write_error`, so the writer is replaced for the whole worker process, once, before
        any request (or request thread) exists: nothing is swapped per request, which threads could race on."""
        util.write_error = write_problem
        super().init_process()  # type: ignore[misc]  # gunicorn is untyped; runs the worker until it exits

    def init_signals(self) -> None:
        """gunicorn's worker signals, and SIGHUP: re-read the key file at the next request."""
        super().init_signals()  # type: ignore[misc]
        signal.signal(signal.SIGHUP, self._reread_keys)
        signal.siginterrupt(signal.SIGHUP, False)

    def _reread_keys(self, _signum: int, _frame: Any) -> None:
        app = getattr(self, "wsgi", None)
        if isinstance(app, Flask):
            expire_keys(app)  # sets two attributes; the next request of any thread re-reads the file


class ProblemSyncWorker(_ProblemAnswers, SyncWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's sync worker (one request at a time per process), its errors as problems."""


class ProblemThreadWorker(_ProblemAnswers, ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's threaded worker (``gthread``: ``threads`` requests at a time per process), its errors as problems.

    Everything a request touches is safe to share between its threads: the decision store keeps one connection
    per thread and commits through one writer per process (:mod:`service.records.group`); metrics, the shadow
    queue, the key file's reload and the serving watcher take locks where they update shared state."""
