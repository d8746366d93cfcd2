"""``credit-decision``: train, manage models, serve, audit."""

from __future__ import annotations

import importlib

import click

# (module, attribute) of each subcommand; modules are imported only to build the group,
# and each command imports its heavy dependencies (scikit-learn, onnxruntime) when it runs.
_COMMANDS = (
    ("training.cli", "train_command"),
    ("model_store.cli", "models_group"),
    ("service.cli", "serve_command"),
    ("service.cli", "keys_group"),
    ("service.records.cli", "audit_group"),
    ("service.batch", "score_command"),
    ("service.reports.cli", "report_command"),
    ("service.reports.cli", "outcomes_group"),
)


@click.group()
@click.version_option(package_name="credit-decision")
def main() -> None:
    """Explainable credit decisions: score, risk band, decision and exact reason codes."""


def _register() -> None:
    for module_name, attribute in _COMMANDS:
        main.add_command(getattr(importlib.import_module(module_name), attribute))


_register()
