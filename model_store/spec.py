"""Feature specification: the applicant fields, how they are encoded, and what may never be used.

The spec is data (``feature_spec.yaml``) validated on load. Encoding is pure NumPy and is
shared by training and serving, so a model sees exactly the same columns in both places:

* a numeric field is one column holding its value (NaN when the value is missing);
* a categorical field is one 0/1 column per allowed value, named ``field=code``, plus, when the
  field may be missing, a last column ``field=(missing)`` that is 1 when it is.

A field may be missing only when the spec says so (``missing: true``); then the API takes ``null``
or no value, the batch reader a blank cell, and the training data a blank cell or one of the field's
``missing_values`` (source labels meaning "not known"). Gradient-boosted trees learn where a missing
value goes at every split; the scorecard gives it a bin of its own.

Each field also carries the one definition of a valid value (:meth:`Field.check`): the HTTP request
schemas and the batch file reader both call it, so an applicant is accepted or refused with the same
words wherever it arrives.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model_store._yaml import load_mapping, require
from model_store.errors import ContractError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CODE = re.compile(r"^[a-z0-9][a-z0-9_]*$")

FieldKind = Literal["numeric", "categorical"]
#: The code of the extra one-hot column of a categorical field that may be missing.
MISSING_CODE = "(missing)"
MISSING_LABEL = "Not provided"
#: Batches at least this large are encoded a column at a time (fewer Python steps per row).
COLUMNWISE_FROM = 64

MISSING = "Missing data for required field."
NOT_A_NUMBER = "Not a valid number."
NOT_AN_INTEGER = "Not a valid integer."
NOT_FINITE = "Must be a finite number."
#: The types of a number the column-at-a-time encoding takes (never bool: the row-by-row pass refuses it).
_NUMBER_TYPES = frozenset((int, float))


class CodedColumn(Sequence[Any]):
    """A column of values held as its distinct values and, for each row, the index of its value among them (what a
    reader that checks each distinct cell once has): the same sequence of values as the list it stands for, which
    the column-at-a-time passes (:meth:`FeatureSpec.encode`, the policy's rules) work out once per distinct value."""

    __slots__ = ("codes", "values")

    def __init__(self, values: list[Any], codes: np.ndarray) -> None:
        self.values = values
        self.codes = codes  # intp [n]

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self.values[k] for k in self.codes[i].tolist()]
        return self.values[self.codes[i]]

    def __iter__(self) -> Iterator[Any]:
        return map(self.values.__getitem__, self.codes.tolist())

    def gather(self, per_value: Sequence[Any], dtype: Any) -> np.ndarray:
        """A function's results on the distinct values (``per_value``, in their order), as an array over the rows."""
        gathered: np.ndarray = np.asarray(per_value, dtype=dtype).reshape(len(self.values))[self.codes]
        return gathered


class InvalidValue(ValueError):
    """A value a field does not accept; the message says why in words fit for an API client."""


@dataclass(frozen=True)
class Category:
    """One allowed value of a categorical field."""

    code: str
    label: str
    source: str


RecourseDirection = Literal["decrease", "increase"]


