"""Shard encoding: what zarr-python reads, checksums that catch corruption, and errors naming array and chunk."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from store import ChunkError, Column, Schema, StoreWriter, open_store
from store.shard import ChunkCodec, read_index


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
@pytest.mark.parametrize("rows", [1, 7, 8, 20])
def test_zarr_python_reads_what_the_writer_wrote(tmp_path, compression, rows):
    schema = Schema((Column("a", "float", "float32", 0), Column("b", "float", "float32", 1),
                     Column("n", "int", "int16", 0)))
    writer = StoreWriter(str(tmp_path / "s"), schema=schema, rows={"train": rows}, batch_size=3,
                         chunks_per_shard=2, compression=compression)
    writer.create()
    floats = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2)
    ints = (np.arange(rows, dtype=np.int16) * -7).reshape(rows, 1)
    for shard in range(writer.shards("train")):
        sl = slice(shard * 6, shard * 6 + 6)
        writer.write_shard("train", shard, {"float32": floats[sl], "int16": ints[sl]})
    writer.commit({})
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "s/train/float32"))[:], floats)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "s/train/int16"))[:], ints)
    assert open_store(str(tmp_path / "s")).read_frame("train")["n"].tolist() == ints.ravel().tolist()


def test_checksum_catches_a_flipped_byte():
    codec = ChunkCodec("lz4", np.float32)
    chunk = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    data = bytearray(codec.encode(chunk))
    np.testing.assert_array_equal(codec.decode(bytes(data), (100, 4)), chunk)
    data[len(data) // 2] ^= 0x01
    with pytest.raises(ChunkError, match="train/float32: chunk 5 fails its CRC32C checksum"):
        codec.decode(bytes(data), (100, 4), array="train/float32", chunk=5)
    with pytest.raises(ChunkError, match="chunk 5 is truncated"):
        codec.decode(b"ab", (100, 4), array="train/float32", chunk=5)


def test_index_checksum_and_truncation():
    index = np.zeros((2, 2), "<u8").tobytes()
    import google_crc32c
    import struct
    tail = index + struct.pack("<I", google_crc32c.value(index))
    assert read_index(tail, 2).shape == (2, 2)
    with pytest.raises(ChunkError, match="shard 3 index fails"):
        read_index(b"\x01" + tail[1:], 2, array="a", shard=3)
    with pytest.raises(ChunkError, match="shard 3 is truncated"):
        read_index(tail[4:], 2, array="a", shard=3)
