# --- records fixtures ---
# Decision-store fixtures: a real SQLite file in tmp_path, or a fresh PostgreSQL schema dropped afterwards.
# `decision_store_url` runs a test on both backends; PostgreSQL is skipped only if unreachable AND $CI is unset.
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

RECORDS_PG_URL = os.environ.get("DATABASE_URL_TEST", "postgresql://postgres@127.0.0.1:5432/test")


def records_pg_schema_url(base_url: str, schema: str) -> str:
    """The URL of ``base_url`` with ``schema`` as the search path."""
    return f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture
def sqlite_decision_store_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite decision store file."""
    return f"sqlite:///{tmp_path / 'decisions.sqlite3'}"


def postgres_admin_connection() -> Any:
    """An autocommit connection to the test PostgreSQL server.

    The project's machines and CI always run one: a missing server fails the PostgreSQL variants (never skips them).
    """
    import psycopg

    try:
        return psycopg.connect(RECORDS_PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"PostgreSQL is not reachable at {RECORDS_PG_URL} (set DATABASE_URL_TEST): {exc}") from exc


@pytest.fixture
def postgres_decision_store_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL schema, dropped after the test."""
    admin = postgres_admin_connection()
    schema = f"test_records_{uuid.uuid4().hex[:16]}"
    admin.execute(f'CREATE SCHEMA "{schema}"'.encode())
    try:
        yield records_pg_schema_url(RECORDS_PG_URL, schema)
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def decision_store_url(request: pytest.FixtureRequest) -> str:
    """A fresh decision store URL, once per backend."""
    return str(request.getfixturevalue(f"{request.param}_decision_store_url"))


@pytest.fixture
def decision_store(decision_store_url: str) -> Iterator[Any]:
    """An opened (migrated) decision store on each backend, closed afterwards."""
    from service.records import open_decision_store

    store = open_decision_store(decision_store_url)
    yield store
    store.close()


@pytest.fixture
def make_decision_record() -> Callable[..., Any]:
    """Factory of valid DecisionRecords; keyword arguments override fields."""
    from service.records import DecisionRecord

    def make(**overrides: Any) -> DecisionRecord:
        fields: dict[str, Any] = {
            "decision_id": str(uuid.uuid4()),
            "application_id": "app-1",
            "created_at": datetime.now(UTC),
            "idempotency_key": None,
            "request_hash": "a" * 64,
            "decision": "approve",
            "risk_band": "A",
            "score": 720,
            "model_name": "german_credit_hgb",
            "model_version": "v1",
            "reason_codes": ("R01", "R02"),
            "payload": {
                "request": {"application_id": overrides.get("application_id", "app-1"), "applicant": {"age_years": 35}},
                "attributions": {"duration_months": -0.125, "credit_amount": 0.1 + 0.2},
                "base_value": -1.0986122886681098,
                "margin": -1.5,
                "note": "Prüfung ✓",
            },
        }
        fields.update(overrides)
        return DecisionRecord(**fields)

    return make


# --- training fixtures ---
# A tiny but real training run (both families, ONNX export, exact-explanation proof) into a tmp model store.
import pytest as _training_pytest  # noqa: E402

TRAINING_CONFIG = Path(__file__).resolve().parents[1] / "config" / "german_credit" / "training.yaml"
TINY_TRAINING: dict[str, Any] = {"champion": {"max_iter": 15}, "cv_folds": 2}


@_training_pytest.fixture(scope="session")
def trained_models(tmp_path_factory: _training_pytest.TempPathFactory) -> Any:
    """(ModelStore, TrainResult) of one tiny training run of the default config (gbt promoted champion)."""
    from model_store.store import ModelStore
    from training.pipeline import train

    store = ModelStore(tmp_path_factory.mktemp("trained") / "store")
    return store, train(TRAINING_CONFIG, store, overrides=TINY_TRAINING, progress=False)


# --- end training fixtures ---


