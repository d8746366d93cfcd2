"""Missing values end to end, on a small crafted data set: trained with the exactness proofs on rows with
missing values, served (null or left out), explained with the catalog's missing-value reasons, replayed,
and decided from a batch file with blank cells."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from model_store.store import ModelStore

SPEC = """
spec_version: lender-spec-1
target: {source_column: status, bad_value: charged_off}
fields:
  - {name: monthly_income, kind: numeric, dtype: number, minimum: 0, maximum: 50000, unit: EUR,
     description: Monthly net income, reason_group: income, monotone: -1, actionable: true,
     missing: true, missing_values: ["", "NA"]}
  - {name: debt_ratio, kind: numeric, dtype: number, minimum: 0, maximum: 5, description: Debt to income,
     reason_group: debt, monotone: 1, actionable: true}
  - {name: months_employed, kind: numeric, dtype: integer, minimum: 0, maximum: 600, unit: months,
     description: Months with the current employer, reason_group: employment, monotone: -1, missing: true}
  - name: home
    kind: categorical
    description: Home ownership
    reason_group: housing
    missing: true
    missing_values: ["", "unknown"]
    values:
      - {code: own, source: O, label: Owns a home}
      - {code: rent, source: R, label: Rents}
      - {code: other, source: X, label: Other}
  - name: region
    kind: categorical
    description: Region
    reason_group: region
    values:
      - {code: r1, source: 1, label: North}
      - {code: r2, source: 2, label: Centre}
      - {code: r3, source: 3, label: South}
  - name: guarantor
    kind: categorical
    description: Someone guarantees the loan
    reason_group: guarantor
    values:
      - {code: "yes", source: yes, label: A guarantor}
      - {code: "no", source: no, label: No guarantor}
monitoring_only:
  - {name: marital_status, source_column: marital_status, basis: marital status (ECOA),
     monitoring_field: marital_status, values: [married, single, not_provided]}
"""

POLICY = """
policy_version: lender-policy-1
scaling: {anchor_score: 600, anchor_odds: 19, pdo: 40, min_score: 300, max_score: 850}
max_reasons: 3
bands:
  - {band: A, min_score: 560, decision: approve}
  - {band: B, min_score: 500, decision: refer}
  - {band: C, min_score: 300, decision: decline}
rules:
  - {code: R1, field: debt_ratio, operator: gt, value: 4.5, action: refer, description: Debt above the product limit}
"""

CATALOG = """
catalog_version: lender-reasons-1
model_reasons:
  - code: M01
    group: income
    customer_text: Your income in relation to the credit requested
    auditor_text: Attribution of monthly_income
    missing: {code: M01N, customer_text: No information on your income was provided,
              auditor_text: monthly_income missing; its missing-value attribution}
  - {code: M02, group: debt, customer_text: Your existing debt in relation to your income,
     auditor_text: Attribution of debt_ratio}
  - code: M03
    group: employment
    customer_text: Length of your current employment
    auditor_text: Attribution of months_employed
    missing: {code: M03N, customer_text: No information on your employment was provided,
              auditor_text: months_employed missing}
  - code: M04
    group: housing
    customer_text: Your housing situation
    auditor_text: Attribution of home (one-hot columns summed)
    missing: {code: M04N, customer_text: No information on your housing was provided,
              auditor_text: home missing}
  - {code: M05, group: region, customer_text: Where you live, auditor_text: Attribution of region}
  - {code: M06, group: guarantor, customer_text: No guarantor for the loan, auditor_text: Attribution of guarantor}
rule_reasons:
  - {code: R1, customer_text: Your debt is above the limit for this product, auditor_text: Rule R1 fired}
