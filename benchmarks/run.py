"""``make bench``: load-test the service against its floors and a naive reference; write docs/PERFORMANCE.md.

Everything runs on this machine, side by side, in one run:

1. train the default model and build the production-size model (``benchmarks.prodmodel``) into a
   temporary model store;
2. batch path: ``credit-decision score`` on a generated CSV (1 and 2 worker processes);
3. in-process micro-benchmarks of every stage of a decision and a cProfile of the full request
   (``benchmarks.micro``);
4. HTTP: each app is served by gunicorn with the production config (``service/gunicorn_conf.py``,
   2 workers of its worker class: gthread with ``--threads`` request threads, sync with ``--threads 1``) on a free loopback port and driven by wrk (``benchmarks/wrk/post.lua``) at 1, 4
   and 16 connections, several runs each; the full decisions also at about half of their peak
   throughput (``benchmarks/wrk/paced.lua``); then the resident set of every worker is read.

Apps: (a) Flask JSON echo, (b) score only, (c) the full decision (the real service: validation,
rules, score, exact reasons, durable SQLite record), (d) naive scikit-learn + shap per request,
and the full decision and score only with the production-size model.
All load goes to 127.0.0.1; every server is stopped (process group) on exit.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import micro, recourse_bench

REPO = Path(__file__).resolve().parents[1]
WRK = shutil.which("wrk") or "/usr/bin/wrk"
LUA = REPO / "benchmarks" / "wrk"
#: The PostgreSQL server the full decision on PostgreSQL is measured against (a fresh schema, dropped at exit).
PG_URL = os.environ.get("DATABASE_URL_BENCH", "postgresql://postgres@127.0.0.1:5432/test")
OUTPUT = REPO / "docs" / "PERFORMANCE.md"
LEVELS = (1, 4, 16)
MICRO_ROUNDS = 2  # alternating micro-benchmark rounds per revision against a baseline
READY_TIMEOUT_S = 180.0
BATCH_ROWS = 200_000
LIBRARIES = ("flask", "gunicorn", "werkzeug", "marshmallow", "numpy", "onnxruntime", "scikit-learn", "shap")

TARGETS = {
    "full_decision_p99_half_peak_ms": 3.0,
    "prod_full_decision_p99_half_peak_ms": 15.0,
    "max_latency_ms": 100.0,
    "full_over_echo": 0.5,
    "full_over_score_cost": 1.15,
    "full_over_naive": 3.0,
    "batch_rows_per_s": 50_000.0,
    "rss_mb": 200.0,
}


@dataclass(frozen=True)
class App:
    """One app under load."""

    key: str
    label: str
    spec: str  # gunicorn APP_MODULE
    path: str
    bodies: Path
    env: dict[str, str]
    levels: tuple[int, ...] = LEVELS
    half_peak: bool = False
    api_key: str = ""
    root: Path = REPO  # the source tree served (another revision's worktree for --baseline)


@dataclass
class Run:
    """One wrk run."""

    connections: int
    rps: float
    latency_us: dict[str, float]
    errors: int
    requests: int = 0


@dataclass
class Level:
    """Several runs at one load; medians over runs, worst max."""

    connections: int
    runs: list[Run]
    delay_ms: int | None = None
    #: (shadow decisions recorded, requests skipped) over this level's runs, for an app with shadows
    shadowed: tuple[int, int] | None = None
    #: the workers' own CPU time (user + system) per request over this level's runs, µs
    cpu_us: float | None = None

    def median(self, key: str) -> float:
        return statistics.median(r.latency_us[key] for r in self.runs) / 1000.0

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def max_ms(self) -> float:
        return max(r.latency_us["max"] for r in self.runs) / 1000.0

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)


@dataclass
class AppResult:
    """Everything measured for one app."""

    app: App
    levels: list[Level] = field(default_factory=list)
    half: Level | None = None
    half_target_rps: float = 0.0
    rss_mb: list[float] = field(default_factory=list)
    hwm_mb: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    record_bytes: tuple[int, float, float] | None = None  # SQLite store: records, mean payload, mean whole row

    def at(self, connections: int) -> Level:
        return next(level for level in self.levels if level.connections == connections)

    @property
    def peak_rps(self) -> float:
        return max(level.rps for level in self.levels)

    @property
    def max_ms(self) -> float:
        levels = [*self.levels, *([self.half] if self.half else [])]
        return max(level.max_ms for level in levels)


# ---- processes ---------------------------------------------------------------------------------
def worker_kind() -> str:
    """The gunicorn workers the config runs with this environment: gthread with N threads, or sync."""
    threads = int(os.environ.get("GUNICORN_THREADS", "1"))
    return f"gthread, {threads} threads each" if threads > 1 else "sync"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gunicorn(app: App, workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Serve ``app`` with the production gunicorn config (its worker class and threads, ``GUNICORN_THREADS`` of the
    app's environment) and 2 workers; stop the process group after."""
    port = free_port()
    log = open(workdir / f"gunicorn-{app.key}.log", "wb")
    env = {
        **os.environ,
        **app.env,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"metrics-{app.key}"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(app.root), os.environ.get("PYTHONPATH")])),
    }
    (workdir / f"metrics-{app.key}").mkdir(exist_ok=True)
    cmd = [
        sys.executable, "-m", "gunicorn", "-c", str(app.root / "service" / "gunicorn_conf.py"),
        "--bind", f"127.0.0.1:{port}", "--workers", "2", app.spec,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=app.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, workdir / f"gunicorn-{app.key}.log")
        yield base, proc
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if it has not gone within 15 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll /readyz until it answers 200 (bounded); fail with the log's tail if the server dies."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{base} not ready after {READY_TIMEOUT_S:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def get_json(url: str) -> dict[str, Any]:
    """GET a JSON document (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))


def worker_pids(master: int) -> list[int]:
    """Child processes of the gunicorn master."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(entry.name))
    return sorted(pids)


def process_ticks(pids: Sequence[int]) -> int:
    """User + system CPU time of processes so far, in clock ticks (a process gone counts 0)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the whole line)
    return ticks


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of processes so far, in seconds."""
    return process_ticks(pids) / os.sysconf("SC_CLK_TCK")


@contextmanager
def cpu_account(master: int, level: Level) -> Iterator[None]:
    """Set ``level.cpu_us``, the workers' CPU time per request, over what runs in the block."""
    pids = worker_pids(master)
    cpu = cpu_seconds(pids)
    yield
    requests = sum(r.requests for r in level.runs)
    if requests:
        level.cpu_us = (cpu_seconds(pids) - cpu) / requests * 1e6


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024.0
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


