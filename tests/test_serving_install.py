"""The serving install and the container image, without Docker.

The machines that run these tests have no Docker daemon and cannot pull base images, so the image is never
built here. Instead this module reads the Dockerfile and does what it does: it copies the files its COPY lines
name, runs its pip install lines in a fresh Python 3.11 virtualenv, checks that the training packages cannot
be imported there, and runs its CMD (gunicorn with the production config) and HEALTHCHECK with its ENV as a
non-root user, over a read-only copy of a really trained model store, and decides an application end to end.
The Dockerfile is parsed, not copied: if it changes, these tests run the changed lines (or fail on them).
"""

from __future__ import annotations

import configparser
import contextlib
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
SERVING_REQUIREMENTS = REPO / "requirements" / "serving.txt"
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
# import names of the offline-training packages; none may be installed in, or imported by, the serving install
TRAINING_ONLY = ("sklearn", "shap", "skl2onnx", "optbinning", "pandas")
TRAINING_DISTRIBUTIONS = ("scikit-learn", "shap", "skl2onnx", "optbinning", "pandas", "onnx", "scipy")
NOBODY = 65534


# ---- the Dockerfile, parsed ---------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction of a stage: keyword (upper case) and its arguments, continuation lines joined."""

    stage: str
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON array of a CMD / HEALTHCHECK CMD; fails on the shell form."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text[text.index(" CMD ") + len(" CMD ") :]
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(x, str) for x in value), self
        return value


def dockerfile() -> list[Instruction]:
    """Every instruction of the Dockerfile, each with the name of its stage (``AS name`` of its FROM)."""
    instructions: list[Instruction] = []
    stage = ""
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        arguments = " ".join(arguments.split())
        if keyword.upper() == "FROM":
            words = arguments.split()
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else words[0]
        instructions.append(Instruction(stage, keyword.upper(), arguments))
    return instructions


def stage(name: str) -> list[Instruction]:
    """The instructions of one stage."""
    return [i for i in dockerfile() if i.stage == name]


def final_stage() -> list[Instruction]:
    """The instructions of the last stage: what the image runs."""
    return stage(dockerfile()[-1].stage)


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    """ENV KEY=VALUE ... of some instructions, in order (``$PATH`` left as written)."""
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.arguments):
                key, sep, value = word.partition("=")
                assert sep, f"ENV without '=': {instruction.arguments}"
                env[key] = value
    return env


def pip_commands(instructions: list[Instruction]) -> list[list[str]]:
    """The ``pip ...`` commands of the RUN lines (split at ``&&``), as argument lists."""
    commands = []
    for instruction in instructions:
        if instruction.keyword == "RUN":
            for part in instruction.arguments.split("&&"):
                words = shlex.split(part)
                if words and words[0] == "pip":
                    commands.append(words)
    return commands


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    """The one instruction with ``keyword``."""
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


# ---- the requirement files ----------------------------------------------------------------------
def pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file (an environment marker may follow), by normalised name."""
    found = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)(\s*;\s*[^;]+)?", line)
            assert match, f"{path.name}: not an exact pin: {line!r}"
            found[normalise(match.group(1))] = match.group(3)
    return found


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def install_requires() -> dict[str, str]:
    """setup.cfg's runtime pins."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg", encoding="utf-8")
    found = {}
    for raw in config["options"]["install_requires"].splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[normalise(name.split("[")[0])] = version
    return found


# ---- fast checks of the files -------------------------------------------------------------------
def test_serving_requirements_pin_the_runtime_and_nothing_for_training() -> None:
    serving = pins(SERVING_REQUIREMENTS)
    constraints = pins(CONSTRAINTS)
    # the same versions as the development install
    assert {
        name: (version, constraints.get(name)) for name, version in serving.items() if constraints.get(name) != version
    } == {}
    # every runtime dependency of setup.cfg, at its pin
    assert {
        name: (version, serving.get(name))
        for name, version in install_requires().items()
        if serving.get(name) != version
    } == {}
    assert sorted(set(serving) & set(TRAINING_DISTRIBUTIONS)) == []


