"""Reason-frequency drift: each code's share of declines and referrals against the training baseline and the
previous period, checked against arithmetic written out by hand on fixed rows; the baseline training writes
(the hold-out decided by the one reason ranking); the report's outputs; the reason counter of /metrics.

The fixed data (one reason per decision, so the shares are plain fractions):

- this period: 100 declines citing C01 (80), C02 (10), C03 (10), and 40 approvals citing C01 (not counted);
- the previous period: 100 declines citing C01 (50), C02 (25), C03 (25);
- the training baseline: 200 declines and referrals citing C01 (100), C02 (60), C03 (40), C05 (10).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from model_store.policy import Monitoring
from service.reports.core import (
    Baseline,
    DecisionRow,
    Period,
    ReasonBaseline,
    ReasonRef,
    ReportError,
    ReportSettings,
    build_report,
    cited_counts,
    metric_rows,
    reason_shifts,
    two_proportion_z,
)
from service.reports.render import render_csv, render_html, render_json, render_pdf
from service.reports.source import baseline_from_reference

PERIOD = Period(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 8, tzinfo=UTC))
THRESHOLDS = Monitoring(min_sample=50, reason_shift_p_value=0.01)
BASELINE = Baseline(
    "gbt", "v1", (), None, (), ReasonBaseline(200, (("C01", 100), ("C02", 60), ("C03", 40), ("C04", 0), ("C05", 10)))
)


def _rows(start: datetime, decision: str, codes: dict[str, int], prefix: str) -> list[DecisionRow]:
    rows = []
    for code, n in codes.items():
        for i in range(n):
            rows.append(
                DecisionRow(
                    decision_id=f"{prefix}-{code}-{i}",
                    created_at=start + timedelta(minutes=len(rows)),
                    decision=decision,
                    risk_band="E" if decision == "decline" else "A",
                    score=450 if decision == "decline" else 700,
                    probability_of_default=0.4 if decision == "decline" else 0.02,
                    reasons=(ReasonRef(code, "model", decision != "approve"),),
                    rules_fired=(),
                    model_name="gbt",
                    model_version="v1",
                    latency_ms=1.0,
                    applicant={},
                )
            )
    return rows


CURRENT = _rows(PERIOD.start, "decline", {"C01": 80, "C02": 10, "C03": 10}, "now") + _rows(
    PERIOD.start + timedelta(days=2), "approve", {"C01": 40}, "ok"
)
PREVIOUS = _rows(PERIOD.previous.start, "decline", {"C01": 50, "C02": 25, "C03": 25}, "before")


def _z(p1: float, p0: float, pooled: float, n1: int, n0: int) -> float:
    return (p1 - p0) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))


def test_the_two_proportion_z_test_by_hand() -> None:
    # 30/100 against 15/100: pooled 45/200 = 0.225; z = 0.15 / sqrt(0.225 * 0.775 * 0.02) = 2.540; two-sided p from
    # the normal table: 2 * (1 - Phi(2.54)) = 0.0111
    z, p = two_proportion_z(30, 100, 15, 100)
    assert z == pytest.approx(0.15 / math.sqrt(0.225 * 0.775 * 0.02)) and z == pytest.approx(2.540, abs=1e-3)
    assert p == pytest.approx(0.0111, abs=1e-4)
    assert two_proportion_z(15, 100, 30, 100) == (-z, p)
    assert two_proportion_z(0, 10, 0, 20) == (0.0, 1.0) and two_proportion_z(10, 10, 20, 20) == (0.0, 1.0)


def test_shares_against_the_baseline_and_the_previous_period_by_hand() -> None:
    shifts = {(s.reference, s.code): s for s in reason_shifts(CURRENT, PREVIOUS, BASELINE, THRESHOLDS)}
    # codes cited on either side, per reference; C04 (0 in the baseline, never cited now) is left out
    assert sorted(shifts) == sorted(
        [("baseline", c) for c in ("C01", "C02", "C03", "C05")]
        + [("previous_period", c) for c in ("C01", "C02", "C03")]
    )
    # against the baseline: C01, C02, C03 are tested (m = 3), C05 is not: pooled 10/300, 100 * 1/30 = 3.3 expected
    # citations < 5
    c01, c02, c03, c05 = (shifts[("baseline", c)] for c in ("C01", "C02", "C03", "C05"))
    assert (c01.count, c01.n, c01.share, c01.reference_count, c01.reference_n, c01.reference_share) == (
        80,
        100,
        0.8,
        100,
        200,
        0.5,
    )
    assert c01.change_pp == pytest.approx(30.0)
    # C01: pooled 180/300 = 0.6, z = 0.3 / sqrt(0.6 * 0.4 * 0.015) = 0.3 / 0.06 = 5
    assert c01.z == pytest.approx(5.0) and c01.p_value == pytest.approx(math.erfc(5 / math.sqrt(2)))
    # C02: 0.1 against 0.3, pooled 70/300; z = -3.861, p = 1.13e-4
    assert c02.z == pytest.approx(_z(0.1, 0.3, 70 / 300, 100, 200)) and c02.z == pytest.approx(-3.861, abs=1e-3)
    assert c02.p_value == pytest.approx(1.13e-4, rel=0.01)
    # C03: 0.1 against 0.2, pooled 50/300; z = -2.191, p = 0.0285: below 0.01 uncorrected, not below 0.01 / 3
    assert c03.z == pytest.approx(-2.191, abs=1e-3) and c03.p_value == pytest.approx(0.0285, abs=1e-4)
    for s in (c01, c02, c03):
        assert s.tested and s.p_threshold == pytest.approx(0.01 / 3)
    assert (c01.flag, c02.flag, c03.flag) == ("shift", "shift", "")
    assert (c05.tested, c05.p_threshold, c05.flag, c05.count, c05.reference_share) == (False, None, "", 0, 0.05)
    # against the previous period (m = 3): C01 0.8 against 0.5, pooled 130/200, z = 0.3 / sqrt(0.65 * 0.35 * 0.02)
    p01, p02, p03 = (shifts[("previous_period", c)] for c in ("C01", "C02", "C03"))
    assert p01.z == pytest.approx(0.3 / math.sqrt(0.65 * 0.35 * 0.02)) and p01.z == pytest.approx(4.4475, abs=1e-4)
    # C02 and C03: 0.1 against 0.25, pooled 35/200, z = -2.791, p = 0.00525: not below 0.01 / 3
    assert p02.z == pytest.approx(-2.791, abs=1e-3) and p02.p_value == pytest.approx(0.00525, abs=1e-5)
    assert (p01.flag, p02.flag, p03.flag) == ("shift", "", "")


def test_small_samples_are_shown_but_not_flagged() -> None:
    strict = Monitoring(min_sample=101)  # 100 declines this period: fewer than min_sample
    shifts = reason_shifts(CURRENT, PREVIOUS, BASELINE, strict)
    assert shifts and not any(s.tested or s.flag for s in shifts)
    assert {s.code for s in shifts if s.reference == "baseline"} == {"C01", "C02", "C03", "C05"}
    report = build_report(CURRENT, PERIOD, PREVIOUS, BASELINE, settings=ReportSettings(thresholds=strict))
    assert not [f for f in report.flags if f.section == "reason_shift"]
    assert any("at least 101 declines and referrals" in n for n in report.notes)


def test_a_baseline_without_reasons_compares_with_the_previous_period_only() -> None:
    old = Baseline("gbt", "v1", (), None, ())
    report = build_report(CURRENT, PERIOD, PREVIOUS, old, settings=ReportSettings(thresholds=THRESHOLDS))
    assert {s.reference for s in report.reason_shifts} == {"previous_period"}
    assert any("no reason-code frequencies" in n for n in report.notes)


def test_the_report_flags_and_shows_reason_drift_in_every_format() -> None:
    report = build_report(CURRENT, PERIOD, PREVIOUS, BASELINE, settings=ReportSettings(thresholds=THRESHOLDS))
    flags = [(f.metric, f.group, f.level) for f in report.flags if f.section == "reason_shift"]
    assert flags == [("C01", "baseline", "shift"), ("C02", "baseline", "shift"), ("C01", "previous_period", "shift")]
    data = json.loads(render_json(report))
    assert len(data["reason_shifts"]) == 7 and data["thresholds"]["reason_shift_p_value"] == 0.01
    assert {(f["metric"], f["group"]) for f in data["flags"] if f["section"] == "reason_shift"} == {
        ("C01", "baseline"),
        ("C02", "baseline"),
        ("C01", "previous_period"),
    }
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    p_values = {(r["metric"], r["group"]): r for r in rows if r["section"] == "reason_shift"}
    assert p_values[("baseline.p_value", "C01")]["flag"] == "shift"
    assert float(p_values[("baseline.p_threshold", "C02")]["value"]) == pytest.approx(0.01 / 3)
    assert p_values[("previous_period.p_value", "C03")]["flag"] == ""
    assert [r for r in metric_rows(report) if r.section == "thresholds" and r.metric == "reason_shift_p_value"]
    page = render_html(report)
    assert "Reason drift: share of declines and referrals" in page and "Reason codes shifted" in page
    assert re.search(r'<tr class="flag-shift"><td class="">C01</td>', page)
    assert "80.0 % (80/100)" in page and "50.0 % (100/200)" in page
    assert render_pdf(report).startswith(b"%PDF")


def test_the_baseline_is_read_from_reference_json() -> None:
    reference = {"baseline": {"fields": {}, "reasons": {"adverse_decisions": 200, "counts": {"C02": 60, "C01": 100}}}}
    baseline = baseline_from_reference(reference, "gbt", "v1")
    assert baseline is not None and baseline.reasons == ReasonBaseline(200, (("C01", 100), ("C02", 60)))
    assert baseline_from_reference({"baseline": {"fields": {}}}, "gbt", "v1").reasons is None  # type: ignore[union-attr]
    for bad in ({"adverse_decisions": 10, "counts": {"C01": 11}}, {"counts": {}}, {"adverse_decisions": 5}):
        with pytest.raises(ReportError, match=r"gbt v1: baseline\.reasons"):
            baseline_from_reference({"baseline": {"fields": {}, "reasons": bad}}, "gbt", "v1")


# ---- the training baseline and the metrics, on the really trained tiny model ---------------------------------


def test_training_records_the_reasons_the_engine_gives_the_hold_out(trained_models: Any) -> None:
    from service.runtime import ServedModel
    from training.metrics import reason_baseline

    store, result = trained_models
    model = ServedModel.load(store, result.champion.name, result.champion.version)
    baseline = model.bundle.reference["baseline"]["reasons"]
    codes = {r.code for r in model.catalog.all_codes}
    assert set(baseline["counts"]) == codes and baseline["source"] == "hold-out"
    assert 0 < baseline["adverse_decisions"] < baseline["decisions"]
    assert max(baseline["counts"].values()) <= baseline["adverse_decisions"]
    # the same reasons the service's engine gives: on the reference rows (the hold-out's first), both ways
    applications = model.bundle.reference["applications"]
    features = model.bundle.spec.encode(applications)
    margin, _probability = model.scorer.score(features)
    ours = reason_baseline(
        model.bundle.spec,
        model.policy,
        model.catalog,
        applications,
        np.asarray(margin, dtype=np.float64),
        model.explainer.shap_values(features),
    )
    batch = model.engine.decide(applications)
    counts, adverse = cited_counts(zip(batch.decisions(), batch.reason_lists(), strict=True))
    assert ours["adverse_decisions"] == adverse > 0
    assert ours["counts"] == {code: counts[code] for code in sorted(codes)}


def test_metrics_count_the_reason_codes_given(api_make_app: Any, german_applications: list[Any]) -> None:
    app = api_make_app()
    client = app.test_client()
    response = client.post("/v1/decisions:batch", json={"applications": [r for r, _ in german_applications[:30]]})
    decided = [item["decision"] for item in response.get_json()["items"]]
    expected: Counter[tuple[str, str]] = Counter()
    for d in decided:
        for code in {r["code"] for r in d["reasons"]}:
            expected[(code, d["decision"])] += 1
    text = client.get("/metrics").get_data(as_text=True)
    found = {
        (m.group(1), m.group(2)): float(m.group(3))
        for m in re.finditer(r'credit_decision_reasons_total\{code="([^"]+)",decision="([^"]+)"\} ([0-9.e+]+)', text)
    }
    assert found == {key: float(n) for key, n in expected.items()} and found
