"""Shared fixtures: small CSV files, an ingest runner, and a frame comparison that matches pandas' values."""

from __future__ import annotations

import pytest

import ingest.pipeline
from ingest import IngestConfig, ingest as run_ingest
from tools.synth import write_csv


@pytest.fixture
def small_blocks(monkeypatch):
    """Tiny parse blocks and shuffle buckets, so small inputs exercise several of each (and several workers)."""
    monkeypatch.setattr(ingest.pipeline, "BLOCK_BYTES", 64 * 1024)
    monkeypatch.setattr(ingest.pipeline, "BUCKET_BYTES", 96 * 1024)


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
