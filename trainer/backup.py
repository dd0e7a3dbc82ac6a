"""Backups of a run in progress, so that ``trainer run --resume`` continues from the last saved *step*.

At 100 GB an epoch is hours long; Keras' ``BackupAndRestore`` restores only the epoch number. A backup here is
``RUN/backup/``:

- ``state-N.weights.h5``: the model's and the optimizer's variables (``model.save_weights``);
- ``state-N.metrics.npz``: the running values of the epoch's metrics (loss, accuracy, ...), so the resumed epoch
  logs one row covering the whole epoch, and the model's non-trainable variables, which include the dropout
  layers' random generators (``save_weights`` leaves them out), so the resumed run draws the same masks;
- ``state.json``: ``{"epoch": e, "step": s, "serial": N}`` — written last, atomically and durably: it is the
  commit point. A crash at any moment leaves the previous complete backup in force.

``step`` counts the batches of epoch ``e`` already trained; the resumed run trains batches ``s .. end`` of that
epoch (the sequence skips the first ``s``, see :meth:`trainer.feed.BatchFeed.set_epoch`) and then the remaining
epochs, so every batch is trained once per epoch.
"""

from __future__ import annotations

import glob
import io
import os
import re
import time
import warnings
from dataclasses import dataclass

import keras
import numpy as np

from store import OptionError, fsync_dir, fsync_file, write_atomic

from .rundir import check_space, read_json, write_json

__all__ = ["Backup", "BackupState", "BackupCallback", "RestoreMetrics", "parse_save_every"]

_STATE = "state.json"


@dataclass(frozen=True)
class BackupState:
    """Epoch ``epoch`` with ``step`` of its batches trained; ``weights``, ``metrics`` and the non-trainable
    ``variables`` as saved then."""

    epoch: int
    step: int
    weights: str
    metrics: list[np.ndarray] | None
    variables: list[np.ndarray] | None = None

    def restore_variables(self, model) -> None:
        """Put back the non-trainable variables (random generators' states among them) if the model matches."""
        targets = model.non_trainable_variables
        if self.variables is None or len(targets) != len(self.variables):
            return
        for variable, value in zip(targets, self.variables):
            if tuple(variable.shape) == value.shape:
                variable.assign(value)


class Backup:
    """The ``backup/`` folder of a run directory."""

    def __init__(self, run_dir: str):
        self.dir = os.path.join(run_dir, "backup")
        self.serial = 0

    def load(self) -> BackupState | None:
        """The last committed backup, or None."""
        path = os.path.join(self.dir, _STATE)
        if not os.path.exists(path):
            return None
        state = read_json(path)
        try:
            epoch, step, serial = int(state["epoch"]), int(state["step"]), int(state["serial"])
        except (KeyError, TypeError, ValueError):
            raise OptionError(f"{path} is damaged; remove {self.dir} to resume from the last epoch checkpoint "
                              "instead", path=path) from None
        if epoch < 0 or step < 0:
            raise OptionError(f"{path} is damaged (epoch {epoch}, step {step}); remove {self.dir} to resume from the "
                              "last epoch checkpoint instead", path=path)
        self.serial = serial
        weights = self._path(serial, "weights.h5")
        metrics_path = self._path(serial, "metrics.npz")
        metrics = variables = None
        if os.path.exists(metrics_path):
            with np.load(metrics_path) as data:
                metrics = [data[k] for k in sorted((k for k in data.files if k[0] == "m"), key=_number)]
                variables = [data[k] for k in sorted((k for k in data.files if k[0] == "v"), key=_number)]
        return BackupState(epoch, step, weights, metrics, variables)

    def save(self, model, epoch: int, step: int) -> None:
        """Back up ``model`` (weights, optimizer, running metrics) as ``step`` batches into ``epoch``."""
        os.makedirs(self.dir, exist_ok=True)
        check_space(os.path.dirname(self.dir), model)
        serial = self.serial + 1
        weights = self._path(serial, "weights.h5")
        model.save_weights(weights, overwrite=True)
        fsync_file(weights)
        buffer = io.BytesIO()
        arrays = {f"m{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.metrics_variables)}
        arrays |= {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.non_trainable_variables)}
        np.savez(buffer, **arrays)
        write_atomic(self._path(serial, "metrics.npz"), buffer.getvalue())
        write_json(os.path.join(self.dir, _STATE), {"epoch": epoch, "step": step, "serial": serial})
        self.serial = serial
        for old in glob.glob(os.path.join(glob.escape(self.dir), "state-*.*")):
            match = re.search(r"state-(\d+)\.", os.path.basename(old))
            if match and int(match.group(1)) != serial:
                os.remove(old)
        fsync_dir(self.dir)

    def _path(self, serial: int, suffix: str) -> str:
        return os.path.join(self.dir, f"state-{serial:06d}.{suffix}")


def _number(key: str) -> int:
    return int(key[1:])


class BackupCallback(keras.callbacks.Callback):
    """Back up every ``every_steps`` batches or ``every_seconds`` seconds (whichever is given) and at the end of
    every epoch. ``steps``: batches per epoch; ``skip``: batches of the first epoch trained before this fit (a
    resumed epoch), so that saved steps count from the epoch's start. Put it after the callbacks that log the epoch
    (CSVLogger), so a backup never claims an epoch whose row is not written yet."""

    def __init__(self, backup: Backup, *, steps: int, every_steps: int | None = None,
                 every_seconds: float | None = None, skip: int = 0):
        super().__init__()
        self.backup, self.every_steps, self.every_seconds = backup, every_steps, every_seconds
        self.steps, self.skip, self.epoch = steps, skip, 0
        self._saved_step, self._saved_at = skip, time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._saved_step = self.skip
        self._saved_at = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        step = self.skip + batch + 1
        if step >= self.steps:  # the epoch's last batches: its end (after validation and its row) backs it up
            return
        due = (self.every_steps and step - self._saved_step >= self.every_steps) or \
            (self.every_seconds and time.monotonic() - self._saved_at >= self.every_seconds)
        if due:
            self.backup.save(self.model, self.epoch, step)  # `self.model` syncs JAX's state first
            self._saved_step, self._saved_at = step, time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.backup.save(self.model, epoch + 1, 0)
        self.skip = 0


class RestoreMetrics(keras.callbacks.Callback):
    """At the start of the resumed epoch (after Keras reset the metrics), put back their running values."""

    def __init__(self, epoch: int, values: list[np.ndarray]):
        super().__init__()
        self.epoch, self.values = epoch, values

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self.epoch or self.values is None:
            return
        variables = self.model.metrics_variables
        if len(variables) != len(self.values) or any(tuple(v.shape) != a.shape for v, a in
                                                      zip(variables, self.values)):
            warnings.warn("the resumed epoch's metrics start afresh: the model's metrics do not match the backup's",
                          stacklevel=2)
            return
        for variable, value in zip(variables, self.values):
            variable.assign(value)


def parse_save_every(text: str) -> tuple[int | None, float | None]:
    """``--save-every``: ``N`` batches, or a duration ``90s`` / ``10m`` / ``1h``; ``0`` saves at epoch ends only.
    Returns (steps, seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match:
        raise OptionError(f"--save-every {text!r}: expected a number of batches (e.g. 5000) or a duration "
                          "(90s, 10m, 1h); 0 saves at the end of each epoch only")
    value, unit = float(match.group(1)), match.group(2)
    if not unit:
        if value != int(value):
            raise OptionError(f"--save-every {text!r}: a number of batches is a whole number")
        return (int(value) or None), None
    return None, (value * {"s": 1, "m": 60, "h": 3600}[unit]) or None
