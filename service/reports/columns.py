"""Decisions as columns: what the period report computes on, one array per quantity instead of one object per decision.

:class:`DecisionColumns` holds the decisions of a report, each quantity in its own numpy array; a categorical
quantity (decision, band, model version, the cited reasons, the fired rules) is a :class:`Coded` column: an integer
code per decision into a small table of the distinct values. The report's statistics (``service.reports.core``)
count codes with ``np.bincount`` and read each distinct value once, so a period of millions of decisions costs a
few passes over arrays. The applicant's and monitoring objects stay one mapping per decision (object arrays): the
fields the report reads are taken out of them one field at a time.

Two ways in, one set of columns: :meth:`DecisionColumns.of_rows` (the report's :class:`DecisionRow` objects, small
data and tests) and :class:`ColumnsBuilder` fed with the store's report rows (``service.records.report_rows``) in
batches. Both fill the same :class:`ColumnsBuilder`, so the numbers cannot depend on the way in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from service.records.report_rows import epoch_us

if TYPE_CHECKING:
    from service.reports.core import DecisionRow, Period, ReasonRef

#: ``outcome`` codes: no outcome posted, good, bad.
NO_OUTCOME, GOOD, BAD = -1, 0, 1
_OUTCOME_CODES = {"good": GOOD, "bad": BAD}


def objects(values: Iterable[Any]) -> np.ndarray:
    """A 1-d object array of ``values`` (strings or mappings, never unpacked into more dimensions)."""
    return np.fromiter(values, dtype=object)


@dataclass(frozen=True)
class Coded:
    """A categorical column: decision ``i`` has the value ``labels[codes[i]]``."""

    codes: np.ndarray  # int64
    labels: tuple[Any, ...]

    def take(self, index: np.ndarray) -> Coded:
        """The decisions at ``index`` (the same label table)."""
        return Coded(self.codes[index], self.labels)

    def counts(self, mask: np.ndarray | None = None) -> np.ndarray:
        """How many decisions (those of ``mask``, when given) have each label, in label order."""
        codes = self.codes if mask is None else self.codes[mask]
        return np.bincount(codes, minlength=len(self.labels))

    def code_of(self, label: Any) -> int:
        """The code of ``label``; -1 when no decision has it."""
        try:
            return self.labels.index(label)
        except ValueError:
            return -1

    def is_(self, label: Any) -> np.ndarray:
        """Which decisions have ``label``."""
        found: np.ndarray = np.equal(self.codes, self.code_of(label))
        return found

    def first_seen(self, mask: np.ndarray) -> list[int]:
        """The codes present among the decisions of ``mask``, in the order of their first decision."""
        codes = self.codes[mask]
        present, first = np.unique(codes, return_index=True)
        return [int(present[i]) for i in np.argsort(first, kind="stable")]


@dataclass(frozen=True)
class DecisionColumns:
    """Decisions as columns (see the module docstring); every array has one entry per decision."""

    decision_id: np.ndarray  # object: str
    created_us: np.ndarray  # int64: microseconds since 1970-01-01 UTC
    decision: Coded  # labels: str
    risk_band: Coded  # labels: str
    model: Coded  # labels: (model_name, model_version)
    score: np.ndarray  # int64
    probability_of_default: np.ndarray  # float64
    latency_ms: np.ndarray  # float64, NaN where none was recorded
    reasons: Coded  # labels: tuple[ReasonRef, ...], the cited reasons in order
    rules: Coded  # labels: tuple[str, ...], the fired rules' codes
    outcome: np.ndarray  # int8: NO_OUTCOME, GOOD or BAD
    applicant: np.ndarray  # object: Mapping[str, Any]
    monitoring: np.ndarray  # object: Mapping[str, Any]

    def __len__(self) -> int:
        return len(self.created_us)

    def take(self, index: np.ndarray) -> DecisionColumns:
        """The decisions at ``index`` (integer positions or a boolean mask), in that order."""
        return DecisionColumns(**{f.name: _take(getattr(self, f.name), index) for f in fields(self)})

    def in_period(self, period: Period, model_name: str | None = None) -> np.ndarray:
        """Which decisions were created in ``period`` (and by ``model_name``, when given)."""
        mask = (self.created_us >= epoch_us(period.start)) & (self.created_us < epoch_us(period.end))
        if model_name is not None:
            names = np.asarray([label[0] == model_name for label in self.model.labels], dtype=bool)
            mask &= names[self.model.codes] if len(names) else False
        return mask

    def select(self, period: Period, model_name: str | None = None) -> DecisionColumns:
        """The decisions created in ``period`` (of ``model_name``, when given), in (created_at, decision_id) order."""
        chosen = np.flatnonzero(self.in_period(period, model_name))
        return self.take(chosen[chronological(self.created_us[chosen], self.decision_id[chosen])])

    def field(self, name: str) -> list[Any]:
        """The applicant's ``name`` of every decision (None where absent)."""
        return [a.get(name) for a in self.applicant]

    def approved(self) -> np.ndarray:
        """Which decisions approve."""
        return self.decision.is_("approve")

    @classmethod
    def of_rows(cls, rows: Iterable[DecisionRow]) -> DecisionColumns:
        """The columns of decision rows, in their order."""
        builder = ColumnsBuilder()
        items = list(rows)
        builder.add(
            [r.decision_id for r in items],
            [epoch_us(r.created_at) for r in items],
            [r.decision for r in items],
            [r.risk_band for r in items],
            [(r.model_name, r.model_version) for r in items],
            [r.score for r in items],
            [r.probability_of_default for r in items],
            [r.latency_ms for r in items],
            [tuple(r.reasons) for r in items],
            [tuple(r.rules_fired) for r in items],
            [r.applicant for r in items],
            [r.monitoring for r in items],
            [_OUTCOME_CODES.get(r.outcome or "", NO_OUTCOME) for r in items],
        )
        return builder.build()


