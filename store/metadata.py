"""The Zarr v3 metadata documents (``zarr.json``) of a store's groups and arrays, written without zarr-python.

The documents are exactly the ones zarr-python 3 writes for the same arrays — the same keys in the same order, the
same JSON layout (``json.dumps(..., indent=2)``) — so a store's bytes do not depend on who laid it out;
``tests/store/test_metadata.py`` compares every file with a layout made through zarr-python. Creating the ~34 files
of a store's layout through zarr-python's API cost ~50 ms of the ingest's serial time (its async machinery per
call), ~5 ms this way.

The codecs follow FORMAT.md: a 2-D array is sharded (``sharding_indexed``: inner chunks ``bytes`` -> optional
``blosc`` -> ``crc32c``, index ``bytes`` -> ``crc32c`` at the end); a vocabulary's 1-D arrays are plain chunked
arrays with the same codecs. :func:`write_chunked` writes such a 1-D array's chunks as zarr-python does: each chunk
at its full shape (the last one padded with the fill value), a chunk holding only the fill value not written.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from .layout import blosc_config
from .shard import ChunkCodec

__all__ = ["group_document", "array_document", "write_document", "write_chunked"]


def group_document(attributes: dict) -> dict:
    return {"attributes": attributes, "zarr_format": 3, "node_type": "group"}


def array_document(*, shape: tuple[int, ...], dtype, chunk_shape: tuple[int, ...], compression: str, fill_value,
                   dimension_names: list[str], attributes: dict, shard_shape: tuple[int, ...] | None = None) -> dict:
    """An array's metadata: chunks of ``chunk_shape``, inside shards of ``shard_shape`` when given."""
    dtype = np.dtype(dtype)
    codecs = _chunk_codecs(dtype, compression)
    if shard_shape is not None:
        codecs = [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": list(chunk_shape), "codecs": codecs,
            "index_codecs": [_bytes_codec(np.dtype("<u8")), {"name": "crc32c"}], "index_location": "end"}}]
    grid_shape = shard_shape if shard_shape is not None else chunk_shape
    return {
        "shape": [int(n) for n in shape],
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [int(n) for n in grid_shape]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": _fill_json(fill_value, dtype),
        "codecs": codecs,
        "attributes": attributes,
        "dimension_names": list(dimension_names),
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def write_document(folder: str, document: dict) -> None:
    """Write ``folder/zarr.json`` (creating the folder), as zarr-python serialises it. Not flushed: the layout is
    built in a temporary folder that is flushed whole before it is renamed into place (StoreWriter.create)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "zarr.json"), "wb") as f:
        f.write(json.dumps(document, allow_nan=True, indent=2).encode())


def write_chunked(folder: str, data: np.ndarray, chunk: int, compression: str, dimension: str, fill_value=0) -> None:
    """A 1-D array ``data`` as a chunked array in ``folder``: its metadata and its chunks ``c/<i>``. ``chunk``:
    elements per chunk, at most; an array shorter than that has one chunk of its length (at least 1)."""
    chunk = max(1, min(chunk, len(data)))
    write_document(folder, array_document(shape=data.shape, dtype=data.dtype, chunk_shape=(chunk,),
                                          compression=compression, fill_value=fill_value,
                                          dimension_names=[dimension], attributes={}))
    codec = ChunkCodec(compression, data.dtype)
    for i in range(math.ceil(len(data) / chunk)):
        part = data[i * chunk:(i + 1) * chunk]
        if not np.any(part != fill_value):
            continue  # zarr-python does not write a chunk that holds only the fill value
        if len(part) < chunk:
            part = np.concatenate([part, np.full(chunk - len(part), fill_value, data.dtype)])
        os.makedirs(os.path.join(folder, "c"), exist_ok=True)
        with open(os.path.join(folder, "c", str(i)), "wb") as f:
            f.write(codec.encode(part))


def _chunk_codecs(dtype: np.dtype, compression: str) -> list[dict]:
    codecs = [_bytes_codec(dtype)]
    config = blosc_config(compression)
    if config is not None:
        codecs.append({"name": "blosc", "configuration": {"typesize": dtype.itemsize, **config, "blocksize": 0}})
    return codecs + [{"name": "crc32c"}]


def _bytes_codec(dtype: np.dtype) -> dict:
    """zarr-python names the byte order only where there is one (types wider than a byte)."""
    return {"name": "bytes"} if dtype.itemsize == 1 else {"name": "bytes", "configuration": {"endian": "little"}}


def _fill_json(value, dtype: np.dtype):
    if dtype.kind == "f":
        value = float(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value == math.inf else
                                                 "-Infinity" if value == -math.inf else value)
    return int(value)
