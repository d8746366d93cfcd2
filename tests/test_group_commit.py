"""Group commit (service.records.group) on a real SQLite file and a real PostgreSQL schema: many request threads,
one writer, one transaction per batch; plus the SQLite WAL checkpoints kept off the request path."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from service.errors import (
    DuplicateDecisionId,
    IdempotencyConflict,
    StoreBusy,
    StoreUnavailable,
    UnknownShadowedDecisions,
)
from service.metrics import Metrics
from service.records import DecisionRecord, ShadowRecord, StoredRecord, StoredShadow, open_decision_store
from service.records.group import GroupCommitter
from service.records.sqlite import SqliteDecisionStore

THREADS = 12
PER_THREAD = 15


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


Appended = tuple[list[StoredRecord | Exception], list[list[StoredShadow] | Exception]]


class _Gate:
    """Wraps a store's append_group: records the size of every transaction and holds the first one until opened, so
    what is saved meanwhile queues up for the next transaction (deterministic grouping)."""

    def __init__(self, append: Callable[[Sequence[DecisionRecord], Sequence[Sequence[ShadowRecord]]], Appended]):
        self._append = append
        self.open = threading.Event()
        self.entered = threading.Event()
        self.batches: list[tuple[int, int]] = []  # (decision records, shadow batches) per transaction

    def __call__(self, records: Sequence[DecisionRecord], shadows: Sequence[Sequence[ShadowRecord]]) -> Appended:
        self.batches.append((len(records), len(shadows)))
        self.entered.set()
        self.open.wait(10)
        return self._append(records, shadows)


def _join(threads: Sequence[threading.Thread], seconds: float = 60.0) -> None:
    """Join every thread; one still running is a request left waiting (a lost wake-up), which fails the test."""
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a request is still waiting for its commit"


def _run_threads(target: Callable[[int], None], n: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    return threads


def test_concurrent_threads_form_one_gap_free_chain_and_each_gets_its_own_record(
    decision_store: Any, decision_store_url: str, make_decision_record: Callable[..., DecisionRecord]
) -> None:
    """Threads saving at once through the group writer: every record committed once, in one chain without gaps,
    each caller given its own record, visible to another connection the moment save returns (committed first)."""
    other = open_decision_store(decision_store_url)  # its own connections: sees committed data only
    got: dict[str, StoredRecord] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        try:
            for i in range(PER_THREAD):
                record = make_decision_record(application_id=f"T{t}-{i}", idempotency_key=f"k-{t}-{i}")
                stored = decision_store.save_grouped(record)
                assert stored.record.decision_id == record.decision_id
                assert stored.record.application_id == record.application_id
                visible = other.get(record.decision_id)
                assert visible is not None and visible.record_hash == stored.record_hash
                with lock:
                    got[record.decision_id] = stored
        except BaseException as exc:
            errors.append(exc)

    try:
        _join(_run_threads(work, THREADS))
    finally:
        other.close()
    assert not errors, errors
    total = THREADS * PER_THREAD
    assert sorted(s.seq for s in got.values()) == list(range(1, total + 1))
    report = decision_store.verify_chain()
    assert report.ok and report.records_checked == total
    group = decision_store._group
    assert group.records == total
    assert group.commits < total, "concurrent saves shared commits"


def test_a_batch_request_commits_its_items_together(
    api_make_app: Callable[..., Any], example_application: dict[str, Any]
) -> None:
    """POST /v1/decisions:batch saves its items through the group writer at once: one transaction for all of
    them (not one durable commit per item), in item order, and the chain verifies."""
    from service.state import get_state

    app = api_make_app()
    group = get_state(app).store._group
    before = (group.commits, group.records)
    items = [{**example_application, "application_id": f"GB-{i}"} for i in range(6)]
    response = app.test_client().post("/v1/decisions:batch", json={"applications": items})
    assert response.status_code == 200
    decided = [item["decision"] for item in response.get_json()["items"]]
    assert [d["application_id"] for d in decided] == [f"GB-{i}" for i in range(6)]
    assert (group.commits - before[0], group.records - before[1]) == (1, 6)
    store = get_state(app).store
    seqs = [store.get(d["decision_id"]).seq for d in decided]
    assert seqs == list(range(seqs[0], seqs[0] + 6))
    assert store.verify_chain().ok


def test_one_batch_with_mixed_idempotency_outcomes(
    decision_store: Any, make_decision_record: Callable[..., DecisionRecord]
) -> None:
    """One batch: a new key, the same key and body again, the same key with another body, a key stored before,
    a duplicate decision_id, a payload that is not JSON; each request gets its own outcome, one transaction."""
    earlier = decision_store.save(make_decision_record(idempotency_key="stored", request_hash="c" * 64))
    taken = decision_store.save(make_decision_record())
    first = make_decision_record(idempotency_key="fresh", request_hash="a" * 64)
    batch = [
        first,
        make_decision_record(idempotency_key="fresh", request_hash="a" * 64),  # a retry racing the first
        make_decision_record(idempotency_key="fresh", request_hash="b" * 64),  # the key with another body
        make_decision_record(idempotency_key="stored", request_hash="c" * 64),  # a retry of a stored one
        make_decision_record(decision_id=taken.record.decision_id, application_id="other"),  # a bug
        make_decision_record(payload={"not json": float("nan")}),
        make_decision_record(),
    ]
    gate = _Gate(decision_store.append_group)
    group = GroupCommitter(gate)
    results: dict[int, StoredRecord | BaseException] = {}

    def save(i: int) -> None:
        try:
            results[i] = group.save(batch[i])
        except BaseException as exc:
            results[i] = exc

    blocker = make_decision_record()
    holding = threading.Thread(target=lambda: group.save(blocker), daemon=True)
    holding.start()
    assert gate.entered.wait(10)
    threads = _run_threads(save, len(batch))
    _wait_for(lambda: len(group._pending) == len(batch), "every request queued")
    gate.open.set()
    _join([holding, *threads])
    group.close()
    assert gate.batches == [(1, 0), (len(batch), 0)], "the seven requests were committed in one transaction"

    new, retry, conflict, old, duplicate, bad, plain = (results[i] for i in range(len(batch)))
    assert isinstance(new, StoredRecord) and new.record.decision_id == first.decision_id
    assert isinstance(retry, StoredRecord) and retry.seq == new.seq  # the first one's record, not a second
    assert isinstance(conflict, IdempotencyConflict)
    assert isinstance(old, StoredRecord) and old.seq == earlier.seq
    assert isinstance(duplicate, DuplicateDecisionId)
    assert isinstance(bad, ValueError) and not isinstance(bad, StoreUnavailable)
    assert isinstance(plain, StoredRecord) and plain.seq == new.seq + 1
    assert decision_store.count() == 5  # earlier, taken, blocker, new, plain
    assert decision_store.verify_chain().ok


def _hold_append_lock(url: str) -> Callable[[], None]:
    """Hold the store's write lock from another connection, as a stuck writer would; returns its release."""
    conn: Any
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
    else:
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("BEGIN")
        conn.execute("SELECT seq FROM decision_chain_head WHERE id = 1 FOR UPDATE")

    def release() -> None:
        conn.execute("ROLLBACK")
        conn.close()

    return release


