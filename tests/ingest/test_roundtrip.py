"""CSV -> store -> read_frame gives back what pandas.read_csv gives, for real-world CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

from store import open_store
from tests.helpers import assert_same_values

EDGE_CSV = (
    '\ufeffid,name,score,level,note,flag\r\n'
    '1,"竜の洞窟, 第1章",0.5,3,"line one\r\nline two",true\r\n'
    '2,森の守護者,,4,"she said ""hi""",false\r\n'
    '3,,1e3,,plain,\r\n'
    '-9007199254740993,"x,y",-0.25,-7,"",true\r\n'
    '\r\n'
    '5,Slime Hunt,NaN,120,"a\nb\nc",False\r\n'
)


def test_edge_cases_round_trip_like_pandas(tmp_path, make_store):
    path = tmp_path / "edge.csv"
    path.write_bytes(EDGE_CSV.encode("utf-8"))
    out, result = make_store(str(path), shuffle=False)
    got = open_store(out).read_frame("train")
    expected = pd.read_csv(path)
    assert result.rows_read == 5 and result.rows == {"train": 5}
    assert_same_values(got, expected)
    assert got["id"].tolist()[3] == -9007199254740993  # beyond 2**53: exact


def test_synthetic_log_round_trips_in_any_order(quest_csv, make_store, small_blocks):
    out, result = make_store(quest_csv, val_fraction=0.2, label="clear", workers=2)
    store = open_store(out)
    got = pd.concat([store.read_frame("train"), store.read_frame("validation")])
    got = got.sort_values("attempt_id").reset_index(drop=True)
    assert_same_values(got, pd.read_csv(quest_csv))
    assert result.rows_read == 3000 and sum(result.rows.values()) == 3000


def test_types_are_exact_and_narrow(tmp_path, make_store):
    path = tmp_path / "ints.csv"
    pd.DataFrame({"small": [1, -5, 100], "wide": [2**62, -(2**62), 0], "ts": [1700000000, 1700000001, 1],
                  "maybe": ["1", "", "3"], "when": ["2024-01-01T00:00:00Z", "2024-06-01", ""]}
                 ).to_csv(path, index=False)
    out, _ = make_store(str(path), shuffle=False)
    store = open_store(out)
    arrays = {c.name: c.array for c in store.schema.columns}
    assert arrays == {"small": "int8", "wide": "int64", "ts": "int32", "maybe": "int8", "when": "int64"}
    frame = store.read_frame("train")
    assert frame["wide"].tolist() == [2**62, -(2**62), 0]
    assert frame["maybe"].dtype == "Int64" and frame["maybe"].isna().tolist() == [False, True, False]
    assert frame["when"].tolist()[:2] == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-06-01")]
    assert pd.isna(frame["when"].iloc[2])


def test_plain_zarr_reads_the_same_values(quest_csv, make_store, small_blocks):
    out, _ = make_store(quest_csv, batch_size=256, label="clear")
    store = open_store(out)
    group = zarr.open_group(out, mode="r")
    frame = store.read_frame("train")
    floats = group["train/float32"][:]
    names = group["train/float32"].attrs["columns"]
    for j, name in enumerate(names):
        np.testing.assert_array_equal(floats[:, j], frame[name].to_numpy())
    arr = group["train/float32"]
    assert arr.metadata.dimension_names == ("row", "float32_column")
    assert arr.chunks == (256, len(names))
    codecs = arr.metadata.to_dict()["codecs"][0]
    assert codecs["name"] == "sharding_indexed"
    assert [c["name"] for c in codecs["configuration"]["codecs"]] == ["bytes", "blosc", "crc32c"]


TENSORSTORE_CHECK = """
import sys, numpy as np, tensorstore as ts, zarr
path = sys.argv[1]
for array in ("train/float32", "train/int64", "train/categorical"):
    got = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{path}/{array}"}}).result().read().result()
    np.testing.assert_array_equal(got, zarr.open_array(f"{path}/{array}")[:])
print("ok")
"""


def test_tensorstore_reads_the_store(quest_csv, make_store):
    """Another Zarr v3 implementation reads the same values (in a subprocess: tensorstore aborts any process
    forked after it was used, and the ingest forks)."""
    pytest.importorskip("tensorstore")
    import subprocess
    import sys
    out, _ = make_store(quest_csv, batch_size=128)
    proc = subprocess.run([sys.executable, "-c", TENSORSTORE_CHECK, out], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
@pytest.mark.parametrize("batch_size", [1, 7, 1000, 5000])
def test_compressions_and_batch_sizes(tmp_path, make_store, compression, batch_size):
    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.standard_normal(1234).round(3), "k": rng.integers(0, 9, 1234),
                  "c": rng.choice(["a", "b", "あ"], 1234)}).to_csv(path, index=False)
    out, _ = make_store(str(path), shuffle=False, compression=compression, batch_size=batch_size)
    assert_same_values(open_store(out).read_frame("train"), pd.read_csv(path))
    assert zarr.open_array(f"{out}/train/float32").chunks == (batch_size, 1)


def test_read_frame_slices_and_columns(quest_csv, make_store):
    out, _ = make_store(quest_csv, shuffle=False)
    store = open_store(out)
    part = store.read_frame("train", 10, 20, columns=["clear", "quest_name"])
    assert list(part.columns) == ["clear", "quest_name"] and list(part.index) == list(range(10, 20))
    full = pd.read_csv(quest_csv)
    assert part["quest_name"].tolist() == full["quest_name"].iloc[10:20].tolist()


def test_folders_globs_and_files_without_final_newline(tmp_path, make_store):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "b.csv").write_bytes(b"\xef\xbb\xbfid,name\r\n3,c\r\n4,d")  # BOM, CRLF, no final newline
    (folder / "a.csv").write_text("id,name\n1,a\n2,b\n")
    (folder / "notes.txt").write_text("not a csv")
    out, result = make_store(str(folder), shuffle=False)
    assert open_store(out).read_frame("train")["id"].tolist() == [1, 2, 3, 4]  # name order, all rows
    out, result = make_store(str(folder / "*.csv"), shuffle=False)
    assert result.rows == {"train": 4}
