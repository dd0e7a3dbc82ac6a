"""What the format is, stated once: names, paths, limits and codec settings shared by the writer, the readers and
the validation (FORMAT.md describes each and names this module where it states them).

Nothing here reads or writes a file; the other modules of ``store`` take every fixed name, size and setting of the
format from here, so that a change to the format is a change to this module (and to FORMAT.md and the golden store).
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "READABLE_VERSIONS", "ATTRS_KEY", "SPLITS", "COMPRESSIONS",
           "MAX_BATCH_SIZE", "MAX_CATEGORIES", "SHARD_TARGET_BYTES", "MAX_CHUNKS_PER_SHARD",
           "FLOAT_ARRAY", "CATEGORY_ARRAY", "INT_DTYPES", "VOCABULARY_GROUP", "BLOSC_LEVELS", "BLOSC_SHUFFLE",
           "BLOSC_HEADER_BYTES", "CHECKSUM_BYTES", "INDEX_ENTRY_BYTES", "EMPTY_CHUNK", "blosc_config",
           "shard_index_bytes", "shard_path", "partial_path", "vocabulary_path", "chunks_per_shard_for",
           "array_fill_value"]

# --- the store's identity (FORMAT.md, "Store metadata" and "Versioning")
FORMAT_NAME = "tabular-zarr-store"
FORMAT_VERSION = 2  # 2: vocabularies are arrays of the store, columns may be hashed (FORMAT.md)
READABLE_VERSIONS = (1, 2)
ATTRS_KEY = "tabular_store"  # the root zarr.json's attribute holding the store metadata

# --- groups and arrays (FORMAT.md, the tree and "Column kinds")
SPLITS = ("train", "validation")
FLOAT_ARRAY = "float32"
CATEGORY_ARRAY = "categorical"
INT_DTYPES = ("int8", "int16", "int32", "int64")  # the integer arrays, each named by its dtype
VOCABULARY_GROUP = "vocabulary"  # vocabulary/<index>/{offsets,utf8} (store.vocabulary)

# --- sizes and limits (FORMAT.md, "Arrays" and "Readers validate")
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

# --- inner-chunk codecs (FORMAT.md, "Arrays"): bytes (little-endian) -> Blosc (absent for "none") -> CRC32C.
# The writer declares them in each array's zarr.json (zarr's BloscCodec) and encodes shards itself
# (store.shard.ChunkCodec, numcodecs' Blosc): both take these settings, so the two always agree.
BLOSC_LEVELS = {"lz4": 5, "zstd": 3}  # Blosc cname -> clevel
BLOSC_SHUFFLE = "shuffle"  # byte shuffle (the Zarr v3 name)
COMPRESSIONS = (*BLOSC_LEVELS, "none")  # lz4, zstd, none: the `compression` a store may have
BLOSC_HEADER_BYTES = 16  # Blosc's header, the most it adds to incompressible data
CHECKSUM_BYTES = 4  # CRC32C, little-endian, after every encoded chunk and after a shard's index

# --- the shard index (Zarr v3 sharding_indexed, index at the end): per inner chunk an (offset, nbytes) pair of
# little-endian uint64, in chunk order, then the index's CRC32C
INDEX_ENTRY_BYTES = 16
EMPTY_CHUNK = 2**64 - 1  # both halves of the entry of a chunk that was never written


def blosc_config(compression: str) -> dict | None:
    """The Blosc codec's ``cname``, ``clevel`` and ``shuffle`` of ``compression``; None for ``none`` (no Blosc)."""
    if compression not in BLOSC_LEVELS:
        return None
    return {"cname": compression, "clevel": BLOSC_LEVELS[compression], "shuffle": BLOSC_SHUFFLE}


def shard_index_bytes(chunks_per_shard: int) -> int:
    """Bytes at the end of a shard file holding its index and the index's checksum."""
    return INDEX_ENTRY_BYTES * chunks_per_shard + CHECKSUM_BYTES


def shard_path(store: str, split: str, array: str, shard: int) -> str:
    """File of shard ``shard`` of a 2-D array (Zarr v3 default chunk keys, '/' separator)."""
    return os.path.join(store, split, array, "c", str(shard), "0")


def partial_path(path: str) -> str:
    """Where an ingest builds the local store ``path`` until it is complete (``<store>.partial/``): readers that
    find it instead of a store say that the ingest has not finished."""
    return os.path.normpath(path) + ".partial"


def vocabulary_path(store: str, index: int) -> str:
    """The group of the stored vocabulary of column ``index`` of the categorical array."""
    return f"{store.rstrip('/')}/{VOCABULARY_GROUP}/{index}"


def chunks_per_shard_for(batch_size: int, widest_row_bytes: int) -> int:
    """Inner chunks per shard so the widest array's shard is about SHARD_TARGET_BYTES uncompressed."""
    per_chunk = max(1, batch_size * max(1, widest_row_bytes))
    return max(1, min(MAX_CHUNKS_PER_SHARD, math.floor(SHARD_TARGET_BYTES / per_chunk)))


def array_fill_value(array: str):
    """Fill (and missing) value of an array: NaN for float32, 0 for codes, the dtype minimum for integers."""
    if array == FLOAT_ARRAY:
        return float("nan")
    if array == CATEGORY_ARRAY:
        return 0
    return int(np.iinfo(array).min)
