"""Batch files: decide a file of applications with the served model, through the decision service.

The file is read in chunks; every row is validated field by field with the feature spec's own checks
(:meth:`model_store.spec.Field.check`, the checks the HTTP schemas use) and the valid rows of a chunk
are decided together by :meth:`service.decisions.DecisionService.evaluate`, i.e. by the one decision
engine: every row gets exactly the decision, score, band, reasons and rules the API would give it.
Invalid rows are reported with the field and the problem and skipped; they never stop the run.

Input: CSV or JSON Lines (``.csv``, ``.jsonl``/``.ndjson``) or Parquet (needs pyarrow), one
application per row with an ``application_id`` and the spec's fields (API codes, not training
labels). A JSON line may also be a decision request ``{"application_id", "applicant": {...}}``.
JSON and Parquet values follow JSON semantics (numbers are numbers); CSV cells are text.
Output: CSV or JSON Lines with ``application_id, decision, score, probability_of_default,
risk_band, reason_1..reason_N, rules_fired``, written whole or not at all.

With ``workers > 1`` the reading process only splits the file into chunks of text; worker processes
parse, validate, decide and format them, and the reading process writes their text in order.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

from model_store.spec import MISSING, FeatureSpec, InvalidValue
from model_store.vocabulary import ACTIONS, APPLICATION_ID, APPLICATION_ID_RULE
from service.errors import InvalidInput

DEFAULT_CHUNK_SIZE = 8192
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
class ChunkResult:
    """Formatted output of a chunk and the rows it skipped."""

    text: str
    decided: int
    errors: list[RowError]
    n_input: int


# ---- validation: the spec's own checks, row by row --------------------------------------------------
def validate_chunk(spec: FeatureSpec, raw: RawChunk) -> tuple[list[str], list[dict[str, Any]], list[RowError]]:
    """The ids and validated applicants of a chunk's valid rows, and a RowError naming every bad field of the rest.

    Every cell goes through its field's own check (:meth:`model_store.spec.Field.check`, as in the API),
    a column at a time; a column with a bad value is checked again cell by cell to name each one.
    """
    n = len(raw)
    problems: list[list[tuple[str, str]]] = [list(raw.problems.get(i, ())) for i in range(n)]
    ids: list[str] = []
    for i, value in enumerate(raw.ids):
        if value is None or value == "":
            problems[i].append((ID_COLUMN, MISSING))
        elif not isinstance(value, str) or not APPLICATION_ID.match(value):
            problems[i].append((ID_COLUMN, f"Must be {APPLICATION_ID_RULE}."))
            value = ""  # never echoed
        ids.append(value)
    checked: list[list[Any]] = []
    for name, check in spec.checkers(text=raw.text):
        cells = raw.columns[name]
        try:
            checked.append(list(map(check, cells)))
        except InvalidValue:
            column: list[Any] = []
            for i, cell in enumerate(cells):
                try:
                    column.append(check(cell))
                except InvalidValue as exc:
                    column.append(None)
                    problems[i].append((name, str(exc)))
            checked.append(column)
    for i in raw.unreadable:  # only the reading problem: its fields were never there
        problems[i] = list(raw.problems.get(i, ()))
    names = spec.field_names
    valid_ids: list[str] = []
    applicants: list[dict[str, Any]] = []
    errors: list[RowError] = []
    for i, values in enumerate(zip(*checked, strict=True) if checked else [()] * n):
        if problems[i]:
            errors.append(RowError(raw.rows[i], ids[i] or None, tuple(problems[i])))
        else:
            valid_ids.append(ids[i])
            applicants.append(dict(zip(names, values, strict=True)))
    return valid_ids, applicants, errors


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


def to_chunk(job: TextChunk | RawChunk, spec: FeatureSpec, layout: CsvLayout | None) -> RawChunk:
    """Parse a text chunk into columns (Parquet chunks arrive as columns already)."""
    if isinstance(job, RawChunk):
        return job
    if job.fmt == "csv":
        assert layout is not None
        return _csv_chunk(job, spec, layout)
    return _jsonl_chunk(job, spec)


def _csv_chunk(job: TextChunk, spec: FeatureSpec, layout: CsvLayout) -> RawChunk:
    records = list(csv.reader(io.StringIO(job.text, newline="")))
    numbers = [job.first_row + i for i, r in enumerate(records) if r]  # blank lines are skipped, not rows
    rows = [r for r in records if r]
    width = layout.width
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
    names = spec.field_names
    for batch in parquet.iter_batches(batch_size=chunk_size, columns=[ID_COLUMN, *names]):
        data = batch.to_pydict()
        ids = [None if v is None else str(v) for v in data[ID_COLUMN]]
        rows = list(range(first, first + batch.num_rows))
        yield RawChunk(rows, ids, {n: list(data[n]) for n in names}, text=False)
        first += batch.num_rows


# ---- deciding ----------------------------------------------------------------------------------
def output_header(width: int) -> list[str]:
    """Output column names for ``width`` reason columns."""
    reasons = [f"reason_{k + 1}" for k in range(width)]
    return [ID_COLUMN, "decision", "score", "probability_of_default", "risk_band", *reasons, "rules_fired"]


class ChunkDecider:
    """Turns input chunks into output text through a decision service (no store: files are not recorded)."""

    def __init__(
        self, evaluate: Any, spec: FeatureSpec, width: int, layout: CsvLayout | None, json_lines: bool
    ) -> None:
        self.evaluate = evaluate
        self.spec = spec
        self.width = width
        self.layout = layout
        self.json_lines = json_lines
        self.header = output_header(width)

    @classmethod
    def load(
        cls,
        store_root: Path,
        name: str,
        version: str,
        layout: CsvLayout | None,
        json_lines: bool,
        policy: str | None = None,
    ) -> ChunkDecider:
        """A decider over one model version of a model store (loaded and self-checked), with its own policy or
        the stored candidate policy ``policy`` promoted onto it."""
        from model_store.store import ModelStore
        from service.decisions import DecisionService
        from service.models import ModelCache

        models = ModelCache(ModelStore(store_root))
        served = models.get(name, version, policy)
        service = DecisionService(models=models, served=served, store=None)
        return cls(service.evaluate, served.bundle.spec, served.engine.width, layout, json_lines)

    def run(self, job: TextChunk | RawChunk) -> ChunkResult:
        """Parse, validate, decide and format one chunk."""
        raw = to_chunk(job, self.spec, self.layout)
        ids, applicants, errors = validate_chunk(self.spec, raw)
        if not applicants:
            return ChunkResult("", 0, errors, len(raw))
        batch = self.evaluate(applicants)
        engine = batch.engine
        codes, rule_codes, bands = engine.reason_codes, engine.rule_codes, engine.band_names
        out = io.StringIO()
        writer = None if self.json_lines else csv.writer(out, lineterminator="\n")
        empty = [""] * self.width
        for app_id, outcome, score, probability in zip(
            ids, batch.outcomes, batch.score.tolist(), batch.probability_of_default.tolist(), strict=True
        ):
            reasons = [codes[i] for i in outcome.reasons]
            fired = [rule_codes[j] for j in outcome.fired]
            if writer is not None:
                writer.writerow(
                    [
                        app_id,
                        ACTIONS[outcome.action],
                        score,
                        probability,
                        bands[outcome.band],
                        *reasons,
                        *empty[len(reasons) :],
                        ";".join(fired),
                    ]
                )
                continue
            record: dict[str, Any] = {
                ID_COLUMN: app_id,
                "decision": ACTIONS[outcome.action],
                "score": score,
                "probability_of_default": probability,
                "risk_band": bands[outcome.band],
            }
            for k in range(self.width):
                record[f"reason_{k + 1}"] = reasons[k] if k < len(reasons) else None
            record["rules_fired"] = fired
            out.write(json.dumps(record, separators=(",", ":")))
            out.write("\n")
        return ChunkResult(out.getvalue(), len(applicants), errors, len(raw))


_WORKER: ChunkDecider | None = None


def _init_worker(
    store_root: Path, name: str, version: str, layout: CsvLayout | None, json_lines: bool, policy: str | None
) -> None:
    global _WORKER
    _WORKER = ChunkDecider.load(store_root, name, version, layout, json_lines, policy)


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
    policy: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    workers: int = 1,
    progress: bool = False,
    warn: Callable[[str], None] = lambda message: None,
) -> BatchSummary:
    """Decide every row of ``input_path`` into ``output_path``; invalid rows are skipped and returned.

    ``policy``: a stored candidate policy the version decides with (the deployment's champion may have one).

    ``seconds`` in the summary counts from the first chunk read to the output renamed into place
    (model loading and worker start-up excluded).
    """
    from tqdm import tqdm

    if input_path.resolve() == output_path.resolve():
        raise BatchInputError("the output must not overwrite the input")
    json_lines = not output_is_csv(output_path)
    executor: ProcessPoolExecutor | None = None
    local: ChunkDecider | None = None
    if workers > 1:
        import multiprocessing

        from model_store.store import ModelStore

        bundle = ModelStore(store_root).load_bundle(name, version)
        layout, jobs = read_jobs(input_path, bundle.spec, chunk_size, warn)
        width = bundle.policy.reason_slots
        # fork before any onnxruntime session or tqdm thread exists in this process; the workers build their own
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
            initargs=(store_root, name, version, layout, json_lines, policy),
        )
        list(executor.map(_ready, range(workers)))  # start-up (model load, self-check) before the clock
    else:
        local = ChunkDecider.load(store_root, name, version, None, json_lines, policy)
        layout, jobs = read_jobs(input_path, local.spec, chunk_size, warn)
        local.layout = layout
        width = local.width
    summary = BatchSummary()
    writer = _Writer(output_path, output_header(width))
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
