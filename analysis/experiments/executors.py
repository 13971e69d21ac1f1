"""Executors that run ensemble seeds: in-process, in a local process pool, or on a Dask cluster.

``make_executor(workers=1, scheduler=None, dask_local=None)`` is a context manager yielding a
``concurrent.futures.Executor``:

* ``workers=1`` (default): :class:`SerialExecutor`, every task runs in this process when submitted;
* ``workers=W > 1``: ``concurrent.futures.ProcessPoolExecutor(W)`` (forkserver processes that import the
  model once, so that the pool is safe to start from a process that already runs threads);
* ``scheduler="tcp://host:8786"``: ``distributed.Client(ADDRESS).get_executor()`` on an existing Dask
  cluster (every worker needs this project installed, at the same version);
* ``dask_local=W``: a ``distributed.LocalCluster`` of W single-threaded worker processes, started for the
  run and closed after it.

Dask is imported only by the last two. Problems a user can fix (a scheduler that does not answer, Dask not
installed) raise :class:`ExecutorError` with a one-line message.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# Modules the forkserver imports once, so that each pool worker starts with the model already loaded.
PRELOAD = ["analysis.experiments.ensemble"]
CONNECT_TIMEOUT = "10s"  # a wrong address fails in 10 s, not the 30 s default


class ExecutorError(RuntimeError):
    """An executor that cannot be started (bad scheduler address, Dask missing); one-line message."""


class SerialExecutor(cf.Executor):
    """Runs each task in this process at ``submit`` and returns an already finished future."""

    def __init__(self) -> None:
        self._shutdown = False

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        fut: cf.Future = cf.Future()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # KeyboardInterrupt and SystemExit propagate to the caller
            fut.set_exception(exc)
        else:
            fut.set_result(result)
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


def capacity(executor: cf.Executor) -> int:
    """How many tasks the executor runs at once (Dask: threads of the workers connected now, >= 1)."""
    if isinstance(executor, SerialExecutor):
        return 1
    if isinstance(executor, cf.ProcessPoolExecutor | cf.ThreadPoolExecutor):
        return max(int(getattr(executor, "_max_workers", 1)), 1)
    client = getattr(executor, "_client", None)
    if client is not None:
        try:
            return max(sum(client.nthreads().values()), 1)
        except Exception:  # scheduler busy or gone: any positive number keeps the queue moving
            return 1
    return 1


def run_windowed(executor: cf.Executor, jobs: Iterable[tuple[Any, Callable, tuple]],
                 finished: Callable[[Any, cf.Future], None]) -> None:
    """Run ``fn(*args)`` for each ``(tag, fn, args)`` of ``jobs`` on ``executor`` and call
    ``finished(tag, future)`` as each is done (those done together in the order they were submitted).

    At most a few jobs per worker are in flight (re-read every 5 s: a Dask cluster may grow while it runs), so
    that a long list of jobs does not sit in memory. If ``finished`` or the loop raises, the jobs not yet
    started are cancelled and the exception propagates."""
    serial = isinstance(executor, SerialExecutor)

    def window() -> int:
        return 1 if serial else max(2 * capacity(executor), 8)

    size, sized_at = window(), time.monotonic()
    inflight: dict[cf.Future, tuple[int, Any]] = {}
    queue = enumerate(jobs)
    try:
        exhausted = False
        while True:
            if not serial and time.monotonic() - sized_at > 5.0:
                size, sized_at = window(), time.monotonic()
            while not exhausted and len(inflight) < size:
                nxt = next(queue, None)
                if nxt is None:
                    exhausted = True
                    break
                k, (tag, fn, args) = nxt
                inflight[executor.submit(fn, *args)] = (k, tag)
            if not inflight:
                break
            done, _ = cf.wait(list(inflight), return_when=cf.FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: inflight[f][0]):
                _, tag = inflight.pop(fut)
                finished(tag, fut)
    finally:
        for fut in inflight:
            fut.cancel()


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ExecutorError(f"Dask is not installed ({exc}); pip install 'dask[distributed]'") from None
    return distributed


def _process_pool(workers: int) -> cf.ProcessPoolExecutor:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def _terminate_workers(ex: cf.ProcessPoolExecutor) -> None:
    """Stop the pool's worker processes now (on Ctrl-C or an error) instead of finishing running tasks."""
    if hasattr(ex, "terminate_workers"):  # Python >= 3.14
        ex.terminate_workers()
        return
    for proc in list((getattr(ex, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.terminate()


@contextlib.contextmanager
def make_executor(workers: int = 1, scheduler: str | None = None,
                  dask_local: int | None = None) -> Iterator[cf.Executor]:
    """Yield an executor for ``workers`` local processes, a Dask ``scheduler`` address or a local Dask
    cluster of ``dask_local`` processes (at most one of the last two); everything started is closed on
    exit. On an exception (Ctrl-C included) queued tasks are cancelled instead of waited for."""
    if scheduler is not None and dask_local is not None:
        raise ExecutorError("give either a scheduler address or dask_local, not both")
    if scheduler is None and dask_local is None:
        if workers < 1:
            raise ExecutorError(f"workers must be >= 1 (given {workers})")
        ex: cf.Executor = SerialExecutor() if workers == 1 else _process_pool(workers)
        try:
            yield ex
        except BaseException:
            if isinstance(ex, cf.ProcessPoolExecutor):
                _terminate_workers(ex)
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        ex.shutdown(wait=True)
        return

    distributed = _import_distributed()
    with contextlib.ExitStack() as stack:
        if dask_local is not None:
            if dask_local < 1:
                raise ExecutorError(f"dask_local must be >= 1 (given {dask_local})")
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=dask_local, threads_per_worker=1, processes=True,
                dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR))
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, ValueError) as exc:
                msg = " ".join(str(exc).split()) or type(exc).__name__
                raise ExecutorError(f"cannot connect to the Dask scheduler at {scheduler}: {msg}") from None
            stack.enter_context(client)
        ex = client.get_executor()
        try:
            yield ex
        except BaseException:
            ex.shutdown(wait=False)
            raise
        ex.shutdown(wait=True)
