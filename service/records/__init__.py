"""The decision store: a durable, tamper-evident, append-only audit trail of credit decisions, of the admin
actions that changed what is served, and of the shadow decisions taken beside the live ones.

Backends (chosen by URL, see :func:`open_decision_store`):

- ``sqlite:///var/decisions.sqlite3`` (path relative to the working directory; ``sqlite:////abs/path`` for
  an absolute one) — the embedded default, safe for several processes (gunicorn workers) on ONE host.
- ``postgresql://user@host:5432/db`` — production; safe for several workers on several replicas. Tables
  live in the connection's current schema (``?options=-csearch_path%3Dname`` selects another one).

Schema migrations are numbered SQL files per backend (``migrations/{sqlite,postgres}/NNNN_name.sql``),
applied in order inside one transaction when a store is opened and recorded in ``schema_migrations``.

Hash chain
    The chain holds three kinds of entry, each in its own table, all numbered by ONE ``seq``:

    - decision records (``decision_records``, :class:`DecisionRecord`): what was decided for a request;
    - admin audit events (``audit_events``, :class:`AuditEvent`): promotions, rollbacks, shadow switches,
      purges, key changes; *control* events carry the whole serving state after the change, and the latest
      one (:meth:`DecisionStore.latest_serving_state`) is what every worker serves;
    - shadow decisions (``shadow_decisions``, :class:`ShadowRecord`): what a challenger model or a candidate
      policy decided for a live request, one per (champion ``decision_id``, kind), never shown to the caller.

    Every entry is stored with ``seq`` (its position), ``prev_hash`` (the ``record_hash`` of entry
    ``seq - 1``, whatever its kind, or 64 zeros for the first) and ``record_hash = sha256(prev_hash +
    canonical content)``, where the canonical content is the JSON of all the entry's fields (sorted keys,
    separators ``,``/``:``, UTF-8, ``created_at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``). Events and shadows
    also carry ``"entry": "event"`` / ``"entry": "shadow"``, so no entry can verify as another kind;
    decision records carry no ``entry`` key (their content is exactly what it was before the chain held other
    entries, so older chains verify unchanged). A one-row chain-head table holds the last ``seq`` and
    ``record_hash``; every append of any kind locks it, reads it, inserts the entry (or, for a group commit
    of decisions and a batch of shadows, the entries) and updates it in one transaction (SQLite: ``BEGIN IMMEDIATE`` takes the database
    write lock; PostgreSQL: a per-schema ``pg_advisory_xact_lock`` queues appenders, then ``SELECT ... FOR
    UPDATE`` on the head row). So appends from any number of workers and replicas form one total order, with
    no gaps and no forks, and :meth:`DecisionStore.verify_chain` is a single pass over the three tables merged
    by ``seq``. It detects and names entries that were changed, deleted, inserted or reordered (``decision_id
    …``, ``event_id …``, ``shadow_id …``), and a chain head that does not match the last entry. Someone with
    write access who rewrites the whole chain and its head is caught only by comparing the head hash with
    a copy kept elsewhere (``audit verify`` prints it; publish it regularly).

Retention
    :meth:`DecisionStore.purge_before` deletes the oldest entries (a prefix of the chain, from all three
    tables: events and shadows inside the prefix go with the decisions) and, in the same transaction, writes
    a checkpoint row holding the last purged ``seq`` and its ``record_hash``; verification then starts from
    the latest checkpoint instead of the genesis hash. The prefix ends before the first entry created at or
    after the cutoff, and before the latest control event (the serving state is never purged).

Durability (a record is committed before :meth:`DecisionStore.save` returns; on any failure ``save``
raises :class:`StoreUnavailable` and the API answers 503 — a record is never silently dropped)
    - Group commit: :meth:`DecisionStore.save_many` appends many records in ONE transaction (one chain lock, one
      head update, one durable COMMIT), each with its own outcome (stored, or the IdempotencyConflict /
      DuplicateDecisionId it alone failed with; a store failure raises and writes none of them).
      :meth:`DecisionStore.save_grouped`, what the decision service calls, queues the record in the process's
      group commit (:mod:`service.records.group`): the first waiting thread that finds no commit under way commits
      every record waiting at that moment with ``save_many`` and only then wakes each request with its own result:
      same guarantees as ``save``, one fsync for many concurrent requests, no thread hand-over when alone.
    - Shadow decisions (``save_shadows``) are the one exception: their commit does not wait for its own flush
      (SQLite ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off`` for that transaction). No one is
      answered with them, and the log is sequential: the next decision's commit makes them durable with it, in
      chain order, so a power cut can lose only the shadows recorded after the last decision.
    - SQLite: WAL journal with ``synchronous=FULL``: the WAL is fsynced at every commit, so a committed
      decision survives a crash of the process (e.g. a SIGKILLed worker) and of the operating system or
      power, provided the disk honours fsync. Writers wait up to ``busy_timeout`` (30 s) for each other.
      Checkpoints (WAL into the database file) run in a background thread, never in a request's commit
      (:class:`service.records.sqlite.WalCheckpointer`).
    - PostgreSQL: the commit is as durable as the server makes it: with the defaults ``fsync=on`` and
      ``synchronous_commit=on`` it survives a server crash and power loss; with synchronous replication
      it also survives losing the primary. If the connection drops during COMMIT the outcome is unknown;
      the client retries with its ``Idempotency-Key`` and gets the original decision if it was stored.

Errors (one tree with the rest of the service, :mod:`service.errors`; none of them knows HTTP)::

    RecordsError              base of every decision-store failure
    ├── StoreUnavailable      could not commit or read durably
    │   ├── StoreFull         the database or its disk is full (the transaction rolled back)
    │   └── StoreBusy         a lock wait (or statement) ran past its bound
    ├── DuplicateDecisionId   another record already has this decision_id (a bug, never the client's)
    ├── DuplicateEntryId      another event (shadow) already has this event_id (shadow_id) with other content
    └── UnknownShadowedDecisions  a shadow batch names decisions the store does not hold; none was stored
    IdempotencyConflict       (a Conflict) key already used with a different request body
    InvalidParameter          (an InvalidInput) malformed cursor, limit out of range, naive datetimes,
                              unknown event or shadow kind
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from service.errors import (
    DuplicateDecisionId,
    DuplicateEntryId,
    IdempotencyConflict,
    RecordsError,
    StoreUnavailable,
    UnknownShadowedDecisions,
)
from service.records.chain import ChainProblem, ChainReport, PurgeReport
from service.records.model import (
    GENESIS_HASH,
    AuditEvent,
    DecisionRecord,
    ShadowRecord,
    StoredEvent,
    StoredRecord,
    StoredShadow,
    canonical_content,
    chain_hash,
)

DEFAULT_DATABASE_URL = "sqlite:///var/decisions.sqlite3"

__all__ = [
    "DEFAULT_DATABASE_URL",
    "GENESIS_HASH",
    "AuditEvent",
    "ChainProblem",
    "ChainReport",
    "DecisionRecord",
    "DecisionStore",
    "DuplicateDecisionId",
    "DuplicateEntryId",
    "IdempotencyConflict",
    "PurgeReport",
    "RecordsError",
    "ShadowRecord",
    "StoreUnavailable",
    "StoredEvent",
    "StoredRecord",
    "StoredShadow",
    "UnknownShadowedDecisions",
    "canonical_content",
    "chain_hash",
    "open_decision_store",
]


class DecisionStore(Protocol):
    """What the API and the CLI need of the audit trail."""

    def save(self, record: DecisionRecord) -> StoredRecord:
        """Append durably (committed before returning); same idempotency key and body returns the original."""
        ...

    def save_grouped(self, record: DecisionRecord) -> StoredRecord:
        """:meth:`save`, sharing one transaction and one durable commit with what other threads save meanwhile."""
        ...

    def save_all_grouped(self, records: Sequence[DecisionRecord]) -> list[StoredRecord | Exception]:
        """:meth:`save_grouped` for several records at once (one commit for a batch request's items, not one
        each); each result is the stored record or the error it failed with."""
        ...

    def save_many(self, records: Sequence[DecisionRecord]) -> list[StoredRecord | Exception]:
        """Append records in ONE transaction; each result is the stored record or the error it alone failed with;
        a store failure raises StoreUnavailable and writes nothing."""
        ...

    def get(self, decision_id: str) -> StoredRecord | None:
        """The record of a decision, or None."""
        ...

    def get_by_idempotency_key(self, key: str) -> StoredRecord | None:
        """The record saved with this idempotency key, or None."""
        ...

    def get_by_idempotency_keys(self, keys: Sequence[str]) -> dict[str, StoredRecord]:
        """The records saved with any of these idempotency keys, by key (one read)."""
        ...

    def get_by_legacy_batch_item_keys(self, keys: Sequence[str]) -> dict[str, StoredRecord]:
        """The records saved as batch items ``<key>#<index>`` before batch items had their own namespace."""
        ...

    def count(self, since: datetime | None = None, until: datetime | None = None) -> int:
        """How many decision records are stored (created in [``since``, ``until``) when given)."""
        ...

    def ping(self) -> None:
        """Reach the database now (reconnecting if need be), or StoreUnavailable."""
        ...

    def count_entries(self) -> dict[str, int]:
        """How many entries of each kind (``decision``, ``event``, ``shadow``) the chain holds."""
        ...

    def search(
        self,
        *,
        application_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        decision: str | None = None,
        risk_band: str | None = None,
        reason_code: str | None = None,
        model_version: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[StoredRecord], str | None]:
        """Matching records in seq order and the cursor of the next page (None on the last page)."""
        ...

    def iter_records(self, since_seq: int = 0) -> Iterator[StoredRecord]:
        """Every record after ``since_seq`` in seq order."""
        ...

    def append_event(self, event: AuditEvent) -> StoredEvent:
        """Append an admin audit event to the chain durably (the same event_id again returns the stored one)."""
        ...

    def latest_serving_state(self) -> StoredEvent | None:
        """The most recent control event (the serving state), or None; cheap enough to poll every second."""
        ...

    def events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[StoredEvent], str | None]:
        """Matching audit events in seq order and the cursor of the next page (None on the last page)."""
        ...

    def save_shadows(self, records: Sequence[ShadowRecord]) -> list[StoredShadow]:
        """Append shadow decisions in one transaction; an already stored (decision_id, kind) returns the stored one;
        a batch naming an unknown decision raises UnknownShadowedDecisions and writes nothing."""
        ...

    def save_shadows_grouped(self, records: Sequence[ShadowRecord]) -> list[StoredShadow]:
        """:meth:`save_shadows` in the transaction of the process's group commit (with the decisions committing)."""
        ...

    def shadows_for(self, decision_ids: Sequence[str], kind: str | None = None) -> dict[str, list[StoredShadow]]:
        """The shadows of these decisions by decision_id, each list in seq order (one read)."""
        ...

    def shadows(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[StoredShadow], str | None]:
        """Matching shadow decisions in seq order and the cursor of the next page (None on the last page)."""
        ...

    def iter_shadow_pairs(
        self, *, since: datetime | None = None, until: datetime | None = None, kind: str
    ) -> Iterator[tuple[StoredRecord, StoredShadow]]:
        """Every shadow of ``kind`` created in ``[since, until)`` with its champion's record, in seq order."""
        ...

    def verify_chain(self) -> ChainReport:
        """Check the whole hash chain (decisions, events, shadows) and name every bad entry."""
        ...

    def purge_before(self, cutoff: datetime) -> PurgeReport:
        """Delete the entries created before ``cutoff`` (a seq prefix) and keep the chain verifiable."""
        ...

    @property
    def closed(self) -> bool:
        """True once closed."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_decision_store(url: str, wait_seconds: float | None = None) -> DecisionStore:
    """Open (and migrate) the store a URL names: ``sqlite:///path`` or ``postgresql://...``.

    ``wait_seconds`` bounds every wait for a lock (and, on PostgreSQL, every statement): the service sets it
    below gunicorn's worker timeout, so a request answers 503 (StoreBusy) instead of being killed; the default
    is the backends' own (30 s lock waits, statements unbounded) for the command line."""
    if url.startswith("sqlite:///"):
        from service.records.sqlite import SqliteDecisionStore

        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            raise ValueError("a sqlite decision store needs a file path: sqlite:///path/to/file.sqlite3")
        if wait_seconds is None:
            return SqliteDecisionStore(Path(path))
        return SqliteDecisionStore(Path(path), busy_timeout=wait_seconds)
    if url.startswith(("postgresql://", "postgres://")):
        from service.records.postgres import PostgresDecisionStore

        if wait_seconds is None:
            return PostgresDecisionStore(url)
        bound = f"{max(1, round(wait_seconds * 1000))}ms"
        return PostgresDecisionStore(url, lock_timeout=bound, statement_timeout=bound)
    raise ValueError("DATABASE_URL must start with sqlite:/// or postgresql://")
