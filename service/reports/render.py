"""Rendering a :class:`PeriodReport`: a self-contained HTML page, a PDF of the same, JSON and CSV.

HTML and PDF are built from the same sections (charts drawn by the same functions, the same
tables), so the PDF is the printed page. Charts use matplotlib's object API (no pyplot, no global
backend state), PNGs are embedded as base64 data URIs: the page loads nothing from anywhere.
matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from service.reports.core import (
    REASON_MIN_EXPECTED,
    SCORE_BIN_WIDTH,
    STABILITY_EPSILON,
    DisparateImpact,
    Flag,
    GroupRate,
    MetricRow,
    OverrideRate,
    PeriodReport,
    StabilityIndex,
    metric_rows,
    to_jsonable,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_NUMERIC = re.compile(r"[+\-–]?[0-9][0-9.,]*( %| pp| ms)?|–")
CSV_COLUMNS = ("section", "metric", "group", "value", "flag")
FLAG_COLOURS = {
    "action": "#c62828",
    "four_fifths": "#c62828",
    "over_budget": "#c62828",
    "watch": "#ef8f00",
    "shift": "#c62828",
    "small_group": "#6a6a6a",
}
DECISION_COLOURS = {"approve": "#2e7d32", "refer": "#f9a825", "decline": "#c62828"}
CURRENT, PREVIOUS, BASELINE = "#1f5fa8", "#9bb7d9", "#b0b0b0"
A4_PORTRAIT = (8.27, 11.69)
CHART_SIZE = (8.0, 3.6)
# table layout on a PDF page, in figure fractions
_ROW_H, _TITLE_H, _GAP, _TOP, _BOTTOM = 0.017, 0.024, 0.02, 0.96, 0.04

R = TypeVar("R")
#: Draws one chart of a report (a :class:`PeriodReport`, or another report type) on the given axes.
ChartDrawer = Callable[["Axes", R], None]
Drawer = ChartDrawer[PeriodReport]


@dataclass(frozen=True)
class Table:
    """A table of the report: header and rows of display text, each row with its flag (or "")."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Section(Generic[R]):
    """One section of a report: charts (drawn from the report of type ``R``) and tables."""

    key: str
    title: str
    charts: tuple[tuple[str, ChartDrawer[R]], ...]
    tables: tuple[Table, ...]
    text: str = ""


# ---- JSON and CSV -------------------------------------------------------------------------------


def render_json(report: PeriodReport) -> str:
    """Every number of the report as JSON."""
    return json.dumps(to_jsonable(report), indent=2, sort_keys=False, allow_nan=False) + "\n"


def render_csv(report: PeriodReport) -> str:
    """One row per metric: section, metric, group, value, flag."""
    return metric_csv(metric_rows(report))


def metric_csv(rows: Iterable[MetricRow]) -> str:
    """Metric rows as CSV with the header ``CSV_COLUMNS``; a value is written as ``repr`` (empty for None)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow((row.section, row.metric, row.group, "" if row.value is None else repr(row.value), row.flag))
    return buffer.getvalue()


# ---- shared content -----------------------------------------------------------------------------


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage (``–`` when unknown)."""
    return "–" if value is None else f"{100.0 * value:.{digits}f} %"


def fmt_num(value: float | int | None, digits: int = 4) -> str:
    """A number with ``digits`` decimals (integers as they are; ``–`` when unknown)."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def fmt_pp(value: float | None) -> str:
    """A signed change in percentage points (``–`` when unknown)."""
    return "–" if value is None else f"{value:+.1f} pp"


def title(report: PeriodReport) -> str:
    """The report's title line."""
    p = report.period
    model = f" — model {report.model_name}" if report.model_name else ""
    return f"Credit decisions {p.start:%Y-%m-%d} to {p.end:%Y-%m-%d} (end exclusive){model}"


def key_figures(report: PeriodReport) -> list[tuple[str, str, str]]:
    """(label, value, flag) of the headline numbers."""
    s = report.summary
    lat = report.latency
    psi = report.score_psi
    four_fifths = any(g.four_fifths for di in report.disparate_impact for g in di.groups)
    figures = [
        ("Decisions", str(s.decisions), ""),
        ("Approval rate", fmt_pct(s.approval_rate), ""),
        ("Referred / declined", f"{s.referred} / {s.declined}", ""),
        ("Mean score", fmt_num(s.mean_score, 1), ""),
        ("Score PSI", fmt_num(psi.value if psi else None), psi.flag if psi else ""),
        (
            "Fields flagged (CSI)",
            str(sum(1 for c in report.field_csi if c.flag)),
            _worst(c.flag for c in report.field_csi),
        ),
        ("Four-fifths rule", "flagged" if four_fifths else "not flagged", "four_fifths" if four_fifths else ""),
        reason_shift_figure(report),
        (
            "Latency p99",
            "–" if lat.p99 is None else f"{lat.p99:.1f} ms",
            "over_budget" if lat.p99 is not None and lat.p99 > lat.budget_ms else "",
        ),
    ]
    if report.backtest is not None:
        figures.append(("Back-test AUC", fmt_num(report.backtest.auc, 3), ""))
    return figures


