"""Errors of the decision store; each carries the HTTP status the API renders it with."""

from __future__ import annotations


class RecordsError(Exception):
    """Base of every expected decision-store failure."""

    http_status = 500
    title = "Decision store error"
    problem_type = "records-error"


class StoreUnavailable(RecordsError):
    """The store could not durably commit or read; the request must fail, never drop the record."""

    http_status = 503
    title = "Decision store unavailable"
    problem_type = "store-unavailable"


class IdempotencyConflict(RecordsError):
    """The idempotency key was already used with a different request body."""

    http_status = 409
    title = "Idempotency key reused with a different request"
    problem_type = "idempotency-conflict"


class InvalidQuery(RecordsError):
    """A search argument (cursor, limit) is malformed."""

    http_status = 400
    title = "Invalid decision-record query"
    problem_type = "invalid-query"


class DuplicateDecisionId(RecordsError):
    """A different record with the same decision_id is already stored (decision ids must be unique)."""

    http_status = 500
    title = "Duplicate decision id"
    problem_type = "duplicate-decision-id"
