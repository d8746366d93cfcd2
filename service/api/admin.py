"""Admin endpoints (role ``admin``): the model versions in the store, the champion and the served version; and
``GET /v1/me`` (any role): what the presented key is (its id, label and roles), e.g. for the console's sign-in."""

from __future__ import annotations

from flask import Response, jsonify

from service.api.framework import Blueprint, guarded, problems, responds
from service.api.schemas import ModelListingSchema, PrincipalSchema
from service.auth import ROLES, current_principal
from service.state import get_state


def blueprint() -> Blueprint:
    """The admin endpoints."""
    bp = Blueprint("admin", __name__, url_prefix="/v1", description="Models")

    @bp.route("/models", methods=["GET"])
    @responds(200, ModelListingSchema, description="The listing")
    @problems(503)
    @guarded("admin")
    def list_models() -> Response:
        """Model versions in the store

        Every model name and version, the champion, the served version and which versions this process has loaded.
        """
        return jsonify(get_state().service.require_models().listing())

    @bp.route("/me", methods=["GET"])
    @responds(200, PrincipalSchema, description="The presented key: its id, label and roles")
    @guarded(*ROLES)
    def me() -> Response:
        """The presented API key

        Its key id (the first 12 hex digits of its sha256), its label and every role it holds; never the key.
        """
        principal, _role = current_principal()
        response = jsonify({"key_id": principal.key_id, "label": principal.label, "roles": sorted(principal.roles)})
        response.headers["Cache-Control"] = "no-store"
        return response

    return bp
