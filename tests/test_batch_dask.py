"""Batch scoring on Dask: a real distributed.LocalCluster of 2 worker processes decides the chunks.

The output equals the online path (POST /v1/decisions:batch on the app over the same model store) row for row,
bit for bit: decisions, scores, probabilities, bands, reasons, rules, margins and attributions; the rows the API
refuses are exactly the rows in the errors file, with the same field and words. The manifest's hashes and counts
are recomputed here, and the run is one verified event of the decision store's chain.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import distributed
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli.audit import audit_group
from cli.score import score_command
from model_store.spec import FeatureSpec
from model_store.store import ModelStore

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "german_credit.csv"
ROWS = 240


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """One real LocalCluster of 2 worker processes (1 thread each) for the module."""
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=40
    ) as running:
        yield running


@pytest.fixture(scope="module")
def spec(api_model_store: Path) -> FeatureSpec:
    store = ModelStore(api_model_store)
    name, version = store.resolve()
    return store.load_bundle(name, version).spec


def _applications(spec: FeatureSpec) -> list[dict[str, Any]]:
    """ROWS real applications (German credit data) as the API takes them: id + typed applicant fields."""
    out = []
    with open(DATA, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i == ROWS:
                break
            out.append({"application_id": f"GC-{i:04d}", **spec.from_source_row(row)})
    return out


#: Bad CSV rows: (row index, field, the cell's text, the same value as a JSON request carries it).
CSV_BAD: list[tuple[int, str, str, Any]] = [
    (3, "age_years", "abc", "abc"),
    (10, "purpose", "yacht", "yacht"),
    (11, "duration_months", "12.5", "12.5"),
    (12, "credit_amount", "", ""),
    (40, "age_years", "9", 9),
    (77, "application_id", "bad id!", "bad id!"),
]
#: Parquet columns are typed: the bad values are out of range, unknown or missing.
PARQUET_BAD: list[tuple[int, str, Any]] = [
    (5, "age_years", 9),
    (6, "purpose", "yacht"),
    (50, "credit_amount", None),
    (51, "duration_months", 10_000),
]


def _online(api_make_app: Callable[..., Any], requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every application through POST /v1/decisions:batch (100 a call): the item the API answers for each."""
    client = api_make_app().test_client()
    items: list[dict[str, Any]] = []
    for start in range(0, len(requests), 100):
        response = client.post("/v1/decisions:batch", json={"applications": requests[start : start + 100]})
        assert response.status_code == 200, response.get_data(as_text=True)
        items += response.get_json()["items"]
    return items


def _request(app: dict[str, Any]) -> dict[str, Any]:
    applicant = {k: v for k, v in app.items() if k != "application_id" and v != ""}
    return {"application_id": app["application_id"], "applicant": applicant}


