"""Decisions and stored records to response JSON: the one place the wire format is written."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from service.core.decision import Decision, Reason, RuleHit
from service.runtime import ModelInfo


def iso_utc(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds and a ``Z`` suffix."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def reason_to_json(reason: Reason) -> dict[str, Any]:
    """One reason code."""
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
    """One fired policy rule."""
    return {
        "code": rule.code,
        "field": rule.field,
        "operator": rule.operator,
        "threshold": rule.threshold,
        "action": rule.action,
        "description": rule.description,
    }


def decision_to_json(
    *,
    decision_id: str,
    application_id: str,
    decision: Decision,
    model: ModelInfo,
    score_range: tuple[int, int],
    created_at: datetime,
    latency_ms: float,
) -> dict[str, Any]:
    """The response body of one decision."""
    return {
        "decision_id": decision_id,
        "application_id": application_id,
        "decision": decision.decision,
        "score": {"value": decision.score, "min": score_range[0], "max": score_range[1]},
        "probability_of_default": decision.probability_of_default,
        "risk_band": decision.risk_band,
        "reasons": [reason_to_json(r) for r in decision.reasons],
        "rules_fired": [rule_to_json(r) for r in decision.rules_fired],
        "explanation": {
            "base_value": decision.base_value,
            "margin": decision.margin,
            "attributions": dict(decision.attributions),
        },
        "model": {"name": model.name, "version": model.version, "sha256": model.sha256, "family": model.family},
        "policy_version": model.policy_version,
        "catalog_version": model.catalog_version,
        "spec_version": model.spec_version,
        "created_at": iso_utc(created_at),
        "latency_ms": round(latency_ms, 3),
    }


def versions_of(model: ModelInfo) -> dict[str, str]:
    """Every version a decision depends on, as recorded with it."""
    return {
        "model_name": model.name,
        "model_version": model.version,
        "model_sha256": model.sha256,
        "manifest_sha256": model.manifest_sha256,
        "model_family": model.family,
        "spec_version": model.spec_version,
        "policy_version": model.policy_version,
        "catalog_version": model.catalog_version,
    }
