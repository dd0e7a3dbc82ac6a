"""Windows in slots: the memory layout of one window inside a flat buffer (a shared-memory slot of
:class:`trainer.loader.ProcessLoader`, or a recycled buffer of :class:`trainer.loader.ThreadLoader`), numpy views
of it handed over with an owner that returns the slot when the last view is gone, and the shared-memory segment
itself."""

from __future__ import annotations

import os
import secrets
import weakref
from multiprocessing import shared_memory

import numpy as np

from .batches import BatchSource, LoaderError

SHM_PREFIX = "quest-loader-"
_ALIGN = 64


class SlotOwner:
    """What numpy sees as the base of a window's arrays (through ``__array_interface__``): alive while any of
    them is; it keeps the slot's memory mapped (``base`` holds the shared memory's buffer)."""

    __slots__ = ("__array_interface__", "base", "__weakref__")

    def __init__(self, base: np.ndarray):
        self.base = base
        self.__array_interface__ = base.__array_interface__


def nbytes_of(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


def parts_of(layout) -> list:
    return [(name, offset, nbytes_of(shape, dtype), shape, np.dtype(dtype)) for name, offset, shape, dtype in layout]


def owned_views(flat: np.ndarray, parts, rows: int, release, token) -> dict[str, np.ndarray]:
    """The window's arrays as views of ``flat`` (one slot), all based on one owner object: when the last of them
    (or of anything made from them) is gone, ``release(token)`` runs and the slot may be reused."""
    owner = SlotOwner(flat)
    weakref.finalize(owner, release, token)
    raw = np.asarray(owner)
    return {name: raw[offset:offset + nbytes].view(dtype).reshape(shape)[:rows]
            for name, offset, nbytes, shape, dtype in parts}


def layout_of(source: BatchSource) -> tuple[list[tuple[str, int, tuple[int, ...], str]], int]:
    """[(name, offset, shape, dtype)] of one window inside a slot, and the slot's size (64-byte aligned parts)."""
    layout, offset = [], 0
    rows = source.window_rows
    for name, (cols, dtype) in source.outputs().items():
        shape = (rows,) if cols is None else (rows, cols)
        layout.append((name, offset, shape, dtype.str))
        offset += -(-int(np.prod(shape)) * dtype.itemsize // _ALIGN) * _ALIGN
    return layout, max(offset, _ALIGN)


def slot_views(buf, slot: int, layout, slot_bytes: int) -> dict[str, np.ndarray]:
    base = slot * slot_bytes
    return {name: np.ndarray(shape, np.dtype(dtype), buffer=buf, offset=base + offset)
            for name, offset, shape, dtype in layout}


def create_segment(size: int) -> shared_memory.SharedMemory:
    """A new shared-memory segment with its pages reserved now: a full /dev/shm (Docker gives 64 MiB by default)
    is a one-line error here rather than a SIGBUS in a worker later."""
    name = f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        shm = shared_memory.SharedMemory(name=name, create=True, size=size)
    except OSError as exc:
        raise LoaderError(f"cannot create {size / 2**20:.0f} MiB of shared memory for loader processes ({exc}); "
                          "use fewer --workers, threads (--loader threads), or give the container more "
                          "(docker run --shm-size)") from None
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(shm._fd, 0, size)
        except OSError as exc:
            shm.close()
            shm.unlink()
            raise LoaderError(f"not enough shared memory for loader processes: {size / 2**20:.0f} MiB needed "
                              f"({os.strerror(exc.errno)}); use fewer --workers, threads (--loader threads), or give "
                              "the container more (docker run --shm-size)") \
                from None
    return shm


def close_segment(shm: shared_memory.SharedMemory) -> None:
    try:
        shm.close()
    except BufferError:  # batches still view it: their buffers keep the mapping alive until they are freed
        shm._mmap = None  # noqa: SLF001 - else SharedMemory.__del__ retries and prints the BufferError
        shm.close()
