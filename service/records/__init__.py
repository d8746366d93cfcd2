"""The decision store: a durable, tamper-evident, append-only audit trail of credit decisions.

Backends (chosen by URL, see :func:`open_decision_store`):

- ``sqlite:///var/decisions.sqlite3`` (path relative to the working directory; ``sqlite:////abs/path`` for
  an absolute one) — the embedded default, safe for several processes (gunicorn workers) on ONE host.
- ``postgresql://user@host:5432/db`` — production; safe for several workers on several replicas. Tables
  live in the connection's current schema (``?options=-csearch_path%3Dname`` selects another one).

Schema migrations are numbered SQL files per backend (``migrations/{sqlite,postgres}/NNNN_name.sql``),
applied in order inside one transaction when a store is opened and recorded in ``schema_migrations``.

Hash chain
    Every record is stored with ``seq`` (its position), ``prev_hash`` (the ``record_hash`` of record
    ``seq - 1``, or 64 zeros for the first) and ``record_hash = sha256(prev_hash + canonical content)``,
    where the canonical content is the JSON of all record fields (sorted keys, separators ``,``/``:``,
    UTF-8, ``created_at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``). A one-row chain-head table holds the last
    ``seq`` and ``record_hash``; every append locks it, reads it, inserts the record and updates it in
    one transaction (SQLite: ``BEGIN IMMEDIATE`` takes the database write lock; PostgreSQL: a per-schema
    ``pg_advisory_xact_lock`` queues appenders, then ``SELECT ... FOR UPDATE`` on the head row). So appends
    from any number of workers and replicas form one total order, with no gaps and no forks, and
    :meth:`DecisionStore.verify_chain` is a single pass. It detects and names records that were changed,
    deleted, inserted or reordered, and a chain head that does not match the last record. Someone with
    write access who rewrites the whole chain and its head is caught only by comparing the head hash with
    a copy kept elsewhere (``audit verify`` prints it; publish it regularly).

Retention
    :meth:`DecisionStore.purge_before` deletes the oldest records (a prefix of the chain) and, in the same
    transaction, writes a checkpoint row holding the last purged ``seq`` and its ``record_hash``;
    verification then starts from the latest checkpoint instead of the genesis hash.

Durability (a record is committed before :meth:`DecisionStore.save` returns; on any failure ``save``
raises :class:`StoreUnavailable` and the API answers 503 — a record is never silently dropped)
    - SQLite: WAL journal with ``synchronous=FULL``: the WAL is fsynced at every commit, so a committed
      decision survives a crash of the process (e.g. a SIGKILLed worker) and of the operating system or
      power, provided the disk honours fsync. Writers wait up to ``busy_timeout`` (30 s) for each other.
    - PostgreSQL: the commit is as durable as the server makes it: with the defaults ``fsync=on`` and
      ``synchronous_commit=on`` it survives a server crash and power loss; with synchronous replication
      it also survives losing the primary. If the connection drops during COMMIT the outcome is unknown;
      the client retries with its ``Idempotency-Key`` and gets the original decision if it was stored.

Errors (one tree with the rest of the service, :mod:`service.errors`; none of them knows HTTP)::

    RecordsError              base of every decision-store failure
    ├── StoreUnavailable      could not commit or read durably
    └── DuplicateDecisionId   another record already has this decision_id (a bug, never the client's)
    IdempotencyConflict       (a Conflict) key already used with a different request body
    InvalidParameter          (an InvalidInput) malformed cursor, limit out of range, naive datetimes
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from service.errors import (
    DuplicateDecisionId,
    IdempotencyConflict,
    RecordsError,
    StoreUnavailable,
)
from service.records.chain import ChainProblem, ChainReport, PurgeReport
from service.records.model import GENESIS_HASH, DecisionRecord, StoredRecord, canonical_content, chain_hash

DEFAULT_DATABASE_URL = "sqlite:///var/decisions.sqlite3"

__all__ = [
    "DEFAULT_DATABASE_URL",
    "GENESIS_HASH",
    "ChainProblem",
    "ChainReport",
    "DecisionRecord",
    "DecisionStore",
    "DuplicateDecisionId",
    "IdempotencyConflict",
    "PurgeReport",
    "RecordsError",
    "StoreUnavailable",
    "StoredRecord",
    "canonical_content",
    "chain_hash",
    "open_decision_store",
]


class DecisionStore(Protocol):
    """What the API and the CLI need of the audit trail."""

    def save(self, record: DecisionRecord) -> StoredRecord:
        """Append durably (committed before returning); same idempotency key and body returns the original."""
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

    def count(self) -> int:
        """How many records are stored."""
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

    def verify_chain(self) -> ChainReport:
        """Check the whole hash chain and name every bad record."""
        ...

    def purge_before(self, cutoff: datetime) -> PurgeReport:
        """Delete records created before ``cutoff`` and keep the chain verifiable with a checkpoint."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_decision_store(url: str) -> DecisionStore:
    """Open (and migrate) the store a URL names: ``sqlite:///path`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        from service.records.sqlite import SqliteDecisionStore

        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            raise ValueError("a sqlite decision store needs a file path: sqlite:///path/to/file.sqlite3")
        return SqliteDecisionStore(Path(path))
    if url.startswith(("postgresql://", "postgres://")):
        from service.records.postgres import PostgresDecisionStore

        return PostgresDecisionStore(url)
    raise ValueError("DATABASE_URL must start with sqlite:/// or postgresql://")
