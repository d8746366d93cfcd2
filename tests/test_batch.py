"""The batch path: the vectorised core equals the decision engine row by row; the CLI round-trips files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from model_store.spec import FeatureSpec
from model_store.store import ModelStore
from service.batch import score_command
from service.core.batch import BatchDecider, columns_from_applications
from service.runtime import ServedModel

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "german_credit" / "training.yaml"
DATA = REPO / "data" / "german_credit.csv"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    from training.pipeline import train

    store = ModelStore(tmp_path_factory.mktemp("batch-store"))
    train(CONFIG, store, overrides={"cv_folds": 2, "champion": {"max_iter": 40}}, progress=False)
    return store


@pytest.fixture(scope="module", params=["german-credit-gbt", "german-credit-scorecard"])
def served(request: pytest.FixtureRequest, store: ModelStore) -> ServedModel:
    model = ServedModel.load(store, request.param, "v1")
    model.self_check()
    return model


def random_applications(spec: FeatureSpec, n: int, seed: int) -> list[dict[str, Any]]:
    """Valid applications drawn from the spec, with many near and beyond the policy rules' thresholds."""
    rng = np.random.default_rng(seed)
    apps: list[dict[str, Any]] = [{} for _ in range(n)]
    for f in spec.fields:
        if f.kind == "categorical":
            values: list[Any] = [f.values[k].code for k in rng.integers(0, len(f.values), size=n)]
        else:
            assert f.minimum is not None and f.maximum is not None
            hi = min(f.maximum, f.minimum + 30_000)  # amounts: dense around the product maximum
            drawn = rng.uniform(f.minimum, hi, size=n)
            values = [int(v) for v in np.rint(drawn)] if f.dtype == "integer" else [float(v) for v in drawn]
        for app, v in zip(apps, values, strict=True):
            app[f.name] = v
    return apps


def test_vectorised_batch_equals_the_decision_engine_row_by_row(served: ServedModel) -> None:
    bundle = served.bundle
    apps = random_applications(bundle.spec, 3000, seed=7)
    expected = served.engine.decide_many(apps)
    decider = BatchDecider(bundle.spec, bundle.policy, bundle.catalog, served.scorer, served.explainer)
    got = decider.decide(columns_from_applications(bundle.spec, apps))

    assert len(got) == len(expected)
    assert got.decisions() == [d.decision for d in expected]
    assert got.score.tolist() == [d.score for d in expected]
    assert got.risk_bands() == [d.risk_band for d in expected]
    assert got.probability_of_default.tolist() == [d.probability_of_default for d in expected]
    assert got.fired_lists() == [tuple(r.code for r in d.rules_fired) for d in expected]
    assert got.reason_lists() == [tuple(r.code for r in d.reasons) for d in expected]
    # the rows exercise every branch: rules firing (several at once), all decisions, full reason lists
    assert {d.decision for d in expected} == {"approve", "refer", "decline"}
    assert max(len(d.rules_fired) for d in expected) >= 2
    assert any(len(d.reasons) == 4 and not d.rules_fired for d in expected)
    # and the ranked model reasons carry the engine's contributions (summed in another order: to rounding)
    groups = list(bundle.spec.reason_groups)
    for i in range(0, len(apps), 97):
        for reason in expected[i].reasons:
            if reason.kind == "model":
                assert reason.group is not None
                assert got.group_attributions[i, groups.index(reason.group)] == pytest.approx(
                    reason.contribution_log_odds, rel=1e-12, abs=1e-15
                )


