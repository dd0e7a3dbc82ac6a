"""Sources on object storage: ``ingest s3://bucket/logs/*.csv`` reads the objects through fsspec — the planner
streams each one with ranged GETs, each parsing worker (forked, or on a Dask cluster) GETs its blocks — and gives
byte for byte the store of the same files read locally. Globs, prefixes ("folders") and ``--val`` behave as for
local paths; ``--resume`` compares sizes and ETags; missing objects, buckets and empty globs are one line. Runs
against the local S3-compatible server (moto) of the fixtures."""

from __future__ import annotations

import json
import os

import pytest

import ingest.sources
from ingest import IngestConfig, ingest as run_ingest
from ingest.cli import main
from store import OptionError, SourceError, open_store
from tests.ingest.test_remote import _files
from tests.ingest.test_resume import Crash, _crash_after
from tools.synth import write_csv

pytestmark = pytest.mark.cloud

OPTIONS = dict(label="clear", batch_size=64, seed=5, progress=False)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Local copies of what the tests upload: ``logs/`` (three CSV files of ~270 KB, four 64 KiB blocks or more
    each under ``small_blocks``, plus a text file and a sub-folder that a folder source skips) and ``val/``."""
    root = tmp_path_factory.mktemp("sources")
    for i in range(3):
        write_csv(root / "logs" / f"part-{i}.csv", 800, seed=10 + i)
    (root / "logs" / "notes.txt").write_text("not a CSV\n")
    write_csv(root / "logs" / "older" / "part-9.csv", 50, seed=9)
    write_csv(root / "val" / "held-out.csv", 300, seed=20)
    return root


@pytest.fixture
def bucket(s3, logs):
    """``s3://`` URL of a bucket holding ``logs`` under the same names."""
    import fsspec
    fs, root = fsspec.core.url_to_fs(s3)
    for folder, _, names in os.walk(logs):
        for name in names:
            rel = os.path.relpath(os.path.join(folder, name), logs).replace(os.sep, "/")
            fs.put_file(os.path.join(folder, name), f"{root}/{rel}")
    return s3


def _store(path: str) -> dict:
    """Every file of a store by relative path; the root zarr.json parsed, without what names where the sources were
    (their paths) or how long the stages took (timings differ between any two runs)."""
    files = _files(path)
    root = json.loads(files.pop("zarr.json"))
    record = root["attributes"]["tabular_store"]["ingest"]
    record.pop("timings", None)
    paths = [source.pop("path") for source in record["sources"]]
    return {"files": files, "root": root, "paths": paths}


def _same_store(remote: str, local: str, urls: list[str]) -> None:
    got, expected = _store(remote), _store(local)
    assert got["files"].keys() == expected["files"].keys()
    assert got["files"] == expected["files"]  # every chunk, shard index, vocabulary and array zarr.json
    assert got["root"] == expected["root"]  # schema, statistics, options, row counts, source sizes and splits
    assert got["paths"] == urls


@pytest.mark.parametrize("workers", [1, 2])
def test_a_glob_of_objects_gives_the_local_store(bucket, logs, tmp_path, small_blocks, workers):
    local = str(tmp_path / "local.zarr")
    expected = run_ingest(IngestConfig([str(logs / "logs" / "*.csv")], local, val_fraction=0.2, workers=1,
                                       **OPTIONS))
    remote = str(tmp_path / "remote.zarr")
    result = run_ingest(IngestConfig([f"{bucket}/logs/*.csv"], remote, val_fraction=0.2, workers=workers,
                                     **OPTIONS))  # workers=2: forked processes, each with its own connection
    _same_store(remote, local, [f"{bucket}/logs/part-{i}.csv" for i in range(3)])
    assert (result.rows, result.bytes_read) == (expected.rows, expected.bytes_read)


def test_a_prefix_and_val_urls_work_like_folders(bucket, logs, tmp_path, small_blocks, capsys):
    local = str(tmp_path / "local.zarr")
    assert main([str(logs / "logs"), "--val", str(logs / "val" / "held-out.csv"), "--out", local, "--label", "clear",
                 "--batch-size", "64", "--workers", "2", "--quiet"]) == 0
    remote = str(tmp_path / "remote.zarr")
    assert main([f"{bucket}/logs/", "--val", f"{bucket}/val/held-out.csv", "--out", remote, "--label", "clear",
                 "--batch-size", "64", "--workers", "2", "--quiet"]) == 0, capsys.readouterr().err
    # the prefix gives its *.csv objects in name order, as a folder its *.csv files: not notes.txt, not older/
    _same_store(remote, local, [f"{bucket}/logs/part-{i}.csv" for i in range(3)] + [f"{bucket}/val/held-out.csv"])
    assert open_store(remote).rows == {"train": 2400, "validation": 300}


