"""Admin endpoints (role ``admin``): the model versions in the store, the champion and the served version."""

from __future__ import annotations

from flask import Response, jsonify

from service.api.framework import Blueprint, guarded, problems, responds
from service.api.schemas import ModelListingSchema
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

    return bp
