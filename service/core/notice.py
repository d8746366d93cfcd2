"""What an adverse-action notice needs, taken from one recorded decision (pure: a record in, a notice out).

The notice never ranks anything itself: it lists the reasons exactly as the decision engine ranked and
the record holds them (:mod:`service.core.engine` has the one ranking), with the score points recorded
with them.

- **principal reasons** for the action (ECOA / Reg B 1002.9): the decision's adverse reasons in their
  recorded order (fired policy rules first, then model reasons by contribution); at most four;
- **key factors** that adversely affected the credit score (FCRA 615(a)): the adverse *model* reasons in
  their recorded order, at most four, plus a credit-inquiry factor as a fifth when the data has an inquiry
  field (the reason catalog's ``inquiries_field``, passed in by the caller) whose attribution raised the
  risk and which is not among the four already. A data set without an inquiry field gets a notice that
  says so explicitly rather than leaving the fifth factor out silently.

Only declines get a notice: a referral is not a final decision and an approval is not adverse action.

Languages: a notice is written in one language of :data:`NOTICE_TEXTS` (English and Simplified Chinese):
its fixed wording from there, the reasons' customer texts from the deciding catalog version in that
language (:func:`service.core.languages.in_language`, applied by the caller; the record keeps the
catalog's default language). The applicant's values are shown with the feature spec's labels, as recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from model_store.spec import MISSING_LABEL
from service.core.canonical import iso_utc
from service.core.engine import Reason
from service.core.recorded import RecordedDecision
from service.errors import NoticeNotRequired

MAX_PRINCIPAL_REASONS = 4
MAX_KEY_FACTORS = 4


@dataclass(frozen=True)
class NoticeTexts:
    """The fixed wording of a notice's data in one language (``{n}`` is filled in); the printable page's own
    wording is the renderer's (``service.api.notice``)."""

    inquiry_text: str
    inquiries_count: str
    no_inquiry_data: str
    inquiry_unknown: str
    inquiry_not_adverse: str
    inquiry_already_listed: str
    inquiry_adverse: str


NOTICE_TEXTS: dict[str, NoticeTexts] = {
    "en": NoticeTexts(
        inquiry_text="Number of recent inquiries into your credit history",
        inquiries_count="{n} inquiries",
        no_inquiry_data="The data this model scores has no record of credit inquiries, so no inquiry factor "
        "applies to this score.",
        inquiry_unknown="The model version that made this decision cannot be loaded now, so this notice does not "
        "say whether credit inquiries affected the score.",
        inquiry_not_adverse="Credit inquiries did not adversely affect this score.",
        inquiry_already_listed="Credit inquiries are already listed among the key factors above.",
        inquiry_adverse="Credit inquiries adversely affected this score.",
    ),
    "zh-Hans": NoticeTexts(
        inquiry_text="近期对您信用记录的查询次数",
        inquiries_count="{n} 次查询",
        no_inquiry_data="本模型评估的数据不含信用查询记录，因此本评分不涉及查询因素。",
        inquiry_unknown="作出此决定的模型版本目前无法加载，因此本通知无法说明信用查询是否影响了评分。",
        inquiry_not_adverse="信用查询未对本评分产生不利影响。",
        inquiry_already_listed="信用查询已列于上述关键因素之中。",
        inquiry_adverse="信用查询对本评分产生了不利影响。",
    ),
}
#: The languages a notice can be written in (its fixed wording exists in them), English first.
NOTICE_LANGUAGES = tuple(NOTICE_TEXTS)
_EN = NOTICE_TEXTS["en"]
INQUIRY_TEXT = _EN.inquiry_text
NO_INQUIRY_DATA = _EN.no_inquiry_data
INQUIRY_UNKNOWN = _EN.inquiry_unknown
INQUIRY_NOT_ADVERSE = _EN.inquiry_not_adverse
INQUIRY_ALREADY_LISTED = _EN.inquiry_already_listed


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
    language: str = "en"

    @property
    def texts(self) -> NoticeTexts:
        """The notice's fixed wording in its language."""
        return NOTICE_TEXTS[self.language]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "language": self.language,
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


