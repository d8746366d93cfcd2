"""Decision records as export files: CSV rows or JSON Lines, page by page, hashes included (re-verifiable)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from service.core.canonical import canonical_json
from service.records import DecisionStore, StoredRecord

EXPORT_FORMATS = ("jsonl", "csv")
PAGE_SIZE = 1000
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
)


def csv_row(stored: StoredRecord) -> dict[str, object]:
    """One record as a CSV row (reason codes joined by ``;``, payload as canonical JSON)."""
    data = stored.to_dict()
    data["reason_codes"] = ";".join(stored.record.reason_codes)
    data["payload"] = canonical_json(stored.record.payload)
    return {column: data[column] for column in CSV_COLUMNS}


def record_pages(store: DecisionStore, **filters: Any) -> Iterator[list[StoredRecord]]:
    """Pages of matching records, in seq order (no transaction is held between pages)."""
    cursor: str | None = None
    while True:
        page, cursor = store.search(**filters, cursor=cursor, limit=PAGE_SIZE)
        if page:
            yield page
        if cursor is None:
            return


def format_records(records: list[StoredRecord], fmt: str, header: bool = False) -> str:
    """Records as CSV rows (with the header row if asked) or JSON Lines."""
    buffer = io.StringIO()
    if fmt == "csv":
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        if header:
            writer.writeheader()
        writer.writerows(csv_row(stored) for stored in records)
    elif fmt == "jsonl":
        for stored in records:
            buffer.write(json.dumps(stored.to_dict(), sort_keys=True, ensure_ascii=False) + "\n")
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    return buffer.getvalue()


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
