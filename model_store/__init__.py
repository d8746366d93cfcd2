"""Versioned model artifacts and the shared contract that reads and writes them.

The contract (feature spec, policy, reason-code catalog, tree-ensemble explainer
artifact, manifest) is imported by both ``training/`` and ``service/``; it needs
NumPy and PyYAML only, never scikit-learn.
"""

from __future__ import annotations

from model_store.errors import ContractError

__all__ = ["ContractError"]
