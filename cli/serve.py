"""``credit-decision serve``: run the decision API under gunicorn with the production configuration;
``credit-decision keys``: create API keys (printed once; only their sha256 goes into the key file)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cli.options import database_url_option, model_store_option, record_event, settings

GUNICORN_CONF = Path(__file__).resolve().parents[1] / "service" / "gunicorn_conf.py"
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
@model_store_option
@database_url_option
def serve_command(host: str, port: int, workers: int, model_store: Path | None, database_url: str | None) -> None:
    """Serve the decision API with gunicorn (production config) until interrupted."""
    env = dict(os.environ, HOST=host, PORT=str(port), WEB_CONCURRENCY=str(workers))
    if model_store is not None:
        env["CREDIT_DECISION_MODEL_STORE"] = str(model_store.resolve())
    if database_url is not None:
        env["CREDIT_DECISION_DATABASE_URL"] = database_url
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    settings, keys_line = _check_keys(env)
    click.echo(f"credit-decision API on {url} ({workers} workers)")
    click.echo(f"  API docs:  {url}/docs   (OpenAPI: {url}/openapi.json)")
    click.echo(f"  readiness: {url}/readyz")
    click.echo(keys_line)
    click.echo("  try it:")
    click.echo(_try_it(settings, url))
    sys.stdout.flush()
    argv = gunicorn_argv()
    # replace this process, so signals (Ctrl-C, SIGTERM) reach the gunicorn master directly
    os.execvpe(argv[0], argv, env)  # noqa: S606


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "application.json"


def _try_it(settings: Any, url: str) -> str:
    """A curl line that works with the served model: the shipped example body when it has the model's fields,
    else the field catalog to write one from."""
    import json

    from model_store.errors import ContractError
    from model_store.spec import FeatureSpec
    from model_store.store import ModelStore

    auth = '-H "Authorization: Bearer $SCORER_KEY"'
    try:
        store = ModelStore(settings.model_store)
        name, version = settings.served_version(store)
        fields = set(FeatureSpec.load(store.path(name, version) / "feature_spec.yaml").field_names)
        example = json.loads(EXAMPLE.read_text(encoding="utf-8"))["applicant"]
        if set(example) <= fields:
            return f"    curl -s {auth} -H 'Content-Type: application/json' --data @{os.path.relpath(EXAMPLE)} {url}/v1/decisions"
    except (ContractError, OSError, ValueError, KeyError, TypeError):
        pass
    return f"    curl -s {auth} {url}/v1/schema   (the served model's fields; POST an applicant to {url}/v1/decisions)"


def _check_keys(env: dict[str, str]) -> tuple[Any, str]:
    """Load the key configuration as the workers will; exit with its error (e.g. production without keys)."""
    from service.app import load_keys
    from service.config import ConfigError, Settings

    try:
        settings = Settings.load(environ=env)
        keys = load_keys(settings)
    except ConfigError as exc:
        raise click.ClickException(f"cannot serve: {exc}") from None
    create = "credit-decision keys create --role scorer   (also: --role auditor, --role admin)"
    if len(keys) == 0:
        return settings, (
            f"  API keys:  none yet, so every decision endpoint answers 401. Create a development key (printed once,\n"
            f"             its hash appended to {settings.api_keys_file}; a running server reads it at the next request):\n"
            f"               {create}\n"
            "             then: export SCORER_KEY=<the printed key>"
        )
    return settings, (
        f"  API keys:  {len(keys)} key(s) with roles {', '.join(sorted(keys.roles))} ({settings.api_keys_file}); "
        f"another: {create}"
    )


@click.group("keys")
def keys_group() -> None:
    """API keys: create one (printed once, only its sha256 is stored) or list the key file."""


def _key_file_option(func: Any) -> Any:
    return click.option(
        "--file",
        "key_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="CREDIT_DECISION_API_KEYS_FILE",
        default=Path("var") / "api_keys",
        show_default=True,
        help="Key file (env CREDIT_DECISION_API_KEYS_FILE); the server reads the same setting.",
    )(func)


@keys_group.command("create")
@click.option("--role", type=click.Choice(["scorer", "auditor", "admin"]), required=True, help="What the key may do.")
@click.option("--label", default=None, help="Who holds the key (recorded with each decision) [default: role and date].")
@_key_file_option
@database_url_option
def create_key_command(role: str, label: str | None, key_file: Path, database_url: str | None) -> None:
    """Create a random key, append its hash to the key file and print the key once (on stdout).

    The creation (key id, role, label, never the key) is an audit event in the decision store's chain.
    """
    from service.auth import ApiKey, KeyConfigError, append_key, hash_key, new_key, parse_key_file

    key = new_key()
    entry = ApiKey(role, hash_key(key), label if label is not None else f"{role} {datetime.now(UTC):%Y-%m-%d}")
    try:
        parse_key_file(entry.line())  # the same checks the server applies (label characters, length)
        append_key(key_file, entry)
    except (KeyConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"created a {role} key (key id {entry.key_id}, label {entry.label!r}); its sha256 was appended to {key_file}.\n"
        "The key is shown only this once; keep it secret and send it as `Authorization: Bearer <key>`. "
        "A running server accepts it from its next request on (it re-reads the key file when it changes).",
        err=True,
    )
    details = {"key_id": entry.key_id, "role": role, "label": entry.label, "key_file": str(key_file)}
    click.echo(record_event(settings(database_url=database_url), "key_created", details), err=True)
    click.echo(key)


@keys_group.command("revoke")
@click.argument("key_id")
@click.option("--note", default="", help="Why (kept in the audit event).")
@_key_file_option
@database_url_option
def revoke_key_command(key_id: str, note: str, key_file: Path, database_url: str | None) -> None:
    """Remove a key (every role it holds) from the key file by its key id; a running server refuses it from its next
    request on (it re-reads the key file when it changes).

    The revocation is an audit event in the decision store's chain.
    """
    from service.auth import KeyConfigError, remove_key

    try:
        removed = remove_key(key_file, key_id)
    except (KeyConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if not removed:
        raise click.ClickException(f"no key with key id {key_id!r} in {key_file}")
    roles = sorted(k.role for k in removed)
    click.echo(f"revoked key {key_id} ({', '.join(roles)}; label {removed[0].label!r}) from {key_file}")
    details = {"key_id": key_id, "roles": roles, "label": removed[0].label, "key_file": str(key_file), "note": note}
    click.echo(record_event(settings(database_url=database_url), "key_revoked", details))
    click.echo("a running server refuses the key from its next request on (no restart needed)")


@keys_group.command("list")
@_key_file_option
def list_keys_command(key_file: Path) -> None:
    """List the keys of the key file: role, key id and label (the file holds no keys, only hashes)."""
    from service.auth import KeyConfigError, read_key_file

    try:
        keys = read_key_file(key_file)
    except KeyConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for key in keys:
        click.echo(f"{key.role:8} {key.key_id}  {key.label}")
