"""Batch files: decide a file of applications with the served model, through the decision service.

The file is read in chunks; every row is validated field by field with the feature spec's own checks
(:meth:`model_store.spec.Field.check`, the checks the HTTP schemas use, once per distinct cell of a CSV
column) and the valid rows of a chunk are decided together by the served model's
:meth:`service.core.engine.DecisionEngine.decide` (what :meth:`service.decisions.DecisionService.evaluate`
calls), from their columns: every row gets exactly the decision, score, band, reasons and rules the API
would give it.
Invalid rows are reported with the field and the problem and skipped; they never stop the run.

Input: CSV or JSON Lines (``.csv``, ``.jsonl``/``.ndjson``) or Parquet (needs pyarrow), one
application per row with an ``application_id`` and the spec's fields (API codes, not training
labels). A JSON line may also be a decision request ``{"application_id", "applicant": {...}}``.
JSON and Parquet values follow JSON semantics (numbers are numbers); CSV cells are text.
Output: CSV, JSON Lines or Parquet with ``application_id, decision, score, probability_of_default,
risk_band, reason_1..reason_N, rules_fired`` (with ``attributions``: also ``margin`` and each field's
attribution in log-odds), in input order, written whole or not at all. Beside it: the errors file (every
refused row: row number, id, field, message, the refused value) and a manifest (input sha256, the model's version and file
hashes, policy and catalog versions, row counts, output and errors sha256, refusals by reason).

The submitting process reads the input once, to hash it and find where every chunk is (:func:`scan_input`:
byte ranges of CSV and JSON Lines records, row ranges of Parquet; the same chunks however the run is made). With
``workers > 1``, or an executor such as a Dask client's (:mod:`service.batch_dask`) whose workers see the input
and the output's directory, each worker reads its parts of the input, decides them and writes their output to a
part file (:func:`decide_part`; the model loaded once per worker process from the model store), and the
submitting process joins the part files in input order. When an executor's workers cannot see the files, the
submitting process reads the chunks, ships them (:func:`decide_chunk`) and writes what comes back. Either way
every chunk goes through :meth:`ChunkDecider.run`, so the output is the same byte for byte.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise, repeat
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np

from model_store.spec import MISSING, CodedColumn, FeatureSpec, InvalidValue
from model_store.vocabulary import ACTIONS, APPLICATION_ID, APPLICATION_ID_RULE
from service.errors import CreditDecisionError, InvalidInput, ModelUnavailable
from service.private_files import create_private, open_private

if TYPE_CHECKING:
    from service.core.engine import DecisionBatch, DecisionEngine, RowOutcome

DEFAULT_CHUNK_SIZE = 8192
MAX_VALUE_CHARS = 100  # a refused cell is shown in the errors file up to this length
ID_COLUMN = "application_id"
_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


class BatchInputError(InvalidInput):
    """The input or output cannot be used at all (unknown format, missing columns, no pyarrow)."""


@dataclass(frozen=True)
class RowError:
    """An invalid input row: its 1-based data row number, id (if readable) and each bad field."""

    row: int
    application_id: str | None
    problems: tuple[tuple[str, str], ...]
    values: Mapping[str, str] = field(default_factory=dict)  # field -> the refused cell as read (spec fields only)

    def describe(self) -> str:
        """One line for the report."""
        who = f" ({self.application_id})" if self.application_id else ""
        return f"row {self.row}{who}: " + "; ".join(f"{f}: {m}" for f, m in self.problems)


@dataclass(frozen=True)
class TextChunk:
    """Input records as text (CSV records or JSON lines), numbered from ``first_row``."""

    fmt: str  # "csv" or "jsonl"
    first_row: int
    text: str


@dataclass
class RawChunk:
    """Input rows column by column, as read (text cells for CSV, JSON or Parquet values otherwise)."""

    rows: list[int]  # 1-based data row number of each position
    ids: list[Any]
    columns: dict[str, list[Any]]  # the spec's fields, a value per position (None where absent)
    text: bool  # CSV cells: numbers are parsed from text
    problems: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # position -> found while reading
    unreadable: set[int] = field(default_factory=set)  # positions whose record could not be read at all

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class ArrowChunk:
    """Parquet rows as read: an Arrow table (the id column, then the spec's fields), numbered from
    ``first_row``; turned into Python values by the worker that decides it."""

    first_row: int
    batch: Any  # pyarrow.Table or RecordBatch


#: What the reading process hands a worker.
Chunk = TextChunk | RawChunk | ArrowChunk


@dataclass(frozen=True)
class ChunkResult:
    """Formatted output of a chunk (text, or an Arrow table for Parquet) and the rows it refused."""

    text: str
    decided: int
    errors: list[RowError]
    n_input: int
    table: Any = None


@dataclass(frozen=True)
class PartResult:
    """What a worker did with a part: its output, written to ``file`` in the run's parts directory, and the rows
    it read, decided and refused."""

    file: str
    decided: int
    errors: list[RowError]
    n_input: int


# ---- validation: the spec's own checks, row by row --------------------------------------------------
def validate_chunk(spec: FeatureSpec, raw: RawChunk) -> tuple[list[str], list[dict[str, Any]], list[RowError]]:
    """The ids and validated applicants of a chunk's valid rows, and a RowError naming every bad field of the rest.

    Every cell goes through its field's own check (:meth:`model_store.spec.Field.check`, as in the API),
    a column at a time (once per distinct cell); a column with a bad value is checked again cell by cell to name
    each one.
    """
    valid = _validated(spec, raw)
    return valid.ids, list(valid.applicants), valid.errors


class _Applicants(Sequence[dict[str, Any]]):
    """Validated applicants held a field at a time: row ``i`` is the dict of every field's ``i``-th value, made
    when asked for (the engine decides a batch file's rows from the columns)."""

    def __init__(self, names: tuple[str, ...], columns: list[Sequence[Any]], n: int) -> None:
        self.names, self.columns, self.n = names, columns, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(dict, map(zip, repeat(self.names), zip(*self.columns, strict=True)))

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self.n))]
        return dict(zip(self.names, [column[i] for column in self.columns], strict=True))


