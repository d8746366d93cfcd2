"""Decisions as columns: what the period report computes on, one array per quantity instead of one object per decision.

:class:`DecisionColumns` holds the decisions of a report, each quantity in its own numpy array; a categorical
quantity (decision, band, model version, the cited reasons, the fired rules) is a :class:`Coded` column: an integer
code per decision into a small table of the distinct values. The report's statistics (``service.reports.core``)
count codes with ``np.bincount`` and read each distinct value once, so a period of millions of decisions costs a
few passes over arrays. The applicant's and the monitoring data's fields are columns too (object arrays by field
name, None where a decision has no such field), made from each batch at once (the monitoring data, which repeats,
from its distinct values).

Two ways in, one set of columns: :meth:`DecisionColumns.of_rows` (the report's :class:`DecisionRow` objects, small
data and tests) and :class:`ColumnsBuilder` fed with the store's report rows (``service.records.report_rows``) in
batches. Both fill the same :class:`ColumnsBuilder`, so the numbers cannot depend on the way in.
"""

from __future__ import annotations

import json
from collections import Counter
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
    applicant: Mapping[str, np.ndarray]  # field name -> object array of the recorded values (None: absent)
    monitoring: Mapping[str, np.ndarray]  # field name -> object array of the monitoring values (None: absent)

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

    def field(self, name: str) -> np.ndarray:
        """The applicant's ``name`` of every decision (None where absent)."""
        return _field(self.applicant, name, len(self))

    def monitoring_field(self, name: str) -> np.ndarray:
        """The monitoring data's ``name`` of every decision (None where absent)."""
        return _field(self.monitoring, name, len(self))

    def approved(self) -> np.ndarray:
        """Which decisions approve."""
        return self.decision.is_("approve")

    @classmethod
    def of_rows(cls, rows: Iterable[DecisionRow]) -> DecisionColumns:
        """The columns of decision rows, in their order."""
        builder = ColumnsBuilder()
        items = list(rows)
        builder.add(
            decision_id=[r.decision_id for r in items],
            created_us=[epoch_us(r.created_at) for r in items],
            decision=[r.decision for r in items],
            risk_band=[r.risk_band for r in items],
            model=[(r.model_name, r.model_version) for r in items],
            score=[r.score for r in items],
            probability_of_default=[r.probability_of_default for r in items],
            latency_ms=[r.latency_ms for r in items],
            reasons=([tuple(r.reasons) for r in items], tuple),
            rules=([tuple(r.rules_fired) for r in items], tuple),
            applicant=([tuple(r.applicant) for r in items], tuple, [tuple(r.applicant.values()) for r in items]),
            monitoring=([_text(r.monitoring) for r in items], json.loads),
            outcome=[_OUTCOME_CODES.get(r.outcome or "", NO_OUTCOME) for r in items],
        )
        return builder.build()


def _text(mapping: Mapping[str, Any]) -> str:
    return json.dumps(dict(mapping), ensure_ascii=False, separators=(",", ":"))


def _field(columns: Mapping[str, np.ndarray], name: str, n: int) -> np.ndarray:
    found = columns.get(name)
    return found if found is not None else np.full(n, None, dtype=object)


def _take(column: Any, index: np.ndarray) -> Any:
    if isinstance(column, Coded):
        return column.take(index)
    if isinstance(column, Mapping):
        return {name: values[index] for name, values in column.items()}
    return column[index]


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
    """Codes of hashable labels, the same code for equal labels across batches."""

    def __init__(self) -> None:
        self.index: dict[Hashable, int] = {}

    def codes(self, keys: Sequence[Hashable], label: Callable[[Any], Hashable]) -> np.ndarray:
        """The code of ``label(key)`` for every key, ``label`` called once per distinct key."""
        index = self.index
        local = {key: index.setdefault(label(key), len(index)) for key in dict.fromkeys(keys)}
        return np.fromiter(map(local.__getitem__, keys), dtype=np.int64, count=len(keys))

    def labels(self) -> tuple[Any, ...]:
        return tuple(self.index)


def _same(value: Any) -> Any:
    return value


#: A coded quantity given as (keys, label of a key): e.g. JSON texts and their parse.
Keyed = tuple[Sequence[Hashable], Callable[[Any], Hashable]]


