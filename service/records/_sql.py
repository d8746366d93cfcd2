"""The decision store logic shared by the SQLite and PostgreSQL backends."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Generic, Literal, TypeVar

from service.core.canonical import canonical_json
from service.errors import (
    DuplicateDecisionId,
    FieldError,
    IdempotencyConflict,
    InvalidParameter,
    RecordsError,
    StoreUnavailable,
)
from service.records.chain import ChainAnchor, ChainLink, ChainReport, ChainScan, PurgeReport, analyse_chain
from service.records.model import (
    GENESIS_HASH,
    DecisionRecord,
    StoredRecord,
    canonical_content,
    chain_hash,
)

Mode = Literal["read", "write", "snapshot"]
Row = tuple[Any, ...]
ConnT = TypeVar("ConnT")

MAX_SEARCH_LIMIT = 1000
_BATCH = 500
_COLUMNS = (
    "seq, decision_id, application_id, created_at, idempotency_key, request_hash, decision, risk_band, score, "
    "model_name, model_version, reason_codes, payload, prev_hash, record_hash"
)
_INSERT_RECORD = (
    "INSERT INTO decision_records (seq, decision_id, application_id, created_at, idempotency_key, request_hash, "
    "decision, risk_band, score, model_name, model_version, reason_codes, payload, prev_hash, record_hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered schema migration file."""

    version: int
    name: str
    sql: str


def _select(tail: str) -> str:
    """``SELECT`` of every record column; ``tail`` is built only from constant SQL fragments, values are bound."""
    return f"SELECT {_COLUMNS} FROM decision_records {tail}"  # noqa: S608


def load_migrations(backend: str) -> list[Migration]:
    """The migrations of a backend (``sqlite`` or ``postgres``), in order; numbers must run 1, 2, 3, ..."""
    folder = resources.files("service.records").joinpath("migrations", backend)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations/{backend}: files must be numbered 0001, 0002, ... without gaps")
    return found


class Transaction(ABC):
    """One database transaction, with ``?`` placeholders on every backend."""

    @abstractmethod
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query and return all rows."""

    @abstractmethod
    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement and return the affected row count."""

    @abstractmethod
    def script(self, sql: str) -> None:
        """Run a migration script of several statements."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, or None."""
        found = self.rows(sql, params)
        return found[0] if found else None


def _invalid(parameter: str, message: str) -> InvalidParameter:
    return InvalidParameter(f"query parameter {parameter!r}: {message}", [FieldError(parameter, message)])


def encode_cursor(seq: int) -> str:
    """Opaque pagination cursor for 'records after seq'."""
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Inverse of :func:`encode_cursor`; raises InvalidParameter (naming ``cursor``) for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _invalid("cursor", "malformed cursor: pass the next_cursor of a previous page") from exc
    prefix, _, number = text.partition(":")
    if prefix != "seq" or not number.isdigit():
        raise _invalid("cursor", "malformed cursor: pass the next_cursor of a previous page")
    return int(number)


