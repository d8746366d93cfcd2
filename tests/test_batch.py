"""The batch path: the vectorised core equals the decision engine row by row; the CLI round-trips files."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli.score import score_command
from model_store.spec import FeatureSpec
from model_store.store import ModelStore
from service.runtime import ServedModel

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "german_credit" / "training.yaml"
DATA = REPO / "data" / "german_credit.csv"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    from training.pipeline import train

    store = ModelStore(tmp_path_factory.mktemp("batch-store"))
    train(CONFIG, store, overrides={"cv_folds": 2, "champion": {"max_iter": 40}}, progress=False)
    return store


@pytest.fixture(scope="module", params=["german-credit-gbt", "german-credit-scorecard"])
def served(request: pytest.FixtureRequest, store: ModelStore) -> ServedModel:
    model = ServedModel.load(store, request.param, "v1")
    model.self_check()
    return model


def random_applications(spec: FeatureSpec, n: int, seed: int) -> list[dict[str, Any]]:
    """Valid applications drawn from the spec, with many near and beyond the policy rules' thresholds."""
    rng = np.random.default_rng(seed)
    apps: list[dict[str, Any]] = [{} for _ in range(n)]
    for f in spec.fields:
        if f.kind == "categorical":
            values: list[Any] = [f.values[k].code for k in rng.integers(0, len(f.values), size=n)]
        else:
            assert f.minimum is not None and f.maximum is not None
            hi = min(f.maximum, f.minimum + 30_000)  # amounts: dense around the product maximum
            drawn = rng.uniform(f.minimum, hi, size=n)
            values = [int(v) for v in np.rint(drawn)] if f.dtype == "integer" else [float(v) for v in drawn]
        for app, v in zip(apps, values, strict=True):
            app[f.name] = v
    return apps


def test_a_row_decided_alone_equals_the_same_row_decided_among_thousands(served: ServedModel) -> None:
    """One engine: a single application is a batch of one, and its numbers do not depend on its batch-mates."""
    apps = random_applications(served.bundle.spec, 3000, seed=7)
    together = served.engine.decide(apps).all()
    for i in range(0, len(apps), 41):
        alone = served.engine.decide([apps[i]]).decision(0)
        assert alone == together[i]  # every field, every float bit for bit
    # the rows exercise every branch: rules firing (several at once), all decisions, full reason lists
    assert {d.decision for d in together} == {"approve", "refer", "decline"}
    assert max(len(d.rules_fired) for d in together) >= 2
    assert any(len(d.reasons) == 4 and not d.rules_fired for d in together)
    # the engine's summaries agree with its full decisions
    batch = served.engine.decide(apps)
    assert batch.decisions() == [d.decision for d in together]
    assert batch.reason_lists() == [tuple(r.code for r in d.reasons) for d in together]
    assert batch.fired_lists() == [tuple(r.code for r in d.rules_fired) for d in together]
    assert batch.risk_bands() == [d.risk_band for d in together]


def _reference_ranking(
    group_attr: list[float], groups: list[str], fired: list[int], n_rules: int, max_reasons: int
) -> list[int]:
    """The documented ranking, by brute force: every order of the risk-raising groups, the first by the documented
    key (larger attribution first, then group name); rules first, model reasons up to max_reasons in all."""
    positive = [g for g in range(len(groups)) if group_attr[g] > 0]
    best = min(itertools.permutations(positive), key=lambda order: [(-group_attr[g], groups[g]) for g in order])
    return list(fired) + [n_rules + g for g in best][: max(0, max_reasons - len(fired))]


