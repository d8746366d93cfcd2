"""The period report: every number checked against arithmetic written out by hand on 20 fixed decisions.

The rows below are designed so each statistic can be worked out on paper; the expected values are
spelled out as the arithmetic itself (shares as literal fractions), not copied from the code's output.
The report is built with the monitoring attributes and fairness bands of the default spec and the
thresholds of the default policy, with ``min_sample`` lowered to 5 so that 20 decisions can be flagged
(tests/test_reports_config.py covers a lender's own spec and the policy's own ``min_sample``).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

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
    ReasonRef,
    ReportError,
    ReportSettings,
    auc_score,
    build_report,
    ks_statistic,
    metric_rows,
    stability_flag,
)
from service.reports.render import render_csv, render_html, render_json, render_pdf
from service.reports.source import baseline_from_reference, rows_from_records

CONFIG = Path(__file__).resolve().parents[1] / "config" / "german_credit"
PERIOD = Period(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 8, tzinfo=UTC))
EPS = STABILITY_EPSILON
SPEC = FeatureSpec.load(CONFIG / "feature_spec.yaml")
POLICY = Policy.load(CONFIG / "policy.yaml", SPEC)
SETTINGS = replace(ReportSettings.of(SPEC, POLICY), thresholds=replace(POLICY.monitoring, min_sample=5))

# id, day/hour, decision, band, score, PD, reasons ("!" = rule), rules, version, latency, age, duration, purpose,
# monitoring, outcome
_NOT_APPROVED: list[tuple[Any, ...]] = [
    (
        "n1",
        (2, 9),
        "decline",
        "E",
        450,
        0.40,
        "C01 C02 C05 C06",
        (),
        "v1",
        5,
        24,
        36,
        "car_new",
        {"sex": "female", "foreign_worker": "yes"},
        None,
    ),
    (
        "n2",
        (2, 10),
        "decline",
        "E",
        460,
        0.38,
        "C01 C03 C05",
        (),
        "v1",
        10,
        22,
        30,
        "business",
        {"sex": "female", "foreign_worker": "no"},
        None,
    ),
    (
        "n3",
        (2, 11),
        "refer",
        "D",
        470,
        0.30,
        "C01 C02",
        (),
        "v1",
        15,
        34,
        24,
        "education",
        {"sex": "female", "foreign_worker": "yes"},
        None,
    ),
    (
        "n4",
        (5, 9),
        "refer",
        "D",
        490,
        0.28,
        "C01 C06",
        (),
        "v1",
        20,
        49,
        12,
        "car_new",
        {"sex": "male", "foreign_worker": "no"},
        None,
    ),
    (
        "n5",
        (5, 10),
        "refer",
        "D",
        500,
        0.25,
        "C02 C05",
        (),
        "v1",
        25,
        64,
        48,
        "business",
        {"foreign_worker": "no"},
        None,
    ),
    (
        "n6",
        (5, 11),
        "refer",
        "C",
        530,
        0.15,
        "!R02 C01",
        ("R02",),
        "v2",
        30,
        65,
        60,
        "car_new",
        {"sex": "female", "foreign_worker": "no"},
        None,
    ),
]
_APPROVED: list[tuple[Any, ...]] = [
    ("a1", (1, 8), "approve", "A", 600, 0.05, "C07", (), "v1", 35, 23, 6, "car_new", {"sex": "male", "foreign_worker": "yes"}, None),
    ("a2", (1, 9), "approve", "A", 610, 0.02, "C07", (), "v1", 40, 25, 10, "car_new", {"sex": "male", "foreign_worker": "yes"}, "good"),
    ("a3", (1, 10), "approve", "A", 620, 0.03, "C07", (), "v1", 45, 30, 12, "business", {"sex": "female", "foreign_worker": "no"}, "good"),
    ("a4", (1, 11), "approve", "A", 650, 0.04, "C07", (), "v1", 50, 33, 18, "education", {"sex": "female", "foreign_worker": "no"}, "good"),
    ("a5", (3, 8), "approve", "A", 700, 0.05, "C07", (), "v2", 55, 28, 20, "car_new", {"sex": "male", "foreign_worker": "no"}, "bad"),
    ("a6", (3, 9), "approve", "A", 720, 0.01, "C07", (), "v2", 60, 35, 22, "business", {"sex": "male", "foreign_worker": "no"}, None),
    ("a7", (3, 10), "approve", "B", 560, 0.10, "C07", (), "v2", 65, 40, 24, "car_new", {"sex": "male", "foreign_worker": "no"}, "bad"),
    ("a8", (3, 11), "approve", "B", 570, 0.08, "C07", (), "v2", 70, 45, 14, "car_new", {"sex": "male", "foreign_worker": "no"}, "good"),
    ("a9", (3, 12), "approve", "B", 580, 0.10, "C07", (), "v1", 75, 48, 16, "education", {"sex": "female", "foreign_worker": "no"}, "good"),
    ("a10", (7, 8), "approve", "B", 590, 0.09, "C07", (), "v1", 80, 36, 26, "car_new", {"sex": "male", "foreign_worker": "no"}, None),
    ("a11", (7, 9), "approve", "C", 515, 0.30, "C07", (), "v1", 85, 50, 28, "business", {"sex": "male", "foreign_worker": "no"}, "bad"),
    ("a12", (7, 10), "approve", "C", 520, 0.20, "C07", (), "v1", 90, 55, 8, "car_new", {"sex": "male", "foreign_worker": "no"}, "bad"),
    ("a13", (7, 11), "approve", "C", 540, 0.20, "C07", (), "v1", 95, 60, 24, "education", {"sex": "not_provided", "foreign_worker": "no"}, "good"),
    ("a14", (7, 23), "approve", "C", 550, 0.12, "C07", (), "v1", 150, 70, 30, "car_new", {"sex": "female", "foreign_worker": "no"}, None),
]  # fmt: skip
# previous period (2024-12-25 .. 2024-12-31): four adverse decisions and two approvals
_PREVIOUS: list[tuple[Any, ...]] = [
    ("p1", (-6, 9), "decline", "E", 455, 0.4, "C01 C04", (), "v1", 10, 40, 12, "car_new", {}, None),
    ("p2", (-5, 9), "refer", "D", 480, 0.3, "C02 C04", (), "v1", 10, 40, 12, "car_new", {}, None),
    ("p3", (-4, 9), "refer", "D", 490, 0.3, "C01", (), "v1", 10, 40, 12, "car_new", {}, None),
    ("p4", (-3, 9), "decline", "E", 440, 0.4, "C09", (), "v1", 10, 40, 12, "car_new", {}, None),
    ("p5", (-2, 9), "approve", "A", 640, 0.04, "C07", (), "v1", 10, 40, 12, "car_new", {}, None),
    ("p6", (-1, 9), "approve", "A", 650, 0.04, "C07", (), "v1", 10, 40, 12, "car_new", {}, None),
]


def _row(spec: tuple[Any, ...], model_name: str = "gbt", when: datetime | None = None) -> DecisionRow:
    (
        ident,
        (day, hour),
        decision,
        band,
        score,
        pd,
        reasons,
        rules,
        version,
        latency,
        age,
        duration,
        purpose,
        monitoring,
        outcome,
    ) = spec
    created = when or datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=day - 1, hours=hour)
    if ident == "a14":
        created += timedelta(minutes=59, seconds=59)  # 2025-01-07 23:59:59, the last second of the period
    refs = tuple(
        ReasonRef(code.lstrip("!"), "rule" if code.startswith("!") else "model", decision != "approve")
        for code in reasons.split()
    )
    return DecisionRow(
        decision_id=ident,
        created_at=created,
        decision=decision,
        risk_band=band,
        score=score,
        probability_of_default=pd,
        reasons=refs,
        rules_fired=rules,
        model_name=model_name,
        model_version=version,
        latency_ms=float(latency),
        applicant={"age_years": age, "duration_months": duration, "purpose": purpose},
        monitoring=monitoring,
        outcome=outcome,
    )


CURRENT_ROWS = [_row(s) for s in _NOT_APPROVED + _APPROVED]
PREVIOUS_ROWS = [_row(s) for s in _PREVIOUS]
# outside both periods: the end is exclusive, and the day before the previous period
OUTSIDE_ROWS = [
    replace(_row(_APPROVED[0], when=datetime(2025, 1, 8, tzinfo=UTC)), decision_id="late"),
    replace(_row(_PREVIOUS[0], when=datetime(2024, 12, 24, 23, tzinfo=UTC)), decision_id="early"),
]

BASELINE = Baseline(
    model_name="gbt",
    model_version="v1",
    fields=(
        ("duration_months", NumericBaseline(edges=(12.0, 24.0), shares=(0.3, 0.4, 0.3))),
        ("purpose", CategoricalBaseline((("car_new", 0.5), ("business", 0.3), ("other", 0.2)))),
    ),
    score=NumericBaseline(edges=(500.0, 600.0), shares=(0.2, 0.5, 0.3)),
)


@pytest.fixture(scope="module")
def report() -> PeriodReport:
    rows = CURRENT_ROWS + PREVIOUS_ROWS + OUTSIDE_ROWS
    return build_report(rows, PERIOD, rows, BASELINE, rule_codes=("R01", "R02", "R03"), settings=SETTINGS)


def _term(a: float, e: float) -> float:
    return (a - e) * math.log(a / e)


# ---- numbers ------------------------------------------------------------------------------------


def test_volumes_and_decision_mix_by_day(report: PeriodReport) -> None:
    s = report.summary
    assert (s.decisions, s.approved, s.referred, s.declined) == (20, 14, 4, 2)
    assert s.approval_rate == pytest.approx(14 / 20)
    assert s.previous_decisions == 6
    assert report.bucket == "day"
    by_day = [(v.start.day, v.decisions, v.approve, v.refer, v.decline) for v in report.volumes]
    assert by_day == [
        (1, 4, 4, 0, 0),
        (2, 3, 0, 1, 2),
        (3, 5, 5, 0, 0),
        (4, 0, 0, 0, 0),
        (5, 3, 0, 3, 0),
        (6, 0, 0, 0, 0),
        (7, 5, 5, 0, 0),
    ]


def test_long_periods_are_bucketed_by_week() -> None:
    period = Period(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 5, tzinfo=UTC))  # 63 days
    rows = [
        _row(_APPROVED[0], when=datetime(2025, 1, 8, tzinfo=UTC)),
        _row(_APPROVED[1], when=datetime(2025, 3, 4, tzinfo=UTC)),
    ]
    r = build_report(rows, period)
    assert r.bucket == "week" and len(r.volumes) == 9
    assert [v.decisions for v in r.volumes] == [0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert r.volumes[8].start.isoformat() == "2025-02-26"


def test_score_distribution_and_approval_rate_by_band(report: PeriodReport) -> None:
    bands = {b.band: (b.decisions, b.approved, b.approval_rate) for b in report.bands}
    assert bands == {"A": (6, 6, 1.0), "B": (4, 4, 1.0), "C": (5, 4, 4 / 5), "D": (3, 0, 0.0), "E": (2, 0, 0.0)}
    d = report.score_distribution
    assert (d.minimum, d.maximum, d.n) == (450, 720, 20)
    assert d.mean == pytest.approx(
        (
            450
            + 460
            + 470
            + 490
            + 500
            + 530
            + 600
            + 610
            + 620
            + 650
            + 700
            + 720
            + 560
            + 570
            + 580
            + 590
            + 515
            + 520
            + 540
            + 550
        )
        / 20
    )
    # sorted scores: ... 10th and 11th are 550 and 560, so the (linear) median is 555
    assert d.p50 == pytest.approx(555.0)
    assert d.bin_edges[0] == 440 and d.bin_edges[-1] == 740 and sum(d.counts) == 20
    assert d.counts[0] == 1 and d.counts[1] == 2  # [440, 460): 450; [460, 480): 460, 470


def test_reason_frequencies_among_declines_and_referrals_and_their_change(report: PeriodReport) -> None:
    # 6 declines/referrals now (approvals' C07 is not counted), 4 in the previous period
    expected = {
        "C01": (5, 5 / 6, 2, 2 / 4, 100 * (5 / 6 - 2 / 4)),
        "C02": (3, 3 / 6, 1, 1 / 4, 100 * (3 / 6 - 1 / 4)),
        "C05": (3, 3 / 6, 0, 0 / 4, 100 * (3 / 6 - 0)),
        "C06": (2, 2 / 6, 0, 0.0, 100 * (2 / 6)),
        "C03": (1, 1 / 6, 0, 0.0, 100 * (1 / 6)),
        "R02": (1, 1 / 6, 0, 0.0, 100 * (1 / 6)),
        "C04": (0, 0.0, 2, 2 / 4, 100 * (0 - 2 / 4)),
        "C09": (0, 0.0, 1, 1 / 4, 100 * (0 - 1 / 4)),
    }
    got = report.reason_frequencies
    assert [f.code for f in got] == ["C01", "C02", "C05", "C06", "C03", "R02", "C04", "C09"]
    for f in got:
        count, share, previous_count, previous_share, change = expected[f.code]
        assert (f.count, f.previous_count) == (count, previous_count)
        assert f.share == pytest.approx(share) and f.previous_share == pytest.approx(previous_share)
        assert f.change_pp == pytest.approx(change)
    assert {f.code: f.kind for f in got}["R02"] == "rule"


def test_psi_of_the_score_against_the_hold_out_baseline(report: PeriodReport) -> None:
    # right-closed bins on (500, 600): <=500 holds 450,460,470,490,500 (5); (500,600] holds 10 incl. 600; >600 holds 5
    psi = report.score_psi
    assert psi is not None
    assert [b.count for b in psi.bins] == [5, 10, 5]
    expected = (
        (0.25 - 0.2) * math.log(0.25 / 0.2) + (0.5 - 0.5) * math.log(0.5 / 0.5) + (0.25 - 0.3) * math.log(0.25 / 0.3)
    )
    assert psi.value == pytest.approx(expected, abs=1e-12)
    assert psi.value == pytest.approx(0.020273, abs=1e-6)
    assert psi.flag == ""


def test_csi_of_each_field_numeric_on_edges_and_categorical_with_epsilon(report: PeriodReport) -> None:
    csi = {c.name: c for c in report.field_csi}
    duration = csi["duration_months"]
    # <=12: 12, 6, 10, 12, 8 (5); (12,24]: 24, 18, 20, 22, 24, 14, 16, 24 (8); >24: 7
    assert [b.count for b in duration.bins] == [5, 8, 7]
    assert duration.value == pytest.approx(
        (0.25 - 0.3) * math.log(0.25 / 0.3) + (0.40 - 0.4) * 0.0 + (0.35 - 0.3) * math.log(0.35 / 0.3), abs=1e-12
    )
    assert duration.flag == ""
    purpose = csi["purpose"]
    # car_new 11, business 5, other 0 (baseline 0.2), education 4 -> "(other)" bin with baseline share 0
    assert [(b.label, b.count) for b in purpose.bins] == [
        ("car_new", 11),
        ("business", 5),
        ("other", 0),
        ("(other)", 4),
    ]
    expected = (
        (0.55 - 0.5) * math.log(0.55 / 0.5)
        + (0.25 - 0.3) * math.log(0.25 / 0.3)
        + (EPS - 0.2) * math.log(EPS / 0.2)
        + (0.2 - EPS) * math.log(0.2 / EPS)
    )
    assert purpose.value == pytest.approx(expected, abs=1e-12)
    assert purpose.value == pytest.approx(3.0527, abs=1e-4)
    assert purpose.flag == "action"
    assert any(f.section == "stability" and f.metric == "purpose" and f.level == "action" for f in report.flags)


def test_stability_thresholds() -> None:
    assert [stability_flag(v) for v in (None, 0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "",
        "",
        "",
        "watch",
        "watch",
        "action",
        "action",
    ]
    own = Monitoring(stability_watch=0.2, stability_action=1.0)
    assert [stability_flag(v, own) for v in (0.1999, 0.2, 0.9999, 1.0)] == ["", "watch", "watch", "action"]


def test_policy_rule_hit_rates(report: PeriodReport) -> None:
    assert [(r.code, r.hits, r.rate) for r in report.rule_hits] == [
        ("R01", 0, 0.0),
        ("R02", 1, 1 / 20),
        ("R03", 0, 0.0),
    ]


def test_disparate_impact_ratios_four_fifths_and_small_groups(report: PeriodReport) -> None:
    # every monitoring attribute and fairness band the spec declares, in spec order
    assert [(d.attribute, d.kind, d.source) for d in report.disparate_impact] == [
        ("sex", "monitoring", "monitoring.sex"),
        ("foreign_worker", "monitoring", "monitoring.foreign_worker"),
        ("age_band", "band", "applicant.age_years"),
    ]
    di = {d.attribute: d for d in report.disparate_impact}
    sex = di["sex"]
    # female: n1 n2 n3 n6 declined/referred + a3 a4 a9 a14 approved = 4/8; male: n4 + 9 approved = 9/10;
    # n5 (absent) and a13 (not_provided) missing
    assert sex.reference_group == "male" and sex.missing == 2
    assert [g.group for g in sex.groups] == ["female", "male"]  # the spec's order; not_provided is no group
    rates = {g.group: (g.decisions, g.approved, g.ratio, g.four_fifths, g.small_group) for g in sex.groups}
    assert rates["male"] == (10, 9, pytest.approx(1.0), False, False)
    assert rates["female"] == (8, 4, pytest.approx((4 / 8) / (9 / 10)), True, False)
    fw = {g.group: g for g in di["foreign_worker"].groups}
    # yes: n1 n3 a1 a2 -> 2/4; no: 12/16. "yes" is below four fifths but has 4 < 5 decisions: shown, not flagged
    assert di["foreign_worker"].reference_group == "no" and di["foreign_worker"].missing == 0
    assert (fw["yes"].decisions, fw["yes"].approved) == (4, 2)
    assert fw["yes"].ratio == pytest.approx((2 / 4) / (12 / 16))
    assert fw["yes"].below_four_fifths and fw["yes"].small_group and not fw["yes"].four_fifths
    assert fw["no"].ratio == pytest.approx(1.0) and not fw["no"].four_fifths
    age = {g.group: g for g in di["age_band"].groups}
    assert [g.group for g in di["age_band"].groups] == ["<25", "25-34", "35-49", "50-64", "65+"]
    # <25: 24,22,23 (1/3); 25-34: 34,25,30,33,28 (4/5); 35-49: 49,35,40,45,48,36 (5/6); 50-64: 64,50,55,60 (3/4); 65+: 65,70 (1/2)
    best = 5 / 6
    assert di["age_band"].reference_group == "35-49"
    expected = {
        "<25": (3, 1 / 3 / best),
        "25-34": (5, 4 / 5 / best),
        "35-49": (6, 1.0),
        "50-64": (4, 3 / 4 / best),
        "65+": (2, 1 / 2 / best),
    }
    for group, (n, ratio) in expected.items():
        assert age[group].decisions == n and age[group].ratio == pytest.approx(ratio)
        assert age[group].below_four_fifths == (ratio < 0.8)
        assert age[group].small_group == (n < 5)
    assert [g for g, a in age.items() if a.below_four_fifths] == ["<25", "65+"]  # 0.4 and 0.6; 50-64 is 0.9
    # ... but both have fewer than min_sample (5) decisions: shown, never flagged
    assert age["<25"].flag == "" and not any(a.four_fifths for a in age.values())
    assert [(f.metric, f.group) for f in report.flags if f.section == "disparate_impact"] == [("sex", "female")]
    # foreign_worker yes (4), <25 (3), 50-64 (4), 65+ (2)
    assert any("4 disparate-impact group(s) have fewer than 5 decisions" in n for n in report.notes)


def test_model_versions_and_latency_percentiles(report: PeriodReport) -> None:
    assert [(m.model_version, m.decisions, m.share) for m in report.model_versions] == [
        ("v1", 15, 0.75),
        ("v2", 5, 0.25),
    ]
    lat = report.latency
    # latencies 5, 10, ..., 95 and 150; linear interpolation at q * (n - 1) on the sorted values
    assert lat.p50 == pytest.approx(50 + 0.5 * (55 - 50))  # position 9.5
    assert lat.p90 == pytest.approx(90 + 0.1 * (95 - 90))  # position 17.1
    assert lat.p99 == pytest.approx(95 + 0.81 * (150 - 95))  # position 18.81
    assert lat.maximum == 150.0 and lat.over_budget == 1 and lat.over_budget_share == pytest.approx(1 / 20)
    assert {(f.metric, f.level) for f in report.flags if f.section == "latency"} == {
        ("p99", "over_budget"),
        ("max", "over_budget"),
    }


def test_backtest_bad_rate_by_band_auc_and_ks(report: PeriodReport) -> None:
    bt = report.backtest
    assert bt is not None
    assert (bt.n, bt.bad, bt.bad_rate) == (10, 4, 0.4)
    assert [(b.band, b.n, b.bad) for b in bt.by_band] == [("A", 4, 1), ("B", 3, 1), ("C", 3, 2)]
    # bads 0.05, 0.10, 0.20, 0.30; goods 0.02, 0.03, 0.04, 0.08, 0.10, 0.20 (ties count one half)
    wins = 3 + (4 + 0.5) + (5 + 0.5) + 6
    assert bt.auc == pytest.approx(wins / (4 * 6))
    # CDFs at 0.04: bads 0/4, goods 3/6 -> the largest gap, 0.5
    assert bt.ks == pytest.approx(0.5)


def test_auc_and_ks_edge_cases() -> None:
    bad = np.array([1, 1, 0, 0])
    assert (
        auc_score(bad, np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
        and ks_statistic(bad, np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    )
    assert auc_score(bad, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5 and ks_statistic(bad, np.array([0.5] * 4)) == 0.0
    assert (
        auc_score(np.array([0, 0]), np.array([0.1, 0.2])) is None
        and ks_statistic(np.array([1]), np.array([0.3])) is None
    )


def test_model_filter_previous_period_and_no_baseline() -> None:
    other = _row(_APPROVED[0], model_name="scorecard")
    r = build_report([*CURRENT_ROWS, other], PERIOD, PREVIOUS_ROWS, None, model_name="gbt")
    assert r.summary.decisions == 20 and r.score_psi is None and r.field_csi == ()
    assert any("No training baseline" in n for n in r.notes)
    # no model version, no settings: default thresholds and no disparate-impact attributes, said so
    assert r.thresholds == Monitoring() and r.disparate_impact == ()
    assert any("disparate impact was not computed" in n for n in r.notes)
    assert PERIOD.previous == Period(datetime(2024, 12, 25, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    with pytest.raises(ReportError):
        Period(PERIOD.end, PERIOD.start)


def test_report_is_deterministic(report: PeriodReport) -> None:
    rows = CURRENT_ROWS + PREVIOUS_ROWS
    again = build_report(
        list(reversed(rows)), PERIOD, rows[::-1], BASELINE, rule_codes=("R03", "R02", "R01"), settings=SETTINGS
    )
    assert again == report


# ---- adapters -----------------------------------------------------------------------------------


def _stored_record(
    decision_id: str,
    created_at: datetime,
    decision: str,
    band: str,
    score: int,
    probability: float,
    reasons: tuple[ReasonRef, ...],
    rules: tuple[str, ...],
    model: tuple[str, str],
    latency_ms: float | None,
    applicant: dict[str, Any],
    monitoring: dict[str, Any] | None,
) -> Any:
    """A decision record as the decision service writes it (typed payload, current schema version)."""
    from service.core.engine import Decision, Reason, RuleHit
    from service.core.recorded import ApplicationRequest, ModelProvenance, RecordedDecision, ScoreScale
    from service.decisions import record_of

    request = ApplicationRequest(f"app-{decision_id}", applicant, monitoring)
    recorded = RecordedDecision.new(
        decision_id=decision_id,
        created_at=created_at,
        request=request,
        decision=Decision(
            decision=decision,  # type: ignore[arg-type]
            score=score,
            probability_of_default=probability,
            margin=0.0,
            base_value=0.0,
            risk_band=band,
            reasons=tuple(
                Reason(r.code, r.kind, None, "text", "audit text", (), None, None, r.adverse) for r in reasons
            ),
            rules_fired=tuple(RuleHit(code, "credit_amount", "gt", 0, "refer", "rule") for code in rules),
            attributions=(),
        ),
        model_name=model[0],
        model_version=model[1],
        provenance=ModelProvenance("a" * 64, "b" * 64, "gbt", "spec-1", "policy-1", "catalog-1"),
        score_scale=ScoreScale(300, 850, 57.7),
        decided_by={},
        latency_ms=latency_ms,
    )
    return record_of(recorded, None, request.request_hash)


def test_rows_from_stored_records_read_request_response_and_monitoring() -> None:
    record = _stored_record(
        "d-1",
        datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        "refer",
        "D",
        480,
        0.27,
        (ReasonRef("R02", "rule", True), ReasonRef("C01", "model", True)),
        ("R02",),
        ("gbt", "v3"),
        7.25,
        {"age_years": 41},
        {"sex": "female"},
    )
    (row,) = rows_from_records([record], outcomes={"d-1": "bad"})
    assert row.reasons == (ReasonRef("R02", "rule", True), ReasonRef("C01", "model", True))
    assert (row.rules_fired, row.latency_ms, row.probability_of_default, row.outcome) == (("R02",), 7.25, 0.27, "bad")
    assert row.applicant == {"age_years": 41} and row.monitoring == {"sex": "female"}


def test_baseline_written_by_training_is_read_and_is_stable_against_itself() -> None:
    """The training pipeline's own baseline format: the training data against itself has PSI and CSI 0."""
    from model_store.policy import Policy
    from model_store.spec import FeatureSpec
    from training.metrics import training_baseline

    spec = FeatureSpec.load(CONFIG / "feature_spec.yaml")
    policy = Policy.load(CONFIG / "policy.yaml", spec)
    with open(Path(__file__).resolve().parents[1] / "data" / "german_credit.csv", newline="") as fh:
        applications = [spec.from_source_row(r) for r in list(csv.DictReader(fh))[:200]]
    scores = np.asarray([400 + 2 * i for i in range(200)], dtype=np.float64)
    reference = json.loads(json.dumps({"baseline": training_baseline(spec, applications, scores, policy)}))
    baseline = baseline_from_reference(reference, "gbt", "v1")
    assert baseline is not None and {name for name, _ in baseline.fields} == set(spec.field_names)
    rows = [
        DecisionRow(
            f"d{i}", PERIOD.start, "approve", policy.band_for(int(s)).band, int(s), 0.1, (), (), "gbt", "v1", 1.0, app
        )
        for i, (app, s) in enumerate(zip(applications, scores, strict=True))
    ]
    r = build_report(rows, PERIOD, (), baseline)
    assert r.score_psi is not None and r.score_psi.value == pytest.approx(0.0, abs=1e-12)
    assert r.band_psi is not None and r.band_psi.value == pytest.approx(0.0, abs=1e-12)
    assert len(r.field_csi) == len(spec.fields)
    assert all(c.value == pytest.approx(0.0, abs=1e-12) and c.missing == 0 for c in r.field_csi)
    assert baseline_from_reference({}, "gbt", "v1") is None


