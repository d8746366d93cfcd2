"""HTTP layer: thin Flask blueprints over the pure decision core."""

from __future__ import annotations

from flask import Flask

from service.api import admin, audit, console, decisions, health, openapi


def init_app(app: Flask) -> None:
    """Register every blueprint of the API."""
    health.init_app(app)
    decisions.init_app(app)
    audit.init_app(app)
    admin.init_app(app)
    openapi.init_app(app)
    console.init_app(app)  # the auditor console and its compliance endpoints: reports, outcomes, notices
