"""Actionable recourse: the smallest changes to actionable fields that turn a refer or decline into an approval.

Pure and deterministic (the same application and model always give the same recourse, so replay can re-derive
it): candidate applications are built from the spec, decided by the one engine (:meth:`DecisionEngine.screen`:
the same ONNX model, the same policy rules and bands, no attributions) in two batches, and the approved ones
with the smallest change are kept.

**What may change.** Only the fields with a ``recourse`` block in the feature spec; the spec loader allows it
only on an ``actionable`` field that is no fairness-band field (age), and monitoring-only (prohibited-basis)
attributes are never model inputs at all. A numeric field moves in its one allowed ``direction`` (never
against its monotone constraint) in multiples of its ``step``, within its range; a categorical field moves
to one of its ``to`` codes. A field the applicant left missing is not changed.

**The search.**

1. *Coarse*, one batch: every single-field move (all steps when a field has at most ``FINE_STEPS`` of them
   before its range ends, else the first ``NEAR_STEPS`` steps and ``COARSE_LEVELS`` geometrically spaced
   levels up to the end of its range), and for every pair of fields a grid of up to ``PAIR_LEVELS`` levels
   of each.
2. *Fine*, up to ``FINE_ROUNDS`` batches: for each field whose smallest approving level lies more than one
   step past the largest level below it tried, the steps in between (at most ``FINE_STEPS``, evenly spaced
   when there are more), until a single-field proposal is the smallest approving change at the field's step
   resolution (three rounds get there from any gap up to 64^3 steps; pairs stay at the coarse grid's
   resolution).

**The cost** of a proposal is the sum over its changed fields of the relative change ``|to - from| /
max(|from|, step)`` (a categorical change counts 1). Proposals are ranked by the number of fields changed,
then by cost, then by field names; a pair of fields is proposed only when neither of its fields reaches
approval alone (else the single change is simpler). At most ``max_options`` proposals are returned; none
when no candidate is approved (``status`` ``none_found``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from model_store.spec import Field
from model_store.vocabulary import ACTIONS, Action
from service.core.engine import DecisionEngine

MAX_OPTIONS = 3
FINE_STEPS = 64
NEAR_STEPS = 8
COARSE_LEVELS = 24
PAIR_LEVELS = 6
FINE_ROUNDS = 3
APPROVE = ACTIONS.index("approve")

RecourseStatus = Literal["found", "none_found"]


@dataclass(frozen=True, slots=True)
class RecourseChange:
    """One field changed by a proposal: from the applicant's value to the proposed one, with their labels."""

    field: str
    from_value: Any
    to_value: Any
    from_label: str
    to_label: str


@dataclass(frozen=True, slots=True)
class RecourseOption:
    """One proposal: the changes together, their cost, and the decision the changed application gets."""

    changes: tuple[RecourseChange, ...]
    cost: float
    decision: Action
    score: int
    probability_of_default: float


@dataclass(frozen=True, slots=True)
class Recourse:
    """What would change a refer or decline: up to ``MAX_OPTIONS`` proposals, best first."""

    status: RecourseStatus
    options: tuple[RecourseOption, ...]
    fields: tuple[str, ...]  # the fields recourse was allowed to change for this application
    candidates: int  # changed applications evaluated

    def to_json(self) -> dict[str, Any]:
        """The stored form, and what the API shows."""
        return {
            "status": self.status,
            "fields": list(self.fields),
            "candidates": self.candidates,
            "options": [
                {
                    "changes": [
                        {
                            "field": c.field,
                            "from": c.from_value,
                            "to": c.to_value,
                            "from_label": c.from_label,
                            "to_label": c.to_label,
                        }
                        for c in option.changes
                    ],
                    "cost": option.cost,
                    "decision": option.decision,
                    "score": option.score,
                    "probability_of_default": option.probability_of_default,
                }
                for option in self.options
            ],
        }


def _steps_to_limit(field: Field, value: float) -> int:
    """How many whole steps the field can move from ``value`` in its direction before leaving its range."""
    rule = field.recourse
    assert rule is not None and rule.direction is not None
    low = field.minimum if field.minimum is not None else -math.inf
    high = field.maximum if field.maximum is not None else math.inf
    room = value - low if rule.direction == "decrease" else high - value
    return max(0, math.floor(room / rule.step + 1e-9))


def _moved(field: Field, value: float, steps: int) -> int | float:
    """The value ``steps`` steps from ``value`` in the field's direction (an int for an integer field)."""
    rule = field.recourse
    assert rule is not None
    sign = -1.0 if rule.direction == "decrease" else 1.0
    moved = value + sign * steps * rule.step
    return round(moved) if field.dtype == "integer" else round(moved, 9)


def _coarse_steps(total: int) -> list[int]:
    """Step counts tried first: all of them when few, else the nearest few and geometric levels to the end."""
    if total <= FINE_STEPS:
        return list(range(1, total + 1))
    levels = {min(total, k) for k in range(1, NEAR_STEPS + 1)}
    levels.update(round(total ** (i / COARSE_LEVELS)) for i in range(1, COARSE_LEVELS + 1))
    return sorted(k for k in levels if 1 <= k <= total)


def _between(low: int, high: int) -> list[int]:
    """Step counts strictly between two tried levels (evenly spaced when more than ``FINE_STEPS``)."""
    inside = high - low - 1
    if inside <= 0:
        return []
    if inside <= FINE_STEPS:
        return list(range(low + 1, high))
    return sorted({low + 1 + round(i * (inside - 1) / (FINE_STEPS - 1)) for i in range(FINE_STEPS)})


