"""Prohibited-basis attributes: accepted only in `monitoring`, recorded beside the decision, never scored, and
counted by the period report as the spec declares them (`not_provided` or absent = missing)."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.state import get_state


def _post(client: Any, body: Any) -> Any:
    return client.post("/v1/decisions", data=json.dumps(body), content_type="application/json")


def _strip(response: dict[str, Any]) -> dict[str, Any]:
    volatile = {"decision_id", "application_id", "created_at", "latency_ms"}
    return {k: v for k, v in response.items() if k not in volatile}


@pytest.mark.parametrize(
    "monitoring",
    [{"sex": "female", "foreign_worker": "yes"}, {"sex": "male", "foreign_worker": "no"}, {"sex": "not_provided"}],
)
def test_monitoring_data_is_recorded_but_never_changes_the_decision(
    api_client: Any, example_application: dict[str, Any], monitoring: dict[str, str]
) -> None:
    plain = _post(api_client, example_application)
    body = copy.deepcopy(example_application)
    body["monitoring"] = monitoring
    monitored = _post(api_client, body)
    assert plain.status_code == monitored.status_code == 201
    assert _strip(monitored.get_json()) == _strip(plain.get_json())
    stored = api_client.get(f"/v1/decisions/{monitored.get_json()['decision_id']}").get_json()
    assert stored["payload"]["request"]["monitoring"] == monitoring
    assert "monitoring" not in stored["payload"]["request"]["applicant"]


def test_monitoring_attributes_never_reach_the_engine(api_app: Any, api_client: Any, example_application: dict) -> None:
    engine = get_state(api_app).model.engine  # type: ignore[union-attr]
    seen: list[list[dict[str, Any]]] = []
    original = engine.decide

    def spy(applications: Any) -> Any:
        seen.append([dict(a) for a in applications])
        return original(applications)

    engine.decide = spy
    try:
        body = copy.deepcopy(example_application)
        body["monitoring"] = {"sex": "female", "foreign_worker": "yes"}
        assert _post(api_client, body).status_code == 201
    finally:
        engine.decide = original
    assert seen and set(seen[0][0]) == set(example_application["applicant"])
    forbidden = {"sex", "foreign_worker", "personal_status_and_sex", "monitoring"}
    assert not forbidden & set(seen[0][0])


@pytest.mark.parametrize(
    ("monitoring", "field"),
    [
        ({"sex": "unknown"}, "monitoring.sex"),
        ({"religion": "x"}, "monitoring.religion"),
        ({"foreign_worker": True}, "monitoring.foreign_worker"),
    ],
)
def test_invalid_monitoring_data_is_a_422_naming_the_field(
    api_app: Any, api_client: Any, example_application: dict[str, Any], monitoring: dict[str, Any], field: str
) -> None:
    before = get_state(api_app).store.count()  # type: ignore[union-attr]
    body = copy.deepcopy(example_application)
    body["monitoring"] = monitoring
    response = _post(api_client, body)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.get_json()["errors"]]
    assert get_state(api_app).store.count() == before  # type: ignore[union-attr]


def test_prohibited_attribute_inside_applicant_points_to_monitoring(api_client: Any, example_application: dict) -> None:
    body = copy.deepcopy(example_application)
    body["applicant"]["sex"] = "female"
    response = _post(api_client, body)
    assert response.status_code == 422
    errors = {e["field"]: e["message"] for e in response.get_json()["errors"]}
    assert "monitoring" in errors["applicant.sex"]


def test_the_report_counts_monitoring_data_by_the_specs_attributes_and_not_provided_as_missing(
    api_app: Any, api_client: Any, example_application: dict[str, Any]
) -> None:
    from service.core.recorded import RecordedDecision
    from service.reports.core import Period
    from service.reports.source import records_between, report_from_store

    state = get_state(api_app)
    spec = state.service.served_model().bundle.spec
    for monitoring in ({"sex": "female", "foreign_worker": "yes"}, {"sex": "not_provided"}, None):
        body = copy.deepcopy(example_application)
        if monitoring is not None:
            body["monitoring"] = monitoring
        assert _post(api_client, body).status_code == 201
    today = datetime.now(UTC).date()
    period = Period.of_days(today - timedelta(days=1), today + timedelta(days=1))
    store = state.service.require_store()
    report = report_from_store(store, state.settings.model_store, period)
    recorded = [RecordedDecision.of(r.record) for r in records_between(store, period.start, period.end)]
    impact = {d.attribute: d for d in report.disparate_impact}
    for attribute in spec.monitoring_only:
        sent = Counter((r.payload.monitoring or {}).get(attribute.monitoring_field) for r in recorded)
        said = {value: n for value, n in sent.items() if value in attribute.values and value != "not_provided"}
        di = impact[attribute.monitoring_field]
        assert {g.group: g.decisions for g in di.groups} == said
        assert di.missing == sent[None] + sent["not_provided"] > 0
        assert "not_provided" not in [g.group for g in di.groups]
