"""``credit-decision train``: train both model families and write them into the model store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.options import model_store_option, settings


@click.command("train")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Training configuration YAML (paths inside are relative to it) "
    "[default: the `training` key of config/default.yaml].",
)
@model_store_option
@click.option("--version", default=None, help="Version to write (e.g. v7) [default: the next free version].")
@click.option(
    "--promote/--no-promote",
    default=None,
    help="Make the gbt version the champion [default: only if the store has no champion yet].",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse to train when a field alone nearly separates bad from good (target leakage) instead of warning.",
)
def train_command(
    config_path: Path | None,
    model_store: Path | None,
    version: str | None,
    promote: bool | None,
    quiet: bool,
    strict: bool,
) -> None:
    """Train the champion (gbt) and baseline (scorecard), prove their explanations, write two versions.

    Invalid data rows stop training unless the config's `dataset.on_invalid` is `drop`; warnings (dropped rows,
    possible target leakage) go to stderr.
    """
    from model_store.errors import ContractError
    from model_store.store import ModelStore

    try:
        from training.pipeline import train
    except ModuleNotFoundError as exc:  # the serving image carries no training extras
        raise click.ClickException(
            f"training needs the 'training' extras ({exc.name} is not installed): pip install 'credit-decision[training]'"
        ) from None

    from training.config import default_config_path

    store = ModelStore(settings(model_store=model_store).model_store)
    try:
        if config_path is None:
            config_path = default_config_path()
        result = train(
            config_path,
            store,
            version=version,
            progress=not quiet,
            promote_if_no_champion=promote is not False,
            strict=strict,
        )
        promoted = result.promoted
        if promote and not promoted:
            store.promote(
                result.champion.name, result.champion.version, note="promoted by credit-decision train --promote"
            )
            promoted = True
    except ContractError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    for v in result.versions:
        h = v.holdout
        p = v.parity
        click.echo(
            f"wrote {v.name} {v.version} -> {v.path}\n"
            f"  hold-out AUC {h['auc']:.4f}  Gini {h['gini']:.4f}  KS {h['ks']:.4f}  Brier {h['brier']:.4f}\n"
            f"  parity over {p['rows']} hold-out rows: probability {p['onnx_vs_sklearn_probability']:.1e}, "
            f"additivity {p['attribution_sum_vs_onnx_margin']:.1e}, shap {p['attributions_vs_shap']:.1e}"
        )
    if promoted:
        click.echo(f"champion: {result.champion.name} {result.champion.version}")
    else:
        current = store.champion()
        click.echo(
            f"not promoted: the store's champion stays {current[0]} {current[1]}; to serve the new version, "
            f"review its model card, then: credit-decision models promote {result.champion.name} "
            f"{result.champion.version} --model-store {store.root}"
            if current
            else "not promoted"
        )
    click.echo(f"done in {result.seconds:.1f} s")
