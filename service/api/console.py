"""The auditor console: a static page (``/console/``) plus the compliance endpoints it calls.

The page itself is public and holds no data: it asks for an auditor API key (kept in the tab's
sessionStorage only) and calls the JSON API with it, so every record it shows passes the same
role check as any other client. Everything is served from ``service/console/`` (no CDN, works offline)
under a strict Content-Security-Policy: scripts and styles only from this origin, nothing framed
except the blob: documents the page builds from reports and notices it fetched itself.

:func:`init_app` also registers the compliance endpoints the console uses: period reports
(:mod:`service.api.reports`), outcomes (:mod:`service.api.outcomes`) and notices (:mod:`service.api.notice`).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, redirect, send_from_directory

from service.api import notice, outcomes, reports

STATIC_FOLDER = Path(__file__).resolve().parents[1] / "console"
FILES = ("index.html", "console.js", "console.css")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-src blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

bp = Blueprint("console", __name__, url_prefix="/console")


def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("")
def console_root() -> Response:
    """Redirect to the console page."""
    return redirect("/console/", code=308)  # type: ignore[return-value]


@bp.get("/")
def console_page() -> Response:
    """The console page (public: it asks for an auditor key and calls the API with it)."""
    return _secure(send_from_directory(STATIC_FOLDER, "index.html", mimetype="text/html"))


@bp.get("/<any('console.js', 'console.css'):name>")
def console_asset(name: str) -> Response:
    """The console's script and stylesheet."""
    mimetype = "text/javascript" if name.endswith(".js") else "text/css"
    return _secure(send_from_directory(STATIC_FOLDER, name, mimetype=mimetype))


def init_app(app: Flask) -> None:
    """Register the console page and the compliance endpoints: reports, outcomes, notices."""
    app.register_blueprint(bp)
    reports.init_app(app)
    outcomes.init_app(app)
    notice.init_app(app)
