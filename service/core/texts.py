"""The reason texts of one catalog version, kept once in the decision store instead of in every record.

Every decision record of payload schema version 4 names the texts its reasons were worded with by their sha256
(``model.reason_texts_sha256``) instead of repeating each reason's customer and auditor texts (about 1 KB a
record). The store keeps each texts document once, content-addressed: the sha256 is of the document's canonical
JSON, so a document changed in the store no longer matches the hash the records carry (and cover with their own
record hash), and the record's texts are reported unreadable rather than read wrong.

Pure: no store, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.core.canonical import canonical_json

#: The key of a payload's ``model`` object naming its texts document (payload schema version 4).
NAME_KEY = "reason_texts_sha256"

#: Finds the texts document with a sha256 (the store's lookup, or a record's own document), None if it has none.
TextsLookup = Callable[[str], "ReasonTexts | None"]


class CatalogEntry(Protocol):
    """What a texts document is made of, per code (``model_store.catalog.ReasonCode`` has it)."""

    @property
    def code(self) -> str: ...
    @property
    def customer_text(self) -> str: ...
    @property
    def auditor_text(self) -> str: ...


class TextsError(ValueError):
    """A texts document is malformed; the message names the key."""


@dataclass(frozen=True)
class ReasonTexts:
    """Customer and auditor texts by reason code, of one catalog version (its default language)."""

    catalog_version: str
    texts: Mapping[str, tuple[str, str]]  # code -> (customer_text, auditor_text)
    body: str = field(init=False, repr=False, compare=False)
    sha256: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        body = canonical_json(self.to_json())
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "sha256", hashlib.sha256(body.encode("utf-8")).hexdigest())

    @classmethod
    def of(cls, catalog_version: str, entries: Iterable[CatalogEntry]) -> ReasonTexts:
        """The texts of a catalog's codes (``ReasonCatalog.all_codes``)."""
        return cls(catalog_version, {e.code: (e.customer_text, e.auditor_text) for e in entries})

    def to_json(self) -> dict[str, Any]:
        """The document as stored (its canonical JSON is what the sha256 covers)."""
        return {
            "catalog_version": self.catalog_version,
            "texts": {code: {"customer_text": c, "auditor_text": a} for code, (c, a) in self.texts.items()},
        }

    @classmethod
    def from_body(cls, body: str) -> ReasonTexts:
        """A stored document (TextsError names what is wrong)."""
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise TextsError(f"reason texts: not JSON ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("catalog_version"), str):
            raise TextsError("reason texts.catalog_version: expected a string")
        raw = data.get("texts")
        if not isinstance(raw, dict):
            raise TextsError("reason texts.texts: expected an object")
        texts: dict[str, tuple[str, str]] = {}
        for code, entry in raw.items():
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) for k in ("customer_text", "auditor_text")
            ):
                raise TextsError(f"reason texts.texts.{code}: expected customer_text and auditor_text strings")
            texts[code] = (entry["customer_text"], entry["auditor_text"])
        return cls(data["catalog_version"], texts)

    @classmethod
    def stored(cls, sha256: str, body: str) -> ReasonTexts | None:
        """The document a store holds under ``sha256``, if its body is still that document (None: unreadable, or
        changed since it was stored)."""
        try:
            found = cls.from_body(body)
        except TextsError:
            return None
        return found if found.sha256 == sha256 else None

    def find(self, sha256: str) -> ReasonTexts | None:
        """This document if it is the one named (a :data:`TextsLookup`)."""
        return self if sha256 == self.sha256 else None
