"""Rendering a :class:`ComparisonReport`: JSON, CSV, a self-contained HTML page and a PDF of the same.

The page and the PDF are built by the period report's machinery (``service.reports.render``:
:func:`html_document`, :func:`pdf_document`, its tables and chart helpers) from the sections below;
charts are drawn with matplotlib's object API and embedded as PNG data URIs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from service.reports.challenger import (
    SCORE_DIFFERENCE_EDGES,
    ComparisonReport,
    ImpactComparison,
    VersionCount,
    comparison_metric_rows,
)
from service.reports.core import GroupRate
from service.reports.render import (
    CURRENT,
    FLAG_COLOURS,
    Section,
    Table,
    empty_chart,
    fmt_num,
    fmt_pct,
    fmt_pp,
    generated_meta,
    group_status,
    html_document,
    metric_csv,
    pdf_document,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

CHAMPION_COLOUR, SHADOW_COLOUR = CURRENT, "#7b52ab"
HEADINGS = {"challenger": "Champion vs challenger", "policy": "Current vs candidate policy"}
SIDE_NAMES = {
    "challenger": ("champion", "challenger"),
    "policy": ("current policy", "candidate policy"),
}


# ---- JSON and CSV -------------------------------------------------------------------------------


def render_comparison_json(report: ComparisonReport) -> str:
    """Every number of the comparison as JSON."""
    return json.dumps(report.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n"


def render_comparison_csv(report: ComparisonReport) -> str:
    """One row per metric: section, metric, group, value, flag (the period report's CSV columns)."""
    return metric_csv(comparison_metric_rows(report))


# ---- titles and key figures ---------------------------------------------------------------------


def side_label(report: ComparisonReport, versions: Sequence[VersionCount]) -> str:
    """The version a side used: the model (challenger) or the policy and catalog (policy), most used first."""
    if not versions:
        return "none seen"
    v = versions[0]
    if report.kind == "challenger":
        label = f"{v.model_name} {v.model_version}"
    else:
        label = f"policy {v.policy_version} (catalog {v.catalog_version})"
    return label + (f" (+{len(versions) - 1} more)" if len(versions) > 1 else "")


def comparison_title(report: ComparisonReport) -> str:
    """``Champion vs challenger: <champion> vs <challenger>, <period>`` (or current vs candidate policy)."""
    c = report.counts
    p = report.period
    on_model = ""
    if report.kind == "policy" and c.champion_versions:
        v = c.champion_versions[0]
        on_model = f" on model {v.model_name} {v.model_version}"
    return (
        f"{HEADINGS[report.kind]}: {side_label(report, c.champion_versions)} vs "
        f"{side_label(report, c.shadow_versions)}{on_model}, {p.start:%Y-%m-%d} to {p.end:%Y-%m-%d} (end exclusive)"
    )


def _names(report: ComparisonReport) -> tuple[str, str]:
    return SIDE_NAMES[report.kind]


def _four_fifths(report: ComparisonReport, side: str) -> bool:
    return any(
        g.four_fifths for c in report.disparate_impact for g in (c.champion if side == "champion" else c.shadow).groups
    )


def key_figures(report: ComparisonReport) -> list[tuple[str, str, str]]:
    """(label, value, flag) of the headline numbers."""
    a, aa, d = report.agreement, report.adverse_action, report.score_difference
    first, second = _names(report)
    flagged = [name for name, side in ((first, "champion"), (second, "shadow")) if _four_fifths(report, side)]
    figures = [
        ("Pairs compared", str(report.counts.pairs), ""),
        *([("Decisions shadowed", fmt_pct(report.counts.coverage), "")] if report.counts.coverage is not None else []),
        ("Decision agreement", fmt_pct(a.agreement_rate), ""),
        ("Swap-ins / swap-outs", f"{a.swap_ins} / {a.swap_outs}", ""),
        (
            "Not approved",
            f"{fmt_pct(aa.champion.not_approved_rate)} → {fmt_pct(aa.shadow.not_approved_rate)} "
            f"({fmt_pp(aa.not_approved_rate_change_pp)})",
            "",
        ),
        (
            "Declined",
            f"{fmt_pct(aa.champion.decline_rate)} → {fmt_pct(aa.shadow.decline_rate)} "
            f"({fmt_pp(aa.decline_rate_change_pp)})",
            "",
        ),
        ("Mean score difference", "–" if d.mean is None else f"{d.mean:+.1f}", ""),
        ("Top-reason match", fmt_pct(report.reason_agreement.reasons.top_match_rate), ""),
        (
            "Four-fifths rule",
            "flagged: " + ", ".join(flagged) if flagged else "not flagged",
            "four_fifths" if flagged else "",
        ),
    ]
    if report.backtest is not None:
        bt = report.backtest
        figures.append(("Back-test AUC", f"{fmt_num(bt.champion.auc, 3)} → {fmt_num(bt.shadow.auc, 3)}", ""))
    return figures


# ---- tables -------------------------------------------------------------------------------------


def _matrix_table(title: str, labels: Sequence[str], matrix: Sequence[Sequence[int]], names: tuple[str, str]) -> Table:
    columns = (f"{names[0]} \\ {names[1]}", *labels, "total")
    rows = tuple((row, *(str(n) for n in counts), str(sum(counts))) for row, counts in zip(labels, matrix, strict=True))
    totals = ("total", *(str(sum(r[j] for r in matrix)) for j in range(len(labels))), str(sum(map(sum, matrix))))
    return Table(title, columns, (*rows, totals), tuple("" for _ in range(len(rows) + 1)))


def _impact_table(comparison: ImpactComparison, names: tuple[str, str], min_sample: int) -> Table:
    c, s = comparison.champion, comparison.shadow
    basis = f"; {c.basis}" if c.basis else ""
    rows, flags = [], []
    for gc, gs in zip(c.groups, s.groups, strict=True):
        rows.append(
            (
                gc.group,
                str(gc.decisions),
                fmt_pct(gc.approval_rate),
                fmt_num(gc.ratio, 3),
                group_status(gc, min_sample),
                fmt_pct(gs.approval_rate),
                fmt_num(gs.ratio, 3),
                group_status(gs, min_sample),
            )
        )
        flags.append("four_fifths" if gc.four_fifths or gs.four_fifths else "small_group" if gc.small_group else "")
    return Table(
        f"{c.attribute} ({c.source}{basis}; reference group: {c.reference_group or '–'} / "
        f"{s.reference_group or '–'}; missing: {c.missing})",
        (
            "group",
            "decisions",
            f"{names[0]} approval",
            f"{names[0]} ratio",
            f"{names[0]} flag",
            f"{names[1]} approval",
            f"{names[1]} ratio",
            f"{names[1]} flag",
        ),
        tuple(rows),
        tuple(flags),
    )


def sections(report: ComparisonReport) -> tuple[Section[ComparisonReport], ...]:
    """The comparison's sections, in order, as both HTML and PDF show them."""
    names = _names(report)
    first, second = names
    a, b, d, aa = report.agreement, report.band_transitions, report.score_difference, report.adverse_action
    ra, t = report.reason_agreement, report.thresholds
    out: list[Section[ComparisonReport]] = [
        Section(
            "decisions",
            "Decisions: agreement and swap set",
            (("Swap-set matrix", draw_swap_set), ("Adverse-action rates", draw_adverse_action)),
            (
                _matrix_table(f"Swap-set matrix (rows: {first}, columns: {second})", a.decisions, a.matrix, names),
                Table(
                    "Swaps",
                    (first, second, "pairs", "share", "direction", "swap"),
                    tuple(
                        (w.champion, w.shadow, str(w.count), fmt_pct(w.share), w.direction.replace("_", " "), w.swap)
                        for w in a.swaps
                    ),
                    tuple("" for _ in a.swaps),
                ),
                Table(
                    "Adverse-action rates",
                    ("measure", first, second, "change"),
                    (
                        (
                            "declined",
                            fmt_pct(aa.champion.decline_rate),
                            fmt_pct(aa.shadow.decline_rate),
                            fmt_pp(aa.decline_rate_change_pp),
                        ),
                        (
                            "not approved (refer + decline)",
                            fmt_pct(aa.champion.not_approved_rate),
                            fmt_pct(aa.shadow.not_approved_rate),
                            fmt_pp(aa.not_approved_rate_change_pp),
                        ),
                    ),
                    ("", ""),
                ),
            ),
            text=(
                f"Agreement {fmt_pct(a.agreement_rate)} of {a.pairs} pairs. Swap-ins: the {first} referred or declined, "
                f"the {second} approves ({a.swap_ins}); swap-outs: the {first} approved, the {second} refers or "
                f"declines ({a.swap_outs}). Stricter: {a.stricter}, more lenient: {a.more_lenient} "
                "(approve < refer < decline)."
            ),
        ),
        Section(
            "bands",
            "Risk-band transitions",
            (("Band transition matrix", draw_band_transitions),),
            (_matrix_table(f"Band transitions (rows: {first}, columns: {second})", b.bands, b.matrix, names),),
            text=(
                f"Same band: {b.same_band} ({fmt_pct(b.same_band_rate)}); the {second} places {b.shadow_better} "
                f"pair(s) in a better band and {b.shadow_worse} in a worse one (bands best first)."
            ),
        ),
        Section(
            "scores",
            "Score difference",
            (("Score difference", draw_score_difference),),
            (
                Table(
                    f"Score difference ({second} − {first}, points)",
                    ("n", "mean", "p5", "p25", "median", "p75", "p95", "min", "max", "higher", "equal", "lower"),
                    (
                        (
                            str(d.n),
                            fmt_num(d.mean, 2),
                            *(fmt_num(v, 1) for v in (d.p5, d.p25, d.p50, d.p75, d.p95)),
                            fmt_num(d.minimum),
                            fmt_num(d.maximum),
                            str(d.higher),
                            str(d.equal),
                            str(d.lower),
                        ),
                    ),
                    ("",),
                ),
                Table(
                    "Histogram",
                    ("difference", "pairs"),
                    tuple((bin_.label, str(bin_.count)) for bin_ in d.bins),
                    tuple("" for _ in d.bins),
                ),
            ),
            text=f"Fixed bin edges {', '.join(str(e) for e in SCORE_DIFFERENCE_EDGES)} (each bin from its edge, up to "
            "but excluding the next); percentiles interpolate linearly.",
        ),
        Section(
            "reasons",
            "Reasons",
            (("Share of declines and referrals citing each code", draw_reason_shift),),
            (
                Table(
                    "Reason agreement",
                    ("reasons", "pairs compared", "top reason equal", "top-4 overlap (Jaccard)"),
                    (
                        (
                            "all reasons, both sides citing at least one",
                            str(ra.reasons.eligible),
                            fmt_pct(ra.reasons.top_match_rate),
                            fmt_num(ra.reasons.top4_jaccard, 3),
                        ),
                        (
                            f"adverse reasons, not approved on both sides ({ra.both_not_approved})",
                            str(ra.adverse.eligible),
                            fmt_pct(ra.adverse.top_match_rate),
                            fmt_num(ra.adverse.top4_jaccard, 3),
                        ),
                    ),
                    ("", ""),
                ),
                Table(
                    "Reason-code frequencies (share of each side's declines and referrals)",
                    (
                        "code",
                        f"{first} decisions",
                        f"{first} share",
                        f"{second} decisions",
                        f"{second} share",
                        "change",
                    ),
                    tuple(
                        (
                            f.code,
                            str(f.champion_count),
                            fmt_pct(f.champion_share),
                            str(f.shadow_count),
                            fmt_pct(f.shadow_share),
                            fmt_pp(f.change_pp),
                        )
                        for f in report.reason_shift
                    ),
                    tuple("" for _ in report.reason_shift),
                ),
            ),
            text=(
                "Top-4 overlap: mean over the pairs of |A ∩ B| / |A ∪ B|, A and B the sets of each side's first "
                "four reason codes."
            ),
        ),
        Section(
            "rules",
            "Policy rules",
            (("Policy-rule hit rates", draw_rule_hits),),
            (
                Table(
                    "Policy-rule hit rates (share of all pairs)",
                    ("rule", f"{first} hits", f"{first} rate", f"{second} hits", f"{second} rate", "change"),
                    tuple(
                        (
                            h.code,
                            str(h.champion_hits),
                            fmt_pct(h.champion_rate, 2),
                            str(h.shadow_hits),
                            fmt_pct(h.shadow_rate, 2),
                            fmt_pp(h.change_pp),
                        )
                        for h in report.rule_hits
                    ),
                    tuple("" for _ in report.rule_hits),
                ),
            ),
        ),
        Section(
            "fairness",
            "Disparate-impact monitoring, both sides",
            (
                ("Approval rate by group", draw_group_approval),
                ("Approval-rate ratio to the most-favoured group", draw_group_ratio),
            ),
            tuple(_impact_table(c, names, t.min_sample) for c in report.disparate_impact),
            text=(
                f"Four-fifths rule, as in the period report, on each side's decisions: a group's approval rate below "
                f"{t.four_fifths:g} of the reference group's is flagged; the reference is the most-favoured group "
                f"among those with at least {t.min_sample} decisions. Groups with fewer than {t.min_sample} decisions "
                "are shown but not flagged. Applicants who did not provide a monitoring attribute are counted as "
                "missing."
            ),
        ),
        Section(
            "versions",
            "Versions compared",
            (),
            tuple(
                Table(
                    f"{name} versions",
                    ("model", "model version", "policy version", "catalog version", "pairs", "share"),
                    tuple(
                        (
                            v.model_name,
                            v.model_version,
                            v.policy_version,
                            v.catalog_version,
                            str(v.pairs),
                            fmt_pct(v.share),
                        )
                        for v in versions
                    ),
                    tuple("" for _ in versions),
                )
                for name, versions in (
                    (first, report.counts.champion_versions),
                    (second, report.counts.shadow_versions),
                )
            ),
        ),
    ]
    bt = report.backtest
    if bt is not None:
        out.append(
            Section(
                "backtest",
                "Back-testing on posted outcomes",
                (("Observed bad rate by band", draw_backtest),),
                (
                    Table(
                        f"Discrimination ({bt.n} pairs with an outcome, {bt.bad} bad, bad rate {fmt_pct(bt.bad_rate)})",
                        ("side", "approved with outcome", "bad rate among approved", "AUC", "KS"),
                        tuple(
                            (
                                name,
                                str(sb.approved),
                                fmt_pct(sb.approved_bad_rate),
                                fmt_num(sb.auc, 3),
                                fmt_num(sb.ks, 3),
                            )
                            for name, sb in ((first, bt.champion), (second, bt.shadow))
                        ),
                        ("", ""),
                    ),
                    *(
                        Table(
                            f"Observed bad rate by {name} band",
                            ("band", "pairs with outcome", "bad", "bad rate"),
                            tuple((o.band, str(o.n), str(o.bad), fmt_pct(o.bad_rate)) for o in sb.by_band),
                            tuple("" for _ in sb.by_band),
                        )
                        for name, sb in ((first, bt.champion), (second, bt.shadow))
                    ),
                ),
                text=(
                    f"Outcomes are observed under the {first}'s decisions; both sides are measured on the same pairs. "
                    "AUC is the Mann-Whitney statistic of the probability of default (ties average), KS the largest "
                    "gap between the distribution functions of bads and goods."
                ),
            )
        )
    return tuple(out)


# ---- charts -------------------------------------------------------------------------------------


def _heatmap(
    ax: Axes, labels: Sequence[str], matrix: Sequence[Sequence[int]], names: tuple[str, str], empty: str
) -> None:
    """An annotated count matrix, the diagonal (agreement) outlined."""
    if not labels or not any(any(row) for row in matrix):
        return empty_chart(ax, empty)
    from matplotlib.patches import Rectangle

    top = max(max(row) for row in matrix)
    ax.imshow([list(row) for row in matrix], cmap="Blues", vmin=0, vmax=top, aspect="auto")
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=9, color="white" if n > 0.6 * top else "black")
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#2e7d32", linewidth=1.5))
    positions = list(range(len(labels)))
    ax.set_xticks(positions, list(labels))
    ax.set_yticks(positions, list(labels))
    ax.set_xlabel(names[1])
    ax.set_ylabel(names[0])
    return None