def _factor(rank: int, reason: Reason) -> NoticeFactor:
    points = None if reason.contribution_points is None else round(reason.contribution_points, 1)
    return NoticeFactor(
        rank=rank,
        code=reason.code,
        kind=reason.kind,
        text=reason.customer_text,
        values=tuple(v.label or str(v.value) for v in reason.values),
        score_points=points,
    )


def _points_per_log_odds(recorded: RecordedDecision, model_reasons: Sequence[Reason]) -> float:
    """The score scaling recorded with the decision (first-version records: as their reasons imply)."""
    factor = recorded.payload.score_scale.points_per_log_odds
    if factor is not None:
        return factor
    for r in model_reasons:
        if r.contribution_log_odds and r.contribution_points is not None:
            return -r.contribution_points / r.contribution_log_odds
    return 0.0


def _inquiries(
    field: str | None,
    attributions: Mapping[str, float],
    applicant: Mapping[str, Any],
    listed: Sequence[Reason],
    factor: float,
    texts: NoticeTexts,
) -> tuple[NoticeFactor | None, str]:
    if field is None or (field not in attributions and field not in applicant):
        return None, texts.no_inquiry_data
    if any(v.field == field for r in listed for v in r.values):
        return None, texts.inquiry_already_listed
    contribution = attributions.get(field)
    if contribution is None or contribution <= 0:
        return None, texts.inquiry_not_adverse
    value = applicant.get(field)
    shown = MISSING_LABEL if value is None else texts.inquiries_count.format(n=value)
    points = round(-factor * float(contribution), 1) if factor else None
    inquiry = NoticeFactor(len(listed) + 1, field, "model", texts.inquiry_text, (shown,), points)
    return inquiry, texts.inquiry_adverse


def build_notice(
    recorded: RecordedDecision,
    inquiries_field: str | None = None,
    *,
    catalog_known: bool = True,
    language: str = "en",
) -> AdverseActionNotice:
    """The notice content of a recorded decision; NoticeNotRequired unless it was declined.

    ``inquiries_field`` is the reason catalog's field of recent credit inquiries (None: the data has none);
    ``catalog_known=False`` when the deciding version's catalog cannot be read (the note says so, nothing more).
    ``language`` (one of :data:`NOTICE_LANGUAGES`) is the notice's wording; the reasons' texts are the
    record's as given (the caller passes the record in that language).
    """
    texts = NOTICE_TEXTS[language]
    decision = recorded.decision
    if decision.decision != "decline":
        raise NoticeNotRequired(
            f"decision {recorded.decision_id} is '{decision.decision}': an adverse-action notice is required only "
            "for a decline (a referral is not a final decision; an approval is not adverse action)"
        )
    adverse = [r for r in decision.reasons if r.adverse]
    principal = tuple(_factor(i + 1, r) for i, r in enumerate(adverse[:MAX_PRINCIPAL_REASONS]))
    model_reasons = [r for r in adverse if r.kind == "model"][:MAX_KEY_FACTORS]
    key_factors = tuple(_factor(i + 1, r) for i, r in enumerate(model_reasons))
    factor = _points_per_log_odds(recorded, model_reasons)
    payload = recorded.payload
    if catalog_known:
        inquiries, note = _inquiries(
            inquiries_field, dict(decision.attributions), payload.applicant, model_reasons, factor, texts
        )
    else:
        inquiries, note = None, texts.inquiry_unknown
    created_at = iso_utc(recorded.created_at)
    return AdverseActionNotice(
        decision_id=recorded.decision_id,
        application_id=recorded.application_id,
        decision=decision.decision,
        decision_date=created_at[:10],
        created_at=created_at,
        score=decision.score,
        score_min=payload.score_scale.min,
        score_max=payload.score_scale.max,
        principal_reasons=principal,
        key_factors=key_factors,
        inquiries_factor=inquiries,
        inquiries_note=note,
        model={
            "name": recorded.model_name,
            "version": recorded.model_version,
            "sha256": payload.model.sha256,
            "family": payload.model.family,
        },
        policy_version=payload.model.policy_version,
        catalog_version=payload.model.catalog_version,
        language=language,
    )
