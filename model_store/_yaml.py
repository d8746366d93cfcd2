"""Safe YAML loading for contract files.

The loader follows YAML 1.2 for booleans: only ``true`` and ``false`` (any case) are booleans, so a
category written ``yes``, ``no``, ``on`` or ``off`` stays the string its author wrote (YAML 1.1, PyYAML's
default, would silently turn it into ``True``/``False``). Everything else is PyYAML's safe loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from model_store.errors import ContractError

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a mapping",
               list: "a list"}  # fmt: skip


class ContractLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans (``yes``/``no``/``on``/``off`` are strings)."""


ContractLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ContractLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`ContractLoader`."""
    return yaml.load(text, Loader=ContractLoader)  # noqa: S506 (ContractLoader is a SafeLoader)


def load_mapping(path: Path) -> dict[str, Any]:
    """Load a YAML file that must contain a mapping at the top level."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ContractError(f"{path}: file not found") from exc
    return load_text(text, str(path))


def load_text(text: str | bytes, where: str) -> dict[str, Any]:
    """Parse YAML text (or UTF-8 bytes) that must hold a mapping; errors name ``where``."""
    try:
        data = load_yaml(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError as exc:
        raise ContractError(f"{where}: not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ContractError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError(f"{where}: expected a mapping at the top level")
    return data


def describe(kind: type | tuple[type, ...]) -> str:
    """``(str, int)`` as ``a string or an integer``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def require(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Return ``mapping[key]`` or raise a ContractError naming ``where.key`` and the value found."""
    if key not in mapping:
        raise ContractError(f"{where}: missing required key '{key}'")
    value = mapping[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ContractError(
            f"{where}.{key}: expected {describe(kind)}, got the boolean {str(value).lower()}; "
            f'write it in quotes ("{str(value).lower()}") if it is a code or a label'
        )
    if not isinstance(value, kind):
        raise ContractError(f"{where}.{key}: expected {describe(kind)}, got {value!r} ({type(value).__name__})")
    return value