def draw_swap_set(ax: Axes, report: ComparisonReport) -> None:
    """The 3×3 decision matrix as an annotated heatmap."""
    a = report.agreement
    _heatmap(ax, a.decisions, a.matrix, _names(report), "no pairs")
    if a.pairs:
        ax.set_title(f"agreement {fmt_pct(a.agreement_rate)}", fontsize=9)


def draw_band_transitions(ax: Axes, report: ComparisonReport) -> None:
    """The band transition matrix as an annotated heatmap."""
    b = report.band_transitions
    _heatmap(ax, b.bands, b.matrix, _names(report), "no pairs")


def _paired_bars(
    ax: Axes,
    labels: Sequence[str],
    champion: Sequence[float],
    shadow: Sequence[float],
    names: tuple[str, str],
    *,
    horizontal: bool = False,
    flagged: Sequence[tuple[bool, bool]] = (),
) -> None:
    """Champion and shadow bars side by side per label; flagged bars outlined in the four-fifths colour."""
    positions = list(range(len(labels)))
    if horizontal:
        positions = positions[::-1]
    for k, (values, colour, name) in enumerate(
        ((champion, CHAMPION_COLOUR, names[0]), (shadow, SHADOW_COLOUR, names[1]))
    ):
        offset = (0.2 if k == 0 else -0.2) if horizontal else (-0.2 if k == 0 else 0.2)
        where = [p + offset for p in positions]
        edges = [FLAG_COLOURS["four_fifths"] if f[k] else colour for f in flagged] or colour
        widths = [2.0 if f[k] else 0.5 for f in flagged] or 0.5
        if horizontal:
            ax.barh(where, values, height=0.4, color=colour, label=name, edgecolor=edges, linewidth=widths)
        else:
            ax.bar(where, values, width=0.4, color=colour, label=name, edgecolor=edges, linewidth=widths)
    if horizontal:
        ax.set_yticks(positions, list(labels), fontsize=7)
    else:
        ax.set_xticks(positions, list(labels), fontsize=8)
    from matplotlib.patches import Patch

    # legend patches of their own: the first bar of a side may be outlined as flagged
    ax.legend(
        handles=[Patch(color=CHAMPION_COLOUR, label=names[0]), Patch(color=SHADOW_COLOUR, label=names[1])], fontsize=8
    )


