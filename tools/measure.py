"""Measurement helpers shared by the benchmarks: the machine, medians, peak RSS of a process tree."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
import time

__all__ = ["machine", "median", "run_timed", "run_measured", "free_ports", "remove_store"]


def machine() -> str:
    """One line: CPU model, cores, memory, GPU (if TensorFlow is not needed to tell: nvidia-smi)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    gpu = "no GPU"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            gpu = out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {gpu}, Python {platform.python_version()}"


def median(values) -> float:
    return statistics.median(values)


def run_timed(argv: list[str], env: dict | None = None) -> str:
    """Run a command, nothing watching it; return its stdout (where it prints its own clock). Timed runs are kept
    apart from :func:`run_measured`'s: its sampler walks the process tree every 10 ms, which on 2 cores took ~5 % from
    a 2-worker ingest (2.10 s vs 2.00 s, medians of 4 alternating runs) and nothing from one pandas process."""
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout


def run_measured(argv: list[str], env: dict | None = None) -> tuple[str, float, float]:
    """Run a command; return (stdout, wall seconds, peak RSS in MiB of the whole process tree)."""
    from ._extras import require
    require("psutil")  # one line naming the bench extra for a tool that did not check its needs itself
    import psutil

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0.0]
    done = threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], total / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.01)

    started = time.monotonic()
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    wall = time.monotonic() - started
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {err.strip()[-500:]}")
    return out, wall, peak[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (for servers the benchmarks and tests start)."""
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def remove_store(path: str) -> None:
    """Delete the store a benchmark made at ``path`` — only a store of this tool (its root metadata says so); a
    user's folder of that name is left alone."""
    import shutil

    from ingest.pipeline import is_store
    if os.path.isdir(path) and not os.path.islink(path) and is_store(path):
        shutil.rmtree(path)
