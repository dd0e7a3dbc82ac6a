"""The three passes of an ingest, as plain functions of one work item, run inline or in worker processes.

1. ``parse_block``: CSV block -> typed rows, statistics, local vocabularies -> spill file grouped by bucket.
2. ``sort_bucket``: one bucket from every spill file -> final types and codes, permuted -> one file per split/array.
3. ``write_shard``: the rows of one shard, read from the sorted buckets -> one encoded shard file per array.

Each function writes its output under a temporary name and renames it, so a finished item is never redone by
``--resume`` and an interrupted one leaves nothing that looks finished. Context that every item shares (the parser,
the schema, the paths) is set once per process by :func:`set_context`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from store.errors import StoreError
from store.files import write_atomic
from store.schema import Schema
from store.stats import ColumnStats
from store.writer import StoreWriter

from .blocks import Block
from .parse import INT_MISSING, BlockParser, Parsed
from .shuffle import (bucket_of, bucket_permutation, is_validation, read_spill_rows, record_dtype, row_hash,
                      save_array, write_spill)
from .sources import SourceFile, read_range
from .summary import write_block_rejects
from .vocabulary import write_block as write_block_vocabulary

__all__ = ["Context", "set_context", "parse_block", "sort_bucket", "write_shard", "SPLIT_NAMES"]

SPLIT_NAMES = ("train", "validation")


@dataclass
class Context:
    """What every work item of an ingest needs; sent once to each worker process."""

    work: str
    files: list[SourceFile]
    parser: BlockParser
    seed: int
    shuffle: bool
    n_buckets: int
    val_fraction: float | None
    stop_at_bad_row: bool
    schema: Schema | None = None
    writer: StoreWriter | None = None
    bucket_rows: dict = field(default_factory=dict)  # split -> cumulative rows per bucket (pass 3)
    buckets: list = field(default_factory=list)  # bucket ids in order (pass 3)

    @property
    def dtype(self) -> np.dtype:
        p = self.parser
        return record_dtype(len(p.float_cols), len(p.int_cols), len(p.cat_cols))

    def spill(self, block: int) -> str:
        return os.path.join(self.work, "spill", f"{block:06d}")

    def rejects(self, block: int) -> str:
        """File of one block's rejected rows (written before its spill metadata, which marks the block done)."""
        return self.spill(block) + ".rejects.csv"

    def vocabulary(self, block: int) -> str:
        return self.spill(block) + ".vocab.npz"

    def maps(self, column) -> str:
        """File of the categorical code maps of one column (or of their per-block offsets)."""
        return os.path.join(self.work, f"maps.{column}.npy")

    def sorted(self, bucket: int, split: str, array: str) -> str:
        return os.path.join(self.work, "sorted", f"{bucket:06d}.{split}.{array}.npy")


_CTX: Context | None = None


def set_context(ctx: Context) -> None:
    global _CTX
    _CTX = ctx


# -- pass 1 -------------------------------------------------------------------------------------------------------

def parse_block(block: Block) -> dict:
    """Parse one block and spill its rows; returns the block's metadata (also saved beside the spill)."""
    c = _CTX
    src = c.files[block.file]
    data = read_range(src.path, block.start, block.end)  # an object: one ranged GET of at most 64 MiB
    parsed = c.parser.parse(data, first_line=block.line, stop_at_first=c.stop_at_bad_row)
    # The parent gets counts and the first bad row (for the error policy's message), never the rejected records:
    # those go to a file per block, concatenated into the rejects file at the end (bounded memory in the parent).
    meta = {"block": block.index, "bytes": block.end - block.start, "rows_read": parsed.rows + len(parsed.bad),
            "rows": parsed.rows, "rejected": len(parsed.bad),
            "bad": [[src.path, b.line, b.column, b.reason, b.fix] for b in parsed.bad[:1]]}
    if parsed.bad and c.stop_at_bad_row:
        return meta
    if parsed.bad:
        write_block_rejects(c.rejects(block.index), src.path, parsed.bad)
    hashes = row_hash(c.seed, block.index, parsed.rows)
    if src.split == "validation":
        split = np.ones(parsed.rows, np.uint8)
    elif c.val_fraction:
        split = is_validation(hashes, c.val_fraction).astype(np.uint8)
    else:
        split = np.zeros(parsed.rows, np.uint8)
    buckets = bucket_of(hashes, c.n_buckets) if c.shuffle else np.full(parsed.rows, block.index, np.uint64)
    counts = [np.bincount(col[col >= 0], minlength=len(v)) for col, v in zip(parsed.codes.T, parsed.vocab)]
    write_block_vocabulary(c.vocabulary(block.index), parsed.vocab, counts)  # on disk, not in the parent's memory
    meta["stats"] = _block_stats(c.parser, parsed, split)
    records = np.empty(parsed.rows, c.dtype)
    records["split"] = split
    for name, values in (("f", parsed.floats), ("i", parsed.ints), ("c", parsed.codes)):
        if name in records.dtype.names:
            records[name] = values
    return write_spill(c.spill(block.index), records, buckets, meta)


