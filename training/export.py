"""ONNX export of both model families and the exact-explanation proof that gates every export.

Every exported graph has one input ``features`` float32 [N, n_columns] and two outputs,
``margin`` float32 [N] (log-odds of default) and ``probability_of_default`` float32 [N].

``prove_exact`` is run on every hold-out row before anything is written; any failure raises
``ExportProofError`` and the export is abandoned:

(a) ONNX probability of default == scikit-learn ``predict_proba[:, 1]``            (<= 1e-6)
(b) sum of explainer attributions + expected value == ONNX margin                  (<= 1e-5)
(c) explainer attributions == the shap library's on the scikit-learn model         (<= 1e-6)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from model_store.errors import ContractError
from model_store.explainer import TreeEnsemble
from model_store.spec import field_sums

INPUT_NAME = "features"
MARGIN = "margin"
PROBABILITY = "probability_of_default"
OPSET = {"": 17, "ai.onnx.ml": 3}
TOLERANCE = {"probability": 1e-6, "additivity": 1e-5, "shap": 1e-6}

# (ensemble, X) -> (attributions float64 [n, n_columns], expected value)
Explain = Callable[[TreeEnsemble, np.ndarray], tuple[np.ndarray, float]]


class ExportProofError(ContractError):
    """A model failed the exact-explanation proof; nothing was exported."""


# ---- graphs ---------------------------------------------------------------------------------
def champion_onnx(model: Any, n_columns: int) -> bytes:
    """Convert a fitted HistGradientBoostingClassifier with skl2onnx and give it the standard interface."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    with warnings.catch_warnings():
        # skl2onnx 1.20 passes booleans to an int-list attribute (missing-value tracking); protobuf stores 0/1
        warnings.filterwarnings("ignore", message=".*Expected an int, got a boolean", category=DeprecationWarning)
        converted = to_onnx(
            model,
            initial_types=[("X", FloatTensorType([None, n_columns]))],
            options={id(model): {"zipmap": False, "raw_scores": True}},
            target_opset=dict(OPSET),
        )
    graph = converted.graph
    old_input = graph.input[0].name
    for node in graph.node:
        node.input[:] = [INPUT_NAME if name == old_input else name for name in node.input]
    scores = next(o.name for o in graph.output if o.name == "probabilities")
    # with raw_scores the second column of the binary classifier's scores is the raw log-odds of class 1
    nodes = [
        *graph.node,
        helper.make_node("Gather", [scores, "margin_column"], [MARGIN], axis=1, name="select_margin"),
        helper.make_node("Sigmoid", [MARGIN], [PROBABILITY], name="probability_of_default"),
    ]
    initializers = [*graph.initializer, helper.make_tensor("margin_column", TensorProto.INT64, [], [1])]
    return _finish(nodes, initializers, n_columns, "gbt champion (HistGradientBoostingClassifier via skl2onnx)")


def ensemble_onnx(ensemble: TreeEnsemble, doc: str) -> bytes:
    """Build a TreeEnsembleRegressor graph (BRANCH_LEQ) from the explainer artifact."""
    tree_ids, node_ids, features, modes, thresholds, true_ids, false_ids = [], [], [], [], [], [], []
    missing_true: list[int] = []  # a missing value (NaN) takes the true (left, <=) branch
    target_tree, target_node, weights = [], [], []
    for t in range(ensemble.n_trees):
        lo, hi = int(ensemble.tree_offsets[t]), int(ensemble.tree_offsets[t + 1])
        for g in range(lo, hi):
            leaf = ensemble.feature[g] < 0
            tree_ids.append(t)
            node_ids.append(g - lo)
            features.append(0 if leaf else int(ensemble.feature[g]))
            modes.append("LEAF" if leaf else "BRANCH_LEQ")
            thresholds.append(0.0 if leaf else float(ensemble.threshold[g]))
            true_ids.append(0 if leaf else int(ensemble.children_left[g]) - lo)
            false_ids.append(0 if leaf else int(ensemble.children_right[g]) - lo)
            missing_true.append(0 if leaf else int(ensemble.default_left[g]))
            if leaf:
                target_tree.append(t)
                target_node.append(g - lo)
                weights.append(float(ensemble.value[g]))
    trees = helper.make_node(
        "TreeEnsembleRegressor",
        [INPUT_NAME],
        ["raw_margin"],
        domain="ai.onnx.ml",
        name="trees",
        n_targets=1,
        aggregate_function="SUM",
        post_transform="NONE",
        base_values=[float(ensemble.base_offset)],
        nodes_treeids=tree_ids,
        nodes_nodeids=node_ids,
        nodes_featureids=features,
        nodes_modes=modes,
        nodes_values=thresholds,
        nodes_truenodeids=true_ids,
        nodes_falsenodeids=false_ids,
        nodes_missing_value_tracks_true=missing_true,
        target_treeids=target_tree,
        target_nodeids=target_node,
        target_ids=[0] * len(target_tree),
        target_weights=weights,
    )
    nodes = [
        trees,
        helper.make_node("Reshape", ["raw_margin", "flat_shape"], [MARGIN], name="flatten_margin"),
        helper.make_node("Sigmoid", [MARGIN], [PROBABILITY], name="probability_of_default"),
    ]
    shape = helper.make_tensor("flat_shape", TensorProto.INT64, [1], [-1])
    return _finish(nodes, [shape], ensemble.n_features, doc)


