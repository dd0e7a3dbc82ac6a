"""``ingest()``: CSV files -> a complete store, resumable, in bounded memory, on all cores.

The store is built in ``OUT.partial/`` (work files and the store itself) and renamed to ``OUT`` only when complete,
so an interrupted ingest never leaves anything at ``OUT`` that looks finished; ``--resume`` continues from the
partial directory and produces exactly the same store.
"""

from __future__ import annotations

import errno
import gc
import glob
import json
import multiprocessing
import os
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from store import (ATTRS_KEY, FORMAT_NAME, BadRowError, Lock, OptionError, OutputExistsError, SchemaError, StoreError,
                   StoreWriter, boot_id, from_os_error, is_remote, partial_path, publish, shard_path, write_atomic)

from . import passes
from .blocks import Block, Chain, plan_blocks
from .cluster import dask_map
from .destination import default_work_dir, remote_state, upload_store
from .config import BLOCK_BYTES, BUCKET_BYTES, IngestConfig, bucket_count
from .infer import infer_kinds
from .parse import BlockParser
from .progress import pass_bar
from .shuffle import Segments, spill_bytes, spill_intact
from .sources import resolve_sources
from .summary import Summary, write_rejects
from .timings import Timed, Timings, table

__all__ = ["ingest", "IngestResult", "WORK_MARKER", "is_store"]

# Written first into every work directory: the only kind --resume continues and --overwrite deletes.
WORK_MARKER = ".ingest-work"
# The layout of the work files (spill, segments); a work directory of another layout is not resumed.
WORK_LAYOUT = 7
_PARKED = ".old-ingest-"  # OUT.old-ingest-PID: a store being replaced, until the new one is in place
_REMOVING = ".removing-ingest-"  # WORK.removing-ingest-PID: a work directory being deleted
_CREATING = ".creating-ingest-"  # WORK.creating-ingest-PID: a work directory being made


@dataclass(frozen=True)
class IngestResult:
    """What an ingest did: where the store is, rows read / stored per split / rejected, bytes, seconds, and the
    wall and CPU seconds of each stage (``timings``, see ingest.timings)."""

    path: str
    rows_read: int
    rows: dict
    rows_rejected: int
    rejects: str | None
    bytes_read: int
    seconds: float
    timings: dict = field(default_factory=dict)
    blocks: int = 0
    compiled_blocks: int = 0  # of ``blocks``, those the compiled parser took (ingest/parse.py); pandas the rest
    reparsed_blocks: int = 0  # blocks parsed twice: the quote parity guessed at their start was wrong (ingest.blocks)

    def summary(self, verbose: bool = False) -> str:
        """One line; with ``verbose``, then a table of each stage's wall and CPU seconds (CPU: every process), how
        many blocks the compiled parser took and how many were parsed twice."""
        rows = ", ".join(f"{k} {v:,}" for k, v in self.rows.items())
        mbs = self.bytes_read / max(self.seconds, 1e-9) / 1e6
        text = (f"ingested {self.rows_read:,} rows ({rows}; rejected {self.rows_rejected:,}) from "
                f"{self.bytes_read / 1e6:,.1f} MB in {self.seconds:.1f} s ({mbs:,.1f} MB/s) into {self.path}")
        text += f"; rejected rows are in {self.rejects}" if self.rows_rejected else ""
        if not verbose:
            return text
        return (text + ("\n" + table(self.timings) if self.timings else "")
                + f"\nparser: compiled (ingest/_fastcsv.c) for {self.compiled_blocks:,} of {self.blocks:,} blocks, "
                f"pandas for the rest; {self.reparsed_blocks:,} parsed twice (the quote parity guessed at their "
                "start was wrong)")


def ingest(config: IngestConfig) -> IngestResult:
    """Run an ingest as ``config`` says (see IngestConfig); raises StoreError subclasses for user errors.

    Example::

        ingest(IngestConfig(sources=["data/quest.csv"], out="quest.zarr", label="clear", val_fraction=0.1))
    """
    started = time.monotonic()
    timings = Timings()
    timings.begin("plan")
    try:
        return _ingest(config, started, timings)
    except OSError as exc:
        if exc.errno == errno.ENOSPC and not isinstance(exc, StoreError):
            raise from_os_error(exc) from None
        raise


