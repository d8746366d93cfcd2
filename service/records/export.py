"""Chain entries as export files: CSV rows or JSON Lines, page by page, hashes included (re-verifiable).

Decision records are the default export. Audit events and shadow decisions export the same way (``entries``
``events`` / ``shadows``); ``all`` merges the three kinds in seq order (JSON Lines only, their columns differ),
so one file re-verifies the whole chain offline: for every line, ``record_hash == sha256(prev_hash +
canonical_json(line without seq, prev_hash, record_hash and reason_texts))`` and ``prev_hash`` is the previous
line's ``record_hash``. An event or shadow line carries ``"entry"`` (part of its hashed content); a decision line
has none, exactly as in the decisions-only export.

A decision record whose payload names its reasons' texts by their sha256 (payload schema version 4: the store keeps
each catalog's texts once) is exported with that texts document beside it, ``reason_texts`` (the JSON object; in
CSV, its canonical JSON), so an export reads alone: ``sha256(canonical_json(reason_texts))`` is the
``payload.model.reason_texts_sha256`` the record's hash covers.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

from service.core.canonical import canonical_json
from service.records import DecisionStore, StoredEvent, StoredRecord, StoredShadow

EXPORT_FORMATS = ("jsonl", "csv")
#: What an export holds: one kind of chain entry, or all of them merged in seq order (JSON Lines only).
EXPORT_ENTRIES = ("decisions", "events", "shadows", "all")
PAGE_SIZE = 1000
Exported: TypeAlias = StoredRecord | StoredEvent | StoredShadow
_Entry = TypeVar("_Entry", StoredRecord, StoredEvent, StoredShadow)
CSV_COLUMNS = (
    "seq",
    "decision_id",
    "application_id",
    "created_at",
    "decision",
    "risk_band",
    "score",
    "model_name",
    "model_version",
    "reason_codes",
    "idempotency_key",
    "request_hash",
    "prev_hash",
    "record_hash",
    "payload",
    "reason_texts",
)
EVENT_CSV_COLUMNS = (
    "seq",
    "event_id",
    "created_at",
    "kind",
    "actor",
    "details",
    "serving_state",
    "prev_hash",
    "record_hash",
)
SHADOW_CSV_COLUMNS = (
    "seq",
    "shadow_id",
    "decision_id",
    "created_at",
    "kind",
    "model_name",
    "model_version",
    "policy_version",
    "catalog_version",
    "decision",
    "risk_band",
    "score",
    "reason_codes",
    "prev_hash",
    "record_hash",
    "payload",
)


def record_line(stored: StoredRecord) -> dict[str, Any]:
    """One record as exported: :meth:`StoredRecord.to_dict` and, when its payload names them, its reasons' texts
    (``reason_texts``, outside the hashed content; null when the store no longer holds them as named)."""
    data = stored.to_dict()
    sha = stored.record.named_reason_texts
    if sha is not None:
        texts = stored.record.find_reason_texts(sha)
        data["reason_texts"] = None if texts is None else texts.to_json()
    return data


def csv_row(stored: StoredRecord) -> dict[str, object]:
    """One record as a CSV row (reason codes joined by ``;``, payload and reason texts as canonical JSON)."""
    data = record_line(stored)
    data["reason_codes"] = ";".join(stored.record.reason_codes)
    data["payload"] = canonical_json(stored.record.payload)
    texts = data.get("reason_texts")
    data["reason_texts"] = "" if texts is None else canonical_json(texts)
    return {column: data[column] for column in CSV_COLUMNS}


def event_csv_row(stored: StoredEvent) -> dict[str, object]:
    """One audit event as a CSV row (actor, details and serving state as canonical JSON; no serving state: empty)."""
    data = stored.to_dict()
    for column in ("actor", "details", "serving_state"):
        data[column] = "" if data[column] is None else canonical_json(data[column])
    return {column: data[column] for column in EVENT_CSV_COLUMNS}


def shadow_csv_row(stored: StoredShadow) -> dict[str, object]:
    """One shadow decision as a CSV row (reason codes joined by ``;``, payload as canonical JSON)."""
    data = stored.to_dict()
    data["reason_codes"] = ";".join(stored.record.reason_codes)
    data["payload"] = canonical_json(stored.record.payload)
    return {column: data[column] for column in SHADOW_CSV_COLUMNS}


def _pages(search: Callable[..., tuple[list[_Entry], str | None]], **filters: Any) -> Iterator[list[_Entry]]:
    cursor: str | None = None
    while True:
        page, cursor = search(**filters, cursor=cursor, limit=PAGE_SIZE)
        if page:
            yield page
        if cursor is None:
            return


def record_pages(store: DecisionStore, **filters: Any) -> Iterator[list[StoredRecord]]:
    """Pages of matching records, in seq order (no transaction is held between pages)."""
    return _pages(store.search, **filters)


def entry_pages(
    store: DecisionStore, entries: str = "decisions", since: datetime | None = None, until: datetime | None = None
) -> Iterator[list[Exported]]:
    """Pages of the chosen entries created in ``[since, until)``, in seq order (``all``: the three kinds merged)."""
    if entries not in EXPORT_ENTRIES:
        raise ValueError(f"unknown entries {entries!r}: one of {', '.join(EXPORT_ENTRIES)}")
    streams: list[Iterator[list[Any]]] = []
    if entries in ("decisions", "all"):
        streams.append(record_pages(store, since=since, until=until))
    if entries in ("events", "all"):
        streams.append(_pages(store.events, since=since, until=until))
    if entries in ("shadows", "all"):
        streams.append(_pages(store.shadows, since=since, until=until))
    if len(streams) == 1:
        yield from streams[0]
        return
    page: list[Exported] = []
    merged: Iterator[Exported] = heapq.merge(
        *((entry for p in stream for entry in p) for stream in streams), key=lambda entry: entry.seq
    )
    for entry in merged:
        page.append(entry)
        if len(page) == PAGE_SIZE:
            yield page
            page = []
    if page:
        yield page


def format_entries(entries: Sequence[Exported], kind: str, fmt: str, header: bool = False) -> str:
    """Entries of one kind (``decisions``, ``events``, ``shadows``; ``all`` in JSON Lines only) as CSV rows (with
    the header row if asked) or JSON Lines; ``decisions`` is exactly :func:`format_records`."""
    if fmt == "jsonl":
        return "".join(
            json.dumps(
                record_line(e) if isinstance(e, StoredRecord) else e.to_dict(), sort_keys=True, ensure_ascii=False
            )
            + "\n"
            for e in entries
        )
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r}")
    columns: tuple[str, ...]
    if kind == "decisions":
        columns = CSV_COLUMNS
        rows = [csv_row(e) for e in entries if isinstance(e, StoredRecord)]
    elif kind == "events":
        columns = EVENT_CSV_COLUMNS
        rows = [event_csv_row(e) for e in entries if isinstance(e, StoredEvent)]
    elif kind == "shadows":
        columns = SHADOW_CSV_COLUMNS
        rows = [shadow_csv_row(e) for e in entries if isinstance(e, StoredShadow)]
    else:
        raise ValueError(f"CSV holds one kind of entry (decisions, events or shadows), not {kind!r}: use jsonl")
    if len(rows) != len(entries):
        raise ValueError(f"a {kind} export was given entries of another kind")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def format_records(records: list[StoredRecord], fmt: str, header: bool = False) -> str:
    """Records as CSV rows (with the header row if asked) or JSON Lines."""
    return format_entries(records, "decisions", fmt, header)


def export_chunks(store: DecisionStore, fmt: str, **filters: Any) -> Iterator[str]:
    """Matching records in seq order as CSV (header first) or JSON Lines text, one chunk per page.

    The first page is read before the first chunk is yielded, so a failing store or a bad filter raises
    here, before a streaming response has started.
    """
    pages = record_pages(store, **filters)
    first = next(pages, None)

    def chunks() -> Iterator[str]:
        yield format_records(first or [], fmt, header=True)
        for page in pages:
            yield format_records(page, fmt)

    return chunks()
