"""The deployment files parse, and say only what the code understands: commands the CLI has, environment names the
settings (or gunicorn's config) read, the probes' paths, the Dask scheduler's address. There is no Docker daemon or
cluster here, so they are checked as data, so they cannot drift from the code silently."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import yaml

from cli.main import main as cli
from service.config import ENV_PREFIX, KEYS

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "deploy" / "compose.yaml"
KUBERNETES = REPO / "deploy" / "kubernetes" / "credit-decision.yaml"
#: Names read outside ``service.config`` (gunicorn's config and ``credit-decision serve``), each with where.
OTHER_NAMES = {
    "DATABASE_URL": "service/config.py",
    "HOST": "service/gunicorn_conf.py",
    "PORT": "service/gunicorn_conf.py",
    "WEB_CONCURRENCY": "service/gunicorn_conf.py",
}


def _check_env(names: set[str], where: str) -> None:
    for name in names:
        if name.startswith(ENV_PREFIX):
            assert name[len(ENV_PREFIX) :] in KEYS, f"{where}: {name} is not a setting of service/config.py"
        else:
            assert name in OTHER_NAMES, f"{where}: {name} is read by nothing"
            source = (REPO / OTHER_NAMES[name]).read_text(encoding="utf-8")
            assert re.search(rf"[\"']{name}[\"']", source), f"{where}: {OTHER_NAMES[name]} no longer reads {name}"


def _check_command(argv: list[str], where: str) -> None:
    """``credit-decision ...`` names a real command with real options; ``dask ...`` is the scheduler or a worker."""
    if argv[0] == "dask":
        assert argv[1] in ("scheduler", "worker"), where
        if argv[1] == "worker":
            assert re.fullmatch(r"tcp://dask-scheduler:8786", argv[2]), f"{where}: worker of {argv[2]}"
        return
    assert argv[0] == "credit-decision", where
    assert "credit-decision = cli.main:main" in (REPO / "setup.cfg").read_text()
    command = cli.commands.get(argv[1])
    assert isinstance(command, click.Command), f"{where}: no command {argv[1]!r}"
    options = {opt for param in command.params for opt in param.opts}
    for flag in (a for a in argv[2:] if a.startswith("--")):
        assert flag in options, f"{where}: {argv[1]} has no option {flag}"
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    positional = [a for a, before in zip(argv[2:], ["", *argv[2:]], strict=False)
                  if not a.startswith("--") and not (before.startswith("--") and _takes_value(command, before))]  # fmt: skip
    assert len(positional) == len(arguments), f"{where}: {argv[1]} takes {len(arguments)} arguments"


def _takes_value(command: click.Command, flag: str) -> bool:
    param = next((p for p in command.params if flag in p.opts), None)
    return isinstance(param, click.Option) and not param.is_flag


def test_compose_file_services_commands_and_environment() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services: dict[str, Any] = compose["services"]
    assert {"postgres", "api", "lb", "dask-scheduler", "dask-worker", "score"} <= set(services)
    assert services["api"]["deploy"]["replicas"] >= 2 and services["dask-worker"]["deploy"]["replicas"] >= 1
    for name, service in services.items():
        if name in ("postgres", "lb"):
            continue
        _check_command(service["command"], f"compose {name}")
        _check_env(set(service.get("environment", {})), f"compose {name}")
    api = services["api"]["environment"]
    # replicas share the PostgreSQL store (never a per-container SQLite file) and read the model store read-only
    assert api["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in api["DATABASE_URL"]
    assert api["CREDIT_DECISION_ENV"] == "production" and "CREDIT_DECISION_API_KEYS" not in api
    assert services["api"]["expose"] == [api["PORT"]]
    assert "model-store:/srv/model_store:ro" in services["api"]["volumes"]
    assert api["CREDIT_DECISION_MODEL_STORE"] == "/srv/model_store"
    assert "server api:8000;" in (REPO / "deploy" / "nginx.conf").read_text()
    assert services["dask-scheduler"]["ports"][0].startswith("8786:")


def test_kubernetes_example_deployments_probes_and_environment() -> None:
    documents = [d for d in yaml.safe_load_all(KUBERNETES.read_text(encoding="utf-8")) if d]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        by_kind.setdefault(document["kind"], []).append(document)
    assert {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim", "Job"} <= set(by_kind)
    config = by_kind["ConfigMap"][0]["data"]
    _check_env(set(config), "kubernetes ConfigMap")
    claims = {c["metadata"]["name"] for c in by_kind["PersistentVolumeClaim"]}
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    health = (REPO / "service" / "api" / "health.py").read_text()
    workloads = [*by_kind["Deployment"], *by_kind["Job"]]
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        for claim in (
            v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v
        ):
            assert claim in claims, f"{name}: no claim {claim}"  # fmt: skip
        for container in pod["containers"]:
            _check_command(container["command"], f"kubernetes {name}")
            _check_env({e["name"] for e in container.get("env", [])}, f"kubernetes {name}")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe in container:
                    path = container[probe]["httpGet"]["path"]
                    assert f'route("{path}"' in health, f"{name}: the app has no {path}"
                    assert container[probe]["httpGet"]["port"] == container["ports"][0]["containerPort"]
            port = {e["name"]: e["value"] for e in container.get("env", [])}.get("PORT")
            if port is not None:
                assert int(port) == container["ports"][0]["containerPort"]
                matching = [
                    s for s in services.values() if s["spec"]["selector"] == workload["spec"]["selector"]["matchLabels"]
                ]
                assert matching and matching[0]["spec"]["ports"][0]["targetPort"] == int(port)  # fmt: skip
    api = next(d for d in by_kind["Deployment"] if d["metadata"]["name"] == "credit-decision-api")
    assert api["spec"]["replicas"] >= 2
    assert "dask-scheduler" in services and services["dask-scheduler"]["spec"]["ports"][0]["port"] == 8786
