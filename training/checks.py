"""Training-data checks: every row as the API would take it, enough of each outcome, no field that leaks the target.

The rules, each applied by :func:`check_training_data`:

* **Row numbers.** A *data row* is a row below the header: data row 1 is the first one (a spreadsheet that shows
  the header as row 1 shows it as row 2). Blank lines are skipped but still counted, so the numbers match the file.
* **Valid rows.** Each row is translated with :meth:`FeatureSpec.from_source_row` (source labels to codes;
  unparseable numbers, unknown labels and forbidden missing values are refused there) and every value is then
  checked with the field's own :meth:`Field.check`, the very check the API applies, with the API's words. A row
  whose cell count differs from the header's, or whose target cell is blank, is invalid too. With
  ``on_invalid: refuse`` (the default) one invalid row stops the run: the error names the file, the first
  :data:`INVALID_ROWS_SHOWN` invalid rows (data row, source column, value, reason) and how many there are.
  With ``on_invalid: drop`` they are left out and counted per reason.
* **Enough outcomes.** Both classes need at least :func:`rows_needed_per_class` rows (see there).
* **Leakage.** A field whose univariate AUC against the target reaches :data:`LEAKAGE_AUC` gives a warning
  (``credit-decision train --strict`` refuses instead): see :func:`univariate_auc`.

File-level problems (not UTF-8, no header, a source column or the target column absent, a column named twice)
always stop the run. Every error is a :class:`DataError` (a ``ContractError``): no traceback reaches a user.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from model_store.errors import ContractError
from model_store.spec import FeatureSpec, Field, InvalidValue
from training.config import OnInvalid

LEAKAGE_AUC = 0.95
"""A field whose univariate AUC against the target is at least this gives a target-leakage warning.

