"""Ingest benchmark: this project's ``ingest`` against one single-process ``pandas.read_csv(chunksize=…)`` pass over
the same file, measured in the same run (median of ``--repeat`` runs), with the peak RSS of each process tree and
the store's size against the CSV's.

    python -m tools.bench_ingest                  # 1M-row synthetic quest log (~330 MB)
    python -m tools.bench_ingest --scale 3        # also a 3x larger input: peak RSS must not grow > 25 %
    python -m tools.bench_ingest --quick          # tiny, for the test suite
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from .measure import machine, median, run_measured
from .synth import write_csv

BASELINE = """
import sys, time
import pandas as pd
t = time.perf_counter()
rows = sum(len(c) for c in pd.read_csv(sys.argv[1], chunksize=100_000))
print(time.perf_counter() - t, rows)
"""

INGEST = """
import sys
from ingest import IngestConfig, ingest
r = ingest(IngestConfig([sys.argv[1]], sys.argv[2], label="clear", val_fraction=0.1, overwrite=True,
                        progress=False, compression=sys.argv[3]))
print(r.seconds, r.rows_read)
"""


def _size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def _env() -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))


def measure(csv_path: str, work: str, repeat: int, compression: str = "lz4") -> dict:
    base_t, base_rss, ing_t, ing_rss = [], [], [], []
    store = os.path.join(work, "bench.zarr")
    for _ in range(repeat):
        out, _, rss = run_measured([sys.executable, "-c", BASELINE, csv_path], env=_env())
        base_t.append(float(out.split()[0]))
        base_rss.append(rss)
        out, _, rss = run_measured([sys.executable, "-c", INGEST, csv_path, store, compression], env=_env())
        ing_t.append(float(out.split()[0]))
        ing_rss.append(rss)
    size = os.path.getsize(csv_path)
    result = {"csv_mb": size / 1e6, "pandas_s": median(base_t), "pandas_rss": median(base_rss),
              "ingest_s": median(ing_t), "ingest_rss": max(ing_rss), "store_ratio": _size(store) / size}
    shutil.rmtree(store, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=int, default=0, help="also measure a SCALE x larger input's peak RSS")
    parser.add_argument("--data", default="data/bench", help="where the CSV files and stores go")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run (for the test suite)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = 5_000, 1
    os.makedirs(args.data, exist_ok=True)
    csv_path = os.path.join(args.data, f"quest_{args.rows}.csv")
    if not os.path.exists(csv_path):
        write_csv(csv_path, args.rows, seed=0)
    lines = [f"machine: {machine()}", "",
             "| input | compression | pandas read_csv pass | ingest | speed-up | peak RSS pandas / ingest tree | "
             "store / CSV |", "|---|---|---|---|---|---|---|"]
    results = {}
    for compression in ("lz4", "zstd"):
        r = results[compression] = measure(csv_path, args.data, args.repeat, compression)
        lines.append(f"| {args.rows:,} rows, {r['csv_mb']:.0f} MB | {compression} | {r['pandas_s']:.2f} s "
                     f"({r['csv_mb'] / r['pandas_s']:.0f} MB/s) | {r['ingest_s']:.2f} s "
                     f"({r['csv_mb'] / r['ingest_s']:.0f} MB/s) | {r['pandas_s'] / r['ingest_s']:.2f}x | "
                     f"{r['pandas_rss']:.0f} / {r['ingest_rss']:.0f} MiB | {r['store_ratio']:.2f} |")
        if args.quick:
            break
    if args.scale:
        big = os.path.join(args.data, f"quest_{args.rows * args.scale}.csv")
        if not os.path.exists(big):
            write_csv(big, args.rows * args.scale, seed=0)
        r_big = measure(big, args.data, 1)
        r = results["lz4"]
        lines.append(f"\npeak RSS of the ingest tree: {r['ingest_rss']:.0f} MiB at {args.rows:,} rows, "
                     f"{r_big['ingest_rss']:.0f} MiB at {args.rows * args.scale:,} rows "
                     f"({(r_big['ingest_rss'] / r['ingest_rss'] - 1) * 100:+.0f} %)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
