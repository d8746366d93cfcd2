"""In-process micro-benchmarks of every stage of one decision, and a profile of the whole request.

Median microseconds over many repetitions of: validation (the request schema built from the feature
spec), feature encoding, the ONNX run, exact TreeSHAP attribution, rules + band + reason ranking, JSON
serialisation of the response, the durable record write (SQLite), the whole decision core and the
whole HTTP request through the Flask test client; plus the engine's rows/s on a large batch.

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
CORE_STAGE = "decision core total (DecisionEngine.decide, one row)"


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

    from service.api.schemas import request_schemas
    from service.app import create_app
    from service.auth import new_key
    from service.core.recorded import ApplicationRequest, RecordedDecision
    from service.decisions import record_of
    from service.serialize import decision_json
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
    model, store = state.service.served_model(), state.service.require_store()
    bundle = model.bundle
    spec, engine = bundle.spec, model.engine
    schema = request_schemas(spec, None, 100).decision_request
    apps = list(applications or bundle.reference["applications"])
    bodies = [{"application_id": f"M-{i}", "applicant": dict(a)} for i, a in enumerate(apps)]
    n = 300 if quick else 2000
    slow = 50 if quick else 300
    cycle = _cycler(len(bodies))

    body = bodies[0]
    applicant = body["applicant"]
    X = spec.encode([applicant])
    stages: dict[str, float] = {}
    stages["validation (request schema from the spec)"] = median_us(lambda: schema.load(bodies[next(cycle)]), n)
    stages["feature encoding (spec.encode)"] = median_us(lambda: spec.encode([applicant]), n)
    stages["ONNX run (onnxruntime)"] = median_us(lambda: model.scorer.score(X), n)
    stages["exact TreeSHAP attribution"] = median_us(lambda: model.explainer.shap_values(X), n)
    stages["rules, band and reason ranking"] = _rules_and_reasons_us(engine, applicant, X, n)
    decision = engine.decide([applicant]).decision(0)
    stages[CORE_STAGE] = median_us(lambda: engine.decide([applicant]).decision(0), n)
    request = ApplicationRequest(body["application_id"], applicant)

    def recorded() -> RecordedDecision:
        return RecordedDecision.new(
            decision_id=uuid.uuid4().hex,
            created_at=datetime.now(UTC),
            request=request,
            decision=decision,
            model_name=model.info.name,
            model_version=model.info.version,
            provenance=model.info.provenance,
            score_scale=model.score_scale,
            decided_by={"key_id": "0" * 12, "label": "bench", "role": "scorer"},
            latency_ms=1.0,
        )

    with app.app_context():
        stages["JSON serialisation of the response"] = median_us(lambda: flask_json.dumps(decision_json(recorded())), n)

    def record() -> None:
        store.save(record_of(recorded(), None, request.request_hash))

    stages["record write (SQLite, durable commit)"] = median_us(record, slow, warmup=5)
    client = app.test_client()

    def post() -> None:
        response = client.post("/v1/decisions", json=bodies[next(cycle)], headers={"Authorization": f"Bearer {key}"})
        if response.status_code != 201:
            raise RuntimeError(
                f"decision request failed: {response.status_code} {response.get_data(as_text=True)[:500]}"
            )

    stages["whole request (Flask test client)"] = median_us(post, slow, warmup=5)

    # the engine on many rows at once (what the batch file command runs per chunk)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(apps), size=2_000 if quick else 20_000)
    many = [apps[i] for i in picks]
    engine.decide(many[:100])
    t = time.perf_counter()
    engine.decide(many)
    batch_s = time.perf_counter() - t

    result: dict[str, Any] = {
        "stages": stages,
        "batch_core": {"rows": len(picks), "rows_per_s": len(picks) / batch_s},
    }
    if profile:
        result["profile"] = profile_requests(lambda: post(), 200 if quick else 1000)
    store.close()
    return result


def _rules_and_reasons_us(engine: Any, applicant: Mapping[str, Any], X: np.ndarray, n: int) -> float:
    """The engine's per-row policy pass after scoring and attribution: band, rules, decision, ranked reasons."""
    margin, _probability = engine.scorer.score(X)
    groups = engine.group_sums(engine.spec.field_sums(engine.explainer.shap_values(X)))[0].tolist()
    score = int(engine.policy.scaling.scores(margin)[0])
    return median_us(lambda: engine.policy_outcome(applicant, score, groups), n)


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
