"""The model card: a Markdown document with PNG plots, written for a model-risk (SR 11-7) reviewer.

Everything in the card is read from the version's manifest and hold-out outputs, so the card can
never disagree with the evidence recorded beside it. What the data are (name, source, licence,
description, data-quality notes, cost matrix) comes from the training config's ``dataset`` section,
recorded in the manifest; the card names no data set of its own.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

FAMILY_TITLE = {
    "gbt": "Gradient-boosted trees with monotone constraints (champion family)",
    "scorecard": "WOE-binned logistic-regression scorecard (baseline / challenger family)",
}
_DATASET_ITEMS = (("name", "data set"), ("source", "source"), ("licence", "licence"), ("description", "description"))
PLOTS = {
    "roc": "plots/roc.png",
    "ks": "plots/ks.png",
    "calibration": "plots/calibration.png",
    "importance": "plots/importance.png",
}


def render(
    manifest: Mapping[str, Any],
    hashes: Mapping[str, str],
    plot_data: Mapping[str, Any],
    all_plot_data: Mapping[str, Mapping[str, Any]],
    *,
    stability: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, bytes]]:
    """Markdown text of the card and its plots ``{relative path: PNG bytes}``.

    ``stability`` is the version's reason-stability report (``training.stability``; the section is left out
    without one).
    """
    plots = _plots(manifest["family"], plot_data, all_plot_data)
    return _markdown(manifest, hashes, stability), plots


# ---- text ---------------------------------------------------------------------------------------
def _markdown(m: Mapping[str, Any], hashes: Mapping[str, str], stability: Mapping[str, Any] | None = None) -> str:
    family = m["family"]
    metrics = m["metrics"]
    hold = metrics["holdout"]
    cv = metrics["cv"]
    data = m["data"]
    out: list[str] = []
    add = out.append
    add(f"# Model card: {m['name']} {m['version']}\n")
    add(f"**{FAMILY_TITLE[family]}.** Created {m['created_at']} by the offline training pipeline.\n")
    add(
        _table(
            ["item", "value"],
            [
                ["model name / version", f"`{m['name']}` / `{m['version']}`"],
                ["family", family],
                ["feature spec", f"`{m['spec_version']}`"],
                ["policy (scaling, bands, rules)", f"`{m['policy_version']}`"],
                ["reason-code catalog", f"`{m['catalog_version']}`"],
                [
                    "ONNX interface",
                    f"`{m['onnx']['input']}` float32 [N, {len(m['columns'])}] -> `margin`, `probability_of_default` float32 [N]",
                ],
                ["hold-out AUC / Gini / KS", f"{hold['auc']:.3f} / {hold['gini']:.3f} / {hold['ks']:.3f}"],
                ["random state", str(m["random_state"])],
            ],
        )
    )

    add("## Intended use\n")
    add(
        "Estimate the probability that a consumer credit applicant defaults (a *bad* outcome in the training data), "
        "to support an approve / refer / decline decision under the versioned credit policy. The service turns the "
        "model's log-odds of default into an integer score (points to double the odds), a risk band and a decision, and "
        "gives reason codes computed from exact SHAP attributions of this very ONNX model.\n"
    )
    add(
        "**Out of scope:** fully automated declines without the policy's refer band and human review; populations, "
        "products or currencies other than those the training data describe (see Data); any use of the probability "
        "as a calibrated estimate outside the score range seen in validation; marketing or pricing.\n"
    )

    add("## Data\n")
    add(_dataset_text(m))
    target = data["target"]
    add(
        _table(
            ["item", "value"],
            [
                ["file", f"`{data['path']}`"],
                ["sha256", f"`{data['sha256']}`"],
                ["target", f"`{target['source_column']}`, bad (default) outcome `{target['bad_value']}`"],
                ["rows / bad rate", f"{data['rows']} / {data['bad_rate']:.1%}"],
                [
                    "training / hold-out rows",
                    f"{data['train_rows']} / {data['holdout_rows']} (stratified, hold-out fraction {data['holdout_fraction']:g})",
                ],
                ["cross-validation", f"stratified {data['cv_folds']}-fold on the training rows"],
            ],
        )
    )
    add(_checks_text(data["checks"]))

    add("## Inputs and prohibited-basis attributes\n")
    excluded = ", ".join(f"`{n}`" for n in m["monitoring_only_excluded"]) or "none"
    add(
        f"The model uses the {len(m['fields'])} fields of the feature spec (one numeric column per numeric field, one 0/1 "
        f"column per category, {len(m['columns'])} columns in all). Prohibited-basis attributes are **excluded** from the "
        f"model and from reason codes: {excluded}; training refuses a spec that lists any of them as an input. They may be "
        "kept beside decisions for fairness monitoring only.\n"
    )
    add(_monotone_text(m))

    add("## Model\n")
    add(_params_text(m))

    add("## Performance\n")
    add("Hold-out metrics are computed from the exported ONNX model's outputs; CV metrics refit on each fold.\n")
    rows = []
    for key, label in (
        ("auc", "AUC"),
        ("gini", "Gini"),
        ("ks", "KS"),
        ("brier", "Brier score"),
        ("log_loss", "log loss"),
    ):
        rows.append([label, f"{hold[key]:.4f}", f"{cv[key]['mean']:.4f} ± {cv[key]['sd']:.4f}"])
    add(_table(["metric", "hold-out", f"CV mean ± sd ({data['cv_folds']} folds)"], rows))
    add(f"![ROC]({PLOTS['roc']}) ![KS]({PLOTS['ks']})\n")
    add("### Champion versus baseline\n")
    add(_comparison_text(m))

    add("## Calibration (hold-out deciles of predicted probability of default)\n")
    add(
        _table(
            ["decile", "rows", "PD range", "mean predicted PD", "observed bad rate"],
            [
                [
                    str(r["decile"]),
                    str(r["count"]),
                    f"{r['min_pd']:.3f}–{r['max_pd']:.3f}",
                    f"{r['mean_pd']:.3f}",
                    f"{r['observed_bad_rate']:.3f}",
                ]
                for r in metrics["calibration"]
            ],
        )
    )
    add(f"![Calibration]({PLOTS['calibration']})\n")

    decisions = metrics["decisions"]
    add("## Policy bands and decisions (hold-out)\n")
    add(
        "Scores use the policy's points-to-double-odds scaling; decisions combine the band's decision with the policy's "
        "hard rules (most severe wins).\n"
    )
    add(
        _table(
            ["band", "min score", "decision", "rows", "share", "bads", "observed bad rate"],
            [
                [
                    b["band"],
                    str(b["min_score"]),
                    b["decision"],
                    str(b["count"]),
                    f"{b['share']:.1%}",
                    str(b["bads"]),
                    _rate(b["observed_bad_rate"]),
                ]
                for b in m["bands"]["policy"]
            ],
        )
    )
    c = decisions["confusion"]
    add(
        _table(
            ["", "good (observed)", "bad (observed)"],
            [
                ["approved", str(c["approved_good"]), str(c["approved_bad"])],
                ["referred or declined", str(c["not_approved_good"]), str(c["not_approved_bad"])],
            ],
        )
    )
    add(_cost_text(decisions["cost"]))
    add(
        "**Proposed band cut-offs (advisory).** Equal-population bands from the hold-out score quantiles, with the bad "
        "rate observed in each. The served policy is unchanged; policy owners decide whether to adopt new cut-offs.\n"
    )
    add(
        _table(
            ["band", "current min score", "proposed min score", "rows", "observed bad rate"],
            [
                [
                    b["band"],
                    str(b["current_min_score"]),
                    str(b["proposed_min_score"]),
                    str(b["count"]),
                    _rate(b["observed_bad_rate"]),
                ]
                for b in m["bands"]["proposed"]["bands"]
            ],
        )
    )

    add("## Global feature importance\n")
    add("Mean absolute SHAP value per field on the hold-out (log-odds; one-hot columns summed per field first).\n")
    add(_table(["field", "mean abs SHAP"], [[r["field"], f"{r['mean_abs_shap']:.4f}"] for r in m["importance"]]))
    add(f"![Importance]({PLOTS['importance']})\n")

    add("## Explanation and export parity evidence\n")
    p = m["parity"]
    add(
        f"Proved at export on every one of the {p['rows']} hold-out rows; any failure would have aborted the export "
        "and nothing would have been written.\n"
    )
    reference = (
        "shap.TreeExplainer (tree_path_dependent) on the scikit-learn model"
        if family == "gbt"
        else (
            "shap.LinearExplainer on the logistic regression over WOE features, training WOE matrix as background "
            "(compared per field)"
        )
    )
    add(
        _table(
            ["check", "max abs error", "tolerance"],
            [
                ["ONNX probability vs scikit-learn predict_proba", f"{p['onnx_vs_sklearn_probability']:.2e}", "1e-6"],
                [
                    "sum of attributions + expected value vs ONNX margin",
                    f"{p['attribution_sum_vs_onnx_margin']:.2e}",
                    "1e-5",
                ],
                [f"attributions vs {reference}", f"{p['attributions_vs_shap']:.2e}", "1e-6"],
                ["expected value vs shap", f"{p['expected_value_vs_shap']:.2e}", "1e-6"],
                [
                    "explainer artifact margin vs ONNX margin (float32 graph)",
                    f"{p['artifact_margin_vs_onnx_margin']:.2e}",
                    "(information)",
                ],
            ],
        )
    )

    if stability is not None:
        out.extend(_stability_section(stability))

    add("## Limitations\n")
    for line in _limitations(m):
        add(f"- {line}")
    add("")

    add("## Reproducibility\n")
    add(
        "Same configuration, data and random state give identical predictions (tested). Library versions and file "
        "hashes (sha256):\n"
    )
    add(_table(["library", "version"], [[k, v] for k, v in sorted(m["libraries"].items())]))
    add(_table(["file", "sha256"], [[f"`{k}`", f"`{v}`"] for k, v in sorted(hashes.items())]))
    add(
        "The manifest lists the hash of every file of this version (including this card and its plots); "
        "`credit-decision models verify` recomputes them.\n"
    )
    return "\n".join(out).rstrip() + "\n"


def _monotone_text(m: Mapping[str, Any]) -> str:
    monotone = [(c, d) for c, d in zip(m["columns"], m["params"].get("monotonic_cst", []), strict=False) if d]
    if m["family"] == "gbt":
        items = ", ".join(f"`{c}` ({'+' if d > 0 else '−'})" for c, d in monotone)
        return (
            f"**Monotone constraints** (enforced by the booster, from the spec): {items or 'none'}. `+` means a higher "
            "value never lowers the probability of default, `−` that it never raises it, all else equal.\n"
        )
    extra = m["scorecard"]
    text = (
        "**Monotone constraints** are imposed on the WOE binning of numeric fields with a spec direction (optbinning "
        "monotonic event-rate trend); they carry over to the score only if the field's coefficient is negative.\n"
    )
    if extra["monotone_fields_reversed"]:
        text += f"\n**Warning:** the coefficient of {extra['monotone_fields_reversed']} has the wrong sign, so the score is not monotone in it.\n"
    else:
        text += "\nAll constrained fields have negative coefficients, so the score honours every constraint.\n"
    return text


def _params_text(m: Mapping[str, Any]) -> str:
    params = {k: v for k, v in m["params"].items() if k != "monotonic_cst"}
    text = "Parameters: " + ", ".join(f"`{k}={v}`" for k, v in sorted(params.items())) + ".\n"
    e = m["explainer"]
    if m["family"] == "gbt":
        return (
            text
            + f"\nscikit-learn `HistGradientBoostingClassifier` on the encoded columns, no early stopping (deterministic), "
            f"{m['gbt']['n_iter']} boosting iterations. Exported with skl2onnx; the explainer artifact holds the "
            f"{e['n_trees']} fitted trees ({e['n_nodes']} nodes) with their training covers.\n"
        )
    extra = m["scorecard"]
    text += (
        "\nEach field is binned with optbinning `OptimalBinning`, replaced by the weight of evidence (WOE = ln(share of "
        "goods / share of bads)) of its bin, and a scikit-learn `LogisticRegression` is fitted on the WOE features. "
        f"It is stored as {e['n_trees']} trees, one per field, whose leaves are the field's bins with value "
        "coefficient × WOE; the ONNX graph is built from those trees. Categories unseen in training are pooled "
        "with the field's most populous bin.\n"
    )
    if extra["reversed_sign_fields"]:
        text += (
            f"\nFields with a positive coefficient (the multivariate effect reverses the univariate WOE trend, a sign "
            f"of collinearity or a weak field): {', '.join(f'`{n}`' for n in extra['reversed_sign_fields'])}. A "
            "production scorecard would drop or re-bin them; they are kept so the baseline uses the same inputs as "
            "the champion.\n"
        )
    rows = [[f, f"{c:+.4f}"] for f, c in extra["coefficients"].items()]
    text += "\n" + _table(["field", "coefficient on WOE"], [["(intercept)", f"{extra['intercept']:+.4f}"], *rows])
    return text


def _comparison_text(m: Mapping[str, Any]) -> str:
    comp = m["metrics"]["comparison"]
    gbt, sc = comp["gbt"], comp["scorecard"]
    cv = m["metrics"]["cv"]["auc"]
    text = _table(
        ["family", "hold-out AUC", "CV mean AUC"],
        [[f, f"{comp[f]['holdout_auc']:.4f}", f"{comp[f]['cv_auc_mean']:.4f}"] for f in ("gbt", "scorecard")],
    )
    diff = gbt["holdout_auc"] - sc["holdout_auc"]
    if diff >= 0:
        text += f"\nThe champion's hold-out AUC is {diff:.4f} higher than the scorecard's.\n"
    else:
        text += (
            f"\n**The champion's hold-out AUC is lower than the scorecard's by {-diff:.4f}.** With "
            f"{m['data']['holdout_rows']} hold-out rows the AUC's sampling error is a few hundredths (the CV standard "
            f"deviation of this model's AUC is {cv['sd']:.4f}), so the gap is within noise rather than evidence that "
            f"the scorecard ranks better. On {m['data']['rows']:,} rows a coarse WOE binning is a strong, low-variance "
            "inductive bias, while the boosted trees are held back by monotone constraints, shallow trees and no tuning on the "
            "hold-out. The champion is kept for its monotone guarantees and nonlinear interactions; "
            "the scorecard stays as the benchmark challenger.\n"
        )
    return text


def _limitations(m: Mapping[str, Any]) -> list[str]:
    data = m["data"]
    bads = round(data["rows"] * data["bad_rate"])
    notes = (m.get("dataset") or {}).get("notes") or []
    lines = [
        f"Sample size: {data['rows']:,} applications with {bads:,} bad outcomes ({data['train_rows']:,} for "
        f"training, {data['holdout_rows']:,} held out); hold-out metrics carry sampling error (compare the CV "
        "standard deviations) and cut-offs derived from them are advisory only.",
        "Data quality: "
        + (
            f"the training config records {len(notes)} known issue(s) with the data, listed under Data; labels, and "
            "reason texts that rely on them, are only as good as the data's coding."
            if notes
            else "the training config records no known data-quality issues; that is not evidence that there are none."
        ),
        f"Representativeness: the training bad rate is {data['bad_rate']:.1%}; probabilities are calibrated to the "
        "training sample, not to any current population, so recalibrate before use where the portfolio's bad rate "
        "or mix differs.",
        "A model input that is a protected characteristic under some law (age, under Regulation B, where an "
        "empirically derived, demonstrably sound system does not assign older applicants a negative value) needs a "
        "documented justification; a monotone constraint from the spec can guarantee its direction for the "
        "champion. Fair-lending review of disparate impact must use the monitoring-only attributes.",
        "Reason codes explain the model, not causation; SHAP attributions with tree_path_dependent weighting depend "
        "on the training distribution recorded in the node covers.",
    ]
    if data["checks"]["dropped_rows"]:
        lines.insert(
            2,
            f"Dropped rows: {data['checks']['dropped_rows']:,} data rows the API would refuse were left out of "
            "training (see Data); if they differ systematically from the rest, the model has not seen that part "
            "of the population.",
        )
    if data["checks"]["leakage"]["fields"]:
        lines.insert(
            0,
            "**Possible target leakage** (see Data): the metrics above may be far better than the "
            "model will do on new applications.",
        )
    return lines


def _dataset_text(m: Mapping[str, Any]) -> str:
    """The training config's description of the data, or a plain statement that it gives none."""
    dataset = m.get("dataset") or {}
    rows = [[label, _cell(dataset[key])] for key, label in _DATASET_ITEMS if dataset.get(key)]
    notes = dataset.get("notes") or []
    if not rows and not notes:
        return (
            "**The training config gives no description of the data** (no `dataset` section with a name, source, "
            "licence or description): this card cannot say what population, period or products the model was "
            "trained on.\n"
        )
    text = _table(["item", "value"], rows) if rows else "The training config names no data set.\n"
    if notes:
        text += "\n**Data-quality notes** (from the training config):\n\n" + "".join(f"- {_cell(n)}\n" for n in notes)
    return text


