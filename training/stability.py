"""Reason stability of a trained model version: how often its reasons change when they should not.

Measured at training on the hold-out rows with the version's own exact explainer (``TreeShap`` of the
exported ensemble, what the service explains with), reasons ranked as the engine ranks model reasons
(``model_store.stability.ranked_groups``: groups with a positive attribution, largest first, ties by
name; policy rules are left out, they do not depend on attributions):

* **perturbations**: each hold-out row is changed in one field at a time by the smallest step the field
  has: a numeric field by one rounding unit up and down (1 for an integer field, else its recourse
  ``step`` if it has one, else 1 % of its range), kept within its range; an ``ordered`` categorical field
  to the next and the previous code; other categorical fields and missing values are left alone. For each
  field: how often the **top reason** changes, how often the **set of the top reasons** (the policy's
  ``max_reasons``, 4 by default) changes, and the mean Jaccard similarity of the two sets. A field whose
  top-reason change rate exceeds ``unstable_rate`` is **flagged**.
* **seeds**: the champion family is retrained ``seeds`` times with ``random_state + k`` on a seed-drawn
  ``subsample`` of the training rows (with early stopping off and no feature subsampling a gradient-boosted
  fit depends on its rows, not its seed, so a seed alone would change nothing) and every hold-out row's top
  reason and top set are compared with the version's.
* **margin thresholds** for the per-decision flags (``model_store.stability``): the ``MARGIN_QUANTILE``
  quantile of the margins (first - second group; last reason given - next group, on the unchanged row) that
  a perturbation overturned (changed the top reason; changed the set).

Everything is deterministic given the model, the data and the config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from model_store.spec import FeatureSpec, Field
from model_store.stability import MARGIN_QUANTILE, margins, ranked_groups

Explain = Callable[[np.ndarray], np.ndarray]  # encoded rows -> attributions per encoded column


def perturbations(spec: FeatureSpec, application: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(field, changed application) for every one-step change of one field (see the module doc)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for field in spec.fields:
        value = application.get(field.name)
        if value is None:
            continue
        for changed in _neighbours(field, value):
            out.append((field.name, {**application, field.name: changed}))
    return out


def rounding_unit(field: Field) -> float:
    """A numeric field's smallest meaningful change: 1 for integers, else its recourse step, else 1 % of its range."""
    if field.dtype == "integer":
        return 1.0
    if field.recourse is not None and field.recourse.direction is not None:
        return field.recourse.step
    assert field.minimum is not None and field.maximum is not None
    return (field.maximum - field.minimum) / 100.0


def _neighbours(field: Field, value: Any) -> list[Any]:
    if field.kind == "categorical":
        if not field.ordered or value not in field.codes:
            return []
        index = field.codes.index(value)
        return [field.codes[i] for i in (index - 1, index + 1) if 0 <= i < len(field.codes)]
    unit = rounding_unit(field)
    assert field.minimum is not None and field.maximum is not None
    out: list[Any] = []
    for sign in (-1.0, 1.0):
        moved = float(value) + sign * unit
        if field.minimum <= moved <= field.maximum:
            out.append(round(moved) if field.dtype == "integer" else moved)
    return out


def group_attributions(spec: FeatureSpec, attributions: np.ndarray) -> np.ndarray:
    """Attributions per encoded column [n, n_columns] summed into reason groups [n, n_groups] (spec order)."""
    fields = spec.field_sums(attributions)
    groups = spec.reason_groups
    out = np.zeros((fields.shape[0], len(groups)), dtype=np.float64)
    for j, field in enumerate(spec.fields):
        out[:, groups.index(field.reason_group)] += fields[:, j]
    return out


def _tops(spec: FeatureSpec, groups: np.ndarray, k: int) -> list[tuple[int, ...]]:
    names = spec.reason_groups
    return [ranked_groups(row, names, k) for row in groups.tolist()]


def _jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    union = set(a) | set(b)
    return 1.0 if not union else len(set(a) & set(b)) / len(union)


