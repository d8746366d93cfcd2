"""The previous ``model_store.treeshap.TreeShap`` (until 2026-11), kept only for ``benchmarks.bench_treeshap``.

Not used by the service: the serving implementation is ``model_store.treeshap`` (tables indexed by the
packed split decisions of subtrees). This one is exact too; it is here so the benchmark can show both
side by side on the same machine and load.

Exact path-dependent TreeSHAP of a ``TreeEnsemble``, in NumPy, from precomputed tables.

The values are those of ``shap.TreeExplainer(model)`` with its default
``feature_perturbation="tree_path_dependent"`` on the raw (log-odds) output.

How it works (the "Fast TreeSHAP v2" / GPUTreeShap decomposition):

* Each tree is split into its root-to-leaf paths. On a path, repeated features are merged into
  *unique* features ``j = 1..d``, each with an allowed interval ``(lower_j, upper_j]`` and a zero
  fraction ``z_j`` (product over that feature's splits of ``cover(child) / cover(parent)``).
* For an input ``x`` let ``o_j = 1`` if ``x`` lies in feature ``j``'s interval, else 0. The path's
  contribution to the path-dependent value function is ``v_leaf * prod_j (o_j if j in S else z_j)``,
  so its Shapley value for ``j`` is
  ``v_leaf * (o_j - z_j) * sum_{S subset of the others} w(|S|, d) prod_{k in S} o_k prod_{k not in S} z_k``
  with ``w(s, d) = s! (d - s - 1)! / d!``; computed as a bilinear form of prefix/suffix
  products of the polynomials ``z_k + o_k y`` (positive terms only, no cancellation).
* Since ``o`` is binary, the contributions are tabulated once per pattern of ``o``:
  - a whole shallow tree is one table, indexed by the bin of each of its features among that
    tree's thresholds (mixed radix; at most ``TREE_TABLE_MAX_ENTRIES`` entries);
  - otherwise each path is a table indexed by its ``2**d`` patterns of ``o``;
  - paths that do not fit in ``MAX_TABLE_BYTES`` are evaluated directly with the same formula.
  Evaluating a row is then: threshold comparisons, a weighted segment sum giving each table's
  row index, one gather and a segment sum per feature. Every table row also carries the leaf
  value reached, so ``margin`` comes from the same lookups.

Comparisons are made in float32, as the ONNX runtime makes them: a row goes left iff
``float32(x) <= float32(threshold)`` (thresholds beyond the float32 range are clamped to it).
For inputs that are float32 values not equal to a float32-rounded threshold this is the same
path as the float64 reference ``TreeEnsemble.margin``.

Missing values: a NaN goes where each node's ``default_left`` sends it, as in
``TreeEnsemble.leaf_indices`` (and as the ONNX graph's missing-value tracking and shap do). On a path,
feature ``j`` then admits a NaN iff every split on ``j`` along the path sends NaN the way the path
goes (``nan_ok_j``), and ``o_j = 1`` for a NaN exactly then. Rows are evaluated with NaN replaced by
``+inf``, which the comparisons treat as "right at every split"; where that differs from ``nan_ok_j``
an extra comparison ``x > float32 max`` (true only for the replaced NaN) corrects the table index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from model_store.explainer import TreeEnsemble

MAX_TABLE_BYTES = 150 * 2**20
"""Budget for all precomputed tables; paths beyond it are evaluated directly (exact, slower)."""
TREE_TABLE_MAX_ENTRIES = 8192
"""A subtree gets one table over all its threshold bins only if that table has at most this many entries."""
SMALL_TABLE_ENTRIES = 1024
"""A subtree whose table has at most this many entries always gets one (fewer lookups per row)."""
PATH_TABLE_MAX_UNIQUE = 20
"""Paths with more unique features than this are never tabulated (2**d rows)."""

_CHUNK_ELEMENTS = 1 << 16
_F32_MAX = float(np.finfo(np.float32).max)

Float64Array = NDArray[np.float64]
Float32Array = NDArray[np.float32]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class _Path:
    """One root-to-leaf path with repeated features merged."""

    value: float
    features: tuple[int, ...]
    lower: tuple[float, ...]  # float32-exact; -inf when unbounded
    upper: tuple[float, ...]  # float32-exact; +inf when unbounded
    zero_fraction: tuple[float, ...]
    nan_ok: tuple[bool, ...]  # a missing value (NaN) follows this path at every split on the feature

    def nan_fix(self, j: int) -> int:
        """How o_j of a NaN must be corrected from its +inf stand-in's: -1, 0 or +1."""
        natural = self.upper[j] == math.inf  # +inf is inside (lower, +inf] and nowhere else
        return int(self.nan_ok[j]) - int(natural)


