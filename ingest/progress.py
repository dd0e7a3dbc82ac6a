"""The progress bars of an ingest: one ``tqdm`` bar per pass on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

from tqdm import tqdm

__all__ = ["pass_bar"]


def pass_bar(step: str, total: int, unit: str, *, done: int = 0, enabled: bool = True) -> tqdm:
    """The bar of one pass: ``step`` such as ``"pass 1/2 parse"`` (the ETA is that of this pass; the name says how
    many follow), ``total`` bytes (``unit`` "B": shown in MB, MB/s) or work items (``unit`` "shards"),
    of which ``done`` were finished by an interrupted run (``--resume``): they count towards the total but not
    towards the rate, so the ETA is that of what is left. ``enabled=False`` (``--quiet``,
    ``IngestConfig(progress=False)``) shows nothing; otherwise tqdm shows nothing when stderr is not a terminal
    (``disable=None``).

    Use as a context manager; ``bar.update(n)`` after each item, ``bar.set_postfix_str(f"{rows:,} rows",
    refresh=False)`` to show the rows so far.
    """
    units = {"unit": "B", "unit_scale": True, "unit_divisor": 1000} if unit == "B" else {"unit": f" {unit}"}
    return tqdm(total=total, initial=done, desc=step, disable=None if enabled else True, dynamic_ncols=True,
                mininterval=0.2, **units)