def _rates(pairs: Sequence[tuple[tuple[int, ...], tuple[int, ...]]]) -> dict[str, Any]:
    n = len(pairs)
    if n == 0:
        return {"n": 0, "top_reason_change_rate": None, "top_set_change_rate": None, "mean_top_set_jaccard": None}
    top = sum(1 for a, b in pairs if a[:1] != b[:1])
    changed = sum(1 for a, b in pairs if set(a) != set(b))
    return {
        "n": n,
        "top_reason_change_rate": top / n,
        "top_set_change_rate": changed / n,
        "mean_top_set_jaccard": float(np.mean([_jaccard(a, b) for a, b in pairs])),
    }


def perturbation_stability(
    spec: FeatureSpec, explain: Explain, applications: Sequence[Mapping[str, Any]], k: int, unstable_rate: float
) -> dict[str, Any]:
    """Top-reason and top-set change rates under one-step perturbations, per field and overall, and the threshold."""
    base_groups = group_attributions(spec, explain(spec.encode(applications)))
    base_tops = _tops(spec, base_groups, k)
    rows: list[int] = []
    fields: list[str] = []
    changed: list[dict[str, Any]] = []
    for i, application in enumerate(applications):
        for name, perturbed in perturbations(spec, application):
            rows.append(i)
            fields.append(name)
            changed.append(perturbed)
    groups = (
        group_attributions(spec, explain(spec.encode(changed))) if changed else np.zeros((0, len(spec.reason_groups)))
    )
    tops = _tops(spec, groups, k)
    pairs_by_field: dict[str, list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}
    for row, name, top in zip(rows, fields, tops, strict=True):
        pairs_by_field.setdefault(name, []).append((base_tops[row], top))
    per_field = {}
    for field in spec.fields:
        rates = _rates(pairs_by_field.get(field.name, []))
        rates["flagged"] = rates["n"] > 0 and rates["top_reason_change_rate"] > unstable_rate
        per_field[field.name] = rates
    base_margins = [margins(row, len(top)) for row, top in zip(base_groups.tolist(), base_tops, strict=True)]
    overturned_top = [base_margins[r][0] for r, top in zip(rows, tops, strict=True) if top[:1] != base_tops[r][:1]]
    overturned_set = [base_margins[r][1] for r, top in zip(rows, tops, strict=True) if set(top) != set(base_tops[r])]
    overall = _rates([(base_tops[r], t) for r, t in zip(rows, tops, strict=True)])
    return {
        "rows": len(applications),
        "overall": overall,
        "fields": per_field,
        "flagged_fields": [name for name, rates in per_field.items() if rates["flagged"]],
        "unstable_rate": unstable_rate,
        "margin_quantile": MARGIN_QUANTILE,
        "top_margin_threshold": _quantile(overturned_top),
        "set_margin_threshold": _quantile(overturned_set),
        "top_reason_overturned": len(overturned_top),
        "set_overturned": len(overturned_set),
    }


def _quantile(values: Sequence[float]) -> float:
    """``MARGIN_QUANTILE`` quantile of the finite values (0 when there are none: nothing was overturned)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.quantile(finite, MARGIN_QUANTILE)) if finite else 0.0


def seed_stability(
    spec: FeatureSpec,
    explain: Explain,
    retrained: Sequence[tuple[int, Explain]],
    applications: Sequence[Mapping[str, Any]],
    k: int,
) -> dict[str, Any]:
    """Top reason and top set of each hold-out row under each retrained model, compared with the version's own."""
    X = spec.encode(applications)
    base = _tops(spec, group_attributions(spec, explain(X)), k)
    per_seed = []
    everything: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for seed, other in retrained:
        pairs = list(zip(base, _tops(spec, group_attributions(spec, other(X)), k), strict=True))
        everything.extend(pairs)
        per_seed.append({"random_state": seed, **_rates(pairs)})
    return {"retrains": len(retrained), "per_seed": per_seed, "overall": _rates(everything)}


def measure(
    spec: FeatureSpec,
    explain: Explain,
    applications: Sequence[Mapping[str, Any]],
    *,
    k: int,
    unstable_rate: float,
    retrained: Sequence[tuple[int, Explain]] | None,
    subsample: float,
) -> dict[str, Any]:
    """The version's reason-stability report (what ``reason_stability.json`` holds)."""
    return {
        "schema_version": 1,
        "top_set_size": k,
        "perturbations": perturbation_stability(spec, explain, applications, k, unstable_rate),
        "seeds": None
        if retrained is None
        else {"subsample": subsample, **seed_stability(spec, explain, retrained, applications, k)},
    }
