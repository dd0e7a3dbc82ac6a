"""``ingest --dask``: the passes run as tasks on a Dask cluster (a scheduler and two worker processes on 127.0.0.1,
started here) and give exactly the store a local run gives with the same seed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

distributed = pytest.importorskip("distributed")

from ingest import IngestConfig, ingest as run_ingest  # noqa: E402
from ingest.cli import main  # noqa: E402
from store import open_store  # noqa: E402
from tests.helpers import subprocess_env  # noqa: E402
from tests.ingest.test_shuffle import _arrays  # noqa: E402


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """Address of a Dask scheduler with two single-threaded worker processes, all on 127.0.0.1."""
    with dask_cluster(tmp_path_factory.mktemp("dask")) as address:
        yield address


@contextmanager
def dask_cluster(folder):
    """A Dask scheduler and two single-threaded worker processes on 127.0.0.1 (run in ``folder``, with this
    process's environment as it is now); yields the scheduler's address."""
    info = str(folder / "scheduler.json")
    common = dict(env=subprocess_env(), cwd=str(folder), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", info], **common)]
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(info) and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                           info, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                          **common))
        with distributed.Client(scheduler_file=info, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
            yield client.scheduler.address
    finally:
        for proc in reversed(procs):  # workers first, so none waits for a scheduler that is gone
            proc.kill()
        for proc in procs:
            proc.wait(timeout=30)


@pytest.mark.slow
def test_cluster_ingest_equals_a_local_ingest(tmp_path, quest_csv, small_blocks, scheduler):
    options = dict(sources=[quest_csv], label="clear", val_fraction=0.1, batch_size=64, seed=3, progress=False)
    local = str(tmp_path / "local.zarr")
    run_ingest(IngestConfig(out=local, workers=2, **options))
    remote = str(tmp_path / "cluster.zarr")
    result = run_ingest(IngestConfig(out=remote, dask=scheduler, **options))
    assert _arrays(remote) == _arrays(local)
    assert result.rows == open_store(local).rows


@pytest.mark.slow
def test_blocks_parsed_twice_on_the_cluster(tmp_path, small_blocks, scheduler):
    """Blocks whose guessed quote parity is wrong are parsed again as a second round of tasks: the same store as
    a local run."""
    from tests.ingest.test_blocks import long_quoted_field_csv
    path = tmp_path / "w.csv"
    long_quoted_field_csv(path)
    options = dict(sources=[str(path)], val_fraction=0.1, progress=False, dtypes={"t": "category"})
    local = str(tmp_path / "local.zarr")
    run_ingest(IngestConfig(out=local, workers=2, **options))
    remote = str(tmp_path / "cluster.zarr")
    run_ingest(IngestConfig(out=remote, dask=scheduler, **options))
    assert _arrays(remote) == _arrays(local)


def test_unreachable_scheduler_is_one_line(tmp_path, quest_csv, capsys):
    import dask
    argv = [quest_csv, "--out", str(tmp_path / "s.zarr"), "--dask", "tcp://127.0.0.1:9", "--quiet"]
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("ingest: error: --dask tcp://127.0.0.1:9: cannot reach the Dask scheduler")
    assert err.count("\n") == 1


def test_paths_the_workers_cannot_see_are_one_line(tmp_path, quest_csv, scheduler, capsys, monkeypatch):
    import ingest.cluster
    monkeypatch.setattr(ingest.cluster, "_missing", lambda paths: paths[-1:])  # as if on another host
    argv = [quest_csv, "--out", str(tmp_path / "s.zarr"), "--dask", scheduler, "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot see" in err and "filesystem every Dask worker shares" in err
