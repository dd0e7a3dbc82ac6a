"""Run the passes of an ingest as tasks on an existing Dask cluster (``ingest --dask tcp://scheduler:8786``).

The work items are the same plain functions of :mod:`ingest.passes` that local worker processes run; the shared
:class:`~ingest.passes.Context` is scattered to every Dask worker once per pass. The workers read the sources and
write the work files themselves, so local source files and the work directory (``OUT.partial``, or ``--work``) must be
on a filesystem every worker sees at the same path (NFS, Lustre, a mounted bucket...); sources given as URLs
(``s3://bucket/logs/*.csv``) are read by each worker with ranged GETs, with the workers' own credentials. The store's
content does not depend on where a task ran: it equals a local run's with the same seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from store import OptionError, StoreError, is_remote

from . import passes
from .sources import source_readable

__all__ = ["dask_map"]


def run_with_context(fn: Callable, item, ctx: passes.Context):
    """One task on a Dask worker: install the pass's context in this worker process, then run ``fn(item)``."""
    passes.set_context(ctx)
    return fn(item)


@contextmanager
def dask_map(address: str, ctx: passes.Context):
    """A ``map(fn, items)``-like callable (results in item order) running each item as a task on the cluster."""
    try:
        from distributed import Client
    except ImportError:
        raise OptionError("--dask needs the 'distributed' package: pip install 'dask[distributed]'") from None
    try:
        client = Client(address, set_as_default=False)  # timeout: dask config distributed.comm.timeouts.connect
    except (OSError, TimeoutError) as exc:
        raise OptionError(f"--dask {address}: cannot reach the Dask scheduler ({exc}); start one with `dask "
                          "scheduler` and workers with `dask worker ADDRESS`, or drop --dask") from None
    try:
        _check_workers_see(client, address, [ctx.work] + _checked_sources(ctx.files))
        yield lambda fn, items: _ordered_results(client, ctx, fn, list(items))
    finally:
        client.close()


def _checked_sources(files) -> list[str]:
    """Every local source, and the first object under each prefix: reaching one object tells that a worker has the
    backend, credentials and endpoint, and the objects were listed here already (a HEAD per object of a glob of
    thousands would be slow)."""
    local = sorted({f.path for f in files if not is_remote(f.path)})
    first: dict[str, str] = {}
    for f in files:
        if is_remote(f.path):
            first.setdefault(f.path.rsplit("/", 1)[0], f.path)
    return local + sorted(first.values())


def _missing(paths: list[str]) -> list[str]:
    """The paths this (worker) process cannot see: local paths that do not exist, objects it cannot read."""
    return [p for p in paths if not source_readable(p)]


def _check_workers_see(client, address: str, paths: list[str]) -> None:
    """Fail early, in one line, when the cluster has no workers or a worker cannot see the sources or the work
    directory (instead of tasks failing on the workers with tracebacks)."""
    if not client.scheduler_info().get("workers"):
        raise OptionError(f"--dask {address}: the scheduler has no workers; start some with `dask worker {address}`")
    for worker, missing in client.run(_missing, paths).items():
        if missing and is_remote(missing[0]):
            raise OptionError(f"--dask: worker {worker} cannot read {missing[0]}; each Dask worker reads the objects "
                              "itself: install fsspec and the URL's backend there (s3fs for s3://) and give the "
                              "workers the same credentials and endpoint (AWS_* environment) as this machine")
        if missing:
            raise OptionError(f"--dask: worker {worker} cannot see {missing[0]}; local sources and the work "
                              "directory must be on a filesystem every Dask worker shares, under the same absolute "
                              "path")


def _ordered_results(client, ctx: passes.Context, fn: Callable, items: list) -> Iterator:
    from distributed import KilledWorker

    if not items:
        return
    shared = client.scatter(ctx, broadcast=True, hash=False)
    futures = client.map(run_with_context, [fn] * len(items), items, ctx=shared, pure=False)
    try:
        for future in futures:
            try:
                yield future.result()
            except KilledWorker as exc:
                raise StoreError(f"a Dask worker died while running {fn.__name__} ({exc}); check the workers' "
                                 "memory and logs, then re-run the same command with --resume") from None
    finally:
        client.cancel(futures)
