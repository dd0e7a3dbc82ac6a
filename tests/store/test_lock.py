"""One writer at a time: a lock held by another process (or another open of it) is refused with one line naming
the holder's PID; a holder killed with SIGKILL never blocks the next writer; a file that is not our lock is never
touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from store.errors import LockedError, OutputExistsError
from store.lock import Lock


def test_a_held_lock_is_refused_naming_the_holder(tmp_path):
    path = str(tmp_path / "out.lock")
    with Lock(path, "an ingest into out", made_by="ingest"):
        assert json.loads(open(path).read()) == {"made_by": "ingest", "pid": os.getpid()}
        with pytest.raises(LockedError, match=f"an ingest into out is in progress in another process \\(PID "
                                              f"{os.getpid()}, lock .*out.lock\\); wait") as info:
            Lock(path, "an ingest into out", made_by="ingest").acquire()
        assert "\n" not in str(info.value)
    assert not os.path.exists(path)  # released: removed
    with Lock(path, "an ingest into out", made_by="ingest"):  # and free again
        pass


def test_a_killed_holder_leaves_a_lock_file_that_does_not_block(tmp_path):
    path = str(tmp_path / "out.lock")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from store.lock import Lock
        Lock({path!r}, "x", made_by="ingest").acquire()
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"PID {holder.pid}"):
            Lock(path, "x", made_by="ingest").acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert os.path.exists(path)  # left behind by the kill ...
        with Lock(path, "x", made_by="ingest"):  # ... but the kernel dropped the lock with its holder
            assert json.loads(open(path).read())["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()


def test_a_file_that_is_not_our_lock_is_never_touched(tmp_path):
    path = tmp_path / "out.lock"
    for text in ("my notes\n", json.dumps({"made_by": "someone else", "pid": 1})):
        path.write_text(text)
        with pytest.raises(OutputExistsError, match="is not a lock file of ingest; refusing to touch it"):
            Lock(str(path), "x", made_by="ingest").acquire()
        assert path.read_text() == text


def test_a_lock_removed_between_open_and_lock_is_taken_again(tmp_path, monkeypatch):
    """The holder removes the file while still holding it; whoever opened the old file must not believe it holds
    the lock on the new one."""
    path = str(tmp_path / "out.lock")
    real_flock = Lock.__init__.__globals__["fcntl"].flock
    calls = []

    def flock(fd, op):
        calls.append(fd)
        if len(calls) == 1:  # as if the previous holder released (removed the file) just before we locked it
            os.remove(path)
        return real_flock(fd, op)

    monkeypatch.setattr("store.lock.fcntl.flock", flock)
    with Lock(path, "x", made_by="ingest"):
        assert len(calls) == 2 and os.path.exists(path)