class ColumnsBuilder:
    """Collects decisions batch by batch and builds their :class:`DecisionColumns`."""

    def __init__(self) -> None:
        self._factors = {name: _Factor() for name in ("decision", "risk_band", "model", "reasons", "rules")}
        self._parts: dict[str, list[np.ndarray]] = {}
        self._fields: dict[str, list[dict[str, np.ndarray]]] = {"applicant": [], "monitoring": []}
        self._sizes: list[int] = []
        self._parsed: dict[str, Any] = {}

    def add(
        self,
        *,
        decision_id: Sequence[str],
        created_us: Sequence[int],
        decision: Sequence[str],
        risk_band: Sequence[str],
        model: Sequence[tuple[str, str]],
        score: Sequence[int],
        probability_of_default: Sequence[float],
        latency_ms: Sequence[float | None],
        reasons: Keyed,
        rules: Keyed,
        applicant: tuple[Sequence[Hashable], Callable[[Any], tuple[str, ...]], Sequence[Sequence[Any]]],
        monitoring: tuple[Sequence[Hashable], Callable[[Any], Mapping[str, Any]]],
        outcome: Sequence[int],
    ) -> None:
        """Append a batch of decisions, one sequence per quantity (all of one length).

        ``reasons`` and ``rules``: each decision's key and the function giving a key's label (its tuple of
        :class:`ReasonRef`, its rule codes); ``applicant``: each decision's key of its field names, the function
        giving those names, and its values in that order; ``monitoring``: each decision's key and its mapping."""
        factors = self._factors
        columns: dict[str, np.ndarray] = {
            "decision_id": objects(decision_id),
            "created_us": np.asarray(created_us, dtype=np.int64),
            "decision": factors["decision"].codes(decision, _same),
            "risk_band": factors["risk_band"].codes(risk_band, _same),
            "model": factors["model"].codes(model, _same),
            "score": np.asarray(score, dtype=np.int64),
            "probability_of_default": np.asarray(probability_of_default, dtype=np.float64),
            "latency_ms": np.asarray(latency_ms, dtype=np.float64),  # None -> NaN
            "reasons": factors["reasons"].codes(*reasons),
            "rules": factors["rules"].codes(*rules),
            "outcome": np.asarray(outcome, dtype=np.int8),
        }
        for name, column in columns.items():
            self._parts.setdefault(name, []).append(column)
        self._fields["applicant"].append(_field_columns(*applicant))
        keys, label = monitoring
        local = {key: label(key) for key in dict.fromkeys(keys)}
        names = _unique(name for mapping in local.values() for name in mapping)
        self._fields["monitoring"].append({name: _values(local, keys, name) for name in names})
        self._sizes.append(len(created_us))

    def add_report_rows(self, rows: Sequence[tuple[Any, ...]], outcomes: Mapping[str, str]) -> None:
        """Append a batch of the store's report rows (``service.records.report_rows.REPORT_ROW_COLUMNS``).

        The JSON columns are parsed once per distinct text (reasons, rules, field names and monitoring data repeat)
        and, for the applicants' values, in one call per batch."""
        if not rows:
            return
        (
            _seq, ids, created, names, versions, decision, band, score, pd, latency, reasons, rules, fields_, values,
            monitoring,
        ) = zip(*rows, strict=True)  # fmt: skip
        self.add(
            decision_id=ids,
            created_us=created,
            decision=decision,
            risk_band=band,
            model=list(zip(names, versions, strict=True)),
            score=score,
            probability_of_default=pd,
            latency_ms=latency,
            reasons=(reasons, _reason_refs),
            rules=(rules, _rule_codes),
            applicant=(fields_, _field_names, json.loads("[" + ",".join(values) + "]")),
            monitoring=(monitoring, json.loads),
            outcome=[_OUTCOME_CODES.get(outcomes.get(i, ""), NO_OUTCOME) for i in ids]
            if outcomes
            else [NO_OUTCOME] * len(ids),
        )

    def build(self) -> DecisionColumns:
        """The columns of every decision added, in the order added."""
        empty = {
            "decision_id": object,
            "outcome": np.int8,
            "probability_of_default": np.float64,
            "latency_ms": np.float64,
        }

        def column(name: str) -> np.ndarray:
            parts = self._parts.get(name)
            return np.concatenate(parts) if parts else np.empty(0, dtype=empty.get(name, np.int64))

        def coded(name: str) -> Coded:
            return Coded(column(name), self._factors[name].labels())

        def joined(kind: str) -> dict[str, np.ndarray]:
            batches = self._fields[kind]
            names = _unique(name for batch in batches for name in batch)
            return {
                name: np.concatenate(
                    [
                        batch.get(name, np.full(size, None, dtype=object))
                        for batch, size in zip(batches, self._sizes, strict=True)
                    ]
                )
                for name in names
            }

        return DecisionColumns(
            decision_id=column("decision_id"),
            created_us=column("created_us"),
            decision=coded("decision"),
            risk_band=coded("risk_band"),
            model=coded("model"),
            score=column("score"),
            probability_of_default=column("probability_of_default"),
            latency_ms=column("latency_ms"),
            reasons=coded("reasons"),
            rules=coded("rules"),
            outcome=column("outcome"),
            applicant=joined("applicant"),
            monitoring=joined("monitoring"),
        )


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _values(local: Mapping[Hashable, Mapping[str, Any]], keys: Sequence[Hashable], name: str) -> np.ndarray:
    """The ``name`` value of each decision's mapping, looked up once per distinct key."""
    order = {key: i for i, key in enumerate(local)}
    distinct = objects([mapping.get(name) for mapping in local.values()])
    return distinct[np.fromiter(map(order.__getitem__, keys), dtype=np.int64, count=len(keys))]