def _shadow_of(decision_id: str, **overrides: Any) -> ShadowRecord:
    fields: dict[str, Any] = {
        "shadow_id": uuid.uuid4().hex,
        "decision_id": decision_id,
        "created_at": datetime.now(UTC),
        "kind": "challenger",
        "model_name": "challenger",
        "model_version": "v2",
        "policy_version": "p1",
        "catalog_version": "c1",
        "decision": "refer",
        "risk_band": "C",
        "score": 600,
        "reason_codes": ("C01",),
        "payload": {"note": "shadow"},
    }
    fields.update(overrides)
    return ShadowRecord(**fields)


def test_shadow_batches_ride_in_the_decisions_transaction_and_fail_alone(
    decision_store: Any, make_decision_record: Callable[..., DecisionRecord]
) -> None:
    """Shadow batches waiting while decisions commit go into the same transaction, after them in the chain; a batch
    naming an unknown decision writes nothing of itself and fails alone; the decisions and the other batch commit."""
    champion = decision_store.save(make_decision_record())
    gate = _Gate(decision_store.append_group)
    group = GroupCommitter(gate)
    results: dict[str, Any] = {}

    def run(name: str, call: Callable[[], Any]) -> threading.Thread:
        def target() -> None:
            try:
                results[name] = call()
            except BaseException as exc:
                results[name] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    first = run("first", lambda: group.save(make_decision_record()))
    assert gate.entered.wait(10)
    threads = [
        run("decision", lambda: group.save(make_decision_record())),
        run("good", lambda: group.save_shadows([_shadow_of(champion.record.decision_id)])),
        run("bad", lambda: group.save_shadows([_shadow_of("no-such-decision")])),
    ]
    _wait_for(lambda: len(group._pending) == 1 and len(group._pending_shadows) == 2, "all three queued")
    gate.open.set()
    _join([first, *threads])
    group.close()
    assert gate.batches == [(1, 0), (1, 2)]
    decision, good, bad = results["decision"], results["good"], results["bad"]
    assert isinstance(decision, StoredRecord)
    assert isinstance(bad, UnknownShadowedDecisions)
    assert [s.seq for s in good] == [decision.seq + 1]  # after the decision, in the same transaction
    assert decision_store.count_entries() == {"decision": 3, "event": 0, "shadow": 1}
    assert decision_store.verify_chain().ok


