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


@pytest.fixture
def postgres_decision_store_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL schema, dropped after the test."""
    import psycopg

    try:
        admin = psycopg.connect(RECORDS_PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {RECORDS_PG_URL}: {exc}")
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
# SQLite decision store per test module. Imports live inside the fixtures: this block is appended.


@pytest.fixture(scope="session")
def api_model_store(trained_models: Any) -> "Path":
    """Root of the model store holding the tiny trained champion (gbt) and scorecard baseline."""
    store, _result = trained_models
    return Path(store.root)


@pytest.fixture(scope="session")
def api_make_app(api_model_store: "Path", tmp_path_factory: pytest.TempPathFactory) -> "Iterator[Callable[..., Any]]":
    """Factory of apps over the tiny model store, each with a fresh SQLite decision store; closed at the end."""
    from service.app import create_app
    from service.state import get_state

    apps: list[Any] = []

    def make(**config: Any) -> Any:
        db = tmp_path_factory.mktemp("api-db") / "decisions.sqlite3"
        settings = {"MODEL_STORE": str(api_model_store), "DATABASE_URL": f"sqlite:///{db}", "TESTING": True}
        settings.update(config)
        app = create_app(settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        store = get_state(app).store
        if store is not None:
            store.close()


@pytest.fixture(scope="module")
def api_app(api_make_app: "Callable[..., Any]") -> Any:
    """A ready app over the tiny champion, shared by the tests of one module."""
    return api_make_app()


@pytest.fixture
def api_client(api_app: Any) -> Any:
    """A Flask test client of ``api_app``."""
    return api_app.test_client()


@pytest.fixture(scope="session")
def example_application() -> "dict[str, Any]":
    """examples/application.json."""
    import json

    path = Path(__file__).resolve().parents[1] / "examples" / "application.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))
