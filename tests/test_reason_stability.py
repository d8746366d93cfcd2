"""Reason stability of the tiny, really trained models: the artifact, the manifest and the model card section hold
numbers measured on the real model (a few recomputed here through the serving engine); the per-decision flag in
the response and the record matches its definition."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_store.errors import ContractError
from model_store.spec import FeatureSpec
from model_store.stability import (
    MANIFEST_KEY,
    STABILITY_FILE,
    MarginThresholds,
    ReasonStability,
    margin_thresholds,
    ranked_groups,
    reason_stability,
)
from service.runtime import ServedModel
from training.config import TrainingConfig
from training.stability import perturbations

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "german_credit" / "training.yaml"
SPEC = FeatureSpec.load(REPO / "config" / "german_credit" / "feature_spec.yaml")


def _report(trained_models: Any, family: str) -> tuple[dict[str, Any], dict[str, Any], Path]:
    store, result = trained_models
    version = result.champion if family == "gbt" else result.baseline
    folder = Path(store.path(version.name, version.version))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return json.loads((folder / STABILITY_FILE).read_text(encoding="utf-8")), manifest, folder


@pytest.mark.parametrize("family", ["gbt", "scorecard"])
def test_the_artifact_manifest_and_card_hold_the_measured_numbers(trained_models: Any, family: str) -> None:
    report, manifest, folder = _report(trained_models, family)
    raw = (folder / STABILITY_FILE).read_bytes()
    assert manifest["files"][STABILITY_FILE] == hashlib.sha256(raw).hexdigest()
    perturbed = report["perturbations"]
    assert perturbed["rows"] == manifest["data"]["holdout_rows"]
    summary = manifest[MANIFEST_KEY]
    assert summary["top_margin_threshold"] == perturbed["top_margin_threshold"] > 0
    assert summary["set_margin_threshold"] == perturbed["set_margin_threshold"] > 0
    assert perturbed["top_reason_overturned"] > 0 and perturbed["set_overturned"] > 0
    assert summary["perturbations"] == perturbed["overall"]
    assert summary["flagged_fields"] == perturbed["flagged_fields"]
    assert perturbed["overall"]["n"] == sum(r["n"] for r in perturbed["fields"].values()) > 0
    # unordered categories are never perturbed; ordered ones and numbers are
    assert perturbed["fields"]["purpose"]["n"] == 0
    assert perturbed["fields"]["employment_since"]["n"] > 0 and perturbed["fields"]["age_years"]["n"] > 0
    flagged = [n for n, r in perturbed["fields"].items() if r["n"] and r["top_reason_change_rate"] > 0.1]
    assert perturbed["flagged_fields"] == flagged
    card = (folder / "model_card.md").read_text(encoding="utf-8")
    section = card.split("## Reason stability", 1)[1].split("\n## ", 1)[0]
    overall = perturbed["overall"]
    assert f"| one-step perturbations | {overall['n']} | {overall['top_reason_change_rate']:.1%} |" in section
    assert f"{perturbed['top_margin_threshold']:.4f} log-odds between the first and second" in section
    assert f"{perturbed['set_margin_threshold']:.4f} between the last reason given" in section
    if family == "gbt":
        seeds = report["seeds"]
        assert seeds["retrains"] == 2 and len(seeds["per_seed"]) == 2
        assert summary["seeds"] == seeds["overall"]
        assert seeds["overall"]["n"] == 2 * perturbed["rows"]
        rates = [s["top_reason_change_rate"] for s in seeds["per_seed"]]
        assert seeds["overall"]["top_reason_change_rate"] == pytest.approx(sum(rates) / 2)
        for entry in seeds["per_seed"]:
            assert f"random state {entry['random_state']}" in section
            assert f"{entry['top_reason_change_rate']:.1%}" in section
    else:
        assert report["seeds"] is None and summary["seeds"] is None
        assert "not measured for this family" in section


def _holdout(trained_models: Any) -> list[dict[str, Any]]:
    """The hold-out applications, split as training splits them."""
    from sklearn.model_selection import train_test_split

    from training.pipeline import load_dataset

    config = TrainingConfig.load(CONFIG)
    data = load_dataset(config, SPEC)
    _train, hold = train_test_split(
        np.arange(len(data.y)), test_size=config.holdout_fraction, stratify=data.y, random_state=config.random_state
    )
    return [data.applications[i] for i in np.sort(hold)]


@pytest.mark.parametrize("field", ["duration_months", "installment_rate_pct", "employment_since"])
def test_a_fields_rates_recomputed_through_the_serving_engine(trained_models: Any, field: str) -> None:
    store, result = trained_models
    report, _manifest, _folder = _report(trained_models, "gbt")
    expected = report["perturbations"]["fields"][field]
    engine = ServedModel.load(store, result.champion.name, result.champion.version).engine
    n_rules = len(engine.rule_codes)
    holdout = _holdout(trained_models)

    def model_reasons(applications: list[dict[str, Any]]) -> list[tuple[int, ...]]:
        groups = engine.decide(applications).group_attributions
        return [tuple(i - n_rules for i in engine.rank_reasons(row.tolist(), [])) for row in groups]

    original, changed = [], []
    for application in holdout:
        value = application[field]
        if SPEC.field(field).kind == "numeric":
            spec_field = SPEC.field(field)
            moves = [value + d for d in (-1, 1) if spec_field.minimum <= value + d <= spec_field.maximum]  # type: ignore[operator]
        else:
            codes = SPEC.field(field).codes
            i = codes.index(value)
            moves = [codes[j] for j in (i - 1, i + 1) if 0 <= j < len(codes)]
        for move in moves:
            original.append(application)
            changed.append({**application, field: move})
    before, after = model_reasons(original), model_reasons(changed)
    n = len(changed)
    assert expected["n"] == n
    top = sum(1 for a, b in zip(before, after, strict=True) if a[:1] != b[:1])
    sets = sum(1 for a, b in zip(before, after, strict=True) if set(a) != set(b))
    assert expected["top_reason_change_rate"] == pytest.approx(top / n, abs=1e-12)
    assert expected["top_set_change_rate"] == pytest.approx(sets / n, abs=1e-12)


def test_ranked_groups_is_the_engines_model_reason_ranking(trained_models: Any) -> None:
    store, result = trained_models
    engine = ServedModel.load(store, result.champion.name, result.champion.version).engine
    batch = engine.decide(_holdout(trained_models)[:60])
    n_rules = len(engine.rule_codes)
    for row in batch.group_attributions:
        expected = tuple(i - n_rules for i in engine.rank_reasons(row.tolist(), []))
        assert ranked_groups(row.tolist(), engine.groups, engine.max_reasons) == expected


def test_the_per_decision_flags_match_their_definition_in_response_and_record(
    api_app: Any, german_applications: list[Any], trained_models: Any
) -> None:
    _unused, manifest, _folder = _report(trained_models, "gbt")
    top_threshold = manifest[MANIFEST_KEY]["top_margin_threshold"]
    set_threshold = manifest[MANIFEST_KEY]["set_margin_threshold"]
    client = api_app.test_client()
    groups = SPEC.reason_groups
    seen: dict[str, set[bool]] = {"top_reason": set(), "reason_set": set()}
    for index, (request, _outcome) in enumerate(german_applications[:60]):
        body = client.post("/v1/decisions", json={**request, "application_id": f"RS-{index}"}).get_json()
        sums = dict.fromkeys(groups, 0.0)
        for name, value in body["explanation"]["attributions"].items():
            sums[SPEC.field(name).reason_group] += value
        positive = [*sorted((v for v in sums.values() if v > 0), reverse=True), 0.0, 0.0]
        given = sum(1 for r in body["reasons"] if r["kind"] == "model")
        top_gap = positive[0] - positive[1] if given else float("inf")
        cut_gap = positive[given - 1] - positive[given] if given else float("inf")
        # a hair from a threshold, sums in another order could fall either side: skip those rows
        if abs(top_gap - top_threshold) < 1e-9 or abs(cut_gap - set_threshold) < 1e-9:
            continue
        expected = {"top_reason": top_gap >= top_threshold, "reason_set": cut_gap >= set_threshold}
        assert body["reason_stability"] == expected, (top_gap, cut_gap)
        thresholds = MarginThresholds(top_threshold, set_threshold)
        assert reason_stability(list(sums.values()), given, thresholds) == ReasonStability(**expected)
        for key, value in expected.items():
            seen[key].add(value)
        if index < 3:
            stored = client.get(f"/v1/decisions/{body['decision_id']}").get_json()
            assert stored["payload"]["reason_stability"] == expected
            assert client.post(f"/v1/decisions/{body['decision_id']}/replay").get_json()["identical"] is True
    assert seen == {"top_reason": {True, False}, "reason_set": {True, False}}


def test_reason_stability_definition_on_hand_numbers() -> None:
    t = MarginThresholds(top=0.1, set=0.1)
    assert reason_stability([0.5, 0.2, 0.1, -0.3], 2, t) == ReasonStability(True, True)  # gaps 0.3 and 0.1
    assert reason_stability([0.5, 0.45, 0.1], 1, t) == ReasonStability(False, False)  # 0.05 apart; cut = top
    assert reason_stability([0.5, 0.2, 0.15], 2, t) == ReasonStability(True, False)  # cut 0.2 / 0.15
    assert reason_stability([0.5, 0.2], 2, t) == ReasonStability(True, True)  # after the list: nothing (0)
    assert reason_stability([0.5, 0.05], 2, t) == ReasonStability(True, False)  # last reason 0.05 from not being one
    assert reason_stability([-0.5], 0, t) == ReasonStability(True, True)
    assert margin_thresholds({}) is None
    section = {"top_margin_threshold": 0.25, "set_margin_threshold": 0.5}
    assert margin_thresholds({MANIFEST_KEY: section}) == MarginThresholds(0.25, 0.5)


def test_perturbations_take_one_step_within_range_and_ordered_categories_only() -> None:
    application = {f.name: None for f in SPEC.fields}
    application.update(duration_months=1, employment_since="unemployed", purpose="car_new", age_years=120)
    found = {(name, changed[name]) for name, changed in perturbations(SPEC, application)}
    assert found == {("duration_months", 2), ("employment_since", "below_1_year"), ("age_years", 119)}


def test_the_training_config_validates_reason_stability(tmp_path: Path) -> None:
    config = TrainingConfig.load(CONFIG)
    assert (config.reason_stability.seeds, config.reason_stability.unstable_rate) == (2, 0.1)
    assert TrainingConfig.load(CONFIG, {"reason_stability": {"seeds": 0}}).reason_stability.seeds == 0
    for bad, key in (({"seeds": 11}, "seeds"), ({"unstable_rate": 2}, "unstable_rate"), ({"what": 1}, "unknown")):
        with pytest.raises(ContractError, match=f"reason_stability.*{key}"):
            TrainingConfig.load(CONFIG, {"reason_stability": bad})
