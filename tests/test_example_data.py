"""The synthetic lender example: its generator, its data and its four config files, checked with the real contract."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from model_store._yaml import load_mapping
from model_store.catalog import ReasonCatalog
from model_store.policy import Policy
from model_store.spec import FeatureSpec
from training.config import TrainingConfig

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "data" / "synthetic_lender"
CONFIG_DIR = ROOT / "config" / "synthetic_lender"
GENERATOR = DATA_DIR / "generate.py"
CSV_PATH = DATA_DIR / "applications.csv"
TRAINING_YAML = CONFIG_DIR / "training.yaml"

# The missing-value pattern data/synthetic_lender/README.md documents: source column -> (written as, rows).
DOCUMENTED_MISSING = {
    "stated_monthly_income": ("", 438),
    "employment_status": ("NA", 385),
    "months_in_current_job": ("", 476),
    "home_ownership": ("", 303),
    "months_at_current_address": ("", 295),
    "revolving_util_pct": ("", 385),
    "marital_status": ("", 209),
}
PROTECTED = "marital_status"
# Names, values and words of the other shipped example that must not leak into this one.
OTHER_EXAMPLE_WORDS = re.compile(
    r"german|statlog|age_years|credit_amount|checking_account|personal_status|foreign_worker", re.IGNORECASE
)
OTHER_EXAMPLE_UNIT = re.compile(r"\bDM\b")


@pytest.fixture(scope="module")
def config() -> TrainingConfig:
    return TrainingConfig.load(TRAINING_YAML)


@pytest.fixture(scope="module")
def contract(config: TrainingConfig) -> tuple[FeatureSpec, Policy, ReasonCatalog]:
    return config.load_contract()


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with CSV_PATH.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def bad(rows: list[dict[str, str]], contract: tuple[FeatureSpec, Policy, ReasonCatalog]) -> np.ndarray:
    spec = contract[0]
    return np.asarray([r[spec.target_column] == spec.bad_value for r in rows], dtype=np.int64)


def _generate(output: Path, *args: str) -> bytes:
    subprocess.run([sys.executable, str(GENERATOR), "--output", str(output), *args], check=True, cwd=ROOT)
    return output.read_bytes()


def test_generator_reproduces_the_committed_csv_byte_for_byte(tmp_path: Path) -> None:
    assert _generate(tmp_path / "applications.csv") == CSV_PATH.read_bytes()


def test_generator_rows_and_seed_options(tmp_path: Path) -> None:
    small = _generate(tmp_path / "a.csv", "--rows", "50", "--seed", "7")
    assert small == _generate(tmp_path / "b.csv", "--rows", "50", "--seed", "7")
    assert small != _generate(tmp_path / "c.csv", "--rows", "50", "--seed", "8")
    assert small.decode().count("\n") == 51  # header and 50 rows


def test_the_four_config_files_load_and_cross_check(
    config: TrainingConfig, contract: tuple[FeatureSpec, Policy, ReasonCatalog]
) -> None:
    spec, policy, catalog = contract
    assert config.data_csv == CSV_PATH
    assert config.name == "synthetic-lender"
    assert len(spec.fields) >= 12
    assert {f.kind for f in spec.fields} == {"numeric", "categorical"}
    assert spec.target_column == "default_12m" and spec.bad_value == "1"
    assert [b.field for b in spec.fairness_bands] == ["applicant_age"]
    assert {r.code: r.action for r in policy.rules} == {"R01": "decline", "R02": "refer", "R03": "refer"}
    assert policy.max_reasons == 4
    assert catalog.inquiries_field == "credit_inquiries_6m"
    groups_that_may_be_missing = {f.reason_group for f in spec.fields if f.missing}
    for reason in catalog.model_reasons:
        assert (reason.missing is not None) == (reason.group in groups_that_may_be_missing), reason.group
    # yes/no sources and numeric codes stay the strings the CSV writes
    assert [c.source for c in spec.field("has_guarantor").values] == ["yes", "no"]
    assert [c.source for c in spec.field("application_channel").values] == ["1", "2", "3", "4", "5"]
    assert spec.field("employment_type").missing_values == ("", "NA")


def test_dataset_section_is_as_specified() -> None:
    dataset = load_mapping(TRAINING_YAML)["dataset"]
    assert {"name", "source", "licence", "description", "notes", "cost_matrix", "on_invalid"} <= set(dataset)
    assert all(isinstance(dataset[k], str) and dataset[k] for k in ("name", "source", "licence", "description"))
    assert dataset["licence"] == "Apache-2.0"
    assert isinstance(dataset["notes"], list) and all(isinstance(n, str) for n in dataset["notes"])
    assert dataset["cost_matrix"] == {"false_approve": 5, "false_decline": 1}
    assert dataset["on_invalid"] == "refuse"


def test_every_row_translates_and_passes_every_field_check(
    rows: list[dict[str, str]], contract: tuple[FeatureSpec, Policy, ReasonCatalog]
) -> None:
    spec = contract[0]
    assert len(rows) == 6000
    applications = []
    for i, row in enumerate(rows):
        application = spec.from_source_row(row)
        for field in spec.fields:
            value = application[field.name]
            assert field.check(value) == value, (i, field.name, value)
            if value is None:
                assert field.missing, (i, field.name)
        applications.append(application)
    not_provided = {f.source_column: sum(a[f.name] is None for a in applications) for f in spec.fields if f.missing}
    assert not_provided == {c: n for c, (_, n) in DOCUMENTED_MISSING.items() if c != PROTECTED}
    assert spec.encode(applications).shape == (len(rows), len(spec.columns))


def test_missing_values_are_as_documented(
    rows: list[dict[str, str]], contract: tuple[FeatureSpec, Policy, ReasonCatalog]
) -> None:
    spec = contract[0]
    may_be_missing = {f.source_column for f in spec.fields if f.missing}
    assert may_be_missing == set(DOCUMENTED_MISSING) - {PROTECTED}
    for column in rows[0]:
        cells = [r[column] for r in rows]
        missing = [c for c in cells if c in ("", "NA")]
        if column not in DOCUMENTED_MISSING:
            assert not missing, column
            continue
        label, count = DOCUMENTED_MISSING[column]
        assert set(missing) == {label} and len(missing) == count, column
        share = count / len(rows)
        assert (0.03 <= share <= 0.05) if column == PROTECTED else (0.045 <= share <= 0.10), column
    # each field misses on its own draw: no two fields are missing together much more often than by chance
    masks = {c: np.asarray([r[c] in ("", "NA") for r in rows]) for c in DOCUMENTED_MISSING}
    for a in masks:
        for b in masks:
            if a < b:
                expected = masks[a].mean() * masks[b].mean() * len(rows)
                assert (masks[a] & masks[b]).sum() < expected + 4 * np.sqrt(expected) + 1, (a, b)


def test_bad_rate_is_in_range(rows: list[dict[str, str]], bad: np.ndarray) -> None:
    assert {r["default_12m"] for r in rows} == {"0", "1"}
    assert 0.15 <= bad.mean() <= 0.25


def _univariate_auc(cells: list[str], bad: np.ndarray) -> float:
    """AUC of the best one-field ranking: numbers by value (either direction), labels by their bad rate."""
    present = np.asarray([c not in ("", "NA") for c in cells])
    labels = np.asarray(cells)
    numbers = [c for c in labels[present] if re.fullmatch(r"-?\d+(\.\d+)?", c)]
    if len(numbers) == present.sum() and len(set(numbers)) > 5:
        auc = float(roc_auc_score(bad[present], np.asarray(numbers, dtype=np.float64)))
        return max(auc, 1 - auc)
    rate = {label: bad[labels == label].mean() for label in set(cells)}
    return float(roc_auc_score(bad, [rate[c] for c in cells]))


def test_no_field_separates_the_classes(rows: list[dict[str, str]], bad: np.ndarray) -> None:
    aucs = {
        c: _univariate_auc([r[c] for r in rows], bad) for c in rows[0] if c not in ("application_id", "default_12m")
    }
    assert len(aucs) >= 17
    assert max(aucs.values()) < 0.9, aucs
    assert aucs[PROTECTED] < 0.55  # generated on its own draw: no real signal


def test_the_monitoring_attribute_is_never_a_model_input(
    rows: list[dict[str, str]], contract: tuple[FeatureSpec, Policy, ReasonCatalog]
) -> None:
    spec, _, catalog = contract
    (attribute,) = spec.monitoring_only
    assert attribute.name == attribute.source_column == attribute.monitoring_field == PROTECTED
    assert "not_provided" in attribute.values
    assert {r[PROTECTED] for r in rows} - {""} <= set(attribute.values)
    assert PROTECTED not in spec.field_names
    assert PROTECTED not in {f.source_column for f in spec.fields}
    assert not any(c.startswith(f"{PROTECTED}=") for c in spec.columns)
    for reason in catalog.all_codes:
        assert "marital" not in f"{reason.customer_text} {reason.auditor_text}".lower(), reason.code


def test_no_name_value_or_word_of_the_other_example() -> None:
    files = sorted(p for d in (DATA_DIR, CONFIG_DIR) for p in d.rglob("*") if p.is_file() and p.suffix != ".pyc")
    assert {p.name for p in files} >= {"generate.py", "applications.csv", "README.md", "training.yaml"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not OTHER_EXAMPLE_WORDS.search(text), (path, OTHER_EXAMPLE_WORDS.search(text))
        assert not OTHER_EXAMPLE_UNIT.search(text), path
