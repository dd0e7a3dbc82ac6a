"""Open a store, check its format and completeness, and read rows back as pandas DataFrames."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .chunks import read_chunks
from .errors import (ChunkError, FormatError, IncompleteStoreError, MetadataError, OptionError, SourceError,
                     StoreError)
from .layout import ATTRS_KEY, FORMAT_NAME, READABLE_VERSIONS, partial_path
from .location import filesystem, is_remote
from .schema import Column, Schema
from .validation import check_store, read_metadata, read_remote_metadata, show_value

if TYPE_CHECKING:
    import zarr

__all__ = ["Store", "open_store", "store_identity", "check_unchanged"]


def open_store(path: str | os.PathLike) -> "Store":
    """Open a complete store for reading: a local directory or an fsspec URL (``s3://bucket/quest.zarr``).

    Raises:
        IncompleteStoreError: the ingest was interrupted or is still running.
        FormatError: not a store of this format, or a version this code does not know.
        MetadataError: a FormatError: metadata of the wrong type or range, or inconsistent with itself, the arrays'
            metadata or the files (see :mod:`store.validation`); checked here, once, before anything is read.
        SourceError: nothing at ``path``.

    Example::

        store = open_store("quest.zarr")
        store.rows                      # {'train': 900000, 'validation': 100000}
        store.read_frame("train", 0, 5)
    """
    path = os.fspath(path)
    attrs = _root_attrs(path)
    check_store(path, attrs)
    return Store(path, attrs)


def store_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the store directory: `ingest --overwrite` replaces the directory, so a changed identity
    means the store this object opened is gone. None for remote stores (object stores have no directories)."""
    if is_remote(path):
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (-1, -1)
    return st.st_dev, st.st_ino


def check_unchanged(path: str, identity: tuple[int, int]) -> None:
    """Raise if the (local) store at ``path`` was replaced (or removed) since it was opened."""
    if identity is not None and store_identity(path) != identity:
        raise IncompleteStoreError(f"{path}: the store was replaced or removed while it was being read (an ingest "
                                   "--overwrite?); open it again", path=path)


def _read_root(path: str) -> bytes | None:
    """The root zarr.json's bytes, or None when the store (or its root metadata) is absent."""
    if is_remote(path):
        fs, root = filesystem(path)
        try:
            return read_remote_metadata(fs, f"{root}/zarr.json", f"{path}/zarr.json")
        except FileNotFoundError:
            if fs.exists(root) and fs.ls(root):
                # the root metadata is uploaded last: objects without it are an unfinished or interrupted ingest
                raise IncompleteStoreError(f"{path}: the ingest that uploads this store has not finished; re-run the "
                                           "same ingest command with --resume", path=path) from None
            raise SourceError(f"{path}: no such store; create it with `ingest SOURCE --out {path}`",
                              path=path) from None
    return read_metadata(os.path.join(path, "zarr.json"))  # None when absent; never blocks on a FIFO


def _root_attrs(path: str) -> dict:
    meta_path = f"{path}/zarr.json" if is_remote(path) else os.path.join(path, "zarr.json")
    try:
        raw = _read_root(path)
    except StoreError:
        raise
    except OSError as exc:
        raise FormatError(f"{meta_path}: unreadable metadata ({exc}); the store is damaged, re-run the ingest",
                          path=path) from None
    if raw is None:
        if os.path.isdir(partial_path(path)):
            raise IncompleteStoreError(f"{path}: the ingest that writes this store has not finished (its work is in "
                                       f"{partial_path(path)}); re-run the same ingest command with --resume",
                                       path=path)
        if not os.path.exists(path):
            raise SourceError(f"{path}: no such store; create it with `ingest SOURCE --out {path}`", path=path)
        raise FormatError(f"{path}: not a Zarr v3 store (no zarr.json); expected a store made by `ingest`", path=path)
    try:
        attrs = json.loads(raw).get("attributes", {}).get(ATTRS_KEY)
    except (ValueError, AttributeError, RecursionError) as exc:
        raise FormatError(f"{meta_path}: unreadable metadata ({exc}); the store is damaged, re-run the ingest",
                          path=path) from None
    if not isinstance(attrs, dict) or attrs.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: a Zarr group but not a {FORMAT_NAME} (attribute {ATTRS_KEY!r} missing); "
                          "expected a store made by `ingest`", path=path)
    version = attrs.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:  # not true, not 1.0
        raise FormatError(f"{path}: {FORMAT_NAME} version {show_value(version)}, this code reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}; install the matching version of this package",
                          path=path)
    complete = attrs.get("complete", False)
    if not isinstance(complete, bool):
        raise MetadataError(f"{path}: complete is {show_value(complete)}, expected true or false; the store's "
                            "metadata is damaged or was edited; re-create the store with ingest", path=path)
    if not complete:
        raise IncompleteStoreError(f"{path}: the store is incomplete (its ingest was interrupted); re-run the "
                                   "ingest with --resume, or with --overwrite to start over", path=path)
    return attrs


