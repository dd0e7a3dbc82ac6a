"""``train``, ``evaluate`` and ``predict``: plain functions behind the ``trainer`` command.

A run directory holds ``config.json`` (the resolved configuration), ``model.keras`` (final model),
``checkpoints/epoch_NNN.keras``, ``history.csv`` (one row per epoch, Keras CSVLogger columns), ``metrics.json``
(final validation metrics), ``learning_curve.png``, ``logs/`` (TensorBoard) and, while training, ``backup/``
(Keras BackupAndRestore, which ``--resume`` continues from).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field

import keras
import numpy as np

from store import open_store
from store.errors import DiskFullError, OptionError, OutputExistsError

from .distribution import cluster_from_env, strategy_for, train_multi_worker
from .model import compile_for, default_model, load_model_function, spec_for
from .plot import learning_curve_png
from .sequence import StoreSequence

__all__ = ["RunConfig", "train", "evaluate", "predict"]


@dataclass
class RunConfig:
    """Everything a training run needs (CLI flags map one to one; defaults documented in ``trainer run --help``)."""

    store: str
    out: str
    label: str | None = None
    features: list[str] | None = None
    epochs: int = 3
    batch_size: int | None = None
    workers: int = 1
    use_multiprocessing: bool = False
    model: str = "mlp"
    seed: int = 0
    resume: bool = False
    learning_rate: float = 1e-3
    mixed_precision: bool = False
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
        if not 0 <= self.seed < 2**32:
            raise OptionError(f"--seed must be in [0, 2**32), got {self.seed}")
        if not str(self.out).strip():
            raise OptionError("--out is empty; name the run directory to create, e.g. --out runs/first")


def _sequences(cfg: RunConfig, shard: tuple[int, int] = (0, 1)):
    store = open_store(cfg.store)
    label = cfg.label if cfg.label is not None else store.label
    if label is None:
        raise OptionError(f"{cfg.store} has no label column; pass --label COL")
    common = dict(label=label, features=cfg.features, batch_size=cfg.batch_size, workers=cfg.workers,
                  use_multiprocessing=cfg.use_multiprocessing, shard=shard)
    train_seq = StoreSequence(cfg.store, "train", shuffle=True, seed=cfg.seed, **common)
    val_seq = None
    if store.rows.get("validation"):
        val_seq = StoreSequence(cfg.store, "validation", shuffle=False, **common)
    return label, train_seq, val_seq


def train(cfg: RunConfig) -> dict:
    """Train as ``cfg`` says; returns the final validation (or training) metrics.

    With TF_CONFIG naming several workers this is multi-worker training, and with several GPUs mirrored training
    (see :mod:`trainer.distribution`).
    """
    cluster = cluster_from_env()
    strategy = strategy_for(cluster)
    if cluster is not None:
        return train_multi_worker(cfg, cluster, strategy)
    _prepare_run_dir(cfg)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    label, train_seq, val_seq = _sequences(cfg)
    spec = spec_for(train_seq.source)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():  # several GPUs: mirrored
        model = default_model(spec) if cfg.model == "mlp" else load_model_function(cfg.model)(spec)
        if not model.compiled:
            compile_for(model, spec.task, cfg.learning_rate)
    resolved = dataclasses.asdict(cfg) | {"label": label, "features": list(spec.numeric + spec.categorical),
                                          "task": dataclasses.asdict(spec.task)}
    _write_json(os.path.join(cfg.out, "config.json"), resolved)
    try:
        model.fit(train_seq, validation_data=val_seq, epochs=cfg.epochs, shuffle=False, verbose=cfg.verbose,
                  callbacks=_callbacks(cfg, train_seq))
        _check_space(cfg.out, model)
        model.save(os.path.join(cfg.out, "model.keras"))
        history = _clean_history(os.path.join(cfg.out, "history.csv"))
        metrics = _final_metrics(model, val_seq, history)
        _write_json(os.path.join(cfg.out, "metrics.json"), metrics)
        learning_curve_png(os.path.join(cfg.out, "learning_curve.png"), history)
        return metrics
    finally:
        train_seq.close()
        if val_seq is not None:
            val_seq.close()


def _prepare_run_dir(cfg: RunConfig) -> None:
    if os.path.exists(cfg.out) and os.listdir(cfg.out) and not cfg.resume:
        raise OutputExistsError(f"{cfg.out} already holds a run; pass --resume to continue it or choose another "
                                "--out", path=cfg.out)
    os.makedirs(os.path.join(cfg.out, "checkpoints"), exist_ok=True)


def _check_space(out: str, model) -> None:
    """Refuse with a one-line error before a save could fill the disk: h5py (Keras' weight files) can crash the
    process on ENOSPC, and a half-written checkpoint is worse than none. An epoch saves a checkpoint and a backup,
    each about the weights plus the optimizer's slots (3x the weights for Adam)."""
    weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
    need = 2 * 3 * weights + (1 << 20)
    free = shutil.disk_usage(out).free
    if free < need:
        raise DiskFullError(f"no space left on device for the run directory {out}: {free / 2**20:.1f} MiB free, "
                            f"an epoch's checkpoint and backup need about {need / 2**20:.1f} MiB; free space and "
                            "re-run the same command with --resume", path=out)


class _SpaceCheck(keras.callbacks.Callback):
    """Runs first at the start and at each epoch end, before the callbacks that save (see _check_space)."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out

    def on_train_begin(self, logs=None):
        _check_space(self.out, self.model)

    def on_epoch_end(self, epoch, logs=None):
        _check_space(self.out, self.model)


class _EpochSync(keras.callbacks.Callback):
    """Give the training sequence the true epoch number, also after --resume, so the order is reproducible."""

    def __init__(self, seq: StoreSequence):
        super().__init__()
        self.seq = seq

    def on_epoch_begin(self, epoch, logs=None):
        self.seq.set_epoch(epoch)


def _callbacks(cfg: RunConfig, train_seq: StoreSequence) -> list:
    out = cfg.out
    callbacks = [
        _SpaceCheck(out),
        keras.callbacks.BackupAndRestore(os.path.join(out, "backup")),
        _EpochSync(train_seq),
        keras.callbacks.ModelCheckpoint(os.path.join(out, "checkpoints", "epoch_{epoch:03d}.keras")),
        keras.callbacks.CSVLogger(os.path.join(out, "history.csv"), append=True),
    ]
    callbacks.append(keras.callbacks.TensorBoard(os.path.join(out, "logs"), write_graph=False))
    return callbacks


def _clean_history(path: str) -> dict[str, list[float]]:
    """Keep one row per epoch (the last: a resumed epoch is logged again) and return the columns."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_epoch = {int(r["epoch"]): r for r in rows}
    rows = [by_epoch[e] for e in sorted(by_epoch)]
    if rows:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}


