"""A one-line progress bar on stderr (only when stderr is a terminal): done/total, MB/s, rows/s, ETA."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """``Progress("parse", total_bytes)``; ``update(bytes, rows)`` after each work item; ``close()`` at the end."""

    def __init__(self, label: str, total: int, *, unit_bytes: bool = True, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.label, self.total, self.unit_bytes = label, max(total, 1), unit_bytes
        self.done = self.rows = 0
        self.started = self._last = time.monotonic()

    def update(self, amount: int, rows: int = 0) -> None:
        self.done += amount
        self.rows += rows
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.2 or self.done >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * 24)
        rate = f"{self.done / elapsed / 1e6:6.1f} MB/s " if self.unit_bytes else ""
        eta = (elapsed / frac - elapsed) if frac > 0 else 0.0
        self.stream.write(f"\r{self.label:>7} [{bar:<24}] {frac:6.1%} {rate}{self.rows / elapsed:9.0f} rows/s "
                          f"ETA {eta:5.0f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
