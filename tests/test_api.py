"""The decision API over a tiny really-trained model, onnxruntime and a real decision store (SQLite and PostgreSQL)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from model_store.policy import SEVERITY
from model_store.store import MODEL_FILE, ModelStore
from service.api.schemas import BatchDecisionResponseSchema, DecisionResponseSchema, StoredDecisionSchema
from service.app import create_app
from service.config import ConfigError, Settings
from service.state import get_state

PROBLEM = "application/problem+json"
API_BACKENDS = ("sqlite", "postgres")  # `api_app` tests run on both decision-store backends


def _post(client: Any, body: Any, path: str = "/v1/decisions", **kwargs: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json", **kwargs)


def _with(example: dict[str, Any], **applicant: Any) -> dict[str, Any]:
    body = copy.deepcopy(example)
    body["applicant"].update(applicant)
    return body


def _count(app: Any) -> int:
    return int(get_state(app).store.count())


def test_decision_happy_path_shape_and_record(api_app: Any, api_client: Any, example_application: dict) -> None:
    state = get_state(api_app)
    before = _count(api_app)
    response = _post(api_client, example_application)
    assert response.status_code == 201, response.get_json()
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert DecisionResponseSchema().validate(body) == {}
    assert re.fullmatch(r"[0-9a-f]{32}", body["decision_id"])
    assert body["application_id"] == example_application["application_id"]
    policy = state.model.bundle.policy
    assert body["score"] == {
        "value": body["score"]["value"],
        "min": policy.scaling.min_score,
        "max": policy.scaling.max_score,
    }
    assert policy.scaling.min_score <= body["score"]["value"] <= policy.scaling.max_score
    assert body["risk_band"] == policy.band_for(body["score"]["value"]).band
    assert 0.0 < body["probability_of_default"] < 1.0
    assert body["decision"] in ("approve", "refer", "decline")
    assert 1 <= len(body["reasons"]) <= 4
    for reason in body["reasons"]:
        assert set(reason) == {
            "code",
            "kind",
            "group",
            "customer_text",
            "auditor_text",
            "adverse",
            "values",
            "contribution",
        }
        assert reason["customer_text"] and reason["values"]
        for value in reason["values"]:
            assert value["value"] == example_application["applicant"][value["field"]]
            assert value["label"]
        if reason["kind"] == "model":
            assert reason["contribution"]["log_odds"] > 0
            factor = policy.scaling.factor
            assert reason["contribution"]["score_points"] == pytest.approx(-factor * reason["contribution"]["log_odds"])
    explanation = body["explanation"]
    assert set(explanation["attributions"]) == set(state.model.bundle.spec.field_names)
    total = sum(explanation["attributions"].values()) + explanation["base_value"]
    assert total == pytest.approx(explanation["margin"], abs=1e-5)
    # versions of everything the decision depended on
    bundle = state.model.bundle
    assert body["model"] == {
        "name": bundle.name,
        "version": bundle.version,
        "sha256": bundle.manifest["files"][MODEL_FILE],
        "family": "gbt",
    }
    assert body["policy_version"] == bundle.policy.version
    assert body["catalog_version"] == bundle.catalog.version
    assert body["spec_version"] == bundle.spec.version
    assert body["created_at"].endswith("Z")
    assert body["latency_ms"] > 0
    assert re.fullmatch(r"decide;dur=[0-9.]+, store;dur=[0-9.]+", response.headers["Server-Timing"])
    # recorded durably before the response, retrievable by id
    assert _count(api_app) == before + 1
    assert response.headers["Location"] == f"/v1/decisions/{body['decision_id']}"
    stored = api_client.get(response.headers["Location"])
    assert stored.status_code == 200
    record = stored.get_json()
    assert StoredDecisionSchema().validate(record) == {}
    assert record["decision_id"] == body["decision_id"]
    assert record["request"] == example_application
    assert record["response"] == body
    # stored once, typed and versioned: no field of the record's columns is repeated in its payload
    payload = record["payload"]
    assert payload["schema_version"] == 4
    # the reasons' texts are the catalog's, kept once by the store and named by their sha256 (the record reads
    # them back in full: record["response"] == body above)
    assert payload["model"]["reason_texts_sha256"] == state.model.engine.reason_texts.sha256
    assert not {"customer_text", "auditor_text"} & {k for r in payload["reasons"] for k in r}
    assert payload["request"] == {"applicant": example_application["applicant"]}
    # one attribution per applicant field, in the order of the field names
    assert (
        dict(zip(sorted(payload["request"]["applicant"]), payload["attributions"], strict=True))
        == explanation["attributions"]
    )
    assert payload["margin"] == explanation["margin"]
    assert payload["model"]["sha256"] == body["model"]["sha256"]
    assert not {"response", "decision", "score", "risk_band", "application_id", "decision_id"} & set(payload)
    assert record["reason_codes"] == [r["code"] for r in body["reasons"]]
    # who decided: the key's id and label, never the key
    all_roles_key = api_client.environ_base["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    assert (
        record["decided_by"]
        == payload["decided_by"]
        == {
            "key_id": hashlib.sha256(all_roles_key.encode()).hexdigest()[:12],
            "label": "env:scorer",
            "role": "scorer",
        }
    )
    assert all_roles_key not in json.dumps(record)
    assert re.fullmatch(r"[0-9a-f]{64}", record["record_hash"]) and re.fullmatch(r"[0-9a-f]{64}", record["prev_hash"])


def test_charset_utf8_is_accepted(api_client: Any, example_application: dict) -> None:
    response = api_client.post(
        "/v1/decisions", data=json.dumps(example_application), content_type="application/json; charset=UTF-8"
    )
    assert response.status_code == 201


def test_rule_reasons_come_first(api_app: Any, api_client: Any, example_application: dict) -> None:
    policy = get_state(api_app).model.bundle.policy
    minor = _post(api_client, _with(example_application, age_years=17)).get_json()
    assert minor["decision"] == "decline"
    assert [r["code"] for r in minor["rules_fired"]] == ["R01"]
    assert minor["reasons"][0]["code"] == "R01" and minor["reasons"][0]["kind"] == "rule"
    assert minor["reasons"][0]["adverse"] is True and minor["reasons"][0]["contribution"] is None
    assert minor["reasons"][0]["values"] == [{"field": "age_years", "value": 17, "label": "17 years"}]

    large = _post(api_client, _with(example_application, credit_amount=25000)).get_json()
    assert [r["code"] for r in large["rules_fired"]] == ["R02"]
    assert large["reasons"][0]["code"] == "R02"
    band = policy.band_for(large["score"]["value"])
    assert large["decision"] == max(band.decision, "refer", key=SEVERITY.__getitem__)
    assert SEVERITY[large["decision"]] >= SEVERITY["refer"]

    both = _post(api_client, _with(example_application, age_years=17, duration_months=96)).get_json()
    assert [r["code"] for r in both["reasons"][:2]] == ["R01", "R03"]
    assert [r["kind"] for r in both["reasons"][2:]] == ["model"] * (len(both["reasons"]) - 2)
    assert both["decision"] == "decline"


def test_approvals_report_main_risk_factors_not_adverse(api_app: Any, api_client: Any) -> None:
    reference = get_state(api_app).model.bundle.reference["applications"]
    items = [{"application_id": f"ref-{i}", "applicant": app} for i, app in enumerate(reference)]
    body = _post(api_client, {"applications": items}, "/v1/decisions:batch").get_json()
    decisions = [item["decision"] for item in body["items"]]
    approved = [d for d in decisions if d["decision"] == "approve"]
    assert approved, "the reference sample should contain approvals"
    assert any(d["decision"] != "approve" for d in decisions)
    for d in approved:
        assert d["reasons"], "an approval still reports its main risk factors"
        assert all(r["adverse"] is False and r["kind"] == "model" for r in d["reasons"])
        assert all(r["contribution"]["log_odds"] > 0 for r in d["reasons"])
    for d in decisions:
        if d["decision"] != "approve":
            assert all(r["adverse"] is True for r in d["reasons"])


def test_batch_mixes_valid_and_invalid_items(api_app: Any, api_client: Any, example_application: dict) -> None:
    before = _count(api_app)
    bad = _with(example_application, age_years="thirty")
    minor = _with(example_application, age_years=17)
    minor["application_id"] = "APP-minor"
    items = [example_application, bad, minor, {"application_id": "x"}, "not an object"]
    response = _post(api_client, {"applications": items}, "/v1/decisions:batch")
    assert response.status_code == 200
    body = response.get_json()
    assert BatchDecisionResponseSchema().validate(body) == {}
    assert [item["status"] for item in body["items"]] == [201, 422, 201, 422, 422]
    assert [item["index"] for item in body["items"]] == [0, 1, 2, 3, 4]
    assert body["succeeded"] == 2 and body["failed"] == 3
    assert body["items"][1]["problem"]["errors"] == [
        {"field": "applicant.age_years", "message": "Not a valid integer."}
    ]
    assert body["items"][1]["application_id"] == example_application["application_id"]
    assert body["items"][3]["problem"]["errors"] == [
        {"field": "applicant", "message": "Missing data for required field."}
    ]
    assert body["items"][4]["application_id"] is None
    assert body["items"][2]["decision"]["decision"] == "decline"
    assert _count(api_app) == before + 2
    for item in (body["items"][0], body["items"][2]):
        got = api_client.get(f"/v1/decisions/{item['decision']['decision_id']}")
        assert got.get_json()["response"] == item["decision"]


def test_idempotent_retry_returns_the_stored_decision(api_app: Any, api_client: Any, example_application: dict) -> None:
    before = _count(api_app)
    first = _post(api_client, example_application, headers={"Idempotency-Key": "retry-1"})
    again = _post(api_client, example_application, headers={"Idempotency-Key": "retry-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert again.get_json() == first.get_json()
    assert _count(api_app) == before + 1
    conflict = _post(api_client, _with(example_application, age_years=50), headers={"Idempotency-Key": "retry-1"})
    assert conflict.status_code == 409 and conflict.mimetype == PROBLEM
    assert conflict.get_json()["type"].endswith("idempotency-conflict")
    assert _count(api_app) == before + 1


def test_health_readiness_and_metrics(api_client: Any, example_application: dict) -> None:
    assert api_client.get("/healthz").get_json() == {"status": "ok"}
    ready = api_client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
    assert _post(api_client, example_application).status_code == 201
    text = api_client.get("/metrics").get_data(as_text=True)
    assert re.search(r'credit_decision_decisions_total\{decision="\w+",risk_band="\w"\} [1-9]', text)
    assert 'credit_decision_http_requests_total{method="POST",route="/v1/decisions",status="201"}' in text
    assert "credit_decision_http_request_duration_seconds_bucket" in text


def test_not_ready_without_a_champion(
    tmp_path: Path, example_application: dict, api_keys_setting: str, scorer_headers: dict
) -> None:
    app = create_app(
        {
            "MODEL_STORE": str(tmp_path / "empty"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite3'}",
            "API_KEYS": api_keys_setting,
        }
    )
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.mimetype == PROBLEM
    assert "no champion" in ready.get_json()["detail"]
    assert _post(client, example_application).status_code == 401  # credentials are checked first
    decision = _post(client, example_application, headers=scorer_headers)
    assert decision.status_code == 503 and decision.mimetype == PROBLEM
    assert decision.headers["Retry-After"]
    assert get_state(app).store.count() == 0
    get_state(app).store.close()


def test_not_ready_when_an_artifact_changed(api_model_store: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(api_model_store, root)
    name, version = ModelStore(root).champion()
    onnx = root / name / version / MODEL_FILE
    onnx.chmod(stat.S_IRUSR | stat.S_IWUSR)
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    app = create_app({"MODEL_STORE": str(root), "DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite3'}"})
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    assert "model.onnx: changed" in ready.get_json()["detail"]
    get_state(app).store.close()


def test_serves_the_scorecard_family_with_exact_attributions(api_make_app: Any, example_application: dict) -> None:
    app = api_make_app(MODEL_NAME="german-credit-scorecard")
    body = _post(app.test_client(), example_application).get_json()
    assert body["model"]["family"] == "scorecard"
    explanation = body["explanation"]
    assert sum(explanation["attributions"].values()) + explanation["base_value"] == pytest.approx(
        explanation["margin"], abs=1e-5
    )


def test_store_failure_fails_the_request_with_503(api_make_app: Any, example_application: dict) -> None:
    app = api_make_app()
    client = app.test_client()
    assert _post(client, example_application).status_code == 201
    path = get_state(app).settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as admin:
        admin.execute("ALTER TABLE decision_records RENAME TO decision_records_moved")
    try:
        failed = _post(client, example_application)
    finally:
        with sqlite3.connect(path) as admin:
            admin.execute("ALTER TABLE decision_records_moved RENAME TO decision_records")
    assert failed.status_code == 503 and failed.mimetype == PROBLEM
    problem = failed.get_json()
    assert problem["type"].endswith("store-unavailable") and "decision_id" not in problem
    assert "decision_records" not in json.dumps(problem)  # no exception text
    assert get_state(app).store.count() == 1


def test_unexpected_errors_are_500_problems_without_exception_text(api_make_app: Any) -> None:
    app = api_make_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    response = app.test_client().get("/boom")
    assert response.status_code == 500 and response.mimetype == PROBLEM
    assert "secret" not in response.get_data(as_text=True)
    assert response.get_json()["title"] == "Internal server error"


def test_http_errors_are_problems(api_client: Any) -> None:
    missing = api_client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.mimetype == PROBLEM
    no_record = api_client.get("/v1/decisions/0123456789abcdef0123456789abcdef")
    assert no_record.status_code == 404 and no_record.mimetype == PROBLEM
    wrong_method = api_client.delete("/v1/decisions")
    assert wrong_method.status_code == 405 and wrong_method.mimetype == PROBLEM
    assert {"GET", "POST"} <= set(wrong_method.headers["Allow"].replace(" ", "").split(","))
    assert wrong_method.get_json()["status"] == 405


def _resolve_refs(doc: dict, node: Any) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None:
            assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in doc["components"]["schemas"]
        for value in node.values():
            _resolve_refs(doc, value)
    elif isinstance(node, list):
        for value in node:
            _resolve_refs(doc, value)


def test_openapi_document(api_app: Any, api_client: Any) -> None:
    doc = api_client.get("/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    assert {"/v1/decisions", "/v1/decisions:batch", "/v1/decisions/{decision_id}", "/readyz"} <= set(doc["paths"])
    _resolve_refs(doc, doc)
    try:
        from openapi_spec_validator import validate
    except ImportError:
        pass
    else:
        validate(doc)
    applicant = doc["components"]["schemas"]["Applicant"]
    spec = get_state(api_app).model.bundle.spec
    assert sorted(applicant["required"]) == sorted(spec.field_names)
    assert applicant["additionalProperties"] is False
    for field in spec.fields:
        prop = applicant["properties"][field.name]
        assert prop["description"] == field.description
        if field.kind == "categorical":
            assert prop["enum"] == list(field.codes)
        else:
            assert prop["type"] == "integer"
            assert (prop["minimum"], prop["maximum"]) == (field.minimum, field.maximum)
    request = doc["paths"]["/v1/decisions"]["post"]["requestBody"]["content"]["application/json"]
    assert _post(api_client, request["example"]).status_code == 201  # the example is valid
    responses = doc["paths"]["/v1/decisions"]["post"]["responses"]
    assert {"201", "400", "413", "415", "422", "503"} <= set(responses)
    assert responses["422"]["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
    # codes, bands and field names may grow with a new catalog, policy or spec: open strings in responses
    response = doc["components"]["schemas"]["DecisionResponse"]["properties"]
    assert "enum" not in response["risk_band"] and response["risk_band"]["type"] == "string"
    reason = doc["components"]["schemas"]["Reason"]["properties"]
    assert "enum" not in reason["code"] and reason["code"]["type"] == "string"


def test_docs_page_works_offline(api_client: Any) -> None:
    page = api_client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    for asset in re.findall(r"""(?:src|href)="(docs/[^"]+)\"""", html):
        response = api_client.get("/" + asset)
        assert response.status_code == 200
        assert not re.search(r"https?://", response.get_data(as_text=True))
    assert {"docs/docs.js", "docs/docs.css"} <= set(re.findall(r"""(?:src|href)="(docs/[^"]+)\"""", html))


def test_field_schema_for_integrators(api_app: Any, api_client: Any) -> None:
    body = api_client.get("/v1/schema").get_json()
    spec = get_state(api_app).model.bundle.spec
    assert body["spec_version"] == spec.version
    by_name = {f["name"]: f for f in body["fields"]}
    assert list(by_name) == list(spec.field_names)
    for field in spec.fields:
        entry = by_name[field.name]
        assert entry["description"] == field.description
        if field.kind == "categorical":
            assert entry["type"] == "string"
            assert entry["allowed_values"] == [{"code": c.code, "label": c.label} for c in field.values]
        else:
            assert entry["range"] == {"minimum": field.minimum, "maximum": field.maximum}
            assert entry["unit"] == field.unit
    assert {m["name"] for m in body["never_accepted"]} == {"personal_status_and_sex", "foreign_worker"}
    assert not set(by_name) & {m["name"] for m in body["never_accepted"]}
    assert math.isclose(body["score"]["minimum"], 300)


@pytest.mark.parametrize(
    "config",
    [
        {"MODEL_STOER": "/tmp"},
        {"MAX_JSON_DEPTH": 1},
        {"MAX_BATCH_ITEMS": "many"},
        {"ENV": "staging"},
        {"TESTING": "perhaps"},
        {"MODEL_VERSION": "v1"},
        {"MAX_CONTENT_LENGTH": 2048, "MAX_BATCH_CONTENT_LENGTH": 1024},
    ],
)
def test_invalid_settings_are_refused(config: dict) -> None:
    with pytest.raises(ConfigError):
        Settings.load(config, environ={})


def test_settings_from_the_environment(tmp_path: Path) -> None:
    environ = {
        "CREDIT_DECISION_MODEL_STORE": str(tmp_path),
        "DATABASE_URL": "sqlite:///x.sqlite3",
        "CREDIT_DECISION_MAX_BATCH_ITEMS": "10",
    }
    settings = Settings.load({"MAX_JSON_DEPTH": 8}, environ=environ)
    assert settings.model_store == tmp_path and settings.database_url == "sqlite:///x.sqlite3"
    assert (settings.max_batch_items, settings.max_json_depth, settings.env) == (10, 8, "development")
    assert Settings.load({}, environ={}).database_url == "sqlite:///var/decisions.sqlite3"


def test_integral_floats_are_integers_as_json_says(api_app: Any, api_client: Any, example_application: dict) -> None:
    plain = _post(api_client, example_application).get_json()
    body = _with(example_application, duration_months=float(example_application["applicant"]["duration_months"]))
    response = _post(api_client, body)
    assert response.status_code == 201
    stored = api_client.get(f"/v1/decisions/{response.get_json()['decision_id']}").get_json()
    value = stored["payload"]["request"]["applicant"]["duration_months"]
    assert value == example_application["applicant"]["duration_months"] and isinstance(value, int)
    assert response.get_json()["score"] == plain["score"]
    assert _post(api_client, _with(example_application, duration_months=12.5)).status_code == 422
