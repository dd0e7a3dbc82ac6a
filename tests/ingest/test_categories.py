"""High-cardinality text columns: vocabularies are arrays of the store read only when used, and a column with more
distinct values than --max-categories is hashed (documented codes), with the same store for any number of workers
and the label never hashed."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from ingest import IngestConfig, ingest as run_ingest
from ingest.cli import build_parser, config_from_args
from store import open_store
from store.errors import OptionError, StoreError
from store.vocabulary import unpack_strings, value_hashes
from tests.helpers import tree


@pytest.fixture
def sessions_csv(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    frame = pd.DataFrame({
        "session": [f"s-{i:05d}-{rng.integers(1e9):09d}" for i in range(n)],  # every value distinct
        "country": rng.choice(["jp", "fr", "br", None], n),
        "outcome": rng.choice(["win", "loss", "draw"], n),
        "x": rng.standard_normal(n).round(3),
    })
    frame.loc[7, "session"] = None
    path = tmp_path / "sessions.csv"
    frame.to_csv(path, index=False)
    return str(path), frame


def test_a_column_beyond_max_categories_is_hashed_and_the_label_never(tmp_path, sessions_csv):
    csv, frame = sessions_csv
    out = str(tmp_path / "s.zarr")
    run_ingest(IngestConfig([csv], out, label="outcome", max_categories=2, workers=1, progress=False,
                            shuffle=False, batch_size=256))
    store = open_store(out)
    session, country, outcome = (store.schema[c] for c in ("session", "country", "outcome"))
    assert (session.vocabulary, session.hash_buckets, session.categories) == (None, 2, 2)
    assert (country.vocabulary, country.hash_buckets) == (None, 2)  # 3 values > 2
    assert list(outcome.vocabulary) == sorted(frame["outcome"].unique(), key=lambda v: (-(frame["outcome"] == v)
                                                                                        .sum(), v))
    got = store.read_frame("train")
    expected = 1 + value_hashes(frame["session"].fillna("").tolist()) % np.uint64(2)
    assert got["session"].isna().tolist() == frame["session"].isna().tolist()
    valid = frame["session"].notna().to_numpy()
    assert got["session"][valid].astype(np.int64).tolist() == expected[valid].astype(np.int64).tolist()
    assert got["outcome"].tolist() == frame["outcome"].tolist()
    root = json.load(open(os.path.join(out, "zarr.json")))["attributes"]["tabular_store"]
    by_name = {c["name"]: c for c in root["schema"]["columns"]}
    assert by_name["session"]["hash_buckets"] == 2 and "vocabulary_size" not in by_name["session"]
    assert not os.path.exists(os.path.join(out, "vocabulary", str(session.index)))


def test_listed_vocabularies_live_in_arrays_and_equal_pandas(tmp_path, sessions_csv):
    csv, frame = sessions_csv
    out = str(tmp_path / "s.zarr")
    run_ingest(IngestConfig([csv], out, label="outcome", workers=1, progress=False, shuffle=False))
    store = open_store(out)
    assert store.schema["session"].categories == frame["session"].nunique()
    assert os.path.getsize(os.path.join(out, "zarr.json")) < 20_000  # 3000 ids are not in the root metadata
    got = store.read_frame("train")
    for col in ("session", "country", "outcome"):
        assert [None if pd.isna(v) else v for v in got[col]] == [None if pd.isna(v) else v for v in frame[col]]


def test_hashed_stores_are_the_same_for_any_number_of_workers(tmp_path, sessions_csv, small_blocks):
    csv, _ = sessions_csv
    trees = []
    for workers in (1, 2):
        out = str(tmp_path / f"s{workers}.zarr")
        run_ingest(IngestConfig([csv], out, label="outcome", max_categories=100, workers=workers, progress=False,
                                val_fraction=0.2))
        trees.append(tree(out))
    for files in trees:
        files.pop("zarr.json")  # holds the output path of the rejects file
    assert trees[0] == trees[1]


def test_max_categories_option(tmp_path):
    args = build_parser().parse_args(["a.csv", "--out", str(tmp_path / "s"), "--max-categories", "5000"])
    assert config_from_args(args).max_categories == 5000
    for bad in ("0", "-3", str(2**31)):
        args = build_parser().parse_args(["a.csv", "--out", str(tmp_path / "s"), "--max-categories", bad])
        with pytest.raises(OptionError, match="--max-categories must be between 1 and"):
            config_from_args(args)


def test_the_merge_stops_counting_a_column_once_it_passes_the_limit(tmp_path, monkeypatch):
    """Memory is bounded by --max-categories: a hashed column's values are not held beyond the block that showed
    it has too many (the listed column's blocks are all read)."""
    from ingest import vocabulary
    blocks = list(range(6))
    for b in blocks:
        ids = [f"id-{b}-{i}" for i in range(100)]
        vocabulary.write_block(str(tmp_path / f"{b}.vocab"), [ids, ["a", "b"]], [np.ones(100, int), np.array([3, b])])
    loads = []

    class Counting(vocabulary.BlockVocabulary):
        def __init__(self, path):
            loads.append(path)
            super().__init__(path)

    monkeypatch.setattr(vocabulary, "BlockVocabulary", Counting)
    merged = vocabulary.merge(lambda b: str(tmp_path / f"{b}.vocab"), blocks, 2, max_categories=150)
    assert merged[0] == vocabulary.Vocabulary(None, 150)
    assert merged[1] == vocabulary.Vocabulary(("a", "b"))  # counts 18 and 15: by decreasing count
    assert len(loads) == 2 + 6  # column 0: two blocks (200 > 150 values), column 1: all six


def test_a_block_vocabulary_file_reads_back_each_array(tmp_path):
    from ingest import vocabulary
    path = str(tmp_path / "0.vocab")
    vocabulary.write_block(path, [["x", "ÿ", ""], []], [np.array([1, 2, 3]), np.zeros(0, int)])
    with vocabulary.BlockVocabulary(path) as data:
        assert list(unpack_strings(data["o0"], data["u0"])) == ["x", "ÿ", ""]
        assert data["n0"].tolist() == [1, 2, 3] and data["n1"].tolist() == []
        assert data["h0"].tolist() == value_hashes(["x", "ÿ", ""]).tolist()
    with open(path, "r+b") as f:
        f.truncate(20)  # a torn work file: one line, not a traceback
    with pytest.raises(StoreError, match=r"0\.vocab: a work file of the interrupted ingest is damaged"):
        vocabulary.BlockVocabulary(path)


@pytest.mark.parametrize("compiled", [True, False])
def test_category_values_are_the_text_as_written_in_every_block(tmp_path, small_blocks, monkeypatch, compiled):
    """A category column keeps its text as written, even in a block where every value looks like a number: pandas'
    dtype "category" would read "01" and "1" there as the number 1 (and "2" as 2.0 beside "2.5")."""
    import ingest.parse
    if compiled and ingest.parse._fastcsv is None:
        pytest.skip("ingest/_fastcsv.c was not built here")
    if not compiled:
        monkeypatch.setattr(ingest.parse, "_fastcsv", None)
    room = ["A1", "B2"] * 10000 + ["01", "1", "2", "2.5", "1.0"] * 6000  # the last blocks hold only number-like text
    frame = pd.DataFrame({"room": room, "x": np.arange(len(room)) % 7})
    path = tmp_path / "rooms.csv"
    frame.to_csv(path, index=False)
    out = str(tmp_path / "s.zarr")
    result = run_ingest(IngestConfig(sources=[str(path)], out=out, dtypes={"room": "category"}, shuffle=False))
    assert result.blocks > 2 and result.compiled_blocks == (result.blocks if compiled else 0)
    got = open_store(out).read_frame("train")
    assert got["room"].astype(object).tolist() == room
