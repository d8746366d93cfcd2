"""Human review of automated decisions: the queue of referrals, and final decisions recorded as audit events.

A reviewer (role ``reviewer``) sees a referred decision with its reasons and attributions and records the final
decision (approve or decline) with a justification code from the served policy's ``review`` catalog and a note.
The review is an audit event (kind ``review``) in the decision store's hash chain, naming the reviewer's key, the
automated decision as it stands in its record (decision, band, score, reasons, versions), the final decision and
whether it overrides the automated one. The decision record itself is never altered (it is chained: changing it
would break the chain). A decision is reviewed once: the event's id is derived from the decision id, so two
reviewers submitting at the same moment cannot both succeed (the store refuses a second event of that id).

The queue is every referral without a review, oldest first.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from model_store.policy import REVIEW_OUTCOMES, Policy
from service.core.recorded import RecordedDecision
from service.errors import DuplicateEntryId, FieldError, NoReviewCatalog, NotFound, ReviewConflict, ValidationFailed
from service.records import DecisionStore
from service.records._sql import encode_cursor
from service.records.model import AuditEvent, StoredEvent, StoredRecord

#: The event kind of a review.
REVIEW = "review"
#: Longest note a reviewer may write.
MAX_NOTE = 2000
_NAMESPACE = uuid.UUID("6f1c2d7e-8a55-4f0b-9d7a-2b1e5c3a9f10")


def review_event_id(decision_id: str) -> str:
    """The one event id a review of ``decision_id`` can have (so a decision is reviewed at most once)."""
    return uuid.uuid5(_NAMESPACE, f"review:{decision_id}").hex


@dataclass(frozen=True)
class Review:
    """A review as recorded: the event and the decision it reviews."""

    stored: StoredEvent

    @property
    def decision_id(self) -> str:
        return str(self.stored.event.details["decision_id"])

    @property
    def override(self) -> bool:
        return bool(self.stored.event.details["override"])


def automated(recorded: RecordedDecision) -> dict[str, Any]:
    """What the automated decision was, as the review event keeps it."""
    d = recorded.decision
    model = recorded.payload.model
    return {
        "decision": d.decision,
        "risk_band": d.risk_band,
        "score": d.score,
        "reason_codes": [r.code for r in d.reasons],
        "model_name": recorded.model_name,
        "model_version": recorded.model_version,
        "policy_version": model.policy_version,
        "catalog_version": model.catalog_version,
    }


class ReviewDesk:
    """The review use cases over the decision store (transport-free: the API and tests call it)."""

    def __init__(
        self,
        store: DecisionStore,
        *,
        policy: Callable[[], Policy],
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self._policy = policy
        self._clock = clock

    # ---- reading ------------------------------------------------------------------------------------
    def reviews(self, since: datetime | None = None, until: datetime | None = None) -> Iterator[Review]:
        """Every review recorded in [``since``, ``until``), in chain order."""
        cursor: str | None = None
        while True:
            page, cursor = self.store.events(kind=REVIEW, since=since, until=until, cursor=cursor, limit=500)
            yield from (Review(stored) for stored in page)
            if cursor is None:
                return

    def review_of(self, decision_id: str) -> Review | None:
        """The review of a decision, or None."""
        wanted = review_event_id(decision_id)
        return next((r for r in self.reviews() if r.stored.event.event_id == wanted), None)

    def queue(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[StoredRecord], str | None]:
        """Referrals without a review, oldest first, one page (and the cursor of the next page, None at the end)."""
        reviewed = {r.decision_id for r in self.reviews()}
        found: list[StoredRecord] = []
        while len(found) < limit:
            page, next_cursor = self.store.search(
                decision="refer", since=since, until=until, cursor=cursor, limit=max(limit, 50)
            )
            for stored in page:
                if stored.record.decision_id not in reviewed:
                    found.append(stored)
                    if len(found) == limit:
                        return found, _cursor_after(stored, next_cursor, page)
            if next_cursor is None:
                return found, None
            cursor = next_cursor
        return found, cursor

    # ---- reviewing ----------------------------------------------------------------------------------
    def justifications(self) -> tuple[Policy, list[dict[str, Any]]]:
        """The served policy and its justification codes."""
        policy = self._policy()
        return policy, [
            {"code": j.code, "text": j.text, "outcomes": list(j.outcomes)} for j in policy.review.justification_codes
        ]

    def record(
        self,
        stored: StoredRecord,
        *,
        final_decision: str,
        justification_code: str,
        note: str,
        actor: dict[str, Any],
    ) -> StoredEvent:
        """Record the final decision of a human review (ReviewConflict if already reviewed)."""
        policy = self._policy()
        catalog = policy.review
        if not catalog.justification_codes:
            raise NoReviewCatalog(
                f"the served policy {policy.version} defines no review justification codes (policy.yaml: review)"
            )
        errors: list[FieldError] = []
        if final_decision not in REVIEW_OUTCOMES:
            errors.append(FieldError("final_decision", f"must be one of {', '.join(REVIEW_OUTCOMES)}"))
        justification = catalog.justification(justification_code)
        if justification is None:
            codes = ", ".join(j.code for j in catalog.justification_codes)
            errors.append(FieldError("justification_code", f"unknown code; the policy's codes are {codes}"))
        elif final_decision in REVIEW_OUTCOMES and final_decision not in justification.outcomes:
            errors.append(
                FieldError(
                    "justification_code",
                    f"{justification.code} justifies only {', '.join(justification.outcomes)}, not {final_decision}",
                )
            )
        if len(note) > MAX_NOTE:
            errors.append(FieldError("note", f"at most {MAX_NOTE} characters"))
        if errors:
            raise ValidationFailed(f"{len(errors)} invalid field(s)", errors)
        assert justification is not None
        recorded = RecordedDecision.of(stored.record)
        decision_id = recorded.decision_id
        before = automated(recorded)
        event = AuditEvent(
            event_id=review_event_id(decision_id),
            created_at=self._clock(),
            kind=REVIEW,
            actor=actor,
            details={
                "decision_id": decision_id,
                "application_id": recorded.application_id,
                "decision_created_at": stored.record.created_at.isoformat(),
                "automated": before,
                "final_decision": final_decision,
                "override": final_decision != before["decision"],
                "justification": {"code": justification.code, "text": justification.text},
                "review_policy_version": policy.version,
                "note": note,
            },
        )
        try:
            return self.store.append_event(event)
        except (
            DuplicateEntryId
        ) as exc:  # reviewed already (the event id is the decision's): checked under the chain lock
            raise ReviewConflict(f"decision {decision_id} has already been reviewed") from exc


def _cursor_after(stored: StoredRecord, next_cursor: str | None, page: list[StoredRecord]) -> str | None:
    """The cursor that resumes the queue after ``stored`` (None if nothing can follow it)."""
    if stored is page[-1] and next_cursor is None:
        return None
    return encode_cursor(stored.seq)


def require_review(desk: ReviewDesk, decision_id: str) -> Review:
    """The review of a decision, or NotFound."""
    found = desk.review_of(decision_id)
    if found is None:
        raise NotFound(f"decision {decision_id!r} has not been reviewed")
    return found
