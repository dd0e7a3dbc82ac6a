"""Cut files into blocks at record boundaries, and blocks into records.

A newline ends a record only outside quotes, i.e. where the count of ``"`` bytes since the start of the record is
even (RFC 4180: an escaped quote is ``""``, so it never changes the parity). The planner reads each file once,
sequentially, and cuts it into blocks of about ``BLOCK_BYTES`` at such newlines, so quoted fields may hold newlines
and separators. Block boundaries depend only on the file's bytes, never on the number of workers.
"""

from __future__ import annotations

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
    """Every block of every file, in order (a generator: planning overlaps the parsing of earlier blocks).

    Reads each file once in ``block_bytes`` pieces (plain reads, not mmap: mapped pages would count towards the
    process's resident memory for the whole file).
    """
    index = 0
    for f_index, src in enumerate(files):
        with open(src.path, "rb") as f:
            pos, line = src.data_start, src.header_lines + 1
            while pos < src.size:
                buf, cut = _read_records(f, pos, block_bytes, src.size)
                yield Block(index, f_index, pos, pos + cut, line)
                index += 1
                line += buf.count(b"\n", 0, cut)
                pos += cut


def _read_records(f, start: int, block_bytes: int, size: int) -> tuple[bytes, int]:
    """Bytes read from ``start`` (a record boundary) and the length up to the last record boundary within
    ``block_bytes``; more if a single record is longer than that; everything left at the end of the file."""
    want = block_bytes
    while True:
        f.seek(start)
        buf = f.read(want)
        if start + len(buf) >= size:
            return buf, len(buf)
        cut = _last_record_end(buf)
        if cut is not None:
            return buf, cut
        want *= 2


def _last_record_end(buf: bytes) -> int | None:
    """Offset just past the last newline outside quotes (the buffer starts at a record boundary), or None."""
    total = buf.count(b'"')
    nl = buf.rfind(b"\n")
    while nl >= 0:
        if (total - buf.count(b'"', nl)) % 2 == 0:
            return nl + 1
        nl = buf.rfind(b"\n", 0, nl)
    return None


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