def _checks_text(checks: Mapping[str, Any]) -> str:
    """Training-data checks: invalid rows (refused or dropped, per reason) and leakage warnings."""
    leakage = checks["leakage"]
    text = (
        f"**Data checks.** Every data row was translated with the feature spec and every value checked with the "
        f"same field checks the API applies; invalid rows: `{checks['on_invalid']}`. "
    )
    if checks["dropped_rows"]:
        first = ", ".join(str(r) for r in checks["first_dropped_rows"])
        text += (
            f"**{checks['dropped_rows']:,} of {checks['rows_read']:,} data rows were dropped** (first data rows "
            f"{first}; the header not counted):\n\n"
            + _table(["reason", "rows"], [[_cell(k), f"{n:,}"] for k, n in checks["dropped_by_reason"].items()])
        )
    else:
        text += f"All {checks['rows_read']:,} data rows were valid.\n"
    if leakage["fields"]:
        text += (
            f"\n**Warning: possible target leakage.** These fields alone separate bad from good with a univariate "
            f"AUC of at least {leakage['auc_threshold']:g}; check that each is known when an application is "
            "decided, not recorded after the outcome:\n\n"
            + _table(
                ["field", "source column", "univariate AUC"],
                [[f"`{x['field']}`", f"`{x['source_column']}`", f"{x['auc']:.3f}"] for x in leakage["fields"]],
            )
        )
    else:
        text += (
            f"\nNo field alone reaches a univariate AUC of {leakage['auc_threshold']:g}: no single field gives the "
            "outcome away.\n"
        )
    return text


