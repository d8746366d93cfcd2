"""``GET /v1/reports?from=YYYY-MM-DD&to=YYYY-MM-DD[&model=NAME][&format=json|csv|html|pdf]`` (auditor).

The period ``[from, to)`` in UTC, read from the decision store (with the outcomes posted back for
back-testing) and drift measured against the training baseline in the model store; the same report
``credit-decision report`` writes. JSON by default; HTML is a self-contained page, PDF and CSV are sent
as attachments.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from flask import Blueprint, Flask, Response, request

from service.auth import require_role
from service.errors import FieldError, InvalidParameter
from service.reports.core import Period, ReportError
from service.reports.render import MEDIA_TYPES, render
from service.reports.source import report_from_store
from service.state import get_state

#: Longest period one request may cover (a report reads the period before it too).
MAX_PERIOD = timedelta(days=366)
FORMATS = ("json", "csv", "html", "pdf")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}\Z")
_PARAMETERS = frozenset({"from", "to", "model", "format"})

bp = Blueprint("reports", __name__, url_prefix="/v1")


def _day(name: str, errors: list[FieldError]) -> datetime | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        errors.append(FieldError(name, "required: a date YYYY-MM-DD (UTC)"))
        return None
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        day = date.fromisoformat(raw)
    except ValueError:
        errors.append(FieldError(name, "must be a date YYYY-MM-DD (UTC)"))
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def report_query() -> tuple[Period, str | None, str]:
    """The period, model name and format of the query string; a 422 problem naming each bad parameter."""
    errors = [FieldError(key, "unknown parameter") for key in sorted(set(request.args) - _PARAMETERS)]
    start, end = _day("from", errors), _day("to", errors)
    model = request.args.get("model") or None
    if model is not None and not _MODEL_NAME.match(model):
        errors.append(FieldError("model", "must be a model name (letters, digits, _ . -)"))
    fmt = request.args.get("format") or "json"
    if fmt not in FORMATS:
        errors.append(FieldError("format", f"must be one of {', '.join(FORMATS)}"))
    period: Period | None = None
    if start is not None and end is not None:
        if end <= start:
            errors.append(FieldError("to", "must be after from"))
        elif end - start > MAX_PERIOD:
            errors.append(FieldError("to", f"the period may cover at most {MAX_PERIOD.days} days"))
        else:
            try:
                period = Period(start, end)
            except ReportError as exc:
                errors.append(FieldError("to", str(exc)))
    if errors or period is None:
        raise InvalidParameter("invalid report query", errors)
    return period, model, fmt


@bp.get("/reports")
@require_role("auditor")
def get_report() -> Response:
    """The period report in the requested format."""
    state = get_state()
    store = state.require_store()
    period, model, fmt = report_query()
    report = report_from_store(store, state.settings.model_store, period, model)
    body = render(report, fmt, generated_at=datetime.now(UTC))
    response = Response(body, status=200, content_type=MEDIA_TYPES[fmt])
    if fmt in ("pdf", "csv"):
        name = f"credit-decision-report_{period.start:%Y-%m-%d}_{period.end:%Y-%m-%d}.{fmt}"
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Register the report endpoint."""
    app.register_blueprint(bp)
