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
from typing import Any, TypeVar

import click

from service.config import ConfigError, Settings
from service.errors import CreditDecisionError
from service.records import DecisionStore, open_decision_store

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
