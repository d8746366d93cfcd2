"""Access control: every endpoint × role, key file and development keys, keys never logged or recorded."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.serve import _check_keys, keys_group, serve_command
from service.app import create_app
from service.auth import KeyConfigError, KeyRing, hash_key, parse_key_file, parse_key_list, require_role, required_roles
from service.config import ConfigError, Settings
from service.state import get_state

API_BACKENDS = ("sqlite", "postgres")
PROBLEM = "application/problem+json"
ROLES = ("scorer", "auditor", "admin")
PUBLIC = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/v1/schema")


@pytest.fixture(scope="module")
def decision_id(api_app: Any, example_application: dict) -> str:
    """A decision recorded in `api_app`."""
    response = api_app.test_client().post("/v1/decisions", json=example_application)
    assert response.status_code == 201
    return str(response.get_json()["decision_id"])


def _endpoints(decision_id: str, example: dict) -> list[tuple[str, str, Any, str, int]]:
    """(method, path, json body, the role it needs, its success status) of every protected endpoint."""
    return [
        ("POST", "/v1/decisions", example, "scorer", 201),
        ("POST", "/v1/decisions:batch", {"applications": [example]}, "scorer", 200),
        ("GET", "/v1/decisions", None, "auditor", 200),
        ("GET", "/v1/decisions/export", None, "auditor", 200),
        ("GET", f"/v1/decisions/{decision_id}", None, "auditor", 200),
        ("POST", f"/v1/decisions/{decision_id}/replay", None, "auditor", 200),
        ("GET", "/v1/models", None, "admin", 200),
    ]


def test_every_endpoint_by_every_role(
    api_app: Any, api_keys: dict[str, str], decision_id: str, example_application: dict
) -> None:
    client = api_app.test_client()
    store = get_state(api_app).store
    for method, path, body, needed, success in _endpoints(decision_id, example_application):
        for caller in (*ROLES, "all"):
            before = store.count()
            response = client.open(
                path, method=method, json=body, headers={"Authorization": f"Bearer {api_keys[caller]}"}
            )
            allowed = caller in (needed, "all")
            expected = success if allowed else 403
            assert response.status_code == expected, (method, path, caller, response.get_data(as_text=True)[:300])
            if not allowed:
                problem = response.get_json()
                assert response.mimetype == PROBLEM and problem["type"].endswith(":forbidden")
                assert needed in problem["detail"] and api_keys[caller] not in problem["detail"]
            wrote = store.count() - before
            assert wrote == (1 if allowed and method == "POST" and "replay" not in path else 0), (path, caller)


def test_missing_or_invalid_keys_are_401_with_a_bearer_challenge(
    api_app: Any, anonymous_client: Any, api_keys: dict[str, str], decision_id: str, example_application: dict
) -> None:
    store = get_state(api_app).store
    before = store.count()
    for method, path, body, _role, _success in _endpoints(decision_id, example_application):
        for headers in (
            {},
            {"Authorization": "Bearer cdk_not-a-real-key-0123456789"},
            {"Authorization": f"Basic {api_keys['all']}"},
            {"Authorization": "Bearer"},
            {"Authorization": f"Bearer {api_keys['all'][:-1]}"},  # one character short
            {"X-API-Key": "wrong"},
            {"Authorization": "Bearer " + "x" * 5000},
        ):
            response = anonymous_client.open(path, method=method, json=body, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.mimetype == PROBLEM and response.get_json()["type"].endswith(":unauthorized")
            challenge = response.headers["WWW-Authenticate"]
            assert challenge.startswith('Bearer realm="credit-decision"')
            assert ("invalid_token" in challenge) == bool(headers)
    assert store.count() == before


def test_x_api_key_header_and_bearer_scheme_case(
    anonymous_client: Any, api_keys: dict[str, str], decision_id: str
) -> None:
    path = f"/v1/decisions/{decision_id}"
    assert anonymous_client.get(path, headers={"X-API-Key": api_keys["auditor"]}).status_code == 200
    assert anonymous_client.get(path, headers={"X-API-Key": api_keys["scorer"]}).status_code == 403
    assert anonymous_client.get(path, headers={"Authorization": f"bearer {api_keys['auditor']}"}).status_code == 200


def test_public_endpoints_need_no_key(anonymous_client: Any) -> None:
    for path in PUBLIC:
        assert anonymous_client.get(path).status_code == 200, path


def test_every_v1_route_is_guarded_or_listed_public(api_app: Any) -> None:
    guarded = {}
    for rule in api_app.url_map.iter_rules():
        roles = required_roles(api_app.view_functions[rule.endpoint])
        if rule.rule.startswith("/v1/") and rule.rule not in PUBLIC:
            assert roles, f"{rule.rule} ({rule.endpoint}) has no @require_role"
        if roles:
            guarded[rule.endpoint] = roles
    assert guarded["decisions.create_decision"] == ("scorer",)
    assert guarded["decisions.get_decision"] == ("auditor",)
    assert guarded["audit.replay_decision"] == ("auditor",)
    assert guarded["admin.list_models"] == ("admin",)
    assert guarded["reviews.review"] == ("reviewer",)
    assert guarded["admin.me"] == ("admin", "auditor", "reviewer", "scorer")


def test_openapi_documents_security_and_roles(anonymous_client: Any) -> None:
    doc = anonymous_client.get("/openapi.json").get_json()
    assert set(doc["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyHeader"}
    roles = {
        (path, method): op.get("x-required-roles")
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method != "parameters"
    }
    assert roles[("/v1/decisions", "post")] == ["scorer"]
    assert roles[("/v1/decisions", "get")] == ["auditor"]
    assert roles[("/v1/decisions/{decision_id}/replay", "post")] == ["auditor"]
    assert roles[("/v1/models", "get")] == ["admin"]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert "401" in doc["paths"]["/v1/decisions/export"]["get"]["responses"]


def test_models_listing_for_admins(api_app: Any, admin_headers: dict, api_model_store: Path) -> None:
    body = api_app.test_client().get("/v1/models", headers=admin_headers).get_json()
    info = get_state(api_app).model.info
    assert body["champion"] == {"name": info.name, "version": info.version}
    assert body["serving"]["sha256"] == info.sha256
    names = {m["name"]: m["versions"] for m in body["models"]}
    assert set(names) == {"german-credit-gbt", "german-credit-scorecard"}
    champion = next(v for v in names[info.name] if v["version"] == info.version)
    assert champion["champion"] and champion["serving"] and champion["loaded"]
    assert champion["family"] == "gbt" and champion["created_at"]


def test_keys_never_appear_in_logs_or_records(
    api_app: Any, api_keys: dict[str, str], example_application: dict, caplog: pytest.LogCaptureFixture
) -> None:
    client = api_app.test_client()
    with caplog.at_level(logging.DEBUG):
        made = client.post("/v1/decisions", json=example_application)
        client.post("/v1/decisions", json=example_application, headers={"Authorization": "Bearer cdk_wrong-key-12345"})
        client.get("/v1/decisions", headers={"Authorization": f"Bearer {api_keys['scorer']}"})
        record = client.get(f"/v1/decisions/{made.get_json()['decision_id']}")
    text = caplog.text + json.dumps(record.get_json())
    for key in (*api_keys.values(), "cdk_wrong-key-12345"):
        assert key not in text
    assert record.get_json()["payload"]["decided_by"]["key_id"] == hash_key(api_keys["all"])[:12]


# --- key configuration -------------------------------------------------------------------------------------------


def test_key_file_format() -> None:
    scorer, auditor = "a" * 64, "B" * 64
    keys = parse_key_file(
        f"# production keys\n\nscorer:{scorer}:los gateway\n  auditor:{auditor}  \nadmin:{scorer}:ops: on call\n"
    )
    assert [(k.role, k.key_hash, k.label) for k in keys] == [
        ("scorer", scorer, "los gateway"),
        ("auditor", "b" * 64, ""),
        ("admin", scorer, "ops: on call"),
    ]
    ring = KeyRing(keys)
    assert len(ring) == 2
    for bad, message in (
        ("scorer", "line 1: expected role:sha256hex"),
        ("reader:" + "a" * 64, "line 1: unknown role 'reader'"),
        ("scorer:cdk_plainkeyplainkey", "line 1: expected the 64 hex digits"),
        ("#\nscorer:" + "a" * 63, "line 2: expected the 64 hex digits"),
        ("scorer:" + "a" * 64 + ":tab\tlabel", "line 1: a label is at most 100 printable"),
    ):
        with pytest.raises(KeyConfigError, match=message):
            parse_key_file(bad)


def test_a_key_on_several_lines_holds_several_roles() -> None:
    key = "cdk_" + "k" * 40
    ring = KeyRing(parse_key_list(f"scorer:{key},auditor:{key},admin:cdk_{'o' * 40}"))
    principal = ring.authenticate(key)
    assert principal is not None and principal.roles == {"scorer", "auditor"}
    assert principal.key_id == hashlib.sha256(key.encode()).hexdigest()[:12]
    assert ring.authenticate(key + "x") is None and ring.authenticate("") is None


def test_development_keys_are_hashed_at_once() -> None:
    key = "cdk_" + "d" * 40
    settings = Settings.load({"API_KEYS": f"auditor:{key}"}, environ={})
    assert key not in repr(settings)
    assert settings.api_keys[0].key_hash == hash_key(key)
    for bad in ("auditor", "auditor:short", "boss:" + key):
        with pytest.raises(ConfigError) as caught:
            Settings.load({"API_KEYS": bad}, environ={})
        assert key not in str(caught.value)
    env = {"CREDIT_DECISION_API_KEYS": f"scorer:{key}"}
    assert Settings.load({}, environ=env).api_keys[0].role == "scorer"


def test_production_refuses_to_start_without_keys(api_model_store: Path, tmp_path: Path) -> None:
    empty = tmp_path / "api_keys"
    empty.write_text("# no keys yet\n")
    base = {"MODEL_STORE": str(api_model_store), "DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite3'}"}
    with pytest.raises(ConfigError, match="ENV=production refuses to start without API keys"):
        create_app({**base, "ENV": "production", "API_KEYS_FILE": str(empty)})
    with pytest.raises(ConfigError, match="development only"):
        create_app({**base, "ENV": "production", "API_KEYS": "scorer:cdk_" + "p" * 40})
    with pytest.raises(ConfigError, match="cannot be read"):
        create_app({**base, "API_KEYS_FILE": str(tmp_path / "missing")})
    # development without keys starts, and every protected endpoint is 401
    app = create_app({**base, "API_KEYS_FILE": str(empty)})
    assert app.test_client().get("/v1/decisions").status_code == 401
    assert app.test_client().get("/readyz").status_code == 200
    get_state(app).store.close()
    # and `credit-decision serve` says so before starting gunicorn
    env = {**os.environ, "CREDIT_DECISION_ENV": "production", "CREDIT_DECISION_API_KEYS_FILE": str(empty)}
    env.pop("CREDIT_DECISION_API_KEYS", None)
    result = CliRunner().invoke(serve_command, [], env=env)
    assert result.exit_code == 1 and "refuses to start without API keys" in result.output


def test_keys_create_prints_a_key_once_and_the_server_accepts_it(
    api_model_store: Path, tmp_path: Path, example_application: dict
) -> None:
    key_file = tmp_path / "var" / "api_keys"
    runner = CliRunner()
    created = runner.invoke(keys_group, ["create", "--role", "scorer", "--label", "los", "--file", str(key_file)])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("cdk_") and len(key) > 40
    assert "shown only this once" in created.stderr
    auditor = runner.invoke(keys_group, ["create", "--role", "auditor", "--file", str(key_file)])
    auditor_key = auditor.stdout.strip()
    text = key_file.read_text()
    assert key not in text and auditor_key not in text
    assert f"scorer:{hash_key(key)}:los\n" in text
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    listed = runner.invoke(keys_group, ["list", "--file", str(key_file)])
    assert hash_key(key)[:12] in listed.output and "los" in listed.output and key not in listed.output
    assert runner.invoke(keys_group, ["create", "--role", "root", "--file", str(key_file)]).exit_code != 0

    settings = {
        "MODEL_STORE": str(api_model_store),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite3'}",
        "API_KEYS_FILE": str(key_file),
        "ENV": "production",
    }
    app = create_app(settings)
    client = app.test_client()
    made = client.post("/v1/decisions", json=example_application, headers={"Authorization": f"Bearer {key}"})
    assert made.status_code == 201
    record = client.get(made.headers["Location"], headers={"X-API-Key": auditor_key}).get_json()
    assert record["payload"]["decided_by"] == {"key_id": hash_key(key)[:12], "label": "los", "role": "scorer"}
    assert client.get(made.headers["Location"], headers={"X-API-Key": key}).status_code == 403
    get_state(app).store.close()

    # the serve banner tells how many keys there are, or how to create one
    env = {"CREDIT_DECISION_API_KEYS_FILE": str(key_file)}
    assert "2 key(s) with roles auditor, scorer" in _check_keys(env)[1]
    env = {"CREDIT_DECISION_API_KEYS_FILE": str(tmp_path / "empty")}
    (tmp_path / "empty").write_text("")
    assert "credit-decision keys create --role scorer" in _check_keys(env)[1]


def test_require_role_refuses_unknown_roles() -> None:
    with pytest.raises(ValueError):
        require_role("superuser")
    with pytest.raises(ValueError):
        require_role()