def draw_adverse_action(ax: Axes, report: ComparisonReport) -> None:
    """Decline and not-approved rates, both sides."""
    aa = report.adverse_action
    if not aa.pairs:
        return empty_chart(ax, "no pairs")
    _paired_bars(
        ax,
        ["declined", "not approved (refer + decline)"],
        [aa.champion.decline_rate or 0.0, aa.champion.not_approved_rate or 0.0],
        [aa.shadow.decline_rate or 0.0, aa.shadow.not_approved_rate or 0.0],
        _names(report),
    )
    ax.set_ylabel("share of pairs")
    ax.set_ylim(0, 1.05)
    return None


def draw_score_difference(ax: Axes, report: ComparisonReport) -> None:
    """Histogram of shadow − champion score differences on the fixed bins."""
    d = report.score_difference
    if not d.n:
        return empty_chart(ax, "no pairs")
    x = list(range(len(d.bins)))
    ax.bar(x, [b.count for b in d.bins], color=[SHADOW_COLOUR if b.low == b.high == 0 else CURRENT for b in d.bins])
    ax.set_xticks(x, [b.label for b in d.bins], fontsize=7, rotation=30)
    ax.set_xlabel(f"score difference ({_names(report)[1]} − {_names(report)[0]}, points)")
    ax.set_ylabel("pairs")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"mean {fmt_num(d.mean, 1)}, median {fmt_num(d.p50, 1)}", fontsize=9)
    return None


