"""Faults survived, with real processes: SIGTERM to gunicorn under load, the PostgreSQL server stopped and
restarted under load (a server this test owns), and a full disk under SQLite.

Each test checks what a client may rely on: every 2xx decision is in the store and the hash chain verifies;
while the database is down or full, decisions fail fast with 503 application/problem+json and Retry-After
(never a 500, never a hang); the service recovers by itself when the database is back.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.audit import audit_group
from service.auth import hash_key, new_key
from service.records import open_decision_store
from service.state import get_state

PROBLEM = "application/problem+json"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


# --- a load generator: threads posting decisions, every answer (or failure) written down ---------------------


@dataclass
class Answer:
    """One request as the client saw it: HTTP status (None: no HTTP answer), body, headers, when, how long."""

    started: float
    seconds: float
    status: int | None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    failure: str = ""


def _post(base: str, key: str, path: str, body: Any, timeout: float = 20) -> Answer:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    request = urllib.request.Request(f"{base}{path}", data=data, method="POST", headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, answer, head = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, answer, head = error.code, error.read(), dict(error.headers)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        return Answer(started, time.monotonic() - started, None, failure=type(exc).__name__ + f": {exc}")
    return Answer(started, time.monotonic() - started, status, json.loads(answer), head)


def _get_status(url: str, timeout: float = 5) -> tuple[int | None, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        return None, None


class Load:
    """``threads`` clients posting single decisions (a fresh application each) until stopped."""

    def __init__(self, base: str, key: str, example: dict[str, Any], threads: int = 4, path: str = "/v1/decisions"):
        self.base, self.key, self.example, self.path = base, key, example, path
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._count = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self.stop_on_refused = False

    def body(self, index: int) -> Any:
        body = json.loads(json.dumps(self.example))
        body["application_id"] = f"FAULT-{index}"
        body["applicant"]["credit_amount"] = 500 + 37 * index
        return body

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                index, self._count = self._count, self._count + 1
            answer = _post(self.base, self.key, self.path, self.body(index))
            with self._lock:
                self.answers.append(answer)
            if answer.status is None and self.stop_on_refused and "refused" in answer.failure.lower():
                return
            if answer.status is not None and answer.status >= 500:
                time.sleep(0.02)  # an outage: do not spin

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def wait_for(self, predicate: Callable[[list[Answer]], bool], timeout: float) -> None:
        """Wait until ``predicate`` holds for the answers so far (or fail after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if predicate(list(self.answers)):
                    return
            assert time.monotonic() < deadline, f"not reached in {timeout} s: {self.summary()}"
            time.sleep(0.05)

    def summary(self) -> dict[str, int]:
        """How many answers of each status (and failures without an HTTP answer)."""
        counts: dict[str, int] = {}
        with self._lock:
            for answer in self.answers:
                label = str(answer.status) if answer.status is not None else answer.failure.split(":")[0]
                counts[label] = counts.get(label, 0) + 1
        return counts


def _acknowledged_ids(answers: list[Answer]) -> list[str]:
    ids: list[str] = []
    for answer in answers:
        if answer.status is not None and 200 <= answer.status < 300:
            if "items" in answer.body:  # a batch: each item answered on its own
                ids.extend(item["decision"]["decision_id"] for item in answer.body["items"] if item["status"] == 201)
            else:
                ids.append(answer.body["decision_id"])
    return ids


def _assert_store_holds(url: str, decision_ids: list[str]) -> int:
    """Every acknowledged decision is stored, once; the chain verifies. Returns the number of records."""
    assert len(set(decision_ids)) == len(decision_ids)
    store = open_decision_store(url)
    try:
        missing = [d for d in decision_ids if store.get(d) is None]
        assert not missing, f"{len(missing)} acknowledged decisions are not in the store: {missing[:5]}"
        records = store.count()
    finally:
        store.close()
    verified = CliRunner().invoke(audit_group, ["verify", "--database-url", url])
    assert verified.exit_code == 0, verified.output
    return records


def _assert_unavailable_problem(answer: Answer, slug: str = "store-unavailable") -> None:
    assert answer.status == 503, (answer.status, answer.body, answer.failure)
    assert answer.headers.get("Content-Type", "").startswith(PROBLEM), answer.headers
    assert answer.body["type"] == f"urn:credit-decision:problem:{slug}", answer.body
    assert int(answer.headers["Retry-After"]) >= 1


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _wait_until_every_worker_is_ready(base: str, workers: set[int], log: Path, timeout: float) -> None:
    """Until each worker process has answered /readyz 200 (gunicorn's readiness is its first worker's)."""
    deadline = time.monotonic() + timeout
    ready: set[int] = set()
    while ready != workers:
        assert time.monotonic() < deadline, (ready, workers, log.read_text())
        status, body = _get_status(f"{base}/readyz")
        if status == 200:
            ready.add(body["worker"])
        time.sleep(0.02)


def _key_file(folder: Path) -> tuple[str, Path]:
    scorer = new_key()
    path = folder / "api_keys"
    path.write_text(f"scorer:{hash_key(scorer)}:fault client\n")
    return scorer, path


# --- SQLite: a full disk ---------------------------------------------------------------------------------------


def test_sqlite_page_limit_full_answers_503_writes_nothing_and_recovers(
    api_make_app: Callable[..., Any], scorer_headers: dict[str, str], example_application: dict[str, Any]
) -> None:
    """The database reaches its size limit (``PRAGMA max_page_count`` on the store's connections): 503 store-full,
    no half-written record, the chain verifies; raising the limit brings decisions back without a restart."""
    app = api_make_app()
    client = app.test_client()
    store = get_state(app).require_store()
    assert client.post("/v1/decisions", json=example_application, headers=scorer_headers).status_code == 201
    # every connection of the store: decisions are committed by its group writer's thread, on that thread's one
    connections: list[sqlite3.Connection] = list(store._connections)  # type: ignore[attr-defined]
    pages = connections[0].execute("PRAGMA page_count").fetchone()[0]
    for conn in connections:
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    statuses = []
    for index in range(200):
        body = {**example_application, "application_id": f"FULL-{index}"}
        response = client.post("/v1/decisions", json=body, headers=scorer_headers)
        statuses.append(response.status_code)
        if response.status_code != 201:
            break
    assert statuses[-1] == 503, statuses
    assert response.mimetype == PROBLEM and response.get_json()["type"] == "urn:credit-decision:problem:store-full"
    assert int(response.headers["Retry-After"]) >= 1
    accepted = statuses.count(201) + 1
    assert store.count() == accepted and store.verify_chain().ok
    # still full: still 503, still nothing written
    assert client.post("/v1/decisions", json=example_application, headers=scorer_headers).status_code == 503
    assert store.count() == accepted
    # space returns: the same worker decides again, on the chain it left
    for conn in connections:
        conn.execute("PRAGMA max_page_count = 1073741823")
    assert client.post("/v1/decisions", json=example_application, headers=scorer_headers).status_code == 201
    assert store.count() == accepted + 1 and store.verify_chain().ok


@contextlib.contextmanager
def _small_filesystem(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (the tests run as root on the project's machines and in CI)."""
    folder.mkdir()
    assert os.geteuid() == 0 and shutil.which("mount"), "mounting a size-limited tmpfs needs root and mount(8)"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mounted.returncode == 0, f"cannot mount a tmpfs here: {mounted.stderr.strip()}"
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.e2e
def test_gunicorn_on_a_full_disk_answers_503_and_recovers_when_space_returns(
    api_model_store: Path, tmp_path: Path, run_gunicorn: Any, example_application: dict[str, Any]
) -> None:
    """The decision store on a 2 MiB filesystem that fills up under real gunicorn workers: 503 store-full
    problems (no 500), every acknowledged decision stored, the chain verifies; deleting the file that took the
    space brings decisions back without restarting anything."""
    scorer, key_file = _key_file(tmp_path)
    with _small_filesystem(tmp_path / "disk", "2m") as disk:
        url = f"sqlite:///{disk / 'decisions.sqlite3'}"
        open_decision_store(url).close()
        with run_gunicorn(
            tmp_path,
            WEB_CONCURRENCY="2",
            CREDIT_DECISION_API_KEYS_FILE=str(key_file),
            CREDIT_DECISION_MODEL_STORE=str(api_model_store),
            DATABASE_URL=url,
        ) as (base, server, log):
            workers = _children(server.pid)
            filler = disk / "filler"
            free = shutil.disk_usage(disk).free
            with open(filler, "wb") as out:  # leave about 96 KiB: a few dozen decisions
                out.write(b"\0" * max(0, free - 96 * 1024))
            with Load(base, scorer, example_application, threads=2) as load:
                load.wait_for(lambda answers: sum(a.status == 503 for a in answers) >= 10, timeout=40)
                filler.unlink()
                full_at = len(load.answers)
                load.wait_for(lambda answers: sum(a.status == 201 for a in answers[full_at + 4 :]) >= 10, 30)
            answers = load.answers
            assert _children(server.pid) == workers, "no worker was replaced: the same processes recovered"
        summary = load.summary()
        assert set(summary) <= {"201", "503"}, summary
        for answer in answers:
            if answer.status == 503:
                _assert_unavailable_problem(answer, "store-full")
        acknowledged = _acknowledged_ids(answers)
        records = _assert_store_holds(url, acknowledged)
        assert records == len(acknowledged) + 0, (records, len(acknowledged))  # nothing half-written either
        print(f"\nfull disk: {summary}; {records} records, chain verifies")
        assert "Traceback" not in log.read_text()


# --- SIGTERM: a graceful stop under load ---------------------------------------------------------------------


@pytest.mark.e2e
def test_sigterm_under_load_finishes_and_records_every_accepted_decision(
    api_model_store: Path, tmp_path: Path, run_gunicorn: Any, example_application: dict[str, Any]
) -> None:
    """SIGTERM to the gunicorn master while four clients post batches: the master stops accepting, every worker
    finishes the request it holds (answered 2xx and recorded), then all exit 0 well within graceful_timeout.
    Requests after the close are refused (or reset in the kernel's backlog, never read by a worker): no request
    gets an error answer, and what was recorded is exactly what was acknowledged."""
    scorer, key_file = _key_file(tmp_path)
    url = f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    open_decision_store(url).close()
    with run_gunicorn(
        tmp_path,
        WEB_CONCURRENCY="2",
        CREDIT_DECISION_API_KEYS_FILE=str(key_file),
        CREDIT_DECISION_MODEL_STORE=str(api_model_store),
        DATABASE_URL=url,
    ) as (base, server, log):
        example = {"applications": [example_application] * 50}  # ~tens of ms a request: a worker is mid-request
        load = Load(base, scorer, example, threads=4, path="/v1/decisions:batch")
        load.body = lambda index: {  # type: ignore[method-assign]
            "applications": [{**example_application, "application_id": f"TERM-{index}-{i}"} for i in range(50)]
        }
        load.stop_on_refused = True
        with load:
            load.wait_for(lambda answers: len(answers) >= 20, timeout=60)
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=40)
            stopped = time.monotonic()
            load.wait_for(lambda answers: sum("refused" in a.failure.lower() for a in answers) >= 4, timeout=20)
        answers = load.answers
    assert code == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "WORKER TIMEOUT" not in text and "Traceback" not in text and "SIGKILL" not in text, text[-3000:]
    answered = [a for a in answers if a.status is not None]
    assert {a.status for a in answered} == {200}, load.summary()  # no error answer, before or during the stop
    assert all(a.body["failed"] == 0 for a in answered)  # and no item of a batch failed
    in_flight = [a for a in answered if a.started < signalled < a.started + a.seconds]
    # with graceful_timeout=0 (workers killed at once) this is empty: the requests in flight get no answer
    assert in_flight, "no request in flight at SIGTERM was answered"
    unanswered = [a for a in answers if a.status is None]
    assert all(a.started + a.seconds > signalled for a in unanswered), "a request failed before the signal"
    # refused after the close, or reset: a connection still in the kernel's backlog when the listener closed. A
    # worker dying mid-request would show as "Remote end closed connection without response" (it read the request).
    assert all(any(word in a.failure.lower() for word in ("refused", "reset")) for a in unanswered), {
        a.failure for a in unanswered
    }
    acknowledged = _acknowledged_ids(answered)
    records = _assert_store_holds(url, acknowledged)
    assert records == len(acknowledged)  # nothing recorded that was not answered
    print(
        f"\nSIGTERM: {len(answered)} batches answered ({len(in_flight)} in flight at the signal, all 2xx), "
        f"{len(unanswered)} refused after the close; stopped in {stopped - signalled:.2f} s; {records} records"
    )


# --- PostgreSQL: the server stopped and restarted under load ---------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnPostgres:
    """A PostgreSQL server of this test alone: initdb into a temporary folder, pg_ctl on a free port.

    initdb refuses to run as root, so as root the server runs as the ``postgres`` OS user (runuser)."""

    def __init__(self, folder: Path) -> None:
        assert (PG_BIN / "initdb").exists(), f"no PostgreSQL server binaries in {PG_BIN} (set PG_BIN)"
        self.folder = folder
        self.data = folder / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.prefix: list[str] = []
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            assert shutil.which("runuser"), "running as root without runuser: cannot start PostgreSQL as another user"
            self.prefix = ["runuser", "-u", "postgres", "--"]
            shutil.chown(folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.prefix, str(PG_BIN / tool), *args], capture_output=True, text=True, check=False, timeout=60
        )
        assert done.returncode == 0, f"{tool} failed: {done.stdout}\n{done.stderr}"

    def start(self) -> None:
        """Start (and wait until it accepts connections)."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        """Fast shutdown: sessions are ended, their open transactions rolled back."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL server this test may stop and start; removed afterwards. Its folder is a fresh one under the
    system's temporary folder, which the server's user can reach (pytest's tmp_path is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="credit-decision-pg-"))
    try:
        server = OwnPostgres(folder)
        try:
            yield server
        finally:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                server._run("pg_ctl", "-D", str(server.data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.e2e
@pytest.mark.postgres
def test_postgres_stopped_and_restarted_under_load(
    api_model_store: Path,
    tmp_path: Path,
    run_gunicorn: Any,
    example_application: dict[str, Any],
    own_postgres: OwnPostgres,
) -> None:
    """While the database server is down, decisions fail fast (503 problem+json, Retry-After) and /readyz is 503;
    when it is back, the same workers decide again by themselves; every acknowledged decision is stored and the
    chain verifies."""
    scorer, key_file = _key_file(tmp_path)
    url = own_postgres.url
    open_decision_store(url).close()
    with run_gunicorn(
        tmp_path,
        WEB_CONCURRENCY="2",
        CREDIT_DECISION_API_KEYS_FILE=str(key_file),
        CREDIT_DECISION_MODEL_STORE=str(api_model_store),
        DATABASE_URL=url,
    ) as (base, server, log):
        workers = _children(server.pid)
        _wait_until_every_worker_is_ready(base, workers, log, timeout=60)
        with Load(base, scorer, example_application, threads=3) as load:
            load.wait_for(lambda answers: sum(a.status == 201 for a in answers) >= 20, timeout=30)
            own_postgres.stop()
            down = len(load.answers)
            load.wait_for(lambda answers: sum(a.status == 503 for a in answers[down:]) >= 30, timeout=30)
            ready_while_down = [_get_status(f"{base}/readyz") for _ in range(4)]  # both workers, most likely
            during = load.answers[down + 3 :]  # past the requests in flight at the stop
            own_postgres.start()
            back = time.monotonic()
            up = len(load.answers)
            load.wait_for(lambda answers: sum(a.status == 201 for a in answers[up:]) >= 20, timeout=30)
            recovered = next(a.started + a.seconds for a in load.answers[up:] if a.status == 201) - back
        ready_after = [_get_status(f"{base}/readyz") for _ in range(4)]
        assert _children(server.pid) == workers, "the workers recovered by themselves (none was restarted)"
    assert "Traceback" not in log.read_text()  # an outage is logged as such, not as a crash
    answers = load.answers
    summary = load.summary()
    assert set(summary) <= {"201", "503"}, summary  # never a 500, never a dropped connection
    failing = [a for a in during if a.status == 503]
    for answer in failing:
        _assert_unavailable_problem(answer)
    slowest = max(a.seconds for a in failing)
    assert slowest < 1.0, f"a decision took {slowest:.2f} s to fail while the database was down"
    assert all(status == 503 and body["status"] == 503 for status, body in ready_while_down), ready_while_down
    assert all(status == 200 for status, _ in ready_after), ready_after
    acknowledged = _acknowledged_ids(answers)
    records = _assert_store_holds(url, acknowledged)
    assert records >= len(acknowledged)  # a commit whose answer was lost as the server went away is 503 + stored
    print(
        f"\nPostgreSQL outage: {summary}; while down {len(failing)} decisions failed in at most {slowest * 1000:.0f} ms"
        f" (503 store-unavailable); first decision {recovered:.2f} s after the restart; {records} records"
    )


@pytest.mark.e2e
@pytest.mark.postgres
def test_workers_started_while_postgres_is_down_become_ready_by_themselves(
    api_model_store: Path,
    tmp_path: Path,
    run_gunicorn: Any,
    example_application: dict[str, Any],
    own_postgres: OwnPostgres,
) -> None:
    """Workers that boot while the database server is down (an outage, or a worker replaced during one) answer 503
    problems with a short Retry-After, log the outage without a traceback, and open the store (creating its schema)
    by themselves once the server is back: no restart, every acknowledged decision stored, the chain verifies."""
    scorer, key_file = _key_file(tmp_path)
    url = own_postgres.url
    own_postgres.stop()
    with run_gunicorn(
        tmp_path,
        ready=False,
        WEB_CONCURRENCY="2",
        CREDIT_DECISION_API_KEYS_FILE=str(key_file),
        CREDIT_DECISION_MODEL_STORE=str(api_model_store),
        DATABASE_URL=url,
    ) as (base, server, log):
        workers = _children(server.pid)
        assert len(workers) == 2
        deadline = time.monotonic() + 60
        while log.read_text().count("tried again on the next request or /readyz") < 2:  # both workers booted
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        ready_while_down = [_get_status(f"{base}/readyz") for _ in range(4)]
        decided_while_down = [_post(base, scorer, "/v1/decisions", example_application) for _ in range(4)]
        own_postgres.start()
        back = time.monotonic()
        _wait_until_every_worker_is_ready(base, workers, log, timeout=30)  # each by itself
        recovered = time.monotonic() - back
        answers = [_post(base, scorer, "/v1/decisions", example_application) for _ in range(10)]
        assert _children(server.pid) == workers, "the workers recovered by themselves (none was restarted)"
    for status, body in ready_while_down:
        assert status == 503 and body["status"] == 503, (status, body)
        assert "decision store unavailable" in body["detail"], body
    for answer in decided_while_down:
        _assert_unavailable_problem(answer)
    assert [a.status for a in answers] == [201] * 10, [(a.status, a.body) for a in answers]
    text = log.read_text()
    assert "Traceback" not in text  # an outage is logged as such, not as a crash
    assert _assert_store_holds(url, _acknowledged_ids(answers)) == 10
    print(f"\nworkers started with PostgreSQL down: both ready {recovered:.2f} s after the server came back")


# --- bounded waits: a request answers 503 rather than hang on a held lock ------------------------------------


@contextlib.contextmanager
def _chain_held(url: str) -> Iterator[None]:
    """Another session holds the append lock of the store at ``url`` (as a stuck writer would)."""
    if url.startswith("sqlite:///"):
        blocker = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as blocker:
        blocker.execute("BEGIN")
        blocker.execute("SELECT pg_advisory_xact_lock(hashtext('credit-decision:chain:' || current_schema()))")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_held_lock_answers_503_store_busy_within_database_timeout(
    backend: str,
    api_make_app: Callable[..., Any],
    scorer_headers: dict[str, str],
    example_application: dict[str, Any],
) -> None:
    """DATABASE_TIMEOUT bounds the wait for the append lock: the request answers 503 store-busy (below gunicorn's
    worker timeout, which would otherwise kill the worker), and decides again once the lock is released."""
    app = api_make_app(backend, DATABASE_TIMEOUT=0.5)
    client = app.test_client()
    store = get_state(app).require_store()
    url = f"sqlite:///{store.path}" if backend == "sqlite" else store.url  # type: ignore[attr-defined]
    assert client.post("/v1/decisions", json=example_application, headers=scorer_headers).status_code == 201
    with _chain_held(url):
        started = time.monotonic()
        response = client.post("/v1/decisions", json=example_application, headers=scorer_headers)
        waited = time.monotonic() - started
    assert response.status_code == 503 and response.mimetype == PROBLEM
    assert response.get_json()["type"] == "urn:credit-decision:problem:store-busy"
    assert int(response.headers["Retry-After"]) >= 1
    assert 0.4 < waited < 5.0, waited
    assert client.post("/v1/decisions", json=example_application, headers=scorer_headers).status_code == 201
    assert store.count() == 2 and store.verify_chain().ok