# --- api fixtures ---
# The decision API over the tiny, really trained models of `trained_models` (training fixtures above) and a real
# decision store: a SQLite file, or a fresh PostgreSQL schema. Imports live inside the fixtures: this block is appended.
# `api_app` is shared by the tests of one module; a module that sets `API_BACKENDS = ("sqlite", "postgres")` runs its
# `api_app` tests once per backend. Access control: every app gets fresh random keys, one per role plus one holding
# every role; `api_app.test_client()` and `api_client` send the all-roles key, `*_headers` a single role's key
# (headers given to a request override the client's default), `anonymous_client` sends none.
API_ROLES = ("scorer", "auditor", "admin", "reviewer")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a module's `api_app` tests on every backend its `API_BACKENDS` names (default: SQLite only)."""
    if "api_backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "API_BACKENDS", ("sqlite",))
        params = [pytest.param(b, marks=[pytest.mark.postgres] if b == "postgres" else []) for b in backends]
        metafunc.parametrize("api_backend", params, indirect=True, scope="module")


@pytest.fixture(scope="session")
def api_keys() -> "dict[str, str]":
    """Fresh random API keys: one per role, and "all" holding every role."""
    from service.auth import new_key

    return {role: new_key() for role in (*API_ROLES, "all")}


@pytest.fixture(scope="session")
def api_keys_setting(api_keys: "dict[str, str]") -> str:
    """The keys as the development setting API_KEYS (``role:KEY,...``)."""
    entries = [f"{role}:{api_keys[role]}" for role in API_ROLES]
    entries += [f"{role}:{api_keys['all']}" for role in API_ROLES]
    return ",".join(entries)


def _bearer(key: str) -> "dict[str, str]":
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def scorer_headers(api_keys: "dict[str, str]") -> "dict[str, str]":
    """Authorization header of a key holding only the scorer role."""
    return _bearer(api_keys["scorer"])


@pytest.fixture(scope="session")
def auditor_headers(api_keys: "dict[str, str]") -> "dict[str, str]":
    """Authorization header of a key holding only the auditor role."""
    return _bearer(api_keys["auditor"])


@pytest.fixture(scope="session")
def admin_headers(api_keys: "dict[str, str]") -> "dict[str, str]":
    """Authorization header of a key holding only the admin role."""
    return _bearer(api_keys["admin"])


@pytest.fixture(scope="session")
def api_model_store(trained_models: Any) -> "Path":
    """Root of the model store holding the tiny trained champion (gbt) and scorecard baseline."""
    store, _result = trained_models
    return Path(store.root)


