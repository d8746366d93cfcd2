"""Training configuration as versioned data: which data, which contract files, which model parameters."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_store._yaml import load_mapping, require
from model_store.catalog import ReasonCatalog
from model_store.errors import ContractError
from model_store.policy import Policy
from model_store.spec import FeatureSpec

# Parameters a config may set; everything else (early stopping, categorical handling, ...) is fixed
# by the pipeline so that a model version is deterministic and explainable.
CHAMPION_PARAMS: dict[str, type | tuple[type, ...]] = {
    "learning_rate": (int, float),
    "max_iter": int,
    "max_depth": (int, type(None)),
    "max_leaf_nodes": (int, type(None)),
    "min_samples_leaf": int,
    "l2_regularization": (int, float),
    "max_bins": int,
}
BASELINE_PARAMS: dict[str, type | tuple[type, ...]] = {
    "max_n_bins": int,
    "min_bin_size": (int, float),
    "C": (int, float),
}
FAMILIES = {"gbt": CHAMPION_PARAMS, "scorecard": BASELINE_PARAMS}
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,49}$")  # model names are "<name>-gbt" / "<name>-scorecard"
_TOP_LEVEL_OVERRIDES = ("name", "random_state", "holdout_fraction", "cv_folds", "champion", "baseline")


@dataclass(frozen=True)
class ModelConfig:
    """One model family and its parameters."""

    family: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class TrainingConfig:
    """A validated training configuration; all paths are absolute."""

    path: Path
    name: str
    data_csv: Path
    feature_spec: Path
    policy: Path
    reason_codes: Path
    random_state: int
    holdout_fraction: float
    cv_folds: int
    champion: ModelConfig
    baseline: ModelConfig

    @classmethod
    def load(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainingConfig:
        """Load a training YAML file; ``overrides`` are merged over it (model ``params`` key by key)."""
        path = Path(path).resolve()
        data = load_mapping(path)
        if overrides:
            data = _merge(data, overrides, str(path))
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path) -> TrainingConfig:
        """Validate a parsed config; relative paths are resolved against the folder of ``path``."""
        where = str(path)
        base = path.parent
        data = dict(data)
        files = {}
        for key in ("feature_spec", "policy", "reason_codes"):
            files[key] = _existing(base / require(data, key, str, where), f"{where}.{key}")
        csv = require(require(data, "data", dict, where), "csv", str, f"{where}.data")
        random_state = require(data, "random_state", int, where)
        holdout = require(data, "holdout_fraction", (int, float), where)
        if not 0.05 <= holdout <= 0.5:
            raise ContractError(f"{where}.holdout_fraction: must be between 0.05 and 0.5, got {holdout}")
        folds = require(data, "cv_folds", int, where)
        if not 2 <= folds <= 20:
            raise ContractError(f"{where}.cv_folds: must be between 2 and 20, got {folds}")
        name = require(data, "name", str, where)
        if not _NAME.match(name):
            raise ContractError(f"{where}.name: '{name}' must be lower-case letters, digits and '-' (at most 50)")
        return cls(
            path=path,
            name=name,
            data_csv=_existing(base / csv, f"{where}.data.csv"),
            random_state=random_state,
            holdout_fraction=float(holdout),
            cv_folds=folds,
            champion=_model(data, "champion", "gbt", where),
            baseline=_model(data, "baseline", "scorecard", where),
            **files,
        )

    def load_contract(self) -> tuple[FeatureSpec, Policy, ReasonCatalog]:
        """Load and cross-check the feature spec, policy and reason catalog (raises ContractError)."""
        spec = FeatureSpec.load(self.feature_spec)
        policy = Policy.load(self.policy, spec)
        catalog = ReasonCatalog.load(self.reason_codes, spec, policy)
        return spec, policy, catalog


def _existing(path: Path, where: str) -> Path:
    resolved = path.resolve()
    if not resolved.is_file():
        raise ContractError(f"{where}: file not found: {resolved}")
    return resolved


def _model(data: Mapping[str, Any], key: str, family: str, where: str) -> ModelConfig:
    raw = require(dict(data), key, dict, where)
    w = f"{where}.{key}"
    got = require(raw, "family", str, w)
    if got != family:
        raise ContractError(f"{w}.family: must be '{family}', got '{got}'")
    params = raw.get("params", {}) or {}
    if not isinstance(params, dict):
        raise ContractError(f"{w}.params: expected a mapping")
    allowed = FAMILIES[family]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ContractError(f"{w}.params: unknown parameter(s) {unknown}; allowed: {sorted(allowed)}")
    for k, v in params.items():
        if isinstance(v, bool) or not isinstance(v, allowed[k]):
            raise ContractError(f"{w}.params.{k}: expected {allowed[k]}, got {type(v).__name__}")
    return ModelConfig(family=family, params=dict(params))


def _merge(data: dict[str, Any], overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Merge overrides: top-level scalars replace; ``champion``/``baseline`` dicts update ``params``."""
    out = copy.deepcopy(data)
    for key, value in overrides.items():
        if key not in _TOP_LEVEL_OVERRIDES:
            raise ContractError(f"{where}: cannot override '{key}'; allowed: {list(_TOP_LEVEL_OVERRIDES)}")
        if key in ("champion", "baseline"):
            if not isinstance(value, Mapping):
                raise ContractError(f"{where}: override '{key}' must be a mapping of parameters")
            section = out.setdefault(key, {})
            section["params"] = {**(section.get("params") or {}), **value}
        else:
            out[key] = value
    return out
