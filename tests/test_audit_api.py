"""Auditor API: search with every filter, cursor pagination, CSV/JSON Lines export, parameter problems."""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from service.api.schemas import StoredDecisionSchema
from service.core.canonical import canonical_json
from service.records.export import CSV_COLUMNS

API_BACKENDS = ("sqlite", "postgres")
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def audit_app(api_make_app: Any, api_backend: str) -> Any:
    """An app of its own (per backend), so these tests know every record in its store."""
    return api_make_app(backend=api_backend)


@pytest.fixture(scope="module")
def recorded(audit_app: Any, example_application: dict) -> list[dict[str, Any]]:
    """Eleven decisions: three applications, a rule decline, a rule refer; their stored records in seq order."""
    client = audit_app.test_client()
    bodies = []
    for index in range(11):
        body = copy.deepcopy(example_application)
        body["application_id"] = f"APP-{index % 3}"
        body["applicant"]["duration_months"] = 6 + 6 * index
        if index == 4:
            body["applicant"]["age_years"] = 17  # R01: decline
        if index == 7:
            body["applicant"]["credit_amount"] = 25000  # R02: refer
        response = client.post("/v1/decisions", json=body)
        assert response.status_code == 201
        bodies.append(response.get_json())
    return [client.get(f"/v1/decisions/{b['decision_id']}").get_json() for b in bodies]


def _search(client: Any, **params: Any) -> Any:
    return client.get("/v1/decisions", query_string=params)


def _ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["decision_id"] for r in records]


def test_search_returns_every_record_in_chain_order(audit_app: Any, recorded: list[dict]) -> None:
    response = _search(audit_app.test_client())
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["items"] == recorded and body["next_cursor"] is None and "Link" not in response.headers
    assert [r["seq"] for r in body["items"]] == sorted(r["seq"] for r in recorded)
    assert StoredDecisionSchema().validate(body["items"][0]) == {}


def test_each_filter(audit_app: Any, recorded: list[dict]) -> None:
    client = audit_app.test_client()

    def expect(params: dict[str, Any], predicate: Any) -> None:
        wanted = [r for r in recorded if predicate(r)]
        assert wanted, params
        assert _ids(_search(client, **params).get_json()["items"]) == _ids(wanted), params

    expect({"application_id": "APP-1"}, lambda r: r["application_id"] == "APP-1")
    expect({"decision": "decline"}, lambda r: r["decision"] == "decline")
    band = recorded[0]["risk_band"]
    expect({"risk_band": band}, lambda r: r["risk_band"] == band)
    expect({"reason_code": "R01"}, lambda r: "R01" in r["reason_codes"])
    expect({"reason_code": "R02"}, lambda r: "R02" in r["reason_codes"])
    version = recorded[0]["model_version"]
    expect({"model_version": version}, lambda r: True)
    assert _search(client, model_version="v999").get_json()["items"] == []
    expect(
        {"application_id": "APP-1", "decision": recorded[7]["decision"]},
        lambda r: r["application_id"] == "APP-1" and r["decision"] == recorded[7]["decision"],
    )
    # time range: `from` inclusive, `to` exclusive, any timezone
    middle = datetime.fromisoformat(recorded[5]["created_at"])
    expect({"from": middle.isoformat()}, lambda r: r["seq"] >= recorded[5]["seq"])
    expect({"to": middle.isoformat()}, lambda r: r["seq"] < recorded[5]["seq"])
    new_york = middle.astimezone(timezone(timedelta(hours=-5))).isoformat()
    expect({"from": new_york}, lambda r: r["seq"] >= recorded[5]["seq"])
    plus_two = middle.astimezone(UTC).replace(tzinfo=None) + timedelta(hours=2)
    expect({"from": plus_two.isoformat() + "+02:00"}, lambda r: r["seq"] >= recorded[5]["seq"])
    # an unencoded '+' arrives as a space; it still means the offset
    raw = client.get(f"/v1/decisions?from={plus_two.isoformat()}+02:00").get_json()
    assert _ids(raw["items"]) == _ids(recorded[5:])
    later = (middle + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert _search(client, **{"from": later}).get_json()["items"] == []


def test_cursor_pagination_by_body_and_link_header(audit_app: Any, recorded: list[dict]) -> None:
    client = audit_app.test_client()
    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = _search(client, **params)
        body = response.get_json()
        assert len(body["items"]) <= 3 and body["limit"] == 3
        seen.extend(body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            assert "Link" not in response.headers
            break
        link = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers["Link"])
        assert link, response.headers["Link"]
        assert parse_qs(urlsplit(link.group(1)).query) == {"limit": ["3"], "cursor": [cursor]}
    assert pages == 4 and seen == recorded

    # following Link headers with a filter keeps the filter
    url = "/v1/decisions?decision=approve&limit=2"
    followed: list[dict] = []
    while url:
        response = client.get(url)
        followed.extend(response.get_json()["items"])
        match = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers.get("Link", ""))
        url = match.group(1) if match else ""
    assert followed == [r for r in recorded if r["decision"] == "approve"]
    assert _search(client, limit=1000).get_json()["items"] == recorded


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": -1}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "c2VxOmFiYw"}, "cursor"),  # "seq:abc"
        ({"from": "2026-01-31"}, "from"),  # no timezone
        ({"from": "2026-01-31T10:00:00"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"decision": "maybe"}, "decision"),
        ({"risk_band": "A B"}, "risk_band"),
        ({"reason_code": "x" * 65}, "reason_code"),
        ({"application_id": "bad id"}, "application_id"),
        ({"decison": "approve"}, "decison"),  # a typo must not silently widen the search
        ({"decision": ["approve", "decline"]}, "decision"),
    ],
)
def test_invalid_parameters_are_400_problems_naming_the_parameter(
    audit_app: Any, recorded: list[dict], params: dict, parameter: str
) -> None:
    response = _search(audit_app.test_client(), **params)
    assert response.status_code == 400 and response.mimetype == PROBLEM, response.get_data(as_text=True)
    problem = response.get_json()
    assert problem["type"].endswith(":invalid-parameter")
    assert [e["field"] for e in problem["errors"]] == [parameter]
    assert parameter in problem["detail"]


