"""The decision service: the one use-case layer between the transports and the decision core.

Like MLServer's ``DataPlane`` it knows no HTTP and no command line. The HTTP views (single and batch
decisions, records, replay, notices), the batch file command and the audit commands are thin callers
of :class:`DecisionService`; the clock, the decision-id factory and the timer are injected.

Deciding, step by step (:meth:`DecisionService.decide`):

1. **readiness**: a self-checked model is served and the decision store is open, else ``NotReady``;
2. **idempotency first**: a request whose idempotency key is already recorded gets the recorded decision
   back (``replayed``), or ``IdempotencyConflict`` if the key came with another body; it never reaches the
   model;
3. **one engine** decides every remaining request together (one ONNX run, one attribution pass);
4. each decision becomes a :class:`RecordedDecision` and is **committed** to the store before anything is
   returned; a concurrent retry with the same key is settled under the store's append lock (the loser
   gets the winner's record);
5. the ``on_decided`` hook (metrics) hears of every new decision.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from model_store.catalog import DEFAULT_LANGUAGE, ReasonCatalog
from model_store.vocabulary import DECISION_ID
from service.core.engine import DecisionBatch
from service.core.languages import in_language
from service.core.notice import NOTICE_LANGUAGES, AdverseActionNotice, build_notice
from service.core.recorded import ApplicationRequest, RecordedDecision
from service.core.recourse import Recourse
from service.errors import (
    CreditDecisionError,
    FieldError,
    IdempotencyConflict,
    ModelUnavailable,
    NotFound,
    NotReady,
    StoreUnavailable,
    UnknownDecisions,
)
from service.live import Serving
from service.models import ModelCache
from service.records import DecisionRecord, DecisionStore, StoredRecord
from service.records.model import StoredEvent, StoredShadow
from service.records.outcomes import ObservedOutcome, OutcomeImport, record_outcomes
from service.replay import ReplayReport, replay_record
from service.runtime import ServedModel
from service.serving import Lifecycle, ServingState
from service.shadow import ShadowRunner

log = logging.getLogger(__name__)

#: how often a worker whose store could not be opened at startup tries again (on a request or /readyz)
LATE_OPEN_SECONDS = 2.0

Clock = Callable[[], datetime]
IdFactory = Callable[[], str]
Timer = Callable[[], float]


def utc_now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def new_decision_id() -> str:
    """A fresh decision id (uuid4, hex)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Decided:
    """One request's decision as recorded; ``replayed`` when an idempotent retry got the recorded one."""

    recorded: RecordedDecision
    stored: StoredRecord
    replayed: bool


@dataclass(frozen=True)
class Timings:
    """Where a call's time went: deciding (from the request's start) and recording, in milliseconds."""

    decide_ms: float
    store_ms: float


