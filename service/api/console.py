"""The auditor console: a static page (``/console/``) calling the JSON API with the key it is given.

The page itself is public and holds no data: it asks for an auditor API key (kept in the tab's
sessionStorage only) and calls the JSON API with it, so every record it shows passes the same
role check as any other client. Everything is served from ``service/console/`` (no CDN, works offline)
under a strict Content-Security-Policy: scripts and styles only from this origin, nothing framed
except the blob: documents the page builds from reports and notices it fetched itself.
"""

from __future__ import annotations

from pathlib import Path

from flask import Response, redirect, send_from_directory

from service.api.framework import Blueprint, public, responds

STATIC_FOLDER = Path(__file__).resolve().parents[1] / "console"
FILES = ("index.html", "console.js", "console.css")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-src blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


def blueprint() -> Blueprint:
    """The console's static page and assets."""
    bp = Blueprint("console", __name__, url_prefix="/console", description="The auditor console")

    @bp.route("", methods=["GET"])
    @responds(308, description="To /console/", headers={"Location": {"schema": {"type": "string"}}})
    @public
    def console_root() -> Response:
        """The console (redirect)"""
        return redirect("/console/", code=308)  # type: ignore[return-value]

    @bp.route("/", methods=["GET"])
    @responds(200, {"type": "string"}, content_type="text/html", description="The console page")
    @public
    def console_page() -> Response:
        """The auditor console (public page: it asks for an auditor key and calls the API with it)"""
        return _secure(send_from_directory(STATIC_FOLDER, "index.html", mimetype="text/html"))

    @bp.route("/<any('console.js', 'console.css'):name>", methods=["GET"])
    @responds(200, {"type": "string"}, content_type="text/javascript", description="The console's script")
    @responds(200, {"type": "string"}, content_type="text/css", description="The console's style", success=True)
    @public
    def console_asset(name: str) -> Response:
        """An asset of the console"""
        mimetype = "text/javascript" if name.endswith(".js") else "text/css"
        return _secure(send_from_directory(STATIC_FOLDER, name, mimetype=mimetype))

    return bp
