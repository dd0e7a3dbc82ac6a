"""Durable files: the one way this project publishes what it writes (store shards and metadata, an ingest's work
files and upload state, a run's checkpoints, backups and JSON files).

A rename alone survives ``kill -9`` but not a power loss: the file system may persist the new name before the data
it points at, so after a reboot a "published" file can be empty or torn, and an ingest resumed from it would trust
it. Every publishing step therefore (1) writes under a temporary name, (2) flushes the data to the disk
(``fsync``), (3) renames it over the final name, and (4) flushes the directory, so the rename itself is on disk.
A directory published by one rename (a finished store) is flushed whole first (:func:`sync_tree`).
"""

from __future__ import annotations

import errno
import os

__all__ = ["write_atomic", "write_parts", "publish", "fsync_file", "fsync_dir", "sync_tree", "temporary_name",
           "boot_id"]


def temporary_name(path: str) -> str:
    """Where ``path`` is written until it is published: unique per process, and recognisable (``.tmp``) so that
    what a killed writer left can be swept (see ``StoreWriter``)."""
    return f"{path}.tmp{os.getpid()}"


def write_atomic(path: str, data) -> None:
    """Write ``data`` (bytes-like, or a list of bytes-like parts written one after another without joining them)
    to ``path`` whole or not at all, durably (see the module docstring)."""
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb", buffering=0) as f:
            write_parts(f.fileno(), data if isinstance(data, list) else [data])
            os.fsync(f.fileno())
    except BaseException:
        _remove_quietly(tmp)
        raise
    publish(tmp, path, synced=True)


_IOV_MAX = 1024  # buffers per writev call (Linux's IOV_MAX)


def write_parts(fd: int, parts: list) -> None:
    """Write every buffer of ``parts`` in order with ``os.writev`` (a shard's ~240 chunks in one call, not joined
    into one copy first), going on after short writes."""
    views = [view for view in (memoryview(p).cast("B") for p in parts) if view.nbytes]
    first = 0
    while first < len(views):
        written = os.writev(fd, views[first:first + _IOV_MAX])
        while first < len(views) and written >= views[first].nbytes:
            written -= views[first].nbytes
            first += 1
        if written:
            views[first] = views[first][written:]


def publish(tmp: str, path: str, *, synced: bool = False) -> None:
    """Rename the finished file or directory ``tmp`` over ``path`` durably: its data is flushed first (unless the
    caller says it is, ``synced``), then the rename, then the directory that holds ``path``."""
    if not synced:
        if os.path.isdir(tmp):
            sync_tree(tmp)
        else:
            fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Flush a directory's entries (names created, renamed or removed in it). Some file systems refuse ``fsync``
    on a directory (EINVAL): there is nothing more to do there."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def sync_tree(path: str) -> None:
    """Flush every file and directory under ``path`` (files first, each directory after its contents). Files that
    were written through :func:`write_atomic` are already clean, and flushing a clean file costs a system call."""
    for folder, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                fsync_file(full)
        fsync_dir(folder)


def boot_id() -> str | None:
    """This boot of the system (Linux: a random id it draws at boot), or None where it is not known: what a
    process wrote without flushing survives its own ``kill -9`` (the system holds it) but not a power cut or a
    crash of the system, after which the id differs. Scratch files that are never flushed record it, so that a
    resumed run trusts them unread on the same boot only."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


_UNSUPPORTED = {errno.EINVAL, errno.EOPNOTSUPP}
