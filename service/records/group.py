"""Group commit: the decisions of every request thread of a process share one durable commit.

A request thread hands its record to :meth:`GroupCommitter.save` and waits. Whichever waiting thread finds no
commit under way becomes the leader (no thread of its own: an idle service pays nothing for grouping, not even a
thread hand-over): it takes every record waiting at that moment (up to ``max_batch``), appends them to the chain in
ONE transaction (:meth:`~service.records._sql.SqlDecisionStore.save_many`: one chain lock, one chain-head read and
update, one COMMIT with its fsync) and then wakes each waiter with its own result. While it commits, the next
records queue up and the next leader takes them all, so under load each commit carries as many decisions as arrived
during the previous one.

The guarantees are those of :meth:`save <service.records.DecisionStore.save>`:

- a waiter is woken only after the COMMIT of its record returned (its record is durable before its response);
- idempotency is settled under the chain lock, also between two records of one batch (the second record with a key
  gets the first's stored record, or IdempotencyConflict for another body);
- a record's own failure (IdempotencyConflict, DuplicateDecisionId, a payload that is not JSON) fails only its
  request; a failure of the store (StoreUnavailable and its kinds) fails every request of the batch, and nothing
  of that batch was written.

Shadow decisions (:meth:`GroupCommitter.save_shadows`, the shadow thread's batches) go through the same group commit:
they ride in the transaction of the decisions being committed at that moment (after them in the chain) instead of
taking the chain lock for a commit of their own; a shadow batch that fails writes nothing of itself and fails alone.
A transaction of shadows only does not wait for its flush to disk, as :meth:`save_shadows
<service.records.DecisionStore.save_shadows>`.

Nothing runs across a fork: a forked child starts with an empty queue.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from service.errors import CreditDecisionError, StoreUnavailable
from service.records.model import DecisionRecord, ShadowRecord, StoredRecord, StoredShadow

log = logging.getLogger(__name__)

#: Records committed together, at most (one transaction).
DEFAULT_MAX_BATCH = 256

#: The store's ``append_group``: records and shadow batches in one transaction, a result for each.
AppendGroup = Callable[
    [Sequence[DecisionRecord], Sequence[Sequence[ShadowRecord]]],
    tuple[list[StoredRecord | Exception], list[list[StoredShadow] | Exception]],
]


@dataclass
class _Waiter:
    job: DecisionRecord | Sequence[ShadowRecord]
    result: StoredRecord | list[StoredShadow] | Exception | None = None  # set once, when its commit is over


class GroupCommitter:
    """Commits the records of every waiting request thread together, led by one of them at a time."""

    def __init__(self, append: AppendGroup, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        """``max_batch``: the most decision records one transaction takes (shadow batches waiting ride along)."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._append = append
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._pending: list[_Waiter] = []
        self._pending_shadows: list[_Waiter] = []
        self._leading = False  # a thread is committing
        self._pid = os.getpid()
        self._closed = False
        #: (commits, records) committed in this process, for tests and benchmarks
        self.commits = 0
        self.records = 0

    def save(self, record: DecisionRecord) -> StoredRecord:
        """Commit ``record`` with whatever else is waiting; returns once it is durable, or raises what it failed
        with (its own error, or the store's)."""
        [result] = self.save_all([record])
        if isinstance(result, Exception):
            raise result
        return result

    def save_all(self, records: Sequence[DecisionRecord]) -> list[StoredRecord | Exception]:
        """Commit several records (the items of one batch request) with whatever else is waiting: in one
        transaction when they fit in ``max_batch``. Returns once every one is durable: each record's stored form,
        or the error it failed with (its own, or the store's)."""
        waiters = [_Waiter(record) for record in records]
        self._enqueue(waiters, shadows=False)
        results: list[StoredRecord | Exception] = []
        for waiter in waiters:
            assert isinstance(waiter.result, StoredRecord | Exception)
            results.append(waiter.result)
        return results

    def save_shadows(self, records: Sequence[ShadowRecord]) -> list[StoredShadow]:
        """Record a batch of shadow decisions in the next transaction; returns once committed, or raises what the
        batch failed with."""
        if not records:
            return []
        waiter = _Waiter(tuple(records))
        self._enqueue([waiter], shadows=True)
        if isinstance(waiter.result, Exception):
            raise waiter.result
        assert isinstance(waiter.result, list)
        return waiter.result

    def _enqueue(self, waiters: Sequence[_Waiter], *, shadows: bool) -> None:
        """Queue the waiters, then lead commits until every one of them has its result."""
        with self._cond:
            if self._closed:
                raise StoreUnavailable("the decision store is closed")
            pid = os.getpid()
            if pid != self._pid:  # a forked child: the parent's waiters and its commit are not here
                self._pid, self._pending, self._pending_shadows, self._leading = pid, [], [], False
            # the queue is looked up under the lock: the leader replaces the lists as it takes them
            (self._pending_shadows if shadows else self._pending).extend(waiters)
            while any(waiter.result is None for waiter in waiters):
                if self._leading:  # another thread is committing: wait for it, then look again
                    self._cond.wait()
                    continue
                self._leading = True
                records, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                shadows_taken, self._pending_shadows = self._pending_shadows, []
                self._cond.release()
                try:
                    self._commit(records, shadows_taken)
                finally:
                    self._cond.acquire()
                    self._leading = False
                    self._cond.notify_all()

    def close(self) -> None:
        """Refuse new saves (StoreUnavailable); a commit under way finishes and answers its waiters."""
        with self._cond:
            self._closed = True

    def _commit(self, records: list[_Waiter], shadows: list[_Waiter]) -> None:
        waiters = [*records, *shadows]
        results: Sequence[StoredRecord | list[StoredShadow] | Exception] = []
        try:
            stored, shadowed = self._append(
                [waiter.job for waiter in records if isinstance(waiter.job, DecisionRecord)],
                [waiter.job for waiter in shadows if not isinstance(waiter.job, DecisionRecord)],
            )
            results = [*stored, *shadowed]
            self.commits += 1
            self.records += len(records)
        except Exception as exc:  # the store failed (or a bug): every request of the batch fails with it
            if not isinstance(exc, CreditDecisionError):  # a lone shadow batch's own error is raised, not a bug
                log.exception("group commit of %d record(s) failed", len(waiters))
            results = [exc] * len(waiters)
        finally:
            if len(results) != len(waiters):  # never leave a request waiting, whatever happened
                results = [StoreUnavailable("the group commit failed")] * len(waiters)
            for waiter, result in zip(waiters, results, strict=True):
                waiter.result = result