@dataclass(frozen=True)
class RecourseRule:
    """How recourse may change an actionable field (the spec's ``recourse:`` block of the field).

    A numeric field moves in one ``direction`` only, in multiples of ``step`` from the applicant's value and
    within the field's range; a categorical field may move to one of ``to`` (codes of the field).
    """

    direction: RecourseDirection | None = None
    step: float = 1.0
    to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Field:
    """One applicant field accepted by the API and used as a model input."""

    name: str
    kind: FieldKind
    description: str
    reason_group: str
    actionable: bool
    monotone: int
    source_column: str
    dtype: Literal["integer", "number"] = "number"
    minimum: float | None = None
    maximum: float | None = None
    unit: str = ""
    values: tuple[Category, ...] = ()
    missing: bool = False  # the value may be missing (None): NaN or the (missing) column when encoded
    missing_values: tuple[str, ...] = ("",)  # source labels in the training data that mean missing
    recourse: RecourseRule | None = None  # how recourse may change it (only an actionable field has one)
    ordered: bool = False  # a categorical field whose codes are in order (one step = the next or previous code)

    @cached_property
    def column_codes(self) -> tuple[str, ...]:
        """Codes of a categorical field's encoded columns: its codes, then ``(missing)`` if it may be missing."""
        return (*self.codes, MISSING_CODE) if self.missing else self.codes

    @property
    def width(self) -> int:
        """Number of encoded columns."""
        return 1 if self.kind == "numeric" else len(self.column_codes)

    @cached_property
    def codes(self) -> tuple[str, ...]:
        """Allowed codes of a categorical field, in spec order."""
        return tuple(c.code for c in self.values)

    def check(self, value: Any, *, text: bool = False) -> Any:
        """The accepted value (``int``, ``float`` or a category code), or InvalidValue saying why not.

        JSON semantics by default: numbers must be JSON numbers (never booleans or strings), and an
        integer field takes ``12`` or ``12.0`` but not ``12.5``. With ``text=True`` the value is a cell
        of a text file (CSV) and numbers are parsed from it. ``None`` (JSON null, a blank cell) is
        missing data: accepted as ``None`` when the field may be missing, refused otherwise.
        """
        return self.checker(text=text)(value)

    def checker(self, *, text: bool = False) -> Callable[[Any], Any]:
        """:meth:`check` as a function of the value alone (what a reader applies to every cell)."""
        return self._checkers[text]

    @cached_property
    def _checkers(self) -> dict[bool, Callable[[Any], Any]]:
        return {False: self._make_checker(text=False), True: self._make_checker(text=True)}

    def _make_checker(self, *, text: bool) -> Callable[[Any], Any]:
        """The one definition of a valid value of this field, specialised once per input kind."""
        may_be_missing = self.missing
        if self.kind == "categorical":
            codes, one_of = self._code_set, self._one_of

            def check_code(value: Any) -> Any:
                if value.__class__ is str and value in codes:
                    return value
                if value is None or (text and value == ""):
                    if may_be_missing:
                        return None
                    raise InvalidValue(MISSING)
                raise InvalidValue(one_of)

            return check_code
        low, high, integer = self._low, self._high, self.dtype == "integer"
        not_a_number, out_of_range = self._not_a_number, self._range

        def check_number(value: Any) -> Any:
            if value is None or (text and value == ""):
                if may_be_missing:
                    return None
                raise InvalidValue(MISSING)
            if text and value.__class__ is str:
                try:
                    number: float = float(value)
                except ValueError:
                    raise InvalidValue(not_a_number) from None
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidValue(not_a_number)
            else:
                number = value
            if isinstance(number, float):
                if not math.isfinite(number):
                    raise InvalidValue(NOT_FINITE)
                if integer:
                    if not number.is_integer():
                        raise InvalidValue(NOT_AN_INTEGER)
                    number = int(number)
            if not low <= number <= high:  # before float(): a huge int is out of range, not an overflow
                raise InvalidValue(out_of_range)
            return number if integer else float(number)

        return check_number

    @property
    def _not_a_number(self) -> str:
        return NOT_AN_INTEGER if self.dtype == "integer" else NOT_A_NUMBER

    @cached_property
    def _code_set(self) -> frozenset[str]:
        return frozenset(self.codes)

    @cached_property
    def _one_of(self) -> str:
        return f"Must be one of: {', '.join(self.codes)}."

    @cached_property
    def _low(self) -> float:
        lo = -math.inf if self.minimum is None else self.minimum
        return float(math.ceil(lo)) if self.dtype == "integer" and math.isfinite(lo) else lo

    @cached_property
    def _high(self) -> float:
        hi = math.inf if self.maximum is None else self.maximum
        return float(math.floor(hi)) if self.dtype == "integer" and math.isfinite(hi) else hi

    @cached_property
    def _range(self) -> str:
        lo, hi = _plain(self._low), _plain(self._high)
        return f"Must be an integer from {lo} to {hi}." if self.dtype == "integer" else f"Must be from {lo} to {hi}."

    def label_of(self, value: object) -> str:
        """Plain-language label of an applicant's value of this field."""
        if value is None:
            return MISSING_LABEL
        if self.kind == "categorical":
            label = self._labels.get(value) if isinstance(value, str) else None
            return str(value) if label is None else label
        return f"{value}{self._unit_suffix}"

    @cached_property
    def _labels(self) -> dict[str, str]:
        return {c.code: c.label for c in self.values}

    @cached_property
    def _unit_suffix(self) -> str:
        return f" {self.unit.split(' (')[0]}" if self.unit else ""


