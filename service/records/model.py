"""Decision records, their canonical form and the hash that chains them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from service.core.canonical import canonical_json, iso_utc
from service.core.texts import NAME_KEY

if TYPE_CHECKING:
    from service.core.recorded import RecordedDecision
    from service.core.texts import ReasonTexts, TextsLookup

#: ``prev_hash`` of the first record ever stored.
GENESIS_HASH = "0" * 64

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

#: The three kinds of chain entry; a verification problem names an entry as ``<kind>_id <id>``.
ENTRY_DECISION = "decision"
ENTRY_EVENT = "event"
ENTRY_SHADOW = "shadow"
ENTRY_KINDS = (ENTRY_DECISION, ENTRY_EVENT, ENTRY_SHADOW)


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
    #: The typed decision the record was made from, when the decision service made it (never stored or hashed, not
    #: compared): what is derived from a new record (its report row) is read from it instead of parsing the payload,
    #: as long as ``payload`` is the very object it made (``RecordedDecision.payload_json``).
    typed: RecordedDecision | None = field(default=None, compare=False, repr=False)
    #: The texts document of the record's reasons (payload schema version 4 names it by its sha256 and leaves the
    #: texts out): a new record carries it, and the store keeps it once, with the record's transaction.
    reason_texts: ReasonTexts | None = field(default=None, compare=False, repr=False)
    #: Where a stored record finds the texts document its payload names: the store it was read from.
    texts_source: TextsLookup | None = field(default=None, compare=False, repr=False)

    @property
    def named_reason_texts(self) -> str | None:
        """The sha256 of the texts document the payload names (schema version 4), else None."""
        model = self.payload.get("model")
        sha = model.get(NAME_KEY) if isinstance(model, dict) else None
        return sha if isinstance(sha, str) else None

    def find_reason_texts(self, sha256: str) -> ReasonTexts | None:
        """The texts document with this sha256: the record's own, or its store's; None if neither has it."""
        if self.reason_texts is not None and self.reason_texts.sha256 == sha256:
            return self.reason_texts
        return None if self.texts_source is None else self.texts_source(sha256)

    @property
    def made_from(self) -> RecordedDecision | None:
        """``typed``, while ``payload`` is still the very object it made; else None (the payload is the truth)."""
        typed = self.typed
        return typed if typed is not None and self.payload is typed.payload_json else None

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
    """ISO-8601 UTC with microseconds and ``Z`` (sorts lexicographically in time order): :func:`iso_utc`, as the
    API shows every time stamp."""
    return iso_utc(moment)


def parse_timestamp(text: str) -> datetime:
    """Inverse of :func:`format_timestamp` (ValueError for any other form: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``)."""
    if not _TIMESTAMP.fullmatch(text):
        raise ValueError(f"time stamp {text!r} is not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return datetime.fromisoformat(text)


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


def event_content(event: AuditEvent) -> dict[str, Any]:
    """The hashed fields of an audit event, JSON-ready; ``"entry": "event"`` keeps it from verifying as another kind."""
    return {
        "entry": ENTRY_EVENT,
        "event_id": event.event_id,
        "created_at": format_timestamp(event.created_at),
        "kind": event.kind,
        "actor": event.actor,
        "details": event.details,
        "serving_state": event.serving_state,
    }


def shadow_content(record: ShadowRecord) -> dict[str, Any]:
    """The hashed fields of a shadow decision, JSON-ready; ``"entry": "shadow"`` keeps it from verifying as another
    kind (a decision record's content has no ``entry`` key, so existing chains hash exactly as before)."""
    return {
        "entry": ENTRY_SHADOW,
        "shadow_id": record.shadow_id,
        "decision_id": record.decision_id,
        "created_at": format_timestamp(record.created_at),
        "kind": record.kind,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "policy_version": record.policy_version,
        "catalog_version": record.catalog_version,
        "decision": record.decision,
        "risk_band": record.risk_band,
        "score": record.score,
        "reason_codes": list(record.reason_codes),
        "payload": record.payload,
    }


def entry_content(entry: ChainEntry) -> dict[str, Any]:
    """The hashed fields of any chain entry: a decision record, an audit event or a shadow decision."""
    if isinstance(entry, DecisionRecord):
        return record_content(entry)
    if isinstance(entry, AuditEvent):
        return event_content(entry)
    return shadow_content(entry)


def canonical_content(record: ChainEntry, payload_text: str | None = None) -> str:
    """The canonical JSON of every field of a chain entry: what the chain hash covers.

    ``payload_text``, when given, must be ``canonical_json(record.payload)`` (decision records and shadow
    decisions); it is spliced in rather than serialised again (the payload is most of the record). The result is
    the same text either way: the object is assembled key by key in sorted order with the same separators
    ``canonical_json`` uses.
    """
    content = entry_content(record)
    if payload_text is None or "payload" not in content:
        return canonical_json(content)
    # the keys before and after "payload" serialised in one call each (sorted like canonical_json sorts them),
    # the payload's text spliced between: the same text as canonical_json(content), at a fraction of the cost
    before = canonical_json({k: v for k, v in content.items() if k < "payload"})[1:-1]
    after = canonical_json({k: v for k, v in content.items() if k > "payload"})[1:-1]
    return "{" + ",".join(part for part in (before, f'"payload":{payload_text}', after) if part) + "}"


def chain_hash(prev_hash: str, record: ChainEntry, content: str | None = None) -> str:
    """``sha256(prev_hash + canonical_content(record))`` as lowercase hex (``content`` if already computed)."""
    text = canonical_content(record) if content is None else content
    return hashlib.sha256((prev_hash + text).encode("utf-8")).hexdigest()


# ---- other entries of the same chain: admin audit events and shadow decisions -------------------------------
#: Kinds of admin audit event. Those in ``CONTROL_EVENTS`` change what is served and carry the whole serving
#: state after the change (``AuditEvent.serving_state``): the latest one is the deployment's serving state.
CONTROL_EVENTS = (
    "promotion",  # a model version (and optionally a policy) becomes the champion
    "rollback",  # the previous champion is restored
    "shadow_on",  # a challenger model version runs in shadow
    "shadow_off",
    "policy_shadow_on",  # a candidate policy and reason catalog run in shadow
    "policy_shadow_off",
)
EVENT_KINDS = (*CONTROL_EVENTS, "purge", "key_created", "key_revoked", "policy_added", "review", "batch_scored")


@dataclass(frozen=True)
class AuditEvent:
    """An admin action: what was done, by whom, when; chained with the decisions (same ``seq`` order).

    ``actor`` names who did it: an API key (``{"key_id", "label", "role"}``) or a command-line user
    (``{"cli": "user@host"}``); never a key itself. ``details`` is the action's JSON (e.g. ``{"from": {...},
    "to": {...}, "note": "..."}``). ``serving_state`` is set for control events only (see ``CONTROL_EVENTS``).
    """

    event_id: str
    created_at: datetime
    kind: str
    actor: dict[str, Any]
    details: dict[str, Any]
    serving_state: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ValueError("AuditEvent.created_at must be timezone-aware (UTC)")
        object.__setattr__(self, "created_at", self.created_at.astimezone(UTC))
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"AuditEvent.kind must be one of {EVENT_KINDS}, got {self.kind!r}")
        if (self.serving_state is not None) != (self.kind in CONTROL_EVENTS):
            raise ValueError("AuditEvent.serving_state is set exactly for control events")