def _worst(flags: Iterable[str]) -> str:
    seen = set(flags)
    return "action" if "action" in seen else "watch" if "watch" in seen else ""


def reason_shift_figure(report: PeriodReport) -> tuple[str, str, str]:
    """The key figure of reason drift: how many codes shifted significantly."""
    shifted = sorted({r.code for r in report.reason_shifts if r.flag})
    return ("Reason codes shifted", str(len(shifted)), "shift" if shifted else "")


def reason_shift_table(report: PeriodReport) -> Table:
    """Reason drift: each code's share against the training baseline and the previous period, with its test."""
    shifts = report.reason_shifts
    return Table(
        "Reason drift: share of declines and referrals against the training baseline and the previous period",
        ("code", "kind", "against", "share", "reference share", "change", "z", "p-value", "threshold", "flag"),
        tuple(
            (
                r.code,
                r.kind,
                "baseline" if r.reference == "baseline" else "previous period",
                f"{fmt_pct(r.share)} ({r.count}/{r.n})",
                f"{fmt_pct(r.reference_share)} ({r.reference_count}/{r.reference_n})",
                fmt_pp(r.change_pp),
                fmt_num(r.z, 2),
                "–" if r.p_value is None else f"{r.p_value:.2g}",
                "not tested" if r.p_threshold is None else f"{r.p_threshold:.2g}",
                r.flag or ("ok" if r.tested else "–"),
            )
            for r in shifts
        ),
        tuple(r.flag for r in shifts),
    )


def flag_text(flag: Flag) -> str:
    """One line describing a flag."""
    where = flag.metric + (f" / {flag.group}" if flag.group else "")
    return f"{flag.level}: {flag.section} {where} = {fmt_num(flag.value, 3)}"


def _stability_status(index: StabilityIndex, min_sample: int) -> str:
    if index.small_sample:
        return f"not flagged (n < {min_sample})"
    return index.flag or "ok"


def _stability_table(title_text: str, indices: Sequence[StabilityIndex], min_sample: int) -> Table:
    return Table(
        title_text,
        ("characteristic", "kind", "index", "flag", "n", "missing", "largest bin shift"),
        tuple(
            (
                i.name,
                i.kind,
                fmt_num(i.value),
                _stability_status(i, min_sample),
                str(i.n),
                str(i.missing),
                max(i.bins, key=lambda b: abs(b.contribution)).label if i.bins else "–",
            )
            for i in indices
        ),
        tuple(i.flag for i in indices),
    )


def group_status(group: GroupRate, min_sample: int) -> str:
    """``four_fifths``, ``not flagged (n < min_sample)`` for a small group, else ``ok``."""
    if group.four_fifths:
        return "four_fifths"
    if group.small_group:
        return f"not flagged (n < {min_sample})"
    return "ok"


def _impact_table(di: DisparateImpact, min_sample: int) -> Table:
    basis = f"; {di.basis}" if di.basis else ""
    return Table(
        f"{di.attribute} ({di.source}{basis}; reference group: {di.reference_group or '–'}; missing: {di.missing})",
        ("group", "decisions", "approved", "approval rate", "ratio", "flag"),
        tuple(
            (
                g.group,
                str(g.decisions),
                str(g.approved),
                fmt_pct(g.approval_rate),
                fmt_num(g.ratio, 3),
                group_status(g, min_sample),
            )
            for g in di.groups
        ),
        tuple(g.flag or ("small_group" if g.small_group else "") for g in di.groups),
    )


