"""``credit-decision audit verify --expect-head SEQ:HASH``: a head published elsewhere catches what the chain alone
cannot, a rewrite of the whole chain with fresh hashes, or its newest entries cut off; on both backends."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.audit import audit_group
from service.records import DecisionRecord, open_decision_store

MakeRecord = Callable[..., DecisionRecord]
NOW = datetime.now(UTC)


def verify(url: str, *heads: str) -> Any:
    args = ["verify", "--database-url", url]
    for head in heads:
        args += ["--expect-head", head]
    return CliRunner().invoke(audit_group, args, catch_exceptions=False)


def fill(url: str, make_decision_record: MakeRecord, ages_days: list[int], prefix: str) -> None:
    store = open_decision_store(url)
    try:
        for i, days in enumerate(ages_days):
            store.save(make_decision_record(created_at=NOW - timedelta(days=days), application_id=f"{prefix}-{i}"))
    finally:
        store.close()


def published(url: str) -> str:
    """``SEQ:HASH`` of the head ``verify`` prints."""
    output = verify(url).output
    match = re.search(r"head seq (\d+) hash ([0-9a-f]{64})", output)
    assert match, output
    return f"{match.group(1)}:{match.group(2)}"


def test_a_published_head_matches_while_the_chain_grows(
    decision_store_url: str, make_decision_record: MakeRecord
) -> None:
    fill(decision_store_url, make_decision_record, [3, 2], "a")
    early = published(decision_store_url)
    fill(decision_store_url, make_decision_record, [1, 0], "b")
    result = verify(decision_store_url, early, published(decision_store_url))
    assert result.exit_code == 0, result.output
    assert "2 of 2 published head(s) match" in result.output


def test_a_chain_rewritten_with_fresh_hashes_verifies_alone_but_not_against_its_published_head(
    decision_store_url: str, make_decision_record: MakeRecord, tmp_path: Path
) -> None:
    fill(decision_store_url, make_decision_record, [3, 2, 1], "genuine")
    head = published(decision_store_url)
    # the same number of entries, each with correct hashes: what a database writer can build
    forged = f"sqlite:///{tmp_path / 'forged.sqlite3'}"
    fill(forged, make_decision_record, [3, 2, 1], "forged")
    assert verify(forged).exit_code == 0
    result = verify(forged, head)
    assert result.exit_code == 1
    assert f"REWRITTEN: seq {head.split(':')[0]}: hash " in result.output
    assert "0 of 1 published head(s) match" in result.output


def test_a_cut_tail_is_caught_by_a_later_published_head(
    decision_store_url: str, make_decision_record: MakeRecord, tmp_path: Path
) -> None:
    fill(decision_store_url, make_decision_record, [2, 1, 0], "x")
    head = published(decision_store_url)
    shorter = f"sqlite:///{tmp_path / 'shorter.sqlite3'}"
    fill(shorter, make_decision_record, [2], "x")
    result = verify(shorter, head)
    assert result.exit_code == 1
    assert "TRUNCATED: the chain ends at seq 1, before the published head seq 3" in result.output


def test_a_purged_head_cannot_be_checked_but_the_checkpoint_can(
    decision_store_url: str, make_decision_record: MakeRecord
) -> None:
    fill(decision_store_url, make_decision_record, [100], "old")
    old = published(decision_store_url)
    fill(decision_store_url, make_decision_record, [90, 0], "new")
    store = open_decision_store(decision_store_url)
    try:
        purge = store.purge_before(NOW - timedelta(days=30))
    finally:
        store.close()
    assert purge.checkpoint_seq == 2
    checkpoint = f"{purge.checkpoint_seq}:{purge.checkpoint_hash}"
    result = verify(decision_store_url, old, checkpoint)
    assert result.exit_code == 0, result.output
    assert "published head seq 1: purged (checkpoint seq 2), cannot be checked" in result.output
    assert "1 of 2 published head(s) match" in result.output


@pytest.mark.parametrize("value", ["5", "x:" + "0" * 64, "5:abc", "5:" + "g" * 64])
def test_a_malformed_published_head_is_a_usage_error(sqlite_decision_store_url: str, value: str) -> None:
    result = CliRunner().invoke(
        audit_group, ["verify", "--database-url", sqlite_decision_store_url, "--expect-head", value]
    )
    assert result.exit_code == 2
    assert "expected SEQ:HASH" in result.output
