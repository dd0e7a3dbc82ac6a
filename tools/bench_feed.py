"""Feed benchmark: seconds per epoch of the same model fed from RAM and from the store, side by side.

Each *case* trains the default MLP for a few epochs on one feed; the first epoch warms up (compilation, worker
start) and the median of the others counts. Cases run in interleaved rounds and each case is compared with the
in-RAM case of the same batch size and steps per execution *of the same round* (the median of those paired
ratios is reported), which cancels most of a shared machine's drift. The training process's own cost of the feed
(time inside ``StoreSequence.__getitem__`` or the tf.data generator, per batch, after warm-up) is reported too.

    python -m tools.bench_feed                         # 1M-row store (ingested if missing), this backend
    python -m tools.bench_feed --quick                 # tiny, for the test suite
    KERAS_BACKEND=jax python -m tools.bench_feed       # another backend
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from .measure import machine, median

__all__ = ["Case", "Result", "measure", "table", "default_cases"]


@dataclass(frozen=True)
class Case:
    """One way of feeding ``fit``. ``kind``: ``ram`` (numpy arrays in memory, the floor), ``sequence``
    (StoreSequence given to fit), ``tfdata`` (trainer.tfdata over a StoreSequence; TensorFlow only), ``csv``
    (the seed article's Sequence: one pandas.read_csv per 1000-row file, worker processes) or ``tfcsv``
    (tf.data's make_csv_dataset over the same files)."""

    name: str
    kind: str
    workers: int = 1
    processes: bool = False
    batch_size: int = 1000
    steps_per_execution: int = 1


@dataclass
class Result:
    case: Case
    seconds: float  # median epoch seconds (after warm-up), median over rounds
    ratio: float  # median over rounds of seconds / in-RAM seconds of the same round, batch size and steps
    feed_us: float | None  # training process's time in the feed per batch, or None


def default_cases(backend: str, quick: bool = False) -> list[Case]:
    """The cases ``python -m tools.bench_feed`` runs: RAM; ``trainer run``'s feed (tf.data over 2 loader
    processes under TensorFlow, the sequence elsewhere); StoreSequence with threads and processes; the seed's
    CSV Sequence; and the same with steps_per_execution=8 (trainer run's default)."""
    tf = backend == "tensorflow"
    trainer_feed = [Case("trainer run's feed: tf.data over StoreSequence, 2 processes", "tfdata", 2, True)] if tf \
        else []
    cases = [Case("in-RAM numpy arrays (floor)", "ram"), *trainer_feed,
             Case("StoreSequence, 1 thread", "sequence", 1),
             Case("StoreSequence, 2 processes (shared memory)", "sequence", 2, True)]
    if quick:
        return cases
    cases.append(Case("seed-style CSV Sequence, 2 worker processes", "csv", 2))
    spe = dict(steps_per_execution=8)
    cases += [Case("in-RAM numpy arrays, steps_per_execution=8", "ram", **spe),
              *[Case(c.name + ", steps_per_execution=8", c.kind, c.workers, c.processes, **spe) for c in trainer_feed],
              Case("StoreSequence, 2 processes, steps_per_execution=8", "sequence", 2, True, **spe)]
    return cases


def measure(store: str, cases: list[Case], epochs: int = 3, rounds: int = 1, split_dir: str = "",
            label: str = "clear") -> list[Result]:
    """Run every case ``rounds`` times (interleaved) for ``epochs`` epochs; see the module docstring."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from trainer.sequence import StoreSequence

    seconds: dict[Case, list[float]] = {c: [] for c in cases}
    feed: dict[Case, list[float]] = {c: [] for c in cases}
    arrays = {}
    for _ in range(rounds):
        for case in cases:
            if case.kind == "ram" and case.batch_size not in arrays:
                arrays[case.batch_size] = _in_ram(store, case.batch_size, label)
            t, us = _run(case, store, epochs, arrays.get(case.batch_size), split_dir, label, StoreSequence)
            seconds[case].append(t)
            if us is not None:
                feed[case].append(us)
    results = []
    for case in cases:
        floor = next((c for c in cases if c.kind == "ram" and c.batch_size == case.batch_size
                      and c.steps_per_execution == case.steps_per_execution), None)
        ratios = [a / b for a, b in zip(seconds[case], seconds[floor])] if floor else [float("nan")]
        results.append(Result(case, median(seconds[case]), median(ratios), median(feed[case]) if feed[case]
                              else None))
    return results


def table(results: list[Result], batches: int | None = None) -> list[str]:
    head = f"({batches} batches/epoch, default MLP) " if batches else ""
    lines = [f"| feed {head}| batch | s/epoch | vs in-RAM | feed µs/batch in the training process |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        us = "-" if r.feed_us is None else f"{r.feed_us:.0f}"
        lines.append(f"| {r.case.name} | {r.case.batch_size} | {r.seconds:.2f} | {r.ratio:.2f}x | {us} |")
    return lines


def _in_ram(store: str, batch_size: int, label: str):
    """The epoch-0 batches of the store, already in RAM (what fit on numpy arrays gets)."""
    from trainer.batches import BatchSource
    source = BatchSource(store, "train", label=label, batch_size=batch_size)
    window_batches = [source.batch_from(source.load_window(0, w), j)
                      for w in range(-(-len(source) // source.batches_per_window()))
                      for j in range(min(source.batches_per_window(), len(source) - w * source.batches_per_window()))]
    x = {k: np.concatenate([b[0][k] for b in window_batches]) for k in window_batches[0][0]}
    y = np.concatenate([b[1] for b in window_batches])
    source.close()
    return x, y


def _model(spec, steps_per_execution: int):
    import keras

    from trainer.model import compile_for, default_model
    keras.utils.set_random_seed(0)
    model = default_model(spec)
    compile_for(model, spec.task, 1e-3, steps_per_execution=steps_per_execution)
    return model


def _run(case: Case, store: str, epochs: int, in_ram, split_dir: str, label: str, StoreSequence):
    import keras

    from trainer.model import spec_for
    seq = StoreSequence(store, "train", label=label, batch_size=case.batch_size, workers=case.workers,
                        use_multiprocessing=case.processes)
    model = _model(spec_for(seq.source), case.steps_per_execution)

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.started = [], 0.0

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:  # after warm-up: the feed's own counters start here
                seq.feed.stats.batches, seq.feed.stats.seconds = 0, 0.0
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.started)

    timer = Timer()
    fit = dict(epochs=epochs, verbose=0, callbacks=[timer], shuffle=False)
    try:
        if case.kind == "ram":
            x, y = in_ram
            model.fit(x, y, batch_size=case.batch_size, **fit)
        elif case.kind == "sequence":
            model.fit(seq, **fit)
        elif case.kind == "tfdata":
            from trainer.tfdata import tf_dataset
            model.fit(tf_dataset(seq), **fit)
        elif case.kind in ("csv", "tfcsv"):
            from .feeds import csv_sequence, tf_csv_dataset
            files = sorted(glob.glob(os.path.join(split_dir, "*.csv")))[:len(seq)]
            data = csv_sequence(seq.source, files, workers=case.workers) if case.kind == "csv" else \
                tf_csv_dataset(seq.source, files)
            model.fit(data, **fit)
        else:
            raise ValueError(f"unknown case kind {case.kind!r}")
        stats = seq.feed.stats
        us = stats.us_per_batch if case.kind in ("sequence", "tfdata") and stats.batches else None
    finally:
        seq.close()
    return median(timer.times[1:]) if len(timer.times) > 1 else timer.times[0], us


def main(argv: list[str] | None = None) -> int:
    import keras

    from .bench_loader import _store
    from .synth import write_split_files
    parser = argparse.ArgumentParser(prog="python -m tools.bench_feed", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per case, the first is warm-up (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all cases (default 3)")
    parser.add_argument("--data", default="data/bench")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the test suite)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.epochs, args.rounds = 20_000, 2, 1
    os.makedirs(args.data, exist_ok=True)
    store = _store(args.data, args.rows)
    split_dir = os.path.join(args.data, "splited_train")
    cases = default_cases(keras.backend.backend(), args.quick)
    if any(c.kind == "csv" for c in cases) and len(glob.glob(os.path.join(split_dir, "*.csv"))) * 1000 < args.rows:
        write_split_files(split_dir, args.rows, seed=0)
    results = measure(store, cases, args.epochs, args.rounds, split_dir)
    from trainer.batches import BatchSource
    batches = len(BatchSource(store, "train", label="clear"))
    lines = [f"machine: {machine()}", f"backend: {keras.backend.backend()} (Keras {keras.__version__})",
             f"command: python -m tools.bench_feed {' '.join(argv if argv is not None else sys.argv[1:])}".strip(),
             "", *table(results, batches)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
