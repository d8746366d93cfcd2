"""Model and policy lifecycle over the real API: a challenger and a candidate policy in shadow, promotion and
rollback, candidate policies, admin audit events, on SQLite and PostgreSQL, with the tiny trained models
(the gbt champion and the scorecard, which accepts the same applicant fields)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.state import get_state

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
VOLATILE = ("decision_id", "created_at", "latency_ms")


def _applications(example: dict[str, Any], n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        body = copy.deepcopy(example)
        body["application_id"] = f"LC-{i:04d}"
        body["applicant"]["duration_months"] = 6 + (i * 7) % 60
        body["applicant"]["credit_amount"] = 500 + (i * 1733) % 15000
        body["applicant"]["age_years"] = 19 + (i * 5) % 55
        out.append(body)
    return out


def _scrub(raw: bytes) -> bytes:
    """A response body with its decision ids, times and latencies blanked (they differ between any two runs)."""
    return re.sub(rb'"(decision_id|created_at|latency_ms)":("[^"]*"|[0-9.e-]+)', rb'"\1":"-"', raw)


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in VOLATILE}


def _names(trained_models: Any) -> tuple[tuple[str, str], tuple[str, str]]:
    _store, result = trained_models
    return (result.champion.name, result.champion.version), (result.baseline.name, result.baseline.version)


def _flush(app: Any) -> None:
    runner = get_state(app).service.shadow_runner
    assert runner is not None and runner.flush(20.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_challenger_in_shadow_changes_no_response_and_every_decision_gets_its_twin(
    api_make_app: Any, trained_models: Any, example_application: dict[str, Any], backend: str
) -> None:
    (champion, champion_v), (challenger, challenger_v) = _names(trained_models)
    plain, shadowed = api_make_app(backend=backend), api_make_app(backend=backend)
    admin = shadowed.test_client()
    on = admin.put("/v1/models/challenger", json={"name": challenger, "version": challenger_v, "note": "try it"})
    assert on.status_code == 200, on.get_json()
    assert on.get_json()["state"]["challenger"] == {"name": challenger, "version": challenger_v, "policy": None}
    assert on.get_json()["event"]["kind"] == "shadow_on" and on.get_json()["event"]["actor"]["role"] == "admin"
    bodies = _applications(example_application, 40)
    answers = []
    for client in (plain.test_client(), shadowed.test_client()):
        side = []
        for body in bodies[:30]:
            made = client.post("/v1/decisions", json=body)
            assert made.status_code == 201, made.get_json()
            side.append(made)
        batch = client.post("/v1/decisions:batch", json={"applications": bodies[30:]})
        assert batch.status_code == 200
        answers.append([*side, batch])
    # byte-identical answers apart from ids, times and latencies: the shadow never touches the response
    for without, with_ in zip(answers[0], answers[1], strict=True):
        assert _scrub(without.get_data()) == _scrub(with_.get_data())
        assert without.status_code == with_.status_code
        assert without.headers.get("Content-Type") == with_.headers.get("Content-Type")
    _flush(shadowed)
    # every champion decision has its challenger twin, recorded and linked
    ids = [r.get_json()["decision_id"] for r in answers[1][:30]] + [b["decision"]["decision_id"] for b in answers[1][30].get_json()["items"]]  # fmt: skip
    for decision_id in ids:
        twins = admin.get(f"/v1/decisions/{decision_id}/shadows").get_json()["shadows"]
        assert [(t["kind"], t["model"]["name"], t["model"]["version"]) for t in twins] == [
            ("challenger", challenger, challenger_v)
        ]
        assert twins[0]["decision_id"] == decision_id
    store = get_state(shadowed).store
    assert store.count() == 40
    assert store.verify_chain().ok
    # the twin is exactly what the challenger decides for that input
    model = get_state(shadowed).models.get(challenger, challenger_v)
    first = admin.get(f"/v1/decisions/{ids[0]}/shadows").get_json()["shadows"][0]
    expected = model.engine.decide([bodies[0]["applicant"]]).decision(0)
    assert (first["decision"], first["score"], first["risk_band"]) == (
        expected.decision,
        expected.score,
        expected.risk_band,
    )
    assert [r["code"] for r in first["reasons"]] == [r.code for r in expected.reasons]
    # a retried request is not shadowed twice; nothing is shadowed once the challenger is off
    assert admin.delete("/v1/models/challenger?note=done").status_code == 200
    after = shadowed.test_client().post("/v1/decisions", json={**bodies[0], "application_id": "LC-after"})
    _flush(shadowed)
    assert admin.get(f"/v1/decisions/{after.get_json()['decision_id']}/shadows").get_json()["shadows"] == []
    assert admin.delete("/v1/models/challenger").status_code == 409
    assert champion and champion_v


@pytest.mark.parametrize("backend", BACKENDS)
def test_promotion_and_rollback_switch_what_decides_and_are_audit_events(
    api_make_app: Any, trained_models: Any, example_application: dict[str, Any], backend: str
) -> None:
    (champion, champion_v), (other, other_v) = _names(trained_models)
    app = api_make_app(backend=backend)
    client = app.test_client()
    body = _applications(example_application, 1)[0]
    serving = client.get("/v1/serving").get_json()
    assert serving["state"]["source"] == "registry" and serving["state"]["champion"]["name"] == champion
    first = client.post("/v1/decisions", json=body).get_json()
    assert first["model"]["name"] == champion
    # promote the other version: decisions name it at once in this worker, replay uses each record's own version
    promoted = client.post("/v1/models/champion", json={"name": other, "version": other_v, "note": "won the review"})
    assert promoted.status_code == 200, promoted.get_json()
    state = promoted.get_json()["state"]
    assert state["champion"]["name"] == other and state["previous"] == [
        {"name": champion, "version": champion_v, "policy": None}
    ]
    assert state["source"] == "chain" and state["seq"] == promoted.get_json()["event"]["seq"]
    second = client.post("/v1/decisions", json={**body, "application_id": "LC-2"}).get_json()
    assert second["model"]["name"] == other
    assert client.get("/readyz").get_json()["model"]["name"] == other
    for made in (first, second):
        assert client.post(f"/v1/decisions/{made['decision_id']}/replay").get_json()["identical"] is True
    # the same again: 409; an unknown version: 422 naming the field; nothing recorded for either
    again = client.post("/v1/models/champion", json={"name": other, "version": other_v})
    assert again.status_code == 409 and again.get_json()["type"].endswith("serving-conflict")
    unknown = client.post("/v1/models/champion", json={"name": other, "version": "v99"})
    assert unknown.status_code == 422 and unknown.get_json()["errors"][0]["field"] == "version"
    bad = client.post("/v1/models/champion", json={"name": "Not A Name", "version": "1"})
    assert bad.status_code == 422 and {e["field"] for e in bad.get_json()["errors"]} == {"name", "version"}
    # roll back: the previous champion decides again; nothing further to roll back to
    back = client.post("/v1/models/champion:rollback", json={"note": "back"})
    assert back.status_code == 200 and back.get_json()["state"]["champion"]["name"] == champion
    third = client.post("/v1/decisions", json={**body, "application_id": "LC-3"}).get_json()
    assert third["model"]["name"] == champion and _stable(third)["score"] == _stable(first)["score"]
    assert client.post("/v1/models/champion:rollback", json={}).status_code == 409
    # every change is an audit event, chained with the decisions, naming the key that made it
    events = client.get("/v1/audit/events").get_json()["items"]
    assert [e["kind"] for e in events] == ["promotion", "rollback"]
    assert events[0]["details"]["note"] == "won the review" and events[0]["actor"]["role"] == "admin"
    assert events[0]["details"]["before"]["champion"]["name"] == champion
    assert client.get("/v1/audit/events?kind=rollback").get_json()["items"][0]["event_id"] == events[1]["event_id"]
    assert client.get("/v1/audit/events?kind=nonsense").status_code == 400
    report = get_state(app).store.verify_chain()
    assert report.ok and report.records_checked == 5  # 3 decisions and 2 events in one chain


def _candidate_policy(store_root: Path, name: str, version: str) -> tuple[str, str, str]:
    """The version's own policy with stricter cut-offs under a new version, and its catalog (texts)."""
    folder = store_root / name / version
    policy = yaml.safe_load((folder / "policy.yaml").read_text(encoding="utf-8"))
    policy["policy_version"] = "candidate-policy-2.0.0"
    for band in policy["bands"][:-1]:
        band["min_score"] += 25
    catalog = (folder / "reason_codes.yaml").read_text(encoding="utf-8")
    return policy["policy_version"], yaml.safe_dump(policy, sort_keys=False), catalog


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_candidate_policy_runs_in_shadow_then_goes_live_and_replays(
    api_make_app: Any, trained_models: Any, example_application: dict[str, Any], backend: str
) -> None:
    (champion, champion_v), _ = _names(trained_models)
    store, _ = trained_models
    app = api_make_app(backend=backend)
    client = app.test_client()
    version, policy_yaml, catalog_yaml = _candidate_policy(Path(store.root), champion, champion_v)
    added = client.post("/v1/policies", json={"policy_yaml": policy_yaml, "reason_codes_yaml": catalog_yaml})
    assert added.status_code == 201, added.get_json()  # storing the same files again is idempotent
    assert version in {p["policy_version"] for p in client.get("/v1/policies").get_json()["policies"]}
    invalid = client.post(
        "/v1/policies", json={"policy_yaml": policy_yaml.replace("bands:", "bandz:"), "reason_codes_yaml": catalog_yaml}
    )
    assert invalid.status_code == 422 and invalid.get_json()["errors"][0]["field"] == "policy_yaml"
    on = client.put("/v1/policies/shadow", json={"policy": version})
    assert on.status_code == 200, on.get_json()
    bodies = _applications(example_application, 12)
    made = [client.post("/v1/decisions", json=b).get_json() for b in bodies]
    _flush(app)
    model = get_state(app).models.get(champion, champion_v, version)
    for body, decision in zip(bodies, made, strict=True):
        (twin,) = client.get(f"/v1/decisions/{decision['decision_id']}/shadows").get_json()["shadows"]
        assert twin["kind"] == "policy" and twin["policy_version"] == version
        assert twin["model"]["name"] == champion  # the champion's model, the candidate's cut-offs
        expected = model.engine.decide([body["applicant"]]).decision(0)
        assert (twin["score"], twin["risk_band"], twin["decision"]) == (
            expected.score,
            expected.risk_band,
            expected.decision,
        )
        assert twin["probability_of_default"] == decision["probability_of_default"]
    # promote the champion's model with the candidate policy: decisions record it, replay and notices use it
    live = client.post("/v1/models/champion", json={"name": champion, "version": champion_v, "policy": version})
    assert live.status_code == 200, live.get_json()
    assert live.get_json()["state"]["policy_shadow"] is None  # the candidate went live: no longer a shadow
    decided = [client.post("/v1/decisions", json={**b, "application_id": f"P-{i}"}).get_json() for i, b in enumerate(bodies)]  # fmt: skip
    for decision in decided:
        assert decision["policy_version"] == version
        assert client.post(f"/v1/decisions/{decision['decision_id']}/replay").get_json()["identical"] is True
    declined = [d for d in decided if d["decision"] == "decline"]
    if declined:
        assert client.get(f"/v1/decisions/{declined[0]['decision_id']}/notice").status_code == 200
    kinds = [e["kind"] for e in client.get("/v1/audit/events").get_json()["items"]]
    assert kinds[-2:] == ["policy_shadow_on", "promotion"]


