"""The export proof: ONNX == scikit-learn, attributions add up to the ONNX margin, attributions == shap."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shap

from model_store.explainer import TreeEnsemble
from model_store.treeshap import TreeShap
from training.config import TrainingConfig
from training.export import ExportProofError, champion_onnx, ensemble_onnx, prove_exact, run_onnx
from training.pipeline import fit_gbt, fit_scorecard, load_dataset
from training.trees import ensemble_from_hgb

CONFIG = Path(__file__).resolve().parents[1] / "config" / "german_credit" / "training.yaml"


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    """Both families fitted on the even rows, with their shap references on the odd rows."""
    config = TrainingConfig.load(CONFIG, {"champion": {"max_iter": 15}})
    spec, _, _ = config.load_contract()
    data = load_dataset(config, spec)
    X_fit, y_fit, X_check = data.X[::2], data.y[::2], data.X[1::2]
    gbt = fit_gbt(spec, config.champion.params, config.random_state, X_fit, y_fit)
    tree_explainer = shap.TreeExplainer(gbt)
    scorecard = fit_scorecard(spec, config.baseline.params, X_fit, y_fit)
    masker = shap.maskers.Independent(scorecard.woe_train_, max_samples=len(scorecard.woe_train_))
    linear_explainer = shap.LinearExplainer(scorecard.model_, masker)
    sc_ensemble = scorecard.to_ensemble()
    return {
        "spec": spec,
        "X": X_check,
        "gbt": {
            "model": champion_onnx(gbt, len(spec.columns)),
            "ensemble": ensemble_from_hgb(gbt),
            "sklearn_probability": gbt.predict_proba(X_check)[:, 1],
            "reference_attributions": tree_explainer.shap_values(X_check),
            "reference_expected_value": float(np.ravel(tree_explainer.expected_value)[0]),
        },
        "scorecard": {
            "model": ensemble_onnx(sc_ensemble, "scorecard"),
            "ensemble": sc_ensemble,
            "sklearn_probability": scorecard.predict_proba(X_check)[:, 1],
            "reference_attributions": linear_explainer.shap_values(scorecard.woe(X_check)),
            "reference_expected_value": float(np.ravel(linear_explainer.expected_value)[0]),
        },
    }


def _prove(fitted: dict[str, Any], family: str, **changes: Any) -> Any:
    args = {**fitted[family], **changes}
    return prove_exact(family=family, X=fitted["X"], column_field_index=fitted["spec"].column_field_index, **args)


def _perturbed(ensemble: TreeEnsemble, delta: float) -> TreeEnsemble:
    leaf = int(np.flatnonzero(ensemble.feature < 0)[0])
    value = ensemble.value.copy()
    value[leaf] += delta
    return replace(ensemble, value=value)


@pytest.mark.parametrize("family", ["gbt", "scorecard"])
def test_proof_passes_within_tolerances_on_every_row(fitted: dict[str, Any], family: str) -> None:
    proof = _prove(fitted, family)
    e = proof.errors
    assert e["rows"] == 500
    assert e["onnx_vs_sklearn_probability"] <= 1e-6
    assert e["attribution_sum_vs_onnx_margin"] <= 1e-5
    assert e["attributions_vs_shap"] <= 1e-6
    assert e["expected_value_vs_shap"] <= 1e-6
    assert e["shap_comparison_level"] == ("column" if family == "gbt" else "field")
    # the proof's attributions are the service's TreeSHAP of the artifact
    np.testing.assert_array_equal(proof.attributions, TreeShap(fitted[family]["ensemble"]).shap_values(fitted["X"]))


@pytest.mark.parametrize("family", ["gbt", "scorecard"])
def test_onnx_graph_has_the_standard_interface(fitted: dict[str, Any], family: str) -> None:
    import onnx

    model = onnx.load_from_string(fitted[family]["model"])
    assert [i.name for i in model.graph.input] == ["features"]
    assert [o.name for o in model.graph.output] == ["margin", "probability_of_default"]
    margin, probability = run_onnx(fitted[family]["model"], fitted["X"][:5])
    assert margin.dtype == np.float32 and margin.shape == (5,)
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-margin.astype(np.float64))), atol=1e-7)


@pytest.mark.parametrize("family", ["gbt", "scorecard"])
def test_corrupted_explainer_aborts_the_export(fitted: dict[str, Any], family: str) -> None:
    corrupted = _perturbed(fitted[family]["ensemble"], 1e-3)
    with pytest.raises(ExportProofError, match=r"export aborted, \((b|c)\)"):
        _prove(fitted, family, ensemble=corrupted)


def test_tiny_attribution_error_is_caught_by_the_shap_comparison(fitted: dict[str, Any]) -> None:
    # 5e-6 on one leaf keeps additivity with the ONNX margin but not equality with shap (1e-6)
    corrupted = _perturbed(fitted["gbt"]["ensemble"], 5e-6)
    with pytest.raises(ExportProofError, match=r"\(c\)"):
        _prove(fitted, "gbt", ensemble=corrupted)


def test_onnx_that_disagrees_with_sklearn_aborts_the_export(fitted: dict[str, Any]) -> None:
    wrong_graph = ensemble_onnx(_perturbed(fitted["scorecard"]["ensemble"], 0.05), "wrong")
    with pytest.raises(ExportProofError, match=r"\(a\) ONNX probability"):
        _prove(fitted, "scorecard", model=wrong_graph)


def test_wrong_reference_expected_value_aborts_the_export(fitted: dict[str, Any]) -> None:
    with pytest.raises(ExportProofError, match="expected value vs shap"):
        _prove(fitted, "gbt", reference_expected_value=fitted["gbt"]["reference_expected_value"] + 1e-4)


def test_recorded_parity_is_within_tolerance(trained_models: Any) -> None:
    store, result = trained_models
    for v in result.versions:
        parity = store.manifest(v.name, v.version)["parity"]
        assert parity["rows"] == 300
        assert parity["onnx_vs_sklearn_probability"] <= 1e-6
        assert parity["attribution_sum_vs_onnx_margin"] <= 1e-5
        assert parity["attributions_vs_shap"] <= 1e-6


def test_stored_artifact_explains_the_stored_onnx_model(trained_models: Any) -> None:
    store, result = trained_models
    for v in result.versions:
        bundle = store.load_bundle(v.name, v.version)
        X = bundle.spec.encode(bundle.reference["applications"])
        margin, _ = run_onnx(bundle.onnx_path.read_bytes(), X)
        explainer = TreeShap(bundle.explainer)
        total = explainer.shap_values(X).sum(axis=1) + explainer.expected_value
        np.testing.assert_allclose(total, margin, rtol=0, atol=1e-5)
