"""The run directory: what ``trainer run`` writes and reads back, shared by every training mode.

``config.json`` (the resolved configuration; also this tool's marker: only a folder holding one is ever continued
or written into by ``--resume``), ``model.keras``, ``checkpoints/epoch_NNN.keras``, ``history.csv`` (one row per
epoch), ``metrics.json``, ``learning_curve.png``, ``logs/`` (TensorBoard, when TensorFlow is installed) and, while
training, ``backup/`` (:mod:`trainer.backup`, what ``--resume`` continues from).

Every training mode (one process with Keras' ``fit``; several workers with :mod:`trainer.distribution`'s loop)
starts a run with :func:`prepare`, :func:`lock` and :func:`write_config`, and ends it with :func:`finish`, so the
files are the same whichever trained.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil

import numpy as np

from store import DiskFullError, Lock, OptionError, OutputExistsError, publish, write_atomic

from .plot import learning_curve_png

__all__ = ["CONFIG", "HISTORY", "LOCK", "prepare", "lock", "check_space", "write_json", "save_model", "read_json",
           "read_history", "clean_history", "append_history", "last_epoch", "write_config", "check_resumable",
           "final_metrics", "finish"]

CONFIG = "config.json"
HISTORY = "history.csv"
LOCK = ".trainer-lock"
_TMP = ".tmp"


def prepare(out: str, resume: bool) -> None:
    """Create the run directory, or check that ``--resume`` points at one of ours."""
    if os.path.isdir(out) and set(os.listdir(out)) - {LOCK}:  # a lock left by a killed run is not a run
        if not resume:
            raise OutputExistsError(f"{out} already holds a run; pass --resume to continue it or choose another "
                                    "--out", path=out)
        if not os.path.isfile(os.path.join(out, CONFIG)):
            raise OutputExistsError(f"{out} is not a run directory of this tool (no {CONFIG}); --resume only "
                                    "continues a run that `trainer run` started — choose another --out",
                                    path=out)
    elif os.path.exists(out) and not os.path.isdir(out):
        raise OutputExistsError(f"{out} exists and is not a directory; choose another --out", path=out)
    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)


def check_space(out: str, model) -> None:
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


def write_json(path: str, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str).encode())


def save_model(model, path: str) -> None:
    """``model.save(path)`` whole or not at all, durably (a checkpoint torn by a crash would be resumed from)."""
    tmp = f"{path[:-len('.keras')]}{_TMP}{os.getpid()}.keras"  # Keras wants the .keras suffix
    try:
        model.save(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    publish(tmp, path)


def lock(out: str) -> Lock:
    """The run directory's lock, held while training: a second ``trainer run --out DIR`` (--resume or not) stops
    with one line instead of writing the same checkpoints and backups."""
    return Lock(os.path.join(out, LOCK), f"training into {out}", made_by="trainer").acquire()


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def clean_history(path: str) -> dict[str, list[float]]:
    """Keep one row per epoch (the last: an epoch interrupted after it was logged is logged again), rewrite the
    file, and return its columns."""
    by_epoch = {int(r["epoch"]): r for r in _rows(path)}
    rows = [by_epoch[e] for e in sorted(by_epoch)]
    if rows:
        _write_rows(path, rows)
    return read_history(path)


def read_history(path: str) -> dict[str, list[float]]:
    """history.csv's columns as floats; a column with no value at all (Keras' CSVLogger writes ``NA`` for the
    validation metrics of a run without validation) is left out."""
    rows = _rows(path)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    table = {k: [_float(r.get(k)) for r in rows] for k in columns}
    return {k: v for k, v in table.items() if not all(math.isnan(x) for x in v)}


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def append_history(path: str, row: dict) -> None:
    """Add one epoch's row (dropping rows of that epoch or later, logged before a crash)."""
    rows = [r for r in _rows(path) if int(r["epoch"]) < int(row["epoch"])] + [{k: str(v) for k, v in row.items()}]
    _write_rows(path, rows)


def last_epoch(out: str) -> dict[str, float]:
    """The run's last history.csv row as floats (without its columns that have no value at all); {} if none."""
    return {k: v[-1] for k, v in read_history(os.path.join(out, HISTORY)).items() if v}


def _write_rows(path: str, rows: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), restval="",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue().encode())


def write_config(cfg, label: str, spec, model, **extra) -> dict:
    """Write ``config.json`` — every option of ``cfg`` (a ``trainer.run.RunConfig``), then what the run resolved:
    the label, the feature columns in model order, the task, the Keras backend and the model's steps per execution,
    and ``extra`` (multi-worker: ``workers_in_cluster``) — the same keys in every training mode. With ``--resume``
    it first checks that the run is the same (:func:`check_resumable`). Returns what it wrote."""
    import keras

    resolved = dataclasses.asdict(cfg) | {"label": label, "features": list(spec.numeric + spec.categorical),
                                          "task": dataclasses.asdict(spec.task), "backend": keras.backend.backend(),
                                          "steps_per_execution": model.steps_per_execution} | extra
    if cfg.resume:
        check_resumable(cfg.out, resolved)
    write_json(os.path.join(cfg.out, CONFIG), resolved)
    return resolved


def check_resumable(out: str, resolved: dict, keys=("store", "label", "features", "batch_size", "seed")) -> None:
    """``--resume`` continues the same run: refuse when an option that decides the batches changed."""
    path = os.path.join(out, CONFIG)
    if not os.path.exists(path):
        return
    old = read_json(path)
    for key in keys:
        if key in old and old[key] != resolved.get(key):
            raise OptionError(f"--resume: {out} was started with {key}={old[key]!r}, this command gives "
                              f"{resolved.get(key)!r}; resume with the same options, or start a new run with "
                              "another --out", path=out)


def final_metrics(last: dict, validation: dict | None = None) -> dict[str, float]:
    """What ``metrics.json`` holds and training returns, shaped alike in every training mode: the final model's
    validation metrics (``validation``, named as in training: ``loss``, ``accuracy``…) when there is a validation
    split, else the training metrics of the last epoch (``last``, its history.csv row); floats, ``loss`` first, then
    by name."""
    if validation is not None:
        values = dict(validation)
    else:
        values = {k: v for k, v in last.items() if k != "epoch" and not k.startswith("val_")}
    return {k: float(values[k]) for k in sorted(values, key=lambda k: (k != "loss", k))}


def finish(out: str, model, task, metrics: dict) -> None:
    """A run's last files, after its last epoch, in every training mode: the space check, ``model.keras``,
    ``metrics.json`` (``metrics``, see :func:`final_metrics`) and ``learning_curve.png`` from history.csv."""
    check_space(out, model)
    save_model(model, os.path.join(out, "model.keras"))
    write_json(os.path.join(out, "metrics.json"), metrics)
    learning_curve_png(os.path.join(out, "learning_curve.png"), read_history(os.path.join(out, HISTORY)), task)