"""

TRAINING = """
name: lender
data: {csv: data.csv}
feature_spec: feature_spec.yaml
policy: policy.yaml
reason_codes: reason_codes.yaml
random_state: 3
holdout_fraction: 0.3
cv_folds: 2
champion: {family: gbt, params: {learning_rate: 0.1, max_iter: 30, max_depth: 3, min_samples_leaf: 20}}
baseline: {family: scorecard, params: {max_n_bins: 4, min_bin_size: 0.05, C: 1.0}}
"""


def _write_data(path: Path, n: int = 1500, seed: int = 11) -> None:
    """Income (missing 20 %: blank or NA), employment (missing 15 %), home (missing 10 %), a logistic target."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(7.8, 0.5, n).clip(0, 50000)
    debt = rng.gamma(2.0, 0.5, n).clip(0, 5)
    employed = rng.integers(0, 400, n)
    home = rng.choice(["O", "R", "X"], n, p=[0.5, 0.4, 0.1])
    region = rng.choice(["1", "2", "3"], n)
    guarantor = rng.choice(["yes", "no"], n, p=[0.2, 0.8])
    income_gone = rng.random(n) < 0.2
    employed_gone = rng.random(n) < 0.15
    home_gone = rng.random(n) < 0.1
    logit = (
        -1.2
        - 0.8 * (np.log(income) - 7.8)
        + 0.9 * (debt - 1.0)
        - 0.004 * employed
        + 0.6 * income_gone
        + 0.3 * (home == "R")
        - 0.5 * (guarantor == "yes")
    )
    bad = rng.random(n) < 1 / (1 + np.exp(-logit))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "monthly_income", "debt_ratio", "months_employed", "home", "region", "guarantor",
                      "marital_status", "status"])  # fmt: skip
        for i in range(n):
            out.writerow(
                [
                    i,
                    ("NA" if i % 2 else "") if income_gone[i] else f"{income[i]:.2f}",
                    f"{debt[i]:.3f}",
                    "" if employed_gone[i] else int(employed[i]),
                    ("unknown" if i % 3 == 0 else "") if home_gone[i] else home[i],
                    region[i],
                    guarantor[i],
                    rng.choice(["married", "single"]),
                    "charged_off" if bad[i] else "paid",
                ]
            )


@pytest.fixture(scope="module")
def lender(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelStore, Any]:
    """The crafted lender's config, data and a model store with both families trained on it."""
    from training.pipeline import train

    folder = tmp_path_factory.mktemp("lender")
    for name, text in (
        ("feature_spec.yaml", SPEC),
        ("policy.yaml", POLICY),
        ("reason_codes.yaml", CATALOG),
        ("training.yaml", TRAINING),
    ):
        (folder / name).write_text(text, encoding="utf-8")
    _write_data(folder / "data.csv")
    store = ModelStore(folder / "store")
    result = train(folder / "training.yaml", store, progress=False)
    return folder, store, result


def test_training_keeps_missing_values_and_proves_exactness_on_them(lender: tuple[Path, ModelStore, Any]) -> None:
    _folder, store, result = lender
    spec = store.load_bundle(result.champion.name, result.champion.version).spec
    assert spec.field("guarantor").codes == ("yes", "no")  # YAML 1.2: yes/no stay strings
    assert "home=(missing)" in spec.columns
    for version in result.versions:
        manifest = store.manifest(version.name, version.version)
        parity = manifest["parity"]
        assert parity["attribution_sum_vs_onnx_margin"] <= 1e-5 and parity["attributions_vs_shap"] <= 1e-6
        assert parity["onnx_vs_sklearn_probability"] <= 1e-6
        reference = json.loads((store.path(version.name, version.version) / "reference.json").read_text())
        assert any(app["monthly_income"] is None for app in reference["applications"])
    # the proofs ran on hold-out rows with missing values: check them again here, on rows with every pattern
    from training.export import run_onnx

    bundle = store.load_bundle(result.champion.name, result.champion.version)
    apps = [
        {
            "monthly_income": inc,
            "debt_ratio": 1.2,
            "months_employed": emp,
            "home": home,
            "region": "r2",
            "guarantor": "no",
        }
        for inc in (None, 2500.0)
        for emp in (None, 24)
        for home in (None, "rent")
    ]
    X = bundle.spec.encode(apps)
    assert np.isnan(X[:, bundle.spec.columns.index("monthly_income")]).sum() == 4
    margin, _ = run_onnx(bundle.onnx_path.read_bytes(), X)
    np.testing.assert_allclose(bundle.explainer.margin(X), margin, atol=1e-5)
    scorecard = store.load_bundle(result.baseline.name, result.baseline.version)
    margin, _ = run_onnx(scorecard.onnx_path.read_bytes(), X)
    np.testing.assert_allclose(scorecard.explainer.margin(X), margin, atol=1e-5)


def _app(store: ModelStore, tmp_path: Path, api_keys_setting: str) -> Any:
    from service.app import create_app

    return create_app(
        {
            "MODEL_STORE": str(store.root),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'decisions.sqlite3'}",
            "API_KEYS": api_keys_setting,
            "TESTING": True,
        }
    )


