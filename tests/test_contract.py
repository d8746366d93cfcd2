"""The shared contract: feature spec, policy, reason-code catalog and explainer artifact."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from model_store.catalog import ReasonCatalog
from model_store.errors import ContractError
from model_store.explainer import TreeEnsemble
from model_store.policy import Policy
from model_store.spec import COLUMNWISE_FROM, FeatureSpec

CONFIG = Path(__file__).resolve().parents[1] / "config" / "german_credit"


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIG / name).read_text())


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return FeatureSpec.load(CONFIG / "feature_spec.yaml")


@pytest.fixture(scope="module")
def policy(spec: FeatureSpec) -> Policy:
    return Policy.load(CONFIG / "policy.yaml", spec)


def test_default_spec_excludes_prohibited_attributes(spec: FeatureSpec) -> None:
    assert {m.name for m in spec.monitoring_only} == {"personal_status_and_sex", "foreign_worker"}
    sources = {f.source_column for f in spec.fields}
    assert "personal_status_and_sex" not in sources and "foreign_worker" not in sources
    assert not any(c.startswith(("personal_status", "foreign")) for c in spec.columns)


@pytest.mark.parametrize("attribute", ["foreign_worker", "personal_status_and_sex"])
def test_spec_using_a_prohibited_attribute_is_refused(attribute: str) -> None:
    raw = _raw("feature_spec.yaml")
    raw["fields"].append(
        {
            "name": attribute,
            "source_column": attribute,
            "kind": "categorical",
            "description": "x",
            "reason_group": "other",
            "values": [{"code": "a", "source": "a"}, {"code": "b", "source": "b"}],
        }
    )
    with pytest.raises(ContractError, match=f"'{attribute}'.*prohibited-basis"):
        FeatureSpec.from_dict(raw)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["fields"][1].update(monotone=2), "monotone"),
        (lambda r: r["fields"][0].update(monotone=1), "cannot be monotone"),
        (lambda r: r["fields"][1].update(minimum=10, maximum=1), "minimum must be <= maximum"),
        (lambda r: r["fields"].append(copy.deepcopy(r["fields"][0])), "duplicate field names"),
        (lambda r: r["fields"][0]["values"].append({"code": "no_account"}), "duplicate codes"),
        (lambda r: r["fields"][1].pop("reason_group"), "reason_group"),
        (lambda r: r.pop("spec_version"), "spec_version"),
    ],
)
def test_invalid_specs_name_the_problem(mutate: Any, message: str) -> None:
    raw = _raw("feature_spec.yaml")
    mutate(raw)
    with pytest.raises(ContractError, match=message):
        FeatureSpec.from_dict(raw)


def test_encoding_is_one_hot_for_categories_and_raw_for_numbers(spec: FeatureSpec) -> None:
    import csv

    rows = list(csv.DictReader((CONFIG.parents[1] / "data" / "german_credit.csv").open()))
    apps = [spec.from_source_row(r) for r in rows[:50]]
    X = spec.encode(apps)
    assert X.shape == (50, len(spec.columns)) and X.dtype == np.float32
    idx = spec.column_field_index
    for i, f in enumerate(spec.fields):
        block = X[:, idx == i]
        if f.kind == "categorical":
            assert np.all(block.sum(axis=1) == 1.0)
            assert [f.codes[k] for k in block.argmax(axis=1)] == [a[f.name] for a in apps]
        else:
            assert np.array_equal(block[:, 0], [a[f.name] for a in apps])
    with pytest.raises(ContractError, match="purpose: unknown value"):
        spec.encode([{**apps[0], "purpose": "yacht"}])
    with pytest.raises(ContractError, match="age_years: must be finite"):
        spec.encode([{**apps[0], "age_years": math.nan}])
    # a large batch is filled a column at a time: the same matrix as row by row, and the same errors
    many = apps * 4
    assert len(many) >= COLUMNWISE_FROM
    assert np.array_equal(spec.encode(many), np.vstack([spec.encode([a]) for a in many]))
    with pytest.raises(ContractError, match="purpose: unknown value"):
        spec.encode([*many, {**apps[0], "purpose": "yacht"}])
    with pytest.raises(ContractError, match="age_years: must be finite"):
        spec.encode([*many, {**apps[0], "age_years": math.inf}])
    with pytest.raises(ContractError, match="duration_months: expected a number, got bool"):
        spec.encode([*many, {**apps[0], "duration_months": True}])


def test_score_scaling_follows_points_to_double_odds(policy: Policy) -> None:
    s = policy.scaling
    anchor_margin = -math.log(s.anchor_odds)  # odds good:bad = anchor_odds
    assert s.score(anchor_margin) == s.anchor_score
    assert s.score(anchor_margin - math.log(2)) == s.anchor_score + s.pdo
    assert s.score(-50.0) == s.max_score and s.score(50.0) == s.min_score
    assert np.array_equal(s.scores(np.array([anchor_margin, 50.0])), [s.anchor_score, s.min_score])
    assert s.points(math.log(2)) == pytest.approx(-s.pdo)


def test_bands_rules_and_decisions(policy: Policy) -> None:
    assert policy.band_for(850).band == "A"
    assert policy.band_for(600).band == "A" and policy.band_for(599).band == "B"
    assert policy.band_for(300).band == "E"
    minor = {"age_years": 17, "credit_amount": 25000, "duration_months": 12}
    fired = policy.fired_rules(minor)
    assert [r.code for r in fired] == ["R01", "R02"]
    assert policy.decide(policy.band_for(700), fired) == "decline"
    assert policy.decide(policy.band_for(700), fired[1:]) == "refer"
    assert policy.decide(policy.band_for(700), ()) == "approve"


def test_policy_validation() -> None:
    raw = _raw("policy.yaml")
    raw["bands"][1]["min_score"] = 700
    with pytest.raises(ContractError, match="strictly decrease"):
        Policy.from_dict(raw)
    raw = _raw("policy.yaml")
    raw["rules"][0]["field"] = "shoe_size"
    spec = FeatureSpec.load(CONFIG / "feature_spec.yaml")
    with pytest.raises(ContractError, match="shoe_size"):
        Policy.from_dict(raw, spec)


def test_catalog_covers_every_group_and_never_names_prohibited_attributes(spec: FeatureSpec, policy: Policy) -> None:
    catalog = ReasonCatalog.load(CONFIG / "reason_codes.yaml", spec, policy)
    assert {r.group for r in catalog.model_reasons} == set(spec.reason_groups)
    raw = _raw("reason_codes.yaml")
    raw["model_reasons"] = raw["model_reasons"][1:]
    with pytest.raises(ContractError, match="without a code"):
        ReasonCatalog.from_dict(raw, spec, policy)
    raw = _raw("reason_codes.yaml")
    raw["model_reasons"][0]["auditor_text"] = "Attribution of foreign_worker"
    with pytest.raises(ContractError, match="prohibited-basis"):
        ReasonCatalog.from_dict(raw, spec, policy)
    # customer wording too, in words: the basis terms and the attribute's name spelled out, any case
    for words in ("Your Marital Status", "Because of your sex.", "Foreign worker status"):
        raw = _raw("reason_codes.yaml")
        raw["model_reasons"][0]["customer_text"]["en"] = words
        with pytest.raises(ContractError, match="prohibited-basis"):
            ReasonCatalog.from_dict(raw, spec, policy)
    raw = _raw("reason_codes.yaml")
    raw["model_reasons"][0]["customer_text"]["en"] = "Essex branch policy"  # a word, not a substring
    ReasonCatalog.from_dict(raw, spec, policy)
    raw = _raw("reason_codes.yaml")
    raw["rule_reasons"] = raw["rule_reasons"][:1]
    with pytest.raises(ContractError, match="R02"):
        ReasonCatalog.from_dict(raw, spec, policy)


def _stump() -> TreeEnsemble:
    # one tree: x0 <= 0.5 ? 1.0 : -1.0 (covers 30 / 70), base 0.25
    return TreeEnsemble(
        tree_offsets=np.array([0, 3]),
        children_left=np.array([1, -1, -1]),
        children_right=np.array([2, -1, -1]),
        feature=np.array([0, -1, -1]),
        threshold=np.array([0.5, np.nan, np.nan]),
        value=np.array([0.0, 1.0, -1.0]),
        cover=np.array([100.0, 30.0, 70.0]),
        base_offset=0.25,
        n_features=2,
    )


def test_explainer_artifact_roundtrip_and_reference_evaluation() -> None:
    tree = _stump()
    assert np.array_equal(tree.margin(np.array([[0.0, 9.0], [1.0, 9.0], [0.5, 0.0]])), [1.25, -0.75, 1.25])
    assert tree.expected_value == pytest.approx(0.25 + 0.3 - 0.7)
    again = TreeEnsemble.from_bytes(tree.to_bytes())
    assert again.to_bytes() == tree.to_bytes()
    assert np.array_equal(again.threshold[:1], tree.threshold[:1])


def test_explainer_artifact_refuses_malformed_trees() -> None:
    good = _stump()
    with pytest.raises(ContractError, match="outside the input"):
        TreeEnsemble(**{**_fields(good), "n_features": 0})
    with pytest.raises(ContractError, match="positive cover"):
        TreeEnsemble(**{**_fields(good), "cover": np.array([100.0, 0.0, 70.0])})
    with pytest.raises(ContractError, match="later node"):
        TreeEnsemble(**{**_fields(good), "children_left": np.array([0, -1, -1])})
    with pytest.raises(ContractError, match="not a valid explainer archive"):
        TreeEnsemble.from_bytes(b"PK\x03\x04 not really a zip")


def _fields(t: TreeEnsemble) -> dict[str, Any]:
    names = ("tree_offsets", "children_left", "children_right", "feature", "threshold", "value", "cover")
    return {n: np.array(getattr(t, n)) for n in names} | {"base_offset": t.base_offset, "n_features": t.n_features}
