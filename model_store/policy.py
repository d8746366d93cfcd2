"""Credit policy as versioned data: score scaling, risk bands, decisions and hard rules.

Pure and deterministic; shared by training (band bad rates, proposed cut-offs) and the
service (decisions). ``margin`` is always the model's log-odds of default.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from model_store._yaml import load_mapping, require
from model_store.errors import ContractError
from model_store.spec import CodedColumn, FeatureSpec
from model_store.vocabulary import ACTIONS, SEVERITY, Action

__all__ = ["ACTIONS", "DEFAULT_MAX_REASONS", "SEVERITY", "Action", "Band", "Policy", "Rule", "Scaling"]

#: Principal reasons given per decision unless the policy says otherwise (Reg B: no more than four are needed).
DEFAULT_MAX_REASONS = 4
_OPERATORS = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}


@dataclass(frozen=True)
class Scaling:
    """Points-to-double-odds scaling of the probability of default into an integer score."""

    anchor_score: float
    anchor_odds: float
    pdo: float
    min_score: int
    max_score: int

    @cached_property
    def factor(self) -> float:
        """Score points per unit of log-odds."""
        return self.pdo / math.log(2.0)

    @cached_property
    def _log_anchor_odds(self) -> float:
        return math.log(self.anchor_odds)

    def raw_score(self, margin: float | np.ndarray) -> float | np.ndarray:
        """Unrounded, unclipped score of a log-odds-of-default margin."""
        # ln(odds_good) = -margin: anchor + factor * (-margin - ln(anchor_odds)), computed as
        # anchor - factor * (margin + ln(anchor_odds)), the same number in IEEE arithmetic (negation is exact and
        # rounding symmetric) in one step fewer
        return self.anchor_score - self.factor * (np.asarray(margin, dtype=np.float64) + self._log_anchor_odds)

    def scores(self, margins: np.ndarray) -> np.ndarray:
        """Integer scores in [min_score, max_score] for an array of margins (rounded half up)."""
        raw = np.floor(self.raw_score(margins) + 0.5)
        # the bounds as the floats they are compared as (a float array takes a float at less cost than an int)
        return np.minimum(np.maximum(raw, float(self.min_score)), float(self.max_score)).astype(np.int64)

    def score(self, margin: float) -> int:
        """Integer score of one margin (the same computation as :meth:`scores`)."""
        return int(self.scores(np.asarray([margin], dtype=np.float64))[0])

    def points(self, log_odds: float) -> float:
        """Score points of a log-odds contribution (positive log-odds of default = fewer points)."""
        return -self.factor * log_odds


@dataclass(frozen=True)
class Band:
    """A risk band: scores at or above ``min_score`` (and below the better band) get ``decision``."""

    band: str
    min_score: int
    decision: Action


@dataclass(frozen=True)
class Rule:
    """A hard policy rule on one applicant field, evaluated before scoring."""

    code: str
    field: str
    operator: str
    value: Any
    action: Action
    description: str

    def fires(self, application: Mapping[str, Any]) -> bool:
        """Whether the rule fires for a validated application (never on a missing value)."""
        return bool(self.fires_on([application.get(self.field)])[0])

    def fires_on(self, values: Sequence[Any]) -> list[Any]:
        """Whether the rule fires for each of its field's validated values (never on a missing value, None): a truth
        value each (False, or the comparison's result)."""
        compare, threshold = _OPERATORS[self.operator], self.value
        return [value is not None and compare(value, threshold) for value in values]


@dataclass(frozen=True)
class Monitoring:
    """When the period report flags drift and disparate impact (data, versioned with the policy).

    A stability index (PSI of the score, CSI of an input) at or above ``stability_watch`` is flagged
    "watch", at or above ``stability_action`` "action"; a group's approval rate below
    ``four_fifths`` of the most favoured group's is flagged. Numbers computed from fewer than
    ``min_sample`` decisions (a period, or a group) are shown but never flagged. A reason code's share
    of declines and referrals that differs from the training baseline's or the previous period's with a
    two-sided p-value below ``reason_shift_p_value`` (Bonferroni-corrected over the codes compared) is
    flagged (``service.reports.core.reason_shifts``).
    """

    stability_watch: float = 0.1
    stability_action: float = 0.25
    four_fifths: float = 0.8
    min_sample: int = 100
    reason_shift_p_value: float = 0.01


@dataclass(frozen=True)
class Justification:
    """A justification code a human reviewer gives for a final decision (``outcomes``: the final decisions it may
    justify)."""

    code: str
    text: str
    outcomes: tuple[str, ...] = ("approve", "decline")


@dataclass(frozen=True)
class Review:
    """Human review of automated decisions (data, versioned with the policy): the justification codes a reviewer
    must choose from. None configured: the service takes no reviews."""

    justification_codes: tuple[Justification, ...] = ()

    def justification(self, code: str) -> Justification | None:
        """The justification of ``code``, or None."""
        return next((j for j in self.justification_codes if j.code == code), None)


@dataclass(frozen=True)
class Policy:
    """The validated policy."""

    version: str
    scaling: Scaling
    bands: tuple[Band, ...]
    rules: tuple[Rule, ...]
    max_reasons: int = DEFAULT_MAX_REASONS
    monitoring: Monitoring = Monitoring()
    review: Review = Review()

    @classmethod
    def load(cls, path: str | Path, spec: FeatureSpec | None = None) -> Policy:
        """Load and validate a policy YAML file (rules are checked against ``spec`` when given)."""
        return cls.from_dict(load_mapping(Path(path)), spec=spec, where=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], spec: FeatureSpec | None = None, where: str = "policy") -> Policy:
        """Build and validate a policy from its parsed YAML mapping."""
        version = require(data, "policy_version", str, where)
        s = require(data, "scaling", dict, where)
        scaling = Scaling(
            anchor_score=float(require(s, "anchor_score", (int, float), f"{where}.scaling")),
            anchor_odds=float(require(s, "anchor_odds", (int, float), f"{where}.scaling")),
            pdo=float(require(s, "pdo", (int, float), f"{where}.scaling")),
            min_score=int(require(s, "min_score", int, f"{where}.scaling")),
            max_score=int(require(s, "max_score", int, f"{where}.scaling")),
        )
        if scaling.anchor_odds <= 0 or scaling.pdo <= 0 or scaling.min_score >= scaling.max_score:
            raise ContractError(f"{where}.scaling: need anchor_odds > 0, pdo > 0, min_score < max_score")
        bands = []
        for i, b in enumerate(require(data, "bands", list, where)):
            w = f"{where}.bands[{i}]"
            decision = require(b, "decision", str, w)
            if decision not in SEVERITY:
                raise ContractError(f"{w}.decision: must be approve, refer or decline")
            bands.append(Band(require(b, "band", str, w), int(require(b, "min_score", int, w)), decision))
        if not bands:
            raise ContractError(f"{where}.bands: at least one band is required")
        mins = [b.min_score for b in bands]
        if any(a <= b for a, b in itertools.pairwise(mins)):
            raise ContractError(f"{where}.bands: min_score must strictly decrease from the best band to the worst")
        if bands[-1].min_score > scaling.min_score:
            raise ContractError(f"{where}.bands: the last band must start at or below scaling.min_score")
        if len({b.band for b in bands}) != len(bands):
            raise ContractError(f"{where}.bands: duplicate band names")
        rules = []
        for i, r in enumerate(data.get("rules", []) or []):
            w = f"{where}.rules[{i}]"
            op = require(r, "operator", str, w)
            if op not in _OPERATORS:
                raise ContractError(f"{w}.operator: must be one of {sorted(_OPERATORS)}")
            action = require(r, "action", str, w)
            if action not in ("refer", "decline"):
                raise ContractError(f"{w}.action: must be refer or decline")
            rule = Rule(
                code=require(r, "code", str, w),
                field=require(r, "field", str, w),
                operator=op,
                value=r.get("value"),
                action=action,
                description=require(r, "description", str, w),
            )
            if spec is not None:
                _check_rule_against_spec(rule, spec, w)
            rules.append(rule)
        if len({r.code for r in rules}) != len(rules):
            raise ContractError(f"{where}.rules: duplicate rule codes")
        max_reasons = data.get("max_reasons", DEFAULT_MAX_REASONS)
        if isinstance(max_reasons, bool) or not isinstance(max_reasons, int) or not 1 <= max_reasons <= 10:
            raise ContractError(f"{where}.max_reasons: must be an integer from 1 to 10, got {max_reasons!r}")
        return cls(
            version=version,
            scaling=scaling,
            bands=tuple(bands),
            rules=tuple(rules),
            max_reasons=max_reasons,
            monitoring=_parse_monitoring(data.get("monitoring"), f"{where}.monitoring"),
            review=_parse_review(data.get("review"), f"{where}.review"),
        )

    @property
    def reason_slots(self) -> int:
        """The most reasons a decision can give: every fired rule is one, else up to ``max_reasons``."""
        return max(self.max_reasons, len(self.rules))

    def band_indices(self, scores: np.ndarray) -> np.ndarray:
        """Index into ``bands`` of each integer score [n]: the first band whose ``min_score`` it reaches (intp [n])."""
        # bands run from the best (highest min_score) to the worst; the last one catches every score below the others
        bands: np.ndarray = self._band_cuts.searchsorted(-np.asarray(scores, dtype=np.int64))
        return bands

    def band_index(self, score: int) -> int:
        """Index into ``bands`` of an integer score (:meth:`band_indices` of one score)."""
        return int(self.band_indices(np.asarray([score], dtype=np.int64))[0])

    def band_for(self, score: int) -> Band:
        """The band of an integer score."""
        return self.bands[self.band_index(score)]

    def fired_rule_indices(self, application: Mapping[str, Any]) -> list[int]:
        """Indices into ``rules`` of every rule that fires for a validated application, in policy order."""
        return [j for j, rule in enumerate(self.rules) if rule.fires(application)]

    def rule_values(self, applications: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        """Each rule field's values (field name -> every application's value, in order): what :meth:`fired_matrix`
        reads."""
        return {name: [application.get(name) for application in applications] for name in self._rule_fields}

    def fired_mask(self, fired: Sequence[int]) -> np.ndarray:
        """One row's fired rules (indices into ``rules``) as the bool [1, n_rules] row :meth:`fired_matrix` gives."""
        mask = np.zeros((1, len(self.rules)), dtype=bool)
        mask[0, list(fired)] = True
        return mask

    def fired_matrix(self, values: Mapping[str, Sequence[Any]], n: int) -> np.ndarray | None:
        """Whether each rule fires for each of ``n`` validated applications: bool [n, n_rules], or None when no rule
        fires for any of them (:meth:`Rule.fires_on` of the rule's field's values; ``values``: field name -> the n
        applications' values, for every rule's field)."""
        fired: list[Any] = []
        anything = False
        for rule in self.rules:
            column = values[rule.field]
            if isinstance(column, CodedColumn):  # each distinct value once
                gathered = column.gather(rule.fires_on(column.values), bool)
                anything = anything or bool(gathered.any())
                fired.append(gathered)
            else:
                hits = rule.fires_on(column)
                anything = anything or any(hits)
                fired.append(hits)
        if not anything:
            return None
        return np.array(fired, dtype=bool).reshape(len(self.rules), n).T

    def fired_rules(self, application: Mapping[str, Any]) -> tuple[Rule, ...]:
        """Every rule that fires for a validated application, in policy order."""
        return tuple(self.rules[j] for j in self.fired_rule_indices(application))

    def action_indices(self, bands: np.ndarray, fired: np.ndarray | None) -> np.ndarray:
        """Index into ``ACTIONS`` of each decision: the most severe of its band's action (``bands``: indices [n]) and
        the actions of the rules that fired (``fired``: bool [n, n_rules], None when none did); intp [n]."""
        severity: np.ndarray = self._band_severity_array[bands]
        if fired is not None:
            severity = np.maximum(severity, np.where(fired, self._rule_severity_array, 0).max(axis=1))
        return severity

    def action_index(self, band_index: int, fired: Sequence[int]) -> int:
        """Index into ``ACTIONS`` of one decision (:meth:`action_indices` of one row): the most severe of the band's and
        the fired rules' actions."""
        return int(self.action_indices(np.asarray([band_index], dtype=np.intp), self.fired_mask(fired))[0])

    def decide(self, band: Band, fired: tuple[Rule, ...]) -> Action:
        """The most severe of the band's decision and the fired rules' actions."""
        return ACTIONS[self.action_index(self.bands.index(band), [self.rules.index(r) for r in fired])]

    @cached_property
    def _rule_fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.field for r in self.rules))

    @cached_property
    def _band_cuts(self) -> np.ndarray:
        # minus the min_score of every band but the worst (increasing): a score's band is how many of them it misses
        return np.asarray([-b.min_score for b in self.bands[:-1]], dtype=np.int64)

    @cached_property
    def _band_severity_array(self) -> np.ndarray:
        return np.asarray([SEVERITY[b.decision] for b in self.bands], dtype=np.intp)

    @cached_property
    def _rule_severity_array(self) -> np.ndarray:
        return np.asarray([SEVERITY[r.action] for r in self.rules], dtype=np.intp)


