"""Exact path-dependent TreeSHAP of a ``TreeEnsemble``, in NumPy, from tables indexed by node decisions.

The values are those of ``shap.TreeExplainer(model)`` with its default
``feature_perturbation="tree_path_dependent"`` on the raw (log-odds) output.

How it works (the "Fast TreeSHAP v2" decomposition, tabulated per pattern of split decisions):

* Take one root-to-leaf path. Repeated features on it are merged into *unique* features
  ``j = 1..d``, each with a zero fraction ``z_j`` (product over that feature's splits on the path of
  ``cover(child) / cover(parent)``). For an input ``x`` let ``o_j = 1`` if ``x`` takes the path's
  direction at every split on feature ``j``, else 0. The path's contribution to the path-dependent
  value function is ``v_leaf * prod_j (o_j if j in S else z_j)``, so its Shapley value for ``j`` is
  ``v_leaf * (o_j - z_j) * sum_{S subset of the others} w(|S|, d) prod_{k in S} o_k prod_{k not in S} z_k``
  with ``w(s, d) = s! (d - s - 1)! / d!``; computed as a bilinear form of prefix/suffix products of
  the polynomials ``z_k + o_k y`` (positive terms only, no cancellation).
* So a leaf's attributions depend on ``x`` only through the decisions (left or right) ``x`` takes at
  the nodes of its path. Each tree is cut into *units*: a subtree together with the path from the
  root down to it, small enough that all its nodes number at most ``UNIT_BITS`` (8: a byte). The
  unit's table has one row per pattern of decisions at its nodes (``2**bits`` rows), holding the
  summed attributions of all the unit's leaves to each feature they use, and the value of the leaf
  the pattern reaches (for the margin). A depth-6 tree becomes about 16 units of 7 nodes (4 on the
  way down, 3 in the subtree; 128 rows each) covering up to 4 leaves each.
* Evaluating rows is then: one float32 comparison per unit node (``x[feature] > threshold``),
  ``np.packbits`` of each unit's 8 decisions into its row number, one gather of whole table rows,
  one gather putting their entries in feature order and one ``np.add.reduceat`` summing each feature's run
  (cheaper than a scatter-add with ``np.bincount``). No per-row Python loop over trees or paths.
* Leaves deeper than 8 get a unit of their own with up to ``WIDE_UNIT_BITS`` (16: two bytes) nodes;
  deeper paths, and units beyond the memory budget ``MAX_TABLE_BYTES`` (smallest tables are kept first),
  are evaluated directly with the same formula (exact, slower).

The earlier implementation (tables indexed by threshold bins of subtrees and by per-path patterns of
``o``; ``benchmarks/treeshap_v1.py``) is kept beside the benchmark for side-by-side numbers.

The tables are float64. Float32 tables (half the bytes) were measured at about 160 µs a row on the
production-size model instead of about 220, within 5e-7 of the float64 values by a bound provable at build time,
and were left out on purpose: replay (``service.replay``, absolute tolerance 1e-9) must give a record's
attributions again on another host, another NumPy build and with a later version of this module, and float32
sums differ by about 1e-8 with the order in which they are added.

Where a row's time goes (``benchmarks/bench_treeshap.py`` prints it stage by stage): on the production-size
model (500 trees of depth 6: 6,542 units, 52,336 node slots, 43,740 table entries a row, about 50 MiB of
tables) a single row takes about 220 µs: about 40 for the split decisions (gather the row's values for every
slot, compare, pack), 120-130 for the table gather (one row of 64 bytes per unit at a random place in the
tables: memory latency, not arithmetic), 25-30 to put the entries in
feature order and about 20 to sum them (a scatter-add with ``np.bincount`` took 70). Each is one NumPy pass over
arrays of that size; what is left to cut is the number of units, slots and entries, which the unit size
(``UNIT_BITS``) trades against table memory (half as many units take about four times the memory). When other
work evicts the tables from cache between rows, the gather and every pass take longer (up to about twice).
Evaluating the same tables in an onnxruntime graph (Gather, Greater, MatMul by bit weights, Gather,
ScatterElements with reduction="add") was measured at about 1 ms a row: its Gather and ScatterElements
kernels are far slower than NumPy's ``take``. numba would fuse the passes but costs about 140 MiB of
resident memory a worker once it has compiled (LLVM).

Comparisons are made in float32, as the ONNX runtime makes them: a row goes left iff
``float32(x) <= float32(threshold)`` (thresholds beyond the float32 range are clamped to it).
For inputs that are float32 values not equal to a float32-rounded threshold this is the same
path as the float64 reference ``TreeEnsemble.margin``.

Missing values: a NaN goes where each node's ``default_left`` sends it, as in
``TreeEnsemble.leaf_indices`` (and as the ONNX graph's missing-value tracking and shap do). Each node
compares one of two copies of the row: NaN replaced by ``+inf`` (goes right everywhere) at nodes that
send a missing value right, NaN replaced by ``-inf`` (goes left everywhere) at nodes that send it left.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from model_store.explainer import TreeEnsemble

MAX_TABLE_BYTES = 150 * 2**20
"""Budget for all precomputed tables; leaves of units beyond it are evaluated directly (exact, slower)."""
UNIT_BITS = 8
"""A unit's table is indexed by the decisions at at most this many nodes (one byte: 256 rows)."""
WIDE_UNIT_BITS = 16
"""A single leaf deeper than ``UNIT_BITS`` gets a table of its own up to this depth (two bytes)."""

