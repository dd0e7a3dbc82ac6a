"""``train``, ``evaluate`` and ``predict``: plain functions behind the ``trainer`` command, for any Keras backend.

The run directory's files are described in :mod:`trainer.rundir`; ``--resume`` continues from the last backup
(:mod:`trainer.backup`), in the middle of an epoch if that is where it was saved.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field

import keras
import numpy as np
from tqdm import tqdm

from store import MAX_BATCH_SIZE, OptionError, StoreError, open_store

from . import rundir
from .backup import Backup, BackupCallback, BackupState, RestoreMetrics, parse_save_every
from .distribution import cluster_from_env, mirrored_strategy, train_multi_worker
from .model import build_model, load_model_function, spec_for
from .predictions import MARK as PREDICTIONS_MARK, PredictionsWriter
from .sequence import StoreSequence

__all__ = ["RunConfig", "train", "evaluate", "predict", "DEFAULT_STEPS_PER_EXECUTION"]

# Training steps per call into the backend's compiled function. Measured (README, Performance): 8 cut the in-RAM
# epoch by 17 % and the store-fed one by 23 % on the 2-core CPU (TensorFlow), and the store-fed one from 1.46x to
# 1.15x of in-RAM at batch 1000 on an H200 (JAX). Keras' PyTorch backend and MirroredStrategy need 1.
DEFAULT_STEPS_PER_EXECUTION = 8


@dataclass
class RunConfig:
    """Everything a training run needs (CLI flags map one to one; defaults documented in ``trainer run --help``)."""

    store: str
    out: str
    label: str | None = None
    features: list[str] | None = None
    epochs: int = 3
    batch_size: int | None = None
    workers: int = 2
    use_multiprocessing: bool = True
    model: str = "mlp"
    seed: int = 0
    resume: bool = False
    learning_rate: float = 1e-3
    mixed_precision: bool = False
    steps_per_execution: int | None = None
    save_every: str = "10m"
    verbose: int | str = "auto"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.epochs < 1:
            raise OptionError(f"--epochs must be >= 1, got {self.epochs}")
        if self.workers < 1:
            raise OptionError(f"--workers must be >= 1, got {self.workers}")
        if not 0 < self.learning_rate < float("inf"):
            raise OptionError(f"--learning-rate must be a positive number, got {self.learning_rate}")
        if self.batch_size is not None and self.batch_size < 1:
            raise OptionError(f"--batch-size must be a positive number of rows, got {self.batch_size}")
        if self.batch_size is not None and self.batch_size > MAX_BATCH_SIZE:
            raise OptionError(f"--batch-size {self.batch_size:,} is over the limit of {MAX_BATCH_SIZE:,} rows: a batch "
                              "is assembled whole in memory, several at a time by the loader; pass a smaller "
                              "multiple of the store's chunk rows")
        if not 0 <= self.seed < 2**32:
            raise OptionError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.steps_per_execution is not None and not 1 <= self.steps_per_execution <= 10_000:
            raise OptionError(f"--steps-per-execution must be between 1 and 10000, got {self.steps_per_execution}")
        if not str(self.out).strip():
            raise OptionError("--out is empty; name the run directory to create, e.g. --out runs/first")
        parse_save_every(self.save_every)


def sequences(cfg: RunConfig, share: tuple[int, int] = (0, 1)):
    """(label, training sequence, validation sequence or None) for ``cfg``."""
    store = open_store(cfg.store)
    label = cfg.label if cfg.label is not None else store.label
    if label is None:
        raise OptionError(f"{cfg.store} has no label column; pass --label COL")
    train_seq = _train_sequence(cfg, label, share)
    val_seq = None
    if store.rows.get("validation"):
        val_seq = StoreSequence(cfg.store, "validation", shuffle=False, **_common(cfg, label, share))
    return label, train_seq, val_seq


def _common(cfg: RunConfig, label: str, share: tuple[int, int]) -> dict:
    return dict(label=label, features=cfg.features, batch_size=cfg.batch_size, workers=cfg.workers,
                use_multiprocessing=cfg.use_multiprocessing, share=share)


def _train_sequence(cfg: RunConfig, label: str, share: tuple[int, int] = (0, 1)) -> StoreSequence:
    return StoreSequence(cfg.store, "train", shuffle=True, seed=cfg.seed, **_common(cfg, label, share))


def feed(seq):
    """What ``fit`` / ``evaluate`` / ``predict`` get: under TensorFlow a tf.data pipeline that calls Python once
    per window (:mod:`trainer.tfdata`; measured faster than Keras' per-batch wrapping), else the sequence."""
    if seq is None or keras.backend.backend() != "tensorflow":
        return seq
    from .tfdata import tf_dataset
    return tf_dataset(seq)


def train(cfg: RunConfig) -> dict:
    """Train as ``cfg`` says; returns the final validation (or training) metrics.

    With TF_CONFIG naming several workers this is multi-worker training, and with several GPUs mirrored training
    (TensorFlow backend; see :mod:`trainer.distribution`).
    """
    cluster = cluster_from_env()
    if cluster is not None:
        return train_multi_worker(cfg, cluster, sequences)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    label, train_seq, val_seq = sequences(cfg)
    held = None
    try:
        spec = spec_for(train_seq.source)
        model = _build(cfg, spec)
        rundir.prepare(cfg.out, cfg.resume)  # only now: a mistake in the options leaves nothing behind
        held = rundir.lock(cfg.out)
        rundir.write_config(cfg, label, spec, model)
        _fit(cfg, model, train_seq, val_seq, _restore(cfg, model))
        rundir.clean_history(os.path.join(cfg.out, rundir.HISTORY))
        validation = None if val_seq is None else \
            model.evaluate(feed(val_seq), verbose=0, return_dict=True)  # the final weights, whole split
        metrics = rundir.final_metrics(rundir.last_epoch(cfg.out), validation)
        rundir.finish(cfg.out, model, spec.task, metrics)
        return metrics
    except Exception as exc:
        error = _feed_error(exc, train_seq, val_seq)
        if error is exc:
            raise
        raise error from None
    finally:
        if held is not None:
            held.release()
        train_seq.close()
        if val_seq is not None:
            val_seq.close()


def _feed_error(exc: BaseException, *seqs) -> BaseException:
    """The loader's own error when the backend wrapped it (TensorFlow re-raises a generator's exception as its
    own error type with a traceback in the message): the user sees the one line that says what happened."""
    if isinstance(exc, StoreError):
        return exc
    for seq in seqs:
        if seq is not None and seq.feed.error is not None:
            return seq.feed.error
    return exc


def _build(cfg: RunConfig, spec):
    """The model (trainer.model.build_model) with this path's steps per execution."""
    strategy = mirrored_strategy()  # several GPUs under TensorFlow: MirroredStrategy, else None
    # Keras 3.15's multi-step loop fails under MirroredStrategy ("You must feed a value for placeholder tensor
    # ... while/cond/Placeholder"): one step per execution there
    one_step = "several GPUs (MirroredStrategy)" if strategy is not None else \
        "the PyTorch backend" if keras.backend.backend() == "torch" else None
    if one_step and (cfg.steps_per_execution or 1) > 1:
        raise OptionError(f"--steps-per-execution above 1 is not supported with {one_step} in Keras "
                          f"{keras.__version__}; leave it out there")
    steps = 1 if one_step else cfg.steps_per_execution or DEFAULT_STEPS_PER_EXECUTION
    model = build_model(spec, cfg.model, learning_rate=cfg.learning_rate, steps_per_execution=steps,
                        strategy=strategy)
    if cfg.steps_per_execution:  # also for a model its function compiled itself
        model.steps_per_execution = cfg.steps_per_execution
    return model


def _restore(cfg: RunConfig, model) -> BackupState | None:
    """With --resume: the model, optimizer and metrics as last backed up (mid-epoch), else as of the last epoch
    checkpoint; None when starting afresh."""
    if not cfg.resume:
        return None
    state = Backup(cfg.out).load()
    if state is not None and os.path.exists(state.weights):
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(state.weights)
        state.restore_variables(model)
        return state
    done = {int(m.group(1)): f for f in os.listdir(os.path.join(cfg.out, "checkpoints"))
            if (m := re.fullmatch(r"epoch_(\d+)\.keras", f))}
    if not done:
        return None
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(cfg.out, "checkpoints", done[max(done)]))
    return BackupState(max(done), 0, "", None)


