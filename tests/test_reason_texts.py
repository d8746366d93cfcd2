"""The reasons' texts kept once per catalog in the decision store (real SQLite files and a real PostgreSQL schema):
records read back in full by a store that has never seen them, and a texts document changed or removed in the
store is found by ``audit verify`` and never words a record otherwise."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from service.core.canonical import canonical_json
from service.core.recorded import ApplicationRequest, PayloadError, RecordedDecision
from service.decisions import record_of
from service.records import GENESIS_HASH, DecisionRecord, open_decision_store
from service.records.chain import CHANGED, DELETED
from service.records.export import format_records, record_pages
from service.runtime import ServedModel
from tests.test_records import raw_execute


@pytest.fixture(scope="module")
def served(trained_models: Any) -> ServedModel:
    store, result = trained_models
    return ServedModel.load(store, result.champion.name, result.champion.version)


def _records(served: ServedModel, n: int) -> list[DecisionRecord]:
    applicants = [dict(a) for a in served.bundle.reference["applications"][:n]]
    batch = served.engine.decide(applicants)
    records = []
    for i, applicant in enumerate(applicants):
        recorded = served.recorded(
            decision_id=uuid.uuid4().hex,
            created_at=datetime.now(UTC),
            request=ApplicationRequest(f"APP-{i}", applicant),
            decision=batch.decision(i),
            decided_by={"key_id": "k" * 12, "label": "test", "role": "scorer"},
            latency_ms=1.0,
        )
        records.append(record_of(recorded, None, recorded.request.request_hash))
    return records


def _save(url: str, records: list[DecisionRecord]) -> None:
    store = open_decision_store(url)
    try:
        for record in records[:2]:
            store.save(record)
        store.save_many(records[2:])  # one transaction of several records naming the same texts
    finally:
        store.close()


def test_texts_are_kept_once_and_read_back_by_a_store_that_never_saw_them(
    served: ServedModel, decision_store_url: str
) -> None:
    records = _records(served, 12)
    _save(decision_store_url, records)
    texts = served.engine.reason_texts
    rows = raw_execute(decision_store_url, "SELECT sha256, catalog_version, body FROM reason_texts")
    assert rows == [(texts.sha256, served.catalog.version, texts.body)]
    payloads = raw_execute(decision_store_url, "SELECT payload FROM decision_records ORDER BY seq")
    assert len(payloads) == 12
    assert all("customer_text" not in p and texts.sha256 in p for (p,) in payloads)

    fresh = open_decision_store(decision_store_url)
    try:
        for record in records:
            stored = fresh.get(record.decision_id)
            assert stored is not None and stored.record.reason_texts is None  # only its store has the texts
            read = RecordedDecision.of(stored.record)
            assert record.made_from is not None
            assert read.decision.reasons == record.made_from.decision.reasons
            assert [r.customer_text for r in read.decision.reasons] == [
                texts.texts[r.code][0] for r in read.decision.reasons
            ]
        # one read of the document for the whole process, however many records
        assert fresh.reason_texts(texts.sha256) is fresh.reason_texts(texts.sha256)
        assert fresh.reason_texts("0" * 64) is None
        assert fresh.verify_chain().ok
        # an export reads alone: each record with the texts it names, outside the hashed content
        prev = GENESIS_HASH
        for text in format_records(next(record_pages(fresh)), "jsonl").splitlines():
            line = json.loads(text)
            assert hashlib.sha256(canonical_json(line["reason_texts"]).encode()).hexdigest() == texts.sha256
            assert line["payload"]["model"]["reason_texts_sha256"] == texts.sha256
            for key in ("seq", "prev_hash", "reason_texts"):
                line.pop(key)
            record_hash = line.pop("record_hash")
            assert hashlib.sha256((prev + canonical_json(line)).encode()).hexdigest() == record_hash
            prev = record_hash
        assert prev == fresh.verify_chain().head_hash
    finally:
        fresh.close()


def test_texts_changed_or_removed_in_the_store_are_named_and_never_word_a_record(
    served: ServedModel, decision_store_url: str
) -> None:
    records = _records(served, 5)
    _save(decision_store_url, records)
    sha = served.engine.reason_texts.sha256
    first = records[0].decision_id
    # the same JSON with one auditor text changed: a well-formed document, no longer the one named
    body = raw_execute(decision_store_url, "SELECT body FROM reason_texts")[0][0]
    code = records[0].reason_codes[0]
    changed = body.replace(served.engine.reason_texts.texts[code][1], "a text nobody approved", 1)
    assert changed != body
    raw_execute(decision_store_url, "UPDATE reason_texts SET body = ?", (changed,))

    store = open_decision_store(decision_store_url)
    try:
        stored = store.get(first)
        assert stored is not None
        with pytest.raises(PayloadError, match=rf"reason_texts_sha256: the decision store holds no reason texts {sha}"):
            RecordedDecision.of(stored.record)
        report = store.verify_chain()
        assert [(p.kind, p.seq, p.entry_id) for p in report.problems] == [(CHANGED, 1, first)]
        assert sha in report.problems[0].detail and "every later one" in report.problems[0].detail
    finally:
        store.close()

    raw_execute(decision_store_url, "DELETE FROM reason_texts")
    store = open_decision_store(decision_store_url)
    try:
        report = store.verify_chain()
        assert [(p.kind, p.seq, p.entry_id) for p in report.problems] == [(DELETED, 1, first)]
        # saving another record worded with these texts puts the document back, as it was
        store.save(_records(served, 1)[0])
        assert store.verify_chain().ok
        found = store.get(first)
        assert found is not None
        assert (
            RecordedDecision.of(found.record).decision.reasons[0].auditor_text
            == (served.engine.reason_texts.texts[code][1])
        )
    finally:
        store.close()


def test_a_records_payload_is_smaller_by_the_texts(served: ServedModel) -> None:
    for record in _records(served, 20):
        recorded = record.made_from
        assert recorded is not None
        named = canonical_json(record.payload)
        inline = canonical_json(
            RecordedDecision.new(
                decision_id=recorded.decision_id,
                created_at=recorded.created_at,
                request=recorded.request,
                decision=recorded.decision,
                model_name=recorded.model_name,
                model_version=recorded.model_version,
                provenance=recorded.payload.model,
                score_scale=recorded.payload.score_scale,
                decided_by=recorded.payload.decided_by,
                latency_ms=recorded.payload.latency_ms,
            ).payload_json
        )
        texts = sum(len(r.customer_text) + len(r.auditor_text) for r in recorded.decision.reasons)
        assert len(inline) - len(named) >= texts - 100  # every text gone, a 64-character sha256 in their place


def test_a_record_copied_to_another_store_brings_its_texts(
    served: ServedModel, decision_store_url: str, tmp_path: Any
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.sqlite3'}"
    records = _records(served, 3)
    _save(source_url, records)
    source, target = open_decision_store(source_url), open_decision_store(decision_store_url)
    try:
        read = [source.get(r.decision_id) for r in records]
        assert all(s is not None and s.record.reason_texts is None for s in read)
        target.save_many([s.record for s in read if s is not None])  # found through the source store
    finally:
        source.close()
        target.close()
    assert len(raw_execute(decision_store_url, "SELECT sha256 FROM reason_texts")) == 1
    fresh = open_decision_store(decision_store_url)
    try:
        for record in records:
            stored = fresh.get(record.decision_id)
            assert stored is not None and record.made_from is not None
            assert RecordedDecision.of(stored.record).decision.reasons == record.made_from.decision.reasons
        assert fresh.verify_chain().ok
    finally:
        fresh.close()
