"""The baseline: a WOE-binned logistic-regression scorecard, stored as one tree per field.

Each field is binned with optbinning's ``OptimalBinning`` (monotone event-rate trend where the
spec gives one: spec ``monotone`` +1 = a higher value never lowers the probability of default =
optbinning ``"ascending"`` event rate, the event being *bad*). Each row's field value is replaced
by the weight of evidence of its bin and a scikit-learn ``LogisticRegression`` is fitted on those
WOE features. Bin membership is defined by this module (numeric: ``x <= threshold`` on float32
thresholds; categorical: a code-to-bin table), so the explainer trees, the ONNX graph and the
scikit-learn reference all bin identically.

Categories that never occur in the training data are pooled with the field's most populous bin.

Missing values (fields the spec lets be missing): a categorical field's ``(missing)`` column is binned
like any other category. A numeric field's missing values (NaN) get a bin of their own, tested first in
the field's tree (``x <= float32 max`` holds for every number, a NaN goes right to the missing leaf);
when the training data has too few missing values for a bin (fewer than ``min_bin_size`` of the rows,
or all good or all bad), missing values are pooled with the field's most populous bin, by sending them
that way at every split (the tree's ``default_left``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from model_store.explainer import TreeEnsemble
from model_store.spec import FeatureSpec

_TREND = {1: "ascending", -1: "descending", 0: "auto"}
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class FieldBins:
    """The bins of one field and their weights of evidence."""

    field: str
    kind: str
    columns: tuple[int, ...]  # encoded columns of the field (one for numeric)
    thresholds: tuple[float, ...]  # numeric: bin i holds thresholds[i-1] < x <= thresholds[i]
    category_bin: tuple[int, ...]  # categorical: bin of each code, in spec order
    woe: tuple[float, ...]  # per bin
    bin_counts: tuple[int, ...]  # training rows per bin
    bin_bads: tuple[int, ...]  # training bad rows per bin
    category_counts: tuple[int, ...]  # categorical: training rows per code
    missing_bin: int | None = None  # numeric: the bin of a missing value (its own last bin, or a pooled one)
    missing_own_bin: bool = False  # numeric: the missing bin is a bin of its own (the last one)

    def bin_of(self, X: np.ndarray) -> np.ndarray:
        """Bin index of each row of the encoded matrix (int64)."""
        if self.kind == "numeric":
            x = np.asarray(X[:, self.columns[0]], dtype=np.float64)
            bins = np.searchsorted(np.asarray(self.thresholds, dtype=np.float64), x, side="left").astype(np.int64)
            missing = np.isnan(x)
            if missing.any():
                if self.missing_bin is None:
                    raise ValueError(f"scorecard: field '{self.field}' may not be missing")
                bins[missing] = self.missing_bin
            return bins
        code = np.argmax(np.asarray(X[:, list(self.columns)]), axis=1)
        bins: np.ndarray = np.asarray(self.category_bin, dtype=np.int64)[code]
        return bins

    def labels(self, codes: tuple[str, ...]) -> list[str]:
        """Human-readable description of each bin."""
        if self.kind == "numeric":
            edges = [-np.inf, *self.thresholds, np.inf]
            regular = len(self.woe) - int(self.missing_own_bin)
            labels = [_interval(edges[i], edges[i + 1]) for i in range(regular)]
            if self.missing_own_bin:
                labels.append("missing")
            elif self.missing_bin is not None:
                labels[self.missing_bin] += " or missing"
            return labels
        return [
            ", ".join(c for c, b in zip(codes, self.category_bin, strict=True) if b == k) for k in range(len(self.woe))
        ]


class WoeScorecard:
    """WOE binning per field + logistic regression on the WOE features (scikit-learn style)."""

    def __init__(self, spec: FeatureSpec, max_n_bins: int = 5, min_bin_size: float = 0.05, C: float = 1.0) -> None:
        self.spec = spec
        self.max_n_bins = max_n_bins
        self.min_bin_size = min_bin_size
        self.C = C

    def fit(self, X: np.ndarray, y: np.ndarray) -> WoeScorecard:
        """Bin every field on (X, y), then fit the logistic regression on the WOE matrix."""
        y = np.asarray(y, dtype=np.int64)
        if set(np.unique(y)) != {0, 1}:
            raise ValueError("the scorecard needs both good (0) and bad (1) rows")
        col_field = self.spec.column_field_index
        self.bins_ = tuple(
            self._bin_field(
                f.name, f.kind, f.monotone, f.column_codes, tuple(np.flatnonzero(col_field == i)), X, y, f.missing
            )
            for i, f in enumerate(self.spec.fields)
        )
        self.woe_train_ = self.woe(X)
        self.model_ = LogisticRegression(C=self.C, max_iter=5000, tol=1e-10)
        self.model_.fit(self.woe_train_, y)
        return self

    def _bin_field(
        self,
        name: str,
        kind: str,
        monotone: int,
        codes: tuple[str, ...],
        columns: tuple[int, ...],
        X: np.ndarray,
        y: np.ndarray,
        may_be_missing: bool = False,
    ) -> FieldBins:
        _quiet_cvxpy_solver_probe()
        from optbinning import OptimalBinning

        common: dict[str, Any] = {"max_n_bins": self.max_n_bins, "min_bin_size": self.min_bin_size, "name": name}
        missing_bin: int | None = None
        missing_own_bin = False
        if kind == "numeric":
            x = np.asarray(X[:, columns[0]], dtype=np.float32)
            present = ~np.isnan(x)
            if not may_be_missing and not present.all():
                raise ValueError(f"scorecard: field '{name}' has missing values but may not be missing")
            ob = OptimalBinning(dtype="numerical", monotonic_trend=_TREND[monotone], **common)
            ob.fit(x[present].astype(np.float64), y[present])
            thresholds = tuple(_float32_below(s) for s in np.asarray(ob.splits, dtype=np.float64))
            idx = np.searchsorted(np.asarray(thresholds, dtype=np.float64), x.astype(np.float64), side="left")
            n_bins = len(thresholds) + 1
            if may_be_missing:
                n_missing = int((~present).sum())
                bads_missing = int(y[~present].sum())
                own = n_missing >= self.min_bin_size * len(y) and 0 < bads_missing < n_missing
                regular = np.bincount(idx[present], minlength=n_bins)
                missing_bin = n_bins if own else int(np.argmax(regular))
                missing_own_bin = own
                idx[~present] = missing_bin
                n_bins += int(own)
            category_counts: tuple[int, ...] = ()
            category_bin: tuple[int, ...] = ()
        else:
            code_idx = np.argmax(np.asarray(X[:, list(columns)]), axis=1)
            labels = np.asarray(codes, dtype=object)[code_idx].astype(str)
            ob = OptimalBinning(dtype="categorical", **common)
            ob.fit(labels, y)
            groups = [set(map(str, g)) for g in ob.splits] if len(ob.splits) else [set(np.unique(labels))]
            counts = np.bincount(code_idx, minlength=len(codes))
            assigned = [next((k for k, g in enumerate(groups) if c in g), -1) for c in codes]
            per_group = [int(sum(counts[j] for j, b in enumerate(assigned) if b == k)) for k in range(len(groups))]
            modal = int(np.argmax(per_group))
            category_bin = tuple(b if b >= 0 else modal for b in assigned)
            category_counts = tuple(int(c) for c in counts)
            idx = np.asarray(category_bin, dtype=np.int64)[code_idx]
            n_bins = len(groups)
        bin_counts = np.bincount(idx, minlength=n_bins)
        bin_bads = np.bincount(idx, weights=y, minlength=n_bins).astype(np.int64)
        if np.any(bin_counts == 0) or np.any(bin_bads == 0) or np.any(bin_bads == bin_counts):
            raise ValueError(f"scorecard: field '{name}' has an empty or pure bin; raise min_bin_size")
        # WOE = ln(share of goods / share of bads), optbinning's sign convention: high WOE = low risk
        goods, bads = bin_counts - bin_bads, bin_bads
        woe = np.log((goods / goods.sum()) / (bads / bads.sum()))
        return FieldBins(
            field=name,
            kind=kind,
            columns=columns,
            thresholds=thresholds if kind == "numeric" else (),
            category_bin=category_bin,
            woe=tuple(float(w) for w in woe),
            bin_counts=tuple(int(c) for c in bin_counts),
            bin_bads=tuple(int(b) for b in bin_bads),
            category_counts=category_counts,
            missing_bin=missing_bin,
            missing_own_bin=missing_own_bin,
        )

    # ---- prediction ----------------------------------------------------------------------
    def woe(self, X: np.ndarray) -> np.ndarray:
        """WOE matrix: one float64 column per field."""
        return np.column_stack([np.asarray(b.woe, dtype=np.float64)[b.bin_of(X)] for b in self.bins_])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of default."""
        return np.asarray(self.model_.decision_function(self.woe(X)), dtype=np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """[P(good), P(bad)] per row, as scikit-learn's LogisticRegression computes it."""
        return np.asarray(self.model_.predict_proba(self.woe(X)), dtype=np.float64)

    @property
    def coefficients(self) -> np.ndarray:
        """Logistic-regression coefficient of each field's WOE."""
        return np.asarray(self.model_.coef_[0], dtype=np.float64)

    @property
    def intercept(self) -> float:
        """Logistic-regression intercept."""
        return float(self.model_.intercept_[0])

    # ---- explainer artifact --------------------------------------------------------------
    def to_ensemble(self) -> TreeEnsemble:
        """One tree per field; leaves hold coefficient * WOE, covers are training counts."""
        nodes: list[list[Any]] = []  # [left, right, feature, threshold, value, cover, default_left]
        offsets = [0]
        for j, b in enumerate(self.bins_):
            coef = float(self.model_.coef_[0, j])
            if b.kind == "numeric" and b.missing_own_bin:
                # numbers (all <= float32 max) go left to their bins; a missing value goes right to its own leaf
                me = len(nodes)
                regular = len(b.woe) - 1
                nodes.append([0, 0, b.columns[0], _F32_MAX, 0.0, float(sum(b.bin_counts)), False])
                nodes[me][0] = _balanced(nodes, b, coef, 0, regular)
                nodes[me][1] = len(nodes)
                nodes.append([-1, -1, -1, np.nan, coef * b.woe[regular], float(b.bin_counts[regular]), False])
            elif b.kind == "numeric":
                _balanced(nodes, b, coef, 0, len(b.woe))
            else:
                _chain(nodes, b, coef)
            offsets.append(len(nodes))
        arr = list(zip(*nodes, strict=True))
        return TreeEnsemble(
            tree_offsets=np.asarray(offsets, dtype=np.int64),
            children_left=np.asarray(arr[0], dtype=np.int64),
            children_right=np.asarray(arr[1], dtype=np.int64),
            feature=np.asarray(arr[2], dtype=np.int64),
            threshold=np.asarray(arr[3], dtype=np.float64),
            value=np.asarray(arr[4], dtype=np.float64),
            cover=np.asarray(arr[5], dtype=np.float64),
            default_left=np.asarray(arr[6], dtype=bool),
            base_offset=self.intercept,
            n_features=len(self.spec.columns),
        )

    def bin_tables(self) -> list[dict[str, Any]]:
        """Per field: bins with counts, bad rates, WOE and points contribution (log-odds)."""
        out = []
        for f, b, coef in zip(self.spec.fields, self.bins_, self.coefficients, strict=True):
            rows = [
                {
                    "bin": label,
                    "count": n,
                    "bad_rate": bad / n,
                    "woe": w,
                    "log_odds": float(coef * w),
                }
                for label, n, bad, w in zip(b.labels(f.column_codes), b.bin_counts, b.bin_bads, b.woe, strict=True)
            ]
            out.append({"field": f.name, "coefficient": float(coef), "bins": rows})
        return out


def _float32_below(split: float) -> float:
    """Largest float32 strictly below ``split``: for float32 x, ``x < split`` iff ``x <= result``."""
    t = np.float32(split)
    if float(t) >= split:
        t = np.nextafter(t, np.float32(-np.inf))
    return float(t)


def _interval(lo: float, hi: float) -> str:
    if np.isinf(lo):
        return f"<= {hi:g}"
    if np.isinf(hi):
        return f"> {lo:g}"
    return f"({lo:g}, {hi:g}]"


def _balanced(nodes: list[list[Any]], b: FieldBins, coef: float, lo: int, hi: int) -> int:
    """Append the subtree over bins [lo, hi) in preorder; return its root index.

    A missing value pooled with a regular bin is sent towards that bin at every split.
    """
    me = len(nodes)
    if hi - lo == 1:
        nodes.append([-1, -1, -1, np.nan, coef * b.woe[lo], float(b.bin_counts[lo]), False])
        return me
    mid = (lo + hi) // 2
    pooled_left = not b.missing_own_bin and b.missing_bin is not None and b.missing_bin < mid
    nodes.append([0, 0, b.columns[0], b.thresholds[mid - 1], 0.0, float(sum(b.bin_counts[lo:hi])), pooled_left])
    nodes[me][0] = _balanced(nodes, b, coef, lo, mid)
    nodes[me][1] = _balanced(nodes, b, coef, mid, hi)
    return me


def _chain(nodes: list[list[Any]], b: FieldBins, coef: float) -> None:
    """Append a chain testing ``column <= 0.5`` for each code outside the most populous bin."""
    modal = int(np.argmax(b.bin_counts))
    tested = [k for k, bin_ in enumerate(b.category_bin) if bin_ != modal]
    remaining = float(sum(b.category_counts))
    for k in tested:
        me = len(nodes)
        nodes.append([me + 2, me + 1, b.columns[k], 0.5, 0.0, remaining, False])
        nodes.append([-1, -1, -1, np.nan, coef * b.woe[b.category_bin[k]], float(b.category_counts[k]), False])
        remaining -= b.category_counts[k]
    nodes.append([-1, -1, -1, np.nan, coef * b.woe[modal], float(b.bin_counts[modal]), False])


def _quiet_cvxpy_solver_probe() -> None:
    """Silence cvxpy's import-time solver probe, which optbinning triggers.

    ortools 9.15 (required by optbinning 1.0) bundles HiGHS 1.12 under the same library name as
    highspy 1.15 (required by cvxpy 1.9), so cvxpy's probe of its optional HIGHS solver logs an
    ImportError. Neither cvxpy nor HiGHS is used by the binning this module runs (ortools CP-SAT),
    so the probe's warning is noise; any real error still raises.
    """
    import logging

    logger = logging.getLogger("__cvxpy__")  # cvxpy resets the level on import; a filter stays
    if not any(isinstance(f, _HighsProbeFilter) for f in logger.filters):
        logger.addFilter(_HighsProbeFilter())


class _HighsProbeFilter:
    """Drops only the log record about the HIGHS solver probe."""

    def filter(self, record: object) -> bool:
        """False for cvxpy's 'importing solver HIGHS' warning, True for everything else."""
        message = getattr(record, "msg", "")
        return not (
            isinstance(message, str) and message.startswith("Encountered unexpected exception importing solver HIGHS")
        )
