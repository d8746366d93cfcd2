"""Observed outcomes of past decisions (repaid = ``good``, defaulted = ``bad``), for the report's back-testing.

Outcomes live in their own table (migration ``0002_outcomes``), never in the hash-chained decision
records: posting an outcome changes nothing that ``audit verify`` checks. Each row is one observation
``(decision_id, observed_at, outcome)``; a decision's effective outcome is its latest observation, so a
loan first reported repaying and later defaulting counts as ``bad``. Re-posting an observation is a
no-op; the same ``(decision_id, observed_at)`` with the other outcome is a conflict (409). A batch is
all or nothing: if any decision is unknown, nothing is stored (422 naming each one).

Errors (:mod:`service.errors`): ``UnknownDecisions`` (outcomes posted for decisions the store does not
hold) and ``OutcomeConflict`` (an observation already recorded with the other outcome).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from service.errors import OutcomeConflict, RecordsError, UnknownDecisions
from service.records._sql import SqlDecisionStore, existing_decisions

Outcome = Literal["good", "bad"]
OUTCOMES: tuple[Outcome, ...] = ("good", "bad")


@dataclass(frozen=True)
class ObservedOutcome:
    """One observation of how a decided loan turned out."""

    decision_id: str
    outcome: Outcome
    observed_at: datetime

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be good or bad, not {self.outcome!r}")
        if self.observed_at.tzinfo is None or self.observed_at.utcoffset() is None:
            raise ValueError("observed_at must be timezone-aware")
        object.__setattr__(self, "observed_at", self.observed_at.astimezone(UTC))


@dataclass(frozen=True)
class OutcomeImport:
    """What one posted batch of outcomes did."""

    received: int
    stored: int
    unchanged: int

    def to_dict(self) -> dict[str, int]:
        """JSON-ready form."""
        return {"received": self.received, "stored": self.stored, "unchanged": self.unchanged}


def _sql_store(store: Any) -> SqlDecisionStore[Any]:
    if not isinstance(store, SqlDecisionStore):
        raise RecordsError(f"outcomes need a SQL decision store, not {type(store).__name__}")
    return store


def record_outcomes(store: Any, outcomes: Sequence[ObservedOutcome], recorded_at: datetime) -> OutcomeImport:
    """Store observed outcomes in one transaction: all of them, or none if any decision is unknown or conflicts."""
    sql_store = _sql_store(store)
    ids = sorted({o.decision_id for o in outcomes})
    stored = unchanged = 0
    with sql_store._transaction("write") as tx:
        missing = sorted(set(ids) - existing_decisions(tx, ids))
        if missing:
            raise UnknownDecisions(missing)
        seen: dict[tuple[str, datetime], Outcome] = {}
        for item in outcomes:
            key = (item.decision_id, item.observed_at)
            earlier = seen.get(key)
            if earlier is None:
                row = tx.one(
                    "SELECT outcome FROM decision_outcomes WHERE decision_id = ? AND observed_at = ?",
                    (item.decision_id, sql_store._encode_time(item.observed_at)),
                )
                earlier = None if row is None else _outcome(row[0])
            if earlier is not None:
                if earlier != item.outcome:
                    raise OutcomeConflict(
                        f"decision {item.decision_id} already has outcome {earlier!r} observed at "
                        f"{item.observed_at.isoformat()}; post a later observation to change it"
                    )
                unchanged += 1
                continue
            tx.run(
                "INSERT INTO decision_outcomes (decision_id, observed_at, outcome, recorded_at) VALUES (?, ?, ?, ?)",
                (
                    item.decision_id,
                    sql_store._encode_time(item.observed_at),
                    item.outcome,
                    sql_store._encode_time(recorded_at),
                ),
            )
            seen[key] = item.outcome
            stored += 1
    return OutcomeImport(received=len(outcomes), stored=stored, unchanged=unchanged)


def latest_outcomes(store: Any, since: datetime | None = None, until: datetime | None = None) -> dict[str, Outcome]:
    """The effective (latest observed) outcome of each decision created in ``[since, until)``."""
    sql_store = _sql_store(store)
    clauses: list[str] = []
    params: list[Any] = []
    for clause, moment in (("r.created_at >= ?", since), ("r.created_at < ?", until)):
        if moment is not None:
            clauses.append(clause)
            params.append(sql_store._encode_time(moment))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        "SELECT o.decision_id, o.outcome FROM decision_outcomes o "  # noqa: S608 (constant fragments only)
        f"JOIN decision_records r ON r.decision_id = o.decision_id {where} ORDER BY o.decision_id, o.observed_at"
    )
    with sql_store._transaction("read") as tx:
        rows = tx.rows(sql, params)
    # ordered by observation time, so the last row of each decision wins
    return {str(row[0]): _outcome(row[1]) for row in rows}


def outcomes_of(store: Any, decision_id: str) -> list[ObservedOutcome]:
    """Every observation of one decision, oldest first."""
    sql_store = _sql_store(store)
    with sql_store._transaction("read") as tx:
        rows = tx.rows(
            "SELECT decision_id, outcome, observed_at FROM decision_outcomes WHERE decision_id = ? ORDER BY observed_at",
            (decision_id,),
        )
    return [ObservedOutcome(str(r[0]), _outcome(r[1]), sql_store._decode_time(r[2])) for r in rows]


def _outcome(value: Any) -> Outcome:
    if value == "good":
        return "good"
    if value == "bad":
        return "bad"
    raise RecordsError(f"decision_outcomes holds an invalid outcome {value!r}")