def draw_reason_shift(ax: Axes, report: ComparisonReport) -> None:
    """Share of each side's declines and referrals citing each code (the 15 most cited)."""
    shift = report.reason_shift[:15]
    if not shift:
        return empty_chart(ax, "no declines or referrals")
    _paired_bars(
        ax,
        [f.code for f in shift],
        [f.champion_share or 0.0 for f in shift],
        [f.shadow_share or 0.0 for f in shift],
        _names(report),
        horizontal=True,
    )
    ax.set_xlabel("share of declines and referrals")
    return None


def draw_rule_hits(ax: Axes, report: ComparisonReport) -> None:
    """Hit rate of each policy rule, both sides."""
    hits = report.rule_hits
    if not hits:
        return empty_chart(ax, "no policy rules fired")
    _paired_bars(
        ax,
        [h.code for h in hits],
        [h.champion_rate or 0.0 for h in hits],
        [h.shadow_rate or 0.0 for h in hits],
        _names(report),
    )
    ax.set_ylabel("share of pairs")
    return None


def _group_bars(report: ComparisonReport) -> list[tuple[str, GroupRate, GroupRate]]:
    return [
        (f"{c.attribute}: {gc.group}", gc, gs)
        for c in report.disparate_impact
        for gc, gs in zip(c.champion.groups, c.shadow.groups, strict=True)
    ]