def _fit(cfg: RunConfig, model, train_seq: StoreSequence, val_seq, state: BackupState | None) -> None:
    """One fit over the rest of a resumed epoch (its batches from the saved step on), then one over the
    remaining epochs: Keras' fit has a fixed number of steps per epoch."""
    epoch, skip = (state.epoch, state.step) if state is not None else (0, 0)
    steps = len(train_seq.source)
    if skip >= steps:
        epoch, skip = epoch + 1, 0
    backup = Backup(cfg.out)
    backup.serial = _serial(cfg.out)
    every = dict(zip(("every_steps", "every_seconds"), parse_save_every(cfg.save_every)))
    common = dict(validation_data=feed(val_seq), shuffle=False, verbose=cfg.verbose)
    if skip and epoch < cfg.epochs:
        if state.metrics is not None:
            _build_metrics(model, train_seq.source)  # so that the epoch's running metrics can be put back
        # its own sequence: what the backend reads ahead for the next epoch is dropped with it
        rest = _train_sequence(cfg, train_seq.source.label.name)
        try:
            rest.set_epoch(epoch, skip)  # before feed(): a tf.data pipeline takes its length from it
            model.fit(feed(rest), initial_epoch=epoch, epochs=epoch + 1, **common,
                      callbacks=[_Position(rest, epoch, skip), *_callbacks(cfg, backup, every, steps, skip, state)])
        finally:
            rest.close()
        epoch += 1
    if epoch < cfg.epochs:
        train_seq.set_epoch(epoch)
        model.fit(feed(train_seq), initial_epoch=epoch, epochs=cfg.epochs, **common,
                  callbacks=[_Position(train_seq, epoch, 0), *_callbacks(cfg, backup, every, steps, 0, None)])