Real credit predictors rarely pass 0.75 on their own; 0.95 means one field almost decides the outcome, which
in practice is a field recorded after the outcome (collections status, days past due, a closed-account flag).
Perfect separation is AUC 1.0, so it is covered.
"""

MIN_ROWS_PER_CLASS_PER_PART = 5
"""Fewest bad (and good) rows the hold-out and every cross-validation fold must each hold (at least ``cv_folds``)."""

INVALID_ROWS_SHOWN = 5
"""How many invalid rows a refusal lists before saying how many there are in all."""


class DataError(ContractError):
    """The training data cannot be trained on; the message names the file, the data rows and the columns."""


@dataclass(frozen=True)
class RowProblem:
    """Why one cell (or the row's shape) is invalid."""

    column: str | None  # source column; None when the problem is the row's shape
    value: Any  # the raw cell as read
    reason: str  # what is wrong, without the value: rows are counted by it
    message: str  # the full sentence shown to the user (names the column and the value)

    @property
    def key(self) -> str:
        """The reason as counted: ``column 'c': reason``."""
        return self.reason if self.column is None else f"column '{self.column}': {self.reason}"


@dataclass(frozen=True)
class InvalidRow:
    """A data row the API would refuse, with every problem found in it."""

    row: int  # data row number: 1 = first row below the header
    problems: tuple[RowProblem, ...]

    def describe(self) -> str:
        """``data row 7: …; …`` (every problem of the row)."""
        return f"data row {self.row}: " + "; ".join(p.message for p in self.problems)


@dataclass(frozen=True)
class Leak:
    """A field that on its own nearly separates bad from good."""

    field: str
    source_column: str
    auc: float

    def describe(self) -> str:
        """The warning, in words."""
        return (
            f"possible target leakage: field '{self.field}' (column '{self.source_column}') alone separates bad "
            f"from good outcomes with AUC {self.auc:.3f} (warning at {LEAKAGE_AUC:g}); check that it is known "
            "when an application is decided, not recorded after the outcome"
        )


@dataclass(frozen=True)
class DataChecks:
    """What the checks found: recorded in the manifest, shown in the model card, printed by the CLI."""

    on_invalid: OnInvalid
    rows_read: int
    dropped_rows: int
    dropped_by_reason: Mapping[str, int]
    first_dropped: tuple[int, ...]  # data row numbers of the first few dropped rows
    leaks: tuple[Leak, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        """Every warning: dropped rows first, then leakage."""
        out = []
        if self.dropped_rows:
            reasons = "; ".join(f"{key} ({n})" for key, n in self.dropped_by_reason.items())
            rows = ", ".join(map(str, self.first_dropped))
            out.append(
                f"dropped {self.dropped_rows} of {self.rows_read} data rows the API would refuse "
                f"(dataset.on_invalid: drop; first data rows {rows}): {reasons}"
            )
        out.extend(leak.describe() for leak in self.leaks)
        return tuple(out)

    def to_manifest(self) -> dict[str, Any]:
        """The checks as recorded in the manifest."""
        return {
            "row_numbering": "data rows count from 1, the header not counted",
            "on_invalid": self.on_invalid,
            "rows_read": self.rows_read,
            "dropped_rows": self.dropped_rows,
            "dropped_by_reason": dict(self.dropped_by_reason),
            "first_dropped_rows": list(self.first_dropped),
            "leakage": {
                "auc_threshold": LEAKAGE_AUC,
                "fields": [{"field": k.field, "source_column": k.source_column, "auc": k.auc} for k in self.leaks],
            },
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class CheckedData:
    """The rows that passed, as API applications, their outcomes (1 = bad) and the checks' findings."""

    applications: tuple[dict[str, Any], ...]
    y: np.ndarray  # int64
    checks: DataChecks


def check_training_data(
    path: Path,
    raw: bytes,
    spec: FeatureSpec,
    *,
    on_invalid: OnInvalid,
    holdout_fraction: float,
    cv_folds: int,
) -> CheckedData:
    """Read and check the CSV bytes of ``path`` (see the module docstring); raises DataError."""
    header, rows = _read_csv(path, raw)
    _check_header(path, header, spec)
    width = len(header)
    single = {f.name: replace(spec, fields=(f,)) for f in spec.fields}
    applications: list[dict[str, Any]] = []
    y: list[int] = []
    invalid: list[InvalidRow] = []
    labels: Counter[str] = Counter()
    rows_read = len(rows)
    for number, cells in rows:
        if len(cells) != width:
            problem = RowProblem(
                None,
                None,
                "the number of cells differs from the header's",
                f"{len(cells)} cells, but the header has {width} columns",
            )
            invalid.append(InvalidRow(number, (problem,)))
            continue
        row = dict(zip(header, cells, strict=True))
        application, problems = _application(spec, single, row)
        outcome = row[spec.target_column]
        if not outcome.strip():
            problems.append(
                RowProblem(
                    spec.target_column,
                    outcome,
                    "the target (outcome) is blank",
                    f"target column '{spec.target_column}': value {outcome!r} is blank, so the outcome is unknown",
                )
            )
        elif spec.good_value is not None and outcome.strip() not in (spec.bad_value, spec.good_value):
            problems.append(
                RowProblem(
                    spec.target_column,
                    outcome,
                    "the target (outcome) is neither the bad nor the good value",
                    f"target column '{spec.target_column}': value {outcome!r} is neither bad "
                    f"({spec.bad_value!r}) nor good ({spec.good_value!r})",
                )
            )
        if problems:
            invalid.append(InvalidRow(number, tuple(problems)))
            continue
        applications.append(application)
        labels[outcome.strip()] += 1
        y.append(int(outcome.strip() == spec.bad_value))
    if not rows_read:
        raise DataError(f"{path}: no data rows")
    if invalid and on_invalid != "drop":
        raise DataError(_refusal(path, invalid, rows_read))
    _check_target_labels(path, spec, labels)
    outcomes = np.asarray(y, dtype=np.int64)
    check_class_counts(path, spec, outcomes, holdout_fraction=holdout_fraction, cv_folds=cv_folds)
    by_reason = Counter(key for row in invalid for key in dict.fromkeys(p.key for p in row.problems))
    checks = DataChecks(
        on_invalid=on_invalid,
        rows_read=rows_read,
        dropped_rows=len(invalid),
        dropped_by_reason=dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        first_dropped=tuple(r.row for r in invalid[:INVALID_ROWS_SHOWN]),
        leaks=find_leaks(spec, applications, outcomes),
    )
    return CheckedData(tuple(applications), outcomes, checks)


def _check_target_labels(path: Path, spec: FeatureSpec, labels: Counter[str]) -> None:
    """The outcome takes two labels, the bad one and one good one (a third is most likely a typo, and would
    silently count as good); the spec's ``target.good_value`` names the good one and makes others invalid rows."""
    others = sorted(label for label in labels if label != spec.bad_value)
    if labels and spec.bad_value not in labels:
        shown = ", ".join(repr(label) for label in others[:10])
        raise DataError(
            f"{path}: target column '{spec.target_column}': no row has the bad value {spec.bad_value!r} "
            f"(target.bad_value in the feature spec); the column holds {shown}"
        )
    if spec.good_value is None and len(others) > 1:
        shown = ", ".join(
            f"{label!r} ({_rows(labels[label])})" for label in sorted(labels, key=lambda v: -labels[v])[:10]
        )
        raise DataError(
            f"{path}: target column '{spec.target_column}' has {len(labels)} different values: {shown}; expected "
            f"the bad value {spec.bad_value!r} and one good value. Fix the rows, or name the good value "
            "(target.good_value in the feature spec) so that other values are invalid rows"
        )


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def rows_needed_per_class(holdout_fraction: float, cv_folds: int) -> int:
    """Fewest rows of each class (bad, good) that training accepts.

    With ``k = max(cv_folds, MIN_ROWS_PER_CLASS_PER_PART)``, the stratified hold-out and each of the
    ``cv_folds`` stratified validation folds of the training part must hold at least ``k`` rows of each class:
    ``max(ceil(k / holdout_fraction), ceil(k * cv_folds / (1 - holdout_fraction)))`` rows of the class.
    """
    k = max(cv_folds, MIN_ROWS_PER_CLASS_PER_PART)
    return max(math.ceil(k / holdout_fraction), math.ceil(k * cv_folds / (1.0 - holdout_fraction)))


def check_class_counts(path: Path, spec: FeatureSpec, y: np.ndarray, *, holdout_fraction: float, cv_folds: int) -> None:
    """Raise DataError unless both outcomes have :func:`rows_needed_per_class` rows."""
    needed = rows_needed_per_class(holdout_fraction, cv_folds)
    k = max(cv_folds, MIN_ROWS_PER_CLASS_PER_PART)
    bads = int(y.sum())
    for label, count in (("bad", bads), ("good", len(y) - bads)):
        if count < needed:
            raise DataError(
                f"{path}: too few {label} outcomes to train: {count} {label} rows (target column "
                f"'{spec.target_column}', bad = {spec.bad_value!r}) among {len(y)} valid rows, at least {needed} "
                f"needed: the hold-out (fraction {holdout_fraction:g}) and each of the {cv_folds} cross-validation "
                f"folds need at least {k} {label} rows each"
            )


def find_leaks(spec: FeatureSpec, applications: Sequence[Mapping[str, Any]], y: np.ndarray) -> tuple[Leak, ...]:
    """Fields whose :func:`univariate_auc` is at least :data:`LEAKAGE_AUC`, highest first."""
    leaks = []
    for f in spec.fields:
        auc = univariate_auc(f, [a[f.name] for a in applications], y)
        if auc is not None and auc >= LEAKAGE_AUC:
            leaks.append(Leak(f.name, f.source_column, auc))
    return tuple(sorted(leaks, key=lambda leak: (-leak.auc, leak.field)))


def univariate_auc(field: Field, values: Sequence[Any], y: np.ndarray) -> float | None:
    """How well one field alone separates bad from good (0.5 = not at all, 1.0 = perfectly).

    Numeric: the AUC of the raw value or of its negation, whichever is larger, over the rows where it is not
    missing. Categorical: the AUC of each row's category bad rate (in-sample; a missing value is a category of its
    own). None when the rows considered do not hold both outcomes.
    """
    y = np.asarray(y, dtype=np.int64)
    if field.kind == "numeric":
        present = np.asarray([v is not None for v in values], dtype=bool)
        score = np.asarray([v for v in values if v is not None], dtype=np.float64)
        outcome = y[present]
    else:
        codes = list(values)
        bad: Counter[Any] = Counter()
        seen: Counter[Any] = Counter()
        for code, bad_outcome in zip(codes, y.tolist(), strict=True):
            seen[code] += 1
            bad[code] += bad_outcome
        score = np.asarray([bad[c] / seen[c] for c in codes], dtype=np.float64)
        outcome = y
    if outcome.size == 0 or outcome.min() == outcome.max():
        return None
    auc = float(roc_auc_score(outcome, score))
    return max(auc, 1.0 - auc)


# ---- reading --------------------------------------------------------------------------------------
def _read_csv(path: Path, raw: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank data rows with their data row numbers."""
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (spreadsheet exports) is not part of the first name
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8 CSV") from None
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file: {exc}") from None
    if not records or not records[0]:
        raise DataError(f"{path}: no header row")
    rows = [(number, cells) for number, cells in enumerate(records[1:], start=1) if cells]
    return records[0], rows


def _check_header(path: Path, header: Sequence[str], spec: FeatureSpec) -> None:
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise DataError(f"{path}: column(s) {twice} appear more than once in the header")
    if spec.target_column not in header:
        raise DataError(f"{path}: target column '{spec.target_column}' is missing from the header")
    absent = [f"'{f.source_column}' (field '{f.name}')" for f in spec.fields if f.source_column not in header]
    if absent:
        raise DataError(f"{path}: source column(s) missing from the header: {', '.join(absent)}")


def _application(
    spec: FeatureSpec, single: Mapping[str, FeatureSpec], row: Mapping[str, str]
) -> tuple[dict[str, Any], list[RowProblem]]:
    """The row as an API application (values as :meth:`Field.check` returns them) and every problem in it."""
    try:
        translated = spec.from_source_row(row)
    except ContractError:
        translated = None
    application: dict[str, Any] = {}
    problems: list[RowProblem] = []
    for f in spec.fields:
        raw = row[f.source_column]
        if translated is None:
            # the whole row did not translate: find every field that does not, each on its own
            try:
                value = single[f.name].from_source_row(row)[f.name]
            except ContractError as exc:
                problems.append(RowProblem(f.source_column, raw, _translation_reason(f, raw), str(exc)))
                continue
        else:
            value = translated[f.name]
        try:
            application[f.name] = f.check(value)
        except InvalidValue as exc:
            problems.append(
                RowProblem(
                    f.source_column,
                    raw,
                    str(exc),
                    f"column '{f.source_column}' (field '{f.name}'): value {raw!r}: {exc}",
                )
            )
    return application, problems


def _translation_reason(field: Field, raw: str) -> str:
    """The reason ``from_source_row`` refused a cell, without the value (rows are counted by it)."""
    if raw.strip() in field.missing_values:
        return "missing, and the field may not be missing"
    return "not a number" if field.kind == "numeric" else "not one of the spec's source labels"


def _refusal(path: Path, invalid: Sequence[InvalidRow], rows_read: int) -> str:
    shown = "\n".join(f"  {row.describe()}" for row in invalid[:INVALID_ROWS_SHOWN])
    more = len(invalid) - INVALID_ROWS_SHOWN
    return (
        f"{path}: {len(invalid)} of {rows_read} data rows are invalid (data rows count from 1, the header not "
        f"counted); training refuses them. Correct the data, or set `on_invalid: drop` under "
        f"`dataset:` in the training config to leave such rows out.\n{shown}"
        + (f"\n  … and {more} more invalid row(s)" if more > 0 else "")
    )
