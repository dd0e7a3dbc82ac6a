"""Assertions shared by the tests."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal

import numpy as np
import pandas as pd
import pytest


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


def without_timings(root_meta: bytes) -> bytes:
    """A store's root ``zarr.json`` without ``ingest.timings``, the stages' wall and CPU seconds: the one part of a
    store that differs between two runs of the same ingest. Asserts the timings were there, and writes the rest as
    the store writer does, so two stores' root metadata still compare byte for byte."""
    meta = json.loads(root_meta)
    info = meta["attributes"]["tabular_store"]["ingest"]
    assert set(info.pop("timings")) >= {"plan", "parse", "merge", "write"}
    return json.dumps(meta, indent=2, ensure_ascii=False).encode("utf-8")


@contextlib.contextmanager
def deadline(seconds: int, what: str):
    """Fail the test with a clear message when the block runs longer than ``seconds`` (a hang, not a slow machine).

    SIGALRM interrupts the main thread, even while it waits for worker processes; a hang that holds the GIL never
    sees the signal, so after twice the time faulthandler dumps every thread's stack and ends the process (the
    run fails loudly rather than waits forever). Main thread only (POSIX signals)."""
    def expired(signum, frame):
        pytest.fail(f"{what} did not finish within {seconds} s: a hang", pytrace=False)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(2 * seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def tree(path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> bytes): to check a folder came through untouched."""
    out = {}
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out
