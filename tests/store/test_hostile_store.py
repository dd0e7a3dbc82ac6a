"""A store is input too (issue 11 §5): crafted metadata, shard indexes and chunk headers on a copy of the golden
store give a correct read or a one-line StoreError, never another exception, a hang or an allocation beyond ~1 GB.

Every read of a crafted store runs in a worker process whose address space is capped at what it maps after its
imports plus 1 GiB (a larger allocation fails there with MemoryError, which fails the test), under a timeout (a
hang fails the test; a crash of the worker too). Examples per property: HYPOTHESIS_EXAMPLES (default 30); CI runs a
fixed (derandomized) sequence.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import shutil
import tempfile
import traceback

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from store import ChunkError, MetadataError, StoreError, open_store  # noqa: E402
from store.shard import ChunkCodec  # noqa: E402
from tests.store.test_golden import GOLDEN, VERSIONS  # noqa: E402

SETTINGS = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "30")), deadline=None,
                    derandomize=os.environ.get("CI") == "true", database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HEADROOM = 1 << 30  # bytes a worker may map beyond what its imports mapped
TIMEOUT = 60  # seconds for one read of a tiny store (the first one starts the worker)
INDEX_BYTES = 16 * 1024 + 4  # the golden store has 1024 chunks per shard


# -- the guarded reader (runs in the worker process) ---------------------------------------------------------------

def _cap_memory() -> None:
    import resource

    import pandas  # noqa: F401  everything a read imports, mapped before the cap is measured
    import store.reader  # noqa: F401
    import tools.inspect  # noqa: F401
    import trainer.batches  # noqa: F401
    if not os.path.exists("/proc/self/status"):  # not Linux: reads run uncapped (still under the timeout)
        return
    with open("/proc/self/status") as f:
        mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (mapped + HEADROOM, resource.getrlimit(resource.RLIMIT_AS)[1]))


def read_everything(path: str) -> tuple[str, object]:
    """``("ok", values)``: every split as a frame, every train batch of epoch 0, the inspect text and --verify;
    ``("StoreError", message)``; ``("other", traceback)`` for anything else (MemoryError included)."""
    from tools.inspect import _text, describe, verify
    from trainer.batches import BatchSource
    try:
        store = open_store(path)
        frames = {split: _plain_frame(store.read_frame(split)) for split in store.splits}
        source = BatchSource(path, "train", seed=1)
        batches = [_plain_batch(source.batch(i, 0)) for i in range(len(source))]
        source.close()
        _text(describe(path))
        return "ok", {"frames": frames, "batches": batches, "problems": verify(path)}
    except StoreError as exc:
        return "StoreError", str(exc)
    except BaseException:  # noqa: BLE001 - the property: nothing else
        return "other", traceback.format_exc()


def _plain_frame(frame) -> dict:
    return {"columns": list(frame.columns), "dtypes": [str(t) for t in frame.dtypes],
            "values": {c: [None if pd.isna(v) else v for v in frame[c].astype(object)] for c in frame}}


def _plain_batch(batch: tuple) -> list:
    x, *rest = batch
    return [{k: v.tolist() for k, v in x.items()}] + [v.tolist() for v in rest]


# -- the guard (test process) --------------------------------------------------------------------------------------

class Guard:
    """Runs :func:`read_everything` in a capped worker process, under a timeout; a new worker after a failure."""

    def __init__(self):
        self.pool = None

    def read(self, path: str) -> tuple[str, object]:
        if self.pool is None:
            self.pool = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("forkserver"), initializer=_cap_memory)
        future = self.pool.submit(read_everything, path)
        try:
            return future.result(timeout=TIMEOUT)
        except concurrent.futures.TimeoutError:
            self.close(kill=True)
            return "hang", f"no answer within {TIMEOUT} s"
        except concurrent.futures.process.BrokenProcessPool as exc:
            self.close(kill=True)
            return "crash", f"the worker process died: {exc}"

    def close(self, kill: bool = False) -> None:
        if self.pool is not None:
            if kill:
                for process in list(self.pool._processes.values()):
                    process.kill()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


@pytest.fixture(scope="module")
def guard():
    g = Guard()
    yield g
    g.close()


@pytest.fixture(scope="module")
def original(guard):
    with tempfile.TemporaryDirectory() as tmp:
        outcome, values = guard.read(_copy(tmp))
    assert outcome == "ok", values
    return values


def _copy(tmp: str) -> str:
    path = os.path.join(tmp, "s.zarr")
    shutil.copytree(GOLDEN, path)
    return path


def _check(outcome: str, values, original, *, exact: bool = True, splits_may_go: bool = False) -> None:
    """The property: a one-line StoreError, or a read equal to the original's (``exact``; a subset of the splits
    when ``splits_may_go``); never another exception, a crash or a hang."""
    if outcome == "StoreError":
        assert "\n" not in values and values, values
        return
    assert outcome == "ok", f"{outcome}: {values}"
    if exact:
        assert set(values["frames"]) == set(original["frames"]) or splits_may_go and \
            set(values["frames"]) <= set(original["frames"])
        for split, frame in values["frames"].items():
            assert frame == original["frames"][split], split
        assert values["batches"] == original["batches"]


# -- root metadata ---------------------------------------------------------------------------------------------------

def _load(path: str) -> dict:
    with open(os.path.join(path, "zarr.json"), encoding="utf-8") as f:
        return json.load(f)


def _paths(node, prefix=()) -> list[tuple]:
    out = [prefix] if prefix else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out += _paths(child, prefix + (key,))
    return out


_GOLDEN_ATTRS = _load(GOLDEN)["attributes"]["tabular_store"]
_PATHS = {key: _paths(value, (key,)) for key, value in _GOLDEN_ATTRS.items()}

# values a crafted store might hold: other types, zero, negatives, huge, NaN, path-like names, the format's words
_HOSTILE = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 1024, 1025, 2**31, 2**53, 2**63, 2**64, 10**13, 1e13, 0.5, 2.0, -0.0,
                     float("nan"), float("inf"), True, False, None, "", "/", "..", "../x.zarr/train", "train/../..",
                     "a\x00b", "train", "validation", "nan", "inf", "lz4", "zstd", "none", "int8", "int16", "int64",
                     "float32", "categorical", "category", "int", "bool", "datetime", "float", "ns", "x" * 1000,
                     [], {}, [0], ["a"], {"rows": 3}, {"rows": 2**62}]),
    st.integers(), st.floats(), st.text(max_size=8), st.lists(st.integers(-2, 5), max_size=3),
    st.dictionaries(st.sampled_from(["rows", "count", "missing", "name", "x"]), st.integers(-1, 5), max_size=2))


@st.composite
def root_mutations(draw) -> list[tuple[str, tuple, object]]:
    """1-3 of: replace a field (at any depth) by a hostile value, delete it, or rename a key."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        top = draw(st.sampled_from(sorted(_PATHS)))
        path = draw(st.sampled_from(_PATHS[top]))
        action = draw(st.sampled_from(["replace", "replace", "delete", "rename"]))
        out.append((action, path, draw(_HOSTILE) if action == "replace" else draw(_HOSTILE.filter(
            lambda v: isinstance(v, str))) if action == "rename" else None))
    return out