# ---- wrk ---------------------------------------------------------------------------------------
def wrk(
    url: str, bodies: Path, connections: int, seconds: float, delay_ms: int | None = None, api_key: str = ""
) -> Run:
    """One wrk run; raises if wrk fails."""
    script = LUA / ("paced.lua" if delay_ms is not None else "post.lua")
    threads = min(2, connections)
    cmd = [
        WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s",
        "-s", str(script), url, "--", str(bodies), *([str(delay_ms)] if delay_ms is not None else []),
    ]  # fmt: skip
    env = {**os.environ, "BENCH_API_KEY": api_key}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False, env=env)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    data = json.loads(line[len("WRK_JSON ") :])
    errors = sum(int(v) for v in data["errors"].values())
    rps = data["requests"] / (data["duration_us"] / 1e6)
    return Run(connections, rps, {k: float(v) for k, v in data["latency_us"].items()}, errors, int(data["requests"]))


def measure(app: App, workdir: Path, runs: int, seconds: float, log: Any) -> AppResult:
    """Serve one app and drive it at every level (and at half its peak when asked)."""
    result = AppResult(app)
    with gunicorn(app, workdir) as (base, proc):
        result.info = get_json(base + "/readyz")
        url = base + app.path
        check_request(url, app)
        key = app.api_key
        wrk(url, app.bodies, 4, min(3.0, seconds), api_key=key)  # warm-up: both workers up, caches warm
        for connections in app.levels:
            before = shadow_counts(base)
            level = Level(connections, [])
            with cpu_account(proc.pid, level):
                level.runs = [wrk(url, app.bodies, connections, seconds, api_key=key) for _ in range(runs)]
            level.shadowed = shadow_delta(before, base)
            result.levels.append(level)
            log(
                f"  {app.key:>10} c={connections:<3} {level.rps:8.0f} req/s  p50 {level.median('p50'):6.2f}  "
                f"p99 {level.median('p99'):6.2f}  max {level.max_ms:7.2f} ms  errors {level.errors}"
            )
        if app.half_peak:
            result.half_target_rps = result.peak_rps / 2.0
            before = shadow_counts(base)
            result.half = half_peak(url, app, result.half_target_rps, result.at(1), runs, seconds, log)
            result.half.shadowed = shadow_delta(before, base)
            log(
                f"  {app.key:>10} half peak ({result.half_target_rps:.0f}/s): {result.half.rps:.0f} req/s "
                f"c={result.half.connections} delay={result.half.delay_ms} ms  p99 {result.half.median('p99'):.2f} ms"
            )
        for pid in worker_pids(proc.pid):
            rss, hwm = memory_mb(pid)
            result.rss_mb.append(rss)
            result.hwm_mb.append(hwm)
    database = app.env.get("DATABASE_URL", "")
    if database.startswith("sqlite:///"):
        result.record_bytes = record_bytes(Path(database[len("sqlite:///") :]))
    return result


def record_bytes(database: Path) -> tuple[int, float, float]:
    """(records, mean payload bytes, mean bytes of the whole row: every column as stored) of a SQLite store."""
    import sqlite3

    with closing(sqlite3.connect(database)) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(decision_records)")]
        row_bytes = " + ".join(f"COALESCE(LENGTH(CAST({c} AS BLOB)), 0)" for c in columns)
        count, payload, whole = conn.execute(
            f"SELECT COUNT(*), AVG(LENGTH(CAST(payload AS BLOB))), AVG({row_bytes}) FROM decision_records"
        ).fetchone()
    return int(count), float(payload or 0.0), float(whole or 0.0)


def shadow_counts(base: str) -> tuple[float, float]:
    """(shadow decisions recorded, requests skipped) so far, from the service's /metrics (zeros for other apps)."""
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError):
        return 0.0, 0.0
    done = skipped = 0.0
    for line in text.splitlines():
        if line.startswith("credit_decision_shadow_decisions_total"):
            done += float(line.rsplit(" ", 1)[1])
        elif line.startswith("credit_decision_shadow_skipped_total"):
            skipped += float(line.rsplit(" ", 1)[1])
    return done, skipped


def shadow_delta(before: tuple[float, float], base: str) -> tuple[int, int] | None:
    """What was shadowed and skipped since ``before`` (after the queues drain), or None if nothing was."""
    time.sleep(0.5)  # the shadow threads record what is still queued
    after = shadow_counts(base)
    done, skipped = int(after[0] - before[0]), int(after[1] - before[1])
    return (done, skipped) if done or skipped else None


def check_request(url: str, app: App) -> None:
    """One request with the first body must succeed (2xx), or the load numbers would measure an error path."""
    body = app.bodies.read_text(encoding="utf-8").splitlines()[0].encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if app.api_key:
        headers["Authorization"] = f"Bearer {app.api_key}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=30) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{app.key}: POST {url} answered {exc.code}: {exc.read()[:500]!r}") from exc
    if not 200 <= status < 300:
        raise RuntimeError(f"{app.key}: POST {url} answered {status}")


def half_peak(url: str, app: App, target: float, single: Level, runs: int, seconds: float, log: Any) -> Level:
    """Runs paced to about ``target`` req/s: c connections each waiting ``delay`` ms between requests.

    Throughput of a paced closed loop is about c / (latency + delay); starting from the latency at one
    connection, pick the smallest c with a delay of at least 1 ms, then correct the delay from measured
    short runs (at most four).
    """
    bodies = app.bodies
    latency_ms = single.median("p50")
    connections, delay = 1, 1
    for c in range(1, 65):
        delay = round(c * 1000.0 / target - latency_ms)
        if delay >= 1:
            connections = c
            break
    for _ in range(4):
        probe = wrk(url, bodies, connections, 2.0, delay, api_key=app.api_key)
        if abs(probe.rps - target) <= 0.1 * target:
            break
        cycle_ms = connections * 1000.0 / probe.rps  # measured latency + delay + timer slack
        new = max(1, round(delay + (connections * 1000.0 / target - cycle_ms)))
        if new == delay:
            break
        delay = new
    return Level(
        connections,
        [wrk(url, bodies, connections, seconds, delay, api_key=app.api_key) for _ in range(runs)],
        delay_ms=delay,
    )


# ---- inputs --------------------------------------------------------------------------------------
def default_config() -> Any:
    """The default example's training config (``config/default.yaml``)."""
    from training.config import TrainingConfig, default_config_path

    return TrainingConfig.load(default_config_path())


def default_model() -> str:
    """The default example's champion model name."""
    return f"{default_config().name}-gbt"


def default_spec() -> Any:
    """The default example's feature spec."""
    from model_store.spec import FeatureSpec

    return FeatureSpec.load(default_config().feature_spec)


