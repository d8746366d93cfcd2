"""What one app instance holds, kept in ``app.extensions["credit_decision"]`` (never in module globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from service.config import Settings
from service.decisions import DecisionService
from service.metrics import Metrics

if TYPE_CHECKING:
    from service.api.framework import Api
    from service.live import ServingWatcher
    from service.models import ModelCache
    from service.records import DecisionStore
    from service.runtime import ServedModel

EXTENSION_KEY = "credit_decision"


@dataclass
class ServiceState:
    """The app's settings, metrics, decision service and API (with its generated OpenAPI document)."""

    settings: Settings
    metrics: Metrics
    service: DecisionService
    api: Api | None = None
    openapi: dict[str, Any] | None = None
    watcher: ServingWatcher | None = None  # keeps what is served in step with the deployment's serving state

    # shortcuts for operators and tests: what the service serves and records into
    @property
    def model(self) -> ServedModel | None:
        """The model being served (None if none passed its self-check)."""
        return self.service.served

    @property
    def models(self) -> ModelCache | None:
        """Every model version this process has loaded."""
        return self.service.models

    @property
    def store(self) -> DecisionStore | None:
        """The decision store (None if it could not be opened)."""
        return self.service.store

    @property
    def ready(self) -> bool:
        """True once the model passed its self-check and the decision store is open."""
        return self.service.ready

    @property
    def not_ready_reason(self) -> str:
        """Why the service is not ready ('' when it is)."""
        return self.service.not_ready_reason

    def require_store(self) -> DecisionStore:
        """The decision store, or NotReady."""
        return self.service.require_store()


def get_state(app: Flask | None = None) -> ServiceState:
    """The state of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    state = target.extensions[EXTENSION_KEY]
    assert isinstance(state, ServiceState)
    return state
