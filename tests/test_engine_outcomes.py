"""The decision engine's policy stage, decided for a whole batch as arrays (band, fired rules, decision, ranked reasons
with missing-value variants), against the rules written out row by row, on really trained models: the default
example's (rules firing on ages, amounts and durations) and the missing-values lender's (blank fields, missing-value
reason variants, a rule on the debt ratio). A row gets the same outcome alone (n = 1, the API's path) as in a batch."""

from __future__ import annotations

import csv
import operator
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_missing_values import lender  # noqa: F401  (the missing-values lender's trained models)

from model_store.errors import ContractError
from model_store.spec import CodedColumn
from model_store.store import ModelStore
from model_store.vocabulary import SEVERITY
from service.core.engine import DecisionEngine, RowOutcome
from service.models import ModelCache
from training.config import TrainingConfig, default_config_path

OPERATORS = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "eq": operator.eq,
             "ne": operator.ne}  # fmt: skip


def reference_outcome(
    engine: DecisionEngine, application: Mapping[str, Any], score: int, groups: Sequence[float]
) -> RowOutcome:
    """The policy's outcome of one row, as the engine's docstring states the rules, one row at a time."""
    policy, names = engine.policy, engine.groups
    band = next((k for k, b in enumerate(policy.bands) if score >= b.min_score), len(policy.bands) - 1)
    fired = tuple(
        j
        for j, rule in enumerate(policy.rules)
        if application.get(rule.field) is not None and OPERATORS[rule.operator](application[rule.field], rule.value)
    )
    severity = max([SEVERITY[policy.bands[band].decision], *(SEVERITY[policy.rules[j].action] for j in fired)])
    room = policy.max_reasons - len(fired)
    ranked = sorted((-value, names[g], g) for g, value in enumerate(groups) if value > 0.0)[: max(room, 0)]
    n_rules = len(policy.rules)
    reasons = list(fired)
    for _, _, g in ranked:
        fields = [f.name for f in engine.spec.fields if f.reason_group == names[g]]
        missing = engine.catalog.for_group(names[g]).missing is not None
        reasons.append(n_rules + g + (len(names) if missing and all(application.get(f) is None for f in fields) else 0))
    return RowOutcome(severity, band, fired, tuple(reasons))


def coded(values: list[Any]) -> CodedColumn:
    """A column as its distinct values (told apart by type too) and each row's index among them."""
    index: dict[tuple[type, Any], int] = {}
    codes = [index.setdefault((type(v), v), len(index)) for v in values]
    column = CodedColumn([v for _, v in index], np.asarray(codes, dtype=np.intp))
    assert list(column) == values and column[3] == values[3] and column[2:5] == values[2:5]
    return column


