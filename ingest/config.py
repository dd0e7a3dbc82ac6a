"""The one configuration object of an ingest: documented defaults, validated before anything touches disk."""

from __future__ import annotations

import codecs
import json
import math
import os
from dataclasses import dataclass, field

from store import COMPRESSIONS, KINDS, MAX_BATCH_SIZE, MAX_CATEGORIES, OptionError, SchemaError, is_remote

from .vocabulary import DEFAULT_MAX_CATEGORIES

__all__ = ["IngestConfig", "BAD_ROW_POLICIES", "BLOCK_BYTES", "MAX_RECORD_BYTES", "MAX_CHUNK_BYTES",
           "DEFAULT_BATCH_SIZE", "bucket_count"]

BAD_ROW_POLICIES = ("error", "skip")
# Rows per chunk (= per training batch) unless --batch-size says otherwise: the ingest's choice; the format only
# bounds it (store's MAX_BATCH_SIZE).
DEFAULT_BATCH_SIZE = 1000
# Parsing unit. Part of the row identity used by the shuffle (rows are keyed by block and position), so it is a
# constant of the format, not a tuning knob: changing it changes the shuffled order of a store. 16 MiB: 20 work items
# on a 330 MB file, so 16 cores have work on a small input too (2 cores: 2.41 s against 2.53 s with 32 MiB, median of
# 3 interleaved runs; 8 MiB: 2.69 s, the per-block costs showing).
BLOCK_BYTES = 16 * 2**20
# Longest record (the header included), and so longest block: a block grows past BLOCK_BYTES only to hold a long
# record whole. A longer one is refused with one line rather than read into memory: it is almost always a quote
# that is never closed, which would otherwise make the rest of a 100 GB file one record (issue 11).
MAX_RECORD_BYTES = 64 * 2**20
# Shuffle buckets hold at most this much CSV each; one bucket is in memory at a time per worker. The spill files hold
# blocks x buckets x 2 segments, and the writing pass reads a bucket with one read per block: larger blocks and
# buckets keep those counts down at 100 GB (16 MiB x 64 MiB: 6,400 x 1,600 segments per split).
BUCKET_BYTES = 64 * 2**20
# ... and smaller inputs have smaller buckets (SMALL_BUCKET_BYTES, up to SMALL_BUCKETS of them; see bucket_count): a
# shard (~32 MiB of its widest array, ~80 MB of the benchmark's CSV) loads every bucket its rows fall in whole, so
# 64 MiB buckets made each shard load ~1.8 shards' worth of rows (330 MB log: writing pass 0.94 -> 0.68 CPU-s with
# 4 MiB buckets; 1 MiB: 0.81, the per-bucket costs showing).
SMALL_BUCKET_BYTES = 4 * 2**20
SMALL_BUCKETS = 1024
# Largest uncompressed chunk the ingest writes (rows per batch x the widest array's row), checked once the types are
# known: the writer builds and compresses whole chunks and every loader worker decodes several whole. (Readers
# accept up to Blosc's 2 GiB limit, store/validation.py; writing stays far below it.)
MAX_CHUNK_BYTES = 256 * 2**20


