"""What an adverse-action notice needs, taken from one stored decision (pure: a record in, a notice out).

Two lists, both in order of impact:

- **principal reasons** for the action (ECOA / Reg B 1002.9): the adverse reasons of the decision,
  policy-rule reasons first, then model reasons by their contribution to risk; at most four;
- **key factors** that adversely affected the credit score (FCRA 615(a)): the adverse *model* reasons,
  at most four, plus a credit-inquiry factor as a fifth when the data has an inquiry field (``credit_inquiries``)
  whose attribution raised the risk and which is not among the four already. The German credit data has no
  inquiry field; the notice says so explicitly rather than leaving the fifth factor out silently.

Only declines get a notice: a referral is not a final decision and an approval is not adverse action.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_PRINCIPAL_REASONS = 4
MAX_KEY_FACTORS = 4
#: The applicant field holding the number of recent credit inquiries, when a data set has one.
INQUIRY_FIELD = "credit_inquiries"
INQUIRY_TEXT = "Number of recent inquiries into your credit history"
NO_INQUIRY_DATA = (
    "The data this model scores has no record of credit inquiries, so no inquiry factor applies to this score."
)
INQUIRY_NOT_ADVERSE = "Credit inquiries did not adversely affect this score."
INQUIRY_ALREADY_LISTED = "Credit inquiries are already listed among the key factors above."


class NoticeNotRequired(ValueError):
    """The decision is not a decline, so no adverse-action notice is required."""


@dataclass(frozen=True)
class NoticeFactor:
    """One reason or factor as printed: customer wording and the applicant's values behind it."""

    rank: int
    code: str
    kind: str
    text: str
    values: tuple[str, ...]
    score_points: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rank": self.rank,
            "code": self.code,
            "kind": self.kind,
            "text": self.text,
            "values": list(self.values),
            "score_points": self.score_points,
        }


@dataclass(frozen=True)
class AdverseActionNotice:
    """The content of an adverse-action notice for one declined decision."""

    decision_id: str
    application_id: str
    decision: str
    decision_date: str
    created_at: str
    score: int
    score_min: int
    score_max: int
    principal_reasons: tuple[NoticeFactor, ...]
    key_factors: tuple[NoticeFactor, ...]
    inquiries_factor: NoticeFactor | None
    inquiries_note: str
    model: Mapping[str, Any]
    policy_version: str
    catalog_version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "decision_id": self.decision_id,
            "application_id": self.application_id,
            "decision": self.decision,
            "decision_date": self.decision_date,
            "created_at": self.created_at,
            "principal_reasons": [r.to_dict() for r in self.principal_reasons],
            "score": {
                "value": self.score,
                "min": self.score_min,
                "max": self.score_max,
                "higher_is_better": True,
            },
            "key_factors": [f.to_dict() for f in self.key_factors],
            "inquiries_factor": None if self.inquiries_factor is None else self.inquiries_factor.to_dict(),
            "inquiries_note": self.inquiries_note,
            "model": dict(self.model),
            "policy_version": self.policy_version,
            "catalog_version": self.catalog_version,
        }


def _log_odds(reason: Mapping[str, Any]) -> float:
    contribution = reason.get("contribution")
    if isinstance(contribution, Mapping) and isinstance(contribution.get("log_odds"), int | float):
        return float(contribution["log_odds"])
    return 0.0


def _points(reason: Mapping[str, Any]) -> float | None:
    contribution = reason.get("contribution")
    if isinstance(contribution, Mapping) and isinstance(contribution.get("score_points"), int | float):
        return round(float(contribution["score_points"]), 1)
    return None


def _values(reason: Mapping[str, Any]) -> tuple[str, ...]:
    out = []
    for value in reason.get("values") or ():
        if isinstance(value, Mapping):
            out.append(str(value.get("label") or value.get("value")))
    return tuple(out)


