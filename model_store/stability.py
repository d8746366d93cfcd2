"""Reason stability: the shared definitions training measures and the service applies per decision.

Training (``training.stability``) measures, per model version, how often the top reason and the set of the
top reasons change under small perturbations of the inputs and across retrains, and writes the numbers to
``reason_stability.json`` (listed in the manifest with its hash) and the model card. From the same
perturbations it derives two **margin thresholds**, recorded in the manifest under ``reason_stability``:

* ``top_margin_threshold``: the ``MARGIN_QUANTILE`` quantile of the margins between the first and the second
  reason group (log-odds, on the unchanged hold-out row) that a one-step perturbation overturned (changed the
  top reason);
* ``set_margin_threshold``: the same quantile of the margins between the last reason in the list and the next
  group that a perturbation overturned (changed the set of the top reasons).

A decision's :class:`ReasonStability` (:func:`reason_stability`) says whether its **top reason** and its
**reason set** clear those margins: the gap between its first and second group is at least
``top_margin_threshold``, and the gap between the last model reason given and the next group at least
``set_margin_threshold`` (the group after the list counts as 0 when there is none: a group with no positive
attribution is not a reason). Below them, reasons of that closeness were seen to change under a rounding-size
change of one input at training. No model reasons given (only rules, or nothing adverse): both hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class ReasonStability:
    """Whether a decision's top reason and its set of model reasons clear the version's margin thresholds."""

    top_reason: bool
    reason_set: bool

    def to_json(self) -> dict[str, bool]:
        """The stored and answered form."""
        return {"top_reason": self.top_reason, "reason_set": self.reason_set}


@dataclass(frozen=True, slots=True)
class MarginThresholds:
    """A version's two margin thresholds (log-odds)."""

    top: float
    set: float


def margins(group_attributions: Sequence[float], n_given: int) -> tuple[float, float]:
    """(first - second, last given - next) of the positive group attributions; (inf, inf) with no reason given."""
    if n_given <= 0:
        return math.inf, math.inf
    padded = [*sorted((float(v) for v in group_attributions if v > 0.0), reverse=True), 0.0, 0.0]
    return padded[0] - padded[1], padded[n_given - 1] - padded[n_given]


def reason_stability(
    group_attributions: Sequence[float], n_given: int, thresholds: MarginThresholds
) -> ReasonStability:
    """Whether the top reason and the list of ``n_given`` model reasons hold by the version's thresholds."""
    top, cut = margins(group_attributions, n_given)
    return ReasonStability(top_reason=top >= thresholds.top, reason_set=cut >= thresholds.set)


def margin_thresholds(manifest: Mapping[str, Any]) -> MarginThresholds | None:
    """The version's thresholds from its manifest (None: the version was trained without the measurement)."""
    section = manifest.get(MANIFEST_KEY)
    if not isinstance(section, Mapping):
        return None
    values = [section.get("top_margin_threshold"), section.get("set_margin_threshold")]
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        return None
    return MarginThresholds(top=float(values[0]), set=float(values[1]))  # type: ignore[arg-type]
