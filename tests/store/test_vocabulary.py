"""Vocabularies as arrays of the store (format version 2): written and read back exactly, read only when used,
readable by plain zarr-python; the documented hash of hashed columns."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import zarr

from store.errors import FormatError
from store.vocabulary import (StoredVocabulary, hashed_codes, pack_strings, unpack_strings, value_hashes,
                              write_vocabulary)

VALUES = ["alice", "", "竜の洞窟", 'say "hi"', "a,b\nc", "x" * 5000]


def test_written_vocabularies_read_back_exactly_and_lazily(tmp_path):
    write_vocabulary(str(tmp_path / "s.zarr"), 3, VALUES, "none")
    vocab = StoredVocabulary(str(tmp_path / "s.zarr"), 3, len(VALUES), "user")
    assert len(vocab) == len(VALUES) and vocab._values is None  # the size needs no read
    assert list(vocab) == VALUES and vocab[2] == "竜の洞窟"
    again = pickle.loads(pickle.dumps(vocab))  # loader workers get the location, not the values
    assert again._values is None and list(again) == VALUES
    offsets = zarr.open_array(str(tmp_path / "s.zarr/vocabulary/3/offsets"))[:]
    utf8 = zarr.open_array(str(tmp_path / "s.zarr/vocabulary/3/utf8"))[:]
    assert bytes(utf8[offsets[2]:offsets[3]]).decode() == "竜の洞窟"  # any Zarr reader: Arrow's string layout


def test_an_empty_vocabulary(tmp_path):
    write_vocabulary(str(tmp_path / "s.zarr"), 0, [], "lz4")
    assert list(StoredVocabulary(str(tmp_path / "s.zarr"), 0, 0)) == []


def test_a_damaged_vocabulary_is_one_line(tmp_path):
    write_vocabulary(str(tmp_path / "s.zarr"), 0, VALUES, "none")
    with pytest.raises(FormatError, match=r"vocabulary/0: the vocabulary of column 'user' cannot be read.*re-run"):
        list(StoredVocabulary(str(tmp_path / "s.zarr"), 0, len(VALUES) + 5, "user"))  # sizes disagree
    zarr.open_array(str(tmp_path / "s.zarr/vocabulary/0/offsets"), mode="r+")[3] = 10**9
    with pytest.raises(FormatError, match="offsets are not increasing"):
        list(StoredVocabulary(str(tmp_path / "s.zarr"), 0, len(VALUES), "user"))
    with pytest.raises(FormatError, match="cannot be read"):
        list(StoredVocabulary(str(tmp_path / "missing.zarr"), 0, 2, "user"))


def test_pack_unpack():
    assert unpack_strings(*pack_strings(VALUES)) == VALUES


def test_the_hash_is_the_documented_one():
    import hashlib
    h = value_hashes(["alice", "竜"])
    assert h.dtype == np.uint64
    assert int(h[0]) == int.from_bytes(hashlib.blake2b(b"alice", digest_size=8).digest(), "little")
    assert h.tolist() == [0x89DA54CE0CECEA4D, 15830022627327112851]  # pinned: stores depend on these codes
    codes = hashed_codes(h, 10)
    assert ((1 <= codes) & (codes <= 10)).all() and codes.tolist() == [int(x) % 10 + 1 for x in h.tolist()]
