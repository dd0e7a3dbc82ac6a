"""The fast chunk reader returns exactly zarr-python's values, zero-copy for uncompressed stores, and names the
array and chunk of anything damaged."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from store import ChunkError, open_store
from store.layout import shard_path


def _reader(path, array="float32", split="train"):
    return open_store(path).chunk_reader(split, array)


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_chunks_equal_zarr_python(tmp_path, quest_csv, make_store, compression):
    out, _ = make_store(quest_csv, batch_size=128, compression=compression)
    for array in ("float32", "categorical", "int64"):
        reader, ref = _reader(out, array), zarr.open_array(f"{out}/train/{array}")[:]
        got = np.concatenate([reader.chunk(k) for k in range(reader.chunks)])
        np.testing.assert_array_equal(got, ref)
    assert reader.chunk(reader.chunks - 1).shape[0] == 3000 - 128 * 23  # short last chunk, no padding


def test_uncompressed_chunks_are_views_of_the_page_cache(tmp_path, quest_csv, make_store):
    out, _ = make_store(quest_csv, batch_size=128, compression="none")
    chunk = _reader(out).chunk(3)
    assert not chunk.flags.owndata and not chunk.flags.writeable  # a view into the mmap


def _damage(path, array, flip=None, truncate=None):
    shard = shard_path(path, "train", array, 0)
    data = bytearray(open(shard, "rb").read())
    if flip is not None:
        data[flip] ^= 0xFF
    if truncate is not None:
        data = data[:truncate]
    with open(shard, "wb") as f:
        f.write(data)


def test_flipped_byte_names_array_and_chunk(tmp_path, quest_csv, make_store):
    out, _ = make_store(quest_csv, batch_size=128)
    reader = _reader(out)
    offset = reader._shard(0).entries[5][0]
    reader.close()
    _damage(out, "float32", flip=offset + 10)
    reader = _reader(out)
    reader.chunk(4)  # neighbours are fine
    with pytest.raises(ChunkError, match=r"train/float32: chunk 5 fails its CRC32C checksum"):
        reader.chunk(5)


def test_truncated_and_missing_shards(tmp_path, quest_csv, make_store):
    out, _ = make_store(quest_csv, batch_size=128)
    _damage(out, "float32", truncate=1000)
    with pytest.raises(ChunkError, match=r"train/float32: shard 0 .*truncated|index fails"):
        _reader(out).chunk(0)
    os.remove(shard_path(out, "train", "categorical", 0))
    with pytest.raises(ChunkError, match=r"train/categorical: shard 0 .* is missing"):
        _reader(out, "categorical").chunk(0)


@pytest.mark.parametrize("compression", ["lz4", "none"])
def test_many_threads_over_many_shards_with_a_tiny_cache(quest_csv, make_store, monkeypatch, compression):
    """Shards evicted from the open-file cache while other threads read them are closed by their last user,
    never under a read (which would fail, or read another file that reused the descriptor)."""
    import concurrent.futures

    import store.chunks
    import store.layout
    monkeypatch.setattr(store.layout, "SHARD_TARGET_BYTES", 1)  # one chunk per shard: 60 shards per array
    out, _ = make_store(quest_csv, batch_size=50, compression=compression)
    monkeypatch.setattr(store.chunks, "_OPEN_SHARDS", 2)
    reader = _reader(out)
    ref = zarr.open_array(f"{out}/train/float32")[:]
    order = np.random.default_rng(0).permutation(np.repeat(np.arange(reader.chunks), 8))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for k, got in zip(order, pool.map(lambda k: np.array(reader.chunk(int(k))), order)):
            np.testing.assert_array_equal(got, ref[k * 50:(k + 1) * 50])
    reader.close()


def test_a_blosc_header_claiming_too_much_is_refused_before_decoding():
    """A chunk with a valid checksum whose Blosc header claims 2 GiB: refused, nothing allocated."""
    import google_crc32c

    from store.shard import ChunkCodec
    codec = ChunkCodec("lz4", np.float32)
    good = codec.encode(np.arange(12, dtype=np.float32).reshape(3, 4))
    body = bytearray(good[:-4])
    body[4:8] = (2**31).to_bytes(4, "little")
    crafted = bytes(body) + google_crc32c.value(bytes(body)).to_bytes(4, "little")
    with pytest.raises(ChunkError, match=r"x/y: chunk 7 claims 2147483648 decoded bytes, expected 48"):
        codec.decode(crafted, (3, 4), array="x/y", chunk=7)
    np.testing.assert_array_equal(codec.decode(good, (3, 4)), np.arange(12).reshape(3, 4))
