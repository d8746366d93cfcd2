"""The decision engine: validated applications in, decisions out. There is no other.

A single application is a batch of one: the HTTP endpoints (single and batch), the batch file
command, replay and the shadow paths all call :meth:`DecisionEngine.decide` with a sequence of
validated applications (field name -> value, as :meth:`model_store.spec.Field.check` returns them)
and get a :class:`DecisionBatch` of arrays, from which :meth:`DecisionBatch.decision` builds the
full :class:`Decision` of one row.

Stages, each implemented once:

1. for the whole batch, as arrays: encode (``FeatureSpec.encode``) -> one ONNX run (``Scorer``) ->
   exact attributions per encoded column (``Explainer``, exact TreeSHAP) -> summed into fields
   (``FeatureSpec.field_sums``) and reason groups (``ReasonRanking.group_sums``) -> integer
   scores (``Scaling.scores``);
2. then one pass per row (:meth:`DecisionEngine.policy_outcome`): risk band (``Policy.band_index``),
   the policy rules that fire (``Policy.fired_rule_indices``), the decision, the most severe of the
   band's and the fired rules' actions (``Policy.action_index``), and **the reason ranking**
   (:class:`model_store.ranking.ReasonRanking`, shared with training's reason baseline): every fired rule, in policy order, then the reason groups
   whose attribution raises the probability of default (> 0), largest first, **ties broken by group
   name**; model reasons fill the list up to ``policy.max_reasons`` (fired rules are always listed,
   however many). A group whose fields were all not provided is given with the catalog's ``missing``
   variant of its code ("No information on … was provided"), not as if its value were low or high.

Pure and deterministic: no clock, no I/O; the scorer and explainer come in through two small
protocols, so this module imports neither onnxruntime nor Flask. Every array stage works row by row
(segment sums, no BLAS, nothing across rows), so a row gets bit-identical numbers whether it is
decided alone or among thousands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np

from model_store.catalog import ReasonCatalog
from model_store.policy import Policy
from model_store.ranking import ReasonRanking
from model_store.spec import FeatureSpec
from model_store.vocabulary import ACTIONS, Action


class Scorer(Protocol):
    """Scores encoded features: returns (margin, probability_of_default), float64 arrays [n]."""

    def score(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class Explainer(Protocol):
    """Exact additive attributions of the margin to the encoded columns."""

    @property
    def expected_value(self) -> float: ...

    def shap_values(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class ReasonValue:
    """The applicant's value of a field behind a reason, with its plain-language label."""

    field: str
    value: Any
    label: str


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A policy rule that fired."""

    code: str
    field: str
    operator: str
    threshold: Any
    action: str
    description: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one application."""

    decision: Action
    score: int
    probability_of_default: float
    margin: float
    base_value: float
    risk_band: str
    reasons: tuple[Reason, ...]
    rules_fired: tuple[RuleHit, ...]
    attributions: tuple[tuple[str, float], ...]  # per field, spec order, log-odds


class RowOutcome(NamedTuple):
    """The policy's outcome for one row: indices into ``ACTIONS``, ``policy.bands``, ``policy.rules`` and
    ``DecisionEngine.reason_codes`` (rule codes in policy order, one code per reason group in spec order, then
    each group's missing-value variant)."""

    action: int
    band: int
    fired: tuple[int, ...]
    reasons: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class DecisionBatch:
    """Decisions for n applications: the model's numbers as arrays, the policy's outcome per row."""

    engine: DecisionEngine
    applications: Sequence[Mapping[str, Any]]
    score: np.ndarray  # int64 [n]
    probability_of_default: np.ndarray  # float64 [n]
    margin: np.ndarray  # float64 [n]
    field_attributions: np.ndarray  # float64 [n, n_fields], spec order
    group_attributions: np.ndarray  # float64 [n, n_groups], spec order of reason groups
    outcomes: tuple[RowOutcome, ...]

    def __len__(self) -> int:
        return len(self.outcomes)

    def decisions(self) -> list[Action]:
        """Decision of each row."""
        return [ACTIONS[o.action] for o in self.outcomes]

    def risk_bands(self) -> list[str]:
        """Risk band of each row."""
        names = self.engine.band_names
        return [names[o.band] for o in self.outcomes]

    def reason_lists(self) -> list[tuple[str, ...]]:
        """Reason codes of each row, in order."""
        codes = self.engine.reason_codes
        return [tuple(codes[i] for i in o.reasons) for o in self.outcomes]

    def fired_lists(self) -> list[tuple[str, ...]]:
        """Codes of the rules that fired for each row, in policy order."""
        codes = self.engine.rule_codes
        return [tuple(codes[j] for j in o.fired) for o in self.outcomes]

    def decision(self, i: int) -> Decision:
        """The full decision of row ``i``: reasons with their texts, values and contributions."""
        return self.engine.decision_of(self, i)

    def all(self) -> list[Decision]:
        """The full decision of every row."""
        return [self.engine.decision_of(self, i) for i in range(len(self))]


