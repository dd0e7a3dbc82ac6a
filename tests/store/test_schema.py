"""Schema JSON, dtype narrowing."""

from __future__ import annotations

import numpy as np
import pytest

from store import Column, Schema
from store.errors import SchemaError
from store.schema import code_dtype, narrowest_int


def test_schema_json_round_trip():
    schema = Schema((Column("a", "float", "float32", 0), Column("c", "category", "categorical", 0, ("x", "y")),
                     Column("id", "category", "categorical", 1, None, hash_buckets=1000)), label="a")
    data = schema.to_json()
    assert data["columns"][1] == {"name": "c", "kind": "category", "array": "categorical", "index": 0,
                                  "vocabulary_size": 2}  # the values are arrays of the store (version 2)
    assert data["columns"][2]["hash_buckets"] == 1000 and "vocabulary_size" not in data["columns"][2]
    again = Schema.from_json(data, "s.zarr")
    assert again.label == "a" and [c.categories for c in again.columns] == [0, 2, 1000]
    assert len(again["c"].vocabulary) == 2 and again["c"].vocabulary.store == "s.zarr"  # not read until used
    assert again.array_dtype("categorical") == np.int16  # codes up to 1000
    version1 = dict(data["columns"][1], vocabulary=["x", "y"])
    del version1["vocabulary_size"]
    assert Column.from_json(version1).vocabulary == ("x", "y")
    with pytest.raises(SchemaError, match="unknown kind 'complex'"):
        Column.from_json({"name": "z", "kind": "complex", "array": "x", "index": 0})


@pytest.mark.parametrize("lo,hi,dtype", [(0, 1, "int8"), (-127, 127, "int8"), (-128, 0, "int16"),
                                         (0, 40_000, "int32"), (1_700_000_000, 1_800_000_000, "int32"),
                                         (-(2**63) + 1, 2**63 - 1, "int64"), (None, None, "int8")])
def test_narrowest_int_reserves_the_minimum(lo, hi, dtype):
    assert narrowest_int(lo, hi) == dtype


def test_narrowest_int_refuses_the_int64_minimum():
    with pytest.raises(SchemaError, match="declare the column as float or category"):
        narrowest_int(-(2**63), 0)


def test_code_dtype():
    assert [code_dtype(n) for n in (1, 127, 128, 40_000)] == ["int8", "int8", "int16", "int32"]
