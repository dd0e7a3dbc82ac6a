"""A learning-curve PNG without a plotting library: loss (and accuracy, when present) per epoch, train solid and
validation dashed, drawn into a numpy raster and written with zlib."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from store.files import write_atomic

__all__ = ["learning_curve_png"]

_COLORS = {"loss": (31, 119, 180), "val_loss": (31, 119, 180), "accuracy": (214, 39, 40),
           "val_accuracy": (214, 39, 40), "mae": (44, 160, 44), "val_mae": (44, 160, 44)}


def learning_curve_png(path: str, history: dict[str, list[float]], width: int = 640, height: int = 360) -> None:
    """Each series scaled to its own min..max (the picture shows shape; history.csv holds the numbers)."""
    img = np.full((height, width, 3), 255, np.uint8)
    pad = 24
    img[height - pad, pad:width - pad] = 0
    img[pad:height - pad, pad] = 0
    for name, color in _COLORS.items():
        values = np.asarray(history.get(name, []), dtype=np.float64)
        if values.size == 0 or not np.isfinite(values).all():
            continue
        xs = np.linspace(pad, width - pad - 1, max(len(values), 2))[: len(values)]
        span = values.max() - values.min() or 1.0
        ys = height - pad - 1 - (values - values.min()) / span * (height - 2 * pad - 2)
        dashed = name.startswith("val_")
        for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
            _line(img, x0, y0, x1, y1, color, dashed)
        for x, y in zip(xs, ys):
            img[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = color
    _write_png(path, img)


def _line(img, x0, y0, x1, y1, color, dashed):
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    for k, t in enumerate(np.linspace(0.0, 1.0, n)):
        if dashed and (k // 6) % 2:
            continue
        x, y = int(round(x0 + t * (x1 - x0))), int(round(y0 + t * (y1 - y0)))
        img[max(0, y - 1):y + 1, max(0, x - 1):x + 1] = color


def _write_png(path: str, img: np.ndarray) -> None:
    height, width, _ = img.shape
    raw = b"".join(b"\x00" + img[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    write_atomic(path, b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                 + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
