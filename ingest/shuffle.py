"""The deterministic external shuffle: row keys, buckets, spill files and the per-bucket permutation.

Every row is keyed by (block index, position in block); a seeded 64-bit mix of the key picks its bucket and whether
it goes to validation. The parsing pass writes each block's rows to a spill file grouped by (split, bucket). In a
split, the rows of bucket 0, then bucket 1, ... follow each other, each bucket's rows (in key order) permuted by a
permutation seeded by (seed, bucket, split): buckets in order, each permuted, make a uniformly shuffled sequence.
So the final position of every row is known once the parsing pass has counted the rows of each bucket, and the
writing pass builds each shard straight from the spill files: it loads the (at most a few) buckets its rows come
from, one at a time, and takes its rows of their permutation — no intermediate sorted copy of the data. Since
blocks depend only on the input bytes, the result is the same for any number of workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass

import google_crc32c
import numpy as np

from store import StoreError, boot_id, publish, temporary_name, write_atomic, write_parts

__all__ = ["row_hash", "bucket_of", "is_validation", "record_dtype", "spill_order", "write_spill", "spill_intact",
           "spill_bytes", "SpillReader", "Segments", "ShardJob", "bucket_permutation", "save_array", "RUN_ROWS"]

# Rows per checksum of a spill file: each (split, bucket) segment's rows carry a CRC-32C per run of RUN_ROWS rows,
# checked by every read. A shuffle reads whole segments (~40-600 rows each); without one, a shard reads part of a
# block's segment and checks the runs it touches, reading at most 2 x RUN_ROWS rows more than it takes.
RUN_ROWS = 1024

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective, well-mixing map of uint64."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def row_hash(seed: int, block: int, rows: int) -> np.ndarray:
    """Seeded hash of the keys (block, 0..rows-1)."""
    with np.errstate(over="ignore"):
        key = (np.uint64(block) << np.uint64(32)) | np.arange(rows, dtype=np.uint64)
        return _mix(key ^ _mix(np.array([seed], dtype=np.uint64))[0])


def bucket_of(hashes: np.ndarray, n_buckets: int) -> np.ndarray:
    """Uniform bucket index in [0, n_buckets) from the hash's high 32 bits."""
    with np.errstate(over="ignore"):
        return ((hashes >> np.uint64(32)) * np.uint64(n_buckets)) >> np.uint64(32)


