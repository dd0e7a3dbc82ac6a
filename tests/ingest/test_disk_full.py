"""A full disk: one-line 'no space left' error, nothing that looks complete, and --resume finishes once space is
freed. Uses a size-limited tmpfs (root only; CI runs as root), else a simulated ENOSPC at the write layer."""

from __future__ import annotations

import errno
import os

import pytest

from ingest import IngestConfig, ingest as run_ingest
from store import DiskFullError, open_store, partial_path
from tools.synth import write_csv


def test_disk_full_on_tmpfs_then_resume(tmp_path, small_disk):
    disk = small_disk("600k")
    csv_path = write_csv(tmp_path / "q.csv", 4000, seed=2)  # ~1.3 MB CSV: spill + store do not fit in 600 KB
    out = str(disk / "s.zarr")
    cfg = dict(sources=[str(csv_path)], workers=1, progress=False, compression="none")
    with pytest.raises(DiskFullError, match="no space left on device.*--resume") as info:
        run_ingest(IngestConfig(out=out, **cfg))
    assert "\n" not in str(info.value)
    assert not os.path.exists(out)
    small_disk.grow(disk, "20m")
    run_ingest(IngestConfig(out=out, resume=True, **cfg))
    assert open_store(out).rows == {"train": 4000}


def test_simulated_enospc_when_writing_shards(tmp_path, quest_csv, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    out = str(tmp_path / "s.zarr")
    with monkeypatch.context() as patch:
        patch.setattr("store.writer.write_atomic", full)
        with pytest.raises(DiskFullError, match="no space left"):
            run_ingest(IngestConfig([quest_csv], out, workers=1, progress=False))
    assert os.path.isdir(partial_path(out)) and not os.path.exists(out)
    run_ingest(IngestConfig([quest_csv], out, resume=True, workers=1, progress=False))
    assert open_store(out).rows == {"train": 3000}
