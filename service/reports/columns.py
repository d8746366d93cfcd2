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
import math
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
    applicant: Mapping[str, Coded]  # field name -> the recorded values (labels: the distinct values, None: absent)
    monitoring: Mapping[str, Coded]  # field name -> the monitoring values (labels: the distinct values, None: absent)

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

    def field(self, name: str) -> Coded:
        """The applicant's ``name`` of every decision (None where absent)."""
        return _field(self.applicant, name, len(self))

    def monitoring_field(self, name: str) -> Coded:
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
            score=[r.score for r in items],
            probability_of_default=[r.probability_of_default for r in items],
            latency_ms=[r.latency_ms for r in items],
            profiles=([_profile_key(r) for r in items], _profile_of_key),
            applicant_values=[tuple(r.applicant.values()) for r in items],
            outcome=[_OUTCOME_CODES.get(r.outcome or "", NO_OUTCOME) for r in items],
        )
        return builder.build()


@dataclass(frozen=True)
class Profile:
    """What many decisions share: model version, decision, band, reasons, fired rules, the applicant's field names
    and the monitoring data (the store's report row holds it as one JSON text, ``profile``)."""

    model: tuple[str, str]
    decision: str
    risk_band: str
    reasons: tuple[ReasonRef, ...]
    rules: tuple[str, ...]
    fields: tuple[str, ...]
    monitoring: Mapping[str, Any]

    @classmethod
    def of_text(cls, text: str) -> Profile:
        """The profile of a report row's ``profile`` text (``service.records.report_rows.report_row``)."""
        from service.reports.core import ReasonRef

        (name, version, decision, band, reasons, rules, fields_, monitoring) = json.loads(text)
        return cls(
            (str(name), str(version)),
            str(decision),
            str(band),
            tuple(ReasonRef(str(code), kind, bool(adverse)) for code, kind, adverse in reasons),
            tuple(str(code) for code in rules),
            tuple(str(field) for field in fields_),
            monitoring if isinstance(monitoring, Mapping) else {},
        )


def _profile_key(row: DecisionRow) -> Hashable:
    monitoring = json.dumps(dict(row.monitoring), ensure_ascii=False, separators=(",", ":"))
    return (
        (row.model_name, row.model_version), row.decision, row.risk_band, tuple(row.reasons), tuple(row.rules_fired),
        tuple(row.applicant), monitoring,
    )  # fmt: skip


def _profile_of_key(key: Any) -> Profile:
    model, decision, band, reasons, rules, fields_, monitoring = key
    return Profile(model, decision, band, reasons, rules, fields_, json.loads(monitoring))


def _field(columns: Mapping[str, Coded], name: str, n: int) -> Coded:
    found = columns.get(name)
    return found if found is not None else Coded(np.zeros(n, dtype=np.int64), (None,))