def test_objects_are_read_in_ranges_never_whole(bucket, tmp_path, small_blocks, monkeypatch):
    """Nothing streams a whole object (the plan needs only the objects' sizes): each block is one ranged GET of its
    share of the object and a little past it (ingest.blocks.locate); no request is larger than the type-inference
    sample (1 MiB here; at most 64 MiB)."""
    from ingest.blocks import TAIL_BYTES, plan_blocks
    requests = []
    real = ingest.sources.filesystem

    def recording(url):
        fs, root = real(url)

        class Recorder:
            def __getattr__(self, name):
                return getattr(fs, name)

            def cat_file(self, path, start=None, end=None, **kw):
                data = fs.cat_file(path, start=start, end=end, **kw)
                requests.append((fs.unstrip_protocol(path), start, end, len(data)))
                return data

        return Recorder(), root

    monkeypatch.setattr(ingest.sources, "filesystem", recording)
    run_ingest(IngestConfig([f"{bucket}/logs/*.csv"], str(tmp_path / "s.zarr"), workers=1, **OPTIONS))
    assert all(start is not None and end is not None for _, start, end, _ in requests)  # never a whole object
    assert max(n for *_, n in requests) <= 1 << 20
    files, _ = ingest.sources.resolve_sources([f"{bucket}/logs/*.csv"], [], "utf-8")
    blocks = list(plan_blocks(files, 64 * 1024))
    assert len(blocks) >= 12
    spans = []
    for block in blocks:  # one request per block: its share, the byte before it, TAIL_BYTES past it
        lo, hi = block.start - (not block.first), min(block.stop + TAIL_BYTES, files[block.file].size)
        assert requests.count((files[block.file].path, lo, hi, hi - lo)) == 1
        spans.append(hi - lo)
    assert sum(spans) <= sum(f.size for f in files) + len(blocks) * (TAIL_BYTES + 1)  # each byte read about once


def test_resume_from_objects_after_a_crash(bucket, tmp_path, small_blocks, monkeypatch):
    options = dict(sources=[f"{bucket}/logs/*.csv"], val_fraction=0.2, workers=1, **OPTIONS)
    reference = str(tmp_path / "reference.zarr")
    run_ingest(IngestConfig(out=reference, **options))
    out = str(tmp_path / "out.zarr")
    with monkeypatch.context() as patch:
        _crash_after(patch, "parse_block", 4)
        with pytest.raises(Crash):
            run_ingest(IngestConfig(out=out, **options))
    run_ingest(IngestConfig(out=out, resume=True, **options))
    assert _store(out) == _store(reference)


def test_resume_refuses_a_rewritten_object(bucket, logs, tmp_path, small_blocks, monkeypatch):
    """Same size, other bytes: the ETag tells (a local file's modification time would)."""
    import fsspec
    options = dict(sources=[f"{bucket}/logs/*.csv"], workers=1, **OPTIONS)
    out = str(tmp_path / "out.zarr")
    with monkeypatch.context() as patch:
        _crash_after(patch, "parse_block", 2)
        with pytest.raises(Crash):
            run_ingest(IngestConfig(out=out, **options))
    fs, root = fsspec.core.url_to_fs(bucket)
    data = bytearray((logs / "logs" / "part-2.csv").read_bytes())
    assert data[-2:] in (b"0\n", b"1\n")  # the last row's label
    data[-2:-1] = b"1" if data[-2:-1] == b"0" else b"0"
    fs.pipe_file(f"{root}/logs/part-2.csv", bytes(data))
    with pytest.raises(OptionError, match="the sources changed since the interrupted run"):
        run_ingest(IngestConfig(out=out, resume=True, **options))


