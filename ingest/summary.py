"""What the parsing pass found, merged in block order: row counts, bad rows, vocabularies, types, statistics."""

from __future__ import annotations

import csv
import io
from collections import Counter


from store import (CATEGORY_ARRAY, FLOAT_ARRAY, BadRowError, Column, OptionError, Schema, chunks_per_shard_for,
                   filesystem, is_remote, narrowest_int, publish, temporary_name, write_atomic)

from .config import MAX_CHUNK_BYTES
from .parse import BlockParser
from .shuffle import Segments
from .stats import ColumnStats
from .vocabulary import Vocabulary, merge, write_maps

__all__ = ["Summary", "write_rejects", "write_block_rejects"]


class Summary:
    """What the parsing pass found, merged one block at a time in block order (:meth:`add`): totals, the first bad
    row, merged statistics and the spill segments' counts (compact arrays) — never the blocks' metadata themselves,
    so the parent's memory does not grow with their number beyond a few numbers per block."""

    def __init__(self, parser: BlockParser, kinds: dict[str, str], label: str | None, splits: tuple[str, ...],
                 segments: Segments):
        self.parser, self.kinds, self.label, self.splits = parser, kinds, label, splits
        self.segments = segments
        self.rows_read = self.rows_rejected = 0
        self.compiled_blocks = 0  # blocks the compiled parser took (the others: pandas)
        self.reparsed_blocks = 0  # blocks parsed a second time, under the right quote parity (ingest.blocks)
        self.first_bad_row: list | None = None
        self.blocks: list[int] = []  # in block order
        self.rejected_blocks: list[tuple[int, int]] = []  # (block, the line of its first record)
        self.stats: dict[str, dict[str, ColumnStats]] = {s: {} for s in splits}
        self.vocab: list[Vocabulary] = []  # per categorical column, once merge_vocabularies has run

    def add(self, meta: dict) -> None:
        """Merge the next block's metadata (blocks must come in order: the merged statistics depend on it). Its
        lines count from its first record (1); ``meta["line"]``, set by the parent, is that record's line."""
        if self.blocks and meta["block"] <= self.blocks[-1]:
            raise ValueError(f"block {meta['block']} after block {self.blocks[-1]}")
        self.blocks.append(meta["block"])
        self.rows_read += meta["rows_read"]
        self.rows_rejected += meta["rejected"]
        self.compiled_blocks += bool(meta.get("compiled"))
        if meta["rejected"]:
            self.rejected_blocks.append((meta["block"], meta["line"]))
        if meta["bad"] and self.first_bad_row is None:
            path, line, *rest = meta["bad"][0]
            self.first_bad_row = [path, meta["line"] + line - 1, *rest]
        self.segments.add(meta["block"], meta.get("segments", ()))
        for split, columns in meta.get("stats", {}).items():
            merged = self.stats[split]
            for col, state in columns.items():
                merged[col] = merged.get(col, ColumnStats()).merge(ColumnStats.from_state(state))

    @property
    def rows(self) -> dict[str, int]:
        """Rows stored per split."""
        return {split: self.segments.rows(s) for s, split in enumerate(self.splits)}

    def raise_first_bad_row(self, policy: str) -> None:
        if policy == "error" and self.first_bad_row:
            path, line, column, reason, fix = self.first_bad_row
            raise BadRowError(path, line, column, reason, fix)

    def reject_parts(self, ctx) -> list[tuple[str, int]]:
        """The files of rejected rows written by the parsing pass (one per block that had some), in block order,
        each with the line of its block's first record (its lines count from there)."""
        return [(ctx.rejects(block), line) for block, line in self.rejected_blocks]

    def merge_vocabularies(self, ctx, max_categories: int) -> None:
        """Merge the blocks' vocabularies (ingest.vocabulary: one column and one block at a time) and write each
        block's code maps for the shuffle pass."""
        blocks = self.blocks
        cat_cols = self.parser.cat_cols
        label = {cat_cols.index(self.label)} if self.label in cat_cols else set()
        self.vocab = merge(ctx.vocabulary, blocks, len(cat_cols), max_categories, never_hash=label)
        write_maps(ctx.vocabulary, blocks, self.vocab, ctx.maps)

    def schema(self) -> Schema:
        columns, index = [], Counter()
        for name in self.parser.header:
            kind = self.kinds[name]
            if kind == "float":
                array = FLOAT_ARRAY
            elif kind == "category":
                array = CATEGORY_ARRAY
            else:
                lo = [s[name].min for s in self.stats.values() if name in s and s[name].min is not None]
                hi = [s[name].max for s in self.stats.values() if name in s and s[name].max is not None]
                array = narrowest_int(min(lo) if lo else None, max(hi) if hi else None)
            vocab = self.vocab[self.parser.cat_cols.index(name)] if kind == "category" else Vocabulary(None)
            columns.append(Column(name, kind, array, index[array], vocab.values, vocab.hash_buckets))
            index[array] += 1
        return Schema(tuple(columns), self.label)

    @staticmethod
    def chunks_per_shard(schema: Schema, batch_size: int) -> int:
        """Chunks per shard of the widest array; raises OptionError when one of its chunks would exceed
        MAX_CHUNK_BYTES."""
        widest, array = max((len(cols) * schema.array_dtype(a).itemsize, a) for a, cols in schema.arrays.items())
        if batch_size * widest > MAX_CHUNK_BYTES:
            raise OptionError(
                f"--batch-size {batch_size:,} makes chunks of {batch_size * widest / 2**20:,.0f} MiB ({batch_size:,} "
                f"rows x {len(schema.arrays[array]):,} {array} columns); a chunk is built and read whole in memory, "
                f"so it is limited to {MAX_CHUNK_BYTES >> 20} MiB: pass --batch-size {MAX_CHUNK_BYTES // widest:,} "
                "or less")
        return chunks_per_shard_for(batch_size, widest)

    def attributes(self, files, config, rejects: str | None, timings: dict | None = None) -> dict:
        """The root attributes the ingest adds: statistics, and the record of how the store was made (with the
        stages' ``timings``, the only part that differs between two runs of the same command)."""
        numeric = {c: self.kinds[c] != "category" for c in self.parser.header}
        return {
            "statistics": {split: {c: s.to_json(numeric[c]) for c, s in cols.items()}
                           for split, cols in self.stats.items()},
            "ingest": {
                "sources": [{"path": f.path, "bytes": f.size, "split": f.split} for f in files],
                "options": config.content_options(),
                "rows_read": self.rows_read, "rows_stored": sum(self.rows.values()),
                "rows_rejected": self.rows_rejected, "rejects": rejects,
            } | ({"timings": timings} if timings is not None else {}),
        }