class _Position(keras.callbacks.Callback):
    """Put the sequence at (epoch, skip) when training begins: Keras may have read a batch or a window before to
    build the model (JAX, PyTorch, tf.distribute), which must not count as part of the pass."""

    def __init__(self, seq: StoreSequence, epoch: int, skip: int):
        super().__init__()
        self.seq, self.epoch, self.skip = seq, epoch, skip

    def on_train_begin(self, logs=None):
        self.seq.set_epoch(self.epoch, self.skip)


def _build_metrics(model, source) -> None:
    """Keras builds compiled metrics at the first step (TensorFlow) or first build: build them on one batch now,
    then clear them, so that a resumed epoch's saved running values have variables to go back into."""
    batch = source.batch(0, 0)
    model.evaluate(*batch[:2], sample_weight=batch[2] if len(batch) > 2 else None, batch_size=len(batch[1]),
                   verbose=0)
    model.reset_metrics()


def _serial(out: str) -> int:
    backup = Backup(out)
    try:
        backup.load()
    except StoreError:
        pass
    return backup.serial


class _SpaceCheck(keras.callbacks.Callback):
    """Runs first at the start and at each epoch end, before the callbacks that save (see rundir.check_space)."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out

    def on_train_begin(self, logs=None):
        rundir.check_space(self.out, self.model)

    def on_epoch_end(self, epoch, logs=None):
        rundir.check_space(self.out, self.model)


class _Checkpoint(keras.callbacks.Callback):
    """``checkpoints/epoch_NNN.keras`` at each epoch's end, written whole or not at all (rundir.save_model)."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out

    def on_epoch_end(self, epoch, logs=None):
        rundir.save_model(self.model, os.path.join(self.out, "checkpoints", f"epoch_{epoch + 1:03d}.keras"))


def _callbacks(cfg: RunConfig, backup: Backup, every: dict, steps: int, skip: int,
               state: BackupState | None) -> list:
    out = cfg.out
    callbacks = [_SpaceCheck(out)]
    if state is not None and skip:
        callbacks.append(RestoreMetrics(state.epoch, state.metrics))
    callbacks += [
        _Checkpoint(out),
        keras.callbacks.CSVLogger(os.path.join(out, rundir.HISTORY), append=True),
    ]
    if importlib.util.find_spec("tensorflow") is not None:  # Keras writes TensorBoard logs through tf.summary
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(out, "logs"), write_graph=False))
    # last: an epoch's backup is written after its history row (see BackupCallback)
    callbacks.append(BackupCallback(backup, steps=steps, skip=skip, **every))
    return callbacks


