"""``make bench-soak``: the full service under a steady load for 10 minutes; writes docs/SOAK.md.

A benchmark, not a test: it answers whether the service holds up over time (no errors, memory that does not
grow, latency that stays where it started), not whether it is correct.

1. train the default model into a temporary model store (as ``make bench`` does, ``benchmarks.run``);
2. serve the full decision API with the production gunicorn config, 2 sync workers, and a durable SQLite
   decision store (WAL, ``synchronous=FULL``) in the temporary folder;
3. measure the peak briefly: wrk with 4 connections (``benchmarks/wrk/post.lua``);
4. drive 70 % of that peak at a fixed rate (``benchmarks/wrk/rate.lua``: wrk paced by a per-thread schedule)
   for ``--minutes`` (default 10), one wrk run per minute for per-minute latency percentiles, while a thread
   reads the resident set (VmRSS) of every worker every 10 s;
5. verify the decision store's hash chain (every decision of the run is in it) and write the report.

All load goes to 127.0.0.1; the server is stopped (process group) on exit, and wrk runs are bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import run

OUTPUT = run.REPO / "docs" / "SOAK.md"
SAMPLE_EVERY_S = 10.0
GOAL_RSS_GROWTH = 0.10  # last minute's RSS over the first minute's, per worker
GOAL_P99_SPREAD = 2.0  # the worst minute's p99 over the median minute's p99
THREADS = 2
CONNECTIONS = 8


@dataclass
class Sample:
    """The resident set of every worker at one moment."""

    at_s: float
    rss_mb: dict[int, float]


@dataclass
class Soak:
    """Everything measured."""

    peak: run.Run
    target_rps: float
    minutes: list[run.Run] = field(default_factory=list)
    requests_per_minute: list[int] = field(default_factory=list)
    minute_bounds: list[tuple[float, float]] = field(default_factory=list)  # seconds since the sampler started
    minute_cpu: list[tuple[float, float, str]] = field(default_factory=list)  # service %, machine %, load average
    recorded: int = 0  # decisions recorded while the steady load ran
    samples: list[Sample] = field(default_factory=list)
    worker_sets: list[list[int]] = field(default_factory=list)
    chain: str = ""
    chain_ok: bool = False
    chain_entries: int = 0
    database_mb: float = 0.0
    verify_s: float = 0.0

    @property
    def errors(self) -> int:
        return sum(m.errors for m in self.minutes)

    @property
    def requests(self) -> int:
        return sum(self.requests_per_minute)

    def rss_window(self, pid: int, start_s: float, end_s: float) -> float:
        """Mean RSS of a worker over the samples taken in [start_s, end_s)."""
        values = [s.rss_mb[pid] for s in self.samples if start_s <= s.at_s < end_s and pid in s.rss_mb]
        return statistics.mean(values) if values else float("nan")


def rate_run(url: str, bodies: Path, rate: float, seconds: float, api_key: str) -> tuple[run.Run, int]:
    """One wrk run at ``rate`` requests a second in all (``THREADS`` threads, ``CONNECTIONS`` connections), and
    the number of requests it made."""
    cmd = [
        run.WRK, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{round(seconds)}s", "--latency", "--timeout", "10s",
        "-s", str(run.LUA / "rate.lua"), url, "--", str(bodies), f"{rate / THREADS:.3f}",
    ]  # fmt: skip
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
        env={**os.environ, "BENCH_API_KEY": api_key},
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    data = json.loads(line[len("WRK_JSON ") :])
    return run.Run(
        CONNECTIONS,
        data["requests"] / (data["duration_us"] / 1e6),
        {k: float(v) for k, v in data["latency_us"].items()},
        sum(int(v) for v in data["errors"].values()),
    ), int(data["requests"])


def cpu_ticks(pids: Sequence[int]) -> tuple[int, int, int]:
    """(CPU ticks used by ``pids``, busy ticks of the whole machine, all ticks of the machine) so far."""
    own = run.process_ticks(pids)
    machine = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = machine[3] + machine[4]  # idle, iowait
    return own, sum(machine) - idle, sum(machine)


class Sampler(threading.Thread):
    """Reads every worker's VmRSS every ``SAMPLE_EVERY_S`` seconds until stopped."""

    def __init__(self, master: int, soak: Soak, started: float) -> None:
        super().__init__(daemon=True)
        self.master, self.soak, self.started = master, soak, started
        self.stopping = threading.Event()

    def run(self) -> None:
        while True:
            pids = run.worker_pids(self.master)
            rss = {}
            for pid in pids:
                try:
                    rss[pid] = run.memory_mb(pid)[0]
                except OSError:  # a worker that just went away: seen as a change of the worker set
                    continue
            self.soak.samples.append(Sample(time.monotonic() - self.started, rss))
            if not self.soak.worker_sets or self.soak.worker_sets[-1] != pids:
                self.soak.worker_sets.append(pids)
            if self.stopping.wait(SAMPLE_EVERY_S):
                return