def _field_columns(
    keys: Sequence[Hashable], names_of: Callable[[Any], tuple[str, ...]], values: Sequence[Sequence[Any]]
) -> dict[str, np.ndarray]:
    """Columns by field name of rows given as (key of their field names, their values in that order)."""
    n = len(keys)
    groups: dict[Hashable, list[int]] = {}
    distinct = dict.fromkeys(keys)
    if len(distinct) == 1:  # the usual case: every row has the same fields
        (key,) = distinct
        return {name: objects(column) for name, column in zip(names_of(key), zip(*values, strict=True), strict=False)}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    out: dict[str, np.ndarray] = {}
    for key, rows in groups.items():
        at = np.asarray(rows, dtype=np.int64)
        for name, column in zip(names_of(key), zip(*[values[i] for i in rows], strict=True), strict=False):
            out.setdefault(name, np.full(n, None, dtype=object))[at] = objects(column)
    return out


def _reason_refs(text: str) -> tuple[ReasonRef, ...]:
    from service.reports.core import ReasonRef

    return tuple(ReasonRef(str(code), kind, bool(adverse)) for code, kind, adverse in json.loads(text))


def _rule_codes(text: str) -> tuple[str, ...]:
    return tuple(str(code) for code in json.loads(text))


def _field_names(text: str) -> tuple[str, ...]:
    return tuple(str(name) for name in json.loads(text))


def columns_of(rows: Iterable[DecisionRow] | DecisionColumns) -> DecisionColumns:
    """``rows`` as columns (columns are returned as they are)."""
    return rows if isinstance(rows, DecisionColumns) else DecisionColumns.of_rows(rows)


def value_counts(values: Sequence[Any] | np.ndarray, key: Callable[[Any], Any]) -> dict[Any, int]:
    """How many of ``values`` have each ``key(value)``, calling ``key`` once per distinct value.

    Distinct values are told apart by type too (``True``, ``1`` and ``1.0`` are equal in Python but not the
    same value for the report)."""
    pairs: Iterable[tuple[Any, int]]
    if set(map(type, values)) <= _TEXT_TYPES:  # the usual case: codes (and None), counted as they are
        pairs = Counter(values).items()
    else:
        try:
            pairs = [(value, n) for (_type, value), n in Counter(zip(map(type, values), values, strict=True)).items()]
        except TypeError:  # an unhashable value: count the keys directly
            return dict(Counter(map(key, values)))
    out: dict[Any, int] = {}
    for value, count in pairs:
        k = key(value)
        out[k] = out.get(k, 0) + count
    return out


_TEXT_TYPES = frozenset((str, type(None)))
