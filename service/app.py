"""The Flask app factory: ``create_app(test_config)``; nothing is built at import time.

At startup the factory loads the API keys (a key configuration error, or production without keys,
refuses to build the app: see :mod:`service.auth`), then loads the configured model version (default:
the store's champion), verifies every artifact hash, runs the self-check (score and explain the reference
sample, attributions must sum to the ONNX margin) and opens the decision store. If any of that fails the app
still starts, so that /healthz answers and /readyz can say why it is not ready (503); decision endpoints
answer 503 too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from model_store.store import ModelStore
from service import api, auth, errors
from service.api.health import Metrics
from service.api.schemas import build_schemas
from service.config import ConfigError, Settings
from service.models import ModelCache, ModelUnavailable
from service.records import RecordsError, open_decision_store
from service.state import EXTENSION_KEY, ServiceState

log = logging.getLogger(__name__)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings from ``test_config`` over the environment, model loaded and self-checked."""
    settings = Settings.load(test_config)
    keys = load_keys(settings)
    app = Flask(__name__)
    app.config.update(TESTING=settings.testing, MAX_CONTENT_LENGTH=settings.max_batch_content_length)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented field order
    state = ServiceState(settings=settings, metrics=Metrics())
    app.extensions[EXTENSION_KEY] = state
    errors.init_app(app)
    auth.init_app(app, keys)
    api.init_app(app)
    _load_model(state)
    _open_store(state)
    if state.ready and state.model is not None:
        log.info("ready: serving %s %s", state.model.info.name, state.model.info.version)
    else:
        log.error("not ready: %s", state.not_ready_reason)
    return app


def load_keys(settings: Settings) -> auth.KeyRing:
    """The API keys of the settings and the key file; ConfigError if malformed, or missing in production."""
    keys = list(settings.api_keys)
    path = settings.api_keys_file
    if settings.api_keys_file_required or path.is_file():
        try:
            keys.extend(auth.read_key_file(path))
        except auth.KeyConfigError as exc:
            raise ConfigError(str(exc)) from exc
    ring = auth.KeyRing(keys)
    if len(ring) == 0:
        if settings.env == "production":
            raise ConfigError(
                f"ENV=production refuses to start without API keys: none in API_KEYS_FILE ({path}); "
                "create one with `credit-decision keys create --role scorer --file FILE`"
            )
        log.warning(
            "no API keys configured (key file %s): every endpoint but health, metrics and docs answers 401; "
            "create a development key with `credit-decision keys create --role scorer` (also auditor, admin)",
            path,
        )
    else:
        log.info("API keys loaded: %d key(s), roles %s", len(ring), ", ".join(sorted(ring.roles)))
    return ring


def _load_model(state: ServiceState) -> None:
    settings = state.settings
    store = ModelStore(settings.model_store)
    state.models = ModelCache(store)
    if settings.model_name:
        name = settings.model_name
        versions = store.versions(name)
        version = settings.model_version or (versions[-1] if versions else "v1")
    else:
        champion = store.champion()
        if champion is None:
            state.problems.append(
                f"no champion model in the model store {store.root}; run `credit-decision train` (or `make train`)"
            )
            return
        name, version = champion
    models = ModelCache(store)
    try:
        served = models.get(name, version)
    except ModelUnavailable as exc:
        state.problems.append(f"model {name} {version} failed to load or self-check: {exc}")
        log.error("model %s %s failed to load or self-check", name, version, exc_info=exc)
        return
    models.serving = served
    example = (served.bundle.reference.get("applications") or [None])[0]
    state.model = served
    state.models = models
    state.schemas = build_schemas(
        served.bundle.spec,
        served.bundle.policy,
        served.bundle.catalog,
        example=example if isinstance(example, dict) else None,
        max_batch_items=settings.max_batch_items,
    )


def _open_store(state: ServiceState) -> None:
    try:
        state.store = open_decision_store(state.settings.database_url)
    except (RecordsError, OSError) as exc:
        state.problems.append(f"decision store unavailable: {type(exc).__name__}")
        log.error("decision store unavailable", exc_info=exc)