def _ingest(config: IngestConfig, started: float, timings: Timings) -> IngestResult:
    files, header = resolve_sources(config.sources, config.val, config.encoding)
    if config.label is not None and config.label not in header:
        raise SchemaError(f"--label {config.label!r} is not a column of {files[0].path}; the header has: "
                          f"{', '.join(header)}", column=config.label)
    remote = is_remote(config.out)
    work = default_work_dir(config.out, config.work) if remote else partial_path(config.out)
    os.makedirs(os.path.dirname(os.path.abspath(work)), exist_ok=True)
    # one ingest at a time per output: a second one would share temporary names or, with --overwrite, delete the
    # live one's work
    with Lock(work + ".lock", f"an ingest into {config.out}", made_by="ingest"):
        resuming = bool(config.resume) and _is_work(work)
        try:
            return _build(config, files, header, remote, work, started, timings)
        except (BadRowError, SchemaError, OptionError) as exc:
            _discard_unresumable(work, resuming, exc)
            raise


def _build(config: IngestConfig, files: list, header: list[str], remote: bool, work: str, started: float,
           timings: Timings) -> IngestResult:
    """The ingest proper, under the output's lock: prepare the output, two passes over the data, publish; each
    stage timed."""
    (_prepare_remote_output if remote else _prepare_output)(config, work)
    kinds = infer_kinds(files[0], header, encoding=config.encoding, sample_rows=config.sample_rows,
                        explicit=config.dtypes)
    total = sum(f.size - f.data_start for f in files)
    n_buckets = bucket_count(total, BUCKET_BYTES)
    _check_plan(work, {"sources": [f.fingerprint() + [f.split] for f in files], "header": header,
                       "kinds": kinds, "options": config.content_options(), "n_buckets": n_buckets,
                       "work_layout": WORK_LAYOUT})
    ctx = passes.Context(work, files, BlockParser(header, kinds, config.encoding), config.seed, config.shuffle,
                         n_buckets, config.val_fraction, config.on_bad_rows == "error", flush_spill=bool(config.dask))
    splits = ("train", "validation") if config.val or config.val_fraction else ("train",)
    summary = Summary(ctx.parser, kinds, config.label, splits, Segments(n_buckets, config.shuffle))
    timings.begin("parse")
    # One set of workers for both passes: a second set paid fresh pages again for the buffers the parsing workers
    # already had, and its fork (330 MB log, 2 workers: write stage 0.49 -> 0.44 s, CPU 0.79 -> 0.66 s, median of 8
    # alternating runs). A worker forked for pass 1 opens the store's layout itself (passes.write_shard).
    with _pool(config, ctx, timings) as run:
        _parse_pass(config, ctx, summary, total, run)
        timings.begin("merge")
        summary.raise_first_bad_row(config.on_bad_rows)
        rejects = (write_rejects(config.rejects, summary.reject_parts(ctx)) if config.on_bad_rows == "skip"
                   else None)
        summary.merge_vocabularies(ctx, config.max_categories)
        ctx.schema = summary.schema()
        ctx.writer = _writer(config, ctx, summary)
        timings.begin("write")
        _shard_pass(config, ctx, summary, run)
    timings.begin("publish")  # the store records the stages before this one: its record is written now
    ctx.writer.commit(summary.attributes(files, config, rejects, timings.record()))
    if remote:
        upload_store(ctx.writer.path, config.out)
        _discard(work)
    else:
        _publish(config.out, work, ctx.writer.path)
    timings.end()
    return IngestResult(config.out, summary.rows_read, summary.rows, summary.rows_rejected, rejects,
                        total, time.monotonic() - started, timings.record(), len(summary.blocks),
                        summary.compiled_blocks, summary.reparsed_blocks)