def _cost_text(cost: Mapping[str, Any] | None) -> str:
    if cost is None:
        return (
            "**Expected cost:** left out: the training config gives no cost matrix (`dataset.cost_matrix` with "
            "`false_approve` and `false_decline`).\n"
        )
    return (
        f"**Expected cost:** {cost['expected_cost_per_application']:.3f} per application "
        f"(approving everyone would cost {cost['approve_all_cost_per_application']:.3f}). Cost matrix from the "
        f"training config: {cost['convention']}\n"
    )


def _stability_section(report: Mapping[str, Any]) -> list[str]:
    """The "Reason stability" section: how often the reasons change under small changes and across retrains."""
    k = report["top_set_size"]
    perturbed = report["perturbations"]
    seeds = report["seeds"]
    overall = perturbed["overall"]
    out = ["## Reason stability\n"]
    out.append(
        f"How often the reasons change when they should not, on the {perturbed['rows']} hold-out rows with this "
        "version's exact explainer (model reasons ranked as the service ranks them; policy rules left out). Each "
        "row is changed in one field at a time by one rounding unit (1 for an integer field, else the field's "
        "recourse step or 1 % of its range) up and down, or to the next and previous code of an ordered category; "
        f"the top reason and the set of the top {k} reasons are compared with the unchanged row's "
        "(`reason_stability.json` holds every number).\n"
    )
    rows = [
        [
            "one-step perturbations",
            str(overall["n"]),
            _rate(overall["top_reason_change_rate"]),
            _rate(overall["top_set_change_rate"]),
            _number(overall["mean_top_set_jaccard"]),
        ]
    ]
    if seeds is not None:
        for entry in seeds["per_seed"]:
            rows.append(
                [
                    f"retrain, random state {entry['random_state']} ({seeds['subsample']:.0%} of the training rows)",
                    str(entry["n"]),
                    _rate(entry["top_reason_change_rate"]),
                    _rate(entry["top_set_change_rate"]),
                    _number(entry["mean_top_set_jaccard"]),
                ]
            )
    out.append(_table(["compared with", "rows", "top reason changed", f"top-{k} set changed", "mean Jaccard"], rows))
    if seeds is None:
        out.append("Retrains with other seeds: not measured for this family (measured for the champion family).\n")
    flagged = perturbed["flagged_fields"]
    out.append(
        f"Per perturbed field; a field is **flagged** when its perturbations change the top reason of more than "
        f"{perturbed['unstable_rate']:.0%} of the rows. Flagged: "
        + (", ".join(f"`{name}`" for name in flagged) if flagged else "none")
        + ".\n"
    )
    out.append(
        _table(
            ["field", "perturbations", "top reason changed", f"top-{k} set changed", "mean Jaccard", "flagged"],
            [
                [
                    name,
                    str(r["n"]),
                    _rate(r["top_reason_change_rate"]),
                    _rate(r["top_set_change_rate"]),
                    _number(r["mean_top_set_jaccard"]),
                    "**yes**" if r["flagged"] else "",
                ]
                for name, r in perturbed["fields"].items()
                if r["n"]
            ],
        )
    )
    out.append(
        f"**Per-decision flags.** {perturbed['top_reason_overturned']} of the perturbations changed the top reason "
        f"and {perturbed['set_overturned']} the top-{k} set; the {perturbed['margin_quantile']:.0%} quantile of the "
        "margins they overturned (on the unchanged row) is the threshold: "
        f"{perturbed['top_margin_threshold']:.4f} log-odds between the first and second reason group, "
        f"{perturbed['set_margin_threshold']:.4f} between the last reason given and the next group. The service "
        "answers `reason_stability: {top_reason, reason_set}` per decision: false when its margin is below the "
        "threshold, so that a rounding-size change of one input was seen to change reasons that close.\n"
    )
    return out


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Config text on one Markdown line: whitespace runs (line breaks too) as one space, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


