"""Atomic output and --resume: an interrupted ingest never looks complete, and resuming it gives exactly the
store an uninterrupted run gives. Existing outputs are never touched without --overwrite."""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import ingest.passes
import ingest.pipeline
from ingest import IngestConfig, ingest as run_ingest
from store import IncompleteStoreError, OptionError, OutputExistsError, StoreError, open_store, partial_path
from tests.helpers import subprocess_env
from tests.ingest.test_shuffle import _arrays


class Crash(Exception):
    pass


def _crash_after(monkeypatch, name: str, calls: int):
    real = getattr(ingest.passes, name)
    count = iter(range(10**6))

    def fake(*args):
        if next(count) >= calls:
            raise Crash(name)
        return real(*args)

    monkeypatch.setattr(ingest.passes, name, fake)


def _crashed(tmp_path, quest_csv, monkeypatch, stage: str, calls: int) -> tuple[dict, str, str]:
    """(options, reference store, output of the same ingest crashed in ``stage`` after ``calls`` calls)."""
    options = dict(sources=[quest_csv], val_fraction=0.1, label="clear", batch_size=50, workers=1, progress=False)
    reference = str(tmp_path / "reference.zarr")
    run_ingest(IngestConfig(out=reference, **options))
    out = str(tmp_path / "out.zarr")
    with monkeypatch.context() as patch:
        _crash_after(patch, stage, calls)
        with pytest.raises(Crash):
            run_ingest(IngestConfig(out=out, **options))
    return options, reference, out


@pytest.mark.parametrize("stage,calls", [("parse_block", 3), ("write_shard", 0), ("write_shard", 1)])
def test_resume_after_crash_gives_the_same_store(tmp_path, quest_csv, small_blocks, monkeypatch, stage, calls):
    options, reference, out = _crashed(tmp_path, quest_csv, monkeypatch, stage, calls)
    assert not os.path.exists(out) and os.path.isdir(partial_path(out))
    with pytest.raises(IncompleteStoreError, match="--resume"):
        open_store(out)
    with pytest.raises(OutputExistsError, match="--resume"):
        run_ingest(IngestConfig(out=out, **options))
    run_ingest(IngestConfig(out=out, resume=True, **options))
    assert _arrays(out) == _arrays(reference)
    assert not os.path.exists(partial_path(out))


@pytest.mark.parametrize("stage,calls", [("write_shard", 2), ("_assemble", 1)])
def test_resume_after_a_crash_amid_the_parts_of_a_shard(tmp_path, quest_csv, small_blocks, monkeypatch, stage,
                                                         calls):
    """Shards written in parts (pipeline._shard_items; forced here, 3 parts each): a crash after some parts, or
    while the last one assembles a shard, leaves parts that the resumed run discards and writes again."""
    real = ingest.pipeline._shard_items
    monkeypatch.setattr(ingest.pipeline, "_shard_items", lambda jobs, workers, batch: real(jobs, 3, batch))
    options, reference, out = _crashed(tmp_path, quest_csv, monkeypatch, stage, calls)
    assert glob.glob(os.path.join(partial_path(out), "parts", "*", "*", "*.bin"))
    run_ingest(IngestConfig(out=out, resume=True, **options))
    assert _arrays(out) == _arrays(reference)
    assert not os.path.exists(partial_path(out))


def test_resume_after_every_shard_was_written(tmp_path, quest_csv, small_blocks, monkeypatch):
    """A kill while the store is flushed and marked complete (or a failed upload) leaves every shard written: the
    resumed run, on several workers, has no shard to write and goes straight to the commit."""
    options = dict(sources=[quest_csv], val_fraction=0.1, label="clear", batch_size=50, workers=2, progress=False)
    reference = str(tmp_path / "reference.zarr")
    run_ingest(IngestConfig(out=reference, **options))
    out = str(tmp_path / "out.zarr")
    with monkeypatch.context() as patch:
        patch.setattr(ingest.pipeline.StoreWriter, "commit", lambda *args: (_ for _ in ()).throw(Crash("commit")))
        with pytest.raises(Crash):
            run_ingest(IngestConfig(out=out, **options))
    run_ingest(IngestConfig(out=out, resume=True, **options))
    assert _arrays(out) == _arrays(reference)


