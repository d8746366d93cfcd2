"""Audit events and shadow decisions in the decision store's one hash chain, on real SQLite files and PostgreSQL."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

import service.records._sql as sql_module
import service.records.export as export_module
from cli.audit import audit_group
from service.core.canonical import canonical_json
from service.errors import InvalidParameter
from service.records import (
    GENESIS_HASH,
    AuditEvent,
    DecisionRecord,
    DuplicateEntryId,
    ShadowRecord,
    UnknownShadowedDecisions,
    chain_hash,
    open_decision_store,
)
from service.records.export import EVENT_CSV_COLUMNS
from service.records.model import CONTROL_EVENTS, canonical_content, parse_timestamp

MakeRecord = Callable[..., DecisionRecord]
T0 = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus some seconds."""
    return T0 + timedelta(seconds=seconds)


def make_event(kind: str = "key_created", created_at: datetime = T0, **overrides: Any) -> AuditEvent:
    """A valid audit event; control events carry a serving state naming the event."""
    event_id = overrides.pop("event_id", f"ev-{uuid.uuid4()}")
    fields: dict[str, Any] = {
        "event_id": event_id,
        "created_at": created_at,
        "kind": kind,
        "actor": {"key_id": "k-1", "label": "ops", "role": "admin"},
        "details": {"note": "Prüfung ✓", "ratio": 0.1 + 0.2},
        "serving_state": {"champion": {"model_name": "m", "model_version": event_id}, "shadows": []}
        if kind in CONTROL_EVENTS
        else None,
    }
    fields.update(overrides)
    return AuditEvent(**fields)


def make_shadow(
    decision_id: str, kind: str = "challenger", created_at: datetime = T0, **overrides: Any
) -> ShadowRecord:
    """A valid shadow decision of ``decision_id``."""
    fields: dict[str, Any] = {
        "shadow_id": f"sh-{uuid.uuid4()}",
        "decision_id": decision_id,
        "created_at": created_at,
        "kind": kind,
        "model_name": "m",
        "model_version": "v2" if kind == "challenger" else "v1",
        "policy_version": "p2" if kind == "policy" else "p1",
        "catalog_version": "c1",
        "decision": "refer",
        "risk_band": "C",
        "score": 610,
        "reason_codes": ("R02",),
        "payload": {"margin": -0.25, "note": "shadow ✓"},
    }
    fields.update(overrides)
    return ShadowRecord(**fields)


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


def who(stored: Any) -> tuple[str, str]:
    """(entry kind, id) of a stored entry."""
    if hasattr(stored, "event"):
        return "event", stored.event.event_id
    if isinstance(stored.record, ShadowRecord):
        return "shadow", stored.record.shadow_id
    return "decision", stored.record.decision_id


def problems(report: Any) -> set[tuple[str, int, str | None, str | None]]:
    """(kind, seq, entry, entry_id) of every problem."""
    return {(p.kind, p.seq, p.entry, p.entry_id) for p in report.problems}


def interleaved(store: Any, make: MakeRecord) -> list[Any]:
    """Ten entries of all three kinds: d1 e2(promotion) d3 s4 e5 d6 s7 s8 d9 e10(shadow_on), one second apart."""
    d1 = store.save(make(created_at=at(0), application_id="app-1"))
    e2 = store.append_event(make_event("promotion", at(1)))
    d3 = store.save(make(created_at=at(2), application_id="app-3"))
    (s4,) = store.save_shadows([make_shadow(d1.record.decision_id, created_at=at(3))])
    e5 = store.append_event(make_event("key_created", at(4)))
    d6 = store.save(make(created_at=at(5), application_id="app-6"))
    s7, s8 = store.save_shadows(
        [
            make_shadow(d3.record.decision_id, "challenger", at(6)),
            make_shadow(d3.record.decision_id, "policy", at(6)),
        ]
    )
    d9 = store.save(make(created_at=at(7), application_id="app-9"))
    e10 = store.append_event(make_event("shadow_on", at(8)))
    chain = [d1, e2, d3, s4, e5, d6, s7, s8, d9, e10]
    assert [entry.seq for entry in chain] == list(range(1, 11))
    return chain