def _apply(attrs: dict, mutations) -> None:
    for action, path, value in mutations:
        parent = attrs
        for key in path[:-1]:
            if not isinstance(parent, (dict, list)) or key not in (parent if isinstance(parent, dict) else
                                                                    range(len(parent))):
                break
            parent = parent[key]
        else:
            key = path[-1]
            if isinstance(parent, dict) and key in parent or isinstance(parent, list) and \
                    isinstance(key, int) and key < len(parent):
                if action == "replace":
                    parent[key] = value
                elif action == "delete":
                    del parent[key]
                elif isinstance(parent, dict):
                    parent[value] = parent.pop(key)


def _semantic(action: str, path: tuple) -> bool:
    """Fields whose change gives a different read of a valid store: statistics, the ingest record, the label,
    vocabulary strings, a kind among the integer-like kinds (``int``/``bool``/``datetime``), dropping a split."""
    return path[0] in ("statistics", "ingest") or path[:2] == ("schema", "label") or (
        path[:2] == ("schema", "columns") and len(path) >= 4 and path[3] in ("vocabulary", "kind", "unit")) or (
        path == ("splits", "validation") and action in ("delete", "rename"))


def _write_root(path: str, mutations) -> None:
    meta = _load(path)
    _apply(meta["attributes"]["tabular_store"], mutations)
    with open(os.path.join(path, "zarr.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f)


@SETTINGS
@given(mutations=root_mutations())
def test_crafted_root_metadata_reads_correctly_or_fails_with_one_line(guard, original, mutations):
    with tempfile.TemporaryDirectory() as tmp:
        path = _copy(tmp)
        _write_root(path, mutations)
        outcome, values = guard.read(path)
    semantic = any(_semantic(action, p) for action, p, _ in mutations)
    _check(outcome, values, original, exact=not semantic)


_ARRAY_META = "train/int8/zarr.json"


@SETTINGS
@given(data=st.data())
def test_crafted_array_metadata_reads_correctly_or_fails_with_one_line(guard, original, data):
    with open(os.path.join(GOLDEN, _ARRAY_META), encoding="utf-8") as f:
        paths = _paths(json.load(f))
    mutations = data.draw(st.lists(st.tuples(st.sampled_from(["replace", "delete"]), st.sampled_from(paths),
                                             _HOSTILE), min_size=1, max_size=2))
    with tempfile.TemporaryDirectory() as tmp:
        path = _copy(tmp)
        meta_path = os.path.join(path, _ARRAY_META)
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        _apply(meta, mutations)
        with open(meta_path, "w", encoding="utf-8") as f:
            json.dump(meta, f)
        outcome, values = guard.read(path)
    _check(outcome, values, original)  # nothing in an array's metadata changes a valid read


# -- shard indexes and chunk headers -----------------------------------------------------------------------------

def _crc(data: bytes) -> bytes:
    import google_crc32c
    return google_crc32c.value(data).to_bytes(4, "little")


def _shard(path: str, split: str = "train", array: str = "float32") -> str:
    return os.path.join(path, split, array, "c", "0", "0")


def _edit_index(shard: str, entries: dict[int, tuple[int, int]], fix_crc: bool = True) -> None:
    with open(shard, "rb") as f:
        data = bytearray(f.read())
    index = np.frombuffer(bytes(data[-INDEX_BYTES:-4]), "<u8").reshape(-1, 2).copy()
    for i, (offset, nbytes) in entries.items():
        index[i] = (offset, nbytes)
    body = index.tobytes()
    data[-INDEX_BYTES:] = body + (_crc(body) if fix_crc else data[-4:])
    with open(shard, "wb") as f:
        f.write(bytes(data))


def _index_of(shard: str) -> np.ndarray:
    with open(shard, "rb") as f:
        return np.frombuffer(f.read()[-INDEX_BYTES:-4], "<u8").reshape(-1, 2)


_ARRAYS = [(s, a) for s in ("train", "validation") for a in ("float32", "int8", "int64", "categorical")]


@st.composite
def index_edits(draw):
    """One entry of one shard's index set to a hostile (offset, nbytes), the index checksum recomputed (mostly)."""
    split, array = draw(st.sampled_from(_ARRAYS))
    index = _index_of(_shard(GOLDEN, split, array))
    data_end = os.path.getsize(_shard(GOLDEN, split, array)) - INDEX_BYTES
    entry = draw(st.sampled_from([0, 1, 2, 1023]) | st.integers(0, 1023))
    near = [0, 1, 4, 19, 20, data_end - 1, data_end, data_end + 1, 2**32, 2**63, 2**64 - 2, 2**64 - 1,
            *(int(v) for v in index[:2].ravel())]
    value = st.sampled_from(near) | st.integers(0, 2**64 - 1)
    offset, nbytes = (int(v) for v in index[entry])
    which = draw(st.sampled_from(["offset", "nbytes", "both"]))
    offset = draw(value) if which != "nbytes" else offset
    nbytes = draw(value) if which != "offset" else nbytes
    return split, array, {entry: (offset, nbytes)}, draw(st.sampled_from([True, True, True, False]))


@SETTINGS
@given(edit=index_edits())
def test_crafted_shard_indexes_read_correctly_or_fail_with_one_line(guard, original, edit):
    split, array, entries, fix_crc = edit
    with tempfile.TemporaryDirectory() as tmp:
        path = _copy(tmp)
        _edit_index(_shard(path, split, array), entries, fix_crc)
        outcome, values = guard.read(path)
    _check(outcome, values, original)


@SETTINGS
@given(split_array=st.sampled_from(_ARRAYS), chunk=st.sampled_from([0, 1]), position=st.integers(0, 15),
       byte=st.integers(0, 255))
def test_crafted_chunk_headers_with_valid_checksums_never_crash(guard, original, split_array, chunk, position, byte):
    """A chunk whose Blosc header is crafted and whose checksum is recomputed: any values may come back (the chunk
    is well formed), or a one-line StoreError; never a crash (c-blosc segfaults on a compressed size past the
    buffer), another exception or a large allocation."""
    split, array = split_array
    with tempfile.TemporaryDirectory() as tmp:
        path = _copy(tmp)
        shard = _shard(path, split, array)
        offset, nbytes = (int(v) for v in _index_of(shard)[chunk])
        if offset == 2**64 - 1:  # the validation split has one chunk
            return
        with open(shard, "r+b") as f:
            f.seek(offset)
            body = bytearray(f.read(nbytes - 4))
            body[position] = byte
            f.seek(offset)
            f.write(bytes(body) + _crc(bytes(body)))
        outcome, values = guard.read(path)
    _check(outcome, values, original, exact=False)


# -- the cases of the issue, one by one ----------------------------------------------------------------------------

@pytest.fixture
def copy(tmp_path):
    return _copy(str(tmp_path))


def _edit_attrs(path: str, edit) -> None:
    meta = _load(path)
    edit(meta["attributes"]["tabular_store"])
    with open(os.path.join(path, "zarr.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f)


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, r"batch_size is 0, expected an integer from 1 to"),
    ("chunks_per_shard", 0, r"chunks_per_shard is 0, expected an integer from 1 to 1024"),
    ("batch_size", "2", r'batch_size is "2", expected a JSON integer'),
    ("batch_size", True, r"batch_size is true, expected a JSON integer"),
    ("batch_size", 4, r"train/\w+/zarr.json chunk_grid.configuration.chunk_shape\[0\] is 2048, expected 4096"),
    ("compression", ["lz4"], r'compression is \["lz4"\], expected one of lz4, zstd, none'),
    ("compression", "zstd", r'codecs\[0\].configuration.codecs\[1\].configuration.cname is "lz4", expected "zstd"'),
    ("splits", [], r"splits is \[\], expected a JSON object"),
    ("schema", {"columns": "abc"}, r'schema.columns is "abc", expected a JSON list'),
    ("statistics", {"train": {"score": {"count": "2"}}}, r'statistics.train.score.count is "2", expected a JSON'),
    ("ingest", {"rows_read": 5}, r"ingest is .*expected rows_read, rows_stored and rows_rejected together"),
    ("ingest", {"timings": [1]}, r"ingest.timings is \[1\], expected a JSON object"),
    ("ingest", {"timings": {"parse": {"wall": "1", "cpu": 0}}}, r'ingest.timings.parse.wall is "1", expected a '
                                                                r"number of seconds from 0 to 1e12"),
    ("ingest", {"timings": {"sort": {"wall": 1.5}}}, r"ingest.timings.sort.cpu is missing, expected a number"),
    ("ingest", {"timings": {"x": {"wall": -1, "cpu": 0}}}, r"ingest.timings.x.wall is -1, expected a number"),
])
def test_wrong_types_and_ranges_are_one_line(copy, field, value, message):
    _edit_attrs(copy, lambda a: a.__setitem__(field, value))
    with pytest.raises(MetadataError, match=message) as err:
        open_store(copy)
    assert copy in str(err.value) and "re-create the store with ingest" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("rows", [1e13, 10**13, 2**70, -1, 4])
def test_absurd_or_inconsistent_rows_are_refused_before_any_allocation(copy, rows):
    def edit(attrs):
        attrs["splits"]["train"]["rows"] = rows
        del attrs["statistics"]  # else its counts disagree first

    _edit_attrs(copy, edit)
    with pytest.raises(MetadataError, match=r"splits.train.rows is .*expected|train/zarr.json attributes.rows is 3, "
                                            r"expected 4"):
        open_store(copy)


@pytest.mark.parametrize("name", ["../x.zarr/train", "", "/", "..", "train/../validation", "a\x00b", "test"])
def test_split_names_outside_the_format_are_refused(copy, name):
    _edit_attrs(copy, lambda a: a["splits"].__setitem__(name, {"rows": 2}))
    with pytest.raises(MetadataError, match=r"a split name is .*, expected one of train, validation"):
        open_store(copy)


def test_a_column_in_another_array_or_index_is_refused(copy):
    _edit_attrs(copy, lambda a: a["schema"]["columns"][3].__setitem__("index", 1))  # level onto cleared's index
    with pytest.raises(MetadataError, match=r"schema.columns \(array int8\) is \[1, 1, 2\], expected indices"):
        open_store(copy)
    _edit_attrs(copy, lambda a: a["schema"]["columns"][3].update(index=0, array="../../x"))
    with pytest.raises(MetadataError, match=r"schema.columns\[3\].array is .*expected one of int8"):
        open_store(copy)


@pytest.fixture
def copy_v1(tmp_path):
    """A copy of the version-1 golden store (vocabularies inline in the root metadata)."""
    path = os.path.join(str(tmp_path), "v1.zarr")
    shutil.copytree(VERSIONS[1], path)
    return path


def test_a_vocabulary_shorter_than_the_codes_is_a_store_error(copy_v1):
    copy = copy_v1
    _edit_attrs(copy, lambda a: a["schema"]["columns"][2].__setitem__("vocabulary", ["only"]))  # quest: 4 values
    store = open_store(copy)  # the code dtype still fits: only the data can tell
    with pytest.raises(ChunkError, match=r"train/categorical: column 'quest' holds code \d, outside its vocabulary "
                                         r"of 1 values"):
        store.read_frame("train")
    from trainer.batches import BatchSource
    source = BatchSource(copy, "train")
    with pytest.raises(ChunkError, match=r"train/categorical: chunk \d: column 'quest' holds code \d, outside its "
                                         r"vocabulary of 1 values"):
        [source.batch(i) for i in range(len(source))]


def test_a_vocabulary_that_changes_the_code_dtype_is_refused(copy_v1):
    _edit_attrs(copy_v1, lambda a: a["schema"]["columns"][1].__setitem__("vocabulary", [str(i) for i in range(200)]))
    with pytest.raises(MetadataError, match=r'train/categorical/zarr.json data_type is "int8", expected "int16"'):
        open_store(copy_v1)


def test_version_2_vocabulary_fields(copy):
    """A stored vocabulary's size must agree with its arrays; a column has a vocabulary or hash buckets, not both,
    and never an inline vocabulary in version 2."""
    def edit(**fields):
        shutil.copy(os.path.join(GOLDEN, "zarr.json"), os.path.join(copy, "zarr.json"))
        _edit_attrs(copy, lambda a: a["schema"]["columns"][2].update(fields))

    cases = [
        (dict(vocabulary_size=1), r"vocabulary/1/offsets/zarr.json shape\[0\] is 5, expected 2"),  # quest: 4 values
        (dict(vocabulary_size=2**40), r"schema.columns\[2\].vocabulary_size is 1099511627776, expected an integer "
                                      r"from 0 to 2147483646"),
        (dict(hash_buckets=7), r'schema.columns\[2\] is "both", expected vocabulary_size or hash_buckets'),
        (dict(vocabulary=["a"]), r'vocabulary is \["a"\], expected absent in a column of kind category \(format '
                                 r"version 2\)"),
    ]
    for fields, message in cases:
        edit(**fields)
        with pytest.raises(MetadataError, match=message):
            open_store(copy)
    shutil.rmtree(os.path.join(copy, "vocabulary", "1", "utf8"))
    edit()
    with pytest.raises(MetadataError, match=r"vocabulary/1/utf8/zarr.json: missing"):
        open_store(copy)


@pytest.mark.parametrize("entry, reason", [
    ((2**64 - 2, 10), r"points past the data"),
    ((10, 2**64 - 5), r"points past the data"),
    ((2**63, 2**63), r"points past the data"),  # the sum wraps to 0 in uint64
    ((2**64 - 1, 30), r"is half an empty-chunk marker"),
    ((0, 2**64 - 1), r"is half an empty-chunk marker"),
    ((0, 3), r"gives a size outside the 20\.\.28 bytes"),
])
def test_shard_index_entries_near_2_64_are_refused(copy, entry, reason):
    _edit_index(_shard(copy), {0: entry})
    reader = open_store(copy).chunk_reader("train", "float32")
    with pytest.raises(ChunkError, match=rf"train/float32: shard 0: the index entry of chunk 0 \(offset {entry[0]}, "
                                         rf"{entry[1]} bytes\) {reason}"):
        reader.chunk(1)


def test_overlapping_index_entries_are_refused(copy):
    index = _index_of(_shard(copy))
    offset, nbytes = (int(v) for v in index[0])
    _edit_index(_shard(copy), {5: (offset + 1, nbytes)})  # beyond the split's chunks: never read, still refused
    with pytest.raises(ChunkError, match=rf"train/float32: shard 0: the index entry of chunk 5 \(offset {offset + 1}"
                                         rf", {nbytes} bytes\) overlaps chunk 0 \(offset {offset}, {nbytes} bytes\)"):
        open_store(copy).chunk_reader("train", "float32").chunk(0)


def test_a_valid_chunk_claiming_2_gib_is_refused_before_decompressing(copy):
    shard = _shard(copy)
    offset, nbytes = (int(v) for v in _index_of(shard)[0])
    with open(shard, "r+b") as f:
        f.seek(offset)
        body = bytearray(f.read(nbytes - 4))
        body[4:8] = (2**31).to_bytes(4, "little")
        f.seek(offset)
        f.write(bytes(body) + _crc(bytes(body)))
    store = open_store(copy)
    with pytest.raises(ChunkError, match=r"train/float32: chunk 0 claims 2147483648 decoded bytes, expected 8"):
        store.chunk_reader("train", "float32").chunk(0)
    with pytest.raises(ChunkError, match=r"claims 2147483648 decoded bytes"):  # read_frame: the same checked path
        store.read_frame("train")


def test_a_compressed_size_past_the_chunk_is_refused_before_decompressing():
    """c-blosc reads past the buffer (and can segfault) when the header's compressed size exceeds it."""
    codec = ChunkCodec("lz4", np.float32)
    body = bytearray(codec.encode(np.arange(12, dtype=np.float32).reshape(3, 4))[:-4])
    body[12:16] = (2**30).to_bytes(4, "little")
    with pytest.raises(ChunkError, match=r"x/y: chunk 7 claims 1073741824 compressed bytes, holds \d+"):
        codec.decode(bytes(body) + _crc(bytes(body)), (3, 4), array="x/y", chunk=7)


@pytest.mark.parametrize("where", ["zarr.json", "train/zarr.json", "train/float32/zarr.json"])
def test_metadata_that_is_a_fifo_is_refused_not_waited_for(guard, copy, where):
    os.remove(os.path.join(copy, where))
    os.mkfifo(os.path.join(copy, where))
    outcome, message = guard.read(copy)
    assert outcome == "StoreError" and f"{where}: not a regular file" in message, message


def test_a_shard_that_is_a_fifo_is_refused_not_waited_for(guard, copy):
    os.remove(_shard(copy))
    os.mkfifo(_shard(copy))
    outcome, message = guard.read(copy)
    assert outcome == "StoreError" and "train/float32: shard 0" in message and "not a regular file" in message


def test_huge_or_deep_metadata_is_one_line(copy, monkeypatch):
    import store.validation
    monkeypatch.setattr(store.validation, "MAX_METADATA_BYTES", 1000)
    with pytest.raises(MetadataError, match=r"zarr.json: \d+ bytes, more than the 1000 a metadata file may hold"):
        open_store(copy)
    monkeypatch.undo()
    with open(os.path.join(copy, "train", "zarr.json"), "w") as f:
        f.write("[" * 100_000 + "]" * 100_000)
    with pytest.raises(MetadataError, match=r"train/zarr.json: not valid JSON"):
        open_store(copy)
