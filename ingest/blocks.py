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

from store import BadRowError

from .config import MAX_RECORD_BYTES
from .quotes import count_byte, last_record_end
from .sources import SourceFile, open_source

__all__ = ["Block", "plan_blocks", "split_records"]


@dataclass(frozen=True)
class Block:
    """Bytes ``start:end`` of source ``file`` (index into the source list); its first record is on ``line``."""

    index: int
    file: int
    start: int
    end: int
    line: int


def plan_blocks(files: list[SourceFile], block_bytes: int, max_record: int = MAX_RECORD_BYTES) -> Iterator[Block]:
    """Every block of every file, in order (a generator: planning overlaps the parsing of earlier blocks).

    A block ends at the last record end within ``block_bytes`` of its start; when there is none (a record longer than
    that), at the last one within twice, four times... as much, up to ``max_record``. One forward pass over each
    file: every byte is read once (plain reads, not mmap: mapped pages would count towards the process's resident
    memory for the whole file; an object on object storage is streamed with one ranged GET per read), its quotes
    counted once and searched for a newline at most once — rescanning from every newline and doubling the read made
    a quote never closed quadratic (issue 11).

    Raises:
        BadRowError: no record end within ``max_record`` bytes, naming the file and the line the record starts on
            (almost always a quote that is never closed), instead of reading the rest of the file as one record.
    """
    index = 0
    for f_index, src in enumerate(files):
        with open_source(src.path, src.size) as f:
            scan = _Scanner(f, src.data_start, src.size)
            line = src.header_lines + 1
            while scan.pos < scan.size:
                start, end = scan.pos, _next_end(scan, block_bytes, max_record)
                if end is None:
                    raise _too_long(src.path, line, scan, max_record)
                yield Block(index, f_index, start, end, line)
                index += 1
                line += scan.advance(end)


def _next_end(scan: _Scanner, block_bytes: int, max_record: int) -> int | None:
    """End of the block starting at ``scan.pos``: the end of the file when it is within reach, else the last record
    end within ``block_bytes``, doubled while there is none, up to ``max_record`` (None: not even there)."""
    want = block_bytes
    while True:
        limit = scan.pos + want
        if limit >= scan.size:
            return scan.size
        if limit > scan.known:
            end = scan.last_end(limit)
            if end is not None:
                return end
        if want >= max_record:
            return None
        want = min(2 * want, max_record)


class _Scanner:
    """A window over one file, read forward from the record boundary ``pos``.

    No record ends within ``(pos, known]``, and ``odd`` is the parity of the quotes in ``[pos, known)``: what has
    been searched is never searched again, what has been read is never read again. The file's bytes from ``pos`` on
    are ``buf[off:fill]``: read straight into the buffer (one copy), and a block's bytes are dropped by moving
    ``off``, not the bytes (only the short tail past the last record end moves, before the next read).
    """

    def __init__(self, f, start: int, size: int):
        f.seek(start)
        self.f, self.size = f, size
        self.buf = bytearray()
        self.off = self.fill = 0
        self.pos = self.known = start
        self.odd = False

    def last_end(self, limit: int) -> int | None:
        """The last record end (offset just past its newline) in ``(known, limit]``, or None; ``known`` = limit."""
        self._read_to(limit)
        lo, hi = self.off + self.known - self.pos, self.off + limit - self.pos
        odd = self.odd ^ bool(count_byte(self.buf, 34, lo, hi) & 1)
        nl = last_record_end(self.buf, lo, hi, odd)
        # From a record end to ``limit`` the parity is ``odd`` too: the quotes before that newline pair up.
        self.known, self.odd = limit, odd
        return None if nl < 0 else self.pos + nl - self.off + 1

    def advance(self, end: int) -> int:
        """Move ``pos`` to ``end`` (a record boundary); returns the newlines passed (for the line numbers)."""
        n = end - self.pos
        lines = count_byte(self.buf, 10, self.off, self.off + n)
        self.off += n
        self.pos, self.known = end, max(self.known, end)
        return lines

    def find_newline(self, span: int) -> int:
        """Index (from ``pos``) of the first newline within ``span`` bytes of ``pos`` as read so far, or -1."""
        found = self.buf.find(b"\n", self.off, min(self.fill, self.off + span))
        return found - self.off if found >= 0 else -1

    def _read_to(self, end: int) -> None:
        missing = end - (self.pos + self.fill - self.off)
        if missing <= 0:
            return
        if self.off:  # drop what was planned: the bytes from pos on move to the front
            kept = self.fill - self.off
            self.buf[:kept] = self.buf[self.off:self.fill]
            self.off, self.fill = 0, kept
        if len(self.buf) < self.fill + missing:
            self.buf.extend(bytes(self.fill + missing - len(self.buf)))
        with memoryview(self.buf) as view:
            while missing > 0:
                got = self.f.readinto(view[self.fill:self.fill + missing])
                if not got:  # the file shrank since it was listed: what is there is all there is
                    self.size = self.pos + self.fill - self.off
                    break
                self.fill += got
                missing -= got


def _too_long(path: str, line: int, scan: _Scanner, max_record: int) -> BadRowError:
    mib = f"{max_record >> 20} MiB" if max_record % 2**20 == 0 else f"{max_record:,} bytes"
    # A newline inside quotes: the field holding it was opened on the record's first line.
    if scan.find_newline(max_record) >= 0:
        return BadRowError(path, line, None, f"unbalanced quotes: a quote opened on this line is still open {mib} "
                           f"later (expected a closing quote; one record may span at most {mib})",
                           'close the quote or remove the stray one; inside a quoted field write a quote as ""')
    return BadRowError(path, line, None, f"a line longer than {mib}, the most one record may span",
                       "check that this is a CSV file with one record per line; if its lines end with a bare "
                       "carriage return (\\r), convert them to \\n")


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
