"""The decision store on real SQLite files and a real PostgreSQL schema: durability, idempotency, tamper evidence."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from service.api.problems import problem_for
from service.errors import InvalidParameter
from service.records import (
    GENESIS_HASH,
    DecisionRecord,
    DuplicateDecisionId,
    IdempotencyConflict,
    StoreUnavailable,
    chain_hash,
    open_decision_store,
)
from service.records._sql import load_migrations
from service.records.chain import ChainAnchor, ChainLink, analyse_chain
from service.records.postgres import PostgresDecisionStore
from service.records.sqlite import SqliteDecisionStore

MakeRecord = Callable[..., DecisionRecord]
T0 = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def raw_execute(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run SQL straight against the store's database, as someone tampering with it would."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as pg:
        cursor = pg.execute(sql.replace("?", "%s").encode(), tuple(params))
        return cursor.fetchall() if cursor.description is not None else []


def fill(store: Any, make: MakeRecord, n: int) -> list[Any]:
    """Save n records one second apart; returns the StoredRecords."""
    return [store.save(make(created_at=T0 + timedelta(seconds=i), application_id=f"app-{i}")) for i in range(n)]


def named(report: Any, kind: str) -> set[tuple[int, str | None]]:
    """(seq, decision_id) of every problem of one kind."""
    return {(p.seq, p.decision_id) for p in report.problems if p.kind == kind}


# --- save, get, durability ------------------------------------------------------------------------------------


def test_save_then_get_returns_the_same_record_chained_from_genesis(
    decision_store: Any, make_decision_record: MakeRecord
) -> None:
    record = make_decision_record(created_at=T0, reason_codes=("R03", "RULE_AGE"))
    stored = decision_store.save(record)
    assert (stored.seq, stored.prev_hash) == (1, GENESIS_HASH)
    assert stored.record == record
    assert stored.record_hash == chain_hash(GENESIS_HASH, record)
    assert decision_store.get(record.decision_id) == stored
    assert decision_store.get("no-such-decision") is None

    second = decision_store.save(make_decision_record())
    assert (second.seq, second.prev_hash) == (2, stored.record_hash)
    assert decision_store.count() == 2


def test_a_saved_record_is_read_back_by_a_new_store_object(
    decision_store_url: str, make_decision_record: MakeRecord
) -> None:
    first = open_decision_store(decision_store_url)
    stored = first.save(make_decision_record())
    first.close()
    second = open_decision_store(decision_store_url)
    try:
        assert second.get(stored.record.decision_id) == stored
        assert second.count() == 1
        assert second.verify_chain().ok
    finally:
        second.close()


def _save_then_die(url: str, conn: Any, n: int) -> None:
    store = open_decision_store(url)
    for i in range(n):
        stored = store.save(
            DecisionRecord(
                decision_id=f"killed-{i}-{uuid.uuid4()}",
                application_id="app-kill",
                created_at=datetime.now(UTC),
                idempotency_key=None,
                request_hash="b" * 64,
                decision="refer",
                risk_band="C",
                score=600,
                model_name="m",
                model_version="v1",
                reason_codes=(),
                payload={"i": i},
            )
        )
        conn.send(stored.record.decision_id)  # acknowledged only after save() returned
    os.kill(os.getpid(), signal.SIGKILL)


def test_every_acknowledged_save_survives_the_writer_being_killed(decision_store_url: str) -> None:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_save_then_die, args=(decision_store_url, sender, 20))
    process.start()
    sender.close()
    acknowledged: list[str] = []
    while True:
        try:
            acknowledged.append(receiver.recv())
        except EOFError:
            break
    process.join(30)
    assert process.exitcode == -signal.SIGKILL
    assert len(acknowledged) == 20
    store = open_decision_store(decision_store_url)
    try:
        assert all(store.get(decision_id) is not None for decision_id in acknowledged)
        assert store.verify_chain().ok
    finally:
        store.close()


def test_records_must_be_json_ready_and_timezone_aware(decision_store: Any, make_decision_record: MakeRecord) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_decision_record(created_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        decision_store.save(make_decision_record(payload={"margin": float("nan")}))
    with pytest.raises(ValueError):
        decision_store.save(make_decision_record(payload={"when": datetime.now(UTC)}))
    assert decision_store.count() == 0
    assert make_decision_record(created_at=datetime(2024, 1, 1, 14, tzinfo=UTC).astimezone()).created_at.tzinfo is UTC


# --- idempotency ----------------------------------------------------------------------------------------------


def test_same_idempotency_key_and_body_returns_the_original_without_a_second_row(
    decision_store: Any, make_decision_record: MakeRecord
) -> None:
    original = decision_store.save(make_decision_record(idempotency_key="key-1", request_hash="c" * 64))
    retry = decision_store.save(make_decision_record(idempotency_key="key-1", request_hash="c" * 64, score=1))
    assert retry == original
    assert decision_store.count() == 1
    assert decision_store.get_by_idempotency_key("key-1") == original
    assert decision_store.get_by_idempotency_key("key-2") is None


def test_same_idempotency_key_with_another_body_is_a_409_conflict(
    decision_store: Any, make_decision_record: MakeRecord
) -> None:
    decision_store.save(make_decision_record(idempotency_key="key-1", request_hash="c" * 64))
    with pytest.raises(IdempotencyConflict) as caught:
        decision_store.save(make_decision_record(idempotency_key="key-1", request_hash="d" * 64))
    assert problem_for(type(caught.value)).status == 409
    assert decision_store.count() == 1


def test_resaving_a_decision_id_is_idempotent_only_for_identical_content(
    decision_store: Any, make_decision_record: MakeRecord
) -> None:
    record = make_decision_record()
    stored = decision_store.save(record)
    assert decision_store.save(record) == stored
    with pytest.raises(DuplicateDecisionId):
        decision_store.save(make_decision_record(decision_id=record.decision_id, score=1))
    assert decision_store.count() == 1


# --- tamper evidence ------------------------------------------------------------------------------------------


def test_verify_names_a_record_whose_payload_was_changed(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    stored = fill(decision_store, make_decision_record, 6)
    assert decision_store.verify_chain().ok
    raw_execute(decision_store_url, "UPDATE decision_records SET payload = ? WHERE seq = 3", ('{"margin":-9.0}',))
    report = decision_store.verify_chain()
    assert not report.ok
    assert named(report, "changed") == {(3, stored[2].record.decision_id)}
    assert len(report.problems) == 1


def test_verify_reads_the_stored_payload_text_and_still_accepts_an_equal_non_canonical_form(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    # Verification hashes the stored canonical text as it is; a payload rewritten with the same JSON in another form
    # (spaces, key order) is parsed and canonicalised again, so it still verifies, while one changed value does not.
    stored = fill(decision_store, make_decision_record, 4)
    payload = stored[1].record.payload
    spaced = json.dumps(dict(reversed(list(payload.items()))), indent=1)
    raw_execute(decision_store_url, "UPDATE decision_records SET payload = ? WHERE seq = 2", (spaced,))
    assert decision_store.verify_chain().ok
    changed = json.dumps({**payload, "margin": payload["margin"] + 1}, indent=1)
    raw_execute(decision_store_url, "UPDATE decision_records SET payload = ? WHERE seq = 2", (changed,))
    report = decision_store.verify_chain()
    assert named(report, "changed") == {(2, stored[1].record.decision_id)}


def test_verify_names_a_changed_record_even_when_its_hash_was_recomputed(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    stored = fill(decision_store, make_decision_record, 6)
    forged = dataclasses.replace(stored[2].record, score=999)
    # the rewritten record matches its own new hash, but record 4 still chains from the original
    raw_execute(
        decision_store_url,
        "UPDATE decision_records SET score = 999, record_hash = ? WHERE seq = 3",
        (chain_hash(stored[2].prev_hash, forged),),
    )
    report = decision_store.verify_chain()
    assert not report.ok
    assert 4 in {p.seq for p in report.problems if p.kind == "broken_link"}


def test_verify_names_a_deleted_record(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    fill(decision_store, make_decision_record, 6)
    raw_execute(decision_store_url, "DELETE FROM decision_records WHERE seq = 4")
    report = decision_store.verify_chain()
    assert named(report, "deleted") == {(4, None)}
    assert len(report.problems) == 1


def test_verify_names_deleted_records_at_the_end_of_the_chain(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    fill(decision_store, make_decision_record, 6)
    raw_execute(decision_store_url, "DELETE FROM decision_records WHERE seq >= 5")
    report = decision_store.verify_chain()
    assert [(p.kind, p.seq) for p in report.problems] == [("deleted", 5)]
    assert "5..6" in report.problems[0].detail


def test_verify_names_a_deleted_record_even_when_the_rest_were_renumbered(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    stored = fill(decision_store, make_decision_record, 6)
    raw_execute(decision_store_url, "DELETE FROM decision_records WHERE seq = 3")
    for seq in (4, 5, 6):
        raw_execute(decision_store_url, "UPDATE decision_records SET seq = ? WHERE seq = ?", (seq - 1, seq))
    raw_execute(decision_store_url, "UPDATE decision_chain_head SET seq = 5")
    report = decision_store.verify_chain()
    assert named(report, "broken_link") == {(3, stored[3].record.decision_id)}


def test_verify_names_a_forged_record_appended_after_the_head(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    stored = fill(decision_store, make_decision_record, 5)
    forged = make_decision_record(decision_id="forged-1", created_at=T0 + timedelta(days=1))
    raw_execute(
        decision_store_url,
        "INSERT INTO decision_records SELECT 6, ?, application_id, created_at, idempotency_key, request_hash, decision, "
        "risk_band, score, model_name, model_version, reason_codes, payload, ?, ? FROM decision_records WHERE seq = 5",
        ("forged-1", stored[4].record_hash, chain_hash(stored[4].record_hash, forged)),
    )
    report = decision_store.verify_chain()
    assert named(report, "inserted") == {(6, "forged-1")}


def test_verify_names_a_forged_record_inserted_in_the_middle(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    stored = fill(decision_store, make_decision_record, 5)
    # make room at seq 3 and insert a correctly hashed record chained from seq 2
    for seq in (5, 4, 3):
        raw_execute(decision_store_url, "UPDATE decision_records SET seq = ? WHERE seq = ?", (seq + 1, seq))
    raw_execute(
        decision_store_url,
        "INSERT INTO decision_records SELECT 3, 'forged-2', application_id, created_at, idempotency_key, request_hash, "
        "decision, risk_band, score, model_name, model_version, reason_codes, payload, ?, ? FROM decision_records "
        "WHERE seq = 4",
        (stored[1].record_hash, "f" * 64),
    )
    raw_execute(decision_store_url, "UPDATE decision_chain_head SET seq = 6")
    report = decision_store.verify_chain()
    assert (3, "forged-2") in named(report, "inserted")
    assert named(report, "reordered") == set()


def test_verify_names_two_records_whose_seq_was_swapped(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    stored = fill(decision_store, make_decision_record, 6)
    raw_execute(decision_store_url, "UPDATE decision_records SET seq = -1 WHERE seq = 3")
    raw_execute(decision_store_url, "UPDATE decision_records SET seq = 3 WHERE seq = 5")
    raw_execute(decision_store_url, "UPDATE decision_records SET seq = 5 WHERE seq = -1")
    report = decision_store.verify_chain()
    assert named(report, "reordered") == {(3, stored[4].record.decision_id), (5, stored[2].record.decision_id)}
    assert {p.kind for p in report.problems} == {"reordered"}


def test_chain_analysis_finds_an_adjacent_swap_and_a_fork() -> None:
    hashes = [GENESIS_HASH] + [f"{i:064x}" for i in range(1, 6)]
    links = [ChainLink(i, f"d{i}", hashes[i - 1], hashes[i], hashes[i]) for i in range(1, 6)]
    anchor = ChainAnchor(0, GENESIS_HASH, 5, hashes[5])
    assert analyse_chain(links, anchor) == []
    swapped = [links[0], links[2], links[1], links[3], links[4]]
    swapped = [
        ChainLink(i + 1, x.decision_id, x.prev_hash, x.record_hash, x.content_hash) for i, x in enumerate(swapped)
    ]
    assert {(p.kind, p.decision_id) for p in analyse_chain(swapped, anchor)} == {
        ("reordered", "d2"),
        ("reordered", "d3"),
    }
    fork = ChainLink(6, "forged", hashes[2], "e" * 64, "e" * 64)
    found = analyse_chain([*links, fork], ChainAnchor(0, GENESIS_HASH, 6, hashes[5]))
    assert ("inserted", "forged") in {(p.kind, p.decision_id) for p in found}


# --- search and iteration -------------------------------------------------------------------------------------


def test_search_filters_on_every_field(decision_store: Any, make_decision_record: MakeRecord) -> None:
    variants = [
        ("app-a", "approve", "A", ("R01",), "v1"),
        ("app-a", "refer", "C", ("R02", "R03"), "v1"),
        ("app-b", "decline", "E", ("RULE_AGE",), "v2"),
        ("app-b", "approve", "A", ("R03",), "v2"),
        ("app-c", "decline", "E", ("R02", "RULE_AGE"), "v2"),
    ]
    for i, (application_id, decision, band, codes, version) in enumerate(variants):
        decision_store.save(
            make_decision_record(
                application_id=application_id,
                decision=decision,
                risk_band=band,
                reason_codes=codes,
                model_version=version,
                created_at=T0 + timedelta(hours=i),
            )
        )

    def seqs(**filters: Any) -> list[int]:
        return [r.seq for r in decision_store.search(**filters)[0]]

    assert seqs() == [1, 2, 3, 4, 5]
    assert seqs(application_id="app-b") == [3, 4]
    assert seqs(decision="decline") == [3, 5]
    assert seqs(risk_band="A") == [1, 4]
    assert seqs(reason_code="R02") == [2, 5]
    assert seqs(reason_code="R0") == []
    assert seqs(model_version="v2") == [3, 4, 5]
    assert seqs(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3)) == [2, 3]
    assert seqs(decision="decline", reason_code="RULE_AGE", application_id="app-c") == [5]


def test_search_pages_with_a_cursor_until_the_last_page(decision_store: Any, make_decision_record: MakeRecord) -> None:
    fill(decision_store, make_decision_record, 12)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = decision_store.search(limit=5, cursor=cursor)
        seen += [r.seq for r in page]
        pages += 1
        if cursor is None:
            break
    assert (seen, pages) == (list(range(1, 13)), 3)
    with pytest.raises(InvalidParameter):
        decision_store.search(cursor="not-a-cursor")
    with pytest.raises(InvalidParameter):
        decision_store.search(limit=0)
    assert [r.seq for r in decision_store.iter_records(since_seq=9)] == [10, 11, 12]


# --- retention ------------------------------------------------------------------------------------------------


def test_purge_removes_old_records_and_the_chain_still_verifies(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    stored = fill(decision_store, make_decision_record, 8)  # T0 .. T0+7s
    report = decision_store.purge_before(T0 + timedelta(seconds=5))
    assert (report.purged_records, report.checkpoint_seq, report.checkpoint_hash) == (5, 5, stored[4].record_hash)
    assert decision_store.count() == 3
    assert decision_store.get(stored[0].record.decision_id) is None
    assert decision_store.verify_chain().ok
    assert decision_store.purge_before(T0 + timedelta(seconds=5)).purged_records == 0

    decision_store.save(make_decision_record(created_at=T0 + timedelta(seconds=20)))
    check = decision_store.verify_chain()
    assert (check.ok, check.checkpoint_seq, check.head_seq, check.records_checked) == (True, 5, 9, 4)

    assert decision_store.purge_before(T0 + timedelta(days=1)).purged_records == 4
    assert decision_store.count() == 0
    assert decision_store.verify_chain().ok
    after = decision_store.save(make_decision_record())
    assert after.seq == 10
    assert decision_store.verify_chain().ok

    # tampering after a purge is still caught: the first kept record must chain from the checkpoint
    raw_execute(decision_store_url, "UPDATE decision_records SET prev_hash = ? WHERE seq = 10", ("0" * 64,))
    assert not decision_store.verify_chain().ok


def test_purge_removes_only_a_prefix_of_the_chain(decision_store: Any, make_decision_record: MakeRecord) -> None:
    for seconds in (0, 1, 10, 2, 11):  # seq 4 is older than seq 3
        decision_store.save(make_decision_record(created_at=T0 + timedelta(seconds=seconds)))
    report = decision_store.purge_before(T0 + timedelta(seconds=5))
    assert (report.purged_records, report.checkpoint_seq) == (2, 2)
    assert [r.seq for r in decision_store.iter_records()] == [3, 4, 5]
    assert decision_store.verify_chain().ok


# --- concurrency ----------------------------------------------------------------------------------------------


def _concurrent_writer(url: str, worker: int, n: int, start: Any) -> None:
    store = open_decision_store(url)
    start.wait(30)
    for i in range(n):
        store.save(
            DecisionRecord(
                decision_id=f"w{worker}-{i}",
                application_id=f"app-{worker}",
                created_at=datetime.now(UTC),
                idempotency_key=f"w{worker}-{i}",
                request_hash="e" * 64,
                decision="approve",
                risk_band="B",
                score=650 + i,
                model_name="m",
                model_version="v1",
                reason_codes=("R01",),
                payload={"worker": worker, "i": i},
            )
        )
        if i % 10 == 0:  # every worker retries the same shared key: exactly one row must result
            store.save(
                DecisionRecord(
                    decision_id=f"shared-{worker}-{i}",
                    application_id="app-shared",
                    created_at=datetime.now(UTC),
                    idempotency_key=f"shared-{i}",
                    request_hash="f" * 64,
                    decision="refer",
                    risk_band="C",
                    score=600,
                    model_name="m",
                    model_version="v1",
                    reason_codes=(),
                    payload={},
                )
            )
    store.close()


def test_concurrent_writers_in_several_processes_form_one_chain(decision_store_url: str) -> None:
    workers, per_worker = 4, 50
    context = multiprocessing.get_context("fork")
    start = context.Barrier(workers)
    processes = [
        context.Process(target=_concurrent_writer, args=(decision_store_url, w, per_worker, start))
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * workers
    store = open_decision_store(decision_store_url)
    try:
        assert store.count() == workers * per_worker + per_worker // 10
        report = store.verify_chain()
        assert report.ok, [p.describe() for p in report.problems]
        assert report.head_seq == store.count()
        shared = [r for r in store.iter_records() if r.record.application_id == "app-shared"]
        assert sorted(r.record.idempotency_key or "" for r in shared) == [f"shared-{i}" for i in range(0, 50, 10)]
    finally:
        store.close()


def test_threads_sharing_one_store_append_to_one_chain(decision_store: Any, make_decision_record: MakeRecord) -> None:
    def work() -> None:
        for _ in range(25):
            decision_store.save(make_decision_record())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert decision_store.count() == 100
    assert decision_store.verify_chain().ok


def _use_inherited_store(store: Any, record: DecisionRecord) -> None:
    store.save(record)
    os._exit(0)


def test_a_store_used_before_fork_works_in_the_child_and_the_parent(
    decision_store: Any, make_decision_record: MakeRecord
) -> None:
    decision_store.save(make_decision_record())  # the parent now holds an open connection
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_use_inherited_store, args=(decision_store, make_decision_record()))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    decision_store.save(make_decision_record())
    assert decision_store.count() == 3
    assert decision_store.verify_chain().ok


# --- failures are StoreUnavailable, schema migrations ---------------------------------------------------------


def test_a_save_that_cannot_get_the_write_lock_fails_with_503_and_writes_nothing(
    decision_store_url: str, make_decision_record: MakeRecord
) -> None:
    if decision_store_url.startswith("sqlite"):
        store: Any = SqliteDecisionStore(decision_store_url[len("sqlite:///") :], busy_timeout=0.2)
        holder: Any = sqlite3.connect(decision_store_url[len("sqlite:///") :], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        store = PostgresDecisionStore(decision_store_url, lock_timeout="200ms")
        holder = psycopg.connect(decision_store_url)
        holder.execute(b"SELECT * FROM decision_chain_head FOR UPDATE")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.save(make_decision_record())
        assert problem_for(type(caught.value)).status == 503
    finally:
        holder.rollback()
        holder.close()
    assert store.count() == 0
    assert store.save(make_decision_record()).seq == 1
    store.close()


def test_an_append_whose_held_statements_fail_writes_nothing_and_the_next_append_goes_on(
    decision_store: Any, decision_store_url: str, make_decision_record: MakeRecord
) -> None:
    """The record's insert (held for the COMMIT's round trip on PostgreSQL, see ``Transaction.later``) fails:
    the save fails with 503, nothing of it is written (no record, the head unmoved), and once the cause is gone the
    next save appends where the chain left off."""
    first = decision_store.save(make_decision_record())
    if decision_store_url.startswith("sqlite"):
        refuse = (
            "CREATE TRIGGER refuse BEFORE INSERT ON decision_records BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
        )
        allow = "DROP TRIGGER refuse"
    else:
        raw_execute(
            decision_store_url,
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$ "
            "LANGUAGE plpgsql",
        )
        refuse = "CREATE TRIGGER refuse BEFORE INSERT ON decision_records FOR EACH ROW EXECUTE FUNCTION refuse()"
        allow = "DROP TRIGGER refuse ON decision_records"
    raw_execute(decision_store_url, refuse)
    refused = make_decision_record()
    with pytest.raises(StoreUnavailable, match="refused by test") as caught:
        decision_store.save(refused)
    assert problem_for(type(caught.value)).status == 503
    assert decision_store.get(refused.decision_id) is None
    assert raw_execute(decision_store_url, "SELECT seq FROM decision_chain_head") == [(1,)]
    raw_execute(decision_store_url, allow)
    assert decision_store.save(refused).seq == 2
    assert decision_store.get(first.record.decision_id) == first
    assert decision_store.verify_chain().ok


@pytest.mark.postgres
def test_a_dropped_idle_postgres_connection_is_replaced_without_failing_a_request(
    postgres_decision_store_url: str, make_decision_record: MakeRecord
) -> None:
    store = open_decision_store(postgres_decision_store_url)
    store.save(make_decision_record())
    # only this store's session: other tests (and other runs) on the same server keep theirs
    pid = store._connection().info.backend_pid  # type: ignore[attr-defined]
    raw_execute(postgres_decision_store_url, "SELECT pg_terminate_backend(?)", (pid,))
    # the BEGIN on the dead connection fails before anything is sent, so the store reconnects and goes on
    assert store.save(make_decision_record()).seq == 2
    assert store.save(make_decision_record()).seq == 3
    store.close()


def test_unreachable_databases_and_bad_urls_are_reported() -> None:
    with pytest.raises(StoreUnavailable):
        open_decision_store("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2")
    with pytest.raises(ValueError):
        open_decision_store("mysql://somewhere/db")
    with pytest.raises(ValueError):
        open_decision_store("sqlite:///:memory:")


def test_migrations_are_applied_once_and_recorded(decision_store_url: str) -> None:
    backend = "sqlite" if decision_store_url.startswith("sqlite") else "postgres"
    for _ in range(2):
        store = open_decision_store(decision_store_url)
        store.close()
    rows = raw_execute(decision_store_url, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(int(v), n) for v, n in rows] == [(m.version, m.name) for m in load_migrations(backend)]


def test_the_default_sqlite_url_is_relative_to_the_working_directory(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, make_decision_record: MakeRecord
) -> None:
    from service.config import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CREDIT_DECISION_DATABASE_URL", raising=False)
    store = open_decision_store(Settings.load().database_url)
    store.save(make_decision_record())
    store.close()
    assert (tmp_path / "var" / "decisions.sqlite3").is_file()
    assert sqlite3.connect(tmp_path / "var" / "decisions.sqlite3").execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_spliced_canonical_content_equals_the_full_serialisation(make_decision_record: Any) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from service.records.model import canonical_content, canonical_json, record_content

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )

    @settings(max_examples=200, deadline=None)
    @given(payload=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
    def check(payload: dict[str, Any]) -> None:
        record = make_decision_record(payload=payload)
        full = canonical_json(record_content(record))
        assert canonical_content(record) == full
        assert canonical_content(record, canonical_json(record.payload)) == full

    check()


def _open_and_count(url: str, barrier: Any) -> int:
    from service.records import open_decision_store

    barrier.wait()
    store = open_decision_store(url)
    try:
        return store.count()
    finally:
        store.close()


def test_workers_opening_a_new_sqlite_store_at_the_same_moment_all_succeed(tmp_path: Any) -> None:
    """gunicorn starts its workers together: each opens (and migrates, and switches to WAL) the same new file."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    for attempt in range(20):
        url = f"sqlite:///{tmp_path / f'new-{attempt}.sqlite3'}"
        with multiprocessing.Manager() as manager:
            barrier = manager.Barrier(8)
            with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("fork")) as pool:
                counts = list(pool.map(_open_and_count, [url] * 8, [barrier] * 8))
        assert counts == [0] * 8


def test_time_stamps_are_written_as_every_stored_record_has_them_and_read_strictly() -> None:
    from service.records.model import format_timestamp, parse_timestamp

    # the form stored (and hashed) since the first version: strftime's, for every moment a record can have
    moments = [T0, T0.replace(microsecond=0), datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
    moments.append(datetime(2026, 3, 29, 2, 30, 0, 5, tzinfo=timezone(timedelta(hours=-5))))
    for moment in moments:
        text = format_timestamp(moment)
        assert text == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert parse_timestamp(text) == moment and parse_timestamp(text).utcoffset() == timedelta(0)
    for other in ("2024-01-01T12:00:00Z", "2024-01-01 12:00:00.000000Z", "2024-01-01T12:00:00.000000+00:00", ""):
        with pytest.raises(ValueError, match="is not of the form"):
            parse_timestamp(other)