_EVAL_CHUNK = 1 << 17
"""Rows evaluated together keep about this many gathered table entries in flight."""
_BUILD_CHUNK = 1 << 20
_TABULATE_ROWS = 1 << 16
"""Table rows computed together (whole units): a float64 block of a few MiB. Part of the tables' bits: the leaves of
a block are summed into their entries shape by shape, in the order the block's shapes first appear."""
_TABULATE_CHUNK = 1 << 17
"""Leaves of a block tabulated together keep about this many entries in each intermediate (1 MiB of float64):
the intermediates add to the tables' own memory at the start-up's peak."""
_F32_MAX = float(np.finfo(np.float32).max)

Float64Array = NDArray[np.float64]
Float32Array = NDArray[np.float32]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class _LeafPath:
    """One root-to-leaf path: its nodes, the way it goes at each, and its unique features."""

    value: float
    nodes: tuple[int, ...]  # global node indices, root first
    right: tuple[bool, ...]  # the path goes right at nodes[k]
    member: tuple[int, ...]  # nodes[k] tests features[member[k]]
    features: tuple[int, ...]  # unique features in order of first use
    zero_fraction: tuple[float, ...]  # per unique feature


@dataclass(frozen=True, slots=True)
class _UnitPlan:
    """A unit: bit k of its table row is "goes right at nodes[k]"; it covers the leaves under node ``top``.

    Its first ``above`` nodes are the path from the tree's root down to ``top``, the others the internal nodes of
    the subtree under ``top`` (none when ``top`` is a leaf). The paths of its leaves are derived when they are
    needed (:meth:`leaves`) rather than kept: on the production-size model they are some 20 MiB of Python objects,
    which would all be alive, on top of the tables, while the tables are computed.
    """

    nodes: tuple[int, ...]
    top: int
    above: int
    outputs: tuple[int, ...]  # sorted features its leaves use: the table's columns

    @property
    def rows(self) -> int:
        """Table rows: one per pattern of decisions."""
        return 1 << len(self.nodes)

    @property
    def n_leaves(self) -> int:
        """Leaves it covers: a subtree of binary splits has one leaf more than it has splits."""
        return len(self.nodes) - self.above + 1

    def leaves(self, nodes: _Nodes) -> list[_LeafPath]:
        """The paths of the leaves it covers, left before right."""
        path = self.nodes[: self.above]
        steps = tuple((n, nodes.right[n] == child) for n, child in zip(path, (*path, self.top)[1:], strict=True))
        return _subtree_leaves(nodes, self.top, steps)


def _f32(value: float) -> float:
    """The float32 value a threshold is compared as (clamped to the finite float32 range)."""
    return float(np.float32(min(max(value, -_F32_MAX), _F32_MAX)))


@dataclass(frozen=True)
class _Nodes:
    """The node arrays as Python lists (the planning walks them node by node)."""

    feature: list[int]
    left: list[int]
    right: list[int]
    cover: list[float]
    value: list[float]

    @classmethod
    def of(cls, ensemble: TreeEnsemble) -> _Nodes:
        """Lists of an ensemble's node arrays."""
        return cls(
            feature=ensemble.feature.tolist(),
            left=ensemble.children_left.tolist(),
            right=ensemble.children_right.tolist(),
            cover=ensemble.cover.astype(np.float64).tolist(),
            value=ensemble.value.astype(np.float64).tolist(),
        )