def check_engine(engine: DecisionEngine, applications: list[dict[str, Any]]) -> list[RowOutcome]:
    """Every row's outcome in a batch (from dicts, and from columns) equals the reference's and its own alone."""
    batch = engine.decide(applications)
    columns = {name: [a[name] for a in applications] for name in engine.spec.field_names}
    by_columns = engine.decide(applications, columns)
    expected = [
        reference_outcome(engine, a, s, g)
        for a, s, g in zip(applications, batch.score.tolist(), batch.group_attributions.tolist(), strict=True)
    ]
    by_codes = engine.decide(applications, {name: coded(values) for name, values in columns.items()})
    assert list(batch.outcomes) == expected
    assert list(by_columns.outcomes) == expected
    assert list(by_codes.outcomes) == expected
    for other in (by_columns, by_codes):
        assert np.array_equal(other.field_attributions, batch.field_attributions)
        assert np.array_equal(other.score, batch.score)
    distinct, which = batch.distinct_outcomes()
    assert [distinct[k] for k in which] == expected
    for i in range(0, len(applications), max(1, len(applications) // 60)):
        alone = engine.decide([applications[i]])
        assert alone.outcome(0) == expected[i] == batch.outcome(i)
        assert alone.decision(0) == batch.decision(i)
        assert (
            engine.policy_outcome(applications[i], int(batch.score[i]), batch.group_attributions[i].tolist())
            == (expected[i])
        )
    screened = engine.screen(applications)[2]
    assert screened == [o.action for o in expected]
    return expected


def test_default_model_outcomes_with_rules_firing(trained_models: tuple[ModelStore, Any]) -> None:
    store, result = trained_models
    engine = ModelCache(store).get(result.champion.name, result.champion.version).engine
    spec = engine.spec
    with open(TrainingConfig.load(default_config_path()).data_csv, newline="", encoding="utf-8") as fh:
        applications = [spec.from_source_row(row) for row in csv.DictReader(fh)][:600]
    # every rule fires on some rows (alone and together), and model reasons make room for them
    for i in range(0, 600, 7):
        applications[i]["age_years"] = 16
    for i in range(0, 600, 5):
        applications[i]["credit_amount"] = 25_000
    for i in range(0, 600, 11):
        applications[i]["duration_months"] = 80
    outcomes = check_engine(engine, applications)
    fired = {j for o in outcomes for j in o.fired}
    assert fired == {0, 1, 2}
    assert any(len(o.fired) == 3 for o in outcomes)
    assert {o.action for o in outcomes} == {0, 1, 2}


def test_lender_outcomes_with_missing_values_and_rules(lender: tuple[Path, ModelStore, Any]) -> None:  # noqa: F811
    folder, store, result = lender
    for version in result.versions:
        engine = ModelCache(store).get(version.name, version.version).engine
        spec = engine.spec
        with open(folder / "data.csv", newline="", encoding="utf-8") as fh:
            applications = [spec.from_source_row(row) for row in csv.DictReader(fh)][:800]
        for i in range(0, 800, 9):  # the debt-ratio rule fires
            applications[i]["debt_ratio"] = 4.9
        for i in range(3, 800, 13):  # every field that may be missing is missing
            applications[i].update(monthly_income=None, months_employed=None, home=None)
        outcomes = check_engine(engine, applications)
        n_rules, n_groups = len(engine.rule_codes), len(engine.groups)
        assert any(o.fired for o in outcomes)
        assert any(index >= n_rules + n_groups for o in outcomes for index in o.reasons)  # missing variants given


def test_ranking_ties_broken_by_name_and_room_left_by_rules(trained_models: tuple[ModelStore, Any]) -> None:
    store, result = trained_models
    engine = ModelCache(store).get(result.champion.name, result.champion.version).engine
    names, n_rules = engine.groups, len(engine.rule_codes)
    rng = np.random.default_rng(5)
    rows = rng.choice([-0.5, 0.0, 0.25, 0.5, 1.0, np.nan], size=(400, len(names)))
    fired = rng.random((400, n_rules)) < 0.3
    ranked = engine.ranking.ranked(rows, fired if fired.any() else None)
    for row, hits, model in zip(rows.tolist(), fired.tolist(), ranked.tolist(), strict=True):
        room = engine.policy.max_reasons - sum(hits)
        keyed = sorted((-v, names[g], g) for g, v in enumerate(row) if v > 0.0)[: max(room, 0)]
        assert [index for index in model if index >= 0] == [n_rules + g for _, _, g in keyed]
        assert model[len(keyed) :] == [-1] * (len(model) - len(keyed))
        fired_rules = [j for j, hit in enumerate(hits) if hit]
        assert engine.rank_reasons(row, fired_rules) == (*fired_rules, *(n_rules + g for _, _, g in keyed))


@pytest.mark.parametrize("score", [299, 300, 464, 465, 509, 510, 556, 557, 599, 600, 850, 10_000])
def test_bands_at_the_cut_offs(trained_models: tuple[ModelStore, Any], score: int) -> None:
    store, result = trained_models
    policy = ModelCache(store).get(result.champion.name, result.champion.version).engine.policy
    expected = next((k for k, b in enumerate(policy.bands) if score >= b.min_score), len(policy.bands) - 1)
    assert policy.band_index(score) == expected
    assert policy.band_indices(np.asarray([score, score])).tolist() == [expected, expected]


def test_encoding_row_by_row_by_columns_and_by_codes_agree(lender: tuple[Path, ModelStore, Any]) -> None:  # noqa: F811
    folder, store, result = lender
    spec = store.load_bundle(result.champion.name, result.champion.version).spec
    with open(folder / "data.csv", newline="", encoding="utf-8") as fh:
        applications = [spec.from_source_row(row) for row in csv.DictReader(fh)][:300]

    class Code(str):
        """A str subclass: taken by its value, as a plain str."""

    applications[5]["home"] = Code(applications[5]["home"] or "own")
    applications[6].pop("home")  # a field that may be missing, left out
    applications[7]["months_employed"] = 12.0  # an integer field's float
    columns = {name: [a.get(name) for a in applications] for name in spec.field_names}
    rows = np.vstack([spec.encode([a]) for a in applications])
    assert rows.dtype == np.float32
    for encoded in (
        spec.encode(applications),
        spec.encode(applications, columns),
        spec.encode(applications, {n: coded(v) for n, v in columns.items()}),
    ):
        assert np.array_equal(encoded, rows, equal_nan=True)
    bad = dict(applications[0])
    for change, message in (
        ({"debt_ratio": True}, "debt_ratio: expected a number, got bool"),
        ({"debt_ratio": float("inf")}, "debt_ratio: must be finite"),
        ({"region": "r9"}, "region: unknown value 'r9'"),
        ({"region": None}, "region: unknown value None"),
        ({"home": 3}, "home: unknown value 3"),
    ):
        with pytest.raises(ContractError, match=message):
            spec.encode([{**bad, **change}])
        with pytest.raises(ContractError, match=message):
            spec.encode([{**bad, **change}] * 70)
    for name in ("region", "debt_ratio"):
        with pytest.raises(ContractError, match=f"{name}: missing"):
            spec.encode([{k: v for k, v in bad.items() if k != name}])


def test_reasons_show_each_fields_value_with_its_label(lender: tuple[Path, ModelStore, Any]) -> None:  # noqa: F811
    """A reason shows the application's value of each field behind it, as given (its type too), with the spec's label
    of it: a category's code, a number, no value, and a str subclass (a code, shown as given)."""
    folder, store, result = lender
    engine = ModelCache(store).get(result.champion.name, result.champion.version).engine
    spec = engine.spec
    with open(folder / "data.csv", newline="", encoding="utf-8") as fh:
        applications = [spec.from_source_row(row) for row in csv.DictReader(fh)][:400]

    class Code(str):
        """A str subclass: a valid code, shown as the value given."""

    for i in range(0, 400, 9):
        applications[i]["debt_ratio"] = 4.9  # the debt-ratio rule fires
    for i in range(3, 400, 13):
        applications[i].update(monthly_income=None, months_employed=None, home=None)
    for i in range(5, 400, 17):
        applications[i]["home"] = Code(applications[i]["home"] or "own")
    batch = engine.decide(applications)
    shown: set[tuple[str, type, str]] = set()
    for i, application in enumerate(applications):
        for decision in (batch.decision(i), engine.decide([application]).decision(0)):
            assert len(decision.reasons) == len(batch.outcome(i).reasons)
            for index, reason in zip(batch.outcome(i).reasons, decision.reasons, strict=True):
                assert reason.code == engine.reason_codes[index]
                names = engine.ranking.fields[index]
                assert [v.field for v in reason.values] == list(names)
                for name, value in zip(names, reason.values, strict=True):
                    given = application.get(name)
                    assert value.value == given and type(value.value) is type(given)
                    assert value.label == spec.field(name).label_of(given)
                    shown.add((spec.field(name).kind, type(given), value.label))
    kinds = {(kind, kind_of) for kind, kind_of, _ in shown}
    assert {("categorical", str), ("categorical", Code), ("numeric", type(None))} <= kinds
    assert any(kind == "numeric" and kind_of in (int, float) for kind, kind_of in kinds)