def test_a_store_failure_reaches_every_waiting_request(
    decision_store_url: str, make_decision_record: Callable[..., DecisionRecord]
) -> None:
    """The append lock is held elsewhere past the store's wait bound: every request of the batch fails with
    StoreBusy (503), none is recorded, and the writer commits again once the lock is free."""
    store = open_decision_store(decision_store_url, wait_seconds=0.3)
    release = _hold_append_lock(decision_store_url)
    gate = _Gate(store.append_group)
    gate.open.set()
    group = GroupCommitter(gate)
    failures: dict[int, BaseException | StoredRecord] = {}

    def save(i: int) -> None:
        try:
            failures[i] = group.save(make_decision_record(application_id=f"F{i}"))
        except BaseException as exc:
            failures[i] = exc

    try:
        first = _run_threads(save, 1)
        assert gate.entered.wait(10)  # the writer is waiting for the lock with one record
        rest = _run_threads(lambda i: save(i + 1), 7)
        _join(first + rest)
        assert len(failures) == 8
        assert all(isinstance(result, StoreBusy) for result in failures.values()), failures
        assert max(records for records, _ in gate.batches) > 1, "requests queued behind the first shared its failure"
    finally:
        release()
    try:
        assert store.count() == 0
        stored = group.save(make_decision_record(application_id="after"))
        assert stored.seq == 1 and store.verify_chain().ok
    finally:
        group.close()
        store.close()


def test_a_closed_committer_refuses_and_a_broken_save_fails_its_batch(
    make_decision_record: Callable[..., DecisionRecord],
) -> None:
    """A bug in the writer's save fails the batch's requests (never leaves one waiting); after close: refused."""

    def broken(records: Sequence[DecisionRecord], shadows: Sequence[Sequence[ShadowRecord]]) -> Appended:
        raise RuntimeError("bug")

    group = GroupCommitter(broken)
    with pytest.raises(RuntimeError, match="bug"):
        group.save(make_decision_record())
    group.close()
    with pytest.raises(StoreUnavailable):
        group.save(make_decision_record())


# ---- SQLite WAL checkpoints ---------------------------------------------------------------------------------

_PAGE = 4096
_AUTO_CHECKPOINT_PAGES = 1000  # SQLite's default wal_autocheckpoint, what a commit used to checkpoint at


