"""Assertions shared by the tests."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd


def assert_same_values(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Column-wise equality with pandas.read_csv's values; floats compared after the documented float32 cast."""
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    for col in expected.columns:
        a, b = got[col].reset_index(drop=True), expected[col].reset_index(drop=True)
        if b.dtype.kind == "f" and a.dtype.kind == "f":
            with np.errstate(over="ignore"):  # beyond float32's range -> ±inf, as FORMAT.md documents
                np.testing.assert_array_equal(a.to_numpy(), b.to_numpy().astype(np.float32), err_msg=col)
        else:
            left = [None if pd.isna(v) else v for v in a.astype(object)]
            right = [None if pd.isna(v) else v for v in b.astype(object)]
            assert left == right, col


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env() -> dict:
    """Environment for running the project's commands in a subprocess from a source checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
