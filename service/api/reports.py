"""``GET /v1/reports?from=YYYY-MM-DD&to=YYYY-MM-DD[&model=NAME][&format=json|csv|html|pdf]`` (auditor).

The period ``[from, to)`` in UTC, read from the decision store (with the outcomes posted back for
back-testing) and drift measured against the training baseline in the model store; the same report
``credit-decision report`` writes. JSON by default; HTML is a self-contained page, PDF and CSV are sent
as attachments.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Response

from service.api.framework import Blueprint, guarded, problems, responds
from service.api.schemas import ComparisonQuerySchema, ReportQuerySchema
from service.reports.challenger_render import render_comparison
from service.reports.core import Period
from service.reports.render import MEDIA_TYPES, render
from service.reports.source import comparison_from_store, report_from_store
from service.state import get_state


def blueprint() -> Blueprint:
    """The period report endpoint."""
    bp = Blueprint("reports", __name__, url_prefix="/v1", description="Compliance reports")

    @bp.route("/reports", methods=["GET"])
    @responds(200, {"type": "object"}, description="The report as JSON (format=json, the default)")
    @responds(200, {"type": "string"}, content_type="text/html", description="format=html", success=True)
    @responds(200, {"type": "string"}, content_type="text/csv", description="format=csv", success=True)
    @responds(
        200,
        {"type": "string", "format": "binary"},
        content_type="application/pdf",
        description="format=pdf",
        success=True,
    )
    @problems(400, 503)
    @guarded("auditor")
    @bp.arguments(ReportQuerySchema, location="query", error_status_code=400)
    def get_report(query: dict[str, Any]) -> Response:
        """The compliance period report

        Volumes, decision mix, score and band distributions, reason-code frequencies, drift (PSI/CSI) against
        the training baseline, rule hit rates, disparate impact, model versions, latency and back-testing.
        """
        state = get_state()
        period = Period.of_days(query["from_"], query["to"])
        fmt = str(query["format"])
        report = report_from_store(
            state.service.require_store(), state.settings.model_store, period, query.get("model")
        )
        response = Response(
            render(report, fmt, generated_at=datetime.now(UTC)), status=200, content_type=MEDIA_TYPES[fmt]
        )
        if fmt in ("pdf", "csv"):
            name = f"credit-decision-report_{period.start:%Y-%m-%d}_{period.end:%Y-%m-%d}.{fmt}"
            response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.route("/reports/challenger", methods=["GET"])
    @responds(200, {"type": "object"}, description="The comparison as JSON (format=json, the default)")
    @responds(200, {"type": "string"}, content_type="text/html", description="format=html", success=True)
    @responds(200, {"type": "string"}, content_type="text/csv", description="format=csv", success=True)
    @responds(
        200,
        {"type": "string", "format": "binary"},
        content_type="application/pdf",
        description="format=pdf",
        success=True,
    )
    @problems(400, 503)
    @guarded("auditor")
    @bp.arguments(ComparisonQuerySchema, location="query", error_status_code=400)
    def get_comparison(query: dict[str, Any]) -> Response:
        """Champion vs shadow: the comparison report

        Over the period's decisions that a shadow also decided (`kind=challenger`: another model version;
        `kind=policy`: a candidate policy on the champion's model): decision agreement and the swap set, band
        transitions, score differences, adverse-action rates, reason agreement and reason-frequency shift, rule
        hit rates, disparate impact of both sides, and back-testing of both where outcomes were posted.
        """
        state = get_state()
        period = Period.of_days(query["from_"], query["to"])
        fmt = str(query["format"])
        report = comparison_from_store(
            state.service.require_store(), state.settings.model_store, period, str(query["kind"])
        )
        response = Response(
            render_comparison(report, fmt, generated_at=datetime.now(UTC)), status=200, content_type=MEDIA_TYPES[fmt]
        )
        if fmt in ("pdf", "csv"):
            name = f"credit-decision-{query['kind']}-comparison_{period.start:%Y-%m-%d}_{period.end:%Y-%m-%d}.{fmt}"
            response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        response.headers["Cache-Control"] = "no-store"
        return response

    return bp
