"""Canonical forms: the JSON that is hashed (request hashes, the records' chain) and the time stamps shown."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text (not ASCII-escaped), no NaN or Infinity."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except TypeError as exc:
        raise ValueError(f"not JSON-ready: {exc}") from exc


def iso_utc(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds and a ``Z`` suffix (as every time stamp the API shows)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