def _cost(field: Field, old: Any, new: Any) -> float:
    if field.kind == "categorical":
        return 1.0
    rule = field.recourse
    assert rule is not None
    return abs(float(new) - float(old)) / max(abs(float(old)), rule.step)


def find_recourse(
    engine: DecisionEngine, application: Mapping[str, Any], *, max_options: int = MAX_OPTIONS
) -> Recourse:
    """The smallest changes to the spec's recourse fields that get ``application`` approved (see the module doc)."""
    fields = [f for f in engine.spec.recourse_fields if application.get(f.name) is not None]
    # per field: the moves tried, as (key, value); a numeric move's key is its step count, a category's its index
    singles: dict[str, list[tuple[int, Any]]] = {}
    for field in fields:
        rule = field.recourse
        assert rule is not None
        value = application[field.name]
        if field.kind == "categorical":
            singles[field.name] = [(i, code) for i, code in enumerate(rule.to) if code != value]
        else:
            steps = _coarse_steps(_steps_to_limit(field, float(value)))
            singles[field.name] = [(k, _moved(field, float(value), k)) for k in steps]
    by_name = {f.name: f for f in fields}

    candidates: list[dict[str, Any]] = []
    labels: list[tuple[tuple[str, int, Any], ...]] = []

    def add(moves: tuple[tuple[str, int, Any], ...]) -> None:
        changed = dict(application)
        for name, _key, new in moves:
            changed[name] = new
        candidates.append(changed)
        labels.append(moves)

    for name, moves in singles.items():
        for key, new in moves:
            add(((name, key, new),))
    for first, second in itertools.combinations([f.name for f in fields], 2):
        for a, b in itertools.product(_spread(singles[first]), _spread(singles[second])):
            add(((first, *a), (second, *b)))

    approved: dict[tuple[tuple[str, int, Any], ...], tuple[int, float]] = {}
    evaluated = _evaluate(engine, candidates, labels, approved)

    # fine: the steps between a field's smallest approving level and the largest level below it tried, in up to
    # FINE_ROUNDS batches (each narrows a gap of more than FINE_STEPS steps about FINE_STEPS-fold)
    tried = {name: {key for key, _ in moves} for name, moves in singles.items()}
    for _round in range(FINE_ROUNDS):
        candidates, labels = [], []
        for field in fields:
            if field.kind == "categorical":
                continue
            value = float(application[field.name])
            hits = [k for k in tried[field.name] if ((field.name, k, _moved(field, value, k)),) in approved]
            if not hits:
                continue
            first_hit = min(hits)
            before = max([0, *(k for k in tried[field.name] if k < first_hit)])
            for k in _between(before, first_hit):
                tried[field.name].add(k)
                add(((field.name, k, _moved(field, value, k)),))
        if not candidates:
            break
        evaluated += _evaluate(engine, candidates, labels, approved)

    options = _ranked(application, by_name, approved)
    chosen = options[:max_options]
    return Recourse(
        status="found" if chosen else "none_found",
        options=tuple(chosen),
        fields=tuple(f.name for f in fields),
        candidates=evaluated,
    )


def _spread(moves: Sequence[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Up to ``PAIR_LEVELS`` of a field's moves, evenly spread over them (always the nearest and the farthest)."""
    if len(moves) <= PAIR_LEVELS:
        return list(moves)
    picks = sorted({round(i * (len(moves) - 1) / (PAIR_LEVELS - 1)) for i in range(PAIR_LEVELS)})
    return [moves[i] for i in picks]


def _evaluate(
    engine: DecisionEngine,
    candidates: list[dict[str, Any]],
    labels: list[tuple[tuple[str, int, Any], ...]],
    approved: dict[tuple[tuple[str, int, Any], ...], tuple[int, float]],
) -> int:
    """Decide the candidates in one batch; note the approved ones (moves -> score, probability of default)."""
    if not candidates:
        return 0
    scores, probabilities, actions = engine.screen(candidates)
    for moves, score, probability, action in zip(labels, scores.tolist(), probabilities.tolist(), actions, strict=True):
        if action == APPROVE:
            approved[moves] = (int(score), float(probability))
    return len(candidates)


def _ranked(
    application: Mapping[str, Any],
    fields: Mapping[str, Field],
    approved: Mapping[tuple[tuple[str, int, Any], ...], tuple[int, float]],
) -> list[RecourseOption]:
    """The cheapest approved move of each field alone, then of each pair of fields neither of which suffices alone."""
    best: dict[tuple[str, ...], tuple[float, tuple[tuple[str, int, Any], ...]]] = {}
    for moves in approved:
        names = tuple(name for name, _key, _new in moves)
        cost = sum(_cost(fields[name], application[name], new) for name, _key, new in moves)
        current = best.get(names)
        if current is None or (cost, moves) < current:
            best[names] = (cost, moves)
    alone = {names[0] for names in best if len(names) == 1}
    kept = [
        (len(names), cost, names, moves)
        for names, (cost, moves) in best.items()
        if not (len(names) > 1 and alone & set(names))
    ]
    kept.sort(key=lambda item: (item[0], item[1], item[2]))
    options = []
    for _n, cost, _names, moves in kept:
        score, probability = approved[moves]
        changes = tuple(
            RecourseChange(
                field=name,
                from_value=application[name],
                to_value=new,
                from_label=fields[name].label_of(application[name]),
                to_label=fields[name].label_of(new),
            )
            for name, _key, new in moves
        )
        options.append(RecourseOption(changes, round(cost, 6), "approve", score, probability))
    return options