@dataclass(frozen=True)
class MonitoringAttribute:
    """A prohibited-basis attribute: may be supplied for fairness monitoring, never used in scoring."""

    name: str
    source_column: str
    basis: str
    monitoring_field: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class FairnessBands:
    """Groups of a numeric model input for the disparate-impact report (e.g. age bands).

    ``edges`` [25, 35] make the groups ``<25``, ``25-34`` and ``35+`` (integers) or ``<25``,
    ``25 to <35``, ``>=35`` (numbers); a missing value belongs to no group.
    """

    name: str
    field: str
    edges: tuple[float, ...]
    labels: tuple[str, ...]

    def group_of(self, value: Any) -> str | None:
        """The group of one value (None when the value is missing or not a number)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        index = sum(1 for edge in self.edges if value >= edge)
        return self.labels[index]


@dataclass(frozen=True)
class FeatureSpec:
    """The validated feature specification."""

    version: str
    target_column: str
    bad_value: str
    fields: tuple[Field, ...]
    monitoring_only: tuple[MonitoringAttribute, ...]
    fairness_bands: tuple[FairnessBands, ...] = ()
    good_value: str | None = None  # the target's good label; None: the one other value the data has

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> FeatureSpec:
        """Load and validate a feature spec YAML file."""
        return cls.from_dict(load_mapping(Path(path)), where=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "feature_spec") -> FeatureSpec:
        """Build and validate a spec from its parsed YAML mapping."""
        version = require(data, "spec_version", str, where)
        target = require(data, "target", dict, where)
        fields_raw = require(data, "fields", list, where)
        monitoring_raw = data.get("monitoring_only", []) or []
        if not isinstance(monitoring_raw, list):
            raise ContractError(f"{where}.monitoring_only: expected a list")
        monitoring = tuple(_parse_monitoring(m, f"{where}.monitoring_only[{i}]") for i, m in enumerate(monitoring_raw))
        fields = tuple(_parse_field(f, f"{where}.fields[{i}]") for i, f in enumerate(fields_raw))
        bands_raw = data.get("fairness_bands", []) or []
        if not isinstance(bands_raw, list):
            raise ContractError(f"{where}.fairness_bands: expected a list")
        by_name = {f.name: f for f in fields}
        bands = tuple(_parse_bands(b, by_name, f"{where}.fairness_bands[{i}]") for i, b in enumerate(bands_raw))
        spec = cls(
            version=version,
            target_column=require(target, "source_column", str, f"{where}.target"),
            bad_value=str(require(target, "bad_value", (str, int), f"{where}.target")),
            good_value=None if target.get("good_value") is None else str(target["good_value"]),
            fields=fields,
            monitoring_only=monitoring,
            fairness_bands=bands,
        )
        spec._validate(where)
        return spec

    def _validate(self, where: str) -> None:
        if not self.fields:
            raise ContractError(f"{where}.fields: at least one model input is required")
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ContractError(f"{where}.fields: duplicate field names {duplicates}")
        prohibited_names = {m.name for m in self.monitoring_only} | {m.monitoring_field for m in self.monitoring_only}
        prohibited_columns = {m.source_column for m in self.monitoring_only}
        for field in self.fields:
            if field.name in prohibited_names or field.source_column in prohibited_columns:
                raise ContractError(
                    f"{where}: field '{field.name}' (source column '{field.source_column}') is a "
                    "prohibited-basis attribute listed under monitoring_only; it may be used for "
                    "fairness monitoring but never as a model input"
                )
            if field.source_column == self.target_column:
                raise ContractError(f"{where}: field '{field.name}' is the target column")
        banded = {b.field for b in self.fairness_bands}
        for field in self.fields:
            if field.actionable and field.name in banded:
                raise ContractError(
                    f"{where}: field '{field.name}' is grouped under fairness_bands (a protected basis such as "
                    "age) and may not be actionable: recourse never asks an applicant to change it"
                )

    @property
    def recourse_fields(self) -> tuple[Field, ...]:
        """The actionable fields recourse may change (those with a ``recourse`` block), in spec order."""
        return tuple(f for f in self.fields if f.recourse is not None)

    # ---- derived views -------------------------------------------------------------------
    @property
    def field_names(self) -> tuple[str, ...]:
        """Names of the model-input fields, in spec order."""
        return tuple(f.name for f in self.fields)

    def input_contract(self) -> dict[str, Any]:
        """What the API accepts under this spec, JSON-ready: every field's name, type, range, codes and whether
        it may be missing, and the monitoring-only fields with their values. Two specs with the same input
        contract validate every request alike, so a service can switch between their model versions."""
        return {
            "fields": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "dtype": f.dtype if f.kind == "numeric" else None,
                    "minimum": f.minimum,
                    "maximum": f.maximum,
                    "codes": list(f.codes),
                    "missing": f.missing,
                }
                for f in self.fields
            ],
            "monitoring": [{"field": m.monitoring_field, "values": list(m.values)} for m in self.monitoring_only],
        }

    def field(self, name: str) -> Field:
        """The field called ``name``."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """Encoded column names, in the order of the model's input tensor."""
        out: list[str] = []
        for f in self.fields:
            if f.kind == "numeric":
                out.append(f.name)
            else:
                out.extend(f"{f.name}={c}" for c in f.column_codes)
        return tuple(out)

    @property
    def column_field_index(self) -> np.ndarray:
        """For each encoded column, the index of its field in ``fields`` (int64)."""
        idx: list[int] = []
        for i, f in enumerate(self.fields):
            idx.extend([i] * f.width)
        return np.asarray(idx, dtype=np.int64)

    def checkers(self, *, text: bool = False) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
        """(name, :meth:`Field.check` of the field) for every field, in spec order (what readers apply)."""
        return self._checkers[text]

    @cached_property
    def _checkers(self) -> dict[bool, tuple[tuple[str, Callable[[Any], Any]], ...]]:
        return {text: tuple((f.name, f.checker(text=text)) for f in self.fields) for text in (False, True)}

    def field_sums(self, column_values: np.ndarray) -> np.ndarray:
        """Per-column values [n, n_columns] summed into their fields [n, n_fields], float64 (see :func:`field_sums`)."""
        return _segment_sums(column_values, self._field_starts, len(self.fields))

    @cached_property
    def _field_starts(self) -> np.ndarray:
        return np.asarray(self.column_offsets, dtype=np.intp)

    @property
    def column_monotone(self) -> tuple[int, ...]:
        """Monotone constraint of each encoded column (one-hot columns are unconstrained)."""
        out: list[int] = []
        for f in self.fields:
            out.extend([f.monotone] if f.kind == "numeric" else [0] * f.width)
        return tuple(out)

    @property
    def reason_groups(self) -> tuple[str, ...]:
        """Distinct reason groups of the model inputs, in first-seen spec order."""
        return tuple(dict.fromkeys(f.reason_group for f in self.fields))

    # ---- encoding ------------------------------------------------------------------------
    @cached_property
    def column_offsets(self) -> tuple[int, ...]:
        """For each field, the index of its first encoded column."""
        offsets: list[int] = []
        col = 0
        for f in self.fields:
            offsets.append(col)
            col += f.width
        return tuple(offsets)

    @cached_property
    def _encoding(self) -> tuple[tuple[Field, int, dict[str | None, int] | None], ...]:
        """Per field: the field, its first column and, for a category, code -> column offset (None: missing)."""
        plan: list[tuple[Field, int, dict[str | None, int] | None]] = []
        for f, col in zip(self.fields, self.column_offsets, strict=True):
            if f.kind == "numeric":
                plan.append((f, col, None))
                continue
            lookup: dict[str | None, int] = {c: k for k, c in enumerate(f.codes)}
            if f.missing:
                lookup[None] = len(f.codes)
            plan.append((f, col, lookup))
        return tuple(plan)

    def encode(
        self, applications: Sequence[Mapping[str, Any]], columns: Mapping[str, Sequence[Any]] | None = None
    ) -> np.ndarray:
        """Encode validated applications (field name -> value) into the model's float32 matrix.

        Raises ContractError naming the field for a missing field, an unknown category or a
        non-finite number; fields not in the spec are ignored here (the API rejects them).
        Large batches are filled a column at a time (the same values: a number becomes its float32,
        a category a 1 in its column), from ``columns`` when the caller has the applications' values
        a field at a time (field name -> the value of every application, in order); anything that pass
        would not take is left to the row-by-row pass, which names the problem.
        """
        if columns is not None or len(applications) >= COLUMNWISE_FROM:
            try:
                if columns is None:
                    columns = {f.name: [app[f.name] for app in applications] for f in self.fields}
                return self._encode_columns(columns, len(applications))
            except (KeyError, TypeError, ValueError):
                pass
        out = np.zeros((len(applications), len(self.columns)), dtype=np.float32)
        plan = self._encoding
        isfinite = math.isfinite
        for r, app in enumerate(applications):
            row = out[r]
            for f, col, lookup in plan:
                value: Any = app.get(f.name)
                if lookup is None:
                    # a finite int or float is taken as is (as _number would); anything else is left to _number
                    kind = value.__class__
                    row[col] = float(value) if (kind is int or kind is float) and isfinite(value) else _number(app, f)
                    continue
                k = lookup.get(value) if value.__class__ is str else _category(app, f, lookup)
                if k is None:
                    raise ContractError(f"{f.name}: unknown value {value!r}")
                row[col + k] = 1.0
        return out

    def _encode_columns(self, columns: Mapping[str, Sequence[Any]], n: int) -> np.ndarray:
        """:meth:`encode` a column at a time; raises KeyError, TypeError or ValueError on any value it does not take."""
        out = np.zeros((n, len(self.columns)), dtype=np.float32)
        rows = np.arange(n)
        for f, col, lookup in self._encoding:
            values = columns[f.name]
            if len(values) != n:
                raise ValueError(f.name)
            # a coded column: each distinct value is encoded once, and the rows take their value's
            coded = values.codes if isinstance(values, CodedColumn) else None
            distinct = values.values if isinstance(values, CodedColumn) else values
            if lookup is None:
                if f.missing:
                    distinct = [math.nan if v is None else v for v in distinct]
                if not set(map(type, distinct)) <= _NUMBER_TYPES:
                    raise TypeError(f.name)
                column = np.asarray(distinct, dtype=np.float64)
                if not np.isfinite(column[~np.isnan(column)] if f.missing else column).all():
                    raise ValueError(f.name)
                out[:, col] = column if coded is None else column[coded]
            else:
                index = np.fromiter(map(lookup.__getitem__, distinct), dtype=np.intp, count=len(distinct))
                out[rows, col + (index if coded is None else index[coded])] = 1.0
        return out

    def from_source_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Translate one training-data row (source columns and labels) into an API application.

        Raises ContractError naming the source column and the value for a cell the spec cannot take:
        a missing column, a number that does not parse, an unknown label, or a missing value in a field
        that may not be missing. Ranges are not checked here: :meth:`Field.check` does that.
        """
        app: dict[str, Any] = {}
        for f in self.fields:
            if f.source_column not in row:
                raise ContractError(f"source column '{f.source_column}' for field '{f.name}' is missing")
            raw = row[f.source_column]
            text = "" if raw is None else str(raw).strip()
            if text in f.missing_values or raw is None:
                if not f.missing:
                    raise ContractError(
                        f"column '{f.source_column}' (field '{f.name}'): value {raw!r} means missing, but the spec "
                        "does not let this field be missing (add `missing: true` to it)"
                    )
                app[f.name] = None
            elif f.kind == "numeric":
                try:
                    value = float(text)
                except ValueError:
                    raise ContractError(
                        f"column '{f.source_column}' (field '{f.name}'): {raw!r} is not a number"
                    ) from None
                app[f.name] = int(value) if f.dtype == "integer" and value.is_integer() else value
            else:
                code = self._source_codes[f.name].get(text)
                if code is None:
                    raise ContractError(
                        f"column '{f.source_column}' (field '{f.name}'): label {raw!r} is not one of the spec's "
                        f"sources ({', '.join(repr(c.source) for c in f.values)})"
                    )
                app[f.name] = code
        return app

    @cached_property
    def _source_codes(self) -> dict[str, dict[str, str]]:
        return {f.name: {c.source.strip(): c.code for c in f.values} for f in self.fields if f.kind == "categorical"}


def field_sums(column_values: np.ndarray, column_field_index: np.ndarray) -> np.ndarray:
    """Per-column values [n, n_columns] summed into their fields [n, n_fields], float64.

    The one column-to-field sum (attributions in the engine, proofs and importance in training): a
    segment sum over each field's contiguous columns (``column_field_index`` is non-decreasing), in
    column order, so a row's sums do not depend on the other rows summed with it.
    """
    index = np.asarray(column_field_index)
    if np.any(np.diff(index) < 0):
        raise ContractError("column_field_index must not decrease: a field's columns are contiguous")
    starts = np.flatnonzero(np.r_[True, np.diff(index) != 0]).astype(np.intp)
    return _segment_sums(column_values, starts, int(index[-1]) + 1 if index.size else 0)


def _segment_sums(column_values: np.ndarray, starts: np.ndarray, n_fields: int) -> np.ndarray:
    values = np.asarray(column_values, dtype=np.float64)
    if values.shape[0] == 0:
        return np.zeros((0, n_fields), dtype=np.float64)
    return np.add.reduceat(values, starts, axis=1)


def _plain(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and x == int(x) else repr(x)


def _category(app: Mapping[str, Any], f: Field, lookup: Mapping[str | None, int]) -> int | None:
    """The column offset of a categorical field's value that is not a plain str (None: an unknown value)."""
    if f.name not in app and not f.missing:
        raise ContractError(f"{f.name}: missing")
    value = app.get(f.name)
    return lookup.get(value) if value is None or isinstance(value, str) else None


