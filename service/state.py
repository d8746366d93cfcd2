"""What one app instance holds, kept in ``app.extensions["credit_decision"]`` (never in module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from service.config import Settings
from service.errors import NotReady

if TYPE_CHECKING:
    from service.api.health import Metrics
    from service.api.schemas import ApiSchemas
    from service.models import ModelCache
    from service.records import DecisionStore
    from service.runtime import ServedModel

EXTENSION_KEY = "credit_decision"


@dataclass
class ServiceState:
    """The served model, its schemas, the decision store and whether the startup self-check passed.

    Why it is not ready is told by /readyz only (an operator endpoint); API clients get a generic 503.
    """

    settings: Settings
    metrics: Metrics
    model: ServedModel | None = None
    schemas: ApiSchemas | None = None
    store: DecisionStore | None = None
    models: ModelCache | None = None  # every model version this process has loaded (champion + replayed)
    problems: list[str] = field(default_factory=list)
    openapi: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        """True once the model passed its self-check and the decision store is open."""
        return not self.problems and self.model is not None and self.schemas is not None and self.store is not None

    @property
    def not_ready_reason(self) -> str:
        """Why the service is not ready ('' when it is)."""
        if self.ready:
            return ""
        return "; ".join(self.problems) or "starting"

    def require_model(self) -> tuple[ServedModel, ApiSchemas]:
        """The served model and its schemas, or a 503 NotReady problem."""
        if self.model is None or self.schemas is None:
            raise NotReady("no model is being served; /readyz says why", headers={"Retry-After": "30"})
        return self.model, self.schemas

    def require_models(self) -> ModelCache:
        """The model cache (for replay), or a 503 NotReady problem."""
        if self.models is None:
            raise NotReady("the model store is not available; /readyz says why", headers={"Retry-After": "30"})
        return self.models

    def require_store(self) -> DecisionStore:
        """The decision store, or a 503 NotReady problem."""
        if self.store is None:
            raise NotReady("the decision store is not open; /readyz says why", headers={"Retry-After": "30"})
        return self.store

    def require_ready(self) -> tuple[ServedModel, ApiSchemas, DecisionStore]:
        """Model, schemas and decision store, or a 503 NotReady problem."""
        if not self.ready or self.store is None:
            raise NotReady("the service is not ready; /readyz says why", headers={"Retry-After": "30"})
        model, schemas = self.require_model()
        return model, schemas, self.store


def get_state(app: Flask | None = None) -> ServiceState:
    """The state of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    state = target.extensions[EXTENSION_KEY]
    assert isinstance(state, ServiceState)
    return state