class _Valid(NamedTuple):
    """A chunk's valid rows (ids, applicants and, when every row is valid, their values a field at a time) and the
    RowError of each invalid one."""

    ids: list[str]
    applicants: Sequence[dict[str, Any]]
    errors: list[RowError]
    columns: dict[str, Sequence[Any]] | None


def _validated(spec: FeatureSpec, raw: RawChunk) -> _Valid:
    """:func:`validate_chunk`, with the valid rows' values a field at a time when every row of the chunk is valid."""
    n = len(raw)
    # problems by position, only for the (few) rows that have any: most chunks have none
    problems: dict[int, list[tuple[str, str]]] = {i: list(found) for i, found in raw.problems.items()}
    ids: list[Any] = list(raw.ids)
    match = APPLICATION_ID.match
    for i, value in enumerate(ids):
        if type(value) is str and match(value):
            continue
        if value is None or value == "":
            problems.setdefault(i, []).append((ID_COLUMN, MISSING))
        elif not isinstance(value, str) or not match(value):
            problems.setdefault(i, []).append((ID_COLUMN, f"Must be {APPLICATION_ID_RULE}."))
            ids[i] = ""  # never echoed
    bad_cells: dict[int, dict[str, str]] = {}
    checked: list[Sequence[Any]] = []
    for name, check in spec.checkers(text=raw.text):
        cells = raw.columns[name]
        try:
            checked.append(_checked_column(check, cells, raw.text))
        except InvalidValue:
            column: list[Any] = []
            for i, cell in enumerate(cells):
                try:
                    column.append(check(cell))
                except InvalidValue as exc:
                    column.append(None)
                    problems.setdefault(i, []).append((name, str(exc)))
                    if cell is not None:
                        bad_cells.setdefault(i, {})[name] = str(cell)[:MAX_VALUE_CHARS]
            checked.append(column)
    for i in raw.unreadable:  # only the reading problem: its fields were never there
        problems[i] = list(raw.problems.get(i, ()))
        bad_cells.pop(i, None)
    names = spec.field_names
    if not problems:  # every row is valid: the checked columns are the applicants' values
        return _Valid(ids, _Applicants(names, checked, n), [], dict(zip(names, checked, strict=True)))
    rows = list(zip(*checked, strict=True)) if checked else [()] * n
    valid_ids: list[str] = []
    applicants: list[dict[str, Any]] = []
    errors: list[RowError] = []
    for i, values in enumerate(rows):
        found = problems.get(i)
        if found:
            errors.append(RowError(raw.rows[i], ids[i] or None, tuple(found), bad_cells.get(i, {})))
        else:
            valid_ids.append(ids[i])
            applicants.append(dict(zip(names, values, strict=True)))
    return _Valid(valid_ids, applicants, errors, None)


def _checked_column(check: Callable[[Any], Any], cells: list[Any], text: bool) -> Sequence[Any]:
    """``check`` of every cell of a column, computed once per distinct cell: a field's check is a pure function of
    the cell, and a column holds few distinct values (ages, durations, codes), so this is the same sequence as
    ``list(map(check, cells))`` at a fraction of the cost, held as a :class:`model_store.spec.CodedColumn` (the
    distinct checked values and each cell's index among them, which encoding and the rules use as they are). JSON
    values are told apart by type as well (``1``, ``1.0`` and ``True`` are equal keys but not the same value); a
    column with an unhashable one (a list, an object) is checked cell by cell, into a list."""
    keys: list[Any]
    if text:  # CSV cells: all str, each its own key
        keys = cells
        distinct = list(dict.fromkeys(keys))
        checked = list(map(check, distinct))
    else:
        try:
            keys = [(cell.__class__, cell) for cell in cells]
            distinct = list(dict.fromkeys(keys))
        except TypeError:
            return list(map(check, cells))
        checked = [check(cell) for _, cell in distinct]
    index = dict(zip(distinct, range(len(distinct)), strict=True))
    return CodedColumn(checked, np.fromiter(map(index.__getitem__, keys), dtype=np.intp, count=len(keys)))


# ---- reading: where each chunk is in the file, and reading it there ------------------------------------
def input_format(path: Path) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the file name."""
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BatchInputError(f"{path}: unknown input format; use one of {', '.join(sorted(_FORMATS))}")
    return fmt


def _check_columns(columns: Sequence[str], spec: FeatureSpec, where: str, warn: Callable[[str], None]) -> None:
    names = set(spec.field_names)
    missing = [c for c in (ID_COLUMN, *spec.field_names) if c not in columns]
    if missing:
        raise BatchInputError(f"{where}: missing column(s) {', '.join(missing)}")
    prohibited = {m.name for m in spec.monitoring_only} | {m.source_column for m in spec.monitoring_only}
    extra = [c for c in columns if c not in names and c != ID_COLUMN]
    if extra:
        kinds = [f"{c} (prohibited-basis attribute)" if c in prohibited else c for c in extra]
        warn(f"{where}: ignoring column(s) not used by the model: {', '.join(kinds)}")


@dataclass(frozen=True)
class CsvLayout:
    """Where the wanted columns are in the CSV's header."""

    index: tuple[int, ...]  # application_id, then the spec's fields
    width: int


def read_layout(path: Path, spec: FeatureSpec, warn: Callable[[str], None]) -> CsvLayout | None:
    """Check the input's columns (header row or Parquet schema); the CSV layout (None for other formats)."""
    fmt = input_format(path)
    if fmt == "jsonl":
        return None
    if fmt == "parquet":
        _check_columns(_parquet_file(path).schema_arrow.names, spec, str(path), warn)
        return None
    splitter = _TextSplitter(1, quoted=True)  # the header is the first record: a quoted name may span lines
    start = b""
    with open(path, "rb") as fh:
        for data in _blocks(fh, 1 << 16):
            start += data
            splitter.feed(data)
            if splitter.header_stop is not None:
                break
        else:
            splitter.finish()
    try:
        first = start[: splitter.header_stop].decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchInputError(f"{path}: the header row is not UTF-8 text (byte {exc.start})") from None
    header = next(csv.reader([first]), None) if first else None
    if header is None:
        raise BatchInputError(f"{path}: empty file (no header row)")
    header = [h.strip() for h in header]
    _check_columns(header, spec, str(path), warn)
    return CsvLayout(tuple(header.index(c) for c in (ID_COLUMN, *spec.field_names)), len(header))


