"""Validation evidence: discrimination, calibration, decisions at the policy cut-offs, drift baselines.

The decision analysis counts approvals against refer/decline (a *refer* is not an automatic approval);
what those counts cost is the training config's cost matrix (:class:`training.config.CostMatrix`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, roc_curve

from model_store.catalog import ReasonCatalog
from model_store.policy import Policy
from model_store.ranking import ReasonRanking
from model_store.spec import FeatureSpec
from model_store.vocabulary import ACTIONS


def discrimination(y: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """AUC, Gini, KS, Brier score and log loss of predicted probabilities of default."""
    y = np.asarray(y, dtype=np.int64)
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-15, 1 - 1e-15)
    auc = float(roc_auc_score(y, p))
    fpr, tpr, _ = roc_curve(y, p)
    return {
        "auc": auc,
        "gini": 2.0 * auc - 1.0,
        "ks": float(np.max(tpr - fpr)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
    }


def summarize_folds(folds: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of each metric over CV folds."""
    keys = list(folds[0])
    out = {}
    for k in keys:
        values = np.asarray([f[k] for f in folds], dtype=np.float64)
        out[k] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return out


def calibration_table(y: np.ndarray, probability: np.ndarray, n_bins: int = 10) -> list[dict[str, float]]:
    """Rows sorted by predicted PD and cut into deciles: count, mean predicted PD, observed bad rate."""
    order = np.argsort(probability, kind="stable")
    out = []
    for k, idx in enumerate(np.array_split(order, n_bins)):
        if idx.size == 0:
            continue
        out.append(
            {
                "decile": k + 1,
                "count": int(idx.size),
                "min_pd": float(probability[idx].min()),
                "max_pd": float(probability[idx].max()),
                "mean_pd": float(probability[idx].mean()),
                "observed_bad_rate": float(np.mean(y[idx])),
            }
        )
    return out


def decisions(
    policy: Policy, applications: Sequence[Mapping[str, Any]], margin: np.ndarray
) -> tuple[np.ndarray, list[str], list[str]]:
    """Scores, bands and final decisions (band decision combined with hard rules) per application."""
    scores = policy.scaling.scores(np.asarray(margin, dtype=np.float64))
    band = policy.band_indices(scores)
    action = policy.action_indices(band, policy.fired_matrix(policy.rule_values(applications), len(applications)))
    return scores, [policy.bands[b].band for b in band.tolist()], [ACTIONS[a] for a in action.tolist()]


def decision_analysis(
    policy: Policy, applications: Sequence[Mapping[str, Any]], y: np.ndarray, margin: np.ndarray
) -> dict[str, Any]:
    """Confusion at approve vs refer/decline, per-band and per-decision bad rates."""
    y = np.asarray(y, dtype=np.int64)
    _, bands, actions = decisions(policy, applications, margin)
    act = np.asarray(actions)
    approved = act == "approve"
    confusion = {
        "approved_good": int(np.sum(approved & (y == 0))),
        "approved_bad": int(np.sum(approved & (y == 1))),
        "not_approved_good": int(np.sum(~approved & (y == 0))),
        "not_approved_bad": int(np.sum(~approved & (y == 1))),
    }
    per_decision = {}
    for action in ("approve", "refer", "decline"):
        m = act == action
        per_decision[action] = {
            "count": int(m.sum()),
            "bads": int(y[m].sum()),
            "bad_rate": float(y[m].mean()) if m.any() else None,
        }
    band_arr = np.asarray(bands)
    per_band = []
    for band in policy.bands:
        m = band_arr == band.band
        per_band.append(
            {
                "band": band.band,
                "min_score": band.min_score,
                "decision": band.decision,
                "count": int(m.sum()),
                "share": float(m.mean()),
                "bads": int(y[m].sum()),
                "observed_bad_rate": float(y[m].mean()) if m.any() else None,
                "approved_bad": int(np.sum(m & approved & (y == 1))),
                "not_approved_good": int(np.sum(m & ~approved & (y == 0))),
            }
        )
    return {
        "confusion": confusion,
        "per_decision": per_decision,
        "per_band": per_band,
    }


