"""``credit-decision audit``: verify the hash chain, purge by retention, export records."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import IO

import click

from service.records import DecisionStore, RecordsError, StoredRecord, database_url_from_env, open_decision_store
from service.records.model import canonical_json, format_timestamp

CSV_COLUMNS = (
    "seq",
    "decision_id",
    "application_id",
    "created_at",
    "decision",
    "risk_band",
    "score",
    "model_name",
    "model_version",
    "reason_codes",
    "idempotency_key",
    "request_hash",
    "prev_hash",
    "record_hash",
    "payload",
)

database_url_option = click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="Decision store URL (default: $DATABASE_URL, else sqlite:///var/decisions.sqlite3).",
)


@contextmanager
def _store(url: str | None) -> Iterator[DecisionStore]:
    try:
        store = open_decision_store(url or database_url_from_env())
    except (RecordsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield store
    except RecordsError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


def _moment(value: str | None, name: str) -> datetime | None:
    """An ISO-8601 date or datetime; naive values are taken as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO-8601 date or datetime: {value!r}", param_hint=name) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@click.group("audit")
def audit_group() -> None:
    """Audit trail: verify the hash chain, apply retention, export decision records."""


@audit_group.command("verify")
@database_url_option
def verify_command(database_url: str | None) -> None:
    """Check every record against the hash chain; exit 1 naming each changed, deleted, inserted or moved one."""
    with _store(database_url) as store:
        report = store.verify_chain()
    for problem in report.problems:
        click.echo(problem.describe())
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@audit_group.command("purge")
@click.option(
    "--older-than-days", type=click.IntRange(min=0), required=True, help="Delete records older than this many days."
)
@database_url_option
def purge_command(older_than_days: int, database_url: str | None) -> None:
    """Delete records older than the retention period, keeping the chain verifiable with a checkpoint."""
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    with _store(database_url) as store:
        # Purging destroys evidence: never purge over a chain that already fails verification.
        report = store.verify_chain()
        if not report.ok:
            for problem in report.problems:
                click.echo(problem.describe(), err=True)
            raise click.ClickException("the hash chain does not verify; refusing to purge (run `audit verify`)")
        result = store.purge_before(cutoff)
    click.echo(
        f"purged {result.purged_records} records created before {format_timestamp(cutoff)}; "
        f"checkpoint seq {result.checkpoint_seq} hash {result.checkpoint_hash}"
    )


def _csv_row(stored: StoredRecord) -> dict[str, object]:
    data = stored.to_dict()
    data["reason_codes"] = ";".join(stored.record.reason_codes)
    data["payload"] = canonical_json(stored.record.payload)
    return {column: data[column] for column in CSV_COLUMNS}


def _export(store: DecisionStore, out: IO[str], fmt: str, since: datetime | None, until: datetime | None) -> int:
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    written = 0
    cursor: str | None = None
    while True:
        page, cursor = store.search(since=since, until=until, cursor=cursor, limit=1000)
        for stored in page:
            if writer is not None:
                writer.writerow(_csv_row(stored))
            else:
                out.write(json.dumps(stored.to_dict(), sort_keys=True, ensure_ascii=False) + "\n")
            written += 1
        if cursor is None:
            return written


@audit_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--since", default=None, help="Only records created at or after this ISO-8601 date/datetime (UTC).")
@click.option("--until", default=None, help="Only records created before this ISO-8601 date/datetime (UTC).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="-", show_default=True)
@database_url_option
def export_command(fmt: str, since: str | None, until: str | None, output: str, database_url: str | None) -> None:
    """Export decision records in seq order as JSON Lines or CSV (hashes included, so exports can be re-verified)."""
    since_at, until_at = _moment(since, "--since"), _moment(until, "--until")
    with _store(database_url) as store, click.open_file(output, "w", encoding="utf-8") as out:
        written = _export(store, out, fmt, since_at, until_at)
    click.echo(f"exported {written} records", err=True)