def _fill(store: SqliteDecisionStore, make: Callable[..., DecisionRecord], megabytes: int) -> None:
    padding = "x" * 8000
    for _ in range(megabytes * 1024 // 8 // 50):
        results = store.save_many([make(payload={"padding": padding, "n": i}) for i in range(50)])
        assert all(isinstance(r, StoredRecord) for r in results)


def test_request_connections_never_checkpoint_and_the_checkpointer_truncates(
    tmp_path: Path, make_decision_record: Callable[..., DecisionRecord]
) -> None:
    """With no checkpointer running, the WAL grows well past SQLite's auto-checkpoint size and the database file
    not at all: no commit checkpointed. One truncating checkpoint then moves it all and empties the WAL."""
    path = tmp_path / "decisions.sqlite3"
    store = SqliteDecisionStore(path, checkpoint_seconds=None)
    wal = path.with_name(path.name + "-wal")
    try:
        store.ping()
        assert store._connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        store.checkpoint(truncate=True)
        database_before = path.stat().st_size
        _fill(store, make_decision_record, megabytes=8)
        assert wal.stat().st_size > 1.5 * _AUTO_CHECKPOINT_PAGES * _PAGE
        assert path.stat().st_size == database_before, "a request's commit checkpointed into the database file"
        busy, frames, copied = store.checkpoint(truncate=True)
        assert busy == 0 and frames == copied
        assert wal.stat().st_size == 0
        assert path.stat().st_size > database_before + 6 * 1024 * 1024
        assert store.verify_chain().ok
    finally:
        store.close()


def test_the_background_checkpointer_keeps_the_wal_small(
    tmp_path: Path, make_decision_record: Callable[..., DecisionRecord]
) -> None:
    """The background thread copies the WAL while records are written and truncates it once the store is idle."""
    path = tmp_path / "decisions.sqlite3"
    store = SqliteDecisionStore(path, checkpoint_seconds=0.05)
    wal = path.with_name(path.name + "-wal")
    try:
        database_before = path.stat().st_size
        _fill(store, make_decision_record, megabytes=6)
        checkpointer = store.checkpointer
        assert checkpointer is not None
        _wait_for(lambda: checkpointer.truncations > 0 and wal.stat().st_size == 0, "the idle store's WAL truncated")
        assert path.stat().st_size > database_before + 5 * 1024 * 1024
        assert store.count() > 0 and store.verify_chain().ok
    finally:
        store.close()
    assert not checkpointer._thread or not checkpointer._thread.is_alive()


# ---- busy time under several request threads ------------------------------------------------------------------


def test_busy_seconds_count_overlapping_requests_once() -> None:
    """Two request threads in progress at once count the wall time once (the shadow budget's 'busy' share)."""
    now = [0.0]
    metrics = Metrics(clock=lambda: now[0])
    metrics.request_started()  # t=0
    now[0] = 1.0
    metrics.request_started()  # overlaps from t=1
    now[0] = 2.0
    metrics.request_finished()
    assert metrics.busy_seconds == pytest.approx(2.0)  # the other still runs
    now[0] = 3.0
    metrics.request_finished()
    now[0] = 10.0
    assert metrics.busy_seconds == pytest.approx(3.0)
    metrics.request_finished()  # an unmatched finish changes nothing
    assert metrics.busy_seconds == pytest.approx(3.0)


def test_a_process_never_forks_while_its_checkpointer_is_inside_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child forked while a checkpointer thread held SQLite's (or the allocator's) mutexes would deadlock on its
    first connection: fork() waits for a checkpoint round under way to end."""
    import os

    from service.records import sqlite as sqlite_module

    inside, release = threading.Event(), threading.Event()
    real = sqlite_module.WalCheckpointer._round_unforked

    def slow_round(self: Any, last_change: int) -> int:
        inside.set()
        release.wait(10)
        return real(self, last_change)

    monkeypatch.setattr(sqlite_module.WalCheckpointer, "_round_unforked", slow_round)
    store = SqliteDecisionStore(tmp_path / "fork.sqlite3", checkpoint_seconds=0.01)
    try:
        assert store.checkpointer is not None
        store.checkpointer.ensure_running()
        assert inside.wait(10), "a checkpoint round started"
        threading.Timer(0.3, release.set).start()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: a first connection works, then leave at once
            try:
                sqlite3.connect(str(tmp_path / "child.sqlite3")).close()
            finally:
                os._exit(0)
        waited = time.monotonic() - started
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert waited >= 0.25, f"fork did not wait for the checkpoint round ({waited:.3f} s)"
    finally:
        release.set()
        store.close()