def test_reason_ranking_breaks_ties_by_group_name(served: ServedModel) -> None:
    engine = served.engine
    groups = list(engine.groups)
    rng = np.random.default_rng(3)
    n_rules = len(served.bundle.policy.rules)
    for _ in range(500):
        # few distinct values: many exact ties, zeros and negatives
        attr = rng.choice(
            np.array([-0.5, -0.1, 0.0, 0.1, 0.1, 0.3, 0.3]),
            size=len(groups),
            p=[0.35, 0.25, 0.2, 0.06, 0.06, 0.04, 0.04],
        ).tolist()
        fired = [j for j in range(n_rules) if rng.random() < 0.3]
        positive = sum(1 for a in attr if a > 0)
        if positive > 6:  # keep the brute force small
            continue
        ranked = engine.rank_reasons(attr, fired)
        assert list(ranked) == _reference_ranking(attr, groups, fired, n_rules, engine.max_reasons)


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _german_credit_applications(spec: FeatureSpec) -> list[dict[str, Any]]:
    with open(DATA, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [{"application_id": f"GC-{i:04d}", **spec.from_source_row(row)} for i, row in enumerate(rows)]


def test_cli_scores_a_csv_and_reports_bad_rows_without_stopping(store: ModelStore, tmp_path: Path) -> None:
    served = ServedModel.load(store, "german-credit-gbt", "v1")
    spec = served.bundle.spec
    apps = _german_credit_applications(spec)
    rows: list[dict[str, Any]] = [dict(a) for a in apps]
    rows[3]["age_years"] = "abc"
    rows[10]["purpose"] = "yacht"
    rows[11]["duration_months"] = "12.5"
    rows[12]["credit_amount"] = ""
    rows[20]["application_id"] = 'two\nlines, "quoted"'  # a quoted field spanning lines: one bad row, no more
    rows.append({**apps[0], "application_id": "EXTRA-1", "age_years": 9})
    source = tmp_path / "applications.csv"
    _write_csv(source, rows, ["application_id", *spec.field_names, "foreign_worker"])
    out = tmp_path / "decisions.csv"

    result = CliRunner().invoke(
        score_command,
        [
            "--input",
            str(source),
            "--output",
            str(out),
            "--model-store",
            str(store.root),
            "--model",
            "german-credit-gbt",
            "--chunk-size",
            "21",  # row 21 spans the end of the first chunk
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    # the same checks, in the same words, as the decision API's (the feature spec's field checks)
    assert "row 4 (GC-0003): age_years: Not a valid integer." in result.output
    assert "row 11 (GC-0010): purpose: Must be one of: " in result.output
    assert "row 12 (GC-0011): duration_months: Not a valid integer." in result.output
    assert "row 13 (GC-0012): credit_amount: Missing data for required field." in result.output
    assert "row 1001 (EXTRA-1): age_years: Must be an integer from 14 to 120." in result.output
    assert "foreign_worker (prohibited-basis attribute)" in result.output
    assert "row 21: application_id: Must be 1 to 64 characters of A-Z a-z 0-9 . _ : -." in result.output
    assert "995 decided, 6 invalid skipped, 1001 rows" in result.output

    with open(out, newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    keep = [a for i, a in enumerate(apps) if i not in (3, 10, 11, 12, 20)]
    assert [g["application_id"] for g in got] == [a["application_id"] for a in keep]
    expected = served.engine.decide([{k: v for k, v in a.items() if k != "application_id"} for a in keep])
    for g, d in zip(got, expected.all(), strict=True):
        assert g["decision"] == d.decision and g["risk_band"] == d.risk_band and int(g["score"]) == d.score
        assert float(g["probability_of_default"]) == d.probability_of_default
        codes = [r.code for r in d.reasons] + [""] * (4 - len(d.reasons))
        assert [g[f"reason_{k}"] for k in range(1, 5)] == codes
        assert g["rules_fired"] == ";".join(r.code for r in d.rules_fired)

    # two worker processes give the same file
    out2 = tmp_path / "decisions-2.csv"
    result = CliRunner().invoke(
        score_command,
        [
            "--input",
            str(source),
            "--output",
            str(out2),
            "--model-store",
            str(store.root),
            "--model",
            "german-credit-gbt",
            "--chunk-size",
            "100",
            "--workers",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert out2.read_bytes() == out.read_bytes()


def test_cli_reads_and_writes_json_lines(store: ModelStore, tmp_path: Path) -> None:
    served = ServedModel.load(store, "german-credit-gbt", "v1")
    apps = _german_credit_applications(served.bundle.spec)[:50]
    lines = [
        json.dumps(
            {"application_id": a["application_id"], "applicant": {k: v for k, v in a.items() if k != "application_id"}}
        )
        for a in apps
    ]
    lines[5] = "{not json"
    lines[6] = json.dumps({**apps[6], "age_years": 30.5, "foreign_worker": "yes"})
    lines[7] = json.dumps({**apps[7], "age_years": 30.0})  # an integral number is an integer, as in the API
    source = tmp_path / "applications.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "decisions.jsonl"
    result = CliRunner().invoke(
        score_command,
        [
            "--input",
            str(source),
            "--output",
            str(out),
            "--model-store",
            str(store.root),
            "--model",
            "german-credit-gbt",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "invalid: row 6: line: not a JSON object\n" in result.output
    assert (
        "invalid: row 7 (GC-0006): foreign_worker: prohibited-basis attribute, never accepted; age_years: Not a valid integer.\n"
        in result.output
    )
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(got) == 48
    first = served.engine.decide([{k: v for k, v in apps[0].items() if k != "application_id"}]).decision(0)
    assert got[0]["decision"] == first.decision and got[0]["score"] == first.score
    assert got[0]["rules_fired"] == [r.code for r in first.rules_fired]
    assert [got[0][f"reason_{k}"] for k in range(1, 1 + len(first.reasons))] == [r.code for r in first.reasons]


def test_cli_refuses_what_it_cannot_read(store: ModelStore, tmp_path: Path) -> None:
    source = tmp_path / "applications.csv"
    source.write_text("application_id,age_years\nA1,30\n", encoding="utf-8")
    args = ["--model-store", str(store.root), "--model", "german-credit-gbt", "--no-progress"]
    result = CliRunner().invoke(score_command, ["--input", str(source), "--output", str(tmp_path / "o.csv"), *args])
    assert result.exit_code == 1
    assert "missing column(s) checking_account_status" in result.output
    assert not (tmp_path / "o.csv").exists()
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        parquet = tmp_path / "applications.parquet"
        parquet.write_bytes(b"PAR1")
        result = CliRunner().invoke(
            score_command, ["--input", str(parquet), "--output", str(tmp_path / "p.csv"), *args]
        )
        assert result.exit_code == 1
        assert "needs pyarrow, which is not installed" in result.output


def test_a_column_checked_once_per_distinct_cell_equals_every_cell_checked(served: ServedModel) -> None:
    """The reader checks each distinct cell once; JSON values that are equal but of another type (True, 1.0, "30")
    are still checked on their own, and every bad cell is named."""
    from model_store.spec import InvalidValue
    from service.batch import RawChunk, validate_chunk

    spec = served.bundle.spec
    base = random_applications(spec, 1, seed=1)[0]
    ages: list[Any] = [30, True, 30.0, "30", 30, None, 1, 30.5]
    columns = {name: [base[name]] * len(ages) for name in spec.field_names}
    columns["age_years"] = ages
    ids = [f"A{i}" for i in range(len(ages))]
    raw = RawChunk(list(range(1, len(ages) + 1)), ids, columns, text=False)
    valid_ids, applicants, errors = validate_chunk(spec, raw)
    check = dict(spec.checkers(text=False))["age_years"]
    expected: list[tuple[int, str]] = []
    for i, age in enumerate(ages):
        try:
            check(age)
        except InvalidValue as exc:
            expected.append((i + 1, str(exc)))
    assert [(e.row, e.problems[0][1]) for e in errors] == expected
    assert [e.problems[0][0] for e in errors] == ["age_years"] * len(expected)
    assert valid_ids == ["A0", "A2", "A4"] and [a["age_years"] for a in applicants] == [30, 30, 30]
    assert all(type(a["age_years"]) is int for a in applicants)
    assert [e.values.get("age_years") for e in errors] == ["True", "30", None, "1", "30.5"]


# ---- where the chunks are: the submitting process's scan equals reading the file line by line ------------------
def _reference_chunks(path: Path, fmt: str, chunk_size: int) -> tuple[list[tuple[int, str]], int]:
    """(first row, text) of every chunk as reading the file line by line in text mode gives them: ``chunk_size``
    lines, a CSV chunk extended to the end of a quoted field spanning lines; a CSV's first record is its header.
    And the number of data records."""
    if fmt == "csv":
        fh = open(path, newline="", encoding="utf-8-sig")
    else:
        fh = open(path, encoding="utf-8")  # universal newlines, as JSON Lines are read
    with fh:
        lines = list(fh)
    chunks: list[tuple[int, str]] = []
    at, first, header = 0, 1, fmt == "csv"
    while at < len(lines):
        end = min(at + (1 if header else chunk_size), len(lines))
        odd, records, stop = False, 0, at
        while stop < len(lines) and (stop < end or odd):
            odd ^= fmt == "csv" and lines[stop].count('"') % 2 == 1
            stop += 1
            records += not odd
        records += odd  # the file ended inside a quoted field: the rest is one record
        if header:
            header = False
        else:
            chunks.append((first, "".join(lines[at:stop])))
            first += records
        at = stop
    return chunks, first - 1


def _awkward_text(seed: int, fmt: str) -> bytes:
    """Lines ended by \\n, \\r\\n and lone \\r, blank lines, non-ASCII text, quoted fields spanning lines (CSV)."""
    rng = random.Random(seed)
    out = ['\ufeffapplication_id,"a\nb",c\r\n'] if fmt == "csv" else []
    for i in range(rng.randint(0, 60)):
        cell = rng.choice(["x", "é€", "", '"q,\r\nline"', '"two\rlines"', '"a ""b"""', "{}", '{"k": 1}'])
        if fmt == "jsonl" and '"' in cell and not cell.startswith("{"):
            cell = "{}"
        out.append(f"R{i},{cell}" + rng.choice(["\n", "\r\n", "\r", "\n\n", "\r\r\n"]))
    if rng.random() < 0.5:  # no line end at the end of the file, or an open quote (with or without one)
        out.append(rng.choice(['R-last,"never closed\nx', 'R-last,"open\n', "R-last"] if fmt == "csv" else ["R-last"]))
    return "".join(out).encode("utf-8")


@pytest.mark.parametrize("block", [1, 2, 3, 64, 1 << 24])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_scan_finds_the_chunks_reading_line_by_line_gives(
    block: int, fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: ModelStore
) -> None:
    """Whoever reads a part (a worker, or the submitting process) gets exactly the text and row numbers reading the
    file line by line in text mode gives, whatever the block size of the scan."""
    from service import batch

    spec = ServedModel.load(store, "german-credit-gbt", "v1").bundle.spec
    monkeypatch.setattr(batch, "SCAN_BLOCK", block)
    for seed in range(40):
        path = tmp_path / f"{seed}.{fmt}"
        path.write_bytes(_awkward_text(seed, fmt))
        for chunk_size in (1, 2, 3, 7):
            scan = batch.scan_input(path, fmt, chunk_size)
            found = [(c.first_row, c.text) for part in scan.parts for c in batch.read_part(part, spec)]
            assert (found, scan.rows) == _reference_chunks(path, fmt, chunk_size), (seed, chunk_size)
            assert scan.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_part_of_a_changed_input_is_refused(store: ModelStore, tmp_path: Path) -> None:
    from service.batch import BatchInputError, read_part, scan_input

    spec = ServedModel.load(store, "german-credit-gbt", "v1").bundle.spec
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n', encoding="utf-8")
    part = scan_input(path, "jsonl", 1).parts[1]
    path.write_text('{"a": 1}\n{"a": 3}\n', encoding="utf-8")  # same size, other bytes
    with pytest.raises(BatchInputError, match="is not the file whose sha256 the run recorded"):
        list(read_part(part, spec))
    path.write_bytes(b'{"a": 1}\n{"\xff": 3}\n')
    part = scan_input(path, "jsonl", 1).parts[1]
    with pytest.raises(BatchInputError, match="not UTF-8 text \\(byte 11\\)"):
        list(read_part(part, spec))


def test_quote_free_csv_chunks_split_at_commas_as_the_csv_module_reads_them(store: ModelStore) -> None:
    """Ragged rows, blank lines, spaces and NUL: the fast split gives the columns the csv module gives."""
    from service.batch import CsvLayout, TextChunk, to_chunk

    spec = ServedModel.load(store, "german-credit-gbt", "v1").bundle.spec
    width = len(spec.field_names) + 2
    layout = CsvLayout((width - 1, *range(len(spec.field_names))), width)  # the id last, one extra column
    rng = random.Random(5)
    for _ in range(200):
        lines = []
        for _ in range(rng.randint(1, 6)):
            cells = [rng.choice(["1", " 2 ", "A11", "", "x\0y"]) for _ in range(width)]
            lines.append(",".join(cells[: rng.choice([width, width, width, 1, width - 3, width + 2])]))
        text = "\n".join(rng.choice([lines, [*lines, ""]])) + rng.choice(["", "\n"])
        chunk = to_chunk(TextChunk("csv", 10, text), spec, layout)
        records = list(csv.reader(io.StringIO(text, newline="")))
        kept = [(10 + i, r + [""] * (width - len(r))) for i, r in enumerate(records) if r]
        assert chunk.rows == [n for n, _ in kept]
        assert chunk.ids == [r[width - 1] for _, r in kept]
        assert chunk.columns == {name: [r[j] for _, r in kept] for j, name in enumerate(spec.field_names)}


@pytest.mark.parametrize("attributions", [False, True])
def test_csv_output_is_what_the_csv_module_writes(store: ModelStore, attributions: bool) -> None:
    """Rows formatted once per distinct outcome are the csv module's bytes for the decisions' own values."""
    from service.batch import ChunkDecider, ChunkPlan, ModelRef, RawChunk

    served = ServedModel.load(store, "german-credit-gbt", "v1")
    spec = served.bundle.spec
    plan = ChunkPlan(ModelRef(str(store.root), "german-credit-gbt", "v1"), None, "csv", attributions)
    decider = ChunkDecider.load(plan)
    apps = random_applications(spec, 500, seed=11)
    ids = [f"X-{i}" for i in range(len(apps))]
    raw = RawChunk(list(range(1, len(apps) + 1)), ids, {n: [a[n] for a in apps] for n in spec.field_names}, False)
    text = decider.run(raw).text
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    for app_id, d in zip(ids, served.engine.decide(apps).all(), strict=True):
        codes = [r.code for r in d.reasons] + [""] * (decider.width - len(d.reasons))
        row = [app_id, d.decision, d.score, d.probability_of_default, d.risk_band, *codes]
        row.append(";".join(r.code for r in d.rules_fired))
        if attributions:
            row += [d.margin, *(value for _, value in d.attributions)]
        writer.writerow(row)
    assert text == expected.getvalue()
    assert len({line.split(",")[1] for line in text.splitlines()}) == 3  # every decision formatted


def test_parquet_parts_hold_the_chunks_reading_the_file_in_batches_gives(store: ModelStore, tmp_path: Path) -> None:
    """Chunks of ``chunk_size`` rows across row groups (as ``iter_batches`` gives them); a row group's chunks in at
    most ROW_GROUP_PARTS parts."""
    from service.batch import ROW_GROUP_PARTS, read_part, scan_input

    spec = ServedModel.load(store, "german-credit-gbt", "v1").bundle.spec
    apps = random_applications(spec, 1000, seed=3)
    path = tmp_path / "a.parquet"
    columns = {"application_id": [f"P{i}" for i in range(1000)], **{n: [a[n] for a in apps] for n in spec.field_names}}
    pq.write_table(pa.table(columns), path, row_group_size=400)
    for chunk_size in (1, 37, 400, 5000):
        scan = scan_input(path, "parquet", chunk_size)
        chunks = [chunk for part in scan.parts for chunk in read_part(part, spec)]
        expected = pq.ParquetFile(path).iter_batches(
            batch_size=chunk_size, columns=["application_id", *spec.field_names]
        )
        assert [(c.first_row, c.batch.to_pydict()) for c in chunks] == [
            (1 + chunk_size * k, batch.to_pydict()) for k, batch in enumerate(expected)
        ]
        assert scan.rows == 1000 and len(scan.parts) <= 3 * ROW_GROUP_PARTS
    # 11, 11 and 6 chunks of 37 rows start in the row groups: 3 + 3 + 3 + 2, 3 + 3 + 3 + 2 and 2 + 2 + 2 in a part
    assert [len(part.spans) for part in scan_input(path, "parquet", 37).parts] == [3, 3, 3, 2] * 2 + [2, 2, 2]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_workers_part_file_holds_its_decisions_readable_by_its_owner_only(
    store: ModelStore, tmp_path: Path, fmt: str
) -> None:
    from service.batch import ChunkPlan, ModelRef, decide_part, read_layout, scan_input

    spec = ServedModel.load(store, "german-credit-gbt", "v1").bundle.spec
    source = tmp_path / "applications.csv"
    _write_csv(source, _german_credit_applications(spec)[:30], ["application_id", *spec.field_names])
    plan = ChunkPlan(ModelRef(str(store.root), "german-credit-gbt", "v1"), read_layout(source, spec, print), fmt)
    (part,) = scan_input(source, "csv", 100).parts
    result = decide_part(plan, part, str(tmp_path))
    assert (result.n_input, result.decided, result.errors) == (30, 30, [])
    assert Path(result.file).stat().st_mode & 0o777 == 0o600
