"""Shared fixtures: small CSV files, an ingest runner, and a frame comparison that matches pandas' values."""

from __future__ import annotations

import os
import subprocess

import pytest

import ingest.pipeline
from ingest import IngestConfig, ingest as run_ingest
from tools.synth import write_csv


@pytest.fixture
def small_blocks(monkeypatch):
    """Tiny parse blocks and shuffle buckets, so small inputs exercise several of each (and several workers)."""
    monkeypatch.setattr(ingest.pipeline, "BLOCK_BYTES", 64 * 1024)
    monkeypatch.setattr(ingest.pipeline, "BUCKET_BYTES", 96 * 1024)


@pytest.fixture
def real_blocks(monkeypatch):
    """The production block and bucket sizes (what every test without ``small_blocks`` uses), stated and enforced
    for tests of size-dependent behaviour: planning cost, record and header limits, memory bounds. Returns the
    block size."""
    from ingest import config
    monkeypatch.setattr(ingest.pipeline, "BLOCK_BYTES", config.BLOCK_BYTES)
    monkeypatch.setattr(ingest.pipeline, "BUCKET_BYTES", config.BUCKET_BYTES)
    return config.BLOCK_BYTES


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size)`` -> a folder on a tmpfs of that size ("600k"); ``small_disk.grow(path, size)`` frees
    space. Skips where tmpfs cannot be mounted (needs root; CI runs as root)."""
    mounts = []

    def mount(size: str):
        path = tmp_path / f"disk{len(mounts)}"
        path.mkdir()
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                               capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounts.append(path)
        return path

    mount.grow = lambda path, size: subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)
    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="session")
def quest_csv(tmp_path_factory):
    """A 3000-row synthetic quest log (~1 MB)."""
    return str(write_csv(tmp_path_factory.mktemp("data") / "quest.csv", 3000, seed=7))


@pytest.fixture
def make_store(tmp_path):
    """``make_store(sources, **options)`` -> (store path, IngestResult); workers=1 and no progress by default."""
    counter = iter(range(1000))

    def make(sources, **options):
        out = str(tmp_path / f"store{next(counter)}.zarr")
        options.setdefault("workers", 1)
        options.setdefault("progress", False)
        cfg = IngestConfig(sources=sources if isinstance(sources, list) else [sources], out=out, **options)
        return out, run_ingest(cfg)

    return make


@pytest.fixture(scope="session")
def s3_server():
    """A local S3-compatible server (moto) on 127.0.0.1, with the standard AWS environment pointing at it and an
    empty bucket per test through the ``s3`` fixture. Skips where moto or s3fs are missing (CI installs them)."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def s3(s3_server, request):
    """``s3://`` URL of a fresh, empty bucket on the local server."""
    import fsspec
    bucket = "test-" + "".join(ch for ch in request.node.name.lower() if ch.isalnum())[:40]
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    if fs.exists(bucket):
        fs.rm(bucket, recursive=True)
    fs.mkdir(bucket)
    return f"s3://{bucket}"
