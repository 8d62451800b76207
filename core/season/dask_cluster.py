"""Products on Dask distributed: one task per product, on this machine or a cluster.

We schedule nothing ourselves. Without a scheduler address an embedded
``LocalCluster`` is started, sized so that the products running at once fit
the machine: each worker runs one product at a time (one Dask thread) with
onnxruntime using ``threads`` cores, and holds about ``PRODUCT_MEMORY`` bytes.
With an address (``tcp://host:8786``) the tasks go to that cluster, started by
whatever the site uses (``dask scheduler``/``dask worker`` by hand,
dask-jobqueue on a batch system, dask-kubernetes).

A worker that dies in the middle of a product (killed, out of memory, its
machine lost) is the scheduler's business: it reruns the task elsewhere
(``distributed.scheduler.allowed-failures``). Outputs are renamed into place
only when complete, so a rerun never meets half a mask; the hidden partial
file a killed worker leaves is removed at the end.

Dask is imported only here and only when used: QGIS users do not need it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

R = TypeVar("R")

# Peak of one full Sentinel-2 tile (10980 px, streaming, default model): about 1.1 GB
# (README, performance), plus the worker process itself.
PRODUCT_MEMORY = 1.5 * 1024**3


@dataclass(frozen=True)
class Sizing:
    workers: int
    threads: int  # onnxruntime threads per product
    memory_limit: int  # bytes per worker

    def describe(self) -> str:
        return (
            f"{self.workers} worker(s) x 1 product at a time, {self.threads} onnxruntime thread(s) each, "
            f"memory limit {self.memory_limit / 1024**3:.1f} GB per worker"
        )


def size_cluster(
    products: int, workers: int = 0, threads: int = 0, cpus: int | None = None, memory: int | None = None
) -> Sizing:
    """Workers x threads that fit the cores, and workers x ``PRODUCT_MEMORY`` that fit the memory.

    ``workers`` or ``threads`` given by the user are kept (threads fill the cores
    left to each worker); 0 means choose. Never more workers than products.
    """
    cpus = cpus or os.cpu_count() or 1
    if memory is None:
        import psutil  # comes with distributed

        memory = psutil.virtual_memory().available
    by_memory = max(1, int(memory // PRODUCT_MEMORY))
    if workers <= 0:
        per = threads if threads > 0 else 2  # 2 threads per product: onnxruntime scales well to 2
        workers = max(1, min(cpus // per, by_memory))
    workers = max(1, min(workers, max(1, products)))
    if threads <= 0:
        threads = max(1, cpus // workers)
    limit = max(int(PRODUCT_MEMORY), int(memory // workers))
    return Sizing(workers, threads, limit)


def _on_worker(task: Callable[..., R], *args) -> R:
    """What a worker runs: ``task(*args)``, with onnxruntime from the data home when its Python lacks it."""
    from ..runtime import deps

    deps.ensure_on_path()
    return task(*args)


def local_cluster(sizing: Sizing, dashboard: str | None = ":0"):
    """Worker processes that ignore Ctrl-C.

    The terminal sends it to the whole process group, and only this process should act on it
    (cancel, write the summary, close the cluster)."""
    import signal

    from distributed import LocalCluster

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the worker processes
    try:
        return LocalCluster(
            n_workers=sizing.workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=sizing.memory_limit,
            dashboard_address=dashboard,
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def run(
    client,
    task: Callable[..., R],
    jobs: dict[str, tuple],
    failed: Callable[[str, Exception], R],
    on_result: Callable[[R], None] | None = None,
) -> list[R]:
    """Submit ``task(*args)`` for each of ``jobs`` (name -> args) to ``client``; the results as they finish.

    A job whose task fails everywhere it was given gets ``failed(name, error)`` as its result: one
    lost product never stops a season. On KeyboardInterrupt the pending tasks are cancelled and
    the results finished so far are in the exception's ``results`` attribute.
    """
    from distributed import as_completed

    futures = {client.submit(_on_worker, task, *args, key=name, pure=False): name for name, args in jobs.items()}
    results: list[R] = []
    try:
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as err:  # noqa: BLE001 - e.g. the task failed on every worker it was given
                result = failed(futures[future], err)
            results.append(result)
            if on_result:
                on_result(result)
    except KeyboardInterrupt as err:
        client.cancel(list(futures))
        err.results = results  # type: ignore[attr-defined]
        raise
    return results


def overhead_seconds(client, rounds: int = 20) -> float:
    """Round trip of an empty task through the scheduler (the per-product cost of scheduling)."""
    import time

    client.submit(math.sqrt, 1.0, pure=False).result()
    start = time.perf_counter()
    for k in range(rounds):
        client.submit(math.sqrt, float(k), pure=False).result()
    return (time.perf_counter() - start) / rounds
