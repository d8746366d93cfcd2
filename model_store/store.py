"""The model store: immutable, hash-verified model versions and a registry naming the champion.

Layout under the store root::

    <root>/<name>/<version>/model.onnx, explainer.npz, feature_spec.yaml, policy.yaml,
                            reason_codes.yaml, reference.json, model_card.md, plots/*.png,
                            manifest.json   (lists the sha256 of every other file)
    <root>/registry.json    (the champion and the history of promotions)
    <root>/policies/<policy_version>/policy.yaml, reason_codes.yaml, manifest.json
                            (candidate policies with their reason catalogs, for shadow runs and promotion
                            on a model version's model; immutable like model versions)

A version is written to a temporary folder and renamed into place, so it appears whole or
not at all; writing an existing version is refused; its files are made read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_store._yaml import load_text
from model_store.catalog import ReasonCatalog
from model_store.errors import ContractError
from model_store.explainer import TreeEnsemble
from model_store.policy import Policy
from model_store.spec import FeatureSpec
from model_store.vocabulary import MODEL_NAME, MODEL_VERSION, POLICY_VERSION

MODEL_FILE = "model.onnx"
EXPLAINER_FILE = "explainer.npz"
SPEC_FILE = "feature_spec.yaml"
POLICY_FILE = "policy.yaml"
CATALOG_FILE = "reason_codes.yaml"
REFERENCE_FILE = "reference.json"
CARD_FILE = "model_card.md"
MANIFEST_FILE = "manifest.json"
REGISTRY_FILE = "registry.json"
REQUIRED_FILES = (MODEL_FILE, EXPLAINER_FILE, SPEC_FILE, POLICY_FILE, CATALOG_FILE, REFERENCE_FILE)

POLICIES_DIR = "policies"
_NAME = MODEL_NAME
_POLICY_VERSION = POLICY_VERSION
_VERSION = MODEL_VERSION


class VersionExistsError(ContractError):
    """A model version with that name and version already exists; versions are immutable."""


class ModelNotFoundError(ContractError):
    """No such model name or version in the store."""


class IntegrityError(ContractError):
    """A model version's files do not match the hashes in its manifest."""

    def __init__(self, name: str, version: str, problems: list[str]) -> None:
        super().__init__(f"model {name} {version} failed verification: " + "; ".join(problems))
        self.problems = problems


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """Everything needed to serve, explain and audit one verified model version."""

    name: str
    version: str
    path: Path
    manifest: dict[str, Any]
    spec: FeatureSpec
    policy: Policy
    catalog: ReasonCatalog
    explainer: TreeEnsemble
    onnx_path: Path
    onnx_sha256: str
    reference: dict[str, Any]

    @property
    def manifest_sha256(self) -> str:
        """sha256 of the manifest file (which lists every other file's hash)."""
        return sha256_file(self.path / MANIFEST_FILE)


@dataclass(frozen=True)
class PolicyVersion:
    """A stored candidate policy: its version, its catalog's version and the hashes of both files."""

    policy_version: str
    catalog_version: str
    path: Path
    manifest: dict[str, Any]