def _prepare_output(config: IngestConfig, work: str) -> None:
    """Check what exists at OUT and OUT.partial against --overwrite / --resume; clean what must go."""
    out = config.out
    if os.path.exists(out):
        if not is_store(out):
            raise OutputExistsError(f"{out} exists and is not a store; refusing to touch it: choose another --out",
                                    path=out)
        if config.resume and not os.path.exists(work):
            raise OutputExistsError(f"{out} is already complete; nothing to resume (pass --overwrite to rebuild it)",
                                    path=out)
        if not config.overwrite and not config.resume:
            raise OutputExistsError(f"{out} exists; pass --overwrite to replace it", path=out)
    _new_work(config, work)


def _prepare_remote_output(config: IngestConfig, work: str) -> None:
    """As _prepare_output, for a URL: the remote objects are only replaced by the upload at the very end."""
    state = remote_state(config.out)
    if state == "other":
        raise OutputExistsError(f"{config.out} holds objects that are not a store; refusing to touch them: choose "
                                "another --out", path=config.out)
    if config.resume and os.path.exists(work):
        return
    if state == "store" and config.resume:
        raise OutputExistsError(f"{config.out} is already complete; nothing to resume (pass --overwrite to rebuild "
                                "it)", path=config.out)
    if state != "absent" and not config.overwrite:
        what = "exists" if state == "store" else "holds an interrupted upload"
        raise OutputExistsError(f"{config.out} {what}; pass --overwrite to replace it"
                                + (" (or --resume with the same --work to finish it)" if state == "partial" else ""),
                                path=config.out)
    _new_work(config, work)


def _new_work(config: IngestConfig, work: str) -> None:
    """Keep the work directory for --resume, replace it with --overwrite, else refuse; create it if absent. Only a
    directory that carries the marker written at its creation is ever continued or deleted."""
    if os.path.lexists(work):
        if not _is_work(work):
            raise OutputExistsError(f"{work} exists and was not made by ingest (no {WORK_MARKER}); refusing to "
                                    "continue or delete it: move it away or choose another --out/--work", path=work)
        if config.resume:
            return
        if not config.overwrite:
            raise OutputExistsError(f"{work} holds an interrupted ingest of {config.out}; pass --resume to continue "
                                    "it or --overwrite to start over", path=work)
        _discard(work)
    _remove_killed_work(work)
    building = f"{work}{_CREATING}{os.getpid()}"  # appears whole, marker included, or not at all
    os.makedirs(os.path.join(building, "spill"))
    write_atomic(os.path.join(building, WORK_MARKER),
                 json.dumps({"made_by": "ingest", "out": config.out, "pid": os.getpid()}).encode())
    publish(building, work)


def _discard_unresumable(work: str, resuming: bool, exc: StoreError) -> None:
    """After a user error the input or the options must change, and a changed plan cannot be resumed: delete the
    work directory, so that the corrected command just runs (no "pass --resume or --overwrite"). Only the one this
    run made (its marker names this process), or, for a bad row, the one it resumed. A resumed run stopped by an
    option or schema error (a typo in the --resume command, a changed plan) keeps its work for the right command;
    I/O errors, a full disk or a kill never come here: those are resumed."""
    if not _is_work(work):
        return
    if resuming and not isinstance(exc, BadRowError):
        return
    if not resuming:
        try:
            with open(os.path.join(work, WORK_MARKER), encoding="utf-8") as f:
                if json.load(f).get("pid") != os.getpid():
                    return  # an older run's work, refused before this run replaced it
        except (OSError, ValueError, AttributeError):
            return
    _discard(work)


def _is_work(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path) and os.path.isfile(os.path.join(path, WORK_MARKER))


def is_store(path: str) -> bool:
    """Whether ``path`` holds a store of this tool (its root metadata says so): the only kind replaced or removed."""
    try:
        with open(os.path.join(path, "zarr.json"), encoding="utf-8") as f:
            return json.load(f).get("attributes", {}).get(ATTRS_KEY, {}).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


def _check_plan(work: str, plan: dict) -> None:
    """Save the plan, or on resume check the sources and options did not change."""
    path = os.path.join(work, "plan.json")
    plan = json.loads(json.dumps(plan))
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        for key in plan:
            if saved.get(key) != plan[key]:
                raise OptionError(f"cannot resume {work}: the {key} changed since the interrupted run; run the same "
                                  "command as before, or pass --overwrite to start over", path=work)
        return
    write_atomic(path, json.dumps(plan, ensure_ascii=False).encode("utf-8"))


