"""Training on several workers (``TF_CONFIG``) or several GPUs, with TensorFlow's own ``tf.distribute`` engine.

- ``TF_CONFIG`` names more than one task: :class:`tf.distribute.MultiWorkerMirroredStrategy`. Keras 3's ``fit``
  fails under that strategy (keras issue 20585; here with Keras 3.15 / TF 2.21: "Attempt to convert a value
  (PerReplica...) to a Tensor"), so :func:`train_multi_worker` drives it with a custom step loop: each step runs
  ``strategy.run`` on the worker's own batch, Keras' optimizer all-reduces (sums) the gradients, and the loss is
  scaled by the global batch. Each worker reads a disjoint, equally long share of each epoch's chunks
  (``BatchSource(share=...)``); no worker reads every batch. Validation: each worker evaluates its share of the
  validation chunks (all of them, none twice) and the metrics' states are summed across workers; the training
  metrics likewise, so ``history.csv`` has the columns of a single-process run (trainer.model.HEADS). The chief (task
  ``chief``, else worker 0) alone writes the run directory; every worker needs the store (a shared filesystem or
  object storage), and ``--resume`` needs the run directory shared too.
- No ``TF_CONFIG`` and more than one GPU: :class:`tf.distribute.MirroredStrategy` with Keras' ``fit`` (supported
  on one host), each batch split across the GPUs.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass

import keras
import numpy as np

from store import OptionError, StoreError

from . import rundir
from .model import build_model, loss_for, metrics_for, spec_for

__all__ = ["Cluster", "ClusterError", "cluster_from_env", "mirrored_strategy", "train_multi_worker"]


@dataclass(frozen=True)
class Cluster:
    """This process's place in a TF_CONFIG cluster: ``index`` among ``count`` workers, and whether it is chief."""

    index: int
    count: int
    chief: bool


def cluster_from_env(environ=os.environ) -> Cluster | None:
    """The cluster TF_CONFIG describes, or None when it is unset or names a single task."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise OptionError(f"TF_CONFIG is not valid ({type(exc).__name__}: {exc}); expected "
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}') \
            from None
    order = [t for t in ("chief", "worker") if t in cluster]  # the training tasks, chief first
    tasks = [(t, i) for t in order for i in range(len(cluster[t]))]
    if (kind, index) not in tasks:
        raise OptionError(f"TF_CONFIG: task {kind} {index} is not in the cluster {sorted(cluster)}; "
                          "multi-worker training runs on 'chief' and 'worker' tasks")
    if len(tasks) == 1:
        return None
    return Cluster(tasks.index((kind, index)), len(tasks), chief=tasks.index((kind, index)) == 0)


def mirrored_strategy():
    """MirroredStrategy when the TensorFlow backend sees several GPUs, else None (other backends: one device;
    JAX's sharding is not supported yet)."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return None


# -- the multi-worker loop -----------------------------------------------------------------------------------------

def _unpack(batch):
    x, y = batch[0], batch[1]
    w = batch[2] if len(batch) > 2 else np.ones(len(y), np.float32)
    return x, y, w


def _batches(seq):
    """``seq[0], seq[1], ...`` in order (the sequence loads ahead itself)."""
    for i in range(len(seq)):
        yield seq[i]


class _AllReduce:
    """Sum numpy arrays over all workers (one collective per call; every worker must call it alike)."""

    def __init__(self, strategy):
        import tensorflow as tf
        self.tf, self.strategy = tf, strategy

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        tf = self.tf
        flat = np.concatenate([np.asarray(a, np.float32).ravel() for a in arrays])
        values = self.strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(flat))
        total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None).numpy()
        out, start = [], 0
        for a in arrays:
            size = int(np.size(a))
            out.append(total[start:start + size].reshape(np.shape(a)))
            start += size
        return out


def _evaluate(model, seq, task, loss_fn, all_reduce: _AllReduce) -> dict:
    """Metrics over the whole split: each worker its share, then the metric states summed across workers."""
    metrics = metrics_for(task)
    loss_sum = weight_sum = 0.0
    for batch in _batches(seq):
        x, y, w = _unpack(batch)
        pred = model(x, training=False)
        target = _target(task, y, pred)
        loss_sum += float(np.sum(np.asarray(loss_fn(target, pred)) * w))
        weight_sum += float(np.sum(w))
        _update(metrics, target, pred, w)
    loss_sum, weight_sum = _summed(metrics, all_reduce, [loss_sum, weight_sum])
    return {"loss": float(loss_sum / max(weight_sum, 1e-12))} | {m.name: float(m.result()) for m in metrics}


def _target(task, y, pred):
    return np.reshape(y, (len(y),) + tuple(pred.shape[1:])) if task.kind != "multiclass" else y


def _update(metrics: list, target, pred, w) -> None:
    for m in metrics:
        m.update_state(target, pred, sample_weight=w)


def _summed(metrics: list, all_reduce: _AllReduce, extra: list[float]) -> np.ndarray:
    """Sum the metrics' states (and ``extra`` numbers) over the workers, in place; returns the summed extras."""
    variables = [v for m in metrics for v in m.variables]
    reduced = all_reduce([v.numpy() for v in variables] + [np.array(extra, np.float64)])
    for v, value in zip(variables, reduced[:-1]):
        v.assign(value.astype(v.dtype))
    return reduced[-1]


