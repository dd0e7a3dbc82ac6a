"""GPU feed benchmark: does the store feed an accelerator as fast as RAM does? One command, under 5 minutes on a
16-core H100/H200 machine, any Keras backend (JAX where TensorFlow is not installed).

It writes a synthetic quest log as 16 CSV files in parallel (and the seed article's 1000-row files), ingests them
on every core, then times epochs of the default MLP (see ``tools/bench_feed.py`` for the method: warm-up epoch,
medians, ratios to the in-RAM epoch of the same round) fed by: numpy arrays in RAM (the floor), ``StoreSequence``
with loader threads and with loader processes (shared memory), and the seed's CSV Sequence (8 processes); at
batch 1000 and 4000, with and without ``steps_per_execution``. It prints a Markdown table headed by the machine.

On a GPU machine without a package registry, carry the few wheels the project needs besides what is installed
(its Python has JAX, numpy, pandas, h5py, ml-dtypes)::

    pip download --dest wheels --python-version 3.12 --only-binary=:all: --no-deps \\
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \\
        keras zarr numcodecs google-crc32c crc32c donfig optree namex absl-py rich markdown-it-py mdurl \\
        pygments typing-extensions packaging
    # there:
    pip install --no-index --find-links wheels keras zarr numcodecs google-crc32c
    KERAS_BACKEND=jax PYTHONPATH=. python -m tools.bench_gpu

    python -m tools.bench_gpu --cpu        # tiny, on the CPU (the test suite runs it)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["cases", "main"]


def cases(quick: bool = False):
    """What is timed: (batch size, steps per execution) x feeds."""
    from .bench_feed import Case
    grid = [(1000, 1), (1000, 8), (4000, 1), (4000, 8)] if not quick else [(1000, 1), (1000, 4)]
    out = []
    for batch, spe in grid:
        tag = f", steps_per_execution={spe}" if spe > 1 else ""
        out.append(Case(f"in-RAM numpy arrays{tag}", "ram", batch_size=batch, steps_per_execution=spe))
        out.append(Case(f"StoreSequence, 1 thread{tag}", "sequence", 1, batch_size=batch, steps_per_execution=spe))
        if not quick:
            out.append(Case(f"StoreSequence, 4 threads{tag}", "sequence", 4, batch_size=batch,
                            steps_per_execution=spe))
        out.append(Case(f"StoreSequence, {2 if quick else 4} processes (shared memory){tag}", "sequence",
                        2 if quick else 4, True, batch_size=batch, steps_per_execution=spe))
        if batch == 1000 and spe == 1:
            out.append(Case("seed recipe: CSV Sequence, pandas.read_csv per file, "
                            f"{2 if quick else 8} processes", "csv", 2 if quick else 8))
    return out


def _write_part(args) -> None:
    """Rows ``start .. start+rows`` of the log: one CSV file, or 1000-row files named by their global index."""
    from .synth import generate_frame
    path, start, rows, split_dir = args
    if split_dir:
        for first in range(start, start + rows, 1000):
            piece = generate_frame(min(1000, start + rows - first), seed=0, start=first)
            piece.to_csv(os.path.join(split_dir, f"split_data_{first // 1000:05d}.csv"), index=False,
                         lineterminator="\n")
        return
    with open(path, "w", encoding="utf-8", newline="") as out:
        for i, first in enumerate(range(start, start + rows, 100_000)):
            generate_frame(min(100_000, start + rows - first), seed=0, start=first).to_csv(
                out, index=False, header=i == 0, lineterminator="\n")


def prepare(data: str, rows: int, files: int, workers: int) -> tuple[str, str]:
    """The CSV files, the seed's 1000-row files of the train rows, and the store (each made once)."""
    from ingest import IngestConfig, ingest
    os.makedirs(data, exist_ok=True)
    per = -(-rows // files)
    parts = [(os.path.join(data, f"quest_{i:02d}.csv"), i * per, min(per, rows - i * per), "")
             for i in range(files) if i * per < rows]
    split_dir = os.path.join(data, "splited")
    os.makedirs(split_dir, exist_ok=True)
    train_rows = int(rows * 0.9)
    split_parts = [("", s, min(50_000, train_rows - s), split_dir) for s in range(0, train_rows, 50_000)]
    todo = [p for p in parts if not os.path.exists(p[0])]
    if len(os.listdir(split_dir)) < -(-train_rows // 1000):
        todo += split_parts
    if todo:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_part, todo))
    store = os.path.join(data, f"quest_{rows}.zarr")
    if not os.path.exists(store):
        ingest(IngestConfig([p[0] for p in parts], store, label="clear", val_fraction=0.1, progress=False,
                            workers=workers))
    return store, split_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_800_000, help="rows of the synthetic log (default 1.8M)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per case, the first is warm-up (default 3)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all cases (default 1)")
    parser.add_argument("--data", default="data/bench_gpu")
    parser.add_argument("--cpu", action="store_true", help="tiny, on the CPU (for the test suite)")
    args = parser.parse_args(argv)
    if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("tensorflow") is None:
        os.environ["KERAS_BACKEND"] = "jax"  # the GPU machines have JAX and PyTorch but no TensorFlow
    if args.cpu:
        args.rows, args.epochs = 30_000, 2
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    started = time.perf_counter()
    workers = os.cpu_count() or 1
    store, split_dir = prepare(args.data, args.rows, 16 if not args.cpu else 2, workers)  # forks: before JAX loads
    prepared = time.perf_counter() - started
    import keras

    from .bench_feed import measure, table
    from .measure import machine
    results = measure(store, cases(args.cpu), args.epochs, args.rounds, split_dir)
    command = " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"machine: {machine()}",
             f"backend: {keras.backend.backend()} (Keras {keras.__version__}); devices: {_devices()}",
             f"command: python -m tools.bench_gpu {command}".strip(),
             f"data: {args.rows:,} rows (90% train), prepared in {prepared:.0f} s; total "
             f"{time.perf_counter() - started:.0f} s", "", *table(results)]
    print("\n".join(lines))
    return 0


def _devices() -> str:
    import keras
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax
            return ", ".join(sorted({d.device_kind for d in jax.devices()}))
        if backend == "torch":
            import torch
            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        import tensorflow as tf
        return ", ".join(d.name for d in tf.config.list_logical_devices()) or "cpu"
    except Exception as exc:  # noqa: BLE001 - informative only
        return f"unknown ({type(exc).__name__})"


if __name__ == "__main__":
    sys.exit(main())
