"""The deterministic external shuffle: row keys, buckets, spill files and the per-bucket permutation.

Every row is keyed by (block index, position in block); a seeded 64-bit mix of the key picks its bucket and whether
it goes to validation. The parsing pass appends rows to per-block spill files grouped by bucket; the second pass
loads one bucket at a time (rows in key order), applies a permutation seeded by (seed, bucket) and writes the
bucket's rows in their final order. Buckets in order, each permuted, make a uniformly shuffled sequence, and since
blocks depend only on the input bytes, the result is the same for any number of workers.
"""

from __future__ import annotations

import json
import os

import numpy as np

from store.files import publish, temporary_name, write_atomic

__all__ = ["row_hash", "bucket_of", "is_validation", "record_dtype", "write_spill", "read_spill_rows",
           "bucket_permutation", "save_array"]

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
    """Row layout of spill files: split (0 train, 1 validation), floats, integers, local category codes."""
    fields = [("split", "u1")]
    for name, dtype, n in (("f", "<f4", n_float), ("i", "<i8", n_int), ("c", "<i4", n_cat)):
        if n:
            fields.append((name, dtype, (n,)))
    return np.dtype(fields)


def write_spill(path: str, records: np.ndarray, buckets: np.ndarray, meta: dict) -> dict:
    """Write ``records`` grouped by bucket to ``path``.bin and their metadata to ``path``.json (last: its existence
    marks the block done). Adds ``segments``: [bucket, first row, rows, validation rows] per non-empty bucket."""
    order = np.argsort(buckets, kind="stable")
    records, buckets = records[order], buckets[order]
    ids, starts, counts = np.unique(buckets, return_index=True, return_counts=True)
    val = np.add.reduceat(records["split"].astype(np.int64), starts) if len(records) else np.array([], np.int64)
    meta = dict(meta, segments=[[int(b), int(s), int(c), int(v)] for b, s, c, v in zip(ids, starts, counts, val)])
    write_atomic(path + ".bin", memoryview(records.view(np.uint8)))
    write_atomic(path + ".json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
    return meta


def read_spill_rows(path: str, out: np.ndarray, first: int) -> None:
    """Fill ``out`` (a structured array) with rows ``first .. first+len(out)`` of a spill file."""
    with open(path + ".bin", "rb") as f:
        f.seek(first * out.dtype.itemsize)
        if f.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise OSError(f"{path}.bin is shorter than its metadata says; re-run with --overwrite")


def bucket_permutation(seed: int, bucket: int, rows: int) -> np.ndarray:
    return np.random.default_rng([seed, bucket]).permutation(rows)


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
