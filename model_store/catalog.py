"""Reason-code catalog as versioned data, checked against the feature spec and the policy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_store._yaml import load_mapping, require
from model_store.errors import ContractError
from model_store.policy import Policy
from model_store.spec import FeatureSpec


@dataclass(frozen=True)
class ReasonCode:
    """One reason code: ``group`` is a reason group of model inputs, or None for a policy rule."""

    code: str
    group: str | None
    customer_text: str
    auditor_text: str


@dataclass(frozen=True)
class ReasonCatalog:
    """The validated catalog."""

    version: str
    model_reasons: tuple[ReasonCode, ...]
    rule_reasons: tuple[ReasonCode, ...]

    @classmethod
    def load(cls, path: str | Path, spec: FeatureSpec, policy: Policy) -> ReasonCatalog:
        """Load a catalog YAML file and check it against the spec and policy."""
        return cls.from_dict(load_mapping(Path(path)), spec, policy, where=str(path))

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], spec: FeatureSpec, policy: Policy, where: str = "reason_codes"
    ) -> ReasonCatalog:
        """Build and validate a catalog: every input group has a code, no code names a prohibited attribute."""
        version = require(data, "catalog_version", str, where)
        model = tuple(
            _parse(r, f"{where}.model_reasons[{i}]", with_group=True)
            for i, r in enumerate(require(data, "model_reasons", list, where))
        )
        rules = tuple(
            _parse(r, f"{where}.rule_reasons[{i}]", with_group=False)
            for i, r in enumerate(data.get("rule_reasons", []) or [])
        )
        codes = [r.code for r in model + rules]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ContractError(f"{where}: duplicate reason codes {dupes}")
        groups = [r.group for r in model]
        if len(set(groups)) != len(groups):
            raise ContractError(f"{where}.model_reasons: each reason group must have exactly one code")
        missing = [g for g in spec.reason_groups if g not in groups]
        if missing:
            raise ContractError(f"{where}: model input reason groups without a code: {missing}")
        unknown = [g for g in groups if g not in spec.reason_groups]
        if unknown:
            raise ContractError(f"{where}: codes for groups that no model input has: {unknown}")
        prohibited = {n for m in spec.monitoring_only for n in (m.name, m.source_column, m.monitoring_field)}
        for r in model + rules:
            named = {r.group} | {w.strip(".,;:()'\"") for w in r.auditor_text.split()}
            hit = prohibited & named
            if hit:
                raise ContractError(f"{where}: code {r.code} names prohibited-basis attribute(s) {sorted(hit)}")
        rule_codes = {r.code for r in rules}
        uncovered = [r.code for r in policy.rules if r.code not in rule_codes]
        if uncovered:
            raise ContractError(f"{where}.rule_reasons: policy rules without a reason code: {uncovered}")
        return cls(version=version, model_reasons=model, rule_reasons=rules)

    def for_group(self, group: str) -> ReasonCode:
        """The code of a reason group."""
        for r in self.model_reasons:
            if r.group == group:
                return r
        raise KeyError(group)

    def for_rule(self, code: str) -> ReasonCode:
        """The code of a policy rule."""
        for r in self.rule_reasons:
            if r.code == code:
                return r
        raise KeyError(code)


def _parse(raw: Any, where: str, with_group: bool) -> ReasonCode:
    if not isinstance(raw, dict):
        raise ContractError(f"{where}: expected a mapping")
    return ReasonCode(
        code=require(raw, "code", str, where),
        group=require(raw, "group", str, where) if with_group else None,
        customer_text=require(raw, "customer_text", str, where),
        auditor_text=require(raw, "auditor_text", str, where),
    )
