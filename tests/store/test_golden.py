"""A tiny store committed under tests/golden/ must keep reading the same, so format changes are deliberate.

Regenerate it (only when the format changes on purpose, with a version bump): ``python -m tests.store.test_golden``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from ingest import IngestConfig, ingest
from store import open_store

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")
GOLDEN = os.path.join(HERE, "quest_tiny.zarr")
SOURCE = os.path.join(HERE, "quest_tiny.csv")
OPTIONS = dict(label="clear", batch_size=2, val_fraction=0.4, seed=3, workers=1, progress=False)


def build(out: str) -> None:
    ingest(IngestConfig([SOURCE], out, **OPTIONS))


def test_golden_store_reads_the_same():
    store = open_store(GOLDEN)
    assert store.rows == {"train": 3, "validation": 2} and store.label == "clear"
    frame = pd.concat([store.read_frame("train"), store.read_frame("validation")]).sort_values("attempt_id")
    assert frame["attempt_id"].tolist() == [9007199254740993 + 2 * i for i in range(5)]
    assert [None if pd.isna(v) else v for v in frame["user"]] == ["alice", "bob", "alice", None, "carol"]
    assert frame["quest"].tolist() == ["竜の洞窟", "森, 第2章", "Slime Hunt", "竜の洞窟", 'say "hi"']
    assert frame["level"].astype(object).where(frame["level"].notna(), None).tolist() == [3, None, 12, -4, 7]
    np.testing.assert_array_equal(frame["score"].to_numpy(), np.array([0.5, 1.25, np.nan, -2.75, 3.5], "float32"))
    assert frame["started"].iloc[0] == pd.Timestamp("2024-01-01T10:00:00") and pd.isna(frame["started"].iloc[3])
    assert frame["cleared"].astype(object).where(frame["cleared"].notna(), None).tolist() == [
        True, False, True, False, None]
    assert frame["clear"].tolist() == [1, 0, 1, 0, 1]
    assert [c.array for c in store.schema.columns] == [
        "int64", "categorical", "categorical", "int8", "float32", "int64", "int8", "int8"]


def _files(path):
    out = {}
    for root, _dirs, files in os.walk(path):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), path)
            with open(os.path.join(root, name), "rb") as f:
                out[rel] = f.read()
    return out


def test_todays_ingest_writes_the_golden_bytes(tmp_path):
    out = str(tmp_path / "again.zarr")
    build(out)
    now, golden = _files(out), _files(GOLDEN)
    assert sorted(now) == sorted(golden)
    for name in now:
        if name != "zarr.json":
            assert now[name] == golden[name], name
    attrs_now = json.loads(now["zarr.json"])["attributes"]["tabular_store"]
    attrs_golden = json.loads(golden["zarr.json"])["attributes"]["tabular_store"]
    for attrs in (attrs_now, attrs_golden):
        attrs["ingest"].pop("sources")  # absolute paths of the checkout
    assert attrs_now == attrs_golden


if __name__ == "__main__":
    import shutil
    shutil.rmtree(GOLDEN, ignore_errors=True)
    build(GOLDEN)
    print(f"wrote {GOLDEN}")
