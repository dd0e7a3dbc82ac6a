"""What the parsing pass found, merged in block order: row counts, bad rows, vocabularies, types, statistics."""

from __future__ import annotations

import csv
import os
from collections import Counter

import numpy as np

from store.errors import BadRowError
from store.layout import chunks_per_shard_for
from store.location import filesystem, is_remote
from store.schema import CATEGORY_ARRAY, FLOAT_ARRAY, Column, Schema, narrowest_int
from store.stats import ColumnStats

from .parse import BlockParser
from .shuffle import save_array

__all__ = ["Summary", "write_rejects"]


class Summary:
    """Merges the per-block metadata of pass 1 (``metas``, in block order)."""

    def __init__(self, parser: BlockParser, kinds: dict[str, str], label: str | None, metas: list[dict],
                 splits: tuple[str, ...]):
        self.parser, self.kinds, self.label, self.metas = parser, kinds, label, metas
        self.rows_read = sum(m["rows_read"] for m in metas)
        self.bad_rows = [row for m in metas for row in m["bad"]]
        self.rows_rejected = len(self.bad_rows)
        val = sum(seg[3] for m in metas for seg in m.get("segments", ()))
        stored = sum(m["rows"] for m in metas)
        self.rows = {"train": stored - val} | ({"validation": val} if "validation" in splits else {})
        self.stats = self._merge_stats()
        self.vocab = self._vocabularies()

    def raise_first_bad_row(self, policy: str) -> None:
        if policy == "error" and self.bad_rows:
            path, line, column, reason, fix, _raw = self.bad_rows[0]
            raise BadRowError(path, line, column, reason, fix)

    def _merge_stats(self) -> dict[str, dict[str, ColumnStats]]:
        out: dict[str, dict[str, ColumnStats]] = {s: {} for s in self.rows}
        for meta in self.metas:
            for split, columns in meta.get("stats", {}).items():
                for col, state in columns.items():
                    merged = out[split].get(col, ColumnStats())
                    out[split][col] = merged.merge(ColumnStats.from_state(state))
        return out

    def _vocabularies(self) -> list[list[str]]:
        """Per categorical column: values by decreasing count over the whole input, ties by value."""
        vocab = []
        for j in range(len(self.parser.cat_cols)):
            counts: Counter = Counter()
            for meta in self.metas:
                for value, n in zip(meta["vocab"][j], meta.get("counts", [[]] * (j + 1))[j]):
                    counts[value] += n
            vocab.append(sorted(counts, key=lambda v: (-counts[v], v)))
        return vocab

    def write_maps(self, ctx) -> None:
        """Per categorical column, every block's map local code + 1 -> global code (0 = missing), concatenated in
        block order into one file, with each block's offset: one file a column, not one a block and column."""
        codes = [{v: i + 1 for i, v in enumerate(vocab)} for vocab in self.vocab]
        offsets = np.zeros((len(self.vocab), len(self.metas) + 1), dtype=np.int64)
        for j in range(len(self.vocab)):
            maps = [np.array([0] + [codes[j][v] for v in meta["vocab"][j]], dtype=np.int32) for meta in self.metas]
            offsets[j, 1:] = np.cumsum([len(m) for m in maps])
            save_array(ctx.maps(j), np.concatenate(maps) if maps else np.zeros(0, np.int32))
        save_array(ctx.maps("offsets"), offsets)

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
            vocab = tuple(self.vocab[self.parser.cat_cols.index(name)]) if kind == "category" else None
            columns.append(Column(name, kind, array, index[array], vocab))
            index[array] += 1
        return Schema(tuple(columns), self.label)

    @staticmethod
    def chunks_per_shard(schema: Schema, batch_size: int) -> int:
        widest = max(len(cols) * schema.array_dtype(a).itemsize for a, cols in schema.arrays.items())
        return chunks_per_shard_for(batch_size, widest)

    def bucket_segments(self) -> dict[int, list[tuple[int, int, int]]]:
        """Bucket -> [(block, first row, rows)] in block order, buckets ascending."""
        out: dict[int, list] = {}
        for meta in self.metas:
            for bucket, first, count, _val in meta.get("segments", ()):
                out.setdefault(bucket, []).append((meta["block"], first, count))
        return dict(sorted(out.items()))

    def bucket_bounds(self) -> tuple[list[int], dict[str, np.ndarray]]:
        """Bucket ids in order and, per split, the first row of each bucket (plus the total at the end)."""
        per_bucket: dict[int, list[int]] = {}
        for meta in self.metas:
            for bucket, _first, count, val in meta.get("segments", ()):
                acc = per_bucket.setdefault(bucket, [0, 0])
                acc[0] += count - val
                acc[1] += val
        buckets = sorted(per_bucket)
        bounds = {}
        for s, split in enumerate(self.rows):
            sizes = np.array([per_bucket[b][s] for b in buckets], dtype=np.int64)
            bounds[split] = np.concatenate([[0], np.cumsum(sizes)])
        return buckets, bounds

    def attributes(self, files, config, rejects: str | None) -> dict:
        numeric = {c: self.kinds[c] != "category" for c in self.parser.header}
        return {
            "statistics": {split: {c: s.to_json(numeric[c]) for c, s in cols.items()}
                           for split, cols in self.stats.items()},
            "ingest": {
                "sources": [{"path": f.path, "bytes": f.size, "split": f.split} for f in files],
                "options": config.content_options(),
                "rows_read": self.rows_read, "rows_stored": sum(self.rows.values()),
                "rows_rejected": self.rows_rejected, "rejects": rejects,
            },
        }


def write_rejects(path: str, rows: list[list]) -> str:
    """Every skipped row: file, line, column, reason, the record's text (a local file, or a URL)."""
    if is_remote(path):
        fs, target = filesystem(path)
        with fs.open(target, "w", encoding="utf-8", newline="") as f:
            _write_rejects_to(f, rows)
        return path
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        _write_rejects_to(f, rows)
    os.replace(tmp, path)
    return path


def _write_rejects_to(f, rows: list[list]) -> None:
    writer = csv.writer(f)
    writer.writerow(["file", "line", "column", "reason", "record"])
    for src, line, column, reason, _fix, raw in rows:
        writer.writerow([src, line, column or "", reason, raw])
