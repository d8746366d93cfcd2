"""Shadow decisions: a challenger model and a candidate policy decide every live request off the critical path.

After the champion's decision is committed, :meth:`ShadowRunner.submit` puts the request (with the shadow
models this worker serves at that moment) on a bounded queue and returns at once; a background thread gathers
what queues up for a moment (``linger``), decides it with each shadow in one batch (one ONNX run and one
attribution pass per shadow) and records every shadow decision in one transaction of the decision store, linked
to the champion's decision id and chained like every record: through the store's group writer
(:mod:`service.records.group`), so they ride in the transaction of the decisions being committed at that moment
rather than taking the chain lock for a commit of their own. The champion's response and
latency never wait for a shadow: when the queue is full the request is not shadowed and the skip is counted
(``credit_decision_shadow_skipped_total``); a shadow that fails is counted and logged, never raised.

The shadow thread shares the worker's CPU (and the interpreter) with the requests, so a queue alone does not keep it
from slowing the champion when the machine is saturated: the thread never falls behind, it takes the requests' time
instead. A :class:`CpuBudget` therefore caps it: while the worker is busy (in requests for at least ``busy``, half,
of the last second), the shadow thread may use at most ``share`` of the worker's CPU time; a gathering beyond that
is not shadowed and is counted as skipped for ``busy``. Below that load every request is shadowed. The comparison report covers the decisions that have a twin (its coverage says how many).

The queue is drained when the process exits (``atexit``, at most ``drain_seconds``), so a worker that is
stopped gracefully records the shadows of every decision it made.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.core.recorded import RecordedDecision, ShadowDecision
from service.errors import CreditDecisionError
from service.records import DecisionStore
from service.records.model import ShadowRecord
from service.runtime import ServedModel

log = logging.getLogger(__name__)

#: Live requests waiting to be shadowed, per worker; beyond this they are skipped (and counted).
DEFAULT_QUEUE_SIZE = 1024
#: Requests shadowed (and recorded) together, at most.
DEFAULT_BATCH = 256
#: How long the thread gathers requests after the first before deciding and recording them: shadows are recorded
#: in one transaction (one commit, one fsync) per gathering instead of one per request, so they barely compete
#: with the champion's commits for the disk and the database's write lock.
DEFAULT_LINGER_SECONDS = 0.05
#: Requests decided per step; the thread yields the interpreter between steps so that a gathering never holds up
#: the worker's requests for long (the GIL is shared with the thread answering them).
STEP = 16
#: While the worker is busy, the most of its CPU time the shadow thread may take (the rest is the champion's).
DEFAULT_MAX_SHARE = 0.08
#: The worker counts as busy when it spent at least this share of the last window answering requests.
DEFAULT_BUSY = 0.5


class CpuBudget:
    """How much of the worker's CPU the shadow thread may take: all it needs while the worker is not busy, at most
    ``share`` of the worker's CPU time while it is.

    Busy means: over the last ``window`` seconds the worker spent at least ``busy`` of the wall time answering
    requests (``busy_time``: the seconds spent in requests so far; a sync worker at its peak is in requests all the
    time, at half its peak about half of it). Without ``busy_time`` the worker's CPU time stands in for it.

    :meth:`allows` is asked before each gathering, :meth:`spent` told the shadow thread's CPU time after it. The
    decision uses the current window once it is a quarter old, before that the previous one. Clocks are injected
    (tests); by default the process's CPU clock and the monotonic clock.
    """

    def __init__(
        self,
        share: float = DEFAULT_MAX_SHARE,
        busy: float = DEFAULT_BUSY,
        *,
        window: float = 1.0,
        busy_time: Callable[[], float] | None = None,
        process_time: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share!r}")
        self.share = share
        self.busy = busy
        self.window = window
        self._busy_time = busy_time or process_time
        self._process_time = process_time
        self._clock = clock
        self._start = self._now()
        self._spent = 0.0
        self._last: tuple[float, float] | None = None  # (busy, shadow share) of the previous window

    def _now(self) -> tuple[float, float, float]:
        return self._clock(), self._busy_time(), self._process_time()

    def _roll(self) -> tuple[float, float] | None:
        now = self._now()
        wall, busy, used = (b - a for a, b in zip(self._start, now, strict=True))
        current = (busy / wall, self._spent / used if used > 0 else 0.0) if wall > 0 else None
        if wall >= self.window:
            self._last = current
            self._start, self._spent = now, 0.0
            return self._last
        return current if wall >= self.window / 4 else self._last

    def allows(self) -> bool:
        """Whether the shadow thread may decide the next gathering."""
        if self.share >= 1:
            return True
        seen = self._roll()
        if seen is None:
            return True
        busy, shadow_share = seen
        return busy < self.busy or shadow_share < self.share

    def spent(self, cpu_seconds: float) -> None:
        """The shadow thread used ``cpu_seconds`` of CPU time."""
        self._spent += max(0.0, cpu_seconds)


@dataclass(frozen=True)
class Shadow:
    """One shadow as it stood when a request was decided: its kind and the model (with its policy)."""

    kind: str  # "challenger" or "policy"
    model: ServedModel


@dataclass(frozen=True)
class _Item:
    recorded: RecordedDecision
    request_hash: str
    shadows: tuple[Shadow, ...]


class ShadowCounters(Protocol):
    """What the runner reports (the app's metrics implement it)."""

    def shadowed(self, kind: str, n: int) -> None:
        """``n`` shadow decisions of ``kind`` were recorded."""

    def skipped(self, kind: str, reason: str, n: int) -> None:
        """``n`` requests were not shadowed by ``kind`` (``reason``: queue_full, busy, error)."""

    def queue_depth(self, depth: int) -> None:
        """Requests waiting now."""


class _Uncounted:
    def shadowed(self, kind: str, n: int) -> None:
        pass

    def skipped(self, kind: str, reason: str, n: int) -> None:
        pass

    def queue_depth(self, depth: int) -> None:
        pass


class ShadowRunner:
    """A bounded queue and one background thread that decides and records shadow decisions in batches."""

    def __init__(
        self,
        store: DecisionStore,
        *,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
        counters: ShadowCounters | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        batch: int = DEFAULT_BATCH,
        linger: float = DEFAULT_LINGER_SECONDS,
        drain_seconds: float = 10.0,
        budget: CpuBudget | None = None,
    ) -> None:
        self.store = store
        self._clock = clock
        self._new_id = new_id
        self.counters: ShadowCounters = counters or _Uncounted()
        self.batch = batch
        self.linger = linger
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._busy = 0
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._drain_seconds = drain_seconds
        self.budget = budget or CpuBudget(share=1.0)

    # ---- the request side -----------------------------------------------------------------------------
    def submit(self, decided: Sequence[tuple[RecordedDecision, str]], shadows: Sequence[Shadow]) -> None:
        """Queue new decisions (with their request hashes) for the given shadows; never blocks."""
        if not shadows or not decided:
            return
        self._ensure_started()
        frozen = tuple(shadows)
        for recorded, request_hash in decided:
            try:
                self._queue.put_nowait(_Item(recorded, request_hash, frozen))
            except queue.Full:
                for shadow in frozen:
                    self.counters.skipped(shadow.kind, "queue_full", 1)
        self.counters.queue_depth(self._queue.qsize())

    @property
    def queued(self) -> int:
        """Requests waiting to be shadowed now."""
        return self._queue.qsize()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is recorded (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
        return True

    def stop(self) -> None:
        """Drain (at most ``drain_seconds``) and stop the thread."""
        if self._thread is None:
            return
        self.flush(self._drain_seconds)
        self._stopping = True
        self._thread.join(timeout=2.0)

    # ---- the background side --------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="credit-decision-shadow", daemon=True)
            self._thread.start()
            atexit.register(self.stop)

    def _run(self) -> None:
        while not self._stopping:
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            items = [first]
            until = time.monotonic() + self.linger
            while len(items) < self.batch and not self._stopping:
                left = until - time.monotonic()
                try:
                    items.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if self.budget.allows():
                    started = time.thread_time()
                    self._shadow(items)
                    self.budget.spent(time.thread_time() - started)
                else:
                    self._skip(items, "busy")
            finally:
                with self._lock:
                    for _ in items:
                        self._queue.task_done()
                    self._lock.notify_all()
                self.counters.queue_depth(self._queue.qsize())

    def _skip(self, items: Sequence[_Item], reason: str) -> None:
        counts: dict[str, int] = {}
        for item in items:
            for shadow in item.shadows:
                counts[shadow.kind] = counts.get(shadow.kind, 0) + 1
        for kind, n in counts.items():
            self.counters.skipped(kind, reason, n)

    def _shadow(self, items: Sequence[_Item]) -> None:
        """Decide ``items`` with their shadows (grouped by shadow, one batch each) and record them together."""
        groups: dict[tuple[str, int], tuple[Shadow, list[_Item]]] = {}
        for item in items:
            for shadow in item.shadows:
                groups.setdefault((shadow.kind, id(shadow.model)), (shadow, []))[1].append(item)
        records: list[ShadowRecord] = []
        for shadow, members in groups.values():
            try:
                records.extend(self._decide(shadow, members))
            except Exception:  # a shadow must never take the worker down; counted and logged
                log.exception("shadow %s %s failed on %d request(s)", shadow.kind, shadow.model.info.name, len(members))
                self.counters.skipped(shadow.kind, "error", len(members))
        if not records:
            return
        try:
            self.store.save_shadows_grouped(records)
        except (CreditDecisionError, ValueError) as exc:
            log.error("recording %d shadow decision(s) failed: %s", len(records), exc)
            for kind in {r.kind for r in records}:
                self.counters.skipped(kind, "error", sum(1 for r in records if r.kind == kind))
            return
        for kind in {r.kind for r in records}:
            self.counters.shadowed(kind, sum(1 for r in records if r.kind == kind))

    def _decide(self, shadow: Shadow, members: Sequence[_Item]) -> list[ShadowRecord]:
        records: list[ShadowRecord] = []
        for start in range(0, len(members), STEP):
            records.extend(self._decide_step(shadow, members[start : start + STEP]))
            time.sleep(0)  # let the request thread run
        return records

    def _decide_step(self, shadow: Shadow, members: Sequence[_Item]) -> list[ShadowRecord]:
        model = shadow.model
        batch = model.engine.decide([dict(item.recorded.request.applicant) for item in members])
        created_at = self._clock()
        records = []
        for row, item in enumerate(members):
            decision = batch.decision(row)
            payload = ShadowDecision(
                kind=shadow.kind,
                model_name=model.info.name,
                model_version=model.info.version,
                decision=decision,
                model=model.info.provenance,
                score_scale=model.score_scale,
                request_hash=item.request_hash,
            )
            records.append(
                ShadowRecord(
                    shadow_id=self._new_id(),
                    decision_id=item.recorded.decision_id,
                    created_at=created_at,
                    kind=shadow.kind,
                    model_name=model.info.name,
                    model_version=model.info.version,
                    policy_version=model.info.policy_version,
                    catalog_version=model.info.catalog_version,
                    decision=decision.decision,
                    risk_band=decision.risk_band,
                    score=decision.score,
                    reason_codes=tuple(r.code for r in decision.reasons),
                    payload=payload.to_json(),
                )
            )
        return records
