"""Benchmark ``model_store.treeshap.TreeShap`` against ``shap.TreeExplainer`` (a script, not a test).

Run with ``.venv/bin/python -m benchmarks.bench_treeshap``. Prints, for each model, the median
microseconds per single-row call and the batch throughput over 10,000 rows, plus the size of the
precomputed tables and the largest deviation from shap's values.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shap
from sklearn.ensemble import HistGradientBoostingClassifier

from model_store.treeshap import TreeShap
from training.trees import ensemble_from_hgb


@dataclass(frozen=True)
class Case:
    """A synthetic model to benchmark."""

    name: str
    n_features: int
    n_trees: int
    max_depth: int
    max_leaf_nodes: int | None
    n_train: int


CASES = (
    Case("a: 200 trees, depth 3, 55 features", 55, 200, 3, None, 5_000),
    Case("b: 500 trees, depth 6, 120 features", 120, 500, 6, None, 20_000),
)


def _fit(case: Case, rng: np.random.Generator) -> tuple[HistGradientBoostingClassifier, np.ndarray]:
    """Fit a model on synthetic data (half integer-valued features) and return it with fresh test rows."""
    n, p = case.n_train, case.n_features
    X = rng.normal(size=(n + 10_000, p))
    X[:, ::2] = rng.integers(0, 12, size=(n + 10_000, (p + 1) // 2))
    coef = rng.normal(size=p) / np.sqrt(p)
    logit = X @ coef + 0.5 * np.sin(X[:, 1] * X[:, 3]) + 0.3 * X[:, 2] * X[:, 4]
    y = (logit + rng.logistic(size=n + 10_000) > 0).astype(int)
    model = HistGradientBoostingClassifier(
        max_iter=case.n_trees,
        max_depth=case.max_depth,
        max_leaf_nodes=case.max_leaf_nodes,
        learning_rate=0.05,
        early_stopping=False,
        min_samples_leaf=5,
        random_state=0,
    ).fit(X[:n], y[:n])
    return model, X[n:].astype(np.float32)


def _median_us_per_row(fn: Callable[[np.ndarray], object], rows: np.ndarray, repeats: int) -> float:
    """Median wall time in microseconds of ``fn`` on one row at a time."""
    times = []
    for i in range(repeats):
        row = rows[i % rows.shape[0] : i % rows.shape[0] + 1]
        t0 = time.perf_counter()
        fn(row)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def _rows_per_second(fn: Callable[[np.ndarray], object], rows: np.ndarray, repeats: int = 3) -> float:
    """Best-of-``repeats`` batch throughput."""
    best = min(_timed(fn, rows) for _ in range(repeats))
    return rows.shape[0] / best


def _timed(fn: Callable[[np.ndarray], object], rows: np.ndarray) -> float:
    t0 = time.perf_counter()
    fn(rows)
    return time.perf_counter() - t0


def main() -> None:
    """Run every case and print the numbers."""
    rng = np.random.default_rng(20261121)
    for case in CASES:
        t0 = time.perf_counter()
        model, rows = _fit(case, rng)
        fit_s = time.perf_counter() - t0
        ensemble = ensemble_from_hgb(model)
        t0 = time.perf_counter()
        explainer = TreeShap(ensemble)
        build_s = time.perf_counter() - t0
        reference = shap.TreeExplainer(model)
        rows64 = rows.astype(np.float64)
        check = rows64[:500]
        deviation = float(np.max(np.abs(explainer.shap_values(check) - reference.shap_values(check))))
        additivity = float(
            np.max(
                np.abs(
                    explainer.shap_values(check).sum(axis=1) + explainer.expected_value - model.decision_function(check)
                )
            )
        )
        print(f"\n== {case.name} ({ensemble.n_nodes} nodes; fit {fit_s:.1f}s, tables built in {build_s:.2f}s)")
        print(
            f"tables: {explainer.table_bytes / 2**20:.1f} MiB "
            f"({explainer.n_subtree_tables} subtree tables, {explainer.n_path_tables} path tables, "
            f"{explainer.n_direct_paths} direct paths)"
        )
        print(f"max |phi - shap| = {deviation:.2e}; max additivity error = {additivity:.2e}")
        single_repeats = 2000 if case.max_depth <= 3 else 200
        ours_single = _median_us_per_row(explainer.shap_values, rows, single_repeats)
        shap_single = _median_us_per_row(reference.shap_values, rows64, min(single_repeats, 300))
        margin_single = _median_us_per_row(explainer.margin, rows, single_repeats)
        ours_batch = _rows_per_second(explainer.shap_values, rows)
        shap_batch = _rows_per_second(reference.shap_values, rows64, repeats=1)
        print(f"single row : TreeShap {ours_single:9.1f} us/row | shap.TreeExplainer {shap_single:9.1f} us/row")
        print(f"batch 10k  : TreeShap {ours_batch:9.0f} rows/s | shap.TreeExplainer {shap_batch:9.0f} rows/s")
        print(f"margin     : TreeShap {margin_single:9.1f} us/row (single)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
