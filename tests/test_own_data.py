"""A lender's own data by config alone.

The shipped second example (``config/synthetic_lender``) is trained, served and asked for decisions on
applicants with missing values; its model card, period report and adverse-action notice speak only of it.
And no module of the product names a field, value or word of the default example (German credit data).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from model_store.spec import FeatureSpec
from model_store.store import ModelStore

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "synthetic_lender"
DEFAULT = REPO / "config" / "german_credit"


def _default_example_words() -> re.Pattern[str]:
    """The default example's identifiers (field names, source columns, codes with an underscore: no plain English
    word such as "job" or "housing") and the words that name the data set itself."""
    spec = FeatureSpec.load(DEFAULT / "feature_spec.yaml")
    names = {spec.target_column, *spec.field_names, *(f.source_column for f in spec.fields)}
    names |= {n for m in spec.monitoring_only for n in (m.name, m.source_column, m.monitoring_field)}
    names |= {c for f in spec.fields for c in f.codes}
    identifiers = sorted((n for n in names if "_" in n), key=len, reverse=True)
    words = ["german", "statlog", "hofmann", "grömping", "deutsch", "creditability", r"\bDM\b", r"\buci\b"]
    return re.compile("|".join([*(rf"\b{re.escape(n)}\b" for n in identifiers), *words]), re.IGNORECASE)


DEFAULT_EXAMPLE_WORDS = _default_example_words()


def _named(text: str) -> list[str]:
    return sorted({m.group(0) for m in DEFAULT_EXAMPLE_WORDS.finditer(text)})


def test_no_module_names_a_field_value_or_word_of_the_default_example() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "service", "model_store", "training", "cli", "benchmarks"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(tracked) > 50 and "service/core/engine.py" in tracked
    found = {}
    for name in tracked:
        path = REPO / name
        if path.suffix in {".py", ".lua", ".yaml", ".md", ".js", ".css", ".html"} and path.is_file():
            hits = _named(path.read_text(encoding="utf-8"))
            if hits:
                found[name] = hits
    assert found == {}, f"modules naming the default example (only config/ and data/ may): {found}"
    # the word list is live: it finds the default example where it belongs
    assert {"checking_account_status", "german"} <= {w.lower() for w in _named((DEFAULT / "training.yaml").read_text())
                                                      + _named((DEFAULT / "feature_spec.yaml").read_text())}  # fmt: skip


# ---- the second example, end to end ----------------------------------------------------------------
PERIOD_START = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def lender_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelStore, Any]:
    from training.pipeline import train

    store = ModelStore(tmp_path_factory.mktemp("lender") / "store")
    result = train(
        EXAMPLE / "training.yaml",
        store,
        overrides={"champion": {"max_iter": 60}, "baseline": {"max_n_bins": 4}, "cv_folds": 2},
        progress=False,
    )
    return store, result


def _applicants(n: int) -> list[tuple[dict[str, Any], str]]:
    """The first n rows of the example's CSV as API applicants (missing values as null, or left out on every
    other row), with the row's marital status for the monitoring object."""
    spec = FeatureSpec.load(EXAMPLE / "feature_spec.yaml")
    (monitoring,) = spec.monitoring_only
    out = []
    with open(REPO / "data" / "synthetic_lender" / "applications.csv", newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i == n:
                break
            applicant = spec.from_source_row(row)
            if i % 2:
                applicant = {k: v for k, v in applicant.items() if v is not None}
            out.append((applicant, row[monitoring.source_column] or "not_provided"))
    return out


def test_the_second_example_trains_with_its_missing_values_and_proves_exactness_on_them(
    lender_store: tuple[ModelStore, Any],
) -> None:
    store, result = lender_store
    spec = FeatureSpec.load(EXAMPLE / "feature_spec.yaml")
    assert {f.name for f in spec.fields if f.missing} >= {"monthly_income", "employment_type", "home_ownership"}
    assert "marital_status" not in spec.field_names and not any("marital" in c for c in spec.columns)
    for version in result.versions:
        manifest = store.manifest(version.name, version.version)
        assert store.verify(version.name, version.version) == []
        assert manifest["data"]["rows"] == 6000 and manifest["columns"] == list(spec.columns)
        parity = manifest["parity"]
        assert parity["onnx_vs_sklearn_probability"] <= 1e-6
        assert parity["attribution_sum_vs_onnx_margin"] <= 1e-5
        assert parity["attributions_vs_shap"] <= 1e-6
    # the proofs' hold-out rows have missing values in every field that may be missing; check again on rows
    # where each such field is missing, the served artifacts only (ONNX and the explainer)
    from model_store.treeshap import TreeShap
    from training.export import run_onnx

    for version in result.versions:
        bundle = store.load_bundle(version.name, version.version)
        rows = [a for a, _ in _applicants(400)]
        for f in spec.fields:
            if f.missing:
                assert any(r.get(f.name) is None for r in rows), f.name
        X = bundle.spec.encode([{f: r.get(f) for f in bundle.spec.field_names} for r in rows])
        assert np.isnan(X).any()
        margin, _ = run_onnx(bundle.onnx_path.read_bytes(), X)
        shap = TreeShap(bundle.explainer)
        np.testing.assert_allclose(shap.shap_values(X).sum(axis=1) + shap.expected_value, margin, atol=1e-5)
        np.testing.assert_allclose(bundle.explainer.margin(X), margin, atol=1e-5)


@pytest.fixture(scope="module")
def served(lender_store: tuple[ModelStore, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from service.app import create_app
    from service.auth import new_key
    from service.state import get_state

    store, _ = lender_store
    key = new_key()
    app = create_app(
        {
            "MODEL_STORE": str(store.root),
            "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('records') / 'decisions.sqlite3'}",
            "API_KEYS": f"scorer:{key},auditor:{key}",
            "TESTING": True,
        }
    )
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    bodies = []
    for i, (applicant, marital_status) in enumerate(_applicants(150)):
        made = client.post(
            "/v1/decisions",
            json={
                "application_id": f"SL-{i:04d}",
                "applicant": applicant,
                "monitoring": {"marital_status": marital_status},
            },
        )
        assert made.status_code == 201, made.get_json()
        bodies.append(made.get_json())
    yield client, bodies
    get_state(app).store.close()


def test_the_second_example_serves_and_decides_applicants_with_missing_values(served: Any) -> None:
    client, bodies = served
    catalog = client.get("/v1/schema").get_json()
    assert {f["name"]: f["may_be_missing"] for f in catalog["fields"]}["monthly_income"] is True
    assert {b["decision"] for b in bodies} == {"approve", "refer", "decline"}, [b["decision"] for b in bodies]
    codes = {r["code"] for b in bodies for r in b["reasons"]}
    missing_reasons = [r for b in bodies for r in b["reasons"] if r["code"].endswith("M")]
    assert missing_reasons, codes  # some missing value raised the risk: the catalog's "not provided" reason
    for r in missing_reasons:
        assert r["customer_text"].startswith("No information on") and all(v["value"] is None for v in r["values"])
    # a missing field's own reason is never given for a missing value, nor the "not provided" one for a value
    for b in bodies:
        stored = client.get(f"/v1/decisions/{b['decision_id']}").get_json()
        applicant = stored["request"]["applicant"]
        for r in b["reasons"]:
            if r["kind"] == "model":
                given = [applicant.get(v["field"]) is not None for v in r["values"]]
                assert r["code"].endswith("M") == (not any(given)), (r, applicant)
    # replay from the record: identical, missing values and all
    with_missing = [b for b in bodies if any(r["code"].endswith("M") for r in b["reasons"])]
    for b in [*with_missing[:10], *bodies[:10]]:
        assert client.post(f"/v1/decisions/{b['decision_id']}/replay").get_json()["identical"] is True
    all_text = json.dumps(bodies) + json.dumps(catalog) + client.get("/openapi.json").get_data(as_text=True)
    assert _named(all_text) == []


def test_the_second_examples_card_report_and_notice_speak_only_of_it(
    lender_store: tuple[ModelStore, Any], served: Any
) -> None:
    _store, result = lender_store
    client, bodies = served
    card = (result.champion.path / "model_card.md").read_text(encoding="utf-8")
    assert "Synthetic lender personal-loan applications" in card and "marital_status" in card
    assert _named(card) == []
    # the period report: disparate impact by the example's own monitoring attribute and fairness bands
    day = PERIOD_START.isoformat()
    end = (PERIOD_START + timedelta(days=1)).isoformat()
    report = client.get(f"/v1/reports?from={day}&to={end}&format=json")
    assert report.status_code == 200, report.get_json()
    data = report.get_json()
    attributes = [d["attribute"] for d in data["disparate_impact"]]
    assert attributes[0] == "marital_status" and len(attributes) >= 2
    marital = data["disparate_impact"][0]
    assert {g["group"] for g in marital["groups"]} <= {"married", "single", "divorced", "widowed"}
    assert sum(g["decisions"] for g in marital["groups"]) + marital["missing"] == len(bodies)
    # 150 decisions in all: fewer than the policy's minimum sample per group, so shown and never flagged
    policy = yaml.safe_load((EXAMPLE / "policy.yaml").read_text(encoding="utf-8"))
    assert data["thresholds"]["min_sample"] == policy["monitoring"]["min_sample"] > 150
    assert all(g["small_group"] for d in data["disparate_impact"] for g in d["groups"])
    assert not [f for f in data["flags"] if f["section"] == "disparate_impact"]
    # drift per field counts missing values in a bin of their own, against the training share of missing values
    csi = {f["name"]: f for f in data["field_csi"]}
    income = csi["monthly_income"]
    assert income["bins"][-1]["label"] == "(missing)" and 0.03 < income["bins"][-1]["expected"] < 0.15
    assert income["missing"] == sum(1 for a, _ in _applicants(len(bodies)) if a.get("monthly_income") is None) > 0
    assert "(missing)" in [b["label"] for b in csi["home_ownership"]["bins"]]
    html = client.get(f"/v1/reports?from={day}&to={end}&format=html").get_data(as_text=True)
    assert "marital_status" in html and _named(json.dumps(data) + html) == []
    # the notice of a declined applicant: the catalog's words
    declined = next(b for b in bodies if b["decision"] == "decline")
    notice = client.get(f"/v1/decisions/{declined['decision_id']}/notice")
    assert notice.status_code == 200, notice.get_json()
    body = notice.get_json()
    assert [f["code"] for f in body["principal_reasons"]] == [r["code"] for r in declined["reasons"] if r["adverse"]][
        :4
    ]
    notice_html = client.get(f"/v1/decisions/{declined['decision_id']}/notice?format=html").get_data(as_text=True)
    assert _named(json.dumps(body) + notice_html) == []


def test_serve_suggests_a_request_that_fits_the_served_model(
    lender_store: tuple[ModelStore, Any], trained_models: tuple[ModelStore, Any], tmp_path: Path
) -> None:
    from cli.serve import _try_it
    from service.config import Settings

    def suggestion(store: Path) -> str:
        return _try_it(Settings.load(environ={"CREDIT_DECISION_MODEL_STORE": str(store)}), "http://h:1")

    # the lender's model: the field catalog to write a body from (the shipped example body would be a 422)
    lender = suggestion(lender_store[0].root)
    assert "http://h:1/v1/schema" in lender and "examples/application.json" not in lender
    # the default example's model (what `make serve` trains): the shipped example body, which fits it
    assert "--data @examples/application.json http://h:1/v1/decisions" in suggestion(trained_models[0].root)
    # nothing to serve yet: the field catalog
    assert "/v1/schema" in suggestion(tmp_path / "empty")


def test_the_default_example_is_named_by_config_alone(tmp_path: Path) -> None:
    from model_store.errors import ContractError
    from training.config import default_config_path

    assert default_config_path() == DEFAULT / "training.yaml"
    pointer = tmp_path / "default.yaml"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "training.yaml").write_text("name: mine\n", encoding="utf-8")
    pointer.write_text("training: mine/training.yaml\n", encoding="utf-8")
    assert default_config_path(pointer) == tmp_path / "mine" / "training.yaml"
    pointer.write_text("train: mine/training.yaml\n", encoding="utf-8")
    with pytest.raises(ContractError, match=rf"{re.escape(str(pointer))}.*training"):
        default_config_path(pointer)
    pointer.write_text("training: nowhere.yaml\n", encoding="utf-8")
    with pytest.raises(ContractError, match=r"file not found: .*nowhere\.yaml"):
        default_config_path(pointer)


def test_training_into_a_store_with_a_champion_says_it_was_not_promoted(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.train import train_command

    store = tmp_path / "store"
    args = ["--model-store", str(store), "--quiet", "--config", str(EXAMPLE / "training.yaml")]
    first = CliRunner().invoke(train_command, args)
    assert first.exit_code == 0, first.output
    assert "champion: synthetic-lender-gbt v1" in first.output
    second = CliRunner().invoke(train_command, args)
    assert second.exit_code == 0, second.output
    assert "not promoted: the store's champion stays synthetic-lender-gbt v1" in second.output
    assert f"credit-decision models promote synthetic-lender-gbt v2 --model-store {store}" in second.output
    assert ModelStore(store).champion() == ("synthetic-lender-gbt", "v1")
