"""Offline training: versions written, contract refusals, reproducibility, monotone constraints, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from cli.train import train_command
from model_store.errors import ContractError
from model_store.spec import FeatureSpec
from model_store.store import ModelStore, VersionExistsError
from training.config import TrainingConfig
from training.export import ensemble_onnx, run_onnx
from training.pipeline import load_dataset, train
from training.scorecard import WoeScorecard

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "german_credit"
CONFIG = CONFIG_DIR / "training.yaml"
TINY: dict[str, Any] = {"champion": {"max_iter": 15}, "cv_folds": 2}
VERSION_FILES = {
    "model.onnx",
    "explainer.npz",
    "feature_spec.yaml",
    "policy.yaml",
    "reason_codes.yaml",
    "reference.json",
    "reason_stability.json",
    "model_card.md",
    "plots/roc.png",
    "plots/ks.png",
    "plots/calibration.png",
    "plots/importance.png",
}


@pytest.fixture(scope="module")
def data() -> Any:
    config = TrainingConfig.load(CONFIG)
    spec, _, _ = config.load_contract()
    return spec, load_dataset(config, spec)


def _tiny_config(tmp_path: Path, spec_text: str | None = None) -> Path:
    """A training YAML with the tiny parameters and absolute paths (optionally with another spec)."""
    raw = yaml.safe_load(CONFIG.read_text())
    raw["champion"]["params"]["max_iter"] = 15
    raw["cv_folds"] = 2
    raw["data"]["csv"] = str((CONFIG_DIR / raw["data"]["csv"]).resolve())
    for key in ("policy", "reason_codes", "feature_spec"):
        raw[key] = str(CONFIG_DIR / raw[key])
    if spec_text is not None:
        (tmp_path / "feature_spec.yaml").write_text(spec_text)
        raw["feature_spec"] = str(tmp_path / "feature_spec.yaml")
    path = tmp_path / "training.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _spec_with_foreign_worker() -> str:
    raw = yaml.safe_load((CONFIG_DIR / "feature_spec.yaml").read_text())
    raw["fields"].append(
        {
            "name": "foreign_worker",
            "kind": "categorical",
            "description": "Foreign worker",
            "reason_group": "telephone_again",
            "values": [{"code": "yes", "source": "yes"}, {"code": "no", "source": "no"}],
        }
    )
    return yaml.safe_dump(raw)


# ---- what a training run writes ------------------------------------------------------------------
def test_training_writes_two_verified_versions_and_promotes_the_gbt(trained_models: Any) -> None:
    store, result = trained_models
    assert store.champion() == (result.champion.name, result.champion.version) == ("german-credit-gbt", "v1")
    assert result.baseline.name == "german-credit-scorecard"
    for v in result.versions:
        assert store.verify(v.name, v.version) == []
        manifest = store.manifest(v.name, v.version)
        assert set(manifest["files"]) == VERSION_FILES
        assert manifest["schema_version"] == 1
        assert manifest["family"] == v.family
        assert manifest["onnx"]["input"] == "features"
        assert manifest["onnx"]["outputs"] == ["margin", "probability_of_default"]
        assert manifest["data"]["rows"] == 1000 and manifest["data"]["bad_rate"] == pytest.approx(0.3)
        assert manifest["columns"] == list(FeatureSpec.load(CONFIG_DIR / "feature_spec.yaml").columns)
        assert {"python", "numpy", "sklearn", "onnx", "onnxruntime", "skl2onnx", "shap", "optbinning"} <= set(
            manifest["libraries"]
        )
        assert set(manifest["metrics"]["holdout"]) == {"auc", "gini", "ks", "brier", "log_loss"}
        assert len(manifest["metrics"]["cv_folds"]) == 2
        assert [b["band"] for b in manifest["bands"]["policy"]] == ["A", "B", "C", "D", "E"]
        for name in ("feature_spec.yaml", "policy.yaml", "reason_codes.yaml"):
            assert (v.path / name).read_bytes() == (CONFIG_DIR / name).read_bytes()
        assert (v.path / "plots" / "roc.png").read_bytes().startswith(b"\x89PNG")
        card = (v.path / "model_card.md").read_text()
        for heading in ("## Intended use", "## Data", "## Limitations", "## Explanation and export parity evidence"):
            assert heading in card
        assert "CC BY 4.0" in card and "Grömping" in card and "foreign_worker" in card
        # the data set's description and its cost matrix come from the training config's dataset section
        assert manifest["dataset"]["name"] == "Statlog (German Credit Data)" and manifest["dataset"]["notes"]
        assert manifest["data"]["checks"]["dropped_rows"] == 0 and manifest["data"]["checks"]["leakage"]["fields"] == []
        cost = manifest["metrics"]["decisions"]["cost"]
        assert (cost["false_approve"], cost["false_decline"]) == (5.0, 1.0)
        assert "an approved bad applicant costs 5, a good applicant who is not approved costs 1" in card
        bundle = store.load_bundle(v.name, v.version)
        assert bundle.explainer.expected_value == pytest.approx(manifest["explainer"]["expected_value"], abs=1e-12)


def test_gbt_card_says_why_when_champion_auc_is_lower(trained_models: Any) -> None:
    store, result = trained_models
    comp = store.manifest(result.champion.name, result.champion.version)["metrics"]["comparison"]
    card = (result.champion.path / "model_card.md").read_text()
    lower = comp["gbt"]["holdout_auc"] < comp["scorecard"]["holdout_auc"]
    assert ("lower than the scorecard's" in card) == lower


def test_reference_json_matches_the_onnx_model(trained_models: Any) -> None:
    store, result = trained_models
    for v in result.versions:
        reference = json.loads((v.path / "reference.json").read_text())
        assert len(reference["applications"]) == 32
        bundle = store.load_bundle(v.name, v.version)
        margin, probability = run_onnx(bundle.onnx_path.read_bytes(), bundle.spec.encode(reference["applications"]))
        assert margin.tolist() == reference["margins"]
        assert probability.tolist() == reference["probabilities"]
        fields = reference["baseline"]["fields"]
        assert set(fields) == set(bundle.spec.field_names)
        assert sum(fields["purpose"]["shares"].values()) == pytest.approx(1.0)
        assert sum(fields["age_years"]["shares"]) == pytest.approx(1.0)
        assert len(fields["age_years"]["shares"]) == len(fields["age_years"]["edges"]) + 1
        assert sum(reference["baseline"]["score"]["shares"]) == pytest.approx(1.0)


# ---- refusals ----------------------------------------------------------------------------------
def test_spec_with_prohibited_field_is_refused(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(_spec_with_foreign_worker())
    with pytest.raises(ContractError, match="prohibited-basis"):
        FeatureSpec.load(tmp_path / "spec.yaml")


def test_cli_refuses_prohibited_field_and_writes_nothing(tmp_path: Path) -> None:
    config = _tiny_config(tmp_path, spec_text=_spec_with_foreign_worker())
    store = tmp_path / "store"
    result = CliRunner().invoke(train_command, ["--config", str(config), "--model-store", str(store), "--quiet"])
    assert result.exit_code != 0
    assert "foreign_worker" in result.output and "prohibited-basis" in result.output
    assert ModelStore(store).names() == []


def test_existing_version_is_refused_before_training(trained_models: Any) -> None:
    store, result = trained_models
    before = store.manifest(result.champion.name, "v1")
    with pytest.raises(VersionExistsError, match="immutable"):
        train(CONFIG, store, overrides=TINY, version="v1", progress=False)
    assert store.manifest(result.champion.name, "v1") == before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"champion": {"max_itre": 3}}, "unknown parameter"),
        ({"holdout_fraction": 0.9}, "holdout_fraction"),
        ({"cv_folds": 1}, "cv_folds"),
        ({"baseline": {"C": "big"}}, "params.C"),
        ({"data": {"csv": "x.csv"}}, "cannot override"),
        ({"name": "German Credit"}, "name"),
    ],
)
def test_config_errors_are_clear(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        TrainingConfig.load(CONFIG, overrides)


def test_config_overrides_merge_over_params() -> None:
    config = TrainingConfig.load(CONFIG, {"champion": {"max_iter": 7}, "cv_folds": 3})
    assert config.champion.params["max_iter"] == 7
    assert config.champion.params["learning_rate"] == 0.05
    assert config.cv_folds == 3
    assert config.data_csv == (CONFIG_DIR / "../../data/german_credit.csv").resolve()


# ---- reproducibility and the CLI -----------------------------------------------------------------
def test_cli_training_reproduces_the_models_exactly(trained_models: Any, tmp_path: Path, data: Any) -> None:
    first_store, first = trained_models
    config = _tiny_config(tmp_path)
    root = tmp_path / "again"
    result = CliRunner().invoke(
        train_command,
        ["--config", str(config), "--model-store", str(root), "--version", "v3", "--no-promote", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    assert "wrote german-credit-gbt v3" in result.output and "wrote german-credit-scorecard v3" in result.output
    second = ModelStore(root)
    assert second.champion() is None
    _, dataset = data
    for v in first.versions:
        a, b = v.path, second.path(v.name, "v3")
        assert (a / "model.onnx").read_bytes() == (b / "model.onnx").read_bytes()
        assert (a / "explainer.npz").read_bytes() == (b / "explainer.npz").read_bytes()
        out_a = run_onnx((a / "model.onnx").read_bytes(), dataset.X)
        out_b = run_onnx((b / "model.onnx").read_bytes(), dataset.X)
        assert np.array_equal(out_a[0], out_b[0]) and np.array_equal(out_a[1], out_b[1])
        ma, mb = first_store.manifest(v.name, "v1"), second.manifest(v.name, "v3")
        assert ma["metrics"] == mb["metrics"] and ma["parity"] == mb["parity"]


# ---- model properties ----------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gbt", "scorecard"])
def test_monotone_constraints_hold_on_a_grid(trained_models: Any, family: str) -> None:
    store, result = trained_models
    v = result.champion if family == "gbt" else result.baseline
    bundle = store.load_bundle(v.name, v.version)
    model = bundle.onnx_path.read_bytes()
    apps = json.loads((v.path / "reference.json").read_text())["applications"][:16]
    for field in bundle.spec.fields:
        if field.monotone == 0:
            continue
        assert field.minimum is not None and field.maximum is not None
        grid = np.unique(
            np.linspace(field.minimum, min(field.maximum, 200.0 if field.maximum < 1e3 else 25000.0), 60).round()
        )
        for app in apps:
            rows = [{**app, field.name: int(g)} for g in grid]
            _, probability = run_onnx(model, bundle.spec.encode(rows))
            steps = np.diff(probability.astype(np.float64)) * field.monotone
            assert np.all(steps >= 0), f"{family}: {field.name} breaks its monotone constraint"


def test_age_never_raises_the_probability_of_default(trained_models: Any) -> None:
    store, result = trained_models
    bundle = store.load_bundle(result.champion.name, result.champion.version)
    apps = json.loads((result.champion.path / "reference.json").read_text())["applications"]
    rows = [{**app, "age_years": age} for app in apps for age in range(18, 100)]
    _, probability = run_onnx(bundle.onnx_path.read_bytes(), bundle.spec.encode(rows))
    assert np.all(np.diff(probability.reshape(len(apps), -1), axis=1) <= 0)


def test_scorecard_trees_equal_the_logistic_regression(data: Any) -> None:
    spec, dataset = data
    scorecard = WoeScorecard(spec).fit(dataset.X, dataset.y)
    ensemble = scorecard.to_ensemble()
    assert ensemble.n_trees == len(spec.fields)
    np.testing.assert_allclose(
        ensemble.margin(dataset.X), scorecard.model_.decision_function(scorecard.woe(dataset.X)), rtol=0, atol=1e-12
    )
    roots = ensemble.tree_offsets[:-1]
    assert np.all(ensemble.cover[roots] == len(dataset.y))
    # each tree tests only its own field's columns
    for t, root in enumerate(roots):
        nodes = np.arange(root, ensemble.tree_offsets[t + 1])
        tested = ensemble.feature[nodes][ensemble.feature[nodes] >= 0]
        assert set(spec.column_field_index[tested]) <= {t}
    # the expected value is the logistic regression's mean margin over the training WOE matrix
    assert ensemble.expected_value == pytest.approx(
        float(np.mean(scorecard.model_.decision_function(scorecard.woe_train_))), abs=1e-12
    )


def test_scorecard_binning_follows_the_spec_direction(data: Any) -> None:
    spec, dataset = data
    scorecard = WoeScorecard(spec).fit(dataset.X, dataset.y)
    for field, bins in zip(spec.fields, scorecard.bins_, strict=True):
        if field.monotone == 0 or len(bins.woe) < 2:
            continue
        bad_rate = np.asarray(bins.bin_bads) / np.asarray(bins.bin_counts)
        assert np.all(np.diff(bad_rate) * field.monotone > 0), field.name


def test_scorecard_pools_unseen_categories_with_the_largest_bin(data: Any) -> None:
    spec, dataset = data
    column = spec.columns.index("purpose=business")
    seen = dataset.X[:, column] == 0
    scorecard = WoeScorecard(spec).fit(dataset.X[seen], dataset.y[seen])
    ensemble = scorecard.to_ensemble()
    bins = scorecard.bins_[spec.field_names.index("purpose")]
    code = spec.field("purpose").codes.index("business")
    assert bins.category_counts[code] == 0
    assert bins.category_bin[code] == int(np.argmax(bins.bin_counts))
    # rows with the unseen category are scored and explained like the pooled bin, consistently everywhere
    unseen = dataset.X[~seen]
    np.testing.assert_allclose(ensemble.margin(unseen), scorecard.decision_function(unseen), rtol=0, atol=1e-12)
    margin, _ = run_onnx(ensemble_onnx(ensemble, "test"), unseen)
    np.testing.assert_allclose(margin, scorecard.decision_function(unseen), rtol=0, atol=1e-5)
