"""Column types and the schema: which column lives in which 2-D array, at which index, with which vocabulary.

Kinds (see FORMAT.md):

- ``float``    stored as float32 in the ``float32`` array; missing is NaN.
- ``int``      stored exactly in the narrowest of int8/int16/int32/int64 whose minimum lies below the column's
               minimum; that minimum is reserved for missing.
- ``bool``     like ``int`` (values 0/1, in the ``int8`` array).
- ``datetime`` like ``int``: nanoseconds since 1970-01-01T00:00:00 UTC (int64).
- ``category`` int codes in the ``categorical`` array: 0 is missing, ``i + 1`` is ``vocabulary[i]``; the
               vocabulary is ordered by decreasing frequency in the whole input, ties by value. A column with
               more distinct values than the ingest's ``--max-categories`` is hashed instead: codes
               ``1..hash_buckets`` (:mod:`store.vocabulary`), no vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import SchemaError
from .layout import CATEGORY_ARRAY, INT_DTYPES

__all__ = ["KINDS", "Column", "Schema", "narrowest_int", "code_dtype"]

KINDS = ("float", "int", "bool", "datetime", "category")


def narrowest_int(minimum: int | None, maximum: int | None) -> str:
    """The narrowest signed dtype holding [minimum, maximum] with its own minimum free for 'missing'."""
    if minimum is None:
        return "int8"
    for name in INT_DTYPES:
        info = np.iinfo(name)
        if info.min < minimum and maximum <= info.max:
            return name
    raise SchemaError(f"integer range [{minimum}, {maximum}] does not fit int64 with a reserved missing value; "
                      "declare the column as float or category with --dtype")


def code_dtype(vocabulary_size: int) -> str:
    """dtype of categorical codes 0..vocabulary_size (0 = missing)."""
    for name in ("int8", "int16", "int32"):
        if vocabulary_size <= np.iinfo(name).max:
            return name
    return "int64"


@dataclass(frozen=True)
class Column:
    """One source column: its ``kind``, the 2-D ``array`` holding it and its ``index`` there."""

    name: str
    kind: str
    array: str
    index: int
    vocabulary: Sequence[str] | None = None  # a tuple, or a StoredVocabulary read on first use
    hash_buckets: int | None = None

    @property
    def categories(self) -> int:
        """How many codes besides 0 (missing) a category column has: its vocabulary's size, or its hash buckets."""
        if self.vocabulary is not None:
            return len(self.vocabulary)
        return self.hash_buckets or 0

    @property
    def missing_value(self) -> int | float | None:
        """The stored value meaning 'missing' (NaN for floats, 0 for categories, dtype minimum for integers)."""
        if self.kind == "float":
            return float("nan")
        if self.kind == "category":
            return 0
        return int(np.iinfo(self.array).min)

    def to_json(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "array": self.array, "index": self.index}
        if self.kind == "datetime":
            out["unit"] = "ns"
        if self.vocabulary is not None:  # the values themselves are arrays of the store (store.vocabulary)
            out["vocabulary_size"] = len(self.vocabulary)
        if self.hash_buckets is not None:
            out["hash_buckets"] = self.hash_buckets
        return out

    @classmethod
    def from_json(cls, data: dict, store: str | None = None) -> "Column":
        """A column of a version-2 store's metadata (its vocabulary read lazily from ``store``), or of version 1
        (its vocabulary inline)."""
        if data.get("kind") not in KINDS:
            raise SchemaError(f"column {data.get('name')!r} has unknown kind {data.get('kind')!r}; "
                              f"this reader knows {', '.join(KINDS)}: upgrade the reader")
        vocab = data.get("vocabulary")
        if vocab is not None:
            vocab = tuple(vocab)
        elif data.get("vocabulary_size") is not None:
            from .vocabulary import StoredVocabulary
            vocab = StoredVocabulary(store or "", int(data["index"]), int(data["vocabulary_size"]), data["name"])
        buckets = data.get("hash_buckets")
        return cls(data["name"], data["kind"], data["array"], int(data["index"]), vocab,
                   int(buckets) if buckets is not None else None)


@dataclass(frozen=True)
class Schema:
    """The columns of a store in source order, and the label column (or None)."""

    columns: tuple[Column, ...]
    label: str | None = None
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def arrays(self) -> dict[str, list[Column]]:
        """Array name -> its columns in index order."""
        out: dict[str, list[Column]] = {}
        for col in sorted(self.columns, key=lambda c: (c.array, c.index)):
            out.setdefault(col.array, []).append(col)
        return out

    def array_dtype(self, array: str) -> np.dtype:
        """Stored dtype of one array (its name, except for the categorical codes)."""
        if array == CATEGORY_ARRAY:
            return np.dtype(code_dtype(max(c.categories for c in self.arrays[array])))
        return np.dtype(array)

    def __getitem__(self, name: str) -> Column:
        try:
            return self._by_name[name]
        except KeyError:
            raise SchemaError(f"unknown column {name!r}; the store has: {', '.join(self.names)}",
                              column=name) from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def to_json(self) -> dict:
        return {"label": self.label, "columns": [c.to_json() for c in self.columns]}

    @classmethod
    def from_json(cls, data: dict, store: str | None = None) -> "Schema":
        return cls(tuple(Column.from_json(c, store) for c in data["columns"]), data.get("label"))
