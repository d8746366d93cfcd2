"""Reason texts in the customer's language: choosing a language, and a recorded decision shown in it (pure).

A decision records its reasons' customer texts in the default language of its reason catalog (the first
of the catalog's ``languages``); the other languages are a view, never the record. So a response in
Simplified Chinese and one in English are the same decision, the same record and the same chain: only the
``customer_text`` of each reason differs, taken by code from the catalog version that made the decision.

Choosing (:func:`best_language`): the caller's language ranges in order of preference (an
``Accept-Language`` header as werkzeug parses it: highest quality first, ``q=0`` meaning "not this one")
against the languages on offer. A range matches a language on offer with the same tag (any case); else,
for Chinese, by script: ``zh``, ``zh-CN``, ``zh-SG``, ``zh-MY`` and any ``zh-Hans-*`` are Simplified
(``zh-Hans``), ``zh-TW``, ``zh-HK``, ``zh-MO`` and ``zh-Hant-*`` Traditional (``zh-Hant``), and a script on
offer never stands in for the other; else a range matches the first language on offer with the same primary
language (``en-US`` -> ``en``). ``*`` matches the default. Nothing matching: the default language (the first
on offer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from service.core.recorded import RecordedDecision

#: Chinese regions whose usual script is Simplified or Traditional.
_ZH_REGION_SCRIPT = {"cn": "hans", "sg": "hans", "my": "hans", "tw": "hant", "hk": "hant", "mo": "hant"}


def _script(parts: Sequence[str]) -> str | None:
    """The script subtag of a lower-cased, split tag: explicit, or (Chinese) implied by the region or by none."""
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            return part
    if parts[0] == "zh":
        for part in parts[1:]:
            if part in _ZH_REGION_SCRIPT:
                return _ZH_REGION_SCRIPT[part]
        return "hans"
    return None


def match_language(wanted: str, offered: Sequence[str]) -> str | None:
    """The language on offer that a language range matches, or None (``*`` is the default)."""
    if wanted.strip() == "*":
        return offered[0] if offered else None
    parts = wanted.strip().lower().replace("_", "-").split("-")
    by_tag = {o.lower(): o for o in offered}
    if "-".join(parts) in by_tag:
        return by_tag["-".join(parts)]
    script = _script(parts)
    if script is not None and f"{parts[0]}-{script}" in by_tag:
        return by_tag[f"{parts[0]}-{script}"]
    for language in offered:
        theirs = language.lower().split("-")
        if theirs[0] == parts[0] and (script is None or _script(theirs) in (None, script)):
            return language
    return None


def best_language(accepted: Iterable[tuple[str, float]], offered: Sequence[str]) -> str:
    """The language on offer best matched by the accepted ranges (highest quality first), else the default
    (``offered[0]``). A range with ``q=0`` refuses the language it matches (``*;q=0`` refuses nothing)."""
    ranked = sorted(accepted, key=lambda item: -item[1])
    refused = {match_language(w, offered) for w, q in ranked if q <= 0 and w.strip() != "*"}
    for wanted, quality in ranked:
        if quality > 0:
            match = match_language(wanted, offered)
            if match is not None and match not in refused:
                return match
    return offered[0]


def in_language(recorded: RecordedDecision, texts: Mapping[str, str]) -> RecordedDecision:
    """The recorded decision with each reason's customer text replaced by ``texts[code]`` (a code without a text
    keeps its recorded one). A view for the response; the record is never changed."""
    reasons = tuple(
        replace(r, customer_text=texts[r.code]) if r.code in texts else r for r in recorded.decision.reasons
    )
    if reasons == recorded.decision.reasons:
        return recorded
    return replace(
        recorded,
        decision=replace(recorded.decision, reasons=reasons),
        payload=replace(recorded.payload, reasons=reasons),
    )
