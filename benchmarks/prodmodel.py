"""A production-size model for the benchmarks, exported and stored exactly like the real ones.

Synthetic applicants (numeric fields plus a few categorical ones, generated here with a fixed
seed), a ``HistGradientBoostingClassifier`` of 500 trees of depth 6, its own generated
``feature_spec.yaml`` / ``policy.yaml`` / ``reason_codes.yaml``, ONNX export and explainer
extraction through ``training.export`` and ``training.trees``, the export proof against shap, and a
proper model version in a ``ModelStore`` -- so the service loads it through its normal path.

Run alone: ``python -m benchmarks.prodmodel STORE_ROOT`` writes ``synthetic-prod v1`` there.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from model_store import store as files
from model_store.catalog import ReasonCatalog
from model_store.policy import Policy
from model_store.spec import FeatureSpec
from model_store.store import ModelStore

NAME = "synthetic-prod"
SEED = 20261122
N_NUMERIC = 110
CATEGORICAL = {"channel": 4, "region": 6, "product": 5, "tenure_band": 4}
GROUP_SIZE = 8
N_TRAIN = 20_000
N_HOLDOUT = 400
PARAMS: dict[str, Any] = {
    "max_iter": 500,
    "max_depth": 6,
    "max_leaf_nodes": 64,
    "learning_rate": 0.05,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
    "early_stopping": False,
}
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ProdModel:
    """Where the model version was written and how it was made."""

    store_root: Path
    name: str
    version: str
    n_trees: int
    n_leaves: int
    n_columns: int
    n_fields: int
    seconds: float
    parity: dict[str, Any]


# ---- contract files ------------------------------------------------------------------------------
def numeric_names() -> list[str]:
    """Names of the synthetic numeric fields."""
    return [f"x{i:03d}" for i in range(N_NUMERIC)]


def spec_dict() -> dict[str, Any]:
    """The generated feature spec: N_NUMERIC numeric fields (some integer) and a few categorical ones."""
    fields: list[dict[str, Any]] = []
    for i, name in enumerate(numeric_names()):
        integer = i % 5 == 0
        fields.append(
            {
                "name": name,
                "kind": "numeric",
                "dtype": "integer" if integer else "number",
                "minimum": 0 if integer else -50,
                "maximum": 100 if integer else 50,
                "description": f"Synthetic numeric attribute {i}",
                "actionable": False,
                "monotone": 0,
                "reason_group": f"group_{i // GROUP_SIZE:02d}",
            }
        )
    for name, k in CATEGORICAL.items():
        fields.append(
            {
                "name": name,
                "kind": "categorical",
                "description": f"Synthetic categorical attribute {name}",
                "actionable": False,
                "monotone": 0,
                "reason_group": f"cat_{name}",
                "values": [{"code": f"{name}_{j}", "label": f"{name} {j}", "source": f"{name}_{j}"} for j in range(k)],
            }
        )
    return {
        "spec_version": "synthetic-prod-spec-1.0.0",
        "target": {"source_column": "bad", "bad_value": "1"},
        "fields": fields,
        "monitoring_only": [],
    }


def policy_dict() -> dict[str, Any]:
    """The default policy's scaling and bands, with rules on the synthetic fields."""
    from training.config import TrainingConfig, default_config_path

    base = yaml.safe_load(TrainingConfig.load(default_config_path()).policy.read_text(encoding="utf-8"))
    return {
        "policy_version": "synthetic-prod-policy-1.0.0",
        "scaling": base["scaling"],
        "bands": base["bands"],
        "rules": [
            {
                "code": "R01",
                "field": "x000",
                "operator": "lt",
                "value": 2,
                "action": "decline",
                "description": "x000 under 2",
            },
            {
                "code": "R02",
                "field": "x001",
                "operator": "gt",
                "value": 3.0,
                "action": "refer",
                "description": "x001 above 3",
            },
            {
                "code": "R03",
                "field": "channel",
                "operator": "eq",
                "value": "channel_3",
                "action": "refer",
                "description": "broker channel",
            },
        ],
    }


def catalog_dict(spec: FeatureSpec, policy: Policy) -> dict[str, Any]:
    """One reason code per reason group, one per policy rule."""
    model = [
        {
            "code": f"P{i + 1:02d}",
            "group": group,
            "customer_text": f"Synthetic reason for {group.replace('_', ' ')}",
            "auditor_text": f"Attribution of the fields of reason group {group}",
        }
        for i, group in enumerate(spec.reason_groups)
    ]
    rules = [
        {"code": r.code, "customer_text": r.description, "auditor_text": f"Policy rule {r.code}"} for r in policy.rules
    ]
    return {"catalog_version": "synthetic-prod-reasons-1.0.0", "model_reasons": model, "rule_reasons": rules}


