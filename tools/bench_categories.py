"""High-cardinality benchmark: a log whose ``session_id`` column has a distinct 36-character id on every row.

Measures, in one run on one machine, the ingest's wall time and peak RSS (whole process tree) and ``open_store``'s
time, for the default (the id column hashed into ``--max-categories`` buckets) against every value listed in a
vocabulary (``--max-categories`` above the distinct count: what format version 1 always did).

    python -m tools.bench_categories                     # 10M rows (~1 GB CSV); targets: RSS <= 1 GB, open <= 0.2 s
    python -m tools.bench_categories --rows 2000000 --no-listed
    python -m tools.bench_categories --quick             # tiny, for the test suite
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from ._extras import require
from .measure import machine, median, remove_store, run_measured

INGEST = """
import sys
from ingest import IngestConfig, ingest
r = ingest(IngestConfig([sys.argv[1]], sys.argv[2], label="clear", val_fraction=0.1, overwrite=True,
                        progress=False, max_categories=int(sys.argv[3])))
print(r.seconds, r.rows_read)
"""

OPEN = """
import sys, time
from store import open_store
times = []
for _ in range(5):
    t = time.perf_counter()
    store = open_store(sys.argv[1])
    store.schema["session_id"].categories
    times.append(time.perf_counter() - t)
print(sorted(times)[2])
"""


def write_csv(path: str, rows: int, seed: int = 0, chunk: int = 1_000_000) -> None:
    """``rows`` rows: session_id (a distinct UUID-shaped id per row), country (40 values), eight floats, clear."""
    rng = np.random.default_rng(seed)
    countries = np.array([f"c{i:02d}" for i in range(40)])
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("session_id,country," + ",".join(f"f{j}" for j in range(8)) + ",clear\n")
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = np.arange(start, start + n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            hexes = [f"{x:016x}" for x in ids.tolist()]
            floats = np.round(rng.standard_normal((n, 8)), 4).astype(str)
            country = countries[rng.integers(0, 40, n)]
            clear = (rng.random(n) < 0.5).astype(np.int8).astype(str)
            lines = [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{start + i:012x}-0000,{c},{','.join(f)},{y}\n"
                     for i, (h, c, f, y) in enumerate(zip(hexes, country, floats, clear))]
            out.write("".join(lines))


def _case(csv: str, out: str, max_categories: int, repeat: int) -> dict:
    walls, peaks = [], []
    for _ in range(repeat):  # the ingest replaces its own store (overwrite) and refuses anything else
        _, wall, peak = run_measured([sys.executable, "-c", INGEST, csv, out, str(max_categories)])
        walls.append(wall)
        peaks.append(peak)
    opened, _, _ = run_measured([sys.executable, "-c", OPEN, out])
    meta = os.path.getsize(os.path.join(out, "zarr.json"))
    return {"wall": median(walls), "rss": median(peaks), "open": float(opened), "meta": meta}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=1, help="ingest runs per case (median)")
    p.add_argument("--no-listed", action="store_true", help="skip the every-value-listed comparison")
    p.add_argument("--data", default="data/bench_categories")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    require("psutil")
    if args.quick:
        args.rows, args.data = 20_000, os.path.join(args.data, "quick")
    os.makedirs(args.data, exist_ok=True)
    csv = os.path.join(args.data, f"sessions_{args.rows}.csv")
    if not os.path.exists(csv):
        started = time.monotonic()
        write_csv(csv + ".tmp", args.rows)
        os.replace(csv + ".tmp", csv)
        print(f"wrote {csv} ({os.path.getsize(csv) / 1e9:.2f} GB) in {time.monotonic() - started:.0f} s",
              file=sys.stderr)
    default = 1000 if args.quick else None
    cases = [("hashed (default --max-categories)", default)]
    if not args.no_listed:
        cases.append(("every value listed (as format version 1)", args.rows + 1))
    print(f"machine: {machine()}\n\n{args.rows:,} rows, {args.rows:,} distinct 36-character session ids, "
          f"CSV {os.path.getsize(csv) / 1e9:.2f} GB\n")
    print("| vocabulary of session_id | ingest s | peak RSS (tree) | open_store | root zarr.json |")
    print("|---|---:|---:|---:|---:|")
    from ingest.vocabulary import DEFAULT_MAX_CATEGORIES
    for name, limit in cases:
        r = _case(csv, os.path.join(args.data, "store.zarr"), limit or DEFAULT_MAX_CATEGORIES, args.repeat)
        print(f"| {name} | {r['wall']:.1f} | {r['rss']:,.0f} MiB | {r['open'] * 1e3:.1f} ms | "
              f"{r['meta'] / 1e3:,.1f} kB |", flush=True)
    remove_store(os.path.join(args.data, "store.zarr"))
    if args.quick:  # only what this run wrote
        os.remove(csv)
        if not os.listdir(args.data):
            os.rmdir(args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
