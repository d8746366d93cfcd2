"""Served models by (name, version): the app's champion plus any older version, loaded lazily for replay.

A version is loaded from the model store (every artifact hash verified), self-checked (reference sample
scored and explained, attributions summing to the ONNX margin) and then kept for the life of the process;
versions are immutable, so a loaded one never goes stale. Promoting a newer champion does not unload
or hide older versions: a decision is always replayed with the version that made it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from model_store.errors import ContractError
from model_store.store import ModelStore
from service.errors import ModelUnavailable
from service.runtime import SelfCheckError, ServedModel


@dataclass(frozen=True)
class VersionInfo:
    """One version in the store, as the admin listing shows it."""

    name: str
    version: str
    family: str
    created_at: str | None
    champion: bool
    serving: bool
    loaded: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "version": self.version,
            "family": self.family,
            "created_at": self.created_at,
            "champion": self.champion,
            "serving": self.serving,
            "loaded": self.loaded,
        }


class ModelCache:
    """Self-checked ServedModels per (name, version), loaded once each, safe across threads."""

    def __init__(self, store: ModelStore, serving: ServedModel | None = None) -> None:
        self.store = store
        self.serving = serving
        self._models: dict[tuple[str, str], ServedModel] = {}
        self._variants: dict[tuple[str, str, str], ServedModel] = {}
        self._lock = threading.Lock()
        if serving is not None:
            self._models[(serving.info.name, serving.info.version)] = serving

    def default(self) -> ServedModel:
        """The model this process serves (the champion unless settings pinned another)."""
        if self.serving is None:
            raise ModelUnavailable("no model is being served")
        return self.serving

    def get(self, name: str, version: str, policy: str | None = None) -> ServedModel:
        """The self-checked model of one version, loaded from the store on first use.

        ``policy`` names a stored candidate policy (with its catalog) to decide with instead of the version's
        own; the version's own policy version (or None) means the version as trained.
        """
        with self._lock:
            model = self._models.get((name, version))
            if model is None:
                try:
                    model = ServedModel.load(self.store, name, version)
                    model.self_check()
                except (ContractError, SelfCheckError, OSError, ValueError, KeyError) as exc:
                    # ContractError covers a changed artifact, an invalid contract file and onnxruntime's errors
                    raise ModelUnavailable(f"model {name} {version}: {exc}") from exc
                self._models[(name, version)] = model
            if policy is None or policy == model.policy.version:
                return model
            variant = self._variants.get((name, version, policy))
            if variant is None:
                try:
                    variant = model.with_policy(*self.store.load_policy(policy, model.bundle.spec))
                    variant.engine.decide(model.bundle.reference.get("applications") or []).all()
                except (ContractError, OSError, ValueError, KeyError) as exc:
                    raise ModelUnavailable(f"policy {policy} on model {name} {version}: {exc}") from exc
                self._variants[(name, version, policy)] = variant
            return variant

    def deciding(self, name: str, version: str, policy_version: str) -> ServedModel:
        """The model as it decided a recorded decision: the version with the recorded policy when that is a
        stored candidate policy (promoted onto the version's model), else the version as trained."""
        model = self.get(name, version)
        if policy_version != model.policy.version and policy_version in self.store.policy_versions():
            return self.get(name, version, policy_version)
        return model

    def loaded(self) -> list[tuple[str, str]]:
        """(name, version) of every version loaded so far."""
        with self._lock:
            return sorted(self._models)

    def listing(self) -> dict[str, Any]:
        """Every model version in the store, the champion and the served version (for admins)."""
        champion = self.store.champion()
        loaded = set(self.loaded())
        serving = None if self.serving is None else (self.serving.info.name, self.serving.info.version)
        models = []
        for name in self.store.names():
            versions = []
            for version in self.store.versions(name):
                try:
                    manifest = self.store.manifest(name, version)
                except ContractError:
                    manifest = {}
                created = manifest.get("created_at")
                versions.append(
                    VersionInfo(
                        name=name,
                        version=version,
                        family=str(manifest.get("family", "")),
                        created_at=str(created) if created is not None else None,
                        champion=champion == (name, version),
                        serving=serving == (name, version),
                        loaded=(name, version) in loaded,
                    ).to_dict()
                )
            models.append({"name": name, "versions": versions})
        return {
            "champion": None if champion is None else {"name": champion[0], "version": champion[1]},
            "serving": None if self.serving is None else self.serving.info.to_dict(),
            "models": models,
        }
