"""Admin endpoints (role ``admin``): the model versions in the store, the champion and the served version."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask

from service.auth import require_role
from service.state import get_state

bp = Blueprint("admin", __name__, url_prefix="/v1")


@bp.get("/models")
@require_role("admin")
def list_models() -> dict[str, Any]:
    """Every model name and version in the store, which one is champion, served and loaded in this process."""
    return get_state().require_models().listing()


def init_app(app: Flask) -> None:
    """Register the admin endpoints."""
    app.register_blueprint(bp)
