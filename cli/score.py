"""``credit-decision score``: decide a file of applications with the served model, through the decision service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.options import (
    database_url_option,
    deployment_state,
    model_option,
    model_store_option,
    record_event,
    settings,
    version_option,
)

if TYPE_CHECKING:
    from service.batch import BatchSummary
    from service.config import Settings

MAX_REPORTED_ERRORS = 50
_FILE = click.Path(dir_okay=False, path_type=Path)


@click.command("score")
@click.argument(
    "input_arg", metavar="[INPUT", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.argument("output_arg", metavar="OUTPUT]", required=False, type=_FILE)
@click.option(
    "--input",
    "input_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="applications: .csv, .jsonl or .parquet (or give INPUT)",
)
@click.option(
    "--output",
    "output_path",
    default=None,
    type=_FILE,
    help="decisions: .csv, .jsonl or .parquet, written whole or not at all (or give OUTPUT)",
)
@click.option(
    "--output-format",
    "output_fmt",
    type=click.Choice(["csv", "jsonl", "parquet"]),
    default=None,
    help="[default: from the output's name, else the input's format]",
)
@model_option
@version_option
@model_store_option
@database_url_option
@click.option(
    "--scheduler",
    default=None,
    metavar="local|tcp://HOST:PORT",
    help="decide the chunks on Dask: 'local' starts a LocalCluster for the run, tcp://HOST:PORT uses a running "
    "cluster (its workers read the model store at the same path, and the input and the output's directory too if "
    "they can, else this process ships the chunks) [default: no Dask, this machine's processes]",
)
@click.option("--chunk-size", default=8192, show_default=True, type=click.IntRange(1, 1_000_000), help="rows per chunk")
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 64),
    help="worker processes [default: 1; with --scheduler local: the cores]",
)
@click.option(
    "--attributions/--no-attributions",
    default=False,
    show_default=True,
    help="also write the margin and every field's attribution (log-odds)",
)
@click.option(
    "--errors",
    "errors_path",
    default=None,
    type=_FILE,
    help="refused rows (row, application_id, field, message, value) [default: OUTPUT's name with .errors.csv]",
)
@click.option("--progress/--no-progress", default=None, help="progress bar (default: when stderr is a terminal)")
def score_command(
    input_arg: Path | None,
    output_arg: Path | None,
    input_path: Path | None,
    output_path: Path | None,
    output_fmt: str | None,
    model_name: str | None,
    model_version: str | None,
    model_store: Path | None,
    database_url: str | None,
    scheduler: str | None,
    chunk_size: int,
    workers: int | None,
    attributions: bool,
    errors_path: Path | None,
    progress: bool | None,
) -> None:
    """Decide a file of applications in batch: decision, score, band, reason codes and rules fired per row.

    By default with the deployment's champion (the serving state in the decision store, with its policy; else
    the model store's registry champion), so every row gets the decision the API would give it. Refused rows go to
    the errors file; a manifest (input, model, counts and hashes) is written beside the output and the run is
    recorded as a batch_scored event in the decision store's audit chain.
    """
    from service.batch import ModelRef, score_file
    from service.config import ConfigError
    from service.errors import CreditDecisionError

    source = _one(input_arg, input_path, "INPUT", "--input")
    target = _one(output_arg, output_path, "OUTPUT", "--output")
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
    model = ModelRef(str(Path(chosen.model_store).resolve()), name, version, policy)
    options: dict[str, Any] = {
        "chunk_size": chunk_size,
        "fmt": output_fmt,
        "attributions": attributions,
        "errors_path": errors_path,
        "progress": sys.stderr.isatty() if progress is None else progress,
        "warn": lambda message: click.echo(f"warning: {message}", err=True),
    }
    try:
        if scheduler is None:
            summary = score_file(source, target, model=model, workers=workers or 1, **options)
        else:
            from service.batch_dask import score_file_on_dask

            summary = score_file_on_dask(source, target, model=model, scheduler=scheduler, workers=workers, **options)
    except CreditDecisionError as exc:
        raise click.ClickException(exc.detail) from exc
    for error in summary.errors[:MAX_REPORTED_ERRORS]:
        click.echo(f"invalid: {error.describe()}", err=True)
    if len(summary.errors) > MAX_REPORTED_ERRORS:
        click.echo(f"invalid: ... and {len(summary.errors) - MAX_REPORTED_ERRORS} more rows", err=True)
    click.echo(f"refused rows: {summary.errors_path}; manifest: {summary.manifest_path}", err=True)
    click.echo(_record(chosen, database_url, summary), err=True)
    click.echo(
        f"{name} {version}{f' with policy {policy}' if policy else ''}: {summary.decided} decided, {len(summary.errors)} invalid skipped, "
        f"{summary.rows_in} rows in {summary.seconds:.2f} s ({summary.rows_per_second:,.0f} rows/s) -> {target}",
        err=True,
    )


def _one(argument: Path | None, option: Path | None, name: str, flag: str) -> Path:
    """The file given as an argument or by its option, not both."""
    given = [path for path in (argument, option) if path is not None]
    if len(given) != 1:
        raise click.UsageError(f"give {name} or {flag} (one of them)")
    return given[0]


def _record(chosen: Settings, database_url: str | None, summary: BatchSummary) -> str:
    """Record the run as one batch_scored audit event with the manifest's key facts; a line saying where, or why not.

    The default SQLite store is not created for it: without a decision store there is no chain to record in.
    """
    url = chosen.database_url
    if database_url is None and url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        return f"warning: not recorded in the audit chain (no decision store at {url}; give --database-url)"
    return record_event(chosen, "batch_scored", summary.event_details())