def test_the_api_decides_missing_values_with_their_own_reasons(
    lender: tuple[Path, ModelStore, Any], tmp_path: Path, api_keys_setting: str, api_keys: dict[str, str]
) -> None:
    _folder, store, _result = lender
    app = _app(store, tmp_path, api_keys_setting)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_keys['all']}"
    full = {"monthly_income": 900.0, "debt_ratio": 2.5, "months_employed": 3, "home": "rent", "region": "r1",
            "guarantor": "no"}  # fmt: skip
    # null, or left out: a missing value (the field allows it)
    unknown = {**full, "monthly_income": None, "home": None}
    del unknown["months_employed"]
    made = client.post("/v1/decisions", json={"application_id": "L-1", "applicant": unknown})
    assert made.status_code == 201, made.get_json()
    body = made.get_json()
    by_group = {r["group"]: r for r in body["reasons"] if r["kind"] == "model"}
    assert by_group, body
    for group, code in (("income", "M01N"), ("employment", "M03N"), ("housing", "M04N")):
        if group in by_group:  # a missing field that raised the risk: the catalog's missing-value reason
            assert by_group[group]["code"] == code and by_group[group]["customer_text"].startswith("No information")
            assert all(v["label"] == "Not provided" and v["value"] is None for v in by_group[group]["values"])
    assert {"M01N", "M03N", "M04N"} & {r["code"] for r in body["reasons"]}
    assert body["explanation"]["attributions"]["monthly_income"] != 0.0
    # the same applicant with everything provided never gets a missing-value reason
    given = client.post("/v1/decisions", json={"application_id": "L-2", "applicant": full}).get_json()
    assert not {r["code"] for r in given["reasons"]} & {"M01N", "M03N", "M04N"}
    # replay with the recorded version: identical; the record keeps the missing values as null
    replay = client.post(f"/v1/decisions/{body['decision_id']}/replay").get_json()
    assert replay["identical"] is True, replay
    stored = client.get(f"/v1/decisions/{body['decision_id']}").get_json()
    assert stored["request"]["applicant"]["monthly_income"] is None
    assert stored["request"]["applicant"]["months_employed"] is None
    # a field that may not be missing still must be given
    refused = client.post("/v1/decisions", json={"application_id": "L-3", "applicant": {**full, "debt_ratio": None}})
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == [
        {"field": "applicant.debt_ratio", "message": "Missing data for required field."}
    ]
    # the contract says so
    doc = client.get("/openapi.json").get_json()
    applicant = doc["components"]["schemas"]["Applicant"]
    assert applicant["properties"]["monthly_income"]["type"] == ["number", "null"]
    assert None in applicant["properties"]["home"]["enum"]
    assert "monthly_income" not in applicant["required"] and "debt_ratio" in applicant["required"]
    get_state_store(app).close()


def get_state_store(app: Any) -> Any:
    from service.state import get_state

    return get_state(app).store


def test_a_batch_file_with_blank_cells_decides_like_the_api(
    lender: tuple[Path, ModelStore, Any], tmp_path: Path
) -> None:
    from cli.score import score_command
    from service.models import ModelCache

    _folder, store, result = lender
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    rows = [
        ["A1", "", "1.5", "", "", "r2", "yes"],
        ["A2", "1200", "0.5", "40", "own", "r3", "no"],
        ["A3", "", "9", "12", "rent", "r1", "no"],  # debt out of range: refused
    ]
    with open(source, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["application_id", "monthly_income", "debt_ratio", "months_employed", "home", "region", "guarantor"]
        )
        writer.writerows(rows)
    runner = CliRunner()
    done = runner.invoke(
        score_command, ["--input", str(source), "--output", str(out), "--model-store", str(store.root)]
    )
    assert done.exit_code == 0, done.output
    assert "row 3 (A3): debt_ratio: Must be from 0 to 5." in done.output
    got = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [g["application_id"] for g in got] == ["A1", "A2"]
    engine = ModelCache(store).get(result.champion.name, result.champion.version).engine
    first = {"monthly_income": None, "debt_ratio": 1.5, "months_employed": None, "home": None, "region": "r2",
             "guarantor": "yes"}  # fmt: skip
    decision = engine.decide([copy.deepcopy(first)]).decision(0)
    assert got[0]["decision"] == decision.decision and int(got[0]["score"]) == decision.score
    assert [got[0][f"reason_{k}"] for k in range(1, 4)][: len(decision.reasons)] == [r.code for r in decision.reasons]