def soak(minutes: int, fraction: float, peak_seconds: float, workdir: Path, log: Any) -> Soak:
    """Train, serve, find the peak, hold ``fraction`` of it for ``minutes``; verify the chain."""
    from model_store.store import ModelStore
    from service.auth import hash_key, new_key
    from service.records import open_decision_store
    from training.pipeline import train

    store_root = workdir / "store"
    log("training the default model ...")
    trained = train(run.default_config().path, ModelStore(store_root), progress=False)
    bodies = run.write_bodies(workdir / "bodies.jsonl", run.default_applications(), "SOAK")
    api_key = new_key()  # a scorer key for this run only
    key_file = workdir / "api_keys"
    key_file.write_text(f"scorer:{hash_key(api_key)}:soak\n", encoding="utf-8")
    key_file.chmod(0o600)
    database = workdir / "decisions.sqlite3"
    app = run.App(
        "soak", "full decision", "service.app:create_app()", "/v1/decisions", bodies,
        {
            "CREDIT_DECISION_ENV": "production",
            "CREDIT_DECISION_API_KEYS_FILE": str(key_file),
            "CREDIT_DECISION_MODEL_STORE": str(store_root),
            "CREDIT_DECISION_MODEL_NAME": trained.champion.name,
            "CREDIT_DECISION_MODEL_VERSION": trained.champion.version,
            "DATABASE_URL": f"sqlite:///{database}",
        },
        api_key=api_key,
    )  # fmt: skip
    with run.gunicorn(app, workdir) as (base, proc):
        url = base + app.path
        run.check_request(url, app)
        run.wrk(url, bodies, 4, 3.0, api_key=api_key)  # warm-up: both workers up, caches warm
        peak = run.wrk(url, bodies, 4, peak_seconds, api_key=api_key)
        result = Soak(peak=peak, target_rps=peak.rps * fraction)
        log(f"peak at 4 connections: {peak.rps:.0f} req/s; holding {result.target_rps:.0f} req/s for {minutes} min")
        counter = open_decision_store(f"sqlite:///{database}")
        before = counter.count()
        sampler = Sampler(proc.pid, result, time.monotonic())
        sampler.start()
        try:
            for minute in range(1, minutes + 1):
                began = time.monotonic() - sampler.started
                server = [proc.pid, *run.worker_pids(proc.pid)]
                ticks = cpu_ticks(server)
                one, requests = rate_run(url, bodies, result.target_rps, 60.0, api_key)
                result.minute_bounds.append((began, time.monotonic() - sampler.started))
                after = cpu_ticks(server)
                elapsed = (after[2] - ticks[2]) / (os.cpu_count() or 1)  # ticks of one core over the minute
                result.minute_cpu.append(
                    (
                        100.0 * (after[0] - ticks[0]) / elapsed,
                        100.0 * (after[1] - ticks[1]) / elapsed,
                        run.load_average().split()[0],
                    )
                )
                result.minutes.append(one)
                result.requests_per_minute.append(requests)
                latest = result.samples[-1].rss_mb if result.samples else {}
                log(
                    f"  minute {minute:2}: {one.rps:6.0f} req/s  p50 {one.latency_us['p50'] / 1000:5.2f}  "
                    f"p99 {one.latency_us['p99'] / 1000:6.2f}  max {one.latency_us['max'] / 1000:7.2f} ms  "
                    f"errors {one.errors}  RSS {' '.join(f'{v:.0f}' for v in latest.values())} MB"
                )
        finally:
            sampler.stopping.set()
            sampler.join()
            result.recorded = counter.count() - before
            counter.close()
    log("verifying the hash chain ...")
    started = time.perf_counter()
    records = open_decision_store(f"sqlite:///{database}")
    try:
        report = records.verify_chain()
    finally:
        records.close()
    result.verify_s = time.perf_counter() - started
    result.chain, result.chain_ok, result.chain_entries = report.summary(), report.ok, report.records_checked
    result.database_mb = sum(p.stat().st_size for p in workdir.glob("decisions.sqlite3*")) / 1e6
    log(result.chain)
    return result


