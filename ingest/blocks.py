"""Cut files into blocks, and find a block's records.

A file's data is cut into fixed shares of ``BLOCK_BYTES``: share ``j`` is the bytes ``[T_j, T_j+1)`` with ``T_j =
data start + j * BLOCK_BYTES``, a function of the file's size alone, so the parent plans every block without reading
a byte. Block ``j`` is the records that *start* in its share: from the first record boundary at or after ``T_j`` to
the first at or after ``T_j+1`` (the last record may run past the share; one longer than MAX_RECORD_BYTES is
refused). Block boundaries depend only on the file's bytes, never on the number of workers.

A newline ends a record only outside quotes, i.e. where the count of ``"`` bytes since the file's data start is
even (RFC 4180: an escaped quote is ``""``, so it never changes the parity). So where a block's records start depends
on the parity at ``T_j``, which depends on every byte before it. The worker that parses block ``j`` does not wait for
it: it *guesses* the parity (:func:`guess_parity`: from the first quote after ``T_j`` whose neighbours say whether it
opens a field, ``,"a``, or closes one, ``a",``; outside quotes when its share holds no quote) and reports the parity
of its share's quotes, which needs no guess. The parent, taking the blocks in order, knows the true parity at each
``T_j`` (the reported parities of the shares before it, XORed) and has the blocks whose guess was wrong parsed again
under the right one — at most one more round, since every parity is known after the first. The guess is right for
files quoted as RFC 4180 says unless a quoted field outruns the share or no field's edge follows before the end of
what was read; a wrong one costs a second parse of the block, never a different store.

So every byte of the input is read once, by the worker that parses it (the parent reads none), and the line numbers
follow the same way: each worker counts its share's newlines, the parent adds them up (:class:`Chain`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .config import MAX_RECORD_BYTES
from .quotes import count_byte, first_record_end, last_record_end
from .sources import SourceFile, read_range

__all__ = ["Block", "Located", "Chain", "plan_blocks", "locate", "guess_parity", "split_records"]

# Bytes read past a block's share in the same read as the share: the end of the record that straddles the share's
# end is almost always within it (a longer record costs one more read, doubling).
TAIL_BYTES = 64 * 2**10


@dataclass(frozen=True)
class Block:
    """Block ``index``: the records of source ``file`` (index into the source list) that start in its share, bytes
    ``start:stop``; ``first``: the share starts at the file's data start (a record boundary, whatever the parity);
    ``odd``: the quote parity assumed at ``start``, None to guess it (see the module's docstring)."""

    index: int
    file: int
    start: int
    stop: int
    first: bool
    odd: bool | None = None


def plan_blocks(files: list[SourceFile], block_bytes: int) -> Iterator[Block]:
    """Every block of every file, in order: the shares of each file's data, from its size alone (no I/O)."""
    index = 0
    for f_index, src in enumerate(files):
        for start in range(src.data_start, src.size, block_bytes):
            first = start == src.data_start
            yield Block(index, f_index, start, min(start + block_bytes, src.size), first, False if first else None)
            index += 1


@dataclass
class Located:
    """A block's records, found under the parity ``odd`` assumed at its share's start: ``data`` is bytes
    ``start:end`` of the file (empty when no record starts in the share), ``records_newlines`` the newlines in
    them; ``quotes`` (0 or 1) and ``newlines`` are the parity of the share's quotes and its count of newlines,
    which assume nothing; ``before`` the newlines from the share's start to ``start`` (the block's first record
    is that many lines after the share's first one). ``error``: (line relative to the block's first record, reason, fix) of a record longer than the limit."""

    data: memoryview
    start: int
    end: int
    odd: bool
    quotes: int
    newlines: int
    before: int
    records_newlines: int
    error: tuple | None = None


def locate(block: Block, src: SourceFile, max_record: int = MAX_RECORD_BYTES) -> Located:
    """Read block ``block`` of ``src`` (one read of its share and a little past it; more only for a record that runs
    further) and find its records under the parity ``block.odd`` at its start (guessed when None): they start at
    the first newline outside quotes at or after ``start - 1`` and end at the first one at or after ``stop - 1`` (or
    the file's end), searched no further than ``max_record`` past the last record's start."""
    lo = block.start if block.first else block.start - 1  # the byte before a share: a newline there ends a record
    buf = read_range(src.path, lo, min(block.stop + TAIL_BYTES, src.size))
    size = src.size if len(buf) == min(block.stop + TAIL_BYTES, src.size) - lo else lo + len(buf)  # it shrank
    stop = min(block.stop, size)
    off = block.start - lo
    n_quotes = count_byte(buf, 34, off, stop - lo)
    quotes = n_quotes & 1
    newlines = count_byte(buf, 10, off, stop - lo)
    if block.first or block.odd is not None:
        assumed = bool(block.odd)
    else:  # a share without a quote is inside one only within a quoted field longer than the share: guess outside
        assumed = bool(n_quotes) and guess_parity(buf, off, len(buf))
    if block.first:
        s = off
    elif buf[:1] == b"\n" and not assumed:
        s = 1
    else:
        nl, _ = first_record_end(buf, off, stop - lo - 1, assumed)
        s = nl + 1 if nl >= 0 else -1
    if s < 0 or s >= stop - lo:  # no record starts in the share: the one before runs past it
        return Located(memoryview(b""), stop, stop, assumed, quotes, newlines, newlines, 0)
    before = count_byte(buf, 10, off, s)
    # parity at ``stop`` counted from the block's first record (a boundary: parity even there)
    odd = bool((quotes ^ count_byte(buf, 34, off, s)) & 1)
    e, buf, error = _end(buf, lo, s, stop, size, odd, src, max_record)
    if error is not None:
        return Located(memoryview(b""), lo + s, lo + s, assumed, quotes, newlines, before, 0, error)
    inside = newlines - before + count_byte(buf, 10, stop - lo, e)
    return Located(memoryview(buf)[s:e], lo + s, lo + e, assumed, quotes, newlines, before, inside)


_FIELD_END = frozenset(b",\n\r")
_GUESS_QUOTES = 64  # quotes looked at before giving up (the guess is then: outside quotes)


def guess_parity(buf, lo: int, hi: int) -> bool:
    """A guess of whether ``buf[lo]`` is inside quotes, from the first quote in ``buf[lo:hi]`` that can only open a
    field (after a separator or newline, before anything but a quote, separator or line end) or close one (the
    reverse): RFC 4180 doubles every quote inside a field, so a lone quote in such a place is a field's edge. False
    when no quote among the first few tells (most often: no quote at all)."""
    at, skipped = lo, 0
    while skipped < _GUESS_QUOTES:
        q = buf.find(b'"', at, hi)
        if q < 0:
            return False
        before = buf[q - 1] if q > 0 else 10
        after = buf[q + 1] if q + 1 < len(buf) else 10
        if before in _FIELD_END and after not in _FIELD_END and after != 34:
            return bool(skipped & 1)  # it opens a field: outside quotes before it
        if after in _FIELD_END and before not in _FIELD_END and before != 34:
            return not skipped & 1  # it closes one: inside quotes before it
        at, skipped = q + 1, skipped + 1
    return False


def _end(buf, lo: int, s: int, stop: int, size: int, odd: bool, src: SourceFile, max_record: int):
    """Index in ``buf`` just past the newline that ends the block's last record (or the file's end), searched from
    the share's end with ``odd``, the parity there counted from the block's first record at ``s``; returns it, the
    buffer (read further when the record runs past it) and None, or an error tuple (see Located)."""
    at = stop - lo
    if stop >= size:
        return size - lo, buf, None
    if buf[at - 1:at] == b"\n" and not odd:
        return at, buf, None
    nl, parity = first_record_end(buf, at, len(buf), odd)
    if nl >= 0 and nl + 1 - s <= max_record:
        return nl + 1, buf, None
    # The last record runs past what was read: its start bounds how far it may go.
    last = last_record_end(buf, s, at, odd)
    first = last + 1 if last >= 0 else s
    if nl >= 0:
        return (nl + 1, buf, None) if nl + 1 - first <= max_record else (0, buf, _too_long(buf, s, first, max_record))
    limit = lo + first + max_record  # the record's newline must come before this offset
    searched, step = len(buf), 2**20
    while lo + len(buf) < size:
        if lo + len(buf) >= limit:
            return 0, buf, _too_long(buf, s, first, max_record)
        more = read_range(src.path, lo + len(buf), min(size, limit, lo + len(buf) + step))
        if not more:  # the file shrank since it was listed: what is there is all there is
            break
        buf = buf if isinstance(buf, bytearray) else bytearray(buf)
        buf += more
        nl, parity = first_record_end(buf, searched, len(buf), parity)
        if nl >= 0:
            return nl + 1, buf, None
        searched, step = len(buf), 2 * step
    if len(buf) - first > max_record:  # (only where max_record is under a share and its tail)
        return 0, buf, _too_long(buf, s, first, max_record)
    return len(buf), buf, None


def _too_long(buf, s: int, first: int, max_record: int) -> tuple:
    """The error of a record that starts at ``first`` in ``buf`` and has no end within ``max_record`` bytes: (its line
    relative to the block's first record at ``s``, reason, fix)."""
    mib = f"{max_record >> 20} MiB" if max_record % 2**20 == 0 else f"{max_record:,} bytes"
    line = 1 + count_byte(buf, 10, s, first)
    # A newline inside quotes: the field holding it was opened on the record's first line.
    if buf.find(b"\n", first, first + max_record) >= 0:
        return (line, f"unbalanced quotes: a quote opened on this line is still open {mib} later (expected a "
                f"closing quote; one record may span at most {mib})",
                'close the quote or remove the stray one; inside a quoted field write a quote as ""')
    return (line, f"a line longer than {mib}, the most one record may span",
            "check that this is a CSV file with one record per line; if its lines end with a bare carriage return "
            "(\\r), convert them to \\n")


class Chain:
    """The parent's walk over the blocks' metadata in block order: the true quote parity and the line number at
    each share's start, from the shares before it (each block reports its share's quote parity and newlines)."""

    def __init__(self, files: list[SourceFile]):
        self.files = files
        self.file = -1
        self.odd = False
        self.line = 0

    def next(self, file: int, quotes: int, newlines: int) -> tuple[bool, int]:
        """The parity and the line at the start of the next block's share (of source ``file``), then step past it
        (its share has ``quotes`` parity and ``newlines`` newlines)."""
        if file != self.file:  # a file's data starts after its header: a record boundary, parity even
            self.file, self.odd, self.line = file, False, self.files[file].header_lines + 1
        at = (self.odd, self.line)
        self.odd ^= bool(quotes & 1)
        self.line += newlines
        return at


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