def test_export_csv_and_jsonl(audit_app: Any, recorded: list[dict]) -> None:
    client = audit_app.test_client()
    jsonl = client.get("/v1/decisions/export", query_string={"format": "jsonl"})
    assert jsonl.status_code == 200 and jsonl.is_streamed
    assert jsonl.mimetype == "application/x-ndjson"
    assert re.fullmatch(r'attachment; filename="decisions-\d{8}T\d{6}Z\.jsonl"', jsonl.headers["Content-Disposition"])
    lines = jsonl.get_data(as_text=True).splitlines()
    # exports hold the records exactly as stored and hashed (the API's derived views are left out)
    derived = ("request", "response", "versions", "decided_by")
    exported_lines = [json.loads(line) for line in lines]
    # ... with the reason texts each names beside it, outside the hashed content
    for line in exported_lines:
        texts = line.pop("reason_texts")
        sha = hashlib.sha256(canonical_json(texts).encode()).hexdigest()
        assert sha == line["payload"]["model"]["reason_texts_sha256"]
    assert exported_lines == [{k: v for k, v in r.items() if k not in derived} for r in recorded]

    exported = client.get("/v1/decisions/export", query_string={"format": "csv", "application_id": "APP-2"})
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert exported.headers["Content-Disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    wanted = [r for r in recorded if r["application_id"] == "APP-2"]
    assert [row["decision_id"] for row in rows] == _ids(wanted)
    for row, record in zip(rows, wanted, strict=True):
        assert row["record_hash"] == record["record_hash"] and int(row["seq"]) == record["seq"]
        assert row["reason_codes"] == ";".join(record["reason_codes"])
        assert json.loads(row["payload"]) == record["payload"]
        texts = hashlib.sha256(row["reason_texts"].encode()).hexdigest()
        assert texts == record["payload"]["model"]["reason_texts_sha256"]

    empty = client.get("/v1/decisions/export", query_string={"format": "csv", "model_version": "v999"})
    assert empty.get_data(as_text=True).splitlines() == [",".join(CSV_COLUMNS)]
    assert client.get("/v1/decisions/export", query_string={"model_version": "v999"}).get_data() == b""


@pytest.mark.parametrize(
    ("params", "parameter"),
    [({"format": "xlsx"}, "format"), ({"from": "nope"}, "from"), ({"cursor": "x"}, "cursor"), ({"limit": 5}, "limit")],
)
def test_export_parameter_problems(audit_app: Any, params: dict, parameter: str) -> None:
    response = audit_app.test_client().get("/v1/decisions/export", query_string=params)
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert [e["field"] for e in response.get_json()["errors"]] == [parameter]


def test_purge_defaults_to_the_retention_setting(sqlite_decision_store_url: str, make_decision_record: Any) -> None:
    from click.testing import CliRunner

    from cli.audit import audit_group
    from service.config import DEFAULT_RETENTION_DAYS, Settings
    from service.records import open_decision_store

    assert Settings.load({}, environ={}).retention_days == DEFAULT_RETENTION_DAYS == 760
    now = datetime.now(UTC)
    store = open_decision_store(sqlite_decision_store_url)
    for age_days in (800, 770, 10, 0):
        store.save(make_decision_record(created_at=now - timedelta(days=age_days)))
    store.close()
    runner = CliRunner()
    purge = ["purge", "--database-url", sqlite_decision_store_url]
    first = runner.invoke(audit_group, purge, env={"CREDIT_DECISION_RETENTION_DAYS": None})
    assert first.exit_code == 0, first.output
    assert "purged 2 records" in first.output and "(retention 760 days)" in first.output
    second = runner.invoke(audit_group, purge, env={"CREDIT_DECISION_RETENTION_DAYS": "5"})
    assert "purged 1 records" in second.output and "(retention 5 days)" in second.output
    verified = runner.invoke(audit_group, ["verify", "--database-url", sqlite_decision_store_url])
    assert (
        verified.exit_code == 0 and "(1 decisions, 2 audit events, 0 shadow decisions)" in verified.output
    )  # 2 purge events