def _block_stats(parser: BlockParser, parsed: Parsed, split: np.ndarray) -> dict:
    out = {}
    for s, name in enumerate(SPLIT_NAMES):
        mask = split == s
        if not mask.any():
            continue
        everything = mask.all()
        floats = parsed.floats if everything else parsed.floats[mask]
        ints = parsed.ints if everything else parsed.ints[mask]
        codes = parsed.codes if everything else parsed.codes[mask]
        stats = {}
        for cols, values, missing, numeric in ((parser.float_cols, floats, np.isnan(floats), True),
                                               (parser.int_cols, ints, ints == INT_MISSING, True),
                                               (parser.cat_cols, codes, codes < 0, False)):
            for col, st in zip(cols, ColumnStats.of_columns(values, missing, numeric=numeric)):
                stats[col] = st.to_state()
        out[name] = stats
    return out


# -- pass 2 -------------------------------------------------------------------------------------------------------

def sort_bucket(job: tuple[int, list[tuple[int, int, int]]]) -> int:
    """Gather bucket ``job[0]`` from its spill segments ``job[1]`` = [(block, first row, rows)], permute, convert to
    the final types, and write one file per split and array. Returns the bucket's row count."""
    c = _CTX
    bucket, segments = job
    rows = np.empty(sum(count for _, _, count in segments), c.dtype)
    at = 0
    for block, first, count in segments:
        part = rows[at:at + count]
        read_spill_rows(c.spill(block), part, first)
        if "c" in rows.dtype.names:
            maps, offsets = _maps(c)
            for j in range(part["c"].shape[1]):
                mapping = maps[j][offsets[j, block]:offsets[j, block + 1]]
                part["c"][:, j] = mapping[part["c"][:, j] + 1]
        at += count
    order = bucket_permutation(c.seed, bucket, len(rows)) if c.shuffle else np.arange(len(rows))
    split_of = rows["split"][order]
    for s, split in enumerate(SPLIT_NAMES):
        selected = rows[order[split_of == s]]
        for array, values in _final_arrays(c, selected).items():
            save_array(c.sorted(bucket, split, array), values)
    write_atomic(os.path.join(c.work, "sorted", f"{bucket:06d}.done"), b"")  # after the bucket's files are on disk
    return len(rows)


_MAPS: dict = {}


def _maps(c: Context) -> tuple[list[np.ndarray], np.ndarray]:
    """The code maps, memory-mapped once per process."""
    st = os.stat(c.maps("offsets"))
    key = (c.work, st.st_ino, st.st_mtime_ns)  # a later ingest to the same place writes new maps
    if key not in _MAPS:
        _MAPS.clear()
        offsets = np.load(c.maps("offsets"))
        _MAPS[key] = [np.load(c.maps(j), mmap_mode="r") for j in range(len(offsets))], offsets
    return _MAPS[key]


def _final_arrays(c: Context, rows: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    int_index = {name: j for j, name in enumerate(c.parser.int_cols)}
    for array, columns in c.schema.arrays.items():
        dtype = c.schema.array_dtype(array)
        if array == "float32":
            out[array] = rows["f"]
        elif array == "categorical":
            out[array] = rows["c"].astype(dtype)
        else:
            values = rows["i"][:, [int_index[col.name] for col in columns]]
            values = np.where(values == INT_MISSING, np.iinfo(dtype).min, values)
            out[array] = values.astype(dtype)
    return out


# -- pass 3 -------------------------------------------------------------------------------------------------------

def write_shard(job: tuple[str, int]) -> int:
    """Write shard ``job[1]`` of split ``job[0]`` from the sorted buckets; returns its row count."""
    c = _CTX
    split, shard = job
    start = shard * c.writer.shard_rows
    stop = min(start + c.writer.shard_rows, c.writer.rows[split])
    bounds = c.bucket_rows[split]  # bounds[k] = first row of bucket c.buckets[k]; one extra entry at the end
    first = int(np.searchsorted(bounds, start, side="right")) - 1
    arrays = {}
    for array in c.schema.arrays:
        pieces, k = [], first
        while k < len(c.buckets) and bounds[k] < stop:
            lo, hi = max(start, bounds[k]), min(stop, bounds[k + 1])
            if hi > lo:
                data = np.load(c.sorted(c.buckets[k], split, array), mmap_mode="r")
                pieces.append(np.asarray(data[lo - bounds[k]:hi - bounds[k]]))
            k += 1
        arrays[array] = np.concatenate(pieces)
        if len(arrays[array]) != stop - start:
            raise StoreError(f"internal error: shard {shard} of {split} got {len(arrays[array])} rows, "
                             f"expected {stop - start}")
    c.writer.write_shard(split, shard, arrays)
    return stop - start
