"""The loader worker process (see :mod:`trainer.loader`). This module imports nothing heavy at the top: the
process first makes multiprocessing unlink its semaphores at once (numcodecs creates a lock at import), so a
worker killed with ``kill -9`` leaves nothing for the resource tracker to clean up and warn about."""

from __future__ import annotations

import multiprocessing
import signal

_MESSAGE_LIMIT = 900  # characters of an error text: every message must fit one atomic pipe write (4096 bytes)


def worker_main(conn, payload: bytes, shm_name: str, layout, slot_bytes: int) -> None:
    """Load windows into slots until the parent closes the pipe (also when the parent dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    multiprocessing.set_start_method("fork", force=True)  # locks created from here on are unlinked at once
    import pickle
    from multiprocessing import shared_memory

    from store import StoreError

    from ._slots import close_segment, slot_views
    from .loader import _describe
    try:
        source = pickle.loads(payload)
        shm = shared_memory.SharedMemory(name=shm_name)
    except Exception as exc:  # noqa: BLE001 - reported, then exit
        _send(conn, ("error", -1, -1, -1, f"{type(exc).__name__}: {exc}"[:_MESSAGE_LIMIT]))
        return
    if not _send(conn, ("ready", -1, -1, -1)):  # the parent gave up waiting (start timeout, error, Ctrl-C)
        close_segment(shm)
        return
    while True:
        try:
            _, epoch, w, slot = conn.recv()
        except (EOFError, OSError):
            break
        try:
            out = source.load_window(epoch, w, out=slot_views(shm.buf, slot, layout, slot_bytes))
            reply = ("done", epoch, w, slot, len(next(iter(out.values()))))
            del out
        except StoreError as exc:
            reply = ("error", epoch, w, slot, str(exc)[:_MESSAGE_LIMIT])
        except Exception as exc:  # noqa: BLE001 - any failure is reported with its window
            reply = ("error", epoch, w, slot, _describe(exc, (epoch, w), source)[:_MESSAGE_LIMIT])
        if not _send(conn, reply):
            break
    source.close()
    close_segment(shm)


def _send(conn, message) -> bool:
    try:
        conn.send(message)
        return True
    except OSError:  # the parent is gone or closed the pipe
        return False