def test_a_link_planted_where_the_parts_go_is_removed_not_followed(tmp_path, quest_csv, small_blocks, monkeypatch):
    """The writing pass deletes the work directory's folder of shard parts before it starts: a link found there (to
    a user's folder) is removed as a link, and what it points to stays."""
    real = ingest.pipeline._shard_items
    monkeypatch.setattr(ingest.pipeline, "_shard_items", lambda jobs, workers, batch: real(jobs, 3, batch))
    options, reference, out = _crashed(tmp_path, quest_csv, monkeypatch, "write_shard", 1)
    precious = tmp_path / "precious"
    (precious / "train" / "0").mkdir(parents=True)
    (precious / "train" / "0" / "0.json").write_text("years of work")
    parts = os.path.join(partial_path(out), "parts")
    shutil.rmtree(parts)
    os.symlink(precious, parts, target_is_directory=True)
    run_ingest(IngestConfig(out=out, resume=True, **options))
    assert (precious / "train" / "0" / "0.json").read_text() == "years of work"
    assert _arrays(out) == _arrays(reference)


@pytest.mark.parametrize("step", ["park the old store", "move the new store", "remove the work folder"])
def test_crash_while_publishing_over_an_old_store(tmp_path, quest_csv, small_blocks, monkeypatch, step):
    """Finalisation is a few renames; a crash before any of them leaves a resumable state, never a mix."""
    options = dict(sources=[quest_csv], label="clear", batch_size=50, workers=1, progress=False)
    out = str(tmp_path / "out.zarr")
    run_ingest(IngestConfig(out=out, seed=1, **options))
    old = _arrays(out)
    reference = str(tmp_path / "reference.zarr")
    run_ingest(IngestConfig(out=reference, seed=2, **options))
    real_replace = os.replace

    def replace(src, dst):
        dst = os.fspath(dst)
        if {"park the old store": ".old-" in dst, "move the new store": dst == out,
                "remove the work folder": ".removing-" in dst}[step]:
            raise Crash(step)
        real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", replace)
        with pytest.raises(Crash):
            run_ingest(IngestConfig(out=out, seed=2, overwrite=True, **options))
    if os.path.exists(out):
        assert _arrays(out) in (old, _arrays(reference))  # a complete store, the old or the new one
    else:
        with pytest.raises(IncompleteStoreError, match="--resume"):
            open_store(out)
    run_ingest(IngestConfig(out=out, seed=2, resume=True, **options))
    assert _arrays(out) == _arrays(reference)
    assert sorted(os.listdir(tmp_path)) == ["out.zarr", "reference.zarr"]  # no leftovers


def test_resume_refuses_changed_options(tmp_path, quest_csv, small_blocks, monkeypatch):
    out = str(tmp_path / "out.zarr")
    with monkeypatch.context() as patch:
        _crash_after(patch, "write_shard", 0)
        with pytest.raises(Crash):
            run_ingest(IngestConfig([quest_csv], out, workers=1, progress=False))
    with pytest.raises(OptionError, match="the options changed since the interrupted run"):
        run_ingest(IngestConfig([quest_csv], out, seed=9, resume=True, workers=1, progress=False))