# --- content and hashes ---------------------------------------------------------------------------------------


def test_decision_hashes_are_unchanged_and_other_entries_name_their_kind(make_decision_record: MakeRecord) -> None:
    # records written by the first schema version still hash to what was stored
    data = json.loads((Path(__file__).parent / "data" / "records_schema_v1.json").read_text(encoding="utf-8"))
    for line in data:
        record = DecisionRecord(
            **{k: line[k] for k in line if k not in ("seq", "prev_hash", "record_hash", "created_at", "reason_codes")},
            created_at=parse_timestamp(line["created_at"]),
            reason_codes=tuple(line["reason_codes"]),
        )
        assert chain_hash(line["prev_hash"], record) == line["record_hash"]
        assert '"entry"' not in canonical_content(record)
    event = make_event()
    shadow = make_shadow("d-1")
    assert json.loads(canonical_content(event))["entry"] == "event"
    assert json.loads(canonical_content(shadow))["entry"] == "shadow"
    # the content is the canonical JSON of every field, payload spliced or not
    assert canonical_content(shadow) == canonical_content(shadow, canonical_json(shadow.payload))
    assert canonical_content(shadow) == canonical_json(json.loads(canonical_content(shadow)))


# --- audit events ---------------------------------------------------------------------------------------------


def test_an_event_is_appended_to_the_decisions_chain_and_read_back(
    decision_store: Any, make_decision_record: MakeRecord
) -> None:
    decision = decision_store.save(make_decision_record(created_at=T0))
    event = make_event("key_created", at(1), details={"codes": ("R01", "R02")})
    stored = decision_store.append_event(event)
    assert (stored.seq, stored.prev_hash) == (2, decision.record_hash)
    assert stored.record_hash == chain_hash(decision.record_hash, event)
    assert stored.event.details == {"codes": ["R01", "R02"]}  # as read back: JSON
    assert decision_store.events() == ([stored], None)
    assert decision_store.append_event(event) == stored  # a retry of the same event is not a second entry
    with pytest.raises(DuplicateEntryId):
        decision_store.append_event(dataclasses.replace(event, details={"other": True}))
    assert decision_store.count() == 1
    assert decision_store.count_entries() == {"decision": 1, "event": 1, "shadow": 0}
    after = decision_store.save(make_decision_record(created_at=at(2)))
    assert (after.seq, after.prev_hash) == (3, stored.record_hash)
    assert decision_store.verify_chain().ok


def test_the_latest_control_event_is_the_serving_state(decision_store_url: str, decision_store: Any) -> None:
    assert decision_store.latest_serving_state() is None
    decision_store.append_event(make_event("key_created"))
    assert decision_store.latest_serving_state() is None
    promotion = decision_store.append_event(make_event("promotion", at(1)))
    assert decision_store.latest_serving_state() == promotion
    shadow_on = decision_store.append_event(make_event("shadow_on", at(2)))
    for i in range(30):
        decision_store.append_event(make_event("key_revoked", at(3 + i)))
    latest = decision_store.latest_serving_state()
    assert latest == shadow_on
    assert latest.event.serving_state == shadow_on.event.serving_state
    # cheap: read from the partial index on control events, not by scanning the events after it
    query = "SELECT seq FROM audit_events WHERE serving_state IS NOT NULL ORDER BY seq DESC LIMIT 1"
    if decision_store_url.startswith("sqlite"):
        plan = " ".join(str(row[-1]) for row in raw_execute(decision_store_url, f"EXPLAIN QUERY PLAN {query}"))
    else:
        plan = " ".join(str(row[0]) for row in raw_execute(decision_store_url, f"EXPLAIN {query}"))
    assert "audit_events_serving_state" in plan, plan


