"""Production gunicorn configuration: ``gunicorn -c service/gunicorn_conf.py 'service.app:create_app()'``.

WEB_CONCURRENCY processes (default 2, about one per core) of GUNICORN_THREADS request threads each. The default,
1, runs gunicorn's sync worker: one request at a time per process. A decision is CPU-bound (validation, one ONNX
run, one TreeSHAP pass, the record: about a millisecond of Python) and on a host where the commit is cheaper than
that (a local SSD, PostgreSQL on the same host) threads only contend for the interpreter lock: measured on 2 cores
(docs/PERFORMANCE.md), 4 threads per worker served fewer decisions at 16 connections than sync workers. Where the
durable commit dominates (a disk with slow fsync, PostgreSQL across a network, synchronous replication), set
GUNICORN_THREADS=4 or more: gunicorn's ``gthread`` worker, whose request threads share commits (group commit,
:mod:`service.records.group`: the records of every waiting thread in one transaction and one fsync, each request
answered only after its own record is durable). A batch request's items share one commit with either worker. ``preload_app`` is False on purpose: every worker builds its own onnxruntime session, explainer
tables and database connections after the fork (none of them is fork-safe), runs the startup self-check itself
and only then accepts requests, so a worker is never serving a model it has not checked. The price is a second
or so of start-up per worker.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# gunicorn's gthread (or, with one thread, sync) worker; its own errors as problems
worker_class = (
    "service.gunicorn_worker.ProblemThreadWorker" if threads > 1 else "service.gunicorn_worker.ProblemSyncWorker"
)
preload_app = False
# A worker silent for `timeout` seconds is killed and replaced (a sync worker stuck in one request; a gthread
# worker's main loop answers while its request threads work). Every database wait of a request is bounded below
# it (CREDIT_DECISION_DATABASE_TIMEOUT, 10 s: the request answers 503 store-busy), so only a real hang gets here.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM the listeners close at once and each worker finishes the requests it holds (answered and recorded)
# before it exits; this is how long that may take. Longer than any request (bounded as above), and shorter than
# the usual 30 s an orchestrator waits before SIGKILL (Kubernetes' terminationGracePeriodSeconds).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
keepalive = 5
max_requests = 0
# gunicorn's runtime control socket is one per user (~/.gunicorn/gunicorn.ctl): several instances on one
# host (replicas, tests, benchmarks) would fight over it, and nothing here uses it.
control_socket_disable = True
# request bodies are never logged; the access log has the request line, status, size and duration only
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms'
# limits on the request line and headers (gunicorn answers 414 and 431 problems: service.gunicorn_worker); bodies
# are limited by the app (413), chunked or not
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
if Path("/dev/shm").is_dir():  # noqa: S108
    worker_tmp_dir = "/dev/shm"  # noqa: S108  # gunicorn's advice: worker heartbeat files off a slow disk

# Prometheus metrics from every worker: each process writes to this folder, /metrics aggregates them.
# It must be set before any worker imports prometheus_client, which is why it is set here.
_metrics_dir_given = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="credit-decision-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def on_starting(server: Any) -> None:
    """Start with an empty metrics folder: files of an earlier run would be counted again."""
    folder = Path(_metrics_dir)
    if folder.is_dir():
        for child in folder.iterdir():
            if child.is_file():
                child.unlink()
            else:
                shutil.rmtree(child)
    folder.mkdir(parents=True, exist_ok=True)


def post_worker_init(worker: Any) -> None:
    """Freeze what the worker built at start-up (app, model, explainer tables, catalogs: some 80,000 objects) out
    of the garbage collector's reach. Otherwise every full collection walks them all, about 15 to 30 ms during which
    the request in hand waits: the worst of the latency tail. Freezing is CPython's own remedy for this
    (``gc.freeze``, made for pre-fork servers); objects made later are collected as usual, and a serving switch
    freezes the new model in turn (:func:`service.live.settle_heap`)."""
    gc.collect()
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    """Let the metrics of a dead worker be merged, not double-counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    """Remove the metrics folder if this config created it."""
    if not _metrics_dir_given:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
