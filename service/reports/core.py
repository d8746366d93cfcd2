"""The period report: pure, deterministic computations over decision rows.

Frozen dataclasses in, frozen dataclasses out; no clock, no I/O, no Flask. The adapters in
``service.reports.source`` turn stored decision records and a model version's ``reference.json``
into the inputs here; ``service.reports.render`` turns a :class:`PeriodReport` into HTML, PDF,
JSON and CSV.

Conventions (stated once, used everywhere):

- The period is half-open, ``[start, end)``; the previous period is the one of the same length
  ending at ``start``.
- "Approved" means ``decision == "approve"``; approval rates are approved / decisions.
- Stability index (PSI of the score, CSI of each input field):
  ``sum((a - e) * ln(a / e))`` over bins, ``e`` the baseline share, ``a`` the period's share
  (of every decision, missing values included); a share of 0 (empty bin) is replaced by
  ``STABILITY_EPSILON`` on either side, without renormalising. Numeric bins are right-closed on
  the baseline's decile edges (bin 0 holds ``x <= edges[0]``, bin i holds
  ``edges[i-1] < x <= edges[i]``, the last ``x > edges[-1]``), as
  ``training.metrics.training_baseline`` writes them; categorical bins are the codes, plus an
  ``(other)`` bin (baseline share 0) for codes the baseline never saw. A missing value (None) has
  a ``(missing)`` bin of its own, against the baseline's missing share (0 when the baseline has
  none); the bin is shown whenever either side has a missing share.
- Thresholds are data (the policy's ``monitoring`` section, :class:`model_store.policy.Monitoring`):
  an index at or above ``stability_watch`` is "watch", at or above ``stability_action`` "action".
- Disparate impact, for every monitoring-only attribute of the spec (read from the recorded
  ``monitoring`` object under its ``monitoring_field``; groups in the order of its ``values``) and
  every fairness band (groups of a recorded applicant field): each group's approval rate divided
  by the reference group's, the most-favoured group among those with at least ``min_sample``
  decisions (among all groups when none has that many; ties broken by group name); a ratio below
  ``four_fifths`` is flagged (four-fifths rule). A decision whose value is absent, ``not_provided``
  or not one of the declared values is counted as missing and left out of the ratios.
- Small samples: numbers computed from fewer than ``min_sample`` decisions (the period's decisions
  for a stability index, a group's decisions for a ratio) are shown but never flagged.
- Reason drift (:func:`reason_shifts`): a code's share of declines and referrals (those citing it, once
  each, over all declines and referrals) in the period against the training baseline's (the hold-out
  set as the service would decide it) and the previous period's; a two-sided pooled two-proportion
  z-test, flagged below the policy's ``reason_shift_p_value`` divided by the number of codes tested
  (Bonferroni); tested only with ``min_sample`` declines and referrals and ``REASON_MIN_EXPECTED``
  expected citations and non-citations on each side.
- Percentiles use linear interpolation between order statistics (numpy's default).
- AUC is the Mann-Whitney statistic with average ranks for ties; KS is the largest gap between
  the empirical distribution functions of the probability of default of bads and goods.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

import numpy as np

from model_store.policy import Monitoring, Policy
from model_store.spec import MISSING_CODE, FairnessBands, FeatureSpec, MonitoringAttribute
from model_store.vocabulary import ACTIONS
from service.records.report_rows import epoch_us
from service.reports.columns import (
    BAD,
    NO_OUTCOME,
    Coded,
    DecisionColumns,
    columns_of,
    encode,
)

STABILITY_EPSILON = 1e-4
LATENCY_BUDGET_MS = 100.0
DAILY_MAX_DAYS = 62
SCORE_BIN_WIDTH = 20
DECISIONS = ACTIONS
OTHER_CODE = "(other)"
#: The monitoring value meaning "the applicant did not say": counted as missing, never as a group.
NOT_PROVIDED = "not_provided"
#: The policy's default thresholds, for reports of no known model version.
DEFAULT_THRESHOLDS = Monitoring()

Outcome = Literal["good", "bad"]


class ReportError(ValueError):
    """The report cannot be computed from these inputs (e.g. an empty or inverted period)."""


# ---- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReasonRef:
    """A reason code cited by a decision."""

    code: str
    kind: Literal["rule", "model"]
    adverse: bool


@dataclass(frozen=True)
class DecisionRow:
    """What the report needs of one decision."""

    decision_id: str
    created_at: datetime
    decision: str
    risk_band: str
    score: int
    probability_of_default: float
    reasons: tuple[ReasonRef, ...]
    rules_fired: tuple[str, ...]
    model_name: str
    model_version: str
    latency_ms: float | None
    applicant: Mapping[str, Any]
    monitoring: Mapping[str, Any] = field(default_factory=dict)
    outcome: Outcome | None = None


@dataclass(frozen=True)
class Period:
    """A half-open time range ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            moment = getattr(self, name)
            if moment.tzinfo is None:
                raise ReportError(f"period {name} must be timezone-aware")
            try:
                object.__setattr__(self, name, moment.astimezone(UTC))
            except OverflowError:
                raise ReportError(f"period {name} lies outside the supported date range") from None
        if self.end <= self.start:
            raise ReportError("period end must be after its start")

    @classmethod
    def of_days(cls, first: date, end: date) -> Period:
        """The days ``[first, end)``, midnight to midnight UTC."""
        return cls(
            datetime(first.year, first.month, first.day, tzinfo=UTC), datetime(end.year, end.month, end.day, tzinfo=UTC)
        )

    @property
    def previous(self) -> Period:
        """The period of the same length that ends where this one starts."""
        try:
            return Period(self.start - (self.end - self.start), self.start)
        except OverflowError:
            raise ReportError("the period before this one would start before year 1") from None

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` lies in ``[start, end)``."""
        return self.start <= moment < self.end


@dataclass(frozen=True)
class ReportSettings:
    """What the report monitors and when it flags: the policy's thresholds, the spec's attributes and bands."""

    thresholds: Monitoring = DEFAULT_THRESHOLDS
    attributes: tuple[MonitoringAttribute, ...] = ()
    bands: tuple[FairnessBands, ...] = ()

    @classmethod
    def of(cls, spec: FeatureSpec, policy: Policy) -> ReportSettings:
        """The settings a model version's spec and policy declare."""
        return cls(policy.monitoring, spec.monitoring_only, spec.fairness_bands)


#: Default thresholds and no disparate-impact attributes: the settings of a report with no model version.
DEFAULT_SETTINGS = ReportSettings()


@dataclass(frozen=True)
class NumericBaseline:
    """Training distribution of a numeric quantity on right-closed bins between ``edges``.

    ``shares`` and ``missing`` are shares of all training rows (together they sum to 1).
    """

    edges: tuple[float, ...]
    shares: tuple[float, ...]  # len(edges) + 1
    missing: float = 0.0

    def __post_init__(self) -> None:
        if len(self.shares) != len(self.edges) + 1:
            raise ReportError("a numeric baseline needs one share more than edges")
        if any(b <= a for a, b in pairwise(self.edges)):
            raise ReportError("numeric baseline edges must increase strictly")


@dataclass(frozen=True)
class CategoricalBaseline:
    """Training shares of each code of a categorical field, and of missing values."""

    shares: tuple[tuple[str, float], ...]
    missing: float = 0.0


@dataclass(frozen=True)
class ReasonBaseline:
    """How often the hold-out set's declines and referrals cite each reason code (:func:`cited_counts`)."""

    adverse_decisions: int
    counts: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, raw: Any, where: str = "baseline.reasons") -> ReasonBaseline | None:
        """Read ``{"adverse_decisions": n, "counts": {code: count}}`` (``training.metrics.reason_baseline``);
        None when absent (a baseline written before reasons were recorded); ReportError when malformed."""
        if raw is None:
            return None
        n = raw.get("adverse_decisions") if isinstance(raw, Mapping) else None
        counts = raw.get("counts") if isinstance(raw, Mapping) else None
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or not isinstance(counts, Mapping):
            raise ReportError(f"{where}: expected adverse_decisions (a count) and counts (code -> count)")
        for code, count in counts.items():
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= n:
                raise ReportError(f"{where}.counts.{code}: {count!r} is not a count between 0 and {n}")
        return cls(n, tuple(sorted((str(c), int(k)) for c, k in counts.items())))


@dataclass(frozen=True)
class Baseline:
    """A model version's training baseline: input fields, the hold-out score and the hold-out's reasons."""

    model_name: str
    model_version: str
    fields: tuple[tuple[str, NumericBaseline | CategoricalBaseline], ...]
    score: NumericBaseline | None
    band_shares: tuple[tuple[str, float], ...] = ()
    reasons: ReasonBaseline | None = None


# ---- outputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Key figures of the period."""

    decisions: int
    approved: int
    referred: int
    declined: int
    approval_rate: float | None
    previous_decisions: int
    mean_score: float | None
    mean_probability_of_default: float | None


@dataclass(frozen=True)
class VolumeBucket:
    """Decisions in one day or week starting at ``start``."""

    start: date
    decisions: int
    approve: int
    refer: int
    decline: int


@dataclass(frozen=True)
class ScoreDistribution:
    """Score summary and a histogram on ``SCORE_BIN_WIDTH``-point bins ``[edge, next edge)``."""

    n: int
    mean: float | None
    p10: float | None
    p50: float | None
    p90: float | None
    minimum: int | None
    maximum: int | None
    bin_edges: tuple[int, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class BandStat:
    """Decisions and approvals in one risk band."""

    band: str
    decisions: int
    share: float
    approved: int
    approval_rate: float | None
    baseline_share: float | None


@dataclass(frozen=True)
class ReasonFrequency:
    """Share of declines and referrals citing a reason code, now and in the previous period."""

    code: str
    kind: str
    count: int
    share: float | None
    previous_count: int
    previous_share: float | None
    change_pp: float | None  # percentage points


@dataclass(frozen=True)
class ReasonShift:
    """A reason code's share of declines and referrals in the period against a reference (the training baseline
    or the previous period): a two-sided two-proportion z-test (:func:`reason_shifts`).

    ``tested`` when both sides have enough data; ``p_threshold`` is the policy's ``reason_shift_p_value``
    divided by the number of codes tested against this reference (Bonferroni); ``flag`` is ``shift`` when
    ``p_value`` is below it.
    """

    code: str
    kind: str
    reference: Literal["baseline", "previous_period"]
    count: int
    n: int
    share: float | None
    reference_count: int
    reference_n: int
    reference_share: float | None
    change_pp: float | None
    z: float | None
    p_value: float | None
    tested: bool
    p_threshold: float | None
    flag: str  # "" or "shift"


@dataclass(frozen=True)
class StabilityBin:
    """One bin of a stability index."""

    label: str
    expected: float
    actual: float
    count: int
    contribution: float


@dataclass(frozen=True)
class StabilityIndex:
    """PSI (score) or CSI (input field) against the training baseline.

    ``n`` counts every decision (missing values included, in their own bin); ``small_sample`` when
    ``n`` is below the policy's ``min_sample``, and then ``flag`` is empty whatever the value.
    """

    name: str
    kind: Literal["numeric", "categorical"]
    value: float | None
    flag: str  # "", "watch" or "action"
    n: int
    missing: int
    bins: tuple[StabilityBin, ...]
    small_sample: bool = False


@dataclass(frozen=True)
class RuleHitRate:
    """How often a policy rule fired among the period's decisions."""

    code: str
    hits: int
    rate: float | None


@dataclass(frozen=True)
class GroupRate:
    """Approval rate of one group and its ratio to the reference (most-favoured) group.

    ``below_four_fifths`` is the arithmetic (ratio below the threshold); ``small_group`` when the group
    has fewer than ``min_sample`` decisions. The group is flagged (:attr:`four_fifths`) only when its
    ratio is below the threshold and it is not small.
    """

    group: str
    decisions: int
    approved: int
    approval_rate: float | None
    ratio: float | None
    below_four_fifths: bool
    small_group: bool

    @property
    def four_fifths(self) -> bool:
        """Flagged under the four-fifths rule: a ratio below the threshold on enough decisions."""
        return self.below_four_fifths and not self.small_group

    @property
    def flag(self) -> str:
        """``four_fifths`` when flagged, else empty."""
        return "four_fifths" if self.four_fifths else ""


@dataclass(frozen=True)
class DisparateImpact:
    """Approval-rate ratios across the groups of one monitoring attribute or fairness band.

    ``kind`` is ``monitoring`` (a monitoring-only attribute, ``source`` ``monitoring.<field>``) or
    ``band`` (groups of a model input, ``source`` ``applicant.<field>``); ``basis`` says why it is
    monitored (the spec's prohibited basis, or the band edges).
    """

    attribute: str
    kind: Literal["monitoring", "band"]
    source: str
    basis: str
    reference_group: str | None
    missing: int
    groups: tuple[GroupRate, ...]


@dataclass(frozen=True)
class ModelVersionShare:
    """Decisions made by one model version."""

    model_name: str
    model_version: str
    decisions: int
    share: float


@dataclass(frozen=True)
class LatencySummary:
    """Server-side latency percentiles against the budget."""

    n: int
    budget_ms: float
    p50: float | None
    p90: float | None
    p99: float | None
    maximum: float | None
    over_budget: int
    over_budget_share: float | None


@dataclass(frozen=True)
class BandOutcome:
    """Observed bad rate of one band among decisions with a posted outcome."""

    band: str
    n: int
    bad: int
    bad_rate: float | None


@dataclass(frozen=True)
class Backtest:
    """Back-testing on decisions whose outcome (good/bad) has been posted."""

    n: int
    bad: int
    bad_rate: float | None
    auc: float | None
    ks: float | None
    by_band: tuple[BandOutcome, ...]


@dataclass(frozen=True)
class Flag:
    """Something the reader should look at."""

    section: str
    metric: str
    group: str
    level: str  # "watch", "action", "four_fifths", "over_budget"
    value: float | None


@dataclass(frozen=True)
class ReviewRow:
    """One human review recorded in the period (from its audit event)."""

    reviewer: str  # the reviewer key's label (or key id)
    risk_band: str  # the automated decision's band
    top_reason: str  # the automated decision's first reason code ("" when none)
    automated: str  # the automated decision
    final: str  # the reviewer's final decision
    justification: str  # the justification code

    @property
    def override(self) -> bool:
        return self.final != self.automated


@dataclass(frozen=True)
class OverrideRate:
    """Reviews and overrides of one group (a reviewer, a band, a top reason, a justification)."""

    group: str
    reviews: int
    overrides: int
    approved: int
    declined: int

    @property
    def override_rate(self) -> float | None:
        return self.overrides / self.reviews if self.reviews else None


@dataclass(frozen=True)
class ReviewSummary:
    """Human review in the period: how many decisions were reviewed and overridden, by reviewer, band and reason.

    An override is a final decision other than the automated one (a referral's final decision always differs
    from "refer", so every review of a referral counts as one; an approve or decline confirmed does not)."""

    reviews: int
    overrides: int
    override_rate: float | None
    by_reviewer: tuple[OverrideRate, ...]
    by_band: tuple[OverrideRate, ...]
    by_reason: tuple[OverrideRate, ...]
    by_justification: tuple[OverrideRate, ...]


def review_summary(rows: Sequence[ReviewRow]) -> ReviewSummary:
    """Override counts and rates overall and by reviewer, band, top reason and justification (groups sorted)."""

    def grouped(key: Callable[[ReviewRow], str]) -> tuple[OverrideRate, ...]:
        groups: dict[str, list[ReviewRow]] = {}
        for row in rows:
            groups.setdefault(key(row), []).append(row)
        return tuple(
            OverrideRate(
                group,
                len(members),
                sum(1 for m in members if m.override),
                sum(1 for m in members if m.final == "approve"),
                sum(1 for m in members if m.final == "decline"),
            )
            for group, members in sorted(groups.items())
        )

    overrides = sum(1 for r in rows if r.override)
    return ReviewSummary(
        reviews=len(rows),
        overrides=overrides,
        override_rate=overrides / len(rows) if rows else None,
        by_reviewer=grouped(lambda r: r.reviewer),
        by_band=grouped(lambda r: r.risk_band),
        by_reason=grouped(lambda r: r.top_reason or "(none)"),
        by_justification=grouped(lambda r: r.justification),
    )


@dataclass(frozen=True)
class PeriodReport:
    """Every number of the period report."""

    period: Period
    model_name: str | None
    bucket: Literal["day", "week"]
    baseline_model: str | None
    thresholds: Monitoring
    summary: Summary
    volumes: tuple[VolumeBucket, ...]
    score_distribution: ScoreDistribution
    bands: tuple[BandStat, ...]
    reason_frequencies: tuple[ReasonFrequency, ...]
    score_psi: StabilityIndex | None
    band_psi: StabilityIndex | None
    field_csi: tuple[StabilityIndex, ...]
    rule_hits: tuple[RuleHitRate, ...]
    disparate_impact: tuple[DisparateImpact, ...]
    model_versions: tuple[ModelVersionShare, ...]
    latency: LatencySummary
    backtest: Backtest | None
    flags: tuple[Flag, ...]
    notes: tuple[str, ...]
    reason_shifts: tuple[ReasonShift, ...] = ()
    reviews: ReviewSummary | None = None  # human review of the period (None when no reviews were read)


@dataclass(frozen=True)
class MetricRow:
    """One number of the report, flat: what the CSV export writes."""

    section: str
    metric: str
    group: str
    value: float | int | None
    flag: str


# ---- the report ---------------------------------------------------------------------------------


#: The decisions a statistic reads: report rows, or the same decisions as columns (what the period report passes).
Decisions = Iterable[DecisionRow] | DecisionColumns


def build_report(
    rows: Decisions,
    period: Period,
    previous_rows: Decisions = (),
    baseline: Baseline | None = None,
    model_name: str | None = None,
    rule_codes: Sequence[str] = (),
    notes: Sequence[str] = (),
    settings: ReportSettings = DEFAULT_SETTINGS,
    reviews: Sequence[ReviewRow] | None = None,
) -> PeriodReport:
    """The period report of the rows in ``period`` (and of ``model_name``, if given).

    ``rows`` and ``previous_rows`` may be the same decisions (each period takes its own), as rows or as columns
    (:class:`DecisionColumns`): every statistic is computed on columns, in (created_at, decision_id) order.

    ``reviews``: the human reviews recorded in the period (their section is left out when None).

    ``settings`` carry the thresholds, monitoring attributes and fairness bands of the model version
    the period used (the defaults: default thresholds, no disparate-impact attributes).
    """
    current = columns_of(rows).select(period, model_name)
    previous = columns_of(previous_rows).select(period.previous, model_name)
    thresholds = settings.thresholds
    all_notes = list(notes)
    if baseline is None:
        all_notes.append("No training baseline available: PSI and CSI were not computed.")
    elif model_name is not None and baseline.model_name != model_name:
        all_notes.append(f"Baseline is from model {baseline.model_name}, not {model_name}.")
    score_psi = band_psi = None
    field_csi: tuple[StabilityIndex, ...] = ()
    if baseline is not None and len(current):
        if baseline.score is not None:
            score_psi = numeric_stability("score", baseline.score, current.score.astype(np.float64), thresholds)
        if baseline.band_shares:
            band_psi = _categorical_stability(
                "risk_band", CategoricalBaseline(baseline.band_shares), _label_counts(current.risk_band), thresholds
            )
        field_csi = tuple(_field_stability(name, base, current, thresholds) for name, base in baseline.fields)
        if len(current) < thresholds.min_sample:
            all_notes.append(
                f"Only {len(current)} decisions in the period (fewer than {thresholds.min_sample}): "
                "stability indices are shown but not flagged."
            )
    impact = disparate_impact(current, settings)
    if not impact:
        all_notes.append(
            "No monitoring attributes or fairness bands are declared for this model version: "
            "disparate impact was not computed."
        )
    for di in impact:
        if len(current) and not di.groups:
            all_notes.append(
                f"No {di.attribute} data for any decision in the period ({di.source}): its ratios are not computed."
            )
    small = sum(1 for di in impact for g in di.groups if g.small_group)
    if small:
        all_notes.append(
            f"{small} disparate-impact group(s) have fewer than {thresholds.min_sample} decisions: "
            "their ratios are shown but not flagged."
        )
    bucket: Literal["day", "week"] = "day" if period.end - period.start <= timedelta(days=DAILY_MAX_DAYS) else "week"
    report = PeriodReport(
        period=period,
        model_name=model_name,
        bucket=bucket,
        baseline_model=None if baseline is None else f"{baseline.model_name} {baseline.model_version}",
        thresholds=thresholds,
        summary=summarize(current, len(previous)),
        volumes=volumes(current, period, bucket),
        score_distribution=score_distribution(current.score),
        bands=band_stats(current, dict(baseline.band_shares) if baseline else {}),
        reason_frequencies=reason_frequencies(current, previous),
        score_psi=score_psi,
        band_psi=band_psi,
        field_csi=field_csi,
        rule_hits=rule_hit_rates(current, rule_codes),
        disparate_impact=impact,
        model_versions=model_version_shares(current),
        latency=latency_summary(current.latency_ms[~np.isnan(current.latency_ms)]),
        backtest=backtest(current),
        flags=(),
        notes=tuple(all_notes + reason_shift_notes(current, previous, baseline, thresholds)),
        reason_shifts=reason_shifts(current, previous, baseline, thresholds),
        reviews=None if reviews is None else review_summary(reviews),
    )
    return _with_flags(report)


def _label_counts(column: Coded, mask: np.ndarray | None = None) -> dict[Any, int]:
    """Decisions per label of a coded column (labels no decision has left out), in label order; for labels that
    are never equal across types (text, tuples), not for input fields."""
    return {label: int(n) for label, n in zip(column.labels, column.counts(mask), strict=True) if n}


def summarize(rows: Decisions, previous_decisions: int = 0) -> Summary:
    """Counts and means of the period."""
    columns = columns_of(rows)
    counts = _label_counts(columns.decision)
    n = len(columns)
    approved = counts.get("approve", 0)
    return Summary(
        decisions=n,
        approved=approved,
        referred=counts.get("refer", 0),
        declined=counts.get("decline", 0),
        approval_rate=_ratio(approved, n),
        previous_decisions=previous_decisions,
        mean_score=float(np.mean(columns.score)) if n else None,
        mean_probability_of_default=float(np.mean(columns.probability_of_default)) if n else None,
    )


def volumes(rows: Decisions, period: Period, bucket: Literal["day", "week"]) -> tuple[VolumeBucket, ...]:
    """Decisions per day (or per 7-day bucket from the period start), empty buckets included."""
    columns = columns_of(rows)
    step = timedelta(days=1 if bucket == "day" else 7)
    n_buckets = math.ceil((period.end - period.start) / step)
    which = (columns.created_us - epoch_us(period.start)) // (step // timedelta(microseconds=1))
    totals = np.bincount(which, minlength=n_buckets)
    per_decision = [np.bincount(which[columns.decision.is_(d)], minlength=n_buckets) for d in DECISIONS]
    return tuple(
        VolumeBucket(
            start=(period.start + k * step).date(),
            decisions=int(totals[k]),
            approve=int(per_decision[0][k]),
            refer=int(per_decision[1][k]),
            decline=int(per_decision[2][k]),
        )
        for k in range(n_buckets)
    )


def score_distribution(scores: Sequence[int] | np.ndarray) -> ScoreDistribution:
    """Score percentiles and a fixed-width histogram."""
    if len(scores) == 0:
        return ScoreDistribution(0, None, None, None, None, None, None, (), ())
    values = np.asarray(scores, dtype=np.int64)
    low = int(values.min()) // SCORE_BIN_WIDTH * SCORE_BIN_WIDTH
    high = (int(values.max()) // SCORE_BIN_WIDTH + 1) * SCORE_BIN_WIDTH
    edges = np.arange(low, high + 1, SCORE_BIN_WIDTH)
    counts = np.bincount((values - low) // SCORE_BIN_WIDTH, minlength=len(edges) - 1)
    p10, p50, p90 = (float(p) for p in np.percentile(values, [10, 50, 90]))
    return ScoreDistribution(
        n=len(values),
        mean=float(values.mean()),
        p10=p10,
        p50=p50,
        p90=p90,
        minimum=int(values.min()),
        maximum=int(values.max()),
        bin_edges=tuple(int(e) for e in edges),
        counts=tuple(int(c) for c in counts),
    )


def band_stats(rows: Decisions, baseline_shares: Mapping[str, float] | None = None) -> tuple[BandStat, ...]:
    """Decisions, share and approval rate per risk band (bands in name order, baseline bands included)."""
    columns = columns_of(rows)
    baseline_shares = baseline_shares or {}
    n = len(columns)
    per_band = Counter(_label_counts(columns.risk_band))
    approved = Counter(_label_counts(columns.risk_band, columns.approved()))
    return tuple(
        BandStat(
            band=band,
            decisions=per_band[band],
            share=per_band[band] / n if n else 0.0,
            approved=approved[band],
            approval_rate=_ratio(approved[band], per_band[band]),
            baseline_share=baseline_shares.get(band),
        )
        for band in sorted(set(per_band) | set(baseline_shares))
    )


def reason_frequencies(rows: Decisions, previous: Decisions = ()) -> tuple[ReasonFrequency, ...]:
    """Share of declines and referrals citing each code (once per decision), and its change in points."""
    now, n_now, kinds = _reason_counts(columns_of(rows))
    before, n_before, kinds_before = _reason_counts(columns_of(previous))
    out = []
    for code in set(now) | set(before):
        share = _ratio(now[code], n_now)
        previous_share = _ratio(before[code], n_before)
        change = None if share is None or previous_share is None else 100.0 * (share - previous_share)
        kind = kinds.get(code) or kinds_before.get(code, "")
        out.append(ReasonFrequency(code, kind, now[code], share, before[code], previous_share, change))
    out.sort(key=lambda f: (-f.count, -f.previous_count, f.code))
    return tuple(out)


def cited_counts(decisions: Iterable[tuple[str, Iterable[str]]]) -> tuple[Counter[str], int]:
    """Per code, the declines and referrals citing it (each counted once); and the number of declines and referrals.

    ``decisions`` are (decision, cited codes) pairs; approvals are left out. The period report's reason
    frequencies and the comparison report's reason-frequency shift share this definition.
    """
    return weighted_cited_counts((decision, codes, 1) for decision, codes in decisions)


def weighted_cited_counts(decisions: Iterable[tuple[str, Iterable[str], int]]) -> tuple[Counter[str], int]:
    """:func:`cited_counts` of (decision, cited codes, how many decisions) triples: equal decisions counted at once."""
    counts: Counter[str] = Counter()
    n = 0
    for decision, codes, weight in decisions:
        if decision in ("decline", "refer") and weight:
            n += weight
            for code in set(codes):
                counts[code] += weight
    return counts, n


def _adverse(columns: DecisionColumns) -> np.ndarray:
    adverse: np.ndarray = columns.decision.is_("decline") | columns.decision.is_("refer")
    return adverse


def _reason_counts(columns: DecisionColumns) -> tuple[Counter[str], int, dict[str, str]]:
    sets = columns.reasons
    adverse = _adverse(columns)
    per_set = sets.counts(adverse)
    # per_set counts declines and referrals only, so each set of reasons counts as that many declines
    counts, n = weighted_cited_counts(
        ("decline", [ref.code for ref in refs], int(k)) for refs, k in zip(sets.labels, per_set, strict=True)
    )
    kinds: dict[str, str] = {}
    for code in sets.first_seen(adverse):  # the kind a code was first cited with, in decision order
        for ref in sets.labels[code]:
            kinds.setdefault(ref.code, ref.kind)
    return counts, n, kinds


# ---- reason-frequency drift -----------------------------------------------------------------------
#: The normal approximation of the z-test needs this many expected citations and non-citations on each side.
REASON_MIN_EXPECTED = 5.0


def two_proportion_z(x1: int, n1: int, x0: int, n0: int) -> tuple[float, float]:
    """(z, two-sided p-value) of the pooled two-proportion z-test of x1/n1 against x0/n0 (both n > 0).

    ``z = (x1/n1 - x0/n0) / sqrt(p (1 - p) (1/n1 + 1/n0))`` with the pooled ``p = (x1 + x0) / (n1 + n0)``;
    ``p-value = erfc(|z| / sqrt 2)``. Equal shares of 0 or 1 on both sides: z = 0, p = 1.
    """
    pooled = (x1 + x0) / (n1 + n0)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n0))
    if se == 0.0:
        return 0.0, 1.0
    z = (x1 / n1 - x0 / n0) / se
    return z, math.erfc(abs(z) / math.sqrt(2.0))


def reason_shifts(
    rows: Decisions,
    previous: Decisions = (),
    baseline: Baseline | None = None,
    thresholds: Monitoring = DEFAULT_THRESHOLDS,
) -> tuple[ReasonShift, ...]:
    """Each reason code's share of the period's declines and referrals against the training baseline's (the
    hold-out set's, when the baseline has it) and the previous period's.

    Share: the declines and referrals citing the code (once each) over all declines and referrals
    (:func:`cited_counts`), the same on every side. A code is tested when both sides have at least
    ``min_sample`` declines and referrals and, at the pooled share, at least ``REASON_MIN_EXPECTED`` expected
    citations and non-citations on each side; it is flagged ``shift`` when its two-sided p-value is below
    ``reason_shift_p_value / m``, m the number of codes tested against that reference (Bonferroni: at most
    that chance of any false flag per reference and report). Codes cited on neither side are left out.
    """
    now, n_now, kinds = _reason_counts(columns_of(rows))
    references: list[tuple[Literal["baseline", "previous_period"], Mapping[str, int], int]] = []
    if baseline is not None and baseline.reasons is not None:
        references.append(("baseline", dict(baseline.reasons.counts), baseline.reasons.adverse_decisions))
    before, n_before, kinds_before = _reason_counts(columns_of(previous))
    references.append(("previous_period", before, n_before))
    out: list[ReasonShift] = []
    for reference, counts, n_ref in references:
        codes = sorted(
            set(now) | {c for c, k in counts.items() if k > 0}, key=lambda c: (-now[c], -counts.get(c, 0), c)
        )
        tested = [c for c in codes if _testable(now[c], n_now, counts.get(c, 0), n_ref, thresholds.min_sample)]
        p_threshold = thresholds.reason_shift_p_value / len(tested) if tested else None
        for code in codes:
            x1, x0 = now[code], counts.get(code, 0)
            share, ref_share = _ratio(x1, n_now), _ratio(x0, n_ref)
            z = p_value = None
            if n_now and n_ref:
                z, p_value = two_proportion_z(x1, n_now, x0, n_ref)
            is_tested = code in tested
            flagged = is_tested and p_value is not None and p_threshold is not None and p_value < p_threshold
            out.append(
                ReasonShift(
                    code=code,
                    kind=kinds.get(code) or kinds_before.get(code, ""),
                    reference=reference,
                    count=x1,
                    n=n_now,
                    share=share,
                    reference_count=x0,
                    reference_n=n_ref,
                    reference_share=ref_share,
                    change_pp=None if share is None or ref_share is None else 100.0 * (share - ref_share),
                    z=z,
                    p_value=p_value,
                    tested=is_tested,
                    p_threshold=p_threshold if is_tested else None,
                    flag="shift" if flagged else "",
                )
            )
    return tuple(out)


def _testable(x1: int, n1: int, x0: int, n0: int, min_sample: int) -> bool:
    if n1 < min_sample or n0 < min_sample:
        return False
    pooled = (x1 + x0) / (n1 + n0)
    return min(n1, n0) * min(pooled, 1.0 - pooled) >= REASON_MIN_EXPECTED


def reason_shift_notes(
    rows: Decisions,
    previous: Decisions,
    baseline: Baseline | None,
    thresholds: Monitoring = DEFAULT_THRESHOLDS,
) -> list[str]:
    """What the reader should know about the reason-drift comparison (no baseline reasons, small samples)."""
    notes = []
    if baseline is not None and baseline.reasons is None:
        notes.append(
            "The training baseline has no reason-code frequencies (a model trained before they were recorded): "
            "reason drift is compared with the previous period only."
        )
    _counts, n_now, _kinds = _reason_counts(columns_of(rows))
    _before, n_before, _ = _reason_counts(columns_of(previous))
    if min(n_now, n_before) < thresholds.min_sample:
        notes.append(
            f"Reason drift is tested only with at least {thresholds.min_sample} declines and referrals on each side "
            f"(this period {n_now}, the previous {n_before}): smaller comparisons are shown but not flagged."
        )
    return notes


def stability_flag(value: float | None, thresholds: Monitoring = DEFAULT_THRESHOLDS) -> str:
    """``action`` at or above ``stability_action``, ``watch`` at or above ``stability_watch``, else empty."""
    if value is None:
        return ""
    if value >= thresholds.stability_action:
        return "action"
    if value >= thresholds.stability_watch:
        return "watch"
    return ""


def _stability(
    name: str,
    kind: Literal["numeric", "categorical"],
    labels: Sequence[str],
    expected: Sequence[float],
    counts: Sequence[int],
    missing: int,
    thresholds: Monitoring,
) -> StabilityIndex:
    n = int(sum(counts))
    bins = []
    total = 0.0
    for label, e, c in zip(labels, expected, counts, strict=True):
        a = c / n if n else 0.0
        e_adj, a_adj = max(e, STABILITY_EPSILON), max(a, STABILITY_EPSILON)
        contribution = (a_adj - e_adj) * math.log(a_adj / e_adj)
        total += contribution
        bins.append(StabilityBin(label, float(e), a, int(c), contribution))
    value = total if n else None
    small = n < thresholds.min_sample
    flag = "" if small else stability_flag(value, thresholds)
    return StabilityIndex(name, kind, value, flag, n, missing, tuple(bins), small)


def _with_missing_bin(
    labels: list[str], expected: list[float], counts: list[int], baseline_missing: float, missing: int
) -> None:
    """Append the ``(missing)`` bin when the baseline or the period has missing values."""
    if baseline_missing > 0 or missing > 0:
        labels.append(MISSING_CODE)
        expected.append(baseline_missing)
        counts.append(missing)


def numeric_stability(
    name: str,
    baseline: NumericBaseline,
    values: Sequence[float | None] | np.ndarray,
    thresholds: Monitoring = DEFAULT_THRESHOLDS,
) -> StabilityIndex:
    """PSI/CSI of numeric values on the baseline's right-closed bins; None/NaN in a ``(missing)`` bin."""
    numbers = np.asarray(values, dtype=np.float64)  # None -> NaN
    present = numbers[~np.isnan(numbers)]
    edges = np.asarray(baseline.edges, dtype=np.float64)
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    labels, expected, bin_counts = _bin_labels(baseline.edges), list(baseline.shares), [int(c) for c in counts]
    missing = len(numbers) - len(present)
    _with_missing_bin(labels, expected, bin_counts, baseline.missing, missing)
    return _stability(name, "numeric", labels, expected, bin_counts, missing, thresholds)


def _category(value: Any) -> str | None:
    """A categorical value as its code (``true``/``false`` for booleans); None stays None (missing)."""
    if value is None:
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def categorical_stability(
    name: str,
    baseline: CategoricalBaseline,
    values: Sequence[Any] | np.ndarray,
    thresholds: Monitoring = DEFAULT_THRESHOLDS,
) -> StabilityIndex:
    """PSI/CSI of codes against the baseline's shares; unseen codes in ``(other)``, None in ``(missing)``."""
    return _categorical_stability(name, baseline, _categories(encode(values)), thresholds)


def _categories(column: Coded) -> dict[str | None, int]:
    """Decisions per categorical code (None: missing) of a coded column, each distinct value read once."""
    counted: dict[str | None, int] = {}
    for value, n in zip(column.labels, column.counts().tolist(), strict=True):  # labels 1, 1.0, True: apart
        code = _category(value)
        counted[code] = counted.get(code, 0) + n
    return counted


def _categorical_stability(
    name: str, baseline: CategoricalBaseline, counted: Mapping[str | None, int], thresholds: Monitoring
) -> StabilityIndex:
    """:func:`categorical_stability` of the values' counts by code (None: missing)."""
    known = [code for code, _ in baseline.shares]
    counts: Counter[str] = Counter()
    for code, count in counted.items():
        if code is not None:
            counts[code if code in known else OTHER_CODE] += count
    labels = list(known)
    expected = [share for _, share in baseline.shares]
    if counts[OTHER_CODE]:
        labels.append(OTHER_CODE)
        expected.append(0.0)
    bin_counts = [counts[label] for label in labels]
    missing = counted.get(None, 0)
    _with_missing_bin(labels, expected, bin_counts, baseline.missing, missing)
    return _stability(name, "categorical", labels, expected, bin_counts, missing, thresholds)


def _numbers(column: Coded) -> np.ndarray:
    """The numeric values of a coded column as floats, anything else (booleans, text, None) as NaN."""
    numbers = np.asarray(
        [float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None for v in column.labels],
        dtype=np.float64,
    )
    found: np.ndarray = numbers[column.codes] if len(numbers) else np.empty(0, dtype=np.float64)
    return found


def _field_stability(
    name: str, base: NumericBaseline | CategoricalBaseline, columns: DecisionColumns, thresholds: Monitoring
) -> StabilityIndex:
    values = columns.field(name)
    if isinstance(base, NumericBaseline):
        return numeric_stability(name, base, _numbers(values), thresholds)
    return _categorical_stability(name, base, _categories(values), thresholds)


def _bin_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["all"]
    text = [f"{e:g}" for e in edges]
    return [f"<= {text[0]}", *(f"({a}, {b}]" for a, b in pairwise(text)), f"> {text[-1]}"]


def rule_hit_rates(rows: Decisions, rule_codes: Sequence[str] = ()) -> tuple[RuleHitRate, ...]:
    """Share of decisions on which each policy rule fired (rules in ``rule_codes`` listed even at zero)."""
    columns = columns_of(rows)
    hits: Counter[str] = Counter()
    for fired, n in _label_counts(columns.rules).items():
        for code in set(fired):
            hits[code] += n
    return tuple(
        RuleHitRate(code, hits[code], _ratio(hits[code], len(columns))) for code in sorted(set(hits) | set(rule_codes))
    )


# ---- disparate impact ---------------------------------------------------------------------------


def monitoring_group(attribute: MonitoringAttribute, monitoring: Mapping[str, Any]) -> str | None:
    """The applicant's group of a monitoring attribute; None when absent, ``not_provided`` or undeclared."""
    return _monitoring_value_group(attribute, monitoring.get(attribute.monitoring_field))


def _monitoring_value_group(attribute: MonitoringAttribute, value: Any) -> str | None:
    if not isinstance(value, str) or value == NOT_PROVIDED or value not in attribute.values:
        return None
    return value


def group_rates(
    groups: Sequence[tuple[str | None, bool]], order: Sequence[str] = (), thresholds: Monitoring = DEFAULT_THRESHOLDS
) -> tuple[str | None, int, tuple[GroupRate, ...]]:
    """(reference group, missing count, per-group rates) of (group, approved) pairs.

    The reference is the most-favoured group among those with at least ``min_sample`` decisions (among
    all groups when none has that many), ties broken by group name; groups follow ``order``, then name.
    """
    return _group_rates(Counter(g for g, _ in groups), Counter(g for g, ok in groups if ok), order, thresholds)


def _group_rates(
    n: Mapping[str | None, int], approved: Mapping[str | None, int], order: Sequence[str], thresholds: Monitoring
) -> tuple[str | None, int, tuple[GroupRate, ...]]:
    """:func:`group_rates` of the decisions and approvals per group (None: missing)."""
    present = {g: k for g, k in n.items() if g is not None and k}
    rates = {g: approved.get(g, 0) / k for g, k in present.items()}
    candidates = [g for g in rates if present[g] >= thresholds.min_sample] or list(rates)
    reference = min(candidates, key=lambda g: (-rates[g], g)) if candidates else None
    best = rates[reference] if reference is not None else 0.0
    names = [g for g in order if g in present] + sorted(g for g in present if g not in order)
    out = []
    for g in names:
        ratio = rates[g] / best if best > 0 else None
        out.append(
            GroupRate(
                group=g,
                decisions=present[g],
                approved=approved.get(g, 0),
                approval_rate=rates[g],
                ratio=ratio,
                below_four_fifths=ratio is not None and ratio < thresholds.four_fifths,
                small_group=present[g] < thresholds.min_sample,
            )
        )
    return reference, n.get(None, 0), tuple(out)


def disparate_impact(rows: Decisions, settings: ReportSettings = DEFAULT_SETTINGS) -> tuple[DisparateImpact, ...]:
    """Approval-rate ratios for every monitoring attribute (monitoring data) and every fairness band (applicant)."""
    columns = columns_of(rows)
    approved = columns.approved()

    def rates(
        values: Coded, group_of: Callable[[Any], str | None], order: Sequence[str]
    ) -> tuple[str | None, int, tuple[GroupRate, ...]]:
        groups = [group_of(value) for value in values.labels]
        everyone: Counter[str | None] = Counter()
        chosen: Counter[str | None] = Counter()
        for group, n, ok in zip(groups, values.counts(), values.counts(approved), strict=True):
            everyone[group] += int(n)
            chosen[group] += int(ok)
        return _group_rates(everyone, chosen, order, settings.thresholds)

    out = []
    for attribute in settings.attributes:
        field = attribute.monitoring_field
        reference, missing, groups = rates(
            columns.monitoring_field(field),
            lambda v, a=attribute: _monitoring_value_group(a, v),  # type: ignore[misc]
            [v for v in attribute.values if v != NOT_PROVIDED],
        )
        out.append(
            DisparateImpact(field, "monitoring", f"monitoring.{field}", attribute.basis, reference, missing, groups)
        )
    for bands in settings.bands:
        reference, missing, groups = rates(columns.field(bands.field), bands.group_of, bands.labels)
        basis = f"bands of {bands.field} at {', '.join(f'{e:g}' for e in bands.edges)}"
        out.append(DisparateImpact(bands.name, "band", f"applicant.{bands.field}", basis, reference, missing, groups))
    return tuple(out)


# ---- models, latency, back-testing --------------------------------------------------------------


def model_version_shares(rows: Decisions) -> tuple[ModelVersionShare, ...]:
    """Decisions per model version, most used first."""
    columns = columns_of(rows)
    counts = _label_counts(columns.model)
    ordered = sorted(counts, key=lambda k: (-counts[k], k))
    return tuple(
        ModelVersionShare(name, version, counts[(name, version)], counts[(name, version)] / len(columns))
        for name, version in ordered
    )


def latency_summary(latencies_ms: Sequence[float] | np.ndarray, budget_ms: float = LATENCY_BUDGET_MS) -> LatencySummary:
    """p50/p90/p99/max latency and how many decisions exceeded the budget."""
    if len(latencies_ms) == 0:
        return LatencySummary(0, budget_ms, None, None, None, None, 0, None)
    values = np.asarray(latencies_ms, dtype=np.float64)
    p50, p90, p99 = (float(p) for p in np.percentile(values, [50, 90, 99]))
    over = int(np.sum(values > budget_ms))
    return LatencySummary(len(values), budget_ms, p50, p90, p99, float(values.max()), over, over / len(values))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the average of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    breaks = np.flatnonzero(np.diff(ordered) != 0) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(values)]))
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auc_score(bad: np.ndarray, probability: np.ndarray) -> float | None:
    """Mann-Whitney AUC of ``probability`` for ``bad`` (1) vs good (0); None without both classes."""
    bad = np.asarray(bad, dtype=bool)
    n_bad, n_good = int(bad.sum()), int((~bad).sum())
    if n_bad == 0 or n_good == 0:
        return None
    rank_sum = float(average_ranks(np.asarray(probability, dtype=np.float64))[bad].sum())
    return (rank_sum - n_bad * (n_bad + 1) / 2.0) / (n_bad * n_good)


def ks_statistic(bad: np.ndarray, probability: np.ndarray) -> float | None:
    """Largest gap between the empirical CDFs of ``probability`` among bads and goods."""
    bad = np.asarray(bad, dtype=bool)
    p = np.asarray(probability, dtype=np.float64)
    if not bad.any() or bad.all():
        return None
    thresholds = np.unique(p)
    cdf_bad = np.searchsorted(np.sort(p[bad]), thresholds, side="right") / bad.sum()
    cdf_good = np.searchsorted(np.sort(p[~bad]), thresholds, side="right") / (~bad).sum()
    return float(np.max(np.abs(cdf_good - cdf_bad)))


def backtest(rows: Decisions) -> Backtest | None:
    """Observed bad rate by band, AUC and KS where outcomes exist; None if none do."""
    columns = columns_of(rows)
    known = columns.outcome != NO_OUTCOME
    if not known.any():
        return None
    bad = columns.outcome[known] == BAD
    probability = columns.probability_of_default[known]
    per_band = _label_counts(columns.risk_band, known)
    bad_band = _label_counts(columns.risk_band, known & (columns.outcome == BAD))
    return Backtest(
        n=int(known.sum()),
        bad=int(bad.sum()),
        bad_rate=float(bad.mean()),
        auc=auc_score(bad, probability),
        ks=ks_statistic(bad, probability),
        by_band=tuple(
            BandOutcome(b, per_band[b], bad_band.get(b, 0), _ratio(bad_band.get(b, 0), per_band[b]))
            for b in sorted(per_band)
        ),
    )


# ---- flags, flat rows, JSON ---------------------------------------------------------------------


def _with_flags(report: PeriodReport) -> PeriodReport:
    flags: list[Flag] = []
    for index in (report.score_psi, report.band_psi, *report.field_csi):
        if index is not None and index.flag:
            flags.append(Flag("stability", index.name, "", index.flag, index.value))
    for di in report.disparate_impact:
        for g in di.groups:
            if g.four_fifths:
                flags.append(Flag("disparate_impact", di.attribute, g.group, "four_fifths", g.ratio))
    lat = report.latency
    for name, value in (("p50", lat.p50), ("p90", lat.p90), ("p99", lat.p99), ("max", lat.maximum)):
        if value is not None and value > lat.budget_ms:
            flags.append(Flag("latency", name, "", "over_budget", value))
    for shift in report.reason_shifts:
        if shift.flag:
            flags.append(Flag("reason_shift", shift.code, shift.reference, shift.flag, shift.p_value))
    return PeriodReport(
        **{f.name: getattr(report, f.name) for f in fields(report) if f.name != "flags"}, flags=tuple(flags)
    )


def _stability_row_flag(index: StabilityIndex) -> str:
    return "small_sample" if index.small_sample else index.flag


def latency_flag(value: float | None, budget_ms: float) -> str:
    """``over_budget`` when a latency figure exceeds the budget."""
    return "over_budget" if value is not None and value > budget_ms else ""


def metric_rows(report: PeriodReport) -> tuple[MetricRow, ...]:
    """Every number of the report as (section, metric, group, value, flag) rows, in report order."""
    out: list[MetricRow] = []
    add = out.append
    s = report.summary
    for metric, summary_value in (
        ("decisions", s.decisions),
        ("approved", s.approved),
        ("referred", s.referred),
        ("declined", s.declined),
        ("approval_rate", s.approval_rate),
        ("previous_period_decisions", s.previous_decisions),
        ("mean_score", s.mean_score),
        ("mean_probability_of_default", s.mean_probability_of_default),
    ):
        add(MetricRow("summary", metric, "", summary_value, ""))
    t = report.thresholds
    for metric, threshold in (
        ("stability_watch", t.stability_watch),
        ("stability_action", t.stability_action),
        ("four_fifths", t.four_fifths),
        ("min_sample", t.min_sample),
        ("reason_shift_p_value", t.reason_shift_p_value),
    ):
        add(MetricRow("thresholds", metric, "", threshold, ""))
    for v in report.volumes:
        for decision_name, count in (
            ("decisions", v.decisions),
            ("approve", v.approve),
            ("refer", v.refer),
            ("decline", v.decline),
        ):
            add(MetricRow("volume", decision_name, v.start.isoformat(), count, ""))
    d = report.score_distribution
    for metric, score_value in (
        ("n", d.n),
        ("mean", d.mean),
        ("p10", d.p10),
        ("p50", d.p50),
        ("p90", d.p90),
        ("min", d.minimum),
        ("max", d.maximum),
    ):
        add(MetricRow("score", metric, "", score_value, ""))
    for lo, count in zip(d.bin_edges, d.counts, strict=False):
        add(MetricRow("score", "histogram_count", f"[{lo}, {lo + SCORE_BIN_WIDTH})", count, ""))
    for b in report.bands:
        add(MetricRow("band", "decisions", b.band, b.decisions, ""))
        add(MetricRow("band", "share", b.band, b.share, ""))
        add(MetricRow("band", "approval_rate", b.band, b.approval_rate, ""))
        if b.baseline_share is not None:
            add(MetricRow("band", "baseline_share", b.band, b.baseline_share, ""))
    for f in report.reason_frequencies:
        add(MetricRow("reason_frequency", "share", f.code, f.share, ""))
        add(MetricRow("reason_frequency", "previous_share", f.code, f.previous_share, ""))
        add(MetricRow("reason_frequency", "change_pp", f.code, f.change_pp, ""))
    for shift in report.reason_shifts:
        for metric, shift_value in (
            ("share", shift.share),
            ("reference_share", shift.reference_share),
            ("change_pp", shift.change_pp),
            ("z", shift.z),
            ("p_value", shift.p_value),
            ("p_threshold", shift.p_threshold),
        ):
            add(MetricRow("reason_shift", f"{shift.reference}.{metric}", shift.code, shift_value, shift.flag))
    for index in (report.score_psi, report.band_psi):
        if index is not None:
            add(MetricRow("stability", "psi", index.name, index.value, _stability_row_flag(index)))
    for index in report.field_csi:
        add(MetricRow("stability", "csi", index.name, index.value, _stability_row_flag(index)))
    for r in report.rule_hits:
        add(MetricRow("policy_rule", "hit_rate", r.code, r.rate, ""))
        add(MetricRow("policy_rule", "hits", r.code, r.hits, ""))
    for di in report.disparate_impact:
        add(MetricRow("disparate_impact", f"{di.attribute}.missing", "", di.missing, ""))
        for g in di.groups:
            add(
                MetricRow(
                    "disparate_impact",
                    f"{di.attribute}.decisions",
                    g.group,
                    g.decisions,
                    "small_group" if g.small_group else "",
                )
            )
            add(MetricRow("disparate_impact", f"{di.attribute}.approval_rate", g.group, g.approval_rate, ""))
            add(MetricRow("disparate_impact", f"{di.attribute}.ratio", g.group, g.ratio, g.flag))
    for m in report.model_versions:
        add(MetricRow("model_version", "share", f"{m.model_name} {m.model_version}", m.share, ""))
    lat = report.latency
    for metric, latency_value in (
        ("p50_ms", lat.p50),
        ("p90_ms", lat.p90),
        ("p99_ms", lat.p99),
        ("max_ms", lat.maximum),
    ):
        add(MetricRow("latency", metric, "", latency_value, latency_flag(latency_value, lat.budget_ms)))
    add(MetricRow("latency", "budget_ms", "", lat.budget_ms, ""))
    add(MetricRow("latency", "over_budget_share", "", lat.over_budget_share, ""))
    bt = report.backtest
    if bt is not None:
        for metric, bt_value in (("n", bt.n), ("bad_rate", bt.bad_rate), ("auc", bt.auc), ("ks", bt.ks)):
            add(MetricRow("backtest", metric, "", bt_value, ""))
        for bo in bt.by_band:
            add(MetricRow("backtest", "bad_rate", bo.band, bo.bad_rate, ""))
    rv = report.reviews
    if rv is not None:
        add(MetricRow("review", "reviews", "", rv.reviews, ""))
        add(MetricRow("review", "overrides", "", rv.overrides, ""))
        add(MetricRow("review", "override_rate", "", rv.override_rate, ""))
        for by, rates in (
            ("reviewer", rv.by_reviewer),
            ("band", rv.by_band),
            ("reason", rv.by_reason),
            ("justification", rv.by_justification),
        ):
            for rate in rates:
                add(MetricRow("review", f"reviews_by_{by}", rate.group, rate.reviews, ""))
                add(MetricRow("review", f"override_rate_by_{by}", rate.group, rate.override_rate, ""))
    return tuple(out)


def to_jsonable(value: Any) -> Any:
    """JSON-ready form of report dataclasses: dicts, lists, ISO-8601 dates, numbers, None."""
    if is_dataclass(value) and not isinstance(value, type):
        data = {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, GroupRate):
            data["four_fifths"] = value.four_fifths
            data["flag"] = value.flag
        if isinstance(value, OverrideRate):
            data["override_rate"] = value.override_rate
        return data
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
