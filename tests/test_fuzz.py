"""Fuzzing every operation of /openapi.json with data that does NOT fit it (issue 14).

schemathesis' negative mode breaks the documented bodies, query strings, path parameters and headers of every
operation; hypothesis adds raw bytes, odd JSON (huge integers, lone surrogates, deep nesting, duplicate keys)
and odd query strings. For every answer: never a 5xx; every error is ``application/problem+json``; and a
rejected request adds nothing to the store (decision records, outcomes, audit events, shadows are counted
before and after each one). Examples are bounded so the module takes well under a minute.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from service.state import get_state

PROBLEM = "application/problem+json"
TABLES = ("decision_records", "decision_outcomes", "audit_events", "shadow_decisions")
FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def fuzz_app(api_make_app: Any) -> Any:
    """A fresh app over the tiny champion and its own SQLite store."""
    return api_make_app()


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app: Any) -> Any:
    """The OpenAPI document the app serves, bound to the app (WSGI, in process)."""
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)


@pytest.fixture(scope="module")
def all_roles(api_keys: dict[str, str]) -> dict[str, str]:
    """Authorization header of the key holding every role."""
    return {"Authorization": f"Bearer {api_keys['all']}"}


def stored(app: Any) -> dict[str, int]:
    """Rows of every table a request could add to."""
    url = get_state(app).settings.database_url
    with sqlite3.connect(Path(url.removeprefix("sqlite:///"))) as conn:
        return {table: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) for table in TABLES}


def check(status: int, content_type: str | None, body: bytes, before: dict[str, int], after: dict[str, int]) -> None:
    """No 5xx; an error is a problem; a rejected request stored nothing."""
    text = body[:300]
    assert status < 500, text
    if status >= 400:
        assert (content_type or "").split(";")[0] == PROBLEM, (status, content_type, text)
        problem = json.loads(body)
        assert problem["status"] == status and problem["type"].startswith("urn:credit-decision:problem:"), problem
        assert after == before, (status, text)


def test_every_operation_with_data_that_does_not_fit_its_contract(
    fuzz_app: Any, fuzz_schema: Any, all_roles: dict[str, str]
) -> None:
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) >= 19
    fuzzed: set[str] = set()
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        def rejected_cleanly(case: Any) -> None:
            before = stored(fuzz_app)
            response = case.call(headers={**(case.headers or {}), **all_roles})
            after = stored(fuzz_app)
            content_type = (response.headers.get("content-type") or [None])[0]  # wire form: lower-case, lists
            check(response.status_code, content_type, response.content, before, after)
            fuzzed.add(case.operation.definition.raw["operationId"])

        try:
            rejected_cleanly()
        except Unsatisfiable:  # nothing to break: no body, no parameters (health, metrics, the documents)
            continue
    # every operation that reads a body, a query string, a path parameter or a header was fuzzed
    assert {"createDecision", "createDecisionsBatch", "postOutcomes", "listDecisions", "exportDecisions",
            "getDecision", "getReport", "getComparison", "listEvents", "promote", "addPolicy"} <= fuzzed  # fmt: skip
    assert len(fuzzed) >= 15, sorted(fuzzed)


# ---- raw bodies and query strings ----------------------------------------------------------------------------------

JSON_WRITES = ("/v1/decisions", "/v1/decisions:batch", "/v1/outcomes", "/v1/models/champion", "/v1/policies")
QUERY_READS = ("/v1/decisions", "/v1/decisions/export", "/v1/audit/events", "/v1/reports", "/v1/reports/challenger")

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_odd_literals = st.sampled_from(
    [
        "9" * 5000,
        "-" + "9" * 4301,
        '"\\ud800"',
        '{"\\udfff": 1}',
        "1e999",
        "NaN",
        "-Infinity",
        "[" * 300 + "]" * 300,
        '{"a": 1, "a": 2}',
        '"\\u0000"',
        "",
        "{",
    ]
)


@st.composite
def bodies(draw: st.DrawFn, example: dict[str, Any]) -> bytes:
    """A JSON body: arbitrary, the example with one applicant field replaced, or an odd literal inside it."""
    kind = draw(st.sampled_from(["arbitrary", "field", "literal", "bytes"]))
    if kind == "arbitrary":
        return json.dumps(draw(_json)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    body = json.loads(json.dumps(example))
    field = draw(st.sampled_from(sorted(body["applicant"])))
    if kind == "field":
        body["applicant"][field] = draw(_json)
        return json.dumps(body).encode()
    body["applicant"][field] = "__LITERAL__"
    return json.dumps(body).replace('"__LITERAL__"', draw(_odd_literals)).encode()


_query_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_query = st.dictionaries(
    st.sampled_from(["limit", "cursor", "from", "to", "format", "kind", "decision", "model", "application_id", "x"]),
    st.one_of(
        _query_text,
        st.sampled_from(["²", "１０", "0", "1001", "-1", "9" * 30, "0001-01-01", "9999-12-31T23:59:59-01:00"]),
    ),
    max_size=4,
)


_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)


@st.composite
def _headers(draw: st.DrawFn, all_roles: dict[str, str]) -> dict[str, str]:
    """Odd values of the headers the API reads: the key (either header), the idempotency key, the content type."""
    headers = dict(all_roles)
    which = draw(st.sampled_from(["authorization", "x-api-key", "idempotency", "content-type"]))
    if which == "authorization":
        headers["Authorization"] = draw(st.sampled_from(["Bearer ", "bearer\t", "Basic ", ""])) + draw(_header_text)
    elif which == "x-api-key":
        del headers["Authorization"]
        headers["X-API-Key"] = draw(_header_text)
    elif which == "idempotency":
        headers["Idempotency-Key"] = draw(_header_text.filter(lambda v: not v.isascii() or " " in v or not v))
    else:
        headers["Content-Type"] = draw(_header_text)
    return headers


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_raw_bodies_and_query_strings(
    fuzz_app: Any, all_roles: dict[str, str], example_application: dict, data: Any
) -> None:
    client = fuzz_app.test_client()
    before = stored(fuzz_app)
    mode = data.draw(st.sampled_from(["body", "query", "headers"]))
    if mode == "headers":
        headers = data.draw(_headers(all_roles))
        response = client.post("/v1/decisions", json=example_application, headers=headers)
    elif mode == "body":
        path = data.draw(st.sampled_from(JSON_WRITES))
        body = data.draw(bodies(example_application))
        if path == "/v1/decisions:batch":
            body = b'{"applications": [' + body + b"]}"
        elif path == "/v1/outcomes":
            body = b'{"outcomes": [' + body + b"]}"
        content_type = data.draw(
            st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain"])
        )
        response = client.post(path, data=body, headers={**all_roles, "Content-Type": content_type})
    else:
        path = data.draw(st.sampled_from(QUERY_READS))
        response = client.get(path, query_string=data.draw(_query), headers=all_roles)
    check(response.status_code, response.headers.get("Content-Type"), response.get_data(), before, stored(fuzz_app))