def draw_group_approval(ax: Axes, report: ComparisonReport) -> None:
    """Approval rate of every group, both sides (flagged groups outlined)."""
    bars = _group_bars(report)
    if not bars:
        return empty_chart(ax, "no monitoring data")
    _paired_bars(
        ax,
        [label for label, _, _ in bars],
        [gc.approval_rate or 0.0 for _, gc, _ in bars],
        [gs.approval_rate or 0.0 for _, _, gs in bars],
        _names(report),
        horizontal=True,
        flagged=[(gc.four_fifths, gs.four_fifths) for _, gc, gs in bars],
    )
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("approval rate (red outline: below four fifths of the reference group's)")
    return None


def draw_group_ratio(ax: Axes, report: ComparisonReport) -> None:
    """Approval-rate ratio of every group to its side's reference group, with the four-fifths line."""
    bars = _group_bars(report)
    if not bars:
        return empty_chart(ax, "no monitoring data")
    ratios = [(gc.ratio or 0.0, gs.ratio or 0.0) for _, gc, gs in bars]
    _paired_bars(
        ax,
        [label for label, _, _ in bars],
        [c for c, _ in ratios],
        [s for _, s in ratios],
        _names(report),
        horizontal=True,
        flagged=[(gc.four_fifths, gs.four_fifths) for _, gc, gs in bars],
    )
    t = report.thresholds
    ax.axvline(t.four_fifths, color=FLAG_COLOURS["four_fifths"], linestyle="--", linewidth=1)
    ax.set_xlim(0, max(1.05, max(max(r) for r in ratios) * 1.05))
    ax.set_xlabel(f"approval rate / reference group's (groups under {t.min_sample} decisions are not flagged)")
    return None


