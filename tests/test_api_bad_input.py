"""The bad-input matrix: every malformed request gets the right 4xx problem+json and writes no record."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from service.state import get_state

PROBLEM = "application/problem+json"
JSON = "application/json"

Body = Callable[[dict[str, Any]], bytes]


def _applicant(**changes: Any) -> Body:
    def build(example: dict[str, Any]) -> bytes:
        body = copy.deepcopy(example)
        for key, value in changes.items():
            if value is _DROP:
                del body["applicant"][key]
            else:
                body["applicant"][key] = value
        return json.dumps(body).encode()

    return build


def _top(**changes: Any) -> Body:
    def build(example: dict[str, Any]) -> bytes:
        body = copy.deepcopy(example)
        for key, value in changes.items():
            if value is _DROP:
                del body[key]
            else:
                body[key] = value
        return json.dumps(body).encode()

    return build


def _literal(field: str, literal: str) -> Body:
    """The example with a raw JSON literal (NaN, Infinity, 1e400, ...) as the value of an applicant field."""

    def build(example: dict[str, Any]) -> bytes:
        body = copy.deepcopy(example)
        body["applicant"][field] = "__LITERAL__"
        return json.dumps(body).replace('"__LITERAL__"', literal).encode()

    return build


def _raw(data: bytes) -> Body:
    return lambda _example: data


_DROP = object()

# (id, body, content type, status, field named in errors or None)
CASES: list[tuple[str, Body, str | None, int, str | None]] = [
    # wrong types
    ("int-as-string", _applicant(age_years="34"), JSON, 422, "applicant.age_years"),
    ("int-as-fraction", _applicant(duration_months=12.5), JSON, 422, "applicant.duration_months"),
    ("bool-as-int", _applicant(dependents=True), JSON, 422, "applicant.dependents"),
    ("bool-as-int-false", _applicant(existing_credits=False), JSON, 422, "applicant.existing_credits"),
    ("null-value", _applicant(housing=None), JSON, 422, "applicant.housing"),
    ("enum-as-number", _applicant(housing=1), JSON, 422, "applicant.housing"),
    ("object-as-number", _applicant(credit_amount={"value": 100}), JSON, 422, "applicant.credit_amount"),
    ("list-as-enum", _applicant(purpose=["car_new"]), JSON, 422, "applicant.purpose"),
    ("applicant-as-list", _top(applicant=[1, 2]), JSON, 422, "applicant"),
    ("applicant-as-string", _top(applicant="x"), JSON, 422, "applicant"),
    # missing and unknown fields
    ("missing-field", _applicant(housing=_DROP), JSON, 422, "applicant.housing"),
    ("missing-applicant", _top(applicant=_DROP), JSON, 422, "applicant"),
    ("missing-application-id", _top(application_id=_DROP), JSON, 422, "application_id"),
    ("unknown-top-level", _top(ssn="123-45-6789"), JSON, 422, "ssn"),
    ("unknown-applicant-field", _applicant(full_name="Erika Mustermann"), JSON, 422, "applicant.full_name"),
    ("prohibited-foreign-worker", _applicant(foreign_worker="yes"), JSON, 422, "applicant.foreign_worker"),
    ("prohibited-sex", _applicant(personal_status_and_sex="female"), JSON, 422, "applicant.personal_status_and_sex"),
    ("prohibited-top-level", _top(foreign_worker="no"), JSON, 422, "foreign_worker"),
    # out of range and non-finite numbers
    ("age-above-range", _applicant(age_years=121), JSON, 422, "applicant.age_years"),
    ("age-below-range", _applicant(age_years=13), JSON, 422, "applicant.age_years"),
    ("duration-zero", _applicant(duration_months=0), JSON, 422, "applicant.duration_months"),
    ("amount-negative", _applicant(credit_amount=-5), JSON, 422, "applicant.credit_amount"),
    ("amount-huge-int", _applicant(credit_amount=10**30), JSON, 422, "applicant.credit_amount"),
    ("nan-literal", _literal("credit_amount", "NaN"), JSON, 422, "applicant.credit_amount"),
    ("infinity-literal", _literal("duration_months", "Infinity"), JSON, 422, "applicant.duration_months"),
    ("minus-infinity-literal", _literal("age_years", "-Infinity"), JSON, 422, "applicant.age_years"),
    ("overflowing-float", _literal("credit_amount", "1e400"), JSON, 422, "applicant.credit_amount"),
    # unknown enum values
    ("unknown-enum", _applicant(housing="castle"), JSON, 422, "applicant.housing"),
    ("enum-wrong-case", _applicant(housing="OWN"), JSON, 422, "applicant.housing"),
    ("enum-label-not-code", _applicant(housing="Owns home"), JSON, 422, "applicant.housing"),
    # application_id
    ("application-id-empty", _top(application_id=""), JSON, 422, "application_id"),
    ("application-id-too-long", _top(application_id="A" * 65), JSON, 422, "application_id"),
    ("application-id-space", _top(application_id="APP 1"), JSON, 422, "application_id"),
    ("application-id-newline", _top(application_id="APP-1\n"), JSON, 422, "application_id"),
    ("application-id-number", _top(application_id=123), JSON, 422, "application_id"),
    ("application-id-email", _top(application_id="erika@example.com"), JSON, 422, "application_id"),
    # not a JSON object
    ("top-level-list", _raw(b"[]"), JSON, 422, "body"),
    ("top-level-string", _raw(b'"hello"'), JSON, 422, "body"),
    ("top-level-number", _raw(b"42"), JSON, 422, "body"),
    ("top-level-null", _raw(b"null"), JSON, 422, "body"),
    # not JSON at all
    ("not-json", _raw(b"application_id=1&age=3"), JSON, 400, None),
    ("truncated-json", _raw(b'{"application_id": "A1", "applicant": {'), JSON, 400, None),
    ("trailing-garbage", _raw(b'{"application_id": "A1"} x'), JSON, 400, None),
    ("single-quotes", _raw(b"{'application_id': 'A1'}"), JSON, 400, None),
    ("duplicate-keys", _raw(b'{"application_id": "A1", "application_id": "A2", "applicant": {}}'), JSON, 400, None),
    ("invalid-utf8", _raw(b'{"application_id": "\xff\xfe"}'), JSON, 400, None),
    ("empty-body", _raw(b""), JSON, 400, None),
    ("whitespace-body", _raw(b"  \n\t "), JSON, 400, None),
    # (under the 64 KiB limit of this endpoint; the batch test sends 100 000 brackets)
    ("deep-arrays", _raw(b"[" * 60_000), JSON, 400, None),
    ("deep-arrays-closed", _raw(b"[" * 30_000 + b"]" * 30_000), JSON, 400, None),
    ("deep-objects", _raw(b'{"a":' * 10_000 + b"1" + b"}" * 10_000), JSON, 400, None),
    ("brackets-inside-a-string", _top(note="[{" * 100 + '\\"' + "[" * 100), JSON, 422, "note"),
    ("deep-in-applicant", _applicant(housing=[[[[[[[[[[[[[[[[[[["own"]]]]]]]]]]]]]]]]]]]), JSON, 400, None),
    # content type
    ("text-plain", lambda e: json.dumps(e).encode(), "text/plain", 415, None),
    ("form-encoded", lambda e: json.dumps(e).encode(), "application/x-www-form-urlencoded", 415, None),
    ("no-content-type", lambda e: json.dumps(e).encode(), None, 415, None),
    ("json-latin1", lambda e: json.dumps(e).encode(), "application/json; charset=latin-1", 415, None),
    ("xml", _raw(b"<application/>"), "application/xml", 415, None),
    # size
    ("oversized", lambda e: json.dumps({**e, "padding": "x" * 70_000}).encode(), JSON, 413, None),
]


@pytest.mark.parametrize(("body", "content_type", "status", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_single_request(
    api_app: Any, example_application: dict, body: Body, content_type: str | None, status: int, field: str | None
) -> None:
    store = get_state(api_app).store
    before = store.count()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = api_app.test_client().post("/v1/decisions", data=body(example_application), headers=headers)
    _assert_problem(response, status, field)
    assert store.count() == before


def _assert_problem(response: Any, status: int, field: str | None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == PROBLEM
    problem = response.get_json()
    assert problem["status"] == status
    assert problem["type"].startswith("urn:credit-decision:problem:")
    assert problem["title"] and problem["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    if field is not None:
        fields = [e["field"] for e in problem["errors"]]
        assert field in fields, problem
        if field.split(".")[-1] in ("foreign_worker", "personal_status_and_sex"):
            assert "prohibited" in problem["errors"][fields.index(field)]["message"]


def test_every_invalid_field_is_named_at_once(api_app: Any, example_application: dict) -> None:
    body = copy.deepcopy(example_application)
    body["applicant"].update(age_years=7.5, housing="castle", foreign_worker="yes")
    del body["applicant"]["purpose"]
    body["application_id"] = ""
    response = api_app.test_client().post("/v1/decisions", json=body)
    assert response.status_code == 422
    fields = sorted({e["field"] for e in response.get_json()["errors"]})
    assert fields == sorted(
        ["application_id", "applicant.age_years", "applicant.foreign_worker", "applicant.housing", "applicant.purpose"]
    )


BATCH_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], int, str | None]] = [
    ("not-a-list", lambda e: {"applications": e}, 422, "applications"),
    ("empty-list", lambda e: {"applications": []}, 422, "applications"),
    ("too-many", lambda e: {"applications": [e] * 101}, 422, "applications"),
    ("missing-applications", lambda e: {}, 422, "applications"),
    ("unknown-envelope-field", lambda e: {"applications": [e], "callback": "http://x"}, 422, "callback"),
    ("top-level-list", lambda e: [e], 422, "body"),
]


@pytest.mark.parametrize(("build", "status", "field"), [c[1:] for c in BATCH_CASES], ids=[c[0] for c in BATCH_CASES])
def test_bad_batch_envelope(
    api_app: Any, example_application: dict, build: Any, status: int, field: str | None
) -> None:
    store = get_state(api_app).store
    before = store.count()
    response = api_app.test_client().post("/v1/decisions:batch", json=build(example_application))
    _assert_problem(response, status, field)
    assert store.count() == before


def test_batch_body_limits(api_app: Any, example_application: dict) -> None:
    store = get_state(api_app).store
    before = store.count()
    client = api_app.test_client()
    huge = json.dumps({"applications": [example_application], "pad": "x" * (1024 * 1024)})
    _assert_problem(client.post("/v1/decisions:batch", data=huge, content_type=JSON), 413, None)
    deep = b'{"applications": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    _assert_problem(client.post("/v1/decisions:batch", data=deep, content_type=JSON), 400, None)
    _assert_problem(client.post("/v1/decisions:batch", data=b"[" * 100_000, content_type=JSON), 400, None)
    _assert_problem(client.post("/v1/decisions:batch", data=b"", content_type=JSON), 400, None)
    _assert_problem(client.post("/v1/decisions:batch", data=b"{}", content_type="text/plain"), 415, None)
    assert store.count() == before


def test_batch_items_fail_alone(api_app: Any, example_application: dict) -> None:
    """Every item invalid: 200 with a 422 problem per item, nothing recorded."""
    store = get_state(api_app).store
    before = store.count()
    items = [build(example_application) for _, build, _, _, field in CASES if field is not None]
    decoded = []
    for raw in items:
        try:
            decoded.append(json.loads(raw))
        except ValueError:
            continue
    response = api_app.test_client().post(
        "/v1/decisions:batch", data=json.dumps({"applications": decoded[:100]}), content_type=JSON
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["succeeded"] == 0 and body["failed"] == len(decoded[:100])
    assert all(item["status"] == 422 and item["problem"]["errors"] for item in body["items"])
    assert store.count() == before


def test_bad_idempotency_key_header(api_app: Any, example_application: dict) -> None:
    store = get_state(api_app).store
    before = store.count()
    client = api_app.test_client()
    for key in ("has space", "x" * 201, "tab\there"):
        response = client.post("/v1/decisions", json=example_application, headers={"Idempotency-Key": key})
        _assert_problem(response, 400, None)
    assert store.count() == before


def test_bad_decision_ids_and_methods(api_app: Any) -> None:
    client = api_app.test_client()
    for path in ("/v1/decisions/nope", "/v1/decisions/" + "a" * 65, "/v1/decisions/..%2F..%2Fetc", "/v1/decisions/%00"):
        _assert_problem(client.get(path), 404, None)
    _assert_problem(client.put("/v1/decisions", json={}), 405, None)
    _assert_problem(client.delete("/v1/decisions/abc"), 405, None)
    _assert_problem(client.get("/v1/decisions:batch"), 405, None)


@pytest.mark.parametrize(
    ("body", "deeper_than_3"),
    [
        (b"[[[]]]", False),
        (b"[[[[]]]]", True),
        (b'{"a": {"b": [1]}}', False),
        (b'{"a": {"b": [{}]}}', True),
        (b'["[[[[[[", "]]]]"]', False),
        (b'["\\"[[[[", {"x": "\\\\"}]', False),
        (b'["\\\\", [[[1]]]]', True),
        (b"[" * 3 + b"]" * 3 + b"[" * 3, False),
    ],
)
def test_depth_is_measured_outside_strings(body: bytes, deeper_than_3: bool) -> None:
    from service.api.body import json_depth_exceeds

    assert json_depth_exceeds(body, 3) is deeper_than_3
    if not deeper_than_3 and body.endswith((b"]", b"}")):
        json.loads(body)  # the cases are real JSON


def test_nesting_just_within_the_limit_is_read(api_app: Any, example_application: dict) -> None:
    depth = get_state(api_app).settings.max_json_depth
    nested: Any = "own"
    for _ in range(depth - 2):  # body object and applicant object take two levels
        nested = [nested]
    body = copy.deepcopy(example_application)
    body["applicant"]["housing"] = nested
    response = api_app.test_client().post("/v1/decisions", json=body)
    _assert_problem(response, 422, "applicant.housing")  # parsed, then rejected by the schema, not by depth
    body["applicant"]["housing"] = [nested]
    _assert_problem(api_app.test_client().post("/v1/decisions", json=body), 400, None)
