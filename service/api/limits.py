"""Rate limits per API key and role: flask-limiter over the limits library, off unless ``RATE_LIMIT`` is set.

Every guarded operation counts against the caller's key in the role it acts in (the key id, never the
secret); a role without a limit, a public endpoint and a request without a valid key are not counted (the
guard answers the latter 401/403). The counts live where ``RATE_LIMIT_STORAGE`` says: ``memory://`` counts
per worker process (with W gunicorn workers a key gets up to W times its limit: the limits library has no
storage shared between processes without a server), ``redis://`` shares them between every worker and
replica. A breach is the domain error :class:`~service.errors.RateLimited`, rendered by the one problem
renderer as 429 with ``Retry-After``. If the storage cannot be reached, requests are let through and the
failure is logged (fail open: a limit protects capacity, it must not take the service down with Redis).
"""

from __future__ import annotations

import math
import time
from typing import cast

from flask import Flask, Response, current_app, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from limits.errors import ConfigurationError

from service.api.problems import render_problem
from service.auth import authenticate, required_roles
from service.config import ConfigError, Settings
from service.errors import RateLimited, Unauthenticated

#: Where on ``g`` the caller of the current request is kept: (key id, role), or () when not counted.
_CALLER = "credit_decision_rate_caller"
#: A Redis that does not answer must not hold a request up for long (it then fails open).
_REDIS_TIMEOUTS = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}


def _caller() -> tuple[str, str] | tuple[()]:
    """(key id, role) the current request acts as, or () if it is not counted."""
    found: tuple[str, str] | tuple[()] | None = g.get(_CALLER)
    if found is not None:
        return found
    found = ()
    view = current_app.view_functions.get(request.endpoint or "")
    roles = required_roles(view) if view is not None else None
    if roles:
        try:
            principal = authenticate()
        except Unauthenticated:
            principal = None
        granted = sorted(principal.roles & set(roles)) if principal is not None else []
        if principal is not None and granted:  # the role the guard will let it act in
            found = (principal.key_id, granted[0])
    setattr(g, _CALLER, found)
    return found


def init_app(app: Flask, settings: Settings) -> Limiter | None:
    """Install the per-key limits of the settings (None, and nothing installed, when none is configured)."""
    if not settings.rate_limits:
        return None
    per_role = dict(settings.rate_limits)

    def key() -> str:
        caller = _caller()
        return f"{caller[0]}/{caller[1]}" if caller else ""

    def limit() -> str:
        caller = _caller()
        return per_role.get(caller[1], "") if caller else ""

    options: dict[str, float] = {}
    if settings.rate_limit_storage.startswith("redis"):  # redis, rediss, redis+sentinel, redis+cluster
        options.update(_REDIS_TIMEOUTS)
    try:
        limiter = Limiter(
            key,
            application_limits=[ApplicationLimit(limit, scope="api")],  # no limit string: not counted
            storage_uri=settings.rate_limit_storage,
            storage_options=cast("dict[str, str | int]", options),
            key_prefix=settings.rate_limit_key_prefix,
            strategy="fixed-window",
            headers_enabled=False,  # Retry-After is on the 429; no storage round trip for headers on every answer
            swallow_errors=True,
        )
        limiter.init_app(app)
    except ConfigurationError as exc:
        raise ConfigError(f"RATE_LIMIT_STORAGE {settings.rate_limit_storage!r}: {exc}") from None

    def breached(exc: RateLimitExceeded) -> Response:
        caller = _caller()
        window = exc.limit.limit
        try:
            current = limiter.current_limit
            reset_at = current.reset_at if current is not None else time.time() + window.get_expiry()
        except Exception:  # the storage went away between the count and this: a whole window
            reset_at = time.time() + window.get_expiry()
        wait = max(1, min(math.ceil(reset_at - time.time()), window.get_expiry()))
        who = f"the API key {caller[0]} acting as {caller[1]}" if caller else "this API key"
        return render_problem(RateLimited(f"{who} is limited to {window}; retry after {wait} s", wait))

    app.register_error_handler(RateLimitExceeded, breached)
    return limiter