def test_a_policy_the_model_store_cannot_hold_is_a_409_and_records_nothing(
    api_make_app: Any, trained_models: Any, tmp_path: Path
) -> None:
    """A model store that cannot be written (mounted read-only in the container; here its policies folder cannot be
    made) refuses a candidate policy with a problem that says what to do, and no event is recorded."""
    import shutil

    (champion, champion_v), _ = _names(trained_models)
    store, _ = trained_models
    copy_root = tmp_path / "store"
    shutil.copytree(store.root, copy_root)
    shutil.rmtree(copy_root / "policies", ignore_errors=True)  # other tests may have stored candidate policies
    (copy_root / "policies").write_text("not a folder\n", encoding="utf-8")
    app = api_make_app(MODEL_STORE=str(copy_root))
    client = app.test_client()
    version, policy_yaml, catalog_yaml = _candidate_policy(copy_root, champion, champion_v)
    before = get_state(app).store.count_entries()
    refused = client.post("/v1/policies", json={"policy_yaml": policy_yaml, "reason_codes_yaml": catalog_yaml})
    assert refused.status_code == 409, refused.get_json()
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert "credit-decision policies add" in refused.get_json()["detail"]
    assert get_state(app).store.count_entries() == before
    assert version not in {p["policy_version"] for p in client.get("/v1/policies").get_json()["policies"]}