def _final_metrics(model, val_seq, history) -> dict:
    if val_seq is None:
        return {k: v[-1] for k, v in history.items() if k != "epoch"}
    return {k: float(v) for k, v in model.evaluate(val_seq, verbose=0, return_dict=True).items()}


def _write_json(path: str, data: dict) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False, default=str)
    os.replace(path + ".tmp", path)


def _load_run(run_dir: str):
    path = os.path.join(run_dir, "config.json")
    model_path = os.path.join(run_dir, "model.keras")
    if not os.path.exists(path) or not os.path.exists(model_path):
        raise OptionError(f"{run_dir}: not a finished run (config.json or model.keras missing); train with "
                          "`trainer run STORE --out RUN_DIR` first")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    return cfg, keras.models.load_model(model_path)


def evaluate(run_dir: str, store: str, split: str = "validation", workers: int = 2) -> dict:
    """Metrics of a run's final model on ``split`` of ``store``."""
    cfg, model = _load_run(run_dir)
    seq = StoreSequence(store, split, label=cfg["label"], features=cfg["features"], shuffle=False,
                        batch_size=cfg.get("batch_size"), workers=workers)
    try:
        return {k: float(v) for k, v in model.evaluate(seq, verbose=0, return_dict=True).items()}
    finally:
        seq.close()


def predict(run_dir: str, store: str, out: str, split: str = "validation", workers: int = 2) -> str:
    """Predictions of a run's final model for every row of ``split`` in store order: a CSV (one column per output,
    ``p_<class>`` for classifiers) or, when ``out`` ends in ``.zarr``, a Zarr array ``[rows, outputs]``."""
    cfg, model = _load_run(run_dir)
    seq = StoreSequence(store, split, label=None, features=cfg["features"], shuffle=False,
                        batch_size=cfg.get("batch_size"), workers=workers)
    try:
        values = np.asarray(model.predict(seq, verbose=0), dtype=np.float32).reshape(seq.source.rows, -1)
    finally:
        seq.close()
    names = _output_names(cfg["task"], values.shape[1])
    if out.endswith(".zarr"):
        import zarr
        arr = zarr.create_array(out, shape=values.shape, dtype="float32", chunks=(65536, values.shape[1]),
                                dimension_names=["row", "output"], attributes={"columns": names}, overwrite=True)
        arr[:] = values
    else:
        with open(out, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["row", *names])
            for i, row in enumerate(values):
                writer.writerow([i, *(f"{v:.7g}" for v in row)])
    return out


def _output_names(task: dict, width: int) -> list[str]:
    if task["kind"] == "binary":
        return [f"p_{(task.get('names') or ['0', '1'])[-1]}"]
    if task["kind"] == "multiclass":
        return [f"p_{n}" for n in task["names"]][:width]
    return [task["label"]]