def test_events_page_in_seq_order_and_filter_by_kind_and_period(decision_store: Any) -> None:
    kinds = ["key_created", "promotion", "key_revoked", "policy_added"] * 3
    stored = [decision_store.append_event(make_event(kind, at(i))) for i, kind in enumerate(kinds)]

    def seqs(**filters: Any) -> list[int]:
        return [e.seq for e in decision_store.events(**filters)[0]]

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = decision_store.events(limit=5, cursor=cursor)
        seen += [e.seq for e in page]
        pages += 1
        if cursor is None:
            break
    assert (seen, pages) == ([e.seq for e in stored], 3)
    assert seqs(kind="promotion") == [2, 6, 10]
    assert seqs(since=at(3), until=at(6)) == [4, 5, 6]
    assert seqs(kind="key_revoked", since=at(3)) == [7, 11]
    for bad, parameter in (
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"kind": "coffee_break"}, "kind"),
        ({"since": datetime(2024, 1, 1)}, "from"),
        ({"until": datetime(2024, 1, 1)}, "to"),
    ):
        with pytest.raises(InvalidParameter) as caught:
            decision_store.events(**bad)
        assert [e.field for e in caught.value.errors] == [parameter]


# --- shadow decisions -----------------------------------------------------------------------------------------


def test_a_batch_of_shadows_is_appended_in_order_after_their_decisions(
    decision_store: Any, make_decision_record: MakeRecord
) -> None:
    decisions = [decision_store.save(make_decision_record(created_at=at(i))) for i in range(3)]
    batch = [make_shadow(d.record.decision_id, created_at=at(10)) for d in decisions]
    batch.append(make_shadow(decisions[0].record.decision_id, "policy", at(10)))
    stored = decision_store.save_shadows(batch)
    assert [s.seq for s in stored] == [4, 5, 6, 7]
    assert [s.record for s in stored] == batch
    prev = decisions[-1].record_hash
    for record, entry in zip(batch, stored, strict=True):
        assert (entry.prev_hash, entry.record_hash) == (prev, chain_hash(prev, record))
        prev = entry.record_hash
    assert decision_store.verify_chain().head_hash == stored[-1].record_hash
    assert decision_store.save_shadows([]) == []
    assert decision_store.count_entries() == {"decision": 3, "event": 0, "shadow": 4}


def test_resaving_shadows_returns_the_stored_twins_without_new_entries(
    decision_store: Any, make_decision_record: MakeRecord
) -> None:
    decision = decision_store.save(make_decision_record())
    first = decision_store.save_shadows([make_shadow(decision.record.decision_id)])
    head = decision_store.verify_chain().head_seq
    # the same record, or another shadow_id for the same (decision, kind): the stored one comes back
    assert decision_store.save_shadows([first[0].record]) == first
    assert decision_store.save_shadows([make_shadow(decision.record.decision_id, score=1)]) == first
    # twins inside one batch: the first one is stored, the second returns it
    other = decision_store.save(make_decision_record())
    a, b = make_shadow(other.record.decision_id, "policy"), make_shadow(other.record.decision_id, "policy", score=2)
    stored_a, stored_b = decision_store.save_shadows([a, b])
    assert stored_a == stored_b and stored_a.record == a
    assert decision_store.verify_chain().head_seq == head + 2
    assert decision_store.count_entries()["shadow"] == 2


def test_a_batch_with_a_shadow_of_an_unknown_decision_writes_nothing(
    decision_store: Any, make_decision_record: MakeRecord
) -> None:
    decisions = [decision_store.save(make_decision_record()) for _ in range(3)]
    before = decision_store.verify_chain()
    good = [make_shadow(d.record.decision_id) for d in decisions]
    with pytest.raises(UnknownShadowedDecisions) as caught:
        decision_store.save_shadows([*good, make_shadow("nor-this-one"), make_shadow("no-such-decision")])
    assert caught.value.decision_ids == ("no-such-decision", "nor-this-one")
    after = decision_store.verify_chain()
    assert (after.head_seq, after.head_hash, decision_store.count_entries()["shadow"]) == (3, before.head_hash, 0)
    # a shadow_id already used by another twin is refused the same way, even last in the batch
    decision_store.save_shadows([make_shadow(decisions[0].record.decision_id, "policy", shadow_id="taken")])
    before = decision_store.verify_chain()
    with pytest.raises(DuplicateEntryId):
        decision_store.save_shadows([*good, make_shadow(decisions[1].record.decision_id, "policy", shadow_id="taken")])
    after = decision_store.verify_chain()
    assert (after.ok, after.head_seq, after.head_hash) == (True, before.head_seq, before.head_hash)
    assert decision_store.count_entries() == {"decision": 3, "event": 0, "shadow": 1}
    assert decision_store.shadows_for([d.record.decision_id for d in decisions], kind="challenger") == {}


