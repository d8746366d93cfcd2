"""Reason stability: the shared definitions training measures and the service applies per decision.

Training (``training.stability``) measures, per model version, how often the top reason and the set of the
top reasons change under small perturbations of the inputs and across retrains, and writes the numbers to
``reason_stability.json`` (listed in the manifest with its hash) and the model card. It also derives the
**margin threshold** recorded in the manifest under ``reason_stability.margin_threshold``: the 90th
percentile, over the hold-out rows and their one-step perturbations, of the largest change of any reason
group's attribution (log-odds) that one perturbation caused.

A decision's reasons are **stable** (:func:`reasons_stable`) when both gaps that decide what it says are at
least that threshold: between the first and the second reason group (the top reason), and between the last
model reason given and the next group (what is in the list); the group after the list counts as 0 when
there is none (a group with no positive attribution is not a reason). A perturbation of typical size
could swap two groups closer than that, so the flag says the decision's reasons could read otherwise for
an application differing only by rounding. No model reasons given (only rules, or nothing adverse): stable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STABILITY_FILE = "reason_stability.json"
MANIFEST_KEY = "reason_stability"
MARGIN_QUANTILE = 0.9


def ranked_groups(group_attributions: Sequence[float], group_names: Sequence[str], n: int) -> tuple[int, ...]:
    """Indices of up to ``n`` groups with a positive attribution, largest first, ties broken by group name.

    The model-reason part of the engine's ranking (``DecisionEngine.rank_reasons``), without the rules.
    """
    keyed = sorted(
        (-float(v), name, i) for i, (v, name) in enumerate(zip(group_attributions, group_names, strict=True)) if v > 0.0
    )
    return tuple(i for _, _, i in keyed[:n])


def reasons_stable(group_attributions: Sequence[float], n_given: int, threshold: float) -> bool:
    """Whether the top reason and the list of model reasons given hold with a margin of at least ``threshold``."""
    if n_given <= 0:
        return True
    positive = sorted((float(v) for v in group_attributions if v > 0.0), reverse=True)
    padded = [*positive, 0.0, 0.0]
    top_gap = padded[0] - padded[1]
    cut_gap = padded[n_given - 1] - padded[n_given]
    return min(top_gap, cut_gap) >= threshold


def margin_threshold(manifest: Mapping[str, Any]) -> float | None:
    """The version's margin threshold from its manifest (None: the version was trained without the measurement)."""
    section = manifest.get(MANIFEST_KEY)
    if not isinstance(section, Mapping):
        return None
    value = section.get("margin_threshold")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
