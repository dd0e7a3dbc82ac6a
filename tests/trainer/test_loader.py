"""Window loaders: the same windows in threads and in processes, shared-memory slots never overwritten while
referenced, a dead worker ends the wait with one line within seconds (at many random moments), and no process
or shared-memory segment is left behind by a normal end, an error, Ctrl-C or kill -9."""

from __future__ import annotations

import errno
import gc
import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.helpers import subprocess_env
from trainer.batches import BatchSource, LoaderError
from trainer.feed import BatchFeed
from trainer._slots import SHM_PREFIX, create_segment
from trainer.loader import ProcessLoader, ThreadLoader


def _segments(pid: int | None = None) -> list[str]:
    prefix = SHM_PREFIX + (f"{pid}-" if pid is not None else "")
    return [n for n in os.listdir("/dev/shm") if n.startswith(prefix)] if os.path.isdir("/dev/shm") else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("make", [lambda s: ThreadLoader(s, 2), lambda s: ProcessLoader(s, 2)],
                         ids=["threads", "processes"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_windows_equal_the_source(quest_store, make, shuffle):
    source = BatchSource(quest_store, "train", seed=4, shuffle=shuffle, batch_size=200)
    loader = make(source)
    try:
        keys = [(e, w) for e in range(2) for w in range(3)]
        for key in keys:
            loader.request(key)
        for key in keys:
            _equal(loader.take(key), source.load_window(*key))
    finally:
        loader.close()
    assert not _segments(os.getpid())


def test_a_referenced_slot_is_never_reused(quest_store):
    """Hold every window taken: once all slots are referenced the loader decodes in the parent instead of
    overwriting one; the held windows keep their values; released slots are used again."""
    source = BatchSource(quest_store, "train", seed=1, window=2)
    loader = ProcessLoader(source, workers=1, slots=3)
    try:
        windows = len(source) // source.batches_per_window()
        held = [(w, loader.take((0, w))) for w in range(windows)]
        assert loader.fallbacks == windows - 3
        for w, window in held:
            _equal(window, source.load_window(0, w))
        del held, window
        gc.collect()
        before = loader.fallbacks
        for w in range(windows):
            loader.take((1, w))  # dropped at once: slots come back
        assert loader.fallbacks == before
    finally:
        loader.close()


def test_a_full_shared_memory_is_one_line(monkeypatch):
    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(LoaderError, match=r"not enough shared memory for loader processes: 64 MiB needed .*--shm-size"):
        create_segment(64 << 20)
    assert not _segments(os.getpid())


def test_an_error_in_a_worker_names_array_and_chunk(tmp_path, quest_csv, make_store):
    from store.layout import shard_path
    out, _ = make_store(quest_csv, batch_size=100, label="clear")
    path = shard_path(out, "train", "float32", 0)
    data = bytearray(open(path, "rb").read())
    data[100] ^= 0xFF
    open(path, "wb").write(bytes(data))
    loader = ProcessLoader(BatchSource(out, "train", shuffle=False), 2)
    try:
        with pytest.raises(LoaderError, match=r"^train/float32: chunk 0 fails its CRC32C checksum"):
            loader.take((0, 0))
        loader.take((0, 1))  # the others still load
    finally:
        loader.close()


def _kill_during_reads(store: str, seed: int) -> tuple[float, str]:
    """Read epochs as fast as possible while a timer kills one worker at a random moment; returns (seconds from
    the kill to the error, the error text)."""
    rng = random.Random(seed)
    feed = BatchFeed(BatchSource(store, "train", seed=seed, window=2), workers=2, processes=True, ahead=3)
    killed: list[float] = []
    try:
        feed.batch(0)  # workers up
        pids = [p.pid for p in feed.loader._procs]
        victim = rng.choice(pids)
        timer = threading.Timer(rng.uniform(0.0, 0.25), lambda: (killed.append(time.monotonic()),
                                                                 os.kill(victim, signal.SIGKILL)))
        timer.start()
        deadline = time.monotonic() + 30
        epoch = 0
        with pytest.raises(LoaderError) as info:
            while time.monotonic() < deadline:
                feed.set_epoch(epoch)
                for i in range(len(feed)):
                    feed.batch(i)
                epoch += 1
        timer.join()
        return time.monotonic() - killed[0], str(info.value)
    finally:
        feed.close()
        for pid in pids:
            assert not _alive(pid), "a loader worker outlived close()"


@pytest.mark.slow
def test_a_killed_worker_ends_reading_with_one_line_within_seconds_at_random_moments(quest_store):
    for seed in range(24):
        seconds, message = _kill_during_reads(quest_store, seed)
        assert seconds < 5, (seed, seconds)
        assert "\n" not in message and "died (killed by signal 9)" in message, message
        assert not _segments(os.getpid())


VICTIM = """
import os, sys, time
from trainer.batches import BatchSource
from trainer.feed import BatchFeed

if __name__ == "__main__":
    feed = BatchFeed(BatchSource(sys.argv[1], "train", window=2), workers=2, processes=True)
    try:
        feed.batch(0)
        print(" ".join(str(p.pid) for p in feed.loader._procs), flush=True)
        epoch = 0
        while True:
            feed.set_epoch(epoch)
            for i in range(len(feed)):
                feed.batch(i)
            epoch += 1
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise SystemExit(130)
    finally:
        feed.close()
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill -9", "Ctrl-C"])
def test_nothing_is_left_when_the_training_process_dies(quest_store, tmp_path, how):
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    proc = subprocess.Popen([sys.executable, str(script), quest_store], env=subprocess_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2, proc.stderr.read()
        time.sleep(0.3)
        if how == "kill -9":  # the training process alone (the OOM killer's choice): its workers must notice
            os.kill(proc.pid, signal.SIGKILL)
        else:  # a terminal's Ctrl-C reaches the whole process group
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if how == "Ctrl-C":
        assert proc.returncode == 130 and "interrupted" in out, err[-2000:]
    deadline = time.monotonic() + 10
    while (any(_alive(p) for p in workers) or _segments(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in workers), "loader workers outlived the training process"
    assert not _segments(proc.pid), "shared memory left in /dev/shm"