# ---- plots --------------------------------------------------------------------------------------
def _plots(family: str, data: Mapping[str, Any], all_data: Mapping[str, Mapping[str, Any]]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for fam, d in all_data.items():
        fpr, tpr = d["roc"]
        ax.plot(fpr, tpr, lw=2 if fam == family else 1, label=f"{fam}")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set(
        xlabel="false positive rate (goods flagged)", ylabel="true positive rate (bads caught)", title="ROC, hold-out"
    )
    ax.legend(loc="lower right")
    out[PLOTS["roc"]] = _png(fig, plt)

    y, p = np.asarray(data["y"]), np.asarray(data["probability"])
    grid = np.sort(np.unique(p))
    cum_bad = np.searchsorted(np.sort(p[y == 1]), grid, side="right") / max(1, int((y == 1).sum()))
    cum_good = np.searchsorted(np.sort(p[y == 0]), grid, side="right") / max(1, int((y == 0).sum()))
    k = int(np.argmax(np.abs(cum_good - cum_bad)))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.step(grid, cum_good, where="post", label="goods")
    ax.step(grid, cum_bad, where="post", label="bads")
    ax.vlines(
        grid[k],
        cum_bad[k],
        cum_good[k],
        colors="black",
        linestyles="--",
        label=f"KS = {abs(cum_good[k] - cum_bad[k]):.3f}",
    )
    ax.set(xlabel="predicted probability of default", ylabel="cumulative share", title=f"KS, hold-out ({family})")
    ax.legend(loc="lower right")
    out[PLOTS["ks"]] = _png(fig, plt)

    order = np.argsort(p, kind="stable")
    chunks = np.array_split(order, 10)
    pred = [p[c].mean() for c in chunks if c.size]
    obs = [y[c].mean() for c in chunks if c.size]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.plot(pred, obs, marker="o")
    ax.set(xlabel="mean predicted PD (decile)", ylabel="observed bad rate", title=f"Calibration, hold-out ({family})")
    out[PLOTS["calibration"]] = _png(fig, plt)

    imp = list(reversed(data["importance"]))
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(imp) + 1.2))
    ax.barh([r["field"] for r in imp], [r["mean_abs_shap"] for r in imp])
    ax.set(xlabel="mean |SHAP| (log-odds)", title=f"Global importance ({family})")
    out[PLOTS["importance"]] = _png(fig, plt)
    return out


def _png(fig: Any, plt: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
