"""Recorded decisions to response JSON: the one place the decision's wire format is written.

The HTTP responses (single and batch, first answer and idempotent retry alike), the stored record's
``response`` view and replay's comparison all render a :class:`RecordedDecision` here, so a decision
reads the same wherever it is shown.
"""

from __future__ import annotations

from typing import Any

from service.core.canonical import iso_utc
from service.core.recorded import RecordedDecision, reason_to_json, rule_to_json

__all__ = ["decision_json", "iso_utc"]


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
    }
