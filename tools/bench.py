"""The benchmark suite: this project against the alternatives, side by side, in one run on the same synthetic data.

    python -m tools.bench                       # 1M rows; writes DIR/bench.md and DIR/{ingest,loader,feed}.png
    python -m tools.bench --quick               # a few minutes at most; tiny sizes (the test suite runs it)

Sections: **ingest** (this project's `ingest`, one `pandas.read_csv(chunksize=…)` pass, one `pyarrow.csv`
streaming pass: MB/s, peak RSS of the process tree, output / CSV), **loader** (µs per batch, single thread, warm
cache: seed-style CSV Sequence, tf.data `make_csv_dataset`, zarr-python, `StoreSequence`, np.memmap floor) and
**feed** (epoch time of the same model fed by in-RAM numpy, `StoreSequence`, the seed-style Sequence with worker
processes and tf.data CSV, as a ratio to in-RAM). Every figure is a median of several runs on the machine named at
the top of the output.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time


from . import bench_ingest, bench_loader
from ._extras import require
from .measure import machine, median, run_measured, run_timed
from .synth import write_csv, write_split_files

PYARROW = """
import sys, time
import pyarrow.csv as pc
t = time.perf_counter()
rows = sum(b.num_rows for b in pc.open_csv(sys.argv[1]))
print(time.perf_counter() - t, rows)
"""


def ingest_section(csv_path: str, work: str, repeat: int) -> tuple[list[str], dict]:
    r = bench_ingest.measure(csv_path, work, repeat)
    mb = r["csv_mb"]
    argv = [sys.executable, "-c", PYARROW, csv_path]
    arrow_t = [float(run_timed(argv).split()[0]) for _ in range(repeat)]  # timed apart from the sampled run
    arrow_rss = run_measured(argv)[2]
    rows = {"ingest (this project, all cores)": (r["ingest_s"], r["ingest_rss"], f"{r['store_ratio']:.2f}"),
            "pandas.read_csv(chunksize) pass, 1 process": (r["pandas_s"], r["pandas_rss"], "-"),
            "pyarrow.csv streaming pass": (median(arrow_t), arrow_rss, "-")}
    lines = [f"| ingest of {mb:.0f} MB CSV | seconds | MB/s | peak RSS (MiB) | output / CSV |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {t:.2f} | {mb / t:.0f} | {rss:.0f} | {ratio} |" for name, (t, rss, ratio) in rows.items()]
    return lines, {name: mb / t for name, (t, _, _) in rows.items()}


def tf_csv_us(split_dir: str, batches: int, repeat: int, batch_size: int) -> float:
    """µs per batch of tf.data's make_csv_dataset over the 1000-row files, single reader."""
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(split_dir, "*.csv")))[:batches]

    def one_pass():
        ds = tf.data.experimental.make_csv_dataset(files, batch_size=batch_size, label_name="clear", num_epochs=1,
                                                   shuffle=False, num_parallel_reads=1, sloppy=False)
        started = time.perf_counter()
        n = sum(1 for _ in ds.take(batches))
        return (time.perf_counter() - started) / max(n, 1) * 1e6

    return median([one_pass() for _ in range(repeat + 1)][1:])


def loader_section(store: str, mapped: str, data: str, batches: int, repeat: int) -> tuple[list[str], dict]:
    lines = bench_loader.loader_table(store, data, batches, repeat, mapped)
    floor = float(lines[2].split("|")[2].replace(",", ""))
    us = tf_csv_us(os.path.join(data, "splited"), batches, repeat, 1000)
    lines.append(f"| tf.data make_csv_dataset, 1000-row files | {us:,.0f} | {1000 / us * 1e6:,.0f} | "
                 f"{us / floor:.1f}x |")
    values = {row.split("|")[1].strip(): float(row.split("|")[2].replace(",", "")) for row in lines[2:]}
    return lines, values


def feed_section(store: str, data: str, epochs: int, rounds: int, quick: bool) -> tuple[list[str], dict]:
    import keras

    from .bench_feed import Case, measure, table
    tf = keras.backend.backend() == "tensorflow"
    cases = [Case("in-RAM numpy arrays (floor)", "ram"),
             Case("trainer run's feed (tf.data over StoreSequence, 2 processes)" if tf else
                  "trainer run's feed (StoreSequence, 2 processes)", "tfdata" if tf else "sequence", 2, True),
             Case("StoreSequence, 1 thread (Keras' own wrapping)", "sequence", 1),
             Case("seed-style CSV Sequence, 2 worker processes", "csv", 2),
             Case("tf.data make_csv_dataset", "tfcsv")]
    lines = table(measure(store, cases, epochs, rounds, os.path.join(data, "splited_train")))
    values = {row.split("|")[1].strip(): float(row.split("|")[4].strip().rstrip("x")) for row in lines[2:]}
    return lines, values


def bar_chart(path: str, title: str, values: dict, unit: str, log: bool = False) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(values)
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(names)))
    ax.barh(range(len(names)), [values[n] for n in names], color="#1f77b4")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of synthetic log (default 1000000)")
    parser.add_argument("--out", default="data/bench", help="where data, tables and charts go (default data/bench)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median; default 3)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each (for the test suite)")
    args = parser.parse_args(argv)
    require("psutil", "pyarrow", "matplotlib")
    if args.quick:
        args.rows, args.repeat = 20_000, 1
    os.makedirs(args.out, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    csv_path = os.path.join(args.out, f"quest_{args.rows}.csv")
    if not os.path.exists(csv_path):
        write_csv(csv_path, args.rows, seed=0)
    train_dir = os.path.join(args.out, "splited_train")
    if len(glob.glob(os.path.join(train_dir, "*.csv"))) * 1000 < args.rows:
        write_split_files(train_dir, args.rows, seed=0)
    batches = 16 if args.quick else 400
    store, mapped = bench_loader._store(args.out, args.rows), bench_loader._store(args.out, args.rows, "none")
    ingest_lines, ingest_values = ingest_section(csv_path, args.out, args.repeat)
    loader_lines, loader_values = loader_section(store, mapped, args.out, batches, args.repeat)
    feed_lines, feed_values = feed_section(store, args.out, 2 if args.quick else 4, args.repeat, args.quick)
    report = [f"machine: {machine()}", f"command: python -m tools.bench {' '.join(argv or sys.argv[1:])}".strip(),
              "", *ingest_lines, "", *loader_lines, "", *feed_lines]
    bar_chart(os.path.join(args.out, "ingest.png"), "Ingest throughput (higher is better)", ingest_values, "MB/s")
    bar_chart(os.path.join(args.out, "loader.png"), "Loader, µs per 1000-row batch (lower is better)",
              loader_values, "µs per batch (log scale)", log=True)
    bar_chart(os.path.join(args.out, "feed.png"), "Epoch time vs in-RAM numpy (lower is better)", feed_values,
              "x in-RAM epoch")
    with open(os.path.join(args.out, "bench.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