def sections(report: PeriodReport) -> tuple[Section[PeriodReport], ...]:
    """The report's sections, in order, as both HTML and PDF show them."""
    s = report.score_distribution
    t = report.thresholds
    out = [
        Section(
            "volumes",
            "Volumes and decision mix",
            (("Decisions per " + report.bucket, draw_volumes),),
            (
                Table(
                    f"Decisions per {report.bucket}",
                    ("from", "decisions", "approve", "refer", "decline"),
                    tuple(
                        (v.start.isoformat(), str(v.decisions), str(v.approve), str(v.refer), str(v.decline))
                        for v in report.volumes
                    ),
                    tuple("" for _ in report.volumes),
                ),
            ),
        ),
        Section(
            "scores",
            "Scores and risk bands",
            (("Score distribution", draw_score_histogram), ("Risk bands", draw_bands)),
            (
                Table(
                    "Score summary",
                    ("n", "mean", "p10", "median", "p90", "min", "max"),
                    (
                        (
                            str(s.n),
                            fmt_num(s.mean, 1),
                            fmt_num(s.p10, 1),
                            fmt_num(s.p50, 1),
                            fmt_num(s.p90, 1),
                            fmt_num(s.minimum),
                            fmt_num(s.maximum),
                        ),
                    ),
                    ("",),
                ),
                Table(
                    "Risk bands",
                    ("band", "decisions", "share", "baseline share", "approved", "approval rate"),
                    tuple(
                        (
                            b.band,
                            str(b.decisions),
                            fmt_pct(b.share),
                            fmt_pct(b.baseline_share),
                            str(b.approved),
                            fmt_pct(b.approval_rate),
                        )
                        for b in report.bands
                    ),
                    tuple("" for _ in report.bands),
                ),
            ),
        ),
        Section(
            "reasons",
            "Reasons for declines and referrals",
            (("Share of declines and referrals citing each code", draw_reasons),),
            (
                Table(
                    "Reason-code frequencies (each code counted once per decision)",
                    ("code", "kind", "decisions", "share", "previous share", "change"),
                    tuple(
                        (f.code, f.kind, str(f.count), fmt_pct(f.share), fmt_pct(f.previous_share), fmt_pp(f.change_pp))
                        for f in report.reason_frequencies
                    ),
                    tuple("" for _ in report.reason_frequencies),
                ),
                reason_shift_table(report),
            ),
            text=(
                "Reason drift: a two-sided two-proportion z-test (pooled) of each code's share of declines and "
                f"referrals; flagged when the p-value is below {t.reason_shift_p_value:g} divided by the number of "
                f"codes tested against that reference (Bonferroni); tested with at least {t.min_sample} declines "
                f"and referrals and {REASON_MIN_EXPECTED:g} expected citations and non-citations on each side. The baseline is the "
                "hold-out set as the model version decides it."
            ),
        ),
        Section(
            "stability",
            "Population and characteristic stability",
            (("Score PSI by bin", draw_score_psi), ("CSI of each input field", draw_csi)),
            (
                _stability_table(
                    "Stability indices",
                    [i for i in (report.score_psi, report.band_psi) if i is not None],
                    t.min_sample,
                ),
                _stability_table("Characteristic stability (CSI) of each input field", report.field_csi, t.min_sample),
            ),
            text=(
                f"Index = Σ (actual − expected) · ln(actual / expected) over bins, empty bins counted as "
                f"{STABILITY_EPSILON:g}; missing values have a bin of their own. Watch at ≥ {t.stability_watch:g}, "
                f"action at ≥ {t.stability_action:g}; with fewer than {t.min_sample} decisions in the period the "
                f"indices are shown but not flagged. Baseline: {report.baseline_model or 'none'}."
            ),
        ),
        Section(
            "rules",
            "Policy rules",
            (("Policy-rule hit rates", draw_rules),),
            (
                Table(
                    "Policy-rule hit rates (share of all decisions)",
                    ("rule", "hits", "hit rate"),
                    tuple((r.code, str(r.hits), fmt_pct(r.rate, 2)) for r in report.rule_hits),
                    tuple("" for _ in report.rule_hits),
                ),
            ),
        ),
        Section(
            "fairness",
            "Disparate-impact monitoring",
            (("Approval-rate ratio to the most-favoured group", draw_disparate_impact),),
            tuple(_impact_table(di, t.min_sample) for di in report.disparate_impact),
            text=(
                f"Four-fifths rule: a group's approval rate below {t.four_fifths:g} of the reference group's is flagged; "
                "the reference is the most-favoured group among those with at least "
                f"{t.min_sample} decisions. Groups with fewer than {t.min_sample} decisions are shown but not flagged. "
                "Applicants who did not provide a monitoring attribute are counted as missing. Monitoring attributes "
                "are recorded apart from the applicant's inputs and never reach the model."
            ),
        ),
        Section(
            "operations",
            "Model versions and latency",
            (("Model versions in use", draw_model_versions), ("Latency against the budget", draw_latency)),
            (
                Table(
                    "Model versions",
                    ("model", "version", "decisions", "share"),
                    tuple(
                        (m.model_name, m.model_version, str(m.decisions), fmt_pct(m.share))
                        for m in report.model_versions
                    ),
                    tuple("" for _ in report.model_versions),
                ),
                _latency_table(report),
            ),
        ),
    ]
    rv = report.reviews
    if rv is not None:
        columns = ("reviews", "overrides", "override rate", "approved", "declined")

        def rates_table(title_text: str, by: str, rates: Sequence[OverrideRate]) -> Table:
            return Table(
                title_text,
                (by, *columns),
                tuple(
                    (
                        r.group,
                        str(r.reviews),
                        str(r.overrides),
                        fmt_pct(r.override_rate),
                        str(r.approved),
                        str(r.declined),
                    )
                    for r in rates
                ),
                tuple("" for _ in rates),
            )

        out.append(
            Section(
                "review",
                "Human review",
                (),
                (
                    Table(
                        "Reviews in the period",
                        ("reviews", "overrides", "override rate"),
                        ((str(rv.reviews), str(rv.overrides), fmt_pct(rv.override_rate)),),
                        ("",),
                    ),
                    rates_table("By reviewer", "reviewer", rv.by_reviewer),
                    rates_table("By automated risk band", "band", rv.by_band),
                    rates_table("By automated top reason", "reason", rv.by_reason),
                    rates_table("By justification", "justification", rv.by_justification),
                ),
                "An override is a final decision other than the automated one; every reviewed referral is one.",
            )
        )
    bt = report.backtest
    if bt is not None:
        out.append(
            Section(
                "backtest",
                "Back-testing on posted outcomes",
                (("Observed bad rate by band", draw_backtest),),
                (
                    Table(
                        "Discrimination",
                        ("decisions with outcome", "bad", "bad rate", "AUC", "KS"),
                        ((str(bt.n), str(bt.bad), fmt_pct(bt.bad_rate), fmt_num(bt.auc, 3), fmt_num(bt.ks, 3)),),
                        ("",),
                    ),
                    Table(
                        "Observed bad rate by band",
                        ("band", "decisions with outcome", "bad", "bad rate"),
                        tuple((b.band, str(b.n), str(b.bad), fmt_pct(b.bad_rate)) for b in bt.by_band),
                        tuple("" for _ in bt.by_band),
                    ),
                ),
            )
        )
    return tuple(out)