def _parquet_file(path: Path | str) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BatchInputError(
            f"{path}: reading Parquet needs pyarrow, which is not installed; "
            "install it (pip install pyarrow) or convert the file to CSV or JSON Lines"
        ) from None
    return pq.ParquetFile(path)


@dataclass(frozen=True)
class Span:
    """Where a chunk is in the input: bytes ``[start, stop)`` of CSV or JSON Lines records (``digest``: their
    sha256, so a reader checks it has the bytes the manifest's input sha256 covers), or rows ``[start, stop)`` of a
    Parquet file; ``first_row``: the 1-based data row number of its first record."""

    start: int
    stop: int
    first_row: int
    digest: str = ""


@dataclass(frozen=True)
class Part:
    """Consecutive chunks of the input file that one task reads and decides: a worker's unit of work."""

    index: int
    path: str
    fmt: str  # input format
    size: int  # the file's size in bytes when it was scanned
    spans: tuple[Span, ...]


@dataclass(frozen=True)
class InputScan:
    """The input file read once by the submitting process: its sha256, its data rows and its parts."""

    sha256: str
    size: int
    rows: int
    parts: tuple[Part, ...]


SCAN_BLOCK = 1 << 24  # bytes the submitting process reads at a time to hash and split the input
#: a Parquet row group's chunks make at most this many parts: each part decodes the row group (cheap next to
#: deciding it), and a file of a few large row groups still gives every worker parts to decide
ROW_GROUP_PARTS = 4