def test_reason_ranking_breaks_ties_like_the_engine(served: ServedModel) -> None:
    bundle = served.bundle
    decider = BatchDecider(bundle.spec, bundle.policy, bundle.catalog, served.scorer, served.explainer)
    n_groups = len(bundle.spec.reason_groups)
    rng = np.random.default_rng(3)
    # few distinct values: many exact ties, zeros and negatives
    group_attr = rng.choice(np.array([-0.5, -0.1, 0.0, 0.1, 0.1, 0.3, 0.3]), size=(500, n_groups))
    fired = rng.random((500, len(bundle.policy.rules))) < 0.3
    ranked = decider.rank_reasons(group_attr, fired)
    codes = decider.reason_codes
    n_rules = len(bundle.policy.rules)
    for i in range(500):
        rules = [bundle.policy.rules[j].code for j in np.flatnonzero(fired[i])]
        model = [codes[n_rules + g] for g in served.engine._ranked_risk_groups(group_attr[i])]
        expected = (rules + model)[: max(4, len(rules))]
        assert [codes[k] for k in ranked[i] if k >= 0] == expected


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _german_credit_applications(spec: FeatureSpec) -> list[dict[str, Any]]:
    with open(DATA, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [{"application_id": f"GC-{i:04d}", **spec.from_source_row(row)} for i, row in enumerate(rows)]


def test_cli_scores_a_csv_and_reports_bad_rows_without_stopping(store: ModelStore, tmp_path: Path) -> None:
    served = ServedModel.load(store, "german-credit-gbt", "v1")
    spec = served.bundle.spec
    apps = _german_credit_applications(spec)
    rows: list[dict[str, Any]] = [dict(a) for a in apps]
    rows[3]["age_years"] = "abc"
    rows[10]["purpose"] = "yacht"
    rows[11]["duration_months"] = "12.5"
    rows[12]["credit_amount"] = ""
    rows[20]["application_id"] = 'two\nlines, "quoted"'  # a quoted field spanning lines: one bad row, no more
    rows.append({**apps[0], "application_id": "EXTRA-1", "age_years": 9})
    source = tmp_path / "applications.csv"
    _write_csv(source, rows, ["application_id", *spec.field_names, "foreign_worker"])
    out = tmp_path / "decisions.csv"

    result = CliRunner().invoke(
        score_command,
        [
            "--input",
            str(source),
            "--output",
            str(out),
            "--store",
            str(store.root),
            "--model",
            "german-credit-gbt",
            "--chunk-size",
            "21",  # row 21 spans the end of the first chunk
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "row 4 (GC-0003): age_years: not a number: 'abc'" in result.output
    assert "row 11 (GC-0010): purpose: unknown value 'yacht'" in result.output
    assert "row 12 (GC-0011): duration_months: must be an integer" in result.output
    assert "row 13 (GC-0012): credit_amount: missing" in result.output
    assert "row 1001 (EXTRA-1): age_years: must be between 14 and 120, got 9" in result.output
    assert "foreign_worker (prohibited-basis attribute)" in result.output
    assert "row 21: application_id: must be 1 to 64 letters, digits or . _ : -" in result.output
    assert "995 decided, 6 invalid skipped, 1001 rows" in result.output

    with open(out, newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    keep = [a for i, a in enumerate(apps) if i not in (3, 10, 11, 12, 20)]
    assert [g["application_id"] for g in got] == [a["application_id"] for a in keep]
    expected = served.engine.decide_many([{k: v for k, v in a.items() if k != "application_id"} for a in keep])
    for g, d in zip(got, expected, strict=True):
        assert g["decision"] == d.decision and g["risk_band"] == d.risk_band and int(g["score"]) == d.score
        assert float(g["probability_of_default"]) == d.probability_of_default
        codes = [r.code for r in d.reasons] + [""] * (4 - len(d.reasons))
        assert [g[f"reason_{k}"] for k in range(1, 5)] == codes
        assert g["rules_fired"] == ";".join(r.code for r in d.rules_fired)

    # two worker processes give the same file
    out2 = tmp_path / "decisions-2.csv"
    result = CliRunner().invoke(
        score_command,
        [
            "--input",
            str(source),
            "--output",
            str(out2),
            "--store",
            str(store.root),
            "--model",
            "german-credit-gbt",
            "--chunk-size",
            "100",
            "--workers",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert out2.read_bytes() == out.read_bytes()


def test_cli_reads_and_writes_json_lines(store: ModelStore, tmp_path: Path) -> None:
    served = ServedModel.load(store, "german-credit-gbt", "v1")
    apps = _german_credit_applications(served.bundle.spec)[:50]
    lines = [
        json.dumps(
            {"application_id": a["application_id"], "applicant": {k: v for k, v in a.items() if k != "application_id"}}
        )
        for a in apps
    ]
    lines[5] = "{not json"
    lines[6] = json.dumps({**apps[6], "age_years": 30.0, "foreign_worker": "yes"})
    source = tmp_path / "applications.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "decisions.jsonl"
    result = CliRunner().invoke(
        score_command,
        [
            "--input",
            str(source),
            "--output",
            str(out),
            "--store",
            str(store.root),
            "--model",
            "german-credit-gbt",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "invalid: row 6: line: not a JSON object\n" in result.output
    assert (
        "invalid: row 7 (GC-0006): foreign_worker: prohibited-basis attribute, never accepted; age_years: must be an integer\n"
        in result.output
    )
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(got) == 48
    first = served.engine.decide({k: v for k, v in apps[0].items() if k != "application_id"})
    assert got[0]["decision"] == first.decision and got[0]["score"] == first.score
    assert got[0]["rules_fired"] == [r.code for r in first.rules_fired]
    assert [got[0][f"reason_{k}"] for k in range(1, 1 + len(first.reasons))] == [r.code for r in first.reasons]


def test_cli_refuses_what_it_cannot_read(store: ModelStore, tmp_path: Path) -> None:
    source = tmp_path / "applications.csv"
    source.write_text("application_id,age_years\nA1,30\n", encoding="utf-8")
    args = ["--store", str(store.root), "--model", "german-credit-gbt", "--no-progress"]
    result = CliRunner().invoke(score_command, ["--input", str(source), "--output", str(tmp_path / "o.csv"), *args])
    assert result.exit_code == 1
    assert "missing column(s) checking_account_status" in result.output
    assert not (tmp_path / "o.csv").exists()
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        parquet = tmp_path / "applications.parquet"
        parquet.write_bytes(b"PAR1")
        result = CliRunner().invoke(
            score_command, ["--input", str(parquet), "--output", str(tmp_path / "p.csv"), *args]
        )
        assert result.exit_code == 1
        assert "needs pyarrow, which is not installed" in result.output
