"""In-process micro-benchmarks of every stage of one decision, and a profile of the whole request.

Median microseconds over many repetitions of: validation (marshmallow schema load), feature
encoding, the ONNX run, exact TreeSHAP attribution, rules + band + reason ranking, JSON
serialisation of the response, the durable record write (SQLite), the whole decision core and the
whole HTTP request through the Flask test client; plus the vectorised batch core's rows/s.

Run alone: ``python -m benchmarks.micro STORE_ROOT NAME VERSION``.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def median_us(fn: Callable[[], object], repeat: int, warmup: int = 20) -> float:
    """Median wall time of ``fn()`` in microseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def run_all(
    store_root: Path,
    name: str,
    version: str,
    workdir: Path,
    *,
    quick: bool = False,
    profile: bool = True,
    applications: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every stage's median µs, the batch core's rows/s and (optionally) the request profile."""
    from flask import json as flask_json
    from service.core.batch import BatchDecider, columns_from_applications

    from service.app import create_app
    from service.auth import new_key
    from service.records.model import DecisionRecord
    from service.serialize import decision_to_json
    from service.state import get_state

    db = workdir / f"micro-{name}-{version}.sqlite3"
    key = new_key()
    app = create_app(
        {
            "API_KEYS": f"scorer:{key}",
            "MODEL_STORE": str(store_root),
            "MODEL_NAME": name,
            "MODEL_VERSION": version,
            "DATABASE_URL": f"sqlite:///{db}",
        }
    )
    state = get_state(app)
    model, schemas, store = state.require_ready()
    bundle = model.bundle
    spec, engine = bundle.spec, model.engine
    apps = list(applications or bundle.reference["applications"])
    bodies = [{"application_id": f"M-{i}", "applicant": dict(a)} for i, a in enumerate(apps)]
    n = 300 if quick else 2000
    slow = 50 if quick else 300
    cycle = _cycler(len(bodies))

    body = bodies[0]
    applicant = body["applicant"]
    X = spec.encode([applicant])
    stages: dict[str, float] = {}
    stages["validation (marshmallow schema load)"] = median_us(lambda: schemas.load_request(bodies[next(cycle)]), n)
    stages["feature encoding (spec.encode)"] = median_us(lambda: spec.encode([applicant]), n)
    stages["ONNX run (onnxruntime)"] = median_us(lambda: model.scorer.score(X), n)
    stages["exact TreeSHAP attribution"] = median_us(lambda: model.explainer.shap_values(X), n)
    stages["rules, band and reason ranking"] = _rules_and_reasons_us(engine, applicant, X, n)
    decision = engine.decide_many([applicant])[0]
    stages["decision core total (DecisionEngine.decide_many)"] = median_us(lambda: engine.decide_many([applicant]), n)
    scaling = bundle.policy.scaling

    def response() -> dict[str, Any]:
        return decision_to_json(
            decision_id=uuid.uuid4().hex,
            application_id=body["application_id"],
            decision=decision,
            model=model.info,
            score_range=(scaling.min_score, scaling.max_score),
            created_at=datetime.now(UTC),
            latency_ms=1.0,
        )

    with app.app_context():
        stages["JSON serialisation of the response"] = median_us(lambda: flask_json.dumps(response()), n)
    payload = {"request": body, "response": response(), "attributions": dict(decision.attributions)}

    def record() -> None:
        store.save(
            DecisionRecord(
                decision_id=uuid.uuid4().hex,
                application_id=body["application_id"],
                created_at=datetime.now(UTC),
                idempotency_key=None,
                request_hash="0" * 64,
                decision=decision.decision,
                risk_band=decision.risk_band,
                score=decision.score,
                model_name=model.info.name,
                model_version=model.info.version,
                reason_codes=tuple(r.code for r in decision.reasons),
                payload=payload,
            )
        )

    stages["record write (SQLite, durable commit)"] = median_us(record, slow, warmup=5)
    client = app.test_client()

    def request() -> None:
        response = client.post("/v1/decisions", json=bodies[next(cycle)], headers={"Authorization": f"Bearer {key}"})
        if response.status_code != 201:
            raise RuntimeError(
                f"decision request failed: {response.status_code} {response.get_data(as_text=True)[:500]}"
            )

    stages["whole request (Flask test client)"] = median_us(request, slow, warmup=5)

    # the vectorised batch core on many rows at once
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(apps), size=2_000 if quick else 20_000)
    columns = columns_from_applications(spec, [apps[i] for i in picks])
    decider = BatchDecider(spec, bundle.policy, bundle.catalog, model.scorer, model.explainer)
    decider.decide({k: v[:100] for k, v in columns.items()})
    t = time.perf_counter()
    decider.decide(columns)
    batch_s = time.perf_counter() - t

    result: dict[str, Any] = {
        "stages": stages,
        "batch_core": {"rows": len(picks), "rows_per_s": len(picks) / batch_s},
    }
    if profile:
        result["profile"] = profile_requests(lambda: request(), 200 if quick else 1000)
    store.close() if hasattr(store, "close") else None
    return result


def _rules_and_reasons_us(engine: Any, applicant: Mapping[str, Any], X: np.ndarray, n: int) -> float:
    """The engine's per-row work after scoring and attribution (private hooks; else a difference)."""
    margin, probability = engine.scorer.score(X)
    phi = engine.explainer.shap_values(X)
    if hasattr(engine, "_one") and hasattr(engine, "_column_to_field") and hasattr(engine, "_field_to_group"):
        fields = phi @ engine._column_to_field
        groups = fields @ engine._field_to_group
        score = int(engine.policy.scaling.scores(margin)[0])
        try:
            engine._one(applicant, float(margin[0]), float(probability[0]), score, fields[0], groups[0])
            return median_us(
                lambda: engine._one(applicant, float(margin[0]), float(probability[0]), score, fields[0], groups[0]), n
            )
        except TypeError:
            pass
    total = median_us(lambda: engine.decide_many([applicant]), n)
    parts = (
        median_us(lambda: engine.spec.encode([applicant]), n)
        + median_us(lambda: engine.scorer.score(X), n)
        + median_us(lambda: engine.explainer.shap_values(X), n)
    )
    return max(0.0, total - parts)


def profile_requests(request: Callable[[], None], n: int, top: int = 22) -> str:
    """cProfile of ``n`` requests: the top functions by own time, paths shortened."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        request()
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    lines = text.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    header = next((line.strip() for line in lines if "function calls" in line), "")
    body = [_shorten(line) for line in lines[start:] if line.strip()]
    return "\n".join([f"{n} requests; {header}", *body])


def _shorten(line: str) -> str:
    for prefix in (str(REPO) + "/", sys.prefix + "/lib/", sys.base_prefix + "/lib/"):
        line = line.replace(prefix, "")
    return line.replace("site-packages/", "")


def _cycler(n: int) -> Any:
    i = 0
    while True:
        yield i
        i = (i + 1) % n


if __name__ == "__main__":
    out = run_all(Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(tempfile.mkdtemp()), quick="--quick" in sys.argv)
    for stage, us in out["stages"].items():
        print(f"{stage:<50} {us:10.1f} µs")
    print(f"batch core: {out['batch_core']['rows_per_s']:,.0f} rows/s")
    print(out.get("profile", ""))