def scan_input(path: Path, fmt: str, chunk_size: int) -> InputScan:
    """Hash the input and split it into chunks of ``chunk_size`` records (the same chunks however it runs).

    CSV and JSON Lines: a chunk is ``chunk_size`` lines, as reading the file line by line in text mode splits them
    (at ``\\n``, ``\\r\\n`` or a lone ``\\r``), a CSV chunk extended to the end of a quoted field that spans lines;
    each chunk is a part. Parquet: a chunk is ``chunk_size`` rows, a part some of the chunks that start in one row
    group (:data:`ROW_GROUP_PARTS`).
    """
    digest = hashlib.sha256()
    size = 0
    if fmt == "parquet":
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(SCAN_BLOCK), b""):
                digest.update(block)
                size += len(block)
        metadata = _parquet_file(path).metadata
        group_starts = _row_group_starts(metadata)
        rows = int(metadata.num_rows)
        parts: list[Part] = []
        for start, stop in pairwise(group_starts):
            first = -(-start // chunk_size) * chunk_size  # the first chunk that starts in this group
            spans = [Span(s, min(s + chunk_size, rows), s + 1) for s in range(first, stop, chunk_size)]
            per_part = max(1, -(-len(spans) // ROW_GROUP_PARTS))
            for at in range(0, len(spans), per_part):
                parts.append(Part(len(parts), str(path), fmt, size, tuple(spans[at : at + per_part])))
        return InputScan(digest.hexdigest(), size, rows, tuple(parts))
    splitter = _TextSplitter(chunk_size, quoted=fmt == "csv")
    with open(path, "rb") as fh:
        for data in _blocks(fh, SCAN_BLOCK):
            digest.update(data)
            size += len(data)
            splitter.feed(data)
    chunks = splitter.finish()
    parts = [Part(i, str(path), fmt, size, (span,)) for i, span in enumerate(chunks)]
    return InputScan(digest.hexdigest(), size, splitter.first_row - 1, tuple(parts))


def _blocks(fh: IO[bytes], size: int) -> Iterator[bytes]:
    """The file's bytes in blocks of about ``size``, none ending in a ``\\r`` but the file's last (a ``\\r`` ends a
    line unless ``\\n`` follows: it goes with the next block)."""
    held = b""
    while block := fh.read(size):
        data = held + block
        held = data[-1:] if data.endswith(b"\r") else b""
        yield data[: len(data) - len(held)]
    if held:
        yield held


def _row_group_starts(metadata: Any) -> list[int]:
    """The first row of every row group of a Parquet file, then its number of rows."""
    starts = [0]
    for group in range(metadata.num_row_groups):
        starts.append(starts[-1] + metadata.row_group(group).num_rows)
    return starts


class _TextSplitter:
    """Chunk boundaries of a CSV or JSON Lines file as its bytes go by, found with numpy a block at a time.

    A line ends after ``\\n``, or after a ``\\r`` not followed by ``\\n``; in a CSV, a record ends at a line end
    with an even number of ``"`` before it (a quoted field may span lines; ``"`` and line ends are single bytes
    in UTF-8), and its first record is the header, which is no chunk.
    """

    def __init__(self, chunk_size: int, *, quoted: bool) -> None:
        self.chunk_size = chunk_size
        self.quoted = quoted
        self.header = quoted  # a CSV's first record is its header
        self.need = 1 if quoted else chunk_size  # lines before the current chunk may end
        self.lines = 0  # lines of the current chunk so far
        self.records = 0  # records of the current chunk so far
        self.odd = False  # an odd number of quotes since the file's start
        self.start = 0  # where the current chunk starts
        self.offset = 0  # where the next block starts
        self.tail = False  # the bytes since the last line end hold no line end yet
        self.first_row = 1
        self.header_stop: int | None = None  # where a CSV's header ends, once found
        self.hashing = hashlib.sha256()
        self.spans: list[Span] = []

    def feed(self, data: bytes) -> None:
        """The next bytes of the file (never ending in a ``\\r`` unless the file does)."""
        import numpy as np

        base, self.offset = self.offset, self.offset + len(data)
        if not data:
            return
        raw = np.frombuffer(data, dtype=np.uint8)
        line_end = raw == 10
        if b"\r" in data:
            lone_cr = raw == 13
            lone_cr[:-1] &= ~line_end[1:]
            line_end |= lone_cr
        ends = np.flatnonzero(line_end)
        if self.quoted and b'"' in data:
            quotes = np.flatnonzero(raw == 34)
            before = np.searchsorted(quotes, ends, side="right")  # quotes up to each line end
            even = np.flatnonzero((before + self.odd) % 2 == 0)
            self.odd = bool((len(quotes) + self.odd) % 2)
        else:
            even = np.arange(len(ends)) if not self.odd else np.empty(0, dtype=np.intp)
        self.tail = not len(ends) or int(ends[-1]) != len(data) - 1
        hashed = 0  # bytes of this block in the spans' digests so far
        at, n = 0, len(ends)
        while at < n:
            last = at + max(self.need - self.lines, 1) - 1  # the chunk's last line, unless a quote is open there
            k = int(np.searchsorted(even, last)) if last < n else len(even)
            if k == len(even):  # the chunk goes on in the next block
                self.lines += n - at
                self.records += len(even) - int(np.searchsorted(even, at))
                break
            stop = int(ends[even[k]]) + 1
            self.records += k + 1 - int(np.searchsorted(even, at))
            self.hashing.update(data[hashed:stop])
            hashed = stop
            self._close(base + stop)
            at = int(even[k]) + 1
        self.hashing.update(data[hashed:])

    def _close(self, stop: int) -> None:
        if self.header:
            self.header = False
            self.header_stop = stop
            self.need = self.chunk_size
        else:
            self.spans.append(Span(self.start, stop, self.first_row, self.hashing.hexdigest()))
            self.first_row += self.records
        self.hashing = hashlib.sha256()
        self.start, self.lines, self.records = stop, 0, 0

    def finish(self) -> list[Span]:
        """Every chunk's span: at the end of the file an open quote or a last line without a line end ends one more
        record."""
        if self.offset > self.start:
            self.records += self.tail or self.odd
            self._close(self.offset)
        return self.spans


def read_part(part: Part, spec: FeatureSpec) -> Iterator[Chunk]:
    """The chunks of a part, read from the input file where the scan found them (by a worker, or by the submitting
    process when the workers cannot see the file); BatchInputError if the file is not the one scanned."""
    changed = f"{part.path} is not the file whose sha256 the run recorded (changed, or another file at that path)"
    try:
        if os.path.getsize(part.path) != part.size:
            raise BatchInputError(changed)
        if part.fmt == "parquet":
            yield from _parquet_part(part, spec)
            return
        with open(part.path, "rb") as fh:
            for span in part.spans:
                fh.seek(span.start)
                data = fh.read(span.stop - span.start)
                if hashlib.sha256(data).hexdigest() != span.digest:
                    raise BatchInputError(changed)
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise BatchInputError(f"{part.path}: not UTF-8 text (byte {span.start + exc.start})") from None
                if part.fmt == "jsonl" and "\r" in text:  # JSON Lines are read with universal newlines
                    text = text.replace("\r\n", "\n").replace("\r", "\n")
                yield TextChunk(part.fmt, span.first_row, text)
    except OSError as exc:
        raise BatchInputError(f"{part.path}: cannot read the input ({exc.strerror or exc})") from None


def _parquet_part(part: Part, spec: FeatureSpec) -> Iterator[ArrowChunk]:
    parquet = _parquet_file(part.path)
    starts = _row_group_starts(parquet.metadata)
    first = bisect.bisect_right(starts, part.spans[0].start) - 1
    last = bisect.bisect_left(starts, part.spans[-1].stop) - 1
    table = parquet.read_row_groups(list(range(first, last + 1)), columns=[ID_COLUMN, *spec.field_names])
    for span in part.spans:
        yield ArrowChunk(span.first_row, table.slice(span.start - starts[first], span.stop - span.start))


def to_chunk(job: Chunk, spec: FeatureSpec, layout: CsvLayout | None) -> RawChunk:
    """Parse a text chunk, or convert an Arrow one, into columns of Python values."""
    if isinstance(job, RawChunk):
        return job
    if isinstance(job, ArrowChunk):
        return _arrow_chunk(job, spec)
    if job.fmt == "csv":
        assert layout is not None
        return _csv_chunk(job, spec, layout)
    return _jsonl_chunk(job, spec)


def _csv_chunk(job: TextChunk, spec: FeatureSpec, layout: CsvLayout) -> RawChunk:
    width = layout.width
    text = job.text
    if '"' not in text and "\r" not in text and "\0" not in text:
        # no quoting, one record a line: if every line has the header's width, splitting at the commas is what the
        # csv module reads, and a column is every width-th cell (no row-by-row work)
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        if set(map(str.count, lines, repeat(","))) == {width - 1}:
            cells = ",".join(lines).split(",")
            values = {name: cells[j::width] for name, j in zip(spec.field_names, layout.index[1:], strict=True)}
            numbers = list(range(job.first_row, job.first_row + len(lines)))
            return RawChunk(numbers, cells[layout.index[0] :: width], values, text=True)
    records = list(csv.reader(io.StringIO(text, newline="")))
    numbers = [job.first_row + i for i, r in enumerate(records) if r]  # blank lines are skipped, not rows
    rows = [r for r in records if r]
    if any(len(r) < width for r in rows):  # a short row: its missing cells are reported as missing fields
        rows = [r if len(r) >= width else r + [""] * (width - len(r)) for r in rows]
    columns = list(zip(*rows, strict=False)) if rows else [()] * width
    values = {name: list(columns[j]) for name, j in zip(spec.field_names, layout.index[1:], strict=True)}
    return RawChunk(numbers, list(columns[layout.index[0]]), values, text=True)


def _jsonl_chunk(job: TextChunk, spec: FeatureSpec) -> RawChunk:
    names = spec.field_names
    allowed = set(names)
    prohibited = {m.name for m in spec.monitoring_only}
    lines = job.text.splitlines()
    ids: list[Any] = []
    values: dict[str, list[Any]] = {n: [] for n in names}
    problems: dict[int, list[tuple[str, str]]] = {}
    unreadable: set[int] = set()
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            problems[i] = [("line", "not a JSON object")]
            unreadable.add(i)
            record = {}
        applicant = record.get("applicant", record)
        if not isinstance(applicant, dict):
            problems.setdefault(i, []).append(("applicant", "must be an object"))
            applicant = {}
        for k in sorted(k for k in applicant if k not in allowed and k != ID_COLUMN):
            why = "prohibited-basis attribute, never accepted" if k in prohibited else "unknown field"
            problems.setdefault(i, []).append((k, why))
        ids.append(record.get(ID_COLUMN))
        for n in names:
            values[n].append(applicant.get(n))
    rows = list(range(job.first_row, job.first_row + len(lines)))
    return RawChunk(rows, ids, values, text=False, problems=problems, unreadable=unreadable)


def _arrow_chunk(job: ArrowChunk, spec: FeatureSpec) -> RawChunk:
    data = job.batch.to_pydict()
    ids = [None if v is None else str(v) for v in data[ID_COLUMN]]
    rows = list(range(job.first_row, job.first_row + job.batch.num_rows))
    return RawChunk(rows, ids, {n: list(data[n]) for n in spec.field_names}, text=False)


# ---- deciding ----------------------------------------------------------------------------------
OUTPUT_FORMATS = ("csv", "jsonl", "parquet")


def output_format(path: Path, requested: str | None = None, input_fmt: str | None = None) -> str:
    """The output's format: ``requested``, else the output file name's, else the input's."""
    if requested is not None:
        if requested not in OUTPUT_FORMATS:
            raise BatchInputError(f"output format {requested!r}: use one of {', '.join(OUTPUT_FORMATS)}")
        return requested
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is not None:
        return fmt
    if input_fmt is None:
        raise BatchInputError(f"{path}: output must be .csv, .jsonl or .parquet")
    return input_fmt


def output_header(width: int, attributions: Sequence[str] = ()) -> list[str]:
    """Output column names for ``width`` reason columns (and, with attributions, the margin and one column per
    field of ``attributions``)."""
    reasons = [f"reason_{k + 1}" for k in range(width)]
    extra = ["margin", *(f"attribution_{n}" for n in attributions)] if attributions else []
    return [ID_COLUMN, "decision", "score", "probability_of_default", "risk_band", *reasons, "rules_fired", *extra]


def parquet_schema(header: Sequence[str]) -> Any:
    """The Arrow schema of a Parquet output with this header: numbers as int64/float64 (bit for bit), rules as a
    list of codes, absent reasons as nulls."""
    import pyarrow as pa

    def kind(name: str) -> Any:
        if name == "score":
            return pa.int64()
        if name in ("probability_of_default", "margin") or name.startswith("attribution_"):
            return pa.float64()
        if name == "rules_fired":
            return pa.list_(pa.string())
        return pa.string()

    return pa.schema([(name, kind(name)) for name in header])


@dataclass(frozen=True)
class ModelRef:
    """Which model decides: a version of a model store, by the store's absolute path (which every worker must be
    able to read), and the stored candidate policy it decides with (None: its own). Workers load the model
    themselves from the store (verified and self-checked); no model object ever travels."""

    store_root: str
    name: str
    version: str
    policy: str | None = None


@dataclass(frozen=True)
class ChunkPlan:
    """What a worker needs besides the chunk: the model, the CSV layout of the input, the output's form."""

    model: ModelRef
    layout: CsvLayout | None
    fmt: str  # output format
    attributions: bool = False


class ChunkDecider:
    """Turns input chunks into output through a decision service (no store: files are not recorded)."""

    def __init__(self, decide: Any, spec: FeatureSpec, width: int, plan: ChunkPlan) -> None:
        self.decide = decide  # the served model's DecisionEngine.decide
        self.spec = spec
        self.width = width
        self.plan = plan
        self.header = output_header(width, spec.field_names if plan.attributions else ())
        self.schema = parquet_schema(self.header) if plan.fmt == "parquet" else None
        self._made: dict[Hashable, _Row] = {}  # each outcome's output row (by its key), kept from chunk to chunk

    @classmethod
    def load(cls, plan: ChunkPlan) -> ChunkDecider:
        """A decider over the plan's model version (loaded, verified and self-checked in this process)."""
        from model_store.store import ModelStore
        from service.models import ModelCache

        ref = plan.model
        served = ModelCache(ModelStore(ref.store_root)).get(ref.name, ref.version, ref.policy)
        return cls(served.engine.decide, served.bundle.spec, served.engine.width, plan)

    def run(self, job: Chunk) -> ChunkResult:
        """Parse, validate, decide and format one chunk: the one per-chunk step of every way of running a batch."""
        raw = to_chunk(job, self.spec, self.plan.layout)
        ids, applicants, errors, columns = _validated(self.spec, raw)
        if not applicants:
            return ChunkResult("", 0, errors, len(raw))
        return self.output(ids, self.decide(applicants, columns), errors, len(raw))

    def output(self, ids: list[str], batch: DecisionBatch, errors: list[RowError], n_input: int) -> ChunkResult:
        """The decided rows formatted in the plan's output format (text, or an Arrow table for Parquet)."""
        if self.plan.fmt == "parquet":
            return ChunkResult("", len(ids), errors, n_input, table=self._table(ids, batch))
        return ChunkResult(self._text(ids, batch), len(ids), errors, n_input)

    def _rows(self, batch: DecisionBatch) -> list[_Row]:
        """Per row: decision, band, reasons padded with None to the width, fired rule codes (and their CSV text),
        worked out once per distinct outcome (a chunk holds few)."""
        keys, first, which = batch.outcome_groups()
        known = self._made
        if len(known) > MAX_KNOWN_OUTCOMES:
            known.clear()
        made = []
        for key, i in zip(keys, first, strict=True):
            row = known.get(key)
            if row is None:
                row = known[key] = _Row.of(batch.outcome(i), batch.engine, self.width)
            made.append(row)
        return [made[k] for k in which]

    def _text(self, ids: list[str], batch: DecisionBatch) -> str:
        rows = self._rows(batch)
        scores = batch.score.tolist()
        probabilities = batch.probability_of_default.tolist()
        attributions = self.plan.attributions
        margins = batch.margin.tolist() if attributions else []
        fields = batch.field_attributions.tolist() if attributions else []
        if self.plan.fmt == "csv":
            # as the csv module writes them: an id (APPLICATION_ID's characters) never needs quoting, floats as repr
            lines = [
                f"{app_id},{row.csv_decision},{score},{probability!r},{row.csv_tail}"
                for app_id, row, score, probability in zip(ids, rows, scores, probabilities, strict=True)
            ]
            if attributions:
                lines = [
                    f"{line},{margin!r},{','.join(map(repr, row_fields))}"
                    for line, margin, row_fields in zip(lines, margins, fields, strict=True)
                ]
            lines.append("")
            return "\n".join(lines)
        out = io.StringIO()
        names = self.spec.field_names
        for i, (app_id, row, score, probability) in enumerate(zip(ids, rows, scores, probabilities, strict=True)):
            record: dict[str, Any] = {
                ID_COLUMN: app_id,
                "decision": row.decision,
                "score": score,
                "probability_of_default": probability,
                "risk_band": row.band,
            }
            for k, reason in enumerate(row.reasons):
                record[f"reason_{k + 1}"] = reason
            record["rules_fired"] = row.fired
            if attributions:
                record["margin"] = margins[i]
                record["attributions"] = dict(zip(names, fields[i], strict=True))
            out.write(json.dumps(record, separators=(",", ":")))
            out.write("\n")
        return out.getvalue()

    def _table(self, ids: list[str], batch: DecisionBatch) -> Any:
        import pyarrow as pa

        rows = self._rows(batch)
        columns: dict[str, Any] = {
            ID_COLUMN: ids,
            "decision": [r.decision for r in rows],
            "score": batch.score,
            "probability_of_default": batch.probability_of_default,
            "risk_band": [r.band for r in rows],
        }
        for k in range(self.width):
            columns[f"reason_{k + 1}"] = [r.reasons[k] for r in rows]
        columns["rules_fired"] = [r.fired for r in rows]
        if self.plan.attributions:
            columns["margin"] = batch.margin
            for j, name in enumerate(self.spec.field_names):
                columns[f"attribution_{name}"] = batch.field_attributions[:, j].copy()
        return pa.Table.from_pydict(columns, schema=self.schema)


#: Output rows a decider keeps for outcomes seen in earlier chunks (of one model: a decider serves one).
MAX_KNOWN_OUTCOMES = 1 << 16


class _Row(NamedTuple):
    """What an output row says of its outcome: decision, band, reason codes (None past the last), fired rules;
    and as CSV, the decision and the cells from the band on, as the csv module writes them."""

    decision: str
    band: str
    reasons: list[str | None]
    fired: list[str]
    csv_decision: str
    csv_tail: str

    @classmethod
    def of(cls, outcome: RowOutcome, engine: DecisionEngine, width: int) -> _Row:
        codes = engine.reason_codes
        reasons: list[str | None] = [codes[i] for i in outcome.reasons]
        reasons += [None] * (width - len(reasons))
        fired = [engine.rule_codes[j] for j in outcome.fired]
        decision, band = ACTIONS[outcome.action], engine.band_names[outcome.band]
        tail = [band, *("" if r is None else r for r in reasons), ";".join(fired)]
        return cls(decision, band, reasons, fired, _csv_line([decision]), _csv_line(tail))


def _csv_line(cells: list[str]) -> str:
    """Cells as the csv module writes them in a row (quoted where they must be), without the line end; a row's
    line is the lines of its parts joined by commas (each cell is quoted on its own; ``decision`` is never empty)."""
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(cells)
    return line.getvalue()


# Worker processes (the process pool's and Dask's) keep what they loaded for the life of the process: a model
# version in the store never changes, so a long-lived cluster loads each version once.
_MODELS: dict[ModelRef, ChunkDecider] = {}
_DECIDERS: dict[ChunkPlan, ChunkDecider] = {}
_LOADING = threading.Lock()


def _worker_decider(plan: ChunkPlan) -> ChunkDecider:
    decider = _DECIDERS.get(plan)
    if decider is None:
        with _LOADING:
            base = _MODELS.get(plan.model)
            if base is None:
                base = _MODELS[plan.model] = ChunkDecider.load(ChunkPlan(plan.model, None, "csv"))
            decider = _DECIDERS[plan] = ChunkDecider(base.decide, base.spec, base.width, plan)
    return decider


def warm_model(model: ModelRef) -> str | None:
    """Load (verify, self-check) a model in this worker process before its first chunk; the problem, or None."""
    try:
        _worker_decider(ChunkPlan(model, None, "csv"))
    except CreditDecisionError as exc:
        return exc.detail
    return None


def decide_chunk(plan: ChunkPlan, job: Chunk) -> ChunkResult:
    """A worker's task when the submitting process reads the input: decide one chunk it was sent with the
    process's copy of the plan's model."""
    return _worker_decider(plan).run(job)


def decide_part(plan: ChunkPlan, part: Part, parts_dir: str) -> PartResult:
    """A worker's task when it can see the files: read a part of the input, decide its chunks and write their
    output to a file of its own in ``parts_dir`` (the submitting process joins the files in order)."""
    decider = _worker_decider(plan)
    target = Path(parts_dir) / f"part-{part.index:06d}"
    output = _Output(target, plan.fmt, decider.header, header_row=False)
    decided, n_input, errors = 0, 0, []
    try:
        for chunk in read_part(part, decider.spec):
            result = decider.run(chunk)
            output.write(result)
            decided += result.decided
            n_input += result.n_input
            errors += result.errors
    finally:
        output.close()
    return PartResult(str(target), decided, errors, n_input)


PARTS_MARKER = "run"  # the file a worker must see in the parts directory to be given parts


def sees_files(input_path: str, size: int, parts_dir: str, token: str) -> bool:
    """Run on a worker: True if it reads the run's input (the same size) and writes in its parts directory (it sees
    the token the submitting process left there)."""
    try:
        marker = Path(parts_dir) / PARTS_MARKER
        return (
            os.path.getsize(input_path) == size
            and marker.read_text(encoding="utf-8") == token
            and os.access(parts_dir, os.W_OK)
        )
    except OSError:
        return False


# ---- writing -------------------------------------------------------------------------------------
class _Output:
    """An output file: chunks' text (CSV, JSON Lines) or Arrow tables (Parquet, a row group per chunk) in order."""

    def __init__(self, path: Path, fmt: str, header: list[str], *, header_row: bool = True) -> None:
        self.path = path
        self.fh: IO[bytes] | None = None
        self.parquet: Any = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            create_private(path)  # decisions: readable by their owner only (the writer keeps the mode)
            self.parquet = pq.ParquetWriter(path, parquet_schema(header))
            return
        self.fh = open(path, "wb", opener=open_private)
        if fmt == "csv" and header_row:
            line = io.StringIO()
            csv.writer(line, lineterminator="\n").writerow(header)
            self.fh.write(line.getvalue().encode("utf-8"))

    def write(self, result: ChunkResult) -> None:
        if self.fh is not None:
            self.fh.write(result.text.encode("utf-8"))
        elif result.table is not None:
            self.parquet.write_table(result.table)

    def append(self, part_file: Path) -> None:
        """A part's output file written by a worker with the same format and header."""
        if self.fh is not None:
            with open(part_file, "rb") as src:
                shutil.copyfileobj(src, self.fh, 1 << 20)
            return
        import pyarrow.parquet as pq

        part = pq.ParquetFile(part_file)
        for group in range(part.num_row_groups):  # the same row groups: a chunk's table each
            self.parquet.write_table(part.read_row_group(group))
        part.close()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.parquet is not None:
            self.parquet.close()


class _Writer(_Output):
    """The output, written to a temporary file beside the target and renamed into place when complete."""

    def __init__(self, path: Path, fmt: str, header: list[str]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        self.target = path
        super().__init__(Path(tmp), fmt, header)

    def commit(self) -> None:
        self.close()
        os.replace(self.path, self.target)

    def abort(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def output_is_csv(path: Path) -> bool:
    """True for .csv, False for .jsonl/.ndjson/.parquet; anything else is refused."""
    return output_format(path) == "csv"


def write_errors(path: Path, errors: Sequence[RowError]) -> None:
    """The refused rows as CSV (row, application_id, field, message, value: one line per bad field; value: the
    refused cell as read, empty for a missing one and for what is never echoed), written whole."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh, lineterminator="\n")
            out.writerow(["row", ID_COLUMN, "field", "message", "value"])
            out.writerows(
                [e.row, e.application_id or "", f, m, e.values.get(f, "")] for e in errors for f, m in e.problems
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def beside(output_path: Path, what: str) -> Path:
    """A file written next to the output: ``decisions.csv`` -> ``decisions.errors.csv`` / ``decisions.manifest.json``."""
    suffix = {"errors": ".errors.csv", "manifest": ".manifest.json"}[what]
    return output_path.with_name(output_path.stem + suffix)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- the run -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFacts:
    """What the manifest says of the model: its spec and reason width, versions and file hashes."""

    spec: FeatureSpec
    width: int
    facts: dict[str, Any]


def model_facts(model: ModelRef) -> ModelFacts:
    """Verify the model version (and candidate policy) in the store and describe it, without starting a session."""
    from model_store.errors import ContractError
    from model_store.store import MANIFEST_FILE, ModelStore

    store = ModelStore(model.store_root)
    try:
        bundle = store.load_bundle(model.name, model.version)
        policy, catalog = bundle.policy, bundle.catalog
        policy_files = None
        if model.policy is not None and model.policy != bundle.policy.version:
            policy, catalog = store.load_policy(model.policy, bundle.spec)
            policy_files = store.policy_manifest(model.policy).get("files")
    except (ContractError, OSError, ValueError, KeyError) as exc:
        raise ModelUnavailable(f"model {model.name} {model.version}: {exc}") from exc
    facts = {
        "name": model.name,
        "version": model.version,
        "store": model.store_root,
        "manifest_sha256": sha256_of(bundle.path / MANIFEST_FILE),
        "files": dict(bundle.manifest.get("files", {})),
        "spec_version": bundle.spec.version,
        "policy_version": policy.version,
        "catalog_version": catalog.version,
        "candidate_policy_files": policy_files,
    }
    return ModelFacts(bundle.spec, policy.reason_slots, facts)


@dataclass
class BatchSummary:
    """What a batch run did; ``manifest`` is the manifest written next to the output."""

    rows_in: int = 0
    decided: int = 0
    errors: list[RowError] = field(default_factory=list)
    seconds: float = 0.0
    errors_path: Path | None = None
    manifest_path: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    manifest_sha256: str = ""

    @property
    def rows_per_second(self) -> float:
        """Input rows per second of wall time."""
        return self.rows_in / self.seconds if self.seconds > 0 else 0.0

    def event_details(self) -> dict[str, Any]:
        """The run as an audit event records it: the manifest's key facts and the manifest's own sha256."""
        manifest = self.manifest
        model = manifest["model"]
        return {
            "input": {k: manifest["input"][k] for k in ("path", "sha256")},
            "output": {k: manifest["output"][k] for k in ("path", "format", "sha256")},
            "errors": {k: manifest["errors"][k] for k in ("path", "sha256", "rows")},
            "rows": manifest["rows"],
            "model": {k: model[k] for k in ("name", "version", "manifest_sha256", "policy_version", "catalog_version")},
            "run": manifest["run"],
            "manifest": {"path": str(self.manifest_path), "sha256": self.manifest_sha256},
        }


def refusals(errors: Sequence[RowError]) -> list[dict[str, Any]]:
    """Why rows were refused: each (field, message) with the number of rows it refused, most frequent first."""
    counts = Counter(problem for e in errors for problem in e.problems)
    return [{"field": f, "message": m, "rows": n} for (f, m), n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))]


def score_file(
    input_path: Path,
    output_path: Path,
    *,
    model: ModelRef,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    workers: int = 1,
    executor: Executor | None = None,
    on_every_worker: Callable[..., list[Any]] | None = None,
    read_on_workers: bool | None = None,
    runner: Mapping[str, Any] | None = None,
    fmt: str | None = None,
    attributions: bool = False,
    errors_path: Path | None = None,
    progress: bool = False,
    warn: Callable[[str], None] = lambda message: None,
) -> BatchSummary:
    """Decide every row of ``input_path`` into ``output_path``; refused rows go to the errors file, and a manifest
    (input, model, counts, output and errors hashes) is written next to the output.

    Chunks are decided in this process (``workers`` 1), by a pool of ``workers`` processes, or by ``executor``
    (e.g. a Dask client's) with ``workers`` chunks' worth of parallelism: all of them run
    :meth:`ChunkDecider.run` on the same chunks, so the output is the same byte for byte. ``runner`` describes
    how it ran, for the manifest.

    Who reads the input and writes the output: this process hashes the input and finds where each chunk is
    (:func:`scan_input`); the pool's workers, and an executor's workers when ``on_every_worker`` (a function
    running a function on every worker, returning their answers) says they all see the input file and a directory
    beside the output (:func:`sees_files`), each read their parts of the input and write their output to files
    there (:func:`decide_part`) that this process joins in order. Otherwise (or with ``read_on_workers`` False)
    this process reads the chunks, sends them and writes what comes back (:func:`decide_chunk`);
    ``read_on_workers`` True refuses to run that way.

    ``seconds`` in the summary counts from the input's scan to the manifest written (model loading and worker
    start-up excluded).
    """
    from tqdm import tqdm

    if input_path.resolve() == output_path.resolve():
        raise BatchInputError("the output must not overwrite the input")
    input_fmt = input_format(input_path)
    out_fmt = output_format(output_path, fmt, input_fmt)
    errors_path = errors_path or beside(output_path, "errors")
    manifest_path = beside(output_path, "manifest").absolute()
    beside_files = (errors_path.resolve(), manifest_path.resolve())
    if input_path.resolve() in beside_files or output_path.resolve() in beside_files:
        raise BatchInputError("the errors file and the manifest must not overwrite the input or the output")
    described = model_facts(model)
    layout = read_layout(input_path, described.spec, warn)
    plan = ChunkPlan(model, layout, out_fmt, attributions)
    pool: ProcessPoolExecutor | None = None
    local: ChunkDecider | None = None
    parts_dir: Path | None = None
    if executor is None and workers > 1:
        import multiprocessing

        # fork before any onnxruntime session or tqdm thread exists in this process; the workers build their own
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        executor = pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=warm_model,
            initargs=(model,),
        )
    try:
        if executor is not None:
            problems = sorted({p for p in executor.map(warm_model, [model] * workers) if p is not None})
            if problems:  # start-up (model load, self-check) before the clock
                raise ModelUnavailable(problems[0])
            if read_on_workers is not False:
                parts_dir = _parts_dir(input_path, output_path, None if pool is not None else on_every_worker)
            if parts_dir is None and read_on_workers:
                raise BatchInputError(
                    f"the workers cannot read {input_path.absolute()} or write in {output_path.absolute().parent} "
                    "at the same paths as this process"
                )
        else:
            local = ChunkDecider.load(plan)
        summary = BatchSummary(errors_path=errors_path, manifest_path=manifest_path)
        started = time.perf_counter()
        scan = scan_input(input_path, input_fmt, chunk_size)
        writer = _Writer(
            output_path, out_fmt, output_header(described.width, described.spec.field_names if attributions else ())
        )
        bar = tqdm(total=scan.rows, unit="rows", desc="score", disable=not progress, file=sys.stderr)
        try:
            for result in _results(scan, described.spec, plan, local, executor, workers, parts_dir):
                if isinstance(result, PartResult):
                    writer.append(Path(result.file))
                    Path(result.file).unlink()
                else:
                    writer.write(result)
                summary.rows_in += result.n_input
                summary.decided += result.decided
                summary.errors.extend(result.errors)
                bar.update(result.n_input)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if parts_dir is not None:
            shutil.rmtree(parts_dir, ignore_errors=True)
    write_errors(errors_path, summary.errors)
    read_by = "workers" if parts_dir is not None else "submitting process"
    summary.manifest = {
        "manifest_version": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "input": {"path": str(input_path.absolute()), "format": input_fmt, "sha256": scan.sha256},
        "model": described.facts,
        "rows": {"read": summary.rows_in, "decided": summary.decided, "refused": len(summary.errors)},
        "output": {
            "path": str(output_path.absolute()),
            "format": out_fmt,
            "sha256": sha256_of(output_path),
            "attributions": attributions,
        },
        "errors": {
            "path": str(errors_path.absolute()),
            "sha256": sha256_of(errors_path),
            "rows": len(summary.errors),
            "reasons": refusals(summary.errors),
        },
        "run": {
            **(runner or {"scheduler": "embedded", "workers": workers}),
            "chunk_size": chunk_size,
            "input_read_by": read_by,
        },
    }
    text = json.dumps(summary.manifest, indent=2, sort_keys=True) + "\n"
    summary.manifest_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    fd, tmp = tempfile.mkstemp(prefix=f".{manifest_path.name}.", dir=manifest_path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, manifest_path)
    summary.seconds = time.perf_counter() - started
    return summary


def _parts_dir(input_path: Path, output_path: Path, on_every_worker: Callable[..., list[Any]] | None) -> Path | None:
    """A directory beside the output for the workers' part files, if every worker sees it and the input (``None``:
    the workers are this machine's processes); else None."""
    parts_dir = Path(tempfile.mkdtemp(prefix=f".{output_path.name}.parts-", dir=output_path.absolute().parent))
    token = os.urandom(16).hex()
    (parts_dir / PARTS_MARKER).write_text(token, encoding="utf-8")
    if on_every_worker is None:
        return parts_dir
    source = str(input_path.absolute())
    if all(on_every_worker(sees_files, source, os.path.getsize(input_path), str(parts_dir), token)):
        return parts_dir
    shutil.rmtree(parts_dir, ignore_errors=True)
    return None


def _results(
    scan: InputScan,
    spec: FeatureSpec,
    plan: ChunkPlan,
    local: ChunkDecider | None,
    executor: Executor | None,
    workers: int,
    parts_dir: Path | None,
) -> Iterator[ChunkResult | PartResult]:
    """Chunk (or part) results in input order; at most two tasks per worker in flight."""
    if executor is None:
        assert local is not None
        for part in scan.parts:
            for chunk in read_part(part, spec):
                yield local.run(chunk)
        return
    pending: deque[Future[Any]] = deque()
    if parts_dir is not None:
        submitted: Iterator[Future[Any]] = (
            executor.submit(decide_part, plan, part, str(parts_dir)) for part in scan.parts
        )
    else:
        submitted = (
            executor.submit(decide_chunk, plan, _compact(chunk))
            for part in scan.parts
            for chunk in read_part(part, spec)
        )
    for future in submitted:
        pending.append(future)
        if len(pending) >= 2 * workers:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _compact(chunk: Chunk) -> Chunk:
    """A chunk to send: an Arrow slice copied into buffers of its own (sent as is, it would carry its whole row
    groups)."""
    if isinstance(chunk, ArrowChunk):
        import numpy as np

        return ArrowChunk(chunk.first_row, chunk.batch.take(np.arange(chunk.batch.num_rows)))
    return chunk
