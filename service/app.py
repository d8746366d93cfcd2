"""The Flask app factory: ``create_app(test_config)``; nothing is built at import time.

At startup the factory loads the API keys (a key configuration error, or production without keys,
refuses to build the app: see :mod:`service.auth`), then loads the configured model version (default:
the store's champion), verifies every artifact hash, runs the self-check (score and explain the reference
sample, attributions must sum to the ONNX margin) and opens the decision store; all of it goes into one
:class:`~service.decisions.DecisionService`. If any of that fails the app still starts, so that /healthz
answers and /readyz can say why it is not ready (503); decision endpoints answer 503 too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from model_store.store import ModelStore
from service import api, auth
from service.api.schemas import request_schemas
from service.config import ConfigError, Settings
from service.decisions import DecisionService
from service.errors import ModelUnavailable, RecordsError
from service.metrics import Metrics
from service.models import ModelCache
from service.records import DecisionStore, open_decision_store
from service.runtime import ServedModel
from service.state import EXTENSION_KEY, ServiceState

log = logging.getLogger(__name__)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings from ``test_config`` over the environment, model loaded and self-checked."""
    settings = Settings.load(test_config)
    keys = load_keys(settings)
    app = Flask(__name__, static_folder=None)  # the console and docs serve their own files
    app.config.update(TESTING=settings.testing, MAX_CONTENT_LENGTH=settings.max_batch_content_length)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented field order
    problems: list[str] = []
    models, served = _load_model(settings, problems)
    store = _open_store(settings, problems)
    metrics = Metrics()
    service = DecisionService(models=models, served=served, store=store, problems=problems, on_decided=metrics.decided)
    state = ServiceState(settings=settings, metrics=metrics, service=service)
    app.extensions[EXTENSION_KEY] = state
    auth.init_app(app, keys)
    example = (served.bundle.reference.get("applications") or [None])[0] if served is not None else None
    requests = request_schemas(
        served.bundle.spec if served is not None else None,
        example if isinstance(example, dict) else None,
        settings.max_batch_items,
    )
    state.api = api.init_app(app, requests, served)
    if service.ready and served is not None:
        log.info("ready: serving %s %s", served.info.name, served.info.version)
    else:
        log.error("not ready: %s", service.not_ready_reason)
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


def _load_model(settings: Settings, problems: list[str]) -> tuple[ModelCache, ServedModel | None]:
    """The model cache of the store and the self-checked served version (None, with a problem, if it fails)."""
    store = ModelStore(settings.model_store)
    models = ModelCache(store)
    try:
        name, version = settings.served_version(store)
    except ConfigError as exc:
        problems.append(str(exc))
        return models, None
    try:
        served = models.get(name, version)
    except ModelUnavailable as exc:
        problems.append(f"model {name} {version} failed to load or self-check: {exc}")
        log.error("model %s %s failed to load or self-check", name, version, exc_info=exc)
        return models, None
    models.serving = served
    return models, served


def _open_store(settings: Settings, problems: list[str]) -> DecisionStore | None:
    try:
        return open_decision_store(settings.database_url)
    except (RecordsError, OSError, ValueError) as exc:
        problems.append(f"decision store unavailable: {type(exc).__name__}")
        log.error("decision store unavailable", exc_info=exc)
        return None