def write_block_rejects(path: str, source: str, bad: list) -> None:
    """One block's rejected rows (``BadRow``s of file ``source``) as rows of the rejects file, without its header;
    their lines count from the block's first record (1), the rejects file's from the file's first line."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    for row in bad:
        writer.writerow([source, row.line, row.column or "", row.reason, row.raw])
    write_atomic(path, text.getvalue().encode("utf-8"))


def write_rejects(path: str, parts: list[tuple[str, int]]) -> str:
    """The rejects file (a local file, or a URL): a header, then every skipped row — file, line, column, reason,
    the record's text — copied from the parsing pass's files ``parts`` one row at a time (bounded memory), each
    part's lines moved by the line of its block's first record."""
    if is_remote(path):
        fs, target = filesystem(path)
        with fs.open(target, "wb") as f:
            _copy_rejects(f, parts)
        return path
    tmp = temporary_name(path)
    with open(tmp, "wb") as f:
        _copy_rejects(f, parts)
    publish(tmp, path)
    return path


def _copy_rejects(f, parts: list[tuple[str, int]]) -> None:
    out = io.TextIOWrapper(f, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(out)
    writer.writerow(["file", "line", "column", "reason", "record"])
    for part, first_line in parts:
        with open(part, encoding="utf-8", newline="") as src:
            for source, line, *rest in csv.reader(src):
                writer.writerow([source, first_line + int(line) - 1, *rest])
    out.flush()
    out.detach()
