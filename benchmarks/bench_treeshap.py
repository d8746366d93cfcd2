"""Benchmark ``model_store.treeshap.TreeShap`` against the previous implementation, side by side (a script, not a test).

Run with ``.venv/bin/python -m benchmarks.bench_treeshap [--store DIR]``. It trains the default example's
model (``training.pipeline.train``) and builds the production-size model (``benchmarks.prodmodel``: 500
trees of depth 6, 129 columns) into DIR (a temporary directory if not given; an existing DIR holding
both is reused), then prints for each model, for the current implementation ("new") and the
previous one kept in ``benchmarks/treeshap_v1.py`` ("old"):

* table memory and build time;
* the largest difference between the two and the additivity error against the artifact's margin;
* median µs per row at batch size 1 (a different application each call) and at batch size 256,
  as wall time and as the process's CPU time (steadier when other work shares the cores); old and
  new alternate call by call, so both see the same load;
* the ONNX run of the same row (score only), for the cost of exact reasons relative to scoring.

Agreement with ``shap.TreeExplainer`` itself is proved in ``tests/test_treeshap.py`` and at export.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.treeshap_v1 import TreeShap as PreviousTreeShap
from model_store.store import ModelBundle, ModelStore
from model_store.treeshap import TreeShap

BATCH = 256
SINGLE_REPEATS = 400
BATCH_REPEATS = 9


@dataclass(frozen=True)
class Timing:
    """Median microseconds per row: wall clock and process CPU time."""

    wall_us: float
    cpu_us: float


def ensure_models(root: Path) -> dict[str, tuple[str, str]]:
    """The default model and the production-size one in ``root``, trained/built there if missing."""
    from benchmarks import prodmodel
    from benchmarks.run import default_model

    store = ModelStore(root)
    default = default_model()
    if default not in store.names():
        from benchmarks.run import default_config
        from training.pipeline import train

        print("training the default model ...", file=sys.stderr)
        train(default_config().path, store, progress=False)
    if prodmodel.NAME not in store.names():
        print("building the production-size model (about a minute) ...", file=sys.stderr)
        prodmodel.build(root)
    return {
        "default model": (default, store.versions(default)[-1]),
        "production-size model": (prodmodel.NAME, store.versions(prodmodel.NAME)[-1]),
    }


def sample_rows(bundle: ModelBundle, n: int) -> np.ndarray:
    """Encoded applications: the stored reference ones, then random valid ones of the same spec."""
    from benchmarks import prodmodel

    apps = list(bundle.reference["applications"])
    apps += prodmodel.applications(bundle.spec, n, np.random.default_rng(7))
    return np.asarray(bundle.spec.encode(apps[:n]), dtype=np.float32)


def per_row(
    fns: dict[str, Callable[[np.ndarray], object]], rows: np.ndarray, batch: int, repeats: int
) -> dict[str, Timing]:
    """Median µs per row of each function on successive batches of ``rows``, the functions taking turns."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm up
        fn(rows[:batch])
    for i in range(repeats):
        lo = (i * batch) % (rows.shape[0] - batch + 1)
        chunk = rows[lo : lo + batch]
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn(chunk)
            wall[name].append((time.perf_counter() - w0) / batch)
            cpu[name].append((time.process_time() - c0) / batch)
    return {k: Timing(statistics.median(wall[k]) * 1e6, statistics.median(cpu[k]) * 1e6) for k in fns}


def bench_model(label: str, bundle: ModelBundle) -> None:
    """Print the side-by-side numbers of one model."""
    import onnxruntime as ort

    ensemble = bundle.explainer
    t0 = time.perf_counter()
    new = TreeShap(ensemble)
    new_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    old = PreviousTreeShap(ensemble)
    old_build = time.perf_counter() - t0
    rows = sample_rows(bundle, 4096)
    check = rows[:500].astype(np.float64)
    new_phi, old_phi = new.shap_values(check), old.shap_values(check)
    additivity = float(np.max(np.abs(new_phi.sum(axis=1) + new.expected_value - ensemble.margin(check))))
    n_leaves = int((ensemble.feature < 0).sum())
    print(
        f"\n== {label}: {bundle.name} {bundle.version} ({ensemble.n_trees} trees, {n_leaves} leaves, {ensemble.n_features} columns)"
    )
    print(
        f"tables    : new {new.table_bytes / 2**20:6.1f} MiB ({new.n_tables} units of <= 8 nodes, {new.n_wide_tables} wide, "
        f"{new.n_direct_paths} paths direct), built in {new_build:.2f} s | old {old.table_bytes / 2**20:6.1f} MiB, "
        f"built in {old_build:.2f} s"
    )
    print(
        f"exactness : max |new - old| = {float(np.max(np.abs(new_phi - old_phi))):.1e}; "
        f"max |sum(phi) + base - margin| = {additivity:.1e}; recorded vs shap at export: "
        f"{bundle.manifest.get('parity', {}).get('attributions_vs_shap', float('nan')):.1e}"
    )
    session = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    fns: dict[str, Callable[[np.ndarray], object]] = {
        "old": old.shap_values,
        "new": new.shap_values,
        "onnx": lambda x: session.run(None, {input_name: x}),
    }
    single = per_row(fns, rows, 1, SINGLE_REPEATS)
    batch = per_row(fns, rows, BATCH, BATCH_REPEATS)
    for size, result in (("batch 1  ", single), (f"batch {BATCH}", batch)):
        o, n, s = result["old"], result["new"], result["onnx"]
        print(
            f"{size}: old {o.wall_us:8.1f} us/row (cpu {o.cpu_us:8.1f}) | new {n.wall_us:8.1f} us/row "
            f"(cpu {n.cpu_us:8.1f}) | speed-up {o.wall_us / n.wall_us:4.1f}x (cpu {o.cpu_us / n.cpu_us:4.1f}x) "
            f"| ONNX score only {s.wall_us:6.1f} us/row"
        )
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Build or reuse the models and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", type=Path, help="model store to build into or reuse (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-treeshap-") as tmp:
        root = args.store or Path(tmp) / "store"
        store = ModelStore(root)
        for label, (name, version) in ensure_models(root).items():
            bench_model(label, store.load_bundle(name, version))


if __name__ == "__main__":
    main()