@dataclass(frozen=True)
class StoredEvent:
    """An audit event as stored: its position in the chain and the hashes that link it."""

    seq: int
    event: AuditEvent
    prev_hash: str
    record_hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the hashed content (``entry`` included) plus ``seq``, ``prev_hash`` and ``record_hash``."""
        data = event_content(self.event)
        data.update(seq=self.seq, prev_hash=self.prev_hash, record_hash=self.record_hash)
        return data


#: What a shadow decision shadows: a challenger model version, or a candidate policy (with its catalog).
SHADOW_KINDS = ("challenger", "policy")


@dataclass(frozen=True)
class ShadowRecord:
    """What a shadow (a challenger model, or a candidate policy on the champion's model) decided for a live
    request; never returned to the caller. ``decision_id`` is the champion decision it shadows (one twin per
    decision and kind). ``payload`` is the typed shadow payload (``service.core.recorded.ShadowDecision``)."""

    shadow_id: str
    decision_id: str
    created_at: datetime
    kind: str
    model_name: str
    model_version: str
    policy_version: str
    catalog_version: str
    decision: str
    risk_band: str
    score: int
    reason_codes: tuple[str, ...]
    payload: dict[str, Any]

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ValueError("ShadowRecord.created_at must be timezone-aware (UTC)")
        object.__setattr__(self, "created_at", self.created_at.astimezone(UTC))
        object.__setattr__(self, "reason_codes", tuple(str(code) for code in self.reason_codes))
        if self.kind not in SHADOW_KINDS:
            raise ValueError(f"ShadowRecord.kind must be one of {SHADOW_KINDS}, got {self.kind!r}")
        if isinstance(self.score, bool) or not isinstance(self.score, int):
            raise ValueError("ShadowRecord.score must be an int")


@dataclass(frozen=True)
class StoredShadow:
    """A shadow decision as stored: its position in the chain and the hashes that link it."""

    seq: int
    record: ShadowRecord
    prev_hash: str
    record_hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the hashed content (``entry`` included) plus ``seq``, ``prev_hash`` and ``record_hash``."""
        data = shadow_content(self.record)
        data.update(seq=self.seq, prev_hash=self.prev_hash, record_hash=self.record_hash)
        return data


#: Anything the hash chain holds.
ChainEntry: TypeAlias = DecisionRecord | AuditEvent | ShadowRecord