class DecisionEngine:
    """Decides validated applications for one model version (its spec, policy and reason catalog)."""

    def __init__(
        self, spec: FeatureSpec, policy: Policy, catalog: ReasonCatalog, scorer: Scorer, explainer: Explainer
    ) -> None:
        self.spec = spec
        self.policy = policy
        self.catalog = catalog
        self.scorer = scorer
        self.explainer = explainer
        self.base_value = float(explainer.expected_value)
        self.max_reasons = policy.max_reasons
        self.ranking = ReasonRanking(spec, policy, catalog)
        self.groups = spec.reason_groups
        self.band_names = tuple(b.band for b in policy.bands)
        self.rule_codes = tuple(r.code for r in policy.rules)
        # reason indices: rules, then groups, then each group's missing variant (the group's own code if none)
        self.reason_codes = self.ranking.codes
        self.width = policy.reason_slots
        # what a reason shows, per reason index: the catalog entry and the fields behind it (with their spec entries)
        self._reason_entries = self.ranking.entries
        fields = {f.name: f for f in spec.fields}
        self._reason_fields = tuple(tuple((name, fields[name]) for name in names) for names in self.ranking.fields)
        self._field_names = spec.field_names
        self._n_groups = len(self.groups)
        self._rule_hits = tuple(
            RuleHit(r.code, r.field, r.operator, r.value, r.action, r.description) for r in policy.rules
        )

    # ---- the batch -----------------------------------------------------------------------------
    def decide(self, applications: Sequence[Mapping[str, Any]]) -> DecisionBatch:
        """Decide validated applications together: one ONNX run and one attribution pass for all of them."""
        features = self.spec.encode(applications)
        margin, probability = self.scorer.score(features)
        margin = np.asarray(margin, dtype=np.float64)
        field_attributions = self.spec.field_sums(self.explainer.shap_values(features))
        group_attributions = self.group_sums(field_attributions)
        score = self.policy.scaling.scores(margin)
        outcome = self.policy_outcome
        return DecisionBatch(
            engine=self,
            applications=applications,
            score=score,
            probability_of_default=np.asarray(probability, dtype=np.float64),
            margin=margin,
            field_attributions=field_attributions,
            group_attributions=group_attributions,
            outcomes=tuple(
                outcome(application, row_score, row_groups)
                for application, row_score, row_groups in zip(
                    applications, score.tolist(), group_attributions.tolist(), strict=True
                )
            ),
        )

    def screen(self, applications: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(score, probability_of_default, action index) of each application, without explaining it.

        The same stages as :meth:`decide` up to the decision (one ONNX run, the band, the fired rules, the most
        severe action) and none after it: a decision never depends on its attributions, so this is what
        recourse evaluates its many candidate applications with.
        """
        features = self.spec.encode(applications)
        margin, probability = self.scorer.score(features)
        score = self.policy.scaling.scores(np.asarray(margin, dtype=np.float64))
        policy = self.policy
        actions = [
            policy.action_index(policy.band_index(row_score), policy.fired_rule_indices(application))
            for application, row_score in zip(applications, score.tolist(), strict=True)
        ]
        return score, np.asarray(probability, dtype=np.float64), actions

    def group_sums(self, field_attributions: np.ndarray) -> np.ndarray:
        """Field attributions [n, n_fields] summed into reason groups [n, n_groups] (spec order of groups)."""
        return self.ranking.group_sums(field_attributions)

    def policy_outcome(self, application: Mapping[str, Any], score: int, group_attributions: list[float]) -> RowOutcome:
        """Band, fired rules, decision and ranked reasons of one scored application."""
        policy = self.policy
        band = policy.band_index(score)
        fired = policy.fired_rule_indices(application)
        reasons = self.ranking.reasons(application, group_attributions, fired)
        return RowOutcome(policy.action_index(band, fired), band, tuple(fired), reasons)

    def rank_reasons(self, group_attributions: Sequence[float], fired: Sequence[int]) -> tuple[int, ...]:
        """The reason ranking, as indices into ``reason_codes`` (:meth:`model_store.ranking.ReasonRanking.rank`)."""
        return self.ranking.rank(group_attributions, fired)

    # ---- one row, in full ------------------------------------------------------------------------
    def decision_of(self, batch: DecisionBatch, i: int) -> Decision:
        """Row ``i`` of a batch as a :class:`Decision`."""
        application = batch.applications[i]
        outcome = batch.outcomes[i]
        action = ACTIONS[outcome.action]
        adverse = action != "approve"
        n_rules = len(self.rule_codes)
        points = self.policy.scaling.points
        group_attributions = batch.group_attributions[i]
        reasons = []
        for index in outcome.reasons:
            entry = self._reason_entries[index]
            values = tuple(
                ReasonValue(name, value := application.get(name), spec_field.label_of(value))
                for name, spec_field in self._reason_fields[index]
            )
            if index < n_rules:
                reasons.append(
                    Reason(entry.code, "rule", None, entry.customer_text, entry.auditor_text, values, None, None, True)
                )
            else:
                contribution = float(group_attributions[(index - n_rules) % self._n_groups])
                reasons.append(
                    Reason(
                        entry.code,
                        "model",
                        entry.group,
                        entry.customer_text,
                        entry.auditor_text,
                        values,
                        contribution,
                        points(contribution),
                        adverse,
                    )
                )
        return Decision(
            decision=action,
            score=int(batch.score[i]),
            probability_of_default=float(batch.probability_of_default[i]),
            margin=float(batch.margin[i]),
            base_value=self.base_value,
            risk_band=self.band_names[outcome.band],
            reasons=tuple(reasons),
            rules_fired=tuple(self._rule_hits[j] for j in outcome.fired),
            attributions=tuple(zip(self._field_names, batch.field_attributions[i].tolist(), strict=True)),
        )
