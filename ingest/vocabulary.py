"""Categorical vocabularies across blocks, in memory bounded by ``--max-categories`` whatever the input.

Each block's parser finds the block's own distinct values; the worker writes them beside the block's spill file
(values, counts and 64-bit hashes: :func:`write_block`) instead of sending them to the parent. The parent then
merges one column and one block at a time (:func:`merge`): a column whose distinct values pass
``max_categories`` stops being counted (its memory is freed at once) and becomes a hashed column; the others get
the full vocabulary, ordered by decreasing count, ties by value. Finally every block gets a map from its local
codes to the store's codes (:func:`write_maps`), which the shuffle pass applies.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from store import StoreError, hashed_codes, pack_strings, unpack_strings, value_hashes, write_atomic

from .shuffle import save_array

__all__ = ["Vocabulary", "BlockVocabulary", "write_block", "merge", "write_maps", "DEFAULT_MAX_CATEGORIES"]

# Above this many distinct values a column is hashed into this many buckets: 10**6 values keep the merge under
# ~200 MB and an embedding table of the default model under 128 MB, and ids (users, sessions, UUIDs), the usual
# cause of more, carry little that a listed vocabulary would add.
DEFAULT_MAX_CATEGORIES = 1_000_000


@dataclass(frozen=True)
class Vocabulary:
    """The outcome for one categorical column: its ``values`` (listed), or ``hash_buckets`` (hashed)."""

    values: tuple[str, ...] | None
    hash_buckets: int | None = None


def write_block(path: str, vocab: list[list[str]], counts: list[np.ndarray]) -> None:
    """Save one block's local vocabularies (column ``j``: values ``o{j}``/``u{j}``, counts ``n{j}``, hashes
    ``h{j}``), durably: the block's metadata, written after it, marks the block done.

    The file is a JSON index (its length first, 8 bytes little-endian) then the arrays' bytes: the parent opens it
    once per column in two passes over every block, so reading one column must cost a few reads, not parsing a
    zip directory and an ``.npy`` header per array (``np.load`` of an ``.npz``: ~10x the time, 15 s of a serial
    stage at 100 GB)."""
    arrays = {}
    for j, (values, n) in enumerate(zip(vocab, counts)):
        offsets, utf8 = pack_strings(values)
        arrays |= {f"o{j}": offsets, f"u{j}": utf8, f"n{j}": np.asarray(n, np.int64), f"h{j}": value_hashes(values)}
    index, at = {}, 0
    for name, a in arrays.items():
        a = arrays[name] = np.ascontiguousarray(a)
        index[name] = [a.dtype.str, list(a.shape), at]
        at += a.nbytes
    head = json.dumps(index).encode("ascii")
    parts = [len(head).to_bytes(8, "little"), head, *(a.tobytes() for a in arrays.values())]
    write_atomic(path, b"".join(parts))


class BlockVocabulary:
    """One block's vocabulary file (:func:`write_block`), read one array at a time: ``with BlockVocabulary(p) as
    data: data["o0"]``."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        try:
            size = int.from_bytes(os.pread(self._fd, 8, 0), "little")
            self._index = json.loads(os.pread(self._fd, size, 8))
            self._base = 8 + size
        except (ValueError, OSError):
            os.close(self._fd)
            raise StoreError(f"{path}: a work file of the interrupted ingest is damaged; pass --overwrite instead "
                             "of --resume to start over", path=path) from None

    def __getitem__(self, name: str) -> np.ndarray:
        dtype, shape, at = self._index[name]
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        data = os.pread(self._fd, n, self._base + at)
        if len(data) != n:
            raise StoreError(f"{self.path}: a work file of the interrupted ingest is damaged; pass --overwrite "
                             "instead of --resume to start over", path=self.path)
        return np.frombuffer(data, dtype).reshape(shape)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def merge(block_file: Callable[[int], str], blocks: list[int], columns: int, max_categories: int,
          never_hash: set[int] = frozenset()) -> list[Vocabulary]:
    """Merge the blocks' vocabularies column by column (``block_file(b)``: the file of block ``b``). Columns in
    ``never_hash`` (the label) are always listed."""
    out = []
    for j in range(columns):
        counts: Counter = Counter()
        hashed = False
        for b in blocks:
            with BlockVocabulary(block_file(b)) as data:
                counts.update(dict(zip(unpack_strings(data[f"o{j}"], data[f"u{j}"]), data[f"n{j}"].tolist())))
            if len(counts) > max_categories and j not in never_hash:
                hashed = True
                break
        if hashed:
            out.append(Vocabulary(None, max_categories))
        else:
            out.append(Vocabulary(tuple(sorted(counts, key=lambda v: (-counts[v], v)))))
    return out


def write_maps(block_file: Callable[[int], str], blocks: list[int], vocabularies: list[Vocabulary],
               map_file: Callable[[int | str], str]) -> None:
    """Per column, every block's map local code + 1 -> store code (0 = missing), concatenated in block order into
    one file, with each block's offset: one file a column, not one a block and column."""
    offsets = np.zeros((len(vocabularies), len(blocks) + 1), dtype=np.int64)
    for j, vocab in enumerate(vocabularies):
        codes = {v: i + 1 for i, v in enumerate(vocab.values)} if vocab.values is not None else None
        maps = []
        for b in blocks:
            with BlockVocabulary(block_file(b)) as data:
                if codes is None:
                    local = hashed_codes(data[f"h{j}"], vocab.hash_buckets)
                else:
                    local = np.array([codes[v] for v in unpack_strings(data[f"o{j}"], data[f"u{j}"])], dtype=np.int64)
            maps.append(np.concatenate([[0], local]).astype(np.int32))  # codes < 2**31: IngestConfig's bound
        offsets[j, 1:] = np.cumsum([len(m) for m in maps])
        save_array(map_file(j), np.concatenate(maps) if maps else np.zeros(0, np.int32))
    save_array(map_file("offsets"), offsets)