def draw_backtest(ax: Axes, report: ComparisonReport) -> None:
    """Observed bad rate by band, each side by its own bands."""
    bt = report.backtest
    if bt is None:
        return empty_chart(ax, "no outcomes posted")
    champion = {o.band: o.bad_rate or 0.0 for o in bt.champion.by_band}
    shadow = {o.band: o.bad_rate or 0.0 for o in bt.shadow.by_band}
    labels = [b for b in report.band_transitions.bands if b in champion or b in shadow]
    _paired_bars(
        ax, labels, [champion.get(b, 0.0) for b in labels], [shadow.get(b, 0.0) for b in labels], _names(report)
    )
    ax.set_ylabel("observed bad rate")
    ax.set_title(f"AUC {fmt_num(bt.champion.auc, 3)} vs {fmt_num(bt.shadow.auc, 3)}", fontsize=9)
    return None


# ---- HTML, PDF, dispatch ------------------------------------------------------------------------


def _meta(report: ComparisonReport, generated_at: datetime | None) -> str:
    c = report.counts
    return generated_meta(
        f"Shadow kind: {report.kind}; {c.pairs} pairs, {c.with_outcome} with an outcome; "
        f"{_names(report)[0]}: {side_label(report, c.champion_versions)}; "
        f"{_names(report)[1]}: {side_label(report, c.shadow_versions)}",
        generated_at,
    )


def render_comparison_html(report: ComparisonReport, generated_at: datetime | None = None) -> str:
    """A self-contained HTML page (charts as embedded PNGs, no external resources)."""
    return html_document(
        comparison_title(report),
        _meta(report, generated_at),
        key_figures(report),
        report.flags,
        report.notes,
        report,
        sections(report),
    )


def render_comparison_pdf(report: ComparisonReport, generated_at: datetime | None = None) -> bytes:
    """The same comparison as a PDF: a title page with the key figures, the charts, then the tables."""
    return pdf_document(
        f"{HEADINGS[report.kind]} report",
        comparison_title(report),
        _meta(report, generated_at),
        key_figures(report),
        report.flags,
        report.notes,
        report,
        sections(report),
        generated_at,
    )


def render_comparison(report: ComparisonReport, fmt: str, generated_at: datetime | None = None) -> bytes:
    """The comparison in ``fmt`` (html, pdf, json or csv) as bytes (media types: ``render.MEDIA_TYPES``)."""
    if fmt == "pdf":
        return render_comparison_pdf(report, generated_at)
    if fmt == "html":
        return render_comparison_html(report, generated_at).encode("utf-8")
    if fmt == "json":
        return render_comparison_json(report).encode("utf-8")
    if fmt == "csv":
        return render_comparison_csv(report).encode("utf-8")
    raise ValueError(f"unknown report format {fmt!r}; expected html, pdf, json or csv")
