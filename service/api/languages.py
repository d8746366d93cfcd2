"""Language negotiation for the HTTP layer: ``Accept-Language`` (or ``?lang=``) in, ``Content-Language`` out.

The caller's ranges come from werkzeug's parser (``request.accept_languages``: quality values, best first);
matching them to the languages of a decision's reason catalog is :func:`service.core.languages.best_language`
(werkzeug's own ``best_match`` does not know that ``zh-CN`` is written in ``zh-Hans``). Every response whose
texts depend on the language says which one it is in (``Content-Language``) and that it varies with the
header (``Vary: Accept-Language``).
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import Response, request

from model_store.catalog import ReasonCatalog
from service.core.languages import best_language, in_language, match_language
from service.core.recorded import RecordedDecision
from service.errors import FieldError, InvalidParameter

ACCEPT_LANGUAGE = "Accept-Language"
CONTENT_LANGUAGE = "Content-Language"
ACCEPT_LANGUAGE_PARAMETER = {
    "name": ACCEPT_LANGUAGE,
    "in": "header",
    "required": False,
    "description": "Language of the reasons' customer texts, with quality values (e.g. `zh-CN, en;q=0.5`): one of "
    "the reason catalog's languages (the example catalogs: `en`, `zh-Hans`; `zh`, `zh-CN`, `zh-SG` and `zh-Hans-*` "
    "mean `zh-Hans`); anything else gives the catalog's default language. The record is the same in every language.",
    "schema": {"type": "string", "maxLength": 500},
}
CONTENT_LANGUAGE_HEADER = {
    CONTENT_LANGUAGE: {
        "schema": {"type": "string"},
        "description": "Language of the customer texts in this response (absent when the deciding catalog is unknown)",
    },
    "Vary": {"schema": {"type": "string"}, "description": "Includes Accept-Language"},
}


def accepted_ranges() -> list[tuple[str, float]]:
    """The request's ``Accept-Language`` ranges with their quality values (werkzeug's parse)."""
    return [(value, float(quality)) for value, quality in request.accept_languages]


def negotiate(offered: Sequence[str], explicit: str | None = None, field: str = "lang") -> str:
    """The language to answer in: ``explicit`` (a ``?lang=`` value; InvalidQuery naming ``field`` if none of
    ``offered`` matches it), else the best of ``Accept-Language``, else the default (``offered[0]``)."""
    if explicit is not None:
        match = match_language(explicit, offered)
        if match is None:
            message = f"{explicit!r} is not one of the languages offered ({', '.join(offered)})"
            raise InvalidParameter(f"{field}: {message}", [FieldError(field, message)])
        return match
    return best_language(accepted_ranges(), offered)


def localized(recorded: RecordedDecision, catalog: ReasonCatalog | None) -> tuple[RecordedDecision, str | None]:
    """The recorded decision in the caller's language (``Accept-Language``) and that language; the recorded texts
    and None when the deciding catalog is unknown."""
    if catalog is None:
        return recorded, None
    if not request.headers.get(ACCEPT_LANGUAGE):  # the usual case: no preference, the recorded (default) texts
        return recorded, catalog.default_language
    language = best_language(accepted_ranges(), catalog.languages)
    if language == catalog.default_language:
        return recorded, language
    return in_language(recorded, catalog.customer_texts(language)), language


def mark_language(response: Response, language: str | None, *, negotiated: bool = True) -> Response:
    """Set ``Content-Language`` (when known) and, when the language was ``negotiated``, add ``Accept-Language``
    to ``Vary``."""
    if language is not None:
        response.headers[CONTENT_LANGUAGE] = language
    if negotiated:
        if response.headers.get("Vary"):
            response.vary.add(ACCEPT_LANGUAGE)
        else:  # the usual case, without parsing and re-writing a header set
            response.headers["Vary"] = ACCEPT_LANGUAGE
    return response