def _score(args: list[str], env: dict[str, str] | None = None) -> Any:
    result = CliRunner(env=env).invoke(score_command, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    return result


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_same_as_online(
    rows: list[dict[str, Any]], items: list[dict[str, Any]], errors_file: Path, spec: FeatureSpec, *, text: bool
) -> None:
    """Decided rows equal the API's decisions bit for bit; refused rows are the API's 422s, same field, same words."""
    decided = [item for item in items if item["status"] == 201]
    assert [r["application_id"] for r in rows] == [item["decision"]["application_id"] for item in decided]
    for row, item in zip(rows, decided, strict=True):
        online = item["decision"]
        number = float if text else (lambda v: v)
        assert row["decision"] == online["decision"]
        assert int(row["score"]) == online["score"]["value"]
        assert number(row["probability_of_default"]) == online["probability_of_default"]
        assert row["risk_band"] == online["risk_band"]
        reasons = [row[f"reason_{k}"] for k in range(1, 5)]
        assert [r for r in reasons if r not in ("", None)] == [r["code"] for r in online["reasons"]]
        fired = row["rules_fired"].split(";") if text and row["rules_fired"] else row["rules_fired"] or []
        assert fired == [r["code"] for r in online["rules_fired"]]
        assert number(row["margin"]) == online["explanation"]["margin"]
        for name in spec.field_names:
            assert number(row[f"attribution_{name}"]) == online["explanation"]["attributions"][name]
    with open(errors_file, newline="", encoding="utf-8") as fh:
        refused = [(int(e["row"]), e["field"], e["message"]) for e in csv.DictReader(fh)]
    online_refused = []
    for index, item in enumerate(items):
        if item["status"] != 201:
            assert item["status"] == 422
            for problem in item["problem"]["errors"]:
                online_refused.append((index + 1, problem["field"].removeprefix("applicant."), problem["message"]))
    assert refused == online_refused
    assert len(refused) >= 4


def _assert_manifest(
    output: Path, source: Path, store_root: Path, rows: int, refused: int, fmt: str, workers: int
) -> dict[str, Any]:
    manifest_path = output.with_name(output.stem + ".manifest.json")
    errors_path = output.with_name(output.stem + ".errors.csv")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert manifest["input"]["sha256"] == _sha256(source)
    assert manifest["output"] == {"path": str(output), "format": fmt, "sha256": _sha256(output), "attributions": True}
    assert manifest["rows"] == {"read": rows, "decided": rows - refused, "refused": refused}
    model = manifest["model"]
    folder = store_root / model["name"] / model["version"]
    stored = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert model["files"] == stored["files"] and model["manifest_sha256"] == _sha256(folder / "manifest.json")
    for rel, digest in model["files"].items():
        assert _sha256(folder / rel) == digest
    assert model["policy_version"] and model["catalog_version"] and model["spec_version"]
    with open(errors_path, newline="", encoding="utf-8") as fh:
        lines = list(csv.DictReader(fh))
    reasons = Counter((e["field"], e["message"]) for e in lines)
    assert manifest["errors"]["sha256"] == _sha256(errors_path) and manifest["errors"]["rows"] == refused
    assert {(r["field"], r["message"]): r["rows"] for r in manifest["errors"]["reasons"]} == dict(reasons)
    assert manifest["run"]["engine"] == "dask" and manifest["run"]["workers"] == workers
    return manifest


def test_dask_csv_equals_the_online_path_and_is_recorded(
    cluster: Any, api_make_app: Callable[..., Any], api_model_store: Path, spec: FeatureSpec, tmp_path: Path
) -> None:
    apps = _applications(spec)
    cells = [{k: ("" if v is None else str(v)) for k, v in a.items()} for a in apps]
    online_apps = [dict(a) for a in apps]
    for index, name, cell, value in CSV_BAD:
        cells[index][name] = cell
        online_apps[index][name] = value
    source = tmp_path / "applications.csv"
    with open(source, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["application_id", *spec.field_names])
        writer.writeheader()
        writer.writerows(cells)
    out = tmp_path / "decisions.csv"
    database = f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    common = ["--model-store", str(api_model_store), "--attributions", "--chunk-size", "50"]
    result = _score(
        [str(source), str(out), *common, "--scheduler", cluster.scheduler_address, "--database-url", database]
    )
    assert "recorded batch_scored" in result.output

    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    items = _online(api_make_app, [_request(a) for a in online_apps])
    _assert_same_as_online(rows, items, tmp_path / "decisions.errors.csv", spec, text=True)
    with open(tmp_path / "decisions.errors.csv", newline="", encoding="utf-8") as fh:
        values = {(int(e["row"]), e["field"]): e["value"] for e in csv.DictReader(fh)}
    # the refused cell as read; a missing one is empty, and an invalid id is never echoed
    assert values == {(index + 1, name): "" if name == "application_id" else cell for index, name, cell, _ in CSV_BAD}
    manifest = _assert_manifest(out, source, api_model_store, ROWS, len(CSV_BAD), "csv", workers=2)
    assert manifest["run"]["input_read_by"] == "workers"  # the workers see tmp_path: they read and write parts

    # the embedded run (no cluster, no Dask) writes the same bytes
    embedded = tmp_path / "embedded.csv"
    _score(["--input", str(source), "--output", str(embedded), *common])
    assert embedded.read_bytes() == out.read_bytes()
    errors = (tmp_path / "decisions.errors.csv").read_bytes()
    assert (tmp_path / "embedded.errors.csv").read_bytes() == errors
    # and so does the fallback for workers that cannot see the files: this process reads and ships the chunks
    shipped = _shipped(source, tmp_path / "shipped.csv", api_model_store, cluster, chunk_size=50)
    assert shipped.manifest["run"]["input_read_by"] == "submitting process"
    assert (tmp_path / "shipped.csv").read_bytes() == out.read_bytes()
    assert (tmp_path / "shipped.errors.csv").read_bytes() == errors
    assert not list(tmp_path.glob(".*"))  # no part files or temporary files left

    # one event in the chain, verified, naming the run's hashes
    runner = CliRunner()
    verify = runner.invoke(audit_group, ["verify", "--database-url", database])
    assert verify.exit_code == 0, verify.output
    export = runner.invoke(audit_group, ["export", "--entries", "events", "--database-url", database])
    assert export.exit_code == 0, export.output
    events = [json.loads(line) for line in export.output.splitlines() if line.startswith("{")]
    assert [e["kind"] for e in events] == ["batch_scored"]
    details = events[0]["details"]
    manifest_path = tmp_path / "decisions.manifest.json"
    assert details["manifest"] == {"path": str(manifest_path), "sha256": _sha256(manifest_path)}
    assert details["input"]["sha256"] == manifest["input"]["sha256"]
    assert details["output"]["sha256"] == _sha256(out)
    assert details["rows"] == {"read": ROWS, "decided": ROWS - len(CSV_BAD), "refused": len(CSV_BAD)}
    assert details["model"]["manifest_sha256"] == manifest["model"]["manifest_sha256"]


def test_dask_parquet_equals_the_online_path(
    cluster: Any, api_make_app: Callable[..., Any], api_model_store: Path, spec: FeatureSpec, tmp_path: Path
) -> None:
    apps = _applications(spec)
    for index, name, value in PARQUET_BAD:
        apps[index][name] = value
    columns = {name: [a[name] for a in apps] for name in ["application_id", *spec.field_names]}
    source = tmp_path / "applications.parquet"
    pq.write_table(pa.table(columns), source, row_group_size=64)
    out = tmp_path / "decisions.parquet"
    _score(
        [
            str(source),
            str(out),
            "--model-store",
            str(api_model_store),
            "--attributions",
            "--chunk-size",
            "37",
            "--scheduler",
            cluster.scheduler_address,
        ]
    )
    table = pq.read_table(out)
    assert table.schema.field("score").type == pa.int64() and table.schema.field("margin").type == pa.float64()
    rows = table.to_pylist()
    online = [{k: v for k, v in a.items() if v is not None} for a in apps]
    items = _online(api_make_app, [_request(a) for a in online])
    _assert_same_as_online(rows, items, tmp_path / "decisions.errors.csv", spec, text=False)
    manifest = _assert_manifest(out, source, api_model_store, ROWS, len(PARQUET_BAD), "parquet", workers=2)
    assert manifest["run"]["input_read_by"] == "workers"
    # the workers' part files joined in order are the file one process writes, row group for row group
    embedded = tmp_path / "embedded.parquet"
    _score([str(source), str(embedded), "--model-store", str(api_model_store), "--attributions", "--chunk-size", "37"])
    assert embedded.read_bytes() == out.read_bytes()
    assert pq.ParquetFile(out).metadata.num_row_groups == -(-ROWS // 37)  # a row group per chunk
    _shipped(source, tmp_path / "shipped.parquet", api_model_store, cluster, chunk_size=37)
    assert (tmp_path / "shipped.parquet").read_bytes() == out.read_bytes()


def _shipped(source: Path, out: Path, store_root: Path, cluster: Any, chunk_size: int) -> Any:
    """A run on the cluster with the submitting process reading the chunks and shipping them to the workers."""
    from service.batch import ModelRef
    from service.batch_dask import score_file_on_dask

    store = ModelStore(store_root)
    model = ModelRef(str(store_root), *store.resolve())
    return score_file_on_dask(
        source,
        out,
        model=model,
        scheduler=cluster.scheduler_address,
        chunk_size=chunk_size,
        attributions=True,
        read_on_workers=False,
    )


def test_workers_keep_freed_memory_for_reuse(cluster: Any) -> None:
    """The nanny's MALLOC_TRIM_THRESHOLD_ is in the workers' environment; glibc's thresholds are set past it."""
    from service.batch_dask import keep_freed_memory

    with distributed.Client(cluster) as client:
        assert set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {"65536"}
        assert list(client.run(keep_freed_memory).values()) == [True, True]


def test_a_worker_is_given_parts_only_if_it_sees_the_input_and_the_parts_directory(tmp_path: Path) -> None:
    from service.batch import PARTS_MARKER, sees_files

    source = tmp_path / "applications.csv"
    source.write_text("application_id\n", encoding="utf-8")
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / PARTS_MARKER).write_text("token", encoding="utf-8")
    size = source.stat().st_size
    assert sees_files(str(source), size, str(parts), "token")
    assert not sees_files(str(source), size + 1, str(parts), "token")  # another file at that path
    assert not sees_files(str(tmp_path / "absent.csv"), size, str(parts), "token")
    assert not sees_files(str(source), size, str(parts), "another run's token")  # another directory at that path
    assert not sees_files(str(source), size, str(tmp_path / "absent"), "token")


def test_local_scheduler_starts_its_own_cluster(api_model_store: Path, spec: FeatureSpec, tmp_path: Path) -> None:
    """``--scheduler local`` starts (and stops) a LocalCluster for the run; JSON Lines in, the input's format out."""
    apps = _applications(spec)[:30]
    source = tmp_path / "applications.jsonl"
    source.write_text("".join(json.dumps(_request(a)) + "\n" for a in apps) + "{not json\n", encoding="utf-8")
    out = tmp_path / "decisions"
    common = ["--model-store", str(api_model_store), "--output-format", "jsonl"]
    absent = tmp_path / "no-such-store.sqlite3"  # the settings' decision store, which does not exist
    result = _score(
        [str(source), str(out), *common, "--scheduler", "local", "--workers", "1"],
        env={"CREDIT_DECISION_DATABASE_URL": f"sqlite:///{absent}"},
    )
    assert "30 decided, 1 invalid skipped, 31 rows" in result.output
    assert "warning: not recorded in the audit chain" in result.output  # no decision store: none is made
    assert not absent.exists()
    embedded = tmp_path / "embedded"
    _score([str(source), str(embedded), *common])
    assert out.read_bytes() == embedded.read_bytes()
    assert len(out.read_text(encoding="utf-8").splitlines()) == 30
    manifest = json.loads((tmp_path / "decisions.manifest.json").read_text(encoding="utf-8"))
    assert manifest["run"]["scheduler"] == "local" and manifest["run"]["workers"] == 1
    assert manifest["errors"]["reasons"] == [{"field": "line", "message": "not a JSON object", "rows": 1}]


def test_a_part_a_worker_cannot_read_fails_the_run_and_leaves_nothing(
    cluster: Any, api_model_store: Path, spec: FeatureSpec, tmp_path: Path
) -> None:
    """A worker's error (here: bytes that are not UTF-8) reaches the command as the same error; no output, no parts."""
    source = tmp_path / "applications.csv"
    header = "application_id," + ",".join(spec.field_names) + "\n"
    source.write_bytes(header.encode() + b"A1" + b",\xff" * len(spec.field_names) + b"\n")
    args = [str(source), str(tmp_path / "o.csv"), "--model-store", str(api_model_store), "--no-progress"]
    result = CliRunner().invoke(score_command, [*args, "--scheduler", cluster.scheduler_address])
    assert result.exit_code == 1, result.output
    assert f"{source}: not UTF-8 text (byte {len(header) + 3})" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["applications.csv"]


def test_unreachable_scheduler_is_a_clear_error(api_model_store: Path, spec: FeatureSpec, tmp_path: Path) -> None:
    source = tmp_path / "a.csv"
    source.write_text("application_id," + ",".join(spec.field_names) + "\n", encoding="utf-8")
    args = [str(source), str(tmp_path / "o.csv"), "--model-store", str(api_model_store)]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = CliRunner().invoke(score_command, [*args, "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output
    assert not (tmp_path / "o.csv").exists()
