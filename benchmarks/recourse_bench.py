"""In-process benchmark of actionable recourse: the time to find what would change one refer or decline.

Every application of the data that the model refers or declines is searched ``repeat`` times with
``service.core.recourse.find_recourse`` (the same call ``POST /v1/decisions?recourse=true`` makes after
deciding); the report gives p50, p99 and the worst time in ms, how many candidates a search evaluates and
the share of refer/decline decisions with a proposal. The budget is p99 <= 20 ms for the default model.
Wall time on a machine shared with other work includes waiting for a CPU; the process CPU time of each
search (``cpu_p50_ms``, ``cpu_p99_ms``) is given beside it.

Run alone: ``python -m benchmarks.recourse_bench STORE_ROOT NAME VERSION [CSV]`` (CSV: the default
example's training data).
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BUDGET_P99_MS = 20.0


def run(
    store_root: Path, name: str, version: str, applications: Sequence[Mapping[str, Any]], repeat: int = 3
) -> dict[str, Any]:
    """p50/p99/max ms of one recourse search over the refer and decline decisions among ``applications``."""
    from model_store.store import ModelStore
    from service.core.recourse import find_recourse
    from service.runtime import ServedModel

    model = ServedModel.load(ModelStore(store_root), name, version)
    engine = model.engine
    decisions = engine.decide(applications).decisions()
    targets = [a for a, d in zip(applications, decisions, strict=True) if d != "approve"]
    if not targets:
        return {"applications": 0}
    for application in targets[:20]:  # warm-up
        find_recourse(engine, application)
    times: list[float] = []
    cpu: list[float] = []
    found = candidates = 0
    for _ in range(repeat):
        for application in targets:
            started, started_cpu = time.perf_counter(), time.process_time()
            recourse = find_recourse(engine, application)
            times.append((time.perf_counter() - started) * 1000.0)
            cpu.append((time.process_time() - started_cpu) * 1000.0)
            found += recourse.status == "found"
            candidates += recourse.candidates
    return {
        "applications": len(targets),
        "searches": len(times),
        "p50_ms": statistics.median(times),
        "p99_ms": float(np.percentile(times, 99)),
        "max_ms": max(times),
        "cpu_p50_ms": statistics.median(cpu),
        "cpu_p99_ms": float(np.percentile(cpu, 99)),
        "found_share": found / len(times),
        "candidates_mean": candidates / len(times),
        "budget_p99_ms": BUDGET_P99_MS,
    }


def data_applications(csv_path: Path, spec_path: Path) -> list[dict[str, Any]]:
    """The rows of a training CSV as API applicants."""
    from model_store.spec import FeatureSpec

    spec = FeatureSpec.load(spec_path)
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return [spec.from_source_row(row) for row in csv.DictReader(fh)]


if __name__ == "__main__":
    root, model_name, model_version = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    if len(sys.argv) > 4:
        data = Path(sys.argv[4])
    else:
        from benchmarks.run import default_config

        data = default_config().data_csv
    apps = data_applications(data, root / model_name / model_version / "feature_spec.yaml")
    out = run(root, model_name, model_version, apps)
    for key, value in out.items():
        print(f"{key:<16} {value:.3f}" if isinstance(value, float) else f"{key:<16} {value}")