def _latency_table(report: PeriodReport) -> Table:
    lat = report.latency
    rows = [("p50", lat.p50), ("p90", lat.p90), ("p99", lat.p99), ("max", lat.maximum)]
    return Table(
        f"Latency (server side, budget {lat.budget_ms:g} ms, {lat.n} decisions, {fmt_pct(lat.over_budget_share)} over budget)",
        ("percentile", "ms", "flag"),
        tuple(
            (name, fmt_num(v, 1), "over_budget" if v is not None and v > lat.budget_ms else "ok") for name, v in rows
        ),
        tuple("over_budget" if v is not None and v > lat.budget_ms else "" for _, v in rows),
    )


# ---- charts -------------------------------------------------------------------------------------


def empty_chart(ax: Axes, message: str = "no data") -> None:
    """An empty chart saying why."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#6a6a6a")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_volumes(ax: Axes, report: PeriodReport) -> None:
    """Stacked bars of approve/refer/decline per bucket."""
    if not report.volumes:
        return empty_chart(ax)
    x = list(range(len(report.volumes)))
    bottom = [0] * len(x)
    for name in ("approve", "refer", "decline"):
        heights = [getattr(v, name) for v in report.volumes]
        ax.bar(x, heights, bottom=bottom, color=DECISION_COLOURS[name], label=name, width=0.85)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    step = max(1, len(x) // 10)
    ax.set_xticks(x[::step], [v.start.strftime("%m-%d") for v in report.volumes][::step])
    ax.set_ylabel("decisions")
    ax.set_ylim(0, max(1, max(bottom)) * 1.2)
    ax.legend(loc="upper right", fontsize=8, ncols=3)


def draw_score_histogram(ax: Axes, report: PeriodReport) -> None:
    """Histogram of scores."""
    d = report.score_distribution
    if not d.n:
        return empty_chart(ax)
    ax.bar(d.bin_edges[:-1], d.counts, width=SCORE_BIN_WIDTH, align="edge", color=CURRENT, edgecolor="white")
    ax.set_xlabel("score")
    ax.set_ylabel("decisions")


def draw_bands(ax: Axes, report: PeriodReport) -> None:
    """Band shares against the baseline, with the approval rate over each bar."""
    if not report.bands:
        return empty_chart(ax)
    x = list(range(len(report.bands)))
    ax.bar([i - 0.2 for i in x], [b.share for b in report.bands], width=0.4, color=CURRENT, label="period")
    ax.bar(
        [i + 0.2 for i in x],
        [b.baseline_share or 0.0 for b in report.bands],
        width=0.4,
        color=BASELINE,
        label="baseline (hold-out)",
    )
    for i, b in zip(x, report.bands, strict=True):
        ax.annotate(f"approved {fmt_pct(b.approval_rate, 0)}", (i - 0.2, b.share), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [b.band for b in report.bands])
    ax.set_ylabel("share of decisions")
    ax.legend(fontsize=8)


def draw_reasons(ax: Axes, report: PeriodReport) -> None:
    """Share of declines and referrals citing each code, now and before."""
    freq = report.reason_frequencies[:15]
    if not freq:
        return empty_chart(ax, "no declines or referrals")
    y = list(range(len(freq)))[::-1]
    ax.barh([v + 0.2 for v in y], [f.share or 0.0 for f in freq], height=0.4, color=CURRENT, label="period")
    ax.barh(
        [v - 0.2 for v in y],
        [f.previous_share or 0.0 for f in freq],
        height=0.4,
        color=PREVIOUS,
        label="previous period",
    )
    ax.set_yticks(y, [f"{f.code} ({f.kind})" for f in freq], fontsize=7)
    ax.set_xlabel("share of declines and referrals")
    ax.legend(fontsize=8)


def draw_score_psi(ax: Axes, report: PeriodReport) -> None:
    """Baseline vs period shares per score bin."""
    psi = report.score_psi
    if psi is None:
        return empty_chart(ax, "no baseline")
    x = list(range(len(psi.bins)))
    ax.bar([i - 0.2 for i in x], [b.expected for b in psi.bins], width=0.4, color=BASELINE, label="baseline (hold-out)")
    ax.bar([i + 0.2 for i in x], [b.actual for b in psi.bins], width=0.4, color=CURRENT, label="period")
    ax.set_xticks(x, [b.label for b in psi.bins], fontsize=6, rotation=30)
    ax.set_ylabel("share")
    ax.set_title(f"PSI {fmt_num(psi.value)} {psi.flag}", fontsize=9, color=FLAG_COLOURS.get(psi.flag, "black"))
    ax.legend(fontsize=8)


def draw_csi(ax: Axes, report: PeriodReport) -> None:
    """CSI per input field with the watch and action thresholds."""
    csi = report.field_csi
    if not csi:
        return empty_chart(ax, "no baseline")
    y = list(range(len(csi)))[::-1]
    colours = [FLAG_COLOURS["small_group"] if c.small_sample else FLAG_COLOURS.get(c.flag, CURRENT) for c in csi]
    ax.barh(y, [c.value or 0.0 for c in csi], color=colours)
    ax.axvline(report.thresholds.stability_watch, color=FLAG_COLOURS["watch"], linestyle="--", linewidth=1)
    ax.axvline(report.thresholds.stability_action, color=FLAG_COLOURS["action"], linestyle="--", linewidth=1)
    ax.set_yticks(y, [c.name for c in csi], fontsize=6)
    ax.set_xlabel(
        "CSI"
        + (f" (grey: fewer than {report.thresholds.min_sample} decisions, not flagged)" if csi[0].small_sample else "")
    )


def draw_rules(ax: Axes, report: PeriodReport) -> None:
    """Hit rate of each policy rule."""
    if not report.rule_hits:
        return empty_chart(ax, "no policy rules")
    x = list(range(len(report.rule_hits)))
    ax.bar(x, [r.rate or 0.0 for r in report.rule_hits], color=CURRENT)
    ax.set_xticks(x, [r.code for r in report.rule_hits])
    ax.set_ylabel("share of decisions")


def draw_disparate_impact(ax: Axes, report: PeriodReport) -> None:
    """Approval-rate ratios per group with the four-fifths line."""
    labels, ratios, colours = [], [], []
    for di in report.disparate_impact:
        for g in di.groups:
            labels.append(f"{di.attribute}: {g.group}")
            ratios.append(g.ratio or 0.0)
            colours.append(
                FLAG_COLOURS["four_fifths"]
                if g.four_fifths
                else (FLAG_COLOURS["small_group"] if g.small_group else CURRENT)
            )
    if not labels:
        return empty_chart(ax, "no monitoring data")
    t = report.thresholds
    y = list(range(len(labels)))[::-1]
    ax.barh(y, ratios, color=colours)
    ax.axvline(t.four_fifths, color=FLAG_COLOURS["four_fifths"], linestyle="--", linewidth=1)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlim(0, max(1.05, max(ratios) * 1.05))
    ax.set_xlabel(f"approval rate / reference group's (grey: fewer than {t.min_sample} decisions, not flagged)")


def draw_model_versions(ax: Axes, report: PeriodReport) -> None:
    """Share of decisions per model version."""
    if not report.model_versions:
        return empty_chart(ax)
    x = list(range(len(report.model_versions)))
    ax.bar(x, [m.share for m in report.model_versions], color=CURRENT)
    ax.set_xticks(x, [f"{m.model_name}\n{m.model_version}" for m in report.model_versions], fontsize=7)
    ax.set_ylabel("share of decisions")


def draw_latency(ax: Axes, report: PeriodReport) -> None:
    """Latency percentiles against the budget."""
    lat = report.latency
    values = [("p50", lat.p50), ("p90", lat.p90), ("p99", lat.p99), ("max", lat.maximum)]
    if lat.n == 0:
        return empty_chart(ax, "no latency recorded")
    heights = [v or 0.0 for _, v in values]
    ax.bar(
        [n for n, _ in values],
        heights,
        color=[FLAG_COLOURS["over_budget"] if h > lat.budget_ms else CURRENT for h in heights],
    )
    ax.axhline(
        lat.budget_ms,
        color=FLAG_COLOURS["over_budget"],
        linestyle="--",
        linewidth=1,
        label=f"budget {lat.budget_ms:g} ms",
    )
    ax.set_ylabel("ms")
    ax.legend(fontsize=8)


def draw_backtest(ax: Axes, report: PeriodReport) -> None:
    """Observed bad rate per band."""
    bt = report.backtest
    if bt is None or not bt.by_band:
        return empty_chart(ax, "no outcomes posted")
    ax.bar([b.band for b in bt.by_band], [b.bad_rate or 0.0 for b in bt.by_band], color=CURRENT)
    ax.set_ylabel("observed bad rate")
    ax.set_title(f"AUC {fmt_num(bt.auc, 3)}   KS {fmt_num(bt.ks, 3)}", fontsize=9)


def new_figure(size: tuple[float, float]) -> Figure:
    """A matplotlib figure (object API, no pyplot state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=100)


