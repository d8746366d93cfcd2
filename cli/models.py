"""``credit-decision models``: list, show and verify model versions; promote, roll back, run a challenger in shadow.

The promotion commands change the deployment's serving state, recorded as audit events in the decision store's
hash chain (``--database-url``); running services follow it. Training's registry champion (``models champion``)
is what a deployment serves before any promotion is recorded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from cli.options import cli_actor, database_url_option, deployment_state, lifecycle, model_store_option, settings
from model_store.errors import ContractError
from model_store.store import ModelStore
from service.records.model import StoredEvent
from service.serving import Lifecycle, ServingState, Target


def _store(model_store: Path | None) -> ModelStore:
    return ModelStore(settings(model_store=model_store).model_store)


@click.group("models")
def models_group() -> None:
    """Inspect, verify and promote model versions."""


@models_group.command("list")
@model_store_option
@database_url_option
def list_command(model_store: Path | None, database_url: str | None) -> None:
    """List every model version: * the champion, ~ the challenger in shadow.

    The deployment's serving state is read from the decision store when it exists; without one, the champion
    is the model store's registry champion (what training promoted).
    """
    chosen = settings(model_store=model_store, database_url=database_url)
    store = ModelStore(chosen.model_store)
    names = store.names()
    if not names:
        click.echo(f"no model versions in {store.root}")
        return
    state = deployment_state(chosen)
    champion = store.champion() if state is None or state.champion is None else _pair(state.champion)
    challenger = None if state is None or state.challenger is None else _pair(state.challenger)
    click.echo(f"{'':2}{'name':<28}{'version':<9}{'family':<11}{'created_at':<27}{'holdout AUC':>11}")
    for name in names:
        for version in store.versions(name):
            m = store.manifest(name, version)
            auc = m.get("metrics", {}).get("holdout", {}).get("auc")
            mark = "* " if champion == (name, version) else "~ " if challenger == (name, version) else "  "
            auc_text = f"{auc:.4f}" if isinstance(auc, float) else "-"
            click.echo(
                f"{mark}{name:<28}{version:<9}{m.get('family', '-'):<11}{m.get('created_at', '-'):<27}{auc_text:>11}"
            )
    if state is not None and state.champion is not None and state.champion.policy:
        click.echo(f"the champion decides with the candidate policy {state.champion.policy}")
    if state is not None and state.policy_shadow:
        click.echo(f"candidate policy in shadow: {state.policy_shadow}")


def _pair(target: Target) -> tuple[str, str]:
    return target.name, target.version


@models_group.command("show")
@click.argument("name")
@click.argument("version", required=False)
@model_store_option
def show_command(name: str, version: str | None, model_store: Path | None) -> None:
    """Print a version's manifest (the latest version when VERSION is omitted)."""
    store = _store(model_store)
    try:
        versions = store.versions(name)
        if version is None and not versions:
            raise ContractError(f"no versions of model {name!r}")
        version = version or versions[-1]
        click.echo(json.dumps(store.manifest(name, version), indent=2, sort_keys=True))
    except ContractError as exc:
        raise click.ClickException(str(exc)) from exc


@models_group.command("verify")
@click.argument("name", required=False)
@click.argument("version", required=False)
@model_store_option
def verify_command(name: str | None, version: str | None, model_store: Path | None) -> None:
    """Recompute every file hash of one version (or all versions) and name any file that changed."""
    store = _store(model_store)
    targets: list[tuple[str, str]] = (
        [(name, version)]
        if name and version
        else [(n, v) for n in ([name] if name else store.names()) for v in store.versions(n)]
    )
    if not targets:
        raise click.ClickException(f"no model versions to verify in {store.root}")
    failed = 0
    for n, v in targets:
        try:
            problems = store.verify(n, v)
        except ContractError as exc:
            problems = [str(exc)]
        if problems:
            failed += 1
            for p in problems:
                click.echo(f"FAIL {n} {v}: {p}")
        else:
            click.echo(f"ok   {n} {v}")
    if failed:
        sys.exit(1)


def _announce(event: StoredEvent, state: ServingState) -> None:
    champion = "none" if state.champion is None else state.champion.label()
    challenger = "none" if state.challenger is None else state.challenger.label()
    click.echo(
        f"recorded {event.event.kind} (audit event {event.event.event_id}, seq {event.seq})\n"
        f"champion is now {champion}; challenger: {challenger}; policy in shadow: {state.policy_shadow or 'none'}\n"
        "running services switch within their poll interval (CREDIT_DECISION_SERVING_POLL_SECONDS, default 1 s)"
    )


def act(model_store: Path | None, database_url: str | None, action: Callable[[Lifecycle], StoredEvent]) -> None:
    """Run one admin action on the serving state of the deployment the options name, and say what it did."""
    with lifecycle(settings(model_store=model_store, database_url=database_url)) as lc:
        event = action(lc)
        _announce(event, lc.state())


@models_group.command("promote")
@click.argument("name")
@click.argument("version")
@click.option("--policy", default=None, help="Decide with this stored candidate policy instead of the version's own.")
@click.option("--note", default="", help="Why (kept in the audit event).")
@model_store_option
@database_url_option
def promote_command(
    name: str, version: str, policy: str | None, note: str, model_store: Path | None, database_url: str | None
) -> None:
    """Make a version the champion the deployment serves (an audit event in the decision store's chain).

    The version is loaded and self-checked first and must accept the same applicant fields as the champion.
    """
    target = Target(name, version, policy)
    act(model_store, database_url, lambda lc: lc.promote(target, actor=cli_actor(), note=note))


@models_group.command("rollback")
@click.option("--note", default="", help="Why (kept in the audit event).")
@model_store_option
@database_url_option
def rollback_command(note: str, model_store: Path | None, database_url: str | None) -> None:
    """Serve the previous champion again."""
    act(model_store, database_url, lambda lc: lc.rollback(actor=cli_actor(), note=note))


@models_group.command("shadow")
@click.argument("name", required=False)
@click.argument("version", required=False)
@click.option("--off", is_flag=True, help="Stop the challenger.")
@click.option("--note", default="", help="Why (kept in the audit event).")
@model_store_option
@database_url_option
def shadow_command(
    name: str | None, version: str | None, off: bool, note: str, model_store: Path | None, database_url: str | None
) -> None:
    """Run NAME VERSION as the challenger in shadow on every live decision (or stop it with --off)."""
    if off:
        if name is not None:
            raise click.UsageError("--off takes no NAME VERSION")
        act(model_store, database_url, lambda lc: lc.shadow_off(actor=cli_actor(), note=note))
        return
    if name is None or version is None:
        raise click.UsageError("give NAME VERSION of the challenger, or --off")
    target = Target(name, version)
    act(model_store, database_url, lambda lc: lc.shadow_on(target, actor=cli_actor(), note=note))


@models_group.command("serving")
@model_store_option
@database_url_option
def serving_command(model_store: Path | None, database_url: str | None) -> None:
    """Print the deployment's serving state (JSON)."""
    with lifecycle(settings(model_store=model_store, database_url=database_url)) as lc:
        click.echo(json.dumps(lc.state().view(), indent=2))


@models_group.command("champion")
@model_store_option
def champion_command(model_store: Path | None) -> None:
    """Print the champion; exit 1 when there is none."""
    champion = _store(model_store).champion()
    if champion is None:
        click.echo("no champion", err=True)
        sys.exit(1)
    click.echo(f"{champion[0]} {champion[1]}")