def _leaf_path(nodes: _Nodes, steps: tuple[tuple[int, bool], ...], leaf: int) -> _LeafPath:
    """Merge the splits of a path (``steps``: node and direction) by feature."""
    features: list[int] = []
    zero: list[float] = []
    member: list[int] = []
    for node, right in steps:
        f = nodes.feature[node]
        child = nodes.right[node] if right else nodes.left[node]
        ratio = nodes.cover[child] / nodes.cover[node]
        if f in features:
            j = features.index(f)
            zero[j] *= ratio
        else:
            j = len(features)
            features.append(f)
            zero.append(ratio)
        member.append(j)
    return _LeafPath(
        value=nodes.value[leaf],
        nodes=tuple(n for n, _ in steps),
        right=tuple(r for _, r in steps),
        member=tuple(member),
        features=tuple(features),
        zero_fraction=tuple(zero),
    )


def _tree_units(nodes: _Nodes, root: int) -> tuple[list[_UnitPlan], list[_LeafPath]]:
    """Cut one tree into units (largest subtrees that fit ``UNIT_BITS``) and paths too deep for any table."""
    feature, left, right = nodes.feature, nodes.left, nodes.right
    preorder: list[int] = []
    stack = [root]
    while stack:
        node = stack.pop()
        preorder.append(node)
        if feature[node] >= 0:
            stack += [right[node], left[node]]
    internal: dict[int, list[int]] = {}  # internal nodes of the subtree under each node, preorder
    for node in reversed(preorder):
        internal[node] = [node, *internal[left[node]], *internal[right[node]]] if feature[node] >= 0 else []
    units: list[_UnitPlan] = []
    deep: list[_LeafPath] = []
    todo: list[tuple[int, tuple[tuple[int, bool], ...]]] = [(root, ())]
    while todo:
        node, above = todo.pop()
        is_leaf = feature[node] < 0
        if len(above) + len(internal[node]) <= UNIT_BITS or (is_leaf and len(above) <= WIDE_UNIT_BITS):
            unit_nodes = tuple(n for n, _ in above) + tuple(internal[node])
            # every node of the unit is on the path to one of its leaves: their features are what the leaves use
            outputs = tuple(sorted({feature[n] for n in unit_nodes}))
            units.append(_UnitPlan(unit_nodes, node, len(above), outputs))
        elif is_leaf:
            deep.append(_leaf_path(nodes, above, node))
        else:
            todo.append((right[node], (*above, (node, True))))
            todo.append((left[node], (*above, (node, False))))
    return units, deep


def _subtree_leaves(nodes: _Nodes, top: int, above: tuple[tuple[int, bool], ...]) -> list[_LeafPath]:
    """Paths of the leaves under node ``top``, left before right; ``above`` is the path down to ``top``."""
    feature, left, right = nodes.feature, nodes.left, nodes.right
    leaves: list[_LeafPath] = []
    walk = [(top, above)]
    while walk:
        n, steps = walk.pop()
        if feature[n] < 0:
            leaves.append(_leaf_path(nodes, steps, n))
        else:
            walk += [(right[n], (*steps, (n, True))), (left[n], (*steps, (n, False)))]
    return leaves


def _size_weights(d: int) -> Float64Array:
    """``w(s, d) = s! (d - s - 1)! / d!`` for ``s = 0 .. 2d - 1`` (zero from ``s = d`` on)."""
    return np.array([1.0 / (d * math.comb(d - 1, k)) for k in range(d)] + [0.0] * d, dtype=np.float64)


def _shapley_weights(d: int) -> Float64Array:
    """Hankel matrix ``W[a, b] = w(a + b, d)`` (zero where ``a + b >= d``)."""
    return _size_weights(d)[np.add.outer(np.arange(d), np.arange(d))]


