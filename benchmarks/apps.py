"""Bench-only WSGI apps, served by ``benchmarks.run`` with the production gunicorn config.

Each factory reads its model from the environment (``BENCH_MODEL_STORE``, ``BENCH_MODEL_NAME``,
``BENCH_MODEL_VERSION``) and offers ``GET /readyz`` plus one POST endpoint taking the decision
request body ``{"application_id", "applicant": {...}}``:

(a) ``echo_app()``   POST /echo: parse the JSON and send it back -- the Flask floor;
(b) ``score_app()``  POST /score: no validation, encode + onnxruntime + score scaling;
(b+) ``reasons_app()`` POST /reasons: (b) plus exact TreeSHAP reasons -- the served model's
    ``DecisionEngine`` without validation or record, to isolate what the reasons cost;
(d) ``naive_app()``  POST /naive: the reference a team would write first -- scikit-learn
    ``predict_proba`` and ``shap.TreeExplainer.shap_values`` per request, on the same model
    retrained in-process from the training config (checked against the stored version's margins).

(c), the full decision, is the real service: ``service.app:create_app()``.
scikit-learn and shap are imported here only, never by ``service/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, jsonify, request

from model_store.store import ModelStore

REPO = Path(__file__).resolve().parents[1]


def _bundle() -> Any:
    store = ModelStore(os.environ["BENCH_MODEL_STORE"])
    return store.load_bundle(os.environ["BENCH_MODEL_NAME"], os.environ["BENCH_MODEL_VERSION"])


def _app(info: dict[str, Any]) -> Flask:
    app = Flask(__name__)

    @app.get("/readyz")
    def readyz() -> Any:
        return jsonify({"ready": True, **info})

    return app


def echo_app() -> Flask:
    """(a) The floor: read the JSON body and send it back."""
    app = _app({"app": "echo"})

    @app.post("/echo")
    def echo() -> Any:
        return jsonify(request.get_json())

    return app


def score_app() -> Flask:
    """(b) Score only: validation-free encoding, one onnxruntime run, the policy's score scaling."""
    from service.adapters.onnx_scorer import OnnxScorer

    bundle = _bundle()
    spec, scaling = bundle.spec, bundle.policy.scaling
    scorer = OnnxScorer(bundle.onnx_path, len(spec.columns))
    app = _app({"app": "score", "model": f"{bundle.name} {bundle.version}"})

    @app.post("/score")
    def score() -> Any:
        body = request.get_json()
        margin, probability = scorer.score(spec.encode([body["applicant"]]))
        m = float(margin[0])
        return jsonify(
            {
                "application_id": body["application_id"],
                "score": scaling.score(m),
                "probability_of_default": float(probability[0]),
            }
        )

    return app


def reasons_app() -> Flask:
    """(b+) Score and exact reasons: the served model's decision engine, no validation, no record."""
    from service.runtime import ServedModel

    model = ServedModel(_bundle())
    model.self_check()
    app = _app({"app": "reasons", "model": f"{model.info.name} {model.info.version}"})

    @app.post("/reasons")
    def reasons() -> Any:
        body = request.get_json()
        decision = model.engine.decide([body["applicant"]]).decision(0)
        return jsonify(
            {
                "application_id": body["application_id"],
                "decision": decision.decision,
                "score": decision.score,
                "probability_of_default": decision.probability_of_default,
                "risk_band": decision.risk_band,
                "reasons": [{"code": r.code, "log_odds": r.contribution_log_odds} for r in decision.reasons],
            }
        )

    return app


def naive_model(bundle: Any) -> tuple[Any, float]:
    """Retrain the stored default model in-process (same data split and parameters); return it and
    the largest difference between its margins and the stored version's reference margins."""
    from sklearn.model_selection import train_test_split

    from training.config import TrainingConfig, default_config_path
    from training.pipeline import fit_gbt, load_dataset

    config = TrainingConfig.load(default_config_path())
    spec = bundle.spec
    data = load_dataset(config, spec)
    indices = np.arange(len(data.y))
    train_idx, _ = train_test_split(
        indices, test_size=config.holdout_fraction, stratify=data.y, random_state=config.random_state
    )
    train_idx = np.sort(train_idx)
    model = fit_gbt(spec, dict(config.champion.params), config.random_state, data.X[train_idx], data.y[train_idx])
    reference = bundle.reference
    X_ref = spec.encode(reference["applications"])
    gap = float(np.max(np.abs(model.decision_function(X_ref) - np.asarray(reference["margins"]))))
    return model, gap


def naive_app() -> Flask:
    """(d) The naive reference: scikit-learn predict_proba + shap.TreeExplainer per request."""
    import shap

    bundle = _bundle()
    spec = bundle.spec
    model, gap = naive_model(bundle)
    explainer = shap.TreeExplainer(model)
    field_index = spec.column_field_index
    n_fields = len(spec.fields)
    names = spec.field_names
    app = _app({"app": "naive", "model": f"{bundle.name} {bundle.version}", "max_margin_gap": gap})

    @app.post("/naive")
    def naive() -> Any:
        body = request.get_json()
        X = spec.encode([body["applicant"]])
        probability = float(model.predict_proba(X)[0, 1])
        phi = np.asarray(explainer.shap_values(X), dtype=np.float64)[0]
        per_field = np.bincount(field_index, weights=phi, minlength=n_fields)
        top = np.argsort(-per_field, kind="stable")[:4]
        return jsonify(
            {
                "application_id": body["application_id"],
                "probability_of_default": probability,
                "reasons": [{"field": names[i], "log_odds": float(per_field[i])} for i in top if per_field[i] > 0],
            }
        )

    return app
