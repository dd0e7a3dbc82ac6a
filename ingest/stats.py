"""Per-column statistics computed in the ingest's parsing pass and merged across blocks.

An idea of the ingest, not of the format: the store only holds their JSON (:meth:`ColumnStats.to_json`, the
``statistics`` of FORMAT.md), which readers take as it is and the validation checks field by field.

Mean and variance merge with Chan et al.'s parallel formula, in a fixed order, so the stored numbers do not depend on
the number of workers. ``std`` is the population standard deviation (``ddof=0``), what a normalisation layer uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ColumnStats"]


@dataclass
class ColumnStats:
    """count (non-missing), missing, mean, M2 (sum of squared deviations), min and max of one column;
    ``used`` is how many values (the finite ones) mean and M2 cover."""

    count: int = 0
    missing: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float | int | None = None
    max: float | int | None = None
    used: int = 0

    @classmethod
    def of_columns(cls, values: np.ndarray, missing: np.ndarray, *, numeric: bool = True) -> list["ColumnStats"]:
        """Statistics of every column of a 2-D array at once (``missing``: bool mask of the same shape).

        Mean and variance cover the finite values; min and max every non-missing one. Sums run on values shifted
        by the column's minimum, which keeps the variance exact for large offsets such as epoch timestamps.
        """
        any_missing = bool(missing.any())
        n_missing = np.count_nonzero(missing, axis=0) if any_missing else np.zeros(values.shape[1], np.intp)
        counts = len(values) - n_missing
        if not numeric or values.shape[1] == 0 or len(values) == 0:
            return [cls(int(c), int(m)) for c, m in zip(counts, n_missing)]
        # (each full pass over the block counts: masks are made and applied only when some value needs them)
        if values.dtype.kind == "f":
            lo, hi = np.fmin.reduce(values, axis=0), np.fmax.reduce(values, axis=0)  # NaN-skipping (and faster)
            x = values.astype(np.float64)
            finite = np.isfinite(lo).all() and np.isfinite(hi).all() and not any_missing
            unused = None if finite else ~np.isfinite(x)
            shift = np.where(np.isfinite(lo), lo, 0.0)
        else:
            info = np.iinfo(values.dtype)
            if any_missing:
                lo = np.where(missing, info.max, values).min(axis=0)
                hi = np.where(missing, info.min, values).max(axis=0)
            else:
                lo, hi = values.min(axis=0), values.max(axis=0)
            x = values.astype(np.float64)
            unused = missing if any_missing else None
            shift = lo.astype(np.float64)
        x -= shift
        if unused is not None:
            np.copyto(x, 0.0, where=unused)
            n_used = len(values) - np.count_nonzero(unused, axis=0)
        else:
            n_used = np.full(values.shape[1], len(values), np.intp)
        s1 = x.sum(axis=0)
        s2 = np.einsum("ij,ij->j", x, x)
        mean_shifted = s1 / np.maximum(n_used, 1)
        m2 = np.maximum(s2 - s1 * mean_shifted, 0.0)
        cast = int if values.dtype.kind in "iu" else float
        return [cls(int(c), int(m), float(mu + k) if u else 0.0, float(v), cast(a) if c else None,
                    cast(b) if c else None, int(u))
                for c, m, u, mu, k, v, a, b in zip(counts, n_missing, n_used, mean_shifted, shift, m2, lo, hi)]

    def merge(self, other: "ColumnStats") -> "ColumnStats":
        n = self.used + other.used
        out = ColumnStats(count=self.count + other.count, missing=self.missing + other.missing, used=n)
        if n:
            delta = other.mean - self.mean
            out.mean = self.mean + delta * other.used / n
            out.m2 = self.m2 + other.m2 + delta * delta * self.used * other.used / n
        out.min = _pick(min, self.min, other.min)
        out.max = _pick(max, self.max, other.max)
        return out

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.used) if self.used else 0.0

    def to_json(self, numeric: bool = True) -> dict:
        out = {"count": self.count, "missing": self.missing}
        if numeric:
            out.update(mean=_finite(self.mean) if self.used else None,
                       std=_finite(self.std) if self.used else None,
                       min=_finite(self.min), max=_finite(self.max))
        return out

    def to_state(self) -> list:
        """Lossless form for the ingest's intermediate files (JSON)."""
        return [self.count, self.missing, self.mean, self.m2, self.min, self.max, self.used]

    @classmethod
    def from_state(cls, state: list) -> "ColumnStats":
        return cls(*state)


def _pick(fn, a, b):
    if a is None:
        return b
    if b is None:
        return a
    return fn(a, b)


def _finite(x):
    """JSON has no NaN/inf: store them as strings (documented in FORMAT.md)."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x
