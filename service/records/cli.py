"""``credit-decision audit``: verify the hash chain, purge by retention, export records, replay decisions."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

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
    """Audit trail: verify the hash chain, apply retention, export and replay decision records."""


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
    "--older-than-days",
    type=click.IntRange(min=0),
    default=None,
    help="Delete records older than this many days [default: the RETENTION_DAYS setting, 760 days ≈ 25 months].",
)
@database_url_option
def purge_command(older_than_days: int | None, database_url: str | None) -> None:
    """Delete records older than the retention period, keeping the chain verifiable with a checkpoint."""
    if older_than_days is None:
        from service.config import ConfigError, Settings

        try:
            older_than_days = Settings.load().retention_days
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
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
        f"purged {result.purged_records} records created before {format_timestamp(cutoff)} "
        f"(retention {older_than_days} days); checkpoint seq {result.checkpoint_seq} hash {result.checkpoint_hash}"
    )


def csv_row(stored: StoredRecord) -> dict[str, object]:
    """One record as a CSV row (reason codes joined by ``;``, payload as canonical JSON)."""
    data = stored.to_dict()
    data["reason_codes"] = ";".join(stored.record.reason_codes)
    data["payload"] = canonical_json(stored.record.payload)
    return {column: data[column] for column in CSV_COLUMNS}


def record_pages(store: DecisionStore, **filters: Any) -> Iterator[list[StoredRecord]]:
    """Pages of up to 1000 matching records, in seq order (no transaction is held between pages)."""
    cursor: str | None = None
    while True:
        page, cursor = store.search(**filters, cursor=cursor, limit=1000)
        if page:
            yield page
        if cursor is None:
            return


def format_records(records: list[StoredRecord], fmt: str, header: bool = False) -> str:
    """Records as CSV rows (with the header row if asked) or JSON Lines."""
    buffer = io.StringIO()
    if fmt == "csv":
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        if header:
            writer.writeheader()
        writer.writerows(csv_row(stored) for stored in records)
    elif fmt == "jsonl":
        for stored in records:
            buffer.write(json.dumps(stored.to_dict(), sort_keys=True, ensure_ascii=False) + "\n")
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    return buffer.getvalue()


def export_chunks(store: DecisionStore, fmt: str, **filters: Any) -> Iterator[str]:
    """Matching records in seq order as CSV (header first) or JSON Lines text, one chunk per page."""
    if fmt == "csv":
        yield format_records([], fmt, header=True)
    for page in record_pages(store, **filters):
        yield format_records(page, fmt)


def _export(store: DecisionStore, out: IO[str], fmt: str, since: datetime | None, until: datetime | None) -> int:
    written = 0
    out.write(format_records([], fmt, header=True))
    for page in record_pages(store, since=since, until=until):
        out.write(format_records(page, fmt))
        written += len(page)
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


@audit_group.command("replay")
@click.option("--since", default=None, help="Only decisions created at or after this ISO-8601 date/datetime (UTC).")
@database_url_option
@click.option(
    "--model-store",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model store root (default: $CREDIT_DECISION_MODEL_STORE or the repository's model_store/).",
)
def replay_command(since: str | None, database_url: str | None, model_store: Path | None) -> None:
    """Re-decide stored requests with the exact model versions recorded; print every difference, exit 1 if any."""
    from model_store.store import ModelStore, default_store_root
    from service.api.decisions import request_hash
    from service.models import ModelCache
    from service.replay import FLOAT_TOLERANCE, replay_record

    since_at = _moment(since, "--since")
    models = ModelCache(ModelStore(model_store or default_store_root()))
    replayed = differing = 0
    with _store(database_url) as store:
        for page in record_pages(store, since=since_at):
            for stored in page:
                report = replay_record(stored, models, request_hash)
                replayed += 1
                if not report.identical:
                    differing += 1
                    click.echo(
                        f"decision {report.decision_id} (seq {stored.seq}, model {report.model_name} "
                        f"{report.model_version}): {len(report.differences)} difference(s)"
                    )
                    for difference in report.differences:
                        click.echo(f"  {difference.describe()}")
    used = ", ".join(f"{name} {version}" for name, version in models.loaded()) or "none"
    click.echo(
        f"replayed {replayed} decision(s){f' since {since}' if since else ''}: {replayed - differing} identical, "
        f"{differing} differ (numbers compared within {FLOAT_TOLERANCE:g}; models loaded: {used})"
    )
    if differing:
        sys.exit(1)
