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
from service.api import limits
from service.api.schemas import request_schemas
from service.config import ConfigError, Settings
from service.decisions import DecisionService, new_decision_id, utc_now
from service.errors import ModelUnavailable, RecordsError, StoreUnavailable
from service.live import Serving, ServingWatcher
from service.metrics import Metrics
from service.models import ModelCache
from service.records import DecisionStore, open_decision_store
from service.runtime import ServedModel
from service.serving import Lifecycle, Target
from service.shadow import CpuBudget, ShadowRunner
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
    store, unavailable = _open_store(settings, problems)
    metrics = Metrics()
    models = ModelCache(ModelStore(settings.model_store))
    service = DecisionService(models=models, served=None, store=store, problems=problems, on_decided=metrics.decided)
    watcher = None
    if store is None:  # no serving state to read: serve what the settings or the registry name, if it loads
        service.served = _load_model(settings, models, service.problems)
    else:
        watcher = _serve_the_deployments_state(settings, service, models, store, metrics, service.problems)
    served = service.served
    state = ServiceState(settings=settings, metrics=metrics, service=service, watcher=watcher)
    if unavailable is not None:  # the database is down: open it later, on a request or /readyz once it is back

        def open_late() -> None:
            store = open_decision_store(settings.database_url, wait_seconds=settings.database_timeout)
            state.watcher = _serve_the_deployments_state(settings, service, models, store, metrics, service.problems)
            service.problems.remove(unavailable)
            service.store = store
            log.info("decision store open%s", "" if service.ready else f"; not ready: {service.not_ready_reason}")

        service.open_late = open_late
    app.extensions[EXTENSION_KEY] = state
    auth.init_app(app, keys)
    example = (served.bundle.reference.get("applications") or [None])[0] if served is not None else None
    requests = request_schemas(
        served.bundle.spec if served is not None else None,
        example if isinstance(example, dict) else None,
        settings.max_batch_items,
    )
    state.api = api.init_app(app, requests, served)
    limits.init_app(app, settings)
    if service.ready and served is not None:
        log.info("ready: serving %s %s", served.info.name, served.info.version)
    else:
        log.error("not ready: %s", service.not_ready_reason)
    return app


def load_keys(settings: Settings) -> auth.WatchedKeys:
    """The API keys of the settings and the key file (re-read when it changes); ConfigError if malformed, or
    missing in production."""
    path = settings.api_keys_file
    try:
        if settings.api_keys_file_required and not path.is_file():
            auth.read_key_file(path)  # named explicitly, so it must exist: the error says why it cannot be read
        ring = auth.WatchedKeys(settings.api_keys, path)
    except auth.KeyConfigError as exc:
        raise ConfigError(str(exc)) from exc
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


def _load_model(settings: Settings, models: ModelCache, problems: list[str]) -> ServedModel | None:
    """The self-checked version the settings or the registry name (None, with a problem, if it fails)."""
    try:
        name, version = settings.served_version(models.store)
    except ConfigError as exc:
        problems.append(str(exc))
        return None
    try:
        served = models.get(name, version)
    except ModelUnavailable as exc:
        problems.append(f"model {name} {version} failed to load or self-check: {exc}")
        log.error("model %s %s failed to load or self-check", name, version, exc_info=exc)
        return None
    models.serving = served
    return served


def _serve_the_deployments_state(
    settings: Settings,
    service: DecisionService,
    models: ModelCache,
    store: DecisionStore,
    metrics: Metrics,
    problems: list[str],
) -> ServingWatcher | None:
    """Serve the serving state recorded in the decision store (promotions, shadows), kept in step by a watcher."""
    pinned = None
    if settings.model_name is not None:
        try:
            pinned = Target(*settings.served_version(models.store))
        except ConfigError as exc:
            problems.append(str(exc))
            return None
    lifecycle = Lifecycle(store=store, models=models, pinned=pinned, clock=utc_now, new_id=new_decision_id)
    service.lifecycle = lifecycle
    service.shadow_runner = ShadowRunner(
        store,
        clock=utc_now,
        new_id=new_decision_id,
        counters=metrics,
        queue_size=settings.shadow_queue_size,
        budget=CpuBudget(share=settings.shadow_max_share, busy_time=lambda: metrics.busy_seconds),
    )

    def put(serving: Serving) -> None:
        service.serving = serving
        models.serving = serving.champion

    watcher = ServingWatcher(
        lifecycle, lambda: service.serving, put, interval=settings.serving_poll_seconds, on_switch=metrics.switched
    )
    service.on_serving_change = watcher.refresh
    try:
        serving = watcher.refresh()
    except RecordsError as exc:
        problems.append(f"serving state unreadable: {exc}")
        return None
    if serving.champion is None and not serving.problems:
        try:  # nothing to serve: say what is missing, as the settings see it
            settings.served_version(models.store)
        except ConfigError as exc:
            problems.append(str(exc))
    if settings.background:
        watcher.start()
    return watcher


def _open_store(settings: Settings, problems: list[str]) -> tuple[DecisionStore | None, str | None]:
    """The open store, or None with a problem; the problem again as the second item when it may pass by itself
    (the database is down or unreachable: an outage, logged as one, and the store is opened later)."""
    try:
        return open_decision_store(settings.database_url, wait_seconds=settings.database_timeout), None
    except (RecordsError, OSError, ValueError) as exc:
        problem = f"decision store unavailable: {type(exc).__name__}"
        problems.append(problem)
        if isinstance(exc, StoreUnavailable):  # an outage, logged as one: the store is opened later
            log.error("%s (tried again on the next request or /readyz): %s", problem, exc)
            return None, problem
        log.error("decision store unavailable", exc_info=exc)
        return None, None