class DecisionService:
    """Decides, records, retrieves, replays and explains decisions for one served model and one store."""

    def __init__(
        self,
        *,
        models: ModelCache | None,
        served: ServedModel | None,
        store: DecisionStore | None,
        problems: Iterable[str] = (),
        clock: Clock = utc_now,
        new_id: IdFactory = new_decision_id,
        timer: Timer = time.perf_counter,
        on_decided: Callable[[RecordedDecision], None] | None = None,
    ) -> None:
        self.models = models
        self.serving = Serving.of(served)
        self.store = store
        self.shadow_runner: ShadowRunner | None = None
        self.lifecycle: Lifecycle | None = None  # admin actions on the serving state (needs the store)
        self.on_serving_change: Callable[[], object] | None = None  # apply a new serving state in this process
        self.problems = list(problems)
        #: set when the store could not be opened at startup (database down): opens it and what depends on it,
        #: raising (StoreUnavailable) while it still cannot; tried again by :meth:`retry_startup`
        self.open_late: Callable[[], None] | None = None
        self._late_lock = threading.Lock()
        self._late_next = 0.0
        self._clock = clock
        self._new_id = new_id
        self._timer = timer
        self._on_decided = on_decided

    # ---- what is served ---------------------------------------------------------------------------
    @property
    def served(self) -> ServedModel | None:
        """The champion this process serves now (None if none passed its self-check)."""
        return self.serving.champion

    @served.setter
    def served(self, model: ServedModel | None) -> None:
        self.serving = Serving.of(model)

    # ---- readiness ---------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once the served model passed its self-check, the decision store is open and this process
        serves the deployment's champion."""
        return not self.problems and not self.serving.problems and self.served is not None and self.store is not None

    @property
    def not_ready_reason(self) -> str:
        """Why the service is not ready ('' when it is); for operators (/readyz), never for API clients."""
        if self.ready:
            return ""
        return "; ".join([*self.problems, *self.serving.problems]) or "starting"

    def retry_startup(self, now: float | None = None) -> None:
        """If the store could not be opened at startup, try again (at most once per ``LATE_OPEN_SECONDS``, one
        thread at a time): a worker started while its database was down becomes ready by itself once it is back."""
        if self.open_late is None or self.store is not None:
            return
        at = time.monotonic() if now is None else now
        if at < self._late_next or not self._late_lock.acquire(blocking=False):
            return
        try:
            if self.store is None and self.open_late is not None:
                self._late_next = at + LATE_OPEN_SECONDS
                try:
                    self.open_late()
                except StoreUnavailable as exc:
                    log.warning("decision store still unavailable: %s", exc)
                else:
                    self.open_late = None
        finally:
            self._late_lock.release()

    def served_model(self) -> ServedModel:
        """The model being served, or NotReady."""
        if self.served is None:
            raise NotReady("no model is being served; /readyz says why")
        return self.served

    def require_store(self) -> DecisionStore:
        """The decision store, or NotReady."""
        if self.store is None:
            self.retry_startup()
        if self.open_late is not None:  # started while the database was down, and it still is
            raise StoreUnavailable("the decision store cannot be reached; /readyz says why")
        if self.store is None:
            raise NotReady("the decision store is not open; /readyz says why")
        return self.store

    def require_models(self) -> ModelCache:
        """Every model version this process can load (for replay), or NotReady."""
        if self.models is None:
            raise NotReady("the model store is not available; /readyz says why")
        return self.models

    def _require_ready(self, serving: Serving) -> tuple[ServedModel, DecisionStore]:
        if self.open_late is not None:  # started while the database was down, and it still is
            raise StoreUnavailable("the decision store cannot be reached; /readyz says why")
        if not self.ready or serving.champion is None:
            raise NotReady("the service is not ready; /readyz says why")
        return serving.champion, self.require_store()

    # ---- deciding ----------------------------------------------------------------------------------
    def decide(
        self,
        requests: Sequence[ApplicationRequest],
        *,
        decided_by: Mapping[str, str],
        idempotency_keys: Sequence[str | None] | None = None,
        legacy_batch_keys: Sequence[str] | None = None,
        started: float | None = None,
        recourse: bool = False,
    ) -> tuple[list[Decided | CreditDecisionError], Timings]:
        """Decide and record validated requests; each result is its decision or the error it alone failed with.

        ``legacy_batch_keys``: for batch items (keyed :func:`batch_item_key`), the key each had before batch items
        had a namespace of their own (:func:`legacy_batch_item_key`), so a retry across that upgrade finds its
        record. ``started`` is the timer reading when the request arrived (default: now), so ``latency_ms`` covers
        reading and validating it too. ``recourse`` adds, to each new refer or decline, what would change it
        (``service.core.recourse``), recorded with it; an idempotent retry gets the record as it was made.
        """
        began = self._timer() if started is None else started
        if self.store is None:
            self.retry_startup()
        serving = self.serving  # one snapshot for the whole call: a switch never splits a batch
        model, store = self._require_ready(serving)
        keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(requests)
        if len(keys) != len(requests):
            raise ValueError("one idempotency key (or None) per request")
        results: list[Decided | CreditDecisionError | None] = [None] * len(requests)
        given = [key for key in keys if key is not None]
        earlier = store.get_by_idempotency_keys(given) if given else {}
        if legacy_batch_keys is not None and len(earlier) < len(given):
            legacy = {
                old: new
                for old, new in zip(legacy_batch_keys, keys, strict=True)
                if new is not None and new not in earlier
            }
            for old_key, legacy_found in store.get_by_legacy_batch_item_keys(list(legacy)).items():
                earlier[legacy[old_key]] = legacy_found
        pending: list[int] = []
        for i, (request, key) in enumerate(zip(requests, keys, strict=True)):
            found = earlier.get(key) if key is not None else None
            if found is None:
                pending.append(i)
            else:
                results[i] = _retried(found, request)
        batch = model.engine.decide([requests[i].applicant for i in pending]) if pending else None
        recourses: list[Recourse | None] = [None] * len(pending)
        if recourse and batch is not None:
            for j, action in enumerate(batch.decisions()):
                if action != "approve":
                    recourses[j] = model.recourse(batch.applications[j])
        decided = self._timer()
        if pending:
            assert batch is not None
            recorded = [
                model.recorded(
                    decision_id=self._new_id(),
                    created_at=self._clock(),
                    request=requests[i],
                    decision=batch.decision(j),
                    decided_by=decided_by,
                    latency_ms=(decided - began) * 1000.0,
                    recourse=recourses[j],
                    reason_stability=model.reason_stability(batch, j),
                )
                for j, i in enumerate(pending)
            ]
            # every item in one group commit (one durable commit for a batch request, not one per item)
            saved = store.save_all_grouped(
                [record_of(r, keys[i], requests[i].request_hash) for r, i in zip(recorded, pending, strict=True)]
            )
            for i, new, stored in zip(pending, recorded, saved, strict=True):
                results[i] = self._outcome(new, stored)
        done = self._timer()
        timings = Timings(decide_ms=(decided - began) * 1000.0, store_ms=(done - decided) * 1000.0)
        if serving.shadows and self.shadow_runner is not None:
            fresh = [
                (r.recorded, requests[i].request_hash)
                for i in pending
                if isinstance(r := results[i], Decided) and not r.replayed
            ]
            self.shadow_runner.submit(fresh, serving.shadows)
        return [r for r in results if r is not None], timings

    def decide_one(
        self,
        request: ApplicationRequest,
        *,
        decided_by: Mapping[str, str],
        idempotency_key: str | None = None,
        started: float | None = None,
        recourse: bool = False,
    ) -> tuple[Decided, Timings]:
        """Decide and record one validated request (a batch of one); raises what it failed with."""
        results, timings = self.decide(
            [request], decided_by=decided_by, idempotency_keys=[idempotency_key], started=started, recourse=recourse
        )
        result = results[0]
        if isinstance(result, CreditDecisionError):
            raise result
        return result, timings

    def evaluate(self, applicants: Sequence[Mapping[str, Any]]) -> DecisionBatch:
        """Decide validated applicants with the served model without recording them (batch files)."""
        return self.served_model().engine.decide(applicants)

    def _outcome(self, recorded: RecordedDecision, stored: StoredRecord | Exception) -> Decided | CreditDecisionError:
        """What saving a new decision came to: the decision, the earlier one of a concurrent retry of its key, or
        the error it alone failed with (IdempotencyConflict, StoreUnavailable...)."""
        if isinstance(stored, CreditDecisionError):
            return stored
        if isinstance(stored, Exception):  # not the store's kind of failure: a bug, raised as such
            raise stored
        if stored.record.decision_id != recorded.decision_id:  # a concurrent retry of this key was recorded first
            return Decided(RecordedDecision.of(stored.record), stored, replayed=True)
        if self._on_decided is not None:
            self._on_decided(recorded)
        return Decided(recorded, stored, replayed=False)

    # ---- reading, replaying, explaining ------------------------------------------------------------
    def stored(self, decision_id: str) -> StoredRecord:
        """The stored record of a decision, or NotFound."""
        store = self.require_store()
        found = store.get(decision_id) if DECISION_ID.match(decision_id) else None
        if found is None:
            raise NotFound(f"no decision {decision_id!r}")
        return found

    def recorded(self, decision_id: str) -> RecordedDecision:
        """A decision as recorded, read through its typed payload, or NotFound."""
        return RecordedDecision.of(self.stored(decision_id).record)

    def replay(self, decision_id: str) -> ReplayReport:
        """Re-decide a recorded request with the recorded model version and report every difference."""
        return self.replay_stored(self.stored(decision_id))

    def replay_stored(self, stored: StoredRecord) -> ReplayReport:
        """Replay one stored record (the audit command replays many)."""
        return replay_record(stored.record, self.require_models())

    def catalog_of(self, recorded: RecordedDecision) -> ReasonCatalog | None:
        """The reason catalog a recorded decision was made with (the served one when it is that version), or None
        when that version cannot be loaded or no longer holds the recorded catalog version."""
        wanted = recorded.payload.model.catalog_version
        served = self.served
        if (
            served is not None
            and (served.info.name, served.info.version) == (recorded.model_name, recorded.model_version)
            and served.catalog.version == wanted
        ):
            return served.catalog
        try:
            model = self.require_models().deciding(
                recorded.model_name, recorded.model_version, recorded.payload.model.policy_version
            )
        except (NotReady, ModelUnavailable):
            return None
        return model.catalog if model.catalog.version == wanted else None

    def _descriptions_of(self, recorded: RecordedDecision) -> dict[str, str]:
        """The deciding version's field descriptions, which recourse sentences name fields by ({} without recourse
        or when that version cannot be loaded: the sentences then name the fields)."""
        if recorded.payload.recourse is None:
            return {}
        served = self.served
        if served is not None and (served.info.name, served.info.version) == (
            recorded.model_name,
            recorded.model_version,
        ):
            return {f.name: f.description for f in served.bundle.spec.fields}
        try:
            model = self.require_models().deciding(
                recorded.model_name, recorded.model_version, recorded.payload.model.policy_version
            )
        except (NotReady, ModelUnavailable):
            return {}
        return {f.name: f.description for f in model.bundle.spec.fields}

    def notice(
        self, decision_id: str, choose_language: Callable[[Sequence[str]], str] | None = None
    ) -> AdverseActionNotice:
        """The adverse-action notice of a declined decision (NoticeNotRequired otherwise).

        The inquiry factor follows the reason catalog of the model version that made the decision; if that
        version cannot be loaded, the notice says it cannot tell whether inquiries affected the score.
        ``choose_language`` picks the notice's language among those offered (the catalog's languages that a
        notice has wording in, its default first); without it, or without the catalog, the catalog's default.
        """
        recorded = self.recorded(decision_id)
        catalog = self.catalog_of(recorded)
        if catalog is None:
            return build_notice(recorded, None, catalog_known=False)
        offered = [lang for lang in catalog.languages if lang in NOTICE_LANGUAGES] or [DEFAULT_LANGUAGE]
        language = offered[0] if choose_language is None else choose_language(offered)
        shown = in_language(recorded, catalog.customer_texts(language))
        return build_notice(
            shown, catalog.inquiries_field, language=language, descriptions=self._descriptions_of(recorded)
        )

    # ---- lifecycle -----------------------------------------------------------------------------------
    def require_lifecycle(self) -> Lifecycle:
        """The admin actions on the serving state, or NotReady (they need the decision store)."""
        if self.lifecycle is None:
            raise NotReady("the decision store is not open, so the serving state cannot be read or changed")
        return self.lifecycle

    def change_serving(self, action: Callable[[Lifecycle], StoredEvent]) -> tuple[StoredEvent, ServingState]:
        """Perform an admin action, apply its new serving state in this process at once (the other workers
        follow within their poll interval), and return the recorded event with the state after it."""
        lifecycle = self.require_lifecycle()
        event = action(lifecycle)
        if self.on_serving_change is not None:
            self.on_serving_change()
        return event, lifecycle.state()

    def shadows(self, decision_id: str) -> list[StoredShadow]:
        """The shadow decisions recorded for a decision (NotFound if there is no such decision)."""
        self.stored(decision_id)
        return self.require_store().shadows_for([decision_id]).get(decision_id, [])

    # ---- outcomes ----------------------------------------------------------------------------------
    def record_outcomes(self, outcomes: Sequence[ObservedOutcome]) -> OutcomeImport:
        """Store observed outcomes, all or nothing; UnknownDecisions names each unknown one by its position."""
        try:
            return record_outcomes(self.require_store(), outcomes, recorded_at=self._clock())
        except UnknownDecisions as exc:
            first = {o.decision_id: i for i, o in reversed(list(enumerate(outcomes)))}
            errors = [FieldError(f"outcomes[{first[d]}].decision_id", f"no decision {d}") for d in exc.decision_ids]
            raise UnknownDecisions(exc.decision_ids, errors) from None


