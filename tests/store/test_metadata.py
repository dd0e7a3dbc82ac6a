"""The layout written without zarr-python (store.metadata) is byte for byte the one zarr-python writes: every
group's and array's ``zarr.json`` and every vocabulary chunk, for each compression, dtype and vocabulary shape."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from store import Column, Schema, StoreWriter
from store.layout import CATEGORY_ARRAY, VOCABULARY_GROUP, array_fill_value, blosc_config
from store.metadata import write_chunked
from store.vocabulary import StoredVocabulary, pack_strings
from tests.helpers import tree


def _compressors(compression):
    config = blosc_config(compression)
    return [Crc32cCodec()] if config is None else [BloscCodec(**config), Crc32cCodec()]


def _zarr_layout(writer: StoreWriter, path: str, attributes: dict) -> None:
    """The layout as StoreWriter made it through zarr-python's API until November 2026 (the reference)."""
    root = zarr.open_group(path, mode="w", zarr_format=3, attributes={"tabular_store": writer._root_attrs(
        False, attributes)})
    for split, n in writer.rows.items():
        group = root.create_group(split, attributes={"rows": int(n)})
        for name, columns in writer.schema.arrays.items():
            group.create_array(
                name, shape=(int(n), len(columns)), dtype=writer.schema.array_dtype(name),
                chunks=(writer.batch_size, len(columns)), shards=(writer.shard_rows, len(columns)),
                compressors=_compressors(writer.compression), fill_value=array_fill_value(name),
                dimension_names=["row", f"{name}_column"], attributes={"columns": [c.name for c in columns]})
    for col in writer.schema.arrays.get(CATEGORY_ARRAY, ()):
        if col.vocabulary is not None:
            sub = root.require_group(VOCABULARY_GROUP).create_group(str(col.index))
            for name, data, chunk, dim in zip(("offsets", "utf8"), pack_strings(col.vocabulary), (2**20, 2**24),
                                              ("value", "byte")):
                array = sub.create_array(name, shape=data.shape, dtype=data.dtype,
                                         chunks=(max(1, min(chunk, len(data))),),
                                         compressors=_compressors(writer.compression), fill_value=0,
                                         dimension_names=[dim])
                if len(data):
                    array[:] = data


def _schema(vocabularies):
    return Schema((Column("score", "float", "float32", 0), Column("名前", "float", "float32", 1),
                   Column("id", "int", "int64", 0), Column("level", "int", "int8", 0),
                   Column("n", "int", "int16", 0), Column("m", "int", "int32", 0))
                  + tuple(Column(f"c{i}", "category", "categorical", i, vocabulary=tuple(v))
                          for i, v in enumerate(vocabularies))
                  + (Column("h", "category", "categorical", len(vocabularies), hash_buckets=100),))


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
@pytest.mark.parametrize("rows", [{"train": 10}, {"train": 1000, "validation": 0}, {"train": 0}])
def test_the_layout_is_the_one_zarr_python_writes(tmp_path, compression, rows):
    vocabularies = [["alice", "", "竜の洞窟", 'say "hi"'], [], [f"v{i}" for i in range(3000)]]
    writer = StoreWriter(str(tmp_path / "ours"), schema=_schema(vocabularies), rows=rows, batch_size=7,
                         chunks_per_shard=3, compression=compression)
    writer.create({"note": "é"})
    _zarr_layout(writer, str(tmp_path / "theirs"), {"note": "é"})
    ours, theirs = tree(str(tmp_path / "ours")), tree(str(tmp_path / "theirs"))
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        assert ours[name] == theirs[name], name
    for index, values in enumerate(vocabularies):
        assert list(StoredVocabulary(str(tmp_path / "ours"), index, len(values))) == values


@pytest.mark.parametrize("compression", ["lz4", "none"])
@pytest.mark.parametrize("values", [np.arange(10, dtype=np.int64), np.zeros(10, np.int64),
                                    np.concatenate([np.zeros(8, np.uint8), np.arange(1, 12, dtype=np.uint8)]),
                                    np.arange(0, dtype=np.uint8)])
def test_chunked_arrays_pad_the_last_chunk_and_skip_empty_ones_as_zarr_python_does(tmp_path, compression, values):
    write_chunked(str(tmp_path / "ours"), values, 8, compression, "value")
    array = zarr.create_array(str(tmp_path / "theirs"), shape=values.shape, dtype=values.dtype,
                              chunks=(max(1, min(8, len(values))),), compressors=_compressors(compression),
                              fill_value=0, dimension_names=["value"])
    if len(values):
        array[:] = values
    assert tree(str(tmp_path / "ours")) == tree(str(tmp_path / "theirs"))
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours"))[:], values)
    assert os.path.exists(tmp_path / "ours" / "zarr.json")