def _check_rule_against_spec(rule: Rule, spec: FeatureSpec, where: str) -> None:
    """A rule must name a model input and compare it with a value of that field's kind."""
    if rule.field not in spec.field_names:
        raise ContractError(f"{where}.field: '{rule.field}' is not a field of the feature spec")
    field = spec.field(rule.field)
    if field.kind == "categorical":
        if rule.operator not in ("eq", "ne"):
            raise ContractError(f"{where}.operator: a categorical field '{rule.field}' takes only eq or ne")
        if rule.value not in field.codes:
            raise ContractError(
                f"{where}.value: {rule.value!r} is not a code of '{rule.field}' ({', '.join(field.codes)}); "
                "quote codes such as yes/no, which YAML reads as booleans"
            )
    elif isinstance(rule.value, bool) or not isinstance(rule.value, int | float) or not math.isfinite(rule.value):
        raise ContractError(f"{where}.value: a numeric field '{rule.field}' needs a finite number, got {rule.value!r}")


def _parse_monitoring(raw: Any, where: str) -> Monitoring:
    """The ``monitoring`` section (every key optional; defaults as :class:`Monitoring`)."""
    if raw is None:
        return Monitoring()
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: expected a mapping")
    defaults = Monitoring()
    unknown = sorted(
        set(raw) - {"stability_watch", "stability_action", "four_fifths", "min_sample", "reason_shift_p_value"}
    )
    if unknown:
        raise ContractError(f"{where}: unknown key(s) {unknown}")
    values: dict[str, Any] = {}
    for key in ("stability_watch", "stability_action", "four_fifths"):
        value = raw.get(key, getattr(defaults, key))
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 10:
            raise ContractError(f"{where}.{key}: expected a positive number, got {value!r}")
        values[key] = float(value)
    min_sample = raw.get("min_sample", defaults.min_sample)
    if isinstance(min_sample, bool) or not isinstance(min_sample, int) or min_sample < 1:
        raise ContractError(f"{where}.min_sample: expected a positive integer, got {min_sample!r}")
    if values["stability_action"] < values["stability_watch"]:
        raise ContractError(f"{where}: stability_action must be at least stability_watch")
    if values["four_fifths"] > 1:
        raise ContractError(f"{where}.four_fifths: a ratio of approval rates, at most 1")
    p_value = raw.get("reason_shift_p_value", defaults.reason_shift_p_value)
    if isinstance(p_value, bool) or not isinstance(p_value, int | float) or not 0 < p_value < 0.5:
        raise ContractError(f"{where}.reason_shift_p_value: expected a probability between 0 and 0.5, got {p_value!r}")
    return Monitoring(min_sample=min_sample, reason_shift_p_value=float(p_value), **values)


