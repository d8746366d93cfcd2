"""``GET /v1/decisions/<id>/notice`` (auditor): adverse-action notice data of a declined decision.

JSON by default; ``?format=html`` (or ``Accept: text/html`` preferred over JSON) gives a printable,
self-contained HTML page (print CSS, no external resources). A decision that is not a decline has no
notice: 409 ``notice-not-required``.
"""

from __future__ import annotations

import html
from typing import Any

from flask import Response, jsonify, request

from service.api.decisions import DECISION_ID_PARAMETER
from service.api.framework import Blueprint, guarded, problems, responds
from service.api.schemas import NoticeQuerySchema, NoticeSchema
from service.core.notice import AdverseActionNotice, NoticeFactor
from service.state import get_state

_CSS = """
:root { color-scheme: light; }
body { font: 11pt/1.5 Georgia, "DejaVu Serif", serif; color: #111; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
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
.legal { font-size: .8rem; color: #444; margin-top: 2rem; border-top: 1px solid #bbb; padding-top: .6rem; }
@media print {
  body { margin: 0; max-width: none; font-size: 10.5pt; }
  h2 { break-after: avoid; }
  @page { size: A4; margin: 2cm; }
}
"""

ECOA_NOTICE = (
    "The federal Equal Credit Opportunity Act prohibits creditors from discriminating against credit applicants on "
    "the basis of race, color, religion, national origin, sex, marital status, age (provided the applicant has the "
    "capacity to enter into a binding contract); because all or part of the applicant's income derives from any "
    "public assistance program; or because the applicant has in good faith exercised any right under the Consumer "
    "Credit Protection Act."
)


def _factor_item(factor: NoticeFactor) -> str:
    values = f' <span class="values">({html.escape("; ".join(factor.values))})</span>' if factor.values else ""
    return f"<li>{html.escape(factor.text)}{values}</li>"


def render_notice_html(notice: AdverseActionNotice) -> str:
    """A printable, self-contained HTML page of the notice."""
    e = html.escape
    principal = "".join(_factor_item(f) for f in notice.principal_reasons) or "<li>(none recorded)</li>"
    factors = list(notice.key_factors) + ([notice.inquiries_factor] if notice.inquiries_factor else [])
    key_factors = "".join(_factor_item(f) for f in factors) or "<li>(none recorded)</li>"
    model = notice.model
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>Adverse-action notice {e(notice.application_id)}</title><style>{_CSS}</style></head><body>",
            "<header><h1>Statement of credit denial: principal reasons</h1>",
            '<dl class="meta">',
            f"<dt>Date</dt><dd>{e(notice.decision_date)}</dd>",
            f"<dt>Application</dt><dd>{e(notice.application_id)}</dd>",
            f"<dt>Decision reference</dt><dd>{e(notice.decision_id)}</dd>",
            "</dl></header>",
            "<p>Thank you for your application. We are unable to offer you credit at this time.</p>",
            "<h2>Principal reasons for our decision</h2>",
            f'<ol id="principal-reasons">{principal}</ol>',
            "<h2>Your credit score</h2>",
            f'<p>We used a credit score in making this decision. Your score: <span class="score">{notice.score}</span> '
            f"on a scale from {notice.score_min} to {notice.score_max}, where a higher score means a lower risk.</p>",
            "<p>Key factors that adversely affected your score, most important first:</p>",
            f'<ol id="key-factors">{key_factors}</ol>',
            f'<p class="note" id="inquiries-note">{e(notice.inquiries_note)}</p>',
            *_recourse_html(notice),
            '<div class="legal">',
            f"<p>{e(ECOA_NOTICE)}</p>",
            f"<p>Scored by model {e(str(model.get('name')))} {e(str(model.get('version')))} "
            f"(sha256 {e(str(model.get('sha256', ''))[:16])}…), policy {e(notice.policy_version)}, "
            f"reason catalog {e(notice.catalog_version)}; decided {e(notice.created_at)}.</p>",
            "</div></body></html>\n",
        ]
    )


def _recourse_html(notice: AdverseActionNotice) -> list[str]:
    """The "what could change the decision" section (only when the decision was recorded with recourse)."""
    if notice.recourse is None:
        return []
    items = "".join(f"<li>{html.escape(sentence)}</li>" for sentence in notice.recourse)
    return [
        "<h2>What could change the decision</h2>",
        f'<p id="recourse-note">{html.escape(notice.recourse_note or "")}</p>',
        *([f'<ul id="recourse">{items}</ul>'] if items else []),
    ]


def _wants_html(query: dict[str, Any]) -> bool:
    fmt = query.get("format")
    if fmt is not None:
        return bool(fmt == "html")
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def blueprint() -> Blueprint:
    """The adverse-action notice endpoint."""
    bp = Blueprint("notice", __name__, url_prefix="/v1", description="Adverse-action notices")

    @bp.route("/decisions/<decision_id>/notice", methods=["GET"], parameters=[DECISION_ID_PARAMETER])
    @responds(200, NoticeSchema, description="The notice data of a declined decision")
    @responds(
        200,
        {"type": "string"},
        content_type="text/html",
        description="A printable, self-contained HTML page of the notice (`?format=html` or `Accept: text/html`)",
        success=True,
    )
    @problems(400, 404, 409, 503, s409="The decision is not a decline: it needs no adverse-action notice")
    @guarded("auditor")
    @bp.arguments(NoticeQuerySchema, location="query", error_status_code=400)
    def get_notice(query: dict[str, Any], decision_id: str) -> Response:
        """Adverse-action notice of a declined decision

        The principal reasons in customer wording, exactly as recorded with the decision (in their recorded
        order), the score and its range, the key factors and the date; and, for a decision made with
        `?recourse=true`, what could change it (its recorded proposals; null when recorded without).
        """
        notice = get_state().service.notice(decision_id)
        if _wants_html(query):
            response = Response(render_notice_html(notice), status=200, content_type="text/html; charset=utf-8")
        else:
            response = jsonify(notice.to_dict())
        response.headers["Cache-Control"] = "no-store"
        response.headers["Vary"] = "Accept"
        return response

    return bp
