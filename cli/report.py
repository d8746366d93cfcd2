"""``credit-decision report`` (the period report as HTML, PDF, JSON or CSV), ``credit-decision compare`` (champion
vs a shadow) and ``credit-decision outcomes``."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from cli.options import database_url_option, decision_store, model_store_option, settings

FORMATS = ("html", "pdf", "json", "csv")


@click.command("report")
@click.option(
    "--from", "date_from", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (UTC), inclusive."
)
@click.option("--to", "date_to", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day (UTC), exclusive.")
@click.option("--model", "model_name", default=None, help="Only decisions of this model name.")
@database_url_option
@model_store_option
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
    model_store: Path | None,
    outcomes_path: Path | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Write the period report [--from, --to) of the decision store."""
    from service.reports.core import Period, ReportError
    from service.reports.render import render
    from service.reports.source import report_from_store, stored_outcomes

    try:
        period = Period(date_from.replace(tzinfo=UTC), date_to.replace(tzinfo=UTC))
    except ReportError as exc:
        raise click.BadParameter(str(exc), param_hint="--from/--to") from exc
    chosen = settings(model_store=model_store, database_url=database_url)
    with decision_store(chosen) as store:
        outcomes = None
        if outcomes_path:
            outcomes = {**stored_outcomes(store, period.previous.start, period.end), **_read_outcomes(outcomes_path)}
        report = report_from_store(store, chosen.model_store, period, model_name, outcomes)
    _write(render(report, fmt, generated_at=datetime.now(UTC)), fmt, output)
    if output is not None:
        click.echo(f"wrote {fmt} report of {report.summary.decisions} decisions to {output}", err=True)


@click.command("compare")
@click.option(
    "--from", "date_from", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (UTC), inclusive."
)
@click.option("--to", "date_to", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day (UTC), exclusive.")
@click.option(
    "--kind",
    type=click.Choice(["challenger", "policy"]),
    default="challenger",
    show_default=True,
    help="challenger: another model version in shadow; policy: a candidate policy in shadow.",
)
@database_url_option
@model_store_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write (default: stdout)."
)
def compare_command(
    date_from: datetime,
    date_to: datetime,
    kind: str,
    database_url: str | None,
    model_store: Path | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Write the champion-vs-shadow comparison report [--from, --to) of the decision store."""
    from service.reports.challenger_render import render_comparison
    from service.reports.core import Period, ReportError
    from service.reports.source import comparison_from_store

    try:
        period = Period(date_from.replace(tzinfo=UTC), date_to.replace(tzinfo=UTC))
    except ReportError as exc:
        raise click.BadParameter(str(exc), param_hint="--from/--to") from exc
    chosen = settings(model_store=model_store, database_url=database_url)
    with decision_store(chosen) as store:
        report = comparison_from_store(store, chosen.model_store, period, kind)
    _write(render_comparison(report, fmt, generated_at=datetime.now(UTC)), fmt, output)
    if output is not None:
        click.echo(f"wrote {fmt} {kind} comparison of {report.counts.pairs} decisions to {output}", err=True)


def _write(data: bytes, fmt: str, output: Path | None) -> None:
    if output is None:
        if fmt == "pdf" and sys.stdout.isatty():
            raise click.UsageError("refusing to write a PDF to a terminal; use --output")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)


def _read_outcomes(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"decision_id", "outcome"} <= set(reader.fieldnames):
            raise click.BadParameter("needs the columns decision_id,outcome", param_hint="--outcomes")
        outcomes = {}
        for number, line in enumerate(reader, start=2):
            if line["outcome"] not in ("good", "bad"):
                raise click.BadParameter(
                    f"line {number}: outcome must be good or bad, got {line['outcome']!r}", param_hint="--outcomes"
                )
            outcomes[line["decision_id"]] = line["outcome"]
    return outcomes


@click.group("outcomes")
def outcomes_group() -> None:
    """Observed outcomes (repaid = good, defaulted = bad) of past decisions, for back-testing."""


@outcomes_group.command("import")
@click.argument("csv_path", metavar="FILE.csv", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@database_url_option
def import_outcomes_command(csv_path: Path, database_url: str | None) -> None:
    """Store the outcomes of FILE.csv (columns decision_id,outcome,observed_at), all or nothing.

    Each row is checked exactly as ``POST /v1/outcomes`` checks an item.
    """
    from service.decisions import DecisionService
    from service.errors import CreditDecisionError
    from service.inputs import OutcomesRequestSchema, load_valid, observed_outcomes

    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        needed = {"decision_id", "outcome", "observed_at"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise click.BadParameter("needs the columns decision_id,outcome,observed_at", param_hint="FILE.csv")
        items = [{key: line[key] for key in sorted(needed)} for line in reader]
    with decision_store(settings(database_url=database_url)) as store:
        try:
            outcomes = observed_outcomes(load_valid(OutcomesRequestSchema(), {"outcomes": items}))
            result = DecisionService(models=None, served=None, store=store).record_outcomes(outcomes)
        except CreditDecisionError as exc:
            # row numbers as in the file: its header is line 1
            lines = [_row_of(e.field) + f": {e.message}" for e in exc.errors] or [exc.detail]
            raise click.ClickException("nothing was stored: " + "; ".join(lines)) from None
    click.echo(f"{result.received} outcomes read: {result.stored} stored, {result.unchanged} already recorded")


def _row_of(field: str) -> str:
    """``outcomes[3].observed_at`` -> ``line 5, observed_at``."""
    if field.startswith("outcomes[") and "]" in field:
        index, _, rest = field[len("outcomes[") :].partition("]")
        if index.isdigit():
            return f"line {int(index) + 2}" + (f", {rest.lstrip('.')}" if rest else "")
    return field
