"""Crash test: real gunicorn (production config, 2 workers) whose workers are SIGKILLed again and again while a
second process posts decisions with Idempotency-Keys and retries each until it gets a 2xx.

Afterwards every acknowledged decision is retrievable with the very body the client received, the hash chain
verifies, and retries created no duplicates (one record per key, the one the client was given).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.audit import audit_group
from service.auth import hash_key, new_key
from service.records import open_decision_store

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "application.json"
MAX_REQUESTS = 3000  # the client stops starting new requests when the killing is over, or at this bound
CLIENT_THREADS = 4
KILLS = 10
KILL_INTERVAL = 0.4

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The load generator: a separate process; its threads post new applications until the stop file appears (or
# MAX_REQUESTS), retrying every one (same Idempotency-Key, same body) until it gets a 2xx; bounded by attempts
# and a deadline. One JSON line per acknowledged request.
CLIENT = r"""
import http.client, itertools, json, os, sys, threading, time, urllib.error, urllib.request

base, key, example_path, out_path, stop_path, total, threads = sys.argv[1:8]
total, threads = int(total), int(threads)
counter = itertools.count()
example = json.load(open(example_path))
deadline = time.monotonic() + 120
lock = threading.Lock()
acks, stats = [], {"attempts": 0, "failures": 0, "replayed": 0}

def post(index):
    body = json.loads(json.dumps(example))
    body["application_id"] = f"CRASH-{index}"
    body["applicant"]["duration_months"] = 6 + index % 60
    body["applicant"]["credit_amount"] = 500 + 37 * index
    data = json.dumps(body).encode()
    idem = f"crash-{index}"
    for attempt in range(1, 1000):
        if time.monotonic() > deadline:
            return
        request = urllib.request.Request(
            f"{base}/v1/decisions", data=data, method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}", "Idempotency-Key": idem},
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                status, replayed = response.status, response.headers.get("Idempotent-Replayed")
                answer = json.loads(response.read())
        # a killed worker: refused, reset, truncated (IncompleteRead is an HTTPException), or an error status
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
            with lock:
                stats["attempts"] += 1
                stats["failures"] += 1
            time.sleep(0.02)
            continue
        with lock:
            stats["attempts"] += 1
            if 200 <= status < 300:
                stats["replayed"] += replayed == "true"
                acks.append({"key": idem, "status": status, "attempts": attempt, "body": answer})
                return
            stats["failures"] += 1
        time.sleep(0.02)

def run():
    while not os.path.exists(stop_path) and time.monotonic() < deadline:
        with lock:
            index = next(counter)
        if index >= total:
            return
        post(index)

workers = [threading.Thread(target=run) for _ in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
with open(out_path, "w") as out:
    for ack in acks:
        out.write(json.dumps(ack) + "\n")
print(json.dumps({**stats, "acknowledged": len(acks), "requests": min(next(counter), total)}))
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # the ppid is the 2nd field after the parenthesised command name
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def _get(url: str, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status, json.loads(response.read())


@pytest.mark.parametrize("threads", ["1", "4"], ids=["sync", "gthread"])  # one commit each / group commit
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigkilled_workers_lose_no_acknowledged_decision(
    backend: str, threads: str, api_model_store: Path, tmp_path: Path, request: pytest.FixtureRequest, run_gunicorn: Any
) -> None:
    url = str(request.getfixturevalue(f"{backend}_decision_store_url"))
    open_decision_store(url).close()  # migrate before the workers race to
    scorer, auditor = new_key(), new_key()
    key_file = tmp_path / "api_keys"
    key_file.write_text(f"scorer:{hash_key(scorer)}:crash client\nauditor:{hash_key(auditor)}:crash test\n")
    client = None
    with run_gunicorn(
        tmp_path,
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS=threads,
        CREDIT_DECISION_ENV="production",
        CREDIT_DECISION_API_KEYS_FILE=str(key_file),
        CREDIT_DECISION_MODEL_STORE=str(api_model_store),
        DATABASE_URL=url,
    ) as (base, server, log):
        try:
            script = tmp_path / "client.py"
            script.write_text(CLIENT)
            acks_file, stop_file = tmp_path / "acks.jsonl", tmp_path / "stop"
            started = time.monotonic()
            argv = [base, scorer, str(EXAMPLE), str(acks_file), str(stop_file), str(MAX_REQUESTS), str(CLIENT_THREADS)]
            client = subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE, text=True)
            killed: list[int] = []
            while len(killed) < KILLS and client.poll() is None:
                time.sleep(KILL_INTERVAL)
                workers = [pid for pid in _children(server.pid) if pid not in killed]
                if not workers:
                    continue
                victim = workers[len(killed) % len(workers)]
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(victim)
            time.sleep(KILL_INTERVAL)
            stop_file.touch()
            output, _ = client.communicate(timeout=150)
            seconds = time.monotonic() - started
            assert client.returncode == 0, output
            stats = json.loads(output.strip().splitlines()[-1])
            assert server.poll() is None, "the gunicorn master must survive its workers"
            assert len(killed) == KILLS, f"only {len(killed)} kills happened before the client finished"

            acks = [json.loads(line) for line in acks_file.read_text().splitlines()]
            keys = {ack["key"] for ack in acks}
            requests = stats["requests"]
            assert len(acks) == len(keys) == requests, stats
            assert requests < MAX_REQUESTS  # so the kills happened under load
            # every acknowledged decision is retrievable, with the very body the client received
            for ack in acks:
                status, record = _get(f"{base}/v1/decisions/{ack['body']['decision_id']}", auditor)
                assert status == 200 and record["response"] == ack["body"]
                assert record["idempotency_key"] == ack["key"]
            # no duplicates: one record per key, and it is the one the client was given
            store = open_decision_store(url)
            try:
                records = store.count()
                assert records == len(keys)
                for ack in acks:
                    stored = store.get_by_idempotency_key(ack["key"])
                    assert stored is not None and stored.record.decision_id == ack["body"]["decision_id"]
            finally:
                store.close()
            # the chain verifies
            verified = CliRunner().invoke(audit_group, ["verify", "--database-url", url])
            assert verified.exit_code == 0, verified.output
            retried = sum(1 for ack in acks if ack["attempts"] > 1)
            print(
                f"\ncrash test [{backend}]: {requests} requests, {stats['attempts']} attempts "
                f"({stats['failures']} failed, {retried} requests retried, {stats['replayed']} idempotent replays), "
                f"{len(killed)} workers SIGKILLed, {len(acks)} acknowledged, {len(acks)} verified retrievable, "
                f"{records} records; {verified.output.strip().splitlines()[-1]}; "
                f"{seconds:.1f} s"
            )
            assert log.read_text().count("Booting worker") >= 2 + KILLS  # the master replaced every killed worker
        finally:
            if client is not None and client.poll() is None:
                client.kill()
                client.wait()
