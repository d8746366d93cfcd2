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
        self._policy = policy
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
        self._spec = spec
        # the ranking's tie-break: the groups in name order, and each one's reason index
        by_name = sorted(range(len(groups)), key=groups.__getitem__)
        self._by_name = np.asarray(by_name, dtype=np.intp)
        self._reason_by_name = np.asarray([self.n_rules + g for g in by_name], dtype=np.intp)
        #: model reasons a row can be given at most
        self.slots = min(self.max_reasons, len(groups))
        self._slot_numbers = np.arange(self.slots)
        # the groups with a missing-value variant whose fields may all be missing (name order), and for each of
        # their fields the encoded column that says it was not provided: NaN (numeric) or ``(missing)`` (categorical)
        by_field = {f.name: f for f in spec.fields}
        offsets = dict(zip(spec.field_names, spec.column_offsets, strict=True))
        positions: list[int] = []
        starts: list[int] = []
        nan_slots: list[int] = []
        nan_columns: list[int] = []
        flag_slots: list[int] = []
        flag_columns: list[int] = []
        for position, g in enumerate(by_name):
            fields = group_fields[g] if group_codes[g].missing is not None else ()
            if not fields or not all(by_field[name].missing for name in fields):
                continue  # never given: a field that may not be missing is always provided
            positions.append(position)
            starts.append(len(nan_slots) + len(flag_slots))
            for name in fields:
                f = by_field[name]
                slot = len(nan_slots) + len(flag_slots)
                if f.kind == "numeric":
                    nan_slots.append(slot)
                    nan_columns.append(offsets[name])
                else:
                    flag_slots.append(slot)
                    flag_columns.append(offsets[name] + len(f.codes))  # the (missing) column is the field's last
        self._variant_positions = np.asarray(positions, dtype=np.intp)
        self._variant_starts = np.asarray(starts, dtype=np.intp)
        self._nan_slots = np.asarray(nan_slots, dtype=np.intp)
        self._nan_columns = np.asarray(nan_columns, dtype=np.intp)
        self._flag_slots = np.asarray(flag_slots, dtype=np.intp)
        self._flag_columns = np.asarray(flag_columns, dtype=np.intp)
        self._indicators = len(nan_slots) + len(flag_slots)
        self._grouped = len(groups) != len(spec.fields) or not np.array_equal(
            self._fields_by_group, np.arange(len(spec.fields))
        )

    def group_sums(self, field_attributions: np.ndarray) -> np.ndarray:
        """Field attributions [n, n_fields] summed into reason groups [n, n_groups] (spec order of groups)."""
        if field_attributions.shape[0] == 0:
            return np.zeros((0, len(self.groups)), dtype=np.float64)
        if not self._grouped:  # every field a group of its own, in spec order: the sums are the fields' values
            return field_attributions.copy()
        return np.add.reduceat(field_attributions[:, self._fields_by_group], self._group_starts, axis=1)

    def ranked(
        self, group_attributions: np.ndarray, fired: np.ndarray | None = None, features: np.ndarray | None = None
    ) -> np.ndarray:
        """The model reasons of n rows, as reason indices [n, slots], best first, -1 past the last one given.

        Per row: the reason groups whose attribution (``group_attributions`` [n, n_groups]) is > 0, largest first,
        ties broken by group name, as many as ``max_reasons`` leaves beside the row's fired rules (``fired``: bool
        [n, n_rules], None when none fired); a group whose fields were all not provided (``features``: the rows'
        encoded features; None: none of them) is given as its missing-value variant.
        """
        # minus the attributions, groups in name order: a stable sort puts the largest first, ties in name order
        minus = -group_attributions.take(self._by_name, axis=1)
        order = minus.argsort(axis=1, kind="stable")[:, : self.slots]
        picked = self._reason_by_name[order]
        if features is not None and self._indicators:
            picked += len(self.groups) * np.take_along_axis(self._all_missing(features), order, axis=1)
        minus.sort(axis=1)  # the same values in the same order: only those of groups with an attribution > 0 count
        picked[~(minus[:, : self.slots] < 0.0)] = -1
        if fired is not None:  # the room the fired rules leave
            picked[np.less_equal.outer(self.max_reasons - fired.sum(axis=1), self._slot_numbers)] = -1
        return picked

    def _all_missing(self, features: np.ndarray) -> np.ndarray:
        """bool [n, n_groups] (name order): the group has a missing-value variant and none of its fields was provided."""
        n = features.shape[0]
        indicators = np.empty((n, self._indicators), dtype=bool)
        indicators[:, self._nan_slots] = np.isnan(features[:, self._nan_columns])
        indicators[:, self._flag_slots] = features[:, self._flag_columns] == 1.0
        found = np.zeros((n, len(self.groups)), dtype=bool)
        found[:, self._variant_positions] = np.logical_and.reduceat(indicators, self._variant_starts, axis=1)
        return found

    def reasons(
        self, application: Mapping[str, Any], group_attributions: Sequence[float], fired: Sequence[int]
    ) -> tuple[int, ...]:
        """The reasons given to one application, as reason indices: ranked, missing variants applied."""
        return self._one(group_attributions, fired, self._spec.encode([application]))

    def rank(self, group_attributions: Sequence[float], fired: Sequence[int]) -> tuple[int, ...]:
        """The ranking, as reason indices (before missing variants)."""
        return self._one(group_attributions, fired, None)

    def _one(
        self, group_attributions: Sequence[float], fired: Sequence[int], features: np.ndarray | None
    ) -> tuple[int, ...]:
        """One row's reasons (:meth:`ranked` of one row): its fired rules, in policy order, then its model reasons."""
        attributions = np.asarray([group_attributions], dtype=np.float64)
        model = self.ranked(attributions, self._policy.fired_mask(fired), features)[0].tolist()
        return (*fired, *(index for index in model if index >= 0))
