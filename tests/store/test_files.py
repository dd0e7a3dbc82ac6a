"""Durable publishing: data flushed before the rename, the directory after it, nothing left behind on failure."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from store import files


@pytest.fixture
def syncs(monkeypatch):
    """The paths fsync'ed and the renames done, in order."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_write_atomic_flushes_the_file_then_renames_then_flushes_the_directory(tmp_path, syncs):
    path = str(tmp_path / "a.json")
    files.write_atomic(path, b"{}")
    assert open(path, "rb").read() == b"{}"
    tmp = files.temporary_name(os.path.realpath(path))
    assert syncs == [("fsync", tmp), ("replace", tmp, os.path.realpath(path)),
                     ("fsync", os.path.realpath(str(tmp_path)))]


def test_publishing_a_directory_flushes_everything_in_it_first(tmp_path, syncs):
    building = tmp_path / "store.creating"
    (building / "train" / "c").mkdir(parents=True)
    (building / "zarr.json").write_text("{}")
    (building / "train" / "c" / "0").write_bytes(b"x")
    files.publish(str(building), str(tmp_path / "store"))
    synced = [e[1] for e in syncs if e[0] == "fsync"]
    rename = [i for i, e in enumerate(syncs) if e[0] == "replace"]
    assert len(rename) == 1 and rename[0] == len(syncs) - 2 and syncs[-1] == ("fsync", str(tmp_path))
    real = os.path.realpath(str(building))
    assert set(synced[:-1]) == {real, f"{real}/zarr.json", f"{real}/train", f"{real}/train/c", f"{real}/train/c/0"}
    assert synced.index(f"{real}/train/c/0") < synced.index(f"{real}/train/c") < synced.index(f"{real}/train")


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    path = str(tmp_path / "a.bin")
    with pytest.raises(TypeError):
        files.write_atomic(path, object())  # not bytes-like: fails inside the write
    assert os.listdir(tmp_path) == []


def test_a_directory_that_cannot_be_flushed_is_accepted(tmp_path, monkeypatch):
    def refuse(fd):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", refuse)
    files.fsync_dir(str(tmp_path))  # some file systems refuse fsync on directories: nothing more to do there
    with pytest.raises(OSError):
        files.fsync_file(__file__)  # but a file that cannot be flushed is an error


@pytest.mark.parametrize("short", [False, True])
def test_write_atomic_writes_a_list_of_parts_in_order(tmp_path, monkeypatch, short):
    """A shard is written from its chunks without joining them: more parts than one writev takes, empty parts,
    and short writes (a writev that writes less than it was given) still give the joined bytes."""
    parts = [bytes([i % 251]) * (i % 7) for i in range(3000)] + [np.arange(10, dtype=np.uint8).tobytes()]
    if short:
        writev = os.writev
        monkeypatch.setattr(files.os, "writev", lambda fd, views: writev(fd, [bytes(views[0])[:3]]))
    path = tmp_path / "shard"
    files.write_atomic(str(path), parts)
    assert path.read_bytes() == b"".join(parts)
    files.write_atomic(str(path), b"".join(parts))  # one buffer: the same loop (the file is opened unbuffered)
    assert path.read_bytes() == b"".join(parts)
    assert os.listdir(tmp_path) == ["shard"]


def test_boot_id_names_this_boot_and_is_none_where_unknown(monkeypatch):
    """What an ingest's unflushed scratch files record (ingest.shuffle.write_spill): the same id for every process
    of this boot (a resumed run trusts them unread only then), None where the system does not say."""
    first = files.boot_id()
    if os.path.exists("/proc/sys/kernel/random/boot_id"):
        assert first and first == files.boot_id() and "\n" not in first
    real_open = open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_proc)
    assert files.boot_id() is None