def _f32(value: float) -> float:
    """The float32 value a threshold is compared as (clamped to the finite float32 range)."""
    return float(np.float32(min(max(value, -_F32_MAX), _F32_MAX)))


def _tree_paths(ensemble: TreeEnsemble, tree: int) -> tuple[list[_Path], dict[int, tuple[int, int]]]:
    """All root-to-leaf paths of one tree, left to right, and the range of paths under each node."""
    feature, threshold = ensemble.feature, ensemble.threshold
    left, right, cover, value = ensemble.children_left, ensemble.children_right, ensemble.cover, ensemble.value
    default_left = ensemble.default_left
    paths: list[_Path] = []
    spans: dict[int, tuple[int, int]] = {}
    internal: list[int] = []
    stack: list[tuple[int, dict[int, tuple[float, float, float, bool]]]] = [(int(ensemble.tree_offsets[tree]), {})]
    while stack:
        node, conditions = stack.pop()
        f = int(feature[node])
        if f < 0:
            items = list(conditions.items())
            spans[node] = (len(paths), len(paths) + 1)
            paths.append(
                _Path(
                    value=float(value[node]),
                    features=tuple(k for k, _ in items),
                    lower=tuple(c[0] for _, c in items),
                    upper=tuple(c[1] for _, c in items),
                    zero_fraction=tuple(c[2] for _, c in items),
                    nan_ok=tuple(c[3] for _, c in items),
                )
            )
            continue
        internal.append(node)
        thr = _f32(float(threshold[node]))
        lo, hi, z, nan_ok = conditions.get(f, (-math.inf, math.inf, 1.0, True))
        lc, rc = int(left[node]), int(right[node])
        nan_left = bool(default_left[node])
        go_right = dict(conditions)
        go_right[f] = (max(lo, thr), hi, z * float(cover[rc]) / float(cover[node]), nan_ok and not nan_left)
        go_left = dict(conditions)
        go_left[f] = (lo, min(hi, thr), z * float(cover[lc]) / float(cover[node]), nan_ok and nan_left)
        stack.append((rc, go_right))
        stack.append((lc, go_left))
    for node in reversed(internal):  # children are visited after their parent
        spans[node] = (spans[int(left[node])][0], spans[int(right[node])][1])
    return paths, spans


def _path_table_entries(path: _Path) -> int:
    """Entries of a single path's table: 2**d patterns of o, d attributions + the margin."""
    d = len(path.features)
    return (1 << d) * (d + 1) if d <= PATH_TABLE_MAX_UNIQUE else 1 << 62


def _bins(paths: list[_Path]) -> dict[int, list[float]]:
    """Sorted distinct finite interval bounds of each feature over a set of paths."""
    cuts: dict[int, set[float]] = {}
    for p in paths:
        for f, lo, hi in zip(p.features, p.lower, p.upper, strict=True):
            cuts.setdefault(f, set()).update(b for b in (lo, hi) if math.isfinite(b))
    return {f: sorted(cuts[f]) for f in sorted(cuts)}


def _nan_features(paths: list[_Path]) -> set[int]:
    """Features on which some path treats a missing value unlike its +inf stand-in (they get a NaN bin)."""
    return {f for p in paths for j, f in enumerate(p.features) if p.nan_fix(j) != 0}


def _subtree_table_entries(paths: list[_Path]) -> int:
    """Entries of one table over all the bins of a set of paths' features (a NaN bin where needed)."""
    bins = _bins(paths)
    nan = _nan_features(paths)
    return math.prod(len(c) + 1 + (f in nan) for f, c in bins.items()) * (len(bins) + 1)


def _plan_tree(ensemble: TreeEnsemble, paths: list[_Path], spans: dict[int, tuple[int, int]]) -> list[tuple[int, int]]:
    """Split a tree into subtrees (ranges of paths), each one table, trading memory for fewer lookups.

    A subtree gets one table when it is no larger than the tables of its best split into smaller
    subtrees, or small anyway (<= ``SMALL_TABLE_ENTRIES``); never above ``TREE_TABLE_MAX_ENTRIES``.
    """

    def plan(node: int) -> tuple[int, list[tuple[int, int]]]:
        lo, hi = spans[node]
        if hi - lo == 1:
            return _path_table_entries(paths[lo]), [(lo, hi)]
        cost_l, plan_l = plan(int(ensemble.children_left[node]))
        cost_r, plan_r = plan(int(ensemble.children_right[node]))
        split = cost_l + cost_r
        whole = _subtree_table_entries(paths[lo:hi])
        if whole <= TREE_TABLE_MAX_ENTRIES and (whole <= split or whole <= SMALL_TABLE_ENTRIES):
            return whole, [(lo, hi)]
        return split, plan_l + plan_r

    return plan(min(spans))[1]