def _path_attributions(o: Float64Array, z: Float64Array, v: Float64Array) -> Float64Array:
    """Shapley values of each unique feature of paths: o, z [..., d] (broadcast), v [...] -> [..., d]."""
    o, z = np.broadcast_arrays(o, z)
    d = o.shape[-1]
    lead = o.shape[:-1]
    # Coefficient axes first and paths last, so every step below runs over contiguous vectors.
    ot = np.moveaxis(o, -1, 0).reshape(d, -1)
    zt = np.moveaxis(z, -1, 0).reshape(d, -1)
    n = ot.shape[1]
    # pre[j, a] = coefficient of y**a in prod_{k<j} (z_k + o_k y); suf[j, b] the same of prod_{k>j}.
    pre = np.zeros((d, d, n))
    suf = np.zeros((d, d, n))
    pre[0, 0] = 1.0
    suf[d - 1, 0] = 1.0
    for j in range(1, d):
        np.multiply(pre[j - 1], zt[j - 1], out=pre[j])
        pre[j, 1:] += pre[j - 1, :-1] * ot[j - 1]
        k = d - 1 - j
        np.multiply(suf[k + 1], zt[k + 1], out=suf[k])
        suf[k, 1:] += suf[k + 1, :-1] * ot[k + 1]
    weighted = (pre * np.matmul(_shapley_weights(d), suf)).sum(axis=1)  # [d, n]
    phi = np.moveaxis(((ot - zt) * weighted).reshape(d, *lead), 0, -1)
    return np.asarray(phi * np.asarray(v)[..., None], dtype=np.float64)


def _pattern_attributions(z: Float64Array, v: Float64Array) -> Float64Array:
    """Shapley values of paths for every pattern of ``o`` at once: z [P, d], v [P] -> [2**d, P, d].

    Row ``c`` holds the values for ``o_j = bit j of c``. The same sum as :func:`_path_attributions`, arranged
    for all patterns: with ``O`` the features where ``o = 1``, the value of ``j`` is
    ``v (o_j - z_j) sum_{S subset of O - {j}} w(|S|, d) prod_{k not in S, k != j} z_k``, a sum over the subsets
    of ``O``, which one subset-sum (zeta) transform gives for every ``O``: O(2**d d**2) per path instead of the
    bilinear form's O(2**d d**3). Positive terms only, as there.
    """
    n_paths, d = z.shape
    codes = np.arange(1 << d)
    bits = (codes[:, None] >> np.arange(d)[None, :]) & 1  # [C, d]
    # absent[c] = prod of z_k over the features k not in c
    absent = np.prod(np.where(bits[:, :, None] == 1, 1.0, z.T[None, :, :]), axis=1)  # [C, P]
    size_weight = _size_weights(d)[bits.sum(axis=1)]  # w(|c|, d), [C]
    # g[j, c] = w(|c|, d) prod_{k not in c, k != j} z_k for c without j (0 with j): absent[c | 2**j]
    with_j = codes[None, :] | (1 << np.arange(d))[:, None]  # [d, C]
    g = np.where((bits.T == 0)[:, :, None], size_weight[None, :, None] * absent[with_j], 0.0)  # [d, C, P]
    for k in range(d):  # zeta transform: g[j, c] becomes the sum over the subsets of c
        view = g.reshape(d, 1 << (d - 1 - k), 2, 1 << k, n_paths)
        view[:, :, 1] += view[:, :, 0]
    without_j = codes[None, :] & ~(1 << np.arange(d))[:, None]  # [d, C]
    sums = np.take_along_axis(g, without_j[:, :, None], axis=1)  # [d, C, P]
    phi = (bits.T[:, :, None] - z.T[:, None, :]) * sums * v[None, None, :]  # [d, C, P]
    return np.asarray(np.moveaxis(phi, 0, -1), dtype=np.float64)


