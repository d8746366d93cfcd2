"""``credit-decision serve``: run the decision API under gunicorn with the production configuration."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")
APP_FACTORY = "service.app:create_app()"


def gunicorn_argv() -> list[str]:
    """The command that runs the app factory under gunicorn with the production config."""
    return [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), APP_FACTORY]


@click.command("serve")
@click.option("--host", envvar="HOST", default="127.0.0.1", show_default=True, help="Interface to bind (env HOST).")
@click.option(
    "--port", envvar="PORT", default=8000, type=click.IntRange(1, 65535), show_default=True, help="Port (env PORT)."
)
@click.option(
    "--workers",
    envvar="WEB_CONCURRENCY",
    default=2,
    type=click.IntRange(1, 64),
    show_default=True,
    help="Gunicorn worker processes (env WEB_CONCURRENCY).",
)
@click.option(
    "--model-store",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model store root (default: $CREDIT_DECISION_MODEL_STORE or the repository's model_store/).",
)
@click.option(
    "--database-url",
    default=None,
    help="Decision store URL (default: $DATABASE_URL or sqlite:///var/decisions.sqlite3).",
)
def serve_command(host: str, port: int, workers: int, model_store: Path | None, database_url: str | None) -> None:
    """Serve the decision API with gunicorn (production config) until interrupted."""
    env = dict(os.environ, HOST=host, PORT=str(port), WEB_CONCURRENCY=str(workers))
    if model_store is not None:
        env["CREDIT_DECISION_MODEL_STORE"] = str(model_store.resolve())
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    click.echo(f"credit-decision API on {url} ({workers} workers)")
    click.echo(f"  API docs:  {url}/docs   (OpenAPI: {url}/openapi.json)")
    click.echo(f"  readiness: {url}/readyz")
    click.echo("  try it:")
    click.echo(f"    curl -s -H 'Content-Type: application/json' --data @examples/application.json {url}/v1/decisions")
    sys.stdout.flush()
    argv = gunicorn_argv()
    # replace this process, so signals (Ctrl-C, SIGTERM) reach the gunicorn master directly
    os.execvpe(argv[0], argv, env)  # noqa: S606
