"""The model store: immutable versions, hash verification, champion registry, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.models import models_group
from model_store.errors import ContractError
from model_store.store import (
    MODEL_FILE,
    IntegrityError,
    ModelNotFoundError,
    ModelStore,
    VersionExistsError,
)

CONFIG = Path(__file__).resolve().parents[1] / "config" / "german_credit"


def _files(payload: bytes = b"onnx-bytes") -> dict[str, bytes]:
    return {
        "model.onnx": payload,
        "explainer.npz": b"npz",
        "feature_spec.yaml": (CONFIG / "feature_spec.yaml").read_bytes(),
        "policy.yaml": (CONFIG / "policy.yaml").read_bytes(),
        "reason_codes.yaml": (CONFIG / "reason_codes.yaml").read_bytes(),
        "reference.json": b"{}",
        "plots/roc.png": b"\x89PNG",
    }


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    s = ModelStore(tmp_path / "store")
    s.write_version("demo", "v1", _files(), {"family": "gbt"})
    return s


def test_written_version_lists_every_file_hash_and_verifies(store: ModelStore) -> None:
    manifest = store.manifest("demo", "v1")
    assert set(manifest["files"]) == set(_files())
    assert manifest["name"] == "demo" and manifest["version"] == "v1"
    assert store.verify("demo", "v1") == []
    assert store.versions("demo") == ["v1"] and store.next_version("demo") == "v2"
    assert store.names() == ["demo"]


def test_versions_are_immutable(store: ModelStore) -> None:
    with pytest.raises(VersionExistsError, match="immutable"):
        store.write_version("demo", "v1", _files(b"other"), {})
    assert (store.path("demo", "v1") / MODEL_FILE).read_bytes() == b"onnx-bytes"
    assert not (store.path("demo", "v1") / MODEL_FILE).stat().st_mode & 0o222


def test_verify_names_a_flipped_byte_a_missing_and_an_extra_file(store: ModelStore) -> None:
    folder = store.path("demo", "v1")
    target = folder / MODEL_FILE
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[3] ^= 0x01
    target.write_bytes(bytes(data))
    (folder / "plots" / "roc.png").chmod(0o644)
    (folder / "plots" / "roc.png").unlink()
    (folder / "notes.txt").write_text("sneaked in")
    problems = store.verify("demo", "v1")
    assert any(p.startswith("model.onnx: changed") for p in problems)
    assert "plots/roc.png: missing" in problems
    assert "notes.txt: not listed in the manifest" in problems
    with pytest.raises(IntegrityError, match=r"model\.onnx"):
        store.promote("demo", "v1")


def test_bad_names_and_incomplete_versions_are_refused(tmp_path: Path) -> None:
    s = ModelStore(tmp_path)
    with pytest.raises(ContractError, match="model name"):
        s.write_version("../evil", "v1", _files(), {})
    with pytest.raises(ContractError, match="model version"):
        s.write_version("demo", "latest", _files(), {})
    with pytest.raises(ContractError, match="required files missing"):
        s.write_version("demo", "v1", {"model.onnx": b"x"}, {})
    with pytest.raises(ContractError, match="invalid file name"):
        s.write_version("demo", "v1", {**_files(), "../x": b""}, {})
    with pytest.raises(ModelNotFoundError):
        s.manifest("demo", "v1")
    assert s.names() == []


def test_promotion_is_recorded_with_history(store: ModelStore) -> None:
    assert store.champion() is None
    store.write_version("demo", "v2", _files(b"second"), {})
    store.promote("demo", "v1", note="first")
    store.promote("demo", "v2")
    assert store.champion() == ("demo", "v2")
    registry = json.loads((store.root / "registry.json").read_text())
    assert [h["version"] for h in registry["history"]] == ["v1", "v2"]
    assert registry["champion"]["manifest_sha256"]


def test_models_cli_verify_list_show_promote(store: ModelStore) -> None:
    runner = CliRunner()
    root = str(store.root)
    ok = runner.invoke(models_group, ["verify", "--model-store", root])
    assert ok.exit_code == 0 and "ok   demo v1" in ok.output
    assert runner.invoke(models_group, ["champion", "--model-store", root]).exit_code == 1
    store.promote("demo", "v1", note="as training promotes the first version")  # the registry champion
    assert runner.invoke(models_group, ["champion", "--model-store", root]).output.strip() == "demo v1"
    listing = runner.invoke(models_group, ["list", "--model-store", root, "--database-url", f"sqlite:///{root}/none"])
    assert "* demo" in listing.output
    shown = runner.invoke(models_group, ["show", "demo", "--model-store", root])
    assert json.loads(shown.output)["version"] == "v1"
    target = store.path("demo", "v1") / MODEL_FILE
    target.chmod(0o644)
    target.write_bytes(b"onnx-bytez")
    bad = runner.invoke(models_group, ["verify", "demo", "v1", "--model-store", root])
    assert bad.exit_code == 1 and "FAIL demo v1: model.onnx: changed" in bad.output


def test_verify_on_a_trained_version_names_a_single_flipped_byte_of_the_onnx_model(
    trained_models: Any, tmp_path: Path
) -> None:
    import shutil

    source, result = trained_models
    root = tmp_path / "copy"
    shutil.copytree(source.root, root)
    runner = CliRunner()
    name, version = result.champion.name, result.champion.version
    assert runner.invoke(models_group, ["verify", name, version, "--model-store", str(root)]).exit_code == 0
    model = root / name / version / MODEL_FILE
    model.chmod(0o644)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    failed = runner.invoke(models_group, ["verify", "--model-store", str(root)])
    assert failed.exit_code == 1
    assert f"FAIL {name} {version}: model.onnx: changed" in failed.output
    assert f"ok   {result.baseline.name} {result.baseline.version}" in failed.output
    with pytest.raises(IntegrityError, match=r"model\.onnx: changed"):
        ModelStore(root).load_bundle(name, version)
