"""API keys without restart (issue 14, item 5): the key file is re-read when it changes, so a new key works and a
revoked key is refused from the next request on, in every worker of a running gunicorn."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import main
from service.auth import ApiKey, WatchedKeys, append_key, hash_key, new_key, remove_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _key(role: str = "scorer") -> tuple[str, ApiKey]:
    key = new_key()
    return key, ApiKey(role, hash_key(key), f"test {role}")


def test_a_changed_key_file_is_re_read_within_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "api_keys"
    first, first_entry = _key()
    append_key(path, first_entry)
    clock = Clock()
    keys = WatchedKeys([], path, interval=1.0, clock=clock)
    assert keys.authenticate(first) is not None
    second, second_entry = _key("auditor")
    append_key(path, second_entry)
    assert keys.authenticate(second) is None  # not looked at again within the interval
    clock.now += 1.0
    principal = keys.authenticate(second)
    assert principal is not None and principal.roles == {"auditor"}
    remove_key(path, first_entry.key_id)
    clock.now += 0.5
    assert keys.authenticate(first) is not None
    keys.expire()  # SIGHUP: the next request re-reads it
    assert keys.authenticate(first) is None and keys.authenticate(second) is not None


def test_by_default_every_request_sees_the_file_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "api_keys"
    key, entry = _key()
    keys = WatchedKeys([], path)  # no file yet: no keys
    assert len(keys) == 0 and keys.authenticate(key) is None
    append_key(path, entry)
    assert keys.authenticate(key) is not None
    remove_key(path, entry.key_id)
    assert keys.authenticate(key) is None
    append_key(path, entry)
    path.unlink()  # a deleted key file holds no keys
    assert keys.authenticate(key) is None


def test_development_keys_stay_whatever_the_file_holds(tmp_path: Path) -> None:
    dev, dev_entry = _key("admin")
    keys = WatchedKeys([dev_entry], tmp_path / "api_keys")
    assert keys.authenticate(dev) is not None and keys.roles == {"admin"}


def test_a_malformed_file_keeps_the_keys_read_before_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "api_keys"
    key, entry = _key()
    append_key(path, entry)
    keys = WatchedKeys([], path)
    with open(path, "a", encoding="utf-8") as out:
        out.write("scorer:not-a-hash\n")
    with caplog.at_level(logging.ERROR, logger="service.auth"):
        assert keys.authenticate(key) is not None
        assert keys.authenticate(key) is not None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "line 2" in errors[0].getMessage()


def test_a_malformed_file_at_start_refuses_to_start(tmp_path: Path) -> None:
    from service.auth import KeyConfigError

    path = tmp_path / "api_keys"
    path.write_text("scorer:nope\n", encoding="utf-8")
    with pytest.raises(KeyConfigError, match="line 1"):
        WatchedKeys([], path)


# ---- a running gunicorn ---------------------------------------------------------------------------------------------


def _status(base: str, key: str, example: dict[str, Any]) -> int:
    request = urllib.request.Request(
        f"{base}/v1/decisions",
        data=json.dumps(example).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _cli(*args: str, env: dict[str, str]) -> str:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def test_keys_created_and_revoked_apply_to_a_running_gunicorn_at_once(
    api_model_store: Path,
    tmp_path: Path,
    run_gunicorn: Callable[..., Any],
    example_application: dict,
) -> None:
    key_file = tmp_path / "api_keys"
    db = f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    env = {"CREDIT_DECISION_API_KEYS_FILE": str(key_file), "CREDIT_DECISION_DATABASE_URL": db}
    first = _cli("keys", "create", "--role", "scorer", "--label", "first", env=env).strip().splitlines()[-1]
    with run_gunicorn(
        tmp_path,
        WEB_CONCURRENCY="2",
        CREDIT_DECISION_MODEL_STORE=str(api_model_store),
        CREDIT_DECISION_API_KEYS_FILE=str(key_file),
        DATABASE_URL=db,
    ) as (base, process, _log):
        for _ in range(4):  # whichever worker answers
            assert _status(base, first, example_application) == 201
        second = _cli("keys", "create", "--role", "scorer", "--label", "second", env=env).strip().splitlines()[-1]
        for _ in range(4):
            assert _status(base, second, example_application) == 201
        _cli("keys", "revoke", hash_key(first)[:12], env=env)
        for _ in range(4):  # the next request, on either worker, is refused
            assert _status(base, first, example_application) == 401
        assert _status(base, second, example_application) == 201
        # SIGHUP to a worker (which gunicorn's own worker would die of): it stays and re-reads the file
        workers = _children(process.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGHUP)
        time.sleep(0.5)
        assert _children(process.pid) == workers
        assert _status(base, second, example_application) == 201
        # SIGHUP to the master: gunicorn's graceful reload; the fresh workers read the file as it is
        third, entry = _key()
        append_key(key_file, entry)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while _status(base, third, example_application) != 201:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert process.poll() is None
        assert _status(base, first, example_application) == 401
    assert oct(os.stat(key_file).st_mode & 0o777) == oct(0o600)


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    return sorted(int(child) for child in text.split())
