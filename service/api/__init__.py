"""HTTP layer: thin Flask blueprints over the pure decision core."""

from __future__ import annotations

from flask import Flask

from service.api import decisions, health, openapi


def init_app(app: Flask) -> None:
    """Register every blueprint of the API."""
    health.init_app(app)
    decisions.init_app(app)
    openapi.init_app(app)