def _take(column: Any, index: np.ndarray) -> Any:
    return column.take(index) if isinstance(column, Coded) else column[index]


def chronological(created_us: np.ndarray, decision_id: np.ndarray) -> np.ndarray:
    """The order of decisions by (created_at, decision_id): a stable sort by time, ties (rare) sorted by id."""
    order = np.argsort(created_us, kind="stable")
    ordered = created_us[order]
    tied = np.flatnonzero(ordered[1:] == ordered[:-1])
    start = 0
    for k, i in enumerate(tied):
        if k == 0 or tied[k - 1] != i - 1:
            start = int(i)
        if k + 1 == len(tied) or tied[k + 1] != i + 1:
            run = order[start : int(i) + 2]
            order[start : int(i) + 2] = sorted(run, key=lambda j: decision_id[j])
    return order


class _Factor:
    """Codes of hashable values, the same code for equal values across batches."""

    def __init__(self) -> None:
        self.index: dict[Hashable, int] = {}

    def codes(self, values: Iterable[Hashable]) -> np.ndarray:
        index = self.index
        return np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64)

    def labels(self) -> tuple[Any, ...]:
        return tuple(self.index)


class ColumnsBuilder:
    """Collects decisions batch by batch and builds their :class:`DecisionColumns`."""

    def __init__(self) -> None:
        self._factors = [_Factor() for _ in range(5)]  # decision, band, model, reasons, rules
        self._parts: list[list[np.ndarray]] = [[] for _ in range(13)]
        self._reasons_of: dict[str, tuple[ReasonRef, ...]] = {}
        self._rules_of: dict[str, tuple[str, ...]] = {}
        self._monitoring_of: dict[str, Mapping[str, Any]] = {}

    def add(
        self,
        decision_id: Sequence[str],
        created_us: Sequence[int],
        decision: Sequence[str],
        risk_band: Sequence[str],
        model: Sequence[tuple[str, str]],
        score: Sequence[int],
        probability_of_default: Sequence[float],
        latency_ms: Sequence[float | None],
        reasons: Sequence[tuple[ReasonRef, ...]],
        rules: Sequence[tuple[str, ...]],
        applicant: Sequence[Mapping[str, Any]],
        monitoring: Sequence[Mapping[str, Any]],
        outcome: Sequence[int],
    ) -> None:
        """Append a batch of decisions, one sequence per quantity (all of one length)."""
        decision_f, band_f, model_f, reasons_f, rules_f = self._factors
        columns: list[np.ndarray] = [
            objects(decision_id),
            np.asarray(created_us, dtype=np.int64),
            decision_f.codes(decision),
            band_f.codes(risk_band),
            model_f.codes(model),
            np.asarray(score, dtype=np.int64),
            np.asarray(probability_of_default, dtype=np.float64),
            np.asarray(latency_ms, dtype=np.float64),  # None -> NaN
            reasons_f.codes(reasons),
            rules_f.codes(rules),
            np.asarray(outcome, dtype=np.int8),
            objects(applicant),
            objects(monitoring),
        ]
        for part, column in zip(self._parts, columns, strict=True):
            part.append(column)

    def add_report_rows(self, rows: Sequence[tuple[Any, ...]], outcomes: Mapping[str, str]) -> None:
        """Append a batch of the store's report rows (``service.records.report_rows.REPORT_ROW_COLUMNS``).

        The JSON columns are parsed once per distinct text for reasons, rules and monitoring data (they repeat)
        and in one call per batch for the applicants (they do not)."""
        from service.reports.core import ReasonRef

        if not rows:
            return
        (
            _seq,
            ids,
            created,
            names,
            versions,
            decision,
            band,
            score,
            pd,
            latency,
            reasons,
            rules,
            applicant,
            monitoring,
        ) = zip(*rows, strict=True)
        reasons_of, rules_of, monitoring_of = self._reasons_of, self._rules_of, self._monitoring_of

        def refs(text: str) -> tuple[ReasonRef, ...]:
            found = reasons_of.get(text)
            if found is None:
                found = reasons_of[text] = tuple(ReasonRef(str(c), k, bool(a)) for c, k, a in json.loads(text))
            return found

        def fired(text: str) -> tuple[str, ...]:
            found = rules_of.get(text)
            if found is None:
                found = rules_of[text] = tuple(str(code) for code in json.loads(text))
            return found

        def monitored(text: str) -> Mapping[str, Any]:
            found = monitoring_of.get(text)
            if found is None:
                found = monitoring_of[text] = json.loads(text)
            return found

        self.add(
            ids,
            created,
            decision,
            band,
            list(zip(names, versions, strict=True)),
            score,
            pd,
            latency,
            [refs(text) for text in reasons],
            [fired(text) for text in rules],
            json.loads("[" + ",".join(applicant) + "]"),
            [monitored(text) for text in monitoring],
            [_OUTCOME_CODES.get(outcomes.get(i, ""), NO_OUTCOME) for i in ids] if outcomes else [NO_OUTCOME] * len(ids),
        )

    def build(self) -> DecisionColumns:
        """The columns of every decision added, in the order added."""
        joined = [np.concatenate(part) if part else None for part in self._parts]
        decision_f, band_f, model_f, reasons_f, rules_f = self._factors

        def column(i: int, dtype: Any) -> np.ndarray:
            found = joined[i]
            return found if found is not None else np.empty(0, dtype=dtype)

        def coded(i: int, factor: _Factor) -> Coded:
            return Coded(column(i, np.int64), factor.labels())

        return DecisionColumns(
            decision_id=column(0, object),
            created_us=column(1, np.int64),
            decision=coded(2, decision_f),
            risk_band=coded(3, band_f),
            model=coded(4, model_f),
            score=column(5, np.int64),
            probability_of_default=column(6, np.float64),
            latency_ms=column(7, np.float64),
            reasons=coded(8, reasons_f),
            rules=coded(9, rules_f),
            outcome=column(10, np.int8),
            applicant=column(11, object),
            monitoring=column(12, object),
        )


def columns_of(rows: Iterable[DecisionRow] | DecisionColumns) -> DecisionColumns:
    """``rows`` as columns (columns are returned as they are)."""
    return rows if isinstance(rows, DecisionColumns) else DecisionColumns.of_rows(rows)


def value_counts(values: Sequence[Any], key: Callable[[Any], Any]) -> dict[Any, int]:
    """How many of ``values`` have each ``key(value)``, calling ``key`` once per distinct value.

    Distinct values are told apart by type too (``True``, ``1`` and ``1.0`` are equal in Python but not the
    same value for the report)."""
    from collections import Counter

    try:
        distinct = Counter(zip(map(type, values), values, strict=True))
    except TypeError:  # an unhashable value: count the keys directly
        return dict(Counter(key(v) for v in values))
    out: dict[Any, int] = {}
    for (_type, value), count in distinct.items():
        k = key(value)
        out[k] = out.get(k, 0) + count
    return out
