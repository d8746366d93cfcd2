"""The decision: policy rules, score, risk band, decision and exact reason codes.

Pure and deterministic: validated applications in, frozen dataclasses out. The scorer (ONNX)
and the explainer (exact TreeSHAP) come in through small protocols, so this module imports
neither onnxruntime nor Flask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from model_store.catalog import ReasonCatalog
from model_store.policy import Policy, Rule
from model_store.spec import FeatureSpec

MAX_REASONS = 4


class Scorer(Protocol):
    """Scores encoded features: returns (margin, probability_of_default), float64 arrays [n]."""

    def score(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class Explainer(Protocol):
    """Exact additive attributions of the margin to the encoded columns."""

    @property
    def expected_value(self) -> float: ...

    def shap_values(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ReasonValue:
    """The applicant's value of a field behind a reason, with its plain-language label."""

    field: str
    value: Any
    label: str


@dataclass(frozen=True)
class Reason:
    """One reason code: from a policy rule, or from the model's attribution to a reason group."""

    code: str
    kind: Literal["rule", "model"]
    group: str | None
    customer_text: str
    auditor_text: str
    values: tuple[ReasonValue, ...]
    contribution_log_odds: float | None
    contribution_points: float | None
    adverse: bool


@dataclass(frozen=True)
class RuleHit:
    """A policy rule that fired."""

    code: str
    field: str
    operator: str
    threshold: Any
    action: str
    description: str


@dataclass(frozen=True)
class Decision:
    """The outcome for one application."""

    decision: Literal["approve", "refer", "decline"]
    score: int
    probability_of_default: float
    margin: float
    base_value: float
    risk_band: str
    reasons: tuple[Reason, ...]
    rules_fired: tuple[RuleHit, ...]
    attributions: tuple[tuple[str, float], ...]  # per field, spec order, log-odds


class DecisionEngine:
    """Turns validated applications into decisions for one model version."""

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
        self.catalog = catalog
        self.scorer = scorer
        self.explainer = explainer
        self.max_reasons = max_reasons
        fields = spec.fields
        self._field_names = spec.field_names
        # column -> field summation matrix, so one matmul turns column attributions into field ones
        col_field = spec.column_field_index
        self._column_to_field = np.zeros((len(col_field), len(fields)), dtype=np.float64)
        self._column_to_field[np.arange(len(col_field)), col_field] = 1.0
        groups = spec.reason_groups
        self._groups = groups
        self._field_to_group = np.zeros((len(fields), len(groups)), dtype=np.float64)
        for i, f in enumerate(fields):
            self._field_to_group[i, groups.index(f.reason_group)] = 1.0
        self._group_fields = {g: tuple(f for f in fields if f.reason_group == g) for g in groups}
        self._fields_by_name = {f.name: f for f in fields}
        self._group_codes = {g: catalog.for_group(g) for g in groups}
        # deterministic tie-break: by group name
        self._group_name_rank = tuple(sorted(groups).index(g) for g in groups)
        self.base_value = float(explainer.expected_value)

    def decide(self, application: Mapping[str, Any]) -> Decision:
        """Decide one validated application."""
        return self.decide_many([application])[0]

    def decide_many(self, applications: Sequence[Mapping[str, Any]]) -> list[Decision]:
        """Decide validated applications together (one ONNX run, one attribution pass)."""
        if not applications:
            return []
        features = self.spec.encode(applications)
        margins, probabilities = self.scorer.score(features)
        columns = self.explainer.shap_values(features)
        fields = columns @ self._column_to_field
        groups = fields @ self._field_to_group
        score = self.policy.scaling.score
        # plain floats from here on: per-row Python work on NumPy scalars costs more than the maths
        return [
            self._one(app, margin, probability, score(margin), field_attr, group_attr)
            for app, margin, probability, field_attr, group_attr in zip(
                applications, margins.tolist(), probabilities.tolist(), fields.tolist(), groups.tolist(), strict=True
            )
        ]

    def _one(
        self,
        application: Mapping[str, Any],
        margin: float,
        probability: float,
        score: int,
        field_attr: list[float],
        group_attr: list[float],
    ) -> Decision:
        band = self.policy.band_for(score)
        fired = self.policy.fired_rules(application)
        decision = self.policy.decide(band, fired)
        adverse = decision != "approve"
        reasons: list[Reason] = [self._rule_reason(rule, application) for rule in fired]
        for g in self._ranked_risk_groups(group_attr):
            if len(reasons) >= self.max_reasons:
                break
            reasons.append(self._model_reason(self._groups[g], group_attr[g], application, adverse))
        return Decision(
            decision=decision,
            score=score,
            probability_of_default=probability,
            margin=margin,
            base_value=self.base_value,
            risk_band=band.band,
            reasons=tuple(reasons),
            rules_fired=tuple(RuleHit(r.code, r.field, r.operator, r.value, r.action, r.description) for r in fired),
            attributions=tuple(zip(self._field_names, field_attr, strict=True)),
        )

    def _ranked_risk_groups(self, group_attr: list[float]) -> list[int]:
        """Groups pushing towards higher risk, largest first; ties broken by group name."""
        rank = self._group_name_rank
        positive = [g for g, value in enumerate(group_attr) if value > 0.0]
        return sorted(positive, key=lambda g: (-group_attr[g], rank[g]))

    def _rule_reason(self, rule: Rule, application: Mapping[str, Any]) -> Reason:
        code = self.catalog.for_rule(rule.code)
        return Reason(
            code=code.code,
            kind="rule",
            group=None,
            customer_text=code.customer_text,
            auditor_text=code.auditor_text,
            values=(self._value(rule.field, application),),
            contribution_log_odds=None,
            contribution_points=None,
            adverse=True,
        )

    def _model_reason(self, group: str, contribution: float, application: Mapping[str, Any], adverse: bool) -> Reason:
        code = self._group_codes[group]
        return Reason(
            code=code.code,
            kind="model",
            group=group,
            customer_text=code.customer_text,
            auditor_text=code.auditor_text,
            values=tuple(self._value(f.name, application) for f in self._group_fields[group]),
            contribution_log_odds=contribution,
            contribution_points=self.policy.scaling.points(contribution),
            adverse=adverse,
        )

    def _value(self, field_name: str, application: Mapping[str, Any]) -> ReasonValue:
        value = application.get(field_name)
        return ReasonValue(field=field_name, value=value, label=self._fields_by_name[field_name].label_of(value))
