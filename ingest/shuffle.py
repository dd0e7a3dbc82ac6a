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
from dataclasses import dataclass

import google_crc32c
import numpy as np

from store import StoreError, publish, temporary_name, write_atomic

__all__ = ["row_hash", "bucket_of", "is_validation", "record_dtype", "spill_order", "write_spill", "spill_intact",
           "SpillReader", "Segments", "ShardJob", "bucket_permutation", "save_array"]

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


def write_spill(path: str, records: np.ndarray, keys: np.ndarray, n_buckets: int, meta: dict) -> dict:
    """Write ``records`` (in spill order, ``keys`` ascending: see spill_order) to ``path``.bin and their metadata
    to ``path``.json (last: its existence marks the block done). Adds ``segments``: [bucket, split, first row,
    rows] per non-empty group, in file order, and the ``.bin`` file's size and CRC-32C.

    The rows are not flushed here (the metadata is): the worker goes on to its next block, and the parent flushes
    the spill files in threads of its own before the writing pass reads them (ingest.pipeline._SpillFlusher, which
    then marks the spill flushed). A ``kill -9`` loses nothing the system has not written yet; after a power cut
    before that mark, ``--resume`` finds a torn or empty ``.bin`` by its size and checksum (:func:`spill_intact`)
    and parses that block again."""
    ids, starts, counts = np.unique(keys, return_index=True, return_counts=True)
    data = records.view(np.uint8).reshape(-1)
    meta = dict(meta, segments=[[int(k) % n_buckets, int(k) // n_buckets, int(s), int(c)]
                                for k, s, c in zip(ids, starts, counts)],
                spill_bytes=int(data.nbytes), spill_crc32c=google_crc32c.value(data))
    tmp = temporary_name(path + ".bin")
    try:
        with open(tmp, "wb") as f:
            f.write(memoryview(data))
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    os.replace(tmp, path + ".bin")
    write_atomic(path + ".json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    return meta


def spill_intact(path: str, meta: dict) -> bool:
    """Whether ``path``.bin holds what its metadata says (size and CRC-32C): until the spill is marked flushed,
    what an interrupted ingest left is only trusted by ``--resume`` if so (see write_spill)."""
    try:
        with open(path + ".bin", "rb", buffering=0) as f:
            if os.fstat(f.fileno()).st_size != meta["spill_bytes"]:
                return False
            crc, buf = 0, bytearray(8 * 2**20)
            while n := f.readinto(buf):
                crc = google_crc32c.extend(crc, np.frombuffer(buf, np.uint8, n))
    except OSError:
        return False
    return crc == meta["spill_crc32c"]


class SpillReader:
    """Reads row ranges of spill files into structured arrays, keeping up to ``MAX_OPEN`` files open between reads
    (a bucket is read from every block's file: at 100 GB, thousands of them, more than a process may open)."""

    MAX_OPEN = 128

    def __init__(self, path_of):
        self.path_of = path_of  # block index -> spill path (without .bin)
        self._files: dict[int, int] = {}

    def read(self, block: int, out: np.ndarray, first: int) -> None:
        """Fill ``out`` with rows ``first .. first+len(out)`` of block ``block``'s spill file."""
        fd = self._files.get(block)
        if fd is None:
            if len(self._files) >= self.MAX_OPEN:
                self.close()
            fd = self._files[block] = os.open(self.path_of(block) + ".bin", os.O_RDONLY)
        view, at = memoryview(out).cast("B"), first * out.dtype.itemsize
        while view.nbytes:
            n = os.preadv(fd, [view], at)
            if n <= 0:
                raise StoreError(f"{self.path_of(block)}.bin is shorter than its metadata says: a work file of "
                                 "the interrupted ingest is damaged; pass --overwrite instead of --resume to start "
                                 "over", path=self.path_of(block) + ".bin")
            view, at = view[n:], at + n

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Segments:
    """Where each (split, bucket) lies in each block's spill file: the parsing pass's ``segments``, one row of counts
    per block (``2 * buckets`` counts, in file order: bucket 0 train, bucket 1 train, ..., bucket 0 validation, ...),
    kept as compact arrays, not as the blocks' metadata. Saved as ``segments.npy`` (per block, the first row of each
    key and the block's row count), which the writing pass memory-maps.

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

    def save(self, path: str) -> None:
        """Per block (row ``block``): the first spill row of each key, then the block's row count."""
        blocks = max(self.counts, default=-1) + 1
        table = np.zeros((blocks, 2 * self.n_buckets + 1), np.int64)
        for block, counts in self.counts.items():
            table[block, 1:] = np.cumsum(counts, dtype=np.int64)
        save_array(path, table)

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
