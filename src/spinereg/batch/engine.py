"""Dask: the cluster the units run on, and the loop that follows them.

* ``LocalCluster`` by default: one worker process per core the memory allows (``auto``: CPUs
  available to this process, at most one per 2 GB), one thread each; ITK/OpenMP/BLAS threads are
  capped to the worker's threads in the workers' environment and again inside each task
  (:func:`spinereg.batch.unit.cap_threads`), so that workers do not oversubscribe the cores.
* ``scheduler="tcp://host:8786"``: an existing cluster (``dask scheduler`` / ``dask worker``;
  the workers need spinereg installed and the BIDS and output folders at the same paths).
* ``slurm={...}``: a ``dask_jobqueue.SLURMCluster`` (``pip install 'spinereg[slurm]'``) scaled to
  ``workers`` jobs; keys are passed to SLURMCluster (queue, account, walltime, memory, cores...).

:func:`follow` submits every unit, then reports each result as it arrives and redraws a live
line (done / failed / running / queued) on a terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spinereg.batch.unit import THREAD_VARS, run_unit
from spinereg.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client


@dataclass
class EngineInfo:
    kind: str  # local, scheduler, slurm
    address: str
    workers: int
    threads_per_worker: int


def auto_workers(memory_gb_per_worker: float | None = None) -> int:
    """Workers for this machine: CPUs available to the process, at most one per 2 GB of memory."""
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        ncpu = os.cpu_count() or 1
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        mem_gb = 4.0 * ncpu
    return max(1, min(ncpu, int(mem_gb // (memory_gb_per_worker or 2.0))))


@contextlib.contextmanager
def cluster(scheduler: str | None = None, workers: int | None = None, threads: int = 1,
            memory_gb: float | None = None, slurm: dict | None = None) -> Iterator[tuple[object, EngineInfo]]:
    """``(client, info)`` for the run (see module doc); closed on exit."""
    import logging

    from distributed import Client, LocalCluster

    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # Dask's chatter only with -v
        for name in ("distributed", "dask", "tornado"):
            logging.getLogger(name).setLevel(logging.ERROR)
    for var in THREAD_VARS:  # inherited by the local worker processes
        os.environ[var] = str(threads)
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler ({exc})", scheduler,
                             "start it (`dask scheduler`) or check the address (tcp://HOST:8786)") from exc
        n = len(client.scheduler_info().get("workers", {}))
        try:
            yield client, EngineInfo("scheduler", scheduler, n, threads)
        finally:
            client.close()
        return
    if slurm is not None:
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError as exc:
            raise InputError("SLURM needs dask-jobqueue, which is not installed", None,
                             "python -m pip install 'spinereg[slurm]'") from exc
        opts = {"cores": threads, "processes": 1, "memory": f"{int(memory_gb or 4)}GB",
                "job_script_prologue": [f"export {v}={threads}" for v in THREAD_VARS], **slurm}
        cl = SLURMCluster(**opts)
        cl.scale(jobs=workers or 1)
        client = Client(cl)
        try:
            yield client, EngineInfo("slurm", cl.scheduler_address, workers or 1, threads)
        finally:
            client.close()
            cl.close()
        return
    n = workers or auto_workers(memory_gb)
    mem = f"{memory_gb}GB" if memory_gb else "auto"
    cl = LocalCluster(n_workers=n, threads_per_worker=threads, processes=True, memory_limit=mem,
                      dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
                      silence_logs=logging.ERROR)
    client = Client(cl)
    try:
        yield client, EngineInfo("local", cl.scheduler_address, n, threads)
    finally:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            cl.close()


class LiveLine:
    """``[#####-----] 7/16 | done 5 | failed 2 | running 2 | queued 7 | 1:23``: redrawn on a
    terminal; without one, nothing (the per-unit lines say it all)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.t0 = total, enabled, time.monotonic()
        self.done = self.failed = self.running = 0

    def draw(self, end: str = "") -> None:
        if not self.enabled:
            return
        from spinereg.progress import _bar

        fin = self.done + self.failed
        secs = int(time.monotonic() - self.t0)
        queued = max(self.total - fin - self.running, 0)
        sys.stderr.write(f"\r[{_bar(fin / max(self.total, 1))}] {fin}/{self.total} | done {self.done} | failed "
                         f"{self.failed} | running {self.running} | queued {queued} | {secs // 60}:{secs % 60:02d}"
                         + end)
        sys.stderr.flush()


def follow(client: Client, jobs: list[tuple[str, tuple]], threads: int,
           on_result: Callable[[dict], None], live: LiveLine, run_id: str) -> None:
    """Submit ``run_unit(*args)`` for every (key, args) and call ``on_result`` as each finishes.

    A unit whose worker died too often (Dask's ``allowed-failures``) is reported failed with that
    reason; the other units go on."""
    from distributed import wait

    futures = {}
    for key, args in jobs:
        fut = client.submit(run_unit, *args, threads=threads, key=f"{key}-{run_id}", pure=False)
        futures[fut] = key
    pending = set(futures)
    last_poll = 0.0
    while pending:
        try:
            done, pending = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        for fut in done:
            key = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, lost scheduler...
                name = type(exc).__name__
                why = ("its worker died each time it ran (out of memory? killed?)" if name == "KilledWorker"
                       else " ".join(str(exc).split()) or name)
                res = {"unit": key, "status": "failed", "reason": f"{name}: {why} -- fix: rerun the same command "
                       "(completed units are kept)"}
            on_result(res)
        now = time.monotonic()
        if live.enabled and now - last_poll > 1.0:
            last_poll = now
            with contextlib.suppress(Exception):
                proc = client.processing()
                live.running = min(sum(len(v) for v in proc.values()), len(pending))
        live.running = min(live.running, len(pending))
        live.draw()
    live.running = 0
    live.draw("\n")
