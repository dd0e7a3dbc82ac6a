"""Write a store: lay out groups and arrays, write whole shards, and mark the store complete last.

The writer is deliberately small: the ingest decides what goes into each shard (ordering, types, statistics); the
writer lays the bytes out as FORMAT.md says. Shards are independent files, so several processes may write different
shards of one store at once.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

import numpy as np

from .layout import (ATTRS_KEY, CATEGORY_ARRAY, COMPRESSIONS, FORMAT_NAME, FORMAT_VERSION, VOCABULARY_GROUP,
                     array_fill_value, shard_path)
from .errors import OptionError
from .schema import Schema
from .files import publish, sync_tree, write_atomic
from .metadata import array_document, group_document, write_document
from .shard import ChunkCodec, encode_chunks, shard_parts
from .vocabulary import write_vocabulary

__all__ = ["StoreWriter"]


@dataclass(frozen=True)
class StoreWriter:
    """Writes one store at ``path`` (a local directory).

    Args:
        path: the store directory.
        schema: columns and label.
        rows: rows per split, e.g. ``{"train": 900, "validation": 100}``.
        batch_size: rows per chunk (the training batch).
        chunks_per_shard: chunks per shard file.
        compression: ``lz4``, ``zstd`` or ``none``.

    Example::

        writer = StoreWriter("s.zarr", schema=schema, rows={"train": 10}, batch_size=4, chunks_per_shard=2,
                             compression="lz4")
        writer.create({"source": "demo"})
        writer.write_shard("train", 0, {"float32": block})   # rows 0..7
        writer.write_shard("train", 1, {"float32": rest})    # rows 8..9
        writer.commit({"statistics": {...}})
    """

    path: str
    schema: Schema
    rows: dict
    batch_size: int
    chunks_per_shard: int
    compression: str = "lz4"

    def __post_init__(self):
        if self.compression not in COMPRESSIONS:
            raise OptionError(f"unknown compression {self.compression!r}; expected one of {', '.join(COMPRESSIONS)}")
        if self.batch_size < 1 or self.chunks_per_shard < 1:
            raise OptionError(f"batch size and chunks per shard must be >= 1, got {self.batch_size}, "
                              f"{self.chunks_per_shard}")

    @property
    def shard_rows(self) -> int:
        return self.batch_size * self.chunks_per_shard

    def shards(self, split: str) -> int:
        return -(-self.rows[split] // self.shard_rows)

    @classmethod
    def open(cls, path: str) -> "StoreWriter":
        """The writer of a store whose layout :meth:`create` made (any process: e.g. a worker forked before it)."""
        with open(os.path.join(path, "zarr.json"), encoding="utf-8") as f:
            attrs = json.load(f)["attributes"][ATTRS_KEY]
        return cls(path, schema=Schema.from_json(attrs["schema"], path),
                   rows={split: int(v["rows"]) for split, v in attrs["splits"].items()},
                   batch_size=int(attrs["batch_size"]), chunks_per_shard=int(attrs["chunks_per_shard"]),
                   compression=attrs["compression"])

    def create(self, attributes: dict | None = None) -> None:
        """Lay out the groups and arrays (metadata only); the root says ``complete: false`` until commit.

        The layout is written in a temporary folder renamed to ``path`` at the end, so it appears whole or not at
        all: an ingest resumed after a kill trusts a layout that exists.
        """
        building = self.path.rstrip(os.sep) + ".creating"
        shutil.rmtree(building, ignore_errors=True)
        self._create_layout(building, attributes)
        publish(building, self.path)

    def _create_layout(self, path: str, attributes: dict | None) -> None:
        """Every group's and array's metadata and the vocabularies, written directly (store.metadata: the documents
        zarr-python writes, ~10x faster)."""
        write_document(path, group_document({ATTRS_KEY: self._root_attrs(False, attributes or {})}))
        for split, n in self.rows.items():
            write_document(os.path.join(path, split), group_document({"rows": int(n)}))
            for name, columns in self.schema.arrays.items():
                width = len(columns)
                write_document(os.path.join(path, split, name), array_document(
                    shape=(int(n), width), dtype=self.schema.array_dtype(name), chunk_shape=(self.batch_size, width),
                    shard_shape=(self.shard_rows, width), compression=self.compression,
                    fill_value=array_fill_value(name), dimension_names=["row", f"{name}_column"],
                    attributes={"columns": [c.name for c in columns]}))
        vocabularies = [c for c in self.schema.arrays.get(CATEGORY_ARRAY, ()) if c.vocabulary is not None]
        if vocabularies:
            write_document(os.path.join(path, VOCABULARY_GROUP), group_document({}))
        for col in vocabularies:
            write_vocabulary(path, col.index, col.vocabulary, self.compression)

    def write_shard(self, split: str, shard: int, arrays: dict[str, np.ndarray]) -> None:
        """Write shard ``shard`` of every array of ``split``; each value holds that shard's rows (2-D)."""
        expected = min(self.shard_rows, self.rows[split] - shard * self.shard_rows)
        for name, rows in arrays.items():
            if rows.shape[0] != expected:
                raise ValueError(f"{split}/{name} shard {shard}: got {rows.shape[0]} rows, expected {expected}")
            self.write_encoded(split, name, shard, self.encode_chunks(name, rows))

    def encode_chunks(self, array: str, rows: np.ndarray) -> list[bytes]:
        """The encoded chunks of ``rows`` of ``array`` (starting at a chunk boundary; a short last chunk is the
        array's last, padded)."""
        dtype = self.schema.array_dtype(array)
        return encode_chunks(ChunkCodec(self.compression, dtype), rows.astype(dtype, copy=False), self.batch_size,
                             array_fill_value(array))

    def write_encoded(self, split: str, array: str, shard: int, chunks: list) -> None:
        """Write one shard file from its encoded chunks (:meth:`encode_chunks`, possibly of several parts)."""
        expected = -(-min(self.shard_rows, self.rows[split] - shard * self.shard_rows) // self.batch_size)
        if len(chunks) != expected:
            raise ValueError(f"{split}/{array} shard {shard}: got {len(chunks)} chunks, expected {expected}")
        path = shard_path(self.path, split, array, shard)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, shard_parts(chunks, self.chunks_per_shard))

    def commit(self, attributes: dict) -> None:
        """Write the root metadata with ``complete: true``: the last write of an ingest."""
        self._remove_temporaries()
        sync_tree(self.path)  # every shard and array metadata on disk before the store says it is complete
        meta_path = os.path.join(self.path, "zarr.json")
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        meta["attributes"] = {ATTRS_KEY: self._root_attrs(True, attributes)}
        write_atomic(meta_path, json.dumps(meta, indent=2, ensure_ascii=False).encode("utf-8"))

    def _remove_temporaries(self) -> None:
        """Delete what interrupted shard writes left (``*.tmp<pid>``), so the finished store holds only its files."""
        for root, _dirs, files in os.walk(self.path):
            for name in files:
                if ".tmp" in name:
                    os.remove(os.path.join(root, name))

    def _root_attrs(self, complete: bool, extra: dict) -> dict:
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "complete": complete,
                "batch_size": self.batch_size, "chunks_per_shard": self.chunks_per_shard,
                "compression": self.compression, "schema": self.schema.to_json(),
                "splits": {s: {"rows": int(n)} for s, n in self.rows.items()}, **extra}
