"""The learning task follows the label: binary, multiclass or regression, and how label values become targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from store import Column

__all__ = ["Task", "task_for", "MAX_INT_CLASSES"]

# An integer label with values in 0..MAX_INT_CLASSES-1 is a class index; wider integer labels are regressed.
MAX_INT_CLASSES = 100


@dataclass(frozen=True)
class Task:
    """``kind`` is binary, multiclass or regression; ``classes`` the number of classes; ``names`` their labels."""

    kind: str
    label: str
    classes: int = 1
    names: tuple[str, ...] | None = None

    def targets(self, column: Column, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored label values -> (targets, missing mask). Targets are float32 (binary, regression) or int32."""
        missing = np.isnan(raw) if column.kind == "float" else raw == column.missing_value
        if column.kind == "category":
            values = raw.astype(np.int32) - 1  # code 1 is vocabulary[0]
        else:
            values = raw
        values = np.where(missing, 0, values)
        if self.kind == "multiclass":
            return values.astype(np.int32), missing
        return values.astype(np.float32), missing


def task_for(column: Column, stats: dict) -> Task:
    """Infer the task from the label column's kind, vocabulary and stored train statistics."""
    if column.kind == "category":
        names = column.vocabulary or ()
        if len(names) <= 2:
            return Task("binary", column.name, 2, tuple(names))
        return Task("multiclass", column.name, len(names), tuple(names))
    if column.kind == "bool":
        return Task("binary", column.name, 2, ("false", "true"))
    lo, hi = stats.get("min"), stats.get("max")
    if column.kind == "int" and lo is not None and lo >= 0:
        if hi <= 1:
            return Task("binary", column.name, 2, ("0", "1"))
        if hi < MAX_INT_CLASSES:
            return Task("multiclass", column.name, int(hi) + 1, tuple(str(i) for i in range(int(hi) + 1)))
    return Task("regression", column.name)
