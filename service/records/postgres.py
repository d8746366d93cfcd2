"""PostgreSQL backend: appends from every worker and replica serialised by locking the chain-head row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from service.errors import StoreBusy, StoreFull, StoreUnavailable
from service.records._sql import Mode, Row, SqlDecisionStore, Transaction

#: How long an append waits for the chain-head lock before failing with StoreBusy.
LOCK_TIMEOUT = "30s"
#: A server that does not answer (down host, dropped packets) fails the request after this; a stopped server
#: refuses at once.
CONNECT_TIMEOUT_SECONDS = 3
#: The server is out of disk space (SQLSTATE 53100).
_FULL = (psycopg.errors.DiskFull,)
#: A lock_timeout or statement_timeout ran out.
_BUSY = (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)

_BEGIN = {
    "write": "BEGIN ISOLATION LEVEL READ COMMITTED",
    "write_deferred": "BEGIN ISOLATION LEVEL READ COMMITTED",
    "read": "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
    "snapshot": "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
}


def _pg(sql: str) -> str:
    # Our SQL never contains a literal '?', so the shared '?' placeholders map one to one.
    return sql.replace("?", "%s")


class _PostgresTransaction(Transaction):
    """Statements whose results nobody reads (:meth:`later`: an append's inserts, the head's move, the append
    lock) wait and go with the next statement in one libpq pipeline: one round trip to the server for all of them.
    An append is three round trips (BEGIN; the append lock, the head and the id and key check; the inserts, the
    head's move and COMMIT), not one per statement."""

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self._conn = conn
        self._later: list[tuple[str, tuple[Any, ...]]] = []

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._later.append((_pg(sql), tuple(params)))

    def _send_held(self, then: Callable[[], object] | None = None) -> None:
        """The statements held for later, then ``then()``'s, in one pipeline: one round trip. Leaving the pipeline
        syncs it: every result is in, and the first error (if any) is raised, the statements after it not run."""
        held, self._later = self._later, []
        with self._conn.pipeline():
            for sql, params in held:
                self._conn.execute(sql, params)
            if then is not None:
                then()

    def _execute(self, cursor: psycopg.Cursor[Row], sql: str, params: tuple[Any, ...]) -> None:
        if self._later:
            self._send_held(lambda: cursor.execute(sql, params))
        else:
            cursor.execute(sql, params)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._conn.cursor() as cursor:
            self._execute(cursor, _pg(sql), tuple(params))
            return cursor.fetchall() if cursor.description is not None else []

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._conn.cursor() as cursor:
            self._execute(cursor, _pg(sql), tuple(params))
            return cursor.rowcount

    def rows_many(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        cursors = [self._conn.cursor() for _ in queries]
        try:

            def run_all() -> None:
                for cursor, (sql, params) in zip(cursors, queries, strict=True):
                    cursor.execute(_pg(sql), tuple(params))

            self._send_held(run_all)  # the held statements and every query: one round trip
            return [cursor.fetchall() if cursor.description is not None else [] for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()

    def script(self, sql: str) -> None:
        self.flush()
        # Without parameters psycopg sends the whole script at once, inside our transaction.
        self._conn.execute(sql.encode("utf-8"))

    @property
    def pending(self) -> bool:
        """True while statements wait to be sent."""
        return bool(self._later)

    def discard(self) -> None:
        """Drop what waits (the transaction is rolled back)."""
        self._later = []

    def flush(self) -> None:
        """Send what waits (one round trip)."""
        if self._later:
            self._send_held()

    def commit(self) -> None:
        """What waits, then COMMIT, in one round trip. A statement that fails aborts the pipeline: the COMMIT is not
        run, the error is raised, and the transaction is left failed for the caller's ROLLBACK."""
        self._send_held(lambda: self._conn.execute("COMMIT"))


class PostgresDecisionStore(SqlDecisionStore[psycopg.Connection[Row]]):
    """Decision store in PostgreSQL (the tables of the connection's current schema)."""

    backend = "postgres"
    # Appenders queue on a transaction-level advisory lock (one per schema: a fair FIFO queue, released at
    # COMMIT after the commit is visible); then the chain head read under READ COMMITTED is the head the
    # previous append committed. FOR UPDATE on the head row also stops any writer that skips the advisory lock.
    append_lock_sql = "SELECT pg_advisory_xact_lock(hashtext('credit-decision:chain:' || current_schema()))"
    lock_head_sql = "SELECT seq, record_hash FROM decision_chain_head WHERE id = 1 FOR UPDATE"
    reason_code_sql = "reason_codes @> ARRAY[?]::text[]"
    migration_lock_sql = "SELECT pg_advisory_xact_lock(hashtext('credit-decision:migrations:' || current_schema()))"

    def __init__(self, url: str, lock_timeout: str = LOCK_TIMEOUT, statement_timeout: str = "0") -> None:
        """``lock_timeout`` bounds every lock wait (the append queue too), ``statement_timeout`` every statement
        ('0': none); both fail the transaction with StoreBusy."""
        super().__init__()
        self.url = url
        for name, value in (("lock_timeout", lock_timeout), ("statement_timeout", statement_timeout)):
            if not value.replace(" ", "").isalnum():
                raise ValueError(f"{name} must look like '30s' or '500ms', not {value!r}")
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout
        self.migrate()
        self.release()  # nothing open across a fork (see SqliteDecisionStore)

    def _connect(self) -> psycopg.Connection[Row]:
        conn = psycopg.connect(
            self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name="credit-decision"
        )
        try:
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute(f"SET lock_timeout = '{self.lock_timeout}'")
            conn.execute(f"SET statement_timeout = '{self.statement_timeout}'")
            schema = conn.execute("SELECT current_schema()").fetchone()
            if schema is None or schema[0] is None:
                raise psycopg.OperationalError("no schema on the search_path exists: create it first")
        except BaseException:
            conn.close()
            raise
        return conn

    def _begin(self, conn: psycopg.Connection[Row], mode: Mode) -> Transaction:
        conn.execute(_BEGIN[mode])
        if mode == "write_deferred":  # the commit does not wait for the WAL flush (this transaction only)
            conn.execute("SET LOCAL synchronous_commit = off")
        return _PostgresTransaction(conn)

    def _finish(self, conn: psycopg.Connection[Row], commit: bool) -> None:
        status = conn.info.transaction_status
        if status == psycopg.pq.TransactionStatus.IDLE:
            return
        if commit and status != psycopg.pq.TransactionStatus.INTRANS:
            # COMMIT of a failed transaction silently rolls back: never report that as durable.
            conn.execute("ROLLBACK")
            raise psycopg.OperationalError(f"transaction cannot commit (status {status.name})")
        conn.execute("COMMIT" if commit else "ROLLBACK")

    def _commit(self, conn: psycopg.Connection[Row], tx: Transaction) -> None:
        if not isinstance(tx, _PostgresTransaction) or not tx.pending:
            self._finish(conn, commit=True)
            return
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
            tx.discard()
            self._finish(conn, commit=True)  # refuses a failed transaction, as without statements waiting
            return
        tx.commit()

    def _is_database_error(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.Error)

    def _error_kind(self, exc: BaseException) -> type[StoreUnavailable]:
        if isinstance(exc, _FULL):
            return StoreFull
        if isinstance(exc, _BUSY):
            return StoreBusy
        return StoreUnavailable

    def _is_broken(self, conn: psycopg.Connection[Row]) -> bool:
        return conn.closed or conn.broken

    def _close_connection(self, conn: psycopg.Connection[Row]) -> None:
        try:
            conn.close()
        except psycopg.Error:
            pass

    def _encode_time(self, moment: datetime) -> Any:
        return moment.astimezone(UTC)

    def _decode_time(self, value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise ValueError("created_at is not a timestamp")
        return value.astimezone(UTC)

    def _encode_codes(self, codes: tuple[str, ...]) -> Any:
        return list(codes)

    def _decode_codes(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise ValueError("reason_codes is not an array")
        return tuple(str(code) for code in value)