def test_dockerfile_installs_serving_requirements_and_runs_the_production_config() -> None:
    from cli.serve import APP_FACTORY, GUNICORN_CONF

    build = stage("build")
    assert build, "the Dockerfile has no stage named build"
    # exactly: the serving requirements without resolving anything else, then the project without dependencies
    assert pip_commands(build) == [
        ["pip", "install", "--no-deps", "-r", "requirements/serving.txt"],
        ["pip", "install", "--no-deps", "."],
        ["pip", "check"],
    ]
    runtime = final_stage()
    assert runtime[0].stage != "build"
    assert pip_commands(runtime) == []  # nothing installed into the image that the build stage did not check
    copies = [i.arguments for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]  # no model, key or record file baked in
    assert all(
        f"python:{sys.version_info.major}.{sys.version_info.minor}" in i.arguments
        for i in dockerfile()
        if i.keyword == "FROM"
    )

    user = only(runtime, "USER").arguments
    assert user not in ("root", "0")
    assert (
        user.split(":")[0]
        in only([i for i in runtime if i.keyword == "RUN" and "useradd" in i.arguments], "RUN").arguments
    )

    env = env_of(runtime)
    assert env["CREDIT_DECISION_ENV"] == "production"  # refuses to start without a key file, refuses plain keys
    assert not any(
        "API_KEYS=" in i.arguments or "KEY=" in i.arguments for i in dockerfile() if i.keyword in ("ENV", "ARG")
    )

    # CMD is the command `credit-decision serve` execs: gunicorn, the production config, the app factory
    cmd = only(runtime, "CMD").exec_form()
    assert cmd[0] == "gunicorn"
    assert cmd[cmd.index("--config") + 1] == "python:service.gunicorn_conf"
    assert GUNICORN_CONF == REPO / "service" / "gunicorn_conf.py"
    assert cmd[-1] == APP_FACTORY
    health = only(runtime, "HEALTHCHECK").exec_form()
    assert any("/readyz" in word for word in health)
    # the build context leaves out what must not reach an image (the test's copy leaves out the same bytecode)
    ignored = set((REPO / ".dockerignore").read_text(encoding="utf-8").splitlines())
    assert {"**/__pycache__", ".venv", "var", "model_store/*/"} <= ignored