@pytest.fixture(scope="session")
def api_make_app(
    api_model_store: "Path", api_keys: "dict[str, str]", api_keys_setting: str, tmp_path_factory: pytest.TempPathFactory
) -> "Iterator[Callable[..., Any]]":
    """Factory of apps over the tiny model store, each with a fresh decision store (``backend``: sqlite or
    postgres); every app's test client sends the all-roles key. Stores closed, schemas dropped at the end."""
    from flask.testing import FlaskClient

    from service.app import create_app
    from service.state import get_state

    all_roles = f"Bearer {api_keys['all']}"

    class KeyedClient(FlaskClient):
        """A test client that sends the all-roles key unless a request gives its own Authorization header."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.environ_base["HTTP_AUTHORIZATION"] = all_roles

    apps: list[Any] = []
    schemas: list[str] = []
    admin: list[Any] = []

    def postgres_url() -> str:
        if not admin:
            admin.append(postgres_admin_connection())
        schema = f"test_api_{uuid.uuid4().hex[:16]}"
        admin[0].execute(f'CREATE SCHEMA "{schema}"'.encode())
        schemas.append(schema)
        return records_pg_schema_url(RECORDS_PG_URL, schema)

    def make(backend: str = "sqlite", **config: Any) -> Any:
        if backend == "postgres":
            url = postgres_url()
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('api-db') / 'decisions.sqlite3'}"
        settings = {
            "MODEL_STORE": str(api_model_store),
            "DATABASE_URL": url,
            "TESTING": True,
            "API_KEYS": api_keys_setting,
            "BACKGROUND": False,  # no serving-state polling thread: admin actions apply at once in-process
            # every decision shadowed, however fast a test posts them (the busy-worker cap has its own tests)
            "SHADOW_MAX_SHARE": 1.0,
        }
        settings.update(config)
        app = create_app(settings)
        app.test_client_class = KeyedClient
        apps.append(app)
        return app

    yield make
    for app in apps:
        state = get_state(app)
        if state.watcher is not None:
            state.watcher.stop()
        if state.service.shadow_runner is not None:
            state.service.shadow_runner.stop()
        if state.store is not None:
            state.store.close()
    for schema in schemas:
        admin[0].execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())
    for conn in admin:
        conn.close()


@pytest.fixture(scope="module")
def api_backend(request: pytest.FixtureRequest) -> str:
    """The decision-store backend of `api_app` (parametrized by a module's API_BACKENDS)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="module")
def api_app(api_make_app: "Callable[..., Any]", api_backend: str) -> Any:
    """A ready app over the tiny champion, shared by the tests of one module (per backend)."""
    return api_make_app(backend=api_backend)


@pytest.fixture
def api_client(api_app: Any) -> Any:
    """A Flask test client of ``api_app`` sending the all-roles key."""
    return api_app.test_client()


@pytest.fixture
def anonymous_client(api_app: Any) -> Any:
    """A Flask test client of ``api_app`` sending no key."""
    client = api_app.test_client()
    client.environ_base.pop("HTTP_AUTHORIZATION", None)
    return client


@pytest.fixture(scope="session")
def run_gunicorn() -> "Callable[..., Any]":
    """Context manager ``run_gunicorn(folder, ready=True, **env)``: real gunicorn (production config) on a free
    port, ready (``ready=False``: answering /healthz), yielding (base_url, process, log_path); SIGTERM (then SIGKILL
    after 30 s) on exit."""
    import contextlib
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    from cli.serve import gunicorn_argv

    @contextlib.contextmanager
    def run(folder: Path, ready: bool = True, **env: str) -> "Iterator[tuple[str, subprocess.Popen[bytes], Path]]":
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        full = {
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics"),
        }
        full.pop("CREDIT_DECISION_API_KEYS", None)
        full.update(env)
        log = folder / "gunicorn.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(gunicorn_argv(), cwd=folder, env=full, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    with urllib.request.urlopen(f"{base}/{'readyz' if ready else 'healthz'}", timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "gunicorn did not become ready:\n" + log.read_text()
                time.sleep(0.1)
            yield base, process, log
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    return run


@pytest.fixture(scope="session")
def example_application() -> "dict[str, Any]":
    """examples/application.json."""
    import json

    path = Path(__file__).resolve().parents[1] / "examples" / "application.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


# --- console fixtures ---
# Real applications from data/german_credit.csv (with their monitoring data and observed outcome), and a real
# gunicorn serving the tiny trained champion over a fresh SQLite file with development API keys.


@pytest.fixture(scope="session")
def german_applications() -> "list[tuple[dict[str, Any], str]]":
    """(decision request with `monitoring`, observed outcome good|bad) for the first 120 rows of the German data."""
    import csv

    from model_store.spec import FeatureSpec

    repo = Path(__file__).resolve().parents[1]
    spec = FeatureSpec.load(repo / "config" / "german_credit" / "feature_spec.yaml")
    out: list[tuple[dict[str, Any], str]] = []
    with open(repo / "data" / "german_credit.csv", newline="", encoding="utf-8") as fh:
        for index, row in enumerate(csv.DictReader(fh)):
            if index == 120:
                break
            monitoring = {
                "sex": "female" if row["personal_status_and_sex"].startswith("female") else "male",
                "foreign_worker": row["foreign_worker"],
            }
            request = {"application_id": f"DE-{index:04d}", "applicant": spec.from_source_row(row)}
            out.append(({**request, "monitoring": monitoring}, row["creditability"]))
    return out


@pytest.fixture(scope="module")
def console_server(
    api_model_store: Path,
    api_keys_setting: str,
    tmp_path_factory: pytest.TempPathFactory,
    run_gunicorn: "Callable[..., Any]",
) -> "Iterator[str]":
    """Base URL of a real gunicorn (1 worker) over the tiny champion, a fresh SQLite store and dev API keys."""
    folder = tmp_path_factory.mktemp("console-server")
    with run_gunicorn(
        folder,
        WEB_CONCURRENCY="1",
        CREDIT_DECISION_MODEL_STORE=str(api_model_store),
        CREDIT_DECISION_API_KEYS=api_keys_setting,
        DATABASE_URL=f"sqlite:///{folder / 'decisions.sqlite3'}",
        CREDIT_DECISION_SHADOW_MAX_SHARE="1",  # every decision shadowed (the busy-worker cap has its own tests)
    ) as (base, _process, _log):
        yield base


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> "Iterator[Any]":
    """Headless Debian Chromium driven by Playwright (one per test module)."""
    # `make test` installs Chromium (make system-deps) and Playwright (the tests extra): a missing one fails
    assert CHROMIUM.exists(), "Debian's chromium is not installed: run `make system-deps`"
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


# --- end console fixtures ---