@contextmanager
def _pool(config: IngestConfig, ctx: passes.Context, timings: Timings):
    """``map``-like callable over work items: tasks on a Dask cluster (--dask), inline for one worker, else forked
    processes sharing ``ctx``. Each item's CPU time is added to the current stage of ``timings``."""
    with _map(config, ctx) as run:
        yield lambda fn, items: timings.results(run(Timed(fn), items))


@contextmanager
def _map(config: IngestConfig, ctx: passes.Context):
    passes.set_context(ctx)
    if config.dask:
        with dask_map(config.dask, ctx) as run:
            yield run
        return
    if config.workers == 1:
        yield map
        return
    methods = multiprocessing.get_all_start_methods()
    mp = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    # A forked worker must never garbage-collect the parent's objects: their finalizers need threads or state that
    # did not survive the fork (with TensorFlow loaded, as in a notebook or a test run, one segfaulted). Frozen
    # objects are left alone by the collector in the workers; the parent unfreezes them at once.
    gc.freeze()
    try:
        pool = mp.Pool(config.workers, initializer=passes.start_worker, initargs=(ctx,))
    finally:
        gc.unfreeze()
    try:
        yield lambda fn, items: pool.imap(fn, items, chunksize=1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _parse_pass(config: IngestConfig, ctx: passes.Context, summary: Summary, total: int, run) -> None:
    """Pass 1 over every block, skipping blocks a previous run finished; each block's metadata goes into
    ``summary`` in block order as it arrives (the parent keeps totals, not every block's metadata).

    The plan is the files' sizes cut into shares (ingest.blocks): the workers start at once, each reading only its
    own block. A block parsed under the wrong quote parity (known once the blocks before it are in) is parsed again
    under the right one in a second round; an error is raised when its block comes in order, so errors are
    reported in file order."""
    planned = _Planned(ctx)
    ordered = _InOrder(ctx, summary)
    with pass_bar("pass 1/2 parse", total, "B", enabled=config.progress) as bar:
        for meta in run(passes.parse_block, planned.todo()):
            ordered.take({meta["block"]: meta} | planned.take_resumed())
            bar.update(meta["bytes"] + planned.take_resumed_bytes())
            bar.set_postfix_str(f"{summary.rows_read:,} rows", refresh=False)
            if ordered.stopped:
                return  # every block before this one is in the summary: the first bad row in file order is there
        ordered.take(planned.take_resumed())
        bar.update(planned.take_resumed_bytes())
        if ordered.redo:  # a second round, under the parities now known: it needs no third
            for meta in run(passes.parse_block, ordered.take_redo()):
                ordered.take({meta["block"]: meta})
                if ordered.stopped:
                    return
    if ordered.waiting:
        raise StoreError(f"internal error: blocks {sorted(ordered.waiting)[:5]} were not added in order")


class _InOrder:
    """The blocks' metadata, taken in block order as it arrives: each is checked against the quote parity at its
    share's start (ingest.blocks.Chain), given the line of its first record (``line``) and added to the summary;
    a block that assumed the wrong parity waits to be parsed again (:meth:`take_redo`). Stops (``stopped``) at the
    first bad row under the error policy; raises a block's error (a record over the limit) when its turn comes.

    A checked block behind one that waits is kept as its line and its block, not its metadata (whose spill
    segments reach ~300 KB at 1,024 buckets): its metadata is read back from its file when its turn comes, so the
    parent's memory stays a few numbers per block however many blocks a wrong guess holds up."""

    def __init__(self, ctx: passes.Context, summary: Summary):
        self.ctx, self.summary = ctx, summary
        self.chain = Chain(ctx.files)
        self.arrived: dict[int, dict] = {}  # not yet checked: a block before it has not arrived
        self.checked: dict[int, dict | tuple] = {}  # checked, behind a block to be parsed again: see above
        self.waiting: dict[int, int] = {}  # block -> the line at its share's start, for blocks to parse again
        self.redo: list[Block] = []
        self.next_check = self.next_add = 0
        self.stopped = False

    def take(self, metas: dict[int, dict]) -> None:
        for index, meta in metas.items():
            if index in self.waiting:  # parsed again, under the right parity
                self.checked[index] = meta | {"line": self.waiting.pop(index) + meta["before"]}
            else:
                self.arrived[index] = meta
        while self.next_check in self.arrived:
            meta = self.arrived.pop(self.next_check)
            odd, line = self.chain.next(meta["file"], meta["quotes"], meta["newlines"])
            if meta["odd"] == odd:
                first_line = line + meta["before"]
                if self.waiting and "spill_bytes" in meta:
                    block = Block(self.next_check, meta["file"], *meta["share"], first=False, odd=meta["odd"])
                    self.checked[self.next_check] = (first_line, block)
                else:
                    self.checked[self.next_check] = meta | {"line": first_line}
            else:
                self.waiting[self.next_check] = line
                self.redo.append(Block(self.next_check, meta["file"], *meta["share"], first=False, odd=odd))
            self.next_check += 1
        while self.next_add in self.checked and not self.stopped:
            meta = self.checked.pop(self.next_add)
            if isinstance(meta, tuple):
                first_line, block = meta
                meta = _resumed_meta(self.ctx.spill(block.index) + ".json", block, self.ctx.spill_buckets,
                                     self.ctx.dtype.itemsize) | {"line": first_line}
            if meta.get("error"):
                rel, reason, fix = meta["error"]
                raise BadRowError(self.ctx.files[meta["file"]].path, meta["line"] + rel - 1, None, reason, fix)
            self.summary.add(meta)
            self.stopped = bool(meta["bad"]) and self.ctx.stop_at_bad_row
            self.next_add += 1

    def take_redo(self) -> list[Block]:
        taken, self.redo = self.redo, []
        self.summary.reparsed_blocks += len(taken)
        return taken


class _Planned:
    """The blocks to parse: blocks a previous run finished (their metadata saved) are handed aside
    (:meth:`take_resumed`)."""

    def __init__(self, ctx: passes.Context):
        self.ctx = ctx
        self._resumed: dict[int, dict] = {}
        self._resumed_bytes = 0
        self._lock = threading.Lock()  # todo() runs in the pool's feeder thread, the parent reads here

    def todo(self):
        boot = boot_id()
        for block in plan_blocks(self.ctx.files, BLOCK_BYTES):
            meta_path = self.ctx.spill(block.index) + ".json"
            meta = None
            if os.path.exists(meta_path):
                meta = _resumed_meta(meta_path, block, self.ctx.spill_buckets, self.ctx.dtype.itemsize)
            # a spill file is not flushed (see write_spill; on a Dask cluster it is): on the boot that wrote it,
            # what the system holds is what was written; after a reboot (a power cut) it is read back and checked,
            # and parsed again if it does not match
            trusted = meta is not None and (meta.get("flushed") or (boot is not None and meta.get("boot") == boot))
            if meta is not None and spill_intact(self.ctx.spill(block.index), meta, self.ctx.dtype.itemsize,
                                                 read=not trusted):
                with self._lock:
                    self._resumed[block.index] = meta
                    self._resumed_bytes += block.stop - block.start
            else:
                yield block

    def take_resumed(self) -> dict[int, dict]:
        """The metadata of finished blocks found since the last call."""
        with self._lock:
            taken, self._resumed = self._resumed, {}
        return taken

    def take_resumed_bytes(self) -> int:
        with self._lock:
            n, self._resumed_bytes = self._resumed_bytes, 0
        return n


def _resumed_meta(path: str, block: Block, n_buckets: int, row_bytes: int) -> dict:
    """A finished block's metadata from an earlier run, checked before its counts size anything: a damaged work
    file is one line, not a huge allocation or a wrong store."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        ok = (isinstance(meta, dict) and meta.get("block") == block.index and meta.get("file") == block.file
              and meta.get("share") == [block.start, block.stop] and type(meta.get("odd")) is bool
              and isinstance(meta.get("bad"), list) and not meta.get("error")
              and all(type(meta.get(k)) is int and meta[k] >= 0
                      for k in ("rows", "rows_read", "rejected", "bytes", "spill_bytes", "spill_sums", "quotes",
                                "newlines", "before"))
              and (meta.get("boot") is None or type(meta["boot"]) is str)
              and type(meta.get("flushed", False)) is bool)
        at = size = 0
        ok = ok and isinstance(meta.get("segments"), list)  # every saved block has them (none: no rows)
        for segment in meta["segments"] if ok else []:
            bucket, split, first, count = segment
            ok = ok and all(type(v) is int for v in segment) and 0 <= bucket < n_buckets and split in (0, 1) \
                and first == at and 0 < count < 2**32  # a block holds fewer than 2^32 rows (Segments.add)
            at += count if ok else 0
            size += int(spill_bytes(count, row_bytes)) if ok else 0
        ok = ok and at == meta["rows"] and size == meta["spill_bytes"]
    except (OSError, ValueError, TypeError):
        ok = False
    if not ok:
        raise StoreError(f"{path}: a work file of the interrupted ingest is damaged; pass --overwrite instead of "
                         "--resume to start over", path=path)
    return meta


def _writer(config: IngestConfig, ctx: passes.Context, summary: Summary) -> StoreWriter:
    writer = StoreWriter(os.path.join(ctx.work, "store"), schema=ctx.schema, rows=summary.rows,
                         batch_size=config.batch_size,
                         chunks_per_shard=summary.chunks_per_shard(ctx.schema, config.batch_size),
                         compression=config.compression)
    if not os.path.exists(writer.path):  # create() makes the layout appear whole, so one that exists is complete
        writer.create()
    return writer


def _shard_pass(config: IngestConfig, ctx: passes.Context, summary: Summary, run) -> None:
    """Pass 2: every shard not written by an earlier run, straight from the spill files."""
    segments = summary.segments
    segments.save(ctx.segments, ctx.dtype.itemsize)
    jobs = [job for s, split in enumerate(summary.rows)
            for job in segments.jobs(s, split, ctx.writer.shard_rows)]
    arrays = list(ctx.schema.arrays)

    def unwritten(jobs):  # a shard is written once every array's file of it is
        return [job for job in jobs
                if not all(os.path.exists(shard_path(ctx.writer.path, job.split, a, job.shard)) for a in arrays)]

    todo = unwritten(jobs)
    # largest first, so the short ones (a split's last shard, the validation split's) fill the end: with 5 shards
    # on 2 workers the pass took 2.4 shard-times in file order, 2.2 this way.
    todo.sort(key=lambda job: job.stop - job.start, reverse=True)
    _clear_parts(ctx.work)  # an interrupted run's parts, cut its own way
    items = _shard_items(todo, 1 if config.dask else config.workers, ctx.writer.batch_size)
    rows, parts_done = 0, {}
    with pass_bar("pass 2/2 write", len(jobs), "shards", done=len(jobs) - len(todo), enabled=config.progress) as bar:
        for item, count in zip(items, run(passes.write_shard, items)):
            rows += count
            bar.set_postfix_str(f"{rows:,} rows", refresh=False)
            if isinstance(item, passes.ShardPart):  # a shard is done with its last part
                key = (item.job.split, item.job.shard)
                parts_done[key] = parts_done.get(key, 0) + 1
                if parts_done[key] < item.parts:
                    continue
            bar.update(1)
    _clear_parts(ctx.work)
    missing = unwritten(jobs)
    if missing:  # never mark a store complete without every shard
        raise StoreError(f"internal error: shard {missing[0].shard} of {missing[0].split} was not written; run the "
                         "same command with --resume")


def _clear_parts(work: str) -> None:
    """Delete the work directory's folder of shard parts (passes.PARTS); a link planted there is removed as a link,
    never followed, and a folder that cannot be deleted stops the ingest rather than mixing old parts in."""
    path = os.path.join(work, passes.PARTS)
    if os.path.islink(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _shard_items(jobs: list, workers: int, batch_size: int) -> list:
    """The writing pass's work items: the shards, or, when there are fewer than two per worker (a small store on
    many cores: 9 shards for 16 workers on the 660 MB benchmark), each shard cut into parts of whole chunks that
    different workers encode (passes.write_shard assembles them), so that every core has work. A shard's bytes are
    the same either way; only the work is divided."""
    if workers <= 1 or not jobs or len(jobs) >= 2 * workers:  # none left: a resume after every shard was written
        return jobs
    per_shard = -(-2 * workers // len(jobs))
    items = []
    for job in jobs:
        chunks = -(-(job.stop - job.start) // batch_size)
        parts = min(per_shard, chunks)
        if parts <= 1:
            items.append(job)
            continue
        bounds = [chunks * p // parts for p in range(parts + 1)]
        items += [passes.ShardPart(job, p, parts, bounds[p], bounds[p + 1]) for p in range(parts)]
    return items


def _publish(out: str, work: str, built: str) -> None:
    """Move the finished store to OUT (replacing an old one only now), then remove the work directory.

    Every step is one rename, so a kill between any two leaves either a resumable OUT.partial (the old store, if
    any, parked as OUT.old-ingest-PID until then) or the finished OUT; work being deleted is renamed away first,
    so a kill during the deletion never leaves a half-deleted OUT.partial that --resume would trust.
    """
    _remove_leftovers(out)
    old = None
    if os.path.exists(out):
        old = f"{out}{_PARKED}{os.getpid()}"
        os.replace(out, old)
    publish(built, out, synced=True)  # StoreWriter.commit flushed the whole store before marking it complete
    _discard(work)
    if old:
        _remove_tree(old)
    _remove_leftovers(out)


def _discard(work: str) -> None:
    """Delete a work directory (one of ours: see _new_work), renaming it away first: a kill during the deletion
    must not leave a half-deleted work directory that --resume would trust."""
    trash = f"{work}{_REMOVING}{os.getpid()}"
    os.replace(work, trash)
    _remove_tree(trash)
    _remove_killed_work(work)


def _remove_tree(path: str) -> None:
    """``shutil.rmtree(path)``, its files unlinked by a thread per core first: freeing a spill file's pages is kernel
    work that one thread does one file at a time (~0.6 ms per 10 MB file here: ~4 s for the ~60 GB spill of a
    100 GB input; 600 MB in 60 files 36 -> 21 ms on 2 cores). What says whose folder this is — the work marker, a
    store's root ``zarr.json`` — goes last, with the folder itself: a kill midway leaves a folder the next run still
    recognises and sweeps. ``os.walk`` lists a link to a folder as a folder, which rmtree unlinks without following."""
    marks = {os.path.join(path, WORK_MARKER), os.path.join(path, "zarr.json")}
    files = [os.path.join(root, name) for root, _dirs, names in os.walk(path) for name in names]
    with ThreadPoolExecutor(max(1, min(32, os.cpu_count() or 1))) as pool:
        for _ in pool.map(_unlink_quietly, [f for f in files if f not in marks]):
            pass
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:  # the folders (now empty of files) first, the marks after them
        if entry.path not in marks:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                _unlink_quietly(entry.path)
    for mark in marks:
        _unlink_quietly(mark)
    shutil.rmtree(path, ignore_errors=True)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove_killed_work(work: str) -> None:
    """Work directories that killed runs were making or deleting (ours: they carry the marker)."""
    for prefix in (_REMOVING, _CREATING):
        for path in glob.glob(glob.escape(work) + prefix + "*"):
            if _is_work(path):
                shutil.rmtree(path, ignore_errors=True)


def _remove_leftovers(out: str) -> None:
    """Remove what killed runs left beside OUT, and nothing else: stores they replaced (``OUT.old-ingest-PID``, a
    store of this format) and work folders they were making or deleting (``….creating-ingest-PID``,
    ``….removing-ingest-PID``, with the work marker).
    A user's ``OUT.old-2024`` backup is not ours and stays."""
    for path in glob.glob(glob.escape(out) + _PARKED + "*"):
        if re.fullmatch(r"\d+", path[len(out) + len(_PARKED):]) and is_store(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
    _remove_killed_work(partial_path(out))