@dataclass(frozen=True)
class _PathGroup:
    """Leaf paths of the same shape (D nodes, d unique features), as arrays.

    ``column`` indexes the row's two copies side by side (``[NaN as +inf, NaN as -inf]``).
    """

    column: IntArray  # [P, D]
    threshold: Float32Array  # [P, D]
    right: BoolArray  # [P, D]
    outside: BoolArray  # [P, d, D]: node k does not test unique feature j
    feature: IntArray  # [P, d]
    zero_fraction: Float64Array  # [P, d]
    value: Float64Array  # [P]

    @classmethod
    def of(cls, ensemble: TreeEnsemble, paths: list[_LeafPath]) -> _PathGroup:
        """Arrays of paths that all have the same number of nodes and of unique features."""
        nodes = np.array([p.nodes for p in paths], dtype=np.intp)
        member = np.array([p.member for p in paths], dtype=np.intp)
        d = len(paths[0].features)
        return cls(
            column=_node_columns(ensemble, nodes),
            threshold=_node_thresholds(ensemble, nodes),
            right=np.array([p.right for p in paths], dtype=bool),
            outside=member[:, None, :] != np.arange(d)[None, :, None],
            feature=np.array([p.features for p in paths], dtype=np.intp),
            zero_fraction=np.array([p.zero_fraction for p in paths], dtype=np.float64),
            value=np.array([p.value for p in paths], dtype=np.float64),
        )

    def inside(self, goes_right: BoolArray) -> tuple[BoolArray, BoolArray]:
        """``o`` [..., P, d] and "reaches the leaf" [..., P] from the decisions [..., P, D] at the path's nodes."""
        follows = goes_right == self.right
        o = np.all(follows[..., None, :] | self.outside, axis=-1)
        return o, follows.all(axis=-1)


def _node_columns(ensemble: TreeEnsemble, nodes: IntArray) -> IntArray:
    """Column of the doubled row a node compares: its feature, in the copy where NaN goes its default way."""
    n_features = int(ensemble.n_features)
    return np.asarray(ensemble.feature[nodes] + n_features * ensemble.default_left[nodes], dtype=np.intp)


def _node_thresholds(ensemble: TreeEnsemble, nodes: IntArray) -> Float32Array:
    """float32 thresholds of nodes, clamped to the finite float32 range."""
    thr = np.clip(ensemble.threshold[nodes], -_F32_MAX, _F32_MAX)
    return np.asarray(thr.astype(np.float32), dtype=np.float32)


@dataclass(frozen=True)
class _TableGroup:
    """Units whose row numbers take ``width`` bytes, flattened for evaluation.

    Unit ``u`` uses slots ``u * 8 * width ...``: its decisions packed little-endian give its table row
    (minus ``base[u]``); unused slots compare against +inf and are always 0.
    """

    width: int  # bytes per row number: 1 or 2
    slot_column: IntArray  # [U * 8 * width] into the doubled row
    slot_plain: IntArray  # the same into the row itself (when it has no missing value)
    slot_threshold: Float32Array  # [U * 8 * width]
    base: IntArray  # [U] first table row of each unit
    table: Float64Array  # [rows, K] attributions; row-major so each lookup reads one block
    by_feature: IntArray  # the flat [U * K] table entries of feature 0, then of feature 1, ... (padding left out)
    feature_start: IntArray  # [F] where each feature's entries start in ``by_feature``
    margin_table: Float64Array  # [rows] value of the leaf the pattern reaches (0 if none of the unit's)

    def row_index(self, xx: Float32Array, plain: bool) -> IntArray:
        """Table row of each unit for rows ``xx`` [n, 2F] (or [n, F] if ``plain``): [n, U]."""
        goes_right = (
            np.take(xx, self.slot_plain if plain else self.slot_column, axis=1, mode="wrap") > self.slot_threshold
        )
        # each unit's slots are whole bytes, so packing the flat array packs each unit's decisions
        packed = np.packbits(goes_right.ravel(), bitorder="little")
        if self.width == 2:
            packed = packed.view("<u2")
        return np.asarray(packed.reshape(xx.shape[0], -1) + self.base, dtype=np.intp)

    def row_index_1d(self, xx: Float32Array, plain: bool) -> IntArray:
        """:meth:`row_index` of a single row (1-D arrays: the per-decision hot path)."""
        # mode="wrap": the indices are in range by construction, and NumPy's take checks them faster this way
        goes_right = xx.take(self.slot_plain if plain else self.slot_column, mode="wrap") > self.slot_threshold
        packed = np.packbits(goes_right, bitorder="little")
        if self.width == 2:
            packed = packed.view("<u2")
        return np.asarray(packed + self.base, dtype=np.intp)

    def attributions(self, index: IntArray) -> Float64Array:
        """Attributions [m, F] from these units of rows whose table rows are ``index`` [m, U].

        The gathered entries are put in feature order and summed run by run in float64: cheaper than a
        scatter-add (``np.bincount``) of every entry, padding included.
        """
        values = self.table.take(index, axis=0).reshape(index.shape[0], -1).take(self.by_feature, axis=1, mode="wrap")
        return np.add.reduceat(values, self.feature_start, axis=1)


