"""Errors raised when a contract file (spec, policy, catalog, artifact, store) is invalid."""

from __future__ import annotations


class ContractError(ValueError):
    """A contract file is missing, malformed or inconsistent; the message names the file and field."""
