"""``learning_curve.png``: loss and the task's metrics per epoch, drawn with matplotlib.

One subplot per quantity (loss first), train solid and validation dashed, the best epoch (lowest ``val_loss``, else
``loss``) marked on every subplot, the run's task in the title. matplotlib is imported only here, through its
object-oriented API with the Agg canvas (no ``pyplot``: no global backend switch, no display, safe beside the
training loop), and the picture is rendered in memory and published with :func:`store.write_atomic`.
Without matplotlib the run still finishes: the picture is skipped with one warning line (``history.csv`` holds the
numbers).
"""

from __future__ import annotations

import io
import math
import sys

from store import write_atomic

__all__ = ["learning_curve_png"]

_NOT_PLOTTED = {"epoch", "learning_rate", "lr"}


def learning_curve_png(path: str, history: dict[str, list[float]], task=None) -> bool:
    """Draw ``history`` (columns of ``history.csv``: ``epoch``, ``loss``, ``val_loss``, metrics) into ``path``.

    Args:
        path: the PNG to write (replaced atomically).
        history: column name -> one value per epoch; NaN where a value is missing. ``epoch`` counts from 0.
        task: the run's :class:`trainer.task.Task` (or its dict): titles the figure and orders the metrics.

    Returns:
        True when the picture was written, False when matplotlib is not installed (one warning line on stderr).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(f"trainer: warning: matplotlib is not installed, {path} not drawn (history.csv holds the numbers); "
              "pip install matplotlib", file=sys.stderr)
        return False
    kind, label = _task_fields(task)
    names = _quantities(history, kind)
    epochs = _epochs(history)
    best = _best_epoch(history)
    figure = Figure(figsize=(6.4, 2.6 * max(len(names), 1)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(max(len(names), 1), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        _draw(ax, name, epochs, history, best)
    if not names:
        axes[0].text(0.5, 0.5, "no epoch logged", ha="center", va="center", transform=axes[0].transAxes)
    _epoch_axis(axes[-1], epochs)
    title = f"{kind} task, label {label!r}" if kind else "training run"
    figure.suptitle(title + (f" — best epoch {epochs[best]}" if best is not None else ""))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
    return True


def _epoch_axis(ax, epochs: list[int]) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    if len(epochs) == 1:  # a lone point: matplotlib would spread fractional epochs around it
        ax.set_xticks(epochs)
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _task_fields(task) -> tuple[str | None, str | None]:
    if task is None:
        return None, None
    if isinstance(task, dict):
        return task.get("kind"), task.get("label")
    return getattr(task, "kind", None), getattr(task, "label", None)


def _quantities(history: dict, kind: str | None) -> list[str]:
    """Base names to plot: loss, the task's metrics, then any other logged metric (a custom model's)."""
    logged = [k for k in history if k not in _NOT_PLOTTED and _finite(history[k])]
    bases = list(dict.fromkeys(k.removeprefix("val_") for k in logged))
    order = ["loss", *_task_metrics(kind)]
    return [n for n in order if n in bases] + [n for n in bases if n not in order]


def _task_metrics(kind: str | None) -> list[str]:
    """The metrics the task compiles (trainer.model.HEADS), in their order; none for an unknown task."""
    if kind is None:
        return []
    from .model import HEADS  # imports Keras: only here, where a run's task is drawn
    head = HEADS.get(kind)
    return [name for _cls, name in head.metrics] if head else []


def _epochs(history: dict) -> list[int]:
    """1-based epoch numbers (as in ``checkpoints/epoch_NNN.keras``), one per row."""
    rows = max((len(v) for v in history.values()), default=0)
    logged = history.get("epoch")
    if logged is not None and len(logged) == rows and all(_is_number(e) for e in logged):
        return [int(e) + 1 for e in logged]
    return list(range(1, rows + 1))


def _best_epoch(history: dict) -> int | None:
    """Row of the lowest val_loss, else of the lowest loss; None when neither has a finite value."""
    for name in ("val_loss", "loss"):
        values = [(v, i) for i, v in enumerate(history.get(name, ())) if _is_number(v)]
        if values:
            return min(values)[1]
    return None


def _draw(ax, name: str, epochs: list[int], history: dict, best: int | None) -> None:
    for key, style, role in ((name, "-", "train"), (f"val_{name}", "--", "validation")):
        values = [v if _is_number(v) else math.nan for v in history.get(key, ())]
        if _finite(values):
            ax.plot(epochs[:len(values)], values, linestyle=style, marker="o", markersize=3, label=role)
    if best is not None:
        ax.axvline(epochs[best], color="grey", linestyle=":", linewidth=1, label=f"best epoch ({epochs[best]})")
    ax.set_ylabel(name)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")


def _is_number(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _finite(values) -> bool:
    return any(_is_number(v) for v in values)