def _build_group(ensemble: TreeEnsemble, nodes: _Nodes, units: list[_UnitPlan], width: int) -> _TableGroup:
    """Compute the tables of units (each with at most ``8 * width`` nodes)."""
    slots = 8 * width
    n_units = len(units)
    n_features = int(ensemble.n_features)
    widths = np.array([len(u.outputs) for u in units])
    k = int(widths.max())
    if (widths == k).all() and len(set().union(*(u.outputs for u in units))) < n_features:
        k += 1  # a padding column (always 0) to stand for the features no unit uses
    base = np.zeros(n_units, dtype=np.intp)
    base[1:] = np.cumsum([u.rows for u in units])[:-1]
    n_rows = int(base[-1]) + units[-1].rows
    slot_column = np.zeros(n_units * slots, dtype=np.intp)
    slot_threshold = np.full(n_units * slots, np.inf, dtype=np.float32)
    output = np.zeros((n_units, k), dtype=np.intp)
    for u, unit in enumerate(units):
        at = np.asarray(unit.nodes, dtype=np.intp)
        slot_column[u * slots : u * slots + at.size] = _node_columns(ensemble, at)
        slot_threshold[u * slots : u * slots + at.size] = _node_thresholds(ensemble, at)
        output[u, : len(unit.outputs)] = unit.outputs
    table = np.zeros((n_rows, k))
    margin_table = np.zeros(n_rows)
    # a block of whole units at a time: the intermediates of one block stay a few MiB
    starts = np.searchsorted(base, np.arange(0, n_rows, _TABULATE_ROWS))
    for lo, hi in itertools.pairwise(np.unique(np.r_[starts, n_units]).tolist()):
        first, end = int(base[lo]), int(base[hi]) if hi < n_units else n_rows
        _tabulate(nodes, units[lo:hi], base[lo:hi] - first, table[first:end], margin_table[first:end])
    # The entries of each feature in turn (padding left out); a feature no unit uses gets one padding entry (0).
    is_used = (np.arange(k)[None, :] < widths[:, None]).ravel()
    used = np.flatnonzero(is_used)
    by_feature = used[np.argsort(output.ravel()[used], kind="stable")]
    counts = np.bincount(output.ravel()[by_feature], minlength=n_features)
    unused = np.flatnonzero(counts == 0)
    if unused.size:
        by_feature = np.insert(by_feature, np.cumsum(counts)[unused], int(np.flatnonzero(~is_used)[0]))
    feature_start = np.r_[0, np.cumsum(np.maximum(counts, 1))[:-1]]
    return _TableGroup(
        width=width,
        slot_column=slot_column,
        slot_plain=slot_column % n_features,
        slot_threshold=slot_threshold,
        base=base,
        table=table,
        by_feature=by_feature,
        feature_start=feature_start,
        margin_table=margin_table,
    )


