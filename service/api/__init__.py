"""HTTP layer: thin flask-smorest blueprints over the decision service; the contract is generated from them."""

from __future__ import annotations

from flask import Flask

from service.api import (
    admin,
    audit,
    console,
    decisions,
    health,
    lifecycle,
    notice,
    openapi,
    outcomes,
    problems,
    reports,
    reviews,
)
from service.api.framework import Api
from service.api.schemas import RequestSchemas
from service.runtime import ServedModel


def init_app(app: Flask, requests: RequestSchemas, model: ServedModel | None) -> Api:
    """Register the problem renderer, every blueprint of the API and the document describing them."""
    app.config.update(
        API_TITLE="credit-decision",
        API_VERSION=openapi.package_version(),
        OPENAPI_VERSION="3.1.0",
    )
    problems.init_app(app)
    health.init_app(app)
    api = Api(app)
    openapi.describe(api, model)
    for blueprint in (
        health.blueprint(),
        decisions.blueprint(requests),
        audit.blueprint(),
        notice.blueprint(),
        reports.blueprint(),
        outcomes.blueprint(),
        admin.blueprint(),
        lifecycle.blueprint(),
        reviews.blueprint(),
        openapi.blueprint(),
        console.blueprint(),
    ):
        api.register_blueprint(blueprint)
    return api
