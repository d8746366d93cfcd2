"""Actionable recourse over the tiny, really trained champion: every proposal is re-decided through the API and
approved; only the spec's recourse fields move, in their direction, in whole steps, within range; single-field
proposals are the smallest at step resolution; recorded, replayed identically, shown in the record and the notice."""

from __future__ import annotations

import copy
import dataclasses
import html
from pathlib import Path
from typing import Any

import pytest

from model_store.errors import ContractError
from model_store.spec import FeatureSpec
from service.api.notice import PAGE_TEXTS, render_notice_html
from service.core.notice import NOTICE_TEXTS, RECOURSE_NONE_FOUND, build_notice
from service.core.recorded import DecisionPayload, RecordedDecision
from service.records.model import DecisionRecord
from service.replay import replay_record
from service.state import get_state

SPEC_PATH = Path(__file__).resolve().parents[1] / "config" / "german_credit" / "feature_spec.yaml"
SPEC = FeatureSpec.load(SPEC_PATH)
RECOURSE_FIELDS = {"duration_months", "credit_amount", "installment_rate_pct", "other_debtors"}


def _post(client: Any, applicant: dict[str, Any], app_id: str, recourse: bool) -> dict[str, Any]:
    query = "?recourse=true" if recourse else ""
    response = client.post(f"/v1/decisions{query}", json={"application_id": app_id, "applicant": applicant})
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def _changed(applicant: dict[str, Any], option: dict[str, Any]) -> dict[str, Any]:
    out = dict(applicant)
    for change in option["changes"]:
        assert out[change["field"]] == change["from"]
        out[change["field"]] = change["to"]
    return out


