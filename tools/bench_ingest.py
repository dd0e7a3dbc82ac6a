"""Ingest benchmark: this project's ``ingest`` against one single-process ``pandas.read_csv(chunksize=…)`` pass over
the same file, measured in the same run (median of ``--repeat`` runs), with the peak RSS of each process tree (from
one more run: sampling it slows what it watches) and the store's size against the CSV's.

    python -m tools.bench_ingest                  # 1M-row synthetic quest log (~330 MB)
    python -m tools.bench_ingest --scale 3        # also a 3x larger input: peak RSS must not grow > 25 %
    python -m tools.bench_ingest --quick          # tiny, for the test suite

Scaling over cores (issue 12 §4): ``--files N`` writes N CSV files (consecutive parts of one log, in parallel)
holding ``--rows`` rows in all, and ingests them with each ``--workers`` count, against one
``pandas.read_csv(chunksize)`` process reading the files in turn and against N such processes reading one file
each at once (the same cores parsing, nothing else):

    python -m tools.bench_ingest --files 16 --rows 10000000 --workers 1,2,4,8,16
    python -m tools.bench_ingest --files 2 --quick    # tiny, for the test suite

Only ingest, pandas and psutil are needed (no TensorFlow).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor

from ingest.timings import STAGES

from .measure import machine, median, remove_store, run_measured, run_timed
from .synth import write_csv

BASELINE = """
import sys, time
import pandas as pd
t = time.perf_counter()
rows = sum(len(c) for path in sys.argv[1:] for c in pd.read_csv(path, chunksize=100_000))
print(time.perf_counter() - t, rows)
"""

# N processes, one file each, started by fork after pandas is imported (as ingest's workers are): the clock covers
# the pool's start, as ingest's own clock does.
PARALLEL_BASELINE = """
import multiprocessing, sys, time
import pandas as pd

def rows(path):
    return sum(len(c) for c in pd.read_csv(path, chunksize=100_000))

if __name__ == "__main__":
    t = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(len(sys.argv) - 1) as pool:
        n = sum(pool.map(rows, sys.argv[1:], chunksize=1))
    print(time.perf_counter() - t, n)
"""

# keep_buffers: as the ingest command does in its own process (ingest.cli.entry)
INGEST = """
import sys
from ingest import IngestConfig, ingest
from ingest.allocator import keep_buffers
from ingest.timings import STAGES
keep_buffers()
workers = int(sys.argv[3]) or None
r = ingest(IngestConfig(sys.argv[4:], sys.argv[1], label="clear", val_fraction=0.1, overwrite=True,
                        progress=False, compression=sys.argv[2], workers=workers))
