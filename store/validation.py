"""Check a store's metadata before trusting it: a store is input too, and may be damaged, edited or crafted.

:func:`check_store` runs once when a store is opened (:func:`store.open_store`). It checks every field of the root
attributes (type and range), their consistency (column indices, vocabularies, statistics) and their agreement with
each split group's and array's own ``zarr.json`` (rows, shapes, chunk shapes, codecs, column names), so that
nothing read later divides by zero, indexes past a list, builds a path outside the store or sizes an allocation
from an absurd number. Each problem is one :class:`~store.errors.MetadataError` line: the store, the field, what
was found, what was expected, and the fix (issue 11 §5; FORMAT.md, "Readers validate").

Metadata files are read by :func:`read_metadata`: regular files only (a FIFO or a device would block or never
end) of at most ``MAX_METADATA_BYTES``. Shard indexes are checked when a shard is opened
(:func:`store.shard.check_index`), decoded sizes before each chunk is decompressed (:class:`store.shard.ChunkCodec`).
"""

from __future__ import annotations

import json
import os
import stat

from .errors import MetadataError
from .layout import (BLOSC_HEADER_BYTES, CATEGORY_ARRAY, COMPRESSIONS, FLOAT_ARRAY, INT_DTYPES, MAX_BATCH_SIZE,
                     MAX_CATEGORIES, MAX_CHUNKS_PER_SHARD, SPLITS, VOCABULARY_GROUP, array_fill_value, blosc_config)
from .location import filesystem, is_remote
from .schema import KINDS, Schema

__all__ = ["check_store", "read_metadata", "read_remote_metadata", "show_value", "MAX_METADATA_BYTES",
           "MAX_CHUNK_BYTES", "MAX_CHUNKS"]

MAX_METADATA_BYTES = 256 * 2**20  # one zarr.json; a version-1 root holds the vocabularies
MAX_CHUNK_BYTES = 2**31 - 1 - BLOSC_HEADER_BYTES  # one decoded chunk: the most a Blosc buffer holds
MAX_CHUNKS = 2**31  # chunks of one split (2e12 rows at the default batch size): bounds the per-epoch permutation
MAX_VOCABULARY_BYTES = 2**36  # one vocabulary's UTF-8 bytes (64 GiB): read only to turn codes into strings
ARRAYS_OF_KIND = {"float": (FLOAT_ARRAY,), "category": (CATEGORY_ARRAY,), "int": INT_DTYPES, "bool": INT_DTYPES,
                  "datetime": INT_DTYPES}
_FIX = "the store's metadata is damaged or was edited; re-create the store with ingest"