def is_validation(hashes: np.ndarray, fraction: float) -> np.ndarray:
    """True for a seeded ``fraction`` of rows (independent of the bucket bits)."""
    with np.errstate(over="ignore"):
        u = (_mix(hashes) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return u < fraction


def record_dtype(n_float: int, n_int: int, n_cat: int) -> np.dtype:
    """Row layout of spill files: floats, integers, local category codes (the split is the segment's)."""
    fields = [(name, dtype, (n,)) for name, dtype, n in (("f", "<f4", n_float), ("i", "<i8", n_int),
                                                           ("c", "<i4", n_cat)) if n]
    return np.dtype(fields or [("none", "u1")])


def spill_order(buckets: np.ndarray, split: np.ndarray, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """The spill file's order of a block's rows: grouped by key = split * n_buckets + bucket (the training rows
    first), in row order within a group. Returns (the keys in that order, the order)."""
    keys = split.astype(np.int64) * n_buckets + buckets.astype(np.int64)
    if 2 * n_buckets <= 2**16:
        keys = keys.astype(np.uint16)  # numpy sorts 16-bit keys stably by radix: O(n)
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def _runs(count):
    """Checksum runs of a segment of ``count`` rows (an array of counts, or one count)."""
    return (count + RUN_ROWS - 1) // RUN_ROWS


def spill_bytes(counts: np.ndarray, row_bytes: int) -> np.ndarray:
    """Bytes of each segment of ``counts`` rows in a spill file: its runs' checksums, then its rows."""
    counts = np.asarray(counts, np.int64)
    return 4 * _runs(counts) + counts * row_bytes


def _run_checksums(rows: np.ndarray) -> np.ndarray:
    """CRC-32C of each run of RUN_ROWS rows of ``rows`` (structured, contiguous), the last run shorter."""
    data = rows.view(np.uint8).reshape(-1)
    step = RUN_ROWS * rows.dtype.itemsize
    return np.array([google_crc32c.value(data[at:at + step]) for at in range(0, len(data), step)], "<u4")


def write_spill(path: str, records: np.ndarray, keys: np.ndarray, n_buckets: int, meta: dict, *,
                flush: bool = False) -> dict:
    """Write ``records`` (in spill order, ``keys`` ascending: see spill_order) to ``path``.bin and their metadata
    to ``path``.json (last: its existence marks the block done). Adds ``segments``: [bucket, split, first row,
    rows] per non-empty group, in file order, the ``.bin`` file's size, the CRC-32C of its checksums (``spill_sums``:
    they are the file's, not an older one's of the same size) and the boot (``store.boot_id``) of the system that
    wrote it.

    Each segment in the file is the CRC-32C of each run of RUN_ROWS of its rows (little-endian uint32), then its
    rows: every read checks the rows it takes (:class:`SpillReader`), so a file the disk lost or damaged after it
    was written (a failed write-back that nothing reported, a power cut) is never read into a store.

    The file is not flushed to the disk (the metadata is) unless ``flush`` (then the metadata says ``flushed``):
    the spill is scratch, deleted at the end, and an input that fits in memory never has to reach the disk. A
    ``kill -9`` loses nothing the system holds; ``--resume`` on the same boot trusts what its metadata says is
    there (:func:`spill_intact` checks its size), after a reboot it reads the spill back to check every run's
    checksum and parses again a block whose spill does not match."""
    ids, starts, counts = np.unique(keys, return_index=True, return_counts=True)
    parts, sums = [], 0
    for first, count in zip(starts.tolist(), counts.tolist()):
        rows = records[first:first + count]
        parts += [_run_checksums(rows), rows.view(np.uint8).reshape(-1)]
        sums = google_crc32c.extend(sums, parts[-2].view(np.uint8))
    meta = dict(meta, segments=[[int(k) % n_buckets, int(k) // n_buckets, int(s), int(c)]
                                for k, s, c in zip(ids, starts, counts)],
                spill_bytes=int(spill_bytes(counts, records.dtype.itemsize).sum()), spill_sums=sums, boot=boot_id(),
                flushed=flush)
    tmp = temporary_name(path + ".bin")
    try:
        with open(tmp, "wb", buffering=0) as f:
            write_parts(f.fileno(), parts)
            if flush:
                os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    os.replace(tmp, path + ".bin")
    write_atomic(path + ".json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    return meta


def spill_intact(path: str, meta: dict, row_bytes: int, *, read: bool) -> bool:
    """Whether ``path``.bin holds what its metadata says: its size, and with ``read`` every run's checksum (after
    a reboot: see write_spill)."""
    try:
        with open(path + ".bin", "rb", buffering=0) as f:
            if os.fstat(f.fileno()).st_size != meta["spill_bytes"]:
                return False
            if not read:
                return True
            at, sums = 0, 0
            for _bucket, _split, _first, count in meta["segments"]:
                checked = _read_checked(f.fileno(), path + ".bin", at, count, 0, np.empty(count, f"V{row_bytes}"))
                sums = google_crc32c.extend(sums, checked.view(np.uint8))
                at += int(spill_bytes(count, row_bytes))
    except (OSError, StoreError):
        return False
    return sums == meta["spill_sums"]


class SpillReader:
    """Reads rows of spill segments into structured arrays, checking them against their runs' checksums, keeping up
    to ``MAX_OPEN`` files open between reads (a bucket is read from every block's file: at 100 GB, thousands of
    them, more than a process may open)."""

    MAX_OPEN = 128

    def __init__(self, path_of):
        self.path_of = path_of  # block index -> spill path (without .bin)
        self._files: dict[int, int] = {}

    def read(self, block: int, out: np.ndarray, at: int, count: int, first: int) -> None:
        """Fill ``out`` with rows ``first .. first+len(out)`` of the segment of ``count`` rows that starts at byte
        ``at`` of block ``block``'s spill file (Segments says where)."""
        fd = self._files.get(block)
        if fd is None:
            if len(self._files) >= self.MAX_OPEN:
                self.close()
            try:
                fd = self._files[block] = os.open(self.path_of(block) + ".bin", os.O_RDONLY)
            except FileNotFoundError:
                raise StoreError(f"{self.path_of(block)}.bin is missing: the disk lost this work file after it was "
                                 "written", path=self.path_of(block) + ".bin") from None
        _read_checked(fd, self.path_of(block) + ".bin", at, count, first, out)

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_checked(fd: int, name: str, at: int, count: int, first: int, out: np.ndarray) -> np.ndarray:
    """:meth:`SpillReader.read` from the open file ``fd`` (``name``): the runs that hold the rows are read
    whole and checked; a whole segment is one read (its checksums, then its rows). Returns those runs'
    checksums."""
    n, row = len(out), out.dtype.itemsize
    if not n:
        return np.empty(0, "<u4")
    r0, r1, runs = first // RUN_ROWS, _runs(first + n), _runs(count)
    lo, hi = r0 * RUN_ROWS, min(r1 * RUN_ROWS, count)
    sums = np.empty(r1 - r0, "<u4")
    whole = first == 0 and n == count
    if whole:
        data = out.view(np.uint8).reshape(-1)
        _read_fully(fd, name, [sums, data], at)
    else:
        data = _partial_buffer((hi - lo) * row)
        _read_fully(fd, name, [sums], at + 4 * r0)
        _read_fully(fd, name, [data], at + 4 * runs + lo * row)
    step = RUN_ROWS * row
    for i, expected in enumerate(sums.tolist()):
        if google_crc32c.value(data[i * step:(i + 1) * step]) != expected:
            raise StoreError(f"{name}: rows {lo + i * RUN_ROWS}.. of a segment fail their checksum: the disk "
                             "lost or changed this work file after it was written", path=name)
    if not whole:
        out.view(np.uint8).reshape(-1)[:] = data[(first - lo) * row:(first - lo + n) * row]
    return sums


_PARTIAL = threading.local()


def _partial_buffer(nbytes: int) -> np.ndarray:
    """Where a part of a segment is read with the rest of its runs: one buffer per thread (a Dask worker runs
    several items at once), kept from one read to the next (a fresh one pays its page faults again every time)."""
    buf = getattr(_PARTIAL, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        _PARTIAL.buf = buf = np.empty(nbytes, np.uint8)
    return buf[:nbytes]


def _read_fully(fd: int, name: str, arrays: list, at: int) -> None:
    """Fill ``arrays`` (contiguous) one after another from byte ``at`` of ``fd``, going on after short reads."""
    views = [memoryview(a).cast("B") for a in arrays if a.nbytes]
    while views:
        n = os.preadv(fd, views, at)
        if n <= 0:
            raise StoreError(f"{name} is shorter than its metadata says: the disk lost or changed this work file "
                             "after it was written", path=name)
        at += n
        while views and n >= views[0].nbytes:
            n -= views[0].nbytes
            views.pop(0)
        if n:
            views[0] = views[0][n:]


class Segments:
    """Where each (split, bucket) lies in each block's spill file: the parsing pass's ``segments``, one row of counts
    per block (``2 * buckets`` counts, in file order: bucket 0 train, bucket 1 train, ..., bucket 0 validation, ...),
    kept as compact arrays, not as the blocks' metadata. Saved as ``segments.npy`` (per block, the first row and the
    first byte of each key), which the writing pass memory-maps.

    Without a shuffle every row is in bucket 0 (``n_buckets`` 1) and the blocks themselves are the units of the
    final order."""

    def __init__(self, n_buckets: int, shuffle: bool):
        self.n_buckets = n_buckets if shuffle else 1
        self.shuffle = shuffle
        self.counts: dict[int, np.ndarray] = {}

    def add(self, block: int, segments) -> None:
        counts = np.zeros(2 * self.n_buckets, np.uint32)  # a block holds fewer than 2^32 rows (64 MiB at most)
        for bucket, split, _first, count in segments:
            counts[split * self.n_buckets + (bucket if self.shuffle else 0)] += count
        self.counts[block] = counts

    def _split(self, split: int) -> slice:
        return slice(split * self.n_buckets, (split + 1) * self.n_buckets)

    def rows(self, split: int) -> int:
        return int(sum(c[self._split(split)].sum(dtype=np.int64) for c in self.counts.values()))

    def save(self, path: str, row_bytes: int) -> None:
        """Per block ``b``: ``table[0, b]``, the first row of each key, then the block's row count; ``table[1,
        b]``, the byte where each key's segment starts in its spill file (see write_spill), then the file's size.
        Written row by row into the memory-mapped file (at 100 GB the table is ~330 MB: never in memory whole)."""
        blocks = max(self.counts, default=-1) + 1
        tmp = temporary_name(path)
        table = np.lib.format.open_memmap(tmp, "w+", np.int64, (2, blocks, 2 * self.n_buckets + 1))
        try:
            for block, counts in self.counts.items():
                table[0, block, 1:] = np.cumsum(counts, dtype=np.int64)
                table[1, block, 1:] = np.cumsum(spill_bytes(counts, row_bytes))
            table.flush()
            del table
            publish(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise

    def jobs(self, split: int, name: str, shard_rows: int) -> list[ShardJob]:
        """The shards of one split as work items: which bucket's (block's, without a shuffle) permuted rows each
        takes."""
        if self.shuffle:
            units = list(range(self.n_buckets))
            sizes = np.zeros(self.n_buckets, np.int64)
            for counts in self.counts.values():
                sizes += counts[self._split(split)]
        else:
            units = sorted(self.counts)
            sizes = np.array([self.counts[b][split] for b in units], np.int64)
        bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        out = []
        for shard, start in enumerate(range(0, int(bounds[-1]), shard_rows)):
            stop = min(start + shard_rows, int(bounds[-1]))
            k, pieces = int(np.searchsorted(bounds, start, side="right")) - 1, []
            while k < len(units) and bounds[k] < stop:
                lo, hi = max(start, int(bounds[k])), min(stop, int(bounds[k + 1]))
                if hi > lo:
                    pieces.append((units[k], int(sizes[k]), lo - int(bounds[k]), hi - int(bounds[k])))
                k += 1
            out.append(ShardJob(name, shard, start, stop, tuple(pieces)))
        return out


@dataclass(frozen=True)
class ShardJob:
    """Shard ``shard`` of split ``split``: rows ``start:stop`` of the split, taken from ``pieces``, in order:
    (bucket — or block without a shuffle —, its rows in the split, first and end position among them)."""

    split: str
    shard: int
    start: int
    stop: int
    pieces: tuple

    def rows(self, first: int, stop: int) -> "ShardJob":
        """The same shard's rows ``first:stop`` (counted from the shard's first row) as a job of their own: the
        pieces clipped to them."""
        pieces, at = [], 0
        for unit, size, lo, hi in self.pieces:
            a, b = max(lo, lo + first - at), min(hi, lo + stop - at)
            if b > a:
                pieces.append((unit, size, a, b))
            at += hi - lo
        return ShardJob(self.split, self.shard, self.start + first, self.start + stop, tuple(pieces))


def bucket_permutation(seed: int, bucket: int, split: int, rows: int) -> np.ndarray:
    """The order of a bucket's rows of one split in the store: position i holds the bucket's row ``perm[i]``."""
    return np.random.default_rng([seed, bucket, split]).permutation(rows)


def save_array(path: str, values: np.ndarray) -> None:
    """``np.save`` through a temporary name, writing the data with ``write`` (no extra copy, and a full disk
    reports ENOSPC with its errno, which ``ndarray.tofile`` does not)."""
    values = np.ascontiguousarray(values)
    tmp = temporary_name(path)
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(values))
        f.write(memoryview(values.reshape(-1).view(np.uint8)))
        f.flush()
        os.fsync(f.fileno())
    publish(tmp, path, synced=True)