print(r.seconds, r.rows_read, *(r.timings.get(s, {}).get("wall", 0.0) for s in STAGES))
"""


def _size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def _env() -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))


def measure(csv_path: str, work: str, repeat: int, compression: str = "lz4") -> dict:
    """Seconds: medians of ``repeat`` alternating runs with nothing watching them; peak RSS: one more run of each,
    its process tree sampled (tools.measure.run_timed says why apart)."""
    base_t, ing_t = [], []
    store = os.path.join(work, "bench.zarr")
    baseline = [sys.executable, "-c", BASELINE, csv_path]
    ingest = [sys.executable, "-c", INGEST, store, compression, "0", csv_path]
    for _ in range(repeat):
        base_t.append(float(run_timed(baseline, env=_env()).split()[0]))
        ing_t.append(float(run_timed(ingest, env=_env()).split()[0]))
    base_rss, ing_rss = (run_measured(argv, env=_env())[2] for argv in (baseline, ingest))
    size = os.path.getsize(csv_path)
    result = {"csv_mb": size / 1e6, "pandas_s": median(base_t), "pandas_rss": base_rss,
              "ingest_s": median(ing_t), "ingest_rss": ing_rss, "store_ratio": _size(store) / size}
    remove_store(store)
    return result


def write_files(folder: str, files: int, rows: int) -> list[str]:
    """``files`` CSV files holding consecutive parts of one ``rows``-row quest log, written in parallel; files
    already there are kept (each appears under its name only once written whole)."""
    sizes = [rows // files + (i < rows % files) for i in range(files)]
    paths = [os.path.join(folder, f"part_{i:03d}.csv") for i in range(files)]
    todo = [(path, n, sum(sizes[:i])) for i, (path, n) in enumerate(zip(paths, sizes)) if not os.path.exists(path)]
    if todo:
        os.makedirs(folder, exist_ok=True)
        with ProcessPoolExecutor(min(len(todo), os.cpu_count() or 1)) as pool:
            list(pool.map(_write_part, *zip(*todo)))
    return paths


def _write_part(path: str, rows: int, offset: int) -> None:
    write_csv(path + ".partial", rows, seed=0, offset=offset)
    os.replace(path + ".partial", path)


def measure_scaling(paths: list[str], work: str, workers: list[int], repeat: int) -> dict:
    """Case ("pandas", "pandas-parallel" or a worker count) -> (median seconds, peak RSS in MiB of its process
    tree, from one more run), and "load": the load average before the first run; ``("stages", workers)`` -> the
    median wall seconds of each ingest stage (ingest.timings.STAGES). The cases interleave in every round, so drifts
    of a shared machine spread over all of them."""
    store = os.path.join(work, "bench-scaling.zarr")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cases = {"pandas": [BASELINE, *paths], "pandas-parallel": [PARALLEL_BASELINE, *paths]}
    cases |= {w: [INGEST, store, "lz4", str(w), *paths] for w in workers}
    seconds: dict = {case: [] for case in cases}
    stages: dict = {w: [] for w in workers}
    for _ in range(repeat):
        for case, script in cases.items():
            out = run_timed([sys.executable, "-c", *script], env=_env()).split()
            seconds[case].append(float(out[0]))
            if case in stages:
                stages[case].append([float(v) for v in out[2:]])
    # peak RSS from one more run of each case, sampled (apart from the timed runs: tools.measure.run_timed)
    rss = {case: run_measured([sys.executable, "-c", *script], env=_env())[2] for case, script in cases.items()}
    remove_store(store)
    return ({case: (median(seconds[case]), rss[case]) for case in cases} | {"load": load}
            | {("stages", w): [median(list(column)) for column in zip(*runs)] for w, runs in stages.items()})


def scaling_table(paths: list[str], rows: int, workers: list[int], results: dict, repeat: int) -> list[str]:
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    n = len(paths)
    one, pandas, parallel = results.get(1, (0,))[0], results["pandas"][0], results["pandas-parallel"][0]
    lines = [f"machine: {machine()}",
             f"input: {n} CSV files, {rows:,} rows, {mb:,.0f} MB in all; median of {repeat} run(s), warm page cache; "
             "seconds as each process's own clock says (after imports, pool start included); load average "
             f"{results['load']:.1f} before the first run (other work on the machine makes the figures rough)", "",
             "| case | processes | seconds | MB/s | vs ingest 1 worker | vs pandas 1 process | "
             f"vs pandas {n} processes | peak RSS (MiB) | {' / '.join(STAGES)} (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    cases = [(f"pandas.read_csv(chunksize), 1 process, the {n} files in turn", 1, "pandas"),
             (f"pandas.read_csv(chunksize), {n} processes, one file each", n, "pandas-parallel")]
    cases += [(f"ingest --workers {w}", w, w) for w in workers]
    for name, processes, case in cases:
        t, peak = results[case]
        vs_one = f"{one / t:.2f}x" if one and isinstance(case, int) else "-"
        stages = " / ".join(f"{s:.2f}" for s in results.get(("stages", case), [])) or "-"
        lines.append(f"| {name} | {processes} | {t:.2f} | {mb / t:,.0f} | {vs_one} | {pandas / t:.2f}x | "
                     f"{parallel / t:.2f}x | {peak:,.0f} | {stages} |")
    lines.append("")
    lines.append("Stages: wall seconds of each stage of the ingest (medians; `ingest --verbose` prints them; the "
                 "workers' start is in parse): plan, merge and publish run in the parent alone.")
    return lines


def _scaling(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        workers = []
    if not workers or min(workers) < 1 or args.files < 1:
        parser.error(f"--files must be >= 1 and --workers a list of counts >= 1 such as 1,2,4 (got {args.workers!r})")
    if args.quick:
        args.rows, args.repeat = 8_000, 1
    paths = write_files(os.path.join(args.data, f"files_{args.files}x{args.rows}"), args.files, args.rows)
    results = measure_scaling(paths, args.data, workers, args.repeat)
    print("\n".join(scaling_table(paths, args.rows, workers, results, args.repeat)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=int, default=0, help="also measure a SCALE x larger input's peak RSS")
    parser.add_argument("--data", default="data/bench", help="where the CSV files and stores go")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run (for the test suite)")
    parser.add_argument("--files", type=int, default=0, metavar="N",
                        help="scaling mode: write N files holding --rows rows in all, ingest them with each --workers")
    parser.add_argument("--workers", default="1,2,4,8,16", metavar="LIST",
                        help="scaling mode: worker counts, comma-separated (default 1,2,4,8,16)")
    args = parser.parse_args(argv)
    if args.files:
        return _scaling(args, parser)
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