def read_metadata(path: str) -> bytes | None:
    """The bytes of a local metadata file, None when it does not exist; refuses (MetadataError) anything but a
    regular file of at most MAX_METADATA_BYTES. Opened non-blocking: opening a FIFO for reading would wait for a
    writer forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MetadataError(f"{path}: not a regular file (a FIFO, device or directory); {_FIX}", path=path)
        if st.st_size > MAX_METADATA_BYTES:
            raise MetadataError(f"{path}: {st.st_size} bytes, more than the {MAX_METADATA_BYTES} a metadata file "
                                f"may hold; {_FIX}", path=path)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_METADATA_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_METADATA_BYTES:  # grew since fstat
        raise MetadataError(f"{path}: more than the {MAX_METADATA_BYTES} bytes a metadata file may hold; {_FIX}",
                            path=path)
    return data


def read_remote_metadata(fs, path: str, url: str) -> bytes:
    """The first MAX_METADATA_BYTES (+1, to tell a larger object) of a remote metadata object."""
    data = fs.cat_file(path, start=0, end=MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(f"{url}: more than the {MAX_METADATA_BYTES} bytes a metadata file may hold; {_FIX}",
                            path=url)
    return data


def check_store(path: str, attrs: dict) -> None:
    """Raise MetadataError unless every field of the root attributes ``attrs`` (format, version and completeness
    already checked) is well typed, in range, consistent, and agrees with the groups, arrays and files of ``path``."""
    ck = _Fields(path)
    batch = ck.integer(attrs, "batch_size", 1, MAX_BATCH_SIZE)
    cps = ck.integer(attrs, "chunks_per_shard", 1, MAX_CHUNKS_PER_SHARD)
    compression = ck.choice(attrs, "compression", COMPRESSIONS)
    schema = _check_schema(ck, ck.get(attrs, "schema", dict), attrs["version"], path)
    rows = _check_splits(ck, ck.get(attrs, "splits", dict), batch)
    for name, columns in schema.arrays.items():
        chunk_bytes = batch * len(columns) * schema.array_dtype(name).itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            ck.fail("batch_size", batch, f"at most {MAX_CHUNK_BYTES // (chunk_bytes // batch)} (chunks of the "
                    f"{name} array hold at most {MAX_CHUNK_BYTES} bytes)")
    if "statistics" in attrs:
        _check_statistics(ck, ck.get(attrs, "statistics", dict), schema, rows)
    if "ingest" in attrs:
        _check_ingest(ck, ck.get(attrs, "ingest", dict))
    _check_layout(ck, _Files(path), schema, rows, batch, cps, compression)


class _Fields:
    """Typed access to metadata fields; every failure is one MetadataError naming the store and the field."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, field: str, found, expected: str):
        raise MetadataError(f"{self.path}: {_printable(field[:120])} is {show_value(found)}, expected {expected}; "
                            f"{_FIX}", path=self.path)

    def get(self, parent: dict, key: str, kind: type, field: str | None = None, *, optional: bool = False):
        field = field or key
        if key not in parent:
            if optional:
                return None
            self.fail(field, _MISSING, f"a {_KIND_NAMES[kind]}")
        value = parent[key]
        if optional and value is None:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(field, value, f"a {_KIND_NAMES[kind]}")
        return value

    def integer(self, parent: dict, key: str, lo: int, hi: int, field: str | None = None) -> int:
        value = self.get(parent, key, int, field)
        if not lo <= value <= hi:
            self.fail(field or key, value, f"an integer from {lo} to {hi}")
        return value

    def choice(self, parent: dict, key: str, allowed, field: str | None = None):
        value = parent.get(key, _MISSING)
        if not isinstance(value, str) or value not in allowed:
            self.fail(field or key, value, "one of " + ", ".join(map(str, allowed)))
        return value


class _Missing:
    def __repr__(self) -> str:
        return "missing"


_MISSING = _Missing()
_KIND_NAMES = {int: "JSON integer", str: "string", dict: "JSON object", list: "JSON list", bool: "true or false"}


def show_value(value) -> str:
    """A value found in metadata, for a one-line message: JSON, cut short."""
    if isinstance(value, _Missing):
        return "missing"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return _printable(text if len(text) <= 60 else text[:57] + "...")


def _printable(text: str) -> str:
    """Names and values come from the file: escape what would break the line or the terminal (controls, lone
    surrogates)."""
    return text if text.isprintable() else "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _check_schema(ck: _Fields, data: dict, version: int, path: str) -> Schema:
    columns = ck.get(data, "columns", list, "schema.columns")
    if not columns:
        ck.fail("schema.columns", columns, "at least one column")
    names: set[str] = set()
    indices: dict[str, list[int]] = {}
    for i, col in enumerate(columns):
        where = f"schema.columns[{i}]"
        if not isinstance(col, dict):
            ck.fail(where, col, "a JSON object")
        name = ck.get(col, "name", str, f"{where}.name")
        if name in names:
            ck.fail(f"{where}.name", name, "a name no other column has")
        names.add(name)
        kind = ck.choice(col, "kind", KINDS, f"{where}.kind")
        array = ck.choice(col, "array", ARRAYS_OF_KIND[kind], f"{where}.array")
        indices.setdefault(array, []).append(ck.integer(col, "index", 0, len(columns) - 1, f"{where}.index"))
        _check_categories(ck, col, where, kind, version)
        if kind == "datetime" and col.get("unit", _MISSING) != "ns":
            ck.fail(f"{where}.unit", col.get("unit", _MISSING), '"ns"')
    for array, got in indices.items():
        if sorted(got) != list(range(len(got))):
            ck.fail(f"schema.columns (array {array})", sorted(got), f"indices 0..{len(got) - 1}, each once")
    label = ck.get(data, "label", str, "schema.label", optional=True)
    if label is not None and label not in names:
        ck.fail("schema.label", label, "null or the name of a column")
    return Schema.from_json(data, path)


