"""Window loaders: decode windows of a :class:`~trainer.batches.BatchSource` ahead of the training loop.

A *window* is the unit of work (``window`` chunks, 16 by default; see ``trainer/batches.py``). The consumer asks
for windows in the order it will train on them (:meth:`WindowLoader.request`), takes each when it needs it
(:meth:`WindowLoader.take`) and gets plain numpy arrays it owns.

- :class:`ThreadLoader`: a thread pool; chunk reads, checksums and Blosc release the GIL. Window buffers are
  recycled the same way as the process loader's slots.
- :class:`ProcessLoader`: spawned worker processes owned by the loader (not Keras' pool). Workers decode straight
  into a ring of shared-memory slots and send back only ``(window, slot, rows)``; the training process gets numpy
  views of the slot, nothing is pickled or copied. A slot is reused only when no array refers to it any more: the
  views are made from one small owner object per window whose finalizer returns the slot to the ring. A backend
  that wraps a batch without copying (TensorFlow, JAX on CPU and PyTorch do for aligned numpy arrays) holds a
  reference to the numpy array, so its tensor keeps the slot too; a slot is never overwritten under anyone. If
  every slot is still held, the window is decoded in the training process instead (counted in ``fallbacks``).

Process lifetime is owned here: the parent never blocks on a pipe without a timeout and watches every worker's
sentinel, so a worker that dies (``kill -9``, the OOM killer) ends the wait with a one-line :class:`LoaderError`
within a fraction of a second. Workers exit when the parent closes their pipe, which also happens when the parent
is killed. The shared-memory segment (``/dev/shm/quest-loader-*`` on Linux) is unlinked as soon as every worker
has mapped it, so no crash of either side can leak it; until then Python's resource tracker owns it.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import multiprocessing
import multiprocessing.connection as mpc
import pickle
import time
import weakref
from collections import deque
from multiprocessing import shared_memory

import numpy as np

from store import StoreError

from ._slots import SHM_PREFIX, close_segment, create_segment, layout_of, owned_views, parts_of, slot_views
from ._worker import worker_main
from .batches import BatchSource, LoaderError

__all__ = ["WindowLoader", "ThreadLoader", "ProcessLoader", "SHM_PREFIX", "loader_for"]

_POLL_S = 0.5  # how often a waiting parent re-checks that its workers live
_START_TIMEOUT_S = 120.0


Key = tuple[int, int]  # (epoch, window)


class WindowLoader:
    """Loads windows ``(epoch, w)`` ahead of use. ``request`` is cheap and idempotent; ``take`` blocks until the
    window is there and hands it over (the loader forgets it); ``discard`` drops requests no longer needed."""

    def __init__(self, source: BatchSource):
        self.source = source

    def request(self, key: Key) -> None:
        raise NotImplementedError

    def take(self, key: Key) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def discard(self, keep=lambda key: False) -> None:
        """Forget every requested window for which ``keep(key)`` is false (e.g. another epoch's)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def loader_for(source: BatchSource, workers: int, processes: bool) -> WindowLoader:
    return ProcessLoader(source, workers) if processes else ThreadLoader(source, workers)


class ThreadLoader(WindowLoader):
    """Windows decoded in ``workers`` threads. Window buffers are recycled like the process loader's slots (a
    buffer is reused only once no array refers to it): fresh multi-megabyte allocations would be page-faulted
    in every window (glibc returns them to the system; in a TensorFlow process always)."""

    def __init__(self, source: BatchSource, workers: int = 1, spares: int | None = None):
        super().__init__(source)
        self._pool = cf.ThreadPoolExecutor(max(1, workers), thread_name_prefix="quest-loader")
        self._futures: dict[Key, cf.Future] = {}
        self.layout, self.slot_bytes = layout_of(source)
        self._parts = parts_of(self.layout)
        self._spare: deque[np.ndarray] = deque()  # buffers no array refers to any more (any thread appends)
        self._spares = spares if spares is not None else 2 * max(1, workers) + 6

    def request(self, key: Key) -> None:
        if key not in self._futures:
            self._futures[key] = self._pool.submit(self._load, key)

    def _load(self, key: Key) -> tuple[np.ndarray, int]:
        try:
            flat = self._spare.popleft()
        except IndexError:
            flat = np.empty(self.slot_bytes, np.uint8)
        out = self.source.load_window(*key, out=slot_views(flat, 0, self.layout, self.slot_bytes))
        return flat, len(next(iter(out.values())))

    def take(self, key: Key) -> dict[str, np.ndarray]:
        self.request(key)
        future = self._futures.pop(key)
        try:
            flat, rows = future.result()
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - name the window in whatever went wrong
            raise LoaderError(_describe(exc, key, self.source)) from None
        return owned_views(flat, self._parts, rows, self._give_back, flat)

    def _give_back(self, flat: np.ndarray) -> None:
        if len(self._spare) < self._spares:
            self._spare.append(flat)

    def discard(self, keep=lambda key: False) -> None:
        for key in [k for k in self._futures if not keep(k)]:
            self._futures.pop(key).cancel()

    def close(self) -> None:
        self.discard()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._spare.clear()


class ProcessLoader(WindowLoader):
    """Windows decoded in ``workers`` spawned processes into shared-memory slots (see the module docstring).

    Args:
        source: what to load; pickled once to each worker.
        workers: processes.
        slots: shared-memory slots, each one window (default ``2 * workers + 6``: every worker busy with one
            window and one queued, plus the windows still referenced by the feed and by the backend's queue).
        start_timeout: seconds a worker may take to start (import numpy and this package, map the segment).
    """

    def __init__(self, source: BatchSource, workers: int = 2, slots: int | None = None,
                 start_timeout: float = _START_TIMEOUT_S):
        super().__init__(source)
        self.workers = max(1, workers)
        self.slots = slots or 2 * self.workers + 6
        self.layout, self.slot_bytes = layout_of(source)
        self.start_timeout = start_timeout
        self._shm: shared_memory.SharedMemory | None = None
        self._procs: list = []
        self._conns: list = []
        self._busy: list[int] = []  # windows sent to each worker and not answered yet
        self._free: list[int] = []
        self._queued: deque[Key] = deque()  # requested, waiting for a slot
        self._sent: dict[Key, tuple[int, int]] = {}  # key -> (worker, slot)
        self._ready: dict[Key, tuple[int, int]] = {}  # key -> (slot, rows)
        self._failed: dict[Key, str] = {}
        self._dropped: set[Key] = set()  # sent, then discarded: free the slot when the answer comes
        self._returned: deque[int] = deque()  # slots given back by finalizers (any thread)
        self.fallbacks = 0  # windows decoded here because every slot was still referenced
        self._finalizer = None
        self._closed = False
        self._slot_arrays: list[np.ndarray] = []
        self._parts: list = []

    # -- lifetime ---------------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._procs:
            return
        if self._closed:
            raise LoaderError(f"the loader of {self.source.path} was closed")
        size = self.slots * self.slot_bytes
        self._shm = create_segment(size)
        ctx = multiprocessing.get_context("spawn")  # never fork a process that may run TensorFlow or JAX
        try:
            for index in range(self.workers):
                parent, child = ctx.Pipe(duplex=True)
                proc = ctx.Process(target=worker_main, name=f"quest-loader-{index}", daemon=True,
                                   args=(child, pickle.dumps(self.source), self._shm.name, self.layout,
                                         self.slot_bytes))
                proc.start()
                child.close()
                self._procs.append(proc)
                self._conns.append(parent)
                self._busy.append(0)
            self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._conns, self._shm)
            self._await_ready()
        except BaseException:
            _shutdown(self._procs, self._conns, self._shm)
            self._procs, self._conns = [], []
            raise
        self._shm.unlink()  # every worker has mapped it: from now on no crash can leak the segment
        self._free = list(range(self.slots))
        self._slot_arrays = [np.frombuffer(self._shm.buf, np.uint8, count=self.slot_bytes, offset=i * self.slot_bytes)
                             for i in range(self.slots)]
        self._parts = parts_of(self.layout)

    def _await_ready(self) -> None:
        waiting = set(range(self.workers))
        deadline = time.monotonic() + self.start_timeout
        while waiting:
            if time.monotonic() > deadline:
                raise LoaderError(f"loader worker processes did not start within {self.start_timeout:.0f} s; use "
                                  "threads (--loader threads) or fewer --workers")
            for i, message in self._poll([i for i in waiting]):
                if message[0] == "ready":
                    waiting.discard(i)
                elif message[0] == "error":
                    raise LoaderError(f"a loader worker process could not start: {message[-1]}")

    def close(self) -> None:
        """Stop the workers (waiting up to a few seconds for each) and release the shared memory."""
        self._closed = True
        if self._finalizer is not None:
            self._finalizer()
        self._procs, self._conns = [], []

    # -- requests ---------------------------------------------------------------------------------------------

    def request(self, key: Key) -> None:
        if key in self._dropped:  # sent, discarded, wanted again: keep its answer
            self._dropped.discard(key)
            return
        if key in self._sent or key in self._ready or key in self._failed or key in self._queued:
            return
        self._queued.append(key)
        self._dispatch()

    def take(self, key: Key) -> dict[str, np.ndarray]:
        self._start()
        self.request(key)
        while key not in self._ready:
            if key in self._failed:
                raise LoaderError(self._failed.pop(key))
            if key in self._queued and not self._free and not self._sent:
                if self._ready:  # every slot holds a window loaded ahead: drop the oldest one
                    self._free.append(self._ready.pop(next(iter(self._ready)))[0])
                    self._dispatch()
                elif not self._reclaim():  # every slot is still referenced by earlier batches
                    self._queued.remove(key)
                    self.fallbacks += 1
                    return self.source.load_window(*key)
            self._pump()
        slot, rows = self._ready.pop(key)
        return self._hand_over(slot, rows)

    def _hand_over(self, slot: int, rows: int) -> dict[str, np.ndarray]:
        """Views of the window in ``slot``, owned by one object that gives the slot back when the last is gone."""
        return owned_views(self._slot_arrays[slot], self._parts, rows, self._returned.append, slot)

    def _reclaim(self) -> bool:
        """Collect garbage cycles that may hold old windows; True if a slot came back."""
        gc.collect()
        self._drain()
        return bool(self._free)

    def _drain(self) -> None:
        while self._returned:
            self._free.append(self._returned.popleft())

    def discard(self, keep=lambda key: False) -> None:
        self._queued = deque(k for k in self._queued if keep(k))
        for key in [k for k in self._ready if not keep(k)]:
            self._free.append(self._ready.pop(key)[0])
        for key in [k for k in self._failed if not keep(k)]:
            del self._failed[key]
        self._dropped.update(k for k in self._sent if not keep(k))
        self._dispatch()

    def _dispatch(self) -> None:
        if not self._procs:
            return
        self._drain()
        while self._queued and self._free:
            worker = min(range(self.workers), key=self._busy.__getitem__)
            if self._busy[worker] >= 2:  # each worker: one window in hand, one waiting in its pipe
                return
            key, slot = self._queued.popleft(), self._free.pop()
            try:
                self._conns[worker].send(("load", key[0], key[1], slot))
            except OSError:  # its end is gone: the worker died
                self._free.append(slot)
                self._queued.appendleft(key)
                self._procs[worker].join(1.0)
                self._check_alive()
                raise LoaderError(f"lost the pipe to loader worker process {self._procs[worker].pid}") from None
            self._busy[worker] += 1
            self._sent[key] = (worker, slot)

    def _pump(self, timeout: float = _POLL_S) -> None:
        """Handle what the workers sent: first whatever is already there, else wait up to ``timeout`` seconds for
        something, watching every worker's sentinel; raise if a worker died."""
        messages = self._receive(range(self.workers))
        if not messages and timeout:
            messages = self._poll(range(self.workers), timeout)
        for i, message in messages:
            kind, epoch, w, slot = message[:4]
            key = (epoch, w)
            self._busy[i] -= 1
            self._sent.pop(key, None)
            if key in self._dropped:
                self._dropped.discard(key)
                self._free.append(slot)
            elif kind == "done":
                self._ready[key] = (slot, message[4])
            else:
                self._free.append(slot)
                self._failed[key] = message[4]
        self._dispatch()

    def _receive(self, workers) -> list[tuple[int, tuple]]:
        """Messages already waiting (no blocking: ``poll(0)`` per pipe)."""
        messages = []
        for i in workers:
            conn = self._conns[i]
            try:
                while conn.poll(0):
                    messages.append((i, conn.recv()))
            except (EOFError, OSError):
                pass  # the worker is gone; its sentinel tells how
        return messages

    def _poll(self, workers, timeout: float = _POLL_S) -> list[tuple[int, tuple]]:
        """Wait up to ``timeout`` for messages from ``workers``; LoaderError if any worker died. Every message is
        one small pickle written by one ``write`` (atomic on a pipe), so a ready pipe never blocks ``recv`` even
        if its worker died right after."""
        workers = list(workers)
        sentinels = [p.sentinel for p in self._procs]
        mpc.wait([self._conns[i] for i in workers] + sentinels, timeout)
        messages = self._receive(workers)
        self._check_alive()
        return messages

    def _check_alive(self) -> None:
        for i, proc in enumerate(self._procs):
            if proc.exitcode is not None:
                raise LoaderError(self._death(i))

    def _death(self, i: int) -> str:
        proc = self._procs[i]
        code = proc.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        doing = [f"window {w} of epoch {e}" for (e, w), (worker, _) in self._sent.items() if worker == i]
        what = f" while loading {doing[0]}" if doing else ""
        return (f"a loader worker process (pid {proc.pid}) died ({how}){what} of {self.source.path}: killed, out of "
                "memory, or it could not start (worker processes are spawned: start training under "
                "`if __name__ == \"__main__\":`); re-run with --resume, or use threads (--loader threads)")



def _shutdown(procs, conns, shm) -> None:
    """Stop workers (pipe closed -> they exit), reap them, kill stragglers, release the segment."""
    for conn in conns:
        try:
            conn.close()
        except OSError:
            pass
    deadline = time.monotonic() + 5.0
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.exitcode is None:
            proc.kill()
            proc.join(1.0)
    if shm is not None:
        close_segment(shm)
        try:
            shm.unlink()
        except FileNotFoundError:
            pass


def _describe(exc: BaseException, key: Key, source: BatchSource) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"loading window {key[1]} of epoch {key[0]} of {source.path}: {type(exc).__name__}: {text}"