def _tabulate(
    nodes: _Nodes, units: list[_UnitPlan], base: IntArray, table: Float64Array, margin_table: Float64Array
) -> None:
    """Add the attributions and leaf values of units to their table rows (unit ``u`` starts at row ``base[u]``).

    ``np.add.at`` adds one term at a time, in the order given: each entry sums its unit's leaves shape by shape and
    leaf by leaf however many leaves are computed together, so the tables do not depend on ``_TABULATE_CHUNK``.
    """
    k = table.shape[1]
    # Leaves of the same shape (rows of their unit, nodes, unique features) are tabulated together.
    shapes: dict[tuple[int, int, int], list[tuple[int, _UnitPlan, _LeafPath]]] = {}
    for u, unit in enumerate(units):
        for leaf in unit.leaves(nodes):
            shapes.setdefault((unit.rows, len(leaf.nodes), len(leaf.features)), []).append((u, unit, leaf))
    for (rows, _, d), items in shapes.items():
        patterns = np.arange(rows, dtype=np.intp)
        step = max(1, _TABULATE_CHUNK // (rows * d + (1 << d) * d * d))
        for start in range(0, len(items), step):
            chunk = items[start : start + step]
            paths = [leaf for _, _, leaf in chunk]
            # bit position of each path node in its unit's row number; the unique feature the node tests, as a bit
            position = np.array([[unit.nodes.index(n) for n in leaf.nodes] for _, unit, leaf in chunk], dtype=np.intp)
            feature_bit = 1 << np.array([leaf.member for leaf in paths], dtype=np.intp)  # [P, D]
            right = np.array([leaf.right for leaf in paths], dtype=bool)
            leaves_path = ((patterns[:, None, None] >> position[None]) & 1).astype(bool) != right  # [R, P, D]
            missed = np.bitwise_or.reduce(np.where(leaves_path, feature_bit, 0), axis=-1)  # [R, P]: o = 0 there
            value = np.array([leaf.value for leaf in paths], dtype=np.float64)
            # A leaf's attributions depend on the row only through o: computed once per pattern of o (2**d <= rows).
            by_code = _pattern_attributions(np.array([leaf.zero_fraction for leaf in paths], dtype=np.float64), value)
            phi = by_code[((1 << d) - 1) & ~missed, np.arange(len(chunk))[None, :]]  # [R, P, d]
            row = base[[u for u, _, _ in chunk]][None, :] + patterns[:, None]  # [R, P]
            column = np.array([[unit.outputs.index(f) for f in leaf.features] for _, unit, leaf in chunk])
            # flat indices: NumPy's fast path for ufunc.at (leaves of one unit share rows and columns)
            np.add.at(table.reshape(-1), (row[:, :, None] * k + column[None, :, :]).ravel(), phi.ravel())
            np.add.at(margin_table, row.ravel(), ((missed == 0) * value[None, :]).ravel())


def _table_bytes(counts: dict[int, tuple[int, int]]) -> int:
    """Bytes of the tables of groups given as {width: (rows, widest unit's outputs)}, in float64 (the budget's unit).

    Counts the margin column and a padding column that :func:`_build_group` may add.
    """
    return sum(rows * (k + 2) * 8 for rows, k in counts.values())


class TreeShap:
    """Exact path-dependent TreeSHAP and margins of a tree ensemble, with float32 split conditions."""

    def __init__(
        self,
        ensemble: TreeEnsemble,
        *,
        max_table_bytes: int = MAX_TABLE_BYTES,
    ) -> None:
        """Cut the trees into units and precompute their tables."""
        self.n_features = int(ensemble.n_features)
        self._expected_value = float(ensemble.expected_value)
        constant = float(ensemble.base_offset)
        units: list[_UnitPlan] = []
        direct: list[_LeafPath] = []
        nodes = _Nodes.of(ensemble)
        for t in range(ensemble.n_trees):
            if ensemble.feature[ensemble.tree_offsets[t]] < 0:  # a single leaf: only shifts the margin
                constant += float(ensemble.value[ensemble.tree_offsets[t]])
                continue
            tree_units, deep = _tree_units(nodes, int(ensemble.tree_offsets[t]))
            units += tree_units
            direct += deep
        # Smallest tables first, so that the budget covers as many leaves as possible.
        units.sort(key=lambda u: u.rows * (len(u.outputs) + 1))
        kept: dict[int, list[_UnitPlan]] = {1: [], 2: []}
        counts: dict[int, tuple[int, int]] = {1: (0, 0), 2: (0, 0)}
        for unit in units:
            width = 1 if len(unit.nodes) <= UNIT_BITS else 2
            rows, k = counts[width]
            grown = {**counts, width: (rows + unit.rows, max(k, len(unit.outputs)))}
            if _table_bytes(grown) <= max_table_bytes:
                counts = grown
                kept[width].append(unit)
            else:
                direct += unit.leaves(nodes)
        self._margin_constant = constant
        self._groups = [_build_group(ensemble, nodes, kept[w], w) for w in (1, 2) if kept[w]]
        shapes: dict[tuple[int, int], list[_LeafPath]] = {}
        for path in direct:
            shapes.setdefault((len(path.nodes), len(path.features)), []).append(path)
        self._direct = [_PathGroup.of(ensemble, paths) for paths in shapes.values()]
        self.n_tables = len(kept[1])
        """Units with a one-byte row number (up to ``UNIT_BITS`` nodes)."""
        self.n_wide_tables = len(kept[2])
        """Units of a single deep leaf with a two-byte row number."""
        self.n_leaves_tabulated = sum(u.n_leaves for w in (1, 2) for u in kept[w])
        self.n_direct_paths = len(direct)
        self.table_bytes = int(sum(g.table.nbytes + g.margin_table.nbytes for g in self._groups))

    @property
    def expected_value(self) -> float:
        """The SHAP base value: cover-weighted mean margin (``TreeEnsemble.expected_value``)."""
        return self._expected_value

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """Exact path-dependent SHAP values of each row: float64 [n_rows, n_features]."""
        xx, plain = self._prepare(X)
        n = xx.shape[0]
        if n == 1 and len(self._groups) == 1 and not self._direct:  # the per-decision hot path
            g = self._groups[0]
            return g.attributions(g.row_index_1d(xx[0], plain)[None, :])
        out = np.zeros((n, self.n_features))
        for g in self._groups:
            if n == 1:
                out += g.attributions(g.row_index_1d(xx[0], plain)[None, :])
                continue
            for lo, hi in self._chunks(n, g):
                out[lo:hi] += g.attributions(g.row_index(xx[lo:hi], plain))
        for group in self._direct:
            self._direct_rows(group, self._doubled(xx, plain), out, None)
        return out

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of each row (float64 [n_rows]) with the same float32 split conditions."""
        xx, plain = self._prepare(X)
        n = xx.shape[0]
        out = np.full(n, self._margin_constant)
        for g in self._groups:
            if n == 1:
                out[0] += g.margin_table.take(g.row_index_1d(xx[0], plain)).sum()
                continue
            for lo, hi in self._chunks(n, g):
                out[lo:hi] += g.margin_table.take(g.row_index(xx[lo:hi], plain)).sum(axis=1)
        for group in self._direct:
            self._direct_rows(group, self._doubled(xx, plain), None, out)
        return out

    # ---- evaluation ----------------------------------------------------------------------------
    def _prepare(self, X: np.ndarray) -> tuple[Float32Array, bool]:
        """Validate shape; float32 rows, doubled ``[NaN as +inf, NaN as -inf]`` if any value is missing.

        Returns the rows and whether they are plain (no missing value, not doubled).
        """
        x32 = np.asarray(X, dtype=np.float32)
        if x32.ndim != 2 or x32.shape[1] != self.n_features:
            raise ValueError(f"expected an array of shape (n_rows, {self.n_features}), got {x32.shape}")
        if not np.isnan(x32.sum()):  # cheaper than isnan(x).any() when there is none (inf - inf is NaN too)
            return x32, True
        missing = np.isnan(x32)
        doubled = np.concatenate([np.where(missing, np.float32(np.inf), x32), np.where(missing, -np.inf, x32)], axis=1)
        return doubled.astype(np.float32, copy=False), False

    @staticmethod
    def _doubled(xx: Float32Array, plain: bool) -> Float32Array:
        """The doubled form of prepared rows (a copy side by side when there was no missing value)."""
        return np.concatenate([xx, xx], axis=1) if plain else xx

    @staticmethod
    def _step(group: _TableGroup) -> int:
        """Rows per chunk: few enough to keep the per-chunk intermediates in cache."""
        return max(1, _EVAL_CHUNK // max(group.by_feature.size, group.slot_column.size, 1))

    def _chunks(self, n_rows: int, group: _TableGroup) -> list[tuple[int, int]]:
        """Row ranges of at most :meth:`_step` rows."""
        step = self._step(group)
        return [(lo, min(lo + step, n_rows)) for lo in range(0, n_rows, step)]

    def _direct_rows(
        self, group: _PathGroup, xx: Float32Array, attributions: Float64Array | None, margin: Float64Array | None
    ) -> None:
        """Evaluate untabulated paths with the closed-form Shapley sum (exact, O(d^2) per path and row)."""
        n_paths, d = group.feature.shape
        step = max(1, _BUILD_CHUNK // (n_paths * d * d))
        for lo in range(0, xx.shape[0], step):
            o, reached = group.inside(xx[lo : lo + step][:, group.column] > group.threshold)  # [n, P, d], [n, P]
            if margin is not None:
                margin[lo : lo + step] += (reached * group.value).sum(axis=1)
            if attributions is not None:
                phi = _path_attributions(o.astype(np.float64), group.zero_fraction, group.value)
                n = o.shape[0]
                flat = (np.arange(n)[:, None, None] * self.n_features + group.feature[None]).ravel()
                add = np.bincount(flat, weights=phi.ravel(), minlength=n * self.n_features)
                attributions[lo : lo + step] += add.reshape(n, self.n_features)
