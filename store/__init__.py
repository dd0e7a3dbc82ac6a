"""The store: a Zarr v3 group of batch-aligned, typed 2-D arrays made once by ``ingest`` (see FORMAT.md)."""

from .errors import (ChunkError, DiskFullError, FormatError, IncompleteStoreError, MetadataError, OptionError,
                     SchemaError, SourceError, StoreError, BadRowError, OutputExistsError)
from .layout import COMPRESSIONS, DEFAULT_BATCH_SIZE, FORMAT_NAME, FORMAT_VERSION, SPLITS, partial_path
from .reader import Store, open_store
from .schema import KINDS, Column, Schema
from .writer import StoreWriter

__all__ = [
    "open_store", "Store", "StoreWriter", "Schema", "Column", "partial_path",
    "KINDS", "SPLITS", "COMPRESSIONS", "DEFAULT_BATCH_SIZE", "FORMAT_NAME", "FORMAT_VERSION",
    "StoreError", "BadRowError", "SourceError", "SchemaError", "OptionError", "IncompleteStoreError",
    "FormatError", "MetadataError", "ChunkError", "OutputExistsError", "DiskFullError",
]