def _take(column: Any, index: np.ndarray) -> Any:
    if isinstance(column, Coded):
        return column.take(index)
    if isinstance(column, Mapping):
        return {name: values.take(index) for name, values in column.items()}
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
    """Codes of hashable keys, the same code for equal keys across batches; each code's label."""

    def __init__(self) -> None:
        self.index: dict[Hashable, int] = {}
        self._labels: list[Any] = []

    def code(self, key: Hashable, label: Any = None, *, keyed: bool = False) -> int:
        """The code of ``key`` (labelled ``label`` when ``keyed``, else the key itself)."""
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(self._labels)
            self._labels.append(label if keyed else key)
        return found

    def labels(self) -> tuple[Any, ...]:
        return tuple(self._labels)

    def encode(self, values: Sequence[Any]) -> np.ndarray:
        """The codes of values, equal values of different types (``1``, ``1.0``, ``True``) told apart, each
        distinct value read once."""
        if isinstance(next((v for v in values if v is not None), None), str):  # text: codes straight away
            try:
                distinct = dict.fromkeys(values)
            except TypeError:
                distinct = {}
            if distinct and set(map(type, distinct)) <= _TEXT:  # a text value is never equal to another type's
                local = {v: self.code((type(v), v), v, keyed=True) for v in distinct}
                return np.fromiter(map(local.__getitem__, values), dtype=np.int64, count=len(values))
        types = set(map(type, values))
        if types <= _INTEGERS or types == _FLOATS:  # numbers: their distinct values found by numpy
            return self._encode_numbers(values, float if float in types else int)
        if len(_NUMERIC & types) <= 1:  # no two values of different types can be equal
            try:
                local = {v: self.code((type(v), v), v, keyed=True) for v in dict.fromkeys(values)}
                return np.fromiter(map(local.__getitem__, values), dtype=np.int64, count=len(values))
            except TypeError:  # an unhashable value (a list or an object): keyed by its type and text below
                pass
        keys = [(type(v), v if isinstance(v, Hashable) else repr(v)) for v in values]
        local = {k: self.code(k, v, keyed=True) for k, v in zip(keys, values, strict=True)}
        return np.fromiter(map(local.__getitem__, keys), dtype=np.int64, count=len(keys))

    def _encode_numbers(self, values: Sequence[Any], kind: type[int] | type[float]) -> np.ndarray:
        """:meth:`encode` of integers (and None) or of floats: distinct values by ``np.unique``."""
        numbers = np.asarray(values, dtype=np.float64)  # None -> NaN (integers never are NaN)
        if kind is int and np.abs(numbers[~np.isnan(numbers)]).max(initial=0.0) >= 2.0**53:  # not exact as floats
            keys = [(type(v), v) for v in values]
            local = {k: self.code(k, k[1], keyed=True) for k in dict.fromkeys(keys)}
            return np.fromiter(map(local.__getitem__, keys), dtype=np.int64, count=len(keys))
        distinct, inverse = np.unique(numbers, return_inverse=True)
        labels = [None if kind is int and math.isnan(x) else kind(x) for x in distinct.tolist()]
        codes = np.asarray([self.code((type(x), x), x, keyed=True) for x in labels], dtype=np.int64)
        found: np.ndarray = codes[inverse.reshape(-1)] if len(codes) else np.empty(0, dtype=np.int64)
        return found


_NUMERIC = frozenset((bool, int, float))
_INTEGERS = frozenset((int, type(None)))
_FLOATS = frozenset((float,))
_TEXT = frozenset((str, type(None)))


def encode(values: Sequence[Any] | np.ndarray) -> Coded:
    """``values`` as a coded column (labels: the distinct values, in order of first appearance)."""
    factor = _Factor()
    listed = values.tolist() if isinstance(values, np.ndarray) else list(values)
    return Coded(factor.encode(listed), factor.labels())


_CODED = ("decision", "risk_band", "model", "reasons", "rules")


