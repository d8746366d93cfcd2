"""What one worker serves right now, and the watcher that keeps it in step with the deployment's serving state.

:class:`Serving` is an immutable snapshot (the serving state, the champion's model, the shadows); the decision
service reads it once per call, so a switch never splits a call between two versions, and every record names
the version that decided it. :class:`ServingWatcher` polls the serving state (the latest control event in the
decision store, about once a second; every worker of every replica does) and, when it changed, loads and
self-checks whatever is new **before** it swaps the snapshot: requests keep being decided by the previous
champion until the new one is ready, so a promotion or rollback drops and delays no request. A champion this
worker cannot load (e.g. a replica whose model store lacks the version) keeps the previous one serving and makes
the worker not ready (``/readyz`` says why), so a load balancer sends its traffic to workers that switched.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from service.errors import CreditDecisionError, ModelUnavailable
from service.runtime import ServedModel
from service.serving import Lifecycle, ServingState, Target
from service.shadow import Shadow

log = logging.getLogger(__name__)

#: How often a worker reads the serving state.
DEFAULT_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Serving:
    """The serving state as this worker applies it: the champion's model, the shadows and any problem."""

    state: ServingState
    champion: ServedModel | None
    shadows: tuple[Shadow, ...] = ()
    problems: tuple[str, ...] = ()

    @classmethod
    def of(cls, champion: ServedModel | None) -> Serving:
        """A snapshot serving just ``champion`` (startup, before the first poll)."""
        target = None if champion is None else Target(champion.info.name, champion.info.version)
        return cls(ServingState(target, source="startup"), champion)

    def view(self) -> dict[str, object]:
        """JSON for /readyz and the admin API: what this worker serves and runs in shadow."""
        return {
            "state": self.state.view(),
            "champion": None if self.champion is None else _served_view(self.champion),
            "shadows": [{"kind": s.kind, **_served_view(s.model)} for s in self.shadows],
            "problems": list(self.problems),
        }


def _served_view(model: ServedModel) -> dict[str, object]:
    return {**model.info.to_dict(), "policy_version": model.info.policy_version}


def settle_heap() -> None:
    """In a process that froze its start-up objects out of the garbage collector's reach (the gunicorn worker:
    ``service.gunicorn_conf.post_worker_init``), collect and freeze again: the newly served model joins them, and
    what the switch left behind in reference cycles is freed. One full collection, once per switch."""
    if gc.get_freeze_count() > 0:
        gc.unfreeze()
        gc.collect()
        gc.freeze()


class ServingWatcher:
    """Keeps a decision service's :class:`Serving` in step with the serving state."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        get: Callable[[], Serving],
        put: Callable[[Serving], None],
        *,
        interval: float = DEFAULT_POLL_SECONDS,
        on_switch: Callable[[Serving, Serving], None] | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self._get = get
        self._put = put
        self.interval = interval
        self._on_switch = on_switch
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> Serving:
        """Read the serving state and apply it if it changed; returns the snapshot now served."""
        with self._lock:
            current = self._get()
            try:
                state = self.lifecycle.state()
            except CreditDecisionError as exc:  # the store is unreachable: keep serving what we serve
                log.warning("serving state unreadable, keeping %s: %s", current.state.champion, exc)
                return current
            if state == current.state and state.seq == current.state.seq and not current.problems:
                return current
            new = self._apply(state, current)
            if new != current:
                self._put(new)
                settle_heap()  # a model (champion or shadow) may have been loaded
                if self._on_switch is not None:
                    self._on_switch(current, new)
                if new.champion is not current.champion and new.champion is not None:
                    log.info("now serving %s %s (%s)", new.champion.info.name, new.champion.info.version, state.source)
            return new

    def _apply(self, state: ServingState, current: Serving) -> Serving:
        problems: list[str] = []
        champion = current.champion
        if state.champion is not None:
            try:
                champion = self.lifecycle.load(state.champion)
            except ModelUnavailable as exc:
                problems.append(f"cannot serve the champion {state.champion.label()}: {exc}")
        shadows: list[Shadow] = []
        if state.challenger is not None:
            try:
                shadows.append(Shadow("challenger", self.lifecycle.load(state.challenger)))
            except ModelUnavailable as exc:
                log.error("challenger %s not run in shadow: %s", state.challenger.label(), exc)
        if state.policy_shadow is not None and state.champion is not None:
            try:
                target = Target(state.champion.name, state.champion.version, state.policy_shadow)
                shadows.append(Shadow("policy", self.lifecycle.load(target)))
            except ModelUnavailable as exc:
                log.error("policy %s not run in shadow: %s", state.policy_shadow, exc)
        return Serving(state, champion, tuple(shadows), tuple(problems))

    # ---- the background thread ------------------------------------------------------------------------
    def start(self) -> None:
        """Poll in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="credit-decision-serving", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.lifecycle.store.closed:  # the app was shut down
                return
            try:
                self.refresh()
            except Exception:  # never let the watcher die: the next poll tries again
                log.exception("serving state refresh failed")