#: The final decisions a reviewer may give (a referral is not final).
REVIEW_OUTCOMES = ("approve", "decline")


def _parse_review(raw: Any, where: str) -> Review:
    """The ``review`` section: ``justification_codes: [{code, text, outcomes?}]`` (optional)."""
    if raw is None:
        return Review()
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: expected a mapping")
    unknown = sorted(set(raw) - {"justification_codes"})
    if unknown:
        raise ContractError(f"{where}: unknown key(s) {unknown}")
    codes = raw.get("justification_codes") or []
    if not isinstance(codes, list):
        raise ContractError(f"{where}.justification_codes: expected a list")
    out = []
    for i, item in enumerate(codes):
        w = f"{where}.justification_codes[{i}]"
        if not isinstance(item, dict):
            raise ContractError(f"{w}: expected a mapping with code, text and optionally outcomes")
        extra = sorted(set(item) - {"code", "text", "outcomes"})
        if extra:
            raise ContractError(f"{w}: unknown key(s) {extra}")
        code, text = require(item, "code", str, w), require(item, "text", str, w)
        if not code.strip() or not text.strip():
            raise ContractError(f"{w}: code and text must not be empty")
        outcomes = item.get("outcomes", list(REVIEW_OUTCOMES))
        if not isinstance(outcomes, list) or not outcomes or any(o not in REVIEW_OUTCOMES for o in outcomes):
            raise ContractError(f"{w}.outcomes: a non-empty list of {', '.join(REVIEW_OUTCOMES)}, got {outcomes!r}")
        out.append(Justification(code, text, tuple(dict.fromkeys(outcomes))))
    if len({j.code for j in out}) != len(out):
        raise ContractError(f"{where}.justification_codes: duplicate codes")
    return Review(tuple(out))
