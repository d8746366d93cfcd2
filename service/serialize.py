"""Recorded decisions to response JSON: the one place the decision's wire format is written.

The HTTP responses (single and batch, first answer and idempotent retry alike), the stored record's
``response`` view and replay's comparison all render a :class:`RecordedDecision` here, so a decision
reads the same wherever it is shown.
"""

from __future__ import annotations

from typing import Any

from service.core.canonical import iso_utc
from service.core.recorded import RecordedDecision, ShadowDecision, reason_to_json, rule_to_json
from service.records.model import StoredEvent, StoredShadow

__all__ = ["decision_json", "event_json", "iso_utc", "shadow_json"]


def decision_json(recorded: RecordedDecision) -> dict[str, Any]:
    """The response body of one decision."""
    decision = recorded.decision
    payload = recorded.payload
    model = payload.model
    return {
        "decision_id": recorded.decision_id,
        "application_id": recorded.application_id,
        "decision": decision.decision,
        "score": {"value": decision.score, "min": payload.score_scale.min, "max": payload.score_scale.max},
        "probability_of_default": decision.probability_of_default,
        "risk_band": decision.risk_band,
        "reasons": [reason_to_json(r) for r in decision.reasons],
        "rules_fired": [rule_to_json(r) for r in decision.rules_fired],
        "explanation": {
            "base_value": decision.base_value,
            "margin": decision.margin,
            "attributions": dict(decision.attributions),
        },
        "model": {
            "name": recorded.model_name,
            "version": recorded.model_version,
            "sha256": model.sha256,
            "family": model.family,
        },
        "policy_version": model.policy_version,
        "catalog_version": model.catalog_version,
        "spec_version": model.spec_version,
        "created_at": iso_utc(recorded.created_at),
        "latency_ms": payload.latency_ms,
        # only when recorded, so a record made without them renders exactly as it was answered
        **({} if payload.reason_stability is None else {"reason_stability": payload.reason_stability.to_json()}),
        **({} if payload.recourse is None else {"recourse": payload.recourse.to_json()}),
    }


def event_json(stored: StoredEvent) -> dict[str, Any]:
    """An admin audit event as the API shows it (with its chain position and hashes)."""
    event = stored.event
    return {
        "seq": stored.seq,
        "event_id": event.event_id,
        "created_at": iso_utc(event.created_at),
        "kind": event.kind,
        "actor": dict(event.actor),
        "details": dict(event.details),
        "serving_state": None if event.serving_state is None else dict(event.serving_state),
        "prev_hash": stored.prev_hash,
        "record_hash": stored.record_hash,
    }


def shadow_json(stored: StoredShadow) -> dict[str, Any]:
    """A shadow decision as the API shows it: what the shadow decided, with its chain position and hashes."""
    record = stored.record
    shadow = ShadowDecision.of(record)
    decision = shadow.decision
    return {
        "seq": stored.seq,
        "shadow_id": record.shadow_id,
        "decision_id": record.decision_id,
        "created_at": iso_utc(record.created_at),
        "kind": record.kind,
        "model": {
            "name": record.model_name,
            "version": record.model_version,
            "sha256": shadow.model.sha256,
            "family": shadow.model.family,
        },
        "policy_version": record.policy_version,
        "catalog_version": record.catalog_version,
        "decision": decision.decision,
        "score": decision.score,
        "risk_band": decision.risk_band,
        "probability_of_default": decision.probability_of_default,
        "reasons": [reason_to_json(r) for r in decision.reasons],
        "rules_fired": [rule_to_json(r) for r in decision.rules_fired],
        "attributions": dict(decision.attributions),
        "prev_hash": stored.prev_hash,
        "record_hash": stored.record_hash,
    }