def _shapley_weights(d: int) -> Float64Array:
    """Hankel matrix ``W[a, b] = w(a + b, d)`` (zero where ``a + b >= d``)."""
    s = np.add.outer(np.arange(d), np.arange(d))
    w = np.array([1.0 / (d * math.comb(d - 1, k)) for k in range(d)] + [0.0] * d)
    return np.asarray(w[s], dtype=np.float64)


def _path_attributions(o: Float64Array, z: Float64Array, v: Float64Array) -> Float64Array:
    """Shapley values of each unique feature of paths: o, z [..., d] (broadcast), v [...] -> [..., d]."""
    o, z = np.broadcast_arrays(o, z)
    d = o.shape[-1]
    lead = o.shape[:-1]
    # pre[..., j, :] = coefficients of prod_{k<j} (z_k + o_k y); suf[..., j, :] of prod_{k>j}.
    pre = np.zeros((*lead, d, d))
    suf = np.zeros((*lead, d, d))
    pre[..., 0, 0] = 1.0
    suf[..., d - 1, 0] = 1.0
    for j in range(1, d):
        pre[..., j, :] = pre[..., j - 1, :] * z[..., j - 1, None]
        pre[..., j, 1:] += pre[..., j - 1, :-1] * o[..., j - 1, None]
        k = d - 1 - j
        suf[..., k, :] = suf[..., k + 1, :] * z[..., k + 1, None]
        suf[..., k, 1:] += suf[..., k + 1, :-1] * o[..., k + 1, None]
    weighted = np.einsum("...ja,ab,...jb->...j", pre, _shapley_weights(d), suf, optimize=True)
    return np.asarray(np.asarray(v)[..., None] * (o - z) * weighted, dtype=np.float64)


@dataclass
class _Unit:
    """A table: comparisons giving its row index, and the output columns of each row."""

    term_feature: list[int]
    term_threshold: list[float]
    term_coef: list[int]  # multiplied by the row stride later
    base: int  # constant part of the row index
    outputs: list[int]  # feature per column; the last column is the margin (feature == n_features)
    table: Float64Array  # [n_rows, len(outputs)]


