"""Opening stores: completeness and format checks, and their one-line messages."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from store import FormatError, IncompleteStoreError, SourceError, open_store, partial_path
from tests.store.test_golden import GOLDEN


@pytest.fixture
def copy(tmp_path):
    path = str(tmp_path / "s.zarr")
    shutil.copytree(GOLDEN, path)
    return path


def _edit_root(path, **changes):
    meta_path = os.path.join(path, "zarr.json")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    meta["attributes"]["tabular_store"].update(changes)
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f)


def test_future_version_is_refused_by_name(copy):
    _edit_root(copy, version=99)
    with pytest.raises(FormatError, match="tabular-zarr-store version 99, this code reads versions 1, 2"):
        open_store(copy)


def test_other_formats_are_refused(copy, tmp_path):
    _edit_root(copy, format="something-else")
    with pytest.raises(FormatError, match="not a tabular-zarr-store"):
        open_store(copy)
    (tmp_path / "plain").mkdir()
    with pytest.raises(FormatError, match="no zarr.json"):
        open_store(str(tmp_path / "plain"))
    with pytest.raises(SourceError, match="no such store"):
        open_store(str(tmp_path / "missing"))


def test_incomplete_stores_are_refused(copy, tmp_path):
    _edit_root(copy, complete=False)
    with pytest.raises(IncompleteStoreError, match="incomplete"):
        open_store(copy)
    out = str(tmp_path / "never.zarr")
    os.makedirs(partial_path(out))
    with pytest.raises(IncompleteStoreError, match="has not finished.*--resume"):
        open_store(out)


def test_unknown_split_and_column(copy):
    store = open_store(copy)
    with pytest.raises(ValueError, match="no split 'test'; the store has train, validation"):
        store.read_frame("test")
    with pytest.raises(KeyError, match="unknown column 'nope'"):
        store.read_frame("train", columns=["nope"])
    assert "train=3" in repr(store)
