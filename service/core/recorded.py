"""The recorded decision, typed: the one module that writes and reads a decision record's payload.

A decision record is the store's columns (``decision_id``, ``application_id``, ``created_at``,
``decision``, ``risk_band``, ``score``, ``model_name``, ``model_version``, ``reason_codes``, ...) plus a
JSON payload holding everything else, each fact once. The payload carries its ``schema_version``:

- **4** (written now): as version 3, and the reasons' texts are not repeated in every record: ``model`` names the
  texts document of the catalog the reasons were worded with by its sha256 (``"reason_texts_sha256"``,
  :class:`service.core.texts.ReasonTexts`), which the decision store keeps once; a reason carries
  ``customer_text`` and ``auditor_text`` only when they differ from that document's (never, as the engine words
  them). A record without ``reason_texts_sha256`` carries its texts as version 3 does. Reading one needs the
  store's texts: :meth:`RecordedDecision.of` asks the record (``find_reason_texts``), and a document the store
  does not hold, or holds changed, makes the payload unreadable (PayloadError), never worded differently.

- **3**: as version 2 with nothing a record already holds elsewhere said twice::

    "reasons": [{"code", "kind", "group", "customer_text", "auditor_text", "adverse",
                 "values": [{"field", "label"}],          # the value is request.applicant[field]
                 "contribution": {...}}]                  # only when not derived exactly (see below)

    "attributions": [log-odds, ...]                      # one per applicant field, in the order of their names

  A model reason's contribution is the sum of the attributions of its ``values``' fields (in order) and its score
  points ``-points_per_log_odds * log_odds``: written only when that derivation would not give the very same
  floats (then as in version 2; ``null`` for a model reason without one). A rule reason has no contribution.
  The attributions are a list aligned with the applicant's field names, sorted (the validated applicant holds
  every field of the spec, a missing one as null); an object as in version 2 if ever their names differ.
  Every other key is as in version 2, at the same path.

- **2**::

    {"schema_version": 2,
     "request": {"applicant": {...}, "monitoring": {...}},            # the validated request; monitoring only if sent
     "probability_of_default": 0.18, "margin": -1.48, "base_value": -1.19,
     "score_scale": {"min": 300, "max": 850, "points_per_log_odds": 57.7},
     "reasons": [{"code", "kind", "group", "customer_text", "auditor_text", "adverse",       # as given, in
                  "values": [{"field", "value", "label"}], "contribution": {"log_odds", "score_points"}}],  # order
     "rules_fired": [{"code", "field", "operator", "threshold", "action", "description"}],
     "attributions": {"<field>": log-odds, ...},                      # exact SHAP per field, spec order
     "model": {"sha256", "manifest_sha256", "family", "spec_version", "policy_version", "catalog_version"},
     "decided_by": {"key_id", "label", "role"},
     "latency_ms": 0.61,
     "recourse": {"status", "fields", "candidates", "options": [...]},  # optional: only when asked for (refer/decline)
     "reason_stability": {"top_reason": true, "reason_set": false}}   # optional: when the version measured it

  ``recourse`` and ``reason_stability`` are absent from records made without them (older ones included); a
  record that holds them has them re-derived and compared by replay.

- **1** (the first version's records, still read): no ``schema_version``; ``request`` (with the
  application id), the whole response body under ``response``, and ``attributions``, ``base_value``,
  ``margin``, ``versions``, ``latency`` and ``decided_by`` beside it.

Replay, the adverse-action notice, the reports and the API read every record through
:class:`RecordedDecision`, whatever its version; the hash chain covers the payload exactly as stored.
Pure: JSON-ready values in and out; the decision store (``service.records``) keeps the payload as the
JSON object it is given and never looks inside.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol

from model_store.stability import ReasonStability
from model_store.vocabulary import ACTIONS, Action
from service.core.canonical import canonical_json
from service.core.engine import Decision, Reason, ReasonValue, RuleHit
from service.core.recourse import Recourse, RecourseChange, RecourseOption
from service.core.texts import NAME_KEY, ReasonTexts, TextsLookup

PAYLOAD_SCHEMA_VERSION = 4
KNOWN_VERSIONS = (1, 2, 3, 4)


class PayloadError(ValueError):
    """A stored payload cannot be read as a decision; the message names the key."""


@dataclass(frozen=True)
class ApplicationRequest:
    """A validated decision request: the caller's id, the applicant's fields and optional monitoring data."""

    application_id: str
    applicant: Mapping[str, Any]
    monitoring: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The validated request as the client's JSON (what ``request_hash`` covers)."""
        body: dict[str, Any] = {"application_id": self.application_id, "applicant": dict(self.applicant)}
        if self.monitoring is not None:
            body["monitoring"] = dict(self.monitoring)
        return body

    @cached_property
    def request_hash(self) -> str:
        """sha256 of the canonical JSON of the validated request (idempotency and replay compare it)."""
        return hashlib.sha256(canonical_json(self.to_json()).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ModelProvenance:
    """What produced a decision, beyond the model name and version the record's columns hold."""

    sha256: str
    manifest_sha256: str
    family: str
    spec_version: str
    policy_version: str
    catalog_version: str


@dataclass(frozen=True)
class ScoreScale:
    """The score range and the points per unit of log-odds the decision was scaled with."""

    min: int
    max: int
    points_per_log_odds: float | None  # not recorded by schema version 1


@dataclass(frozen=True)
class DecisionPayload:
    """Everything recorded about a decision that the record's columns do not hold."""

    applicant: Mapping[str, Any]
    monitoring: Mapping[str, Any] | None
    probability_of_default: float
    margin: float
    base_value: float
    score_scale: ScoreScale
    reasons: tuple[Reason, ...]
    rules_fired: tuple[RuleHit, ...]
    attributions: tuple[tuple[str, float], ...]
    model: ModelProvenance
    decided_by: Mapping[str, str]
    latency_ms: float | None
    schema_version: int = PAYLOAD_SCHEMA_VERSION
    recourse: Recourse | None = None
    reason_stability: ReasonStability | None = None
    #: the texts document of the reasons' catalog (schema version 4): named in the stored form, texts left out
    reason_texts: ReasonTexts | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The stored form (always the current schema version; the optional parts only when present)."""
        request: dict[str, Any] = {"applicant": dict(self.applicant)}
        if self.monitoring is not None:
            request["monitoring"] = dict(self.monitoring)
        model = self.model
        attributions = dict(self.attributions)
        factor = self.score_scale.points_per_log_odds
        texts = self.reason_texts
        named = {} if texts is None else {NAME_KEY: texts.sha256}
        return {
            "schema_version": PAYLOAD_SCHEMA_VERSION,
            "request": request,
            "probability_of_default": self.probability_of_default,
            "margin": self.margin,
            "base_value": self.base_value,
            "score_scale": {
                "min": self.score_scale.min,
                "max": self.score_scale.max,
                "points_per_log_odds": self.score_scale.points_per_log_odds,
            },
            "reasons": [_stored_reason(r, self.applicant, attributions, factor, texts) for r in self.reasons],
            "rules_fired": [rule_to_json(r) for r in self.rules_fired],
            "attributions": _stored_attributions(attributions, self.applicant),
            "model": {
                "sha256": model.sha256,
                "manifest_sha256": model.manifest_sha256,
                "family": model.family,
                "spec_version": model.spec_version,
                "policy_version": model.policy_version,
                "catalog_version": model.catalog_version,
                **named,
            },
            "decided_by": dict(self.decided_by),
            "latency_ms": self.latency_ms,
            **({} if self.recourse is None else {"recourse": self.recourse.to_json()}),
            **({} if self.reason_stability is None else {"reason_stability": self.reason_stability.to_json()}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], texts: TextsLookup | None = None) -> DecisionPayload:
        """Read a stored payload of any known schema version; PayloadError names what is wrong. ``texts`` finds
        the reason texts a version-4 payload names (the record's store)."""
        version = data.get("schema_version", 1)
        if version in (3, 4):
            return _read_v2(_Reader(data, "payload"), version=version, texts=texts)
        if version == 2:
            return _read_v2(_Reader(data, "payload"))
        if version == 1:
            return _read_v1(_Reader(data, "payload"))
        raise PayloadError(f"payload.schema_version: {version!r} is not one of {KNOWN_VERSIONS}")


class RecordColumns(Protocol):
    """The columns of a stored decision record (``service.records.DecisionRecord`` has them)."""

    @property
    def decision_id(self) -> str: ...
    @property
    def application_id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def decision(self) -> str: ...
    @property
    def risk_band(self) -> str: ...
    @property
    def score(self) -> int: ...
    @property
    def model_name(self) -> str: ...
    @property
    def model_version(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    def find_reason_texts(self, sha256: str) -> ReasonTexts | None: ...


@dataclass(frozen=True)
class RecordedDecision:
    """A decision as recorded: the record's columns and its typed payload.

    What the API renders, replay compares, the notice and the reports read, whatever the payload's version.
    """

    decision_id: str
    application_id: str
    created_at: datetime
    decision: Decision
    model_name: str
    model_version: str
    payload: DecisionPayload

    @cached_property
    def payload_json(self) -> dict[str, Any]:
        """The payload's stored form, made once: a new record's payload is this very object, which is how what is
        derived from the record (its report row) knows it may read this typed decision instead of parsing it."""
        return self.payload.to_json()

    @classmethod
    def of(cls, record: RecordColumns) -> RecordedDecision:
        """The typed view of a stored record (PayloadError if its payload is unreadable)."""
        payload = DecisionPayload.from_json(record.payload, record.find_reason_texts)
        if record.decision not in ACTIONS:
            raise PayloadError(f"decision: {record.decision!r} is not one of {', '.join(ACTIONS)}")
        decision = Decision(
            decision=record.decision,
            score=record.score,
            probability_of_default=payload.probability_of_default,
            margin=payload.margin,
            base_value=payload.base_value,
            risk_band=record.risk_band,
            reasons=payload.reasons,
            rules_fired=payload.rules_fired,
            attributions=payload.attributions,
        )
        return cls(
            decision_id=record.decision_id,
            application_id=record.application_id,
            created_at=record.created_at,
            decision=decision,
            model_name=record.model_name,
            model_version=record.model_version,
            payload=payload,
        )

    @classmethod
    def new(
        cls,
        *,
        decision_id: str,
        created_at: datetime,
        request: ApplicationRequest,
        decision: Decision,
        model_name: str,
        model_version: str,
        provenance: ModelProvenance,
        score_scale: ScoreScale,
        decided_by: Mapping[str, str],
        latency_ms: float | None,
        recourse: Recourse | None = None,
        reason_stability: ReasonStability | None = None,
        reason_texts: ReasonTexts | None = None,
    ) -> RecordedDecision:
        """A decision just made, ready to be recorded (``reason_texts``: its catalog's, kept once by the store)."""
        payload = DecisionPayload(
            applicant=request.applicant,
            monitoring=request.monitoring,
            probability_of_default=decision.probability_of_default,
            margin=decision.margin,
            base_value=decision.base_value,
            score_scale=score_scale,
            reasons=decision.reasons,
            rules_fired=decision.rules_fired,
            attributions=decision.attributions,
            model=provenance,
            decided_by=decided_by,
            latency_ms=None if latency_ms is None else round(latency_ms, 3),
            recourse=recourse,
            reason_stability=reason_stability,
            reason_texts=reason_texts,
        )
        return cls(decision_id, request.application_id, created_at, decision, model_name, model_version, payload)

    @property
    def action(self) -> Action:
        """approve, refer or decline."""
        return self.decision.decision

    @property
    def request(self) -> ApplicationRequest:
        """The validated request as recorded."""
        return ApplicationRequest(self.application_id, self.payload.applicant, self.payload.monitoring)

    @property
    def reason_codes(self) -> tuple[str, ...]:
        """The codes of the reasons given, in order."""
        return tuple(r.code for r in self.decision.reasons)


# ---- JSON of the engine's types (stored form) --------------------------------------------------


def reason_to_json(reason: Reason) -> dict[str, Any]:
    """One reason as stored and as the API shows it."""
    contribution = None
    if reason.contribution_log_odds is not None and reason.contribution_points is not None:
        contribution = {"log_odds": reason.contribution_log_odds, "score_points": reason.contribution_points}
    return {
        "code": reason.code,
        "kind": reason.kind,
        "group": reason.group,
        "customer_text": reason.customer_text,
        "auditor_text": reason.auditor_text,
        "adverse": reason.adverse,
        "values": [{"field": v.field, "value": v.value, "label": v.label} for v in reason.values],
        "contribution": contribution,
    }


def rule_to_json(rule: RuleHit) -> dict[str, Any]:
    """One fired rule as stored (and as the API shows it)."""
    return {
        "code": rule.code,
        "field": rule.field,
        "operator": rule.operator,
        "threshold": rule.threshold,
        "action": rule.action,
        "description": rule.description,
    }


def _stored_reason(
    reason: Reason,
    applicant: Mapping[str, Any],
    attributions: Mapping[str, float],
    factor: float | None,
    texts: ReasonTexts | None,
) -> dict[str, Any]:
    """One reason as schema version 4 stores it: what :func:`_reason` cannot derive exactly from the rest."""
    stored = reason_to_json(reason)
    if texts is not None and texts.texts.get(reason.code) == (reason.customer_text, reason.auditor_text):
        del stored["customer_text"], stored["auditor_text"]
    stored["values"] = [
        {"field": v.field, "label": v.label}
        if _same(v.value, applicant.get(v.field))
        else {"field": v.field, "value": v.value, "label": v.label}
        for v in reason.values
    ]
    if reason.kind == "rule" and reason.contribution_log_odds is None:
        del stored["contribution"]
    elif reason.kind == "model" and reason.contribution_log_odds is not None:
        derived = _derived_contribution(reason.values, attributions, factor)
        if derived is not None and _same(derived, (reason.contribution_log_odds, reason.contribution_points)):
            del stored["contribution"]
    return stored


def _stored_attributions(
    attributions: dict[str, float], applicant: Mapping[str, Any]
) -> list[float] | dict[str, float]:
    """The attributions as schema version 3 stores them: aligned with the applicant's sorted field names."""
    names = sorted(applicant)
    if len(names) != len(attributions) or not all(name in attributions for name in names):
        return attributions
    return [attributions[name] for name in names]


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types (1 and 1.0 and True are not the same JSON value)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _derived_contribution(
    values: tuple[ReasonValue, ...], attributions: Mapping[str, float], factor: float | None
) -> tuple[float, float] | None:
    """(log-odds, score points) of a model reason from the attributions of its fields, or None if underivable."""
    if factor is None or not values or any(v.field not in attributions for v in values):
        return None
    log_odds = attributions[values[0].field]
    for value in values[1:]:
        log_odds += attributions[value.field]
    return log_odds, -factor * log_odds


# ---- reading --------------------------------------------------------------------------------------


class _Reader:
    """Typed access to a JSON object, raising PayloadError naming the dotted key."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise PayloadError(f"{where}: expected an object")
        self.data = data
        self.where = where

    def sub(self, key: str) -> _Reader:
        return _Reader(self.data.get(key), f"{self.where}.{key}")

    def optional_sub(self, key: str) -> _Reader | None:
        value = self.data.get(key)
        return None if value is None else _Reader(value, f"{self.where}.{key}")

    def raw(self, key: str) -> Any:
        if key not in self.data:
            raise PayloadError(f"{self.where}.{key}: missing")
        return self.data[key]

    def text(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise PayloadError(f"{self.where}.{key}: expected a string")
        return value

    def optional_str(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise PayloadError(f"{self.where}.{key}: expected a string or null")
        return value

    def number(self, key: str) -> float:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise PayloadError(f"{self.where}.{key}: expected a finite number")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self.data.get(key) is None else self.number(key)

    def integer(self, key: str) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PayloadError(f"{self.where}.{key}: expected an integer")
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise PayloadError(f"{self.where}.{key}: expected true or false")
        return value

    def items(self, key: str) -> list[_Reader]:
        value = self.data.get(key)
        if not isinstance(value, list):
            raise PayloadError(f"{self.where}.{key}: expected a list")
        return [_Reader(item, f"{self.where}.{key}[{i}]") for i, item in enumerate(value)]

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if not isinstance(value, Mapping):
            raise PayloadError(f"{self.where}.{key}: expected an object")
        return dict(value)

    def optional_mapping(self, key: str) -> dict[str, Any] | None:
        return None if self.data.get(key) is None else self.mapping(key)

    def aligned_numbers(self, key: str, names: list[str]) -> tuple[tuple[str, float], ...]:
        """A list of finite numbers, one per name (in order), as (name, number) pairs."""
        values = self.data.get(key)
        if not isinstance(values, list) or len(values) != len(names):
            raise PayloadError(f"{self.where}.{key}: expected a list of {len(names)} numbers, one per applicant field")
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise PayloadError(f"{self.where}.{key}[{i}]: expected a finite number")
        return tuple((name, float(value)) for name, value in zip(names, values, strict=True))

    def numbers(self, key: str) -> tuple[tuple[str, float], ...]:
        reader = self.sub(key)
        return tuple((str(name), reader.number(name)) for name in reader.data)


@dataclass(frozen=True)
class _Derivable:
    """What a schema-version-3 reason is completed from: the recorded applicant, attributions and scale."""

    applicant: Mapping[str, Any]
    attributions: Mapping[str, float]
    factor: float | None


def _reason(item: _Reader, derivable: _Derivable | None = None, texts: ReasonTexts | None = None) -> Reason:
    """A stored reason; ``derivable`` (schema version 3 on) supplies the values and contribution left out,
    ``texts`` (version 4) the texts."""
    kind = item.text("kind")
    code = item.text("code")
    if texts is None or "customer_text" in item.data or "auditor_text" in item.data:
        customer_text, auditor_text = item.text("customer_text"), item.text("auditor_text")
    elif code in texts.texts:
        customer_text, auditor_text = texts.texts[code]
    else:
        raise PayloadError(f"{item.where}: code {code!r} has no texts in reason texts {texts.sha256}")
    if kind not in ("rule", "model"):
        raise PayloadError(f"{item.where}.kind: expected rule or model")
    values = tuple(
        ReasonValue(
            field=(name := v.text("field")),
            value=v.data.get("value") if derivable is None or "value" in v.data else derivable.applicant.get(name),
            label=v.text("label"),
        )
        for v in item.items("values")
    )
    contribution = item.optional_sub("contribution")
    log_odds = points = None
    if contribution is not None:
        log_odds, points = contribution.number("log_odds"), contribution.number("score_points")
    elif derivable is not None and kind == "model" and "contribution" not in item.data:
        derived = _derived_contribution(values, derivable.attributions, derivable.factor)
        if derived is None:
            raise PayloadError(f"{item.where}.contribution: missing and not derivable from the attributions")
        log_odds, points = derived
    return Reason(
        code=code,
        kind="rule" if kind == "rule" else "model",
        group=item.optional_str("group"),
        customer_text=customer_text,
        auditor_text=auditor_text,
        values=values,
        contribution_log_odds=log_odds,
        contribution_points=points,
        adverse=item.boolean("adverse"),
    )


def _rule(item: _Reader) -> RuleHit:
    return RuleHit(
        code=item.text("code"),
        field=item.text("field"),
        operator=item.text("operator"),
        threshold=item.data.get("threshold"),
        action=item.text("action"),
        description=item.text("description"),
    )


def _read_v2(data: _Reader, version: int = 2, texts: TextsLookup | None = None) -> DecisionPayload:
    """Schema version 2, 3 (the same keys; reasons' values and contributions completed from the rest) or 4 (and
    the reasons' texts from the texts document named, found with ``texts``)."""
    request = data.sub("request")
    scale = data.sub("score_scale")
    model = data.sub("model")
    applicant = request.mapping("applicant")
    score_scale = ScoreScale(scale.integer("min"), scale.integer("max"), scale.optional_number("points_per_log_odds"))
    if version >= 3 and isinstance(data.data.get("attributions"), list):
        attributions = data.aligned_numbers("attributions", sorted(applicant))
    else:
        attributions = data.numbers("attributions")
    derivable = _Derivable(applicant, dict(attributions), score_scale.points_per_log_odds) if version >= 3 else None
    reason_texts = _reason_texts(model, texts) if version >= 4 else None
    return DecisionPayload(
        applicant=applicant,
        monitoring=request.optional_mapping("monitoring"),
        probability_of_default=data.number("probability_of_default"),
        margin=data.number("margin"),
        base_value=data.number("base_value"),
        score_scale=score_scale,
        reasons=tuple(_reason(r, derivable, reason_texts) for r in data.items("reasons")),
        rules_fired=tuple(_rule(r) for r in data.items("rules_fired")),
        attributions=attributions,
        model=ModelProvenance(
            sha256=model.text("sha256"),
            manifest_sha256=model.text("manifest_sha256"),
            family=model.text("family"),
            spec_version=model.text("spec_version"),
            policy_version=model.text("policy_version"),
            catalog_version=model.text("catalog_version"),
        ),
        decided_by={str(k): str(v) for k, v in data.mapping("decided_by").items()},
        latency_ms=data.optional_number("latency_ms"),
        schema_version=version,
        recourse=_recourse(recourse) if (recourse := data.optional_sub("recourse")) is not None else None,
        reason_stability=None
        if (stability := data.optional_sub("reason_stability")) is None
        else ReasonStability(stability.boolean("top_reason"), stability.boolean("reason_set")),
        reason_texts=reason_texts,
    )


def _reason_texts(model: _Reader, texts: TextsLookup | None) -> ReasonTexts | None:
    """The texts document a version-4 payload names (None if it names none: its reasons carry their texts)."""
    sha = model.optional_str(NAME_KEY)
    if sha is None:
        return None
    found = texts(sha) if texts is not None else None
    if found is None or found.sha256 != sha:
        raise PayloadError(
            f"{model.where}.{NAME_KEY}: the decision store holds no reason texts {sha} (missing, or changed "
            "since the record was made)"
        )
    return found


def _recourse(data: _Reader) -> Recourse:
    status = data.text("status")
    if status not in ("found", "none_found"):
        raise PayloadError(f"{data.where}.status: expected found or none_found")
    options = []
    for item in data.items("options"):
        decision = item.text("decision")
        if decision not in ACTIONS:
            raise PayloadError(f"{item.where}.decision: expected one of {', '.join(ACTIONS)}")
        changes = tuple(
            RecourseChange(
                field=c.text("field"),
                from_value=c.raw("from"),
                to_value=c.raw("to"),
                from_label=c.text("from_label"),
                to_label=c.text("to_label"),
            )
            for c in item.items("changes")
        )
        options.append(
            RecourseOption(
                changes=changes,
                cost=item.number("cost"),
                decision=ACTIONS[ACTIONS.index(decision)],
                score=item.integer("score"),
                probability_of_default=item.number("probability_of_default"),
            )
        )
    fields = data.raw("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise PayloadError(f"{data.where}.fields: expected a list of field names")
    return Recourse(
        status="found" if status == "found" else "none_found",
        options=tuple(options),
        fields=tuple(fields),
        candidates=data.integer("candidates"),
    )


def _read_v1(data: _Reader) -> DecisionPayload:
    request = data.sub("request")
    response = data.sub("response")
    score = response.sub("score")
    explanation = response.sub("explanation")
    versions = data.sub("versions")
    model = response.sub("model")
    decided_by = data.data.get("decided_by") or {}
    latency = response.data.get("latency_ms")
    return DecisionPayload(
        applicant=request.mapping("applicant"),
        monitoring=request.optional_mapping("monitoring"),
        probability_of_default=response.number("probability_of_default"),
        margin=data.number("margin") if "margin" in data.data else explanation.number("margin"),
        base_value=data.number("base_value") if "base_value" in data.data else explanation.number("base_value"),
        score_scale=ScoreScale(score.integer("min"), score.integer("max"), None),
        reasons=tuple(_reason(r) for r in response.items("reasons")),
        rules_fired=tuple(_rule(r) for r in response.items("rules_fired")),
        attributions=data.numbers("attributions")
        if "attributions" in data.data
        else explanation.numbers("attributions"),
        model=ModelProvenance(
            sha256=model.text("sha256"),
            manifest_sha256=versions.text("manifest_sha256"),
            family=model.text("family"),
            spec_version=response.text("spec_version"),
            policy_version=response.text("policy_version"),
            catalog_version=response.text("catalog_version"),
        ),
        decided_by={str(k): str(v) for k, v in decided_by.items()} if isinstance(decided_by, Mapping) else {},
        latency_ms=float(latency) if isinstance(latency, int | float) and not isinstance(latency, bool) else None,
        schema_version=1,
    )


# ---- shadow decisions ------------------------------------------------------------------------------------
SHADOW_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ShadowDecision:
    """What a shadow (a challenger model version, or a candidate policy on the champion's model) decided for a
    recorded live request; recorded beside the champion's decision, never applied.

    Stored form (``schema_version`` 1)::

        {"schema_version": 1, "kind": "challenger" | "policy",
         "probability_of_default", "margin", "base_value", "score_scale": {...},
         "reasons": [...], "rules_fired": [...], "attributions": {...},   # as in a decision payload
         "model": {"sha256", "manifest_sha256", "family", "spec_version", "policy_version", "catalog_version"},
         "request_hash": "<the champion request's hash: the shadow decided exactly that input>"}

    The record's columns hold the shadow id, the champion's decision id, the model name and version, the
    policy and catalog versions, decision, band, score and reason codes.
    """

    kind: str
    model_name: str
    model_version: str
    decision: Decision
    model: ModelProvenance
    score_scale: ScoreScale
    request_hash: str

    def to_json(self) -> dict[str, Any]:
        """The stored payload."""
        d, model = self.decision, self.model
        return {
            "schema_version": SHADOW_SCHEMA_VERSION,
            "kind": self.kind,
            "probability_of_default": d.probability_of_default,
            "margin": d.margin,
            "base_value": d.base_value,
            "score_scale": {
                "min": self.score_scale.min,
                "max": self.score_scale.max,
                "points_per_log_odds": self.score_scale.points_per_log_odds,
            },
            "reasons": [reason_to_json(r) for r in d.reasons],
            "rules_fired": [rule_to_json(r) for r in d.rules_fired],
            "attributions": dict(d.attributions),
            "model": {
                "sha256": model.sha256,
                "manifest_sha256": model.manifest_sha256,
                "family": model.family,
                "spec_version": model.spec_version,
                "policy_version": model.policy_version,
                "catalog_version": model.catalog_version,
            },
            "request_hash": self.request_hash,
        }

    @classmethod
    def of(cls, record: ShadowColumns) -> ShadowDecision:
        """The typed view of a stored shadow record (PayloadError names what is unreadable)."""
        data = _Reader(record.payload, "payload")
        version = data.data.get("schema_version")
        if version != SHADOW_SCHEMA_VERSION:
            raise PayloadError(f"payload.schema_version: {version!r} is not {SHADOW_SCHEMA_VERSION}")
        if record.decision not in ACTIONS:
            raise PayloadError(f"decision: {record.decision!r} is not one of {', '.join(ACTIONS)}")
        scale = data.sub("score_scale")
        model = data.sub("model")
        decision = Decision(
            decision=record.decision,
            score=record.score,
            probability_of_default=data.number("probability_of_default"),
            margin=data.number("margin"),
            base_value=data.number("base_value"),
            risk_band=record.risk_band,
            reasons=tuple(_reason(r) for r in data.items("reasons")),
            rules_fired=tuple(_rule(r) for r in data.items("rules_fired")),
            attributions=data.numbers("attributions"),
        )
        return cls(
            kind=data.text("kind"),
            model_name=record.model_name,
            model_version=record.model_version,
            decision=decision,
            model=ModelProvenance(
                sha256=model.text("sha256"),
                manifest_sha256=model.text("manifest_sha256"),
                family=model.text("family"),
                spec_version=model.text("spec_version"),
                policy_version=model.text("policy_version"),
                catalog_version=model.text("catalog_version"),
            ),
            score_scale=ScoreScale(
                scale.integer("min"), scale.integer("max"), scale.optional_number("points_per_log_odds")
            ),
            request_hash=data.text("request_hash"),
        )


class ShadowColumns(Protocol):
    """The columns of a stored shadow record (``service.records.model.ShadowRecord`` has them)."""

    @property
    def decision(self) -> str: ...
    @property
    def risk_band(self) -> str: ...
    @property
    def score(self) -> int: ...
    @property
    def model_name(self) -> str: ...
    @property
    def model_version(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
