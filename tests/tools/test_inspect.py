"""tools.inspect: what a store holds, and --verify naming every damaged array and chunk."""

from __future__ import annotations

import json
import os
import re

import pytest

from store.layout import shard_path
from tools.inspect import main


@pytest.fixture
def store(quest_csv, make_store):
    out, _ = make_store(quest_csv, batch_size=100, label="clear", val_fraction=0.2)
    return out


def test_describe_text_and_json(store, capsys):
    assert main([store]) == 0
    text = capsys.readouterr().out
    assert "tabular-zarr-store v2, complete" in text and "read 3,000 = stored 3,000 + rejected 0" in text
    assert "quest_name" in text and "x the source CSV" in text
    assert re.search(r"ingest stages \(wall / CPU s\): plan [\d.]+ / [\d.]+, parse [\d.]+ / [\d.]+, merge", text)
    assert main([store, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["label"] == "clear" and sum(data["rows"].values()) == 3000
    assert data["arrays"]["train/float32"]["dtype"] == "float32" and 0 < data["size_vs_source"] < 1
    names = {c["name"]: c for c in data["columns"]}
    assert names["difficulty"]["vocabulary_size"] == 4 and names["clear"]["kind"] == "int"
    assert set(data["ingest"]["timings"]) == {"plan", "parse", "merge", "write"}


def test_verify_passes_on_a_good_store(store, capsys):
    assert main([store, "--verify"]) == 0
    assert "verify: OK" in capsys.readouterr().out


def test_verify_names_each_damaged_chunk(store, capsys):
    first = shard_path(store, "train", "float32", 0)
    data = bytearray(open(first, "rb").read())
    data[50] ^= 0xFF  # inside chunk 0
    open(first, "wb").write(bytes(data))
    other = shard_path(store, "validation", "categorical", 0)
    os.truncate(other, 10)
    assert main([store, "--verify"]) == 1
    err = capsys.readouterr().err
    assert "inspect: train/float32: chunk 0 fails its CRC32C checksum" in err
    assert "inspect: validation/categorical: shard 0 is truncated" in err
    assert "train/float32: chunk 1 " not in err  # only what is damaged


def test_verify_checks_the_row_accounting(store, capsys):
    meta_path = os.path.join(store, "zarr.json")
    meta = json.load(open(meta_path))
    meta["attributes"]["tabular_store"]["ingest"]["rows_rejected"] = 5
    json.dump(meta, open(meta_path, "w"))
    assert main([store, "--verify"]) == 1
    assert "rows read 3000 != rows stored 3000 + rejected 5" in capsys.readouterr().err


def test_not_a_store_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
