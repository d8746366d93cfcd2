"""Batch files on Dask: the chunks of :func:`service.batch.score_file` decided by the workers of a Dask cluster.

Nothing here decides, reads or formats anything: :func:`service.batch.score_file` splits the input into the same
chunks as every other batch run and submits its tasks through the client's ``concurrent.futures`` executor, so
a chunk is decided by the one engine exactly as in one process or in a process pool, and the output is the same
byte for byte (row order kept: results are joined in input order).

Workers get the model store's path, the model's name and version (and candidate policy), never a model: each
worker process loads, verifies and self-checks that version from the store once and keeps it, so the store
must be readable at the same absolute path on every worker (a shared or copied directory).

Who reads the input: the submitting process hashes it and finds where every chunk is. When every worker sees the
input file and the output's directory at the same paths as the submitting process (a shared volume: checked on
each worker before the run), the workers read their own parts of the input and write their output to part files
beside the output, which the submitting process joins in order (``"input_read_by": "workers"`` in the manifest).
Otherwise the submitting process reads the chunks, ships them to the workers and writes what comes back
(``"submitting process"``): every byte of input and output then passes through that one process and the network
(on one quiet machine about as fast; slower when its core is busy, see docs/SCALE-DASK.md).

``scheduler``: ``"local"`` starts a :class:`distributed.LocalCluster` of ``workers`` processes (one thread each)
for the run; ``"tcp://HOST:PORT"`` (or any address a :class:`distributed.Client` accepts) uses an existing
cluster's scheduler and all its workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.batch import BatchInputError, BatchSummary, ModelRef, score_file, warm_model
from service.errors import CreditDecisionError, ModelUnavailable

#: How long to wait for an existing cluster to have at least one worker.
WORKER_WAIT_SECONDS = 60


class ClusterFailed(CreditDecisionError):
    """The Dask cluster lost a worker or the scheduler during the run; nothing was written."""


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise BatchInputError(
            "batch scoring on Dask needs dask and distributed, which are not installed; "
            "install them (pip install 'credit-decision[batch]') or run without --scheduler"
        ) from None
    return distributed


@contextmanager
def dask_client(scheduler: str, workers: int | None = None) -> Iterator[Any]:
    """A Dask client: on a LocalCluster of ``workers`` processes started for the run (``"local"``), or on the
    scheduler at ``scheduler`` (its workers, however many it has)."""
    distributed = _distributed()
    if scheduler == "local":
        n = workers or os.cpu_count() or 1
        with (
            distributed.LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",  # a cluster for this run only: nothing listens beyond this machine
                dashboard_address=":0",
                silence_logs=40,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
        return
    if workers is not None:
        raise BatchInputError("--workers applies to the embedded run and to --scheduler local, not to a cluster")
    try:
        client = distributed.Client(scheduler)  # waits up to dask's distributed.comm.timeouts.connect
    except (OSError, TimeoutError, ValueError) as exc:
        raise BatchInputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
        except TimeoutError:
            raise BatchInputError(
                f"the Dask scheduler at {scheduler} has no worker (waited {WORKER_WAIT_SECONDS} s)"
            ) from None
        yield client


#: glibc's mallopt parameters (malloc.h) and what the workers set them to
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES, MAP_FROM_BYTES = 256 << 20, 32 << 20


def keep_freed_memory() -> bool:
    """Run on a worker: let glibc's malloc keep freed memory for reuse; True if it could (glibc only).

    A Dask nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also fixes glibc's mmap threshold
    at 128 KiB: every large numpy temporary of a chunk (exact TreeSHAP's above all) is then mapped and unmapped
    again, page faults included, and a worker decided about half as fast as the same code in a process started
    without it. This sets the thresholds where glibc's own adjustment would take them for such a workload.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        kept = libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES) == 1
        return bool(kept and libc.mallopt(M_MMAP_THRESHOLD, MAP_FROM_BYTES) == 1)
    except (OSError, AttributeError):
        return False


def load_on_workers(client: Any, model: ModelRef) -> int:
    """Load (verify, self-check) the model in every worker process (whose malloc keeps freed memory, see
    :func:`keep_freed_memory`); the number of workers. ModelUnavailable naming the first worker that could not."""
    client.run(keep_freed_memory)
    problems: dict[str, str | None] = client.run(warm_model, model)
    for worker, problem in sorted(problems.items()):
        if problem is not None:
            raise ModelUnavailable(f"Dask worker {worker}: {problem}")
    return len(problems)


def score_file_on_dask(
    input_path: Path, output_path: Path, *, model: ModelRef, scheduler: str, workers: int | None = None, **options: Any
) -> BatchSummary:
    """:func:`service.batch.score_file` with its chunks decided on a Dask cluster (``options``: score_file's, e.g.
    ``read_on_workers``)."""
    from concurrent.futures import CancelledError

    _distributed()  # a clear error if it is not installed
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    with dask_client(scheduler, workers) as client:
        n = load_on_workers(client, model)  # before the clock, as the process pool's start-up
        runner = {"scheduler": "local" if scheduler == "local" else str(client.scheduler.address), "workers": n}
        try:
            return score_file(
                input_path,
                output_path,
                model=model,
                workers=n,
                executor=client.get_executor(pure=False),
                on_every_worker=lambda function, *args: list(client.run(function, *args).values()),
                runner={**runner, "engine": "dask", "dask": _version()},
                **options,
            )
        except (KilledWorker, CommClosedError, CancelledError, TimeoutError) as exc:
            raise ClusterFailed(
                f"the Dask cluster at {runner['scheduler']} failed during the run ({type(exc).__name__}: {exc}); "
                f"nothing was written to {output_path}"
            ) from exc


def _version() -> str:
    from importlib.metadata import version

    return version("distributed")
