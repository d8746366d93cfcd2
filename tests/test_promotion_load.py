"""Promotion under load, with real gunicorn (2 workers): 20 promotions and rollbacks while clients decide without
pause; no request fails, every record names the version that decided it (replay of every record is identical),
readiness follows the switch, and the admin actions are in the verified chain."""

from __future__ import annotations

import copy
import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.e2e

ACTIONS = 20
CLIENTS = 3


def _call(conn: http.client.HTTPConnection, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    return response.status, json.loads(raw) if raw else None


def test_twenty_promotions_and_rollbacks_under_load_fail_no_request(
    run_gunicorn: Any,
    trained_models: Any,
    api_keys: dict[str, str],
    api_keys_setting: str,
    example_application: dict[str, Any],
    tmp_path: Path,
) -> None:
    store, result = trained_models
    champion, other = result.champion, result.baseline
    database = tmp_path / "decisions.sqlite3"
    env = {
        "CREDIT_DECISION_MODEL_STORE": str(store.root),
        "CREDIT_DECISION_DATABASE_URL": f"sqlite:///{database}",
        "CREDIT_DECISION_API_KEYS": api_keys_setting,
        "CREDIT_DECISION_SERVING_POLL_SECONDS": "0.2",
        "WEB_CONCURRENCY": "2",
    }
    statuses: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    with run_gunicorn(tmp_path, **env) as (base, _process, log):
        host = urlsplit(base).netloc

        def client(n: int) -> None:
            conn = http.client.HTTPConnection(host, timeout=30)
            i = 0
            while not stop.is_set():
                body = copy.deepcopy(example_application)
                body["application_id"] = f"L{n}-{i:05d}"
                body["applicant"]["duration_months"] = 6 + (i * 7 + n) % 60
                try:
                    status, _ = _call(conn, "POST", "/v1/decisions", api_keys["scorer"], body)
                except (OSError, http.client.HTTPException):
                    status = -1
                    conn.close()
                    conn = http.client.HTTPConnection(host, timeout=30)
                with lock:
                    statuses.append(status)
                i += 1
            conn.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        admin = http.client.HTTPConnection(host, timeout=60)
        actions = []
        try:
            time.sleep(0.5)
            for k in range(ACTIONS):
                if k % 2 == 0:
                    body = {"name": other.name, "version": other.version, "note": f"promotion {k}"}
                    status, answer = _call(admin, "POST", "/v1/models/champion", api_keys["admin"], body)
                else:
                    status, answer = _call(admin, "POST", "/v1/models/champion:rollback", api_keys["admin"], {})
                actions.append((status, answer))
                time.sleep(0.3)
            # readiness follows the last action (a rollback: the original champion) in every worker within a poll
            time.sleep(1.0)
            readies = {_call(admin, "GET", "/readyz", api_keys["admin"])[1]["model"]["name"] for _ in range(20)}
            assert readies == {champion.name}
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            admin.close()
        assert [s for s, _ in actions] == [200] * ACTIONS, [a for a in actions if a[0] != 200]
        assert len(statuses) > 100 and set(statuses) == {201}, {s: statuses.count(s) for s in set(statuses)}
        assert "Traceback" not in log.read_text()

    # every record names the version that decided it: replaying each with its recorded version is identical
    from cli.audit import audit_group
    from service.records import open_decision_store

    records = open_decision_store(f"sqlite:///{database}")
    try:
        names = [s.record.model_name for s in records.iter_records()]
        assert len(names) == len(statuses)
        assert {champion.name, other.name} <= set(names)  # both versions decided during the run
        report = records.verify_chain()
        assert report.ok and report.records_checked == len(statuses) + ACTIONS
        events, _ = records.events(limit=100)
        assert [e.event.kind for e in events] == ["promotion", "rollback"] * (ACTIONS // 2)
    finally:
        records.close()
    replayed = CliRunner().invoke(
        audit_group, ["replay", "--database-url", f"sqlite:///{database}", "--model-store", str(store.root)]
    )
    assert replayed.exit_code == 0, replayed.output
    assert f"replayed {len(statuses)} decision(s): {len(statuses)} identical" in replayed.output


def test_a_stopped_worker_records_the_shadows_of_every_decision_it_made(
    run_gunicorn: Any,
    trained_models: Any,
    api_keys: dict[str, str],
    api_keys_setting: str,
    example_application: dict[str, Any],
    tmp_path: Path,
) -> None:
    store, result = trained_models
    database = tmp_path / "decisions.sqlite3"
    env = {
        "CREDIT_DECISION_MODEL_STORE": str(store.root),
        "CREDIT_DECISION_DATABASE_URL": f"sqlite:///{database}",
        "CREDIT_DECISION_API_KEYS": api_keys_setting,
        "WEB_CONCURRENCY": "2",
        # no CPU cap: every decision is shadowed (what the cap skips is counted: tests/test_lifecycle.py)
        "CREDIT_DECISION_SHADOW_MAX_SHARE": "1",
    }
    ids = []
    with run_gunicorn(tmp_path, **env) as (base, _process, _log):
        conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=30)
        body = {"name": result.baseline.name, "version": result.baseline.version}
        status, _ = _call(conn, "PUT", "/v1/models/challenger", api_keys["admin"], body)
        assert status == 200
        time.sleep(1.5)  # the other worker follows within its poll interval (1 s)
        for i in range(80):
            request = copy.deepcopy(example_application)
            request["application_id"] = f"S-{i:03d}"
            request["applicant"]["credit_amount"] = 700 + 97 * i
            status, made = _call(conn, "POST", "/v1/decisions", api_keys["scorer"], request)
            assert status == 201
            ids.append(made["decision_id"])
        conn.close()
    # gunicorn was stopped (SIGTERM) right after the last answer: each worker drained its shadow queue first
    from service.records import open_decision_store

    records = open_decision_store(f"sqlite:///{database}")
    try:
        twins = records.shadows_for(ids)
        assert all(len(twins.get(i, [])) == 1 for i in ids), sum(1 for i in ids if i not in twins)
        assert {t.record.model_name for found in twins.values() for t in found} == {result.baseline.name}
        assert records.verify_chain().ok
    finally:
        records.close()
