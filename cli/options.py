"""Options every command shares, and the settings they resolve to: one name, one meaning, one resolver.

``--model-store`` and ``--database-url`` mean the same in every command and override the same settings
the service reads (:class:`service.config.Settings`: ``CREDIT_DECISION_MODEL_STORE``, else ``model_store/``;
``CREDIT_DECISION_DATABASE_URL`` or ``DATABASE_URL``, else ``sqlite:///var/decisions.sqlite3``), so a
command always opens the store the service serves from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from service.config import ConfigError, Settings
from service.errors import CreditDecisionError
from service.records import DecisionStore, open_decision_store

if TYPE_CHECKING:
    from service.serving import Lifecycle, ServingState

F = TypeVar("F", bound=Callable[..., Any])

model_store_option = click.option(
    "--model-store",
    "model_store",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model store root [default: the MODEL_STORE setting: $CREDIT_DECISION_MODEL_STORE, else ./model_store].",
)
database_url_option = click.option(
    "--database-url",
    "database_url",
    default=None,
    metavar="URL",
    help="Decision store [default: the DATABASE_URL setting: $CREDIT_DECISION_DATABASE_URL or $DATABASE_URL, "
    "else sqlite:///var/decisions.sqlite3].",
)
model_option = click.option("--model", "model_name", default=None, help="Model name [default: the champion].")
version_option = click.option(
    "--version", "model_version", default=None, help="Model version [default: the newest version of --model]."
)


def settings(
    model_store: Path | None = None,
    database_url: str | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
) -> Settings:
    """The service's settings with the command's options over them; a ClickException naming a bad one."""
    overrides: dict[str, Any] = {}
    if model_store is not None:
        overrides["MODEL_STORE"] = str(model_store)
    if database_url is not None:
        overrides["DATABASE_URL"] = database_url
    if model_name is not None:
        overrides["MODEL_NAME"] = model_name
        overrides["MODEL_VERSION"] = model_version or ""
    elif model_version is not None:
        raise click.UsageError("--version needs --model")
    try:
        return Settings.load(overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def decision_store(chosen: Settings) -> Iterator[DecisionStore]:
    """The decision store the settings name, closed afterwards; its errors as ClickExceptions."""
    try:
        store = open_decision_store(chosen.database_url)
    except (CreditDecisionError, ValueError, OSError) as exc:
        raise click.ClickException(f"cannot open the decision store: {exc}") from exc
    try:
        yield store
    except CreditDecisionError as exc:
        raise click.ClickException(exc.detail) from exc
    finally:
        store.close()


def cli_actor() -> dict[str, str]:
    """Who runs a command, as an audit event records it: the operating-system user and host."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {"cli": f"{user}@{socket.gethostname()}"}


@contextmanager
def lifecycle(chosen: Settings) -> Iterator[Lifecycle]:
    """The admin actions on the serving state of the deployment these settings name (its decision store and
    model store); errors as ClickExceptions."""
    from model_store.store import ModelStore
    from service.decisions import new_decision_id, utc_now
    from service.models import ModelCache
    from service.serving import Lifecycle, Target

    models = ModelCache(ModelStore(chosen.model_store))
    pinned = None
    if chosen.model_name is not None:
        pinned = Target(*chosen.served_version(models.store))
    with decision_store(chosen) as store:
        yield Lifecycle(store=store, models=models, pinned=pinned, clock=utc_now, new_id=new_decision_id)


def record_event(chosen: Settings, kind: str, details: dict[str, Any]) -> str:
    """Append an admin audit event (not a control event) to the decision store's chain; returns a line saying
    where it was recorded, or why it could not be (the action itself is already done)."""
    from service.decisions import new_decision_id, utc_now
    from service.records.model import AuditEvent

    event = AuditEvent(new_decision_id(), utc_now(), kind, cli_actor(), details)
    try:
        with decision_store(chosen) as store:
            stored = store.append_event(event)
    except click.ClickException as exc:
        return f"warning: not recorded in the audit chain ({exc.message})"
    return f"recorded {kind} (audit event {event.event_id}, seq {stored.seq})"


def deployment_state(chosen: Settings) -> ServingState | None:
    """The serving state of an existing decision store (never creates a database); None without one."""
    url = chosen.database_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        return None
    try:
        with lifecycle(chosen) as lc:
            return lc.state()
    except click.ClickException:
        return None