@pytest.mark.parametrize("source,message", [
    ("{bucket}/logs/missing.csv", "{bucket}/logs/missing.csv: no such object or prefix; check the URL"),
    ("{bucket}/logs/*.tsv", "{bucket}/logs/*.tsv: pattern matches no objects; check the URL"),
    ("s3://no-such-bucket-here/logs/*.csv", "s3://no-such-bucket-here/logs/*.csv: no such bucket "
                                            "'no-such-bucket-here'; check the URL and the endpoint"),
    ("s3://no-such-bucket-here/a.csv", "s3://no-such-bucket-here/a.csv: no such bucket 'no-such-bucket-here'"),
    ("{bucket}/logs/older/deeper", "{bucket}/logs/older/deeper: no such object or prefix"),
])
def test_missing_sources_are_one_line(bucket, tmp_path, capsys, source, message):
    source = source.format(bucket=bucket)
    assert main([source, "--out", str(tmp_path / "s.zarr"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ingest: error: " + message.format(bucket=bucket)), err
    with pytest.raises(SourceError):
        ingest.sources.resolve_sources([source], [], "utf-8")


def test_a_prefix_without_csv_objects_is_one_line(bucket, tmp_path, capsys):
    import fsspec
    fs, root = fsspec.core.url_to_fs(bucket)
    fs.pipe_file(f"{root}/docs/readme.txt", b"hello\n")
    assert main([f"{bucket}/docs", "--out", str(tmp_path / "s.zarr"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"ingest: error: {bucket}/docs: prefix holds no *.csv objects; point SOURCE at the CSV objects\n"


@pytest.mark.parametrize("content,message", [
    (b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe" * 100 + b"\n1,2\n", "header is not valid utf-8"),
    (b"", "file is empty"),
    (b"a,b\n", "has a header but no data rows"),
])
def test_an_object_that_is_not_a_csv_is_one_line(bucket, tmp_path, capsys, content, message):
    import fsspec
    fs, root = fsspec.core.url_to_fs(bucket)
    fs.pipe_file(f"{root}/odd/data.csv", content)
    assert main([f"{bucket}/odd/data.csv", "--out", str(tmp_path / "s.zarr"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ingest: error: {bucket}/odd/data.csv") and message in err, err


@pytest.mark.parametrize("failure,message", [
    (PermissionError("Access Denied"), "access denied (Access Denied); check the credentials (AWS_PROFILE or "
                                       "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and that they may list and read it"),
    (ConnectionError("Connection reset by peer"), "cannot read (ConnectionError: Connection reset by peer); check "
                                                  "the URL, the endpoint"),
])
def test_a_refused_read_is_one_line(bucket, tmp_path, capsys, monkeypatch, failure, message):
    real = ingest.sources.filesystem

    def refusing(url):
        fs, root = real(url)

        class Refusing:
            def __getattr__(self, name):
                return getattr(fs, name)

            def cat_file(self, *args, **kwargs):
                raise failure

        return Refusing(), root

    monkeypatch.setattr(ingest.sources, "filesystem", refusing)
    assert main([f"{bucket}/logs/part-1.csv", "--out", str(tmp_path / "s.zarr"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ingest: error: {bucket}/logs/part-1.csv: {message}"), err


def test_local_and_remote_sources_mix(bucket, logs, tmp_path, small_blocks):
    local = str(tmp_path / "local.zarr")
    run_ingest(IngestConfig([str(logs / "logs" / "part-0.csv"), str(logs / "logs" / "part-1.csv")], local,
                            workers=1, **OPTIONS))
    mixed = str(tmp_path / "mixed.zarr")
    run_ingest(IngestConfig([str(logs / "logs" / "part-0.csv"), f"{bucket}/logs/part-1.csv"], mixed, workers=2,
                            **OPTIONS))
    _same_store(mixed, local, [str(logs / "logs" / "part-0.csv"), f"{bucket}/logs/part-1.csv"])


# -- on a Dask cluster ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3_scheduler(s3_server, tmp_path_factory):
    """A Dask cluster (scheduler + 2 workers on 127.0.0.1) started after the S3 server, so its workers have the
    server's endpoint and credentials in their environment, as real workers would have theirs."""
    pytest.importorskip("distributed")
    from tests.ingest.test_cluster import dask_cluster
    with dask_cluster(tmp_path_factory.mktemp("dask")) as address:
        yield address


@pytest.mark.slow
def test_dask_workers_read_the_objects(bucket, logs, tmp_path, small_blocks, s3_scheduler):
    local = str(tmp_path / "local.zarr")
    run_ingest(IngestConfig([str(logs / "logs" / "*.csv")], local, val_fraction=0.2, workers=1, **OPTIONS))
    remote = str(tmp_path / "cluster.zarr")
    run_ingest(IngestConfig([f"{bucket}/logs/*.csv"], remote, val_fraction=0.2, dask=s3_scheduler, **OPTIONS))
    _same_store(remote, local, [f"{bucket}/logs/part-{i}.csv" for i in range(3)])


def test_dask_workers_that_cannot_read_the_objects_are_one_line(bucket, tmp_path, s3_scheduler, capsys,
                                                                monkeypatch):
    import ingest.cluster
    missing = ingest.cluster._missing
    # as if the workers had other credentials (this function runs on the workers)
    monkeypatch.setattr(ingest.cluster, "_missing", lambda paths: [p for p in paths if "://" in p])
    argv = [f"{bucket}/logs/*.csv", "--out", str(tmp_path / "s.zarr"), "--dask", s3_scheduler, "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot read {bucket}/logs/part-0.csv" in err and "AWS_* environment" in err
    files, _ = ingest.sources.resolve_sources([f"{bucket}/logs/*.csv", f"{bucket}/val/*.csv"], [], "utf-8")
    # one object per prefix (the listing found the others), every local source
    assert ingest.cluster._checked_sources(files) == [f"{bucket}/logs/part-0.csv", f"{bucket}/val/held-out.csv"]
    assert missing([f"{bucket}/logs/part-2.csv", f"{bucket}/logs/gone.csv", str(tmp_path)]) == [
        f"{bucket}/logs/gone.csv"]
