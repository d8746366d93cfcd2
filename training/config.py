"""Training configuration as versioned data: which data, which contract files, which model parameters.

Keys of the training YAML (paths are relative to the file):

* ``name``: model name stem, lower-case letters, digits and ``-``; versions are ``<name>-gbt`` and
  ``<name>-scorecard``.
* ``data.csv``: the training CSV (a header row, then one row per application).
* ``feature_spec``, ``policy``, ``reason_codes``: the contract files the models are trained and validated with.
* ``random_state``, ``holdout_fraction`` (0.05 to 0.5), ``cv_folds`` (2 to 20).
* ``champion`` / ``baseline``: ``family`` (``gbt`` / ``scorecard``) and ``params`` (see CHAMPION_PARAMS,
  BASELINE_PARAMS).
* ``dataset`` (optional): what the data are, printed in the model card, and how training treats bad rows:

  * ``name``: the data set's name;
  * ``source``: where it comes from (free text or a URL; a citation);
  * ``licence``: the terms it may be used under;
  * ``description``: population, period, products and currency it describes;
  * ``notes``: a list of known data-quality notes;
  * ``cost_matrix``: ``{false_approve: <cost of approving a bad>, false_decline: <cost of not approving a
    good>}``, two non-negative numbers, not both 0; the model card's expected cost uses it (no matrix: no
    expected cost);
  * ``on_invalid``: ``refuse`` (default: a row the API would refuse stops the training run) or ``drop``
    (such rows are left out, counted per reason in the manifest and the model card).

* ``reason_stability`` (optional): how training measures reason stability (``training.stability``):
  ``seeds`` (0 to 10, default 2): retrains with other seeds to compare reasons across; ``unstable_rate``
  (0 to 1, default 0.1): a field whose one-step perturbations change the top reason more often than this is
  flagged; ``subsample`` (0.5 to 1, default 0.9): the share of the training rows each seed retrain draws.

Every key is validated on load; an error names the file and the key.

Which training config is the default (``credit-decision train`` without ``--config``, the benchmarks) is
data too: ``config/default.yaml``'s ``training`` key (:func:`default_config_path`).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
DEFAULTS_FILE = Path(__file__).resolve().parents[1] / "config" / "default.yaml"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,49}$")  # model names are "<name>-gbt" / "<name>-scorecard"
_TOP_LEVEL_OVERRIDES = (
    "name",
    "random_state",
    "holdout_fraction",
    "cv_folds",
    "champion",
    "baseline",
    "reason_stability",
)
_DATASET_TEXT_KEYS = ("name", "source", "licence", "description")
_DATASET_KEYS = (*_DATASET_TEXT_KEYS, "notes", "cost_matrix", "on_invalid")
_COST_KEYS = ("false_approve", "false_decline")
OnInvalid = Literal["refuse", "drop"]
ON_INVALID: tuple[OnInvalid, ...] = ("refuse", "drop")


@dataclass(frozen=True)
class ModelConfig:
    """One model family and its parameters."""

    family: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class CostMatrix:
    """Cost of each wrong decision: approving a bad applicant, not approving a good one."""

    false_approve: float
    false_decline: float

    @property
    def convention(self) -> str:
        """How the cost is counted, in words for the model card."""
        return (
            f"an approved bad applicant costs {self.false_approve:g}, a good applicant who is not approved costs "
            f"{self.false_decline:g}; refer is counted as not approved (a referred good costs "
            f"{self.false_decline:g}, a referred bad costs 0)."
        )

    def evaluate(self, confusion: Mapping[str, int]) -> dict[str, Any]:
        """Total and per-application cost of a confusion table (approved / not approved by good / bad)."""
        n = sum(confusion.values())
        bads = confusion["approved_bad"] + confusion["not_approved_bad"]
        total = self.false_approve * confusion["approved_bad"] + self.false_decline * confusion["not_approved_good"]
        return {
            "false_approve": self.false_approve,
            "false_decline": self.false_decline,
            "total_cost": total,
            "expected_cost_per_application": total / n if n else 0.0,
            "approve_all_cost_per_application": self.false_approve * bads / n if n else 0.0,
            "convention": self.convention,
        }


@dataclass(frozen=True)
class DatasetDescription:
    """The config's ``dataset`` section: what the training data are (for the model card)."""

    name: str | None = None
    source: str | None = None
    licence: str | None = None
    description: str | None = None
    notes: tuple[str, ...] = ()
    cost_matrix: CostMatrix | None = None

    def to_manifest(self) -> dict[str, Any]:
        """The section as recorded in the manifest (absent keys as null)."""
        cost = self.cost_matrix
        return {
            **{key: getattr(self, key) for key in _DATASET_TEXT_KEYS},
            "notes": list(self.notes),
            "cost_matrix": None if cost is None else {key: getattr(cost, key) for key in _COST_KEYS},
        }