def default_applications() -> list[dict[str, Any]]:
    """The default example's training rows as API applicants."""
    spec = default_spec()
    with open(default_config().data_csv, newline="", encoding="utf-8") as fh:
        return [spec.from_source_row(row) for row in csv.DictReader(fh)]


def write_bodies(path: Path, applicants: Sequence[dict[str, Any]], prefix: str) -> Path:
    """One decision request per line."""
    with open(path, "w", encoding="utf-8") as fh:
        for i, applicant in enumerate(applicants):
            fh.write(json.dumps({"application_id": f"{prefix}-{i:05d}", "applicant": applicant}) + "\n")
    return path


def batch_bench(store_root: Path, workdir: Path, rows: int, log: Any, tree: Path = REPO) -> dict[str, Any]:
    """``credit-decision score`` of a source tree on a generated CSV of ``rows`` of the default example's applications."""
    spec = default_spec()
    applicants = default_applications()
    source = workdir / "batch.csv"
    if not source.exists():
        with open(source, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh, lineterminator="\n")
            out.writerow(["application_id", *spec.field_names])
            for i in range(rows):
                a = applicants[i % len(applicants)]
                out.writerow([f"B{i:07d}", *("" if a[n] is None else a[n] for n in spec.field_names)])
    # the command and its store option as that tree spells them (before the commands moved to cli/: service.batch)
    command, store_option = (
        ("from cli.score import score_command; score_command()", "--model-store")
        if (tree / "cli" / "score.py").exists()
        else ("from service.batch import score_command; score_command()", "--store")
    )
    results: dict[str, Any] = {"rows": rows}
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for workers in (1, 2):
        target = workdir / f"batch-out-{workers}.csv"
        cmd = [
            sys.executable, "-c", command,
            "--input", str(source), "--output", str(target), store_option, str(store_root), "--model", default_model(),
            "--workers", str(workers), "--no-progress",
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=600, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"batch failed: {done.stderr[-3000:]}")
        summary = done.stderr.strip().splitlines()[-1]
        seconds = float(summary.split(" rows in ")[1].split(" s ")[0])
        results[f"workers_{workers}"] = {"seconds": seconds, "rows_per_s": rows / seconds, "wall_s": wall}
        log(f"  batch workers={workers}: {rows / seconds:,.0f} rows/s ({seconds:.2f} s; {wall:.2f} s with start-up)")
    return results


# ---- machine -------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    """CPU model, cores, memory, kernel, Python and library versions, date."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    versions = []
    for lib in LIBRARIES:
        try:
            versions.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{lib} (not installed)")
    wrk_version = subprocess.run([WRK, "-v"], capture_output=True, text=True, check=False)
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": ", ".join(versions),
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0]
        if (wrk_version.stdout or wrk_version.stderr)
        else "wrk",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load average": load_average(),
    }


