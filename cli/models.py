"""``credit-decision models``: list, show, verify and promote model versions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.options import model_store_option, settings
from model_store.errors import ContractError
from model_store.store import ModelStore


def _store(model_store: Path | None) -> ModelStore:
    return ModelStore(settings(model_store=model_store).model_store)


@click.group("models")
def models_group() -> None:
    """Inspect, verify and promote model versions."""


@models_group.command("list")
@model_store_option
def list_command(model_store: Path | None) -> None:
    """List every model version, marking the champion."""
    store = _store(model_store)
    champion = store.champion()
    names = store.names()
    if not names:
        click.echo(f"no model versions in {store.root}")
        return
    click.echo(f"{'':2}{'name':<28}{'version':<9}{'family':<11}{'created_at':<27}{'holdout AUC':>11}")
    for name in names:
        for version in store.versions(name):
            m = store.manifest(name, version)
            auc = m.get("metrics", {}).get("holdout", {}).get("auc")
            mark = "* " if champion == (name, version) else "  "
            auc_text = f"{auc:.4f}" if isinstance(auc, float) else "-"
            click.echo(
                f"{mark}{name:<28}{version:<9}{m.get('family', '-'):<11}{m.get('created_at', '-'):<27}{auc_text:>11}"
            )


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


@models_group.command("promote")
@click.argument("name")
@click.argument("version")
@click.option("--note", default="", help="Why this version is promoted (kept in the registry history).")
@model_store_option
def promote_command(name: str, version: str, note: str, model_store: Path | None) -> None:
    """Make a verified version the champion served by default."""
    store = _store(model_store)
    try:
        store.promote(name, version, note=note)
    except ContractError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"champion is now {name} {version}")


@models_group.command("champion")
@model_store_option
def champion_command(model_store: Path | None) -> None:
    """Print the champion; exit 1 when there is none."""
    champion = _store(model_store).champion()
    if champion is None:
        click.echo("no champion", err=True)
        sys.exit(1)
    click.echo(f"{champion[0]} {champion[1]}")
