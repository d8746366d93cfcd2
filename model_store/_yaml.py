"""Safe YAML loading for contract files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from model_store.errors import ContractError


def load_mapping(path: Path) -> dict[str, Any]:
    """Load a YAML file that must contain a mapping at the top level."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ContractError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError(f"{path}: expected a mapping at the top level")
    return data


def require(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Return ``mapping[key]`` or raise a ContractError naming ``where.key``."""
    if key not in mapping:
        raise ContractError(f"{where}: missing required key '{key}'")
    value = mapping[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ContractError(f"{where}.{key}: expected {kind}, got a boolean")
    if not isinstance(value, kind):
        raise ContractError(f"{where}.{key}: expected {kind}, got {type(value).__name__}")
    return value