@dataclass
class IngestConfig:
    """Everything an ingest needs to know (the CLI fills it; tests construct it directly).

    Args:
        sources: CSV files, directories (every ``*.csv`` inside, in name order) or glob patterns; local paths or
            fsspec URLs (``s3://bucket/logs/*.csv``, a prefix ``s3://bucket/logs/``), read with ranged requests.
        out: the store directory to create, or an fsspec URL (``s3://bucket/quest.zarr``): then the store is built
            in ``work`` and uploaded, its root metadata last.
        label: name of the label column (checked against the header), or None.
        batch_size: rows per chunk, i.e. per training batch (default 1000).
        val: separate validation sources; mutually exclusive with ``val_fraction``.
        val_fraction: share of rows drawn at random (seeded) into the validation split.
        shuffle: globally shuffle rows (seeded external shuffle); False keeps source order.
        seed: seed of the shuffle and of the validation draw.
        workers: parallel parsing processes (default: all cores).
        compression: ``lz4`` (default), ``zstd`` or ``none`` (uncompressed, readable through mmap).
        on_bad_rows: ``error`` (default: stop at the first bad row) or ``skip`` (count and record it).
        rejects: CSV file receiving every skipped row with its file and line (default ``OUT.rejects.csv``).
        encoding: text encoding of the sources (ASCII-compatible, e.g. utf-8, cp932, latin-1).
        dtypes: column -> kind (float, int, bool, datetime, category), overriding inference.
        max_categories: a text column with more distinct values than this is stored hashed into this many buckets
            (codes 1..N, no vocabulary; FORMAT.md) instead of with a vocabulary, which keeps the ingest's memory and
            the store's metadata bounded; the label column is never hashed.
        sample_rows: leading rows used to infer column types.
        overwrite: replace an existing store.
        resume: continue an interrupted ingest of the same sources and options.
        progress: show a progress bar per pass on stderr (tqdm; only when stderr is a terminal).
        work: when ``out`` is a URL, a local folder in which the ingest makes its own work directory, named after the
            URL (default: a private folder of the temp directory); it needs room for about twice the store, and
            --resume needs the same one. Nothing else in that folder is touched.
        dask: address of a Dask scheduler (``tcp://host:8786``): run the passes as tasks on that cluster (local
            sources and the work directory must be on a filesystem its workers share; URL sources are read by the
            workers); ``workers`` is then unused.
    """

    sources: list[str]
    out: str
    label: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    val: list[str] = field(default_factory=list)
    val_fraction: float | None = None
    shuffle: bool = True
    seed: int = 0
    workers: int | None = None
    compression: str = "lz4"
    on_bad_rows: str = "error"
    rejects: str | None = None
    encoding: str = "utf-8"
    dtypes: dict[str, str] = field(default_factory=dict)
    max_categories: int = DEFAULT_MAX_CATEGORIES
    sample_rows: int = 10_000
    overwrite: bool = False
    resume: bool = False
    progress: bool = True
    dask: str | None = None
    work: str | None = None

    def __post_init__(self):
        self.sources = [os.fspath(s) for s in self.sources]
        self.val = [os.fspath(s) for s in self.val]
        if not os.fspath(self.out).strip():
            raise OptionError("--out is empty; name the store directory to create, e.g. --out quest.zarr")
        self.out = os.fspath(self.out).rstrip("/") if is_remote(self.out) else os.path.normpath(os.fspath(self.out))
        if self.work is not None and not is_remote(self.out):
            raise OptionError("--work is for remote --out URLs (a local store is built beside itself, in OUT.partial)")
        if not self.sources:
            raise OptionError("no SOURCE given; pass CSV files, folders or globs, e.g. `ingest data/*.csv --out s`")
        if self.batch_size < 1:
            raise OptionError(f"--batch-size must be a positive number of rows, got {self.batch_size}")
        if self.batch_size > MAX_BATCH_SIZE:
            raise OptionError(f"--batch-size {self.batch_size:,} is over the limit of {MAX_BATCH_SIZE:,} rows: a chunk "
                              "is one training batch, built and read whole in memory (the last one padded to full "
                              "size); pass a smaller --batch-size (default 1000)")
        if self.val and self.val_fraction is not None:
            raise OptionError("give either --val SOURCE... or --val-fraction F, not both")
        if self.val_fraction is not None and not 0.0 <= self.val_fraction < 1.0:
            raise OptionError(f"--val-fraction must be at least 0 (0: no validation split) and below 1, "
                              f"got {self.val_fraction}")
        if self.val_fraction == 0:
            self.val_fraction = None  # no validation split: the very store an ingest without the flag makes
        if self.workers is None:
            self.workers = os.cpu_count() or 1
        if self.workers < 1:
            raise OptionError(f"--workers must be >= 1, got {self.workers}")
        if self.compression not in COMPRESSIONS:
            raise OptionError(f"unknown --compression {self.compression!r}; expected one of {', '.join(COMPRESSIONS)}")
        if self.on_bad_rows not in BAD_ROW_POLICIES:
            raise OptionError(f"unknown --on-bad-rows {self.on_bad_rows!r}; expected error or skip")
        if not 1 <= self.max_categories <= MAX_CATEGORIES:
            raise OptionError(f"--max-categories must be between 1 and {MAX_CATEGORIES:,} (codes are stored "
                              f"as int32), got {self.max_categories}")
        if self.sample_rows < 1:
            raise OptionError(f"--sample-rows must be >= 1, got {self.sample_rows}")
        if self.seed < 0 or self.seed >= 2**63:
            raise OptionError(f"--seed must be in [0, 2**63), got {self.seed}")
        self._check_encoding()
        for col, kind in self.dtypes.items():
            if kind not in KINDS:
                raise SchemaError(f"--dtype {col}={kind}: unknown type {kind!r}; expected one of {', '.join(KINDS)}",
                                  column=col)
        if self.rejects is None:
            self.rejects = self.out + ".rejects.csv"

    def _check_encoding(self):
        try:
            info = codecs.lookup(self.encoding)
        except LookupError:
            raise OptionError(f"unknown --encoding {self.encoding!r}; e.g. utf-8, cp932, latin-1") from None
        # Records are split on raw bytes, so the separators must be the ASCII bytes.
        if 'a,"\n'.encode(info.name) != b'a,"\n':
            raise OptionError(f"--encoding {self.encoding!r} is not ASCII-compatible; convert the files to UTF-8 "
                              "first (e.g. with iconv)")
        self.encoding = info.name

    def content_options(self) -> dict:
        """The options that determine the store's content (resume checks they did not change)."""
        keys = ("label", "batch_size", "val_fraction", "shuffle", "seed", "compression", "on_bad_rows",
                "encoding", "dtypes", "sample_rows", "max_categories")
        return {k: getattr(self, k) for k in keys} | {"block_bytes": BLOCK_BYTES, "bucket_bytes": BUCKET_BYTES}


def bucket_count(total: int, largest: int = BUCKET_BYTES) -> int:
    """Shuffle buckets for ``total`` bytes of CSV: 4 MiB buckets up to 4 GB, then 1,024 buckets growing to
    ``largest`` (64 GB), then buckets of ``largest``. A function of the input's size only (never of the workers):
    the buckets decide the shuffled order. Below 64 GB there are at most 1,024 buckets (more than 64 MiB buckets
    gave there: 79 instead of 5 for 330 MB), beyond it as many as 64 MiB buckets give, so the spill never has more
    segments per block than the 1,024 or than the count 64 MiB buckets give at that size. (The store records
    ``bucket_bytes``, the largest; the count follows from it and the input's size.)"""
    small = min(SMALL_BUCKETS, math.ceil(total / SMALL_BUCKET_BYTES))
    return max(1, math.ceil(total / largest), small)


def load_schema_file(path: str) -> dict[str, str]:
    """A schema file: JSON object ``{"column": "kind", ...}``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise OptionError(f"--schema {path}: no such file") from None
    except ValueError as exc:
        raise OptionError(f"--schema {path}: not valid JSON ({exc}); expected {{\"column\": \"kind\", ...}}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise OptionError(f"--schema {path}: expected a JSON object mapping column names to kinds "
                          f"({', '.join(KINDS)})")
    return data