# ---- the image's install, run ---------------------------------------------------------------------
@dataclass(frozen=True)
class Image:
    """The virtualenv the Dockerfile would build, and the folders standing in for the image's mounts."""

    root: Path
    venv: Path
    data: Path  # the records volume (owned by the user the server runs as)
    uid: int | None  # run the server as this user (None: as the test's own, non-root, user)

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def python(self, code: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run Python code in the virtualenv, in a clean environment (no PYTHONPATH: the installed code only)."""
        return subprocess.run(
            [str(self.bin / "python"), "-c", code],
            cwd=self.data,
            env={**self.base_env(), **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the installed ``credit-decision`` command."""
        return subprocess.run(
            [str(self.bin / "credit-decision"), *args],
            cwd=self.data,
            env=self.base_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def base_env(self) -> dict[str, str]:
        return {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.data)}


def _copy_context(target: Path) -> None:
    """Lay out the build stage's COPY sources under ``target`` as Docker would (WORKDIR = target)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for instruction in stage("build"):
        if instruction.keyword != "COPY":
            continue
        *sources, dest = shlex.split(instruction.arguments)
        assert not any(s.startswith("--") for s in sources), instruction
        matches = [Path(m) for s in sources for m in sorted(glob.glob(str(REPO / s)))]
        assert matches, f"COPY names nothing that exists: {instruction.arguments}"
        dest_path = target / dest
        for match in matches:
            if match.is_dir():
                shutil.copytree(match, dest_path, ignore=ignore, dirs_exist_ok=True)
            elif dest.endswith("/") or len(matches) > 1:
                dest_path.mkdir(parents=True, exist_ok=True)
                shutil.copy2(match, dest_path / match.name)
            else:
                dest_path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(match, dest_path)


def _world_executable(path: Path) -> bool:
    """Whether any user may run ``path``: it and every folder above it are executable by others."""
    real = path.resolve()
    return real.is_file() and all(p.stat().st_mode & stat.S_IXOTH for p in (real, *real.parents))


def _interpreter() -> tuple[str, int | None]:
    """A Python 3.11 for the virtualenv, and the user to serve as: ``nobody`` when the tests run as root and a
    Python 3.11 that user can run exists (this one may live under root's home), else the tests' own user."""
    if os.geteuid() != 0:
        return sys.executable, None
    candidates = [Path(sys._base_executable), Path("/usr/local/bin/python3.11"), Path("/usr/bin/python3.11")]
    for candidate in candidates:
        if _world_executable(candidate):
            return str(candidate), NOBODY
    return sys.executable, None  # served as root: the store's unchanged contents are still checked


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    """A fresh virtualenv with what the Dockerfile's build stage installs (from the package index; ~30 s)."""
    root = Path(tempfile.mkdtemp(prefix="credit-decision-image-"))
    root.chmod(0o755)  # the server runs as another user: it must reach the venv and the store
    try:
        venv = root / "venv"
        interpreter, uid = _interpreter()
        subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=120)
        context = root / "context"
        context.mkdir()
        _copy_context(context)
        build_env = {k: v for k, v in env_of(stage("build")).items() if k != "PATH"}
        env = {**os.environ, **build_env, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
        env.pop("PYTHONPATH", None)
        env.pop("PIP_CONSTRAINT", None)
        for command in pip_commands(stage("build")):
            done = subprocess.run(
                [str(venv / "bin" / "python"), "-m", *command, "--quiet"]
                if command[1] == "install"
                else [str(venv / "bin" / "python"), "-m", *command],
                cwd=context,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        data = root / "data"
        data.mkdir()
        if uid is not None:
            os.chown(data, uid, uid)
        data.chmod(0o750 if uid is not None else 0o700)
        yield Image(root, venv, data, uid)
    finally:
        for folder, _dirs, _files in os.walk(root):  # the read-only store, when not root
            Path(folder).chmod(stat.S_IRWXU | Path(folder).stat().st_mode)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_training_packages_are_not_installed_and_not_imported(image: Image) -> None:
    for module in TRAINING_ONLY:
        done = image.python(f"import {module}")
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, (module, done.stderr)
    # the app factory and every command module import without them, and pull none of them in
    done = image.python(
        "import sys, service.app, service.gunicorn_conf, cli.main\n"
        "from service.reports import render, challenger_render\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {(*TRAINING_ONLY, 'onnx', 'scipy')!r}))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
    # training says what is missing instead of a traceback
    done = image.command("train", "--model-store", str(image.data / "store"))
    assert done.returncode == 1 and "training needs the 'training' extras" in done.stderr, done.stderr
    assert "site-packages" in image.python("import service; print(service.__file__)").stdout  # the installed code


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(url: str, body: Any = None, key: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@contextlib.contextmanager
def _serve(image: Image, env: dict[str, str]) -> Iterator[str]:
    """The image's CMD, as its USER would run it (``nobody`` when the test is root), until ready."""
    log_path = image.root / "gunicorn.log"
    cmd = only(final_stage(), "CMD").exec_form()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd,
            cwd=image.data,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=image.uid,
            group=image.uid,
            extra_groups=[] if image.uid is not None else None,
            start_new_session=True,
            executable=shutil.which(cmd[0], path=env["PATH"]),
        )
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            with contextlib.suppress(OSError):
                if _call(f"{base}/readyz")[0] == 200:
                    break
            assert time.monotonic() < deadline, "not ready:\n" + log_path.read_text(errors="replace")
            time.sleep(0.2)
        yield base
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    log_text = log_path.read_text(errors="replace")
    assert "Traceback" not in log_text, log_text


@pytest.mark.slow
@pytest.mark.e2e
def test_the_images_command_decides_end_to_end(
    image: Image, api_model_store: Path, example_application: dict[str, Any]
) -> None:
    # the model store trained by the tests, mounted read-only (owned by root: `nobody` cannot write it either)
    store = image.root / "model_store"
    shutil.copytree(api_model_store, store)
    for folder, dirs, files in os.walk(store):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    store.chmod(store.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

    runtime_env = env_of(final_stage())
    # the settings the image fixes, mapped onto this machine's folders; everything else as the Dockerfile says
    mounted = {
        "CREDIT_DECISION_MODEL_STORE": "/srv/model_store",
        "CREDIT_DECISION_API_KEYS_FILE": "/run/secrets/api_keys",
        "DATABASE_URL": "sqlite:////var/lib/credit-decision/decisions.sqlite3",
        "HOST": "0.0.0.0",
    }
    assert {k: runtime_env.get(k) for k in mounted} == mounted
    database_url = f"sqlite:///{image.data / 'decisions.sqlite3'}"
    key_file = image.root / "api_keys"

    # keys are created with the installed command (its hash goes to the key file, the creation into the chain)
    keys = {}
    for role in ("scorer", "auditor"):
        done = image.command("keys", "create", "--role", role, "--file", str(key_file), "--database-url", database_url)
        assert done.returncode == 0, done.stderr
        keys[role] = done.stdout.strip().splitlines()[-1]
        assert keys[role] not in key_file.read_text()  # only the hash is kept
    key_file.chmod(0o444)
    if image.uid is not None:
        for path in image.data.iterdir():  # the records the command created belong to the server's user
            os.chown(path, image.uid, image.uid)
    listed = image.command("models", "list", "--model-store", str(store))
    assert listed.returncode == 0 and "gbt" in listed.stdout, listed.stderr

    env = {
        **runtime_env,
        "PATH": runtime_env["PATH"]
        .replace("/opt/venv/bin", str(image.bin))
        .replace("$PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": "/nonexistent",  # the image's user has no home
        "LANG": "C.UTF-8",
        "CREDIT_DECISION_MODEL_STORE": str(store),
        "CREDIT_DECISION_API_KEYS_FILE": str(key_file),
        "DATABASE_URL": database_url,
        "HOST": "127.0.0.1",  # the image listens on every interface; a test only on the loopback
        "PORT": str(_free_port()),
    }
    with _serve(image, env) as base:
        status, _, raw = _call(f"{base}/readyz")
        assert status == 200, raw
        assert json.loads(raw)["status"] == "ready"
        # HEALTHCHECK, as Docker would run it inside the container
        health = only(final_stage(), "HEALTHCHECK").exec_form()
        done = subprocess.run(health, env=env, cwd=image.data, capture_output=True, text=True, timeout=30, check=False,
                              executable=shutil.which(health[0], path=env["PATH"]), user=image.uid)  # fmt: skip
        assert done.returncode == 0, done.stderr

        status, _, raw = _call(f"{base}/v1/decisions", example_application, keys["scorer"])
        assert status == 201, raw
        decision = json.loads(raw)
        assert decision["decision"] in ("approve", "refer", "decline")
        assert 300 <= decision["score"]["value"] <= 850
        assert decision["reasons"] and all(r["code"] and r["customer_text"] for r in decision["reasons"])
        assert _call(f"{base}/v1/decisions", example_application)[0] == 401

        # the record, and a report rendered with charts (matplotlib is a serving dependency)
        status, _, raw = _call(f"{base}/v1/decisions/{decision['decision_id']}", key=keys["auditor"])
        assert status == 200, raw
        day = date.fromisoformat(decision["created_at"][:10])
        period = f"from={day}&to={day + timedelta(days=1)}"
        status, headers, raw = _call(f"{base}/v1/reports?{period}&format=pdf", key=keys["auditor"])
        assert status == 200, raw[:500]
        assert headers["Content-Type"].startswith("application/pdf") and raw.startswith(b"%PDF")

    # the chain verifies with the installed command: key events and the decision
    done = image.command("audit", "verify", "--database-url", database_url)
    assert done.returncode == 0, done.stdout + done.stderr
    # nothing was written into the read-only store
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == sorted(
        p.relative_to(api_model_store) for p in api_model_store.rglob("*")
    )


def test_a_new_sqlite_decision_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    from service.records import open_decision_store

    folder = tmp_path / "records"
    store = open_decision_store(f"sqlite:///{folder / 'decisions.sqlite3'}")
    try:
        assert store.verify_chain().ok  # a connection is open: the WAL and shared-memory files exist
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    finally:
        store.close()
    assert {"decisions.sqlite3", "decisions.sqlite3-wal", "decisions.sqlite3-shm"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o600)