def train_multi_worker(cfg, cluster: Cluster, sequences) -> dict:
    """``trainer run`` under MultiWorkerMirroredStrategy (see the module docstring); returns validation metrics.

    When another worker stops (its own error, a kill, a lost host), TensorFlow aborts the collectives of the others
    within seconds; that becomes a one-line ClusterError here instead of a traceback or a hang.
    """
    if keras.backend.backend() != "tensorflow":
        raise OptionError(f"multi-worker training (TF_CONFIG) needs the TensorFlow backend, not "
                          f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow, or unset TF_CONFIG")
    import tensorflow as tf
    try:
        return _train_multi_worker(cfg, cluster, tf.distribute.MultiWorkerMirroredStrategy(), sequences)
    except tf.errors.OpError as exc:
        first = str(exc.message).strip().splitlines()[0] if exc.message else type(exc).__name__
        raise ClusterError(f"worker {cluster.index} of {cluster.count}: the cluster stopped ({type(exc).__name__}: "
                           f"{first[:200]}); another worker failed or is unreachable — see its error, fix it, then "
                           "re-run every worker with --resume") from None


class ClusterError(StoreError):
    """Multi-worker training stopped because another worker failed or cannot be reached."""


def _train_multi_worker(cfg, cluster: Cluster, strategy, sequences) -> dict:
    import tensorflow as tf

    if cfg.mixed_precision:
        raise OptionError("--mixed-precision is not supported with multi-worker training (TF_CONFIG) yet")
    keras.utils.set_random_seed(cfg.seed)
    label, train_seq, val_seq = sequences(cfg, share=(cluster.index, cluster.count))
    held = None
    try:
        if cluster.chief:
            rundir.prepare(cfg.out, cfg.resume)
            held = rundir.lock(cfg.out)  # the chief alone writes the run directory, one cluster at a time
        spec = spec_for(train_seq.source)
        task = spec.task
        # its optimizer is saved with every checkpoint; one step per execution: this loop calls each step itself
        model = build_model(spec, cfg.model, learning_rate=cfg.learning_rate, strategy=strategy)
        optimizer = model.optimizer
        with strategy.scope():  # its slots too: the step function must not create variables
            optimizer.build(model.trainable_variables)
        if cluster.chief:  # before the checkpoint is loaded: --resume of another run stops with one line
            rundir.write_config(cfg, label, spec, model, workers_in_cluster=cluster.count)
        loss_fn = loss_for(task, reduction=None)
        start = _restore(cfg, model)
        all_reduce = _AllReduce(strategy)
        if all_reduce([np.array([start])])[0][0] != start * cluster.count:  # every worker must agree
            raise OptionError(f"--resume: the workers found different checkpoints in {cfg.out} (this one would "
                              f"start at epoch {start + 1}); put the run directory on a filesystem every worker "
                              "sees")
        global_batch = float(train_seq.source.batch_size * cluster.count)

        def replica_step(x, y, w):
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                target = tf.reshape(y, tf.shape(pred)) if task.kind != "multiclass" else y
                loss = tf.reduce_sum(loss_fn(target, pred) * w) / global_batch
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))  # Keras sums them across workers
            return loss, pred

        @tf.function(reduce_retracing=True)
        def step(x, y, w):
            loss, pred = strategy.run(replica_step, args=(x, y, w))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None), pred

        history_path = os.path.join(cfg.out, rundir.HISTORY)
        row, validation = {}, None
        for epoch in range(start, cfg.epochs):
            train_seq.set_epoch(epoch)
            metrics, losses = metrics_for(task), []
            for batch in _batches(train_seq):
                x, y, w = _unpack(batch)
                loss, pred = step(x, y, w)
                losses.append(float(loss))
                pred = strategy.experimental_local_results(pred)[0].numpy()
                _update(metrics, _target(task, y, pred), pred, w)  # this worker's share, summed below
            _summed(metrics, all_reduce, [])
            row = {"epoch": epoch, "loss": float(np.mean(losses))} | {m.name: float(m.result()) for m in metrics}
            if val_seq is not None:
                validation = _evaluate(model, val_seq, task, loss_fn, all_reduce)
                row |= {f"val_{k}": v for k, v in validation.items()}
            if cluster.chief:
                rundir.check_space(cfg.out, model)
                rundir.save_model(model, os.path.join(cfg.out, "checkpoints", f"epoch_{epoch + 1:03d}.keras"))
                rundir.append_history(history_path, row)
            if cfg.verbose:
                print(f"worker {cluster.index}/{cluster.count} epoch {epoch + 1}/{cfg.epochs} "
                      + " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"), flush=True)
        if not row:  # resumed after the last epoch: every worker sees the run directory (the start check)
            row = rundir.last_epoch(cfg.out)
            if val_seq is not None:  # the restored weights
                validation = _evaluate(model, val_seq, task, loss_fn, all_reduce)
        metrics = rundir.final_metrics(row, validation)
        if cluster.chief:
            rundir.finish(cfg.out, model, task, metrics)
        return metrics
    finally:
        if held is not None:
            held.release()
        train_seq.close()
        if val_seq is not None:
            val_seq.close()


def _restore(cfg, model) -> int:
    """With --resume: load the newest epoch checkpoint the chief wrote — the weights and the optimizer's state (the
    model is compiled with its optimizer, which Keras saves with it); returns the epoch to start from."""
    if not cfg.resume:
        return 0
    done = sorted(glob.glob(os.path.join(glob.escape(cfg.out), "checkpoints", "epoch_*.keras")))
    if not done:
        return 0
    model.load_weights(done[-1])
    return int(re.search(r"epoch_(\d+)\.keras$", done[-1]).group(1))
