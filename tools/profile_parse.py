"""Where one worker's parse of a block goes: each step of ``ingest.passes.parse_block`` timed on one block (16 MiB).

    python -m tools.profile_parse data/bench/quest_1000000.csv            # block 1, median of 5 runs
    python -m tools.profile_parse data/quest.csv --block 0 --cprofile 25  # also cProfile's top 25 functions

The block is parsed exactly as a worker of ``ingest`` parses it (same parser, types, buckets and validation draw as
a default ingest with ``--val-fraction 0.1``), into a temporary work directory. Each step is timed by wrapping the
function that does it (a few calls per block, so the timers cost nothing measurable): reading the bytes and
finding the block's records in them (its quote parity and line counts included), the
compiled parser (where it takes the block; pandas' ``read_csv`` then runs only for the float fields it leaves to
pandas), pandas' ``read_csv``, the conversion to the store's arrays, the field-count check, the rest of
``BlockParser.parse``, the row hashes (shuffle bucket and validation draw), statistics, the block's vocabulary file, the spill file, and what
is left (record packing, code counts). Prints a Markdown table, ms per block and share, median of ``--repeat`` runs
after one warm-up run (warm page cache).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager

import pandas as pd

from ingest import blocks, parse, passes
from ingest.allocator import keep_buffers
from ingest.config import BLOCK_BYTES, bucket_count
from ingest.infer import infer_kinds
from ingest.sources import resolve_sources

from .measure import machine

# (row label, module, attribute): the functions timed, each inclusive of what it calls
STEPS = (
    ("read the block's bytes, find its records (locate)", passes, "locate"),
    ("compiled parser (ingest/_fastcsv.c)", parse._fastcsv, "parse"),  # None where it was not built: not timed
    ("pandas.read_csv (C engine, typed)", pd, "read_csv"),
    ("field-count check (_unquoted_count)", parse, "_unquoted_count"),
    ("conversion to the store's arrays (_arrays)", parse.BlockParser, "_arrays"),
    ("row hashes, bucket, validation draw", passes, ("row_hash", "bucket_of", "is_validation")),
    ("statistics (_block_stats)", passes, "_block_stats"),
    ("block vocabulary file", passes, "write_block_vocabulary"),
    ("spill file (write_spill)", passes, "write_spill"),
)
PARSE_OTHER = ("rest of BlockParser.parse (output arrays, record count, vocabulary decoding; pandas path: prefix, "
               "checks)")
OTHER = "rest of parse_block (record packing, code counts)"


@contextmanager
def _timed(seconds: dict):
    """Wrap every function of STEPS (and BlockParser.parse) so that each call adds its duration to ``seconds``."""
    patched = []

    def wrap(owner, name, label):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - started

        patched.append((owner, name, original))
        setattr(owner, name, timed)

    try:
        for label, owner, names in STEPS:
            for name in (names,) if isinstance(names, str) else names:
                if hasattr(owner, name):
                    wrap(owner, name, label)
        wrap(parse.BlockParser, "parse", "parse")
        wrap(passes, "parse_block", "total")
        yield
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def _context(csv_path: str, work: str) -> tuple[passes.Context, list]:
    files, header = resolve_sources([csv_path], [], "utf-8")
    kinds = infer_kinds(files[0], header, encoding="utf-8", sample_rows=10_000, explicit={})
    total = sum(f.size - f.data_start for f in files)
    os.makedirs(os.path.join(work, "spill"), exist_ok=True)
    ctx = passes.Context(work, files, parse.BlockParser(header, kinds, "utf-8"), 0, True,
                         bucket_count(total), 0.1, True)
    return ctx, list(blocks.plan_blocks(files, BLOCK_BYTES))


def profile(csv_path: str, block: int, repeat: int) -> tuple[dict, object, float]:
    """({row label: median ms}, the block, ms of a field-count check of the whole block)."""
    with tempfile.TemporaryDirectory(prefix="profile-parse-") as work:
        ctx, planned = _context(csv_path, work)
        target = planned[min(block, len(planned) - 1)]
        passes.set_context(ctx)
        passes.parse_block(target)  # warm-up: page cache, pandas' first call
        runs = []
        for _ in range(repeat):
            seconds: dict = defaultdict(float)
            with _timed(seconds):
                meta = passes.parse_block(target)
            runs.append(seconds)
        with open(ctx.files[target.file].path, "rb") as f:
            f.seek(meta["start"])
            data = f.read(meta["end"] - meta["start"])
        started = time.perf_counter()
        parse._unquoted_count(data, b",")
        field_count_ms = (time.perf_counter() - started) * 1e3
        if meta["bad"]:
            raise SystemExit(f"profile_parse: block {target.index} has a bad row ({meta['bad'][0]}); choose another")
    rows = {}
    for run in runs:
        inner = sum(run[label] for label, owner, _ in STEPS if owner is not passes)
        run[PARSE_OTHER] = run["parse"] - inner
        run[OTHER] = run["total"] - run["parse"] - sum(run[label] for label, owner, _ in STEPS
                                                       if owner is passes)
    for label in [s[0] for s in STEPS[:5]] + [PARSE_OTHER] + [s[0] for s in STEPS[5:]] + [OTHER, "total"]:
        rows[label] = statistics.median(run[label] for run in runs) * 1e3
    return rows, (target, meta["rows_read"], meta["end"] - meta["start"]), field_count_ms


def report(csv_path: str, rows: dict, target, field_count_ms: float, repeat: int) -> str:
    block, n_rows, n_bytes = target
    total = rows["total"]
    lines = [f"machine: {machine()}",
             f"block {block.index} of {csv_path}: {n_bytes / 2**20:.1f} MiB, {n_rows:,} rows; "
             f"median of {repeat} runs after a warm-up, one process", "",
             "| step of parse_block | ms per block | share |", "|---|---:|---:|"]
    for label, ms in rows.items():
        if label != "total":
            lines.append(f"| {label} | {ms:,.1f} | {ms / total:.1%} |")
    lines.append(f"| **total** | **{total:,.1f}** | 100% |")
    mb_s = n_bytes / 1e6 / (total / 1e3)
    lines.append(f"\none worker parses {mb_s:,.0f} MB/s of this CSV; a field-count check of the whole block (run only "
                 f"when its last column has a missing value) would take {field_count_ms:,.1f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.profile_parse", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", metavar="CSV", help="a CSV file (e.g. made by python -m tools.synth)")
    parser.add_argument("--block", type=int, default=1, help="which block (default 1; the last if fewer)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (median; default 5)")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N",
                        help="also print cProfile's N functions of largest cumulative time")
    args = parser.parse_args(argv)
    rows, target, field_count_ms = profile(args.csv, args.block, args.repeat)
    print(report(args.csv, rows, target, field_count_ms, args.repeat))
    if args.cprofile:
        with tempfile.TemporaryDirectory(prefix="profile-parse-") as work:
            ctx, _ = _context(args.csv, work)
            passes.set_context(ctx)
            prof = cProfile.Profile()
            prof.runcall(passes.parse_block, target[0])
        print()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(args.cprofile)
    return 0


if __name__ == "__main__":
    keep_buffers()  # as in an ingest's worker processes (ingest.passes.start_worker); not in a caller of main()
    sys.exit(main())
