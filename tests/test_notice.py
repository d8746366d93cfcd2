"""Adverse-action notice data: the pure builder on hand-made records, the service's catalog wiring, and
GET /v1/decisions/<id>/notice."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.core.engine import Decision, Reason, ReasonValue
from service.core.notice import INQUIRY_ALREADY_LISTED, INQUIRY_UNKNOWN, NO_INQUIRY_DATA, build_notice
from service.core.recorded import ApplicationRequest, ModelProvenance, RecordedDecision, ScoreScale
from service.errors import NoticeNotRequired


def _reason(code: str, kind: str, log_odds: float | None, adverse: bool = True, field: str = "f") -> Reason:
    return Reason(
        code=code,
        kind="rule" if kind == "rule" else "model",
        group=None if kind == "rule" else f"group_{code}",
        customer_text=f"text of {code}",
        auditor_text=f"auditor text of {code}",
        values=(ReasonValue(field, 1, f"value of {code}"),),
        contribution_log_odds=log_odds,
        contribution_points=None if log_odds is None else -57.7 * log_odds,
        adverse=adverse,
    )


def _record(
    decision: str,
    reasons: list[Reason],
    attributions: dict[str, float] | None = None,
    applicant: dict[str, Any] | None = None,
) -> RecordedDecision:
    return RecordedDecision.new(
        decision_id="d1",
        created_at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
        request=ApplicationRequest("APP-1", applicant or {}),
        decision=Decision(
            decision=decision,  # type: ignore[arg-type]
            score=444,
            probability_of_default=0.3,
            margin=0.2,
            base_value=-1.0,
            risk_band="E",
            reasons=tuple(reasons),
            rules_fired=(),
            attributions=tuple((attributions or {"a": 0.1}).items()),
        ),
        model_name="m",
        model_version="v3",
        provenance=ModelProvenance("ab" * 32, "cd" * 32, "gbt", "s-1", "p-1", "c-1"),
        score_scale=ScoreScale(300, 850, 57.7),
        decided_by={},
        latency_ms=1.0,
    )


def test_the_notice_lists_the_reasons_as_recorded_never_reranked() -> None:
    # as the engine ranked them: the rule first, then model reasons by contribution, the tie C03/C02 broken by
    # group name when the decision was made; the notice keeps exactly that order (it does not sort by code)
    reasons = [
        _reason("R01", "rule", None),
        _reason("C01", "model", 0.40),
        _reason("C03", "model", 0.25),
        _reason("C02", "model", 0.25),
        _reason("C09", "model", -0.2, adverse=False),
        _reason("C05", "model", 0.10),
    ]
    notice = build_notice(_record("decline", reasons))
    assert [r.code for r in notice.principal_reasons] == ["R01", "C01", "C03", "C02"]
    assert [r.rank for r in notice.principal_reasons] == [1, 2, 3, 4]
    assert [f.code for f in notice.key_factors] == ["C01", "C03", "C02", "C05"]  # model reasons only
    assert notice.principal_reasons[1].text == "text of C01"
    assert notice.principal_reasons[1].values == ("value of C01",)
    assert notice.principal_reasons[1].score_points == round(-57.7 * 0.40, 1)
    body = notice.to_dict()
    assert body["score"] == {"value": 444, "min": 300, "max": 850, "higher_is_better": True}
    assert body["decision_date"] == "2026-03-04"


def test_data_without_an_inquiry_field_has_no_inquiry_factor_and_says_so() -> None:
    body = build_notice(_record("decline", [_reason("C01", "model", 0.3)])).to_dict()
    assert body["inquiries_factor"] is None
    assert body["inquiries_note"] == NO_INQUIRY_DATA


FOUR_REASONS = (("C01", 0.5), ("C02", 0.4), ("C03", 0.3), ("C04", 0.2))


@pytest.mark.parametrize("field", ["credit_inquiries", "inquiries_last_6m"])
def test_an_adverse_inquiry_attribution_becomes_the_fifth_key_factor(field: str) -> None:
    reasons = [_reason(c, "model", v) for c, v in FOUR_REASONS]
    record = _record("decline", reasons, {field: 0.1, "a": 0.5}, {field: 6})
    notice = build_notice(record, inquiries_field=field)
    assert notice.inquiries_factor is not None
    assert (notice.inquiries_factor.rank, notice.inquiries_factor.code) == (5, field)
    assert notice.inquiries_factor.values == ("6 inquiries",)
    assert notice.inquiries_factor.score_points == round(-57.7 * 0.1, 1)
    benign = build_notice(_record("decline", reasons, {field: -0.1}, {field: 6}), inquiries_field=field)
    assert benign.inquiries_factor is None and "did not adversely affect" in benign.inquiries_note


def test_the_inquiry_factor_follows_the_catalogs_field_and_nothing_else() -> None:
    reasons = [_reason(c, "model", v) for c, v in FOUR_REASONS]
    record = _record("decline", reasons, {"credit_inquiries": 0.3, "inquiries_last_6m": -0.2}, {"credit_inquiries": 6})
    # a field merely *named* like inquiries is not one unless the catalog says so
    assert build_notice(record).inquiries_note == NO_INQUIRY_DATA
    assert build_notice(record, inquiries_field=None).inquiries_factor is None
    # the catalog's field decides, whatever other fields are called
    assert "did not adversely affect" in build_notice(record, inquiries_field="inquiries_last_6m").inquiries_note
    assert build_notice(record, inquiries_field="credit_inquiries").inquiries_factor is not None
    # a catalog field the decision never saw is data without inquiries
    assert build_notice(record, inquiries_field="no_such_field").inquiries_note == NO_INQUIRY_DATA


def test_an_inquiry_field_already_among_the_key_factors_is_not_repeated() -> None:
    reasons = [_reason("C01", "model", 0.5), _reason("C02", "model", 0.4, field="inquiries_last_6m")]
    record = _record("decline", reasons, {"inquiries_last_6m": 0.4}, {"inquiries_last_6m": 9})
    notice = build_notice(record, inquiries_field="inquiries_last_6m")
    assert notice.inquiries_factor is None and notice.inquiries_note == INQUIRY_ALREADY_LISTED
    missing = build_notice(
        _record("decline", reasons[:1], {"inquiries_last_6m": 0.4}, {"inquiries_last_6m": None}), "inquiries_last_6m"
    )
    assert missing.inquiries_factor is not None and missing.inquiries_factor.values == ("Not provided",)


@pytest.mark.parametrize("decision", ["approve", "refer"])
def test_only_declines_get_a_notice(decision: str) -> None:
    with pytest.raises(NoticeNotRequired, match=decision):
        build_notice(_record(decision, [_reason("C01", "model", 0.3)]))


# --- the endpoint ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decided(api_app: Any, german_applications: list[Any]) -> list[dict[str, Any]]:
    """The first 40 German applications decided through the API."""
    client = api_app.test_client()
    response = client.post("/v1/decisions:batch", json={"applications": [r for r, _ in german_applications[:40]]})
    assert response.status_code == 200
    return [item["decision"] for item in response.get_json()["items"]]


def _first(decided: list[dict[str, Any]], *decisions: str) -> dict[str, Any]:
    return next(d for d in decided if d["decision"] in decisions)


def test_notice_json_of_a_decline_follows_the_decision(
    api_app: Any, decided: list[dict[str, Any]], auditor_headers: dict[str, str]
) -> None:
    declined = _first(decided, "decline")
    response = api_app.test_client().get(f"/v1/decisions/{declined['decision_id']}/notice", headers=auditor_headers)
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    adverse = [r for r in declined["reasons"] if r["adverse"]]
    assert [r["text"] for r in body["principal_reasons"]] == [r["customer_text"] for r in adverse][:4]
    contributions = [r["contribution"]["log_odds"] for r in adverse if r["kind"] == "model"]
    assert contributions == sorted(contributions, reverse=True)
    assert body["score"] == {**declined["score"], "higher_is_better": True}
    assert body["decision_date"] == declined["created_at"][:10]
    assert body["inquiries_factor"] is None and "no record of credit inquiries" in body["inquiries_note"]
    assert body["model"] == declined["model"]
    assert response.headers["Cache-Control"] == "no-store"


def _store_with_inquiries_field(source: Path, target: Path, name: str, version: str, field: str) -> Any:
    """A model store holding a copy of ``name version`` whose reason catalog names ``field`` as the inquiries field."""
    import json

    from model_store.store import CATALOG_FILE, MANIFEST_FILE, ModelStore

    folder = source / name / version
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    manifest = json.loads(files.pop(MANIFEST_FILE))
    for key in ("files", "name", "version"):
        manifest.pop(key)
    files[CATALOG_FILE] += f"notice:\n  inquiries_field: {field}\n".encode()
    store = ModelStore(target)
    store.write_version(name, version, files, manifest)
    return store


def test_the_service_takes_the_inquiries_field_from_the_catalog_of_the_deciding_version(
    api_app: Any, decided: list[dict[str, Any]], tmp_path: Path
) -> None:
    from model_store.store import ModelStore
    from service.decisions import DecisionService
    from service.models import ModelCache
    from service.state import get_state

    state = get_state(api_app)
    declined = _first(decided, "decline")
    recorded = state.service.recorded(declined["decision_id"])
    name, version = recorded.model_name, recorded.model_version
    # the served version's catalog has no inquiries field: the API's notice says so
    assert state.service.notice(declined["decision_id"]) == build_notice(recorded, None)
    # the same version with a catalog naming a field: the service passes that field on
    with_field = _store_with_inquiries_field(
        Path(state.settings.model_store), tmp_path / "store", name, version, "existing_credits"
    )
    service = DecisionService(models=ModelCache(with_field), served=None, store=state.store)
    notice = service.notice(declined["decision_id"])
    assert notice == build_notice(recorded, "existing_credits")
    assert notice.inquiries_note != NO_INQUIRY_DATA
    # the deciding version cannot be loaded (not in this store; no model store at all): the notice says it
    # cannot tell, rather than claim the data has no inquiries
    empty = DecisionService(models=ModelCache(ModelStore(tmp_path / "empty")), served=None, store=state.store)
    unknown = empty.notice(declined["decision_id"])
    assert unknown == build_notice(recorded, None, catalog_known=False)
    assert unknown.inquiries_note == INQUIRY_UNKNOWN and unknown.inquiries_factor is None
    assert unknown.principal_reasons == notice.principal_reasons
    none = DecisionService(models=None, served=None, store=state.store)
    assert none.notice(declined["decision_id"]).inquiries_note == INQUIRY_UNKNOWN


@pytest.mark.parametrize("how", ["query", "accept"])
def test_notice_html_is_printable_and_self_contained(
    api_app: Any, decided: list[dict[str, Any]], auditor_headers: dict[str, str], how: str
) -> None:
    declined = _first(decided, "decline")
    path = f"/v1/decisions/{declined['decision_id']}/notice"
    if how == "query":
        response = api_app.test_client().get(path + "?format=html", headers=auditor_headers)
    else:
        headers = {**auditor_headers, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}
        response = api_app.test_client().get(path, headers=headers)
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "@media print" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no external resources
    assert "<script" not in page
    for reason in [r for r in declined["reasons"] if r["adverse"]][:4]:
        assert reason["customer_text"] in page
    assert f">{declined['score']['value']}<" in page


@pytest.mark.parametrize("decision", ["approve", "refer"])
def test_no_notice_for_approvals_and_referrals(
    api_app: Any, decided: list[dict[str, Any]], auditor_headers: dict[str, str], decision: str
) -> None:
    other = _first(decided, decision)
    response = api_app.test_client().get(f"/v1/decisions/{other['decision_id']}/notice", headers=auditor_headers)
    assert response.status_code == 409 and response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["type"].endswith(":notice-not-required") and decision in problem["detail"]


def test_notice_errors_and_roles(
    api_app: Any,
    anonymous_client: Any,
    decided: list[dict[str, Any]],
    scorer_headers: dict[str, str],
    admin_headers: dict[str, str],
    auditor_headers: dict[str, str],
) -> None:
    path = f"/v1/decisions/{_first(decided, 'decline')['decision_id']}/notice"
    client = api_app.test_client()
    assert anonymous_client.get(path).status_code == 401
    assert client.get(path, headers=scorer_headers).status_code == 403
    assert client.get(path, headers=admin_headers).status_code == 403
    assert client.get("/v1/decisions/no-such-decision/notice", headers=auditor_headers).status_code == 404
    bad = client.get(path + "?format=pdf", headers=auditor_headers)
    assert bad.status_code == 400 and bad.get_json()["errors"][0]["field"] == "format"