# ---- the report ---------------------------------------------------------------------------------------
def growth(result: Soak) -> dict[int, tuple[float, float, float]]:
    """Per worker of the first sample: (mean RSS in the first minute, in the last minute, growth)."""
    rows = {}
    (first_start, first_end), (last_start, last_end) = result.minute_bounds[0], result.minute_bounds[-1]
    for pid in result.samples[0].rss_mb if result.samples else {}:
        first = result.rss_window(pid, first_start, first_end + SAMPLE_EVERY_S / 2)
        last = result.rss_window(pid, last_start, last_end + SAMPLE_EVERY_S / 2)
        rows[pid] = (first, last, last / first - 1.0)
    return rows


def render(result: Soak, minutes: int, fraction: float, info: dict[str, str], load_at_start: str, took_s: float) -> str:
    """docs/SOAK.md."""
    ms = [m.latency_us["p99"] / 1000.0 for m in result.minutes]
    median_p99 = statistics.median(ms)
    spread = max(ms) / median_p99 if median_p99 > 0 else float("inf")
    rss = growth(result)
    worst_growth = max((g for _, _, g in rss.values()), default=float("nan"))
    restarts = len(result.worker_sets) - 1
    achieved = statistics.mean(m.rps for m in result.minutes)
    answered = result.requests - result.errors
    recorded_ok = answered <= result.recorded <= answered + CONNECTIONS * len(result.minutes)

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    lines = [
        "# Soak",
        "",
        f"Written by `make bench-soak` (`python -m benchmarks.soak`) on {info['date']} in {took_s / 60:.1f} minutes. "
        "Do not edit by hand.",
        "",
        "The full decision service (validation, rules, ONNX score, exact reasons, durable SQLite record with its hash "
        f"chain) under a steady load for {minutes} minute{'s' if minutes != 1 else ''}: gunicorn with `service/gunicorn_conf.py`, 2 sync workers, "
        "the default model trained into a temporary store, on 127.0.0.1. The peak was measured first with wrk at 4 "
        f"connections ({result.peak.rps:,.0f} req/s); then {fraction:.0%} of it, {result.target_rps:,.0f} req/s, was "
        f"held at a fixed rate by wrk with `benchmarks/wrk/rate.lua` ({THREADS} threads, {CONNECTIONS} connections, "
        "each thread on its own schedule), one wrk run a minute for the per-minute percentiles; every worker's "
        f"resident set (VmRSS) was read every {SAMPLE_EVERY_S:.0f} s.",
        "",
        "**The machine is shared**: 2 cores, with other developers' builds, tests and benchmarks running beside this "
        f"one (load average {load_at_start} at the start, {run.load_average()} at the end), and wrk itself runs on "
        "the same 2 cores. The peak, and so the rate held, is what the service got of the machine then, not what it can "
        "do alone (`make bench` on a quieter machine: docs/PERFORMANCE.md); latency spikes follow the other work.",
        "",
        "## Result",
        "",
        "| | measured | goal | met |",
        "|---|---|---|---|",
        f"| errors (connect, read, write, timeout, non-2xx) | {result.errors} of {result.requests:,} requests | 0 | "
        f"{yes(result.errors == 0)} |",
        f"| RSS growth per worker, last minute over first minute | {worst_growth:+.1%} (worst worker) | < "
        f"{GOAL_RSS_GROWTH:.0%} | {yes(worst_growth < GOAL_RSS_GROWTH)} |",
        f"| p99 per minute, worst over median | {max(ms):.2f} / {median_p99:.2f} ms = {spread:.2f} x | <= "
        f"{GOAL_P99_SPREAD:.0f} x (stable) | {yes(spread <= GOAL_P99_SPREAD)} |",
        f"| rate held | {achieved:,.0f} req/s mean of {result.target_rps:,.0f} | within 5 % | "
        f"{yes(abs(achieved - result.target_rps) <= 0.05 * result.target_rps)} |",
        f"| worker restarts | {restarts} | 0 | {yes(restarts == 0)} |",
        f"| decisions recorded during the steady load | {result.recorded:,} for {answered:,} answered | every answered "
        f"one, plus at most the {CONNECTIONS} in flight when each minute's wrk run stopped | {yes(recorded_ok)} |",
        f"| hash chain after the run | {'OK' if result.chain_ok else 'BROKEN'}, {result.chain_entries:,} entries "
        f"(verified in {result.verify_s:.1f} s) | intact | {yes(result.chain_ok)} |",
        "",
        f"`audit verify`: {result.chain}. Decision store after the run: {result.database_mb:,.1f} MB (SQLite file, WAL "
        "and shared memory).",
        "",
        "## Per minute",
        "",
        "Latencies in ms, measured by wrk from the moment each request was sent. CPU in % of one core over the "
        f"minute ({os.cpu_count()} cores: {100 * (os.cpu_count() or 1)} % is the whole machine): the service (gunicorn "
        "master and workers), and every process on the machine (the service, wrk and everything else). A minute "
        "whose p99 stands out while the service's own CPU does not is other work taking the cores.",
        "",
        "| minute | req/s | p50 | p90 | p99 | p99.9 | max | errors | RSS per worker at the minute's end (MB) | "
        "service CPU | machine CPU | load (1 min) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    rows = zip(result.minutes, result.minute_bounds, result.minute_cpu, strict=True)
    for i, (m, (_, end_s), (service_cpu, machine_cpu, load)) in enumerate(rows, start=1):
        at_end = [s for s in result.samples if s.at_s <= end_s + SAMPLE_EVERY_S / 2]
        rss_text = ", ".join(f"{v:.1f}" for v in at_end[-1].rss_mb.values()) if at_end else ""
        lat = {k: v / 1000.0 for k, v in m.latency_us.items()}
        lines.append(
            f"| {i} | {m.rps:,.0f} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {lat['p999']:.2f} | "
            f"{lat['max']:.2f} | {m.errors} | {rss_text} | {service_cpu:.0f} % | {machine_cpu:.0f} % | {load} |"
        )
    lines += [
        "",
        "## Memory",
        "",
        f"Mean VmRSS of each worker over the samples of the first and of the last minute ({len(result.samples)} "
        f"samples in all, every {SAMPLE_EVERY_S:.0f} s).",
        "",
        "| worker | first minute (MB) | last minute (MB) | growth |",
        "|---|---:|---:|---:|",
    ]
    for n, (first, last, g) in enumerate(rss.values(), start=1):
        lines.append(f"| {n} | {first:.1f} | {last:.1f} | {g:+.1%} |")
    lines += [
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items() if k != "date"),
        "",
        "## How to run it",
        "",
        "`make bench-soak` (10 minutes of load, about 12 in all); `.venv/bin/python -m benchmarks.soak --minutes 2` for a "
        "shorter run while developing (`--output` elsewhere to keep this file).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak and write the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10, help="minutes of steady load (default 10)")
    parser.add_argument("--fraction", type=float, default=0.7, help="share of the measured peak to hold (default 0.7)")
    parser.add_argument("--peak-seconds", type=float, default=10.0, help="seconds of the peak measurement (default 10)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="report file (default docs/SOAK.md)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, store, records)")
    args = parser.parse_args(argv)
    if args.minutes < 1 or not 0.05 <= args.fraction <= 1.0:
        parser.error("--minutes must be at least 1 and --fraction between 0.05 and 1")
    if not Path(run.WRK).is_file():
        print("wrk is not installed: `make system-deps` (Debian package wrk)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    load_at_start = run.load_average()
    workdir = Path(tempfile.mkdtemp(prefix="credit-decision-soak-"))

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        result = soak(args.minutes, args.fraction, args.peak_seconds, workdir, log)
        report = render(
            result, args.minutes, args.fraction, run.machine(), load_at_start, time.perf_counter() - started
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
        log(f"wrote {args.output}")
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