def _subtree_unit(paths: list[_Path], n_features: int) -> _Unit:
    """One table for a set of paths, indexed by the bin of each feature among the paths' bounds (mixed radix)."""
    thresholds = _bins(paths)
    feats = list(thresholds)
    nan = _nan_features(paths)
    # bins 0..len(ts) count the thresholds below x; len(ts) + 1 is a missing value where it matters
    radix = [len(thresholds[f]) + 1 + (f in nan) for f in feats]
    n_rows = math.prod(radix)
    # digits[r, i] = bin of feats[i] (number of its thresholds below x) in table row r
    place = np.cumprod([1, *radix[:-1]])
    rows = np.arange(n_rows)
    digits = (rows[:, None] // place[None, :]) % np.asarray(radix)[None, :]
    column = {f: i for i, f in enumerate(feats)}
    table = np.zeros((n_rows, len(feats) + 1))
    by_depth: dict[int, list[_Path]] = {}
    for p in paths:
        by_depth.setdefault(len(p.features), []).append(p)
    for d, group in by_depth.items():
        o = np.empty((n_rows, len(group), d))
        for g, p in enumerate(group):
            for j, (f, lo, hi) in enumerate(zip(p.features, p.lower, p.upper, strict=True)):
                ts = thresholds[f]
                a = 0 if lo == -math.inf else ts.index(lo) + 1
                b = len(ts) + 1 if hi == math.inf else ts.index(hi) + 1
                o[:, g, j] = (digits[:, column[f]] >= a) & (digits[:, column[f]] <= b - 1)
                if f in nan:
                    o[digits[:, column[f]] == len(ts) + 1, g, j] = p.nan_ok[j]
        z = np.array([p.zero_fraction for p in group])
        v = np.array([p.value for p in group])
        phi = _path_attributions(o, z, v)
        for g, p in enumerate(group):
            for j, f in enumerate(p.features):
                table[:, column[f]] += phi[:, g, j]
        table[:, -1] += (o.all(axis=2) * v[None, :]).sum(axis=1)
    term_feature: list[int] = []
    term_threshold: list[float] = []
    term_coef: list[int] = []
    for f, p_i in zip(feats, place.tolist(), strict=True):
        for t in [*thresholds[f], *([_F32_MAX] if f in nan else [])]:  # the last: a missing value (+inf)
            term_feature.append(f)
            term_threshold.append(t)
            term_coef.append(int(p_i))
    return _Unit(term_feature, term_threshold, term_coef, 0, [*feats, n_features], table)


def _path_terms(path: _Path) -> tuple[list[int], list[float], list[int], int]:
    """Comparisons whose weighted sum is the path's pattern ``sum_j 2**j o_j``; o_j = right(lo) - right(hi)."""
    feats: list[int] = []
    thrs: list[float] = []
    coefs: list[int] = []
    base = 0
    for j, (f, lo, hi) in enumerate(zip(path.features, path.lower, path.upper, strict=True)):
        if lo != -math.inf and lo >= hi:
            # empty interval (contradictory splits): o_j is 0 for every value, and for a missing one nan_ok
            if path.nan_ok[j]:
                feats.append(f)
                thrs.append(_F32_MAX)
                coefs.append(1 << j)
            continue
        fix = path.nan_fix(j)
        if fix:  # a missing value (+inf stand-in, the only x above float32 max) is in or out unlike +inf
            feats.append(f)
            thrs.append(_F32_MAX)
            coefs.append(fix << j)
        if lo == -math.inf:
            base += 1 << j
        else:
            feats.append(f)
            thrs.append(lo)
            coefs.append(1 << j)
        if hi != math.inf:
            feats.append(f)
            thrs.append(hi)
            coefs.append(-(1 << j))
    return feats, thrs, coefs, base


def _path_units(paths: list[_Path], n_features: int) -> list[_Unit]:
    """One table per path (all with the same number of unique features), rows = 2**d patterns of o."""
    d = len(paths[0].features)
    patterns = np.arange(1 << d)
    o = ((patterns[:, None] >> np.arange(d)[None, :]) & 1).astype(np.float64)  # [2**d, d]
    units: list[_Unit] = []
    step = max(1, _CHUNK_ELEMENTS // ((1 << d) * d * d))
    for start in range(0, len(paths), step):
        group = paths[start : start + step]
        z = np.array([p.zero_fraction for p in group])
        v = np.array([p.value for p in group])
        phi = _path_attributions(o[:, None, :], z[None, :, :], v[None, :])  # [2**d, P, d]
        for g, p in enumerate(group):
            table = np.empty((1 << d, d + 1))
            table[:, :d] = phi[:, g, :]
            table[:, d] = 0.0
            table[-1, d] = p.value
            feats, thrs, coefs, base = _path_terms(p)
            units.append(_Unit(feats, thrs, coefs, base, [*p.features, n_features], table))
    return units


@dataclass(frozen=True)
class _DirectGroup:
    """Paths with d unique features evaluated without tables."""

    feature: IntArray  # [P, d]
    lower: Float32Array  # [P, d]
    upper: Float32Array  # [P, d]
    zero_fraction: Float64Array  # [P, d]
    value: Float64Array  # [P]
    nan_ok: np.ndarray  # bool [P, d]


class TreeShap:
    """Exact path-dependent TreeSHAP and margins of a tree ensemble, with float32 split conditions."""

    def __init__(self, ensemble: TreeEnsemble, *, max_table_bytes: int = MAX_TABLE_BYTES) -> None:
        """Decompose the trees into paths and precompute the lookup tables."""
        self.n_features = int(ensemble.n_features)
        self._expected_value = float(ensemble.expected_value)
        constant = float(ensemble.base_offset)
        candidates: list[tuple[int, list[_Path]]] = []  # (table entries, paths of one table)
        for t in range(ensemble.n_trees):
            paths, spans = _tree_paths(ensemble, t)
            if not paths[0].features:  # a single leaf: only shifts the margin and the base value
                constant += paths[0].value
                continue
            for lo, hi in _plan_tree(ensemble, paths, spans):
                group = paths[lo:hi]
                size = _path_table_entries(group[0]) if len(group) == 1 else _subtree_table_entries(group)
                candidates.append((size, group))
        # Smallest tables first, so that the budget covers as many paths as possible.
        candidates.sort(key=lambda c: c[0])
        budget = max_table_bytes // 8
        subtree_units: list[_Unit] = []
        single: dict[int, list[_Path]] = {}
        direct: dict[int, list[_Path]] = {}
        for size, group in candidates:
            if size > budget:
                for p in group:
                    direct.setdefault(len(p.features), []).append(p)
                continue
            budget -= size
            if len(group) == 1:
                single.setdefault(len(group[0].features), []).append(group[0])
            else:
                subtree_units.append(_subtree_unit(group, self.n_features))
        path_units = [u for d in sorted(single) for u in _path_units(single[d], self.n_features)]
        self._margin_constant = constant
        self._build_lookup(subtree_units + path_units)
        self._direct = [
            _DirectGroup(
                feature=np.array([p.features for p in group], dtype=np.intp),
                lower=np.array([p.lower for p in group], dtype=np.float32),
                upper=np.array([p.upper for p in group], dtype=np.float32),
                zero_fraction=np.array([p.zero_fraction for p in group], dtype=np.float64),
                value=np.array([p.value for p in group], dtype=np.float64),
                nan_ok=np.array([p.nan_ok for p in group], dtype=bool),
            )
            for group in direct.values()
        ]
        self.n_subtree_tables = len(subtree_units)
        self.n_path_tables = len(path_units)
        self.n_direct_paths = sum(len(g) for g in direct.values())

    def _build_lookup(self, units: list[_Unit]) -> None:
        """Flatten the units into the arrays the evaluation runs on."""
        term_feature: list[int] = []
        term_threshold: list[float] = []
        term_coef: list[int] = []
        unit_start: list[int] = []
        unit_base: list[int] = []
        entry_unit: list[int] = []
        entry_column: list[int] = []
        entry_output: list[int] = []
        tables: list[Float64Array] = []
        offset = 0
        for u, unit in enumerate(units):
            stride = len(unit.outputs)
            feats, thrs, coefs = unit.term_feature, unit.term_threshold, unit.term_coef
            if not feats:  # constant row index; keep the segment non-empty
                feats, thrs, coefs = [0], [_F32_MAX], [0]
            unit_start.append(len(term_feature))
            term_feature.extend(feats)
            term_threshold.extend(thrs)
            term_coef.extend(c * stride for c in coefs)
            unit_base.append(offset + unit.base * stride)
            entry_unit.extend([u] * stride)
            entry_column.extend(range(stride))
            entry_output.extend(unit.outputs)
            tables.append(unit.table.ravel())
            offset += unit.table.size
        self._table: Float64Array = np.concatenate(tables) if tables else np.zeros(0)
        self._term_feature = np.asarray(term_feature, dtype=np.intp)
        self._term_threshold = np.asarray(term_threshold, dtype=np.float32)
        self._term_coef = np.asarray(term_coef, dtype=np.intp)
        self._unit_start = np.asarray(unit_start, dtype=np.intp)
        self._unit_base = np.asarray(unit_base, dtype=np.intp)
        # Entries sorted by output feature, so one segment sum per feature gives the attributions.
        output = np.asarray(entry_output, dtype=np.intp)
        order = np.argsort(output, kind="stable")
        is_attr = output[order] < self.n_features
        attr, marg = order[is_attr], order[~is_attr]
        unit_arr = np.asarray(entry_unit, dtype=np.intp)
        column_arr = np.asarray(entry_column, dtype=np.intp)
        self._attr_unit, self._attr_column = unit_arr[attr], column_arr[attr]
        attr_output = output[attr]
        self._attr_features, self._attr_start = np.unique(attr_output, return_index=True)
        self._attr_start = self._attr_start.astype(np.intp)
        self._margin_unit, self._margin_column = unit_arr[marg], column_arr[marg]
        self.table_bytes = int(self._table.nbytes)

    @property
    def expected_value(self) -> float:
        """The SHAP base value: cover-weighted mean margin (``TreeEnsemble.expected_value``)."""
        return self._expected_value

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """Exact path-dependent SHAP values of each row: float64 [n_rows, n_features]."""
        x32 = self._prepare(X)
        out = np.zeros((x32.shape[0], self.n_features))
        if x32.shape[0] == 1:
            self._attributions_row(x32[0], out[0])
        else:
            for lo, hi in self._chunks(x32.shape[0]):
                self._attributions_rows(x32[lo:hi], out[lo:hi])
        for group in self._direct:
            self._direct_rows(group, x32, out, None)
        return out

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of each row (float64 [n_rows]) with the same float32 split conditions."""
        x32 = self._prepare(X)
        out = np.full(x32.shape[0], self._margin_constant)
        if self._margin_unit.size and x32.shape[0] == 1:
            index_1d = self._row_index_1d(x32[0])
            out[0] += self._table[index_1d[self._margin_unit] + self._margin_column].sum()
        elif self._margin_unit.size:
            for lo, hi in self._chunks(x32.shape[0]):
                index = self._row_index(x32[lo:hi])
                out[lo:hi] += self._table[index[:, self._margin_unit] + self._margin_column].sum(axis=1)
        for group in self._direct:
            self._direct_rows(group, x32, None, out)
        return out

    # ---- evaluation ----------------------------------------------------------------------------
    def _prepare(self, X: np.ndarray) -> Float32Array:
        """Validate shape; float32 values with NaN mapped to +inf (see the module docstring)."""
        x32 = np.asarray(X, dtype=np.float32)
        if x32.ndim != 2 or x32.shape[1] != self.n_features:
            raise ValueError(f"expected an array of shape (n_rows, {self.n_features}), got {x32.shape}")
        if np.isnan(x32.sum()):  # cheaper than isnan(x).any() when there is none (inf - inf is NaN too)
            x32 = np.where(np.isnan(x32), np.float32(np.inf), x32)
        return x32

    def _chunks(self, n_rows: int) -> list[tuple[int, int]]:
        """Row ranges small enough to keep the per-chunk intermediates in cache."""
        width = max(self._term_feature.size, self._attr_unit.size, 1)
        step = max(1, _CHUNK_ELEMENTS // width)
        return [(lo, min(lo + step, n_rows)) for lo in range(0, n_rows, step)]

    def _row_index(self, x32: Float32Array) -> IntArray:
        """Flat table offset of the row each unit's table uses: [n, n_units] for rows [n, n_features]."""
        right = x32[:, self._term_feature] > self._term_threshold
        return np.add.reduceat(right * self._term_coef, self._unit_start, axis=1) + self._unit_base

    def _row_index_1d(self, x: Float32Array) -> IntArray:
        """:meth:`_row_index` of a single row [n_features] (1-D arrays: the per-decision hot path)."""
        right = x.take(self._term_feature) > self._term_threshold
        return np.add.reduceat(right * self._term_coef, self._unit_start) + self._unit_base

    def _attributions_rows(self, x32: Float32Array, out: Float64Array) -> None:
        """Add the tabulated attributions of a chunk of rows [n, n_features] to ``out``."""
        if self._attr_unit.size:
            index = self._row_index(x32)
            values = self._table[index[:, self._attr_unit] + self._attr_column]
            out[:, self._attr_features] += np.add.reduceat(values, self._attr_start, axis=1)

    def _attributions_row(self, x: Float32Array, out: Float64Array) -> None:
        """Add the tabulated attributions of a single row [n_features] to ``out`` [n_features]."""
        if self._attr_unit.size:
            index = self._row_index_1d(x)
            values = self._table[index[self._attr_unit] + self._attr_column]
            out[self._attr_features] = np.add.reduceat(values, self._attr_start)

    def _direct_rows(
        self, group: _DirectGroup, x32: Float32Array, attributions: Float64Array | None, margin: Float64Array | None
    ) -> None:
        """Evaluate untabulated paths with the closed-form Shapley sum (exact, O(d^2) per path and row)."""
        n_paths, d = group.feature.shape
        step = max(1, _CHUNK_ELEMENTS // (n_paths * d * d))
        unbounded = np.isneginf(group.lower)
        for lo in range(0, x32.shape[0], step):
            x = x32[lo : lo + step][:, group.feature]  # [n, P, d]
            inside = ((x > group.lower) | unbounded) & (x <= group.upper)
            inside = np.where(x > np.float32(_F32_MAX), group.nan_ok, inside)  # a missing value (+inf stand-in)
            if margin is not None:
                margin[lo : lo + step] += (inside.all(axis=2) * group.value).sum(axis=1)
            if attributions is not None:
                phi = _path_attributions(inside.astype(np.float64), group.zero_fraction, group.value)
                n = x.shape[0]
                flat = (np.arange(n)[:, None, None] * self.n_features + group.feature[None]).ravel()
                add = np.bincount(flat, weights=phi.ravel(), minlength=n * self.n_features)
                attributions[lo : lo + step] += add.reshape(n, self.n_features)