def record_of(recorded: RecordedDecision, idempotency_key: str | None, request_hash: str) -> DecisionRecord:
    """The store's record of a decision (its columns and the payload in the current schema version)."""
    decision = recorded.decision
    return DecisionRecord(
        decision_id=recorded.decision_id,
        application_id=recorded.application_id,
        created_at=recorded.created_at,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        decision=decision.decision,
        risk_band=decision.risk_band,
        score=decision.score,
        model_name=recorded.model_name,
        model_version=recorded.model_version,
        reason_codes=recorded.reason_codes,
        payload=recorded.payload_json,
        typed=recorded,
        reason_texts=recorded.payload.reason_texts,
    )


def batch_item_key(batch_key: str, index: int) -> str:
    """The idempotency key item ``index`` of a batch keyed ``batch_key`` is recorded under: ``<key> [<index>]``.

    Its space never occurs in an Idempotency-Key header, so no single request's key (stored as sent) can name
    a batch item, and no batch item a single request."""
    return f"{batch_key} [{index}]"


def legacy_batch_item_key(batch_key: str, index: int) -> str:
    """How batch items were keyed before they had a namespace of their own (records up to migration 0004)."""
    return f"{batch_key}#{index}"


def _retried(found: StoredRecord, request: ApplicationRequest) -> Decided | CreditDecisionError:
    if found.record.request_hash != request.request_hash:
        return IdempotencyConflict("this Idempotency-Key was already used with a different request body")
    return Decided(RecordedDecision.of(found.record), found, replayed=True)
