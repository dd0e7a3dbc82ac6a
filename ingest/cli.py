"""``ingest``: convert CSV files once into a batch-aligned Zarr store for training.

Thin wrapper over :func:`ingest.ingest`: parses flags into an :class:`IngestConfig`, runs it, prints a one-line
summary (``--verbose``: and where the time went), and turns user errors into one line on stderr with a non-zero
exit (no traceback).
"""

from __future__ import annotations

import argparse
import sys

from store import COMPRESSIONS, KINDS, MAX_BATCH_SIZE, OptionError, StoreError, from_os_error

from .allocator import keep_buffers
from .config import DEFAULT_BATCH_SIZE, MAX_CHUNK_BYTES, IngestConfig, load_schema_file
from .pipeline import ingest
from .vocabulary import DEFAULT_MAX_CATEGORIES

__all__ = ["main", "build_parser", "config_from_args"]

EPILOG = """\
examples:
  ingest data/quest.csv --out quest.zarr --label clear --val-fraction 0.1
  ingest log_quest/splited/ --val log_quest_validate/splited/ --out quest.zarr --label clear
  ingest 'logs/2026-*.csv' --out logs.zarr --dtype user_id=category --on-bad-rows skip --rejects bad.csv
  ingest data/quest.csv --out quest.zarr --resume        # after a crash: continue where it stopped
  ingest /shared/logs/ --out /shared/logs.zarr --dask tcp://scheduler:8786   # parse on a Dask cluster
  ingest data/quest.csv --out s3://bucket/quest.zarr --work /big/disk/tmp     # build locally, then upload
  ingest 's3://bucket/logs/*.csv' --out quest.zarr --label clear             # sources read from the bucket

exit status: 0 done, 1 bad input or options (one line on stderr says where and how to fix it), 130 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ingest", description=__doc__.splitlines()[0].split(": ", 1)[1], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="CSV files, folders (every *.csv inside, in name order) or glob patterns, local or URLs "
                        "(s3://bucket/logs/*.csv, a prefix s3://bucket/logs/); all files must share one header")
    p.add_argument("--out", required=True, metavar="STORE",
                   help="store directory to create, or a URL (s3://bucket/quest.zarr, gs://..., any fsspec URL)")
    p.add_argument("--work", metavar="DIR",
                   help="for a URL --out: a local folder in which the ingest makes its own work directory, named "
                        "after the URL (default: a private folder of the temp directory); needs about twice the "
                        "store's size")
    p.add_argument("--label", metavar="COL", help="label column (checked against the header)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help=f"rows per chunk = rows per training batch (default {DEFAULT_BATCH_SIZE}, at most "
                        f"{MAX_BATCH_SIZE:,}, and a chunk at most {MAX_CHUNK_BYTES >> 20} MiB)")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--val", nargs="+", default=[], metavar="SOURCE",
                       help="separate validation sources (files, folders or globs)")
    split.add_argument("--val-fraction", type=float, metavar="F",
                       help="draw this share of rows at random (seeded) into the validation split (0: none)")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="keep source order (default: rows are globally shuffled, seeded)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of shuffle and validation draw (default 0)")
    p.add_argument("--workers", type=int, metavar="N", help="parallel worker processes (default: all cores)")
    p.add_argument("--compression", choices=COMPRESSIONS, default="lz4",
                   help="chunk compression (default lz4; none = uncompressed, memory-mappable)")
    p.add_argument("--on-bad-rows", choices=("error", "skip"), default="error",
                   help="error: stop at the first bad row (default); skip: count it and write it to --rejects")
    p.add_argument("--rejects", metavar="PATH",
                   help="CSV of skipped rows with file and line (default STORE.rejects.csv)")
    p.add_argument("--encoding", default="utf-8", metavar="E", help="text encoding of the sources (default utf-8)")
    p.add_argument("--dtype", action="append", default=[], metavar="COL=TYPE",
                   help=f"column type, repeatable; TYPE is one of {', '.join(KINDS)} (default: inferred)")
    p.add_argument("--schema", metavar="PATH", help='JSON file of column types: {"col": "category", ...}')
    p.add_argument("--sample-rows", type=int, default=10_000, metavar="N",
                   help="leading rows used to infer column types (default 10000)")
    p.add_argument("--max-categories", type=int, default=DEFAULT_MAX_CATEGORIES, metavar="N",
                   help="a text column with more distinct values than N (ids, UUIDs) is stored hashed into N buckets "
                        f"instead of with a vocabulary (default {DEFAULT_MAX_CATEGORIES:,}; never the label)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store (only when complete)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted ingest of the same command")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run the passes on this Dask scheduler (tcp://host:8786); local sources and the work "
                        "directory must be on a filesystem shared with its workers (URL sources: read by each worker)")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    talk.add_argument("--verbose", action="store_true",
                      help="after the summary, the wall and CPU seconds of each stage (plan, parse, merge, sort, "
                           "write, publish; CPU summed over every worker process), also recorded in the store")
    return p


def config_from_args(args: argparse.Namespace) -> IngestConfig:
    dtypes = load_schema_file(args.schema) if args.schema else {}
    for item in args.dtype:
        col, sep, kind = item.partition("=")
        if not sep or not col:
            raise OptionError(f"--dtype {item!r}: expected COL=TYPE, e.g. --dtype user_id=category")
        dtypes[col] = kind
    return IngestConfig(
        sources=args.sources, out=args.out, label=args.label, batch_size=args.batch_size, val=args.val,
        val_fraction=args.val_fraction, shuffle=args.shuffle, seed=args.seed, workers=args.workers,
        compression=args.compression, on_bad_rows=args.on_bad_rows, rejects=args.rejects, encoding=args.encoding,
        dtypes=dtypes, sample_rows=args.sample_rows, max_categories=args.max_categories, overwrite=args.overwrite,
        resume=args.resume, progress=not args.quiet, dask=args.dask, work=args.work)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = ingest(config_from_args(args))
    except StoreError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the environment, not the code: a path through a file, permissions, a full disk
        print(f"ingest: error: {from_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ingest: interrupted; run the same command with --resume to continue", file=sys.stderr)
        return 130
    if not args.quiet:
        print(result.summary(verbose=args.verbose), file=sys.stderr)
    return 0


def entry() -> int:
    """The ``ingest`` command: :func:`main` in a process of its own, whose allocator keeps large buffers for reuse
    (ingest.allocator; the worker processes do so anyway, this is for ``--workers 1`` and the parent's share)."""
    keep_buffers()
    return main()


if __name__ == "__main__":
    sys.exit(entry())
