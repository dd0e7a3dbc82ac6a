"""The task follows the label (trainer.task.task_for): binary, multiclass or regression from the label column's
kind, vocabulary and train statistics; and how stored label values become targets."""

from __future__ import annotations

import numpy as np
import pytest

from store.schema import Column
from trainer.task import MAX_INT_CLASSES, Task, task_for


def _column(kind: str, vocabulary=None, array=None) -> Column:
    array = array or {"category": "categorical", "float": "float32", "bool": "int8", "int": "int64",
                      "datetime": "int64"}[kind]
    return Column("y", kind, array, 0, vocabulary=vocabulary)


@pytest.mark.parametrize("column, stats, expected", [
    (_column("category", ("no", "yes")), {}, Task("binary", "y", 2, ("no", "yes"))),
    (_column("category", ("only",)), {}, Task("binary", "y", 2, ("only",))),
    (_column("category", ("a", "b", "c")), {}, Task("multiclass", "y", 3, ("a", "b", "c"))),
    (_column("bool"), {"min": 0, "max": 1}, Task("binary", "y", 2, ("false", "true"))),
    (_column("int"), {"min": 0, "max": 1}, Task("binary", "y", 2, ("0", "1"))),
    (_column("int"), {"min": 0, "max": 0}, Task("binary", "y", 2, ("0", "1"))),
    (_column("int"), {"min": 1, "max": 4}, Task("multiclass", "y", 5, ("0", "1", "2", "3", "4"))),  # 0 is a class
    (_column("int"), {"min": 0, "max": MAX_INT_CLASSES - 1},
     Task("multiclass", "y", MAX_INT_CLASSES, tuple(str(i) for i in range(MAX_INT_CLASSES)))),
    (_column("int"), {"min": 0, "max": MAX_INT_CLASSES}, Task("regression", "y")),  # too many values for classes
    (_column("int"), {"min": -1, "max": 1}, Task("regression", "y")),  # negative: not a class index
    (_column("int"), {}, Task("regression", "y")),  # no statistics (every label missing)
    (_column("float"), {"min": 0.0, "max": 1.0}, Task("regression", "y")),  # floats are regressed, even 0/1
    (_column("datetime"), {"min": 0, "max": 10}, Task("regression", "y")),
], ids=["category-2", "category-1", "category-3", "bool", "int-0-1", "int-all-0", "int-1-4", "int-99", "int-100",
        "int-negative", "int-no-stats", "float", "datetime"])
def test_task_for(column, stats, expected):
    assert task_for(column, stats) == expected


def test_targets_per_task():
    category = _column("category", ("a", "b", "c"))
    codes = np.array([1, 3, 0, 2], np.int32)  # code 0 = missing, code 1 = vocabulary[0]
    targets, missing = task_for(category, {}).targets(category, codes)
    assert targets.dtype == np.int32 and targets.tolist() == [0, 2, 0, 1] and missing.tolist() == [0, 0, 1, 0]
    floats = _column("float")
    targets, missing = task_for(floats, {}).targets(floats, np.array([1.5, np.nan], np.float32))
    assert targets.dtype == np.float32 and targets.tolist() == [1.5, 0.0] and missing.tolist() == [False, True]
    ints = _column("int", array="int8")
    raw = np.array([1, np.iinfo(np.int8).min, 0], np.int8)  # the dtype minimum means missing
    targets, missing = task_for(ints, {"min": 0, "max": 1}).targets(ints, raw)
    assert targets.dtype == np.float32 and targets.tolist() == [1.0, 0.0, 0.0] and missing.tolist() == [0, 1, 0]
