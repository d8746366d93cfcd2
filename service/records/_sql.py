"""The decision store logic shared by the SQLite and PostgreSQL backends."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import heapq
import json
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Generic, Literal, TypeVar

from service.core.canonical import canonical_json
from service.core.recorded import PayloadError
from service.core.texts import NAME_KEY, ReasonTexts
from service.errors import (
    DuplicateDecisionId,
    DuplicateEntryId,
    FieldError,
    IdempotencyConflict,
    InvalidParameter,
    RecordsError,
    StoreUnavailable,
    UnknownShadowedDecisions,
)
from service.records.chain import (
    CHANGED,
    DELETED,
    ChainAnchor,
    ChainLink,
    ChainProblem,
    ChainReport,
    ChainScan,
    PurgeReport,
    analyse_chain,
)
from service.records.group import GroupCommitter
from service.records.model import (
    ENTRY_DECISION,
    ENTRY_EVENT,
    ENTRY_KINDS,
    ENTRY_SHADOW,
    EVENT_KINDS,
    GENESIS_HASH,
    SHADOW_KINDS,
    AuditEvent,
    ChainEntry,
    DecisionRecord,
    ShadowRecord,
    StoredEvent,
    StoredRecord,
    StoredShadow,
    canonical_content,
    chain_hash,
)
from service.records.report_rows import INSERT_REPORT_ROW, REPORT_ROW_COLUMNS, epoch_us, report_row

#: ``write_deferred``: a write whose commit does not wait for its own flush to disk (SQLite ``synchronous=NORMAL``,
#: PostgreSQL ``synchronous_commit=off``); the log is sequential, so the next ordinary commit makes it durable too.
Mode = Literal["read", "write", "write_deferred", "snapshot"]
Row = tuple[Any, ...]
ConnT = TypeVar("ConnT")
_Seq = TypeVar("_Seq", StoredRecord, StoredEvent, StoredShadow)

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
_EVENT_COLUMNS = (
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
_SHADOW_COLUMNS = (
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
    "payload",
    "prev_hash",
    "record_hash",
)
_INSERT_EVENT = (
    "INSERT INTO audit_events (seq, event_id, created_at, kind, actor, details, serving_state, prev_hash, record_hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_SHADOW = (
    "INSERT INTO shadow_decisions (seq, shadow_id, decision_id, created_at, kind, model_name, model_version, "
    "policy_version, catalog_version, decision, risk_band, score, reason_codes, payload, prev_hash, record_hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The tables of the chain's entries, by kind (all numbered from the one chain head).
_TABLES = {ENTRY_DECISION: "decision_records", ENTRY_EVENT: "audit_events", ENTRY_SHADOW: "shadow_decisions"}
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_INSERT_TEXTS = (
    "INSERT INTO reason_texts (sha256, catalog_version, body) VALUES (?, ?, ?) ON CONFLICT (sha256) DO NOTHING"
)
#: How a payload of schema version 4 names its texts document, in its canonical JSON (keys sorted, no spaces).
_TEXTS_KEY = f'"{NAME_KEY}":"'


@dataclass(frozen=True)
class Migration:
    """One numbered schema migration file."""

    version: int
    name: str
    sql: str


def _select(tail: str) -> str:
    """``SELECT`` of every record column; ``tail`` is built only from constant SQL fragments, values are bound."""
    return f"SELECT {_COLUMNS} FROM decision_records {tail}"  # noqa: S608


def _select_events(tail: str) -> str:
    """``SELECT`` of every audit event column; ``tail`` only constant SQL fragments, values are bound."""
    return f"SELECT {', '.join(_EVENT_COLUMNS)} FROM audit_events {tail}"  # noqa: S608


def _select_shadows(tail: str) -> str:
    """``SELECT`` of every shadow decision column; ``tail`` only constant SQL fragments, values are bound."""
    return f"SELECT {', '.join(_SHADOW_COLUMNS)} FROM shadow_decisions {tail}"  # noqa: S608


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _id_and_key_queries(records: Sequence[DecisionRecord]) -> list[tuple[str, Sequence[str]]]:
    """The queries of the stored records sharing a decision_id or an idempotency key with ``records``.

    Index lookups by id and by key apart, never an OR: with planner statistics (ANALYZE) SQLite turns the OR of a
    unique column and a mostly-NULL one into a scan of the whole table (benchmarks/scale.py found it)."""
    ids = sorted({record.decision_id for record in records})
    keys = sorted({record.idempotency_key for record in records if record.idempotency_key is not None})
    return [
        (_select(f"WHERE {column} IN ({', '.join('?' * len(chunk))})"), chunk)
        for column, values in (("decision_id", ids), ("idempotency_key", keys))
        for chunk in _chunks(values)
    ]


def _json_object(text: Any, column: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{column} is not a JSON object")
    return value


def _content_hash(
    prev_hash: str, record_hash: str, payload_text: Any, entry_of: Callable[[dict[str, Any] | None], ChainEntry]
) -> str:
    """The chain hash an entry's stored content gives ("" for unreadable content: changed content).

    Fast path: the payload column holds the canonical JSON that was hashed when the entry was appended, so it is
    spliced into the content unparsed. Only when that does not give the stored ``record_hash`` is the payload parsed
    and serialised canonically again, exactly as before; so a payload rewritten in an equal but non-canonical form
    still verifies, and anything else that differs is still found (a match on the fast path means the stored text is
    the very text that was hashed)."""
    try:
        if isinstance(payload_text, str):
            fast = chain_hash(prev_hash, entry_of({}), canonical_content(entry_of({}), payload_text))
            if fast == record_hash:
                return fast
        return chain_hash(prev_hash, entry_of(None))
    except (ValueError, TypeError, KeyError):
        return ""


def _named_texts(payload_text: Any) -> str | None:
    """The sha256 of the reason texts document a stored payload names (schema version 4), read from its canonical
    JSON without parsing it (keys are sorted: ``model`` comes before the request's objects); None if none."""
    if not isinstance(payload_text, str):
        return None
    at = payload_text.find(_TEXTS_KEY)
    if at < 0:
        return None
    start = at + len(_TEXTS_KEY)
    return payload_text[start : start + 64]


def _texts_problems(rows: Sequence[Row], named: dict[str, ChainLink]) -> list[ChainProblem]:
    """What is wrong with the reason texts documents (``rows``: sha256, catalog_version, body), each problem
    naming the first record that names the document concerned: a document missing, or one whose body is no longer
    the one its sha256 was made of (the texts of every record naming it are then unreadable)."""
    problems: list[ChainProblem] = []
    stored: set[str] = set()
    for sha, version, body in rows:
        sha = str(sha)
        stored.add(sha)
        doc = ReasonTexts.stored(sha, str(body))
        if doc is not None and doc.catalog_version == version:
            continue
        link = named.get(sha)
        detail = f"reason texts {sha} (catalog {version}): the stored texts no longer match their sha256"
        if link is None:
            problems.append(ChainProblem(CHANGED, 0, sha, detail + " (no record names them)", "reason_texts"))
        else:
            problems.append(_named_problem(CHANGED, link, detail))
    for sha, link in named.items():
        if sha not in stored:
            problems.append(_named_problem(DELETED, link, f"reason texts {sha}: the store holds no such texts"))
    return problems


def _named_problem(kind: str, link: ChainLink, detail: str) -> ChainProblem:
    return ChainProblem(
        kind, link.seq, link.entry_id, f"{detail}; this record and every later one naming them cannot be read"
    )


def existing_decisions(tx: Transaction, decision_ids: Sequence[str]) -> set[str]:
    """Which of these decision ids have a stored record (chunked reads in the caller's transaction)."""
    found: set[str] = set()
    for chunk in _chunks(decision_ids):
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT decision_id FROM decision_records WHERE decision_id IN ({marks})"  # noqa: S608 (marks only)
        found.update(str(row[0]) for row in tx.rows(sql, chunk))
    return found


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

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a statement whose result nobody reads, in order, no later than the transaction's next statement or
        its COMMIT: a backend across a network sends it with that one (one round trip for both). An error it
        raises may surface there instead, and fails the transaction all the same."""
        self.run(sql, params)

    def rows_many(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        """Run several queries in order, all rows of each: in one round trip where the backend is across a network."""
        return [self.rows(sql, params) for sql, params in queries]

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, or None."""
        found = self.rows(sql, params)
        return found[0] if found else None


def _invalid(parameter: str, message: str) -> InvalidParameter:
    return InvalidParameter(f"query parameter {parameter!r}: {message}", [FieldError(parameter, message)])


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise _invalid("limit", f"must be an integer from 1 to {MAX_SEARCH_LIMIT}")


def _check_kind(kind: str | None, kinds: tuple[str, ...]) -> None:
    if kind is not None and kind not in kinds:
        raise _invalid("kind", f"must be one of {', '.join(kinds)}")


#: The largest seq a cursor may name: the largest value of a signed 64-bit integer column.
_MAX_SEQ = 2**63 - 1


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
    # ASCII digits only ('²'.isdigit() is true, int('²') fails) and within a signed 64-bit column (SQLite and
    # PostgreSQL both refuse a larger parameter)
    if prefix != "seq" or not (number.isascii() and number.isdigit()) or len(number) > 19 or int(number) > _MAX_SEQ:
        raise _invalid("cursor", "malformed cursor: pass the next_cursor of a previous page")
    return int(number)


class SqlDecisionStore(ABC, Generic[ConnT]):
    """Decision store over a SQL database: one thread-local connection per thread and process."""

    backend: str = ""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._legacy_batch_items_through: int | None = None  # set by migration 0004, never changed: read once
        self._connections: list[ConnT] = []
        # Connections inherited through fork() belong to the parent; keeping a reference means they are never
        # finalised (and so never closed under the parent's feet) in the child.
        self._inherited: list[ConnT] = []
        self._closed = False
        self._group = GroupCommitter(self.append_group)
        # reason texts documents this process has read from the store (their sha256 checked) or committed to it
        self._texts: dict[str, ReasonTexts] = {}

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

    def _commit(self, conn: ConnT, tx: Transaction) -> None:
        """COMMIT ``tx`` (what it holds for :meth:`Transaction.later` included)."""
        self._finish(conn, commit=True)

    @abstractmethod
    def _is_database_error(self, exc: BaseException) -> bool:
        """True for the backend's own errors (mapped to StoreUnavailable)."""

    def _error_kind(self, exc: BaseException) -> type[StoreUnavailable]:
        """Which StoreUnavailable a database error is: StoreFull, StoreBusy, or plain (connection lost...)."""
        return StoreUnavailable

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
            conn, tx = self._begin_on_live_connection(mode)
            self._local.tx = tx  # what a lookup made while it is open reads through (reason_texts)
            try:
                yield tx
            except BaseException:
                self._roll_back(conn)
                raise
            finally:
                self._local.tx = None
            try:
                self._commit(conn, tx)
            except BaseException:  # e.g. SQLite's COMMIT failing on a full disk leaves the transaction open
                self._roll_back(conn)
                raise
        except RecordsError:
            raise
        except Exception as exc:
            if not self._is_database_error(exc):
                raise
            if conn is not None and self._is_broken(conn):
                self._discard(conn)
            kind = self._error_kind(exc)
            raise kind(f"decision store {self.backend} failed: {exc.__class__.__name__}: {exc}") from exc

    def _roll_back(self, conn: ConnT) -> None:
        """ROLLBACK whatever is open; a database error doing so is dropped (the original error is the answer)."""
        try:
            self._finish(conn, commit=False)
        except Exception as exc:
            if not self._is_database_error(exc):
                raise

    def _begin_on_live_connection(self, mode: Mode) -> tuple[ConnT, Transaction]:
        """BEGIN on this thread's connection; one that broke while idle (the server restarted, the network
        dropped it) is replaced once. Nothing was sent in the failed BEGIN, so retrying it cannot do anything
        twice; a second failure is the store's answer."""
        conn = self._connection()
        try:
            return conn, self._begin(conn, mode)
        except Exception as exc:
            if not self._is_database_error(exc) or not self._is_broken(conn):
                raise
        self._discard(conn)
        conn = self._connection()
        try:
            return conn, self._begin(conn, mode)
        except Exception as exc:
            if self._is_database_error(exc) and self._is_broken(conn):
                self._discard(conn)
            raise

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

    def ping(self) -> None:
        """Reach the database now (reconnecting if need be), or StoreUnavailable."""
        with self._transaction("read") as tx:
            tx.rows("SELECT 1")

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

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close every connection this process opened; the store cannot be used afterwards."""
        self._closed = True
        self._group.close()
        self.release()

    # --- rows ----------------------------------------------------------------------------------------------

    def _record_of(self, row: Row, payload: dict[str, Any] | None = None) -> DecisionRecord:
        """The record of a row; ``payload`` given (verification's fast path) skips parsing the stored one."""
        if payload is None:
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
            texts_source=self.reason_texts,
        )

    def _stored_of(self, row: Row) -> StoredRecord:
        return StoredRecord(seq=int(row[0]), record=self._record_of(row), prev_hash=row[13], record_hash=row[14])

    def _link_of(self, row: Row) -> ChainLink:
        content_hash = _content_hash(row[13], row[14], row[12], lambda payload: self._record_of(row, payload))
        return ChainLink(
            seq=int(row[0]),
            entry_id=str(row[1]),
            prev_hash=str(row[13]),
            record_hash=str(row[14]),
            content_hash=content_hash,
            reason_texts=_named_texts(row[12]),
        )

    def _event_of(self, row: Row) -> AuditEvent:
        return AuditEvent(
            event_id=row[1],
            created_at=self._decode_time(row[2]),
            kind=row[3],
            actor=_json_object(row[4], "actor"),
            details=_json_object(row[5], "details"),
            serving_state=None if row[6] is None else _json_object(row[6], "serving_state"),
        )

    def _stored_event_of(self, row: Row) -> StoredEvent:
        return StoredEvent(seq=int(row[0]), event=self._event_of(row), prev_hash=row[7], record_hash=row[8])

    def _event_link_of(self, row: Row) -> ChainLink:
        try:
            content_hash = chain_hash(row[7], self._event_of(row))
        except (ValueError, TypeError, KeyError):
            content_hash = ""  # unreadable (or invalid: an unknown kind) content is changed content
        return ChainLink(int(row[0]), str(row[1]), str(row[7]), str(row[8]), content_hash, ENTRY_EVENT)

    def _shadow_of(self, row: Row, payload: dict[str, Any] | None = None) -> ShadowRecord:
        """The shadow decision of a row; ``payload`` given (verification's fast path) skips parsing the stored one."""
        return ShadowRecord(
            shadow_id=row[1],
            decision_id=row[2],
            created_at=self._decode_time(row[3]),
            kind=row[4],
            model_name=row[5],
            model_version=row[6],
            policy_version=row[7],
            catalog_version=row[8],
            decision=row[9],
            risk_band=row[10],
            score=row[11],
            reason_codes=self._decode_codes(row[12]),
            payload=_json_object(row[13], "payload") if payload is None else payload,
        )

    def _stored_shadow_of(self, row: Row) -> StoredShadow:
        return StoredShadow(seq=int(row[0]), record=self._shadow_of(row), prev_hash=row[14], record_hash=row[15])

    def _shadow_link_of(self, row: Row) -> ChainLink:
        content_hash = _content_hash(row[14], row[15], row[13], lambda payload: self._shadow_of(row, payload))
        return ChainLink(int(row[0]), str(row[1]), str(row[14]), str(row[15]), content_hash, ENTRY_SHADOW)

    def _time_clauses(
        self, since: datetime | None, until: datetime | None, column: str = "created_at"
    ) -> tuple[list[str], list[Any]]:
        """``column >= since`` and ``column < until`` for the given bounds; naive datetimes name ``from``/``to``."""
        clauses: list[str] = []
        params: list[Any] = []
        for clause, moment in ((f"{column} >= ?", since), (f"{column} < ?", until)):
            if moment is not None:
                if moment.tzinfo is None:
                    raise _invalid("from" if moment is since else "to", "needs a timezone")
                clauses.append(clause)
                params.append(self._encode_time(moment))
        return clauses, params

    # --- the DecisionStore API -----------------------------------------------------------------------------

    def _lock_chain(self, tx: Transaction) -> Row:
        """Take the append lock and return the chain head (seq, record_hash) it protects."""
        return self._lock_chain_and_read(tx, [])[0]

    def _lock_chain_and_read(
        self, tx: Transaction, queries: Sequence[tuple[str, Sequence[Any]]]
    ) -> tuple[Row, list[list[Row]]]:
        """Take the append lock; the chain head (seq, record_hash) it protects and the rows of ``queries`` run
        under it, in one round trip where the backend is across a network."""
        if self.append_lock_sql:
            tx.later(self.append_lock_sql)  # sent with the head's read: waits in the queue all the same
        head, *found = tx.rows_many([(self.lock_head_sql, ()), *queries])
        if not head:
            raise StoreUnavailable("the chain head row is missing; run `audit verify`")
        return head[0], found

    def save(self, record: DecisionRecord) -> StoredRecord:
        """Append a record to the chain and commit durably before returning (idempotent by key)."""
        [result] = self.save_many([record])
        if isinstance(result, Exception):
            raise result
        return result

    def save_grouped(self, record: DecisionRecord) -> StoredRecord:
        """:meth:`save` through this process's group commit (:mod:`service.records.group`): the record shares one
        transaction and one durable commit with the records other threads save at the same time; same guarantees."""
        return self._group.save(record)

    def save_all_grouped(self, records: Sequence[DecisionRecord]) -> list[StoredRecord | Exception]:
        """:meth:`save_grouped` for several records at once (a batch request's items: one commit, not one each);
        each result is the stored record or the error it failed with."""
        return self._group.save_all(records)

    def save_many(self, records: Sequence[DecisionRecord]) -> list[StoredRecord | Exception]:
        """Append records to the chain in ONE transaction (one chain lock, one durable commit), in order.

        Each result is the stored record or the error that record alone failed with: IdempotencyConflict (its key
        is stored, or earlier in the batch, with another body), DuplicateDecisionId, or ValueError (a payload that
        is not JSON-ready); a record whose key is stored (or earlier in the batch) with the same body gets that
        stored record, as :meth:`save` does. A failure of the store itself raises StoreUnavailable and nothing of
        the batch is written: every result is committed once this returns."""
        return self.append_group(records, [])[0]

    def append_group(
        self, records: Sequence[DecisionRecord], shadow_batches: Sequence[Sequence[ShadowRecord]]
    ) -> tuple[list[StoredRecord | Exception], list[list[StoredShadow] | Exception]]:
        """Append decision records (as :meth:`save_many`) and then batches of shadow decisions (each as
        :meth:`save_shadows`) in ONE transaction; the results of each record and of each shadow batch, in order.

        A shadow batch that fails (UnknownShadowedDecisions, DuplicateEntryId, ValueError) writes nothing of itself
        and fails alone (a savepoint); the commit waits for its flush to disk when it holds a decision record, and
        does not (``write_deferred``) when it holds shadows only. A failure of the store raises StoreUnavailable and
        writes nothing."""
        record_results: list[StoredRecord | Exception | None] = [None] * len(records)
        prepared: list[tuple[int, DecisionRecord, str, str]] = []
        for i, record in enumerate(records):
            try:
                payload_text = canonical_json(record.payload)
            except ValueError as exc:  # not JSON-ready: this record fails alone, nothing locked for it
                record_results[i] = exc
                continue
            prepared.append((i, record, payload_text, canonical_content(record, payload_text)))
        texts = self._texts_to_keep([item[1] for item in prepared])
        shadow_results: list[list[StoredShadow] | Exception] = []
        shadows_prepared: list[tuple[int, Sequence[ShadowRecord], list[str]]] = []
        for b, batch in enumerate(shadow_batches):
            try:
                shadows_prepared.append((b, batch, [canonical_json(record.payload) for record in batch]))
                shadow_results.append([])
            except ValueError as exc:
                shadow_results.append(exc)
        shadows_prepared = [item for item in shadows_prepared if item[1]]
        if prepared or shadows_prepared:
            # Shadows alone never wait for their own flush to disk: they are never answered to anyone, and the next
            # decision's commit (which does wait) makes them durable with it, in chain order. A power cut can lose
            # only the shadows recorded after the last decision, never a decision and never the chain's integrity.
            with self._transaction("write" if prepared else "write_deferred") as tx:
                # the stored records sharing an id or a key with these, read under the lock with the head: two
                # retries racing with one key cannot both insert
                head, found = self._lock_chain_and_read(tx, _id_and_key_queries([item[1] for item in prepared]))
                seq, prev_hash = int(head[0]), str(head[1])
                for doc in texts.values():  # kept once: a document the store holds already is left as it is
                    tx.later(_INSERT_TEXTS, (doc.sha256, doc.catalog_version, doc.body))
                if prepared:
                    existing = [self._stored_of(row) for rows in found for row in rows]
                    seq, prev_hash = self._append_records(tx, seq, prev_hash, prepared, record_results, existing)
                alone = not prepared and len(shadows_prepared) == 1  # its failure rolls the transaction back
                for b, batch, payloads in shadows_prepared:
                    if not alone:
                        tx.run("SAVEPOINT shadows")
                    try:
                        out, seq, prev_hash = self._append_shadows(tx, seq, prev_hash, batch, payloads)
                    except (UnknownShadowedDecisions, DuplicateEntryId) as exc:
                        if alone:
                            raise
                        tx.run("ROLLBACK TO SAVEPOINT shadows")
                        shadow_results[b] = exc
                    else:
                        shadow_results[b] = out
                    if not alone:
                        tx.run("RELEASE SAVEPOINT shadows")
                if seq != int(head[0]):
                    self._move_head(tx, seq, prev_hash)
            self._texts.update(texts)  # committed
        return [r for r in record_results if r is not None], shadow_results

    def _texts_to_keep(self, records: Sequence[DecisionRecord]) -> dict[str, ReasonTexts]:
        """The reason texts documents the records name that this process has not seen in this store: a new record's
        own, or the one a record read from another store finds there (a copy keeps its texts readable). Read before
        the append's transaction; a document nobody holds is not invented (the record is stored as given)."""
        texts: dict[str, ReasonTexts] = {}
        for record in records:
            sha = record.named_reason_texts
            if sha is None or sha in self._texts or sha in texts:
                continue
            doc = record.find_reason_texts(sha)
            if doc is not None:
                texts[sha] = doc
        return texts

    def _append_records(
        self,
        tx: Transaction,
        seq: int,
        prev_hash: str,
        prepared: Sequence[tuple[int, DecisionRecord, str, str]],
        results: list[StoredRecord | Exception | None],
        existing: Sequence[StoredRecord],
    ) -> tuple[int, str]:
        """Insert the prepared decision records after (seq, prev_hash), each one's outcome into ``results``; the new
        (seq, prev_hash) of the chain (the caller holds the chain lock and moves the head). ``existing``: the records
        already stored with one of their ids or keys (:func:`_id_and_key_queries`, read under the lock)."""
        by_id: dict[str, StoredRecord] = {}
        by_key: dict[str, StoredRecord] = {}
        for found in existing:
            by_id[found.record.decision_id] = found
            if found.record.idempotency_key is not None:
                by_key[found.record.idempotency_key] = found
        for i, record, payload_text, content in prepared:
            key = record.idempotency_key
            same_key = by_key.get(key) if key is not None else None
            if same_key is not None:
                if same_key.record.request_hash != record.request_hash:
                    results[i] = IdempotencyConflict("idempotency key already used with a different request body")
                else:
                    results[i] = same_key
                continue
            same_id = by_id.get(record.decision_id)
            if same_id is not None:
                if canonical_content(same_id.record) == content:
                    results[i] = same_id
                else:
                    results[i] = DuplicateDecisionId(
                        f"decision_id {record.decision_id} is already stored with other content"
                    )
                continue
            seq += 1
            stored = self._insert_record(tx, seq, prev_hash, record, payload_text, content)
            by_id[record.decision_id] = stored
            if key is not None:
                by_key[key] = stored
            results[i] = stored
            prev_hash = stored.record_hash
        return seq, prev_hash

    def _insert_record(
        self, tx: Transaction, seq: int, prev_hash: str, record: DecisionRecord, payload_text: str, content: str
    ) -> StoredRecord:
        """Insert one decision record at ``seq`` after ``prev_hash`` (the caller holds the chain lock and moves the
        head); the stored record as it reads back."""
        record_hash = chain_hash(prev_hash, record, content)
        tx.later(
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
        self._insert_report_row(tx, seq, record)
        if record.made_from is None:
            # as it reads back (lists for tuples, ...); a payload the decision service made is that already
            record = dataclasses.replace(record, payload=json.loads(payload_text))
        return StoredRecord(seq=seq, record=record, prev_hash=prev_hash, record_hash=record_hash)

    def reason_texts(self, sha256: str) -> ReasonTexts | None:
        """The reason texts document with this sha256 as the store holds it; None if it holds none, or holds one
        whose body no longer has this sha256 (changed: the records naming it are then unreadable, not misworded).
        Read once per process (a few documents in all), through this thread's open transaction if it has one."""
        found = self._texts.get(sha256)
        if found is not None:
            return found
        query = "SELECT body FROM reason_texts WHERE sha256 = ?"
        open_tx: Transaction | None = getattr(self._local, "tx", None)
        if open_tx is not None:
            row = open_tx.one(query, (sha256,))
        else:
            with self._transaction("read") as tx:
                row = tx.one(query, (sha256,))
        found = None if row is None else ReasonTexts.stored(sha256, str(row[0]))
        if found is not None:
            self._texts[sha256] = found
        return found

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

    def get_by_legacy_batch_item_keys(self, keys: Sequence[str]) -> dict[str, StoredRecord]:
        """The records saved, before batch items had a namespace of their own, with any of these batch-item keys
        in their old form ``<key>#<index>`` (migration 0004): newer records with such a key are single requests."""
        wanted = sorted(set(keys))
        found: dict[str, StoredRecord] = {}
        if not wanted or self._legacy_batch_items_through == 0:  # a store created with namespaces: no old items
            return found
        with self._transaction("read") as tx:
            if self._legacy_batch_items_through is None:
                limit = tx.one("SELECT batch_items_through_seq FROM idempotency_legacy")
                self._legacy_batch_items_through = int(limit[0]) if limit is not None else 0
            through = self._legacy_batch_items_through
            if through <= 0:
                return found
            for start in range(0, len(wanted), _BATCH):
                chunk = wanted[start : start + _BATCH]
                marks = ", ".join("?" * len(chunk))
                for row in tx.rows(_select(f"WHERE idempotency_key IN ({marks}) AND seq <= ?"), (*chunk, through)):
                    stored = self._stored_of(row)
                    found[str(stored.record.idempotency_key)] = stored
        return found

    def count(self, since: datetime | None = None, until: datetime | None = None) -> int:
        """How many records are stored (purged ones excluded), created in [``since``, ``until``) when given."""
        clauses, params = self._time_clauses(since, until)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._transaction("read") as tx:
            row = tx.one(f"SELECT COUNT(*) FROM decision_records{where}", params)  # noqa: S608 (built from constants)
        return int(row[0]) if row else 0

    def count_entries(self) -> dict[str, int]:
        """How many entries of each kind (``decision``, ``event``, ``shadow``) the chain holds (purged ones excluded)."""
        counts: dict[str, int] = {}
        with self._transaction("read") as tx:
            for entry, table in _TABLES.items():
                row = tx.one(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 (constant table names)
                counts[entry] = int(row[0]) if row else 0
        return counts

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
        _check_limit(limit)
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
        time_clauses, time_params = self._time_clauses(since, until)
        clauses += time_clauses
        params += time_params
        if reason_code is not None:
            clauses.append(self.reason_code_sql)
            params.append(reason_code)
        return self._page(_select, self._stored_of, clauses, params, cursor, limit)

    def _page(
        self,
        select: Callable[[str], str],
        row_of: Callable[[Row], _Seq],
        clauses: list[str],
        params: list[Any],
        cursor: str | None,
        limit: int,
    ) -> tuple[list[_Seq], str | None]:
        """One page of entries in seq order after ``cursor``, and the cursor of the next page (None on the last)."""
        if cursor is not None:
            clauses = [*clauses, "seq > ?"]
            params = [*params, decode_cursor(cursor)]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._transaction("read") as tx:
            rows = tx.rows(select(f"{where} ORDER BY seq LIMIT ?"), (*params, limit + 1))
        found = [row_of(row) for row in rows[:limit]]
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

    def _kind_page(
        self,
        select: Callable[[str], str],
        row_of: Callable[[Row], _Seq],
        kinds: tuple[str, ...],
        since: datetime | None,
        until: datetime | None,
        kind: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[_Seq], str | None]:
        """A page of events or shadows filtered by period and kind, with the conventions and errors of search."""
        _check_limit(limit)
        _check_kind(kind, kinds)
        clauses, params = self._time_clauses(since, until)
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        return self._page(select, row_of, clauses, params, cursor, limit)

    # --- audit events --------------------------------------------------------------------------------------

    def append_event(self, event: AuditEvent) -> StoredEvent:
        """Append an admin audit event to the chain and commit durably before returning.

        Idempotent by ``event_id``: the same event again returns the stored one; another event with that id raises
        :class:`DuplicateEntryId`."""
        content = canonical_content(event)
        actor_text, details_text = canonical_json(event.actor), canonical_json(event.details)
        state_text = None if event.serving_state is None else canonical_json(event.serving_state)
        with self._transaction("write") as tx:
            head = self._lock_chain(tx)
            row = tx.one(_select_events("WHERE event_id = ?"), (event.event_id,))
            if row is not None:
                existing = self._stored_event_of(row)
                if canonical_content(existing.event) == content:
                    return existing
                raise DuplicateEntryId(f"event_id {event.event_id} is already stored with other content")
            seq, prev_hash = int(head[0]) + 1, str(head[1])
            record_hash = chain_hash(prev_hash, event, content)
            tx.run(
                _INSERT_EVENT,
                (
                    seq,
                    event.event_id,
                    self._encode_time(event.created_at),
                    event.kind,
                    actor_text,
                    details_text,
                    state_text,
                    prev_hash,
                    record_hash,
                ),
            )
            self._move_head(tx, seq, record_hash)
        # As read back: JSON round-tripped (e.g. tuples become lists).
        stored = dataclasses.replace(
            event,
            actor=json.loads(actor_text),
            details=json.loads(details_text),
            serving_state=None if state_text is None else json.loads(state_text),
        )
        return StoredEvent(seq=seq, event=stored, prev_hash=prev_hash, record_hash=record_hash)

    def latest_serving_state(self) -> StoredEvent | None:
        """The most recent control event (it carries the whole serving state), or None; one index entry read."""
        with self._transaction("read") as tx:
            row = tx.one(_select_events("WHERE serving_state IS NOT NULL ORDER BY seq DESC LIMIT 1"))
        return None if row is None else self._stored_event_of(row)

    def events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[StoredEvent], str | None]:
        """Audit events in seq order (``since`` inclusive, ``until`` exclusive) and the next page's cursor."""
        return self._kind_page(_select_events, self._stored_event_of, EVENT_KINDS, since, until, kind, cursor, limit)

    # --- shadow decisions ----------------------------------------------------------------------------------

    def save_shadows(self, records: Sequence[ShadowRecord]) -> list[StoredShadow]:
        """Append a batch of shadow decisions in ONE transaction (one chain lock, one commit not waiting for its flush).

        Returns the stored shadow of each record, in order. A record whose (decision_id, kind) is already stored
        (or earlier in the batch) is skipped and the stored one returned. If any record names a decision the store
        does not hold, :class:`UnknownShadowedDecisions` is raised and nothing of the batch is written; a shadow_id
        already held by another (decision_id, kind) raises :class:`DuplicateEntryId`, likewise writing nothing."""
        [result] = self.append_group([], [records])[1]
        if isinstance(result, Exception):
            raise result
        return result

    def save_shadows_grouped(self, records: Sequence[ShadowRecord]) -> list[StoredShadow]:
        """:meth:`save_shadows` through this process's group commit: the shadows ride in the transaction of the
        decisions being committed at that moment instead of taking the chain lock for a commit of their own."""
        return self._group.save_shadows(records)

    def _append_shadows(
        self, tx: Transaction, seq: int, prev_hash: str, records: Sequence[ShadowRecord], payloads: Sequence[str]
    ) -> tuple[list[StoredShadow], int, str]:
        """Insert a batch of shadows after (seq, prev_hash) (the caller holds the chain lock and moves the head);
        the stored shadows and the chain's new (seq, prev_hash). Raises before or after inserting some of them:
        the caller rolls the batch back."""
        contents = [canonical_content(record, text) for record, text in zip(records, payloads, strict=True)]
        decision_ids = sorted({record.decision_id for record in records})
        shadow_ids = sorted({record.shadow_id for record in records})
        out: list[StoredShadow] = []
        missing = sorted(set(decision_ids) - existing_decisions(tx, decision_ids))
        if missing:
            raise UnknownShadowedDecisions(missing)
        by_twin: dict[tuple[str, str], StoredShadow] = {}
        for chunk in _chunks(decision_ids):
            marks = ", ".join("?" * len(chunk))
            for row in tx.rows(_select_shadows(f"WHERE decision_id IN ({marks})"), chunk):
                stored = self._stored_shadow_of(row)
                by_twin[(stored.record.decision_id, stored.record.kind)] = stored
        taken: dict[str, tuple[str, str]] = {}
        for chunk in _chunks(shadow_ids):
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT shadow_id, decision_id, kind FROM shadow_decisions WHERE shadow_id IN ({marks})"  # noqa: S608
            taken.update((str(r[0]), (str(r[1]), str(r[2]))) for r in tx.rows(sql, chunk))
        for record, payload_text, content in zip(records, payloads, contents, strict=True):
            twin = (record.decision_id, record.kind)
            if twin in by_twin:
                out.append(by_twin[twin])
                continue
            if record.shadow_id in taken:
                raise DuplicateEntryId(f"shadow_id {record.shadow_id} is already stored for another decision/kind")
            seq += 1
            record_hash = chain_hash(prev_hash, record, content)
            tx.run(
                _INSERT_SHADOW,
                (
                    seq,
                    record.shadow_id,
                    record.decision_id,
                    self._encode_time(record.created_at),
                    record.kind,
                    record.model_name,
                    record.model_version,
                    record.policy_version,
                    record.catalog_version,
                    record.decision,
                    record.risk_band,
                    record.score,
                    self._encode_codes(record.reason_codes),
                    payload_text,
                    prev_hash,
                    record_hash,
                ),
            )
            # the record as given (its payload is JSON-ready; the background writer does not read it back)
            stored = StoredShadow(seq=seq, record=record, prev_hash=prev_hash, record_hash=record_hash)
            by_twin[twin] = stored
            taken[record.shadow_id] = twin
            out.append(stored)
            prev_hash = record_hash
        return out, seq, prev_hash

    def shadows_for(self, decision_ids: Sequence[str], kind: str | None = None) -> dict[str, list[StoredShadow]]:
        """The shadows of these decisions (of one kind, or all), by decision_id, each list in seq order (one read).

        Decisions without a shadow are absent from the result."""
        _check_kind(kind, SHADOW_KINDS)
        wanted = sorted(set(decision_ids))
        found: dict[str, list[StoredShadow]] = {}
        if not wanted:
            return found
        with self._transaction("read") as tx:
            for chunk in _chunks(wanted):
                marks = ", ".join("?" * len(chunk))
                tail = f"WHERE decision_id IN ({marks})" + (" AND kind = ?" if kind is not None else "")
                params = [*chunk] + ([kind] if kind is not None else [])
                for row in tx.rows(_select_shadows(f"{tail} ORDER BY seq"), params):
                    stored = self._stored_shadow_of(row)
                    found.setdefault(stored.record.decision_id, []).append(stored)
        return found

    def shadows(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[StoredShadow], str | None]:
        """Shadow decisions in seq order (``since`` inclusive, ``until`` exclusive) and the next page's cursor."""
        return self._kind_page(_select_shadows, self._stored_shadow_of, SHADOW_KINDS, since, until, kind, cursor, limit)

    def iter_shadow_pairs(
        self, *, since: datetime | None = None, until: datetime | None = None, kind: str
    ) -> Iterator[tuple[StoredRecord, StoredShadow]]:
        """Every shadow of ``kind`` created in ``[since, until)`` with its champion decision record, in the shadows'
        seq order, read in batches (no transaction held between them): the shadows stored when the iteration starts.
        A shadow whose decision was purged is left out."""
        if kind not in SHADOW_KINDS:
            raise _invalid("kind", f"must be one of {', '.join(SHADOW_KINDS)}")
        clauses, params = self._time_clauses(since, until, column="s.created_at")
        where = " AND ".join(["s.kind = ?", *clauses])
        with self._transaction("read") as tx:
            # The seq range of the period, found once, so each batch walks the (kind, seq) index from where the
            # last one stopped instead of re-reading the whole period.
            bounds = tx.one(f"SELECT MIN(s.seq), MAX(s.seq) FROM shadow_decisions s WHERE {where}", (kind, *params))  # noqa: S608
        if bounds is None or bounds[0] is None:
            return
        after, last = int(bounds[0]) - 1, int(bounds[1])
        shadow_columns = ", ".join(f"s.{column}" for column in _SHADOW_COLUMNS)
        record_columns = ", ".join(f"d.{column.strip()}" for column in _COLUMNS.split(","))
        sql = (
            f"SELECT {shadow_columns}, {record_columns} FROM shadow_decisions s "  # noqa: S608 (constant fragments)
            f"JOIN decision_records d ON d.decision_id = s.decision_id "
            f"WHERE {where} AND s.seq > ? AND s.seq <= ? ORDER BY s.seq LIMIT ?"
        )
        width = len(_SHADOW_COLUMNS)
        while after < last:
            with self._transaction("read") as tx:
                rows = tx.rows(sql, (kind, *params, after, last, _BATCH))
            for row in rows:
                yield self._stored_of(row[width:]), self._stored_shadow_of(row[:width])
            if len(rows) < _BATCH:
                return
            after = int(rows[-1][0])

    # --- report rows ---------------------------------------------------------------------------------------

    def _insert_report_row(self, tx: Transaction, seq: int, record: DecisionRecord) -> None:
        """Write the report row of the record appended at ``seq``, in the append's transaction.

        A payload the report cannot read gets no row: the record is stored all the same, and the report, finding
        its row missing, reads the record whole and fails as it always did on such a record."""
        try:
            row = report_row(seq, record)
        except PayloadError:
            return
        tx.later(INSERT_REPORT_ROW, row)

    def _report_span(self, since: datetime, until: datetime) -> tuple[int, int, int, int]:
        """(report rows, their first seq, their last seq, decision records) of the records created in
        ``[since, until)``: two index scans, in one snapshot. Rows of purged records (a purge racing a fill) are
        not counted: their seq is at or before the latest checkpoint."""
        clauses, params = self._time_clauses(since, until)
        where = " AND ".join(clauses) or "1 = 1"
        with self._transaction("snapshot") as tx:
            span = tx.one(
                "SELECT COUNT(*), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM report_rows "
                "WHERE created_us >= ? AND created_us < ? "
                "AND seq > (SELECT COALESCE(MAX(through_seq), 0) FROM decision_chain_checkpoints)",
                (epoch_us(since), epoch_us(until)),
            )
            records = tx.one(f"SELECT COUNT(*) FROM decision_records WHERE {where}", params)  # noqa: S608
        assert span is not None and records is not None
        return int(span[0]), int(span[1]), int(span[2]), int(records[0])

    def fill_report_rows(self, since: datetime, until: datetime) -> int:
        """Write the missing report rows of the records created in ``[since, until)``; how many were written.

        Records stored without their row (before migration 0005, by an older replica during a rolling upgrade,
        by a bulk load) are read whole, in batches, and their rows made by the same :func:`report_row` as an
        append's. A period whose rows are all there costs two index scans."""
        rows, _first, _last, records = self._report_span(since, until)
        return 0 if rows == records else self._fill_report_rows(since, until)

    def _fill_report_rows(self, since: datetime, until: datetime) -> int:
        clauses, params = self._time_clauses(since, until, "d.created_at")
        where = " AND ".join(clauses) or "1 = 1"
        with self._transaction("read") as tx:
            missing = [
                int(row[0])
                for row in tx.rows(
                    f"SELECT d.seq FROM decision_records d LEFT JOIN report_rows r ON r.seq = d.seq "  # noqa: S608
                    f"WHERE {where} AND r.seq IS NULL ORDER BY d.seq",
                    params,
                )
            ]
        written = 0
        for start in range(0, len(missing), _BATCH):
            chunk = missing[start : start + _BATCH]
            marks = ", ".join("?" * len(chunk))
            with self._transaction("read") as tx:
                made = [
                    report_row(int(row[0]), self._record_of(row))
                    for row in tx.rows(_select(f"WHERE seq IN ({marks})"), chunk)
                ]
            # derived data: the commit need not wait for its flush (a lost row is made again by the next report)
            with self._transaction("write_deferred") as tx:
                for values in made:
                    written += tx.run(INSERT_REPORT_ROW, values)
        return written

    def iter_report_rows(self, since: datetime, until: datetime, batch: int = 20_000) -> Iterator[list[Row]]:
        """The report rows (columns ``REPORT_ROW_COLUMNS``) of every record created in ``[since, until)``, in seq
        order, in batches of up to ``batch`` rows; missing rows are written first (:meth:`fill_report_rows`)."""
        rows, first, last, records = self._report_span(since, until)
        if rows != records:
            self._fill_report_rows(since, until)
            rows, first, last, records = self._report_span(since, until)
        if rows == 0:
            return
        after, lo, hi = first - 1, epoch_us(since), epoch_us(until)
        # a seq range scan, filtered by time (``+created_us``: not through the time index, whose order is not seq's)
        sql = (
            f"SELECT {', '.join(REPORT_ROW_COLUMNS)} FROM report_rows "  # noqa: S608 (constant column names)
            "WHERE seq > ? AND seq <= ? AND +created_us >= ? AND +created_us < ? ORDER BY seq LIMIT ?"
        )
        while after < last:
            with self._transaction("read") as tx:
                found = tx.rows(sql, (after, last, lo, hi, batch))
            if found:
                yield found
            if len(found) < batch:
                return
            after = int(found[-1][0])

    # --- the chain -----------------------------------------------------------------------------------------

    def _move_head(self, tx: Transaction, seq: int, record_hash: str) -> None:
        tx.later("UPDATE decision_chain_head SET seq = ?, record_hash = ? WHERE id = 1", (seq, record_hash))

    def _anchor(self, tx: Transaction) -> ChainAnchor:
        head = tx.one(self.head_sql)
        if head is None:
            raise RecordsError("the chain head row is missing")
        checkpoint = tx.one(
            "SELECT through_seq, record_hash FROM decision_chain_checkpoints ORDER BY through_seq DESC LIMIT 1"
        )
        base_seq, base_hash = (int(checkpoint[0]), str(checkpoint[1])) if checkpoint else (0, GENESIS_HASH)
        return ChainAnchor(base_seq=base_seq, base_hash=base_hash, head_seq=int(head[0]), head_hash=str(head[1]))

    def _table_links(
        self, tx: Transaction, select: Callable[[str], str], link_of: Callable[[Row], ChainLink]
    ) -> Iterator[ChainLink]:
        after: int | None = None
        while True:
            if after is None:
                rows = tx.rows(select("ORDER BY seq LIMIT ?"), (_BATCH,))
            else:
                rows = tx.rows(select("WHERE seq > ? ORDER BY seq LIMIT ?"), (after, _BATCH))
            for row in rows:
                yield link_of(row)
            if len(rows) < _BATCH:
                return
            after = int(rows[-1][0])

    def _links(self, tx: Transaction) -> Iterator[ChainLink]:
        """Every entry's link, the three tables merged by seq (one batch of each table in memory at a time)."""
        rank = {entry: i for i, entry in enumerate(ENTRY_KINDS)}
        return heapq.merge(
            self._table_links(tx, _select, self._link_of),
            self._table_links(tx, _select_events, self._event_link_of),
            self._table_links(tx, _select_shadows, self._shadow_link_of),
            key=lambda link: (link.seq, rank[link.entry]),
        )

    def verify_chain(self) -> ChainReport:
        """Check every entry (decisions, events, shadows) against the chain in one snapshot; name each
        changed/deleted/inserted/moved one."""
        with self._transaction("snapshot") as tx:
            anchor = self._anchor(tx)
            scan = ChainScan(anchor)
            named: dict[str, ChainLink] = {}  # reason texts documents by sha256: the first record naming each
            for link in self._links(tx):
                scan.feed(link)
                if link.reason_texts is not None and link.reason_texts not in named:
                    named[link.reason_texts] = link
            # The fast pass holds O(1) memory; only a broken chain is loaded whole to explain what happened.
            problems = [] if scan.intact else analyse_chain(list(self._links(tx)), anchor)
            problems += _texts_problems(tx.rows("SELECT sha256, catalog_version, body FROM reason_texts"), named)
        return ChainReport(
            records_checked=scan.records,
            checkpoint_seq=anchor.base_seq,
            checkpoint_hash=anchor.base_hash,
            head_seq=anchor.head_seq,
            head_hash=anchor.head_hash,
            problems=tuple(problems),
            events_checked=scan.counts[ENTRY_EVENT],
            shadows_checked=scan.counts[ENTRY_SHADOW],
        )

    def purge_before(self, cutoff: datetime) -> PurgeReport:
        """Remove the oldest entries created before ``cutoff`` (a seq prefix of the chain, all three tables) and
        write a checkpoint.

        The prefix ends before the first entry created at or after ``cutoff`` (decision records decide it in
        practice; a newer event or shadow also stops it), and never takes the latest control event: it holds the
        serving state every worker reads (``PurgeReport.held_at_seq`` says when it stopped the purge)."""
        if cutoff.tzinfo is None:
            raise ValueError("cutoff must be timezone-aware")
        with self._transaction("write") as tx:
            self._lock_chain(tx)
            anchor = self._anchor(tx)
            # Only a prefix of the chain can go, so the rest still verifies from one checkpoint; a record a few
            # milliseconds older than a newer one's seq neighbour is kept until the next purge.
            firsts = [
                tx.one(
                    f"SELECT MIN(seq) FROM {table} WHERE created_at >= ? AND seq > ?",  # noqa: S608 (constant names)
                    (self._encode_time(cutoff), anchor.base_seq),
                )
                for table in _TABLES.values()
            ]
            newer = [int(row[0]) for row in firsts if row and row[0] is not None]
            through = min(newer) - 1 if newer else anchor.head_seq
            held: int | None = None
            control = tx.one("SELECT MAX(seq) FROM audit_events WHERE serving_state IS NOT NULL")
            if control and control[0] is not None and anchor.base_seq < int(control[0]) <= through:
                held = int(control[0])
                through = held - 1
            if through <= anchor.base_seq:
                return PurgeReport(cutoff, 0, anchor.base_seq, anchor.base_hash, held_at_seq=held)
            last: Row | None = None
            for table in _TABLES.values():
                last = last or tx.one(f"SELECT record_hash FROM {table} WHERE seq = ?", (through,))  # noqa: S608
            if last is None:
                raise RecordsError(f"cannot purge: entry seq {through} is missing; run `audit verify`")
            purged = {
                entry: tx.run(f"DELETE FROM {table} WHERE seq > ? AND seq <= ?", (anchor.base_seq, through))  # noqa: S608
                for entry, table in _TABLES.items()
            }
            tx.run("DELETE FROM report_rows WHERE seq <= ?", (through,))
            tx.run(
                "INSERT INTO decision_chain_checkpoints (through_seq, record_hash, purged_records, cutoff, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    through,
                    str(last[0]),
                    purged[ENTRY_DECISION],
                    self._encode_time(cutoff),
                    self._encode_time(datetime.now(UTC)),
                ),
            )
        return PurgeReport(
            cutoff,
            purged[ENTRY_DECISION],
            through,
            str(last[0]),
            purged_events=purged[ENTRY_EVENT],
            purged_shadows=purged[ENTRY_SHADOW],
            held_at_seq=held,
        )
