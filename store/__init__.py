"""The store: a Zarr v3 group of batch-aligned, typed 2-D arrays made once by ``ingest`` (see FORMAT.md).

This is the store's whole public API: ``ingest``, ``trainer`` and ``tools`` import only these names (a test keeps
them to it), so the modules behind them can change freely. Example::

    from store import open_store
    store = open_store("quest.zarr")
    store.read_frame("train", 0, 5)
"""

# Errors: the one hierarchy of the project (StoreError is a ValueError); from_os_error turns an OSError into one.
from .errors import (BadRowError, ChunkError, DiskFullError, FormatError, IncompleteStoreError, LockedError,
                     MetadataError, OptionError, OutputExistsError, SchemaError, SourceError, StoreError,
                     from_os_error)
# Reading: open a complete store (checked once); read_chunks fetches chunks of Store.chunk_reader()s in one go.
from .reader import Store, open_store
from .chunks import read_chunks
# Writing: lay out a store, write whole shards, mark it complete last.
from .writer import StoreWriter
# Columns: their kinds, the schema, and the integer type a column's range needs.
from .schema import KINDS, Column, Schema, narrowest_int
# The format's names, paths and limits (store/layout.py, FORMAT.md).
from .layout import (ATTRS_KEY, CATEGORY_ARRAY, COMPRESSIONS, FLOAT_ARRAY, FORMAT_NAME,
                     FORMAT_VERSION, MAX_BATCH_SIZE, MAX_CATEGORIES, SPLITS, VOCABULARY_GROUP, chunks_per_shard_for,
                     partial_path, shard_path)
# Categorical values: the strings' packed (offsets, utf8) form and the hashing of hashed columns.
from .vocabulary import hashed_codes, pack_strings, unpack_strings, value_hashes
# Durable files: the one way the project publishes what it writes (store, ingest work files, runs).
from .files import boot_id, fsync_dir, fsync_file, publish, temporary_name, write_atomic, write_parts
# One writer at a time (an ingest's output, a training run's directory).
from .lock import Lock
# Where a store or source lives: a local path or an fsspec URL.
from .location import filesystem, is_remote, size_of

__all__ = [
    # errors
    "StoreError", "BadRowError", "SourceError", "SchemaError", "OptionError", "IncompleteStoreError", "FormatError",
    "MetadataError", "ChunkError", "OutputExistsError", "DiskFullError", "LockedError", "from_os_error",
    # reading and writing
    "open_store", "Store", "read_chunks", "StoreWriter",
    # columns
    "KINDS", "Column", "Schema", "narrowest_int",
    # the format
    "FORMAT_NAME", "FORMAT_VERSION", "ATTRS_KEY", "SPLITS", "FLOAT_ARRAY", "CATEGORY_ARRAY", "COMPRESSIONS",
    "VOCABULARY_GROUP", "MAX_BATCH_SIZE", "MAX_CATEGORIES", "chunks_per_shard_for",
    "shard_path", "partial_path",
    # categorical values
    "pack_strings", "unpack_strings", "value_hashes", "hashed_codes",
    # durable files
    "write_atomic", "write_parts", "publish", "temporary_name", "fsync_file", "fsync_dir", "boot_id",
    # locks and locations
    "Lock", "is_remote", "filesystem", "size_of",
]
