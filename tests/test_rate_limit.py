"""Rate limits per API key and role (RATE_LIMIT): 429 application/problem+json with Retry-After from the one
renderer; counts shared through the real Redis on 127.0.0.1:6379 between app instances and between the workers
of a real gunicorn; off by default; fail open when the storage is down; bad settings refused by name."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from service.auth import hash_key, new_key
from service.config import ConfigError, Settings

REDIS_URL = os.environ.get("REDIS_URL_TEST", "redis://127.0.0.1:6379/0")
PROBLEM = "application/problem+json"


def _redis() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:  # the tests need the real Redis (127.0.0.1:6379 on the project's machines)
        raise AssertionError(f"Redis not reachable at {REDIS_URL}: {exc}") from exc
    return client


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test alone in the real Redis; its keys are deleted afterwards."""
    client = _redis()
    prefix = f"credit-decision-test-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        for key in client.scan_iter(match=f"*{prefix}*"):
            client.delete(key)
        client.close()


def _assert_rate_limited(response: Any, window_seconds: int) -> dict[str, Any]:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["type"] == "urn:credit-decision:problem:rate-limited" and body["status"] == 429
    assert 1 <= int(response.headers["Retry-After"]) <= window_seconds
    return dict(body)


def test_a_key_over_its_roles_limit_gets_429_problem_and_others_are_not_counted(
    api_make_app: Callable[..., Any],
    api_keys: dict[str, str],
    auditor_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    app = api_make_app(RATE_LIMIT="auditor:3/minute")
    client = app.test_client()
    for _ in range(3):
        assert client.get("/v1/decisions", headers=auditor_headers).status_code == 200
    limited = client.get("/v1/decisions", headers=auditor_headers)
    body = _assert_rate_limited(limited, 60)
    assert "auditor" in body["detail"] and api_keys["auditor"] not in body["detail"]  # the key id, never the key
    assert hash_key(api_keys["auditor"])[:12] in body["detail"]
    # another key has its own count; public endpoints and requests without a valid key are not counted
    other = {"Authorization": f"Bearer {api_keys['all']}"}
    assert client.get("/v1/decisions", headers=other).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/decisions", headers={"Authorization": "Bearer nope"}).status_code == 401
    # a role without a limit is not limited
    assert all(client.get("/v1/serving", headers=admin_headers).status_code == 200 for _ in range(5))
    assert client.get("/v1/decisions", headers=auditor_headers).status_code == 429


def test_without_rate_limit_nothing_is_limited_or_installed(
    api_make_app: Callable[..., Any], auditor_headers: dict[str, str]
) -> None:
    app = api_make_app()
    assert "limiter" not in app.extensions
    client = app.test_client()
    assert all(client.get("/v1/decisions", headers=auditor_headers).status_code == 200 for _ in range(20))


def test_every_guarded_operation_documents_429(api_make_app: Callable[..., Any]) -> None:
    document = api_make_app().test_client().get("/openapi.json").get_json()
    guarded = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and operation.get("security")
    ]
    assert guarded
    for path, method, operation in guarded:
        assert "429" in operation["responses"], f"{method.upper()} {path} does not document 429"


def test_app_instances_share_the_count_through_redis(
    api_make_app: Callable[..., Any], auditor_headers: dict[str, str], redis_prefix: str
) -> None:
    config = {"RATE_LIMIT": "auditor:4/minute", "RATE_LIMIT_STORAGE": REDIS_URL, "RATE_LIMIT_KEY_PREFIX": redis_prefix}
    first, second = api_make_app(**config).test_client(), api_make_app(**config).test_client()
    statuses = [
        (first if i % 2 else second).get("/v1/decisions", headers=auditor_headers).status_code for i in range(7)
    ]
    assert statuses == [200] * 4 + [429] * 3
    _assert_rate_limited(first.get("/v1/decisions", headers=auditor_headers), 60)


def test_an_unreachable_rate_limit_storage_lets_requests_through(
    api_make_app: Callable[..., Any], auditor_headers: dict[str, str]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = api_make_app(RATE_LIMIT="auditor:1/minute", RATE_LIMIT_STORAGE=f"redis://127.0.0.1:{port}/0")
    client = app.test_client()
    assert [client.get("/v1/decisions", headers=auditor_headers).status_code for _ in range(3)] == [200] * 3


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("RATE_LIMIT", "auditr:1/second", "auditr:1/second"),
        ("RATE_LIMIT", "scorer:lots", "'lots' is not a rate limit"),
        ("RATE_LIMIT", "scorer:1/second;scorer:2/second", "twice"),
    ],
)
def test_bad_rate_limit_settings_are_refused_by_name(setting: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError, match="RATE_LIMIT") as info:
        Settings.load({setting: value}, environ={})
    assert named in str(info.value)


def test_an_unknown_rate_limit_storage_is_refused_by_name(api_make_app: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match="RATE_LIMIT_STORAGE 'carrier-pigeon://loft'"):
        api_make_app(RATE_LIMIT="auditor:1/second", RATE_LIMIT_STORAGE="carrier-pigeon://loft")


@pytest.mark.e2e
def test_gunicorn_workers_share_one_count_through_redis(
    api_model_store: Path,
    tmp_path: Path,
    run_gunicorn: Any,
    example_application: dict[str, Any],
    redis_prefix: str,
) -> None:
    scorer = new_key()
    key_file = tmp_path / "api_keys"
    key_file.write_text(f"scorer:{hash_key(scorer)}:rate test\n")
    with run_gunicorn(
        tmp_path,
        WEB_CONCURRENCY="2",
        CREDIT_DECISION_API_KEYS_FILE=str(key_file),
        CREDIT_DECISION_MODEL_STORE=str(api_model_store),
        DATABASE_URL=f"sqlite:///{tmp_path / 'decisions.sqlite3'}",
        CREDIT_DECISION_RATE_LIMIT="scorer:5/minute",
        CREDIT_DECISION_RATE_LIMIT_STORAGE=REDIS_URL,
        CREDIT_DECISION_RATE_LIMIT_KEY_PREFIX=redis_prefix,
    ) as (base, _server, _log):
        statuses: list[int] = []

        def post() -> None:
            request = urllib.request.Request(
                f"{base}/v1/decisions",
                data=json.dumps(example_application).encode(),
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {scorer}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=15) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
                assert error.headers.get_content_type() == PROBLEM
                assert 1 <= int(error.headers["Retry-After"]) <= 60
                assert json.loads(error.read())["type"] == "urn:credit-decision:problem:rate-limited"

        # concurrent clients keep both sync workers busy, so both count (a per-process count would let 10 through)
        with ThreadPoolExecutor(4) as pool:
            for future in [pool.submit(post) for _ in range(16)]:
                future.result()
        assert sorted(statuses) == [201] * 5 + [429] * 11, statuses
