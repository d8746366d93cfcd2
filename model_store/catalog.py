"""Reason-code catalog as versioned data, checked against the feature spec and the policy.

Every reason group of a model input has a code; a group with a field that may be missing also has a
``missing`` variant (its own code and words, e.g. "No information on your income was provided"), given
when that group is a reason and its fields were not provided (Regulation B wants the reason that
applies, and "missing" is not "too low"). Every policy rule has a code. The optional ``notice`` section
maps fields the adverse-action notice treats specially (``inquiries_field``: the field holding the number
of recent credit inquiries, if the data has one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_store._yaml import load_mapping, require
from model_store.errors import ContractError
from model_store.policy import Policy
from model_store.spec import FeatureSpec


@dataclass(frozen=True)
class ReasonCode:
    """One reason code: ``group`` is a reason group of model inputs, or None for a policy rule.

    ``missing`` is the variant given when the group's fields were not provided (model reasons only).
    """

    code: str
    group: str | None
    customer_text: str
    auditor_text: str
    missing: ReasonCode | None = None


@dataclass(frozen=True)
class ReasonCatalog:
    """The validated catalog."""

    version: str
    model_reasons: tuple[ReasonCode, ...]
    rule_reasons: tuple[ReasonCode, ...]
    inquiries_field: str | None = None

    @property
    def all_codes(self) -> tuple[ReasonCode, ...]:
        """Every code: rules, groups and the groups' missing variants."""
        return (*self.rule_reasons, *self.model_reasons, *(r.missing for r in self.model_reasons if r.missing))

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
        codes = [r.code for r in model + rules] + [r.missing.code for r in model if r.missing]
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
        may_be_missing = {f.reason_group for f in spec.fields if f.missing}
        without = sorted(r.group for r in model if r.group in may_be_missing and r.missing is None)
        if without:
            raise ContractError(
                f"{where}.model_reasons: group(s) {without} have a field that may be missing but no `missing` "
                "reason (code, customer_text, auditor_text) to give when it was not provided"
            )
        identifiers, words = _prohibited_terms(spec)
        for r in (*model, *rules, *(m.missing for m in model if m.missing)):
            named = {r.group} | {w.strip(".,;:()'\"") for w in r.auditor_text.split()}
            text = f"{r.customer_text} {r.auditor_text}"
            hit = (identifiers & named) | {w for w, pattern in words.items() if pattern.search(text)}
            if hit:
                raise ContractError(f"{where}: code {r.code} names prohibited-basis attribute(s) {sorted(hit)}")
        rule_codes = {r.code for r in rules}
        uncovered = [r.code for r in policy.rules if r.code not in rule_codes]
        if uncovered:
            raise ContractError(f"{where}.rule_reasons: policy rules without a reason code: {uncovered}")
        notice = data.get("notice") or {}
        if not isinstance(notice, dict) or sorted(set(notice) - {"inquiries_field"}):
            raise ContractError(f"{where}.notice: expected a mapping with (only) inquiries_field")
        inquiries = notice.get("inquiries_field")
        if inquiries is not None and inquiries not in spec.field_names:
            raise ContractError(f"{where}.notice.inquiries_field: '{inquiries}' is not a field of the feature spec")
        return cls(version=version, model_reasons=model, rule_reasons=rules, inquiries_field=inquiries)

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
    group = require(raw, "group", str, where) if with_group else None
    missing = None
    if "missing" in raw:
        if not with_group:
            raise ContractError(f"{where}.missing: only model reasons have a missing variant")
        variant = raw["missing"]
        if not isinstance(variant, dict):
            raise ContractError(f"{where}.missing: expected a mapping with code, customer_text and auditor_text")
        missing = ReasonCode(
            code=require(variant, "code", str, f"{where}.missing"),
            group=group,
            customer_text=require(variant, "customer_text", str, f"{where}.missing"),
            auditor_text=require(variant, "auditor_text", str, f"{where}.missing"),
        )
    return ReasonCode(
        code=require(raw, "code", str, where),
        group=group,
        customer_text=require(raw, "customer_text", str, where),
        auditor_text=require(raw, "auditor_text", str, where),
        missing=missing,
    )


def _prohibited_terms(spec: FeatureSpec) -> tuple[set[str], dict[str, re.Pattern[str]]]:
    """What a reason text may not name: each monitoring-only attribute's identifiers, and as words (any case)
    the identifiers spelled out and the terms of its basis ("sex and marital status (ECOA)": sex, marital status)."""
    identifiers = {n for m in spec.monitoring_only for n in (m.name, m.source_column, m.monitoring_field)}
    words = {n.replace("_", " ").strip() for n in identifiers}
    for m in spec.monitoring_only:
        words |= {t.strip() for t in re.split(r",|/| and | or ", m.basis.split("(")[0])}
    return identifiers, {w: re.compile(rf"\b{re.escape(w)}\b", re.IGNORECASE) for w in words if len(w) >= 3}
