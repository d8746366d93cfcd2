"""Human review of referred decisions over the real API, on SQLite and PostgreSQL, with the tiny trained model:
the queue, final decisions with justification codes as audit events in the chain, the automated record never
altered, roles, refusals, and the period report's override rates counted by hand."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.auth import hash_key
from service.state import get_state

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _applications(example: dict[str, Any], n: int, prefix: str) -> list[dict[str, Any]]:
    """``n`` applications; every third asks for more than the product maximum (rule R02: refer)."""
    out = []
    for i in range(n):
        body = copy.deepcopy(example)
        body["application_id"] = f"{prefix}-{i:04d}"
        body["applicant"]["duration_months"] = 6 + (i * 7) % 48
        body["applicant"]["credit_amount"] = 25_000 + i if i % 3 == 0 else 800 + (i * 911) % 6000
        out.append(body)
    return out


@pytest.fixture
def reviewer(api_keys: dict[str, str]) -> dict[str, str]:
    return _bearer(api_keys["reviewer"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_queue_takes_a_final_decision_as_an_audit_event_and_leaves_the_record_alone(
    api_make_app: Any, example_application: dict[str, Any], reviewer: dict[str, str], backend: str
) -> None:
    app = api_make_app(backend=backend)
    client = app.test_client()
    bodies = _applications(example_application, 12, "RV")
    made = [client.post("/v1/decisions", json=b).get_json() for b in bodies]
    referred = [m for m in made if m["decision"] == "refer"]
    assert len(referred) >= 4
    codes = client.get("/v1/reviews/codes", headers=reviewer)
    assert codes.status_code == 200
    assert codes.get_json()["policy_version"] == made[0]["policy_version"]
    assert {c["code"] for c in codes.get_json()["codes"]} >= {"J01", "J04", "J06"}

    queue = client.get("/v1/reviews/queue?limit=2", headers=reviewer)
    assert queue.status_code == 200, queue.get_json()
    page = queue.get_json()
    assert [i["decision_id"] for i in page["items"]] == [m["decision_id"] for m in referred[:2]]
    item = page["items"][0]
    assert item["response"]["reasons"] and item["response"]["explanation"]["attributions"]  # what a reviewer needs
    sent = next(b for b in bodies if b["application_id"] == item["application_id"])
    assert item["request"]["applicant"] == sent["applicant"]
    rest = client.get(f"/v1/reviews/queue?limit=50&cursor={page['next_cursor']}", headers=reviewer).get_json()
    assert [i["decision_id"] for i in rest["items"]] == [m["decision_id"] for m in referred[2:]]
    assert rest["next_cursor"] is None

    target = referred[0]["decision_id"]
    record_before = client.get(f"/v1/decisions/{target}").get_json()
    done = client.post(
        f"/v1/decisions/{target}/review",
        json={"final_decision": "approve", "justification_code": "J01", "note": "Payslips for 6 months verified."},
        headers=reviewer,
    )
    assert done.status_code == 201, done.get_json()
    event = done.get_json()
    assert event["kind"] == "review" and event["actor"]["role"] == "reviewer"
    assert event["actor"]["key_id"] == hash_key(reviewer["Authorization"][7:])[:12]
    details = event["details"]
    assert details["decision_id"] == target and details["final_decision"] == "approve" and details["override"]
    assert details["automated"]["decision"] == "refer"
    assert details["automated"]["reason_codes"] == [r["code"] for r in referred[0]["reasons"]]
    assert details["justification"]["code"] == "J01" and details["note"] == "Payslips for 6 months verified."
    # the automated record is never altered, the review is in the chain, and the chain verifies
    assert client.get(f"/v1/decisions/{target}").get_json() == record_before
    assert client.get(f"/v1/decisions/{target}/review", headers=reviewer).get_json() == event
    events = client.get("/v1/audit/events?kind=review").get_json()["items"]
    assert [e["event_id"] for e in events] == [event["event_id"]]
    assert get_state(app).store.verify_chain().ok
    # out of the queue; a second review of it is refused and records nothing
    left = client.get("/v1/reviews/queue?limit=50", headers=reviewer).get_json()["items"]
    assert target not in {i["decision_id"] for i in left} and len(left) == len(referred) - 1
    entries = get_state(app).store.count_entries()
    again = client.post(
        f"/v1/decisions/{target}/review",
        json={"final_decision": "decline", "justification_code": "J04"},
        headers=reviewer,
    )
    assert again.status_code == 409 and again.get_json()["type"].endswith("already-reviewed")
    assert again.headers["Content-Type"] == "application/problem+json"
    assert get_state(app).store.count_entries() == entries


def test_reviews_are_refused_with_the_field_named_and_need_the_reviewer_role(
    api_make_app: Any, example_application: dict[str, Any], reviewer: dict[str, str], api_keys: dict[str, str]
) -> None:
    app = api_make_app()
    client = app.test_client()
    made = [client.post("/v1/decisions", json=b).get_json() for b in _applications(example_application, 3, "RF")]
    target = made[0]["decision_id"]
    entries = get_state(app).store.count_entries()
    cases = [
        ({"final_decision": "refer", "justification_code": "J01"}, 422, "final_decision"),
        ({"final_decision": "approve", "justification_code": "J99"}, 422, "justification_code"),
        ({"final_decision": "approve", "justification_code": "J04"}, 422, "justification_code"),  # only for declines
        ({"final_decision": "approve"}, 422, "justification_code"),
        ({"final_decision": "approve", "justification_code": "J01", "note": "x" * 2001}, 422, "note"),
        ({"final_decision": "approve", "justification_code": "J01", "extra": 1}, 422, "extra"),
    ]
    for body, status, field in cases:
        answer = client.post(f"/v1/decisions/{target}/review", json=body, headers=reviewer)
        assert answer.status_code == status, (body, answer.get_json())
        assert field in {e["field"] for e in answer.get_json()["errors"]}, answer.get_json()
    assert client.post("/v1/decisions/dec_unknown/review", json=cases[0][0], headers=reviewer).status_code in (404, 422)
    for role in ("scorer", "auditor", "admin"):
        denied = client.post(
            f"/v1/decisions/{target}/review",
            json={"final_decision": "approve", "justification_code": "J01"},
            headers=_bearer(api_keys[role]),
        )
        assert denied.status_code == 403
        assert client.get("/v1/reviews/queue", headers=_bearer(api_keys[role])).status_code == 403
    assert client.get("/v1/reviews/queue", headers={"Authorization": ""}).status_code == 401
    # what a key is (the console's sign-in asks): its id, label and roles, never the key
    me = client.get("/v1/me", headers=reviewer).get_json()
    assert me == {"key_id": hash_key(api_keys["reviewer"])[:12], "label": "env:reviewer", "roles": ["reviewer"]}
    assert client.get("/v1/me").get_json()["roles"] == ["admin", "auditor", "reviewer", "scorer"]
    assert client.get("/v1/me", headers={"Authorization": ""}).status_code == 401
    assert get_state(app).store.count_entries() == entries


def test_the_period_report_gives_override_rates_by_reviewer_band_and_reason(
    api_make_app: Any, example_application: dict[str, Any], api_keys: dict[str, str]
) -> None:
    app = api_make_app()
    client = app.test_client()
    made = [client.post("/v1/decisions", json=b).get_json() for b in _applications(example_application, 15, "RR")]
    # two reviewers (the all-roles key and the reviewer-only key), over referrals and one final decision
    alice, bob = _bearer(api_keys["all"]), _bearer(api_keys["reviewer"])
    referred = [m for m in made if m["decision"] == "refer"]
    settled = [m for m in made if m["decision"] != "refer"]
    assert len(referred) >= 3 and settled
    plan = [
        (referred[0], alice, "approve", "J01"),
        (referred[1], alice, "decline", "J04"),
        (referred[2], bob, "approve", "J02"),
        (settled[0], bob, settled[0]["decision"], "J06"),  # confirmed on a customer's request: not an override
    ]
    labels = []
    for made_decision, who, final_decision, code in plan:
        answer = client.post(
            f"/v1/decisions/{made_decision['decision_id']}/review",
            json={"final_decision": final_decision, "justification_code": code},
            headers=who,
        )
        assert answer.status_code == 201, answer.get_json()
        labels.append(answer.get_json()["actor"]["label"])
    assert labels[0] == labels[1] != labels[2] == labels[3]
    today = datetime.now(UTC).date()
    report = client.get(f"/v1/reports?from={today}&to={today + timedelta(days=1)}")
    assert report.status_code == 200, report.get_json()
    reviews = report.get_json()["reviews"]
    assert (reviews["reviews"], reviews["overrides"]) == (4, 3)
    assert reviews["override_rate"] == pytest.approx(0.75)
    by_reviewer = {
        r["group"]: (r["reviews"], r["overrides"], r["approved"], r["declined"]) for r in reviews["by_reviewer"]
    }
    confirmed = settled[0]["decision"]
    assert by_reviewer == {
        labels[0]: (2, 2, 1, 1),
        labels[2]: (2, 1, 1 + (confirmed == "approve"), int(confirmed == "decline")),
    }
    # by hand: the reviewer label of each key, the automated band and top reason of each reviewed decision
    expected_band: dict[str, list[int]] = {}
    expected_reason: dict[str, list[int]] = {}
    for made_decision, _who, final, _code in plan:
        override = int(final != made_decision["decision"])
        for table, key in (
            (expected_band, made_decision["risk_band"]),
            (expected_reason, made_decision["reasons"][0]["code"] if made_decision["reasons"] else "(none)"),
        ):
            table.setdefault(key, [0, 0])
            table[key][0] += 1
            table[key][1] += override
    assert {r["group"]: [r["reviews"], r["overrides"]] for r in reviews["by_band"]} == expected_band
    assert {r["group"]: [r["reviews"], r["overrides"]] for r in reviews["by_reason"]} == expected_reason
    assert {r["group"]: r["override_rate"] for r in reviews["by_justification"]} == {
        "J01": 1.0, "J02": 1.0, "J04": 1.0, "J06": 0.0,
    }  # fmt: skip
    assert sum(r["reviews"] for r in reviews["by_reviewer"]) == 4
    html = client.get(f"/v1/reports?from={today}&to={today + timedelta(days=1)}&format=html").get_data(as_text=True)
    assert "Human review" in html and "By automated top reason" in html
    csv_text = client.get(f"/v1/reports?from={today}&to={today + timedelta(days=1)}&format=csv").get_data(as_text=True)
    assert "review,override_rate,,0.75" in csv_text