def test_a_version_with_other_applicant_fields_cannot_be_promoted_or_shadowed(
    api_make_app: Any, trained_models: Any, tmp_path: Path
) -> None:
    import shutil

    from model_store.store import MANIFEST_FILE, SPEC_FILE, ModelStore, sha256_file

    (champion, champion_v), _ = _names(trained_models)
    store, _ = trained_models
    root = tmp_path / "store"
    shutil.copytree(store.root, root)
    # a copy of the champion as v2 whose spec accepts a wider age range: another input contract
    source, target = root / champion / champion_v, root / champion / "v2"
    shutil.copytree(source, target)
    for file in target.rglob("*"):
        file.chmod(0o644)
    spec_file = target / SPEC_FILE
    spec_file.write_text(
        spec_file.read_text(encoding="utf-8").replace("maximum: 120", "maximum: 130"), encoding="utf-8"
    )
    manifest = json.loads((target / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["version"] = "v2"
    manifest["files"][SPEC_FILE] = sha256_file(spec_file)
    (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert ModelStore(root).verify(champion, "v2") == []
    app = api_make_app(MODEL_STORE=str(root))
    client = app.test_client()
    for method, path in (("post", "/v1/models/champion"), ("put", "/v1/models/challenger")):
        refused = getattr(client, method)(path, json={"name": champion, "version": "v2"})
        assert refused.status_code == 422, refused.get_json()
        assert "accepts other applicant fields" in refused.get_json()["errors"][0]["message"]
    assert client.get("/v1/audit/events").get_json()["items"] == []


def test_a_pinned_deployment_refuses_promotion(api_make_app: Any, trained_models: Any) -> None:
    (champion, champion_v), (other, other_v) = _names(trained_models)
    app = api_make_app(MODEL_NAME=champion, MODEL_VERSION=champion_v)
    client = app.test_client()
    refused = client.post("/v1/models/champion", json={"name": other, "version": other_v})
    assert refused.status_code == 409 and "pins" in refused.get_json()["detail"]
    assert client.get("/v1/serving").get_json()["state"]["source"] == "settings"


def test_admin_actions_need_the_admin_role(api_make_app: Any, trained_models: Any, api_keys: dict[str, str]) -> None:
    _, (other, other_v) = _names(trained_models)
    client = api_make_app().test_client()
    for role in ("scorer", "auditor"):
        headers = {"Authorization": f"Bearer {api_keys[role]}"}
        assert client.post("/v1/models/champion", json={"name": other, "version": other_v}, headers=headers).status_code == 403  # fmt: skip
        assert client.put("/v1/models/challenger", json={"name": other, "version": other_v}, headers=headers).status_code == 403  # fmt: skip
    assert client.get("/v1/audit/events", headers={"Authorization": f"Bearer {api_keys['scorer']}"}).status_code == 403


def test_the_commands_change_the_serving_state_and_record_who(
    trained_models: Any, tmp_path: Path, example_application: dict[str, Any]
) -> None:
    from click.testing import CliRunner

    from cli.audit import audit_group
    from cli.models import models_group
    from cli.policies import policies_group
    from cli.serve import keys_group
    from service.records import open_decision_store

    store, _ = trained_models
    (champion, champion_v), (other, other_v) = _names(trained_models)
    url = f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    where = ["--model-store", str(store.root), "--database-url", url]
    runner = CliRunner()

    def run(group: Any, *args: str) -> str:
        done = runner.invoke(group, [*args, *where])
        assert done.exit_code == 0, done.output
        return str(done.output)

    assert f"champion is now {other} {other_v}" in run(models_group, "promote", other, other_v, "--note", "review 7")
    assert json.loads(run(models_group, "serving"))["champion"]["name"] == other
    listing = run(models_group, "list")
    assert f"* {other}" in listing and f"* {champion}" not in listing
    assert f"challenger: {champion} {champion_v}" in run(models_group, "shadow", champion, champion_v)
    assert f"~ {champion}" in run(models_group, "list")
    assert "challenger: none" in run(models_group, "shadow", "--off")
    assert f"champion is now {champion} {champion_v}" in run(models_group, "rollback")
    refused = runner.invoke(models_group, ["rollback", *where])
    assert refused.exit_code == 1 and "no earlier champion" in refused.output
    version, policy_yaml, catalog_yaml = _candidate_policy(Path(store.root), champion, champion_v)
    (tmp_path / "policy.yaml").write_text(policy_yaml, encoding="utf-8")
    (tmp_path / "reasons.yaml").write_text(catalog_yaml, encoding="utf-8")
    added = run(policies_group, "add", "--policy", str(tmp_path / "policy.yaml"), "--reason-codes", str(tmp_path / "reasons.yaml"))  # fmt: skip
    assert "recorded policy_added" in added
    assert f"policy in shadow: {version}" in run(policies_group, "shadow", version)
    # key creation and revocation are audit events too
    keys = ["--file", str(tmp_path / "keys"), "--database-url", url]
    created = runner.invoke(keys_group, ["create", "--role", "auditor", "--label", "J. Smith", *keys])
    assert created.exit_code == 0, created.output
    key_id = created.output.split("key id ")[1].split(",")[0]
    revoked = runner.invoke(keys_group, ["revoke", key_id, "--note", "left the team", *keys])
    assert revoked.exit_code == 0 and "recorded key_revoked" in revoked.output, revoked.output
    assert (tmp_path / "keys").read_text(encoding="utf-8").strip() == ""
    records = open_decision_store(url)
    try:
        events, _ = records.events(limit=100)
    finally:
        records.close()
    kinds = [e.event.kind for e in events]
    assert kinds == [
        "promotion", "shadow_on", "shadow_off", "rollback", "policy_added", "policy_shadow_on", "key_created",
        "key_revoked",
    ]  # fmt: skip
    assert all("@" in e.event.actor["cli"] for e in events)
    assert events[0].event.details["note"] == "review 7"
    assert events[-1].event.details == {
        "key_id": key_id, "roles": ["auditor"], "label": "J. Smith", "key_file": str(tmp_path / "keys"),
        "note": "left the team",
    }  # fmt: skip
    verified = runner.invoke(audit_group, ["verify", "--database-url", url])
    assert verified.exit_code == 0 and "8 audit events" in verified.output, verified.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_comparison_report_counts_what_the_shadow_records_hold(
    api_make_app: Any, trained_models: Any, example_application: dict[str, Any], backend: str
) -> None:
    from datetime import UTC, datetime, timedelta

    (champion, champion_v), (challenger, challenger_v) = _names(trained_models)
    app = api_make_app(backend=backend)
    client = app.test_client()
    before = _applications(example_application, 65)[60:]  # decided before the shadow starts: not shadowed
    assert all(client.post("/v1/decisions", json=b).status_code == 201 for b in before)
    assert client.put("/v1/models/challenger", json={"name": challenger, "version": challenger_v}).status_code == 200
    made = [client.post("/v1/decisions", json=b).get_json() for b in _applications(example_application, 60)]
    _flush(app)
    twins = {m["decision_id"]: client.get(f"/v1/decisions/{m['decision_id']}/shadows").get_json()["shadows"][0] for m in made}  # fmt: skip
    # the expected numbers, counted by hand from the records the API shows
    decisions = ("approve", "refer", "decline")
    matrix = [[0] * 3 for _ in decisions]
    for m in made:
        matrix[decisions.index(m["decision"])][decisions.index(twins[m["decision_id"]]["decision"])] += 1
    agreed = sum(matrix[i][i] for i in range(3))
    declined = (sum(m["decision"] == "decline" for m in made), sum(t["decision"] == "decline" for t in twins.values()))
    diffs = sorted(twins[m["decision_id"]]["score"] - m["score"]["value"] for m in made)
    top = [m for m in made if m["reasons"] and twins[m["decision_id"]]["reasons"]]
    top_match = sum(m["reasons"][0]["code"] == twins[m["decision_id"]]["reasons"][0]["code"] for m in top)

    today = datetime.now(UTC).date()
    query = f"from={today}&to={today + timedelta(days=1)}&kind=challenger"
    report = client.get(f"/v1/reports/challenger?{query}")
    assert report.status_code == 200, report.get_json()
    data = report.get_json()
    assert data["kind"] == "challenger" and data["counts"]["pairs"] == 60
    assert data["counts"]["decisions"] == 65 and data["counts"]["coverage"] == pytest.approx(60 / 65)
    assert any("60 of the period's 65 decisions were shadowed" in note for note in data["notes"])
    assert [(v["model_name"], v["model_version"]) for v in data["counts"]["champion_versions"]] == [
        (champion, champion_v)
    ]
    assert [(v["model_name"], v["model_version"]) for v in data["counts"]["shadow_versions"]] == [
        (challenger, challenger_v)
    ]
    agreement = data["agreement"]
    assert agreement["matrix"] == matrix and agreement["agreed"] == agreed
    assert agreement["agreement_rate"] == pytest.approx(agreed / 60)
    adverse = data["adverse_action"]
    assert (adverse["champion"]["declined"], adverse["shadow"]["declined"]) == declined
    assert data["score_difference"]["minimum"] == diffs[0] and data["score_difference"]["maximum"] == diffs[-1]
    assert data["score_difference"]["mean"] == pytest.approx(sum(diffs) / 60)
    reasons = data["reason_agreement"]["reasons"]
    assert (reasons["eligible"], reasons["top_matches"]) == (len(top), top_match)
    assert reasons["top_match_rate"] == pytest.approx(top_match / len(top))
    # the other formats of the same report, and the policy kind with nothing shadowed yet
    html = client.get(f"/v1/reports/challenger?{query}&format=html").get_data(as_text=True)
    assert f"{challenger} {challenger_v}" in html and "<img" in html
    assert client.get(f"/v1/reports/challenger?{query}&format=pdf").get_data()[:4] == b"%PDF"
    empty = client.get(f"/v1/reports/challenger?from={today}&to={today + timedelta(days=1)}&kind=policy").get_json()
    assert empty["counts"]["pairs"] == 0
    assert client.get(f"/v1/reports/challenger?from={today}&to={today}").status_code == 400


def test_a_shadow_that_falls_behind_skips_and_counts_never_blocks(
    api_make_app: Any, trained_models: Any, example_application: dict[str, Any]
) -> None:
    import sqlite3
    import time

    from service.decisions import new_decision_id, utc_now
    from service.metrics import Metrics
    from service.shadow import Shadow, ShadowRunner

    _, (challenger, challenger_v) = _names(trained_models)
    app = api_make_app()
    client = app.test_client()
    made = [client.post("/v1/decisions", json=b).get_json() for b in _applications(example_application, 11)]
    state = get_state(app)
    recorded = [state.service.recorded(m["decision_id"]) for m in made]
    decided = [(r, r.request.request_hash) for r in recorded]
    metrics = Metrics()
    runner = ShadowRunner(
        state.store, clock=utc_now, new_id=new_decision_id, counters=metrics, queue_size=3, batch=64, linger=0.0
    )
    shadow = Shadow("challenger", state.models.get(challenger, challenger_v))
    # another writer holds the database: the shadow thread's commit waits, the queue fills up
    path = state.settings.database_url[len("sqlite:///") :]
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        runner.submit(decided[:1], [shadow])
        deadline = time.monotonic() + 10
        while runner.queued and time.monotonic() < deadline:  # the thread took it and waits on the lock
            time.sleep(0.01)
        time.sleep(0.1)
        started = time.perf_counter()
        runner.submit(decided[1:], [shadow])  # 10 more: 3 fit, 7 are skipped, and submit does not wait
        assert time.perf_counter() - started < 0.05
        skipped = metrics.shadow_skipped.labels("challenger", "queue_full")._value.get()
        assert skipped == 7
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert runner.flush(20.0)
    runner.stop()
    assert metrics.shadow_decisions.labels("challenger")._value.get() == 4
    twins = state.store.shadows_for([m["decision_id"] for m in made])
    assert sorted(len(twins.get(m["decision_id"], [])) for m in made) == [0] * 7 + [1] * 4
    assert state.store.verify_chain().ok


def test_the_cpu_budget_caps_the_shadow_only_while_the_worker_is_busy() -> None:
    from service.shadow import CpuBudget

    now, cpu = [0.0], [0.0]
    budget = CpuBudget(share=0.1, busy=0.5, window=1.0, process_time=lambda: cpu[0], clock=lambda: now[0])
    assert budget.allows()  # nothing seen yet
    now[0], cpu[0] = 0.5, 0.15  # a quiet worker (30 % of a core) whose shadow took half of it: still allowed
    budget.spent(0.075)
    assert budget.allows()
    now[0], cpu[0] = 1.0, 0.6  # the window closes busy (60 %) with the shadow at 12.5 % of it: refused
    assert not budget.allows()
    assert not budget.allows()  # a new window, too young: the last one decides
    now[0], cpu[0] = 1.3, 0.87  # busy (90 %), the shadow at 3.7 %: allowed again
    budget.spent(0.01)
    assert budget.allows()
    assert CpuBudget(share=1.0, process_time=lambda: 0.0, clock=lambda: 0.0).allows()
    # busy measured as time in requests (what the service gives it): a worker answering requests 90 % of the time
    # is busy even though its CPU time says little (a machine with more workers than cores)
    served = [0.0]
    now[0], cpu[0] = 0.0, 0.0
    by_requests = CpuBudget(
        share=0.1, window=1.0, busy_time=lambda: served[0], process_time=lambda: cpu[0], clock=lambda: now[0]
    )
    now[0], cpu[0], served[0] = 1.0, 0.4, 0.9
    by_requests.spent(0.1)  # a quarter of the worker's CPU
    assert not by_requests.allows()
    now[0], cpu[0], served[0] = 2.0, 0.8, 1.3  # in requests 40 % of the last second: below half, not busy
    by_requests.spent(0.3)
    assert by_requests.allows()
    with pytest.raises(ValueError, match="share"):
        CpuBudget(share=0.0)


def test_a_busy_worker_skips_shadows_beyond_its_cpu_share_and_counts_them(
    api_make_app: Any, trained_models: Any, example_application: dict[str, Any]
) -> None:
    from service.decisions import new_decision_id, utc_now
    from service.metrics import Metrics
    from service.shadow import CpuBudget, Shadow, ShadowRunner

    _, (challenger, challenger_v) = _names(trained_models)
    app = api_make_app()
    client = app.test_client()
    made = [client.post("/v1/decisions", json=b).get_json() for b in _applications(example_application, 8)]
    state = get_state(app)
    decided = [(r, r.request.request_hash) for r in (state.service.recorded(m["decision_id"]) for m in made)]
    now, cpu = [0.0], [0.0]
    budget = CpuBudget(share=0.1, busy=0.5, window=1.0, process_time=lambda: cpu[0], clock=lambda: now[0])
    now[0], cpu[0] = 1.0, 1.0  # a saturated worker whose shadow took all of it
    budget.spent(1.0)
    metrics = Metrics()
    runner = ShadowRunner(
        state.store, clock=utc_now, new_id=new_decision_id, counters=metrics, linger=0.0, budget=budget
    )
    shadow = Shadow("challenger", state.models.get(challenger, challenger_v))
    runner.submit(decided[:5], [shadow])
    assert runner.flush(20.0)
    assert metrics.shadow_skipped.labels("challenger", "busy")._value.get() == 5
    assert state.store.shadows_for([m["decision_id"] for m in made]) == {}
    now[0], cpu[0] = 3.0, 1.2  # the load has gone (10 % of a core over the last window): everything is shadowed
    assert budget.allows()
    runner.submit(decided[5:], [shadow])
    assert runner.flush(20.0)
    runner.stop()
    assert metrics.shadow_decisions.labels("challenger")._value.get() == 3
    assert sorted(state.store.shadows_for([m["decision_id"] for m in made])) == sorted(
        m["decision_id"] for m in made[5:]
    )
    assert state.store.verify_chain().ok


def test_batch_scoring_decides_with_the_deployments_champion_and_its_policy(
    trained_models: Any, tmp_path: Path, example_application: dict[str, Any]
) -> None:
    import csv

    from click.testing import CliRunner

    from cli.models import models_group
    from cli.score import score_command
    from service.models import ModelCache

    store, _ = trained_models
    (champion, champion_v), (other, other_v) = _names(trained_models)
    url = f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    where = ["--model-store", str(store.root), "--database-url", url]
    applicants = [b["applicant"] for b in _applications(example_application, 25)]
    source = tmp_path / "in.csv"
    with open(source, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["application_id", *applicants[0]])
        writer.writeheader()
        writer.writerows({"application_id": f"B{i}", **a} for i, a in enumerate(applicants))
    runner = CliRunner()

    def score(out: Path) -> tuple[str, list[dict[str, str]]]:
        done = runner.invoke(score_command, ["--input", str(source), "--output", str(out), *where])
        assert done.exit_code == 0, done.output
        return done.output, list(csv.DictReader(out.open(encoding="utf-8")))

    before, _ = score(tmp_path / "before.csv")
    assert f"{champion} {champion_v}:" in before  # no promotion recorded yet: the registry champion
    version, policy_yaml, catalog_yaml = _candidate_policy(Path(store.root), champion, champion_v)
    # stored once (idempotent: an earlier test may have stored the same files)
    store.add_policy(policy_yaml.encode(), catalog_yaml.encode(), store.load_bundle(champion, champion_v).spec)
    promoted = runner.invoke(models_group, ["promote", champion, champion_v, "--policy", version, *where])
    assert promoted.exit_code == 0, promoted.output
    after, rows = score(tmp_path / "after.csv")
    assert f"{champion} {champion_v} with policy {version}:" in after
    model = ModelCache(store).get(champion, champion_v, version)
    expected = model.engine.decide(applicants).all()
    assert [(r["decision"], int(r["score"]), r["risk_band"]) for r in rows] == [
        (d.decision, d.score, d.risk_band) for d in expected
    ]
    assert runner.invoke(models_group, ["promote", other, other_v, *where]).exit_code == 0
    assert f"{other} {other_v}:" in score(tmp_path / "other.csv")[0]