# ---- rendering ----------------------------------------------------------------------------------


def _png_is_not_blank(data: bytes | Path) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(data) if isinstance(data, bytes) else data)
    assert pixels.shape[0] > 100 and float(np.std(pixels[..., :3])) > 0.02


def test_json_and_csv_carry_every_number(report: PeriodReport) -> None:
    data = json.loads(render_json(report))
    assert data["summary"]["approval_rate"] == 0.7
    assert data["period"] == {"start": "2025-01-01T00:00:00Z", "end": "2025-01-08T00:00:00Z"}
    assert data["score_psi"]["value"] == pytest.approx(report.score_psi.value if report.score_psi else None)
    assert data["disparate_impact"][0]["groups"][0]["flag"] == "four_fifths"
    assert data["disparate_impact"][1]["groups"][0]["small_group"] is True  # foreign_worker "yes": 4 decisions
    assert data["thresholds"] == {
        "stability_watch": 0.1,
        "stability_action": 0.25,
        "four_fifths": 0.8,
        "min_sample": 5,
        "reason_shift_p_value": 0.01,
    }
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert len(rows) == len(metric_rows(report)) and set(rows[0]) == {"section", "metric", "group", "value", "flag"}
    by_key = {(r["section"], r["metric"], r["group"]): r for r in rows}
    assert by_key[("stability", "csi", "purpose")]["flag"] == "action"
    assert float(by_key[("disparate_impact", "sex.ratio", "female")]["value"]) == pytest.approx((4 / 8) / (9 / 10))
    assert float(by_key[("reason_frequency", "change_pp", "C04")]["value"]) == pytest.approx(-50.0)
    assert by_key[("latency", "p99_ms", "")]["flag"] == "over_budget"
    assert by_key[("thresholds", "min_sample", "")]["value"] == "5"
    assert by_key[("disparate_impact", "age_band.decisions", "<25")]["flag"] == "small_group"
    assert by_key[("disparate_impact", "age_band.ratio", "<25")]["flag"] == ""