def _finish(nodes: list[Any], initializers: list[Any], n_columns: int, doc: str) -> bytes:
    graph = helper.make_graph(
        nodes,
        "credit_decision",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", n_columns])],
        [
            helper.make_tensor_value_info(MARGIN, TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(PROBABILITY, TensorProto.FLOAT, ["N"]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in OPSET.items()],
        producer_name="credit-decision-training",
        doc_string=doc,
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString(deterministic=True))


# ---- running ----------------------------------------------------------------------------------
def run_onnx(model: bytes, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(margin, probability_of_default) as float32 arrays, with the service's session settings."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    margin, probability = session.run([MARGIN, PROBABILITY], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})
    return np.asarray(margin).reshape(-1), np.asarray(probability).reshape(-1)


def onnx_opsets(model: bytes) -> dict[str, int]:
    """Opset per domain of a serialized model."""
    parsed = onnx.load_from_string(model)
    return {imp.domain or "ai.onnx": int(imp.version) for imp in parsed.opset_import}


def service_tree_shap(ensemble: TreeEnsemble, X: np.ndarray) -> tuple[np.ndarray, float]:
    """Exact path-dependent TreeSHAP of the artifact, computed by the service's own implementation."""
    from model_store.treeshap import TreeShap

    explainer = TreeShap(ensemble)
    return np.asarray(explainer.shap_values(X), dtype=np.float64), float(explainer.expected_value)


# ---- the proof --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Proof:
    """Outcome of a passed proof: the attributions it checked and the worst errors it saw."""

    attributions: np.ndarray  # float64 [n, n_columns], from the artifact
    expected_value: float
    margin: np.ndarray  # ONNX, float32 [n]
    probability: np.ndarray  # ONNX, float32 [n]
    errors: dict[str, Any]


def prove_exact(
    *,
    family: str,
    model: bytes,
    ensemble: TreeEnsemble,
    X: np.ndarray,
    sklearn_probability: np.ndarray,
    reference_attributions: np.ndarray,
    reference_expected_value: float,
    column_field_index: np.ndarray,
    explain: Explain | None = None,
) -> Proof:
    """Check (a), (b) and (c) on every row of X; raise ExportProofError naming the first failure.

    ``reference_attributions`` come from the shap library, either per encoded column
    [n, n_columns] or per field [n, n_fields]; the artifact's are compared at that level.
    """
    explain = explain or service_tree_shap
    X = np.asarray(X, dtype=np.float32)
    margin, probability = run_onnx(model, X)
    attributions, expected_value = explain(ensemble, X)
    n_fields = int(column_field_index.max()) + 1
    reference = np.asarray(reference_attributions, dtype=np.float64)
    if reference.shape[1] == attributions.shape[1]:
        ours = attributions
        level = "column"
    elif reference.shape[1] == n_fields:
        ours = field_sums(attributions, column_field_index)
        level = "field"
    else:
        raise ExportProofError(f"{family}: reference attributions have shape {reference.shape}")
    errors: dict[str, Any] = {
        "rows": int(X.shape[0]),
        "onnx_vs_sklearn_probability": _max_abs(probability.astype(np.float64) - sklearn_probability),
        "attribution_sum_vs_onnx_margin": _max_abs(attributions.sum(axis=1) + expected_value - margin),
        "attributions_vs_shap": _max_abs(ours - reference),
        "expected_value_vs_shap": abs(expected_value - float(reference_expected_value)),
        "artifact_margin_vs_onnx_margin": _max_abs(ensemble.margin(X) - margin),
        "shap_comparison_level": level,
        "tolerances": dict(TOLERANCE),
    }
    checks = [
        ("(a) ONNX probability vs scikit-learn predict_proba", "onnx_vs_sklearn_probability", "probability"),
        ("(b) attributions + expected value vs ONNX margin", "attribution_sum_vs_onnx_margin", "additivity"),
        ("(c) attributions vs shap", "attributions_vs_shap", "shap"),
        ("(c) expected value vs shap", "expected_value_vs_shap", "shap"),
    ]
    for label, key, tol in checks:
        if not errors[key] <= TOLERANCE[tol]:
            raise ExportProofError(
                f"{family}: export aborted, {label}: max abs error {errors[key]:.3g} over {X.shape[0]} "
                f"hold-out rows exceeds {TOLERANCE[tol]:g}; nothing was written"
            )
    return Proof(attributions, expected_value, margin, probability, errors)


def _max_abs(diff: np.ndarray) -> float:
    value = float(np.max(np.abs(diff))) if diff.size else 0.0
    return value if np.isfinite(value) else float("inf")
