"""SQLite backend: one database file in WAL mode, appends serialised by flock(2) and ``BEGIN IMMEDIATE``."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from service.errors import StoreBusy, StoreFull, StoreUnavailable
from service.private_files import create_private
from service.records._sql import Mode, Row, SqlDecisionStore, Transaction
from service.records.model import format_timestamp, parse_timestamp

#: How long a writer waits for another process's append before failing with StoreBusy.
BUSY_TIMEOUT_SECONDS = 30.0


class _SqliteTransaction(Transaction):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount

    def script(self, sql: str) -> None:
        # executescript() would COMMIT first; run statement by statement inside our transaction instead.
        statement = ""
        for line in sql.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                self._conn.execute(statement)
                statement = ""
        leftover = [line for line in statement.splitlines() if line.strip() and not line.strip().startswith("--")]
        if leftover:
            raise ValueError("migration script ends with an incomplete statement")


class SqliteDecisionStore(SqlDecisionStore[sqlite3.Connection]):
    """Decision store in one SQLite file (WAL, synchronous=FULL): safe for several processes on one host."""

    backend = "sqlite"
    reason_code_sql = "EXISTS (SELECT 1 FROM json_each(decision_records.reason_codes) WHERE json_each.value = ?)"

    def __init__(self, path: str | Path, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        super().__init__()
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        # One lock-file descriptor per connection (so per thread and process): appenders queue on flock(2),
        # which the kernel hands over the moment it is released, instead of on SQLite's busy handler, which
        # polls with sleeps of up to 100 ms. The lock dies with its process, so a killed worker never holds it.
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fds: dict[int, int] = {}
        self._deferred: set[int] = set()  # connections inside a deferred write (synchronous=NORMAL)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # it holds every application: created 0600 (SQLite gives its -wal and -shm files the mode of the database)
        create_private(self.path)
        self.migrate()
        # Keep no connection open after construction, so a store built before gunicorn forks its workers
        # carries nothing across the fork.
        self.release()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            mode = self._wal(conn)
            if mode is None or str(mode[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            self._lock_fds[id(conn)] = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except BaseException:
            conn.close()
            raise
        return conn

    def _wal(self, conn: sqlite3.Connection) -> Any:
        """Switch to WAL, waiting (up to busy_timeout) while another process holds the database: SQLite does not
        apply its busy handler to this pragma, so workers opening a new file at the same moment would otherwise
        fail with "database is locked" and start not ready."""
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.005
        while True:
            try:
                return conn.execute("PRAGMA journal_mode=WAL").fetchone()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.1)

    def _begin(self, conn: sqlite3.Connection, mode: Mode) -> Transaction:
        # IMMEDIATE takes the database write lock at BEGIN (waiting up to busy_timeout), so the chain head read
        # next is the one this append extends: appends from every process form one total order.
        if mode not in ("write", "write_deferred"):
            conn.execute("BEGIN")
            return _SqliteTransaction(conn)
        if mode == "write_deferred":  # the WAL is not fsynced at this commit (set outside the transaction)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._deferred.add(id(conn))
        fd = self._lock_fds[id(conn)]
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            self._restore_full(conn)
            raise
        return _SqliteTransaction(conn)

    def _finish(self, conn: sqlite3.Connection, commit: bool) -> None:
        try:
            if conn.in_transaction:
                conn.execute("COMMIT" if commit else "ROLLBACK")
        finally:
            fd = self._lock_fds.get(id(conn))
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            self._restore_full(conn)

    def _restore_full(self, conn: sqlite3.Connection) -> None:
        """After a deferred write, every other commit of the connection waits for its fsync again; a connection
        that cannot be set back is closed (and so never used for a decision)."""
        if id(conn) not in self._deferred:
            return
        self._deferred.discard(id(conn))
        try:
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error:
            conn.close()
            raise

    def _is_database_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error)

    def _error_kind(self, exc: BaseException) -> type[StoreUnavailable]:
        # SQLITE_FULL: the disk (or max_page_count) is full; the statement and its transaction were rolled back.
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
            return StoreFull
        if code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return StoreBusy
        return StoreUnavailable

    def _is_broken(self, conn: sqlite3.Connection) -> bool:
        try:
            conn.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return True
        return False

    def _close_connection(self, conn: sqlite3.Connection) -> None:
        fd = self._lock_fds.pop(id(conn), None)
        if fd is not None:
            os.close(fd)
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def _encode_time(self, moment: datetime) -> Any:
        return format_timestamp(moment)

    def _decode_time(self, value: Any) -> datetime:
        return parse_timestamp(str(value))

    def _encode_codes(self, codes: tuple[str, ...]) -> Any:
        return json.dumps(list(codes), ensure_ascii=False, separators=(",", ":"))

    def _decode_codes(self, value: Any) -> tuple[str, ...]:
        codes = json.loads(value)
        if not isinstance(codes, list):
            raise ValueError("reason_codes is not a JSON array")
        return tuple(codes)