def _check_categories(ck: _Fields, col: dict, where: str, kind: str, version: int) -> None:
    """Version 1: a category column's vocabulary inline (distinct strings). Version 2: its ``vocabulary_size`` (the
    values are arrays, checked in _check_layout and when read) or its ``hash_buckets``, exactly one of them."""
    fields = ("vocabulary",) if version == 1 else ("vocabulary_size", "hash_buckets")
    for key in ("vocabulary", "vocabulary_size", "hash_buckets"):
        if key in col and (kind != "category" or key not in fields):
            ck.fail(f"{where}.{key}", col[key], f"absent in a column of kind {kind} (format version {version})")
    if kind != "category":
        return
    if version == 1:
        vocab = ck.get(col, "vocabulary", list, f"{where}.vocabulary")
        if not all(isinstance(v, str) for v in vocab) or len(set(vocab)) != len(vocab):
            ck.fail(f"{where}.vocabulary", vocab, "a list of distinct strings")
        return
    if ("vocabulary_size" in col) == ("hash_buckets" in col):
        ck.fail(f"{where}", "both" if "hash_buckets" in col else "neither", "vocabulary_size or hash_buckets")
    if "vocabulary_size" in col:
        ck.integer(col, "vocabulary_size", 0, MAX_CATEGORIES, f"{where}.vocabulary_size")
    else:
        ck.integer(col, "hash_buckets", 1, MAX_CATEGORIES, f"{where}.hash_buckets")


def _check_splits(ck: _Fields, splits: dict, batch: int) -> dict[str, int]:
    rows = {}
    for split, entry in splits.items():
        if split not in SPLITS:  # also what keeps split names safe as path components
            ck.fail("a split name", split, "one of " + ", ".join(SPLITS))
        if not isinstance(entry, dict):
            ck.fail(f"splits.{split}", entry, "a JSON object")
        rows[split] = ck.integer(entry, "rows", 0, MAX_CHUNKS * batch, f"splits.{split}.rows")
    if "train" not in rows:
        ck.fail("splits", sorted(rows), "a train split")
    return rows


_NUMBER_STRINGS = ("inf", "-inf", "nan")


def _check_statistics(ck: _Fields, statistics: dict, schema: Schema, rows: dict[str, int]) -> None:
    for split, columns in statistics.items():
        if split not in rows:
            ck.fail("statistics", split, "statistics of the store's splits: " + ", ".join(rows))
        if not isinstance(columns, dict):
            ck.fail(f"statistics.{split}", columns, "a JSON object")
        for name, st in columns.items():
            where = f"statistics.{split}.{name}"
            if name not in schema:
                ck.fail(f"statistics.{split}", name, "statistics of the store's columns")
            if not isinstance(st, dict):
                ck.fail(where, st, "a JSON object")
            count = ck.integer(st, "count", 0, rows[split], f"{where}.count")
            missing = ck.integer(st, "missing", 0, rows[split], f"{where}.missing")
            if count + missing != rows[split]:
                ck.fail(f"{where}.missing", missing, f"{rows[split] - count} (rows of the split - count)")
            kind = schema[name].kind
            if kind != "category":
                _check_numbers(ck, st, where, kind, count)


