"""Vectorised decisions for many applications at once: the batch path's pure core.

Gives, for every row, exactly what :class:`service.core.decision.DecisionEngine` gives (score,
risk band, fired rules, decision and the reason codes in the same order: rule reasons first in
policy order, then reason groups pushing towards higher risk, largest first, ties by group name),
but with array operations over the whole batch instead of Python objects per row.

Applications come in as *columns*: for a numeric field a float64 array of its values, for a
categorical field an int64 array of indices into ``field.codes``. Pure and deterministic; the
scorer and explainer come in through the same protocols as the decision engine's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_store.catalog import ReasonCatalog
from model_store.errors import ContractError
from model_store.policy import SEVERITY, Policy
from model_store.spec import FeatureSpec
from service.core.decision import MAX_REASONS, Explainer, Scorer

Columns = Mapping[str, np.ndarray]
ACTIONS = ("approve", "refer", "decline")  # index == severity

_COMPARE = {
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}


@dataclass(frozen=True, eq=False)
class BatchDecisions:
    """Decisions for n rows, as arrays.

    ``reasons`` holds indices into ``reason_codes`` (rule codes in policy order, then one code per
    reason group in spec order), ``-1`` where a row has fewer reasons than the width.
    """

    decision: np.ndarray  # int64 [n], index into ACTIONS
    score: np.ndarray  # int64 [n]
    probability_of_default: np.ndarray  # float64 [n]
    margin: np.ndarray  # float64 [n]
    band: np.ndarray  # int64 [n], index into policy.bands
    rules_fired: np.ndarray  # bool [n, n_rules], policy order
    reasons: np.ndarray  # int64 [n, width]
    group_attributions: np.ndarray  # float64 [n, n_groups], spec order of reason groups
    reason_codes: tuple[str, ...]
    band_names: tuple[str, ...]
    rule_codes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def decisions(self) -> list[str]:
        """Decision of each row as text."""
        return [ACTIONS[d] for d in self.decision.tolist()]

    def risk_bands(self) -> list[str]:
        """Risk band of each row."""
        return [self.band_names[b] for b in self.band.tolist()]

    def reason_lists(self) -> list[tuple[str, ...]]:
        """Reason codes of each row, in order."""
        codes = self.reason_codes
        return [tuple(codes[i] for i in row if i >= 0) for row in self.reasons.tolist()]

    def fired_lists(self) -> list[tuple[str, ...]]:
        """Codes of the rules that fired for each row, in policy order."""
        codes = self.rule_codes
        return [tuple(codes[j] for j, hit in enumerate(row) if hit) for row in self.rules_fired.tolist()]


class BatchDecider:
    """Decides many applications of one model version with array operations."""

    def __init__(
        self,
        spec: FeatureSpec,
        policy: Policy,
        catalog: ReasonCatalog,
        scorer: Scorer,
        explainer: Explainer,
        max_reasons: int = MAX_REASONS,
    ) -> None:
        self.spec = spec
        self.policy = policy
        self.scorer = scorer
        self.explainer = explainer
        self.max_reasons = max_reasons
        fields = spec.fields
        groups = spec.reason_groups
        # column -> field -> group sums as segment sums (a field's columns are contiguous): each row is
        # summed in column order whatever the batch size, and no multi-threaded BLAS call is involved
        col_field = spec.column_field_index
        self._field_starts = np.flatnonzero(np.r_[True, np.diff(col_field) != 0]).astype(np.intp)
        group_of_field = np.asarray([groups.index(f.reason_group) for f in fields], dtype=np.int64)
        self._fields_by_group = np.argsort(group_of_field, kind="stable").astype(np.intp)
        sorted_groups = group_of_field[self._fields_by_group]
        self._group_starts = np.flatnonzero(np.r_[True, np.diff(sorted_groups) != 0]).astype(np.intp)
        # groups in name order: a stable sort in that order breaks ties by group name
        self._by_name = np.argsort(np.asarray(groups, dtype=object), kind="stable").astype(np.int64)
        self._rules = policy.rules
        n_rules = len(policy.rules)
        self._rule_severity = np.asarray([SEVERITY[r.action] for r in policy.rules], dtype=np.int64)
        self._band_min = np.asarray([b.min_score for b in policy.bands], dtype=np.int64)
        self._band_severity = np.asarray([SEVERITY[b.decision] for b in policy.bands], dtype=np.int64)
        self._group_code_offset = n_rules
        self.reason_codes = tuple(catalog.for_rule(r.code).code for r in policy.rules) + tuple(
            catalog.for_group(g).code for g in groups
        )
        self.width = reason_width(policy, max_reasons)

    # ---- stages ----------------------------------------------------------------------------
    def encode(self, columns: Columns) -> np.ndarray:
        """The model's float32 matrix of columnar applications (equal to ``spec.encode`` of the rows)."""
        n = _length(columns, self.spec)
        out = np.zeros((n, len(self.spec.columns)), dtype=np.float32)
        rows = np.arange(n)
        for f, col in zip(self.spec.fields, self.spec.column_offsets, strict=True):
            values = columns[f.name]
            if f.kind == "numeric":
                out[:, col] = values
            else:
                out[rows, col + values] = 1.0
        return out

    def rule_mask(self, columns: Columns) -> np.ndarray:
        """bool [n, n_rules]: which policy rules fire for each row."""
        n = _length(columns, self.spec)
        mask = np.zeros((n, len(self._rules)), dtype=bool)
        for j, rule in enumerate(self._rules):
            field = self.spec.field(rule.field)
            values: np.ndarray = columns[rule.field]
            if field.kind == "categorical":
                values = np.asarray(field.codes, dtype=object)[values]
            mask[:, j] = _COMPARE[rule.operator](values, rule.value)
        return mask

    def group_attributions(self, attributions: np.ndarray) -> np.ndarray:
        """Column attributions [n, n_columns] summed into reason groups [n, n_groups]."""
        per_field = np.add.reduceat(np.asarray(attributions, dtype=np.float64), self._field_starts, axis=1)
        return np.add.reduceat(per_field[:, self._fields_by_group], self._group_starts, axis=1)

    def rank_reasons(self, group_attr: np.ndarray, fired: np.ndarray) -> np.ndarray:
        """Reason indices [n, width]: fired rules in policy order, then risk-raising groups largest first."""
        n, n_rules = fired.shape
        out = np.full((n, self.width), -1, dtype=np.int64)
        if n == 0:
            return out
        # fired rules first, packed to the left in policy order
        rule_ids = np.where(fired, np.arange(n_rules), n_rules + self.width)
        rule_ids = np.sort(rule_ids, axis=1)[:, : self.width] if n_rules else rule_ids
        n_fired = fired.sum(axis=1)
        k = min(n_rules, self.width)
        out[:, :k] = np.where(rule_ids[:, :k] < n_rules, rule_ids[:, :k], -1)
        # then groups with a positive contribution: by name order, stable sort on -contribution
        by_name = group_attr[:, self._by_name]
        key = np.where(by_name > 0.0, -by_name, np.inf)
        order = np.argsort(key, axis=1, kind="stable")[:, : self.max_reasons]
        positive = np.take_along_axis(key, order, axis=1) < np.inf
        group_ids = np.where(positive, self._by_name[order] + self._group_code_offset, -1)
        slots = np.maximum(self.max_reasons - n_fired, 0)
        for j in range(self.max_reasons):
            take = j < slots
            if not take.any():
                continue
            target = n_fired[take] + j
            out[np.flatnonzero(take), target] = group_ids[take, j]
        return out

    def decide_scored(
        self, columns: Columns, margin: np.ndarray, probability: np.ndarray, attributions: np.ndarray
    ) -> BatchDecisions:
        """Decisions from already computed margins, probabilities and column attributions."""
        margin = np.asarray(margin, dtype=np.float64)
        score = self.policy.scaling.scores(margin)
        reached = score[:, None] >= self._band_min[None, :]
        band = np.where(reached.any(axis=1), reached.argmax(axis=1), len(self._band_min) - 1).astype(np.int64)
        fired = self.rule_mask(columns)
        severity = self._band_severity[band]
        if fired.shape[1]:
            severity = np.maximum(severity, np.where(fired, self._rule_severity[None, :], 0).max(axis=1))
        groups = self.group_attributions(attributions)
        return BatchDecisions(
            decision=severity,
            score=score,
            probability_of_default=np.asarray(probability, dtype=np.float64),
            margin=margin,
            band=band,
            rules_fired=fired,
            reasons=self.rank_reasons(groups, fired),
            group_attributions=groups,
            reason_codes=self.reason_codes,
            band_names=tuple(b.band for b in self.policy.bands),
            rule_codes=tuple(r.code for r in self._rules),
        )

    def decide(self, columns: Columns) -> BatchDecisions:
        """Encode, score, explain and decide columnar applications (one ONNX run, one attribution pass)."""
        features = self.encode(columns)
        margin, probability = self.scorer.score(features)
        attributions = self.explainer.shap_values(features)
        return self.decide_scored(columns, margin, probability, attributions)


