"""Stores on object storage: ``ingest --out s3://...`` writes exactly the local store's objects (root metadata
last), readers and ``trainer run`` read it through the fast path, an interrupted upload never looks complete and
``--resume`` finishes it. Runs against a local S3-compatible server (moto) started by the fixtures."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ingest import IngestConfig, ingest as run_ingest
from ingest.cli import main
from store import IncompleteStoreError, OutputExistsError, open_store
from tests.helpers import assert_same_values, without_timings

pytestmark = pytest.mark.cloud


def _objects(url: str) -> dict[str, bytes]:
    import fsspec
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return _comparable({p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root)})


def _files(path: str) -> dict[str, bytes]:
    out = {}
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            out[os.path.relpath(full, path).replace(os.sep, "/")] = open(full, "rb").read()
    return _comparable(out)


def _comparable(store: dict[str, bytes]) -> dict[str, bytes]:
    """A store's files, its root metadata less the stages' timings (which differ between any two runs)."""
    return store | {"zarr.json": without_timings(store["zarr.json"])}


OPTIONS = dict(label="clear", val_fraction=0.1, batch_size=64, seed=2, workers=1, progress=False)


@pytest.fixture
def pair(s3, tmp_path, quest_csv):
    """(local store, the same ingest written to S3)."""
    local = str(tmp_path / "local.zarr")
    run_ingest(IngestConfig([quest_csv], local, **OPTIONS))
    remote = f"{s3}/quest.zarr"
    run_ingest(IngestConfig([quest_csv], remote, work=str(tmp_path / "work"), **OPTIONS))
    return local, remote


def test_remote_store_is_byte_identical_to_a_local_one(pair, tmp_path):
    local, remote = pair
    assert _objects(remote) == _files(local)
    assert os.listdir(tmp_path / "work") == []  # its work directory inside --work is removed after the upload


def test_remote_store_reads_like_the_local_one(pair):
    from trainer.batches import BatchSource
    local, remote = pair
    a, b = open_store(local), open_store(remote)
    assert a.rows == b.rows and a.schema == b.schema
    assert_same_values(b.read_frame("validation"), a.read_frame("validation"))  # zarr-python over fsspec
    fast = [BatchSource(p, "train", seed=1) for p in (local, remote)]  # the fast path: ranged GETs, concurrent
    for i in (0, len(fast[0]) - 1):  # a whole window each (~80 ranged GETs: the local server is slow)
        x, y = fast[0].batch(i, 3), fast[1].batch(i, 3)
        np.testing.assert_array_equal(x[0]["numeric"], y[0]["numeric"])
        np.testing.assert_array_equal(x[1], y[1])


def test_interrupted_upload_is_incomplete_then_resume_finishes(s3, tmp_path, quest_csv, monkeypatch):
    import ingest.destination
    local = str(tmp_path / "local.zarr")
    run_ingest(IngestConfig([quest_csv], local, **OPTIONS))
    remote, work = f"{s3}/quest.zarr", str(tmp_path / "work")
    real_put = ingest.destination.filesystem

    class Crash(Exception):
        pass

    def failing_filesystem(url):
        fs, root = real_put(url)
        calls = iter(range(10**6))
        original = fs.put_file

        def put_file(*args, **kwargs):
            if next(calls) == 5:
                raise Crash("network gone")
            return original(*args, **kwargs)

        monkeypatch.setattr(fs, "put_file", put_file)
        return fs, root

    with monkeypatch.context() as patch:
        patch.setattr(ingest.destination, "filesystem", failing_filesystem)
        with pytest.raises(Crash):
            run_ingest(IngestConfig([quest_csv], remote, work=work, **OPTIONS))
    monkeypatch.undo()
    with pytest.raises(IncompleteStoreError, match="has not finished.*--resume"):
        open_store(remote)
    with pytest.raises(OutputExistsError, match="interrupted upload"):
        run_ingest(IngestConfig([quest_csv], remote, work=work, **OPTIONS))
    run_ingest(IngestConfig([quest_csv], remote, work=work, resume=True, **OPTIONS))
    assert _objects(remote) == _files(local)


def test_existing_and_foreign_remote_objects(pair, s3, tmp_path, quest_csv, capsys):
    _, remote = pair
    argv = [quest_csv, "--out", remote, "--work", str(tmp_path / "w2"), "--quiet", "--label", "clear"]
    assert main(argv) == 1 and "exists; pass --overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--seed", "9"]) == 0
    assert open_store(remote).attrs["ingest"]["options"]["seed"] == 9
    import fsspec
    fs, root = fsspec.core.url_to_fs(s3)
    fs.pipe(f"{root}/notes/readme.txt", b"someone else's data")
    argv = [quest_csv, "--out", f"{s3}/notes", "--work", str(tmp_path / "w3"), "--quiet", "--overwrite"]
    assert main(argv) == 1 and "holds objects that are not a store" in capsys.readouterr().err
    assert fs.cat_file(f"{root}/notes/readme.txt") == b"someone else's data"


@pytest.mark.slow
def test_trainer_runs_on_a_remote_store(pair, tmp_path):
    from trainer.cli import main as trainer_main
    _, remote = pair
    run = str(tmp_path / "run")
    assert trainer_main(["run", remote, "--out", run, "--epochs", "1", "--quiet"]) == 0
    assert os.path.exists(os.path.join(run, "metrics.json"))


def test_inspect_and_verify_a_remote_store(pair, capsys):
    from tools.inspect import main as inspect_main
    local, remote = pair
    assert inspect_main([remote, "--verify"]) == 0
    out = capsys.readouterr().out
    assert remote in out


def test_loader_processes_read_a_remote_store(pair):
    from trainer.batches import BatchSource
    from trainer.sequence import StoreSequence
    local, remote = pair
    seq = StoreSequence(remote, "train", workers=2, use_multiprocessing=True, seed=3)
    try:
        reference = BatchSource(local, "train", seed=3)
        for i in (0, len(seq) - 1):
            np.testing.assert_array_equal(seq[i][0]["numeric"], reference.batch(i, 0)[0]["numeric"])
    finally:
        seq.close()
