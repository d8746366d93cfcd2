"""The errors of credit-decision: one tree of domain errors, knowing nothing of HTTP.

Every expected failure is a subclass of :class:`CreditDecisionError`; its message (``detail``) is fit to
show a client, and ``errors`` names each invalid field or parameter. The HTTP layer maps the classes to
problem types and statuses in one table (:mod:`service.api.problems`); the command line prints
``detail``. Anything else that escapes is a bug: a 500 whose body never echoes its text.

Hierarchy::

    CreditDecisionError
    ├── InvalidInput                  the caller's input is wrong; nothing was changed
    │   ├── MalformedBody             the body is not a JSON document we read (syntax, depth, empty, UTF-8,
    │   │                             duplicate keys)
    │   ├── InvalidHeader             a header's value is invalid (e.g. Idempotency-Key)
    │   ├── InvalidParameter          a query parameter is unknown, repeated or invalid (the cursor too)
    │   ├── ValidationFailed          fields of the body are missing, unknown or invalid
    │   │   └── UnknownDecisions      outcomes posted for decisions the store does not hold
    │   ├── UnsupportedMediaType      the body is not application/json in UTF-8
    │   └── PayloadTooLarge           the body is larger than the endpoint accepts
    ├── AccessDenied
    │   ├── Unauthenticated           no valid API key
    │   └── Forbidden                 the key does not hold the role the operation needs
    ├── NotFound                      no such decision (or resource)
    ├── Conflict                      the request contradicts what is recorded
    │   ├── IdempotencyConflict       the idempotency key was used with another request body
    │   ├── OutcomeConflict           an observation is already recorded with the other outcome
    │   └── NoticeNotRequired         the decision is not a decline, so it has no adverse-action notice
    ├── RateLimited                   the API key sent more requests than its role's rate limit allows
    ├── NotReady                      no model is served (not loaded, failed its self-check) or no store
    ├── ModelUnavailable              a model version cannot be loaded: missing, changed, or fails its self-check
    └── RecordsError                  the decision store failed
        ├── StoreUnavailable          could not commit or read durably; the request must fail
        │   ├── StoreFull             the database or its disk is full; nothing of the request was written
        │   └── StoreBusy             a lock or statement wait ran out (bounded, so a request answers, never hangs)
        ├── DuplicateDecisionId       another record holds this decision id (a bug, never the client's)
        ├── DuplicateEntryId          another audit event / shadow decision holds this id with other content (a bug)
        └── UnknownShadowedDecisions  shadow decisions for decisions the store does not hold; none was stored (a bug)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One invalid field or parameter: its dotted path (``applicant.<field>``) and what is wrong."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"field": self.field, "message": self.message}


class CreditDecisionError(Exception):
    """Base of every expected failure: ``detail`` for the client, ``errors`` naming fields."""

    #: seconds after which a retry may succeed (a hint; None when retrying will not help)
    retry_after: int | None = None

    def __init__(self, detail: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)


class InvalidInput(CreditDecisionError):
    """The caller's input is wrong; nothing was changed."""


class MalformedBody(InvalidInput):
    """The body is not a JSON document we can read: malformed, too deeply nested, empty, duplicate keys."""


class InvalidHeader(InvalidInput):
    """A request header's value is invalid."""


class InvalidParameter(InvalidInput):
    """A query parameter is unknown, repeated, malformed or out of range; ``errors`` names each one."""


class ValidationFailed(InvalidInput):
    """The body is well-formed JSON but fields are missing, unknown or invalid; ``errors`` names each one."""


class UnknownDecisions(ValidationFailed):
    """Outcomes were posted for decisions the store does not hold; nothing was stored."""

    def __init__(self, decision_ids: Sequence[str], errors: Sequence[FieldError] = ()) -> None:
        self.decision_ids = tuple(decision_ids)
        shown = ", ".join(self.decision_ids[:10]) + (" ..." if len(self.decision_ids) > 10 else "")
        super().__init__(f"no decision record for {len(self.decision_ids)} decision_id(s): {shown}", errors)


class UnsupportedMediaType(InvalidInput):
    """The body is not ``application/json`` in UTF-8."""


class PayloadTooLarge(InvalidInput):
    """The body is larger than this operation accepts."""


class AccessDenied(CreditDecisionError):
    """The caller may not do this."""


class Unauthenticated(AccessDenied):
    """No API key, or one that is not valid; ``reason`` says which (for the challenge)."""

    def __init__(self, detail: str, reason: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason


class Forbidden(AccessDenied):
    """The API key is valid but does not hold the role this operation needs."""


class NotFound(CreditDecisionError):
    """No such resource."""


class Conflict(CreditDecisionError):
    """The request contradicts what is already recorded."""


class IdempotencyConflict(Conflict):
    """The idempotency key was already used with a different request body."""


class OutcomeConflict(Conflict):
    """The same observation (decision_id, observed_at) is already recorded with the other outcome."""


class NoticeNotRequired(Conflict):
    """The decision is not a decline, so no adverse-action notice is required."""


class ServingConflict(Conflict):
    """The serving state does not allow this change (already the champion, nothing to roll back to, pinned)."""


class ReviewConflict(Conflict):
    """The decision has already been reviewed (a decision is reviewed once)."""


class NoReviewCatalog(Conflict):
    """The served policy defines no review justification codes: reviews cannot be taken."""


class NotServable(ValidationFailed):
    """A model version or policy named in an admin action cannot be served: absent, failing verification or its
    self-check, or accepting other applicant fields than the champion; ``errors`` names the field."""


class RateLimited(CreditDecisionError):
    """The API key sent more requests than its role's rate limit allows; ``retry_after`` says when to retry."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)


class NotReady(CreditDecisionError):
    """The service cannot decide: no model is served (not loaded, failed its self-check) or the store is closed."""

    retry_after = 30


class ModelUnavailable(CreditDecisionError):
    """A model version cannot be served: missing from the store, failing verification or its self-check."""


class RecordsError(CreditDecisionError):
    """The decision store failed."""


class StoreUnavailable(RecordsError):
    """The store could not durably commit or read; the request must fail, never drop the record."""

    retry_after = 5


class StoreFull(StoreUnavailable):
    """The database (or the disk under it) is full: the transaction rolled back, nothing of it was written."""

    retry_after = 60


class StoreBusy(StoreUnavailable):
    """Waiting for a lock or a statement took longer than the store allows (so the request answers, never hangs)."""

    retry_after = 2


class DuplicateDecisionId(RecordsError):
    """A different record with the same decision_id is already stored (decision ids must be unique)."""


class DuplicateEntryId(RecordsError):
    """A different audit event (or shadow decision) with the same event_id (shadow_id) is already stored."""


class UnknownShadowedDecisions(RecordsError):
    """Shadow decisions name champion decisions the store does not hold; nothing of the batch was stored.

    Shadows are written by the service itself after the champion's record is committed, so this is a bug (or the
    decision was purged in between), never the client's doing."""

    def __init__(self, decision_ids: Sequence[str]) -> None:
        self.decision_ids = tuple(decision_ids)
        shown = ", ".join(self.decision_ids[:10]) + (" ..." if len(self.decision_ids) > 10 else "")
        super().__init__(f"shadow decisions for {len(self.decision_ids)} unknown decision_id(s): {shown}")
