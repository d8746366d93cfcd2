"""The comparison report: the champion's decisions against a shadow's over a period (pure, deterministic).

A *shadow* decides the same live application off the critical path and is recorded, never applied:
a challenger model version (kind ``challenger``), or a candidate policy and reason catalog evaluated on
the champion's model (kind ``policy``). Each :class:`ComparisonPair` holds both sides of one
application; :func:`build_comparison` turns the pairs of a period into a :class:`ComparisonReport`.
Frozen dataclasses in and out; no clock, no I/O. ``service.reports.challenger_render`` renders it.

Definitions (``d`` = shadow − champion everywhere; "pp" = percentage points, ``100 × (shadow − champion)``):

- Pairs: those whose ``created_at`` (the champion decision's time) lies in the half-open period,
  ordered by (``created_at``, ``decision_id``); a ``decision_id`` given twice is an error.
- Decision agreement: pairs with the same decision on both sides / pairs. Swap-set matrix: counts of
  (champion decision, shadow decision) over approve, refer, decline (rows champion, columns shadow).
  Swap-in: the champion referred or declined, the shadow approves; swap-out: the champion approved, the
  shadow refers or declines. Stricter / more lenient: the shadow's decision is more / less severe than
  the champion's (approve < refer < decline), so refer→decline is stricter but no swap-out.
- Band transitions: counts of (champion band, shadow band) on one axis for both: the ``bands`` given
  (the policy's, best first), then any other band seen, by name; with no ``bands``, the bands seen by
  name. "Shadow better" means the shadow's band comes earlier on that axis than the champion's.
- Score difference: ``shadow.score − champion.score`` (integer points); mean, min, max and the
  percentiles p5, p25, p50 (median), p75, p95 by linear interpolation (numpy's default, as the period
  report). Histogram on the fixed edges ``SCORE_DIFFERENCE_EDGES`` = (-50, -20, -10, -5, 0, 1, 6, 11,
  21, 51): bin ``i`` holds ``edges[i-1] <= d < edges[i]``, the first bin ``d < -50``, the last
  ``d >= 51``; on integers: <= -51, -50 to -21, -20 to -11, -10 to -6, -5 to -1, 0, 1 to 5, 6 to 10,
  11 to 20, 21 to 50, >= 51 (symmetric about an exact-zero bin).
- Adverse-action rate of a side: declined / pairs, and not approved (refer + decline) / pairs; the
  change in pp.
- Reason agreement, on ``reasons`` among the pairs where both sides cite at least one reason:
  top-reason match rate = share of those pairs whose first reason codes are equal; top-4 overlap =
  mean over those pairs of the Jaccard index ``|A ∩ B| / |A ∪ B|``, ``A`` and ``B`` the sets of each
  side's first four reason codes (1 when both cite the same codes, whatever their order). The same two
  numbers on ``adverse_reasons`` among the pairs not approved on both sides where both cite at least one
  adverse reason.
- Reason-frequency shift: for each code, the share of a side's declines and referrals whose ``reasons``
  cite it (once per decision) -- the period report's reason frequencies -- on each side, and the change
  in pp. Each side's denominator is its own number of declines and referrals.
- Rule hit rate: the share of all pairs on which a rule fired on that side (once per decision), and the
  change in pp; every rule seen on either side, and those in ``rule_codes`` even at zero.
- Disparate impact: the period report's computation (:func:`service.reports.core.disparate_impact`)
  run on each side's decisions with the same settings: approval rate per group, ratio to the
  most-favoured group, four-fifths flag, small groups (fewer than ``min_sample``) shown but not flagged.
- Back-testing, on the pairs with a posted outcome: the outcome was observed under the champion's
  decision (the one applied), so it is the same for both sides. Per side: bad rate among the pairs that
  side approved; AUC and KS of that side's ``probability_of_default`` against the outcome (the period
  report's :func:`~service.reports.core.backtest`: Mann-Whitney AUC with average ranks, KS the largest
  gap between the bads' and goods' distribution functions); bad rate by that side's band.
- Flags: a group under the four-fifths rule on either side (level ``four_fifths``), and more than one
  model/policy/catalog version on one side within the period (level ``watch``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Literal

import numpy as np

from model_store.policy import Monitoring
from model_store.vocabulary import SEVERITY
from service.reports.core import (
    DECISIONS,
    BandOutcome,
    DecisionRow,
    DisparateImpact,
    Flag,
    MetricRow,
    Outcome,
    Period,
    ReportError,
    ReportSettings,
    backtest,
    cited_counts,
    disparate_impact,
    rule_hit_rates,
    to_jsonable,
)

ShadowKind = Literal["challenger", "policy"]
SHADOW_KINDS: tuple[ShadowKind, ...] = ("challenger", "policy")
Side = Literal["champion", "shadow"]
SIDES: tuple[Side, ...] = ("champion", "shadow")
#: Edges of the score-difference histogram (shadow − champion, points); see the module docstring.
SCORE_DIFFERENCE_EDGES: tuple[int, ...] = (-50, -20, -10, -5, 0, 1, 6, 11, 21, 51)
#: How many of each side's ranked reasons the top-N overlap compares.
TOP_REASONS = 4
#: The percentiles of the score difference.
DIFFERENCE_PERCENTILES = (5, 25, 50, 75, 95)


# ---- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionSide:
    """What one side (champion or shadow) decided for an application.

    ``reasons`` are the cited reason codes in ranked order; ``adverse_reasons`` those flagged adverse, in
    the same order; ``rules_fired`` the codes of the policy rules that fired.
    """

    decision: str
    risk_band: str
    score: int
    probability_of_default: float
    reasons: tuple[str, ...]
    adverse_reasons: tuple[str, ...]
    rules_fired: tuple[str, ...]
    model_name: str
    model_version: str
    policy_version: str
    catalog_version: str

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ReportError(f"decision must be one of {', '.join(DECISIONS)}, got {self.decision!r}")
        if isinstance(self.score, bool) or not isinstance(self.score, int):
            raise ReportError(f"score must be an int, got {self.score!r}")

    @property
    def version(self) -> tuple[str, str, str, str]:
        """(model name, model version, policy version, catalog version)."""
        return (self.model_name, self.model_version, self.policy_version, self.catalog_version)


@dataclass(frozen=True)
class ComparisonPair:
    """The champion's and the shadow's decision on one live application.

    ``applicant`` holds the applicant's fields (for the fairness bands), ``monitoring`` the
    monitoring-only attributes (may be empty), ``outcome`` the observed outcome if one was posted.
    """

    decision_id: str
    created_at: datetime
    champion: DecisionSide
    shadow: DecisionSide
    applicant: Mapping[str, Any] = field(default_factory=dict)
    monitoring: Mapping[str, Any] = field(default_factory=dict)
    outcome: Outcome | None = None

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ReportError("ComparisonPair.created_at must be timezone-aware")
        object.__setattr__(self, "created_at", self.created_at.astimezone(UTC))
        if self.outcome not in ("good", "bad", None):
            raise ReportError(f"outcome must be good, bad or None, got {self.outcome!r}")


# ---- outputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionCount:
    """Pairs decided (on one side) by one model, policy and reason-catalog version."""

    model_name: str
    model_version: str
    policy_version: str
    catalog_version: str
    pairs: int
    share: float


@dataclass(frozen=True)
class ComparisonCounts:
    """How many pairs were compared, how many have an outcome, and the versions on each side (most used first).

    ``decisions`` is how many champion decisions the period holds (None when not known) and ``coverage`` the share
    of them that were shadowed: a shadow skips requests when its worker is busy or its queue full."""

    pairs: int
    with_outcome: int
    champion_versions: tuple[VersionCount, ...]
    shadow_versions: tuple[VersionCount, ...]
    decisions: int | None = None
    coverage: float | None = None


@dataclass(frozen=True)
class DecisionSwap:
    """One off-diagonal cell of the swap-set matrix: the champion decided ``champion``, the shadow ``shadow``.

    ``direction`` is ``stricter`` (the shadow's decision is more severe) or ``more_lenient``; ``swap`` is
    ``in`` (to approve), ``out`` (from approve) or empty (between refer and decline).
    """

    champion: str
    shadow: str
    count: int
    share: float | None
    direction: Literal["stricter", "more_lenient"]
    swap: Literal["in", "out", ""]


@dataclass(frozen=True)
class DecisionAgreement:
    """Decision agreement and the swap-set matrix (``matrix[i][j]``: champion ``decisions[i]``, shadow ``decisions[j]``)."""

    pairs: int
    agreed: int
    agreement_rate: float | None
    decisions: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]
    swaps: tuple[DecisionSwap, ...]
    swap_ins: int
    swap_in_rate: float | None
    swap_outs: int
    swap_out_rate: float | None
    stricter: int
    more_lenient: int


@dataclass(frozen=True)
class BandTransitions:
    """Band transition matrix (``matrix[i][j]``: champion band ``bands[i]``, shadow band ``bands[j]``)."""

    bands: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]
    same_band: int
    same_band_rate: float | None
    shadow_better: int
    shadow_worse: int


@dataclass(frozen=True)
class DifferenceBin:
    """One bin of the score-difference histogram: integer differences ``low..high`` (None: unbounded)."""

    label: str
    low: int | None
    high: int | None
    count: int


@dataclass(frozen=True)
class ScoreDifference:
    """Distribution of ``shadow.score − champion.score`` over the pairs."""

    n: int
    mean: float | None
    p5: float | None
    p25: float | None
    p50: float | None
    p75: float | None
    p95: float | None
    minimum: int | None
    maximum: int | None
    higher: int
    equal: int
    lower: int
    bins: tuple[DifferenceBin, ...]


@dataclass(frozen=True)
class SideAdverse:
    """Adverse actions of one side: declines, and declines plus referrals (not approved)."""

    declined: int
    decline_rate: float | None
    not_approved: int
    not_approved_rate: float | None


@dataclass(frozen=True)
class AdverseAction:
    """Adverse-action rates of both sides and their changes (shadow − champion, percentage points)."""

    pairs: int
    champion: SideAdverse
    shadow: SideAdverse
    decline_rate_change_pp: float | None
    not_approved_rate_change_pp: float | None


@dataclass(frozen=True)
class ReasonMatch:
    """Agreement of two ranked code lists over the ``eligible`` pairs (both sides cite at least one code)."""

    eligible: int
    top_matches: int
    top_match_rate: float | None
    top4_jaccard: float | None


@dataclass(frozen=True)
class ReasonAgreement:
    """Reason agreement on all pairs (``reasons``) and on the pairs not approved on both sides (``adverse``)."""

    reasons: ReasonMatch
    both_not_approved: int
    adverse: ReasonMatch


@dataclass(frozen=True)
class ReasonShift:
    """Share of each side's declines and referrals citing a code, and the change in percentage points."""

    code: str
    champion_count: int
    champion_share: float | None
    shadow_count: int
    shadow_share: float | None
    change_pp: float | None


@dataclass(frozen=True)
class RuleHitChange:
    """Share of all pairs on which a rule fired, on each side, and the change in percentage points."""

    code: str
    champion_hits: int
    champion_rate: float | None
    shadow_hits: int
    shadow_rate: float | None
    change_pp: float | None


@dataclass(frozen=True)
class ImpactComparison:
    """Disparate impact of one monitoring attribute or fairness band, on each side's decisions."""

    attribute: str
    champion: DisparateImpact
    shadow: DisparateImpact


@dataclass(frozen=True)
class SideBacktest:
    """Back-testing of one side on the pairs with an outcome."""

    approved: int
    approved_bad: int
    approved_bad_rate: float | None
    auc: float | None
    ks: float | None
    by_band: tuple[BandOutcome, ...]


@dataclass(frozen=True)
class ComparisonBacktest:
    """Back-testing of both sides on the ``n`` pairs with a posted outcome (observed under the champion)."""

    n: int
    bad: int
    bad_rate: float | None
    champion: SideBacktest
    shadow: SideBacktest


@dataclass(frozen=True)
class ComparisonReport:
    """Every number of the champion-vs-shadow comparison over a period."""

    kind: ShadowKind
    period: Period
    thresholds: Monitoring
    counts: ComparisonCounts
    agreement: DecisionAgreement
    band_transitions: BandTransitions
    score_difference: ScoreDifference
    adverse_action: AdverseAction
    reason_agreement: ReasonAgreement
    reason_shift: tuple[ReasonShift, ...]
    rule_hits: tuple[RuleHitChange, ...]
    disparate_impact: tuple[ImpactComparison, ...]
    backtest: ComparisonBacktest | None
    flags: tuple[Flag, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: dicts, lists, ISO-8601 times, numbers and None."""
        data: dict[str, Any] = to_jsonable(self)
        return data


# ---- the report ---------------------------------------------------------------------------------


def build_comparison(
    pairs: Iterable[ComparisonPair],
    period: Period,
    *,
    kind: ShadowKind,
    settings: ReportSettings,
    bands: Sequence[str] = (),
    rule_codes: Sequence[str] = (),
    decisions: int | None = None,
) -> ComparisonReport:
    """The comparison of the champion's and the shadow's decisions on the pairs created in ``period``.

    ``decisions``, when given, is how many champion decisions the period holds (for the coverage).

    ``settings`` carry the thresholds, monitoring attributes and fairness bands (the champion's spec and
    policy); ``bands`` the policy's band names, best first, fixing the band-transition axis; ``rule_codes``
    the rules to list even when they never fired (e.g. both policies' rules).
    """
    if kind not in SHADOW_KINDS:
        raise ReportError(f"kind must be one of {', '.join(SHADOW_KINDS)}, got {kind!r}")
    chosen = sorted((p for p in pairs if period.contains(p.created_at)), key=lambda p: (p.created_at, p.decision_id))
    twice = sorted(i for i, n in Counter(p.decision_id for p in chosen).items() if n > 1)
    if twice:
        raise ReportError(f"decision_id given more than once: {', '.join(twice[:5])}")
    thresholds = settings.thresholds
    champion_rows = [_row(p, p.champion) for p in chosen]
    shadow_rows = [_row(p, p.shadow) for p in chosen]
    axis = band_axis(chosen, bands)
    impact = tuple(
        ImpactComparison(c.attribute, c, s)
        for c, s in zip(disparate_impact(champion_rows, settings), disparate_impact(shadow_rows, settings), strict=True)
    )
    counts = ComparisonCounts(
        pairs=len(chosen),
        with_outcome=sum(1 for p in chosen if p.outcome is not None),
        champion_versions=version_counts([p.champion for p in chosen]),
        shadow_versions=version_counts([p.shadow for p in chosen]),
        decisions=decisions,
        coverage=len(chosen) / decisions if decisions else None,
    )
    report = ComparisonReport(
        kind=kind,
        period=period,
        thresholds=thresholds,
        counts=counts,
        agreement=decision_agreement(chosen),
        band_transitions=band_transitions(chosen, axis),
        score_difference=score_difference([p.shadow.score - p.champion.score for p in chosen]),
        adverse_action=adverse_action(chosen),
        reason_agreement=reason_agreement(chosen),
        reason_shift=reason_shift(chosen),
        rule_hits=rule_hit_changes(champion_rows, shadow_rows, rule_codes),
        disparate_impact=impact,
        backtest=comparison_backtest(chosen, axis),
        flags=(),
        notes=(),
    )
    return _with_flags_and_notes(report, chosen, bands, settings)


def _row(pair: ComparisonPair, side: DecisionSide) -> DecisionRow:
    """One side of a pair as a period-report row (for its disparate-impact, rule and back-testing helpers).

    The row carries no reasons: those helpers do not read them.
    """
    return DecisionRow(
        decision_id=pair.decision_id,
        created_at=pair.created_at,
        decision=side.decision,
        risk_band=side.risk_band,
        score=side.score,
        probability_of_default=side.probability_of_default,
        reasons=(),
        rules_fired=side.rules_fired,
        model_name=side.model_name,
        model_version=side.model_version,
        latency_ms=None,
        applicant=pair.applicant,
        monitoring=pair.monitoring,
        outcome=pair.outcome,
    )


def version_counts(sides: Sequence[DecisionSide]) -> tuple[VersionCount, ...]:
    """Pairs per (model, model version, policy version, catalog version), most used first, then by name."""
    counts = Counter(s.version for s in sides)
    ordered = sorted(counts, key=lambda k: (-counts[k], k))
    return tuple(VersionCount(*key, counts[key], counts[key] / len(sides)) for key in ordered)


def decision_agreement(pairs: Sequence[ComparisonPair]) -> DecisionAgreement:
    """Agreement rate, the 3×3 swap-set matrix, swap-ins/outs and stricter/more-lenient counts."""
    n = len(pairs)
    cells = Counter((p.champion.decision, p.shadow.decision) for p in pairs)
    matrix = tuple(tuple(cells[(c, s)] for s in DECISIONS) for c in DECISIONS)
    swaps = []
    for c in DECISIONS:
        for s in DECISIONS:
            if c == s:
                continue
            swap: Literal["in", "out", ""] = "in" if s == "approve" else "out" if c == "approve" else ""
            direction: Literal["stricter", "more_lenient"] = "stricter" if SEVERITY[s] > SEVERITY[c] else "more_lenient"
            swaps.append(DecisionSwap(c, s, cells[(c, s)], _ratio(cells[(c, s)], n), direction, swap))
    agreed = sum(cells[(d, d)] for d in DECISIONS)
    swap_ins = sum(w.count for w in swaps if w.swap == "in")
    swap_outs = sum(w.count for w in swaps if w.swap == "out")
    return DecisionAgreement(
        pairs=n,
        agreed=agreed,
        agreement_rate=_ratio(agreed, n),
        decisions=DECISIONS,
        matrix=matrix,
        swaps=tuple(swaps),
        swap_ins=swap_ins,
        swap_in_rate=_ratio(swap_ins, n),
        swap_outs=swap_outs,
        swap_out_rate=_ratio(swap_outs, n),
        stricter=sum(w.count for w in swaps if w.direction == "stricter"),
        more_lenient=sum(w.count for w in swaps if w.direction == "more_lenient"),
    )


def band_axis(pairs: Sequence[ComparisonPair], bands: Sequence[str] = ()) -> tuple[str, ...]:
    """The bands given (best first), then every other band seen on either side, by name."""
    seen = {p.champion.risk_band for p in pairs} | {p.shadow.risk_band for p in pairs}
    return (*bands, *sorted(seen - set(bands)))


def band_transitions(pairs: Sequence[ComparisonPair], axis: Sequence[str]) -> BandTransitions:
    """Champion band × shadow band counts on ``axis`` (both sides), and how many moved better or worse."""
    cells = Counter((p.champion.risk_band, p.shadow.risk_band) for p in pairs)
    position = {band: i for i, band in enumerate(axis)}
    same = sum(cells[(b, b)] for b in axis)
    better = sum(n for (c, s), n in cells.items() if position[s] < position[c])
    return BandTransitions(
        bands=tuple(axis),
        matrix=tuple(tuple(cells[(c, s)] for s in axis) for c in axis),
        same_band=same,
        same_band_rate=_ratio(same, len(pairs)),
        shadow_better=better,
        shadow_worse=len(pairs) - same - better,
    )


def difference_bins() -> tuple[tuple[str, int | None, int | None], ...]:
    """(label, lowest, highest) integer difference of each histogram bin, from ``SCORE_DIFFERENCE_EDGES``."""
    edges = SCORE_DIFFERENCE_EDGES
    out: list[tuple[str, int | None, int | None]] = [(f"<= {edges[0] - 1}", None, edges[0] - 1)]
    for low, upper in pairwise(edges):
        high = upper - 1
        out.append((str(low) if low == high else f"{low} to {high}", low, high))
    out.append((f">= {edges[-1]}", edges[-1], None))
    return tuple(out)


def score_difference(differences: Sequence[int]) -> ScoreDifference:
    """Summary and fixed-bin histogram of score differences (shadow − champion)."""
    values = np.asarray(differences, dtype=np.int64)
    index = np.searchsorted(np.asarray(SCORE_DIFFERENCE_EDGES), values, side="right")
    counts = np.bincount(index, minlength=len(SCORE_DIFFERENCE_EDGES) + 1)
    bins = tuple(
        DifferenceBin(label, low, high, int(c)) for (label, low, high), c in zip(difference_bins(), counts, strict=True)
    )
    if not len(values):
        return ScoreDifference(0, None, None, None, None, None, None, None, None, 0, 0, 0, bins)
    p5, p25, p50, p75, p95 = (float(p) for p in np.percentile(values, DIFFERENCE_PERCENTILES))
    return ScoreDifference(
        n=len(values),
        mean=float(values.mean()),
        p5=p5,
        p25=p25,
        p50=p50,
        p75=p75,
        p95=p95,
        minimum=int(values.min()),
        maximum=int(values.max()),
        higher=int(np.sum(values > 0)),
        equal=int(np.sum(values == 0)),
        lower=int(np.sum(values < 0)),
        bins=bins,
    )


def _side_adverse(sides: Sequence[DecisionSide]) -> SideAdverse:
    declined = sum(1 for s in sides if s.decision == "decline")
    not_approved = sum(1 for s in sides if s.decision != "approve")
    return SideAdverse(declined, _ratio(declined, len(sides)), not_approved, _ratio(not_approved, len(sides)))


def adverse_action(pairs: Sequence[ComparisonPair]) -> AdverseAction:
    """Decline and not-approved rates of each side, and the change in percentage points."""
    champion = _side_adverse([p.champion for p in pairs])
    shadow = _side_adverse([p.shadow for p in pairs])
    return AdverseAction(
        pairs=len(pairs),
        champion=champion,
        shadow=shadow,
        decline_rate_change_pp=_change_pp(champion.decline_rate, shadow.decline_rate),
        not_approved_rate_change_pp=_change_pp(champion.not_approved_rate, shadow.not_approved_rate),
    )


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """``|A ∩ B| / |A ∪ B|`` of two code collections (1.0 when both are empty)."""
    left, right = set(a), set(b)
    union = left | right
    return len(left & right) / len(union) if union else 1.0


def reason_match(lists: Sequence[tuple[tuple[str, ...], tuple[str, ...]]]) -> ReasonMatch:
    """Top-code match rate and mean top-4 Jaccard overlap over the (champion, shadow) lists both non-empty."""
    eligible = [(a, b) for a, b in lists if a and b]
    matches = sum(1 for a, b in eligible if a[0] == b[0])
    overlaps = [jaccard(a[:TOP_REASONS], b[:TOP_REASONS]) for a, b in eligible]
    return ReasonMatch(
        eligible=len(eligible),
        top_matches=matches,
        top_match_rate=_ratio(matches, len(eligible)),
        top4_jaccard=float(np.mean(overlaps)) if overlaps else None,
    )


def reason_agreement(pairs: Sequence[ComparisonPair]) -> ReasonAgreement:
    """Reason agreement on all pairs, and adverse-reason agreement on the pairs not approved on both sides."""
    both = [p for p in pairs if p.champion.decision != "approve" and p.shadow.decision != "approve"]
    return ReasonAgreement(
        reasons=reason_match([(p.champion.reasons, p.shadow.reasons) for p in pairs]),
        both_not_approved=len(both),
        adverse=reason_match([(p.champion.adverse_reasons, p.shadow.adverse_reasons) for p in both]),
    )


def reason_shift(pairs: Sequence[ComparisonPair]) -> tuple[ReasonShift, ...]:
    """Each code's share of each side's declines and referrals, most cited (both sides together) first."""
    champion, n_champion = cited_counts((p.champion.decision, p.champion.reasons) for p in pairs)
    shadow, n_shadow = cited_counts((p.shadow.decision, p.shadow.reasons) for p in pairs)
    out = []
    for code in sorted(set(champion) | set(shadow), key=lambda c: (-(champion[c] + shadow[c]), c)):
        before, after = _ratio(champion[code], n_champion), _ratio(shadow[code], n_shadow)
        out.append(ReasonShift(code, champion[code], before, shadow[code], after, _change_pp(before, after)))
    return tuple(out)


def rule_hit_changes(
    champion_rows: Sequence[DecisionRow], shadow_rows: Sequence[DecisionRow], rule_codes: Sequence[str] = ()
) -> tuple[RuleHitChange, ...]:
    """Hit rate of every rule on each side (the period report's :func:`rule_hit_rates`), by code."""
    codes = sorted({c for r in [*champion_rows, *shadow_rows] for c in r.rules_fired} | set(rule_codes))
    before = {r.code: r for r in rule_hit_rates(champion_rows, codes)}
    after = {r.code: r for r in rule_hit_rates(shadow_rows, codes)}
    return tuple(
        RuleHitChange(
            c, before[c].hits, before[c].rate, after[c].hits, after[c].rate, _change_pp(before[c].rate, after[c].rate)
        )
        for c in codes
    )


def _side_backtest(rows: Sequence[DecisionRow], axis: Sequence[str]) -> SideBacktest:
    overall = backtest(rows)
    approved = backtest([r for r in rows if r.decision == "approve"])
    position = {band: i for i, band in enumerate(axis)}
    by_band = sorted(overall.by_band if overall else (), key=lambda b: (position.get(b.band, len(axis)), b.band))
    return SideBacktest(
        approved=approved.n if approved else 0,
        approved_bad=approved.bad if approved else 0,
        approved_bad_rate=approved.bad_rate if approved else None,
        auc=overall.auc if overall else None,
        ks=overall.ks if overall else None,
        by_band=tuple(by_band),
    )


def comparison_backtest(pairs: Sequence[ComparisonPair], axis: Sequence[str] = ()) -> ComparisonBacktest | None:
    """Back-testing of both sides on the pairs with an outcome; None when no pair has one."""
    known = [p for p in pairs if p.outcome is not None]
    if not known:
        return None
    bad = sum(1 for p in known if p.outcome == "bad")
    return ComparisonBacktest(
        n=len(known),
        bad=bad,
        bad_rate=bad / len(known),
        champion=_side_backtest([_row(p, p.champion) for p in known], axis),
        shadow=_side_backtest([_row(p, p.shadow) for p in known], axis),
    )


# ---- flags and notes ----------------------------------------------------------------------------


def _with_flags_and_notes(
    report: ComparisonReport, pairs: Sequence[ComparisonPair], bands: Sequence[str], settings: ReportSettings
) -> ComparisonReport:
    t = settings.thresholds
    flags: list[Flag] = []
    notes: list[str] = []
    counts = report.counts
    if not pairs:
        notes.append(f"No {report.kind} shadow decisions in the period: there is nothing to compare.")
    elif counts.pairs < t.min_sample:
        notes.append(
            f"Only {counts.pairs} pairs compared (fewer than {t.min_sample}): differences may be noise, and "
            "disparate-impact groups are shown but not flagged."
        )
    if counts.coverage is not None and counts.decisions is not None and counts.coverage < 1:
        notes.append(
            f"{counts.pairs} of the period's {counts.decisions} decisions were shadowed ({counts.coverage:.1%}): a "
            "shadow skips requests while its worker is busy or its queue is full, so busy hours are under-represented."
        )
    for side, versions in (("champion", counts.champion_versions), ("shadow", counts.shadow_versions)):
        if len(versions) > 1:
            flags.append(Flag("versions", f"{side}_versions_seen", "", "watch", len(versions)))
            notes.append(
                f"The {side}'s version changed within the period ({len(versions)} model/policy/catalog versions): "
                "its numbers mix them."
            )
    mismatched = sum(1 for p in pairs if (p.champion.model_name, p.champion.model_version) != _model(p.shadow))
    if report.kind == "policy" and mismatched:
        notes.append(
            f"{mismatched} pair(s) of a candidate-policy shadow used a different model from the champion's: "
            "their differences are not the policy's alone."
        )
    if report.kind == "challenger" and pairs and len(pairs) - mismatched:
        notes.append(f"{len(pairs) - mismatched} pair(s) of a challenger shadow used the champion's own model version.")
    extra = [b for b in report.band_transitions.bands if b not in bands]
    if bands and extra:
        notes.append(f"Band(s) {', '.join(extra)} are not among the policy's bands {', '.join(bands)}.")
    for comparison in report.disparate_impact:
        for side, di in (("champion", comparison.champion), ("shadow", comparison.shadow)):
            for g in di.groups:
                if g.four_fifths:
                    flags.append(Flag("disparate_impact", f"{di.attribute} ({side})", g.group, "four_fifths", g.ratio))
    if not report.disparate_impact:
        notes.append("No monitoring attributes or fairness bands are declared: disparate impact was not computed.")
    for comparison in report.disparate_impact:
        if pairs and not comparison.champion.groups:
            notes.append(f"No {comparison.attribute} data for any pair ({comparison.champion.source}).")
    small = sum(1 for c in report.disparate_impact for g in c.champion.groups if g.small_group)
    if small:
        notes.append(
            f"{small} disparate-impact group(s) have fewer than {t.min_sample} pairs: their ratios are shown "
            "but not flagged."
        )
    if pairs and report.backtest is None:
        notes.append("No outcomes posted for these decisions: back-testing was not computed.")
    if report.backtest is not None:
        swap_ins = [p for p in pairs if p.champion.decision != "approve" and p.shadow.decision == "approve"]
        notes.append(
            f"Outcomes are observed under the champion's decisions ({report.backtest.n} of {counts.pairs} pairs have "
            f"one) and the shadow is back-tested on the same pairs: of its {len(swap_ins)} swap-in(s) (applications "
            f"the champion did not approve), {sum(1 for p in swap_ins if p.outcome is not None)} have an outcome."
        )
    return replace(report, flags=tuple(flags), notes=tuple(notes))


# ---- flat rows ----------------------------------------------------------------------------------


def version_label(v: VersionCount) -> str:
    """``model version / policy version / catalog version`` of a version count."""
    return f"{v.model_name} {v.model_version} / policy {v.policy_version} / catalog {v.catalog_version}"


def comparison_metric_rows(report: ComparisonReport) -> tuple[MetricRow, ...]:
    """Every number of the comparison as (section, metric, group, value, flag) rows, in report order.

    Matrix cells have the group ``<champion>-><shadow>``; per-side numbers name the side in the metric.
    """
    out: list[MetricRow] = []
    add = out.append
    c = report.counts
    add(MetricRow("counts", "pairs", "", c.pairs, ""))
    add(MetricRow("counts", "with_outcome", "", c.with_outcome, ""))
    if c.decisions is not None:
        add(MetricRow("counts", "decisions", "", c.decisions, ""))
        add(MetricRow("counts", "coverage", "", c.coverage, ""))
    for side, versions in (("champion", c.champion_versions), ("shadow", c.shadow_versions)):
        for v in versions:
            add(MetricRow("version", f"{side}.pairs", version_label(v), v.pairs, ""))
            add(MetricRow("version", f"{side}.share", version_label(v), v.share, ""))
    t = report.thresholds
    for metric, threshold in (("four_fifths", t.four_fifths), ("min_sample", t.min_sample)):
        add(MetricRow("thresholds", metric, "", threshold, ""))
    a = report.agreement
    for metric, value in (
        ("agreed", a.agreed),
        ("agreement_rate", a.agreement_rate),
        ("swap_ins", a.swap_ins),
        ("swap_in_rate", a.swap_in_rate),
        ("swap_outs", a.swap_outs),
        ("swap_out_rate", a.swap_out_rate),
        ("stricter", a.stricter),
        ("more_lenient", a.more_lenient),
    ):
        add(MetricRow("agreement", metric, "", value, ""))
    for i, champion in enumerate(a.decisions):
        for j, shadow in enumerate(a.decisions):
            add(MetricRow("swap_set", "count", f"{champion}->{shadow}", a.matrix[i][j], ""))
    b = report.band_transitions
    for i, champion in enumerate(b.bands):
        for j, shadow in enumerate(b.bands):
            add(MetricRow("band_transition", "count", f"{champion}->{shadow}", b.matrix[i][j], ""))
    for metric, value in (
        ("same_band", b.same_band),
        ("same_band_rate", b.same_band_rate),
        ("shadow_better", b.shadow_better),
        ("shadow_worse", b.shadow_worse),
    ):
        add(MetricRow("band_transition", metric, "", value, ""))
    d = report.score_difference
    for metric, value in (
        ("n", d.n),
        ("mean", d.mean),
        ("p5", d.p5),
        ("p25", d.p25),
        ("p50", d.p50),
        ("p75", d.p75),
        ("p95", d.p95),
        ("min", d.minimum),
        ("max", d.maximum),
        ("higher", d.higher),
        ("equal", d.equal),
        ("lower", d.lower),
    ):
        add(MetricRow("score_difference", metric, "", value, ""))
    for bin_ in d.bins:
        add(MetricRow("score_difference", "histogram_count", bin_.label, bin_.count, ""))
    aa = report.adverse_action
    for side, rates in (("champion", aa.champion), ("shadow", aa.shadow)):
        add(MetricRow("adverse_action", f"{side}.declined", "", rates.declined, ""))
        add(MetricRow("adverse_action", f"{side}.decline_rate", "", rates.decline_rate, ""))
        add(MetricRow("adverse_action", f"{side}.not_approved", "", rates.not_approved, ""))
        add(MetricRow("adverse_action", f"{side}.not_approved_rate", "", rates.not_approved_rate, ""))
    add(MetricRow("adverse_action", "decline_rate_change_pp", "", aa.decline_rate_change_pp, ""))
    add(MetricRow("adverse_action", "not_approved_rate_change_pp", "", aa.not_approved_rate_change_pp, ""))
    r = report.reason_agreement
    add(MetricRow("adverse_reason_agreement", "both_not_approved", "", r.both_not_approved, ""))
    for section, match in (("reason_agreement", r.reasons), ("adverse_reason_agreement", r.adverse)):
        for metric, value in (
            ("eligible", match.eligible),
            ("top_matches", match.top_matches),
            ("top_match_rate", match.top_match_rate),
            ("top4_jaccard", match.top4_jaccard),
        ):
            add(MetricRow(section, metric, "", value, ""))
    for f in report.reason_shift:
        add(MetricRow("reason_frequency", "champion_share", f.code, f.champion_share, ""))
        add(MetricRow("reason_frequency", "shadow_share", f.code, f.shadow_share, ""))
        add(MetricRow("reason_frequency", "change_pp", f.code, f.change_pp, ""))
    for h in report.rule_hits:
        add(MetricRow("policy_rule", "champion_hit_rate", h.code, h.champion_rate, ""))
        add(MetricRow("policy_rule", "shadow_hit_rate", h.code, h.shadow_rate, ""))
        add(MetricRow("policy_rule", "change_pp", h.code, h.change_pp, ""))
    for comparison in report.disparate_impact:
        attribute = comparison.attribute
        add(MetricRow("disparate_impact", f"{attribute}.missing", "", comparison.champion.missing, ""))
        for side, di in (("champion", comparison.champion), ("shadow", comparison.shadow)):
            for g in di.groups:
                small = "small_group" if g.small_group else ""
                add(MetricRow("disparate_impact", f"{attribute}.{side}.decisions", g.group, g.decisions, small))
                add(MetricRow("disparate_impact", f"{attribute}.{side}.approval_rate", g.group, g.approval_rate, ""))
                add(MetricRow("disparate_impact", f"{attribute}.{side}.ratio", g.group, g.ratio, g.flag))
    bt = report.backtest
    if bt is not None:
        add(MetricRow("backtest", "n", "", bt.n, ""))
        add(MetricRow("backtest", "bad_rate", "", bt.bad_rate, ""))
        for side, sb in (("champion", bt.champion), ("shadow", bt.shadow)):
            for metric, value in (
                ("approved", sb.approved),
                ("approved_bad_rate", sb.approved_bad_rate),
                ("auc", sb.auc),
                ("ks", sb.ks),
            ):
                add(MetricRow("backtest", f"{side}.{metric}", "", value, ""))
            for band in sb.by_band:
                add(MetricRow("backtest", f"{side}.bad_rate", band.band, band.bad_rate, ""))
    for flag in report.flags:
        add(MetricRow("flag", f"{flag.section}.{flag.metric}", flag.group, flag.value, flag.level))
    return tuple(out)


def _model(side: DecisionSide) -> tuple[str, str]:
    return (side.model_name, side.model_version)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _change_pp(before: float | None, after: float | None) -> float | None:
    """``100 × (after − before)``: a change in percentage points (None when either is unknown)."""
    if before is None or after is None or not (math.isfinite(before) and math.isfinite(after)):
        return None
    return 100.0 * (after - before)
