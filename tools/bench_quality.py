"""Training-quality benchmark: validation accuracy after N epochs of the default model on the synthetic quest log
(Bayes accuracy ~0.80, majority class ~0.55), for a shuffled log and for a log sorted by ``clear`` ingested with and
without the shuffle — the worst case for reading consecutive rows.

    python -m tools.bench_quality                  # 1M rows, 3 epochs
    python -m tools.bench_quality --quick          # tiny, for the test suite
"""

from __future__ import annotations

import argparse
import os
import sys

from .measure import machine
from .synth import write_csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data", default="data/bench")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.epochs = 20_000, 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ingest import IngestConfig, ingest
    from trainer.run import RunConfig, train

    os.makedirs(args.data, exist_ok=True)
    lines = [f"machine: {machine()}", "",
             f"| input ({args.rows:,} rows) | ingest | validation accuracy after {args.epochs} epochs |",
             "|---|---|---|"]
    for sort, shuffle in ((False, True), (True, True), (True, False)):
        csv_path = os.path.join(args.data, f"quest_{args.rows}{'_sorted' if sort else ''}.csv")
        if not os.path.exists(csv_path):
            write_csv(csv_path, args.rows, seed=0, sort_by_label=sort)
        tag = f"{'sorted' if sort else 'plain'}_{'shuffle' if shuffle else 'noshuffle'}"
        store = os.path.join(args.data, f"quality_{tag}_{args.rows}.zarr")
        ingest(IngestConfig([csv_path], store, label="clear", val_fraction=0.1, shuffle=shuffle, overwrite=True,
                            progress=False))
        run_dir = os.path.join(args.data, f"run_{tag}")
        import shutil
        shutil.rmtree(run_dir, ignore_errors=True)
        metrics = train(RunConfig(store, run_dir, epochs=args.epochs, verbose=0))
        lines.append(f"| {'sorted by clear' if sort else 'as generated'} | "
                     f"{'default (shuffle)' if shuffle else '--no-shuffle'} | {metrics['accuracy']:.4f} |")
        shutil.rmtree(store, ignore_errors=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
