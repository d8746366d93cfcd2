"""GET /v1/reports: the same numbers service.reports computes on the same store, in every format; query errors."""

from __future__ import annotations

import csv
import io
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.reports.core import Period
from service.reports.render import render_csv, render_json
from service.reports.source import report_from_store
from service.state import get_state

TODAY = datetime.now(UTC).date()
FROM, TO = TODAY - timedelta(days=6), TODAY + timedelta(days=1)
QUERY = f"/v1/reports?from={FROM}&to={TO}"


@pytest.fixture(scope="module")
def decided(api_app: Any, german_applications: list[Any]) -> list[dict[str, Any]]:
    """60 German applications (with monitoring data) decided through the API, their outcomes posted back."""
    client = api_app.test_client()
    response = client.post("/v1/decisions:batch", json={"applications": [r for r, _ in german_applications[:60]]})
    assert response.status_code == 200
    decisions = [item["decision"] for item in response.get_json()["items"]]
    outcomes = [
        {"decision_id": d["decision_id"], "outcome": outcome, "observed_at": datetime.now(UTC).isoformat()}
        for d, (_, outcome) in zip(decisions, german_applications, strict=False)
    ]
    assert client.post("/v1/outcomes", json={"outcomes": outcomes}).status_code == 200
    return decisions


def _expected(api_app: Any) -> Any:
    state = get_state(api_app)
    period = Period(
        datetime(FROM.year, FROM.month, FROM.day, tzinfo=UTC), datetime(TO.year, TO.month, TO.day, tzinfo=UTC)
    )
    return report_from_store(state.require_store(), state.settings.model_store, period)


def test_json_report_is_the_report_of_the_store(
    api_app: Any, decided: list[dict[str, Any]], auditor_headers: dict[str, str], german_applications: list[Any]
) -> None:
    response = api_app.test_client().get(QUERY, headers=auditor_headers)
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert response.get_data(as_text=True) == render_json(_expected(api_app))
    # and the headline numbers, counted here from the API responses themselves
    mix = Counter(d["decision"] for d in decided)
    assert body["summary"]["decisions"] == 60
    assert (body["summary"]["approved"], body["summary"]["referred"], body["summary"]["declined"]) == (
        mix["approve"],
        mix["refer"],
        mix["decline"],
    )
    assert body["summary"]["approval_rate"] == pytest.approx(mix["approve"] / 60)
    bands = Counter(d["risk_band"] for d in decided)
    assert {b["band"]: b["decisions"] for b in body["bands"] if b["decisions"]} == dict(bands)
    outcomes = [o for _, o in german_applications[:60]]
    assert body["backtest"]["n"] == 60 and body["backtest"]["bad"] == outcomes.count("bad")
    # the served version's spec declares what is monitored, its policy when to flag ...
    bundle = get_state(api_app).service.served_model().bundle
    declared = [m.monitoring_field for m in bundle.spec.monitoring_only] + [b.name for b in bundle.spec.fairness_bands]
    assert [d["attribute"] for d in body["disparate_impact"]] == declared
    monitoring = bundle.policy.monitoring
    assert body["thresholds"] == {
        "stability_watch": monitoring.stability_watch,
        "stability_action": monitoring.stability_action,
        "four_fifths": monitoring.four_fifths,
        "min_sample": monitoring.min_sample,
        "reason_shift_p_value": monitoring.reason_shift_p_value,
    }
    # ... and 60 decisions are fewer than its min_sample (100): numbers shown, nothing flagged for drift or fairness
    assert 60 < monitoring.min_sample
    assert not [f for f in body["flags"] if f["section"] in ("stability", "disparate_impact")]
    assert all(c["small_sample"] and c["flag"] == "" for c in body["field_csi"])
    # monitoring data reached the report (every monitoring attribute) ...
    impact = {d["attribute"]: d for d in body["disparate_impact"]}
    for attribute in bundle.spec.monitoring_only:
        values = Counter(r["monitoring"][attribute.monitoring_field] for r, _ in german_applications[:60])
        groups = {g["group"]: g["decisions"] for g in impact[attribute.monitoring_field]["groups"]}
        assert groups == dict(values) and impact[attribute.monitoring_field]["missing"] == 0
    # ... but never the model: every field the model was explained on is an applicant field
    assert all(
        set(d["explanation"]["attributions"]) == set(r["applicant"])
        for d, (r, _) in zip(decided, german_applications, strict=False)
    )


def test_csv_and_html_formats(api_app: Any, decided: list[dict[str, Any]], auditor_headers: dict[str, str]) -> None:
    client = api_app.test_client()
    response = client.get(QUERY + "&format=csv", headers=auditor_headers)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="credit-decision-report_{FROM}_{TO}.csv"'
    assert response.get_data(as_text=True) == render_csv(_expected(api_app))
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert any(r["section"] == "summary" and r["metric"] == "decisions" and r["value"] == "60" for r in rows)
    page = client.get(QUERY + "&format=html", headers=auditor_headers)
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert f"Credit decisions {FROM} to {TO}" in text and "<script" not in text
    assert page.headers["Cache-Control"] == "no-store"


def test_pdf_report_renders(
    api_app: Any, decided: list[dict[str, Any]], auditor_headers: dict[str, str], tmp_path: Path
) -> None:
    from PIL import Image

    response = api_app.test_client().get(QUERY + "&format=pdf", headers=auditor_headers)
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF-")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(response.data)
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")], check=True)
    (png,) = tmp_path.glob("page*.png")
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    dark = (pixels < 128).mean()
    assert 0.002 < dark < 0.5, f"page 1 looks blank or black ({dark:.4f} dark)"


@pytest.mark.parametrize(
    ("query", "field", "status"),
    [
        ("?to=2026-02-01", "from", 400),
        ("?from=2026-02-01", "to", 400),
        ("?from=2026-13-01&to=2026-02-01", "from", 400),
        ("?from=2026-01-01&to=01.02.2026", "to", 400),
        ("?from=2026-01-01T00:00:00Z&to=2026-02-01", "from", 400),
        ("?from=2026-02-01&to=2026-02-01", "to", 400),
        ("?from=2026-03-01&to=2026-02-01", "to", 400),
        ("?from=2024-01-01&to=2026-01-01", "to", 400),
        ("?from=2026-01-01&to=2026-02-01&format=xml", "format", 400),
        ("?from=2026-01-01&to=2026-02-01&model=a%20b", "model", 400),
        ("?from=2026-01-01&to=2026-02-01&since=2026-01-01", "since", 400),
    ],
)
def test_bad_queries_are_problems_naming_the_parameter(
    api_app: Any, auditor_headers: dict[str, str], query: str, field: str, status: int
) -> None:
    response = api_app.test_client().get("/v1/reports" + query, headers=auditor_headers)
    assert response.status_code == status and response.mimetype == "application/problem+json"
    assert field in [e["field"] for e in response.get_json()["errors"]]


def test_reports_need_the_auditor_role(
    api_app: Any, anonymous_client: Any, scorer_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    client = api_app.test_client()
    assert anonymous_client.get(QUERY).status_code == 401
    assert client.get(QUERY, headers=scorer_headers).status_code == 403
    assert client.get(QUERY, headers=admin_headers).status_code == 403


def test_an_empty_period_is_a_report_of_nothing(api_app: Any, auditor_headers: dict[str, str]) -> None:
    response = api_app.test_client().get("/v1/reports?from=2020-01-01&to=2020-02-01", headers=auditor_headers)
    assert response.status_code == 200
    assert response.get_json()["summary"]["decisions"] == 0
