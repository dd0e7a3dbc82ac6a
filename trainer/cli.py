"""``trainer``: train Keras models from a store, evaluate them, predict with them.

Thin wrapper over :mod:`trainer.run`; user errors become one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EPILOG = """\
examples:
  trainer run quest.zarr --out runs/quest --epochs 3
  trainer run quest.zarr --out runs/wide --model trainer.example_model:build --features level,difficulty,f00
  trainer run quest.zarr --out runs/quest --epochs 3 --resume      # after a crash: continue
  trainer evaluate runs/quest quest.zarr --split validation
  trainer predict runs/quest quest.zarr --out predictions.csv
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trainer", description=__doc__.splitlines()[0].split(": ", 1)[1], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,evaluate,predict}")
    run = sub.add_parser("run", help="train a model from a store", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("store", metavar="STORE", help="store made by `ingest`")
    run.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (model, history, metrics, ...)")
    run.add_argument("--label", metavar="COL", help="label column (default: the store's label)")
    run.add_argument("--features", metavar="A,B,...", help="feature columns (default: all but the label)")
    run.add_argument("--epochs", type=int, default=3, metavar="N", help="epochs (default 3)")
    run.add_argument("--batch-size", type=int, metavar="N", help="a multiple of the store's chunk rows (default: "
                                                                 "the chunk rows)")
    run.add_argument("--workers", type=int, default=2, metavar="N",
                     help="loader processes (or threads), decoding windows ahead of training (default 2)")
    run.add_argument("--loader", choices=("processes", "threads"), default="processes",
                     help="processes (default: decode into shared memory, nothing pickled, no GIL contention with "
                          "the training loop; measured fastest) or threads (no process start, no /dev/shm)")
    run.add_argument("--use-multiprocessing", action="store_const", dest="loader", const="processes",
                     help="same as --loader processes (Keras' name)")
    run.add_argument("--model", default="mlp", metavar="mlp|MODULE:FUNCTION",
                     help="mlp (default) or a function receiving a trainer.model.ModelSpec and returning a model")
    run.add_argument("--seed", type=int, default=0, metavar="N", help="seed of weights and batch order (default 0)")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted run from its last backup (mid-epoch, see --save-every)")
    run.add_argument("--save-every", default="10m", metavar="N|DURATION",
                     help="back up the training state every N batches or every DURATION (90s, 10m, 1h) and at each "
                          "epoch's end, for --resume (default 10m; 0: epoch ends only)")
    run.add_argument("--steps-per-execution", type=int, metavar="N",
                     help="batches per call into the compiled training step (default: see README, Performance)")
    run.add_argument("--learning-rate", type=float, default=1e-3, metavar="X", help="Adam learning rate (1e-3)")
    run.add_argument("--mixed-precision", action="store_true", help="float16 compute (for GPUs that support it)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, text in (("evaluate", "metrics of a run's model on a store split"),
                       ("predict", "write predictions of a run's model for a store split")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("run_dir", metavar="RUN_DIR")
        cmd.add_argument("store", metavar="STORE")
        cmd.add_argument("--split", default="validation", help="split (default validation)")
        cmd.add_argument("--workers", type=int, default=2, metavar="N", help="loader threads (default 2)")
        if name == "predict":
            cmd.add_argument("--out", required=True, metavar="PATH", help="CSV file, or a .zarr array")
    return p


def run_config(args: argparse.Namespace):
    from .run import RunConfig
    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    return RunConfig(store=args.store, out=args.out, label=args.label, features=features, epochs=args.epochs,
                     batch_size=args.batch_size, workers=args.workers, use_multiprocessing=args.loader == "processes",
                     model=args.model, seed=args.seed, resume=args.resume, learning_rate=args.learning_rate,
                     mixed_precision=args.mixed_precision, steps_per_execution=args.steps_per_execution,
                     save_every=args.save_every, verbose=0 if args.quiet else "auto")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # honoured by older TensorFlow releases; see entry()
    from store import StoreError, from_os_error
    try:
        if args.command == "run":
            from .run import train
            metrics = train(run_config(args))
            from .distribution import cluster_from_env
            cluster = cluster_from_env()
            where = args.out if cluster is None or cluster.chief else "the chief's run directory"
            which = "validation" if _has_validation(args.out, cluster) else "training (no validation split)"
            print(f"trainer: finished; {which} metrics {json.dumps(metrics)}; files in {where}", file=sys.stderr)
        elif args.command == "evaluate":
            from .run import evaluate
            print(json.dumps(evaluate(args.run_dir, args.store, args.split, args.workers)))
        else:
            from .run import predict
            path = predict(args.run_dir, args.store, args.out, args.split, args.workers)
            print(f"trainer: predictions written to {path}", file=sys.stderr)
    except StoreError as exc:
        print(f"trainer: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the environment, not the code: a path through a file, permissions, a full disk
        print(f"trainer: error: {from_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trainer: interrupted; run the same command with --resume to continue", file=sys.stderr)
        return 130
    return 0


def _has_validation(out: str, cluster) -> bool:
    if cluster is not None and not cluster.chief:
        return True
    try:
        with open(os.path.join(out, "history.csv"), encoding="utf-8") as f:
            header, first = f.readline(), f.readline()
    except OSError:
        return True
    values = dict(zip(header.strip().split(","), first.strip().split(",")))
    return values.get("val_loss", "NA") not in ("", "NA")


def entry() -> None:
    """The console command. Native libraries write to file descriptor 2 behind Python's back (TensorFlow 2.21's C++
    logging ignores TF_CPP_MIN_LOG_LEVEL, and logs every exception raised inside a ``tf.data`` generator with its
    traceback), which would bury the one-line errors: their output goes to a temporary log file instead, kept and
    named when the command fails unexpectedly, removed otherwise. ``TRAINER_NATIVE_STDERR=1`` shows it instead;
    a fatal signal still prints Python's traceback (faulthandler) on the real stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("TRAINER_NATIVE_STDERR") == "1":
        sys.exit(main())
    import faulthandler
    import tempfile
    import traceback

    log = tempfile.NamedTemporaryFile(prefix="trainer-native-", suffix=".log", delete=False)
    real = os.dup(2)
    os.dup2(log.fileno(), 2)
    log.close()
    sys.stderr = open(real, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    faulthandler.enable(sys.stderr)
    keep = False
    try:
        code = main()
    except SystemExit as exc:  # argparse: --help, usage errors
        code = exc.code
    except BaseException:  # noqa: BLE001 - a bug: the traceback, and where the native messages are
        traceback.print_exc()
        print(f"trainer: TensorFlow's / XLA's own messages are in {log.name}", file=sys.stderr)
        code, keep = 1, True
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)
        if not keep:
            os.unlink(log.name)
    sys.exit(code)


if __name__ == "__main__":
    entry()
