"""Group commit: the decisions of every request thread of a process share one durable commit.

A request thread hands its record to :meth:`GroupCommitter.save` and waits. One writer thread per process takes
every record waiting at that moment (up to ``max_batch``), appends them to the chain in ONE transaction
(:meth:`~service.records._sql.SqlDecisionStore.save_many`: one chain lock, one chain-head read and update, one
COMMIT with its fsync) and then wakes each waiter with its own result. While it commits, the next records queue up,
so under load each commit carries as many decisions as arrived during the previous one, and an idle service pays
one thread hand-over (tens of microseconds) on top of its commit.

The guarantees are those of :meth:`save <service.records.DecisionStore.save>`:

- a waiter is woken only after the COMMIT of its record returned (its record is durable before its response);
- idempotency is settled under the chain lock, also between two records of one batch (the second record with a key
  gets the first's stored record, or IdempotencyConflict for another body);
- a record's own failure (IdempotencyConflict, DuplicateDecisionId, a payload that is not JSON) fails only its
  request; a failure of the store (StoreUnavailable and its kinds) fails every request of the batch, and nothing
  of that batch was written.

The writer is started in the process that first saves through it; a forked child starts its own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from service.errors import StoreUnavailable
from service.records.model import DecisionRecord, StoredRecord

log = logging.getLogger(__name__)

#: Records committed together, at most (one transaction).
DEFAULT_MAX_BATCH = 256

SaveMany = Callable[[Sequence[DecisionRecord]], list[StoredRecord | Exception]]


@dataclass
class _Waiter:
    record: DecisionRecord
    done: threading.Event = field(default_factory=threading.Event)
    result: StoredRecord | Exception | None = None


class GroupCommitter:
    """One writer thread that commits the records of every waiting request thread together."""

    def __init__(self, save_many: SaveMany, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._save_many = save_many
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._pending: list[_Waiter] = []
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        #: (commits, records) committed by this process's writer, for tests and benchmarks
        self.commits = 0
        self.records = 0

    def save(self, record: DecisionRecord) -> StoredRecord:
        """Commit ``record`` with whatever else is waiting; returns once it is durable, or raises what it failed
        with (its own error, or the store's)."""
        waiter = _Waiter(record)
        with self._cond:
            if self._closed:
                raise StoreUnavailable("the decision store is closed")
            self._ensure_writer()
            self._pending.append(waiter)
            self._cond.notify()
        waiter.done.wait()
        result = waiter.result
        if isinstance(result, Exception):
            raise result
        assert result is not None
        return result

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is waiting, then stop the writer."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread() and self._pid == os.getpid():
            thread.join(timeout)

    def _ensure_writer(self) -> None:
        """Start the writer of this process (called with the condition held)."""
        pid = os.getpid()
        if pid != self._pid:  # a forked child: the parent's writer and waiters are not here
            self._pid, self._pending, self._thread = pid, [], None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="credit-decision-group-commit", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self._commit(batch)

    def _commit(self, batch: list[_Waiter]) -> None:
        results: Sequence[StoredRecord | Exception] = []
        try:
            results = self._save_many([waiter.record for waiter in batch])
            self.commits += 1
            self.records += len(batch)
        except Exception as exc:  # the store failed (or a bug): every request of the batch fails with it
            if not isinstance(exc, StoreUnavailable):
                log.exception("group commit of %d record(s) failed", len(batch))
            results = [exc] * len(batch)
        finally:
            if len(results) != len(batch):  # never leave a request waiting, whatever happened
                results = [StoreUnavailable("the group commit failed")] * len(batch)
            for waiter, result in zip(batch, results, strict=True):
                waiter.result = result
                waiter.done.set()
