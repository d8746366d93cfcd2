"""``credit-decision audit``: verify the hash chain, purge by retention, export records, replay decisions."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from cli.options import database_url_option, decision_store, model_store_option, record_event, settings
from service.private_files import open_private_text
from service.records.export import EXPORT_ENTRIES, EXPORT_FORMATS, entry_pages, format_entries, record_pages
from service.records.model import format_timestamp


def _moment(value: str | None, name: str) -> datetime | None:
    """An ISO-8601 date or datetime; naive values are taken as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise click.BadParameter(f"not an ISO-8601 date or datetime: {value!r}", param_hint=name) from exc


@click.group("audit")
def audit_group() -> None:
    """Audit trail: verify the hash chain, apply retention, export and replay decision records."""


def _published_head(value: str) -> tuple[int, str]:
    """``SEQ:HASH`` as an earlier ``verify`` printed it (``head seq SEQ hash HASH``)."""
    seq, sep, digest = value.partition(":")
    digest = digest.strip().lower()
    if not sep or not seq.strip().isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise click.BadParameter(
            f"expected SEQ:HASH (a seq and 64 hex digits), got {value!r}", param_hint="--expect-head"
        )
    return int(seq), digest


@audit_group.command("verify")
@click.option(
    "--expect-head",
    "published",
    multiple=True,
    metavar="SEQ:HASH",
    help="A chain head published earlier (`head seq SEQ hash HASH` of an earlier verify): the entry at SEQ must still "
    "have that hash, or the chain was rewritten or cut since. Repeatable.",
)
@database_url_option
def verify_command(published: tuple[str, ...], database_url: str | None) -> None:
    """Check every record against the hash chain; exit 1 naming each changed, deleted, inserted or moved one.

    A database writer can rewrite the whole chain from some entry on with fresh hashes; only a head published
    elsewhere catches that: pass it with --expect-head.
    """
    heads = sorted({_published_head(value) for value in published})
    findings: list[str] = []
    matched = 0
    with decision_store(settings(database_url=database_url)) as store:
        report = store.verify_chain()
        wanted = {seq: digest for seq, digest in heads if report.checkpoint_seq < seq <= report.head_seq}
        pages = entry_pages(store, "all") if wanted else iter(())
        for page in pages:
            for entry in page:
                digest = wanted.pop(entry.seq, None)
                if digest is not None and entry.record_hash == digest:
                    matched += 1
                elif digest is not None:
                    findings.append(f"REWRITTEN: seq {entry.seq}: hash {entry.record_hash}, not the published one")
            if not wanted or page[-1].seq >= max(wanted):
                break
        findings.extend(f"REWRITTEN: seq {seq}: no entry at the published seq" for seq in sorted(wanted))
    for problem in report.problems:
        click.echo(problem.describe())
    for seq, digest in heads:
        if seq > report.head_seq:
            findings.append(f"TRUNCATED: the chain ends at seq {report.head_seq}, before the published head seq {seq}")
        elif seq == report.checkpoint_seq:
            if digest == report.checkpoint_hash:
                matched += 1
            else:
                findings.append(f"REWRITTEN: seq {seq}: the purge checkpoint's hash is not the published one")
        elif seq <= report.checkpoint_seq:
            click.echo(f"published head seq {seq}: purged (checkpoint seq {report.checkpoint_seq}), cannot be checked")
    for finding in findings:
        click.echo(finding)
    click.echo(report.summary() + (f"; {matched} of {len(heads)} published head(s) match" if heads else ""))
    if not report.ok or findings:
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
    chosen = settings(database_url=database_url)
    days = chosen.retention_days if older_than_days is None else older_than_days
    cutoff = datetime.now(UTC) - timedelta(days=days)
    with decision_store(chosen) as store:
        # Purging destroys evidence: never purge over a chain that already fails verification.
        report = store.verify_chain()
        if not report.ok:
            for problem in report.problems:
                click.echo(problem.describe(), err=True)
            raise click.ClickException("the hash chain does not verify; refusing to purge (run `audit verify`)")
        result = store.purge_before(cutoff)
    others = ""
    if result.purged_events or result.purged_shadows:
        others = f" and {result.purged_events} audit events, {result.purged_shadows} shadow decisions"
    click.echo(
        f"purged {result.purged_records} records{others} created before {format_timestamp(cutoff)} "
        f"(retention {days} days); checkpoint seq {result.checkpoint_seq} hash {result.checkpoint_hash}"
    )
    if result.held_at_seq is not None:
        click.echo(
            f"kept everything from seq {result.held_at_seq} on: the latest control event holds the serving state "
            "and is never purged"
        )
    details = {
        "cutoff": format_timestamp(cutoff),
        "retention_days": days,
        "purged_records": result.purged_records,
        "purged_events": result.purged_events,
        "purged_shadows": result.purged_shadows,
        "checkpoint_seq": result.checkpoint_seq,
        "checkpoint_hash": result.checkpoint_hash,
    }
    click.echo(record_event(chosen, "purge", details))


@audit_group.command("export")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="jsonl", show_default=True)
@click.option(
    "--entries",
    type=click.Choice(EXPORT_ENTRIES),
    default="decisions",
    show_default=True,
    help="Which chain entries: decision records, admin audit events, shadow decisions, or all of them in seq order "
    "(all: JSON Lines only; such a file re-verifies the whole chain offline).",
)
@click.option("--since", default=None, help="Only entries created at or after this ISO-8601 date/datetime (UTC).")
@click.option("--until", default=None, help="Only entries created before this ISO-8601 date/datetime (UTC).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="-", show_default=True)
@database_url_option
def export_command(
    fmt: str, entries: str, since: str | None, until: str | None, output: str, database_url: str | None
) -> None:
    """Export chain entries (decision records by default) in seq order as JSON Lines or CSV, hashes included so
    exports can be re-verified."""
    if entries == "all" and fmt == "csv":
        raise click.BadParameter("all entries export as JSON Lines only (their columns differ)", param_hint="--entries")
    since_at, until_at = _moment(since, "--since"), _moment(until, "--until")
    written = 0
    with (
        decision_store(settings(database_url=database_url)) as store,
        _export_file(output) as out,
    ):
        out.write(format_entries([], entries, fmt, header=True))
        for page in entry_pages(store, entries, since=since_at, until=until_at):
            out.write(format_entries(page, entries, fmt))
            written += len(page)
    noun = {"decisions": "records", "all": "entries"}.get(entries, entries)
    click.echo(f"exported {written} {noun}", err=True)


def _export_file(output: str) -> Any:
    """Standard output for '-', else the file, created 0600: an export holds every application in full."""
    if output == "-":
        return click.open_file(output, "w", encoding="utf-8")
    return open_private_text(output, "w", encoding="utf-8")


@audit_group.command("replay")
@click.option("--since", default=None, help="Only decisions created at or after this ISO-8601 date/datetime (UTC).")
@database_url_option
@model_store_option
def replay_command(since: str | None, database_url: str | None, model_store: Path | None) -> None:
    """Re-decide stored requests with the exact model versions recorded; print every difference, exit 1 if any."""
    from model_store.store import ModelStore
    from service.decisions import DecisionService
    from service.models import ModelCache
    from service.replay import FLOAT_TOLERANCE

    since_at = _moment(since, "--since")
    chosen = settings(model_store=model_store, database_url=database_url)
    models = ModelCache(ModelStore(chosen.model_store))
    replayed = differing = 0
    with decision_store(chosen) as store:
        service = DecisionService(models=models, served=None, store=store)
        for page in record_pages(store, since=since_at):
            for stored in page:
                report = service.replay_stored(stored)
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
