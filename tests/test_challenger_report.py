"""The champion-vs-shadow comparison report: every number checked against arithmetic done by hand.

Sixteen fixed pairs, written out below, are designed so each statistic can be worked out on paper;
the expected values are the arithmetic itself (literal fractions), not copied from the code's output.
Champion: model gbt v1 with policy pol-1; shadow: challenger gbt v2 with its policy pol-2. Bands A..E
(A >= 600, B >= 557, C >= 510, D >= 465 refer, E decline), so every score sits in its band.

Settings: one monitoring attribute (sex) and one fairness band (age: <25, 25-49, 50+), four-fifths at
0.8 and ``min_sample`` 4, so that 16 pairs can be flagged and the small age groups are not.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_store.policy import Monitoring
from model_store.spec import FairnessBands, MonitoringAttribute
from service.reports.challenger import (
    SCORE_DIFFERENCE_EDGES,
    ComparisonPair,
    ComparisonReport,
    DecisionSide,
    build_comparison,
    comparison_metric_rows,
    jaccard,
)
from service.reports.challenger_render import (
    comparison_title,
    render_comparison,
    render_comparison_csv,
    render_comparison_html,
    render_comparison_json,
    render_comparison_pdf,
)
from service.reports.core import Period, ReportError, ReportSettings

PERIOD = Period(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 8, tzinfo=UTC))
BANDS = ("A", "B", "C", "D", "E")
SEX = MonitoringAttribute(
    "personal_status_and_sex", "personal_status_and_sex", "sex", "sex", ("female", "male", "not_provided")
)
AGE = FairnessBands("age_band", "age_years", (25.0, 50.0), ("<25", "25-49", "50+"))
SETTINGS = ReportSettings(Monitoring(four_fifths=0.8, min_sample=4), (SEX,), (AGE,))
CHAMPION_VERSION = ("gbt", "v1", "pol-1", "cat-1")
SHADOW_VERSION = ("gbt", "v2", "pol-2", "cat-1")

# side: (decision, band, score, PD, reasons, adverse reasons, rules)
# pair: id, champion side, shadow side, sex (None: absent), age, outcome
_PAIRS: list[tuple[Any, ...]] = [
    ("p01", ("approve", "A", 640, 0.02, "C07", "", ""), ("approve", "A", 650, 0.02, "", "", ""), "male", 40, "good"),
    ("p02", ("approve", "A", 620, 0.03, "C07", "", ""), ("approve", "B", 590, 0.06, "C07 C02", "", ""), "male", 45, "good"),
    ("p03", ("approve", "B", 580, 0.06, "C07", "", ""), ("approve", "B", 575, 0.07, "C07", "", ""), "female", 28, "bad"),
    ("p04", ("approve", "B", 570, 0.07, "C07", "", ""), ("approve", "A", 605, 0.04, "C03", "", ""), "female", 35, "good"),
    ("p05", ("approve", "C", 530, 0.12, "C02", "", ""), ("decline", "E", 460, 0.30, "C02 C05", "C02 C05", ""), "male", 52, "bad"),
    ("p06", ("approve", "C", 515, 0.15, "C01", "", ""), ("refer", "D", 500, 0.20, "C01 C05", "C01 C05", ""), "female", 26, "good"),
    ("p07", ("approve", "C", 520, 0.14, "C02 C05", "", ""), ("decline", "E", 455, 0.35, "C05 C02 C01", "C05 C02 C01", "R01"), "male", 60, "bad"),
    ("p08", ("refer", "D", 490, 0.25, "C01 C02", "C01 C02", ""), ("approve", "C", 512, 0.15, "C02", "", ""), "female", 31, None),
    ("p09", ("refer", "D", 480, 0.27, "C01 C03", "C01 C03", "R02"), ("refer", "D", 470, 0.29, "C01 C03", "C01 C03", "R02"), "male", 29, None),
    ("p10", ("refer", "D", 470, 0.28, "C03 C01", "C03", ""), ("decline", "E", 440, 0.40, "C03 C04", "C03 C04", ""), "female", 24, None),
    ("p11", ("decline", "E", 450, 0.38, "C01 C04", "C01 C04", "R01"), ("decline", "E", 430, 0.42, "C01 C04", "C01 C04", "R01"), "male", 22, None),
    ("p12", ("decline", "E", 440, 0.40, "C04", "C04", ""), ("decline", "E", 440, 0.39, "C01 C04", "C01 C04", ""), "female", 55, None),
    ("p13", ("decline", "E", 455, 0.36, "C05 C01", "C05 C01", ""), ("approve", "C", 540, 0.11, "C07", "", ""), "female", 41, None),
    ("p14", ("decline", "E", 460, 0.33, "C06", "C06", ""), ("refer", "D", 468, 0.30, "C06 C02 C08", "C06 C02", ""), "male", 38, None),
    ("p15", ("approve", "A", 700, 0.01, "C07", "", ""), ("approve", "A", 690, 0.01, "C07", "", ""), "not_provided", 33, "good"),
    ("p16", ("approve", "B", 560, 0.08, "C07", "", ""), ("approve", "A", 610, 0.03, "C07", "", ""), None, 47, "good"),
]  # fmt: skip


def _side(spec: tuple[Any, ...], version: tuple[str, str, str, str]) -> DecisionSide:
    decision, band, score, pd, reasons, adverse, rules = spec
    return DecisionSide(
        decision=decision,
        risk_band=band,
        score=score,
        probability_of_default=pd,
        reasons=tuple(reasons.split()),
        adverse_reasons=tuple(adverse.split()),
        rules_fired=tuple(rules.split()),
        model_name=version[0],
        model_version=version[1],
        policy_version=version[2],
        catalog_version=version[3],
    )


def _pair(spec: tuple[Any, ...], shadow_version: tuple[str, str, str, str] = SHADOW_VERSION) -> ComparisonPair:
    ident, champion, shadow, sex, age, outcome = spec
    return ComparisonPair(
        decision_id=ident,
        created_at=PERIOD.start + timedelta(hours=6 * int(ident[1:])),
        champion=_side(champion, CHAMPION_VERSION),
        shadow=_side(shadow, shadow_version),
        applicant={"age_years": age, "duration_months": 12},
        monitoring={} if sex is None else {"sex": sex},
        outcome=outcome,
    )


PAIRS = [_pair(s) for s in _PAIRS]


@pytest.fixture(scope="module")
def report() -> ComparisonReport:
    return build_comparison(PAIRS, PERIOD, kind="challenger", settings=SETTINGS, bands=BANDS, rule_codes=("R03",))


# ---- numbers ------------------------------------------------------------------------------------


def test_counts_and_versions(report: ComparisonReport) -> None:
    c = report.counts
    assert (c.pairs, c.with_outcome) == (16, 9)  # outcomes on p01-p07, p15, p16
    assert [(v.model_version, v.policy_version, v.pairs, v.share) for v in c.champion_versions] == [
        ("v1", "pol-1", 16, 1.0)
    ]
    assert [(v.model_version, v.policy_version, v.pairs) for v in c.shadow_versions] == [("v2", "pol-2", 16)]
    assert not any(f.section == "versions" for f in report.flags)


def test_decision_agreement_and_swap_set(report: ComparisonReport) -> None:
    a = report.agreement
    # champion approve (9): shadow approves p01-p04 p15 p16 (6), refers p06, declines p05 p07
    # champion refer (3): p08 approve, p09 refer, p10 decline; champion decline (4): p13 approve, p14 refer, p11 p12 decline
    assert a.decisions == ("approve", "refer", "decline")
    assert a.matrix == ((6, 1, 2), (1, 1, 1), (1, 1, 2))
    assert (a.agreed, a.agreement_rate) == (6 + 1 + 2, 9 / 16)
    assert (a.swap_ins, a.swap_in_rate) == (1 + 1, 2 / 16)  # refer->approve p08, decline->approve p13
    assert (a.swap_outs, a.swap_out_rate) == (1 + 2, 3 / 16)  # approve->refer p06, approve->decline p05 p07
    assert (a.stricter, a.more_lenient) == (1 + 2 + 1, 1 + 1 + 1)  # + refer->decline p10; + decline->refer p14
    swaps = {(w.champion, w.shadow): (w.count, w.share, w.direction, w.swap) for w in a.swaps}
    assert swaps == {
        ("approve", "refer"): (1, 1 / 16, "stricter", "out"),
        ("approve", "decline"): (2, 2 / 16, "stricter", "out"),
        ("refer", "approve"): (1, 1 / 16, "more_lenient", "in"),
        ("refer", "decline"): (1, 1 / 16, "stricter", ""),
        ("decline", "approve"): (1, 1 / 16, "more_lenient", "in"),
        ("decline", "refer"): (1, 1 / 16, "more_lenient", ""),
    }


def test_band_transition_matrix(report: ComparisonReport) -> None:
    b = report.band_transitions
    assert b.bands == BANDS
    # A: p01 p15 stay, p02 -> B; B: p04 p16 -> A, p03 stays; C: p05 -> E, p06 -> D, p07 -> E;
    # D: p08 -> C, p09 stays, p10 -> E; E: p13 -> C, p14 -> D, p11 p12 stay
    assert b.matrix == (
        (2, 1, 0, 0, 0),
        (2, 1, 0, 0, 0),
        (0, 0, 0, 1, 2),
        (0, 0, 1, 1, 1),
        (0, 0, 1, 1, 2),
    )
    assert (b.same_band, b.same_band_rate) == (2 + 1 + 0 + 1 + 2, 6 / 16)
    assert (b.shadow_better, b.shadow_worse) == (5, 5)  # p04 p16 p08 p13 p14 / p02 p05 p06 p07 p10


def test_score_difference_distribution_and_histogram(report: ComparisonReport) -> None:
    d = report.score_difference
    # shadow - champion: 10, -30, -5, 35, -70, -15, -65, 22, -10, -30, -20, 0, 85, 8, -10, 50
    # sorted: -70 -65 -30 -30 -20 -15 -10 -10 -5 0 8 10 22 35 50 85; percentile q at position 15q, linear
    assert d.n == 16 and (d.minimum, d.maximum) == (-70, 85)
    assert d.mean == pytest.approx(-45 / 16)
    assert d.p5 == pytest.approx(-70 + 0.75 * 5)  # position 0.75
    assert d.p25 == pytest.approx(-30 + 0.75 * 10)  # position 3.75
    assert d.p50 == pytest.approx(-10 + 0.5 * 5)  # position 7.5
    assert d.p75 == pytest.approx(10 + 0.25 * 12)  # position 11.25
    assert d.p95 == pytest.approx(50 + 0.25 * 35)  # position 14.25
    assert (d.higher, d.equal, d.lower) == (6, 1, 9)
    assert SCORE_DIFFERENCE_EDGES == (-50, -20, -10, -5, 0, 1, 6, 11, 21, 51)
    assert [(b.label, b.low, b.high, b.count) for b in d.bins] == [
        ("<= -51", None, -51, 2),  # -70 -65
        ("-50 to -21", -50, -21, 2),  # -30 -30
        ("-20 to -11", -20, -11, 2),  # -20 -15 (-20 is the bin's lower edge)
        ("-10 to -6", -10, -6, 2),  # -10 -10
        ("-5 to -1", -5, -1, 1),  # -5
        ("0", 0, 0, 1),  # p12
        ("1 to 5", 1, 5, 0),
        ("6 to 10", 6, 10, 2),  # 8 10
        ("11 to 20", 11, 20, 0),
        ("21 to 50", 21, 50, 3),  # 22 35 50
        (">= 51", 51, None, 1),  # 85
    ]


def test_adverse_action_rates_and_change(report: ComparisonReport) -> None:
    aa = report.adverse_action
    # champion: declines p11-p14 (4), referrals p08-p10 (3); shadow: declines p05 p07 p10 p11 p12 (5), referrals p06 p09 p14
    assert (aa.champion.declined, aa.champion.decline_rate) == (4, 4 / 16)
    assert (aa.champion.not_approved, aa.champion.not_approved_rate) == (7, 7 / 16)
    assert (aa.shadow.declined, aa.shadow.decline_rate) == (5, 5 / 16)
    assert (aa.shadow.not_approved, aa.shadow.not_approved_rate) == (8, 8 / 16)
    assert aa.decline_rate_change_pp == pytest.approx(100 * (5 / 16 - 4 / 16))  # +6.25 pp
    assert aa.not_approved_rate_change_pp == pytest.approx(100 * (8 / 16 - 7 / 16))


def test_reason_agreement_top_reason_and_top4_jaccard(report: ComparisonReport) -> None:
    r = report.reason_agreement.reasons
    # p01's shadow cites no reason: 15 pairs. First codes differ on p04 (C07/C03), p07 (C02/C05),
    # p08 (C01/C02), p12 (C04/C01), p13 (C05/C07): 10 match
    assert (r.eligible, r.top_matches, r.top_match_rate) == (15, 10, 10 / 15)
    # Jaccard: 1 on p03 p09 p11 p15 p16; 1/2 on p02 p05 p06 p08 p12; 1/3 on p10 ({C03 C01} vs {C03 C04}) and
    # p14 ({C06} vs {C06 C02 C08}); 2/3 on p07; 0 on p04 p13
    assert r.top4_jaccard == pytest.approx((5 * 1 + 5 / 2 + 2 / 3 + 2 / 3 + 0) / 15)
    adverse = report.reason_agreement.adverse
    # not approved on both sides: p09 p10 p11 p12 p14; adverse first codes differ only on p12 (C04/C01)
    assert report.reason_agreement.both_not_approved == 5
    assert (adverse.eligible, adverse.top_matches, adverse.top_match_rate) == (5, 4, 4 / 5)
    # p09 1, p10 {C03} vs {C03 C04} 1/2, p11 1, p12 {C04} vs {C01 C04} 1/2, p14 {C06} vs {C06 C02} 1/2
    assert adverse.top4_jaccard == pytest.approx((1 + 1 / 2 + 1 + 1 / 2 + 1 / 2) / 5)


def test_jaccard_takes_sets() -> None:
    assert jaccard(["C01", "C02"], ["C02", "C01"]) == 1.0
    assert jaccard(["C01", "C01"], ["C01", "C02"]) == 1 / 2
    assert jaccard([], []) == 1.0 and jaccard(["C01"], []) == 0.0


def test_reason_frequency_shift_among_declines_and_referrals(report: ComparisonReport) -> None:
    # champion's 7 declines/referrals p08-p14; shadow's 8: p05 p06 p07 p09 p10 p11 p12 p14 (approvals' C07/C03 not counted)
    expected = {
        "C01": (5, 5 / 7, 5, 5 / 8),  # p08 p09 p10 p11 p13 / p06 p07 p09 p11 p12
        "C04": (2, 2 / 7, 3, 3 / 8),  # p11 p12 / p10 p11 p12
        "C02": (1, 1 / 7, 3, 3 / 8),  # p08 / p05 p07 p14
        "C03": (2, 2 / 7, 2, 2 / 8),  # p09 p10 / p09 p10
        "C05": (1, 1 / 7, 3, 3 / 8),  # p13 / p05 p06 p07
        "C06": (1, 1 / 7, 1, 1 / 8),  # p14 / p14
        "C08": (0, 0 / 7, 1, 1 / 8),  # p14's shadow cites it (not adverse, still a reason)
    }
    got = report.reason_shift
    # most cited on both sides together first (10, 5, 4, 4, 4, 2, 1), ties by code
    assert [f.code for f in got] == ["C01", "C04", "C02", "C03", "C05", "C06", "C08"]
    for f in got:
        champion_count, champion_share, shadow_count, shadow_share = expected[f.code]
        assert (f.champion_count, f.shadow_count) == (champion_count, shadow_count)
        assert f.champion_share == pytest.approx(champion_share) and f.shadow_share == pytest.approx(shadow_share)
        assert f.change_pp == pytest.approx(100 * (shadow_share - champion_share))


def test_rule_hit_rate_change(report: ComparisonReport) -> None:
    # R01 fires on p11 (champion), p07 and p11 (shadow); R02 on p09 on both; R03 listed at zero
    assert [(h.code, h.champion_hits, h.champion_rate, h.shadow_hits, h.shadow_rate) for h in report.rule_hits] == [
        ("R01", 1, 1 / 16, 2, 2 / 16),
        ("R02", 1, 1 / 16, 1, 1 / 16),
        ("R03", 0, 0.0, 0, 0.0),
    ]
    assert [h.change_pp for h in report.rule_hits] == pytest.approx([100 / 16, 0.0, 0.0])


def test_disparate_impact_of_both_sides(report: ComparisonReport) -> None:
    sex, age = report.disparate_impact
    assert (sex.attribute, age.attribute) == ("sex", "age_band")
    # female p03 p04 p06 p08 p10 p12 p13; male p01 p02 p05 p07 p09 p11 p14; p15 not_provided and p16 absent: missing
    assert sex.champion.missing == sex.shadow.missing == 2
    champion = {g.group: g for g in sex.champion.groups}
    # champion approves female p03 p04 p06 (3/7), male p01 p02 p05 p07 (4/7): female at 3/4 < 0.8, flagged
    assert sex.champion.reference_group == "male"
    assert (champion["female"].decisions, champion["female"].approved) == (7, 3)
    assert champion["female"].ratio == pytest.approx((3 / 7) / (4 / 7)) and champion["female"].four_fifths
    assert champion["male"].ratio == pytest.approx(1.0) and not champion["male"].four_fifths
    shadow = {g.group: g for g in sex.shadow.groups}
    # shadow approves female p03 p04 p08 p13 (4/7), male p01 p02 (2/7): male at 1/2, flagged
    assert sex.shadow.reference_group == "female"
    assert (shadow["male"].approved, shadow["male"].approval_rate) == (2, 2 / 7)
    assert shadow["male"].ratio == pytest.approx((2 / 7) / (4 / 7)) and shadow["male"].four_fifths
    assert not shadow["female"].four_fifths
    # age: <25 p10 p11 (2), 50+ p05 p07 p12 (3), 25-49 the other 11. Only 25-49 has min_sample (4) pairs, so it is
    # the reference on both sides even though the champion approves 50+ more often (2/3 > 7/11)
    assert [g.group for g in age.champion.groups] == ["<25", "25-49", "50+"]
    ac = {g.group: g for g in age.champion.groups}
    assert age.champion.reference_group == "25-49" and ac["25-49"].approval_rate == pytest.approx(7 / 11)
    assert ac["50+"].ratio == pytest.approx((2 / 3) / (7 / 11))
    assert ac["<25"].ratio == 0.0 and ac["<25"].below_four_fifths and ac["<25"].small_group
    assert not ac["<25"].four_fifths  # 2 pairs < min_sample: shown, not flagged
    ash = {g.group: g for g in age.shadow.groups}
    assert age.shadow.reference_group == "25-49" and ash["25-49"].approval_rate == pytest.approx(8 / 11)
    assert ash["50+"].ratio == 0.0 and ash["50+"].small_group and not ash["50+"].four_fifths
    assert [(f.metric, f.group, f.level) for f in report.flags] == [
        ("sex (champion)", "female", "four_fifths"),
        ("sex (shadow)", "male", "four_fifths"),
    ]
    assert any("2 disparate-impact group(s) have fewer than 4 pairs" in n for n in report.notes)


def test_backtest_of_both_sides(report: ComparisonReport) -> None:
    bt = report.backtest
    assert bt is not None
    # outcomes on p01-p07 p15 p16: bad p03 p05 p07
    assert (bt.n, bt.bad, bt.bad_rate) == (9, 3, 3 / 9)
    c, s = bt.champion, bt.shadow
    # the champion approved all nine; the shadow approved p01-p04 p15 p16, of which p03 is bad
    assert (c.approved, c.approved_bad, c.approved_bad_rate) == (9, 3, 3 / 9)
    assert (s.approved, s.approved_bad, s.approved_bad_rate) == (6, 1, 1 / 6)
    # champion PD: bads 0.06 0.12 0.14; goods 0.01 0.02 0.03 0.07 0.08 0.15 -> wins 3 + 5 + 5 of 18
    assert c.auc == pytest.approx(13 / 18)
    # CDF gap largest at 0.03 (goods 3/6, bads 0) and 0.08 (goods 5/6, bads 1/3): 1/2
    assert c.ks == pytest.approx(1 / 2)
    # shadow PD: bads 0.07 0.30 0.35; goods 0.01 0.02 0.03 0.04 0.06 0.20 -> wins 5 + 6 + 6 of 18
    assert s.auc == pytest.approx(17 / 18)
    assert s.ks == pytest.approx(5 / 6)  # at 0.06: goods 5/6, bads 0
    assert [(b.band, b.n, b.bad) for b in c.by_band] == [("A", 3, 0), ("B", 3, 1), ("C", 3, 2)]
    assert [(b.band, b.n, b.bad, b.bad_rate) for b in s.by_band] == [
        ("A", 4, 0, 0.0),
        ("B", 2, 1, 1 / 2),
        ("D", 1, 0, 0.0),
        ("E", 2, 2, 1.0),
    ]
    assert any("of its 2 swap-in(s)" in n and "0 have an outcome" in n for n in report.notes)


def test_report_is_deterministic_and_json_ready(report: ComparisonReport) -> None:
    again = build_comparison(
        list(reversed(PAIRS)), PERIOD, kind="challenger", settings=SETTINGS, bands=BANDS, rule_codes=("R03",)
    )
    assert again == report
    data = report.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["period"] == {"start": "2025-03-01T00:00:00Z", "end": "2025-03-08T00:00:00Z"}


# ---- edge cases ---------------------------------------------------------------------------------


def test_no_pairs_is_a_report_that_says_so() -> None:
    late = replace(PAIRS[0], created_at=PERIOD.end)  # the end is exclusive
    empty = build_comparison([late], PERIOD, kind="challenger", settings=SETTINGS, bands=BANDS)
    assert empty.counts.pairs == 0 and empty.counts.champion_versions == ()
    assert empty.agreement.agreement_rate is None and empty.agreement.matrix == ((0, 0, 0),) * 3
    assert empty.band_transitions.bands == BANDS and empty.band_transitions.matrix == ((0,) * 5,) * 5
    assert empty.score_difference.n == 0 and empty.score_difference.mean is None
    assert sum(b.count for b in empty.score_difference.bins) == 0
    assert empty.adverse_action.not_approved_rate_change_pp is None
    assert empty.reason_agreement.reasons.top4_jaccard is None and empty.reason_shift == ()
    assert empty.backtest is None and empty.flags == ()
    assert any("nothing to compare" in n for n in empty.notes)
    assert not any("back-testing" in n for n in empty.notes)
    for fmt in ("json", "csv", "html", "pdf"):
        assert render_comparison(empty, fmt)
    assert "none seen vs none seen" in comparison_title(empty)


def test_no_outcomes_means_no_backtest() -> None:
    pairs = [replace(p, outcome=None) for p in PAIRS]
    r = build_comparison(pairs, PERIOD, kind="challenger", settings=SETTINGS, bands=BANDS)
    assert r.backtest is None and r.counts.with_outcome == 0
    assert any("No outcomes posted" in n for n in r.notes)
    assert '<section id="backtest">' not in render_comparison_html(r)
    assert not any(row.section == "backtest" for row in comparison_metric_rows(r))


def test_too_few_pairs_flags_no_group() -> None:
    # the policy's own min_sample (100): the same ratios, below four fifths, are shown but not flagged
    settings = replace(SETTINGS, thresholds=Monitoring())
    r = build_comparison(PAIRS, PERIOD, kind="challenger", settings=settings, bands=BANDS)
    female = next(g for g in r.disparate_impact[0].champion.groups if g.group == "female")
    assert female.below_four_fifths and female.small_group and not female.four_fifths
    assert r.flags == ()
    assert any("Only 16 pairs compared (fewer than 100)" in n for n in r.notes)


def test_all_agree() -> None:
    same = [replace(p, shadow=replace(p.champion, model_version="v2", policy_version="pol-2")) for p in PAIRS]
    r = build_comparison(same, PERIOD, kind="challenger", settings=SETTINGS, bands=BANDS)
    assert r.agreement.agreement_rate == 1.0 and r.agreement.matrix == ((9, 0, 0), (0, 3, 0), (0, 0, 4))
    assert (r.agreement.swap_ins, r.agreement.swap_outs, r.agreement.stricter, r.agreement.more_lenient) == (0, 0, 0, 0)
    assert (
        r.band_transitions.same_band == 16 and r.band_transitions.shadow_better == r.band_transitions.shadow_worse == 0
    )
    d = r.score_difference
    assert (d.mean, d.p5, d.p95, d.minimum, d.maximum, d.equal) == (0.0, 0.0, 0.0, 0, 0, 16)
    assert [b.count for b in d.bins] == [0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0]
    assert r.adverse_action.decline_rate_change_pp == 0.0 and r.adverse_action.not_approved_rate_change_pp == 0.0
    assert r.reason_agreement.reasons.top_match_rate == 1.0 and r.reason_agreement.reasons.top4_jaccard == 1.0
    assert r.reason_agreement.adverse.eligible == 7 and r.reason_agreement.adverse.top4_jaccard == 1.0
    assert all(f.change_pp == 0.0 for f in r.reason_shift) and all(h.change_pp == 0.0 for h in r.rule_hits)
    for comparison in r.disparate_impact:
        assert comparison.champion.groups == comparison.shadow.groups
    assert r.backtest is not None and r.backtest.champion == r.backtest.shadow


def test_shadow_versions_changing_within_the_period_are_flagged() -> None:
    newer = ("gbt", "v3", "pol-2", "cat-1")
    pairs = [_pair(s, newer if i >= 12 else SHADOW_VERSION) for i, s in enumerate(_PAIRS)]
    r = build_comparison(pairs, PERIOD, kind="challenger", settings=SETTINGS, bands=BANDS)
    assert [(v.model_version, v.pairs, v.share) for v in r.counts.shadow_versions] == [
        ("v2", 12, 0.75),
        ("v3", 4, 0.25),
    ]
    assert ("versions", "shadow_versions_seen", "watch", 2) in [
        (f.section, f.metric, f.level, f.value) for f in r.flags
    ]
    assert any("The shadow's version changed within the period (2 " in n for n in r.notes)
    assert "gbt v2 (+1 more)" in comparison_title(r)


def test_candidate_policy_kind_names_the_policies() -> None:
    candidate = ("gbt", "v1", "pol-2", "cat-2")
    pairs = [_pair(s, candidate) for s in _PAIRS]
    r = build_comparison(pairs, PERIOD, kind="policy", settings=SETTINGS, bands=BANDS)
    assert comparison_title(r) == (
        "Current vs candidate policy: policy pol-1 (catalog cat-1) vs policy pol-2 (catalog cat-2) on model gbt v1, "
        "2025-03-01 to 2025-03-08 (end exclusive)"
    )
    assert not any("different model" in n for n in r.notes)
    # a candidate policy decided on another model is said to be so
    mixed = build_comparison(PAIRS, PERIOD, kind="policy", settings=SETTINGS, bands=BANDS)
    assert any(n.startswith("16 pair(s) of a candidate-policy shadow used a different model") for n in mixed.notes)


def test_bands_fall_back_to_those_seen_and_unknown_bands_are_noted() -> None:
    r = build_comparison(PAIRS, PERIOD, kind="challenger", settings=SETTINGS)
    assert r.band_transitions.bands == ("A", "B", "C", "D", "E")
    odd = [replace(PAIRS[0], shadow=replace(PAIRS[0].shadow, risk_band="A+")), *PAIRS[1:]]
    r = build_comparison(odd, PERIOD, kind="challenger", settings=SETTINGS, bands=BANDS)
    assert r.band_transitions.bands == ("A", "B", "C", "D", "E", "A+")
    assert r.band_transitions.matrix[0] == (1, 1, 0, 0, 0, 1)  # p01 A -> A+, p15 A -> A, p02 A -> B
    assert any("Band(s) A+ are not among the policy's bands" in n for n in r.notes)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ReportError, match="more than once"):
        build_comparison([PAIRS[0], PAIRS[0]], PERIOD, kind="challenger", settings=SETTINGS)
    with pytest.raises(ReportError, match="kind"):
        build_comparison(PAIRS, PERIOD, kind="model", settings=SETTINGS)  # type: ignore[arg-type]
    with pytest.raises(ReportError, match="decision must be one of"):
        replace(PAIRS[0].champion, decision="approved")
    with pytest.raises(ReportError, match="timezone-aware"):
        replace(PAIRS[0], created_at=datetime(2025, 3, 2))


# ---- rendering ----------------------------------------------------------------------------------


def test_json_round_trips_the_key_numbers(report: ComparisonReport) -> None:
    data = json.loads(render_comparison_json(report))
    assert data["kind"] == "challenger" and data["counts"]["pairs"] == 16
    assert data["agreement"]["agreement_rate"] == 9 / 16
    assert data["agreement"]["matrix"] == [[6, 1, 2], [1, 1, 1], [1, 1, 2]]
    assert data["band_transitions"]["matrix"][2] == [0, 0, 0, 1, 2]
    assert data["score_difference"]["mean"] == -45 / 16
    assert [b["count"] for b in data["score_difference"]["bins"]] == [2, 2, 2, 2, 1, 1, 0, 2, 0, 3, 1]
    assert data["adverse_action"]["not_approved_rate_change_pp"] == pytest.approx(6.25)
    assert data["reason_agreement"]["adverse"]["top4_jaccard"] == pytest.approx(0.7)
    assert data["disparate_impact"][0]["shadow"]["groups"][1]["flag"] == "four_fifths"  # male
    assert data["backtest"]["shadow"]["auc"] == pytest.approx(17 / 18)
    assert data["thresholds"]["min_sample"] == 4


def test_csv_has_a_row_per_metric(report: ComparisonReport) -> None:
    rows = list(csv.DictReader(io.StringIO(render_comparison_csv(report))))
    assert len(rows) == len(comparison_metric_rows(report))
    assert set(rows[0]) == {"section", "metric", "group", "value", "flag"}
    by_key = {(r["section"], r["metric"], r["group"]): r for r in rows}
    assert by_key[("agreement", "agreement_rate", "")]["value"] == "0.5625"
    assert by_key[("swap_set", "count", "approve->decline")]["value"] == "2"
    assert sum(1 for r in rows if r["section"] == "swap_set") == 9
    assert sum(1 for r in rows if r["section"] == "band_transition" and r["metric"] == "count") == 25
    assert by_key[("band_transition", "count", "E->C")]["value"] == "1"
    assert by_key[("score_difference", "histogram_count", "<= -51")]["value"] == "2"
    assert float(by_key[("score_difference", "p95", "")]["value"]) == pytest.approx(58.75)
    assert float(by_key[("adverse_action", "decline_rate_change_pp", "")]["value"]) == pytest.approx(6.25)
    assert float(by_key[("reason_frequency", "change_pp", "C05")]["value"]) == pytest.approx(100 * (3 / 8 - 1 / 7))
    assert float(by_key[("policy_rule", "change_pp", "R01")]["value"]) == pytest.approx(6.25)
    assert by_key[("disparate_impact", "sex.champion.ratio", "female")]["flag"] == "four_fifths"
    assert by_key[("disparate_impact", "sex.shadow.ratio", "female")]["flag"] == ""
    assert by_key[("disparate_impact", "age_band.champion.decisions", "<25")]["flag"] == "small_group"
    assert by_key[("disparate_impact", "age_band.champion.ratio", "<25")]["flag"] == ""
    assert float(by_key[("backtest", "champion.auc", "")]["value"]) == pytest.approx(13 / 18)
    assert float(by_key[("backtest", "shadow.bad_rate", "E")]["value"]) == 1.0


def _png_is_not_blank(data: bytes | Path) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(data) if isinstance(data, bytes) else data)
    assert pixels.shape[0] > 100 and float(np.std(pixels[..., :3])) > 0.02


def test_html_is_self_contained_with_versions_matrices_and_charts(report: ComparisonReport) -> None:
    page = render_comparison_html(report, generated_at=datetime(2025, 3, 9, tzinfo=UTC))
    text = html.unescape(page)
    assert "<h1>Champion vs challenger: gbt v1 vs gbt v2, 2025-03-01 to 2025-03-08 (end exclusive)</h1>" in text
    for section in ("summary", "decisions", "bands", "scores", "reasons", "rules", "fairness", "versions", "backtest"):
        assert f'<section id="{section}">' in page
    images = page.split('src="data:image/png;base64,')[1:]
    assert len(images) == 9  # swap set, adverse action, bands, score difference, reasons, rules, 2 fairness, back-test
    for image in images:
        _png_is_not_blank(base64.b64decode(image.split('"', 1)[0]))
    assert "http://" not in page and "https://" not in page and "<script" not in page
    # the swap-set matrix as a table: header, the approve row (6, 1, 2; total 9) and the column totals
    assert "<th>champion \\ challenger</th><th>approve</th><th>refer</th><th>decline</th><th>total</th>" in page
    cells = re.sub(r'<td class="[^"]*">', "<td>", page)
    assert "<td>approve</td><td>6</td><td>1</td><td>2</td><td>9</td>" in cells
    assert "<td>total</td><td>8</td><td>3</td><td>5</td><td>16</td>" in cells
    assert "<td>C</td><td>0</td><td>0</td><td>0</td><td>1</td><td>2</td><td>3</td>" in cells  # band row C
    assert "gbt</td><td>v2</td><td>pol-2</td><td>cat-1" in cells
    assert 'class="flag-four_fifths"' in page and "not flagged (n &lt; 4)" in page
    assert "generated 2025-03-09 00:00 UTC" in page


def _first_page_png(pdf: Path) -> Path:
    if not shutil.which("pdftoppm"):
        pytest.fail("needs pdftoppm to check the PDF: install the Debian package poppler-utils")
    subprocess.run(
        ["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(pdf.with_suffix(""))],
        check=True,
    )
    return pdf.with_suffix(".png")


def test_pdf_renders_pages_and_its_first_page_is_not_blank(report: ComparisonReport, tmp_path: Path) -> None:
    data = render_comparison_pdf(report)
    assert data.startswith(b"%PDF-")
    # a title page, the 9 charts two a page (5), then the tables
    assert len(re.findall(rb"/Type /Page\b", data)) >= 1 + 5 + 1
    pdf = tmp_path / "comparison.pdf"
    pdf.write_bytes(data)
    _png_is_not_blank(_first_page_png(pdf))


def test_render_dispatch_refuses_unknown_formats(report: ComparisonReport) -> None:
    assert render_comparison(report, "json") == render_comparison_json(report).encode()
    with pytest.raises(ValueError, match="unknown report format"):
        render_comparison(report, "xlsx")
