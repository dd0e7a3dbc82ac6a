"""Cut files into blocks at record boundaries, and blocks into records.

A newline ends a record only outside quotes, i.e. where the count of ``"`` bytes since the start of the record is
even (RFC 4180: an escaped quote is ``""``, so it never changes the parity). The planner reads each file once,
sequentially, and cuts it into blocks of about ``BLOCK_BYTES`` at such newlines, so quoted fields may hold newlines
and separators. Block boundaries depend only on the file's bytes, never on the number of workers.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .sources import SourceFile

__all__ = ["Block", "plan_blocks", "split_records"]


@dataclass(frozen=True)
class Block:
    """Bytes ``start:end`` of source ``file`` (index into the source list); its first record is on ``line``."""

    index: int
    file: int
    start: int
    end: int
    line: int


def plan_blocks(files: list[SourceFile], block_bytes: int) -> Iterator[Block]:
    """Every block of every file, in order (a generator: planning overlaps the parsing of earlier blocks)."""
    index = 0
    for f_index, src in enumerate(files):
        with open(src.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            data = np.frombuffer(mm, dtype=np.uint8)
            pos, line = src.data_start, src.header_lines + 1
            try:
                while pos < src.size:
                    cut = _record_end_before(mm, data, pos, min(pos + block_bytes, src.size), src.size)
                    yield Block(index, f_index, pos, cut, line)
                    index += 1
                    line += _count(data[pos:cut], 10)
                    pos = cut
            finally:
                del data  # the mmap cannot close while numpy views it


def _count(view: np.ndarray, byte: int) -> int:
    return int(np.count_nonzero(view == byte))


def _record_end_before(mm, data: np.ndarray, start: int, stop: int, size: int) -> int:
    """Offset just past the last newline outside quotes in ``start:stop`` (``start`` is a record boundary); if
    there is none, the block grows until there is one, or up to the end of the file."""
    while True:
        if stop >= size:
            return size
        quotes = _count(data[start:stop], 34)
        nl = mm.rfind(b"\n", start, stop)
        while nl >= 0:
            after = _count(data[nl:stop], 34)  # cheap: nl is near stop unless quoted newlines abound
            if (quotes - after) % 2 == 0:
                return nl + 1
            nl = mm.rfind(b"\n", start, nl)
        stop = min(size, stop + (stop - start))


def split_records(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records of a block: start and end offsets (end excludes the newline) and the newline count before each
    start. Blank and whitespace-only lines are dropped, as pandas drops them."""
    raw = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(raw == 10)
    quotes = np.flatnonzero(raw == 34)
    ends = newlines[np.searchsorted(quotes, newlines) % 2 == 0] if quotes.size else newlines
    if not data.endswith(b"\n") or ends.size == 0 or ends[-1] != len(data) - 1:
        ends = np.append(ends, len(data))
    starts = np.concatenate([[0], ends[:-1] + 1])
    keep = np.array([bool(data[s:e].strip()) for s, e in zip(starts.tolist(), ends.tolist())], dtype=bool)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, np.searchsorted(newlines, starts)