def _factor(rank: int, reason: Mapping[str, Any]) -> NoticeFactor:
    return NoticeFactor(
        rank=rank,
        code=str(reason.get("code")),
        kind=str(reason.get("kind")),
        text=str(reason.get("customer_text")),
        values=_values(reason),
        score_points=_points(reason),
    )


def ranked_adverse_reasons(reasons: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Adverse reasons: rule reasons first (in policy order), then model reasons by contribution, ties by code."""
    adverse = [r for r in reasons if isinstance(r, Mapping) and r.get("adverse")]
    rules = [r for r in adverse if r.get("kind") == "rule"]
    model = sorted((r for r in adverse if r.get("kind") != "rule"), key=lambda r: (-_log_odds(r), str(r.get("code"))))
    return rules + model


def _inquiries(
    attributions: Mapping[str, Any], applicant: Mapping[str, Any], listed: Sequence[NoticeFactor], factor: float
) -> tuple[NoticeFactor | None, str]:
    if INQUIRY_FIELD not in attributions and INQUIRY_FIELD not in applicant:
        return None, NO_INQUIRY_DATA
    if any(INQUIRY_FIELD in f.code or f.text == INQUIRY_TEXT for f in listed):
        return None, INQUIRY_ALREADY_LISTED
    contribution = attributions.get(INQUIRY_FIELD)
    if not isinstance(contribution, int | float) or contribution <= 0:
        return None, INQUIRY_NOT_ADVERSE
    value = applicant.get(INQUIRY_FIELD)
    points = round(-factor * float(contribution), 1) if factor else None
    inquiry = NoticeFactor(len(listed) + 1, INQUIRY_FIELD, "model", INQUIRY_TEXT, (f"{value} inquiries",), points)
    return inquiry, "Credit inquiries adversely affected this score."


def build_notice(record: Mapping[str, Any]) -> AdverseActionNotice:
    """The notice content of a stored decision record (``StoredRecord.to_dict()``); NoticeNotRequired unless declined."""
    decision = str(record.get("decision"))
    if decision != "decline":
        raise NoticeNotRequired(
            f"decision {record.get('decision_id')} is '{decision}': an adverse-action notice is required only for "
            "a decline (a referral is not a final decision; an approval is not adverse action)"
        )
    payload = record.get("payload") or {}
    response: Mapping[str, Any] = payload.get("response") or {}
    request: Mapping[str, Any] = payload.get("request") or {}
    reasons = ranked_adverse_reasons(response.get("reasons") or ())
    principal = tuple(_factor(i + 1, r) for i, r in enumerate(reasons[:MAX_PRINCIPAL_REASONS]))
    model_reasons = [r for r in reasons if r.get("kind") != "rule"][:MAX_KEY_FACTORS]
    key_factors = tuple(_factor(i + 1, r) for i, r in enumerate(model_reasons))
    # score points per log-odds unit, as the recorded reasons carry both (points = -factor * log-odds)
    factor = next(
        (-(_points(r) or 0.0) / _log_odds(r) for r in model_reasons if _log_odds(r) and _points(r) is not None), 0.0
    )
    explanation = response.get("explanation") or {}
    attributions = explanation.get("attributions") or payload.get("attributions") or {}
    inquiries, note = _inquiries(attributions, request.get("applicant") or {}, key_factors, factor)
    score = response.get("score") or {}
    created_at = str(record.get("created_at") or response.get("created_at"))
    return AdverseActionNotice(
        decision_id=str(record.get("decision_id")),
        application_id=str(record.get("application_id")),
        decision=decision,
        decision_date=created_at[:10],
        created_at=created_at,
        score=int(score.get("value", record.get("score", 0))),
        score_min=int(score.get("min", 0)),
        score_max=int(score.get("max", 0)),
        principal_reasons=principal,
        key_factors=key_factors,
        inquiries_factor=inquiries,
        inquiries_note=note,
        model=dict(response.get("model") or {}),
        policy_version=str(response.get("policy_version")),
        catalog_version=str(response.get("catalog_version")),
    )