def proposed_band_cutoffs(policy: Policy, y: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Advisory cut-offs: equal-population bands from the hold-out score quantiles, with observed bad rates.

    Policy owners compare them with the configured cut-offs; the served policy is unchanged.
    """
    y = np.asarray(y, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.int64)
    n_bands = len(policy.bands)
    # best band first: band k starts at the (1 - (k+1)/n_bands) quantile of the score
    cuts = [int(np.ceil(np.quantile(scores, 1.0 - (k + 1) / n_bands))) for k in range(n_bands - 1)]
    cuts = [*cuts, policy.scaling.min_score]
    rows = []
    upper = policy.scaling.max_score + 1
    for band, lo in zip(policy.bands, cuts, strict=True):
        lo = min(lo, upper - 1)
        m = (scores >= lo) & (scores < upper)
        rows.append(
            {
                "band": band.band,
                "current_min_score": band.min_score,
                "proposed_min_score": int(lo),
                "count": int(m.sum()),
                "observed_bad_rate": float(y[m].mean()) if m.any() else None,
            }
        )
        upper = lo
    return {"method": "equal-population bands from hold-out score quantiles", "advisory": True, "bands": rows}


def field_importance(field_attributions: np.ndarray, field_names: Sequence[str]) -> list[dict[str, Any]]:
    """Mean |SHAP| per field (one-hot columns summed before the absolute value), largest first."""
    mean_abs = np.mean(np.abs(field_attributions), axis=0)
    order = sorted(range(len(field_names)), key=lambda i: (-mean_abs[i], field_names[i]))
    return [{"field": field_names[i], "mean_abs_shap": float(mean_abs[i])} for i in order]


def training_baseline(
    spec: FeatureSpec, applications: Sequence[Mapping[str, Any]], holdout_scores: np.ndarray, policy: Policy
) -> dict[str, Any]:
    """Reference distributions for drift monitoring (PSI / CSI): training fields, hold-out scores.

    Every share is a share of all training rows: a field's ``missing`` is the share whose value was
    missing (None), so its ``shares`` and ``missing`` sum to 1 (format: ``baseline_from_reference``).
    """
    fields: dict[str, Any] = {}
    n = len(applications)
    for f in spec.fields:
        values = [a.get(f.name) for a in applications]
        present = [v for v in values if v is not None]
        missing = (n - len(present)) / n if n else 0.0
        if f.kind == "numeric":
            distribution = _numeric_distribution(np.asarray(present, dtype=np.float64), n)
            fields[f.name] = {"kind": "numeric", **distribution, "missing": missing}
        else:
            shares = {c: present.count(c) / n for c in f.codes} if n else {c: 0.0 for c in f.codes}
            fields[f.name] = {"kind": "categorical", "shares": shares, "missing": missing}
    scores = np.asarray(holdout_scores, dtype=np.float64)
    bands = [policy.band_for(int(s)).band for s in scores]
    return {
        "bin_rule": "numeric bins are right-closed: bin 0 holds x <= edges[0], bin i holds "
        "edges[i-1] < x <= edges[i], the last bin holds x > edges[-1]; missing values (None) are the "
        "field's `missing` share; every share is a share of all rows",
        "training_rows": n,
        "fields": fields,
        "score": {
            "source": "hold-out",
            "rows": len(scores),
            **_numeric_distribution(scores, len(scores)),
            "band_shares": {b.band: bands.count(b.band) / len(bands) for b in policy.bands},
        },
    }


def reason_baseline(
    spec: FeatureSpec,
    policy: Policy,
    catalog: ReasonCatalog,
    applications: Sequence[Mapping[str, Any]],
    margin: np.ndarray,
    attributions: np.ndarray,
) -> dict[str, Any]:
    """How often each reason code is given to the hold-out set's declines and referrals (the period report's
    reason-drift baseline).

    Each hold-out application is decided as the service would (policy band and rules on its score, the one
    reason ranking of :class:`model_store.ranking.ReasonRanking` on its exact attributions); ``counts[code]``
    is the number of declines and referrals citing the code (once each), ``adverse_decisions`` their number:
    the same definition as ``service.reports.core.cited_counts``.
    """
    ranking = ReasonRanking(spec, policy, catalog)
    groups = ranking.group_sums(spec.field_sums(attributions))
    scores = policy.scaling.scores(np.asarray(margin, dtype=np.float64))
    # the engine's arrays over the whole set: actions, fired rules and model reasons (-1 past the last given)
    n = len(applications)
    fired = policy.fired_matrix(policy.rule_values(applications), n)
    action = policy.action_indices(policy.band_indices(scores), fired)
    model = ranking.ranked(groups, fired, spec.encode(applications))
    fired_rows = np.zeros((n, len(policy.rules)), dtype=bool) if fired is None else fired
    counts = dict.fromkeys(sorted(set(ranking.codes)), 0)
    adverse = 0
    for i in np.flatnonzero(action != ACTIONS.index("approve")).tolist():
        adverse += 1
        given = [*np.flatnonzero(fired_rows[i]).tolist(), *(k for k in model[i].tolist() if k >= 0)]
        for code in {ranking.codes[k] for k in given}:
            counts[code] += 1
    return {
        "source": "hold-out",
        "definition": "declines and referrals citing each code (once per decision), of all declines and referrals",
        "decisions": len(applications),
        "adverse_decisions": adverse,
        "counts": counts,
    }


def _numeric_distribution(values: np.ndarray, rows: int) -> dict[str, Any]:
    """Decile edges of the present ``values`` and each bin's share of all ``rows`` (missing ones included)."""
    if values.size == 0:
        return {"edges": [], "shares": [0.0]}
    edges = np.unique(np.quantile(values, np.linspace(0.1, 0.9, 9)))
    bins = np.searchsorted(edges, values, side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return {"edges": [float(e) for e in edges], "shares": [float(c) / rows for c in counts]}
