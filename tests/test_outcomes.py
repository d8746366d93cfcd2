"""Observed outcomes: their own table on both backends, never touching the hash chain; POST /v1/outcomes; CLI import."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from service.api.problems import problem_for
from service.records.outcomes import (
    ObservedOutcome,
    OutcomeConflict,
    UnknownDecisions,
    latest_outcomes,
    outcomes_of,
    record_outcomes,
)

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


# --- the store (SQLite and PostgreSQL) ---------------------------------------------------------------------


def test_outcomes_are_stored_apart_from_the_hash_chain(decision_store: Any, make_decision_record: Callable) -> None:
    saved = [decision_store.save(make_decision_record(created_at=T0 + timedelta(days=i))) for i in range(3)]
    ids = [s.record.decision_id for s in saved]
    before = decision_store.verify_chain()
    result = record_outcomes(
        decision_store,
        [
            ObservedOutcome(ids[0], "good", T0 + timedelta(days=30)),
            ObservedOutcome(ids[1], "bad", T0 + timedelta(days=40)),
        ],
        recorded_at=NOW,
    )
    assert result.to_dict() == {"received": 2, "stored": 2, "unchanged": 0}
    after = decision_store.verify_chain()
    assert after.ok and after.head_hash == before.head_hash and after.records_checked == 3
    assert [decision_store.get(i).record_hash for i in ids] == [s.record_hash for s in saved]
    assert latest_outcomes(decision_store) == {ids[0]: "good", ids[1]: "bad"}
    # only decisions created in [since, until) are joined
    assert latest_outcomes(decision_store, T0 + timedelta(days=1), T0 + timedelta(days=3)) == {ids[1]: "bad"}


def test_the_latest_observation_wins_and_reposting_is_a_no_op(
    decision_store: Any, make_decision_record: Callable
) -> None:
    decision_id = decision_store.save(make_decision_record(created_at=T0)).record.decision_id
    first = ObservedOutcome(decision_id, "good", T0 + timedelta(days=90))
    later = ObservedOutcome(decision_id, "bad", T0 + timedelta(days=200))
    assert record_outcomes(decision_store, [later, first], recorded_at=NOW).stored == 2
    assert latest_outcomes(decision_store) == {decision_id: "bad"}
    assert [o.outcome for o in outcomes_of(decision_store, decision_id)] == ["good", "bad"]
    again = record_outcomes(decision_store, [first, first], recorded_at=NOW)
    assert again.to_dict() == {"received": 2, "stored": 0, "unchanged": 2}


def test_a_batch_is_all_or_nothing(decision_store: Any, make_decision_record: Callable) -> None:
    decision_id = decision_store.save(make_decision_record(created_at=T0)).record.decision_id
    good = ObservedOutcome(decision_id, "good", T0 + timedelta(days=30))
    with pytest.raises(UnknownDecisions) as unknown:
        record_outcomes(decision_store, [good, ObservedOutcome("nope", "bad", T0)], recorded_at=NOW)
    assert unknown.value.decision_ids == ("nope",) and problem_for(type(unknown.value)).status == 422
    assert latest_outcomes(decision_store) == {}
    record_outcomes(decision_store, [good], recorded_at=NOW)
    other = make_decision_record(created_at=T0)
    decision_store.save(other)
    with pytest.raises(OutcomeConflict):
        record_outcomes(
            decision_store,
            [ObservedOutcome(other.decision_id, "good", T0), ObservedOutcome(decision_id, "bad", good.observed_at)],
            recorded_at=NOW,
        )
    assert latest_outcomes(decision_store) == {decision_id: "good"}


def test_observations_must_be_valid() -> None:
    with pytest.raises(ValueError):
        ObservedOutcome("d", "repaid", T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ObservedOutcome("d", "good", datetime(2026, 1, 1))


# --- POST /v1/outcomes --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decided(api_app: Any, german_applications: list[Any]) -> list[dict[str, Any]]:
    """Ten German applications decided through the API."""
    body = {"applications": [request for request, _ in german_applications[:10]]}
    response = api_app.test_client().post("/v1/decisions:batch", json=body)
    assert response.status_code == 200
    return [item["decision"] for item in response.get_json()["items"]]


def _store(api_app: Any) -> Any:
    from service.state import get_state

    return get_state(api_app).require_store()


def test_posting_outcomes_needs_the_admin_role(
    api_app: Any,
    anonymous_client: Any,
    decided: list[dict[str, Any]],
    scorer_headers: dict[str, str],
    auditor_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    body = {"outcomes": [{"decision_id": decided[0]["decision_id"], "outcome": "good", "observed_at": "2026-01-31"}]}
    client = api_app.test_client()
    assert anonymous_client.post("/v1/outcomes", json=body).status_code == 401
    assert client.post("/v1/outcomes", json=body, headers=scorer_headers).status_code == 403
    assert client.post("/v1/outcomes", json=body, headers=auditor_headers).status_code == 403
    response = client.post("/v1/outcomes", json=body, headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"received": 1, "stored": 1, "unchanged": 0}
    assert client.post("/v1/outcomes", json=body, headers=admin_headers).get_json()["unchanged"] == 1


def test_posted_outcomes_reach_the_report_and_leave_the_chain_alone(
    api_app: Any, decided: list[dict[str, Any]], admin_headers: dict[str, str], auditor_headers: dict[str, str]
) -> None:
    store = _store(api_app)
    head = store.verify_chain().head_hash
    observed = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    outcomes = [
        {"decision_id": d["decision_id"], "outcome": "bad" if i % 3 == 0 else "good", "observed_at": observed}
        for i, d in enumerate(decided)
    ]
    response = api_app.test_client().post("/v1/outcomes", json={"outcomes": outcomes}, headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    assert store.verify_chain().ok and store.verify_chain().head_hash == head
    today = datetime.now(UTC).date()
    query = f"/v1/reports?from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"
    report = api_app.test_client().get(query, headers=auditor_headers).get_json()
    backtest = report["backtest"]
    assert backtest["n"] == 10 and backtest["bad"] == 4  # rows 0, 3, 6, 9
    by_band: dict[str, list[int]] = {}
    for i, d in enumerate(decided):
        by_band.setdefault(d["risk_band"], []).append(1 if i % 3 == 0 else 0)
    assert {b["band"]: (b["n"], b["bad"]) for b in backtest["by_band"]} == {
        band: (len(v), sum(v)) for band, v in by_band.items()
    }


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["outcomes"]),
        ({"outcomes": []}, ["outcomes"]),
        ({"outcomes": [], "extra": 1}, ["extra", "outcomes"]),
        ([], ["body"]),
        ({"outcomes": ["x"]}, ["outcomes[0]"]),
        (
            {"outcomes": [{"decision_id": "a b", "outcome": "repaid", "observed_at": "2026-01-01T00:00:00"}]},
            ["outcomes[0].decision_id", "outcomes[0].outcome", "outcomes[0].observed_at"],
        ),
        (
            {"outcomes": [{"decision_id": "abc", "outcome": "good", "observed_at": "2999-01-01", "note": 1}]},
            ["outcomes[0].note", "outcomes[0].observed_at"],
        ),
    ],
)
def test_invalid_outcomes_are_a_422_naming_each_field(
    api_app: Any, admin_headers: dict[str, str], body: Any, fields: list[str]
) -> None:
    response = api_app.test_client().post("/v1/outcomes", json=body, headers=admin_headers)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert sorted(e["field"] for e in response.get_json()["errors"]) == sorted(fields)


def test_unknown_decisions_and_conflicts_store_nothing(
    api_app: Any, decided: list[dict[str, Any]], admin_headers: dict[str, str]
) -> None:
    store = _store(api_app)
    before = latest_outcomes(store)
    known = decided[5]["decision_id"]
    items = [
        {"decision_id": known, "outcome": "good", "observed_at": "2026-02-01T00:00:00Z"},
        {"decision_id": "unknown-decision", "outcome": "bad", "observed_at": "2026-02-01T00:00:00Z"},
    ]
    client = api_app.test_client()
    response = client.post("/v1/outcomes", json={"outcomes": items}, headers=admin_headers)
    assert response.status_code == 422
    assert response.get_json()["errors"] == [
        {"field": "outcomes[1].decision_id", "message": "no decision unknown-decision"}
    ]
    assert latest_outcomes(store) == before
    assert client.post("/v1/outcomes", json={"outcomes": items[:1]}, headers=admin_headers).status_code == 200
    flipped = [{**items[0], "outcome": "bad"}]
    conflict = client.post("/v1/outcomes", json={"outcomes": flipped}, headers=admin_headers)
    assert conflict.status_code == 409 and conflict.get_json()["type"].endswith(":outcome-conflict")


def test_outcomes_import_cli(tmp_path: Path, make_decision_record: Callable) -> None:
    from cli.report import outcomes_group
    from service.records import open_decision_store

    url = f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    store = open_decision_store(url)
    ids = [store.save(make_decision_record(created_at=T0)).record.decision_id for _ in range(2)]
    csv_file = tmp_path / "outcomes.csv"
    csv_file.write_text(
        f"decision_id,outcome,observed_at\n{ids[0]},good,2026-03-01\n{ids[1]},bad,2026-03-01T10:00:00Z\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(outcomes_group, ["import", str(csv_file), "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "2 stored" in result.output
    assert latest_outcomes(store) == {ids[0]: "good", ids[1]: "bad"}
    csv_file.write_text("decision_id,outcome,observed_at\nmissing,good,2026-03-01\n", encoding="utf-8")
    failed = runner.invoke(outcomes_group, ["import", str(csv_file), "--database-url", url])
    assert failed.exit_code != 0 and "nothing was stored" in failed.output
    store.close()