KILLED_INGEST = textwrap.dedent("""
    import sys
    import ingest.pipeline
    ingest.pipeline.BLOCK_BYTES = 16 * 1024
    ingest.pipeline.BUCKET_BYTES = 32 * 1024
    from ingest.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _stage_reached(work: str, stage: str) -> bool:
    """Has the ingest working in ``work`` reached ``stage`` (files that only exist from then on)?"""
    if stage == "parsing":
        return len(glob.glob(os.path.join(work, "spill", "*.json"))) >= 3
    if stage == "merged":  # the parse is done, the maps and segments are written, the shards come next
        return os.path.exists(os.path.join(work, "segments.npy"))
    return bool(glob.glob(os.path.join(work, "store", "train", "*", "c", "*", "0")))


KILL_ATTEMPTS = 4


def _killed_ingest(script, argv: list[str], stage: str, delay: float | None) -> bool:
    """Start the ingest, SIGKILL it once it reached ``stage`` (or after ``delay`` seconds); return whether the kill
    interrupted it (False: it had already finished)."""
    out = argv[argv.index("--out") + 1]
    proc = subprocess.Popen([sys.executable, str(script), *argv], start_new_session=True, env=subprocess_env())
    if delay is not None:
        time.sleep(delay)
    deadline = time.monotonic() + 60
    while delay is None and not _stage_reached(partial_path(out), stage) and proc.poll() is None and \
            time.monotonic() < deadline:
        time.sleep(0.001)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return not (os.path.exists(out) and not os.path.exists(partial_path(out)))


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["parsing", "merged", "writing", "random 0", "random 1", "random 2"])
def test_kill_9_then_resume(tmp_path, quest_csv, stage):
    """A real SIGKILL in each stage of the ingest, and at seeded random moments of it; --resume must finish it
    identically."""
    args = [quest_csv, "--label", "clear", "--val-fraction", "0.1", "--batch-size", "40", "--workers", "2",
            "--quiet"]
    script = tmp_path / "run.py"
    script.write_text(KILLED_INGEST)
    reference = str(tmp_path / "reference.zarr")
    started = time.monotonic()
    subprocess.run([sys.executable, str(script), *args, "--out", reference], check=True, env=subprocess_env())
    duration = time.monotonic() - started
    out = str(tmp_path / "out.zarr")
    fraction = random.Random(int(stage.split()[1])).uniform(0.1, 0.7) if stage.startswith("random") else None
    # a kill that lands after the ingest finished proves nothing: try again, killing earlier each time
    for attempt in range(KILL_ATTEMPTS):
        if _killed_ingest(script, [*args, "--out", out], stage, fraction and fraction * duration / 2 ** attempt):
            break
        shutil.rmtree(out)
    else:
        pytest.fail(f"the ingest finished before the kill in all {KILL_ATTEMPTS} attempts; the test never "
                    "interrupted it")
    assert not os.path.exists(os.path.join(out, "zarr.json"))
    resumed = subprocess.run([sys.executable, str(script), *args, "--out", out, "--resume"], capture_output=True,
                             text=True, env=subprocess_env())
    assert resumed.returncode == 0, resumed.stderr
    assert _arrays(out) == _arrays(reference)


def test_existing_output_needs_overwrite(tmp_path, quest_csv, make_store):
    out, _ = make_store(quest_csv)
    before = _arrays(out)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run_ingest(IngestConfig([quest_csv], out, seed=5, workers=1, progress=False))
    assert _arrays(out) == before
    run_ingest(IngestConfig([quest_csv], out, seed=5, overwrite=True, workers=1, progress=False))
    assert _arrays(out) != before and open_store(out).attrs["ingest"]["options"]["seed"] == 5


def test_overwrite_refuses_a_folder_that_is_not_a_store(tmp_path, quest_csv):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(OutputExistsError, match="not a store"):
        run_ingest(IngestConfig([quest_csv], str(precious), overwrite=True, workers=1, progress=False))
    assert (precious / "thesis.txt").exists()


def test_resume_of_a_complete_store_says_so(tmp_path, quest_csv, make_store):
    out, _ = make_store(quest_csv)
    with pytest.raises(OutputExistsError, match="already complete"):
        run_ingest(IngestConfig([quest_csv], out, resume=True, workers=1, progress=False))


def test_resume_after_a_reboot_parses_again_a_block_whose_spill_was_never_written_whole(tmp_path, quest_csv,
                                                                                       small_blocks, monkeypatch):
    """Spill files are never flushed (ingest.shuffle.write_spill): after a power cut, a finished block's .bin can
    be empty, short or hold stale bytes. --resume on another boot (store.boot_id) reads every spill file back,
    checks its size and its runs' checksums, and parses those blocks again."""
    options, reference, out = _crashed(tmp_path, quest_csv, monkeypatch, "write_shard", 0)
    spills = sorted(glob.glob(os.path.join(partial_path(out), "spill", "*.bin")))
    assert len(spills) >= 4
    with open(spills[0], "r+b") as f:
        f.truncate(0)
    with open(spills[1], "r+b") as f:
        f.truncate(os.path.getsize(spills[1]) // 2)
    with open(spills[2], "r+b") as f:
        f.seek(-7, os.SEEK_END)  # a row's byte (the start of a segment is its checksums)
        byte = f.read(1)
        f.seek(-7, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))
    parsed = []
    real = ingest.passes.parse_block
    monkeypatch.setattr(ingest.passes, "parse_block", lambda block: parsed.append(block.index) or real(block))
    monkeypatch.setattr(ingest.pipeline, "boot_id", lambda: "another boot")
    run_ingest(IngestConfig(out=out, resume=True, **options))
    assert sorted(parsed) == [0, 1, 2]
    assert _arrays(out) == _arrays(reference)


def test_resume_on_the_same_boot_trusts_the_spill_unread(tmp_path, quest_csv, small_blocks, monkeypatch):
    """After a kill on the same boot the system still holds every spill file as it was written: a resumed ingest
    checks their sizes, not their bytes (60 GB for 100 GB of CSV), and parses nothing again."""
    options, reference, out = _crashed(tmp_path, quest_csv, monkeypatch, "write_shard", 1)
    real = ingest.pipeline.spill_intact
    checked = []

    def unread(path, meta, row_bytes, *, read):
        assert not read, "the spill was read to check it"
        checked.append(path)
        return real(path, meta, row_bytes, read=read)

    monkeypatch.setattr(ingest.pipeline, "spill_intact", unread)
    monkeypatch.setattr(ingest.passes, "parse_block", lambda block: pytest.fail(f"block {block.index} parsed again"))
    run_ingest(IngestConfig(out=out, resume=True, **options))
    assert len(checked) >= 4
    assert _arrays(out) == _arrays(reference)


def test_resume_trusts_unread_a_spill_its_workers_flushed(tmp_path, quest_csv, small_blocks, monkeypatch):
    """On a Dask cluster the parent cannot know the workers' boots: each worker flushes its spill files and says
    so (Context.flush_spill), and --resume trusts them unread on any boot."""
    real_write = ingest.passes.write_spill
    monkeypatch.setattr(ingest.passes, "write_spill", lambda *args, flush: real_write(*args, flush=True))
    options, reference, out = _crashed(tmp_path, quest_csv, monkeypatch, "write_shard", 1)
    metas = glob.glob(os.path.join(partial_path(out), "spill", "*.json"))
    assert metas and all(json.loads(Path(path).read_text())["flushed"] is True for path in metas)
    real = ingest.pipeline.spill_intact

    def unread(path, meta, row_bytes, *, read):
        assert not read, "the spill was read to check it"
        return real(path, meta, row_bytes, read=read)

    monkeypatch.setattr(ingest.pipeline, "boot_id", lambda: "another boot")
    monkeypatch.setattr(ingest.pipeline, "spill_intact", unread)
    monkeypatch.setattr(ingest.passes, "parse_block", lambda block: pytest.fail(f"block {block.index} parsed again"))
    run_ingest(IngestConfig(out=out, resume=True, **options))
    assert _arrays(out) == _arrays(reference)


def test_a_spill_the_disk_damaged_stops_the_writing_pass_and_resume_parses_its_block_again(tmp_path, quest_csv,
                                                                                         small_blocks, monkeypatch):
    """A spill file the disk lost or changed after the worker wrote it (a write-back error nothing reported, the
    pages read back from the disk) fails its checksum when the writing pass reads it: the ingest stops with one
    line naming it, before those rows reach a shard, and --resume parses that block again (on the same boot)."""
    options = dict(sources=[quest_csv], val_fraction=0.1, label="clear", batch_size=50, workers=1, progress=False)
    reference = str(tmp_path / "reference.zarr")
    run_ingest(IngestConfig(out=reference, **options))
    out = str(tmp_path / "out.zarr")
    real_pass = ingest.pipeline._shard_pass

    def damaged_then_written(config, ctx, summary, run):
        with open(ctx.spill(2) + ".bin", "r+b") as f:
            f.seek(-3, os.SEEK_END)
            f.write(b"\xff\xff")
        real_pass(config, ctx, summary, run)

    with monkeypatch.context() as patch:
        patch.setattr(ingest.pipeline, "_shard_pass", damaged_then_written)
        with pytest.raises(StoreError, match=r"spill/000002\.bin: rows \d+\.\. of a segment fail their "
                                             r"checksum.*--resume"):
            run_ingest(IngestConfig(out=out, **options))
    metas = sorted(os.listdir(os.path.join(partial_path(out), "spill")))
    assert "000002.json" not in metas and {"000001.json", "000003.json"} <= set(metas)  # only the damaged block's
    parsed = []
    real = ingest.passes.parse_block
    monkeypatch.setattr(ingest.passes, "parse_block", lambda block: parsed.append(block.index) or real(block))
    run_ingest(IngestConfig(out=out, resume=True, **options))
    assert parsed == [2]
    assert _arrays(out) == _arrays(reference)


@pytest.mark.parametrize("damage", ["huge count", "count past int64", "not json", "other block", "no segments",
                                    "flushed of another type", "boot of another type"])
def test_resume_refuses_a_damaged_work_file(tmp_path, quest_csv, small_blocks, monkeypatch, damage):
    """A finished block's metadata is read back by --resume and sizes the writing pass's buffers: a damaged one is
    one line naming it, never a huge allocation or a wrong store."""
    out = str(tmp_path / "out.zarr")
    options = dict(sources=[quest_csv], val_fraction=0.1, label="clear", workers=1, progress=False)
    with monkeypatch.context() as patch:
        _crash_after(patch, "write_shard", 0)
        with pytest.raises(Crash):
            run_ingest(IngestConfig(out=out, **options))
    path = sorted(glob.glob(os.path.join(partial_path(out), "spill", "*.json")))[1]
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    if damage == "huge count":
        meta["segments"][0][3] = 2**40
    elif damage == "count past int64":
        meta["segments"][0][3] = meta["rows"] = 2**70
    elif damage == "other block":
        meta["block"] = 0
    elif damage == "no segments":
        del meta["segments"]
        meta["rows"], meta["spill_bytes"], meta["bad"] = 0, 0, [["x", 1, None, "r", None]]
        os.truncate(path[:-len(".json")] + ".bin", 0)
        monkeypatch.setattr(ingest.pipeline, "boot_id", lambda: "another boot")
    elif damage.startswith("flushed"):
        meta["flushed"] = "yes"
    elif damage.startswith("boot"):
        meta["boot"] = [1]
    with open(path, "w", encoding="utf-8") as f:
        f.write("{" if damage == "not json" else json.dumps(meta))
    with pytest.raises(StoreError, match=r"spill/000001\.json: a work file of the interrupted ingest is damaged; "
                                         r"pass --overwrite"):
        run_ingest(IngestConfig(out=out, resume=True, **options))
    run_ingest(IngestConfig(out=out, overwrite=True, **options))
