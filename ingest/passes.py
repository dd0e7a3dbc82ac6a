"""The two passes over the data of an ingest, as plain functions of one work item, run inline or in worker processes.

1. ``parse_block``: CSV block -> typed rows, statistics, local vocabularies -> spill file grouped by (split, bucket).
2. ``write_shard``: the rows of one shard, taken from the permuted buckets they fall in (read from every block's
   spill file), converted to the final types and codes -> one encoded shard file per array. When a store has fewer
   shards than the workers can share, a work item is a part of a shard (whole chunks) and the last part of a shard
   to finish assembles it from the parts' encoded chunks.

Each function writes its output under a temporary name and renames it, so a finished item is never redone by
``--resume`` and an interrupted one leaves nothing that looks finished (the parts of a shard not yet assembled are
the exception: work files of one run, which a resumed run discards and writes again). Context that every item shares (the parser,
the schema, the paths) is set once per process by :func:`set_context`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass

import numpy as np

from store import CATEGORY_ARRAY, FLOAT_ARRAY, SPLITS, Schema, StoreError, StoreWriter, temporary_name

from .allocator import keep_buffers
from .blocks import Block, locate
from .parse import INT_MISSING, BlockParser
from .shuffle import (ShardJob, SpillReader, bucket_of, bucket_permutation, is_validation, record_dtype, row_hash,
                      spill_order, write_spill)
from .sources import SourceFile
from .stats import ColumnStats
from .summary import write_block_rejects
from .vocabulary import write_block as write_block_vocabulary

__all__ = ["Context", "set_context", "start_worker", "parse_block", "write_shard", "ShardPart", "SPLIT_NAMES"]

SPLIT_NAMES = SPLITS  # the spill numbers the splits in this order: 0 train, 1 validation
PARTS = "parts"  # work folder of the shards written in parts (ShardPart)


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
    # Workers on other machines (a Dask cluster): the parent cannot know their boots, so each flushes its spill
    # files and says so (shuffle.write_spill), and --resume trusts them unread (the local pool never flushes them).
    flush_spill: bool = False
    schema: Schema | None = None
    writer: StoreWriter | None = None

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
        return self.spill(block) + ".vocab"

    @property
    def spill_buckets(self) -> int:
        """Buckets of the spill files: without a shuffle every row is in bucket 0 (the blocks give the order)."""
        return self.n_buckets if self.shuffle else 1

    @property
    def segments(self) -> str:
        return os.path.join(self.work, "segments.npy")

    def maps(self, column) -> str:
        """File of the categorical code maps of one column (or of their per-block offsets)."""
        return os.path.join(self.work, f"maps.{column}.npy")


_CTX: Context | None = None


def set_context(ctx: Context) -> None:
    global _CTX
    _CTX = ctx


def start_worker(ctx: Context) -> None:
    """Initializer of a worker process the ingest started: the context, and large buffers kept between items."""
    keep_buffers()
    set_context(ctx)


# -- pass 1 -------------------------------------------------------------------------------------------------------

def parse_block(block: Block) -> dict:
    """Parse one block and spill its rows; returns the block's metadata (also saved beside the spill).

    Its records are found under the quote parity the block assumes (ingest.blocks); the metadata says what the
    parent needs to check that and to number its lines: the parity and newlines of its share, the newlines before
    its first record, where that is. Lines in it (bad rows, the rejects file) count from the block's first record
    (1); the parent adds the block's first line (``line``) once the blocks before it are known."""
    c = _CTX
    src = c.files[block.file]
    at = locate(block, src)  # an object: one ranged GET of the share and a little more
    meta = {"block": block.index, "file": block.file, "share": [block.start, block.stop], "odd": at.odd,
            "quotes": at.quotes, "newlines": at.newlines, "before": at.before, "start": at.start, "end": at.end,
            "bytes": block.stop - block.start}
    if at.error is not None:  # a record longer than the limit: only an error if the parity was right
        return meta | {"error": list(at.error), "rows_read": 0, "rows": 0, "rejected": 0, "bad": []}
    parsed = c.parser.parse(at.data, first_line=1, stop_at_first=c.stop_at_bad_row, newlines=at.records_newlines)
    del at
    # The parent gets counts and the first bad row (for the error policy's message), never the rejected records:
    # those go to a file per block, concatenated into the rejects file at the end (bounded memory in the parent).
    meta |= {"rows_read": parsed.rows + len(parsed.bad), "rows": parsed.rows, "rejected": len(parsed.bad),
             "compiled": parsed.compiled,
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
    counts = [np.bincount(col[col >= 0], minlength=len(v)) for col, v in zip(parsed.codes.T, parsed.vocab)]
    write_block_vocabulary(c.vocabulary(block.index), parsed.vocab, counts)  # on disk, not in the parent's memory
    buckets = bucket_of(hashes, c.n_buckets) if c.shuffle else np.zeros(parsed.rows, np.uint64)
    keys, order = spill_order(buckets, split, c.spill_buckets)
    # Each kind's columns in spill order, column-major (one gather along each contiguous column), then packed into
    # the spill's rows; the statistics run over the column-major copy.
    ordered = [np.take(values.T, order, axis=1) for values in (parsed.floats, parsed.ints, parsed.codes)]
    records = np.empty(parsed.rows, c.dtype)
    del parsed  # its columns are in ``ordered``: two copies of the block's values at a time, not three
    for name, columns in zip("fic", ordered):
        if name in records.dtype.names:
            records[name] = columns.T
    meta["stats"] = _block_stats(c.parser, [columns.T for columns in ordered], int(np.count_nonzero(split == 0)))
    return write_spill(c.spill(block.index), records, keys, c.spill_buckets, meta, flush=c.flush_spill)


def _block_stats(parser: BlockParser, arrays: list[np.ndarray], n_train: int) -> dict:
    """Statistics per split of a block's floats, integers and codes in spill order (column-major): the training
    rows first, then the validation rows (contiguous, so no copy is made to separate them)."""
    out = {}
    for name, (lo, hi) in zip(SPLIT_NAMES, ((0, n_train), (n_train, len(arrays[0])))):
        if hi == lo:
            continue
        floats, ints, codes = (values[lo:hi] for values in arrays)
        stats = {}
        for cols, values, missing, numeric in ((parser.float_cols, floats, np.isnan(floats), True),
                                               (parser.int_cols, ints, ints == INT_MISSING, True),
                                               (parser.cat_cols, codes, codes < 0, False)):
            for col, st in zip(cols, ColumnStats.of_columns(values, missing, numeric=numeric)):
                stats[col] = st.to_state()
        out[name] = stats
    return out


# -- pass 2 -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShardPart:
    """Chunks ``first_chunk:stop_chunk`` of one shard (``job``), part ``part`` of ``parts``: the writing pass's item
    when a store has fewer shards than the workers can share (pipeline._shard_items)."""

    job: ShardJob
    part: int
    parts: int
    first_chunk: int
    stop_chunk: int


def write_shard(item: ShardJob | ShardPart) -> int:
    """Write one shard of every array, its rows taken from the permuted buckets; returns its row count. A
    :class:`ShardPart` writes its chunks to a part file; the part that finds the others done assembles the shard.

    One bucket is in memory at a time: its rows of the split are read from every block's spill file (one read of
    contiguous rows per block), their categorical codes mapped to the global ones, and the shard's positions of the
    bucket's permutation gathered. Without a shuffle only the shard's rows of each block are read."""
    c = _CTX
    if c.writer is None:  # a worker forked for the parsing pass, before the parent laid out the store
        c.writer = StoreWriter.open(os.path.join(c.work, "store"))
        c.schema = c.writer.schema
    if isinstance(item, ShardPart):
        return _write_part(c, item)
    rows = _shard_rows(c, item)
    c.writer.write_shard(item.split, item.shard, _final_arrays(c, rows))
    return len(rows)


def _shard_rows(c: Context, job: ShardJob) -> np.ndarray:
    """The rows of ``job`` (a shard, or some of its rows) in the store's order, as spill records."""
    s = SPLIT_NAMES.index(job.split)
    firsts, starts = _segments(c)  # per block and key: first row, first byte in the spill file
    rows = _scratch("shard", job.stop - job.start, c.dtype)
    at = 0
    with SpillReader(c.spill) as spill:
        for unit, size, lo, hi in job.pieces:
            if c.shuffle:
                key = s * c.spill_buckets + unit
                counts = firsts[:, key + 1] - firsts[:, key]
                blocks = np.flatnonzero(counts).tolist()
                records = _scratch("bucket", size, c.dtype)
                _read(c, spill, [(b, int(starts[b, key]), int(counts[b]), 0, int(counts[b])) for b in blocks],
                      records)
                _gather(rows[at:at + hi - lo], records, bucket_permutation(c.seed, unit, s, size)[lo:hi])
            else:
                count = int(firsts[unit, s + 1] - firsts[unit, s])
                _read(c, spill, [(unit, int(starts[unit, s]), count, lo, hi - lo)], rows[at:at + hi - lo])
            at += hi - lo
    if at != len(rows):
        raise StoreError(f"internal error: shard {job.shard} of {job.split} got {at} rows, expected {len(rows)}")
    return rows


def _write_part(c: Context, item: ShardPart) -> int:
    """Encode one part's chunks of every array into ``parts/<split>/<shard>/<part>.bin`` (sizes in ``.json``,
    written last, with the part's cut). The parts are work files of this run only (the writing pass deletes any it
    finds at its start and its end, so they are never flushed); the part that sees every part's ``.json`` claims
    the assembly with an exclusive create (two parts finishing together both see all of them) and writes the
    shard."""
    job, b = item.job, c.writer.batch_size
    rows = _shard_rows(c, job.rows(item.first_chunk * b, min(item.stop_chunk * b, job.stop - job.start)))
    encoded = {name: c.writer.encode_chunks(name, values) for name, values in _final_arrays(c, rows).items()}
    folder = os.path.join(c.work, PARTS, job.split, str(job.shard))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, str(item.part))
    _publish_unflushed(path + ".bin", [chunk for chunks in encoded.values() for chunk in chunks])
    cut = [item.parts, item.first_chunk, item.stop_chunk]
    _publish_unflushed(path + ".json", [json.dumps({"cut": cut, "sizes": {name: [len(x) for x in chunks]
                                                                          for name, chunks in encoded.items()}})
                                        .encode()])
    if all(os.path.exists(os.path.join(folder, f"{p}.json")) for p in range(item.parts)):
        try:
            os.close(os.open(os.path.join(folder, "assembling"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            return len(rows)  # another part's worker assembles the shard
        _assemble(c, job, folder, item.parts)
    return len(rows)


def _assemble(c: Context, job: ShardJob, folder: str, parts: int) -> None:
    """Write the shard of every array from its parts' chunks, then delete the parts' files. The folder and its
    ``assembling`` claim stay (the pass deletes them at its end): a part that published its metadata before this
    assembly started may still be about to check for the others, and must find the claim taken, not a missing
    folder or a claim it could take again."""
    chunks: dict[str, list] = {}
    at_chunk = 0
    for p in range(parts):
        with open(os.path.join(folder, f"{p}.json"), encoding="utf-8") as f:
            meta = json.load(f)
        if meta["cut"][0] != parts or meta["cut"][1] != at_chunk:  # never mix in another cut's part
            raise StoreError(f"internal error: part {p} of shard {job.shard} of {job.split} was cut as "
                             f"{meta['cut']}, expected {parts} parts from chunk {at_chunk}")
        at_chunk = meta["cut"][2]
        with open(os.path.join(folder, f"{p}.bin"), "rb") as f:
            data = memoryview(f.read())
        at = 0
        for name, lengths in meta["sizes"].items():
            for n in lengths:
                chunks.setdefault(name, []).append(data[at:at + n])
                at += n
    for name, encoded in chunks.items():
        c.writer.write_encoded(job.split, name, job.shard, encoded)
    for p in range(parts):
        for suffix in (".bin", ".json"):
            os.remove(os.path.join(folder, f"{p}{suffix}"))


def _publish_unflushed(path: str, parts: list) -> None:
    """Write ``parts`` one after another to ``path`` through a temporary name (it appears whole), not flushed."""
    tmp = temporary_name(path)
    with open(tmp, "wb") as f:
        for part in parts:
            f.write(part)
    os.replace(tmp, path)


def _gather(out: np.ndarray, records: np.ndarray, index: np.ndarray) -> None:
    """``out[:] = records[index]`` for structured rows, copied as opaque records (numpy's field-by-field copy of a
    structured array is ~13x slower)."""
    opaque = np.dtype((np.void, records.dtype.itemsize))
    np.take(records.view(opaque), index, out=out.view(opaque), mode="clip")


_SCRATCH = threading.local()  # a Dask worker runs several items at once in its threads: a buffer per thread


def _scratch(name: str, rows: int, dtype: np.dtype) -> np.ndarray:
    """A buffer of ``rows`` rows per thread, reused from one work item to the next: a fresh array of tens of MB
    costs its page faults again on every item (reading the spill into fresh memory took ~2x as long)."""
    need = rows * dtype.itemsize
    buffers = _SCRATCH.__dict__
    buf = buffers.get(name)
    if buf is None or buf.nbytes < need:
        buffers[name] = buf = np.empty(max(need, 1), np.uint8)
    return buf[:need].view(dtype)


def _read(c: Context, spill: SpillReader, segments, records: np.ndarray) -> None:
    """Fill ``records`` with the rows of the spill ``segments`` [(block, byte, rows, first, taken)]: rows
    ``first:first+taken`` of the segment of ``rows`` rows at ``byte`` of the block's spill file, in order, with
    global categorical codes (mapped for all rows at once: per segment it was a dozen numpy calls, and a bucket has
    a segment in every block).

    A spill file that fails its checksum stops the ingest; its block's metadata is deleted first, so that
    ``--resume`` parses that block again (the shards written so far hold only rows that passed theirs)."""
    at = 0
    for block, start, count, first, taken in segments:
        try:
            spill.read(block, records[at:at + taken], start, count, first)
        except StoreError as exc:
            with contextlib.suppress(FileNotFoundError):  # another worker may have met the same file
                os.remove(c.spill(block) + ".json")
            raise StoreError(f"{exc}; run the same command with --resume to parse its block again",
                             path=exc.path) from None
        at += taken
    if at != len(records):
        raise StoreError(f"internal error: a bucket's segments hold {at} rows, its count says {len(records)}")
    if "c" in records.dtype.names and len(records):
        maps, offsets = _maps(c)
        block_of = np.repeat(np.array([block for block, *_ in segments], np.intp),
                             np.array([taken for *_, taken in segments], np.intp))
        codes = records["c"]
        for j in range(codes.shape[1]):
            codes[:, j] = maps[j][offsets[j, block_of] + codes[:, j] + 1]  # -1 (missing) maps through index 0


def _segments(c: Context) -> np.ndarray:
    """The segment table (ingest.shuffle.Segments), memory-mapped once per process."""
    return _cached(c, c.segments, lambda path: np.load(path, mmap_mode="r"))


_CACHE: dict = {}


def _cached(c: Context, path: str, load):
    """``load(path)``, once per process and file: a later ingest to the same place writes new files."""
    st = os.stat(path)
    key = (path, st.st_ino, st.st_mtime_ns)
    if key not in _CACHE:
        for old in [k for k in _CACHE if k[0] == path]:
            del _CACHE[old]
        _CACHE[key] = load(path)
    return _CACHE[key]


def _maps(c: Context) -> tuple[list[np.ndarray], np.ndarray]:
    """The code maps, memory-mapped once per process."""
    def load(path):
        offsets = np.load(path)
        return [np.load(c.maps(j), mmap_mode="r") for j in range(len(offsets))], offsets
    return _cached(c, c.maps("offsets"), load)


def _final_arrays(c: Context, rows: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    int_index = {name: j for j, name in enumerate(c.parser.int_cols)}
    for array, columns in c.schema.arrays.items():
        dtype = c.schema.array_dtype(array)
        if array == FLOAT_ARRAY:
            out[array] = rows["f"]
        elif array == CATEGORY_ARRAY:
            out[array] = rows["c"].astype(dtype)
        else:
            values = rows["i"][:, [int_index[col.name] for col in columns]]
            values = np.where(values == INT_MISSING, np.iinfo(dtype).min, values)
            out[array] = values.astype(dtype)
    return out
