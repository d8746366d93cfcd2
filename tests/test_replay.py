"""Replay: stored decisions re-decided with the exact model version recorded, via the API and the CLI."""

from __future__ import annotations

import copy
import json
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cli.audit import audit_group
from model_store.store import MANIFEST_FILE, POLICY_FILE, ModelStore, sha256_file
from service.app import create_app
from service.replay import FLOAT_TOLERANCE, compare
from service.state import get_state

TRAINING_CONFIG = Path(__file__).resolve().parents[1] / "config" / "german_credit" / "training.yaml"


def _writable(path: Path) -> None:
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.fixture
def replay_setup(api_model_store: Path, api_keys_setting: str, tmp_path: Path) -> Any:
    """A copy of the tiny model store, a SQLite file and a factory of apps over both."""
    yield from _setup(api_model_store, api_keys_setting, tmp_path, f"sqlite:///{tmp_path / 'decisions.sqlite3'}")


@pytest.fixture
def replay_setup_any_backend(
    api_model_store: Path, api_keys_setting: str, tmp_path: Path, decision_store_url: str
) -> Any:
    """As ``replay_setup``, over each decision-store backend (SQLite and a fresh PostgreSQL schema)."""
    yield from _setup(api_model_store, api_keys_setting, tmp_path, decision_store_url)


def _setup(api_model_store: Path, api_keys_setting: str, tmp_path: Path, db: str) -> Any:
    root = tmp_path / "store"
    shutil.copytree(api_model_store, root)
    apps: list[Any] = []

    def make() -> Any:
        app = create_app({"MODEL_STORE": str(root), "DATABASE_URL": db, "API_KEYS": api_keys_setting, "TESTING": True})
        apps.append(app)
        return app

    yield root, db, make
    for app in apps:
        get_state(app).store.close()


def _decide(client: Any, example: dict, headers: dict, **applicant: Any) -> dict[str, Any]:
    body = copy.deepcopy(example)
    body["applicant"].update(applicant)
    response = client.post("/v1/decisions", json=body, headers=headers)
    assert response.status_code == 201
    return dict(response.get_json())


