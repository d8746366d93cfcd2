"""``credit-decision``: train, manage models, serve, audit."""

from __future__ import annotations

import importlib

import click

# (module, attribute) of each subcommand; modules are imported only to build the group,
# and each command imports its heavy dependencies (scikit-learn, onnxruntime) when it runs.
_COMMANDS = (
    ("cli.train", "train_command"),
    ("cli.models", "models_group"),
    ("cli.policies", "policies_group"),
    ("cli.serve", "serve_command"),
    ("cli.serve", "keys_group"),
    ("cli.audit", "audit_group"),
    ("cli.score", "score_command"),
    ("cli.report", "report_command"),
    ("cli.report", "compare_command"),
    ("cli.report", "outcomes_group"),
)


@click.group()
@click.version_option(package_name="credit-decision")
def main() -> None:
    """Explainable credit decisions: score, risk band, decision and exact reason codes."""


def _register() -> None:
    for module_name, attribute in _COMMANDS:
        main.add_command(getattr(importlib.import_module(module_name), attribute))


_register()
