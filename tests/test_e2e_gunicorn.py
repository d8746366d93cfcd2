"""End to end: real gunicorn (production config, 2 workers) over a tiny trained model store and a SQLite file."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "application.json"

pytestmark = pytest.mark.e2e


def _call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict, Any]:
    request = urllib.request.Request(
        url, data=body, headers=headers or {}, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, dict(response.headers), raw
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _post_json(url: str, payload: Any, key: str | None = None) -> tuple[int, dict, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    status, headers, raw = _call(url, json.dumps(payload).encode(), headers)
    return status, headers, json.loads(raw)


@pytest.fixture(scope="module")
def e2e_keys() -> dict[str, str]:
    """One fresh key per role."""
    from service.auth import new_key

    return {role: new_key() for role in ("scorer", "auditor", "admin")}


@pytest.fixture
def gunicorn_server(
    api_model_store: Path, tmp_path: Path, e2e_keys: dict[str, str], run_gunicorn: Any
) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """A real gunicorn master with 2 workers in production mode (key file of hashes), ready; SIGTERM afterwards."""
    from service.auth import hash_key

    key_file = tmp_path / "api_keys"
    key_file.write_text("".join(f"{role}:{hash_key(key)}:e2e {role}\n" for role, key in e2e_keys.items()))
    with run_gunicorn(
        tmp_path,
        WEB_CONCURRENCY="2",
        CREDIT_DECISION_MODEL_STORE=str(api_model_store),
        DATABASE_URL=f"sqlite:///{tmp_path / 'decisions.sqlite3'}",
        CREDIT_DECISION_ENV="production",
        CREDIT_DECISION_API_KEYS_FILE=str(key_file),
    ) as server:
        yield server


def test_gunicorn_end_to_end(gunicorn_server: tuple[str, subprocess.Popen, Path], e2e_keys: dict[str, str]) -> None:
    base, process, log = gunicorn_server
    scorer, auditor = e2e_keys["scorer"], e2e_keys["auditor"]
    example = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert sys.executable  # the same interpreter runs gunicorn

    # readiness reports the served model
    status, _, raw = _call(f"{base}/readyz")
    ready = json.loads(raw)
    assert status == 200 and ready["model"]["family"] == "gbt"

    # no key: 401; the wrong role: 403; nothing recorded
    status, headers, problem = _post_json(f"{base}/v1/decisions", example)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert _post_json(f"{base}/v1/decisions", example, auditor)[0] == 403

    # one decision, recorded, and its record
    status, headers, decision = _post_json(f"{base}/v1/decisions", example, scorer)
    assert status == 201, decision
    assert decision["application_id"] == example["application_id"]
    assert decision["model"]["version"] == ready["model"]["version"]
    assert decision["reasons"] and decision["risk_band"]
    assert "Server-Timing" in headers
    assert _call(f"{base}{headers['Location']}")[0] == 401
    status, _, raw = _call(f"{base}{headers['Location']}", headers={"X-API-Key": auditor})
    record = json.loads(raw)
    assert status == 200
    assert record["payload"]["decided_by"]["label"] == "e2e scorer"
    assert record["response"] == decision and record["request"] == example
    assert record["seq"] == 1

    # a batch with a bad item
    bad = json.loads(json.dumps(example))
    bad["applicant"]["housing"] = "castle"
    status, _, batch = _post_json(f"{base}/v1/decisions:batch", {"applications": [example, bad, example]}, scorer)
    assert status == 200
    assert [item["status"] for item in batch["items"]] == [201, 422, 201]
    assert batch["items"][1]["problem"]["errors"][0]["field"] == "applicant.housing"

    # a 422 and a 400, as problems
    status, headers, problem = _post_json(f"{base}/v1/decisions", {"application_id": "x", "applicant": {}}, scorer)
    assert status == 422 and headers["Content-Type"] == "application/problem+json"
    assert {e["field"] for e in problem["errors"]} >= {"applicant.age_years", "applicant.housing"}
    status, headers, raw = _call(
        f"{base}/v1/decisions", b"[" * 60_000, {"Content-Type": "application/json", "Authorization": f"Bearer {scorer}"}
    )
    assert status == 400 and headers["Content-Type"] == "application/problem+json"

    # every worker's decisions are counted once in /metrics (multiprocess mode)
    many = [_post_json(f"{base}/v1/decisions", example, scorer)[0] for _ in range(10)]
    assert many == [201] * 10
    _, _, raw = _call(f"{base}/metrics")
    text = raw.decode()
    counted = sum(float(v) for v in re.findall(r"^credit_decision_decisions_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))
    assert counted == 13
    status, _, raw = _call(f"{base}/openapi.json")
    assert status == 200 and json.loads(raw)["openapi"] == "3.1.0"
    status, _, raw = _call(f"{base}/docs")
    assert status == 200 and b"docs/docs.js" in raw

    # clean shutdown on SIGTERM
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    output = log.read_text()
    assert "Booting worker" in output and output.count("Booting worker") >= 2
    assert "Traceback" not in output
    assert "checking_account_status" not in output  # the access log never carries bodies
    assert '"POST /v1/decisions HTTP/1.1" 201' in output
    assert '"POST /v1/decisions HTTP/1.1" 401' in output
    for key in e2e_keys.values():  # the access log never carries keys
        assert key not in output
