"""Vocabularies of categorical columns, stored as arrays of the store (format version 2), and hashed columns.

A vocabulary of ``n`` values is two 1-D Zarr arrays in ``vocabulary/<index>/`` (``index``: the column's index in
the ``categorical`` array): ``offsets`` (int64, ``n + 1`` entries, starting at 0) and ``utf8`` (uint8, the values'
UTF-8 bytes one after the other); value ``i`` is ``utf8[offsets[i]:offsets[i + 1]]`` — the layout of an Arrow
string array, which any Zarr reader can read. Readers load a vocabulary only when its values are asked for
(decoding a column to strings), never to open a store or to train: a model needs the vocabulary's size, which the
column's metadata holds. Version 1 stores keep their vocabularies inline in the root metadata.

A column with more distinct values than ``--max-categories`` is **hashed** instead: its code is
``1 + h(value) mod buckets`` where ``h`` is the first 8 bytes, little-endian, of BLAKE2b (digest size 8) of the value's
UTF-8 bytes — reproducible anywhere (Python: :func:`value_hashes`), as Keras' ``Hashing`` layer does for unseen
values.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np

from .layout import vocabulary_path
from .metadata import group_document, write_chunked, write_document

__all__ = ["StoredVocabulary", "write_vocabulary", "value_hashes", "hashed_codes", "pack_strings",
           "unpack_strings"]

_CHUNK_VALUES = 1 << 20  # offsets per chunk (8 MiB)
_CHUNK_BYTES = 1 << 24  # UTF-8 bytes per chunk (16 MiB)


def pack_strings(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, utf8) of ``values``: the layout of a stored vocabulary (module docstring), also used by the
    ingest's vocabulary work files."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return offsets, np.frombuffer(b"".join(encoded), np.uint8)


def unpack_strings(offsets: np.ndarray, utf8: np.ndarray) -> list[str]:
    """The values of :func:`pack_strings`' ``(offsets, utf8)``."""
    data = utf8.tobytes()
    bounds = offsets.tolist()
    return [data[a:b].decode("utf-8") for a, b in zip(bounds, bounds[1:])]


def write_vocabulary(store: str, index: int, values: Sequence[str], compression: str) -> None:
    """Write ``values`` as ``vocabulary/<index>/{offsets,utf8}`` under the store (or layout) folder ``store``, whose
    ``vocabulary`` group the caller writes."""
    offsets, utf8 = pack_strings(values)
    folder = vocabulary_path(store, index)
    write_document(folder, group_document({}))
    for name, data, chunk, dim in (("offsets", offsets, _CHUNK_VALUES, "value"), ("utf8", utf8, _CHUNK_BYTES, "byte")):
        write_chunked(os.path.join(folder, name), data, chunk, compression, dim)


class StoredVocabulary(Sequence):
    """The vocabulary of one column of a version-2 store: its length from the metadata, its values read from the
    store on first use (then kept). Pickles as its location only (loader worker processes never read it)."""

    def __init__(self, store: str, index: int, size: int, column: str = ""):
        self.store, self.index, self.size, self.column = store, index, size, column
        self._values: list[str] | None = None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i):
        return self.values()[i]

    def __iter__(self):
        return iter(self.values())

    def __eq__(self, other) -> bool:  # the same values, wherever they are stored (reads both)
        if not isinstance(other, (StoredVocabulary, list, tuple)):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"<StoredVocabulary {self.column!r}: {self.size} values in {vocabulary_path(self.store, self.index)}>"

    def __getstate__(self):
        return {**self.__dict__, "_values": None}

    def values(self) -> list[str]:
        if self._values is None:
            self._values = self._read()
        return self._values

    def _read(self) -> list[str]:
        import zarr

        from .errors import MetadataError
        where = vocabulary_path(self.store, self.index)
        try:
            offsets = zarr.open_array(f"{where}/offsets", mode="r")
            utf8 = zarr.open_array(f"{where}/utf8", mode="r")
            if offsets.shape != (self.size + 1,) or offsets.dtype != np.int64 or utf8.dtype != np.uint8:
                raise ValueError(f"offsets of shape {offsets.shape} ({offsets.dtype}), expected ({self.size + 1},) "
                                 "int64")
            bounds = offsets[:]
            if bounds[0] != 0 or bounds[-1] != utf8.shape[0] or (np.diff(bounds) < 0).any():
                raise ValueError("offsets are not increasing from 0 to the length of utf8")
            return unpack_strings(bounds, utf8[:])
        except (OSError, ValueError, KeyError, UnicodeDecodeError, MemoryError) as exc:
            raise MetadataError(f"{where}: the vocabulary of column {self.column!r} cannot be read ({exc}); the "
                                "store is damaged, re-run the ingest", path=os.fspath(self.store)) from None


def value_hashes(values: Sequence[str]) -> np.ndarray:
    """The 64-bit hash of each value (see the module docstring)."""
    blake = hashlib.blake2b
    return np.fromiter((int.from_bytes(blake(v.encode("utf-8"), digest_size=8).digest(), "little") for v in values),
                       dtype=np.uint64, count=len(values))


def hashed_codes(hashes: np.ndarray, buckets: int) -> np.ndarray:
    """Codes 1..buckets of hashed values (0 stays 'missing')."""
    return (hashes % np.uint64(buckets)).astype(np.int64) + 1
