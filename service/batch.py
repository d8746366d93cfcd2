"""Batch decisions: ``credit-decision score`` decides a file of applications with the served model.

The file is read in chunks; each chunk is validated column by column, encoded, scored with the
model's ONNX graph, explained with exact TreeSHAP and decided by the vectorised core
(:mod:`service.core.batch`), which gives every row what the decision API would give it.
Invalid rows are reported with the field and the problem and skipped; they never stop the run.

Input: CSV or JSON Lines (``.csv``, ``.jsonl``/``.ndjson``) or Parquet (needs pyarrow), one
application per row with an ``application_id`` and the spec's fields (API codes, not training
labels). A JSON line may also be a decision request ``{"application_id", "applicant": {...}}``.
Output: CSV or JSON Lines with ``application_id, decision, score, probability_of_default,
risk_band, reason_1..reason_4, rules_fired``, written whole or not at all.

With ``--workers N`` the reading process only splits the file into chunks of text; the workers
parse, validate, decide and format them, and the reading process writes their text in order.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

import click
import numpy as np

from model_store.spec import FeatureSpec

DEFAULT_CHUNK_SIZE = 8192
MAX_REPORTED_ERRORS = 50
ID_COLUMN = "application_id"
# the decision API's pattern for application ids (service.api.schemas.APPLICATION_ID_PATTERN)
_APPLICATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
_ACTIONS = np.asarray(("approve", "refer", "decline"), dtype=object)  # index == severity, as in service.core.batch


class BatchInputError(click.ClickException):
    """The input or output cannot be used at all (unknown format, missing columns, no pyarrow)."""


@dataclass(frozen=True)
class RowError:
    """An invalid input row: its 1-based data row number, id (if readable) and each bad field."""

    row: int
    application_id: str | None
    problems: tuple[tuple[str, str], ...]

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
    """Input rows column by column, as read (text for CSV, JSON or Parquet values otherwise)."""

    rows: list[int]  # 1-based data row number of each position
    ids: list[Any]
    values: dict[str, list[Any]]
    text: bool  # CSV cells: numbers arrive as text
    strict_integers: bool  # JSON: integer fields take JSON integers only, as the API does
    problems: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # position -> problems found reading
    unreadable: set[int] = field(default_factory=set)  # positions whose record could not be read at all

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class ParsedChunk:
    """The valid rows of a chunk in columnar form, and the invalid ones."""

    ids: list[str]
    columns: dict[str, np.ndarray]
    errors: list[RowError]


@dataclass(frozen=True)
class ChunkResult:
    """Formatted output of a chunk and the rows it skipped."""

    text: str
    decided: int
    errors: list[RowError]
    n_input: int


# ---- validation ------------------------------------------------------------------------------
def parse_chunk(spec: FeatureSpec, raw: RawChunk) -> ParsedChunk:
    """Validate a raw chunk field by field; rows with any problem are reported and left out."""
    n = len(raw)
    problems: list[list[tuple[str, str]]] = [list(raw.problems.get(i, ())) for i in range(n)]
    ids: list[str] = []
    for i, value in enumerate(raw.ids):
        if value is None or value == "":
            problems[i].append((ID_COLUMN, "missing"))
        elif not isinstance(value, str) or not _APPLICATION_ID.fullmatch(value):
            problems[i].append((ID_COLUMN, "must be 1 to 64 letters, digits or . _ : -"))
            value = ""  # never echoed
        ids.append(value)
    columns: dict[str, np.ndarray] = {}
    for f in spec.fields:
        values = raw.values.get(f.name)
        if values is None:
            values = [None] * n
        if f.kind == "numeric":
            columns[f.name] = _numbers(f.name, values, raw, problems, f.minimum, f.maximum, f.dtype == "integer")
        else:
            columns[f.name] = _codes(f.name, values, f.codes, problems)
    for i in raw.unreadable:  # only the reading problem: its fields were never there
        problems[i] = list(raw.problems.get(i, ()))
    valid = np.asarray([not p for p in problems], dtype=bool)
    errors = [RowError(raw.rows[i], ids[i] or None, tuple(p)) for i, p in enumerate(problems) if p]
    if errors:
        columns = {name: col[valid] for name, col in columns.items()}
        ids = [app_id for app_id, ok in zip(ids, valid.tolist(), strict=True) if ok]
    return ParsedChunk(ids, columns, errors)


def _numbers(
    name: str,
    values: list[Any],
    raw: RawChunk,
    problems: list[list[tuple[str, str]]],
    minimum: float | None,
    maximum: float | None,
    integer: bool,
) -> np.ndarray:
    """float64 column of a numeric field; NaN where invalid (and the row gets a problem)."""
    out: np.ndarray | None = None
    try:
        if raw.text:
            if all(values):
                out = np.asarray(values, dtype=np.float64)
        elif all(type(v) is int or type(v) is float for v in values):
            out = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        out = None
    if out is None:
        out = _slow_numbers(name, values, raw, problems)  # NaN where it reported a problem
    else:
        for i in np.flatnonzero(np.isnan(out)).tolist():
            problems[i].append((name, "must be a finite number"))
    checked = np.isfinite(out)
    if integer:
        if raw.strict_integers:
            typed = np.asarray([type(v) is int for v in values], dtype=bool)
            bad = checked & ~typed
        else:
            bad = checked & (np.floor(out) != out)
        for i in np.flatnonzero(bad).tolist():
            problems[i].append((name, "must be an integer"))
        checked &= ~bad
    lo = -math.inf if minimum is None else minimum
    hi = math.inf if maximum is None else maximum
    for i in np.flatnonzero(checked & ((out < lo) | (out > hi))).tolist():
        problems[i].append((name, f"must be between {_plain(lo)} and {_plain(hi)}, got {_plain(float(out[i]))}"))
    for i in np.flatnonzero(~np.isfinite(out) & ~np.isnan(out)).tolist():
        problems[i].append((name, "must be a finite number"))
    return out


def _slow_numbers(name: str, values: list[Any], raw: RawChunk, problems: list[list[tuple[str, str]]]) -> np.ndarray:
    """Element by element, naming the problem of each bad value (NaN in the result)."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or v == "":
            problems[i].append((name, "missing"))
            continue
        if raw.text and isinstance(v, str):
            try:
                number = float(v)
            except ValueError:
                problems[i].append((name, f"not a number: {_clip(v)!r}"))
                continue
        elif type(v) is int or type(v) is float:
            number = float(v)
        else:
            problems[i].append((name, f"expected a number, got {type(v).__name__}"))
            continue
        if math.isnan(number):
            problems[i].append((name, "must be a finite number"))
            continue
        out[i] = number
    return out


