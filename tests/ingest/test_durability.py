"""Concurrency and durability of an ingest: one ingest at a time per output (the second gets one line naming the
first's PID and touches nothing of it), and every publishing rename follows the flush of what it publishes and is
followed by the flush of its directory, so a power loss cannot leave a store or work file that looks complete."""

from __future__ import annotations

import os

import pytest

from ingest import IngestConfig, ingest as run_ingest
from ingest.cli import main
from store import open_store, partial_path
from store.lock import Lock
from tests.helpers import tree

OPTIONS = dict(label="clear", batch_size=256, workers=1, progress=False)


@pytest.mark.parametrize("extra", [[], ["--overwrite"], ["--resume"]])
def test_a_second_ingest_into_the_same_output_is_refused_and_touches_nothing(tmp_path, quest_csv, capsys, extra):
    out = str(tmp_path / "q.zarr")
    run_ingest(IngestConfig([quest_csv], out, **OPTIONS))
    before = tree(out)
    os.makedirs(partial_path(out))  # the running ingest's work (as far as the second one can see)
    (tmp_path / "q.zarr.partial" / ".ingest-work").write_text("{}")
    work_before = tree(partial_path(out))
    with Lock(partial_path(out) + ".lock", "an ingest into q.zarr", made_by="ingest"):  # the first one, running
        assert main([quest_csv, "--out", out, "--label", "clear", "--quiet", *extra]) == 1
    err = capsys.readouterr().err
    assert err == (f"ingest: error: an ingest into {out} is in progress in another process (PID {os.getpid()}, "
                   f"lock {partial_path(out)}.lock); wait for it to finish or stop it, then run again\n")
    assert tree(out) == before and tree(partial_path(out)) == work_before


def test_a_lock_left_by_a_killed_ingest_does_not_block_and_is_cleaned(tmp_path, quest_csv):
    out = str(tmp_path / "q.zarr")
    with open(partial_path(out) + ".lock", "w") as f:
        f.write('{"made_by": "ingest", "pid": 999999}')
    run_ingest(IngestConfig([quest_csv], out, **OPTIONS))
    assert sorted(os.listdir(tmp_path)) == ["q.zarr"]
    assert open_store(out).rows == {"train": 3000}


def test_every_publishing_rename_is_flushed_before_and_after(tmp_path, quest_csv, monkeypatch):
    synced, renames = [], []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    def replace(src, dst):
        src, dst = os.path.realpath(src), os.path.realpath(dst)
        renames.append((src, dst, len(synced)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    out = str(tmp_path / "q.zarr")
    run_ingest(IngestConfig([quest_csv], out, val_fraction=0.2, **OPTIONS))  # one process: every write seen here
    # zarr-python's own renames inside the store layout being built are flushed when that layout is published; a
    # spill file (scratch) is never flushed: its flushed metadata says what it holds, every read checks it, and
    # --resume after a reboot reads it back to check it (test_resume.py, test_shuffle.py)
    spills = [dst for _, dst, _ in renames if dst.endswith(".bin") and "/spill/" in dst]
    assert spills and not set(spills) & set(synced)
    published = [r for r in renames if ".removing-ingest-" not in r[1] and ".old-ingest-" not in r[1]
                 and "/store.creating/" not in r[1] and not r[1].endswith(".bin")]
    assert len(published) > 10
    for i, (src, dst, at) in enumerate(published):
        assert src in synced[:at], f"{dst} was published before its data was flushed"
        after = renames[renames.index(published[i]) + 1][2] if published[i] is not renames[-1] else len(synced)
        assert os.path.dirname(dst) in synced[at:after], f"{dst}: its directory was not flushed after the rename"
    names = {os.path.relpath(dst, tmp_path) for _, dst, _ in published}
    assert {"q.zarr", "q.zarr.partial", "q.zarr.partial/plan.json", "q.zarr.partial/store"} <= names
    assert any(n.startswith("q.zarr.partial/spill/") for n in names)
    assert "q.zarr.partial/segments.npy" in names
    assert any(n.startswith("q.zarr.partial/store/train/") for n in names)  # the shards


def test_an_error_before_the_lock_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "sub" / "q.zarr"
    assert main([str(tmp_path / "missing.csv"), "--out", str(out), "--quiet"]) == 1
    assert not (tmp_path / "sub").exists()