class SqlDecisionStore(ABC, Generic[ConnT]):
    """Decision store over a SQL database: one thread-local connection per thread and process."""

    backend: str = ""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._connections: list[ConnT] = []
        # Connections inherited through fork() belong to the parent; keeping a reference means they are never
        # finalised (and so never closed under the parent's feet) in the child.
        self._inherited: list[ConnT] = []
        self._closed = False

    # --- backend hooks -------------------------------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> ConnT:
        """Open a new connection with the durability settings applied."""

    @abstractmethod
    def _begin(self, conn: ConnT, mode: Mode) -> Transaction:
        """Start a transaction (``write`` takes the append lock where the backend has one at BEGIN)."""

    @abstractmethod
    def _finish(self, conn: ConnT, commit: bool) -> None:
        """COMMIT or ROLLBACK."""

    @abstractmethod
    def _is_database_error(self, exc: BaseException) -> bool:
        """True for the backend's own errors (mapped to StoreUnavailable)."""

    @abstractmethod
    def _is_broken(self, conn: ConnT) -> bool:
        """True when the connection cannot be used again."""

    @abstractmethod
    def _close_connection(self, conn: ConnT) -> None:
        """Close quietly."""

    @abstractmethod
    def _encode_time(self, moment: datetime) -> Any:
        """A UTC datetime as the backend stores it."""

    @abstractmethod
    def _decode_time(self, value: Any) -> datetime:
        """Inverse of :meth:`_encode_time`."""

    @abstractmethod
    def _encode_codes(self, codes: tuple[str, ...]) -> Any:
        """Reason codes as the backend stores them."""

    @abstractmethod
    def _decode_codes(self, value: Any) -> tuple[str, ...]:
        """Inverse of :meth:`_encode_codes`."""

    head_sql = "SELECT seq, record_hash FROM decision_chain_head WHERE id = 1"
    lock_head_sql = head_sql
    append_lock_sql: str | None = None
    reason_code_sql = ""
    migration_lock_sql: str | None = None

    # --- connections and transactions ----------------------------------------------------------------------

    def _connection(self) -> ConnT:
        if self._closed:
            raise StoreUnavailable("the decision store is closed")
        pid = os.getpid()
        if pid != self._pid:
            with self._lock:
                self._inherited.extend(self._connections)
                self._connections = []
                self._local = threading.local()
                self._pid = pid
        conn: ConnT | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _discard(self, conn: ConnT) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        self._close_connection(conn)

    @contextmanager
    def _transaction(self, mode: Mode) -> Iterator[Transaction]:
        """A transaction; database errors become StoreUnavailable, the connection is dropped if broken."""
        conn: ConnT | None = None
        try:
            conn = self._connection()
            tx = self._begin(conn, mode)
            try:
                yield tx
            except BaseException:
                try:
                    self._finish(conn, commit=False)
                except Exception as exc:
                    if not self._is_database_error(exc):
                        raise
                raise
            self._finish(conn, commit=True)
        except RecordsError:
            raise
        except Exception as exc:
            if not self._is_database_error(exc):
                raise
            if conn is not None and self._is_broken(conn):
                self._discard(conn)
            raise StoreUnavailable(f"decision store {self.backend} failed: {exc.__class__.__name__}: {exc}") from exc

    def migrate(self) -> list[int]:
        """Apply the pending numbered migrations in one transaction; returns the versions applied."""
        migrations = load_migrations(self.backend)
        with self._transaction("write") as tx:
            if self.migration_lock_sql:
                tx.rows(self.migration_lock_sql)
            tx.run(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {int(row[0]) for row in tx.rows("SELECT version FROM schema_migrations")}
            newer = sorted(v for v in applied if v > len(migrations))
            if newer:
                raise RecordsError(f"the database has schema versions {newer} newer than this code knows")
            done: list[int] = []
            for migration in migrations:
                if migration.version in applied:
                    continue
                tx.script(migration.sql)
                tx.run(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, datetime.now(UTC).isoformat()),
                )
                done.append(migration.version)
        return done

    def schema_version(self) -> int:
        """The highest applied migration."""
        with self._transaction("read") as tx:
            row = tx.one("SELECT MAX(version) FROM schema_migrations")
        return int(row[0]) if row and row[0] is not None else 0

    def release(self) -> None:
        """Close every connection this process opened; the store reconnects on next use."""
        with self._lock:
            connections, self._connections = self._connections, []
            self._local = threading.local()
        for conn in connections:
            self._close_connection(conn)

    def close(self) -> None:
        """Close every connection this process opened; the store cannot be used afterwards."""
        self._closed = True
        self.release()

    # --- rows ----------------------------------------------------------------------------------------------

    def _record_of(self, row: Row) -> DecisionRecord:
        payload = json.loads(row[12])
        if not isinstance(payload, dict):
            raise ValueError("payload is not a JSON object")
        return DecisionRecord(
            decision_id=row[1],
            application_id=row[2],
            created_at=self._decode_time(row[3]),
            idempotency_key=row[4],
            request_hash=row[5],
            decision=row[6],
            risk_band=row[7],
            score=row[8],
            model_name=row[9],
            model_version=row[10],
            reason_codes=self._decode_codes(row[11]),
            payload=payload,
        )

    def _stored_of(self, row: Row) -> StoredRecord:
        return StoredRecord(seq=int(row[0]), record=self._record_of(row), prev_hash=row[13], record_hash=row[14])

    def _link_of(self, row: Row) -> ChainLink:
        try:
            content_hash = chain_hash(row[13], self._record_of(row))
        except (ValueError, TypeError, KeyError):
            content_hash = ""  # unreadable content is changed content
        return ChainLink(
            seq=int(row[0]),
            decision_id=str(row[1]),
            prev_hash=str(row[13]),
            record_hash=str(row[14]),
            content_hash=content_hash,
        )

    # --- the DecisionStore API -----------------------------------------------------------------------------

    def _lock_chain(self, tx: Transaction) -> Row:
        """Take the append lock and return the chain head (seq, record_hash) it protects."""
        if self.append_lock_sql:
            tx.rows(self.append_lock_sql)
        head = tx.one(self.lock_head_sql)
        if head is None:
            raise StoreUnavailable("the chain head row is missing; run `audit verify`")
        return head

    def save(self, record: DecisionRecord) -> StoredRecord:
        """Append a record to the chain and commit durably before returning (idempotent by key)."""
        payload_text = canonical_json(record.payload)
        content = canonical_content(record, payload_text)
        with self._transaction("write") as tx:
            head = self._lock_chain(tx)
            # Checked under the append lock, so two retries racing with one key cannot both insert.
            rows = tx.rows(
                _select("WHERE decision_id = ? OR idempotency_key = ?"), (record.decision_id, record.idempotency_key)
            )
            same_key = [r for r in rows if record.idempotency_key is not None and r[4] == record.idempotency_key]
            if same_key:
                existing = self._stored_of(same_key[0])
                if existing.record.request_hash != record.request_hash:
                    raise IdempotencyConflict("idempotency key already used with a different request body")
                return existing
            if rows:
                existing = self._stored_of(rows[0])
                if canonical_content(existing.record) == content:
                    return existing
                raise DuplicateDecisionId(f"decision_id {record.decision_id} is already stored with other content")
            seq, prev_hash = int(head[0]) + 1, str(head[1])
            record_hash = chain_hash(prev_hash, record, content)
            tx.run(
                _INSERT_RECORD,
                (
                    seq,
                    record.decision_id,
                    record.application_id,
                    self._encode_time(record.created_at),
                    record.idempotency_key,
                    record.request_hash,
                    record.decision,
                    record.risk_band,
                    record.score,
                    record.model_name,
                    record.model_version,
                    self._encode_codes(record.reason_codes),
                    payload_text,
                    prev_hash,
                    record_hash,
                ),
            )
            tx.run("UPDATE decision_chain_head SET seq = ?, record_hash = ? WHERE id = 1", (seq, record_hash))
        stored = dataclasses.replace(record, payload=json.loads(payload_text))
        return StoredRecord(seq=seq, record=stored, prev_hash=prev_hash, record_hash=record_hash)

    def get(self, decision_id: str) -> StoredRecord | None:
        """The record of a decision, or None."""
        with self._transaction("read") as tx:
            row = tx.one(_select("WHERE decision_id = ?"), (decision_id,))
        return None if row is None else self._stored_of(row)

    def get_by_idempotency_key(self, key: str) -> StoredRecord | None:
        """The record saved with this idempotency key, or None."""
        return self.get_by_idempotency_keys([key]).get(key)

    def get_by_idempotency_keys(self, keys: Sequence[str]) -> dict[str, StoredRecord]:
        """The records saved with any of these idempotency keys, by key (one read)."""
        wanted = sorted(set(keys))
        found: dict[str, StoredRecord] = {}
        if not wanted:
            return found
        with self._transaction("read") as tx:
            for start in range(0, len(wanted), _BATCH):
                chunk = wanted[start : start + _BATCH]
                marks = ", ".join("?" * len(chunk))
                for row in tx.rows(_select(f"WHERE idempotency_key IN ({marks})"), chunk):
                    stored = self._stored_of(row)
                    found[str(stored.record.idempotency_key)] = stored
        return found

    def count(self) -> int:
        """How many records are stored (purged ones excluded)."""
        with self._transaction("read") as tx:
            row = tx.one("SELECT COUNT(*) FROM decision_records")
        return int(row[0]) if row else 0

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
        """Records matching every given filter in seq order (``since`` inclusive, ``until`` exclusive)."""
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise _invalid("limit", f"must be an integer from 1 to {MAX_SEARCH_LIMIT}")
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("application_id", application_id),
            ("decision", decision),
            ("risk_band", risk_band),
            ("model_version", model_version),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        for clause, moment in (("created_at >= ?", since), ("created_at < ?", until)):
            if moment is not None:
                if moment.tzinfo is None:
                    raise _invalid("from" if moment is since else "to", "needs a timezone")
                clauses.append(clause)
                params.append(self._encode_time(moment))
        if reason_code is not None:
            clauses.append(self.reason_code_sql)
            params.append(reason_code)
        if cursor is not None:
            clauses.append("seq > ?")
            params.append(decode_cursor(cursor))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._transaction("read") as tx:
            rows = tx.rows(_select(f"{where} ORDER BY seq LIMIT ?"), (*params, limit + 1))
        found = [self._stored_of(row) for row in rows[:limit]]
        next_cursor = encode_cursor(found[-1].seq) if len(rows) > limit else None
        return found, next_cursor

    def iter_records(self, since_seq: int = 0) -> Iterator[StoredRecord]:
        """Every record with seq > since_seq, in seq order, read in batches (no transaction held between them)."""
        after = since_seq
        while True:
            with self._transaction("read") as tx:
                rows = tx.rows(_select("WHERE seq > ? ORDER BY seq LIMIT ?"), (after, _BATCH))
            for row in rows:
                yield self._stored_of(row)
            if len(rows) < _BATCH:
                return
            after = int(rows[-1][0])

    def _anchor(self, tx: Transaction) -> ChainAnchor:
        head = tx.one(self.head_sql)
        if head is None:
            raise RecordsError("the chain head row is missing")
        checkpoint = tx.one(
            "SELECT through_seq, record_hash FROM decision_chain_checkpoints ORDER BY through_seq DESC LIMIT 1"
        )
        base_seq, base_hash = (int(checkpoint[0]), str(checkpoint[1])) if checkpoint else (0, GENESIS_HASH)
        return ChainAnchor(base_seq=base_seq, base_hash=base_hash, head_seq=int(head[0]), head_hash=str(head[1]))

    def _links(self, tx: Transaction) -> Iterator[ChainLink]:
        after: int | None = None
        while True:
            if after is None:
                rows = tx.rows(_select("ORDER BY seq LIMIT ?"), (_BATCH,))
            else:
                rows = tx.rows(_select("WHERE seq > ? ORDER BY seq LIMIT ?"), (after, _BATCH))
            for row in rows:
                yield self._link_of(row)
            if len(rows) < _BATCH:
                return
            after = int(rows[-1][0])

    def verify_chain(self) -> ChainReport:
        """Check every record against the chain in one snapshot; name each changed/deleted/inserted/moved one."""
        with self._transaction("snapshot") as tx:
            anchor = self._anchor(tx)
            scan = ChainScan(anchor)
            for link in self._links(tx):
                scan.feed(link)
            # The fast pass holds O(1) memory; only a broken chain is loaded whole to explain what happened.
            problems = [] if scan.intact else analyse_chain(list(self._links(tx)), anchor)
        return ChainReport(
            records_checked=scan.records,
            checkpoint_seq=anchor.base_seq,
            checkpoint_hash=anchor.base_hash,
            head_seq=anchor.head_seq,
            head_hash=anchor.head_hash,
            problems=tuple(problems),
        )

    def purge_before(self, cutoff: datetime) -> PurgeReport:
        """Remove the oldest records created before ``cutoff`` (a seq prefix) and write a checkpoint."""
        if cutoff.tzinfo is None:
            raise ValueError("cutoff must be timezone-aware")
        with self._transaction("write") as tx:
            self._lock_chain(tx)
            anchor = self._anchor(tx)
            # Only a prefix of the chain can go, so the rest still verifies from one checkpoint; a record a few
            # milliseconds older than a newer one's seq neighbour is kept until the next purge.
            boundary = tx.one(
                "SELECT MIN(seq) FROM decision_records WHERE created_at >= ? AND seq > ?",
                (self._encode_time(cutoff), anchor.base_seq),
            )
            through = int(boundary[0]) - 1 if boundary and boundary[0] is not None else anchor.head_seq
            if through <= anchor.base_seq:
                return PurgeReport(cutoff, 0, anchor.base_seq, anchor.base_hash)
            last = tx.one("SELECT record_hash FROM decision_records WHERE seq = ?", (through,))
            if last is None:
                raise RecordsError(f"cannot purge: record seq {through} is missing; run `audit verify`")
            purged = tx.run("DELETE FROM decision_records WHERE seq > ? AND seq <= ?", (anchor.base_seq, through))
            tx.run(
                "INSERT INTO decision_chain_checkpoints (through_seq, record_hash, purged_records, cutoff, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (through, str(last[0]), purged, self._encode_time(cutoff), self._encode_time(datetime.now(UTC))),
            )
        return PurgeReport(cutoff, purged, through, str(last[0]))