def _replay(client: Any, decision_id: str, headers: dict) -> dict[str, Any]:
    response = client.post(f"/v1/decisions/{decision_id}/replay", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return dict(response.get_json())


def _cli_replay(root: Path, db: str, *args: str) -> Any:
    return CliRunner().invoke(audit_group, ["replay", "--database-url", db, "--model-store", str(root), *args])


def test_replay_is_identical_before_and_after_a_new_champion(
    replay_setup_any_backend: Any, example_application: dict, scorer_headers: dict, auditor_headers: dict
) -> None:
    root, db, make = replay_setup_any_backend
    app = make()
    client = app.test_client()
    old = [
        _decide(client, example_application, scorer_headers),
        _decide(client, example_application, scorer_headers, age_years=17),  # rule decline
        _decide(client, example_application, scorer_headers, credit_amount=19000, duration_months=60),
    ]
    store = get_state(app).store
    before = store.count()
    for made in old:
        report = _replay(client, made["decision_id"], auditor_headers)
        assert report["identical"] is True and report["differences"] == [], report
        assert report["model"] == {"name": made["model"]["name"], "version": made["model"]["version"]}
        assert report["tolerance"] == FLOAT_TOLERANCE
    assert store.count() == before  # replay writes nothing
    assert client.post("/v1/decisions/0123456789abcdef/replay", headers=auditor_headers).status_code == 404

    # a new version is trained and promoted; the old decisions still replay identically with the OLD version
    from training.pipeline import train

    model_store = ModelStore(root)
    result = train(TRAINING_CONFIG, model_store, overrides={"champion": {"max_iter": 7}, "cv_folds": 2}, progress=False)
    model_store.promote(result.champion.name, result.champion.version)
    assert result.champion.version != old[0]["model"]["version"]
    new_app = make()
    new_client = new_app.test_client()
    assert get_state(new_app).model.info.version == result.champion.version
    newer = _decide(new_client, example_application, scorer_headers)
    assert newer["model"]["version"] == result.champion.version
    assert newer["probability_of_default"] != old[0]["probability_of_default"]
    for made in [*old, newer]:
        assert _replay(new_client, made["decision_id"], auditor_headers)["identical"] is True
    assert (old[0]["model"]["name"], old[0]["model"]["version"]) in get_state(new_app).models.loaded()

    cli = _cli_replay(root, db)
    assert cli.exit_code == 0, cli.output
    assert "replayed 4 decision(s): 4 identical, 0 differ" in cli.output
    since = _cli_replay(root, db, "--since", newer["created_at"])
    assert since.exit_code == 0 and "replayed 1 decision(s)" in since.output


def test_a_tampered_stored_input_shows_differences(
    replay_setup: Any, example_application: dict, scorer_headers: dict, auditor_headers: dict
) -> None:
    root, db, make = replay_setup
    app = make()
    client = app.test_client()
    made = _decide(client, example_application, scorer_headers)
    untouched = _decide(client, example_application, scorer_headers, age_years=40)
    path = db.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        (payload,) = conn.execute(
            "SELECT payload FROM decision_records WHERE decision_id = ?", (made["decision_id"],)
        ).fetchone()
        data = json.loads(payload)
        data["request"]["applicant"]["duration_months"] = 72
        data["request"]["applicant"]["checking_account_status"] = "negative_balance"
        conn.execute(
            "UPDATE decision_records SET payload = ? WHERE decision_id = ?", (json.dumps(data), made["decision_id"])
        )
    report = _replay(client, made["decision_id"], auditor_headers)
    assert report["identical"] is False
    fields = {d["field"] for d in report["differences"]}
    assert {"request_hash", "score.value", "probability_of_default", "explanation.margin"} <= fields
    assert any(f.startswith("explanation.attributions.duration_months") for f in fields)
    assert _replay(client, untouched["decision_id"], auditor_headers)["identical"] is True
    # the hash chain also catches the edit
    assert not get_state(app).store.verify_chain().ok

    cli = _cli_replay(root, db)
    assert cli.exit_code == 1
    assert "replayed 2 decision(s): 1 identical, 1 differ" in cli.output
    assert f"decision {made['decision_id']}" in cli.output and "request_hash: recorded" in cli.output


def test_a_changed_policy_in_a_copied_store_shows_differences(
    replay_setup: Any, example_application: dict, scorer_headers: dict
) -> None:
    root, db, make = replay_setup
    app = make()
    client = app.test_client()
    made = [_decide(client, example_application, scorer_headers, duration_months=m) for m in (6, 24, 48)]
    info = get_state(app).model.info
    assert _cli_replay(root, db).exit_code == 0

    # someone rewrites the served version's policy (new cut-offs, new version) and fixes up its manifest
    folder = root / info.name / info.version
    policy_file = folder / POLICY_FILE
    policy = yaml.safe_load(policy_file.read_text())
    policy["policy_version"] = "german-credit-policy-9.9.9"
    for band in policy["bands"][:-1]:
        band["min_score"] = 840 - 5 * policy["bands"].index(band)
    _writable(policy_file)
    policy_file.write_text(yaml.safe_dump(policy, sort_keys=False))
    manifest_file = folder / MANIFEST_FILE
    manifest = json.loads(manifest_file.read_text())
    manifest["files"][POLICY_FILE] = sha256_file(policy_file)
    _writable(manifest_file)
    manifest_file.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    assert ModelStore(root).verify(info.name, info.version) == []

    cli = _cli_replay(root, db)
    assert cli.exit_code == 1
    assert "replayed 3 decision(s): 0 identical, 3 differ" in cli.output
    assert "policy_version: recorded 'german-credit-policy-1.1.0', replayed 'german-credit-policy-9.9.9'" in cli.output
    assert "versions.manifest_sha256" in cli.output
    assert any(f"decision {m['decision_id']}" in cli.output for m in made)
    assert "risk_band: recorded" in cli.output  # the new cut-offs move every decision to the worst band

    # a version whose files no longer match their manifest cannot be loaded at all: reported, not crashed
    policy_file.write_text(policy_file.read_text() + "# edited\n")
    broken = _cli_replay(root, db)
    assert broken.exit_code == 1 and "model: recorded" in broken.output and "not loadable" in broken.output


def test_compare_tolerance_order_and_shape() -> None:
    recorded = {"score": 600, "p": 0.1, "reasons": [{"code": "A", "c": 0.5}, {"code": "B", "c": 0.25}], "x": None}
    assert compare(recorded, copy.deepcopy(recorded), "") == []
    nudged = copy.deepcopy(recorded)
    nudged["p"] += FLOAT_TOLERANCE / 2
    assert compare(recorded, nudged, "") == []
    nudged["p"] += FLOAT_TOLERANCE * 2
    assert [d.field for d in compare(recorded, nudged, "")] == ["p"]
    swapped = copy.deepcopy(recorded)
    swapped["reasons"].reverse()
    assert [d.field for d in compare(recorded, swapped, "")] == [
        "reasons[0].c",
        "reasons[0].code",
        "reasons[1].c",
        "reasons[1].code",
    ]
    shorter = copy.deepcopy(recorded)
    shorter["reasons"].pop()
    assert [d.field for d in compare(recorded, shorter, "")] == ["reasons"]
    typed = copy.deepcopy(recorded)
    typed["score"] = "600"
    typed["extra"] = 1
    assert [d.field for d in compare(recorded, typed, "")] == ["extra", "score"]
    assert compare(True, 1, "flag") != []
