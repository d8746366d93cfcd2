"""``GET /v1/decisions/<id>/notice`` (auditor): adverse-action notice data of a declined decision.

JSON by default; ``?format=html`` (or ``Accept: text/html`` preferred over JSON) gives a printable,
self-contained HTML page (print CSS, no external resources). In the language of ``?lang=`` or else
``Accept-Language`` among the deciding reason catalog's languages (English and Simplified Chinese in the
example catalogs), with ``Content-Language`` saying which. A decision that is not a decline has no
notice: 409 ``notice-not-required``.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Response, jsonify, request

from service.api.decisions import DECISION_ID_PARAMETER
from service.api.framework import Blueprint, guarded, problems, responds
from service.api.languages import ACCEPT_LANGUAGE_PARAMETER, CONTENT_LANGUAGE_HEADER, mark_language, negotiate
from service.api.schemas import NoticeQuerySchema, NoticeSchema
from service.core.notice import AdverseActionNotice, NoticeFactor
from service.errors import FieldError, InvalidParameter
from service.state import get_state

_CSS = """
:root { color-scheme: light; }
body { font: 11pt/1.5 Georgia, "DejaVu Serif", "Noto Serif CJK SC", "Source Han Serif SC", serif; color: #111; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font: 600 1.35rem/1.25 system-ui, "DejaVu Sans", sans-serif; margin: 0 0 .25rem; }
h2 { font: 600 1rem/1.3 system-ui, "DejaVu Sans", sans-serif; margin: 1.6rem 0 .4rem;
     border-bottom: 1px solid #bbb; padding-bottom: .2rem; }
.meta { color: #444; font: .85rem/1.4 system-ui, "DejaVu Sans", sans-serif; }
.meta dt { float: left; clear: left; width: 10rem; color: #666; }
.meta dd { margin: 0 0 0 10rem; }
ol { padding-left: 1.4rem; } li { margin: .3rem 0; }
.values { color: #555; font-size: .9em; }
.score { font-size: 1.6rem; font-weight: 600; font-family: system-ui, "DejaVu Sans", sans-serif; }
.note { color: #444; font-style: italic; }
.translation { display: block; margin-top: 3rem; border-top: 2px solid #bbb; padding-top: 1rem; }
.legal { font-size: .8rem; color: #444; margin-top: 2rem; border-top: 1px solid #bbb; padding-top: .6rem; }
@media print {
  body { margin: 0; max-width: none; font-size: 10.5pt; }
  h2 { break-after: avoid; }
  .translation { break-before: page; border-top: none; margin-top: 0; }
  @page { size: A4; margin: 2cm; }
}
"""


@dataclass(frozen=True)
class PageTexts:
    """The printable page's wording in one language (``{score}``, ``{model}``... are filled in)."""

    title: str
    date: str
    application: str
    reference: str
    thanks: str
    principal_heading: str
    score_heading: str
    score_sentence: str
    key_factors_intro: str
    none_recorded: str
    ecoa: str
    provenance: str


#: The page's wording in every language of the notice (``service.core.notice.NOTICE_LANGUAGES``).
PAGE_TEXTS = {
    "en": PageTexts(
        title="Statement of credit denial: principal reasons",
        date="Date",
        application="Application",
        reference="Decision reference",
        thanks="Thank you for your application. We are unable to offer you credit at this time.",
        principal_heading="Principal reasons for our decision",
        score_heading="Your credit score",
        score_sentence="We used a credit score in making this decision. Your score: {score} on a scale from "
        "{min} to {max}, where a higher score means a lower risk.",
        key_factors_intro="Key factors that adversely affected your score, most important first:",
        none_recorded="(none recorded)",
        ecoa="The federal Equal Credit Opportunity Act prohibits creditors from discriminating against credit "
        "applicants on the basis of race, color, religion, national origin, sex, marital status, age (provided the "
        "applicant has the capacity to enter into a binding contract); because all or part of the applicant's "
        "income derives from any public assistance program; or because the applicant has in good faith exercised "
        "any right under the Consumer Credit Protection Act.",
        provenance="Scored by model {model} (sha256 {sha}…), policy {policy}, reason catalog {catalog}; "
        "decided {created_at}.",
    ),
    "zh-Hans": PageTexts(
        title="拒绝授信通知：主要原因",
        date="日期",
        application="申请编号",
        reference="决定编号",
        thanks="感谢您的申请。很遗憾，我们目前无法向您提供信贷。",
        principal_heading="我们作出此决定的主要原因",
        score_heading="您的信用评分",
        score_sentence="我们在作出此决定时使用了信用评分。您的评分为 {score}（评分范围 {min} 至 {max}，"
        "分数越高表示风险越低）。",
        key_factors_intro="对您的评分产生不利影响的关键因素（按重要性由高到低排列）：",
        none_recorded="（无记录）",
        ecoa="美国联邦《平等信贷机会法》禁止债权人基于种族、肤色、宗教、国籍、性别、婚姻状况或年龄（前提是申请人具有"
        "订立具有约束力合同的行为能力）歧视信贷申请人，亦禁止因申请人的全部或部分收入来自任何公共援助计划，或因申请人"
        "善意行使了《消费者信用保护法》规定的任何权利而歧视申请人。",
        provenance="评分模型 {model}（sha256 {sha}…），政策 {policy}，原因代码目录 {catalog}；决定时间 {created_at}。",
    ),
}
ECOA_NOTICE = PAGE_TEXTS["en"].ecoa


def _factor_item(factor: NoticeFactor) -> str:
    values = f' <span class="values">({html.escape("; ".join(factor.values))})</span>' if factor.values else ""
    return f"<li>{html.escape(factor.text)}{values}</li>"


def render_notice_html(notice: AdverseActionNotice, *translations: AdverseActionNotice) -> str:
    """A printable, self-contained HTML page of the notice, in the notice's language; ``translations`` (the same
    notice in other languages) follow it on pages of their own (element ids suffixed with their language)."""
    t = PAGE_TEXTS[notice.language]
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{html.escape(notice.language)}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(t.title)} {html.escape(notice.application_id)}</title><style>{_CSS}</style></head><body>",
        *_notice_body(notice),
    ]
    for other in translations:
        parts.append(f'<article class="translation" lang="{html.escape(other.language)}">')
        parts.extend(_notice_body(other, f"-{other.language}"))
        parts.append("</article>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _notice_body(notice: AdverseActionNotice, suffix: str = "") -> list[str]:
    e = html.escape
    t = PAGE_TEXTS[notice.language]
    none = f"<li>{e(t.none_recorded)}</li>"
    principal = "".join(_factor_item(f) for f in notice.principal_reasons) or none
    factors = list(notice.key_factors) + ([notice.inquiries_factor] if notice.inquiries_factor else [])
    key_factors = "".join(_factor_item(f) for f in factors) or none
    model = notice.model
    score = t.score_sentence.format(
        score=f'<span class="score">{notice.score}</span>', min=notice.score_min, max=notice.score_max
    )
    provenance = t.provenance.format(
        model=e(f"{model.get('name')} {model.get('version')}"),
        sha=e(str(model.get("sha256", ""))[:16]),
        policy=e(notice.policy_version),
        catalog=e(notice.catalog_version),
        created_at=e(notice.created_at),
    )
    return [
        f"<header><h1>{e(t.title)}</h1>",
        '<dl class="meta">',
        f"<dt>{e(t.date)}</dt><dd>{e(notice.decision_date)}</dd>",
        f"<dt>{e(t.application)}</dt><dd>{e(notice.application_id)}</dd>",
        f"<dt>{e(t.reference)}</dt><dd>{e(notice.decision_id)}</dd>",
        "</dl></header>",
        f"<p>{e(t.thanks)}</p>",
        f"<h2>{e(t.principal_heading)}</h2>",
        f'<ol id="principal-reasons{suffix}">{principal}</ol>',
        f"<h2>{e(t.score_heading)}</h2>",
        f"<p>{score}</p>",
        f"<p>{e(t.key_factors_intro)}</p>",
        f'<ol id="key-factors{suffix}">{key_factors}</ol>',
        f'<p class="note" id="inquiries-note{suffix}">{e(notice.inquiries_note)}</p>',
        '<div class="legal">',
        f"<p>{e(t.ecoa)}</p>",
        f"<p>{provenance}</p>",
        "</div>",
    ]


def _always(language: str) -> Callable[[Sequence[str]], str]:
    """A language chooser that picks ``language`` (one of those offered)."""
    return lambda _offered: language


def _wants_html(query: dict[str, Any]) -> bool:
    fmt = query.get("format")
    if fmt is not None:
        return bool(fmt == "html")
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def blueprint() -> Blueprint:
    """The adverse-action notice endpoint."""
    bp = Blueprint("notice", __name__, url_prefix="/v1", description="Adverse-action notices")

    @bp.route(
        "/decisions/<decision_id>/notice",
        methods=["GET"],
        parameters=[DECISION_ID_PARAMETER, ACCEPT_LANGUAGE_PARAMETER],
    )
    @responds(200, NoticeSchema, description="The notice data of a declined decision", headers=CONTENT_LANGUAGE_HEADER)
    @responds(
        200,
        {"type": "string"},
        content_type="text/html",
        description="A printable, self-contained HTML page of the notice (`?format=html` or `Accept: text/html`)",
        headers=CONTENT_LANGUAGE_HEADER,
        success=True,
    )
    @problems(400, 404, 409, 503, s409="The decision is not a decline: it needs no adverse-action notice")
    @guarded("auditor")
    @bp.arguments(NoticeQuerySchema, location="query", error_status_code=400)
    def get_notice(query: dict[str, Any], decision_id: str) -> Response:
        """Adverse-action notice of a declined decision

        The principal reasons in customer wording, exactly as recorded with the decision (in their recorded
        order), the score and its range, the key factors and the date. In the language of `?lang=` (a 400 if the
        deciding reason catalog does not offer it) or else of `Accept-Language`, among the catalog's languages
        (the example catalogs: English and Simplified Chinese); the catalog's default language otherwise.
        `bilingual=true` (html only) adds the notice in the catalog's other languages on pages of their own.
        """
        explicit = query.get("lang")
        wants_html = _wants_html(query)
        if query.get("bilingual") and not wants_html:
            message = "the bilingual notice is a printable page: ask for format=html"
            raise InvalidParameter(f"bilingual: {message}", [FieldError("bilingual", message)])
        service = get_state().service
        offered: list[str] = []

        def choose(languages: Sequence[str]) -> str:
            offered.extend(languages)
            return negotiate(languages, explicit)

        notice = service.notice(decision_id, choose)
        translations: list[AdverseActionNotice] = []
        if query.get("bilingual"):
            for language in offered:
                if language != notice.language:
                    translations.append(service.notice(decision_id, _always(language)))
        if wants_html:
            page = render_notice_html(notice, *translations)
            response = Response(page, status=200, content_type="text/html; charset=utf-8")
        else:
            response = jsonify(notice.to_dict())
        response.headers["Cache-Control"] = "no-store"
        response.vary.add("Accept")
        return mark_language(response, ", ".join([notice.language, *(t.language for t in translations)]))

    return bp
