"""``credit-decision policies``: store candidate policies (with their reason catalogs) and run one in shadow.

A candidate policy is validated against the champion's feature spec and kept in the model store under its
``policy_version``, immutable. In shadow it decides every live request with the champion's model, recorded
beside the decision and never applied; promote it with ``credit-decision models promote NAME VERSION --policy P``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.models import act
from cli.options import cli_actor, database_url_option, model_store_option, settings
from model_store.errors import ContractError
from model_store.store import ModelStore


@click.group("policies")
def policies_group() -> None:
    """Candidate policies: store one, list them, run one in shadow."""


@policies_group.command("add")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True)
@click.option(
    "--reason-codes", "catalog_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True
)
@click.option("--note", default="", help="Why (kept in the policy's manifest and the audit event).")
@model_store_option
@database_url_option
def add_command(
    policy_file: Path, catalog_file: Path, note: str, model_store: Path | None, database_url: str | None
) -> None:
    """Validate a policy and its reason catalog against the champion's feature spec and store them."""
    policy, catalog = policy_file.read_bytes(), catalog_file.read_bytes()
    act(model_store, database_url, lambda lc: lc.add_policy(policy, catalog, actor=cli_actor(), note=note))


@policies_group.command("list")
@model_store_option
def list_command(model_store: Path | None) -> None:
    """List the stored candidate policies (JSON lines)."""
    store = ModelStore(settings(model_store=model_store).model_store)
    versions = store.policy_versions()
    if not versions:
        click.echo(f"no candidate policies in {store.root}")
    for version in versions:
        try:
            manifest = store.policy_manifest(version)
        except ContractError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(json.dumps(manifest, sort_keys=True))


@policies_group.command("shadow")
@click.argument("policy_version", required=False)
@click.option("--off", is_flag=True, help="Stop the candidate policy.")
@click.option("--note", default="", help="Why (kept in the audit event).")
@model_store_option
@database_url_option
def shadow_command(
    policy_version: str | None, off: bool, note: str, model_store: Path | None, database_url: str | None
) -> None:
    """Run POLICY_VERSION in shadow on the champion's model (or stop it with --off)."""
    if off:
        if policy_version is not None:
            raise click.UsageError("--off takes no POLICY_VERSION")
        act(model_store, database_url, lambda lc: lc.policy_shadow_off(actor=cli_actor(), note=note))
        return
    if policy_version is None:
        raise click.UsageError("give the POLICY_VERSION to run in shadow, or --off")
    version = policy_version
    act(model_store, database_url, lambda lc: lc.policy_shadow_on(version, actor=cli_actor(), note=note))
