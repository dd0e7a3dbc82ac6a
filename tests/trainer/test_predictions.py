"""trainer.predictions: predictions written a window at a time give the same file as all at once."""

from __future__ import annotations

import csv
import os

import numpy as np
import pandas as pd
import pytest
import zarr

import trainer.predictions
from trainer.predictions import MARK, PredictionsWriter


def _windows(values: np.ndarray, sizes: list[int]):
    at = 0
    for n in sizes:
        yield values[at:at + n]
        at += n


@pytest.mark.parametrize("sizes", [[50], [16, 16, 16, 2], [1] * 50, [0, 50]])
def test_a_csv_written_in_windows_equals_one_written_at_once(tmp_path, sizes):
    values = np.random.default_rng(0).random((50, 2), dtype=np.float32)
    once = tmp_path / "once.csv"
    pd.DataFrame(values, columns=["p_a", "p_b"]).to_csv(once, index_label="row", float_format="%.7g")
    writer = PredictionsWriter(str(tmp_path / "p.csv"), ["p_a", "p_b"], 50)
    for window in _windows(values, sizes):
        assert not os.path.exists(tmp_path / "p.csv")  # appears only once complete
        writer.write(window)
    assert writer.close() == str(tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_bytes() == once.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["once.csv", "p.csv"]  # no temporary file left


def test_an_empty_split_gives_the_header(tmp_path):
    writer = PredictionsWriter(str(tmp_path / "p.csv"), ["y"], 0)
    writer.close()
    assert list(csv.reader(open(tmp_path / "p.csv"))) == [["row", "y"]]


def test_a_zarr_array_is_written_in_whole_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer.predictions, "_ZARR_ROWS", 8)
    values = np.arange(60, dtype=np.float32).reshape(30, 2)
    out = str(tmp_path / "p.zarr")
    writer = PredictionsWriter(out, ["a", "b"], 30)
    writes = []
    real = type(writer._array).__setitem__
    monkeypatch.setattr(type(writer._array), "__setitem__",
                        lambda self, key, value: (writes.append((key.start, key.stop)), real(self, key, value)))
    for window in _windows(values, [5, 5, 5, 5, 10]):
        writer.write(window)
        assert not os.path.exists(out)  # appears only once complete
    writer.close()
    assert all(start % 8 == 0 for start, _ in writes) and writes[-1][1] == 30  # aligned; the tail last
    array = zarr.open_array(out)
    np.testing.assert_array_equal(array[:], values)
    assert array.attrs[MARK] and array.attrs["columns"] == ["a", "b"]
    assert os.listdir(tmp_path) == ["p.zarr"]


def test_an_earlier_predictions_array_is_replaced_only_at_the_end(tmp_path):
    out = str(tmp_path / "p.zarr")
    first = PredictionsWriter(out, ["a"], 3)
    first.write(np.ones((3, 1), np.float32))
    first.close()
    second = PredictionsWriter(out, ["a"], 2)
    second.write(np.full((2, 1), 7, np.float32))
    assert zarr.open_array(out)[:].tolist() == [[1], [1], [1]]  # the earlier one, whole, until the new one is
    second.close()
    assert zarr.open_array(out)[:].tolist() == [[7], [7]] and os.listdir(tmp_path) == ["p.zarr"]


@pytest.mark.parametrize("name", ["p.csv", "p.zarr"])
def test_an_aborted_output_leaves_nothing(tmp_path, name):
    writer = PredictionsWriter(str(tmp_path / name), ["y"], 10)
    writer.write(np.zeros((4, 1), np.float32))
    writer.abort()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["p.csv", "p.zarr"])
@pytest.mark.parametrize("suffix", [f".tmp{os.getpid()}", f".old-predict-{os.getpid()}"])
def test_a_users_folder_at_a_name_the_writer_uses_survives(tmp_path, name, suffix):
    """The writer creates and deletes ``OUT.tmpPID`` and ``OUT.old-predict-PID``; a user's folder there is refused
    in one line, never emptied or replaced."""
    from store import OptionError
    theirs = tmp_path / (name + suffix)
    theirs.mkdir()
    (theirs / "keep.txt").write_text("mine")
    with pytest.raises(OptionError, match="was not made by this trainer predict; it will not be replaced"):
        PredictionsWriter(str(tmp_path / name), ["y"], 1)
    assert (theirs / "keep.txt").read_text() == "mine" and os.listdir(tmp_path) == [name + suffix]