def _number(app: Mapping[str, Any], f: Field) -> float:
    value = app.get(f.name)
    if value is None and f.missing:
        return math.nan
    if f.name not in app:
        raise ContractError(f"{f.name}: missing")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContractError(f"{f.name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ContractError(f"{f.name}: must be finite")
    return float(value)


def _parse_monitoring(raw: Any, where: str) -> MonitoringAttribute:
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: expected a mapping")
    name = require(raw, "name", str, where)
    field_name = str(raw.get("monitoring_field", name))
    if not _NAME.match(field_name):
        raise ContractError(f"{where}.monitoring_field: '{field_name}' must be snake_case")
    values = raw.get("values", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ContractError(f"{where}.values: expected a list of strings")
    return MonitoringAttribute(
        name=name,
        source_column=str(raw.get("source_column", name)),
        basis=str(raw.get("basis", "")),
        monitoring_field=field_name,
        values=tuple(values),
    )


def _parse_field(raw: Any, where: str) -> Field:
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: expected a mapping")
    name = require(raw, "name", str, where)
    if not _NAME.match(name):
        raise ContractError(f"{where}.name: '{name}' must be snake_case")
    where = f"{where}({name})"
    kind = require(raw, "kind", str, where)
    if kind not in ("numeric", "categorical"):
        raise ContractError(f"{where}.kind: must be 'numeric' or 'categorical', got '{kind}'")
    monotone = raw.get("monotone", 0)
    if monotone not in (-1, 0, 1) or isinstance(monotone, bool):
        raise ContractError(f"{where}.monotone: must be -1, 0 or +1")
    actionable = raw.get("actionable", False)
    if not isinstance(actionable, bool):
        raise ContractError(f"{where}.actionable: must be true or false")
    recourse = _parse_recourse(raw, kind, actionable, int(monotone), where)
    ordered = raw.get("ordered", False)
    if not isinstance(ordered, bool) or (ordered and kind != "categorical"):
        raise ContractError(f"{where}.ordered: true or false, and only on a categorical field")
    common: dict[str, Any] = {
        "recourse": recourse,
        "ordered": ordered,
        "name": name,
        "kind": kind,
        "description": require(raw, "description", str, where),
        "reason_group": require(raw, "reason_group", str, where),
        "actionable": actionable,
        "monotone": int(monotone),
        "source_column": str(raw.get("source_column", name)),
        "unit": str(raw.get("unit", "")),
        **_parse_missing(raw, where),
    }
    if kind == "numeric":
        dtype = raw.get("dtype", "number")
        if dtype not in ("integer", "number"):
            raise ContractError(f"{where}.dtype: must be 'integer' or 'number'")
        lo = require(raw, "minimum", (int, float), where)
        hi = require(raw, "maximum", (int, float), where)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ContractError(f"{where}: minimum must be <= maximum, both finite")
        if "values" in raw:
            raise ContractError(f"{where}.values: only categorical fields have values")
        return Field(dtype=dtype, minimum=float(lo), maximum=float(hi), **common)
    if monotone != 0:
        raise ContractError(f"{where}.monotone: categorical fields are one-hot encoded and cannot be monotone")
    values_raw = require(raw, "values", list, where)
    if len(values_raw) < 2:
        raise ContractError(f"{where}.values: a categorical field needs at least two values")
    values = []
    for j, v in enumerate(values_raw):
        w = f"{where}.values[{j}]"
        if not isinstance(v, dict):
            raise ContractError(f"{w}: expected a mapping with code, label and source")
        code = str(require(v, "code", (str, int), w))
        if not _CODE.match(code):
            raise ContractError(f"{w}.code: '{code}' must be lower-case letters, digits and '_'")
        source = require(v, "source", (str, int, float), w) if "source" in v else code
        label = require(v, "label", str, w) if "label" in v else code
        values.append(Category(code=code, label=label, source=str(source)))
    codes = [c.code for c in values]
    if len(set(codes)) != len(codes):
        raise ContractError(f"{where}.values: duplicate codes")
    sources = [c.source.strip() for c in values]
    if len(set(sources)) != len(sources):
        raise ContractError(f"{where}.values: two codes have the same source label")
    clash = sorted(set(sources) & set(common["missing_values"])) if common["missing"] else []
    if clash:
        raise ContractError(f"{where}: source label(s) {clash} are both a code's source and a missing value")
    return Field(values=tuple(values), **common)


def _parse_recourse(raw: dict[str, Any], kind: str, actionable: bool, monotone: int, where: str) -> RecourseRule | None:
    """``recourse: {direction: decrease|increase, step: n}`` (numeric) or ``recourse: {to: [codes]}`` (categorical)."""
    block = raw.get("recourse")
    if block is None:
        return None
    where = f"{where}.recourse"
    if not isinstance(block, dict):
        raise ContractError(f"{where}: expected a mapping")
    if not actionable:
        raise ContractError(f"{where}: only an actionable field (actionable: true) may be changed by recourse")
    if kind == "categorical":
        unknown = sorted(set(block) - {"to"})
        if unknown:
            raise ContractError(f"{where}: unknown key(s) {unknown} (a categorical field takes only `to`)")
        to = block.get("to")
        if not isinstance(to, list) or not to or not all(isinstance(c, str) for c in to):
            raise ContractError(f"{where}.to: expected a non-empty list of the field's codes")
        codes = {str(v.get("code")) for v in raw.get("values", []) if isinstance(v, dict)}
        strangers = [c for c in to if c not in codes]
        if strangers or len(set(to)) != len(to):
            raise ContractError(f"{where}.to: {strangers or to} must be distinct codes of the field")
        return RecourseRule(to=tuple(to))
    unknown = sorted(set(block) - {"direction", "step"})
    if unknown:
        raise ContractError(f"{where}: unknown key(s) {unknown} (a numeric field takes direction and step)")
    direction = block.get("direction")
    if direction not in ("decrease", "increase"):
        raise ContractError(f"{where}.direction: must be 'decrease' or 'increase', got {direction!r}")
    if (direction == "increase") == (monotone == 1) and monotone != 0:
        raise ContractError(
            f"{where}.direction: the field's monotone constraint ({monotone:+d}) means moving it to {direction} "
            "can never lower the risk"
        )
    step = block.get("step", 1)
    integer = raw.get("dtype", "number") == "integer"
    if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step) or step <= 0:
        raise ContractError(f"{where}.step: must be a positive number")
    if integer and not float(step).is_integer():
        raise ContractError(f"{where}.step: must be a whole number for an integer field")
    return RecourseRule(direction=direction, step=float(step))


def _parse_missing(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """``missing: true|false`` (default false) and ``missing_values``: source labels meaning missing (default a blank)."""
    missing = raw.get("missing", False)
    if not isinstance(missing, bool):
        raise ContractError(f"{where}.missing: must be true or false, got {missing!r}")
    values = raw.get("missing_values", [""])
    if not isinstance(values, list) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in values
    ):
        raise ContractError(
            f'{where}.missing_values: expected a list of source labels (quote labels such as "NA" or "no")'
        )
    if "missing_values" in raw and not missing:
        raise ContractError(f"{where}.missing_values: the field is not allowed to be missing (add `missing: true`)")
    return {"missing": missing, "missing_values": tuple(str(v).strip() for v in values)}


def _parse_bands(raw: Any, fields: Mapping[str, Field], where: str) -> FairnessBands:
    """``{name, field, edges}``: groups of a numeric model input for the fairness report."""
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: expected a mapping with name, field and edges")
    name = require(raw, "name", str, where)
    field_name = require(raw, "field", str, where)
    field = fields.get(field_name)
    if field is None or field.kind != "numeric":
        raise ContractError(f"{where}.field: '{field_name}' is not a numeric field of the spec")
    edges_raw = require(raw, "edges", list, where)
    if not edges_raw or not all(isinstance(e, int | float) and not isinstance(e, bool) for e in edges_raw):
        raise ContractError(f"{where}.edges: expected a non-empty list of numbers")
    edges = tuple(float(e) for e in edges_raw)
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise ContractError(f"{where}.edges: must increase strictly")
    integer = field.dtype == "integer" and all(e.is_integer() for e in edges)
    plain = [_plain(e) for e in edges]
    labels = [f"<{plain[0]}"]
    for i in range(1, len(edges)):
        labels.append(f"{plain[i - 1]}-{_plain(edges[i] - 1)}" if integer else f"{plain[i - 1]} to <{plain[i]}")
    labels.append(f"{plain[-1]}+" if integer else f">={plain[-1]}")
    return FairnessBands(name=name, field=field_name, edges=edges, labels=tuple(labels))