class Store:
    """A complete store opened for reading (see :func:`open_store`)."""

    def __init__(self, path: str, attrs: dict):
        self.path = path
        self.identity = store_identity(path)
        self.attrs = attrs
        self.schema = Schema.from_json(attrs["schema"], path)
        self.batch_size = int(attrs["batch_size"])
        self.chunks_per_shard = int(attrs["chunks_per_shard"])
        self.compression = attrs["compression"]
        self.rows = {name: int(s["rows"]) for name, s in attrs["splits"].items()}
        self.statistics = attrs.get("statistics", {})
        self._arrays: dict = {}

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.rows)

    @property
    def label(self) -> str | None:
        return self.schema.label

    def __repr__(self) -> str:
        rows = ", ".join(f"{k}={v}" for k, v in self.rows.items())
        return f"<Store {self.path!r} {len(self.schema.columns)} columns, {rows}, batch_size={self.batch_size}>"

    def check_split(self, split: str) -> None:
        if split not in self.rows:
            raise OptionError(f"{self.path}: no split {split!r}; the store has {', '.join(self.rows)}", path=self.path)

    def chunk_reader(self, split: str, name: str):
        """The fast reader of one array (:class:`store.chunks.ArrayReader`): chunk ``k`` by index."""
        from .chunks import ArrayReader
        self.check_split(split)
        return ArrayReader(self.path, split, name, dtype=self.schema.array_dtype(name),
                           columns=len(self.schema.arrays[name]), rows=self.rows[split], batch_size=self.batch_size,
                           chunks_per_shard=self.chunks_per_shard, compression=self.compression,
                           identity=self.identity)

    def array(self, split: str, name: str) -> zarr.Array:
        """The zarr-python array ``split/name`` (opened once, cached), for use with the Zarr ecosystem. Its reads are
        zarr-python's own: they do not check a chunk's decoded size before decompressing it, as :meth:`read_frame`
        and :meth:`chunk_reader` do, so do not use it on stores you do not trust."""
        import zarr  # here: importing zarr-python takes ~0.1 s that the ingest and the trainer never need

        key = (split, name)
        if key not in self._arrays:
            self.check_split(split)
            self._arrays[key] = zarr.open_array(os.path.join(self.path, split, name), mode="r")
        return self._arrays[key]

    def read_frame(self, split: str, start: int = 0, stop: int | None = None,
                   columns: list[str] | None = None) -> pd.DataFrame:
        """Rows ``start:stop`` of ``split`` with the original column names and values.

        Floats come back as float32 (NaN when missing), integers as int64 (pandas ``Int64`` when the column has
        missing values), booleans as bool/``boolean``, datetimes as ``datetime64[ns]``, categories as their strings
        (None when missing).
        """
        self.check_split(split)
        if start < 0:
            raise OptionError(f"{self.path}: read_frame start {start} is negative; rows are numbered from 0",
                              path=self.path)
        stop = self.rows[split] if stop is None else min(stop, self.rows[split])
        wanted = [self.schema[c] for c in (columns if columns is not None else self.schema.names)]
        try:
            blocks = {name: self._rows(split, name, start, stop) for name in dict.fromkeys(c.array for c in wanted)}
        except StoreError:
            check_unchanged(self.path, self.identity)  # a store replaced meanwhile says so
            raise
        check_unchanged(self.path, self.identity)  # every value above came from the store that was opened
        data = {c.name: self._values(c, blocks[c.array][:, c.index], split) for c in wanted}
        return pd.DataFrame(data, index=pd.RangeIndex(start, max(start, stop)))

    def _rows(self, split: str, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of one array through the checked chunk reader (sizes checked before decoding)."""
        if stop <= start:
            return np.empty((0, len(self.schema.arrays[name])), self.schema.array_dtype(name))
        reader, batch = self.chunk_reader(split, name), self.batch_size
        first = start // batch
        try:
            block = np.concatenate(list(read_chunks([(reader, k) for k in range(first, -(-stop // batch))])))
        finally:
            reader.close()
        return block[start - first * batch:stop - first * batch]

    def _values(self, col: Column, raw: np.ndarray, split: str):
        if col.kind == "float":
            return raw
        if col.kind == "category":
            codes = raw.astype(np.int64)
            if codes.size and (codes.min() < 0 or codes.max() > col.categories):
                bad = codes.min() if codes.min() < 0 else codes.max()
                what = f"vocabulary of {col.categories} values" if col.vocabulary is not None else \
                    f"{col.categories} hash buckets"
                raise ChunkError(f"{self.path}: {split}/{col.array}: column {col.name!r} holds code {bad}, outside its "
                                 f"{what} (codes 0..{col.categories}); the store is damaged, re-create it with "
                                 "ingest", path=self.path, array=f"{split}/{col.array}", column=col.name)
            if col.vocabulary is None:  # hashed: the bucket numbers are all the store has
                return pd.arrays.IntegerArray(codes, codes == 0)
            return np.array([None, *col.vocabulary], dtype=object)[codes]
        missing = raw == col.missing_value
        values = raw.astype(np.int64)
        if col.kind == "datetime":
            return pd.to_datetime(np.where(missing, np.iinfo(np.int64).min, values), unit="ns")
        nullable = bool(self.statistics.get(split, {}).get(col.name, {}).get("missing")) or missing.any()
        if col.kind == "bool":
            return pd.arrays.BooleanArray(values.astype(bool), missing) if nullable else values.astype(bool)
        return pd.arrays.IntegerArray(values, missing) if nullable else values
