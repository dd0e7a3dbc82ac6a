"""learning_curve.png: a real chart (matplotlib) for any history the trainer can log, written atomically."""

from __future__ import annotations

import builtins
import math
import struct

import pytest

from trainer.plot import learning_curve_png
from trainer.task import Task

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAN = math.nan


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82")
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("history, task, panels", [
    ({"epoch": [0, 1, 2], "loss": [0.7, 0.5, 0.4], "accuracy": [0.5, 0.7, 0.8], "auc": [0.5, 0.8, 0.85],
      "val_loss": [0.6, 0.45, 0.5], "val_accuracy": [0.6, 0.75, 0.7], "val_auc": [0.6, 0.8, 0.8]},
     Task("binary", "clear", 2, ("0", "1")), 3),
    ({"epoch": [0, 1], "loss": [3.0, 2.0], "mae": [1.5, 1.1]}, Task("regression", "target"), 2),
    ({"epoch": [0], "loss": [1.2], "accuracy": [0.4], "val_loss": [1.1], "val_accuracy": [0.45]},
     {"kind": "multiclass", "label": "tier"}, 2),
    ({"epoch": [0, 1, 2, 3], "loss": [0.7, NAN, 0.5, math.inf], "accuracy": [NAN, 0.6, 0.7, 0.7],
      "val_loss": [NAN, NAN, 0.55, 0.5]}, None, 2),
    ({"epoch": [0, 1], "loss": [NAN, NAN]}, None, 0),
    ({}, None, 0),
], ids=["binary-with-validation", "regression-no-validation", "one-epoch", "nan-and-inf", "all-nan", "empty"])
def test_learning_curve_is_a_valid_png_for_any_history(tmp_path, history, task, panels):
    path = tmp_path / "learning_curve.png"
    assert learning_curve_png(str(path), history, task) is True
    width, height = _png_size(path)
    assert 400 <= width <= 2000 and 200 <= height <= 260 * max(panels, 1) + 100
    assert path.stat().st_size > 5_000  # axes, labels and lines, not an empty raster
    assert [p.name for p in tmp_path.iterdir()] == ["learning_curve.png"]  # no temporary file left


def test_one_subplot_per_quantity_best_epoch_marked(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda self, buf, **kw: (drawn.append(self), buf.write(b"png")))
    history = {"epoch": [0, 1, 2], "loss": [0.7, 0.5, 0.4], "accuracy": [0.5, 0.7, 0.8],
               "val_loss": [0.6, 0.45, 0.5], "val_accuracy": [0.6, 0.75, 0.7], "learning_rate": [1e-3] * 3}
    learning_curve_png(str(tmp_path / "c.png"), history, Task("binary", "clear", 2, ("0", "1")))
    figure = drawn[0]
    assert [ax.get_ylabel() for ax in figure.axes] == ["loss", "accuracy"]
    assert "binary" in figure.get_suptitle() and "clear" in figure.get_suptitle()
    assert "best epoch 2" in figure.get_suptitle()  # lowest val_loss, 1-based like checkpoints/epoch_NNN.keras
    loss_axes = figure.axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in loss_axes.get_lines()}
    assert styles["train"] == "-" and styles["validation"] == "--" and styles["best epoch (2)"] == ":"
    assert loss_axes.get_legend() is not None and figure.axes[-1].get_xlabel() == "epoch"


def test_best_epoch_falls_back_to_training_loss(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda self, buf, **kw: (drawn.append(self), buf.write(b"png")))
    learning_curve_png(str(tmp_path / "c.png"), {"epoch": [0, 1, 2], "loss": [0.7, 0.3, 0.5]}, None)
    assert "best epoch 2" in drawn[0].get_suptitle()


def test_without_matplotlib_the_plot_is_skipped_with_one_line(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    path = tmp_path / "learning_curve.png"
    assert learning_curve_png(str(path), {"epoch": [0], "loss": [1.0]}, None) is False
    assert not path.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matplotlib is not installed" in err[0]
