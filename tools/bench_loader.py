"""Loader benchmark: µs per 1000-row batch, single thread, warm page cache, for the ways of feeding Keras from the
same data — and the training-feed ratio (an epoch of ``fit(StoreSequence)`` against ``fit`` on the same batches
already in RAM; see ``tools/bench_feed.py``), median of 5 interleaved rounds.

    python -m tools.bench_loader                 # 1M-row store (ingested if missing)
    python -m tools.bench_loader --quick         # tiny, for the test suite
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np

from .measure import machine, median
from .synth import write_csv, write_split_files


def _store(data: str, rows: int, compression: str = "lz4") -> str:
    from ingest import IngestConfig, ingest
    csv_path = os.path.join(data, f"quest_{rows}.csv")
    store = os.path.join(data, f"quest_{rows}_{compression}.zarr")
    if not os.path.exists(csv_path):
        write_csv(csv_path, rows, seed=0)
    if not os.path.exists(store):
        ingest(IngestConfig([csv_path], store, label="clear", val_fraction=0.1, progress=False,
                            compression=compression))
    return store


def _per_batch(fn, n: int, repeat: int) -> float:
    """Median over ``repeat`` passes of the mean µs per call of ``fn(i)`` for i in 0..n-1 (first pass warms)."""
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        for i in range(n):
            fn(i)
        times.append((time.perf_counter() - started) / n * 1e6)
    return median(times[1:])


def _window_us(store: str, batches: int, repeat: int) -> float:
    """StoreSequence decodes a window of chunks once (into a recycled window buffer, as its loaders do) and
    slices its batches: time whole windows, per batch."""
    from trainer.batches import BatchSource
    source = BatchSource(store, "train", label="clear")
    per = source.batches_per_window()
    windows = max(1, min(batches, len(source) - 1) // per)
    buffers = source.window_buffers()
    return _per_batch(lambda w: [source.batch_from(window, j) for window in [source.load_window(0, w, buffers)]
                                 for j in range(per)], windows, repeat) / per


def _random_access_us(store: str, batches: int, repeat: int) -> float:
    """One batch at a random index of an unshuffled split (``BatchSource.batch``: one chunk per array)."""
    import random

    from trainer.batches import BatchSource
    source = BatchSource(store, "train", label="clear", shuffle=False)
    order = random.Random(0).sample(range(len(source)), min(batches, len(source)))
    return _per_batch(lambda i: source.batch(order[i]), len(order), repeat)


def loader_table(store: str, data: str, batches: int, repeat: int, mapped_store: str) -> list[str]:
    import pandas as pd
    import zarr

    from trainer.batches import BatchSource
    source = BatchSource(store, "train", label="clear")
    batches = min(batches, len(source) - 1)
    group = zarr.open_group(store, mode="r")["train"]
    arrays = [group[name] for name in source.readers]
    # the physical floor: the same bytes per batch copied out of a np.memmap
    width = sum(a.shape[1] * a.dtype.itemsize for a in arrays)
    raw_path = os.path.join(data, "floor.bin")
    if not os.path.exists(raw_path) or os.path.getsize(raw_path) != width * source.rows:
        with open(raw_path, "wb") as f:
            for start in range(0, source.rows, 100_000):
                parts = [np.ascontiguousarray(a[start:start + 100_000]).view(np.uint8) for a in arrays]
                f.write(np.concatenate(parts, axis=1).tobytes())
    mm = np.memmap(raw_path, dtype=np.uint8, mode="r").reshape(source.rows, width)
    bs = source.batch_size
    split_dir = os.path.join(data, "splited")
    if len(glob.glob(os.path.join(split_dir, "*.csv"))) < batches:
        write_split_files(split_dir, batches * bs, seed=0, rows_per_file=bs)
    files = sorted(glob.glob(os.path.join(split_dir, "*.csv")))

    def seed_style(i):  # the article's Sequence: one read_csv per 1000-row file, fillna, one-hot label
        frame = pd.read_csv(files[i]).fillna(0)
        y = np.eye(2, dtype=np.float32)[frame.pop("clear").to_numpy()]
        return frame.select_dtypes("number").to_numpy(np.float32), y

    results = {
        "np.memmap copy of the same bytes (floor)": _per_batch(lambda i: np.array(mm[i * bs:(i + 1) * bs]),
                                                               batches, repeat),
        "StoreSequence (this project, lz4 store)": _window_us(store, batches, repeat),
        "StoreSequence, --compression none store (mmap)": _window_us(mapped_store, batches, repeat),
        "random batch access, unshuffled split (lz4)": _random_access_us(store, batches, repeat),
        "zarr-python array API, same chunks": _per_batch(lambda i: [a[i * bs:(i + 1) * bs] for a in arrays],
                                                         batches, repeat),
        "seed-style: pandas.read_csv per 1000-row file": _per_batch(seed_style, batches, repeat),
    }
    floor = results["np.memmap copy of the same bytes (floor)"]
    lines = [f"| loader ({bs}-row batches, single thread, warm cache) | µs/batch | rows/s | vs floor |",
             "|---|---|---|---|"]
    for name, us in results.items():
        lines.append(f"| {name} | {us:,.0f} | {bs / us * 1e6:,.0f} | {us / floor:.1f}x |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_loader", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=400, help="batches timed per loader (default 400)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per feed measurement (first is warm-up)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the feed cases (default 5)")
    parser.add_argument("--data", default="data/bench")
    parser.add_argument("--no-feed", action="store_true", help="skip the training-feed measurement")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the test suite)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.batches, args.repeat, args.epochs, args.rounds = 20_000, 16, 1, 2, 1
    os.makedirs(args.data, exist_ok=True)
    store = _store(args.data, args.rows)
    lines = [f"machine: {machine()}", ""] + loader_table(store, args.data, args.batches, args.repeat,
                                                         _store(args.data, args.rows, "none"))
    if not args.no_feed:
        import keras

        from .bench_feed import default_cases, measure, table
        results = measure(store, default_cases(keras.backend.backend(), quick=True), args.epochs, args.rounds)
        lines += [""] + table(results)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