class PolicyStoreMixin:
    """Candidate policies (policy + reason catalog) kept beside the model versions, immutable."""

    root: Path

    def policy_versions(self) -> list[str]:
        """Stored policy versions, sorted."""
        folder = self.root / POLICIES_DIR
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / MANIFEST_FILE).is_file())

    def policy_path(self, policy_version: str) -> Path:
        """Folder of a stored policy version (ModelNotFoundError if absent)."""
        if not _POLICY_VERSION.match(policy_version):
            raise ModelNotFoundError(f"policy version {policy_version!r} is not a valid policy version")
        folder = self.root / POLICIES_DIR / policy_version
        if not (folder / MANIFEST_FILE).is_file():
            raise ModelNotFoundError(f"no policy version {policy_version!r} in the model store {self.root}")
        return folder

    def policy_manifest(self, policy_version: str) -> dict[str, Any]:
        """The manifest of a stored policy version (its files' hashes, catalog version, spec, note)."""
        data = json.loads((self.policy_path(policy_version) / MANIFEST_FILE).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ContractError(f"policy {policy_version}: manifest must hold an object")
        return data

    def add_policy(self, policy_yaml: bytes, catalog_yaml: bytes, spec: FeatureSpec, note: str = "") -> PolicyVersion:
        """Validate a policy and its reason catalog against ``spec`` and store them under the policy's version.

        Storing the same files again returns the stored version; other files under a stored version are
        refused (VersionExistsError): a policy version, like a model version, never changes.
        """
        policy = Policy.from_dict(load_text(policy_yaml, POLICY_FILE), spec, where=POLICY_FILE)
        catalog = ReasonCatalog.from_dict(load_text(catalog_yaml, CATALOG_FILE), spec, policy, where=CATALOG_FILE)
        if not _POLICY_VERSION.match(policy.version):
            raise ContractError(f"{POLICY_FILE}.policy_version: {policy.version!r} must be letters, digits, . _ -")
        files = {POLICY_FILE: policy_yaml, CATALOG_FILE: catalog_yaml}
        hashes = {rel: sha256_bytes(data) for rel, data in files.items()}
        target = self.root / POLICIES_DIR / policy.version
        if (target / MANIFEST_FILE).is_file():
            existing = json.loads((target / MANIFEST_FILE).read_text(encoding="utf-8"))
            if existing.get("files") != hashes:
                raise VersionExistsError(
                    f"policy version {policy.version} already exists with other files; policy versions are immutable"
                )
            return PolicyVersion(policy.version, str(existing.get("catalog_version")), target, existing)
        manifest = {
            "policy_version": policy.version,
            "catalog_version": catalog.version,
            "validated_with_spec": spec.version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "note": note,
            "files": hashes,
        }
        (self.root / POLICIES_DIR).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{policy.version}-", dir=self.root / POLICIES_DIR))
        tmp.chmod(_READABLE_FOLDER)  # as a model version: readable by the service's user
        try:
            for rel, data in files.items():
                (tmp / rel).write_bytes(data)
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            for file in tmp.iterdir():
                _fsync(file)
                file.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            try:
                os.rename(tmp, target)
            except OSError as exc:
                raise VersionExistsError(f"policy version {policy.version} already exists") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, onerror=_force_remove)
        return PolicyVersion(policy.version, catalog.version, target, manifest)

    def load_policy(self, policy_version: str, spec: FeatureSpec) -> tuple[Policy, ReasonCatalog]:
        """A stored policy and its catalog, hashes verified and validated against ``spec``."""
        folder = self.policy_path(policy_version)
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = manifest.get("files") or {}
        changed = [rel for rel in (POLICY_FILE, CATALOG_FILE) if sha256_file(folder / rel) != files.get(rel)]
        if changed:
            raise IntegrityError(
                "policy", policy_version, [f"{rel}: sha256 differs from the manifest" for rel in changed]
            )
        policy = Policy.load(folder / POLICY_FILE, spec)
        catalog = ReasonCatalog.load(folder / CATALOG_FILE, spec, policy)
        if policy.version != policy_version:
            raise ContractError(f"{folder / POLICY_FILE}: policy_version {policy.version!r} is not {policy_version!r}")
        return policy, catalog