@dataclass(frozen=True)
class ReasonStabilityConfig:
    """The config's ``reason_stability`` section (see the module docstring)."""

    seeds: int = 2
    unstable_rate: float = 0.1
    subsample: float = 0.9


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
    dataset: DatasetDescription = DatasetDescription()
    on_invalid: OnInvalid = "refuse"
    reason_stability: ReasonStabilityConfig = ReasonStabilityConfig()

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
        dataset, on_invalid = _dataset(data, where)
        return cls(
            path=path,
            name=name,
            data_csv=_existing(base / csv, f"{where}.data.csv"),
            random_state=random_state,
            holdout_fraction=float(holdout),
            cv_folds=folds,
            champion=_model(data, "champion", "gbt", where),
            baseline=_model(data, "baseline", "scorecard", where),
            dataset=dataset,
            on_invalid=on_invalid,
            reason_stability=_reason_stability(data, where),
            **files,
        )

    def load_contract(self) -> tuple[FeatureSpec, Policy, ReasonCatalog]:
        """Load and cross-check the feature spec, policy and reason catalog (raises ContractError)."""
        spec = FeatureSpec.load(self.feature_spec)
        policy = Policy.load(self.policy, spec)
        catalog = ReasonCatalog.load(self.reason_codes, spec, policy)
        return spec, policy, catalog


def default_config_path(defaults: Path = DEFAULTS_FILE) -> Path:
    """The default training config: the ``training`` key of ``config/default.yaml`` (relative to that file)."""
    data = load_mapping(defaults)
    return _existing(defaults.parent / require(data, "training", str, str(defaults)), f"{defaults}: training")


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


def _dataset(data: Mapping[str, Any], where: str) -> tuple[DatasetDescription, OnInvalid]:
    """The optional ``dataset`` section (see the module docstring) and its ``on_invalid`` choice."""
    if data.get("dataset") is None:
        return DatasetDescription(), "refuse"
    raw = require(dict(data), "dataset", dict, where)
    w = f"{where}.dataset"
    unknown = sorted(set(raw) - set(_DATASET_KEYS))
    if unknown:
        raise ContractError(f"{w}: unknown key(s) {unknown}; allowed: {list(_DATASET_KEYS)}")
    text = {key: _text(raw, key, w) for key in _DATASET_TEXT_KEYS if raw.get(key) is not None}
    notes: list[str] = []
    if raw.get("notes") is not None:
        notes = require(raw, "notes", list, w)
        for i, note in enumerate(notes):
            if not isinstance(note, str) or not note.strip():
                raise ContractError(f"{w}.notes[{i}]: expected a non-empty string, got {note!r}")
    on_invalid = raw.get("on_invalid", "refuse")
    if on_invalid not in ON_INVALID:
        raise ContractError(f"{w}.on_invalid: must be one of {list(ON_INVALID)}, got {on_invalid!r}")
    cost = _cost_matrix(raw, w) if raw.get("cost_matrix") is not None else None
    return DatasetDescription(**text, notes=tuple(n.strip() for n in notes), cost_matrix=cost), on_invalid


def _reason_stability(data: Mapping[str, Any], where: str) -> ReasonStabilityConfig:
    """The optional ``reason_stability`` section (see the module docstring)."""
    if data.get("reason_stability") is None:
        return ReasonStabilityConfig()
    raw = require(dict(data), "reason_stability", dict, where)
    w = f"{where}.reason_stability"
    unknown = sorted(set(raw) - {"seeds", "unstable_rate", "subsample"})
    if unknown:
        raise ContractError(f"{w}: unknown key(s) {unknown}; allowed: ['seeds', 'unstable_rate', 'subsample']")
    default = ReasonStabilityConfig()
    seeds = raw.get("seeds", default.seeds)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 0 <= seeds <= 10:
        raise ContractError(f"{w}.seeds: must be an integer from 0 to 10, got {seeds!r}")
    numbers = {}
    for key, low, high in (("unstable_rate", 0.0, 1.0), ("subsample", 0.5, 1.0)):
        value = raw.get(key, getattr(default, key))
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ContractError(f"{w}.{key}: must be a number from {low:g} to {high:g}, got {value!r}")
        numbers[key] = float(value)
    return ReasonStabilityConfig(seeds=seeds, **numbers)


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = require(raw, key, str, where)
    if not value.strip():
        raise ContractError(f"{where}.{key}: must not be empty (leave the key out instead)")
    return str(value).strip()


def _cost_matrix(raw: dict[str, Any], where: str) -> CostMatrix:
    matrix = require(raw, "cost_matrix", dict, where)
    w = f"{where}.cost_matrix"
    keys = set(matrix)
    if keys != set(_COST_KEYS):
        raise ContractError(
            f"{w}: expected exactly the keys {list(_COST_KEYS)}, got {sorted(map(str, keys))} "
            "(false_approve: cost of approving a bad applicant; false_decline: cost of not approving a good one)"
        )
    costs = {}
    for key in _COST_KEYS:
        value = require(matrix, key, (int, float), w)
        if not math.isfinite(value) or value < 0:
            raise ContractError(f"{w}.{key}: must be a finite number >= 0, got {value!r}")
        costs[key] = float(value)
    if not any(costs.values()):
        raise ContractError(f"{w}: at least one cost must be above 0")
    return CostMatrix(**costs)


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
