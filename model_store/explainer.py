"""The explainer artifact: an additive ensemble of binary trees, stored as plain arrays.

Both model families are stored in this one form, so the service computes exact SHAP values
of either without scikit-learn and without pickle:

* gradient-boosted trees: the fitted trees as they are;
* the WOE scorecard: one tree per field whose leaves are that field's bins, each leaf
  holding ``coefficient * WOE`` of its bin (so the margin is the logistic regression's).

``margin(x) = base_offset + sum over trees of the value of the leaf x reaches``, where a row
goes to the left child iff ``x[feature] <= threshold``, and a missing value (NaN) goes where the node's
``default_left`` says (learned by the gradient-boosted trees; the scorecard's missing bin). ``cover`` is
the number of training rows that reached each node (what path-dependent TreeSHAP weights by).
Archives written before ``default_left`` existed read as "a missing value goes right everywhere".

On disk the artifact is an ``.npz`` archive of numeric arrays only, read with
``allow_pickle=False``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_store.errors import ContractError

_ARRAYS = ("tree_offsets", "children_left", "children_right", "feature", "threshold", "value", "cover", "default_left")


@dataclass(frozen=True, eq=False)
class TreeEnsemble:
    """Node arrays of all trees, concatenated; node indices are global (into these arrays).

    tree_offsets: int64 [n_trees + 1]; tree t owns nodes tree_offsets[t]:tree_offsets[t+1],
        its root is node tree_offsets[t].
    children_left / children_right: int64 [n_nodes], -1 at leaves.
    feature: int64 [n_nodes], encoded column index tested at the node, -1 at leaves.
    threshold: float64 [n_nodes], go left iff x[feature] <= threshold (NaN at leaves).
    value: float64 [n_nodes], leaf values in log-odds (0 at internal nodes).
    cover: float64 [n_nodes], training rows reaching the node (> 0).
    default_left: bool [n_nodes], a missing value (NaN) goes left at the node (False at leaves).
    """

    tree_offsets: np.ndarray
    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    cover: np.ndarray
    base_offset: float
    n_features: int
    default_left: np.ndarray = None  # type: ignore[assignment]  # default: all False (set in __post_init__)

    def __post_init__(self) -> None:
        if self.default_left is None:
            object.__setattr__(self, "default_left", np.zeros(self.feature.shape, dtype=bool))
        else:
            object.__setattr__(self, "default_left", np.asarray(self.default_left, dtype=bool))
        for name in _ARRAYS:
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray):
                raise ContractError(f"explainer: '{name}' must be a NumPy array")
            arr.setflags(write=False)
        self.validate()

    @property
    def n_trees(self) -> int:
        """Number of trees."""
        return int(self.tree_offsets.shape[0] - 1)

    @property
    def n_nodes(self) -> int:
        """Number of nodes over all trees."""
        return int(self.feature.shape[0])

    def validate(self) -> None:
        """Check shapes, dtypes and that every tree is a well-formed binary tree."""
        n = self.feature.shape[0]
        for name in _ARRAYS[1:]:
            if getattr(self, name).shape != (n,):
                raise ContractError(f"explainer: '{name}' must have shape ({n},)")
        off = self.tree_offsets
        if off.ndim != 1 or off.shape[0] < 2 or off[0] != 0 or off[-1] != n or np.any(np.diff(off) < 1):
            raise ContractError("explainer: tree_offsets must start at 0, increase and end at n_nodes")
        leaf = self.children_left < 0
        if np.any(leaf != (self.children_right < 0)) or np.any(leaf != (self.feature < 0)):
            raise ContractError("explainer: a node must have both children and a feature, or none")
        internal = ~leaf
        if np.any(self.feature[internal] >= self.n_features):
            raise ContractError("explainer: a node tests a feature outside the input")
        if not np.all(np.isfinite(self.threshold[internal])) or not np.all(np.isfinite(self.value[leaf])):
            raise ContractError("explainer: thresholds and leaf values must be finite")
        if np.any(self.cover <= 0) or not np.all(np.isfinite(self.cover)):
            raise ContractError("explainer: every node needs a positive cover")
        tree_of = np.repeat(np.arange(self.n_trees), np.diff(off))
        for child in (self.children_left[internal], self.children_right[internal]):
            if (
                np.any(child >= n)
                or np.any(tree_of[child] != tree_of[internal])
                or np.any(child <= np.flatnonzero(internal))
            ):
                raise ContractError("explainer: a child must be a later node of the same tree")

    # ---- reference evaluation (float64, row by row; the fast paths live in the service) ----
    def leaf_indices(self, X: np.ndarray) -> np.ndarray:
        """Global index of the leaf each row reaches in each tree: int64 [n_rows, n_trees]."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty((X.shape[0], self.n_trees), dtype=np.int64)
        rows = np.arange(X.shape[0])
        for t in range(self.n_trees):
            node = np.full(X.shape[0], self.tree_offsets[t], dtype=np.int64)
            while True:
                active = self.feature[node] >= 0
                if not active.any():
                    break
                a = node[active]
                x = X[rows[active], self.feature[a]]
                go_left = np.where(np.isnan(x), self.default_left[a], x <= self.threshold[a])
                node[active] = np.where(go_left, self.children_left[a], self.children_right[a])
            out[:, t] = node
        return out

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of default of each row, in float64."""
        margins: np.ndarray = self.base_offset + self.value[self.leaf_indices(X)].sum(axis=1)
        return margins

    @property
    def expected_value(self) -> float:
        """Cover-weighted mean margin: the SHAP base value of path-dependent TreeSHAP."""
        total = self.base_offset
        leaf = self.feature < 0
        for t in range(self.n_trees):
            lo, hi = self.tree_offsets[t], self.tree_offsets[t + 1]
            m = leaf[lo:hi]
            total += float(np.dot(self.value[lo:hi][m], self.cover[lo:hi][m]) / self.cover[lo])
        return float(total)

    # ---- persistence ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Serialise to ``.npz`` bytes (numeric arrays only, deterministic content)."""
        buf = io.BytesIO()
        np.savez(
            buf,
            tree_offsets=self.tree_offsets.astype(np.int64),
            children_left=self.children_left.astype(np.int64),
            children_right=self.children_right.astype(np.int64),
            feature=self.feature.astype(np.int64),
            threshold=self.threshold.astype(np.float64),
            value=self.value.astype(np.float64),
            cover=self.cover.astype(np.float64),
            default_left=self.default_left.astype(np.int8),
            base_offset=np.float64(self.base_offset),
            n_features=np.int64(self.n_features),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TreeEnsemble:
        """Read ``.npz`` bytes written by :meth:`to_bytes` (never unpickles)."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: np.array(npz[name]) for name in _ARRAYS if name in npz.files or name != "default_left"}
                base = float(npz["base_offset"])
                n_features = int(npz["n_features"])
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ContractError(f"explainer: not a valid explainer archive: {exc}") from exc
        ints = {k: arrays[k].astype(np.int64) for k in ("tree_offsets", "children_left", "children_right", "feature")}
        floats = {k: arrays[k].astype(np.float64) for k in ("threshold", "value", "cover")}
        default_left = arrays.get("default_left")
        return cls(
            base_offset=base,
            n_features=n_features,
            default_left=None if default_left is None else default_left.astype(bool),  # type: ignore[arg-type]
            **ints,
            **floats,
        )

    @classmethod
    def load(cls, path: str | Path) -> TreeEnsemble:
        """Read an explainer archive from a file."""
        return cls.from_bytes(Path(path).read_bytes())