class ModelStore(PolicyStoreMixin):
    """A directory of model versions (and candidate policies)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ---- reading -------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Model names that have at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name) and self.versions(p.name)
        )

    def versions(self, name: str) -> list[str]:
        """Versions of a model, oldest first."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if _VERSION.match(p.name) and (p / MANIFEST_FILE).is_file()]
        return sorted(found, key=lambda v: int(v[1:]))

    def next_version(self, name: str) -> str:
        """The version a new write of ``name`` should take."""
        existing = self.versions(name)
        return f"v{int(existing[-1][1:]) + 1}" if existing else "v1"

    def path(self, name: str, version: str) -> Path:
        """Folder of a model version (which must exist)."""
        _check_name(name, version)
        folder = self.root / name / version
        if not (folder / MANIFEST_FILE).is_file():
            raise ModelNotFoundError(f"no model version {name} {version} in {self.root}")
        return folder

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        """The parsed manifest of a model version."""
        try:
            data = json.loads((self.path(name, version) / MANIFEST_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ContractError(f"{name} {version}: {MANIFEST_FILE} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ContractError(f"{name} {version}: {MANIFEST_FILE} must hold an object")
        return data

    def verify(self, name: str, version: str) -> list[str]:
        """Recompute every file's hash; return one problem per changed, missing or unexpected file."""
        folder = self.path(name, version)
        try:
            listed = self.manifest(name, version).get("files")
        except ContractError as exc:
            return [str(exc)]
        if not isinstance(listed, dict) or not listed:
            return [f"{MANIFEST_FILE}: lists no files"]
        problems = []
        for rel, expected in sorted(listed.items()):
            file = folder / rel
            if not file.is_file():
                problems.append(f"{rel}: missing")
            elif sha256_file(file) != expected:
                problems.append(f"{rel}: changed (sha256 does not match the manifest)")
        for file in sorted(folder.rglob("*")):
            rel = file.relative_to(folder).as_posix()
            if file.is_file() and rel != MANIFEST_FILE and rel not in listed:
                problems.append(f"{rel}: not listed in the manifest")
        for rel in REQUIRED_FILES:
            if rel not in listed:
                problems.append(f"{rel}: required file not listed in the manifest")
        return problems

    def load_bundle(self, name: str, version: str) -> ModelBundle:
        """Verify and load a model version; raises IntegrityError naming any changed file."""
        problems = self.verify(name, version)
        if problems:
            raise IntegrityError(name, version, problems)
        folder = self.path(name, version)
        manifest = self.manifest(name, version)
        spec = FeatureSpec.load(folder / SPEC_FILE)
        policy = Policy.load(folder / POLICY_FILE, spec)
        catalog = ReasonCatalog.load(folder / CATALOG_FILE, spec, policy)
        explainer = TreeEnsemble.load(folder / EXPLAINER_FILE)
        if list(manifest.get("columns", [])) != list(spec.columns):
            raise ContractError(f"{name} {version}: manifest columns do not match the feature spec")
        if explainer.n_features != len(spec.columns):
            raise ContractError(
                f"{name} {version}: explainer has {explainer.n_features} inputs, spec {len(spec.columns)}"
            )
        reference = json.loads((folder / REFERENCE_FILE).read_text(encoding="utf-8"))
        return ModelBundle(
            name=name,
            version=version,
            path=folder,
            manifest=manifest,
            spec=spec,
            policy=policy,
            catalog=catalog,
            explainer=explainer,
            onnx_path=folder / MODEL_FILE,
            onnx_sha256=manifest["files"][MODEL_FILE],
            reference=reference,
        )

    # ---- writing -------------------------------------------------------------------------
    def write_version(self, name: str, version: str, files: Mapping[str, bytes], manifest: Mapping[str, Any]) -> Path:
        """Write a new immutable version; refuses an existing one. Adds ``files`` hashes to the manifest."""
        _check_name(name, version)
        missing = [f for f in REQUIRED_FILES if f not in files]
        if missing:
            raise ContractError(f"{name} {version}: required files missing: {missing}")
        for rel in files:
            parts = Path(rel).parts
            if rel == MANIFEST_FILE or Path(rel).is_absolute() or ".." in parts or not parts:
                raise ContractError(f"{name} {version}: invalid file name {rel!r}")
        target = self.root / name / version
        if target.exists():
            raise VersionExistsError(f"model version {name} {version} already exists; versions are immutable")
        (self.root / name).mkdir(parents=True, exist_ok=True)
        full = dict(manifest)
        full.update(name=name, version=version)
        full["files"] = {rel: sha256_bytes(data) for rel, data in sorted(files.items())}
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.root / name))
        # mkdtemp makes the folder 0700: the service may run as another user (the image's), reading a mounted store
        tmp.chmod(_READABLE_FOLDER)
        try:
            for rel, data in files.items():
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            (tmp / MANIFEST_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            for file in tmp.rglob("*"):
                if file.is_file():
                    _fsync(file)
                    file.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            try:
                # rename onto a missing path only: an existing version is never replaced
                os.rename(tmp, target)
            except OSError as exc:
                raise VersionExistsError(
                    f"model version {name} {version} already exists; versions are immutable"
                ) from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, onerror=_force_remove)
        return target

    # ---- registry ------------------------------------------------------------------------
    def registry(self) -> dict[str, Any]:
        """The parsed registry (``{"champion": {...} | None, "history": [...]}``)."""
        file = self.root / REGISTRY_FILE
        if not file.is_file():
            return {"champion": None, "history": []}
        data = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ContractError(f"{file}: must hold an object")
        return data

    def champion(self) -> tuple[str, str] | None:
        """(name, version) of the champion, or None when none has been promoted."""
        champ = self.registry().get("champion")
        if not champ:
            return None
        return str(champ["name"]), str(champ["version"])

    def resolve(self, name: str | None = None, version: str | None = None) -> tuple[str, str]:
        """(name, version) to serve: as given, the newest version of ``name``, or the champion.

        ModelNotFoundError (naming the store) when there is no such model, no version of it, or no champion.
        """
        if name is None:
            if version is not None:
                raise ModelNotFoundError("a model version needs a model name")
            champion = self.champion()
            if champion is None:
                raise ModelNotFoundError(
                    f"no champion model in the model store {self.root}; run `credit-decision train` "
                    "(or `make train`), or name a model"
                )
            return champion
        if version is None:
            versions = self.versions(name)
            if not versions:
                raise ModelNotFoundError(f"no versions of model {name!r} in the model store {self.root}")
            version = versions[-1]
        return name, version

    def promote(self, name: str, version: str, note: str = "") -> None:
        """Make a verified version the champion; the promotion is appended to the history."""
        problems = self.verify(name, version)
        if problems:
            raise IntegrityError(name, version, problems)
        reg = self.registry()
        entry = {
            "name": name,
            "version": version,
            "manifest_sha256": sha256_file(self.path(name, version) / MANIFEST_FILE),
            "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "note": note,
        }
        reg["champion"] = entry
        reg.setdefault("history", []).append(entry)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{REGISTRY_FILE}.tmp"
        tmp.write_text(json.dumps(reg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _fsync(tmp)
        os.replace(tmp, self.root / REGISTRY_FILE)


_READABLE_FOLDER = stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH  # 0755


def _check_name(name: str, version: str) -> None:
    if not _NAME.match(name):
        raise ContractError(f"model name {name!r} must be lower-case letters, digits and '-'")
    if not _VERSION.match(version):
        raise ContractError(f"model version {version!r} must look like v1, v2, ...")


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _force_remove(func: Any, path: str, _exc: Any) -> None:
    os.chmod(path, stat.S_IWUSR | stat.S_IRUSR)
    func(path)


def default_store_root() -> Path:
    """The repository's ``model_store/`` folder: the store root when the MODEL_STORE setting is not given."""
    return Path(__file__).resolve().parent