def load_average() -> str:
    """1/5/15-minute load averages (other work on the machine skews every number)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# ---- main ----------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run everything and write the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="wrk runs per load level (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk run (default 5)")
    parser.add_argument("--quick", action="store_true", help="1 run of 2 s per level, smaller batch (a smoke test)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="report file (default docs/PERFORMANCE.md)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, stores)")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        default=os.environ.get("BENCH_BASELINE") or None,
        help="also measure the full decision and the decision core of another git revision (a worktree), "
        "side by side in the same run (env BENCH_BASELINE)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="request threads per gunicorn worker for every app (env GUNICORN_THREADS; default: the config's; "
        "1: gunicorn's sync worker)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        os.environ["GUNICORN_THREADS"] = str(args.threads)
    runs, seconds = (1, 2.0) if args.quick else (args.runs, args.seconds)
    if not Path(WRK).is_file():
        print("wrk is not installed: `make system-deps` (Debian package wrk)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    load_at_start = load_average()
    workdir = Path(tempfile.mkdtemp(prefix="credit-decision-bench-"))
    scratch: list[Path] = [workdir]
    scratch_trees: list[Path] = []
    pg_schemas: list[str] = []

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        from benchmarks import prodmodel
        from model_store.store import ModelStore
        from training.pipeline import train

        store_root = workdir / "store"
        log("training the default model ...")
        trained = train(default_config().path, ModelStore(store_root), progress=False)
        default_version = trained.champion.version
        log("building the production-size model ...")
        prod = prodmodel.build(store_root)
        log(f"  {prod.name} {prod.version}: {prod.n_trees} trees, {prod.n_leaves} leaves, {prod.n_columns} columns")

        log("batch ...")
        batch = batch_bench(store_root, workdir, 40_000 if args.quick else BATCH_ROWS, log)

        log("micro-benchmarks and profile ...")
        micro_results = micro.run_all(store_root, default_model(), default_version, workdir, quick=args.quick)
        log("recourse ...")
        micro_results["recourse"] = recourse_bench.run(
            store_root, default_model(), default_version, default_applications(), repeat=1 if args.quick else 3
        )
        prod_micro = micro.run_all(
            store_root, prod.name, prod.version, workdir, quick=args.quick, profile=False, applications=None
        )

        default_bodies = write_bodies(workdir / "bodies-default.jsonl", default_applications(), "D")
        from model_store.spec import FeatureSpec

        prod_spec = FeatureSpec.load(store_root / prod.name / prod.version / "feature_spec.yaml")
        import numpy as np

        prod_apps = prodmodel.applications(prod_spec, 500, np.random.default_rng(1))
        prod_bodies = write_bodies(workdir / "bodies-prod.jsonl", prod_apps, "SP")

        def model_env(name: str, version: str) -> dict[str, str]:
            return {"BENCH_MODEL_STORE": str(store_root), "BENCH_MODEL_NAME": name, "BENCH_MODEL_VERSION": version}

        def service_env(name: str, version: str, db: str, shm: bool = False) -> dict[str, str]:
            folder = Path(tempfile.mkdtemp(prefix="credit-decision-bench-", dir="/dev/shm")) if shm else workdir
            scratch.append(folder)
            return {
                "CREDIT_DECISION_API_KEYS_FILE": str(key_file),
                "CREDIT_DECISION_MODEL_STORE": str(store_root),
                "CREDIT_DECISION_MODEL_NAME": name,
                "CREDIT_DECISION_MODEL_VERSION": version,
                "DATABASE_URL": f"sqlite:///{folder / db}",
            }

        dv = default_version

        def postgres_env(name: str, version: str) -> dict[str, str]:
            """The full service on a fresh schema of the PostgreSQL server at DATABASE_URL_BENCH (dropped at exit)."""
            import psycopg

            schema = f"bench_run_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
            pg_schemas.append(schema)
            return {
                **service_env(name, version, "unused.sqlite3"),
                "DATABASE_URL": f"{PG_URL}?options=-csearch_path%3D{schema}",
            }

        def shadow_env(db: str) -> dict[str, str]:
            """The full service with the scorecard as challenger in shadow (recorded in its serving state)."""
            from model_store.store import ModelStore
            from service.decisions import new_decision_id, utc_now
            from service.models import ModelCache
            from service.records import open_decision_store
            from service.serving import Lifecycle, Target

            env = service_env(default_model(), dv, db)
            records = open_decision_store(env["DATABASE_URL"])
            try:
                Lifecycle(
                    store=records,
                    models=ModelCache(ModelStore(store_root)),
                    pinned=Target(default_model(), dv),
                    clock=utc_now,
                    new_id=new_decision_id,
                ).shadow_on(Target(trained.baseline.name, trained.baseline.version), actor={"cli": "benchmark"})
            finally:
                records.close()
            return env

        from service.auth import hash_key, new_key

        api_key = new_key()  # a scorer key for this run only
        key_file = workdir / "api_keys"
        key_file.write_text(f"scorer:{hash_key(api_key)}:benchmark\n", encoding="utf-8")
        key_file.chmod(0o600)
        naive_env = {**model_env(default_model(), dv), "OMP_NUM_THREADS": "1"}
        apps = [
            App("echo", "(a) Flask JSON echo", "benchmarks.apps:echo_app()", "/echo", default_bodies, {}),
            App("score", "(b) score only", "benchmarks.apps:score_app()", "/score", default_bodies, model_env(default_model(), dv)),
            App(
                "reasons", "(b+) score + exact reasons, no validation or record", "benchmarks.apps:reasons_app()",
                "/reasons", default_bodies, model_env(default_model(), dv), levels=(1, 4),
            ),
            App(
                "full", "(c) full decision", "service.app:create_app()", "/v1/decisions", default_bodies,
                service_env(default_model(), dv, "decisions-default.sqlite3"), half_peak=True, api_key=api_key,
            ),
            App(
                "full-shadow", "(c) full decision, challenger in shadow", "service.app:create_app()", "/v1/decisions",
                default_bodies, shadow_env("decisions-shadow.sqlite3"), half_peak=True, api_key=api_key,
            ),
            App(
                "full-shm", "(c) full decision, record on tmpfs (not durable; isolates fsync)", "service.app:create_app()",
                "/v1/decisions", default_bodies, service_env(default_model(), dv, "decisions-default.sqlite3", shm=True),
                levels=(1, 4), half_peak=True, api_key=api_key,
            ),
            App(
                "full-pg", "(c) full decision, PostgreSQL record", "service.app:create_app()", "/v1/decisions",
                default_bodies, postgres_env(default_model(), dv), levels=(4, 16), api_key=api_key,
            ),
            App("naive", "(d) naive sklearn + shap", "benchmarks.apps:naive_app()", "/naive", default_bodies, naive_env),
            App(
                "prod-score", "(b) score only, production-size", "benchmarks.apps:score_app()", "/score", prod_bodies,
                model_env(prod.name, prod.version), levels=(1, 4),
            ),
            App(
                "prod-full", "(c) full decision, production-size", "service.app:create_app()", "/v1/decisions",
                prod_bodies, service_env(prod.name, prod.version, "decisions-prod.sqlite3"), half_peak=True, api_key=api_key,
            ),
        ]  # fmt: skip
        baseline: dict[str, Any] | None = None
        if args.baseline:
            tree = baseline_worktree(args.baseline, workdir)
            scratch_trees.append(tree)
            log(f"baseline revision {args.baseline}: micro-benchmarks of both revisions, alternating ...")
            both = [
                revision_stages(root, store_root, default_model(), dv, workdir, args.quick)
                for _ in range(MICRO_ROUNDS)
                for root in (tree, REPO)
            ]
            baseline = {
                "revision": args.baseline,
                "commit": git("rev-parse", "--short", args.baseline),
                "stages": fastest(both[0::2]),
                "this": fastest(both[1::2]),
                "rounds": MICRO_ROUNDS,
                "batch": batch_bench(store_root, workdir, 40_000 if args.quick else BATCH_ROWS, log, tree=tree),
            }
            apps.insert(
                apps.index(next(a for a in apps if a.key == "full")) + 1,
                App(
                    "full-baseline", f"(c) full decision, revision {baseline['commit']}", "service.app:create_app()",
                    "/v1/decisions", default_bodies, service_env(default_model(), dv, "decisions-baseline.sqlite3"),
                    api_key=api_key, root=tree,
                ),
            )  # fmt: skip
        results: dict[str, AppResult] = {}
        for app in apps:
            log(f"HTTP {app.label} ...")
            results[app.key] = measure(app, workdir, runs, seconds, log)

        report = render(
            {**machine(), "load_at_start": load_at_start},
            results,
            batch,
            micro_results,
            prod_micro,
            prod,
            runs,
            seconds,
            time.perf_counter() - started,
            baseline,
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
        print(summary_text(results, batch, prod_micro))
        log(f"wrote {args.output}")
    finally:
        if pg_schemas:
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as conn:
                for schema in pg_schemas:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())
        for tree in scratch_trees:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
        if args.keep:
            log(f"kept {workdir}")
        else:
            for folder in scratch:
                shutil.rmtree(folder, ignore_errors=True)
    return 0


def git(*args: str) -> str:
    """Output of a git command in this repository."""
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def baseline_worktree(revision: str, workdir: Path) -> Path:
    """A detached worktree of ``revision`` (its code only; it is served with this run's model store)."""
    tree = workdir / "baseline"
    git("worktree", "add", "--detach", str(tree), revision)
    return tree


def fastest(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per stage, the lowest of several runs' medians (timing noise only ever adds)."""
    return {name: min(run[name] for run in runs if name in run) for name in runs[0]}


def revision_stages(
    tree: Path, store_root: Path, name: str, version: str, workdir: Path, quick: bool
) -> dict[str, float]:
    """A source tree's own micro-benchmark stages (its benchmarks.micro, in a process of its own)."""
    script = (
        "import json, sys; from pathlib import Path; from benchmarks import micro; "
        "r = micro.run_all(Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]), quick=sys.argv[5] == '1', "
        "profile=False); print(json.dumps(r['stages']))"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # a folder of each tree's own: the revisions' stores may differ in schema (one cannot open the other's file)
    own = workdir / f"micro-{hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:12]}"
    own.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", script, str(store_root), name, version, str(own), "1" if quick else "0"],
        cwd=tree, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ---- report --------------------------------------------------------------------------------------
def ratios(
    results: dict[str, AppResult], batch: dict[str, Any], prod_micro: dict[str, Any] | None = None
) -> list[tuple[str, str, str, bool, str]]:
    """(what, measured, target, met, by how much) for every target."""
    full, echo, score, naive = results["full"], results["echo"], results["score"], results["naive"]
    prod_full = results["prod-full"]
    out = []
    for connections in (4, 16):
        r = full.at(connections).rps / echo.at(connections).rps
        out.append(
            (
                f"full / echo throughput, {connections} connections",
                f"{r:.2f}",
                ">= 0.50",
                r >= 0.5,
                f"{r / 0.5:.2f} x the target",
            )
        )
    pg = results.get("full-pg")
    if pg is not None:
        r = pg.at(16).rps / echo.at(16).rps
        out.append(
            (
                "full on PostgreSQL / echo throughput, 16 connections",
                f"{r:.2f}",
                ">= 0.35",
                r >= 0.35,
                f"{r / 0.35:.2f} x the target",
            )
        )
    p99 = full.at(4).median("p99")
    out.append(("full p99, 4 connections", f"{p99:.2f} ms", "<= 5 ms", p99 <= 5.0, f"{p99 / 5.0:.2f} x the limit"))
    cost = full.at(1).runs and (full.at(1).median("mean") / score.at(1).median("mean"))
    out.append(
        (
            "full / score-only cost (mean latency, 1 connection)",
            f"{cost:.2f} x",
            "<= 1.15 x",
            cost <= 1.15,
            f"{cost / 1.15:.2f} x the limit",
        )
    )
    cost4 = score.at(4).rps / full.at(4).rps
    out.append(
        (
            "full / score-only cost (1 / throughput, 4 connections)",
            f"{cost4:.2f} x",
            "<= 1.15 x",
            cost4 <= 1.15,
            f"{cost4 / 1.15:.2f} x the limit",
        )
    )
    reasons = results["reasons"]
    rc = reasons.at(1).median("mean") / score.at(1).median("mean")
    out.append(
        (
            "exact reasons / score-only cost (mean latency, 1 connection)",
            f"{rc:.2f} x",
            "<= 1.15 x",
            rc <= 1.15,
            f"{rc / 1.15:.2f} x the limit",
        )
    )
    rc4 = score.at(4).rps / reasons.at(4).rps
    out.append(
        (
            "exact reasons / score-only cost (1 / throughput, 4 connections)",
            f"{rc4:.2f} x",
            "<= 1.15 x",
            rc4 <= 1.15,
            f"{rc4 / 1.15:.2f} x the limit",
        )
    )
    shadow = results.get("full-shadow")
    if shadow is not None:
        for connections in (1, 4):
            r = shadow.at(connections).rps / full.at(connections).rps
            counted = shadow.at(connections).shadowed
            covered = f"; {counted[0] / sum(counted):.0%} of requests shadowed" if counted else ""
            out.append(
                (
                    f"full with a challenger in shadow / full throughput, {connections} connection(s)",
                    f"{r:.2f}{covered}",
                    ">= 0.90",
                    r >= 0.9,
                    f"{r / 0.9:.2f} x the target",
                )
            )
        for label, ours, theirs in (
            ("4 connections (saturated)", shadow.at(4).median("p99"), full.at(4).median("p99")),
            (
                "at half of each one's peak",
                shadow.half.median("p99") if shadow.half else float("nan"),
                full.half.median("p99") if full.half else float("nan"),
            ),
        ):
            p99 = ours / theirs
            level = shadow.at(4) if label.startswith("4") else shadow.half
            counted = level.shadowed if level is not None else None
            covered = f"; {counted[0] / sum(counted):.0%} shadowed" if counted else ""
            out.append(
                (
                    f"full with a challenger in shadow / full p99, {label}",
                    f"{p99:.2f} ({ours:.1f} / {theirs:.1f} ms{covered})",
                    "<= 1.10",
                    p99 <= 1.1,
                    f"{p99 / 1.1:.2f} x the limit",
                )
            )
    r = full.at(4).rps / naive.at(4).rps
    out.append(
        ("full / naive throughput, 4 connections", f"{r:.2f} x", ">= 3 x", r >= 3.0, f"{r / 3.0:.2f} x the target")
    )
    for res, limit, what in ((full, 3.0, "default model"), (prod_full, 10.0, "production-size model")):
        assert res.half is not None
        p99 = res.half.median("p99")
        out.append(
            (
                f"p99 at half of peak ({res.half.rps:.0f} of {res.peak_rps:.0f} req/s), {what}",
                f"{p99:.2f} ms",
                f"<= {limit:g} ms",
                p99 <= limit,
                f"{p99 / limit:.2f} x the limit",
            )
        )
    worst = max(res.max_ms for res in results.values())
    worst_app = max(results.values(), key=lambda res: res.max_ms).app.key
    out.append(
        (
            "max latency over every app and load",
            f"{worst:.1f} ms ({worst_app})",
            "<= 100 ms",
            worst <= 100,
            f"{worst / 100:.2f} x the limit",
        )
    )
    full_worst = max(full.max_ms, prod_full.max_ms)
    out.append(
        (
            "max latency, full decisions (default, production-size)",
            f"{full_worst:.1f} ms",
            "<= 100 ms",
            full_worst <= 100,
            f"{full_worst / 100:.2f} x the limit",
        )
    )
    b = batch["workers_2"]["rows_per_s"]
    out.append(
        (
            "batch decisions with reasons, 2 workers",
            f"{b:,.0f} rows/s",
            ">= 50,000 rows/s",
            b >= 50_000,
            f"{b / 50_000:.2f} x the target",
        )
    )
    for res, what in ((full, "default model"), (prod_full, "production-size model")):
        rss = max(res.hwm_mb) if res.hwm_mb else float("nan")
        out.append(
            (
                f"RSS per worker, {what} (peak, VmHWM)",
                f"{rss:.0f} MB",
                "<= 200 MB",
                rss <= 200,
                f"{rss / 200:.2f} x the limit",
            )
        )
    if full.record_bytes is not None:
        count, payload, whole = full.record_bytes
        out.append(
            (
                f"record size, default model (mean of {count:,} records: payload / whole row)",
                f"{payload:,.0f} / {whole:,.0f} B",
                "<= 2,500 B",
                payload <= 2500,
                f"{payload / 2500:.2f} x the limit (payload)",
            )
        )
    shap_us = (prod_micro or {}).get("stages", {}).get("exact TreeSHAP attribution")
    if shap_us is not None:
        out.append(
            (
                "exact TreeSHAP, production-size model, one row (in process, median)",
                f"{shap_us:,.0f} µs",
                "<= 120 µs",
                shap_us <= 120,
                f"{shap_us / 120:.2f} x the limit",
            )
        )
    return out


def summary_text(results: dict[str, AppResult], batch: dict[str, Any], prod_micro: dict[str, Any] | None = None) -> str:
    """The ratios as plain text for the terminal."""
    lines = ["", "target                                                          measured            goal        met"]
    for what, measured, goal, met, _ in ratios(results, batch, prod_micro):
        lines.append(f"{what:<63} {measured:<19} {goal:<11} {'yes' if met else 'NO'}")
    return "\n".join(lines)


def against_baseline(results: dict[str, AppResult], batch: dict[str, Any], baseline: dict[str, Any]) -> str:
    """This revision against the baseline revision, measured side by side in this run."""
    full, base = results["full"], results["full-baseline"]
    commit = baseline["commit"]
    lines = [
        f"## Against revision {commit}\n",
        f"The same run also served revision `{baseline['revision']}` ({commit}) from a git worktree, with the same model "
        "version, gunicorn config, keys, bodies and load, right after this revision. The in-process rows come from "
        f"each revision's own micro-benchmarks, run {baseline['rounds']} times alternating between the two revisions "
        "(the lowest median of the rounds). Ratios are this revision over the baseline (throughput: higher is "
        "better; time: lower is better).\n",
        "| measure | this revision | baseline | ratio |\n|---|---:|---:|---:|",
    ]
    for connections in LEVELS:
        now, then = full.at(connections), base.at(connections)
        lines.append(
            f"| full decision req/s, {connections} connection(s) | {now.rps:,.0f} | {then.rps:,.0f} | {now.rps / then.rps:.2f} |"
        )
        lines.append(
            f"| full decision p99 ms, {connections} connection(s) | {now.median('p99'):.2f} | {then.median('p99'):.2f} | "
            f"{now.median('p99') / then.median('p99'):.2f} |"
        )
    now_stages, then_stages = baseline["this"], baseline["stages"]
    core_now = now_stages.get(micro.CORE_STAGE, float("nan"))
    core_then = next((v for k, v in then_stages.items() if k.startswith("decision core total")), float("nan"))
    lines.append(
        f"| decision core, one application (µs) | {core_now:,.1f} | {core_then:,.1f} | {core_now / core_then:.2f} |"
    )
    for workers in (1, 2):
        now_rows = batch[f"workers_{workers}"]["rows_per_s"]
        then_rows = baseline["batch"][f"workers_{workers}"]["rows_per_s"]
        lines.append(
            f"| batch file rows/s, {workers} worker(s) | {now_rows:,.0f} | {then_rows:,.0f} | {now_rows / then_rows:.2f} |"
        )
    request_now = now_stages.get("whole request (Flask test client)", float("nan"))
    request_then = then_stages.get("whole request (Flask test client)", float("nan"))
    lines.append(
        f"| whole request in process (µs) | {request_now:,.1f} | {request_then:,.1f} | {request_now / request_then:.2f} |"
    )
    return "\n".join(lines) + "\n"


def where_the_time_goes(results: dict[str, AppResult], micro_results: dict[str, Any]) -> str:
    """What stands between the measured full decision and the targets, from this run's own numbers."""

    def cost_us(name: str) -> float:
        # server time per request with both workers busy: 2 workers / throughput at 4 connections
        return 2e6 / results[name].at(4).rps

    full, naive = cost_us("full"), cost_us("naive")
    stages = micro_results["stages"]
    core = stages.get(micro.CORE_STAGE, float("nan"))
    validation = stages.get("validation (request schema from the spec)", float("nan"))
    record = stages.get("record write (SQLite, durable commit)", float("nan"))

    def cpu_us(name: str) -> float:
        level = results[name].at(4)
        return float("nan") if level.cpu_us is None else level.cpu_us

    steps = [
        ("(a) Flask: parse a JSON body, answer JSON", "echo", None),
        ("+ encode and score with onnxruntime (b)", "score", "echo"),
        ("+ exact TreeSHAP reasons (b+)", "reasons", "score"),
        (
            "+ validation, API keys, record building, SQLite insert, metrics, full response (c on tmpfs)",
            "full-shm",
            "reasons",
        ),
        ("+ the fsync of a durable commit (c)", "full", "full-shm"),
    ]
    rows = ""
    for what, name, prev in steps:  # the first row is a level, the others what each step adds
        sign = "+" if prev else ""
        server = cost_us(name) - (cost_us(prev) if prev else 0.0)
        cpu = cpu_us(name) - (cpu_us(prev) if prev else 0.0)
        rows += f"| {what} | {server:{sign},.0f} | {cpu:{sign},.0f} |\n"
    return (
        "## What stands in the way\n\n"
        "Cost per request at 4 connections: server time (2 workers / throughput; wrk shares the 2 cores, so it includes "
        "its share) and the workers' own CPU time per request:\n\n"
        "| step | server µs per request | worker CPU µs per request |\n|---|---:|---:|\n"
        f"{rows}"
        f"| = full decision (c) | {full:,.0f} | {cpu_us('full'):,.0f} |\n"
        f"| naive reference (d): scikit-learn + shap, no validation, no record | {naive:,.0f} | {cpu_us('naive'):,.0f} |\n\n"
        f"In process, the decision itself (encode, ONNX, exact TreeSHAP, rules, band, reasons) takes {core:,.0f} µs, "
        f"validation {validation:,.0f} µs and the durable record write {record:,.0f} µs (table below). The reasons are "
        "cheap: exact TreeSHAP over precomputed tables costs about as much as the ONNX run. What keeps the full "
        "decision from half the echo's throughput, from 1.15 x score-only and from 3 x the naive reference is the "
        "work the naive reference does not do: writing the audit record durably before answering (an fsync per "
        "decision on this disk, a few hundred µs, plus canonical JSON and the hash chain) and validating the input "
        "strictly. Against the naive reference with like for like, exact reasons without validation or record (b+) "
        f"serve {results['reasons'].at(4).rps / results['naive'].at(4).rps:.1f} x its throughput. "
        "Durability is not traded away here: a record on tmpfs (not durable) is measured only to show the fsync's share.\n"
    )


def in_the_way_of_each(
    results: dict[str, AppResult], batch: dict[str, Any], micro_results: dict[str, Any], prod_micro: dict[str, Any]
) -> str:
    """For every target this run did not meet, what stands in its way, from this run's own numbers."""

    def cost_us(name: str, connections: int = 4) -> float:
        return 2e6 / results[name].at(connections).rps

    stages = micro_results["stages"]
    core = stages.get(micro.CORE_STAGE, float("nan"))
    validation = stages.get("validation (request schema from the spec)", float("nan"))
    response = stages.get("JSON serialisation of the response", float("nan"))
    record = stages.get("record write (SQLite, durable commit)", float("nan"))
    echo, full, full_shm = cost_us("echo"), cost_us("full"), cost_us("full-shm")
    cpu = {name: results[name].at(4).cpu_us for name in ("echo", "full")}
    own = (
        f" (the workers' own CPU time: {cpu['full']:,.0f} µs a request against {cpu['echo']:,.0f})"
        if cpu["full"] is not None and cpu["echo"] is not None
        else ""
    )
    why = {
        "full / echo throughput": (
            f"the full decision costs {full:,.0f} µs of server time per request at 4 connections against the echo's "
            f"{echo:,.0f}{own}; half the echo's throughput allows {2 * echo:,.0f}. In process it spends {core:,.0f} µs "
            f"deciding (encode, ONNX, exact TreeSHAP, rules, band, ranked reasons), {validation:,.0f} µs validating, "
            f"{response:,.0f} µs writing the response JSON and {record:,.0f} µs recording durably (canonical JSON, "
            "hash chain, record and report-row inserts, fsync); Flask, webargs and gunicorn's HTTP handling take "
            "the rest. Even on tmpfs (no fsync) it costs "
            f"{full_shm:,.0f} µs. Every step is needed for an audited decision; no single one is large enough that "
            "cutting it would reach the target: that takes fewer interpreted steps per request in all of them"
        ),
        "full on PostgreSQL / echo throughput": (
            "as above, plus the PostgreSQL server on the same 2 cores: its backend process parses and executes each "
            "append (three round trips, each a pipeline of statements) and flushes its WAL per commit"
        ),
        "full p99, 4 connections": (
            f"with 2 sync workers, 4 connections keep about two requests per worker: a request waits for the one "
            f"ahead of it, so p99 is at least twice the service time ({full / 1000:.1f} ms at this load) plus "
            "scheduling on 2 cores shared with wrk"
        ),
        "full / score-only cost": (
            "validation, the record and the full response are what the score-only app does not do (see above)"
        ),
        "exact reasons / score-only cost": (
            f"exact TreeSHAP ({stages.get('exact TreeSHAP attribution', float('nan')):,.0f} µs) is as cheap as "
            f"the ONNX run; the difference is the decision's other steps (group sums, rules, band, ranking, the "
            f"Decision's reasons: {core:,.0f} µs for the whole core) against a score of a few µs"
        ),
        "full with a challenger in shadow": (
            "the challenger's decisions and records take the same 2 cores; the shadow's CPU share is capped while "
            "a worker is busy (CREDIT_DECISION_SHADOW_MAX_SHARE), which keeps throughput but skips shadows"
        ),
        "full / naive throughput": (
            "the naive app's cost is scikit-learn and shap per request; the full decision's is the record and "
            "validation the naive app does not do (exact reasons alone, (b+), are measured beside it)"
        ),
        "p99 at half of peak": (
            "the durable commit's fsync and its tail on this disk, the service time itself, and the scheduling of "
            "2 workers, wrk and the background threads on 2 cores"
        ),
        "max latency": (
            "queueing at saturation (16 connections on 2 workers: requests wait for the ones ahead), not stalls"
        ),
        "record size": (
            "the reasons' texts are kept once per catalog already (payload schema version 4); what is left is the "
            "validated input, one attribution per field at full precision (replay compares them to 1e-9), the "
            "reasons' codes, values and labels, and the model's hashes"
        ),
        "exact TreeSHAP, production-size model": (
            "the tables' gather and sum over every unit of 500 trees (memory latency at random places in 51 MB of "
            "tables); measured and ruled out: numba (+140 MiB per worker), the same sums as an ONNX graph (about 1 ms), "
            "float32 tables (errors near 1e-7, over replay's 1e-9) and a scatter-add (bincount) instead of the "
            "gather and run sums (no faster)"
        ),
        "RSS per worker": (
            "the explainer's tables (about 51 MB for the production-size model), onnxruntime's session and the "
            "interpreter with Flask, NumPy and the store's drivers, in each worker (none is shared across a fork: "
            "each worker builds and checks its own)"
        ),
    }
    lines = ["## What stands in the way of each target not met\n"]
    said: set[str] = set()
    for what, measured, goal, met, _ in ratios(results, batch, prod_micro):
        if met:
            continue
        reason = next((text for prefix, text in why.items() if what.startswith(prefix)), "")
        if reason in said:
            reason = "as the line above says"
        elif reason:
            said.add(reason)
        lines.append(f"- **{what}** ({measured}, goal {goal}){': ' + reason if reason else ''}.")
    if len(lines) == 1:
        lines.append("Every target was met in this run.")
    return "\n".join(lines) + "\n"


def render(
    info: dict[str, str],
    results: dict[str, AppResult],
    batch: dict[str, Any],
    micro_results: dict[str, Any],
    prod_micro: dict[str, Any],
    prod: Any,
    runs: int,
    seconds: float,
    elapsed: float,
    baseline: dict[str, Any] | None = None,
) -> str:
    """docs/PERFORMANCE.md."""
    out: list[str] = []
    w = out.append
    w("# Performance\n")
    w(
        f"Written by `make bench` (`python -m benchmarks.run`) on {info['date']} in {elapsed / 60:.1f} minutes. Do not edit by hand.\n"
    )
    w("## Machine\n")
    w("| | |\n|---|---|")
    for key in ("cpu", "cores", "memory", "kernel", "python", "libraries", "wrk"):
        w(f"| {key} | {info[key]} |")
    w(f"| load average at start / at end | {info['load_at_start']} / {info['load average']} |")
    w("")
    w("## Targets\n")
    w("| target | measured | goal | met | |\n|---|---|---|---|---|")
    for what, measured, goal, met, by in ratios(results, batch, prod_micro):
        w(f"| {what} | {measured} | {goal} | {'yes' if met else '**no**'} | {by} |")
    w("")
    if baseline is not None:
        w(against_baseline(results, batch, baseline))
    w(where_the_time_goes(results, micro_results))
    w(in_the_way_of_each(results, batch, micro_results, prod_micro))
    w("## HTTP: throughput and latency\n")
    w(
        f"gunicorn with `service/gunicorn_conf.py`, 2 workers ({worker_kind()}), on 127.0.0.1; wrk 2 threads (1 for 1 connection), "
        f"{runs} run(s) of {seconds:g} s per row; medians over runs, max = worst over runs. Latencies in ms.\n"
    )
    w(
        "Worker CPU is the gunicorn workers' own CPU time (user + system, from /proc) per request served over the "
        "row's runs: what a request costs the workers, without the load generator's share or time spent waiting.\n"
    )
    w(
        "| app | connections | req/s | p50 | p90 | p99 | p99.9 | max | errors | worker CPU µs/req |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )

    def accounted(level: Level) -> str:
        return "" if level.cpu_us is None else f"{level.cpu_us:,.0f}"

    for res in results.values():
        for level in res.levels:
            w(
                f"| {res.app.label} | {level.connections} | {level.rps:,.0f} | {level.median('p50'):.2f} | {level.median('p90'):.2f} | "
                f"{level.median('p99'):.2f} | {level.median('p999'):.2f} | {level.max_ms:.2f} | {level.errors} | "
                f"{accounted(level)} |"
            )
        if res.half is not None:
            level = res.half
            w(
                f"| {res.app.label}, **half of peak** (c={level.connections}, {level.delay_ms} ms pause) | {level.connections} | "
                f"{level.rps:,.0f} | {level.median('p50'):.2f} | {level.median('p90'):.2f} | {level.median('p99'):.2f} | "
                f"{level.median('p999'):.2f} | {level.max_ms:.2f} | {level.errors} | {accounted(level)} |"
            )
    w("")
    w("Resident set per gunicorn worker after the load (VmRSS / peak VmHWM, MB):\n")
    w("| app | workers |\n|---|---|")
    for res in results.values():
        pairs = ", ".join(f"{r:.0f} / {h:.0f}" for r, h in zip(res.rss_mb, res.hwm_mb, strict=True))
        w(f"| {res.app.label} | {pairs} |")
    naive_gap = results["naive"].info.get("max_margin_gap")
    if naive_gap is not None:
        w(
            f"\nThe naive app retrains the default model in-process; its margins differ from the stored version's by at most {float(naive_gap):.2g}.\n"
        )
    w("## Batch\n")
    w(
        f"`credit-decision score` on a CSV of {batch['rows']:,} applications of the default example (read, validate, encode, ONNX, "
        "exact TreeSHAP, rules, bands, top-4 reasons, write CSV), file to file; start-up (imports, model load and "
        "self-check) excluded, shown separately as wall time.\n"
    )
    w("| worker processes | rows/s | seconds | wall seconds with start-up |\n|---:|---:|---:|---:|")
    for workers in (1, 2):
        b = batch[f"workers_{workers}"]
        w(f"| {workers} | {b['rows_per_s']:,.0f} | {b['seconds']:.2f} | {b['wall_s']:.2f} |")
    w("")
    w(
        f"The decision engine alone on a large batch (`service.core.engine.DecisionEngine.decide`, one process, {micro_results['batch_core']['rows']:,} rows "
        f"in memory): {micro_results['batch_core']['rows_per_s']:,.0f} rows/s default model, "
        f"{prod_micro['batch_core']['rows_per_s']:,.0f} rows/s production-size model.\n"
    )
    recourse = micro_results.get("recourse") or {}
    if recourse.get("applications"):
        w(
            "Actionable recourse (`service.core.recourse.find_recourse`, what `?recourse=true` adds to a refer or "
            f"decline; `benchmarks/recourse_bench.py`), default model, every one of the {recourse['applications']} "
            f"refer/decline decisions of the default data, {recourse['searches']:,} searches: p50 "
            f"{recourse['p50_ms']:.2f} ms, p99 {recourse['p99_ms']:.2f} ms (budget {recourse['budget_p99_ms']:.0f} ms), "
            f"worst {recourse['max_ms']:.2f} ms (process CPU time: p50 {recourse['cpu_p50_ms']:.2f} ms, p99 "
            f"{recourse['cpu_p99_ms']:.2f} ms); {recourse['candidates_mean']:.0f} candidates evaluated per search, "
            f"a proposal found for {recourse['found_share']:.0%}.\n"
        )
    w("## Stages of one decision (in-process micro-benchmarks)\n")
    w(
        "Median µs over many repetitions of each stage for one application (`benchmarks/micro.py`); "
        "a regression shows up in its own row.\n"
    )
    w("| stage | default model µs | production-size µs |\n|---|---:|---:|")
    for name, value in micro_results["stages"].items():
        other = prod_micro["stages"].get(name)
        w(f"| {name} | {value:,.1f} | {'' if other is None else f'{other:,.1f}'} |")
    w("")
    w(
        f"Production-size model: {prod.n_trees} trees of depth <= 6 ({prod.n_leaves:,} leaves), {prod.n_fields} fields "
        f"({prod.n_columns} encoded columns), synthetic data generated by `benchmarks/prodmodel.py`, exported with "
        f"`training.export.champion_onnx`, proved against shap (max |attribution - shap| "
        f"{prod.parity['attributions_vs_shap']:.1g}) and served from its own model version.\n"
    )
    if micro_results.get("profile"):
        w("## Profile of the full decision request\n")
        w(
            "cProfile of POST /v1/decisions through the Flask test client (default model, SQLite record), "
            "top functions by own time:\n"
        )
        w("```")
        w(micro_results["profile"].rstrip())
        w("```\n")
    w("## Method\n")
    w(
        f"- Every app gets the same gunicorn production config and 2 workers ({worker_kind()}); each request is the decision API "
        "body of one applicant of the default example (1,000 different bodies in rotation; 500 random applicants for the "
        "production-size model). wrk is run from the same 2-core machine, so the load generator competes with the "
        "server, as it did in the issue's measurements.\n"
        "- (a) parses and echoes the JSON; (b) encodes without validation and runs onnxruntime; (c) is the real "
        "service (`service.app:create_app()`: marshmallow validation, policy rules, ONNX score, exact TreeSHAP "
        "reasons, durable SQLite record with WAL and synchronous=FULL, Prometheus counters, access log); (d) runs "
        "scikit-learn `predict_proba` and `shap.TreeExplainer.shap_values` (explainer built once per worker) per request, with OMP_NUM_THREADS=1 (scikit-learn's OpenMP threads "
        "in two workers on two cores otherwise spin against each other: seconds-long stalls).\n"
        "- The load average at start and end is recorded above: work from other processes on the machine skews "
        "every number, so compare runs made on a quiet machine. A virtual machine's speed can also change between "
        "runs with what its host runs (this one's moved the same in-process loop by up to 1.5 x within minutes), "
        "which is why a comparison is made side by side within one run.\n"
        "- Half of peak: wrk has no rate control and wrk2 is not packaged, so each connection waits a fixed pause "
        "after every response (`wrk/paced.lua`, `delay()`): a closed loop whose rate is about connections / (latency + "
        "pause). The pause and connection count are tuned by short probes to within 10 % of half the best "
        "throughput measured at 1, 4 or 16 connections; latency is measured from send to response, so no queueing "
        "from the pacing itself is hidden or added.\n"
        "- `cost` of the full decision vs score only: mean latency at 1 connection (no queueing), and the inverse "
        "throughput at 4 connections (CPU per request when both workers are busy).\n"
        "- Memory: VmRSS of each gunicorn worker from /proc after its load runs.\n"
    )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
