"""Exclusive locks: one writer at a time for an ingest's output and for a training run's directory.

A lock is ``fcntl.flock`` on a small file of ours (``{"made_by": ..., "pid": N}``). The kernel drops it when the
holder exits in any way, ``kill -9`` included, so a crashed run never blocks the next one; a second writer gets one
line naming the holder's PID instead of sharing temporary names with it or deleting its work. The file is removed
on release (while still locked; a process that opened it just before checks after locking that it locked the file
that is still there, and retries otherwise).
"""

from __future__ import annotations

import fcntl
import json
import os

from .errors import LockedError, OutputExistsError

__all__ = ["Lock"]

_MAX_BYTES = 4096  # a lock file of ours is one short JSON line


class Lock:
    """Hold ``path`` exclusively, as a context manager (or ``acquire()`` / ``release()``).

    Args:
        path: the lock file (created if absent; a file there that is not one of our lock files is never touched).
        what: what the lock protects, for the error message ("the ingest into quest.zarr").
        made_by: the tool that writes the file ("ingest", "trainer").

    Raises:
        LockedError: another process holds it.
        OutputExistsError: ``path`` exists and is not a lock file of ours.

    Example::

        with Lock("quest.zarr.partial.lock", "the ingest into quest.zarr", made_by="ingest"):
            ...
    """

    def __init__(self, path: str, what: str, *, made_by: str):
        self.path, self.what, self.made_by = path, what, made_by
        self._fd: int | None = None

    def acquire(self) -> "Lock":
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                self._check_ours(fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise LockedError(f"{self.what} is in progress in another process ({self._holder(fd)}, lock "
                                      f"{self.path}); wait for it to finish or stop it, then run again",
                                      path=self.path) from None
                if self._still_there(fd):
                    self._fd, fd = fd, None
                    self._write_owner()
            finally:
                if fd is not None:
                    os.close(fd)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.remove(self.path)  # while still held: whoever opened it meanwhile sees it is gone and retries
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _check_ours(self, fd: int) -> None:
        text = os.pread(fd, _MAX_BYTES + 1, 0)
        if text and self._owner(text) is None:
            raise OutputExistsError(f"{self.path} exists and is not a lock file of {self.made_by}; refusing to "
                                    "touch it: move it away", path=self.path)

    def _holder(self, fd: int) -> str:
        owner = self._owner(os.pread(fd, _MAX_BYTES + 1, 0))
        return f"PID {owner['pid']}" if owner and isinstance(owner.get("pid"), int) else "PID unknown"

    def _owner(self, text: bytes) -> dict | None:
        if len(text) > _MAX_BYTES:
            return None
        try:
            owner = json.loads(text)
        except ValueError:
            return None
        return owner if isinstance(owner, dict) and owner.get("made_by") == self.made_by else None

    def _still_there(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def _write_owner(self) -> None:
        data = json.dumps({"made_by": self.made_by, "pid": os.getpid()}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
