"""``credit-decision report``: the period report of the decision store as HTML, PDF, JSON or CSV."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

FORMATS = ("html", "pdf", "json", "csv")


@click.command("report")
@click.option(
    "--from", "date_from", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (UTC), inclusive."
)
@click.option("--to", "date_to", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day (UTC), exclusive.")
@click.option("--model", "model_name", default=None, help="Only decisions of this model name.")
@click.option(
    "--database-url", default=None, help="Decision store (default: $DATABASE_URL or the embedded SQLite file)."
)
@click.option(
    "--store",
    "store_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model store root, for the training baselines (default: $CREDIT_DECISION_MODEL_STORE or model_store/).",
)
@click.option(
    "--outcomes",
    "outcomes_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="CSV with columns decision_id,outcome (good|bad) to back-test against, over the outcomes in the store.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write (default: stdout)."
)
def report_command(
    date_from: datetime,
    date_to: datetime,
    model_name: str | None,
    database_url: str | None,
    store_root: Path | None,
    outcomes_path: Path | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Write the period report [--from, --to) of the decision store."""
    from model_store.store import default_store_root
    from service.config import Settings
    from service.records import open_decision_store
    from service.reports.core import Period, ReportError
    from service.reports.render import render
    from service.reports.source import report_from_store, stored_outcomes

    try:
        period = Period(date_from.replace(tzinfo=UTC), date_to.replace(tzinfo=UTC))
    except ReportError as exc:
        raise click.BadParameter(str(exc), param_hint="--from/--to") from exc
    url = database_url or Settings.load().database_url
    store = open_decision_store(url)
    try:
        outcomes = None
        if outcomes_path:
            outcomes = {**stored_outcomes(store, period.previous.start, period.end), **_read_outcomes(outcomes_path)}
        report = report_from_store(store, store_root or default_store_root(), period, model_name, outcomes)
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
    data = render(report, fmt, generated_at=datetime.now(UTC))
    if output is None:
        if fmt == "pdf" and sys.stdout.isatty():
            raise click.UsageError("refusing to write a PDF to a terminal; use --output")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    click.echo(f"wrote {fmt} report of {report.summary.decisions} decisions to {output}", err=True)


def _read_outcomes(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"decision_id", "outcome"} <= set(reader.fieldnames):
            raise click.BadParameter("needs the columns decision_id,outcome", param_hint="--outcomes")
        outcomes = {}
        for line in reader:
            if line["outcome"] not in ("good", "bad"):
                raise click.BadParameter(
                    f"outcome must be good or bad, got {line['outcome']!r}", param_hint="--outcomes"
                )
            outcomes[line["decision_id"]] = line["outcome"]
    return outcomes


@click.group("outcomes")
def outcomes_group() -> None:
    """Observed outcomes (repaid = good, defaulted = bad) of past decisions, for back-testing."""


@outcomes_group.command("import")
@click.argument("csv_path", metavar="FILE.csv", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--database-url", default=None, help="Decision store (default: $DATABASE_URL or the embedded SQLite file)."
)
def import_outcomes_command(csv_path: Path, database_url: str | None) -> None:
    """Store the outcomes of FILE.csv (columns decision_id,outcome,observed_at), all or nothing."""
    from service.api.outcomes import parse_outcomes
    from service.config import Settings
    from service.errors import ProblemError
    from service.records import RecordsError, open_decision_store
    from service.records.outcomes import record_outcomes

    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        needed = {"decision_id", "outcome", "observed_at"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise click.BadParameter("needs the columns decision_id,outcome,observed_at", param_hint="FILE.csv")
        items = [{key: line[key] for key in sorted(needed)} for line in reader]
    now = datetime.now(UTC)
    try:
        outcomes = parse_outcomes({"outcomes": items}, now)
    except ProblemError as exc:
        lines = [f"{e.field.replace('outcomes[', 'row[')}: {e.message}" for e in exc.errors]
        raise click.ClickException("; ".join(lines) or exc.detail) from None
    store = open_decision_store(database_url or Settings.load().database_url)
    try:
        result = record_outcomes(store, outcomes, recorded_at=now)
    except RecordsError as exc:
        raise click.ClickException(f"nothing was stored: {exc}") from None
    finally:
        store.close()
    click.echo(f"{result.received} outcomes read: {result.stored} stored, {result.unchanged} already recorded")
