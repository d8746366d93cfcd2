"""Hardening (issue 14): the edge inputs an outside probe turned into 500s (or a silently cut body) are 4xx
problems that name what is wrong and record nothing; batch idempotency keys have their own namespace; files
holding applications are private. Each case was reproduced (a 500, a crash in the renderer, a 201) first.

Body-size and server-layer cases run against real gunicorn with raw sockets; the rest use the real app.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.core.recorded import RecordedDecision
from service.records import _sql as sql_module
from service.records import open_decision_store
from service.state import get_state

PROBLEM = "application/problem+json"
JSON = "application/json"


def _count(app: Any) -> int:
    return int(get_state(app).store.count())


def _problem(response: Any, status: int | tuple[int, ...], field: str | None = None) -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, response.get_data(as_text=True)[:500]
    assert response.mimetype == PROBLEM
    problem = response.get_json()
    assert problem["status"] == response.status_code and problem["detail"]
    if field is not None:
        assert field in [e["field"] for e in problem.get("errors", [])], problem
    return dict(problem)


def _post(client: Any, path: str, text: str, **headers: str) -> Any:
    return client.post(path, data=text.encode("utf-8"), headers={"Content-Type": JSON, **headers})


def _integer_field(example: dict[str, Any]) -> str:
    return next(k for k, v in example["applicant"].items() if isinstance(v, int) and not isinstance(v, bool))


# ---- 1. an integer longer than Python converts ------------------------------------------------------------------

HUGE = "9" * 5000


def _with_literal(example: dict[str, Any], field: str, literal: str) -> str:
    body = copy.deepcopy(example)
    body["applicant"][field] = "__LITERAL__"
    return json.dumps(body).replace('"__LITERAL__"', literal)


@pytest.mark.parametrize("literal", [HUGE, "-" + HUGE])
def test_a_5000_digit_integer_is_a_422_naming_the_field(api_app: Any, example_application: dict, literal: str) -> None:
    client, field = api_app.test_client(), _integer_field(example_application)
    single = _with_literal(example_application, field, literal)
    before = _count(api_app)
    _problem(_post(client, "/v1/decisions", single), 422, f"applicant.{field}")
    batch = '{"applications": [' + json.dumps(example_application) + ", " + single + "]}"
    _problem(_post(client, "/v1/decisions:batch", batch), 422, f"applications[1].applicant.{field}")
    outcomes = '{"outcomes": [{"decision_id": "d1", "outcome": "good", "observed_at": ' + literal + "}]}"
    _problem(_post(client, "/v1/outcomes", outcomes), 422, "outcomes[0].observed_at")
    assert _count(api_app) == before
    # just within Python's limit: read, and refused by the field's range like any other number
    within = _with_literal(example_application, field, "9" * sys.get_int_max_str_digits())
    _problem(_post(client, "/v1/decisions", within), 422, f"applicant.{field}")


# ---- 2. a lone surrogate ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "field"),
    [("top-key", "\\ud800"), ("applicant-key", "applicant.\\udfff"), ("value", "applicant.housing")],
)
def test_a_lone_surrogate_is_a_400_rendered_escaped(
    api_app: Any, example_application: dict, where: str, field: str
) -> None:
    text = json.dumps(example_application)
    if where == "top-key":
        text = text[:-1] + ', "\\ud800": 1}'
    elif where == "applicant-key":
        text = text.replace('"applicant": {', '"applicant": {"\\udfff": 1, ', 1)
    else:
        body = copy.deepcopy(example_application)
        body["applicant"]["housing"] = "__S__"
        text = json.dumps(body).replace("__S__", "own\\ud83d")
    client = api_app.test_client()
    before = _count(api_app)
    response = _post(client, "/v1/decisions", text)
    response.get_data().decode("utf-8")  # strict UTF-8: the problem holds no surrogate
    _problem(response, 400, field)
    batch = _post(client, "/v1/decisions:batch", '{"applications": [' + text + "]}")
    _problem(batch, 400, f"applications[0].{field}" if where != "top-key" else "applications[0].\\ud800")
    assert _count(api_app) == before


def test_a_surrogate_pair_is_a_character_and_stays_accepted(api_app: Any, example_application: dict) -> None:
    body = copy.deepcopy(example_application)
    body["application_id"] = "__ID__"
    text = json.dumps(body).replace("__ID__", "APP-\\ud83d\\ude00")  # a valid pair (an emoji): refused by the pattern
    response = _post(api_app.test_client(), "/v1/decisions", text)
    _problem(response, 422, "application_id")


def test_the_renderer_escapes_what_it_cannot_encode(api_app: Any) -> None:
    from service.api.problems import render_problem
    from service.errors import FieldError, ValidationFailed

    with api_app.test_request_context("/v1/decisions"):
        response = render_problem(ValidationFailed("bad \ud800", [FieldError("a.\udfff", "m\ud800")]))
    body = json.loads(response.get_data().decode("utf-8"))
    assert body["errors"] == [{"field": "a.\\udfff", "message": "m\\ud800"}] and body["detail"] == "bad \\ud800"


# ---- 3. query parameters: ASCII digits only -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["²", "①", "１０", "٣", "-1", "+5", " 5", "5 ", "0x10", "1e2", "0", "1001", "9" * 40])
@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/audit/events", "/v1/reviews/queue"])
def test_limit_takes_ascii_digits_only(api_app: Any, path: str, value: str) -> None:
    response = api_app.test_client().get(path, query_string={"limit": value})
    _problem(response, 400, "limit")


@pytest.mark.parametrize(
    "query",
    [
        {"from": "２０２６-01-01T00:00:00Z"},
        {"to": "2026-01-01T00:00:00 ０２:００"},
        {"from": "2026-01-01T00:00:00 ²²:00"},
    ],
)
def test_dates_take_ascii_digits_only(api_app: Any, query: dict[str, str]) -> None:
    (name,) = query
    _problem(api_app.test_client().get("/v1/decisions", query_string=query), 400, name)


@pytest.mark.parametrize("path", ["/v1/reports", "/v1/reports/challenger"])
def test_report_days_take_ascii_digits_only(api_app: Any, path: str) -> None:
    response = api_app.test_client().get(path, query_string={"from": "２０２６-01-01", "to": "2026-01-02"})
    _problem(response, 400, "from")


# ---- 4. cursors beyond a 64-bit seq ---------------------------------------------------------------------------------


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_cursor_beyond_a_64_bit_seq_is_an_invalid_cursor(api_make_app: Callable[..., Any], backend: str) -> None:
    client = api_make_app(backend=backend).test_client()
    for path in ("/v1/decisions", "/v1/audit/events", "/v1/reviews/queue"):
        for text in (f"seq:{2**63}", f"seq:{2**64}", "seq:" + "9" * 40, "seq:²", "seq:１", "seq:-1", "seq:"):
            _problem(client.get(path, query_string={"cursor": _cursor(text)}), 400, "cursor")
        last = client.get(path, query_string={"cursor": _cursor(f"seq:{2**63 - 1}")})
        assert last.status_code == 200 and last.get_json()["items"] == []


# ---- 5. dates at the edges of the datetime range ----------------------------------------------------------------------

EDGE_MOMENTS = [
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    "0001-01-01T00:00:00+23:59",
]


@pytest.mark.parametrize("moment", EDGE_MOMENTS)
@pytest.mark.parametrize("name", ["from", "to"])
@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/decisions/export", "/v1/audit/events"])
def test_search_and_export_dates_beyond_the_range_are_400(api_app: Any, path: str, name: str, moment: str) -> None:
    _problem(api_app.test_client().get(path, query_string={name: moment}), 400, name)


@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/decisions/export"])
def test_search_and_export_at_the_very_edges_of_the_range_answer(api_app: Any, path: str) -> None:
    response = api_app.test_client().get(
        path, query_string={"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59.999999Z"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("first", "end", "field"),
    [("0001-01-01", "0001-01-02", "from"), ("0001-01-01", "0001-12-31", "from"), ("9999-12-31", "9999-12-31", "to")],
)
def test_report_periods_at_the_edge_are_400(api_app: Any, first: str, end: str, field: str) -> None:
    response = api_app.test_client().get("/v1/reports", query_string={"from": first, "to": end})
    _problem(response, 400, field)


def test_report_periods_just_inside_the_range_answer(api_app: Any) -> None:
    client = api_app.test_client()
    assert client.get("/v1/reports", query_string={"from": "0001-01-02", "to": "0001-01-03"}).status_code == 200
    assert client.get("/v1/reports", query_string={"from": "9999-12-30", "to": "9999-12-31"}).status_code == 200
    comparison = client.get("/v1/reports/challenger", query_string={"from": "0001-01-01", "to": "0001-01-02"})
    assert comparison.status_code == 200


def test_a_period_before_year_1_is_a_report_error() -> None:
    from datetime import UTC, date, datetime, timedelta, timezone

    from service.reports.core import Period, ReportError

    with pytest.raises(ReportError, match="year 1"):
        _ = Period.of_days(date(1, 1, 1), date(1, 1, 2)).previous
    with pytest.raises(ReportError, match="date range"):
        Period(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("moment", [*EDGE_MOMENTS, "10000-01-01", "9999-12-31T23:59:59.9999999Z"])
def test_outcome_dates_beyond_the_range_are_422(api_app: Any, moment: str) -> None:
    body = {"outcomes": [{"decision_id": "d1", "outcome": "good", "observed_at": moment}]}
    response = api_app.test_client().post("/v1/outcomes", json=body)
    _problem(response, 422, "outcomes[0].observed_at")


# ---- 7. idempotency: single and batch keys apart; replayed only when every item was -----------------------------------


def _applications(example: dict[str, Any], *ages: int) -> list[dict[str, Any]]:
    out = []
    for index, age in enumerate(ages):
        body = copy.deepcopy(example)
        body["applicant"]["age_years"] = age
        body["application_id"] = f"IDEM-{index}"
        out.append(body)
    return out


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_single_and_batch_idempotency_keys_do_not_collide(
    api_make_app: Callable[..., Any], example_application: dict, backend: str
) -> None:
    app = api_make_app(backend=backend)
    client = app.test_client()
    a, b = _applications(example_application, 30, 45)
    single = client.post("/v1/decisions", json=b, headers={"Idempotency-Key": "K#1"})
    assert single.status_code == 201
    batch = client.post("/v1/decisions:batch", json={"applications": [a, a]}, headers={"Idempotency-Key": "K"})
    assert batch.status_code == 200 and "Idempotent-Replayed" not in batch.headers
    assert [item["status"] for item in batch.get_json()["items"]] == [201, 201]
    assert batch.get_json()["items"][1]["decision"]["decision_id"] != single.get_json()["decision_id"]
    assert _count(app) == 3
    # and the other way round: a batch first, then a single request with its item's old-style key
    batch = client.post("/v1/decisions:batch", json={"applications": [a]}, headers={"Idempotency-Key": "L"})
    again = client.post("/v1/decisions", json=b, headers={"Idempotency-Key": "L#0"})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert _count(app) == 5
    stored = client.get(f"/v1/decisions/{batch.get_json()['items'][0]['decision']['decision_id']}").get_json()
    assert stored["idempotency_key"] == "L [0]"


def test_a_batch_is_replayed_only_when_every_item_was(api_app: Any, example_application: dict) -> None:
    client = api_app.test_client()
    a, b = _applications(example_application, 31, 46)
    headers = {"Idempotency-Key": "replay-all"}
    first = client.post("/v1/decisions:batch", json={"applications": [a, b]}, headers=headers)
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    before = _count(api_app)
    again = client.post("/v1/decisions:batch", json={"applications": [a, b]}, headers=headers)
    assert again.headers.get("Idempotent-Replayed") == "true" and _count(api_app) == before
    # item 1 now has another body: a 409 for it, so the batch as a whole is not a replay
    changed = _applications(example_application, 31, 60)
    conflict = client.post("/v1/decisions:batch", json={"applications": changed}, headers=headers)
    assert [i["status"] for i in conflict.get_json()["items"]] == [201, 409]
    assert "Idempotent-Replayed" not in conflict.headers and _count(api_app) == before
    # an invalid item: not a replay either
    broken = client.post("/v1/decisions:batch", json={"applications": [a, {"x": 1}]}, headers=headers)
    assert [i["status"] for i in broken.get_json()["items"]] == [201, 422]
    assert "Idempotent-Replayed" not in broken.headers and _count(api_app) == before


def test_a_batch_recorded_before_the_namespaces_still_replays(
    api_make_app: Callable[..., Any],
    example_application: dict,
    monkeypatch: pytest.MonkeyPatch,
    decision_store_url: str,
) -> None:
    """Records of the old form '<key>#<i>' stay readable and verifiable; a retry of their batch still replays them,
    and a single request keyed '<key>#<i>' AFTER the upgrade is never taken for a batch item."""
    source = api_make_app()
    a, b = _applications(example_application, 33, 48)
    made = source.test_client().post("/v1/decisions", json=a).get_json()
    record = get_state(source).store.get(made["decision_id"]).record
    # as the code of that time wrote it: the reasons' texts in the record (no texts table before migration 0006)
    inline = dataclasses.replace(RecordedDecision.of(record).payload, reason_texts=None).to_json()
    record = dataclasses.replace(record, payload=inline)
    real = sql_module.load_migrations
    with monkeypatch.context() as patch:  # a store written before migration 0004, holding an old-style batch item
        patch.setattr(sql_module, "load_migrations", lambda name: real(name)[:3])
        # ... written by the code of that time, which had no report rows either (migration 0005)
        patch.setattr(sql_module.SqlDecisionStore, "_insert_report_row", lambda self, tx, seq, record: None)
        old = open_decision_store(decision_store_url)
        old.save(dataclasses.replace(record, idempotency_key="OLD#0"))
        old.close()
    app = api_make_app(DATABASE_URL=decision_store_url)
    client = app.test_client()
    retry = client.post("/v1/decisions:batch", json={"applications": [a]}, headers={"Idempotency-Key": "OLD"})
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.get_json()["items"][0]["decision"]["decision_id"] == made["decision_id"]
    assert _count(app) == 1
    assert client.get(f"/v1/decisions/{made['decision_id']}").get_json()["idempotency_key"] == "OLD#0"
    # new data: a single keyed NEW#0, then a batch keyed NEW: two decisions
    assert client.post("/v1/decisions", json=b, headers={"Idempotency-Key": "NEW#0"}).status_code == 201
    batch = client.post("/v1/decisions:batch", json={"applications": [b]}, headers={"Idempotency-Key": "NEW"})
    assert batch.get_json()["items"][0]["status"] == 201
    assert "Idempotent-Replayed" not in batch.headers and _count(app) == 3
    assert get_state(app).store.verify_chain().ok


# ---- files holding applications are private -------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_store_and_its_wal_are_created_0600(
    tmp_path: Path, make_decision_record: Callable[..., Any]
) -> None:
    old = os.umask(0o022)
    try:
        store = open_decision_store(f"sqlite:///{tmp_path / 'var' / 'decisions.sqlite3'}")
        store.save(make_decision_record())
        files = sorted(p.name for p in (tmp_path / "var").iterdir())
        assert {"decisions.sqlite3", "decisions.sqlite3-wal", "decisions.sqlite3-shm"} <= set(files)
        for name in files:
            assert _mode(tmp_path / "var" / name) == 0o600, name
        store.close()
    finally:
        os.umask(old)


def test_exports_key_files_and_batch_outputs_are_created_0600(
    tmp_path: Path,
    decision_store_url: str,
    make_decision_record: Callable[..., Any],
    api_model_store: Path,
    example_application: dict,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from cli.main import main

    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)
    try:
        store = open_decision_store(decision_store_url)
        store.save(make_decision_record())
        store.close()
        runner = CliRunner()
        env = {"CREDIT_DECISION_DATABASE_URL": decision_store_url, "CREDIT_DECISION_MODEL_STORE": str(api_model_store)}
        for fmt in ("jsonl", "csv"):
            out = tmp_path / f"export.{fmt}"
            result = runner.invoke(main, ["audit", "export", "--format", fmt, "-o", str(out)], env=env)
            assert result.exit_code == 0, result.output
            assert _mode(out) == 0o600 and out.stat().st_size > 0
        key_file = tmp_path / "keys" / "api_keys"
        result = runner.invoke(main, ["keys", "create", "--role", "scorer", "--file", str(key_file)], env=env)
        assert result.exit_code == 0, result.output
        assert _mode(key_file) == 0o600
        rows = tmp_path / "in.csv"
        rows.write_text(_batch_csv(example_application), encoding="utf-8")
        output, errors = tmp_path / "out.csv", tmp_path / "errors.csv"
        arguments = ["score", "--input", str(rows), "--output", str(output), "--errors", str(errors), "--no-progress"]
        result = runner.invoke(main, arguments, env=env)
        assert result.exit_code == 0, result.output
        assert _mode(output) == 0o600 and _mode(errors) == 0o600
    finally:
        os.umask(old)


def _batch_csv(example: dict[str, Any]) -> str:
    """Two applications as CSV rows, the second invalid (so an error list is written)."""
    columns = ["application_id", *example["applicant"]]
    good = [example["application_id"], *map(str, example["applicant"].values())]
    bad = ["BAD-1", *("abc" if i == 0 else str(v) for i, v in enumerate(example["applicant"].values()))]
    return "\n".join(",".join(row) for row in (columns, good, bad)) + "\n"


# ---- 6. bodies over the limit, chunked or not (real gunicorn, raw sockets) ---------------------------------------------


@pytest.fixture(scope="module", params=["1", "4"], ids=["sync", "gthread"])
def gunicorn_server(
    api_model_store: Path,
    api_keys_setting: str,
    tmp_path_factory: pytest.TempPathFactory,
    run_gunicorn: Any,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[str, Path]]:
    """(base URL, SQLite file) of a real gunicorn over the tiny champion, with either worker class (gunicorn's own
    errors are rendered as problems by both)."""
    folder = tmp_path_factory.mktemp("hardening-server")
    db = folder / "decisions.sqlite3"
    with run_gunicorn(
        folder,
        WEB_CONCURRENCY="1",
        GUNICORN_THREADS=request.param,
        CREDIT_DECISION_MODEL_STORE=str(api_model_store),
        CREDIT_DECISION_API_KEYS=api_keys_setting,
        DATABASE_URL=f"sqlite:///{db}",
    ) as (base, _process, _log):
        yield base, db


def raw_request(base: str, data: bytes, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes to the server and read its whole answer (status, headers, body)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: read what it said
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def _chunked(body: bytes, size: int = 8192) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def _records(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM decision_records").fetchone()[0])


def _decision_request(auth: str, body: bytes, chunked: bool, path: str = "/v1/decisions") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n"
    head += "Connection: close\r\n"
    if chunked:
        return head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(body)
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_every_body_over_the_limit_is_413_and_records_nothing(
    gunicorn_server: tuple[str, Path], example_application: dict, api_keys: dict
) -> None:
    base, db = gunicorn_server
    auth = f"Bearer {api_keys['all']}"
    valid = json.dumps(example_application).encode()
    before = _records(db)
    padded = valid + b" " * 100_000 + b"garbage"
    for body, path in (
        (padded, "/v1/decisions"),  # was cut at the limit, read as the valid application, and recorded
        (b'{"applicant": "' + b"x" * 100_000 + b'"}', "/v1/decisions"),  # was a 400 (cut mid-string)
        (b'{"applications": [' + b",".join([valid] * 2000) + b"]}", "/v1/decisions:batch"),
        (b'{"outcomes": [' + b" " * 2_000_000 + b"]}", "/v1/outcomes"),
    ):
        for chunked in (True, False):
            status, headers, answer = raw_request(base, _decision_request(auth, body, chunked, path))
            assert status == 413, (path, chunked, answer[:300])
            assert headers["content-type"] == PROBLEM
            assert json.loads(answer)["type"].endswith("payload-too-large")
    assert _records(db) == before
    # exactly at the limit (a chunked body that ends there) is whole and decided
    status, _headers, answer = raw_request(base, _decision_request(auth, valid + b" " * 100, True))
    assert status == 201, answer[:300]
    assert _records(db) == before + 1


# ---- gunicorn's own errors are problems too (real gunicorn, raw sockets) ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "request_bytes", "status"),
    [
        ("uri-too-long", b"GET /v1/decisions?application_id=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        ("header-too-large", b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        ("too-many-headers", b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"X-H: 1\r\n" * 60 + b"\r\n", 431),
        ("nul-in-header", b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Bad: a\x00b\r\n\r\n", 400),
        ("bad-request-line", b"GET\x00 / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (
            "bad-chunk-size",
            b"POST /v1/decisions HTTP/1.1\r\nHost: t\r\nAUTH\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
        ),
        ("bad-transfer-coding", b"POST /v1/decisions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ],
)
def test_gunicorns_own_errors_are_problems(
    gunicorn_server: tuple[str, Path], api_keys: dict, name: str, request_bytes: bytes, status: int
) -> None:
    base, _db = gunicorn_server
    got, headers, body = raw_request(
        base, request_bytes.replace(b"AUTH", f"Authorization: Bearer {api_keys['all']}".encode())
    )
    assert got == status, (name, body[:300])
    assert headers["content-type"] == PROBLEM, (name, headers)
    problem = json.loads(body)
    assert problem["status"] == status and problem["type"].startswith("urn:credit-decision:problem:")
    assert b"<html" not in body.lower()


def test_the_problem_writer_never_echoes_internal_errors() -> None:
    from service.gunicorn_worker import problem_bytes

    answer = problem_bytes(500, "Internal Server Error", "secret detail")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n") and b"secret" not in body
    assert json.loads(body) == {"type": "urn:credit-decision:problem:internal-error", "title": "Internal Server Error",
                                "status": 500}  # fmt: skip


@pytest.mark.parametrize(("extra", "too_large"), [(0, False), (1, True), (100_000, True)])
def test_a_body_without_a_length_is_read_one_byte_past_the_limit(extra: int, too_large: bool) -> None:
    """In process, as gunicorn hands a chunked body over (``wsgi.input_terminated``, no Content-Length)."""
    import io

    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from service.api.body import read_json
    from service.errors import PayloadTooLarge

    limit = 1000
    body = b'{"a": 1}' + b" " * (limit - 8 + extra)
    environ = EnvironBuilder(method="POST", path="/v1/decisions", content_type=JSON).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})
    if too_large:
        with pytest.raises(PayloadTooLarge):
            read_json(Request(environ), limit, 16)
    else:
        assert read_json(Request(environ), limit, 16) == {"a": 1}
