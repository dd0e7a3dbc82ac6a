"""Names, paths and codec settings shared by the writer and the readers (see FORMAT.md)."""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "READABLE_VERSIONS", "ATTRS_KEY", "SPLITS", "COMPRESSIONS",
           "DEFAULT_BATCH_SIZE", "MAX_BATCH_SIZE", "MAX_CATEGORIES", "shard_path", "chunks_per_shard_for", "array_fill_value"]

FORMAT_NAME = "tabular-zarr-store"
FORMAT_VERSION = 2  # 2: vocabularies are arrays of the store, columns may be hashed (FORMAT.md)
READABLE_VERSIONS = (1, 2)
ATTRS_KEY = "tabular_store"
SPLITS = ("train", "validation")
COMPRESSIONS = ("lz4", "zstd", "none")
DEFAULT_BATCH_SIZE = 1000
# Most rows in one batch (ingest: one chunk; trainer: one training batch). A batch is built whole in memory, the
# store's last chunk padded to full size, and the loader holds several at once: a batch size meant as a row count
# of the whole data set failed with a MemoryError traceback (issue 11). 2**20 is far beyond useful batch sizes.
MAX_BATCH_SIZE = 2**20
# Most codes of a categorical column (vocabulary size or hash buckets): codes 0..N fit an int32 (the ingest's spill
# records and the code maps use int32).
MAX_CATEGORIES = 2**31 - 2
# Shards of about this many uncompressed bytes (widest array): a 100 GB ingest makes a few thousand files.
SHARD_TARGET_BYTES = 32 * 2**20
MAX_CHUNKS_PER_SHARD = 1024


def shard_path(store: str, split: str, array: str, shard: int) -> str:
    """File of shard ``shard`` of a 2-D array (Zarr v3 default chunk keys, '/' separator)."""
    return os.path.join(store, split, array, "c", str(shard), "0")


def chunks_per_shard_for(batch_size: int, widest_row_bytes: int) -> int:
    """Inner chunks per shard so the widest array's shard is about SHARD_TARGET_BYTES uncompressed."""
    per_chunk = max(1, batch_size * max(1, widest_row_bytes))
    return max(1, min(MAX_CHUNKS_PER_SHARD, math.floor(SHARD_TARGET_BYTES / per_chunk)))


def array_fill_value(array: str):
    """Fill (and missing) value of an array: NaN for float32, 0 for codes, the dtype minimum for integers."""
    if array == "float32":
        return float("nan")
    if array == "categorical":
        return 0
    return int(np.iinfo(array).min)