def test_html_is_self_contained_with_every_section_and_chart(report: PeriodReport) -> None:
    page = render_html(report)
    for section in (
        "summary",
        "volumes",
        "scores",
        "reasons",
        "stability",
        "rules",
        "fairness",
        "operations",
        "backtest",
    ):
        assert f'<section id="{section}">' in page
    images = page.split('src="data:image/png;base64,')[1:]
    assert len(images) == 11
    import base64

    _png_is_not_blank(base64.b64decode(images[0].split('"', 1)[0]))
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert 'class="flag-action"' in page and "four_fifths" in page
    # the thresholds the report was built with, and the suppression of small samples, are stated
    text = html.unescape(page)
    assert "a group's approval rate below 0.8 of the reference group's is flagged" in text
    assert "Groups with fewer than 5 decisions are shown but not flagged" in text
    assert "watch at ≥ 0.1, action at ≥ 0.25" in text.lower()
    assert "not flagged (n < 5)" in text


def _first_page_png(pdf: Path) -> Path:
    if shutil.which("pdftoppm"):
        subprocess.run(
            ["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(pdf.with_suffix(""))],
            check=True,
        )
        return pdf.with_suffix(".png")
    try:
        import pypdfium2  # type: ignore[import-not-found]
    except ImportError:
        pytest.fail(
            "needs pdftoppm to check the PDF: install the Debian package poppler-utils (apt-get install poppler-utils)"
        )
    out = pdf.with_suffix(".png")
    pypdfium2.PdfDocument(str(pdf))[0].render(scale=0.7).to_pil().save(out)
    return out


def test_pdf_renders_and_its_first_page_is_not_blank(report: PeriodReport, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_pdf(report))
    assert pdf.read_bytes().startswith(b"%PDF-")
    _png_is_not_blank(_first_page_png(pdf))


# ---- CLI over a real SQLite decision store ------------------------------------------------------


def _write_model_version(root: Path) -> None:
    from model_store.store import ModelStore

    reference = {
        "baseline": {
            "fields": {
                "duration_months": {"kind": "numeric", "edges": [12.0, 24.0], "shares": [0.3, 0.4, 0.3]},
                "purpose": {"kind": "categorical", "shares": {"car_new": 0.5, "business": 0.3, "other": 0.2}},
            },
            "score": {"edges": [500.0, 600.0], "shares": [0.2, 0.5, 0.3]},
        }
    }
    files = {
        "model.onnx": b"onnx",
        "explainer.npz": b"npz",
        "feature_spec.yaml": (CONFIG / "feature_spec.yaml").read_bytes(),
        "policy.yaml": (CONFIG / "policy.yaml").read_bytes(),
        "reason_codes.yaml": (CONFIG / "reason_codes.yaml").read_bytes(),
        "reference.json": json.dumps(reference).encode(),
    }
    ModelStore(root).write_version("gbt", "v1", files, {"family": "gbt"})


def _record_of(row: DecisionRow) -> Any:
    return _stored_record(
        row.decision_id,
        row.created_at,
        row.decision,
        row.risk_band,
        row.score,
        row.probability_of_default,
        row.reasons,
        row.rules_fired,
        (row.model_name, row.model_version),
        row.latency_ms,
        dict(row.applicant),
        dict(row.monitoring),
    )


def test_cli_writes_every_format_from_a_real_sqlite_store(tmp_path: Path, sqlite_decision_store_url: str) -> None:
    from cli.report import report_command
    from service.records import open_decision_store

    store = open_decision_store(sqlite_decision_store_url)
    for row in sorted(CURRENT_ROWS + PREVIOUS_ROWS + OUTSIDE_ROWS, key=lambda r: r.created_at):
        store.save(_record_of(row))
    store.close()
    _write_model_version(tmp_path / "models")
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text(
        "decision_id,outcome\n" + "".join(f"{r.decision_id},{r.outcome}\n" for r in CURRENT_ROWS if r.outcome)
    )
    runner = CliRunner()
    common = [
        "--from",
        "2025-01-01",
        "--to",
        "2025-01-08",
        "--database-url",
        sqlite_decision_store_url,
        "--model-store",
        str(tmp_path / "models"),
    ]
    common += ["--outcomes", str(outcomes)]
    for fmt in ("json", "csv", "html", "pdf"):
        out = tmp_path / f"report.{fmt}"
        result = runner.invoke(report_command, [*common, "--format", fmt, "--output", str(out)])
        assert result.exit_code == 0, result.output
        assert out.stat().st_size > 0
    data = json.loads((tmp_path / "report.json").read_text())
    expected = build_report(
        CURRENT_ROWS + PREVIOUS_ROWS, PERIOD, PREVIOUS_ROWS, BASELINE, rule_codes=("R01", "R02", "R03")
    )
    assert data["summary"]["decisions"] == 20 and data["summary"]["previous_decisions"] == 6
    assert data["baseline_model"] == "gbt v1"
    assert data["score_psi"]["value"] == pytest.approx(expected.score_psi.value if expected.score_psi else None)
    assert [c["value"] for c in data["field_csi"]] == pytest.approx([c.value for c in expected.field_csi])
    assert [r["code"] for r in data["rule_hits"]] == ["R01", "R02", "R03"]
    assert data["backtest"]["auc"] == pytest.approx(19 / 24)
    # the model version's spec and policy drive the report: its attributes and bands, its thresholds ...
    assert [d["attribute"] for d in data["disparate_impact"]] == ["sex", "foreign_worker", "age_band"]
    assert data["thresholds"]["min_sample"] == POLICY.monitoring.min_sample == 100
    # ... so 20 decisions (fewer than 100) flag no drift and no disparate impact, however large the numbers
    assert data["field_csi"][1]["name"] == "purpose" and data["field_csi"][1]["value"] > 3
    assert all(c["flag"] == "" and c["small_sample"] for c in data["field_csi"])
    assert {f["section"] for f in data["flags"]} == {"latency"}
    assert any("Only 20 decisions in the period (fewer than 100)" in n for n in data["notes"])
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF-")
    assert '<section id="fairness">' in (tmp_path / "report.html").read_text()
    # stdout for text formats; --model filters by model name
    result = runner.invoke(report_command, [*common, "--format", "csv", "--model", "scorecard"])
    assert result.exit_code == 0 and "summary,decisions,,0," in result.output