def _load_run(run_dir: str):
    path = os.path.join(run_dir, rundir.CONFIG)
    model_path = os.path.join(run_dir, "model.keras")
    if not os.path.exists(path) or not os.path.exists(model_path):
        raise OptionError(f"{run_dir}: not a finished run (config.json or model.keras missing); train with "
                          "`trainer run STORE --out RUN_DIR` first")
    cfg = rundir.read_json(path)
    if cfg.get("model", "mlp") != "mlp":  # its custom layers register themselves when the module is imported
        load_model_function(cfg["model"])
    return cfg, keras.models.load_model(model_path)


def evaluate(run_dir: str, store: str, split: str = "validation", workers: int = 2,
             use_multiprocessing: bool = False) -> dict:
    """Metrics of a run's final model on ``split`` of ``store``."""
    cfg, model = _load_run(run_dir)
    seq = StoreSequence(store, split, label=cfg["label"], features=cfg["features"], shuffle=False,
                        batch_size=cfg.get("batch_size"), workers=workers, use_multiprocessing=use_multiprocessing)
    try:
        return {k: float(v) for k, v in model.evaluate(feed(seq), verbose=0, return_dict=True).items()}
    except Exception as exc:
        error = _feed_error(exc, seq)
        if error is exc:
            raise
        raise error from None
    finally:
        seq.close()




def predict(run_dir: str, store: str, out: str, split: str = "validation", workers: int = 2,
            use_multiprocessing: bool = False) -> str:
    """Predictions of a run's final model for every row of ``split`` in store order: a CSV (one column per output,
    ``p_<class>`` for classifiers) or, when ``out`` ends in ``.zarr``, a Zarr array ``[rows, outputs]``. An
    existing ``out`` is replaced only if it is a file, or a predictions array written here before. The model runs
    a window of batches at a time and each window's outputs are written before the next (bounded memory)."""
    _check_predictions_out(out, store)
    cfg, model = _load_run(run_dir)
    seq = StoreSequence(store, split, label=None, features=cfg["features"], shuffle=False,
                        batch_size=cfg.get("batch_size"), workers=workers, use_multiprocessing=use_multiprocessing)
    names = _output_names(cfg["task"])
    writer = PredictionsWriter(out, names, seq.source.rows)
    try:
        batch = seq.source.batch_size
        with tqdm(total=seq.source.rows, desc="predict", unit=" rows", unit_scale=True, disable=None,
                  dynamic_ncols=True, mininterval=0.2) as bar:  # shown on a terminal only
            for window, j, k in seq.feed.windows():
                x = {name: window[name][j * batch:(j + k) * batch] for name in ("numeric", "categorical")
                     if name in window}
                values = np.asarray(model.predict_on_batch(x), dtype=np.float32)
                writer.write(values)
                bar.update(len(values))
        return writer.close()
    except Exception as exc:
        writer.abort()
        error = _feed_error(exc, seq)
        if error is exc:
            raise
        raise error from None
    finally:
        seq.close()


def _check_predictions_out(out: str, store: str) -> None:
    """Never replace a folder that is not a predictions array of ours (the store itself, a user's data)."""
    if not os.path.exists(out):
        return
    if os.path.isdir(out):
        meta = os.path.join(out, "zarr.json")
        ours = False
        if os.path.isfile(meta):
            try:
                ours = bool(rundir.read_json(meta).get("attributes", {}).get(PREDICTIONS_MARK))
            except (ValueError, OSError, AttributeError):
                ours = False
        if not ours or os.path.realpath(out) == os.path.realpath(store):
            raise OptionError(f"--out {out} is a folder that trainer predict did not write; it will not be "
                              "replaced — choose another path", path=out)


def _output_names(task: dict) -> list[str]:
    if task["kind"] == "binary":
        return [f"p_{(task.get('names') or ['0', '1'])[-1]}"]
    if task["kind"] == "multiclass":
        return [f"p_{n}" for n in task["names"]]
    return [task["label"]]