def _codes(name: str, values: list[Any], codes: tuple[str, ...], problems: list[list[tuple[str, str]]]) -> np.ndarray:
    """int64 column of code indices of a categorical field; 0 where invalid (the row gets a problem)."""
    lookup = {c: k for k, c in enumerate(codes)}
    try:
        idx = [lookup.get(v, -1) for v in values]
    except TypeError:  # an unhashable JSON value (list, object)
        idx = [lookup.get(v, -1) if isinstance(v, str) else -1 for v in values]
    out = np.asarray(idx, dtype=np.int64)
    for i in np.flatnonzero(out < 0).tolist():
        v = values[i]
        if v is None or v == "":
            problems[i].append((name, "missing"))
        else:
            problems[i].append((name, f"unknown value {_clip(str(v))!r}; allowed: {', '.join(codes)}"))
    out[out < 0] = 0
    return out


def _plain(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and x == int(x) else repr(x)


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ---- reading ---------------------------------------------------------------------------------
def input_format(path: Path) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the file name."""
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BatchInputError(f"{path}: unknown input format; use one of {', '.join(sorted(_FORMATS))}")
    return fmt


def count_rows(path: Path) -> int | None:
    """Number of data rows for the progress bar: lines for CSV/JSONL (approximate), None for Parquet."""
    fmt = input_format(path)
    if fmt == "parquet":
        return None
    lines = 0
    last = b"\n"
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"
    return max(0, lines - 1) if fmt == "csv" else lines


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


def _records(fh: IO[str], n: int) -> list[str]:
    """Up to ``n`` CSV records as text lines; a quoted field may span lines, so keep quotes balanced."""
    lines = list(islice(fh, n))
    if not any('"' in line for line in lines):
        return lines
    out: list[str] = []
    pending = ""
    for line in lines:
        pending += line
        if pending.count('"') % 2 == 0:
            out.append(pending)
            pending = ""
    while pending:  # the chunk ended inside a quoted field: read on until it closes (or the file ends)
        more = fh.readline()
        pending += more
        if not more or pending.count('"') % 2 == 0:
            out.append(pending)
            pending = ""
    return out


@dataclass(frozen=True)
class CsvLayout:
    """Where the wanted columns are in the CSV's header."""

    index: tuple[int, ...]  # application_id, then the spec's fields
    width: int


def read_jobs(
    path: Path, spec: FeatureSpec, chunk_size: int, warn: Callable[[str], None]
) -> tuple[CsvLayout | None, Iterator[TextChunk | RawChunk]]:
    """The CSV layout (None for other formats) and the chunks of the input file, unparsed where possible."""
    fmt = input_format(path)
    if fmt == "csv":
        fh = open(path, newline="", encoding="utf-8-sig")  # closed by _text_chunks
        try:
            first = _records(fh, 1)
            header = next(csv.reader(first), None) if first else None
            if header is None:
                raise BatchInputError(f"{path}: empty file (no header row)")
            header = [h.strip() for h in header]
            _check_columns(header, spec, str(path), warn)
        except BaseException:
            fh.close()
            raise
        layout = CsvLayout(tuple(header.index(c) for c in (ID_COLUMN, *spec.field_names)), len(header))
        return layout, _text_chunks(fh, "csv", chunk_size)
    if fmt == "jsonl":
        return None, _text_chunks(open(path, encoding="utf-8"), "jsonl", chunk_size)
    return None, _read_parquet(path, spec, chunk_size, warn)


def _text_chunks(fh: IO[str], fmt: str, chunk_size: int) -> Iterator[TextChunk]:
    with fh:
        first = 1
        while True:
            records = _records(fh, chunk_size) if fmt == "csv" else list(islice(fh, chunk_size))
            if not records:
                return
            yield TextChunk(fmt, first, "".join(records))
            first += len(records)


def to_raw(job: TextChunk | RawChunk, spec: FeatureSpec, layout: CsvLayout | None) -> RawChunk:
    """Parse a text chunk into columns (a raw chunk passes through)."""
    if isinstance(job, RawChunk):
        return job
    if job.fmt == "csv":
        assert layout is not None
        return _csv_raw(job, spec, layout)
    return _jsonl_raw(job, spec)


def _csv_raw(job: TextChunk, spec: FeatureSpec, layout: CsvLayout) -> RawChunk:
    records = list(csv.reader(io.StringIO(job.text, newline="")))
    numbers = [job.first_row + i for i, r in enumerate(records) if r]  # blank lines are skipped, not rows
    rows = [r for r in records if r]
    width = layout.width
    if any(len(r) < width for r in rows):  # a short row: its missing cells are reported as missing fields
        rows = [r if len(r) >= width else r + [""] * (width - len(r)) for r in rows]
    columns = list(zip(*rows, strict=False)) if rows else [()] * width
    values = {name: list(columns[j]) for name, j in zip(spec.field_names, layout.index[1:], strict=True)}
    return RawChunk(numbers, list(columns[layout.index[0]]), values, text=True, strict_integers=False)


def _jsonl_raw(job: TextChunk, spec: FeatureSpec) -> RawChunk:
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
    return RawChunk(rows, ids, values, text=False, strict_integers=True, problems=problems, unreadable=unreadable)


def _read_parquet(path: Path, spec: FeatureSpec, chunk_size: int, warn: Callable[[str], None]) -> Iterator[RawChunk]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BatchInputError(
            f"{path}: reading Parquet needs pyarrow, which is not installed; "
            "install it (pip install pyarrow) or convert the file to CSV or JSON Lines"
        ) from None
    parquet = pq.ParquetFile(path)
    _check_columns(parquet.schema_arrow.names, spec, str(path), warn)
    return _parquet_chunks(parquet, spec, chunk_size)


def _parquet_chunks(parquet: Any, spec: FeatureSpec, chunk_size: int) -> Iterator[RawChunk]:
    first = 1
    for batch in parquet.iter_batches(batch_size=chunk_size, columns=[ID_COLUMN, *spec.field_names]):
        data = batch.to_pydict()
        ids = [None if v is None else str(v) for v in data[ID_COLUMN]]
        values = {n: list(data[n]) for n in spec.field_names}
        rows = list(range(first, first + batch.num_rows))
        yield RawChunk(rows, ids, values, text=False, strict_integers=False)
        first += batch.num_rows


# ---- deciding ----------------------------------------------------------------------------------
def output_header(width: int) -> list[str]:
    """Output column names for ``width`` reason columns."""
    reasons = [f"reason_{k + 1}" for k in range(width)]
    return [ID_COLUMN, "decision", "score", "probability_of_default", "risk_band", *reasons, "rules_fired"]


class ChunkDecider:
    """A served model version and its vectorised decider; turns input chunks into output text."""

    def __init__(self, store_root: Path, name: str, version: str, layout: CsvLayout | None, json_lines: bool) -> None:
        from model_store.store import ModelStore
        from service.core.batch import BatchDecider
        from service.runtime import ServedModel

        self.model = ServedModel.load(ModelStore(store_root), name, version)
        self.model.self_check()
        bundle = self.model.bundle
        self.spec = bundle.spec
        self.layout = layout
        self.json_lines = json_lines
        self.decider = BatchDecider(bundle.spec, bundle.policy, bundle.catalog, self.model.scorer, self.model.explainer)
        self.header = output_header(self.decider.width)

    def run(self, job: TextChunk | RawChunk) -> ChunkResult:
        """Parse, validate, decide and format one chunk."""
        raw = to_raw(job, self.spec, self.layout)
        parsed = parse_chunk(self.spec, raw)
        if not parsed.ids:
            return ChunkResult("", 0, parsed.errors, len(raw))
        result = self.decider.decide(parsed.columns)
        reasons = np.asarray([*result.reason_codes, ""], dtype=object)[result.reasons]  # -1 -> ""
        fired = [""] * len(result)
        for i in np.flatnonzero(result.rules_fired.any(axis=1)).tolist():
            fired[i] = ";".join(result.rule_codes[j] for j in np.flatnonzero(result.rules_fired[i]).tolist())
        columns = [
            parsed.ids,
            _ACTIONS[result.decision].tolist(),
            result.score.tolist(),
            result.probability_of_default.tolist(),
            np.asarray(result.band_names, dtype=object)[result.band].tolist(),
            *reasons.T.tolist(),
            fired,
        ]
        return ChunkResult(self._format(columns), len(parsed.ids), parsed.errors, len(raw))

    def _format(self, columns: list[list[Any]]) -> str:
        out = io.StringIO()
        if not self.json_lines:
            csv.writer(out, lineterminator="\n").writerows(zip(*columns, strict=True))
            return out.getvalue()
        keys = self.header
        n_reasons = len(keys) - 6
        for row in zip(*columns, strict=True):
            record = dict(zip(keys, row, strict=True))
            for k in keys[5 : 5 + n_reasons]:
                record[k] = record[k] or None
            record["rules_fired"] = [c for c in row[-1].split(";") if c]
            out.write(json.dumps(record, separators=(",", ":")))
            out.write("\n")
        return out.getvalue()


_WORKER: ChunkDecider | None = None


def _init_worker(store_root: Path, name: str, version: str, layout: CsvLayout | None, json_lines: bool) -> None:
    global _WORKER
    _WORKER = ChunkDecider(store_root, name, version, layout, json_lines)


def _run_in_worker(job: TextChunk | RawChunk) -> ChunkResult:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(job)


# ---- writing -------------------------------------------------------------------------------------
class _Writer:
    """Output text written to a temporary file beside the target and renamed into place when complete."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        self.tmp = Path(tmp)
        self.fh: IO[str] = os.fdopen(fd, "w", newline="", encoding="utf-8")
        if output_is_csv(path):
            csv.writer(self.fh, lineterminator="\n").writerow(header)

    def write(self, text: str) -> None:
        self.fh.write(text)

    def commit(self) -> None:
        self.fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


def output_is_csv(path: Path) -> bool:
    """True for .csv, False for .jsonl/.ndjson; anything else is refused."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise BatchInputError(f"{path}: output must be .csv or .jsonl")
    return suffix == ".csv"


@dataclass
class BatchSummary:
    """What a batch run did."""

    rows_in: int = 0
    decided: int = 0
    errors: list[RowError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        """Input rows per second of wall time."""
        return self.rows_in / self.seconds if self.seconds > 0 else 0.0


def score_file(
    input_path: Path,
    output_path: Path,
    *,
    store_root: Path,
    name: str,
    version: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    workers: int = 1,
    progress: bool = False,
    warn: Callable[[str], None] = lambda message: None,
) -> BatchSummary:
    """Decide every row of ``input_path`` into ``output_path``; invalid rows are skipped and returned.

    ``seconds`` in the summary counts from the first chunk read to the output renamed into place
    (model loading and worker start-up excluded).
    """
    from tqdm import tqdm

    from model_store.store import ModelStore
    from service.core.batch import reason_width

    if input_path.resolve() == output_path.resolve():
        raise BatchInputError("the output must not overwrite the input")
    json_lines = not output_is_csv(output_path)
    bundle = ModelStore(store_root).load_bundle(name, version)
    header = output_header(reason_width(bundle.policy))
    layout, jobs = read_jobs(input_path, bundle.spec, chunk_size, warn)
    summary = BatchSummary()
    executor: ProcessPoolExecutor | None = None
    local: ChunkDecider | None = None
    if workers > 1:
        import multiprocessing

        # fork before any onnxruntime session or tqdm thread exists in this process; the workers build their own
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
            initargs=(store_root, name, version, layout, json_lines),
        )
        list(executor.map(_ready, range(workers)))  # start-up (model load, self-check) before the clock
    else:
        local = ChunkDecider(store_root, name, version, layout, json_lines)
    writer = _Writer(output_path, header)
    bar = tqdm(total=count_rows(input_path), unit="rows", desc="score", disable=not progress, file=sys.stderr)
    started = time.perf_counter()
    try:
        for result in _results(jobs, local, executor, workers):
            writer.write(result.text)
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
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    summary.seconds = time.perf_counter() - started
    return summary


def _ready(_: int) -> bool:
    return _WORKER is not None


def _results(
    jobs: Iterator[TextChunk | RawChunk], local: ChunkDecider | None, executor: Executor | None, workers: int
) -> Iterator[ChunkResult]:
    """Chunk results in input order; at most two chunks per worker in flight."""
    if executor is None:
        assert local is not None
        for job in jobs:
            yield local.run(job)
        return
    pending: list[Future[ChunkResult]] = []
    for job in jobs:
        pending.append(executor.submit(_run_in_worker, job))
        if len(pending) >= 2 * workers:
            yield pending.pop(0).result()
    for future in pending:
        yield future.result()


# ---- command -----------------------------------------------------------------------------------
def resolve_model(store_root: Path, name: str | None, version: str | None) -> tuple[str, str]:
    """(name, version): as given, the newest version of ``name``, or the store's champion."""
    from model_store.store import ModelStore

    store = ModelStore(store_root)
    if name is None:
        if version is not None:
            raise click.UsageError("--version needs --model")
        champion = store.champion()
        if champion is None:
            raise click.ClickException(f"no champion in the model store {store_root}; train one or pass --model")
        return champion
    if version is None:
        versions = store.versions(name)
        if not versions:
            raise click.ClickException(f"no versions of model {name!r} in {store_root}")
        version = versions[-1]
    return name, version


@click.command("score")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="applications: .csv, .jsonl or .parquet (Parquet needs pyarrow)",
)
@click.option(
    "--output",
    "output_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="decisions: .csv or .jsonl (written whole or not at all)",
)
@click.option("--model", "model_name", default=None, help="model name (default: the champion)")
@click.option("--version", "model_version", default=None, help="model version (default: the newest of --model)")
@click.option(
    "--store",
    "store_root",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="model store root (default: the service's MODEL_STORE setting)",
)
@click.option("--chunk-size", default=DEFAULT_CHUNK_SIZE, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="worker processes")
@click.option(
    "--errors",
    "errors_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="also write every invalid row to this CSV (row, application_id, field, message)",
)
@click.option("--progress/--no-progress", default=None, help="progress bar (default: when stderr is a terminal)")
def score_command(
    input_path: Path,
    output_path: Path,
    model_name: str | None,
    model_version: str | None,
    store_root: Path | None,
    chunk_size: int,
    workers: int,
    errors_path: Path | None,
    progress: bool | None,
) -> None:
    """Decide a file of applications in batch: decision, score, band, reason codes and rules fired per row."""
    from model_store.errors import ContractError
    from service.config import Settings

    settings = Settings.load({"MODEL_STORE": str(store_root)} if store_root else None)
    name, version = resolve_model(
        settings.model_store,
        model_name or settings.model_name,
        model_version or (settings.model_version if not model_name else None),
    )
    show = sys.stderr.isatty() if progress is None else progress
    try:
        summary = score_file(
            input_path,
            output_path,
            store_root=settings.model_store,
            name=name,
            version=version,
            chunk_size=chunk_size,
            workers=workers,
            progress=show,
            warn=lambda message: click.echo(f"warning: {message}", err=True),
        )
    except ContractError as exc:
        raise click.ClickException(str(exc)) from exc
    for error in summary.errors[:MAX_REPORTED_ERRORS]:
        click.echo(f"invalid: {error.describe()}", err=True)
    if len(summary.errors) > MAX_REPORTED_ERRORS:
        click.echo(f"invalid: ... and {len(summary.errors) - MAX_REPORTED_ERRORS} more rows", err=True)
    if errors_path is not None:
        with open(errors_path, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh, lineterminator="\n")
            out.writerow(["row", ID_COLUMN, "field", "message"])
            out.writerows([e.row, e.application_id or "", f, m] for e in summary.errors for f, m in e.problems)
    click.echo(
        f"{name} {version}: {summary.decided} decided, {len(summary.errors)} invalid skipped, "
        f"{summary.rows_in} rows in {summary.seconds:.2f} s ({summary.rows_per_second:,.0f} rows/s) -> {output_path}",
        err=True,
    )