@pytest.fixture(scope="module")
def decided(api_app: Any, german_applications: list[Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(applicant, response with ?recourse=true) for 80 real applications, plus one pushed over the amount rule."""
    client = api_app.test_client()
    out = []
    for index, (request, _outcome) in enumerate(german_applications[:80]):
        out.append((request["applicant"], _post(client, request["applicant"], f"RC-{index}", True)))
    approved = next(a for a, body in out if body["decision"] == "approve")
    pushed = {**approved, "credit_amount": 25_000}  # over R02's product maximum: refer (or worse)
    out.append((pushed, _post(client, pushed, "RC-pushed", True)))
    return out


def test_the_spec_marks_recourse_fields_and_never_age() -> None:
    assert {f.name for f in SPEC.recourse_fields} == RECOURSE_FIELDS
    assert all(f.actionable for f in SPEC.recourse_fields)
    assert "age_years" not in {f.name for f in SPEC.recourse_fields}


def test_every_proposal_is_approved_when_the_changed_application_is_decided_again(
    api_app: Any, decided: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    client = api_app.test_client()
    options = [(a, o) for a, body in decided if body.get("recourse") for o in body.get("recourse")["options"]]
    assert len(options) >= 2
    for n, (applicant, option) in enumerate(options):
        again = _post(client, _changed(applicant, option), f"RC-check-{n}", False)
        assert again["decision"] == "approve"
        assert option["decision"] == "approve"
        assert again["score"]["value"] == option["score"]
        assert again["probability_of_default"] == pytest.approx(option["probability_of_default"], abs=1e-12)


def test_recourse_only_for_refer_and_decline_and_only_when_asked(
    api_app: Any, decided: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    for _applicant, body in decided:
        assert ("recourse" not in body) == (body["decision"] == "approve")
    not_asked = next(a for a, body in decided if body["decision"] != "approve")
    assert "recourse" not in _post(api_app.test_client(), not_asked, "RC-plain", False)
    refused = api_app.test_client().post(
        "/v1/decisions?recourse=maybe", json={"application_id": "RC-bad", "applicant": not_asked}
    )
    assert refused.status_code == 400
    assert refused.content_type == "application/problem+json"
    assert "recourse" in refused.get_data(as_text=True)


def test_only_recourse_fields_move_in_their_direction_in_whole_steps_within_range(
    decided: list[tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    seen = 0
    for applicant, body in decided:
        if body.get("recourse") is None:
            continue
        assert set(body.get("recourse")["fields"]) <= RECOURSE_FIELDS
        for option in body.get("recourse")["options"]:
            assert 1 <= len(option["changes"]) <= 2
            for change in option["changes"]:
                seen += 1
                field = SPEC.field(change["field"])
                assert field.name in RECOURSE_FIELDS and field.name != "age_years"
                rule = field.recourse
                assert rule is not None
                assert change["from"] == applicant[field.name] and change["to"] != change["from"]
                if field.kind == "categorical":
                    assert change["to"] in rule.to
                    continue
                assert isinstance(change["to"], int)  # every German numeric field is an integer field
                assert field.minimum is not None and field.maximum is not None
                assert field.minimum <= change["to"] <= field.maximum
                assert rule.direction == "decrease" and change["to"] < change["from"]
                assert (change["from"] - change["to"]) % rule.step == 0
                field.check(change["to"])
    assert seen >= 2


def test_single_field_proposals_are_the_smallest_change_at_step_resolution(
    api_app: Any, decided: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    engine = get_state(api_app).service.served_model().engine
    checked = 0
    for applicant, body in decided:
        for option in body.get("recourse")["options"] if body.get("recourse") else []:
            if len(option["changes"]) != 1 or SPEC.field(option["changes"][0]["field"]).kind != "numeric":
                continue
            change = option["changes"][0]
            step = SPEC.field(change["field"]).recourse.step  # type: ignore[union-attr]
            one_step_less = {**applicant, change["field"]: int(change["to"] + step)}
            if one_step_less[change["field"]] == change["from"]:
                continue  # one step less is the application itself, which was not approved
            _scores, _pds, actions = engine.screen([one_step_less])
            assert actions[0] != 0, f"{change}: one step less is already approved"
            checked += 1
    assert checked >= 1


def test_a_rule_pushed_application_is_brought_back_under_the_rule(
    decided: list[tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    applicant, body = decided[-1]
    assert body["decision"] != "approve" and "R02" in [r["code"] for r in body["rules_fired"]]
    recourse = body.get("recourse")
    assert recourse["status"] == "found"
    amounts = [c["to"] for o in recourse["options"] for c in o["changes"] if c["field"] == "credit_amount"]
    assert amounts and all(a <= 20_000 for a in amounts)
    assert applicant["age_years"] == decided[-1][0]["age_years"]


def test_a_decline_without_achievable_recourse_says_so_also_in_its_notice(
    api_app: Any, decided: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    none_found = [
        body for _a, body in decided if body.get("recourse") and body.get("recourse")["status"] == "none_found"
    ]
    assert none_found
    assert all(body.get("recourse")["options"] == [] and body.get("recourse")["candidates"] > 0 for body in none_found)
    decline = next((body for body in none_found if body["decision"] == "decline"), None)
    assert decline is not None
    notice = api_app.test_client().get(f"/v1/decisions/{decline['decision_id']}/notice").get_json()
    assert notice["recourse"] == [] and notice["recourse_note"] == RECOURSE_NONE_FOUND


def test_the_notice_lists_recorded_proposals(
    api_app: Any, decided: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    # the tiny model's declines are too far from an approval for any allowed change (none_found, tested above),
    # so the notice builder is given a real recorded refer with proposals, read as if it had been a decline
    client = api_app.test_client()
    service = get_state(api_app).service
    body = next(b for _a, b in decided if b["decision"] == "refer" and b.get("recourse", {}).get("status") == "found")
    recorded = service.recorded(body["decision_id"])
    as_decline = dataclasses.replace(recorded, decision=dataclasses.replace(recorded.decision, decision="decline"))
    descriptions = {f.name: f.description for f in SPEC.fields}
    first = body["recourse"]["options"][0]["changes"][0]
    for language, sentence in (
        ("en", f"{SPEC.field(first['field']).description}: {first['to_label']} instead of {first['from_label']}"),
        ("zh-Hans", f"{SPEC.field(first['field']).description}：{first['to_label']}（而非 {first['from_label']}）"),
    ):
        notice = build_notice(as_decline, None, language=language, descriptions=descriptions)
        assert notice.recourse is not None and len(notice.recourse) == len(body["recourse"]["options"])
        assert notice.recourse[0].startswith(sentence)
        assert notice.recourse_note == NOTICE_TEXTS[language].recourse_found
        page = render_notice_html(notice)
        assert PAGE_TEXTS[language].recourse_heading in page and 'id="recourse"' in page
        assert html.escape(first["to_label"]) in page
    # a decline recorded without recourse: the notice says nothing about it
    plain = next(a for a, b in decided if b["decision"] == "decline")
    body = _post(client, plain, "RC-plain-decline", False)
    notice = client.get(f"/v1/decisions/{body['decision_id']}/notice").get_json()
    assert notice["recourse"] is None and notice["recourse_note"] is None
    page = client.get(f"/v1/decisions/{body['decision_id']}/notice?format=html").get_data(as_text=True)
    assert "What could change the decision" not in page


def test_the_record_holds_the_recourse_and_replay_rederives_it(
    api_app: Any, decided: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    client = api_app.test_client()
    body = next(b for _a, b in decided if b.get("recourse") and b.get("recourse")["status"] == "found")
    stored = client.get(f"/v1/decisions/{body['decision_id']}").get_json()
    assert stored["payload"]["recourse"] == body.get("recourse")
    assert stored["response"]["recourse"] == body.get("recourse")
    replay = client.post(f"/v1/decisions/{body['decision_id']}/replay").get_json()
    assert replay["identical"] is True, replay["differences"]
    # replay compares the recorded recourse: a changed one is a difference
    service = get_state(api_app).service
    record = service.stored(body["decision_id"]).record
    payload = copy.deepcopy(record.payload)
    payload["recourse"]["options"][0]["changes"][0]["to"] = payload["recourse"]["options"][0]["changes"][0]["from"]
    changed = DecisionRecord(**{**record.__dict__, "payload": payload})
    report = replay_record(changed, service.require_models())
    assert [d.field for d in report.differences] == ["recourse.options[0].changes[0].to"]


def test_records_without_recourse_still_read() -> None:
    # the first-version fixture of the payload reader has no recourse; a current one drops it when absent
    body = {
        "schema_version": 2,
        "request": {"applicant": {"a": 1}},
        "probability_of_default": 0.2,
        "margin": -1.0,
        "base_value": -1.2,
        "score_scale": {"min": 300, "max": 850, "points_per_log_odds": 57.7},
        "reasons": [],
        "rules_fired": [],
        "attributions": {"a": 0.2},
        "model": {
            k: "x" for k in ("sha256", "manifest_sha256", "family", "spec_version", "policy_version", "catalog_version")
        },
        "decided_by": {},
        "latency_ms": 1.0,
    }
    payload = DecisionPayload.from_json(body)
    assert payload.recourse is None and payload.reason_stability is None
    # written again as the current version: no recourse or stability keys either (the attributions aligned with
    # the applicant's field names, as version 3 on writes them)
    assert payload.to_json() == {**body, "schema_version": 4, "attributions": [0.2]}
    assert RecordedDecision  # the typed view reads it (exercised end to end by the API tests)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f["age_years"].update(actionable=True), "fairness_bands"),
        (lambda f: f["residence_since"].update(recourse={"direction": "decrease"}), "only an actionable field"),
        (lambda f: f["credit_amount"].update(recourse={"direction": "increase"}), "can never lower the risk"),
        (lambda f: f["credit_amount"].update(recourse={"direction": "decrease", "step": 0}), "positive"),
        (lambda f: f["credit_amount"].update(recourse={"direction": "decrease", "step": 2.5}), "whole number"),
        (lambda f: f["other_debtors"].update(recourse={"to": ["cousin"]}), "codes of the field"),
        (lambda f: f["purpose"].update(recourse={"direction": "decrease"}), "takes only `to`"),
    ],
)
def test_the_spec_refuses_recourse_it_cannot_honour(edit: Any, message: str) -> None:
    from model_store._yaml import load_mapping

    data = load_mapping(SPEC_PATH)
    edit({f["name"]: f for f in data["fields"]})
    with pytest.raises(ContractError, match=message):
        FeatureSpec.from_dict(data, where="spec")