def chart_png(drawer: ChartDrawer[R], report: R, chart_title: str) -> bytes:
    """One chart as PNG bytes."""
    fig = new_figure(CHART_SIZE)
    ax = fig.add_subplot()
    drawer(ax, report)
    ax.set_title(chart_title if not ax.get_title() else f"{chart_title} — {ax.get_title()}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


# ---- HTML ---------------------------------------------------------------------------------------

_CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #1a1a1a; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; border-bottom: 2px solid #1f5fa8; padding-bottom: .2rem; margin-top: 2rem; }
h3 { font-size: 1rem; margin: 1rem 0 .3rem; } .meta { color: #555; font-size: .9rem; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .6rem; margin: 1rem 0; }
.figure { border: 1px solid #ccc; border-radius: 4px; padding: .5rem .7rem; } .figure .label { font-size: .8rem; color: #555; } .figure .value { font-size: 1.3rem; font-weight: bold; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; margin-bottom: 1rem; } th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; }
th { background: #eef2f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: .5rem 0; }
.flag-action, .flag-four_fifths, .flag-over_budget { color: #c62828; font-weight: bold; } .flag-watch { color: #b36b00; font-weight: bold; } .flag-small_group { color: #6a6a6a; font-style: italic; }
tr.flag-action td, tr.flag-four_fifths td, tr.flag-over_budget td { background: #fdecea; } tr.flag-watch td { background: #fff4e0; }
.note { color: #555; font-size: .85rem; }
@media print { body { margin: 0; max-width: none; } section { break-inside: avoid-page; } h2 { break-after: avoid; } }
"""


def html_table(table: Table) -> str:
    """A table as HTML: numeric cells right-aligned, flagged rows and cells marked by class."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row, flag in zip(table.rows, table.flags, strict=True):
        first_flag = flag.split(",")[0] if flag else ""
        cells = "".join(
            f'<td class="{"num" if _looks_numeric(c) else ""}{" flag-" + c.split(",")[0] if c.split(",")[0] in FLAG_COLOURS else ""}">{html.escape(c)}</td>'
            for c in row
        )
        body.append(f'<tr class="{"flag-" + first_flag if first_flag else ""}">{cells}</tr>')
    if not body:
        body.append(f'<tr><td colspan="{len(table.columns)}" class="note">none</td></tr>')
    return f"<h3>{html.escape(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _looks_numeric(text: str) -> bool:
    return _NUMERIC.fullmatch(text) is not None


def generated_meta(text: str, generated_at: datetime | None) -> str:
    """The meta line under a report's title, with the generation time when known."""
    return text + (f"; generated {generated_at:%Y-%m-%d %H:%M} UTC" if generated_at else "")


def render_html(report: PeriodReport, generated_at: datetime | None = None) -> str:
    """A self-contained HTML page (charts as embedded PNGs, no external resources)."""
    return html_document(
        title(report),
        generated_meta(f"Baseline: {report.baseline_model or 'none'}; buckets: {report.bucket}", generated_at),
        key_figures(report),
        report.flags,
        report.notes,
        report,
        sections(report),
    )


def html_document(
    page_title: str,
    meta: str,
    figures: Sequence[tuple[str, str, str]],
    flags: Sequence[Flag],
    notes: Sequence[str],
    report: R,
    report_sections: Sequence[Section[R]],
) -> str:
    """A self-contained HTML page: title, meta line, key figures, flags, notes, then each section's charts and tables."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(page_title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{html.escape(page_title)}</h1>",
        f'<p class="meta">{html.escape(meta)}</p></header>',
        '<section id="summary"><h2>Key figures</h2><div class="figures">',
    ]
    for label, value, flag in figures:
        parts.append(
            f'<div class="figure"><div class="label">{html.escape(label)}</div>'
            f'<div class="value{" flag-" + flag if flag else ""}">{html.escape(value)}</div></div>'
        )
    parts.append("</div>")
    if flags:
        parts.append("<h3>Flags</h3><ul>")
        for f in flags:
            level, _, rest = flag_text(f).partition(": ")
            parts.append(
                f'<li><span class="flag-{html.escape(level)}">{html.escape(level)}</span> {html.escape(rest)}</li>'
            )
        parts.append("</ul>")
    for note in notes:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    parts.append("</section>")
    for section in report_sections:
        parts.append(f'<section id="{section.key}"><h2>{html.escape(section.title)}</h2>')
        if section.text:
            parts.append(f'<p class="note">{html.escape(section.text)}</p>')
        for chart_title, drawer in section.charts:
            data = base64.b64encode(chart_png(drawer, report, chart_title)).decode("ascii")
            parts.append(f'<img alt="{html.escape(chart_title)}" src="data:image/png;base64,{data}">')
        parts.extend(html_table(t) for t in section.tables)
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ---- PDF ----------------------------------------------------------------------------------------


def render_pdf(report: PeriodReport, generated_at: datetime | None = None) -> bytes:
    """The same report as a PDF: a title page with the key figures, the charts, then the tables."""
    return pdf_document(
        "Credit-decision period report",
        title(report),
        generated_meta(f"Baseline: {report.baseline_model or 'none'}; buckets: {report.bucket}", generated_at),
        key_figures(report),
        report.flags,
        report.notes,
        report,
        sections(report),
        generated_at,
    )


def pdf_document(
    heading: str,
    page_title: str,
    meta: str,
    figures: Sequence[tuple[str, str, str]],
    flags: Sequence[Flag],
    notes: Sequence[str],
    report: R,
    report_sections: Sequence[Section[R]],
    generated_at: datetime | None = None,
) -> bytes:
    """A PDF: a title page (heading, title, meta, key figures, flags, notes), the charts two a page, the tables."""
    from matplotlib.backends.backend_pdf import PdfPages

    buffer = io.BytesIO()
    metadata: dict[str, Any] = {"Title": page_title, "Creator": "credit-decision report"}
    if generated_at is not None:
        metadata["CreationDate"] = generated_at
    with PdfPages(buffer, metadata=metadata) as pdf:
        pdf.savefig(_title_page(heading, page_title, meta, figures, flags, notes))
        charts = [(s.title, t, d) for s in report_sections for t, d in s.charts]
        for start in range(0, len(charts), 2):
            fig = new_figure(A4_PORTRAIT)
            for k, (section_title, chart_title, drawer) in enumerate(charts[start : start + 2]):
                ax = fig.add_subplot(2, 1, k + 1)
                drawer(ax, report)
                own = ax.get_title()
                ax.set_title(f"{section_title}: {chart_title}" + (f" — {own}" if own else ""), fontsize=10)
            fig.tight_layout(pad=2.0)
            pdf.savefig(fig)
        for fig in _table_pages([(s.title, t) for s in report_sections for t in s.tables]):
            pdf.savefig(fig)
    return buffer.getvalue()


def _title_page(
    heading: str,
    page_title: str,
    meta: str,
    figures: Sequence[tuple[str, str, str]],
    flags: Sequence[Flag],
    notes: Sequence[str],
) -> Figure:
    fig = new_figure(A4_PORTRAIT)
    fig.text(0.08, 0.93, heading, fontsize=18, weight="bold")
    fig.text(0.08, 0.895, page_title, fontsize=10)
    fig.text(0.08, 0.87, meta, fontsize=8, color="#555555")
    y = 0.82
    for label, value, flag in figures:
        fig.text(0.08, y, label, fontsize=11)
        fig.text(0.5, y, value, fontsize=11, weight="bold", color=FLAG_COLOURS.get(flag, "black"))
        y -= 0.032
    y -= 0.02
    fig.text(0.08, y, "Flags", fontsize=12, weight="bold")
    y -= 0.028
    shown = flags[:20]
    for f in shown:
        fig.text(0.1, y, flag_text(f), fontsize=8, color=FLAG_COLOURS.get(f.level, "black"))
        y -= 0.02
    if len(flags) > len(shown):
        fig.text(0.1, y, f"… and {len(flags) - len(shown)} more (see the tables)", fontsize=8)
        y -= 0.02
    if not flags:
        fig.text(0.1, y, "none", fontsize=8)
        y -= 0.02
    for note in notes:
        y -= 0.01
        fig.text(0.08, y, note, fontsize=8, color="#555555", wrap=True)
        y -= 0.02
    return fig


def _table_pages(tables: Sequence[tuple[str, Table]]) -> list[Figure]:
    """The tables flowed onto A4 pages, split across pages where they do not fit."""
    from matplotlib.transforms import Bbox

    pages: list[Figure] = []
    fig: Figure | None = None
    y = 0.0
    for section_title, table in tables:
        rows = list(table.rows) or [tuple("–" for _ in table.columns)]
        flags = list(table.flags) or [""]
        start = 0
        while start < len(rows):
            if fig is None or y - _TITLE_H - 3 * _ROW_H < _BOTTOM:
                fig = new_figure(A4_PORTRAIT)
                pages.append(fig)
                y = _TOP
            fit = max(1, int((y - _TITLE_H - _BOTTOM) / _ROW_H) - 1)
            chunk = rows[start : start + fit]
            suffix = "" if start == 0 else " (continued)"
            fig.text(0.05, y - 0.014, f"{section_title}: {table.title}{suffix}", fontsize=8, weight="bold")
            height = (len(chunk) + 1) * _ROW_H
            ax = fig.add_axes((0.05, y - _TITLE_H - height, 0.9, height))
            ax.axis("off")
            tbl = ax.table(
                cellText=[list(r) for r in chunk],
                colLabels=list(table.columns),
                cellLoc="left",
                bbox=Bbox.from_bounds(0, 0, 1, 1),
            )
            tbl.auto_set_font_size(False)
            tbl.set_fontsize(7)
            for (r, _c), cell in tbl.get_celld().items():
                if r == 0:
                    cell.set_facecolor("#eef2f7")
                    continue
                flag = flags[start + r - 1].split(",")[0]
                if flag in ("action", "four_fifths", "over_budget", "shift"):
                    cell.set_facecolor("#fdecea")
                elif flag == "watch":
                    cell.set_facecolor("#fff4e0")
            y -= _TITLE_H + height + _GAP
            start += len(chunk)
    return pages


def render(report: PeriodReport, fmt: str, generated_at: datetime | None = None) -> bytes:
    """The report in ``fmt`` (html, pdf, json or csv) as bytes."""
    if fmt == "pdf":
        return render_pdf(report, generated_at)
    if fmt == "html":
        return render_html(report, generated_at).encode("utf-8")
    if fmt == "json":
        return render_json(report).encode("utf-8")
    if fmt == "csv":
        return render_csv(report).encode("utf-8")
    raise ValueError(f"unknown report format {fmt!r}; expected html, pdf, json or csv")


MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
}
