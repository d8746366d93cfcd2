"""The period report is driven by a lender's own spec and policy: attributes, bands, thresholds, missing values.

A hand-made spec with names the default data does not have (a ``marital_status`` monitoring attribute, an
``address_band`` over ``years_at_address``, fields that may be missing) and 16 decisions small enough to
work out on paper; the expected numbers are the arithmetic itself.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_store.policy import Monitoring, Policy
from model_store.spec import FeatureSpec
from service.reports.core import (
    STABILITY_EPSILON,
    Baseline,
    CategoricalBaseline,
    DecisionRow,
    NumericBaseline,
    Period,
    PeriodReport,
    ReportSettings,
    build_report,
    categorical_stability,
    numeric_stability,
)
from service.reports.render import render_csv, render_html, render_json
from service.reports.source import baseline_from_reference, load_model_context, report_from_store

REPO = Path(__file__).resolve().parents[1]
PERIOD = Period(datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 8, tzinfo=UTC))
EPS = STABILITY_EPSILON

SPEC_DATA: dict[str, Any] = {
    "spec_version": "lender-spec-1",
    "target": {"source_column": "default_flag", "bad_value": "1"},
    "fields": [
        {
            "name": "years_at_address",
            "kind": "numeric",
            "dtype": "integer",
            "minimum": 0,
            "maximum": 80,
            "missing": True,
            "description": "Years at the current address",
            "reason_group": "residence",
        },
        {
            "name": "monthly_income",
            "kind": "numeric",
            "minimum": 0,
            "maximum": 1000000,
            "missing": True,
            "description": "Monthly income",
            "reason_group": "income",
        },
        {
            "name": "residential_status",
            "kind": "categorical",
            "missing": True,
            "description": "Residential status",
            "reason_group": "housing",
            "values": [{"code": "owner"}, {"code": "tenant"}],
        },
    ],
    "monitoring_only": [
        {
            "name": "marital_status",
            "basis": "marital status (ECOA)",
            "values": ["married", "single", "divorced", "widowed", "not_provided"],
        }
    ],
    "fairness_bands": [{"name": "address_band", "field": "years_at_address", "edges": [2, 5]}],
}
POLICY_DATA: dict[str, Any] = {
    "policy_version": "lender-policy-1",
    "scaling": {"anchor_score": 600, "anchor_odds": 19, "pdo": 40, "min_score": 300, "max_score": 850},
    "bands": [{"band": "A", "min_score": 600, "decision": "approve"}, {"band": "D", "min_score": 300, "decision": "decline"}],
    "monitoring": {"stability_watch": 0.05, "stability_action": 0.5, "four_fifths": 0.9, "min_sample": 3},
}  # fmt: skip
SPEC = FeatureSpec.from_dict(SPEC_DATA)
POLICY = Policy.from_dict(POLICY_DATA, SPEC)
SETTINGS = ReportSettings.of(SPEC, POLICY)

# id, marital_status sent in `monitoring` (None: not sent), decision, years_at_address, monthly_income, residential
_TABLE: list[tuple[str, str | None, str, int | None, float | None, str | None]] = [
    ("r01", "married", "approve", 0, 500.0, "owner"),
    ("r02", "married", "approve", 1, 800.0, "owner"),
    ("r03", "married", "approve", 3, 1000.0, "tenant"),
    ("r04", "married", "approve", 6, 1500.0, "owner"),
    ("r05", "married", "decline", 1, None, "tenant"),
    ("r06", "married", "decline", 2, 2000.0, None),
    ("r07", "single", "approve", 4, 2500.0, "owner"),
    ("r08", "single", "approve", 7, 3000.0, "owner"),
    ("r09", "single", "approve", 10, 3500.0, "tenant"),
    ("r10", "single", "refer", 0, None, "tenant"),
    ("r11", "divorced", "approve", 5, 4000.0, "owner"),
    ("r12", "divorced", "approve", 8, 1200.0, "owner"),
    ("r13", "not_provided", "approve", 3, None, "owner"),
    ("r14", None, "decline", 1, 700.0, "tenant"),
    ("r15", "separated", "approve", 2, 2800.0, None),  # not a declared value: counted as missing
    ("r16", None, "approve", None, None, "tenant"),
]


def _row(entry: tuple[str, str | None, str, int | None, float | None, str | None], k: int) -> DecisionRow:
    ident, marital, decision, years, income, residential = entry
    return DecisionRow(
        decision_id=ident,
        created_at=PERIOD.start + timedelta(hours=6 * k),
        decision=decision,
        risk_band="A" if decision == "approve" else "D",
        score=650 if decision == "approve" else 400,
        probability_of_default=0.05 if decision == "approve" else 0.4,
        reasons=(),
        rules_fired=(),
        model_name="lender-gbt",
        model_version="v1",
        latency_ms=2.0,
        applicant={"years_at_address": years, "monthly_income": income, "residential_status": residential},
        monitoring={} if marital is None else {"marital_status": marital},
    )


ROWS = [_row(entry, k) for k, entry in enumerate(_TABLE)]
BASELINE = Baseline(
    "lender-gbt",
    "v1",
    (
        ("monthly_income", NumericBaseline((1000.0, 3000.0), (0.2, 0.4, 0.3), missing=0.1)),
        ("residential_status", CategoricalBaseline((("owner", 0.5), ("tenant", 0.4)), missing=0.1)),
    ),
    None,
)


def _term(actual: float, expected: float) -> float:
    return (actual - expected) * math.log(actual / expected)


# monthly_income: <=1000: r01 r02 r03 r14 (4); (1000, 3000]: r04 r06 r07 r08 r12 r15 (6); >3000: r09 r11 (2);
# missing: r05 r10 r13 r16 (4) -- of 16
INCOME_CSI = _term(4 / 16, 0.2) + _term(6 / 16, 0.4) + _term(2 / 16, 0.3) + _term(4 / 16, 0.1)
# residential_status: owner 8, tenant 6, missing r06 r15 (2) -- of 16
RESIDENTIAL_CSI = _term(8 / 16, 0.5) + _term(6 / 16, 0.4) + _term(2 / 16, 0.1)


@pytest.fixture(scope="module")
def report() -> PeriodReport:
    return build_report(ROWS, PERIOD, (), BASELINE, settings=SETTINGS)


def test_disparate_impact_of_a_declared_monitoring_attribute(report: PeriodReport) -> None:
    assert [(d.attribute, d.kind, d.source) for d in report.disparate_impact] == [
        ("marital_status", "monitoring", "monitoring.marital_status"),
        ("address_band", "band", "applicant.years_at_address"),
    ]
    marital = report.disparate_impact[0]
    assert marital.basis == "marital status (ECOA)"
    # married r01-r06: 4/6; single r07-r10: 3/4; divorced r11 r12: 2/2; widowed: nobody (not listed);
    # missing: r13 (not_provided), r14 and r16 (not sent), r15 (not a declared value)
    assert marital.missing == 4
    assert [(g.group, g.decisions, g.approved) for g in marital.groups] == [
        ("married", 6, 4),
        ("single", 4, 3),
        ("divorced", 2, 2),
    ]
    # divorced has the highest rate but fewer than min_sample (3) decisions: the reference is single (3/4)
    assert marital.reference_group == "single"
    by_group = {g.group: g for g in marital.groups}
    assert by_group["married"].ratio == pytest.approx((4 / 6) / (3 / 4))  # 8/9 = 0.889 < 0.9
    assert by_group["single"].ratio == pytest.approx(1.0)
    assert by_group["divorced"].ratio == pytest.approx((2 / 2) / (3 / 4))
    assert [g.group for g in marital.groups if g.four_fifths] == ["married"]
    assert [g.group for g in marital.groups if g.small_group] == ["divorced"]


def test_disparate_impact_of_a_declared_fairness_band(report: PeriodReport) -> None:
    band = report.disparate_impact[1]
    assert band.basis == "bands of years_at_address at 2, 5"
    # <2: r01 r02 r05 r10 r14 -> 2/5; 2-4: r03 r06 r07 r13 r15 -> 4/5; 5+: r04 r08 r09 r11 r12 -> 5/5; r16 missing
    assert band.missing == 1 and band.reference_group == "5+"
    assert [(g.group, g.decisions, g.approved) for g in band.groups] == [("<2", 5, 2), ("2-4", 5, 4), ("5+", 5, 5)]
    assert [g.ratio for g in band.groups] == pytest.approx([2 / 5, 4 / 5, 1.0])
    assert [g.group for g in band.groups if g.four_fifths] == ["<2", "2-4"]  # below 0.9, five decisions each
    assert {(f.metric, f.group) for f in report.flags if f.section == "disparate_impact"} == {
        ("marital_status", "married"),
        ("address_band", "<2"),
        ("address_band", "2-4"),
    }


def test_thresholds_are_the_policys(report: PeriodReport) -> None:
    assert report.thresholds == POLICY.monitoring == Monitoring(0.05, 0.5, 0.9, 3)
    csi = {c.name: c for c in report.field_csi}
    assert csi["monthly_income"].value == pytest.approx(INCOME_CSI, abs=1e-12)
    assert INCOME_CSI == pytest.approx(0.3034, abs=1e-4)
    assert csi["monthly_income"].flag == "watch"  # 0.05 <= 0.30 < 0.5
    # another policy, the same decisions: four fifths at 0.8 (2-4's 0.8 is not below it, married's 0.889 neither)
    # and stability action at 0.25 (the income CSI becomes "action")
    other = Policy.from_dict({**POLICY_DATA, "monitoring": {"four_fifths": 0.8, "min_sample": 3}}, SPEC)
    again = build_report(ROWS, PERIOD, (), BASELINE, settings=ReportSettings.of(SPEC, other))
    assert again.thresholds == Monitoring(0.1, 0.25, 0.8, 3)
    assert {(f.metric, f.group) for f in again.flags if f.section == "disparate_impact"} == {("address_band", "<2")}
    assert {c.name: c.flag for c in again.field_csi}["monthly_income"] == "action"
    # the rendered report states the thresholds it was built with
    text = render_html(report)
    assert "below 0.9 of the reference group" in text and "Watch at ≥ 0.05, action at ≥ 0.5" in text
    assert json.loads(render_json(again))["thresholds"]["four_fifths"] == 0.8


def test_flags_are_suppressed_below_min_sample() -> None:
    default = Policy.from_dict({k: v for k, v in POLICY_DATA.items() if k != "monitoring"}, SPEC)
    assert default.monitoring.min_sample == 100
    r = build_report(ROWS, PERIOD, (), BASELINE, settings=ReportSettings.of(SPEC, default))
    # the numbers are all there ...
    csi = {c.name: c for c in r.field_csi}
    assert csi["monthly_income"].value == pytest.approx(INCOME_CSI, abs=1e-12) and csi["monthly_income"].small_sample
    marital = r.disparate_impact[0]
    # no group has 100 decisions: the most favoured of all (divorced, 2/2) is the reference
    assert marital.reference_group == "divorced"
    assert [g.ratio for g in marital.groups] == pytest.approx([4 / 6, 3 / 4, 1.0])
    assert [g.below_four_fifths for g in marital.groups] == [True, True, False]
    # ... but 16 decisions flag nothing, and the report says why
    assert [f.section for f in r.flags] == [] and all(c.flag == "" for c in r.field_csi)
    assert not any(g.four_fifths for di in r.disparate_impact for g in di.groups)
    assert any("Only 16 decisions in the period (fewer than 100)" in n for n in r.notes)
    assert any("6 disparate-impact group(s) have fewer than 100 decisions" in n for n in r.notes)
    text = render_html(r)
    assert (
        "not flagged (n &lt; 100)" in text and "Groups with fewer than 100 decisions are shown but not flagged" in text
    )
    rows = render_csv(r).splitlines()
    assert f"stability,csi,monthly_income,{csi['monthly_income'].value!r},small_sample" in rows


def test_csi_counts_missing_values_as_their_own_bin(report: PeriodReport) -> None:
    csi = {c.name: c for c in report.field_csi}
    income = csi["monthly_income"]
    assert [(b.label, b.count, b.expected) for b in income.bins] == [
        ("<= 1000", 4, 0.2),
        ("(1000, 3000]", 6, 0.4),
        ("> 3000", 2, 0.3),
        ("(missing)", 4, 0.1),
    ]
    assert (income.n, income.missing) == (16, 4)
    residential = csi["residential_status"]
    assert [(b.label, b.count) for b in residential.bins] == [("owner", 8), ("tenant", 6), ("(missing)", 2)]
    assert residential.value == pytest.approx(RESIDENTIAL_CSI, abs=1e-12)
    # a baseline written before values could be missing (no missing share) reads as share 0: the bin still counts
    legacy = NumericBaseline((1000.0, 3000.0), (0.2, 0.5, 0.3))
    shifted = numeric_stability("monthly_income", legacy, [r.applicant["monthly_income"] for r in ROWS])
    assert shifted.bins[-1].label == "(missing)" and shifted.bins[-1].expected == 0.0
    assert shifted.value == pytest.approx(
        _term(4 / 16, 0.2) + _term(6 / 16, 0.5) + _term(2 / 16, 0.3) + _term(4 / 16, EPS), abs=1e-12
    )
    # no missing on either side: no missing bin (the index is what it always was)
    plain = categorical_stability(
        "residential_status", CategoricalBaseline((("owner", 0.6), ("tenant", 0.4))), ["owner"]
    )
    assert [b.label for b in plain.bins] == ["owner", "tenant"]


def test_training_baseline_writes_missing_shares_read_back_and_stable_against_itself() -> None:
    from training.metrics import training_baseline

    applications = [dict(r.applicant) for r in ROWS]
    scores = np.asarray([r.score for r in ROWS], dtype=np.float64)
    written = json.loads(json.dumps(training_baseline(SPEC, applications, scores, POLICY)))
    fields = written["fields"]
    assert fields["monthly_income"]["missing"] == 4 / 16 and fields["residential_status"]["missing"] == 2 / 16
    assert fields["years_at_address"]["missing"] == 1 / 16
    for name in ("monthly_income", "years_at_address"):
        assert sum(fields[name]["shares"]) + fields[name]["missing"] == pytest.approx(1.0)
    assert fields["residential_status"]["shares"] == {"owner": 8 / 16, "tenant": 6 / 16}
    baseline = baseline_from_reference({"baseline": written}, "lender-gbt", "v1")
    assert baseline is not None
    read = dict(baseline.fields)
    assert isinstance(read["monthly_income"], NumericBaseline) and read["monthly_income"].missing == 4 / 16
    assert isinstance(read["residential_status"], CategoricalBaseline) and read["residential_status"].missing == 2 / 16
    r = build_report(ROWS, PERIOD, (), baseline, settings=SETTINGS)
    assert all(c.value == pytest.approx(0.0, abs=1e-12) for c in r.field_csi)
    assert {c.name: c.missing for c in r.field_csi} == {
        "years_at_address": 1,
        "monthly_income": 4,
        "residential_status": 2,
    }
    # the same baseline without the missing key (as written before) reads as a missing share of 0
    for spec in written["fields"].values():
        del spec["missing"]
    legacy = baseline_from_reference({"baseline": written}, "lender-gbt", "v1")
    assert legacy is not None and all(base.missing == 0.0 for _, base in legacy.fields)


def _yaml(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=2).encode()  # JSON is YAML


def _write_version(root: Path) -> None:
    from model_store.store import ModelStore
    from training.metrics import training_baseline

    applications = [dict(r.applicant) for r in ROWS[:8]]
    scores = np.asarray([r.score for r in ROWS[:8]], dtype=np.float64)
    reference = {"baseline": training_baseline(SPEC, applications, scores, POLICY)}
    catalog = {
        "catalog_version": "lender-reasons-1",
        "model_reasons": [
            {"code": f"L0{i}", "group": g, "customer_text": g, "auditor_text": g, "missing": {"code": f"M0{i}", "customer_text": g, "auditor_text": g}}
            for i, g in enumerate(SPEC.reason_groups)
        ],
    }  # fmt: skip
    files = {
        "model.onnx": b"onnx",
        "explainer.npz": b"npz",
        "feature_spec.yaml": _yaml(SPEC_DATA),
        "policy.yaml": _yaml(POLICY_DATA),
        "reason_codes.yaml": _yaml(catalog),
        "reference.json": json.dumps(reference).encode(),
    }
    ModelStore(root).write_version("lender-gbt", "v1", files, {"family": "gbt"})


def _record_of(row: DecisionRow) -> Any:
    from service.core.engine import Decision
    from service.core.recorded import ApplicationRequest, ModelProvenance, RecordedDecision, ScoreScale
    from service.decisions import record_of

    request = ApplicationRequest(f"app-{row.decision_id}", dict(row.applicant), dict(row.monitoring) or None)
    recorded = RecordedDecision.new(
        decision_id=row.decision_id,
        created_at=row.created_at,
        request=request,
        decision=Decision(
            decision=row.decision,  # type: ignore[arg-type]
            score=row.score,
            probability_of_default=row.probability_of_default,
            margin=0.0,
            base_value=0.0,
            risk_band=row.risk_band,
            reasons=(),
            rules_fired=(),
            attributions=(),
        ),
        model_name=row.model_name,
        model_version=row.model_version,
        provenance=ModelProvenance("a" * 64, "b" * 64, "gbt", "lender-spec-1", "lender-policy-1", "lender-reasons-1"),
        score_scale=ScoreScale(300, 850, 57.7),
        decided_by={},
        latency_ms=row.latency_ms,
    )
    return record_of(recorded, None, request.request_hash)


def test_a_lenders_model_version_drives_the_report_from_the_store(
    tmp_path: Path, sqlite_decision_store_url: str
) -> None:
    from service.records import open_decision_store

    _write_version(tmp_path / "models")
    context = load_model_context(tmp_path / "models", "lender-gbt", "v1")
    assert context.settings == SETTINGS and context.baseline is not None
    store = open_decision_store(sqlite_decision_store_url)
    try:
        for row in ROWS:
            store.save(_record_of(row))
        report = report_from_store(store, tmp_path / "models", PERIOD)
    finally:
        store.close()
    expected = build_report(ROWS, PERIOD, (), context.baseline, settings=SETTINGS, notes=context.notes, reviews=[])
    assert render_json(report) == render_json(expected)
    data = json.loads(render_json(report))
    assert [d["attribute"] for d in data["disparate_impact"]] == ["marital_status", "address_band"]
    assert data["disparate_impact"][0]["missing"] == 4 and data["thresholds"]["four_fifths"] == 0.9
    # a version that is not in the store: default thresholds, no disparate-impact attributes, said so
    missing = load_model_context(tmp_path / "models", "lender-gbt", "v2")
    assert missing.settings == ReportSettings() and missing.settings.thresholds == Monitoring()
    assert missing.baseline is None and "is not in the model store" in missing.notes[0]


DEFAULT_DATA_WORDS = re.compile(
    r"age_years|personal_status|foreign_worker|\bsex\b|german|\bDM\b|credit_inquiries|age_band", re.IGNORECASE
)


@pytest.mark.parametrize(
    "path", [*sorted((REPO / "service" / "reports").glob("*.py")), REPO / "service" / "core" / "notice.py"], ids=str
)
def test_the_report_and_the_notice_name_nothing_of_the_default_data(path: Path) -> None:
    found = [m.group(0) for m in DEFAULT_DATA_WORDS.finditer(path.read_text(encoding="utf-8"))]
    assert found == [], f"{path.relative_to(REPO)} names the default data set: {found}"
