"""Reason-code catalog as versioned data, checked against the feature spec and the policy.

Every reason group of a model input has a code; a group with a field that may be missing also has a
``missing`` variant (its own code and words, e.g. "No information on your income was provided"), given
when that group is a reason and its fields were not provided (Regulation B wants the reason that
applies, and "missing" is not "too low"). Every policy rule has a code. The optional ``notice`` section
maps fields the adverse-action notice treats specially (``inquiries_field``: the field holding the number
of recent credit inquiries, if the data has one).

Languages: ``languages`` (optional, default ``[en]``) lists the languages of the customer texts, the
default language first. A ``customer_text`` is either a plain string (the default language only: a
catalog of one language) or a mapping language -> text; a catalog that declares more than one language
must give every customer text (model and rule reasons and their ``missing`` variants) in every one of
them, else it is refused with an error naming the file, the code and the language. The default
language's text is the one a decision records; the others are shown on request (``Accept-Language``).
``auditor_text`` says what the code means in the model, for auditors, in the default language only.
A change of any text is a new ``catalog_version``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from model_store._yaml import load_mapping, require
from model_store.errors import ContractError
from model_store.policy import Policy
from model_store.spec import FeatureSpec

#: The language of a catalog that declares none.
DEFAULT_LANGUAGE = "en"
#: A BCP 47 language tag as catalogs use them: a language, then optional script/region subtags (zh-Hans, en-GB).
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


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
    #: the customer text in every language of the catalog (the default language's is ``customer_text``)
    translations: tuple[tuple[str, str], ...] = ()

    def text(self, language: str) -> str:
        """The customer text in ``language`` (the default language's text if the catalog has no such language)."""
        for lang, text in self.translations:
            if lang == language:
                return text
        return self.customer_text


@dataclass(frozen=True)
class ReasonCatalog:
    """The validated catalog."""

    version: str
    model_reasons: tuple[ReasonCode, ...]
    rule_reasons: tuple[ReasonCode, ...]
    inquiries_field: str | None = None
    languages: tuple[str, ...] = (DEFAULT_LANGUAGE,)
    _texts: dict[str, dict[str, str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        texts = {lang: {r.code: r.text(lang) for r in self.all_codes} for lang in self.languages}
        object.__setattr__(self, "_texts", texts)

    @property
    def default_language(self) -> str:
        """The language of the texts a decision records (the first declared)."""
        return self.languages[0]

    def customer_texts(self, language: str) -> Mapping[str, str]:
        """Code -> customer text in ``language``, for every code (default-language texts if it is not declared)."""
        return self._texts.get(language) or self._texts[self.default_language]

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
        languages = _languages(data.get("languages", [DEFAULT_LANGUAGE]), f"{where}.languages")
        model = tuple(
            _parse(r, f"{where}.model_reasons[{i}]", languages, with_group=True)
            for i, r in enumerate(require(data, "model_reasons", list, where))
        )
        rules = tuple(
            _parse(r, f"{where}.rule_reasons[{i}]", languages, with_group=False)
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
            text = " ".join([r.customer_text, r.auditor_text, *(t for _, t in r.translations)])
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
        return cls(
            version=version, model_reasons=model, rule_reasons=rules, inquiries_field=inquiries, languages=languages
        )

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


def _languages(raw: Any, where: str) -> tuple[str, ...]:
    """The declared languages: a non-empty list of distinct language tags, the default first."""
    if not isinstance(raw, list) or not raw:
        raise ContractError(f"{where}: expected a non-empty list of language tags, the default language first")
    for i, tag in enumerate(raw):
        if not isinstance(tag, str) or not LANGUAGE_TAG.match(tag):
            raise ContractError(f"{where}[{i}]: {tag!r} is not a language tag (e.g. en, zh-Hans)")
    dupes = sorted({t for t in raw if raw.count(t) > 1})
    if dupes:
        raise ContractError(f"{where}: languages listed twice: {dupes}")
    return tuple(raw)


def _customer_texts(
    raw: dict[str, Any], code: str, languages: tuple[str, ...], where: str
) -> tuple[tuple[str, str], ...]:
    """(language, text) for every declared language; refuses a text missing in any of them."""
    value = raw.get("customer_text")
    declared = ", ".join(languages)
    if isinstance(value, str) and len(languages) == 1:
        value = {languages[0]: value}
    if isinstance(value, str):
        raise ContractError(
            f"{where}.customer_text: code {code} has no customer_text in {languages[1]} (a plain string is the "
            f"default language {languages[0]} only; the catalog declares languages {declared})"
        )
    if not isinstance(value, dict):
        raise ContractError(f"{where}.customer_text: code {code}: expected a text or a mapping language -> text")
    for language in languages:
        text = value.get(language)
        if not isinstance(text, str) or not text.strip():
            raise ContractError(
                f"{where}.customer_text: code {code} has no customer_text in {language} "
                f"(the catalog declares languages {declared})"
            )
    extra = sorted(str(k) for k in value if k not in languages)
    if extra:
        raise ContractError(
            f"{where}.customer_text: code {code} has texts in {extra}, which the catalog does not declare "
            f"(languages: {declared})"
        )
    return tuple((language, value[language]) for language in languages)


def _entry(raw: dict[str, Any], where: str, languages: tuple[str, ...], group: str | None) -> ReasonCode:
    code = require(raw, "code", str, where)
    texts = _customer_texts(raw, code, languages, where)
    return ReasonCode(
        code=code,
        group=group,
        customer_text=texts[0][1],
        auditor_text=require(raw, "auditor_text", str, where),
        translations=texts,
    )


def _parse(raw: Any, where: str, languages: tuple[str, ...], with_group: bool) -> ReasonCode:
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
        missing = _entry(variant, f"{where}.missing", languages, group)
    return replace(_entry(raw, where, languages, group), missing=missing)


def _prohibited_terms(spec: FeatureSpec) -> tuple[set[str], dict[str, re.Pattern[str]]]:
    """What a reason text may not name: each monitoring-only attribute's identifiers, and as words (any case)
    the identifiers spelled out and the terms of its basis ("sex and marital status (ECOA)": sex, marital status)."""
    identifiers = {n for m in spec.monitoring_only for n in (m.name, m.source_column, m.monitoring_field)}
    words = {n.replace("_", " ").strip() for n in identifiers}
    for m in spec.monitoring_only:
        words |= {t.strip() for t in re.split(r",|/| and | or ", m.basis.split("(")[0])}
    return identifiers, {w: re.compile(rf"\b{re.escape(w)}\b", re.IGNORECASE) for w in words if len(w) >= 3}