def _check_numbers(ck: _Fields, st: dict, where: str, kind: str, count: int) -> None:
    """mean, std: numbers (or "inf"/"-inf"/"nan" for floats) or null; min, max: null exactly when count is 0, and
    integers for the integer-like kinds (the trainer compares them)."""
    for key in ("mean", "std", "min", "max"):
        value = st.get(key)
        if key in ("min", "max") and (value is None) != (count == 0):
            ck.fail(f"{where}.{key}", value, "null exactly when count is 0")
        if value is None:
            continue
        if key in ("min", "max") and kind != "float":
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or \
                (kind == "float" and value in _NUMBER_STRINGS)
        if not ok:
            ck.fail(f"{where}.{key}", value, "a number" + (' or "inf", "-inf", "nan"' if kind == "float" else "")
                    + " or null")


def _check_ingest(ck: _Fields, info: dict) -> None:
    """The record of how the store was made (read by tools.inspect)."""
    counts = [k for k in ("rows_read", "rows_stored", "rows_rejected") if k in info]
    if counts and len(counts) != 3:
        ck.fail("ingest", sorted(info), "rows_read, rows_stored and rows_rejected together")
    for key in counts:
        ck.integer(info, key, 0, 2**63 - 1, f"ingest.{key}")
    ck.get(info, "options", dict, "ingest.options", optional=True)
    ck.get(info, "rejects", str, "ingest.rejects", optional=True)
    for i, src in enumerate(ck.get(info, "sources", list, "ingest.sources", optional=True) or ()):
        if not isinstance(src, dict):
            ck.fail(f"ingest.sources[{i}]", src, "a JSON object")
        ck.get(src, "path", str, f"ingest.sources[{i}].path")
        ck.get(src, "split", str, f"ingest.sources[{i}].split")
        ck.integer(src, "bytes", 0, 2**63 - 1, f"ingest.sources[{i}].bytes")
    for stage, seconds in (ck.get(info, "timings", dict, "ingest.timings", optional=True) or {}).items():
        if not isinstance(seconds, dict):
            ck.fail(f"ingest.timings.{stage}", seconds, "a JSON object")
        for key in ("wall", "cpu"):
            value = seconds.get(key, _MISSING)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1e12:
                ck.fail(f"ingest.timings.{stage}.{key}", value, "a number of seconds from 0 to 1e12")


class _Files:
    """The metadata files of a local or remote store (relative paths, '/'-separated)."""

    def __init__(self, path: str):
        self.path, self.remote = path, is_remote(path)
        self.fs, self.root = filesystem(path) if self.remote else (None, path)

    def json(self, rel: str):
        """The parsed JSON of ``rel``; MetadataError when missing, unreadable or not JSON."""
        where = f"{self.path}/{rel}"
        try:
            if self.remote:
                raw = read_remote_metadata(self.fs, f"{self.root}/{rel}", where)
            else:
                raw = read_metadata(os.path.join(self.root, *rel.split("/")))
        except FileNotFoundError:
            raw = None
        except OSError as exc:
            raise MetadataError(f"{where}: unreadable ({exc}); {_FIX}", path=self.path) from None
        if raw is None:
            raise MetadataError(f"{where}: missing; {_FIX}", path=self.path)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise MetadataError(f"{where}: not valid JSON ({str(exc).splitlines()[0][:80]}); {_FIX}",
                                path=self.path) from None


def _check_layout(ck: _Fields, files: _Files, schema: Schema, rows: dict[str, int], batch: int, cps: int,
                  compression: str) -> None:
    """Each split group and array agrees with the root attributes (a missing or damaged shard is a ChunkError when
    it is read, naming the array and chunk)."""
    for split, n in rows.items():
        group = files.json(f"{split}/zarr.json")
        _match(ck, f"{split}/zarr.json", group, {"zarr_format": 3, "node_type": "group", "attributes": {"rows": n}})
        for name in schema.arrays:
            rel = f"{split}/{name}/zarr.json"
            meta = files.json(rel)
            _match(ck, rel, meta, _array_metadata(schema, name, n, batch, cps, compression))
            _check_codecs(ck, rel, meta)
    for col in schema.arrays.get(CATEGORY_ARRAY, ()):
        if not isinstance(col.vocabulary, (list, tuple)) and col.vocabulary is not None:  # stored (version 2)
            _check_vocabulary(ck, files, col.index, len(col.vocabulary))


