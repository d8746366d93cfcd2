"""SQLite backend: one database file in WAL mode, appends serialised by flock(2) and ``BEGIN IMMEDIATE``.

WAL checkpoints (copying committed pages from the ``-wal`` file into the database file, then reusing or truncating
the WAL) never run on a request's connection: every connection is opened with ``wal_autocheckpoint=0`` (SQLite
would otherwise have the commit that passes 1000 WAL pages checkpoint the whole log, fsyncs included, before its
request is answered). A background thread of each process that writes, :class:`WalCheckpointer`, checkpoints
instead: ``PASSIVE`` every ``checkpoint_seconds`` (it copies what no reader still needs and never waits for, or
blocks, anyone), and ``TRUNCATE`` (the log back to zero bytes) when the store has been idle since the last round
and everything was copied, or when the WAL has grown past ``WAL_TRUNCATE_BYTES`` whatever the load. A truncation
holds the append lock (appenders queue on flock meanwhile, as behind any append) and waits at most
``TRUNCATE_WAIT_SECONDS`` for readers; if they do not let it, it is tried again at the next round.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
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
#: How often the background checkpointer copies the WAL into the database (PASSIVE).
CHECKPOINT_SECONDS = 0.5
#: A WAL larger than this is truncated even under load.
WAL_TRUNCATE_BYTES = 64 * 1024 * 1024
#: The longest a truncating checkpoint waits for readers (while appenders wait for it).
TRUNCATE_WAIT_SECONDS = 0.05

log = logging.getLogger(__name__)

#: Held by a checkpointer for each round, and by the forking thread across fork(): a process never forks while one
#: of its checkpointer threads is inside SQLite, whose global mutexes (and the allocator's) a child would otherwise
#: inherit locked, and deadlock on its first connection (a process pool forked from a process holding stores).
_NO_FORK_DURING_CHECKPOINT = threading.Lock()
os.register_at_fork(
    before=_NO_FORK_DURING_CHECKPOINT.acquire,
    after_in_parent=_NO_FORK_DURING_CHECKPOINT.release,
    after_in_child=_NO_FORK_DURING_CHECKPOINT.release,
)


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

    def __init__(
        self,
        path: str | Path,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
        checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
    ) -> None:
        """``checkpoint_seconds``: the background checkpointer's round (None: no checkpointer; the owner calls
        :meth:`checkpoint`)."""
        super().__init__()
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.checkpointer: WalCheckpointer | None = None  # none while migrating: nothing runs across a fork
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
        # carries nothing across the fork; the checkpointer starts with the first append.
        self.release()
        if checkpoint_seconds is not None:
            self.checkpointer = WalCheckpointer(self, checkpoint_seconds)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            mode = self._wal(conn)
            if mode is None or str(mode[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # never on a request: the WalCheckpointer's thread does it
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
        if self.checkpointer is not None:
            self.checkpointer.ensure_running()
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

    def checkpoint(self, truncate: bool = False) -> tuple[int, int, int]:
        """Checkpoint the WAL now, on a connection of its own: PASSIVE, or TRUNCATE holding the append lock (waiting
        at most TRUNCATE_WAIT_SECONDS for readers). Returns SQLite's (busy, WAL frames, frames checkpointed)."""
        conn = self._connect()
        try:
            return self._checkpoint_on(conn, truncate)
        finally:
            self._close_connection(conn)

    def _checkpoint_on(self, conn: sqlite3.Connection, truncate: bool) -> tuple[int, int, int]:
        if not truncate:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(row[0]), int(row[1]), int(row[2])
        fd = self._lock_fds[id(conn)]
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(TRUNCATE_WAIT_SECONDS * 1000)}")
            row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        """Stop the checkpointer, then close every connection (the last one checkpoints what is left)."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        super().close()

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


class WalCheckpointer:
    """The background thread that checkpoints a store's WAL, so that no request does (see the module docstring)."""

    def __init__(self, store: SqliteDecisionStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        self._inherited: list[sqlite3.Connection] = []  # the parent's, never finalised in a forked child
        self.rounds = 0  # completed rounds, for tests
        self.truncations = 0

    @property
    def wal_path(self) -> Path:
        """The store's ``-wal`` file."""
        return self.store.path.with_name(self.store.path.name + "-wal")

    def ensure_running(self) -> None:
        """Start this process's checkpointer thread unless it runs (a forked child starts its own)."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._inherited += [self._conn] if self._conn is not None else []
                self._pid, self._thread, self._stop, self._conn = os.getpid(), None, threading.Event(), None
            if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="credit-decision-wal-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread (it finishes the round it is in)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def _wal_state(self) -> tuple[int, int]:
        try:
            info = self.wal_path.stat()
        except FileNotFoundError:
            return 0, 0
        return info.st_size, info.st_mtime_ns

    def _run(self) -> None:
        last_change = -1
        try:
            while not self._stop.wait(self.interval):
                try:
                    last_change = self._round(last_change)
                except sqlite3.Error as exc:  # never let the thread die: the next round tries again
                    log.warning("WAL checkpoint of %s failed: %s", self.store.path, exc)
                    self._close()
        finally:
            self._close()

    def _round(self, last_change: int) -> int:
        """PASSIVE; TRUNCATE too when idle since the last round (nothing left to copy) or past the size bound."""
        with _NO_FORK_DURING_CHECKPOINT:
            return self._round_unforked(last_change)

    def _round_unforked(self, last_change: int) -> int:
        if self._conn is None:
            self._conn = self.store._connect()
        _busy, frames, copied = self.store._checkpoint_on(self._conn, truncate=False)
        size, changed = self._wal_state()
        if (changed == last_change and frames == copied and size > 0) or size > WAL_TRUNCATE_BYTES:
            self.store._checkpoint_on(self._conn, truncate=True)
            self.truncations += 1
            size, changed = self._wal_state()
        self.rounds += 1
        return changed

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self.store._close_connection(conn)