# ---- data ----------------------------------------------------------------------------------------
def applications(spec: FeatureSpec, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Random valid applications of the synthetic spec (API form)."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for f in spec.fields:
        if f.kind == "categorical":
            picks = rng.integers(0, len(f.values), size=n)
            for app, k in zip(out, picks.tolist(), strict=True):
                app[f.name] = f.values[k].code
        elif f.dtype == "integer":
            for app, v in zip(out, rng.integers(0, 21, size=n).tolist(), strict=True):
                app[f.name] = int(v)
        else:
            # rounded like real inputs, so many rows share split values with others
            for app, v in zip(out, np.round(rng.normal(size=n), 3).tolist(), strict=True):
                app[f.name] = float(v)
    return out


def outcomes(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defaults drawn from a non-linear logit of the encoded columns (bad rate about 20-30 %)."""
    n, p = X.shape
    coef = np.random.default_rng(SEED + 1).normal(size=p) / np.sqrt(p)
    z = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-9)
    logit = -1.0 + 1.5 * (z @ coef) + 0.6 * np.sin(z[:, 1] * z[:, 3]) + 0.4 * z[:, 2] * z[:, 4]
    return (logit + rng.logistic(size=n) > 0).astype(np.int64)


# ---- writing a model version --------------------------------------------------------------------------
def _yaml(data: Mapping[str, Any]) -> bytes:
    return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True).encode("utf-8")


def write_gbt_version(
    store: ModelStore,
    name: str,
    contract: Mapping[str, bytes],
    model: Any,
    X_holdout: np.ndarray,
    holdout_applications: Sequence[Mapping[str, Any]],
    extra_manifest: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Prove and write a fitted HGB as a new version of ``name``; returns (version, parity errors)."""
    import shap

    from training.export import champion_onnx, prove_exact
    from training.trees import ensemble_from_hgb

    spec = FeatureSpec.from_dict(yaml.safe_load(contract[files.SPEC_FILE]))
    ensemble = ensemble_from_hgb(model)
    onnx_bytes = champion_onnx(model, len(spec.columns))
    explainer = shap.TreeExplainer(model)
    proof = prove_exact(
        family="gbt",
        model=onnx_bytes,
        ensemble=ensemble,
        X=X_holdout,
        sklearn_probability=model.predict_proba(X_holdout)[:, 1],
        reference_attributions=np.asarray(explainer.shap_values(X_holdout), dtype=np.float64),
        reference_expected_value=float(np.ravel(explainer.expected_value)[0]),
        column_field_index=spec.column_field_index,
    )
    n_ref = min(32, len(holdout_applications))
    reference = {
        "applications": [dict(a) for a in holdout_applications[:n_ref]],
        "margins": [float(m) for m in proof.margin[:n_ref]],
        "probabilities": [float(p) for p in proof.probability[:n_ref]],
    }
    payload = {
        files.MODEL_FILE: onnx_bytes,
        files.EXPLAINER_FILE: ensemble.to_bytes(),
        **contract,
        files.REFERENCE_FILE: (json.dumps(reference, indent=2, sort_keys=True) + "\n").encode("utf-8"),
        files.CARD_FILE: f"# {name}\n\nSynthetic benchmark model ({ensemble.n_trees} trees); not for decisions.\n".encode(),
    }
    version = store.next_version(name)
    manifest = {
        "schema_version": 1,
        "family": "gbt",
        "spec_version": spec.version,
        "columns": list(spec.columns),
        "fields": list(spec.field_names),
        "onnx": {"input": "features", "outputs": ["margin", "probability_of_default"]},
        "explainer": {
            "expected_value": ensemble.expected_value,
            "n_trees": ensemble.n_trees,
            "n_nodes": ensemble.n_nodes,
            "sha256": hashlib.sha256(payload[files.EXPLAINER_FILE]).hexdigest(),
        },
        "parity": proof.errors,
        **dict(extra_manifest or {}),
    }
    store.write_version(name, version, payload, manifest)
    return version, proof.errors


def build(store_root: Path, progress: bool = False) -> ProdModel:
    """Generate the data and contract, fit, prove and write ``synthetic-prod`` into ``store_root``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    started = time.perf_counter()
    spec_raw = spec_dict()
    spec = FeatureSpec.from_dict(spec_raw)
    policy_raw = policy_dict()
    policy = Policy.from_dict(policy_raw, spec)
    catalog_raw = catalog_dict(spec, policy)
    ReasonCatalog.from_dict(catalog_raw, spec, policy)
    rng = np.random.default_rng(SEED)
    apps = applications(spec, N_TRAIN + N_HOLDOUT, rng)
    X = spec.encode(apps)
    y = outcomes(X, rng)
    if progress:
        print(f"prodmodel: fitting {PARAMS['max_iter']} trees on {N_TRAIN} x {X.shape[1]} ...", file=sys.stderr)
    model = HistGradientBoostingClassifier(**PARAMS, random_state=SEED).fit(X[:N_TRAIN], y[:N_TRAIN])
    contract = {
        files.SPEC_FILE: _yaml(spec_raw),
        files.POLICY_FILE: _yaml(policy_raw),
        files.CATALOG_FILE: _yaml(catalog_raw),
    }
    store = ModelStore(store_root)
    version, parity = write_gbt_version(
        store,
        NAME,
        contract,
        model,
        X[N_TRAIN:],
        apps[N_TRAIN:],
        {"params": {k: v for k, v in PARAMS.items()}, "data": {"synthetic": True, "rows": N_TRAIN, "seed": SEED}},
    )
    n_leaves = int(sum(int(p[0].nodes["is_leaf"].sum()) for p in model._predictors))
    return ProdModel(
        store_root=store_root,
        name=NAME,
        version=version,
        n_trees=int(model.n_iter_),
        n_leaves=n_leaves,
        n_columns=int(X.shape[1]),
        n_fields=len(spec.fields),
        seconds=time.perf_counter() - started,
        parity=parity,
    )


if __name__ == "__main__":
    result = build(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("benchmarks/results/store"), progress=True)
    print(result)