def reason_width(policy: Policy, max_reasons: int = MAX_REASONS) -> int:
    """Reason slots per row: every fired rule is a reason, then model reasons up to ``max_reasons``."""
    return max(max_reasons, len(policy.rules))


def columns_from_applications(spec: FeatureSpec, applications: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Columnar form of validated applications (raises ContractError like ``spec.encode``)."""
    out: dict[str, np.ndarray] = {}
    for f in spec.fields:
        try:
            raw = [app[f.name] for app in applications]
        except KeyError:
            raise ContractError(f"{f.name}: missing") from None
        if f.kind == "numeric":
            out[f.name] = np.asarray(raw, dtype=np.float64).reshape(len(applications))
        else:
            lookup = {c: k for k, c in enumerate(f.codes)}
            idx = [lookup.get(v, -1) for v in raw]
            if -1 in idx:
                raise ContractError(f"{f.name}: unknown value {raw[idx.index(-1)]!r}")
            out[f.name] = np.asarray(idx, dtype=np.int64).reshape(len(applications))
    return out


def _length(columns: Columns, spec: FeatureSpec) -> int:
    lengths = {int(np.shape(columns[f.name])[0]) for f in spec.fields}
    if len(lengths) != 1:
        raise ContractError(f"columns have different lengths: {sorted(lengths)}")
    return lengths.pop()