class ColumnsBuilder:
    """Collects decisions batch by batch and builds their :class:`DecisionColumns`.

    What decisions share (their :class:`Profile`) is given as a key per decision and read once per distinct key;
    the categorical columns and the monitoring fields are then taken from the distinct profiles by index."""

    def __init__(self) -> None:
        self._factors = {name: _Factor() for name in _CODED}
        self._parts: dict[str, list[np.ndarray]] = {}
        self._fields: dict[str, list[dict[str, np.ndarray]]] = {"applicant": [], "monitoring": []}
        self._field_factors: dict[tuple[str, str], _Factor] = {}
        self._sizes: list[int] = []

    def add(
        self,
        *,
        decision_id: Sequence[str],
        created_us: Sequence[int],
        score: Sequence[int],
        probability_of_default: Sequence[float],
        latency_ms: Sequence[float | None],
        profiles: tuple[Sequence[Hashable], Callable[[Any], Profile]],
        applicant_values: Sequence[Sequence[Any]],
        outcome: Sequence[int],
    ) -> None:
        """Append a batch of decisions, one sequence per quantity (all of one length).

        ``profiles``: each decision's profile key and the function giving a key's :class:`Profile`;
        ``applicant_values``: each decision's applicant values, in the order of its profile's field names."""
        keys, profile_of = profiles
        distinct = {key: profile_of(key) for key in dict.fromkeys(keys)}
        position = {key: i for i, key in enumerate(distinct)}
        which = np.fromiter(map(position.__getitem__, keys), dtype=np.int64, count=len(keys))
        shared = list(distinct.values())
        columns: dict[str, np.ndarray] = {
            "decision_id": objects(decision_id),
            "created_us": np.asarray(created_us, dtype=np.int64),
            "score": np.asarray(score, dtype=np.int64),
            "probability_of_default": np.asarray(probability_of_default, dtype=np.float64),
            "latency_ms": np.asarray(latency_ms, dtype=np.float64),  # None -> NaN
            "outcome": np.asarray(outcome, dtype=np.int8),
        }
        for name in _CODED:
            factor = self._factors[name]
            codes = np.asarray([factor.code(getattr(p, name)) for p in shared], dtype=np.int64)
            columns[name] = codes[which] if len(codes) else np.empty(0, dtype=np.int64)
        for name, column in columns.items():
            self._parts.setdefault(name, []).append(column)
        monitoring = {}
        for field in _unique(field for p in shared for field in p.monitoring):
            codes = self._field_factor("monitoring", field).encode([p.monitoring.get(field) for p in shared])
            monitoring[field] = codes[which]
        self._fields["monitoring"].append(monitoring)
        self._fields["applicant"].append(
            {
                field: self._field_factor("applicant", field).encode(column)
                for field, column in _field_columns([p.fields for p in shared], which, applicant_values).items()
            }
        )
        self._sizes.append(len(keys))

    def _field_factor(self, kind: str, field: str) -> _Factor:
        return self._field_factors.setdefault((kind, field), _Factor())

    def add_report_rows(self, rows: Sequence[tuple[Any, ...]], outcomes: Mapping[str, str]) -> None:
        """Append a batch of the store's report rows (``service.records.report_rows.REPORT_ROW_COLUMNS``).

        A ``profile`` text is parsed once per distinct text (they repeat); the applicants' values, in one call per
        batch."""
        if not rows:
            return
        _seq, ids, created, score, pd, latency, values, profile = zip(*rows, strict=True)
        self.add(
            decision_id=ids,
            created_us=created,
            score=score,
            probability_of_default=pd,
            latency_ms=latency,
            profiles=(profile, Profile.of_text),
            applicant_values=json.loads("[" + ",".join(values) + "]"),
            outcome=[_OUTCOME_CODES.get(outcomes.get(i, ""), NO_OUTCOME) for i in ids]
            if outcomes
            else [NO_OUTCOME] * len(ids),
        )

    def build(self) -> DecisionColumns:
        """The columns of every decision added, in the order added."""
        types = {
            "decision_id": object,
            "probability_of_default": np.float64,
            "latency_ms": np.float64,
            "outcome": np.int8,
        }

        def column(name: str) -> np.ndarray:
            parts = self._parts.get(name)
            return np.concatenate(parts) if parts else np.empty(0, dtype=types.get(name, np.int64))

        def coded(name: str) -> Coded:
            return Coded(column(name), self._factors[name].labels())

        def joined(kind: str) -> dict[str, Coded]:
            batches = self._fields[kind]
            out = {}
            for name in _unique(name for batch in batches for name in batch):
                factor = self._field_factor(kind, name)
                parts = [
                    batch[name] if name in batch else np.full(size, factor.code((type(None), None), None, keyed=True))
                    for batch, size in zip(batches, self._sizes, strict=True)
                ]
                out[name] = Coded(np.concatenate(parts), factor.labels())
            return out

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


def _field_columns(
    fields_of: Sequence[tuple[str, ...]], which: np.ndarray, values: Sequence[Sequence[Any]]
) -> dict[str, Sequence[Any]]:
    """The values by field name of rows whose values follow the field names of their profile (``fields_of[which]``);
    None where a row has no such field."""
    n = len(values)
    distinct = list(dict.fromkeys(fields_of))
    if len(distinct) == 1:  # the usual case: every row has the same fields
        return dict(zip(distinct[0], zip(*values, strict=True), strict=False))
    code = {names: i for i, names in enumerate(distinct)}
    per_row = np.asarray([code[names] for names in fields_of], dtype=np.int64)[which]
    out: dict[str, np.ndarray] = {}
    for names, i in code.items():
        rows = np.flatnonzero(per_row == i)
        for name, column in zip(names, zip(*[values[int(r)] for r in rows], strict=True), strict=False):
            out.setdefault(name, np.full(n, None, dtype=object))[rows] = objects(column)
    return {name: column.tolist() for name, column in out.items()}


def columns_of(rows: Iterable[DecisionRow] | DecisionColumns) -> DecisionColumns:
    """``rows`` as columns (columns are returned as they are)."""
    return rows if isinstance(rows, DecisionColumns) else DecisionColumns.of_rows(rows)
