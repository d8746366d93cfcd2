"""``credit-decision score``: decide a file of applications with the served model, through the decision service."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from cli.options import (
    database_url_option,
    deployment_state,
    model_option,
    model_store_option,
    settings,
    version_option,
)
from service.private_files import open_private_text

MAX_REPORTED_ERRORS = 50


@click.command("score")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="applications: .csv, .jsonl or .parquet (Parquet needs pyarrow)",
)
@click.option(
    "--output",
    "output_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="decisions: .csv or .jsonl (written whole or not at all)",
)
@model_option
@version_option
@model_store_option
@database_url_option
@click.option("--chunk-size", default=8192, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="worker processes")
@click.option(
    "--errors",
    "errors_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="also write every invalid row to this CSV (row, application_id, field, message)",
)
@click.option("--progress/--no-progress", default=None, help="progress bar (default: when stderr is a terminal)")
def score_command(
    input_path: Path,
    output_path: Path,
    model_name: str | None,
    model_version: str | None,
    model_store: Path | None,
    database_url: str | None,
    chunk_size: int,
    workers: int,
    errors_path: Path | None,
    progress: bool | None,
) -> None:
    """Decide a file of applications in batch: decision, score, band, reason codes and rules fired per row.

    By default with the deployment's champion (the serving state in the decision store, with its policy; else
    the model store's registry champion), so every row gets the decision the API would give it.
    """
    from service.batch import ID_COLUMN, score_file
    from service.config import ConfigError
    from service.errors import CreditDecisionError

    chosen = settings(
        model_store=model_store, database_url=database_url, model_name=model_name, model_version=model_version
    )
    state = deployment_state(chosen) if model_name is None else None
    policy = None
    if state is not None and state.champion is not None:
        name, version, policy = state.champion.name, state.champion.version, state.champion.policy
    else:
        try:
            name, version = chosen.served_version()
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    show = sys.stderr.isatty() if progress is None else progress
    try:
        summary = score_file(
            input_path,
            output_path,
            store_root=chosen.model_store,
            name=name,
            version=version,
            policy=policy,
            chunk_size=chunk_size,
            workers=workers,
            progress=show,
            warn=lambda message: click.echo(f"warning: {message}", err=True),
        )
    except CreditDecisionError as exc:
        raise click.ClickException(exc.detail) from exc
    for error in summary.errors[:MAX_REPORTED_ERRORS]:
        click.echo(f"invalid: {error.describe()}", err=True)
    if len(summary.errors) > MAX_REPORTED_ERRORS:
        click.echo(f"invalid: ... and {len(summary.errors) - MAX_REPORTED_ERRORS} more rows", err=True)
    if errors_path is not None:
        with open_private_text(errors_path, "w", newline="", encoding="utf-8") as fh:  # rows of applications
            out = csv.writer(fh, lineterminator="\n")
            out.writerow(["row", ID_COLUMN, "field", "message"])
            out.writerows([e.row, e.application_id or "", f, m] for e in summary.errors for f, m in e.problems)
    click.echo(
        f"{name} {version}{f' with policy {policy}' if policy else ''}: {summary.decided} decided, {len(summary.errors)} invalid skipped, "
        f"{summary.rows_in} rows in {summary.seconds:.2f} s ({summary.rows_per_second:,.0f} rows/s) -> {output_path}",
        err=True,
    )
