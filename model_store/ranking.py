"""The reason ranking, once: which reason codes a scored application is given, in which order.

Part of the shared contract because two callers need the same answer: the decision engine
(``service.core.engine``), for every decision, and training, for the reason-code frequencies of the
hold-out set that the period report compares live frequencies with (``training.metrics.reason_baseline``).

Reason indices: every policy rule's code (policy order), then one code per reason group (spec order),
then each group's missing-value variant (the group's own code if it has none).

The ranking: every fired rule first, in policy order; then the reason groups whose attribution raises
the probability of default (> 0), largest first, **ties broken by group name**; model reasons only up to
``policy.max_reasons`` reasons in all (fired rules are always listed, however many). A group whose fields
were all not provided is given with its ``missing`` variant ("No information on ... was provided").
Pure and deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model_store.catalog import ReasonCatalog, ReasonCode
from model_store.policy import Policy
from model_store.spec import FeatureSpec


class ReasonRanking:
    """The reason ranking of one spec, policy and catalog (its tables built once)."""

    def __init__(self, spec: FeatureSpec, policy: Policy, catalog: ReasonCatalog) -> None:
        groups = spec.reason_groups
        self.groups = groups
        self.max_reasons = policy.max_reasons
        self.n_rules = len(policy.rules)
        group_codes = tuple(catalog.for_group(g) for g in groups)
        missing_codes = tuple(code.missing or code for code in group_codes)
        #: per reason index: the catalog entry
        self.entries: tuple[ReasonCode, ...] = (
            tuple(catalog.for_rule(r.code) for r in policy.rules) + group_codes + missing_codes
        )
        #: per reason index: its code
        self.codes = tuple(entry.code for entry in self.entries)
        group_fields = tuple(tuple(f.name for f in spec.fields if f.reason_group == g) for g in groups)
        #: per reason index: the fields behind it
        self.fields = tuple((r.field,) for r in policy.rules) + group_fields + group_fields
        # fields -> groups as a segment sum over fields ordered by group (stable: spec order within a group)
        group_of_field = np.asarray([groups.index(f.reason_group) for f in spec.fields], dtype=np.int64)
        self._fields_by_group = np.argsort(group_of_field, kind="stable").astype(np.intp)
        self._group_starts = np.flatnonzero(np.r_[True, np.diff(group_of_field[self._fields_by_group]) != 0])
        # the tie-break (each group's position in name order) and each group's reason index
        self._group_keys = (
            tuple(sorted(groups).index(g) for g in groups),
            tuple(self.n_rules + g for g in range(len(groups))),
        )
        # per group: its fields, when it has a missing-value variant to give if none of them was provided
        self._missing_variant = tuple(
            fields if code.missing is not None else () for fields, code in zip(group_fields, group_codes, strict=True)
        )
        self._any_missing_variant = any(self._missing_variant)

    def group_sums(self, field_attributions: np.ndarray) -> np.ndarray:
        """Field attributions [n, n_fields] summed into reason groups [n, n_groups] (spec order of groups)."""
        if field_attributions.shape[0] == 0:
            return np.zeros((0, len(self.groups)), dtype=np.float64)
        return np.add.reduceat(field_attributions[:, self._fields_by_group], self._group_starts, axis=1)

    def reasons(
        self, application: Mapping[str, Any], group_attributions: Sequence[float], fired: Sequence[int]
    ) -> tuple[int, ...]:
        """The reasons given to one application, as reason indices: ranked, missing variants applied."""
        ranked = self.rank(group_attributions, fired)
        if self._any_missing_variant:
            return tuple(self._as_given(index, application) for index in ranked)
        return ranked

    def rank(self, group_attributions: Sequence[float], fired: Sequence[int]) -> tuple[int, ...]:
        """The ranking, as reason indices (before missing variants)."""
        room = self.max_reasons - len(fired)
        if room <= 0:
            return tuple(fired)
        # (minus the attribution, the group's rank by name, its reason index): sorting these tuples is the ranking
        keyed = [
            (-value, rank, index)
            for value, rank, index in zip(group_attributions, *self._group_keys, strict=True)
            if value > 0.0
        ]
        keyed.sort()
        return (*fired, *(index for _, _, index in keyed[:room]))

    def _as_given(self, index: int, application: Mapping[str, Any]) -> int:
        """A group's missing-value variant when none of its fields was provided, else the reason itself."""
        group = index - self.n_rules
        if 0 <= group < len(self.groups):
            fields = self._missing_variant[group]
            if fields and all(application.get(name) is None for name in fields):
                return index + len(self.groups)
        return index
