"""One decision pipeline: a rule changed in one place shows the same on every surface; retries never re-run the
model; the contract covers every route; records of the first schema version stay readable; layers import downward.
"""

from __future__ import annotations

import ast
import copy
import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from model_store.store import MANIFEST_FILE, ModelStore
from service.app import create_app
from service.state import get_state

REPO = Path(__file__).resolve().parents[1]
V1_RECORDS = Path(__file__).resolve().parent / "data" / "records_schema_v1.json"
NEW_RULE = {
    "code": "R09",
    "field": "duration_months",
    "operator": "gt",
    "value": 30,
    "action": "decline",
    "description": "Requested duration is above the 30 months this pilot product allows",
}
NEW_REASON = {
    "code": "R09",
    "customer_text": {
        "en": "The loan term requested is longer than this product allows",
        "zh-Hans": "申请的贷款期限超过本产品允许的期限",
    },
    "auditor_text": "Policy rule R09 fired (duration_months > 30)",
}


# ---- a policy change, made in one place, everywhere -------------------------------------------------------------


@pytest.fixture(scope="module")
def changed_policy_store(api_model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A copy of the tiny store with a new version of the champion: the same model, a policy with one more rule
    (R09) and at most two reasons per decision; promoted champion."""
    root = tmp_path_factory.mktemp("changed-policy") / "store"
    shutil.copytree(api_model_store, root)
    store = ModelStore(root)
    name, version = store.champion() or ("", "")
    folder = store.path(name, version)
    files = {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    policy = yaml.safe_load(files["policy.yaml"])
    policy["policy_version"] += "-pilot"
    policy["rules"].append(NEW_RULE)
    policy["max_reasons"] = 2
    catalog = yaml.safe_load(files["reason_codes.yaml"])
    catalog["catalog_version"] += "-pilot"
    catalog["rule_reasons"].append(NEW_REASON)
    files["policy.yaml"] = yaml.safe_dump(policy, sort_keys=False).encode()
    files["reason_codes.yaml"] = yaml.safe_dump(catalog, sort_keys=False).encode()
    manifest = {k: v for k, v in store.manifest(name, version).items() if k not in ("files", "name", "version")}
    new_version = store.next_version(name)
    store.write_version(name, new_version, files, manifest)
    store.promote(name, new_version, note="pilot policy")
    return root, name, new_version


def test_a_new_rule_and_reason_count_show_identically_on_all_five_surfaces(
    changed_policy_store: tuple[Path, str, str],
    api_keys_setting: str,
    example_application: dict[str, Any],
    tmp_path: Path,
) -> None:
    root, _name, version = changed_policy_store
    app = create_app(
        {
            "MODEL_STORE": str(root),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'decisions.sqlite3'}",
            "API_KEYS": api_keys_setting,
            "TESTING": True,
        }
    )
    assert get_state(app).model.info.version == version  # type: ignore[union-attr]
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer " + api_keys_setting.split(",")[0].split(":", 1)[1]
    scorer = {"Authorization": client.environ_base["HTTP_AUTHORIZATION"]}
    auditor = {"Authorization": "Bearer " + api_keys_setting.split(",")[1].split(":", 1)[1]}
    request = copy.deepcopy(example_application)
    request["applicant"]["duration_months"] = 36  # R09 fires: decline

    # 1. the single API
    single = client.post("/v1/decisions", json=request, headers=scorer).get_json()
    assert single["decision"] == "decline"
    codes = [r["code"] for r in single["reasons"]]
    assert codes[0] == "R09" and len(codes) == 2 and single["reasons"][1]["kind"] == "model"
    assert [r["code"] for r in single["rules_fired"]] == ["R09"]

    # 2. the batch API: the same decision, bit for bit
    batch = client.post("/v1/decisions:batch", json={"applications": [request]}, headers=scorer).get_json()
    twin = batch["items"][0]["decision"]
    same = ("decision", "score", "probability_of_default", "risk_band", "reasons", "rules_fired", "explanation")
    assert {k: twin[k] for k in same} == {k: single[k] for k in same}

    # 3. the batch file command
    source, out = tmp_path / "applications.csv", tmp_path / "decisions.csv"
    with open(source, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["application_id", *request["applicant"]])
        writer.writeheader()
        writer.writerow({"application_id": request["application_id"], **request["applicant"]})
    from cli.score import score_command

    result = CliRunner().invoke(
        score_command,
        ["--input", str(source), "--output", str(out), "--model-store", str(root), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    (row,) = list(csv.DictReader(out.open(encoding="utf-8")))
    assert (row["decision"], int(row["score"]), row["risk_band"]) == (
        "decline",
        single["score"]["value"],
        single["risk_band"],
    )
    assert float(row["probability_of_default"]) == single["probability_of_default"]
    assert [row[f"reason_{k}"] for k in range(1, 5)] == [*codes, "", ""]
    assert row["rules_fired"] == "R09"

    # 4. replay: identical, with the recorded (pilot) policy
    replay = client.post(f"/v1/decisions/{single['decision_id']}/replay", headers=auditor).get_json()
    assert replay["identical"] is True, replay

    # 5. the notice: the reasons as recorded, in their order
    notice = client.get(f"/v1/decisions/{single['decision_id']}/notice", headers=auditor).get_json()
    assert [r["code"] for r in notice["principal_reasons"]] == codes
    assert notice["principal_reasons"][0]["text"] == NEW_REASON["customer_text"]["en"]
    assert notice["policy_version"] == single["policy_version"] and single["policy_version"].endswith("-pilot")
    get_state(app).store.close()  # type: ignore[union-attr]


# ---- idempotency first: a retry never reaches the model ----------------------------------------------------------


class _Counting:
    """Counts the ONNX runs and attribution passes of a served model."""

    def __init__(self, served: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs = 0
        self.explained = 0
        score, explain = served.scorer.score, served.explainer.shap_values

        def counted_score(features: Any) -> Any:
            self.runs += 1
            return score(features)

        def counted_explain(features: Any) -> Any:
            self.explained += 1
            return explain(features)

        monkeypatch.setattr(served.scorer, "score", counted_score)
        monkeypatch.setattr(served.explainer, "shap_values", counted_explain)


def test_an_idempotent_retry_does_not_run_the_model(
    api_make_app: Any, example_application: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = api_make_app()
    counting = _Counting(get_state(app).model, monkeypatch)
    client = app.test_client()
    first = client.post("/v1/decisions", json=example_application, headers={"Idempotency-Key": "retry-1"})
    assert first.status_code == 201 and (counting.runs, counting.explained) == (1, 1)
    for _ in range(3):
        again = client.post("/v1/decisions", json=example_application, headers={"Idempotency-Key": "retry-1"})
        assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
        assert again.get_json() == first.get_json()
    conflict = copy.deepcopy(example_application)
    conflict["applicant"]["age_years"] = 35
    assert client.post("/v1/decisions", json=conflict, headers={"Idempotency-Key": "retry-1"}).status_code == 409
    assert (counting.runs, counting.explained) == (1, 1)  # neither the retries nor the conflict ran the model

    # a batch retry: only the item not seen before is decided, in one run
    items = [example_application, {**example_application, "application_id": "APP-B"}]
    batch = client.post("/v1/decisions:batch", json={"applications": items}, headers={"Idempotency-Key": "b-1"})
    assert batch.status_code == 200 and batch.get_json()["succeeded"] == 2 and counting.runs == 2
    items.append({**example_application, "application_id": "APP-C"})
    grown = client.post("/v1/decisions:batch", json={"applications": items}, headers={"Idempotency-Key": "b-1"})
    body = grown.get_json()
    assert body["succeeded"] == 3 and counting.runs == 3
    assert [i["decision"]["decision_id"] for i in body["items"][:2]] == [
        i["decision"]["decision_id"] for i in batch.get_json()["items"]
    ]
    assert get_state(app).store.count() == 4  # type: ignore[union-attr]


# ---- the contract covers every route -------------------------------------------------------------------------------


def _openapi_path(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path: ``<name>`` and ``<any(...):name>`` become ``{name}``."""
    out, rest = "", rule
    while "<" in rest:
        head, _, tail = rest.partition("<")
        inside, _, rest = tail.partition(">")
        out += head + "{" + inside.rsplit(":", 1)[-1] + "}"
    return out + rest


def test_openapi_documents_every_url_rule_and_method(api_app: Any, api_client: Any) -> None:
    doc = api_client.get("/openapi.json").get_json()
    missing = []
    documented = 0
    for rule in api_app.url_map.iter_rules():
        path = _openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = doc["paths"].get(path, {}).get(method.lower())
            if operation is None:
                missing.append(f"{method} {rule.rule}")
                continue
            documented += 1
            assert operation.get("operationId"), f"{method} {path} has no operationId"
            assert operation["responses"], f"{method} {path} documents no response"
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert set(response["content"]) == {"application/problem+json"}, (method, path, status)
    assert not missing, f"routes missing from /openapi.json: {missing}"
    assert documented >= 19


# ---- records of the first schema version stay readable ----------------------------------------------------------------


def _first_version_response(response: dict[str, Any]) -> dict[str, Any]:
    """A response without what the first version never answered (reason stability, recourse)."""
    return {k: v for k, v in response.items() if k not in ("reason_stability", "recourse")}


def _v1_payload(recorded: dict[str, Any], request: dict[str, Any], decision_id: str) -> dict[str, Any]:
    """A stored record's payload written as the first version of the service wrote it (schema version 1)."""
    response = {**_first_version_response(recorded["response"]), "decision_id": decision_id}
    versions = recorded["versions"]
    return {
        "request": request,
        "response": response,
        "attributions": response["explanation"]["attributions"],
        "base_value": response["explanation"]["base_value"],
        "margin": response["explanation"]["margin"],
        "versions": versions,
        "latency": {"decide_ms": response["latency_ms"]},
        "decided_by": recorded["decided_by"],
    }


def test_first_version_records_read_render_replay_and_explain_as_they_were(
    api_make_app: Any, example_application: dict[str, Any]
) -> None:
    from service.core.recorded import RecordedDecision
    from service.records import DecisionRecord
    from service.serialize import decision_json

    app = api_make_app()
    client = app.test_client()
    store = get_state(app).store
    declined = copy.deepcopy(example_application)
    declined["applicant"]["age_years"] = 17
    declined["monitoring"] = {"sex": "female"}
    for body in (example_application, declined):
        made = client.post("/v1/decisions", json=body).get_json()
        current = client.get(f"/v1/decisions/{made['decision_id']}").get_json()
        old_id = made["decision_id"][::-1]
        old = DecisionRecord(
            decision_id=old_id,
            application_id=current["application_id"],
            created_at=store.get(made["decision_id"]).record.created_at,  # type: ignore[union-attr]
            idempotency_key=None,
            request_hash=current["request_hash"],
            decision=current["decision"],
            risk_band=current["risk_band"],
            score=current["score"],
            model_name=current["model_name"],
            model_version=current["model_version"],
            reason_codes=tuple(current["reason_codes"]),
            payload=_v1_payload(current, body, old_id),
        )
        store.save(old)  # type: ignore[union-attr]
        shown = client.get(f"/v1/decisions/{old.decision_id}").get_json()
        assert "schema_version" not in shown["payload"] and shown["payload"]["response"] == shown["response"]
        assert {k: v for k, v in shown["response"].items() if k != "decision_id"} == {
            k: v for k, v in _first_version_response(made).items() if k != "decision_id"
        }
        assert shown["request"] == body and shown["versions"] == current["versions"]
        assert client.post(f"/v1/decisions/{old.decision_id}/replay").get_json()["identical"] is True
        notice = client.get(f"/v1/decisions/{old.decision_id}/notice")
        assert notice.status_code == (200 if made["decision"] == "decline" else 409)
        assert RecordedDecision.of(old).payload.schema_version == 1
        assert decision_json(RecordedDecision.of(old))["reasons"] == made["reasons"]
    assert store.verify_chain().ok  # type: ignore[union-attr]


def test_records_written_by_the_first_version_are_read_through_the_typed_payload() -> None:
    """Records exactly as the first version of the service stored and served them (tests/data)."""
    from service.core.notice import build_notice
    from service.core.recorded import RecordedDecision
    from service.records.model import parse_timestamp
    from service.reports.source import rows_from_records
    from service.serialize import decision_json

    class Stored:
        def __init__(self, data: dict[str, Any]) -> None:
            for key, value in data.items():
                setattr(self, key, value)
            self.created_at = parse_timestamp(data["created_at"])

        def find_reason_texts(self, sha256: str) -> None:
            return None  # the first version's records carry their texts

    for data in json.loads(V1_RECORDS.read_text(encoding="utf-8")):
        recorded = RecordedDecision.of(Stored(data))  # type: ignore[arg-type]
        assert recorded.payload.schema_version == 1
        assert decision_json(recorded) == data["payload"]["response"]
        assert recorded.request.to_json() == data["payload"]["request"]
        assert recorded.request.request_hash == data["request_hash"]
        assert dict(recorded.payload.decided_by) == data["payload"]["decided_by"]
        (row,) = rows_from_records([Stored(data)])
        assert row.monitoring == data["payload"]["request"].get("monitoring", {})
        if data["decision"] == "decline":
            notice = build_notice(recorded)
            adverse = [r["code"] for r in data["payload"]["response"]["reasons"] if r["adverse"]]
            assert [f.code for f in notice.principal_reasons] == adverse[:4]


# ---- layers import downward only -----------------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "/v" not in str(p.relative_to(REPO / folder)))


# (folder, forbidden import prefixes): the arrows of the architecture, checked on every module
LAYERS = [
    ("model_store", ("service", "training", "cli", "flask", "onnxruntime", "sklearn")),
    ("training", ("service", "cli", "flask")),
    ("service/core", ("flask", "click", "onnxruntime", "sqlite3", "psycopg", "service.records", "service.api",
                      "service.adapters", "service.decisions", "service.models", "service.runtime", "cli", "training")),
    ("service/records", ("flask", "click", "service.api", "service.decisions", "cli", "training")),
    ("service/reports", ("flask", "click", "service.api", "cli", "training")),
    ("service/api", ("cli", "training", "click")),
    ("cli", ("service.api", "flask")),
]  # fmt: skip
TRANSPORT_FREE = ("decisions.py", "replay.py", "batch.py", "models.py", "runtime.py", "metrics.py", "inputs.py",
                  "serialize.py", "errors.py", "config.py")  # fmt: skip


@pytest.mark.parametrize(("folder", "forbidden"), LAYERS, ids=[layer[0] for layer in LAYERS])
def test_layers_import_only_downward(folder: str, forbidden: tuple[str, ...]) -> None:
    wrong = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in _modules(folder)
        for name in sorted(_imports(path))
        if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)
    ]
    assert not wrong, wrong


def test_the_decision_service_and_its_helpers_know_no_transport() -> None:
    wrong = [
        f"service/{name} imports {module}"
        for name in TRANSPORT_FREE
        for module in sorted(_imports(REPO / "service" / name))
        if module.split(".")[0] in ("flask", "click", "werkzeug") or module.startswith(("service.api", "cli"))
    ]
    assert not wrong, wrong
