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
2. then, still as arrays over the whole batch (:meth:`DecisionEngine.outcomes`; a single application
   runs the same code with n = 1): risk band (``Policy.band_indices``), the policy rules that fire
   (``Policy.fired_matrix``), the decision, the most severe of the band's and the fired rules' actions
   (``Policy.action_indices``), and **the reason ranking** (:meth:`model_store.ranking.ReasonRanking.ranked`,
   shared with training's reason baseline): every fired rule, in policy order, then the reason groups
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

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import compress
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np

from model_store.catalog import ReasonCatalog
from model_store.policy import Policy
from model_store.ranking import ReasonRanking
from model_store.spec import FeatureSpec, Field
from model_store.vocabulary import ACTIONS, Action
from service.core.texts import ReasonTexts


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
    """Decisions for n applications: the model's numbers and the policy's outcome, as arrays."""

    engine: DecisionEngine
    applications: Sequence[Mapping[str, Any]]
    score: np.ndarray  # int64 [n]
    probability_of_default: np.ndarray  # float64 [n]
    margin: np.ndarray  # float64 [n]
    field_attributions: np.ndarray  # float64 [n, n_fields], spec order
    group_attributions: np.ndarray  # float64 [n, n_groups], spec order of reason groups
    action: np.ndarray  # intp [n], index into ACTIONS
    band: np.ndarray  # intp [n], index into policy.bands
    fired: np.ndarray  # bool [n, n_rules]: the rules that fired
    model_reasons: np.ndarray  # intp [n, slots]: the model reasons given (reason indices), best first, -1 past the last

    def __len__(self) -> int:
        return len(self.score)

    @cached_property
    def outcomes(self) -> tuple[RowOutcome, ...]:
        """The policy's outcome of each row."""
        return tuple(self.outcome(i) for i in range(len(self)))

    def distinct_outcomes(self) -> tuple[list[RowOutcome], list[int]]:
        """The distinct outcomes of the batch (a batch holds few), and which one each row has."""
        _, first, which = self.outcome_groups()
        return [self.outcome(i) for i in first], which

    def outcome_groups(self) -> tuple[list[Hashable], list[int], list[int]]:
        """The rows grouped by outcome: a key per distinct outcome (the same key for the same outcome in every batch
        of this engine), a row that has it, and which one each row has."""
        keys = self._outcome_keys()
        distinct, first, which = np.unique(
            keys, axis=0 if keys.ndim > 1 else None, return_index=True, return_inverse=True
        )
        return (
            [tuple(key) for key in distinct.tolist()] if keys.ndim > 1 else distinct.tolist(),
            first.tolist(),
            which.reshape(-1).tolist(),
        )

    def _outcome_keys(self) -> np.ndarray:
        """A key per row that tells its outcome from every other: one integer (band, fired rules and model reasons in
        mixed radix) when it fits in int64, else the row of those numbers."""
        n_rules = self.fired.shape[1]
        radix = len(self.engine.reason_codes) + 1
        slots = self.model_reasons.shape[1]
        if len(self.engine.band_names) * 2**n_rules * radix**slots < 2**62:
            key = self.band.astype(np.int64)
            for j in range(n_rules):
                key = key * 2 + self.fired[:, j]
            for k in range(slots):
                key = key * radix + (self.model_reasons[:, k] + 1)
            return key
        return np.column_stack([self.band, self.fired, self.model_reasons]).astype(np.int64)

    def outcome(self, i: int) -> RowOutcome:
        """The policy's outcome of row ``i``."""
        return _row_outcome(self.action.item(i), self.band.item(i), self.fired[i].tolist(), self.model_reasons[i])

    def decisions(self) -> list[Action]:
        """Decision of each row."""
        return [ACTIONS[a] for a in self.action.tolist()]

    def risk_bands(self) -> list[str]:
        """Risk band of each row."""
        names = self.engine.band_names
        return [names[b] for b in self.band.tolist()]

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


def _row_outcome(action: int, band: int, fired_row: list[bool], model_row: np.ndarray) -> RowOutcome:
    """A row's outcome from its arrays: the fired rules (a flag per rule) in policy order, then the model reasons
    given (reason indices, -1 past the last)."""
    fired = tuple(compress(range(len(fired_row)), fired_row))
    model = model_row.tolist()
    if -1 in model:  # the reasons given come first, then -1
        del model[model.index(-1) :]
    return RowOutcome(action, band, fired, (*fired, *model))


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
        # what a reason shows, per reason index: its catalog entry's code, group and texts, the fields behind it (with
        # their spec entries and the values whose label the spec fixes, each shown once), and a model reason's column
        # in the group attributions (-1: a rule's reason)
        fields = {f.name: f for f in spec.fields}
        columns = (-1,) * len(policy.rules) + tuple(range(len(self.groups))) * 2
        self._reasons_shown = tuple(
            (
                entry.code,
                entry.group,
                entry.customer_text,
                entry.auditor_text,
                tuple((name, fields[name], _known_values(name, fields[name])) for name in names),
                column,
            )
            for entry, names, column in zip(self.ranking.entries, self.ranking.fields, columns, strict=True)
        )
        self._field_names = spec.field_names
        self._rule_hits = tuple(
            RuleHit(r.code, r.field, r.operator, r.value, r.action, r.description) for r in policy.rules
        )

    @cached_property
    def reason_texts(self) -> ReasonTexts:
        """The texts the reasons are worded with (the catalog's default language), as the decision store keeps them
        once for every record worded with them."""
        return ReasonTexts.of(self.catalog.version, self.catalog.all_codes)

    # ---- the batch -----------------------------------------------------------------------------
    def decide(
        self, applications: Sequence[Mapping[str, Any]], columns: Mapping[str, Sequence[Any]] | None = None
    ) -> DecisionBatch:
        """Decide validated applications together: one ONNX run and one attribution pass for all of them.

        ``columns`` (optional): the same applications' values a field at a time (field name -> every application's
        value, in order), when the caller has them so (a batch file's reader): the same decisions, encoded from
        them without a pass over the rows.
        """
        features = self.spec.encode(applications, columns)
        margin, probability = self.scorer.score(features)
        margin = np.asarray(margin, dtype=np.float64)
        field_attributions = self.spec.field_sums(self.explainer.shap_values(features))
        group_attributions = self.group_sums(field_attributions)
        score = self.policy.scaling.scores(margin)
        action, band, fired, model_reasons = self.outcomes(applications, columns, features, score, group_attributions)
        return DecisionBatch(
            engine=self,
            applications=applications,
            score=score,
            probability_of_default=np.asarray(probability, dtype=np.float64),
            margin=margin,
            field_attributions=field_attributions,
            group_attributions=group_attributions,
            action=action,
            band=band,
            fired=fired,
            model_reasons=model_reasons,
        )

    def outcomes(
        self,
        applications: Sequence[Mapping[str, Any]],
        columns: Mapping[str, Sequence[Any]] | None,
        features: np.ndarray,
        score: np.ndarray,
        group_attributions: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The policy's outcome of n scored applications, as arrays: (action [n], band [n], fired rules bool
        [n, n_rules], model reasons [n, slots]; see :class:`DecisionBatch`)."""
        policy = self.policy
        n = len(score)
        band = policy.band_indices(score)
        fired = policy.fired_matrix(self._rule_values(applications, columns), n)
        action = policy.action_indices(band, fired)
        model_reasons = self.ranking.ranked(group_attributions, fired, features)
        return action, band, np.zeros((n, len(self.rule_codes)), dtype=bool) if fired is None else fired, model_reasons

    def _rule_values(
        self, applications: Sequence[Mapping[str, Any]], columns: Mapping[str, Sequence[Any]] | None
    ) -> Mapping[str, Sequence[Any]]:
        """Each rule field's values (field name -> every application's value): the caller's columns if it has them."""
        return self.policy.rule_values(applications) if columns is None else columns

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
        fired = policy.fired_matrix(self._rule_values(applications, None), len(score))
        actions = policy.action_indices(policy.band_indices(score), fired).tolist()
        return score, np.asarray(probability, dtype=np.float64), actions

    def group_sums(self, field_attributions: np.ndarray) -> np.ndarray:
        """Field attributions [n, n_fields] summed into reason groups [n, n_groups] (spec order of groups)."""
        return self.ranking.group_sums(field_attributions)

    def policy_outcome(self, application: Mapping[str, Any], score: int, group_attributions: list[float]) -> RowOutcome:
        """Band, fired rules, decision and ranked reasons of one scored application (:meth:`outcomes` of one row)."""
        action, band, fired, model_reasons = self.outcomes(
            [application],
            None,
            self.spec.encode([application]),
            np.asarray([score], dtype=np.int64),
            np.asarray([group_attributions], dtype=np.float64),
        )
        return _row_outcome(action.item(0), band.item(0), fired[0].tolist(), model_reasons[0])

    def rank_reasons(self, group_attributions: Sequence[float], fired: Sequence[int]) -> tuple[int, ...]:
        """The reason ranking, as indices into ``reason_codes`` (:meth:`model_store.ranking.ReasonRanking.rank`)."""
        return self.ranking.rank(group_attributions, fired)

    # ---- one row, in full ------------------------------------------------------------------------
    def decision_of(self, batch: DecisionBatch, i: int) -> Decision:
        """Row ``i`` of a batch as a :class:`Decision`."""
        application = batch.applications[i]
        outcome = batch.outcome(i)
        action = ACTIONS[outcome.action]
        adverse = action != "approve"
        points = self.policy.scaling.points
        group_attributions = batch.group_attributions[i].tolist()
        reasons = []
        for index in outcome.reasons:
            code, group, customer_text, auditor_text, fields, column = self._reasons_shown[index]
            values = _shown(application, fields)
            if column < 0:
                reasons.append(Reason(code, "rule", None, customer_text, auditor_text, values, None, None, True))
            else:
                contribution = group_attributions[column]
                reasons.append(
                    Reason(
                        code,
                        "model",
                        group,
                        customer_text,
                        auditor_text,
                        values,
                        contribution,
                        points(contribution),
                        adverse,
                    )
                )
        return Decision(
            decision=action,
            score=batch.score.item(i),
            probability_of_default=batch.probability_of_default.item(i),
            margin=batch.margin.item(i),
            base_value=self.base_value,
            risk_band=self.band_names[outcome.band],
            reasons=tuple(reasons),
            rules_fired=tuple(map(self._rule_hits.__getitem__, outcome.fired)),
            attributions=tuple(zip(self._field_names, batch.field_attributions[i].tolist(), strict=True)),
        )


def _known_values(name: str, spec_field: Field) -> dict[str | None, ReasonValue]:
    """The values of a field whose label the spec fixes (each of a category's codes, and no value), each shown once."""
    return {code: ReasonValue(name, code, spec_field.label_of(code)) for code in (*spec_field.codes, None)}


def _shown(
    application: Mapping[str, Any], fields: tuple[tuple[str, Field, dict[str | None, ReasonValue]], ...]
) -> tuple[ReasonValue, ...]:
    """The application's values of a reason's fields, with their labels (a known value's as shown once)."""
    shown = []
    for name, spec_field, known in fields:
        value = application.get(name)
        made = known.get(value) if value is None or value.__class__ is str else None
        shown.append(ReasonValue(name, value, spec_field.label_of(value)) if made is None else made)
    return tuple(shown)
