"""A user's file is sacred: ingest and trainer delete or replace only what carries this tool's own marker (a
store's root metadata, a work directory's marker, an upload's marker, a run's config.json) and refuse with one
line otherwise."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

import ingest.pipeline as ingest_pipeline
from ingest import IngestConfig, ingest as run_ingest
from ingest.cli import main
from ingest.destination import default_work_dir
from store import OutputExistsError, open_store
from tests.helpers import tree

OPTIONS = dict(label="clear", batch_size=256, workers=1, progress=False)


def test_a_foreign_partial_folder_is_never_continued_or_deleted(tmp_path, quest_csv, capsys):
    out = tmp_path / "q.zarr"
    foreign = tmp_path / "q.zarr.partial"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    for extra in ([], ["--overwrite"], ["--resume"]):
        assert main([quest_csv, "--out", str(out), "--label", "clear", "--quiet", *extra]) == 1
        err = capsys.readouterr().err
        assert "was not made by ingest" in err and err.count("\n") == 1, err
    assert tree(foreign) == {"thesis.tex": b"years of work"}


def test_backups_beside_the_store_survive_a_successful_ingest(tmp_path, quest_csv):
    out = str(tmp_path / "q.zarr")
    run_ingest(IngestConfig([quest_csv], out, **OPTIONS))
    backup = tmp_path / "q.zarr.old-2024"  # a user's copy of an earlier store: a store, but not a leftover
    shutil.copytree(out, backup)
    other = tmp_path / "q.zarr.old-ingest-mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    leftover = tmp_path / "q.zarr.old-ingest-12345"  # what a killed ingest parks while replacing the store
    shutil.copytree(out, leftover)
    run_ingest(IngestConfig([quest_csv], out, overwrite=True, **OPTIONS))
    assert open_store(str(backup)).rows == open_store(out).rows
    assert (other / "keep.txt").read_text() == "x"
    assert not leftover.exists()


def test_the_default_work_directory_is_private(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    work = default_work_dir("s3://bucket/q.zarr")
    parent = os.path.dirname(work)
    assert os.path.basename(parent) == f"ingest-work-{os.getuid()}"
    assert stat.S_IMODE(os.stat(parent).st_mode) == 0o700
    os.chmod(parent, 0o777)  # as if another user had prepared it for us
    with pytest.raises(OutputExistsError, match="is not a private folder of this user"):
        default_work_dir("s3://bucket/q.zarr")
    assert default_work_dir("s3://bucket/q.zarr", str(tmp_path / "mine")).startswith(str(tmp_path / "mine"))


@pytest.mark.cloud
def test_work_folder_and_foreign_prefixes_are_never_deleted(s3, tmp_path, quest_csv, capsys):
    import fsspec
    work = tmp_path / "big-disk-tmp"
    work.mkdir()
    (work / "other-project.bin").write_bytes(b"not ours")
    argv = [quest_csv, "--label", "clear", "--quiet", "--work", str(work)]
    assert main(argv + ["--out", f"{s3}/q.zarr", "--overwrite"]) == 0
    assert tree(work) == {"other-project.bin": b"not ours"}  # its own work directory came and went
    assert main(argv + ["--out", f"{s3}/q.zarr", "--overwrite", "--seed", "3"]) == 0  # replacing our store
    assert open_store(f"{s3}/q.zarr").attrs["ingest"]["options"]["seed"] == 3
    fs, root = fsspec.core.url_to_fs(s3)
    fs.pipe(f"{root}/imagenet/train/n01440764/img1.jpeg", b"jpeg")  # looks like a store's names, is not one
    fs.pipe(f"{root}/imagenet/validation/img2.jpeg", b"jpeg")
    for out in (f"{s3}/imagenet", s3):  # a prefix with the same top-level names; the whole bucket
        assert main(argv + ["--out", out, "--overwrite"]) == 1
        err = capsys.readouterr().err
        assert "holds objects that are not a store" in err and err.count("\n") == 1, err
    assert fs.cat_file(f"{root}/imagenet/train/n01440764/img1.jpeg") == b"jpeg"
    assert fs.cat_file(f"{root}/imagenet/validation/img2.jpeg") == b"jpeg"


def test_folders_named_like_our_leftovers_survive_unless_they_carry_our_marker(tmp_path, quest_csv):
    """An ingest cleans the work folders killed runs were making or deleting (``….creating-ingest-PID``,
    ``….removing-ingest-PID``) only when they carry the work marker; a user's folder of that name stays."""
    out = str(tmp_path / "q.zarr")
    mine = [tmp_path / f"q.zarr.partial{kind}-ingest-{pid}" for kind, pid in ((".creating", 123), (".removing", 456))]
    for folder in mine:
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
    killed = tmp_path / "q.zarr.partial.removing-ingest-789"  # what a killed ingest left: marked
    killed.mkdir()
    (killed / ".ingest-work").write_text("{}")
    run_ingest(IngestConfig([quest_csv], out, **OPTIONS))
    assert all(tree(folder) == {"notes.txt": b"mine"} for folder in mine)
    assert not killed.exists()


def test_a_lock_file_name_that_is_not_ours_stops_the_ingest_untouched(tmp_path, quest_csv, capsys):
    lock = tmp_path / "q.zarr.partial.lock"
    lock.write_text("a user's file")
    assert main([quest_csv, "--out", str(tmp_path / "q.zarr"), "--quiet"]) == 1
    assert "is not a lock file of ingest; refusing to touch it" in capsys.readouterr().err
    assert lock.read_text() == "a user's file" and not (tmp_path / "q.zarr").exists()


def test_benchmarks_remove_only_stores_they_made(tmp_path, quest_csv):
    from tools.measure import remove_store
    folder = tmp_path / "store.zarr"
    folder.mkdir()
    (folder / "zarr.json").write_text('{"attributes": {}}')  # a Zarr group, but not a store of this tool
    remove_store(str(folder))
    assert tree(folder) == {"zarr.json": b'{"attributes": {}}'}
    out = str(tmp_path / "made.zarr")
    run_ingest(IngestConfig([quest_csv], out, **OPTIONS))
    remove_store(out)
    assert not os.path.exists(out)


def test_deleting_our_folders_never_follows_a_link_into_a_users_files(tmp_path, quest_csv, monkeypatch):
    """The work directory and a replaced store are deleted by threads (ingest.pipeline._remove_tree): a link inside
    either, to a user's folder or file, is removed as a link; what it points to stays."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.txt").write_text("keep")
    out = tmp_path / "q.zarr"
    run_ingest(IngestConfig([quest_csv], str(out), **OPTIONS))
    (out / "train" / "linked").symlink_to(precious, target_is_directory=True)  # in the store --overwrite replaces
    (out / "notes-link.txt").symlink_to(tmp_path / "notes.txt")
    real = ingest_pipeline.passes.parse_block

    def parse_and_plant(block):  # links planted in the work directory while it is in use
        work = tmp_path / "q.zarr.partial"
        if not (work / "spill" / "linked").exists():
            (work / "spill" / "linked").symlink_to(precious, target_is_directory=True)
            (work / "notes-link.txt").symlink_to(tmp_path / "notes.txt")
        return real(block)

    monkeypatch.setattr(ingest_pipeline.passes, "parse_block", parse_and_plant)
    run_ingest(IngestConfig([quest_csv], str(out), overwrite=True, **OPTIONS))
    assert tree(precious) == {"thesis.tex": b"years of work"}
    assert (tmp_path / "notes.txt").read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "precious", "q.zarr"]
