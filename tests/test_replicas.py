"""Two stateless replicas (real gunicorn, 2 workers each, on different ports) sharing one PostgreSQL decision store.

Driven concurrently: the chain verifies as one total order with no sequence gap or duplicate, the same
Idempotency-Key sent to both replicas at the same moment gives one record, and a promotion through one replica is
followed by the other (every worker polls the store's latest control event).
"""

from __future__ import annotations

import copy
import http.client
import json
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

CLIENTS_PER_REPLICA = 2
DECISIONS_PER_CLIENT = 10
SHARED_KEYS = 6


def _call(
    host: str, method: str, path: str, key: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection(host, timeout=60)
    try:
        sent = {"Authorization": f"Bearer {key}", **(headers or {})}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            sent["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        raw = response.read()
        return response.status, dict(response.getheaders()), json.loads(raw) if raw else None
    finally:
        conn.close()


def test_two_replicas_share_one_postgres_chain_idempotency_and_serving_state(
    run_gunicorn: Any,
    trained_models: Any,
    api_keys: dict[str, str],
    api_keys_setting: str,
    example_application: dict[str, Any],
    postgres_decision_store_url: str,
    tmp_path: Path,
) -> None:
    store, result = trained_models
    champion, other = result.champion, result.baseline
    env = {
        "CREDIT_DECISION_MODEL_STORE": str(store.root),
        "DATABASE_URL": postgres_decision_store_url,
        "CREDIT_DECISION_API_KEYS": api_keys_setting,
        "CREDIT_DECISION_SERVING_POLL_SECONDS": "0.2",
        "WEB_CONCURRENCY": "2",
    }
    scorer, admin = api_keys["scorer"], api_keys["admin"]

    def body(tag: str, i: int) -> dict[str, Any]:
        application = copy.deepcopy(example_application)
        application["application_id"] = f"{tag}-{i:04d}"
        application["applicant"]["duration_months"] = 6 + (i * 7) % 60
        return application

    with ExitStack() as stack:
        hosts = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            base, _process, _log = stack.enter_context(run_gunicorn(tmp_path / name, **env))
            hosts.append(urlsplit(base).netloc)
        assert hosts[0] != hosts[1]

        statuses: list[int] = []
        same_key: dict[int, list[tuple[int, dict[str, str], Any]]] = {k: [] for k in range(SHARED_KEYS)}
        lock = threading.Lock()
        barrier = threading.Barrier(2 * CLIENTS_PER_REPLICA)

        def client(replica: int, n: int) -> None:
            host = hosts[replica]
            for i in range(DECISIONS_PER_CLIENT):
                status, _, _ = _call(host, "POST", "/v1/decisions", scorer, body(f"R{replica}C{n}", i))
                with lock:
                    statuses.append(status)
                if n == 0 and i < SHARED_KEYS:
                    # both replicas' first clients send key k at the same moment
                    barrier_pair[i].wait(timeout=30)
                    answer = _call(
                        host, "POST", "/v1/decisions", scorer, body("SHARED", i), {"Idempotency-Key": f"shared-{i}"}
                    )
                    with lock:
                        same_key[i].append(answer)

        barrier_pair = [threading.Barrier(2) for _ in range(SHARED_KEYS)]
        threads = [
            threading.Thread(target=lambda r=r, n=n: (barrier.wait(timeout=30), client(r, n)))
            for r in range(2)
            for n in range(CLIENTS_PER_REPLICA)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert statuses == [201] * (2 * CLIENTS_PER_REPLICA * DECISIONS_PER_CLIENT), statuses

        # one Idempotency-Key, two replicas, the same moment: one decision, the second answer a replay of it
        for k, answers in same_key.items():
            assert [a[0] for a in answers] == [201, 201], answers
            ids = {a[2]["decision_id"] for a in answers}
            assert len(ids) == 1, (k, ids)
            assert sorted(a[1].get("Idempotent-Replayed", "false") for a in answers) == ["false", "true"], answers

        # a promotion through replica a is followed by every worker of replica b
        status, _, _ = _call(
            hosts[0], "POST", "/v1/models/champion", admin, {"name": other.name, "version": other.version}
        )
        assert status == 200
        deadline = time.monotonic() + 30
        served: dict[int, str] = {}  # replica b's worker pid -> the model it said it serves last
        while True:
            ready = _call(hosts[1], "GET", "/readyz", admin)[2]
            served[ready["worker"]] = ready["model"]["name"]
            if len(served) == 2 and set(served.values()) == {other.name}:  # both workers of replica b switched
                break
            assert time.monotonic() < deadline, f"replica b's workers serve {served}"
            time.sleep(0.05)
        status, _, decided = _call(hosts[1], "POST", "/v1/decisions", scorer, body("AFTER", 0))
        assert status == 201
        after_id = decided["decision_id"]

    from service.records import open_decision_store

    records = open_decision_store(postgres_decision_store_url)
    try:
        decisions = list(records.iter_records())
        events, _ = records.events(limit=100)
        expected = 2 * CLIENTS_PER_REPLICA * DECISIONS_PER_CLIENT + SHARED_KEYS + 1
        assert len(decisions) == expected
        assert sum(1 for s in decisions if s.record.idempotency_key is not None) == SHARED_KEYS
        # one total order: every entry of the chain (decisions and the promotion) numbered 1..n, no gap, no duplicate
        seqs = sorted([s.seq for s in decisions] + [e.seq for e in events])
        assert seqs == list(range(1, expected + len(events) + 1))
        assert [e.event.kind for e in events] == ["promotion"]
        report = records.verify_chain()
        assert report.ok and report.records_checked == expected + len(events), report.summary()
        assert {s.record.model_name for s in decisions} == {champion.name, other.name}
        after = records.get(after_id)
        assert after is not None and after.record.model_name == other.name  # decided by replica b's new champion
    finally:
        records.close()
