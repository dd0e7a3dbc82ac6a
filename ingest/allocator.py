"""Keep an ingest worker's large buffers in its heap between work items, instead of new pages every time.

Every block a worker parses allocates tens of MB (the block's columns inside pandas, the typed arrays, the spill
records), and every shard it writes the same again. glibc serves allocations above its mmap threshold (128 KiB at
first, raised dynamically to at most 32 MiB) with fresh ``mmap`` pages and gives freed heap memory back to the system
above its trim threshold, so each item paid a page fault per 4 KiB touched: on the development VM that was ~17 % of
the parsing pass's CPU time (measured: parse stage CPU 3.3 s -> 2.75 s on the 330 MB benchmark log).

:func:`keep_buffers` raises both thresholds in a worker process the ingest forked for itself and in the ``ingest``
command's own process (never in a caller's: ``ingest()`` and ``ingest.cli.main`` leave the allocator as they find
it): memory freed by one item is reused by the next. Freed memory at the top of a worker's heap is kept up to the
trim threshold, a constant, whatever the input size. Elsewhere than glibc (musl's mallopt does nothing, macOS and
Windows have none) it does nothing.
"""

from __future__ import annotations

import ctypes

__all__ = ["keep_buffers"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# As large as glibc allows (some versions refuse more than 32 MiB on 64-bit): a block is 16 MiB, its spill records
# ~10 MiB.
MMAP_THRESHOLDS = (64 * 2**20, 32 * 2**20)
TRIM_THRESHOLD = 256 * 2**20


def keep_buffers() -> bool:
    """Raise this process's glibc mmap and trim thresholds; True if both were taken (False: not glibc).

    ``mallopt`` is looked up among the symbols the process has loaded (``CDLL(None)``): ``find_library`` would run
    ``ldconfig`` in a subprocess, in every worker."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not any(mallopt(_M_MMAP_THRESHOLD, size) for size in MMAP_THRESHOLDS):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