def test_shadows_for_returns_each_decisions_shadows_in_one_read(
    decision_store: Any, make_decision_record: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    d1, d2, d3 = (decision_store.save(make_decision_record()) for _ in range(3))
    s1c, s1p, s2c = decision_store.save_shadows(
        [
            make_shadow(d1.record.decision_id, "challenger"),
            make_shadow(d1.record.decision_id, "policy"),
            make_shadow(d2.record.decision_id, "challenger"),
        ]
    )
    ids = [d1.record.decision_id, d2.record.decision_id, d3.record.decision_id, "unknown"]
    monkeypatch.setattr(sql_module, "_BATCH", 2)  # the ids are read in chunks
    assert decision_store.shadows_for(ids) == {d1.record.decision_id: [s1c, s1p], d2.record.decision_id: [s2c]}
    assert decision_store.shadows_for(ids, kind="policy") == {d1.record.decision_id: [s1p]}
    assert decision_store.shadows_for([]) == {}
    with pytest.raises(InvalidParameter):
        decision_store.shadows_for(ids, kind="champion")


def test_shadow_pairs_join_each_shadow_of_a_period_to_its_champion_in_batches(
    decision_store: Any, make_decision_record: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    decisions = [decision_store.save(make_decision_record(created_at=at(i))) for i in range(8)]
    challengers = decision_store.save_shadows(
        [make_shadow(d.record.decision_id, "challenger", at(i)) for i, d in enumerate(decisions)]
    )
    decision_store.save_shadows([make_shadow(d.record.decision_id, "policy", at(i)) for i, d in enumerate(decisions)])
    decision_store.append_event(make_event("key_created", at(3)))
    monkeypatch.setattr(sql_module, "_BATCH", 2)
    pairs = list(decision_store.iter_shadow_pairs(kind="challenger"))
    assert pairs == list(zip(decisions, challengers, strict=True))
    period = list(decision_store.iter_shadow_pairs(since=at(2), until=at(7), kind="challenger"))
    assert [(d.seq, s.seq) for d, s in period] == [(d.seq, s.seq) for d, s in pairs[2:7]]
    assert {s.record.kind for _, s in decision_store.iter_shadow_pairs(kind="policy")} == {"policy"}
    assert list(decision_store.iter_shadow_pairs(since=at(100), kind="policy")) == []
    with pytest.raises(InvalidParameter):
        list(decision_store.iter_shadow_pairs(kind="champion"))
    with pytest.raises(InvalidParameter):
        list(decision_store.iter_shadow_pairs(since=datetime(2024, 1, 1), kind="policy"))


# --- one chain: verification ----------------------------------------------------------------------------------


def test_an_interleaved_chain_verifies_in_one_merged_pass(
    decision_store: Any, make_decision_record: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = interleaved(decision_store, make_decision_record)
    for entry, before in zip(chain[1:], chain, strict=False):
        assert entry.prev_hash == before.record_hash
    monkeypatch.setattr(sql_module, "_BATCH", 2)  # the three tables are read in batches and merged by seq
    report = decision_store.verify_chain()
    assert report.ok, [p.describe() for p in report.problems]
    assert (report.records_checked, report.events_checked, report.shadows_checked) == (10, 3, 3)
    assert (report.head_seq, report.head_hash) == (10, chain[-1].record_hash)
    assert "chain OK: 10 entries checked (4 decisions, 3 audit events, 3 shadow decisions)" in report.summary()
    assert decision_store.count() == 4


Tamper = Callable[[list[Any]], list[tuple[str, Sequence[Any]]]]


def _forged_event(chain: list[Any]) -> list[tuple[str, Sequence[Any]]]:
    forged = dataclasses.replace(chain[4].event, event_id="forged-event")
    return [
        (
            "INSERT INTO audit_events SELECT 11, 'forged-event', created_at, kind, actor, details, serving_state, ?, ? "
            "FROM audit_events WHERE seq = 5",
            (chain[9].record_hash, chain_hash(chain[9].record_hash, forged)),
        )
    ]


def _forged_shadow(chain: list[Any]) -> list[tuple[str, Sequence[Any]]]:
    # a well-hashed shadow that claims seq 6 (a decision's seq) and chains from seq 5: a fork
    forged = dataclasses.replace(chain[6].record, shadow_id="forged-shadow", decision_id=chain[5].record.decision_id)
    return [
        (
            "INSERT INTO shadow_decisions SELECT 6, 'forged-shadow', ?, created_at, kind, model_name, model_version, "
            "policy_version, catalog_version, decision, risk_band, score, reason_codes, payload, ?, ? "
            "FROM shadow_decisions WHERE seq = 7",
            (chain[5].record.decision_id, chain[4].record_hash, chain_hash(chain[4].record_hash, forged)),
        )
    ]


def _forged_decision_at_the_head(chain: list[Any]) -> list[tuple[str, Sequence[Any]]]:
    # a well-hashed decision that claims the head's seq (held by event e10) and chains from seq 9: a fork
    forged = dataclasses.replace(chain[8].record, decision_id="forged-decision")
    return [
        (
            "INSERT INTO decision_records SELECT 10, 'forged-decision', application_id, created_at, idempotency_key, "
            "request_hash, decision, risk_band, score, model_name, model_version, reason_codes, payload, ?, ? "
            "FROM decision_records WHERE seq = 9",
            (chain[8].record_hash, chain_hash(chain[8].record_hash, forged)),
        )
    ]


TAMPERING: dict[str, tuple[Tamper, Callable[[list[Any]], set[tuple[str, int, str | None, str | None]]]]] = {
    "event changed": (
        lambda c: [("UPDATE audit_events SET details = ? WHERE seq = 5", ('{"note":"nothing happened"}',))],
        lambda c: {("changed", 5, *who(c[4]))},
    ),
    "control event's serving state changed": (
        lambda c: [("UPDATE audit_events SET serving_state = ? WHERE seq = 10", ('{"champion":null}',))],
        lambda c: {("changed", 10, *who(c[9]))},
    ),
    "shadow changed": (
        lambda c: [("UPDATE shadow_decisions SET score = 999 WHERE seq = 7", ())],
        lambda c: {("changed", 7, *who(c[6]))},
    ),
    "event deleted": (
        lambda c: [("DELETE FROM audit_events WHERE seq = 5", ())],
        lambda c: {("deleted", 5, None, None)},
    ),
    "shadow deleted": (
        lambda c: [("DELETE FROM shadow_decisions WHERE seq = 7", ())],
        lambda c: {("deleted", 7, None, None)},
    ),
    "event forged after the head": (_forged_event, lambda c: {("inserted", 11, "event", "forged-event")}),
    "shadow forged beside a decision": (_forged_shadow, lambda c: {("inserted", 6, "shadow", "forged-shadow")}),
    "decision forged beside the head": (
        _forged_decision_at_the_head,
        lambda c: {("inserted", 10, "decision", "forged-decision")},
    ),
    "event and shadow swapped": (
        lambda c: [
            ("UPDATE audit_events SET seq = 7 WHERE seq = 5", ()),
            ("UPDATE shadow_decisions SET seq = 5 WHERE seq = 7", ()),
        ],
        lambda c: {("reordered", 5, *who(c[6])), ("reordered", 7, *who(c[4]))},
    ),
    "two events swapped": (
        lambda c: [
            ("UPDATE audit_events SET seq = -1 WHERE seq = 2", ()),
            ("UPDATE audit_events SET seq = 2 WHERE seq = 5", ()),
            ("UPDATE audit_events SET seq = 5 WHERE seq = -1", ()),
        ],
        lambda c: {("reordered", 2, *who(c[4])), ("reordered", 5, *who(c[1]))},
    ),
    "shadow and decision swapped": (
        lambda c: [
            ("UPDATE shadow_decisions SET seq = 9 WHERE seq = 8", ()),
            ("UPDATE decision_records SET seq = 8 WHERE seq = 9", ()),
        ],
        lambda c: {("reordered", 8, *who(c[8])), ("reordered", 9, *who(c[7]))},
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_with_events_and_shadows_is_found_and_named(
    case: str, decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    chain = interleaved(decision_store, make_decision_record)
    tamper, expected = TAMPERING[case]
    for statement, params in tamper(chain):
        raw_execute(decision_store_url, statement, params)
    report = decision_store.verify_chain()
    assert problems(report) == expected(chain), [p.describe() for p in report.problems]


def test_problems_say_which_kind_of_entry_they_concern(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    chain = interleaved(decision_store, make_decision_record)
    raw_execute(decision_store_url, "UPDATE decision_records SET score = 1 WHERE seq = 3")
    raw_execute(decision_store_url, "UPDATE audit_events SET kind = 'rollback' WHERE seq = 5")  # not even valid now
    raw_execute(decision_store_url, "UPDATE shadow_decisions SET payload = '[]' WHERE seq = 8")  # unreadable
    lines = [p.describe() for p in decision_store.verify_chain().problems]
    assert lines == [
        f"CHANGED: seq 3 decision_id {chain[2].record.decision_id}: content does not match its record_hash",
        f"CHANGED: seq 5 event_id {chain[4].event.event_id}: content does not match its record_hash",
        f"CHANGED: seq 8 shadow_id {chain[7].record.shadow_id}: content does not match its record_hash",
    ]


# --- retention ------------------------------------------------------------------------------------------------


def test_purge_removes_the_prefix_from_all_three_tables_and_the_chain_still_verifies(
    decision_store: Any, make_decision_record: MakeRecord
) -> None:
    chain = interleaved(decision_store, make_decision_record)
    report = decision_store.purge_before(at(5))  # d6 is the first entry created at or after the cutoff
    assert (report.purged_records, report.purged_events, report.purged_shadows) == (2, 2, 1)
    assert (report.checkpoint_seq, report.checkpoint_hash, report.held_at_seq) == (5, chain[4].record_hash, None)
    assert decision_store.count_entries() == {"decision": 2, "event": 1, "shadow": 2}
    check = decision_store.verify_chain()
    assert (check.ok, check.checkpoint_seq, check.records_checked) == (True, 5, 5)
    assert [e.seq for e in decision_store.events()[0]] == [10]
    assert decision_store.shadows_for([chain[0].record.decision_id]) == {}
    # s7 shadows d3, which is purged: the comparison leaves it out
    assert list(decision_store.iter_shadow_pairs(kind="challenger")) == []
    assert decision_store.latest_serving_state() == chain[9]
    assert decision_store.append_event(make_event("key_created", at(20))).seq == 11
    assert decision_store.verify_chain().ok


def test_purge_never_takes_the_latest_control_event_nor_entries_created_after_the_cutoff(
    decision_store: Any, make_decision_record: MakeRecord
) -> None:
    chain = interleaved(decision_store, make_decision_record)
    # every decision is older than the cutoff, but the serving state (e10) must survive
    report = decision_store.purge_before(at(3600))
    assert (report.purged_records, report.purged_events, report.purged_shadows) == (4, 2, 3)
    assert (report.checkpoint_seq, report.held_at_seq) == (9, 10)
    assert decision_store.latest_serving_state() == chain[9]
    assert decision_store.verify_chain().ok
    assert decision_store.purge_before(at(3600)).purged_records == 0
    # an event newer than the cutoff stops the prefix even when no decision does
    decision_store.save(make_decision_record(created_at=at(10)))
    new_event = decision_store.append_event(make_event("key_created", at(7200)))
    decision_store.save(make_decision_record(created_at=at(11)))
    report = decision_store.purge_before(at(3600))
    assert (report.purged_records, report.checkpoint_seq) == (0, 9)  # e10 (seq 10) still holds the serving state
    decision_store.append_event(make_event("rollback", at(12)))
    report = decision_store.purge_before(at(3600))
    assert (report.purged_records, report.purged_events, report.checkpoint_seq) == (1, 1, 11)
    assert [e.seq for e in decision_store.events()[0]] == [new_event.seq, 14]
    assert decision_store.verify_chain().ok


# --- concurrency ----------------------------------------------------------------------------------------------


def _mixed_writer(url: str, worker: int, n: int, start: Any) -> None:
    store = open_decision_store(url)
    start.wait(30)
    pending: list[ShadowRecord] = []
    for i in range(n):
        decision = store.save(
            DecisionRecord(
                decision_id=f"w{worker}-{i}",
                application_id=f"app-{worker}",
                created_at=datetime.now(UTC),
                idempotency_key=None,
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
        pending.append(make_shadow(decision.record.decision_id, created_at=datetime.now(UTC)))
        if i % 4 == 3:
            store.save_shadows(pending)
            store.save_shadows(pending[:2])  # a retried batch adds nothing
            pending = []
        if i % 3 == 0:
            kind = "promotion" if i % 6 == 0 else "key_created"
            store.append_event(make_event(kind, datetime.now(UTC), event_id=f"ev-w{worker}-{i}"))
    store.save_shadows(pending)
    store.close()


def _entry_seqs(url: str) -> list[int]:
    rows = raw_execute(
        url,
        "SELECT seq FROM decision_records UNION ALL SELECT seq FROM audit_events "
        "UNION ALL SELECT seq FROM shadow_decisions",
    )
    return sorted(int(row[0]) for row in rows)


def test_processes_appending_decisions_events_and_shadow_batches_form_one_gap_free_chain(
    decision_store_url: str,
) -> None:
    workers, per_worker = 4, 30
    context = multiprocessing.get_context("fork")
    start = context.Barrier(workers)
    processes = [
        context.Process(target=_mixed_writer, args=(decision_store_url, w, per_worker, start)) for w in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * workers
    store = open_decision_store(decision_store_url)
    try:
        counts = store.count_entries()
        assert counts == {"decision": workers * per_worker, "event": workers * 10, "shadow": workers * per_worker}
        report = store.verify_chain()
        assert report.ok, [p.describe() for p in report.problems]
        assert report.head_seq == sum(counts.values()) == report.records_checked
        assert _entry_seqs(decision_store_url) == list(range(1, report.head_seq + 1))
        assert store.latest_serving_state() is not None
    finally:
        store.close()


def test_threads_sharing_one_store_append_all_kinds_to_one_chain(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    def work() -> None:
        for _ in range(10):
            decision = decision_store.save(make_decision_record())
            decision_store.append_event(make_event("policy_added"))
            decision_store.save_shadows(
                [make_shadow(decision.record.decision_id), make_shadow(decision.record.decision_id, "policy")]
            )

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert decision_store.count_entries() == {"decision": 40, "event": 40, "shadow": 80}
    report = decision_store.verify_chain()
    assert report.ok and report.head_seq == 160
    assert _entry_seqs(decision_store_url) == list(range(1, 161))


# --- migration of an existing chain ---------------------------------------------------------------------------


def test_a_chain_written_before_the_migration_still_verifies_after_it(
    decision_store_url: str, make_decision_record: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = "sqlite" if decision_store_url.startswith("sqlite") else "postgres"
    real = sql_module.load_migrations
    with monkeypatch.context() as patch:
        patch.setattr(sql_module, "load_migrations", lambda b: real(b)[:2])
        old = open_decision_store(decision_store_url)
        written = [old.save(make_decision_record(created_at=at(i))) for i in range(5)]
        assert old.schema_version() == 2
        old.close()
    assert not raw_execute(
        decision_store_url,
        "SELECT 1 FROM sqlite_master WHERE name = 'audit_events'"
        if backend == "sqlite"
        else "SELECT 1 FROM information_schema.tables WHERE table_name = 'audit_events' "
        "AND table_schema = current_schema()",
    )
    store = open_decision_store(decision_store_url)
    try:
        assert store.schema_version() == len(sql_module.load_migrations(backend))
        report = store.verify_chain()
        assert (report.ok, report.records_checked, report.head_hash) == (True, 5, written[-1].record_hash)
        event = store.append_event(make_event("promotion", at(10)))
        (shadow,) = store.save_shadows([make_shadow(written[0].record.decision_id, created_at=at(11))])
        assert (event.seq, event.prev_hash, shadow.seq) == (6, written[-1].record_hash, 7)
        assert store.verify_chain().ok
    finally:
        store.close()


# --- export ---------------------------------------------------------------------------------------------------


def _cli(*args: str) -> Any:
    return CliRunner().invoke(audit_group, list(args), catch_exceptions=False)


def test_exports_of_events_and_shadows_carry_their_hashes_and_all_entries_reverify_offline(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = interleaved(decision_store, make_decision_record)
    monkeypatch.setattr(export_module, "PAGE_SIZE", 3)  # pages of each kind, merged by seq across page boundaries

    events = _cli("export", "--entries", "events", "--database-url", decision_store_url)
    assert events.exit_code == 0, events.output
    lines = [json.loads(line) for line in events.stdout.splitlines()]
    assert [line["seq"] for line in lines] == [2, 5, 10]
    assert lines[0] == chain[1].to_dict()
    assert "exported 3 events" in events.stderr

    shadows = _cli("export", "--entries", "shadows", "--format", "csv", "--database-url", decision_store_url)
    assert shadows.exit_code == 0, shadows.output
    assert [row.split(",")[1] for row in shadows.stdout.splitlines()[1:]] == [
        who(c)[1] for c in chain if c.seq in (4, 7, 8)
    ]

    csv_events = _cli("export", "--entries", "events", "--format", "csv", "--database-url", decision_store_url)
    assert csv_events.stdout.splitlines()[0] == ",".join(EVENT_CSV_COLUMNS)

    everything = _cli("export", "--entries", "all", "--since", at(0).isoformat(), "--database-url", decision_store_url)
    assert everything.exit_code == 0, everything.output
    assert "exported 10 entries" in everything.stderr
    prev = GENESIS_HASH
    for seq, text in enumerate(everything.stdout.splitlines(), start=1):
        line = json.loads(text)
        assert (line.pop("seq"), line.pop("prev_hash")) == (seq, prev)
        record_hash = line.pop("record_hash")
        assert hashlib.sha256((prev + canonical_json(line)).encode()).hexdigest() == record_hash
        prev = record_hash
    assert prev == chain[-1].record_hash

    refused = CliRunner().invoke(
        audit_group, ["export", "--entries", "all", "--format", "csv", "--database-url", decision_store_url]
    )
    assert refused.exit_code == 2
    assert "JSON Lines only" in refused.output

    # the default export is still the decision records alone
    default = _cli("export", "--database-url", decision_store_url)
    assert [json.loads(line)["seq"] for line in default.stdout.splitlines()] == [1, 3, 6, 9]
    assert "exported 4 records" in default.stderr


def test_audit_purge_says_what_it_took_and_what_the_serving_state_kept(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    interleaved(decision_store, make_decision_record)  # created in 2024: older than any retention period
    result = _cli("purge", "--older-than-days", "30", "--database-url", decision_store_url)
    assert result.exit_code == 0, result.output
    assert "purged 4 records and 2 audit events, 3 shadow decisions created before" in result.output
    assert "kept everything from seq 10 on: the latest control event holds the serving state" in result.output
    verify = _cli("verify", "--database-url", decision_store_url)
    # the control event kept, and the purge itself recorded as an audit event
    assert (
        "chain OK: 2 entries checked (0 decisions, 2 audit events, 0 shadow decisions) after checkpoint seq 9"
        in verify.output
    )


def test_shadow_batches_do_not_wait_for_their_own_flush_and_decisions_still_do(
    decision_store_url: str, decision_store: Any, make_decision_record: MakeRecord
) -> None:
    """A shadow batch commits without its own fsync (SQLite synchronous=NORMAL, PostgreSQL synchronous_commit=off,
    for that transaction only); the connection's next decision commit waits for its fsync again."""
    decision = decision_store.save(make_decision_record())
    decision_store.save_shadows([make_shadow(decision.record.decision_id)])
    conn = decision_store._connection()  # this thread's connection, the one both writes used
    if decision_store_url.startswith("sqlite"):
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    else:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    decision_store.save(make_decision_record())
    assert decision_store.verify_chain().ok
