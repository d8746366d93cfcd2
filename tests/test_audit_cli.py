"""``credit-decision audit`` verify / purge / export on both decision-store backends."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from cli.audit import audit_group
from service.records import DecisionRecord, chain_hash, open_decision_store
from service.records.export import CSV_COLUMNS

MakeRecord = Callable[..., DecisionRecord]
NOW = datetime.now(UTC)


@pytest.fixture
def filled_store_url(decision_store_url: str, make_decision_record: MakeRecord) -> str:
    """A store holding 3 records 100, 50 and 10 days old and 2 from today."""
    store = open_decision_store(decision_store_url)
    for days in (100, 50, 10, 0, 0):
        store.save(make_decision_record(created_at=NOW - timedelta(days=days), application_id=f"app-{days}"))
    store.close()
    return decision_store_url


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(audit_group, list(args), env=env, catch_exceptions=False)


def test_verify_passes_on_an_intact_chain_and_prints_the_head(filled_store_url: str) -> None:
    result = run("verify", "--database-url", filled_store_url)
    assert result.exit_code == 0, result.output
    assert "chain OK: 5 records checked" in result.output
    assert "head seq 5 hash " in result.output


def test_verify_exits_1_naming_each_bad_record(filled_store_url: str) -> None:
    store = open_decision_store(filled_store_url)
    second = next(r for r in store.iter_records() if r.seq == 2)
    store.close()
    _tamper(filled_store_url, "UPDATE decision_records SET decision = 'approve', score = 999 WHERE seq = 2")
    _tamper(filled_store_url, "DELETE FROM decision_records WHERE seq = 4")
    result = run("verify", "--database-url", filled_store_url)
    assert result.exit_code == 1
    assert f"CHANGED: seq 2 decision_id {second.record.decision_id}" in result.output
    assert "DELETED: seq 4" in result.output
    assert "chain BROKEN (2 problems)" in result.output


def test_verify_uses_database_url_from_the_environment(filled_store_url: str) -> None:
    result = run("verify", env={"DATABASE_URL": filled_store_url, "CREDIT_DECISION_DATABASE_URL": None})
    assert result.exit_code == 0
    assert "5 records checked" in result.output


def test_commands_read_the_store_the_service_serves(filled_store_url: str, tmp_path: Any) -> None:
    """The service's own setting wins over the twelve-factor DATABASE_URL, in the commands as in the service."""
    from service.config import Settings

    decoy = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    env = {"CREDIT_DECISION_DATABASE_URL": filled_store_url, "DATABASE_URL": decoy}
    assert Settings.load(environ={k: v for k, v in env.items() if v}).database_url == filled_store_url
    result = run("verify", env=env)
    assert result.exit_code == 0 and "5 records checked" in result.output
    assert not (tmp_path / "empty.sqlite3").exists()  # the decoy was never opened (nor created)


def test_purge_deletes_records_past_retention_and_verify_still_passes(filled_store_url: str) -> None:
    result = run("purge", "--older-than-days", "30", "--database-url", filled_store_url)
    assert result.exit_code == 0, result.output
    assert "purged 2 records" in result.output
    assert "checkpoint seq 2" in result.output
    verify = run("verify", "--database-url", filled_store_url)
    assert verify.exit_code == 0
    assert (
        "4 entries checked (3 decisions, 1 audit events, 0 shadow decisions) after checkpoint seq 2" in verify.output
    )  # the purge event


def test_purge_refuses_to_run_over_a_broken_chain(filled_store_url: str) -> None:
    _tamper(filled_store_url, "DELETE FROM decision_records WHERE seq = 3")
    result = CliRunner().invoke(audit_group, ["purge", "--older-than-days", "30", "--database-url", filled_store_url])
    assert result.exit_code == 1
    assert "refusing to purge" in result.output
    store = open_decision_store(filled_store_url)
    assert store.count() == 4
    store.close()


def test_export_jsonl_has_every_record_with_its_hashes(filled_store_url: str) -> None:
    result = run("export", "--format", "jsonl", "--database-url", filled_store_url)
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    # an export is enough to re-verify the chain offline
    prev = "0" * 64
    for line in lines:
        assert line["prev_hash"] == prev
        record = DecisionRecord(
            **{k: line[k] for k in line if k not in ("seq", "prev_hash", "record_hash", "created_at", "reason_codes")},
            created_at=datetime.fromisoformat(line["created_at"].replace("Z", "+00:00")),
            reason_codes=tuple(line["reason_codes"]),
        )
        assert chain_hash(prev, record) == line["record_hash"]
        prev = line["record_hash"]
    assert "exported 5 records" in result.stderr


def test_export_csv_filters_by_time_range(filled_store_url: str) -> None:
    since = (NOW - timedelta(days=60)).date().isoformat()
    until = (NOW - timedelta(days=1)).isoformat()
    result = run("export", "--format", "csv", "--since", since, "--until", until, "--database-url", filled_store_url)
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["application_id"] for r in rows] == ["app-50", "app-10"]
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[0]["reason_codes"] == "R01;R02"
    assert json.loads(rows[0]["payload"])["note"] == "Prüfung ✓"


def test_export_rejects_a_malformed_date(filled_store_url: str) -> None:
    result = CliRunner().invoke(audit_group, ["export", "--since", "last tuesday", "--database-url", filled_store_url])
    assert result.exit_code == 2
    assert "ISO-8601" in result.output


def _tamper(url: str, sql: str) -> None:
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        conn.execute(sql)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute(sql.encode())
