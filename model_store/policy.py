"""Credit policy as versioned data: score scaling, risk bands, decisions and hard rules.

Pure and deterministic; shared by training (band bad rates, proposed cut-offs) and the
service (decisions). ``margin`` is always the model's log-odds of default.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model_store._yaml import load_mapping, require
from model_store.errors import ContractError
from model_store.spec import FeatureSpec

Action = Literal["approve", "refer", "decline"]
SEVERITY: dict[str, int] = {"approve": 0, "refer": 1, "decline": 2}
_OPERATORS = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
}


@dataclass(frozen=True)
class Scaling:
    """Points-to-double-odds scaling of the probability of default into an integer score."""

    anchor_score: float
    anchor_odds: float
    pdo: float
    min_score: int
    max_score: int

    @property
    def factor(self) -> float:
        """Score points per unit of log-odds."""
        return self.pdo / math.log(2.0)

    def raw_score(self, margin: float | np.ndarray) -> float | np.ndarray:
        """Unrounded, unclipped score of a log-odds-of-default margin."""
        # ln(odds_good) = -margin
        return self.anchor_score + self.factor * (-np.asarray(margin, dtype=np.float64) - math.log(self.anchor_odds))

    def score(self, margin: float) -> int:
        """Integer score in [min_score, max_score] for one margin."""
        raw = float(self.raw_score(margin))
        return int(min(self.max_score, max(self.min_score, math.floor(raw + 0.5))))

    def scores(self, margins: np.ndarray) -> np.ndarray:
        """Integer scores for an array of margins."""
        raw = np.floor(np.asarray(self.raw_score(margins)) + 0.5)
        return np.clip(raw, self.min_score, self.max_score).astype(np.int64)

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
        """Whether the rule fires for a validated application."""
        if self.field not in application:
            return False
        return bool(_OPERATORS[self.operator](application[self.field], self.value))


@dataclass(frozen=True)
class Policy:
    """The validated policy."""

    version: str
    scaling: Scaling
    bands: tuple[Band, ...]
    rules: tuple[Rule, ...]

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
            if spec is not None and rule.field not in spec.field_names:
                raise ContractError(f"{w}.field: '{rule.field}' is not a field of the feature spec")
            rules.append(rule)
        if len({r.code for r in rules}) != len(rules):
            raise ContractError(f"{where}.rules: duplicate rule codes")
        return cls(version=version, scaling=scaling, bands=tuple(bands), rules=tuple(rules))

    def band_for(self, score: int) -> Band:
        """The band of an integer score."""
        for band in self.bands:
            if score >= band.min_score:
                return band
        return self.bands[-1]

    def fired_rules(self, application: Mapping[str, Any]) -> tuple[Rule, ...]:
        """Every rule that fires for a validated application, in policy order."""
        return tuple(r for r in self.rules if r.fires(application))

    def decide(self, band: Band, fired: tuple[Rule, ...]) -> Action:
        """The most severe of the band's decision and the fired rules' actions."""
        actions: list[Action] = [band.decision, *(r.action for r in fired)]
        return max(actions, key=lambda a: SEVERITY[a])
