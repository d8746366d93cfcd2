"""Decision records, their canonical form and the hash that chains them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.core.canonical import canonical_json

#: ``prev_hash`` of the first record ever stored.
GENESIS_HASH = "0" * 64

_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class DecisionRecord:
    """Everything recorded about one decision, as the API hands it over."""

    decision_id: str
    application_id: str
    created_at: datetime
    idempotency_key: str | None
    request_hash: str
    decision: str
    risk_band: str
    score: int
    model_name: str
    model_version: str
    reason_codes: tuple[str, ...]
    payload: dict[str, Any]

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ValueError("DecisionRecord.created_at must be timezone-aware (UTC)")
        # Normalised so a record read back from either backend compares equal to the one saved.
        object.__setattr__(self, "created_at", self.created_at.astimezone(UTC))
        object.__setattr__(self, "reason_codes", tuple(str(code) for code in self.reason_codes))
        if isinstance(self.score, bool) or not isinstance(self.score, int):
            raise ValueError("DecisionRecord.score must be an int")


@dataclass(frozen=True)
class StoredRecord:
    """A record as stored: its position in the chain and the hashes that link it."""

    seq: int
    record: DecisionRecord
    prev_hash: str
    record_hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the record's fields plus ``seq``, ``prev_hash`` and ``record_hash``."""
        data = record_content(self.record)
        data.update(seq=self.seq, prev_hash=self.prev_hash, record_hash=self.record_hash)
        return data


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds and ``Z`` (sorts lexicographically in time order)."""
    return moment.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Inverse of :func:`format_timestamp`."""
    return datetime.strptime(text, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def record_content(record: DecisionRecord) -> dict[str, Any]:
    """The hashed fields of a record, JSON-ready."""
    return {
        "decision_id": record.decision_id,
        "application_id": record.application_id,
        "created_at": format_timestamp(record.created_at),
        "idempotency_key": record.idempotency_key,
        "request_hash": record.request_hash,
        "decision": record.decision,
        "risk_band": record.risk_band,
        "score": record.score,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "reason_codes": list(record.reason_codes),
        "payload": record.payload,
    }


def canonical_content(record: DecisionRecord, payload_text: str | None = None) -> str:
    """The canonical JSON of every record field: what the chain hash covers.

    ``payload_text``, when given, must be ``canonical_json(record.payload)``; it is spliced in rather than
    serialised again (the payload is most of the record). The result is the same text either way: the
    object is assembled key by key in sorted order with the same separators ``canonical_json`` uses.
    """
    content = record_content(record)
    parts = []
    for key in sorted(content):
        text = payload_text if key == "payload" and payload_text is not None else canonical_json(content[key])
        parts.append(f"{canonical_json(key)}:{text}")
    return "{" + ",".join(parts) + "}"


def chain_hash(prev_hash: str, record: DecisionRecord, content: str | None = None) -> str:
    """``sha256(prev_hash + canonical_content(record))`` as lowercase hex (``content`` if already computed)."""
    text = canonical_content(record) if content is None else content
    return hashlib.sha256((prev_hash + text).encode("utf-8")).hexdigest()
