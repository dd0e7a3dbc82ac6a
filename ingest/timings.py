"""Where an ingest's time goes: wall time of each stage in the parent, CPU time of the parent and of its workers.

The stages run one after the other (``STAGES``); :meth:`Timings.begin` ends one and starts the next. Every work item
of a pass runs through :class:`Timed`, which returns the CPU seconds (``time.process_time``) the item took in the
process that ran it; the parent adds those of other processes (pool workers, Dask workers) to its own. A stage's CPU
time is therefore the work of every process on it, and CPU / wall tells how parallel the stage was (issue 12 §1).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator

__all__ = ["STAGES", "Timed", "Timings", "table"]

# plan: sources, type inference; parse: pass 1 (both rounds: see ingest.blocks); merge: statistics, vocabularies,
# code maps, the store's layout; write: pass 2 (each shard from its permuted buckets, final types); publish: flush,
# root metadata, rename or upload. The store's record is written during "publish", so it holds the stages before it.
STAGES = ("plan", "parse", "merge", "write", "publish")


class Timed:
    """``Timed(fn)(item)`` -> ``(fn(item), CPU seconds of the call, pid of the process that ran it)``.

    Picklable (the function travels by reference), so it wraps the work functions of ingest.passes for pool
    processes and Dask tasks alike. A Dask worker running several tasks in threads at once counts each task's
    neighbours too: process CPU time is per process.
    """

    def __init__(self, fn: Callable):
        self.fn, self.__name__ = fn, fn.__name__

    def __call__(self, item):
        cpu = time.process_time()
        result = self.fn(item)
        return result, time.process_time() - cpu, os.getpid()


class Timings:
    """Wall and CPU seconds per stage of one ingest, in the order the stages ran.

    Example::

        timings = Timings()
        timings.begin("plan")
        ...
        timings.begin("parse")                           # ends "plan"
        for meta in timings.results(run(Timed(passes.parse_block), blocks)):
            ...
        timings.end()
        timings.record()                                 # {"plan": {"wall": 0.21, "cpu": 0.2}, "parse": ...}
    """

    def __init__(self):
        self.seconds: dict[str, list[float]] = {}  # stage -> [wall, cpu]
        self._current: tuple[str, float, float] | None = None

    def begin(self, stage: str) -> None:
        """End the current stage (if any) and start ``stage``."""
        self.end()
        self._current = (stage, time.perf_counter(), time.process_time())

    def end(self) -> None:
        if self._current is not None:
            stage, wall, cpu = self._current
            self._add(stage, time.perf_counter() - wall, time.process_time() - cpu)
            self._current = None

    def results(self, timed: Iterable[tuple]) -> Iterator:
        """The results of :class:`Timed` work items, adding to the current stage the CPU time of those that ran in
        another process (one that ran in this process is already in this process's CPU time)."""
        me = os.getpid()
        for result, cpu, pid in timed:
            if pid != me and self._current is not None:
                self._add(self._current[0], 0.0, cpu)
            yield result

    def _add(self, stage: str, wall: float, cpu: float) -> None:
        acc = self.seconds.setdefault(stage, [0.0, 0.0])
        acc[0] += wall
        acc[1] += cpu

    def record(self) -> dict[str, dict[str, float]]:
        """``{stage: {"wall": seconds, "cpu": seconds}}`` of the stages ended so far, to the millisecond."""
        return {stage: {"wall": round(wall, 3), "cpu": round(cpu, 3)} for stage, (wall, cpu) in self.seconds.items()}


def table(record: dict[str, dict[str, float]]) -> str:
    """A small text table of a record: one line per stage, wall and CPU seconds and their ratio, then the total."""
    lines = [f"  {'stage':<8} {'wall s':>8} {'CPU s':>8} {'CPU/wall':>9}"]
    total_wall = total_cpu = 0.0
    for stage, t in record.items():
        ratio = t["cpu"] / t["wall"] if t["wall"] > 0 else 0.0
        lines.append(f"  {stage:<8} {t['wall']:>8.2f} {t['cpu']:>8.2f} {ratio:>9.2f}")
        total_wall, total_cpu = total_wall + t["wall"], total_cpu + t["cpu"]
    ratio = total_cpu / total_wall if total_wall > 0 else 0.0
    lines.append(f"  {'total':<8} {total_wall:>8.2f} {total_cpu:>8.2f} {ratio:>9.2f}")
    return "\n".join(lines)