def _check_vocabulary(ck: _Fields, files: "_Files", index: int, size: int) -> None:
    """The vocabulary's two arrays have the shapes and types its size says (the offsets themselves are checked
    when the values are read: store.vocabulary)."""
    rel = f"{VOCABULARY_GROUP}/{index}/offsets/zarr.json"
    _match(ck, rel, files.json(rel), {"zarr_format": 3, "node_type": "array", "shape": [size + 1],
                                      "data_type": "int64"})
    rel = f"{VOCABULARY_GROUP}/{index}/utf8/zarr.json"
    meta = files.json(rel)
    _match(ck, rel, meta, {"zarr_format": 3, "node_type": "array", "data_type": "uint8"})
    shape = meta.get("shape")
    if not (isinstance(shape, list) and len(shape) == 1 and type(shape[0]) is int
            and 0 <= shape[0] <= MAX_VOCABULARY_BYTES):
        ck.fail(f"{rel} shape", shape, f"[n] with n from 0 to {MAX_VOCABULARY_BYTES}")


def _array_metadata(schema: Schema, name: str, rows: int, batch: int, cps: int, compression: str) -> dict:
    """What FORMAT.md fixes in the zarr.json of array ``name`` (a subset: other keys may be present)."""
    n = len(schema.arrays[name])
    fill = array_fill_value(name)  # NaN for float32: "NaN" in JSON
    blosc = blosc_config(compression)  # only its cname is checked: a reader decodes any clevel and shuffle
    inner = [{"name": "bytes"}] + ([] if blosc is None else
                                   [{"name": "blosc", "configuration": {"cname": blosc["cname"]}}]) + [{"name": "crc32c"}]
    return {"zarr_format": 3, "node_type": "array", "shape": [rows, n],
            "data_type": schema.array_dtype(name).name, "fill_value": "NaN" if name == FLOAT_ARRAY else fill,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [batch * cps, n]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "codecs": [{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [batch, n], "codecs": inner, "index_location": "end",
                "index_codecs": [{"name": "bytes"}, {"name": "crc32c"}]}}],
            "attributes": {"columns": [c.name for c in schema.arrays[name]]}}


def _match(ck: _Fields, where: str, found, expected, field: str = "") -> None:
    """``found`` holds ``expected``: the same keys with matching values (extra keys allowed), lists of the same
    length, scalars of the same JSON type and value."""
    if isinstance(expected, dict):
        if not isinstance(found, dict):
            ck.fail(f"{where} {field or '(the file)'}", found, "a JSON object")
        for key, value in expected.items():
            sub = f"{field}.{key}" if field else key
            if key not in found:
                ck.fail(f"{where} {sub}", _MISSING, show_value(value))
            _match(ck, where, found[key], value, sub)
    elif isinstance(expected, list):
        if not isinstance(found, list) or len(found) != len(expected):
            ck.fail(f"{where} {field}", found, show_value(expected))
        for i, (a, b) in enumerate(zip(found, expected)):
            _match(ck, where, a, b, f"{field}[{i}]")
    elif type(found) is not type(expected) or found != expected:
        ck.fail(f"{where} {field}", found, show_value(expected))


def _check_codecs(ck: _Fields, where: str, meta: dict) -> None:
    """Little-endian bytes codecs (the only order this reader decodes) and no storage transformers."""
    sharding = meta["codecs"][0]["configuration"]
    for codec in sharding["codecs"] + sharding["index_codecs"]:
        config = codec.get("configuration", {})
        if codec["name"] == "bytes" and (not isinstance(config, dict) or config.get("endian", "little") != "little"):
            ck.fail(f"{where} codecs (bytes)", config, '{"endian": "little"}')
    if meta.get("storage_transformers", []) != []:
        ck.fail(f"{where} storage_transformers", meta["storage_transformers"], "[]")

