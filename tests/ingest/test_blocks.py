"""Blocks: a file's shares, and the records of each found by its worker under an assumed quote parity, checked and
corrected in order by the parent (ingest.blocks). Blocks are the records that start in their share, as documented,
whatever the quotes do; the parent reads no byte of the data; each byte is read about once; a quote that is never
closed stops the ingest with one line quickly and in bounded memory (issue 11). The large cases run at the real
block size on ~100 MB files."""

from __future__ import annotations

import csv
import os
import random
import time

import numpy as np
import pytest

import ingest.blocks
import ingest.quotes
from ingest.blocks import TAIL_BYTES, Block, Chain, guess_parity, locate, plan_blocks, split_records
from ingest.cli import main
from ingest.config import BLOCK_BYTES, MAX_RECORD_BYTES
from ingest.quotes import count_byte, first_record_end, last_record_end
from ingest.sources import resolve_sources
from store import BadRowError, open_store

HEADER = b"id,score,name,when\n"
ROW = b"%d,0.125,plain name,2024-01-02\n"


def _rows(first: int, count: int) -> bytes:
    return b"".join(ROW % i for i in range(first, first + count))


def _record_ends(data: bytes, start: int) -> np.ndarray:
    """Reference: offsets just past every newline outside quotes, from the whole file at once."""
    raw = np.frombuffer(data, np.uint8)[start:]
    newlines, quotes = np.flatnonzero(raw == 10), np.flatnonzero(raw == 34)
    return start + newlines[np.searchsorted(quotes, newlines) % 2 == 0] + 1


def _documented_blocks(data: bytes, start: int, block_bytes: int) -> list:
    """Reference of the block rule: block j holds the records that start in [T_j, T_j+1), T_j = start + j *
    block_bytes; (first record's offset, end) per block, from the whole file's record ends at once."""
    size = len(data)
    bounds = np.concatenate([[start], _record_ends(data, start), [size]])
    bounds = bounds[bounds <= size]

    def first_at_or_after(t):
        return int(bounds[np.searchsorted(bounds, t, side="left")])

    shares = list(range(start, size, block_bytes)) + [size]
    return [(first_at_or_after(a), first_at_or_after(b) if b < size else size) for a, b in zip(shares, shares[1:])]


def _spans(spans) -> list:
    """(start, end) of each block, None for an empty one (whose offsets say nothing)."""
    return [(a, b) if b > a else None for a, b in spans]


def _resolve(files, block_bytes: int, max_record: int = MAX_RECORD_BYTES, calls: list | None = None,
             guess: bool = True) -> list:
    """What the ingest's parsing pass does, without workers: every block under a guessed parity (or, without
    ``guess``, an even one), then the ones the chain finds wrong again under the right one. Returns (block,
    Located, line of its first record) in order; ``calls`` gets the parity each locate assumed."""
    chain, out = Chain(files), []
    for block in plan_blocks(files, block_bytes):
        if not guess:
            block = Block(block.index, block.file, block.start, block.stop, block.first, False)
        at = locate(block, files[block.file], max_record)
        odd, line = chain.next(block.file, at.quotes, at.newlines)
        if calls is not None:
            calls.append(at.odd)
        if odd != at.odd:
            block = Block(block.index, block.file, block.start, block.stop, block.first, odd)
            again = locate(block, files[block.file], max_record)
            assert (again.quotes, again.newlines) == (at.quotes, at.newlines)  # these assume nothing
            at = again
            if calls is not None:
                calls.append(at.odd)
        out.append((block, at, line + at.before))
    return out


@pytest.fixture
def big(tmp_path):
    """``big(name)`` -> a path in tmp_path for a large generated file, deleted after the test (pytest keeps the
    tmp_path of recent runs)."""
    paths = []

    def make(name: str):
        paths.append(tmp_path / name)
        return paths[-1]

    yield make
    for path in paths:
        path.unlink(missing_ok=True)


class _Counting:
    """``read_range`` for ingest.blocks that counts the bytes the blocks' workers read."""

    def __init__(self):
        self.read = 0
        self.furthest = 0

    def __call__(self, path, start, end):
        data = ingest.sources.read_range(path, start, end)
        self.read += len(data)
        self.furthest = max(self.furthest, start + len(data))
        return data


def _naive_last(buf: bytes, lo: int, hi: int, odd: bool) -> int:
    for nl in range(hi - 1, lo - 1, -1):
        if buf[nl] == 10 and not (odd ^ (buf.count(b'"', nl, hi) % 2 == 1)):
            return nl
    return -1


def _naive_first(buf: bytes, lo: int, hi: int, odd: bool) -> int:
    for nl in range(lo, hi):
        if buf[nl] == 10 and not (odd ^ (buf.count(b'"', lo, nl) % 2 == 1)):
            return nl
    return -1


@pytest.mark.parametrize("piece,tries", [(1 << 20, 16), (7, 0), (64, 2)])
def test_record_end_searches_agree_with_the_definition(monkeypatch, piece, tries):
    monkeypatch.setattr(ingest.quotes, "_PIECE", piece)  # small pieces and no one-by-one tries: numpy path, seams
    monkeypatch.setattr(ingest.quotes, "_TRIES", tries)
    monkeypatch.setattr(ingest.quotes, "_COUNT_PIECE", max(3, piece // 8))  # count_byte's numpy path too
    rng = random.Random(1)
    for _ in range(400):
        buf = bytes(rng.choice(b'ab,"\n\n') for _ in range(rng.randint(0, 120)))
        lo = rng.randint(0, len(buf))
        hi = rng.randint(lo, len(buf))
        odd = rng.random() < 0.5
        assert last_record_end(buf, lo, hi, odd) == _naive_last(buf, lo, hi, odd)
        nl, odd_hi = first_record_end(bytearray(buf), lo, hi, odd)
        assert nl == _naive_first(buf, lo, hi, odd)
        if nl < 0:
            assert odd_hi == odd ^ (buf.count(b'"', lo, hi) % 2 == 1)


@pytest.mark.parametrize("piece", [3, 64, 1 << 18])
def test_count_byte_is_bytes_count(monkeypatch, piece):
    """The numpy byte count equals ``bytes.count`` for any range, its pieces' seams and a range past the end
    (clamped) included, on bytes, a bytearray or a memoryview."""
    monkeypatch.setattr(ingest.quotes, "_COUNT_PIECE", piece)
    rng = random.Random(piece)
    for _ in range(300):
        buf = bytearray(rng.choice(b'ab,"\n') for _ in range(rng.randint(0, 2000)))
        lo, hi = rng.randint(0, len(buf) + 5), rng.randint(0, len(buf) + 50)
        for byte in (34, 10, 44):
            assert count_byte(buf, byte, lo, hi) == buf.count(bytes((byte,)), lo, hi)
            assert count_byte(memoryview(bytes(buf)), byte, lo, hi) == buf.count(bytes((byte,)), lo, hi)
        assert count_byte(buf, 34) == buf.count(b'"')


@pytest.mark.parametrize("guess", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_blocks_follow_the_documented_rule(tmp_path, seed, guess):
    """Many small files and block sizes: long records, newlines in quotes (shares starting inside them), blank
    lines, a quote at the end never closed: each block is the records that start in its share, found under the
    parity the parent works out, and the first record's line is right."""
    rng = random.Random(seed)
    for trial in range(60):
        parts = [HEADER]
        for _ in range(rng.randint(1, 200)):
            parts.append(rng.choice([b"1,2,a,b\n", b'1,"x\ny",a,b\n', b"9," + b"w" * rng.randint(10, 900) + b",c,d\n",
                                     b"\n\n", b'1,"say ""hi""",a,b\n',
                                     b'2,"' + b"q\n" * rng.randint(1, 300) + b'",c,d\n']))
        if rng.random() < 0.2:
            parts.append(b'3,"never closed\n1,2,3,4\n')
        if rng.random() < 0.2:
            parts.append(b"5,6,7,no newline at the end")
        path = tmp_path / f"f{trial}.csv"
        data = b"".join(parts)
        path.write_bytes(data)
        files, _ = resolve_sources([str(path)], [], "utf-8")
        block_bytes = rng.choice([16, 64, 300, 4096])
        resolved = _resolve(files, block_bytes, max_record=1 << 30, guess=guess)
        start = len(HEADER)
        expected = _documented_blocks(data, start, block_bytes)
        assert _spans((at.start, at.end) for _, at, _ in resolved) == _spans(expected)
        for _, at, line in resolved:
            assert bytes(at.data) == data[at.start:at.end]
            assert at.records_newlines == data.count(b"\n", at.start, at.end)
            if at.end > at.start:
                assert line == 1 + data.count(b"\n", 0, at.start)
        joined = b"".join(bytes(at.data) for _, at, _ in resolved)
        assert joined == data[start:]  # every record in exactly one block, in order


def test_a_wrong_parity_is_caught_and_parsed_again(tmp_path):
    """A share that starts inside a quoted field holding newlines: an even parity assumed there is wrong, the chain
    says so, and the block parsed again under the odd one is right; the other blocks are parsed once. The guess
    gets it right at once (the field's closing quote tells)."""
    field = b'7,"' + b"line\n" * 40 + b'end",x,2024-01-01\n'
    data = HEADER + _rows(0, 3) + field + _rows(3, 3)
    path = tmp_path / "q.csv"
    path.write_bytes(data)
    files, _ = resolve_sources([str(path)], [], "utf-8")
    calls = []
    share = len(HEADER) + len(_rows(0, 3)) + 64  # the second share starts inside the field
    resolved = _resolve(files, share - len(HEADER), calls=calls, guess=False)
    assert calls == [False, False, True] + [False] * (len(calls) - 3)
    assert _spans((at.start, at.end) for _, at, _ in resolved) == _spans(_documented_blocks(data, len(HEADER),
                                                                                         share - len(HEADER)))
    calls = []
    guessed = _resolve(files, share - len(HEADER), calls=calls)
    assert [(at.start, at.end, line) for _, at, line in guessed] == [(at.start, at.end, line)
                                                                     for _, at, line in resolved]
    assert calls == [False, True] + [False] * (len(calls) - 2)


@pytest.mark.parametrize("seed", range(4))
def test_the_guess_is_right_for_rfc4180_files(tmp_path, seed):
    """Files that quote as RFC 4180 says — some or all fields quoted (R's write.csv quotes every text field), empty
    quoted fields, quotes doubled at a field's edges, newlines and CRLF inside quotes, CRLF line ends: the worker's
    guess of the parity is right at every byte with a field's edge after it (here: a few plain rows end the file),
    so no block is parsed twice where each share holds a quote. (A share without one is guessed outside quotes, and
    so is a byte with no field's edge after it before the end of the file: such a block may be parsed twice.)"""
    rng = random.Random(seed)
    for trial in range(20):
        end = rng.choice([b"\n", b"\r\n"])
        fields = [b"12", b"0.5", b"plain", b'"quoted, with a comma"', b'""', b'"""edge"" quotes"""',
                  b'"multi\nline\r\nfield"', b'"' + b"x\n" * rng.randint(1, 200) + b'"', b'"a ""b"" c"']
        rows = [b'"id","a","b"' + end]
        for i in range(rng.randint(1, 300)):
            rows.append(b",".join([b'"%d"' % i] + [rng.choice(fields) for _ in range(2)]) + end)
        rows += [b'"end","plain","x"' + end] * 3
        data = b"".join(rows)
        parity = np.concatenate([[0], np.cumsum(np.frombuffer(data, np.uint8) == 34) % 2])
        assert all(guess_parity(data, t, len(data)) == parity[t] for t in range(len(rows[0]), len(data)))
        path = tmp_path / f"r{trial}.csv"
        path.write_bytes(data)
        files, _ = resolve_sources([str(path)], [], "utf-8")
        for block_bytes in (1024, 4096):  # longer than the longest quoted field
            calls = []
            resolved = _resolve(files, block_bytes, calls=calls)
            assert len(calls) == len(resolved)  # each block located once: no guess was wrong
            start = len(rows[0])
            assert _spans((at.start, at.end) for _, at, _ in resolved) == _spans(_documented_blocks(data, start,
                                                                                                 block_bytes))


def test_planning_reads_nothing_and_each_byte_is_read_about_once(big, monkeypatch, real_blocks):
    """~100 MB with quoted multi-line fields and one 40 MB record of 4 million quoted newlines (longer than two
    shares): the plan is the file's size (no read), blocks as documented, and the workers read each byte about
    once — the long record's bytes twice: by its own block and by the shares inside it, which find no record."""
    path = big("big.csv")
    long_record = b'7,"' + b"abcdefghi\n" * 4_000_000 + b'",x,2024-01-01\n'
    multiline = b'8,"two\nlines, and a comma",y,2024-01-01\n'
    with open(path, "wb") as f:
        f.write(HEADER)
        for k in range(24):
            f.write((_rows(k * 10_000, 10_000) + multiline) * 7)
            if k == 9:
                f.write(long_record)
    data = path.read_bytes()
    size = len(data)
    assert 95e6 < size < 110e6
    counting = _Counting()
    monkeypatch.setattr(ingest.blocks, "read_range", counting)
    files, _ = resolve_sources([str(path)], [], "utf-8")
    blocks = list(plan_blocks(files, real_blocks))
    assert counting.read == 0 and len(blocks) == -(-(size - len(HEADER)) // real_blocks)
    resolved = _resolve(files, real_blocks)
    assert _spans((at.start, at.end) for _, at, _ in resolved) == _spans(_documented_blocks(data, len(HEADER),
                                                                                         real_blocks))
    assert any(at.end - at.start > real_blocks for _, at, _ in resolved)  # the long record's block
    assert any(at.end == at.start for _, at, _ in resolved)  # a share inside it
    assert counting.read <= size + len(long_record) + len(blocks) * (TAIL_BYTES + 1) + 2 * real_blocks
    del data


def test_the_parent_reads_no_data(quest_csv, tmp_path, monkeypatch, small_blocks):
    """With worker processes, the parent never reads a block (only the header and the type-inference sample): the
    planner's serial read of the whole input, which capped how many workers it could feed, is gone."""
    import ingest.blocks
    parent, reads = os.getpid(), []
    real = ingest.blocks.read_range
    monkeypatch.setattr(ingest.blocks, "read_range",
                        lambda *args: (reads.append(args) if os.getpid() == parent else None) or real(*args))
    assert main([quest_csv, "--out", str(tmp_path / "s.zarr"), "--workers", "2", "--quiet"]) == 0
    assert reads == []
    assert main([quest_csv, "--out", str(tmp_path / "t.zarr"), "--workers", "1", "--quiet"]) == 0
    assert len(reads) > 3  # the same function, inline


def _unclosed_quote_file(path, size: int) -> int:
    """``size`` bytes of rows with a quote opened at the start of line 20,001 (after the 10,000-row sample that
    infers the types) and never closed; returns the quote's offset."""
    head = HEADER + _rows(0, 19_999)
    body = _rows(20_000, 10_000)
    with open(path, "wb") as f:
        f.write(head + b'"' + body)
        written = len(head) + 1 + len(body)
        while written < size:
            f.write(body)
            written += len(body)
    return len(head)


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_unclosed_quote_in_a_large_file_stops_at_once(tmp_path, big, monkeypatch, capsys, real_blocks, policy):
    """The issue's case: a quote never closed after the inference sample, ~100 MB (a 64 MiB file hung for over
    300 s before). One line naming the file and line; the block holding the quote reads no more than the record
    limit past it, and (one worker, in order) no block after it is read."""
    path = big("open.csv")
    quote = _unclosed_quote_file(path, 100 * 10**6)
    counting = _Counting()
    monkeypatch.setattr(ingest.blocks, "read_range", counting)
    started = time.monotonic()
    assert main([str(path), "--out", str(tmp_path / "s.zarr"), "--on-bad-rows", policy, "--quiet",
                 "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ingest: error: {path}:20001: unbalanced quotes: a quote opened "
                                                   f"on this line is still open {MAX_RECORD_BYTES >> 20} MiB later")
    assert 'close the quote or remove the stray one; inside a quoted field write a quote as ""' in err
    assert counting.furthest <= quote + MAX_RECORD_BYTES < os.path.getsize(path)
    print(f"refused in {time.monotonic() - started:.1f} s")  # ~0.5 s on the 2-core machine; not asserted


def test_a_line_longer_than_the_record_limit_is_refused(big, tmp_path, capsys):
    path = big("cr.csv")
    row = b"1,0.5,a,2024-01-01\r"  # bare carriage returns: the whole file is one line
    path.write_bytes(HEADER + row * ((MAX_RECORD_BYTES + 2**20) // len(row)))
    files, _ = resolve_sources([str(path)], [], "utf-8")
    at = locate(next(plan_blocks(files, BLOCK_BYTES)), files[0])
    assert at.error is not None and at.error[0] == 1
    assert main([str(path), "--out", str(tmp_path / "s.zarr"), "--quiet", "--dtype", "id=category"]) == 1
    assert capsys.readouterr().err == (
        f"ingest: error: {path}:2: a line longer than {MAX_RECORD_BYTES >> 20} MiB, the most one record may span; "
        "check that this is a CSV file with one record per line; if its lines end with a bare carriage return (\\r), "
        "convert them to \\n\n")


def test_unclosed_quote_near_the_end_is_one_rejected_record(tmp_path, big, make_store, real_blocks):
    """As the README says: when the rest of the file is within the record limit, a quote never closed swallows it
    into one rejected record (skip), or stops at its line (error)."""
    path = big("tail.csv")
    quote = _unclosed_quote_file(path, 40 * 10**6)
    with pytest.raises(BadRowError, match=r":20001: unbalanced quotes: a quote opened here is never closed"):
        make_store(str(path), workers=2)
    rejects = big("rejects.csv")
    out, result = make_store(str(path), on_bad_rows="skip", rejects=str(rejects), workers=2)
    assert (result.rows_read, result.rows_rejected, result.rows) == (20_000, 1, {"train": 19_999})
    assert open_store(out).read_frame("train")["id"].sort_values().tolist() == list(range(19_999))
    with open(rejects, "rb") as f:
        assert f.readline() == b"file,line,column,reason,record\r\n"
        assert f.read(len(str(path)) + 7) == str(path).encode() + b",20001,"
    assert os.path.getsize(rejects) > os.path.getsize(path) - quote  # the record, whole


# -- end to end: shares that start inside quoted fields -----------------------------------------------------------

def _multiline_csv(path, rows: int = 8000, bad: tuple = ()) -> bytes:
    """Rows whose text field is, half the time, a quoted field of up to 60 lines (with a comma and quotes): about
    half the bytes are inside quotes, so many 64 KiB shares start inside one. Rows in ``bad`` have a bad score."""
    rng = random.Random(5)
    out = [b"id,text,score\n"]
    for i in range(rows):
        text = b'"' + b"word\n" * rng.randint(1, 60) + b'x, ""y"""' if rng.random() < 0.5 else b"plain%d" % (i % 7)
        out.append(b"%d,%s,%s\n" % (i, text, b"oops" if i in bad else b"%d.5" % i))
    data = b"".join(out)
    path.write_bytes(data)
    return data


def _line_of(data: bytes, row: int) -> int:
    return 1 + data.count(b"\n", 0, data.index(b"\n%d," % row) + 1)


@pytest.mark.parametrize("workers,guess", [(1, True), (1, False), (2, False)])
def test_multiline_fields_across_shares(tmp_path, make_store, small_blocks, monkeypatch, workers, guess):
    """Every row read back as pandas reads it, the rejected rows with their true lines, and the same store for 1
    and 2 workers: with the guess, every block parsed once; with an even parity always assumed, the blocks whose
    share starts inside a quoted field parsed again (one round more, no third)."""
    import pandas as pd

    import ingest.passes
    bad = (5, 2500, 7999)
    data = _multiline_csv(tmp_path / "m.csv", bad=bad)
    if not guess:
        monkeypatch.setattr(ingest.blocks, "guess_parity", lambda *args: False)
    parsed = []
    real = ingest.passes.parse_block
    rejects = tmp_path / "rejects.csv"
    options = dict(dtypes={"id": "int", "text": "category", "score": "float"}, on_bad_rows="skip",
                   rejects=str(rejects), val_fraction=0.2, workers=workers)
    with monkeypatch.context() as patch:
        if workers == 1:  # (a worker process's calls are not seen here)
            patch.setattr(ingest.passes, "parse_block", lambda block: parsed.append(block) or real(block))
        out, result = make_store(str(tmp_path / "m.csv"), **options)
    if workers == 1:
        again = [b for b in parsed if b.odd is not None and not b.first]  # given a parity: the second round
        assert len(parsed) == len({b.index for b in parsed}) + len(again)
        assert (0 < len(again) < len(parsed) / 2 and parsed[-1] in again) if not guess else again == []
        assert result.reparsed_blocks == len(again)
    else:
        from tests.ingest.test_shuffle import _arrays
        assert _arrays(out) == _arrays(make_store(str(tmp_path / "m.csv"), **(options | {"workers": 1}))[0])
    expected = pd.read_csv(tmp_path / "m.csv", dtype={"text": str})
    expected = expected[~expected["id"].isin(bad)].reset_index(drop=True)
    store = open_store(out)
    got = pd.concat([store.read_frame("train"), store.read_frame("validation")]).sort_values("id")
    assert got["id"].tolist() == expected["id"].tolist()
    assert got["text"].astype(str).tolist() == expected["text"].tolist()
    assert np.array_equal(got["score"].to_numpy(), expected["score"].to_numpy(np.float32))
    with open(rejects, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["line"]) for r in rows] == [_line_of(data, i) for i in bad]
    assert [r["record"].split(",")[0] for r in rows] == [str(i) for i in bad]
    with pytest.raises(BadRowError, match=rf"m.csv:{_line_of(data, 5)}: column 'score'"):
        make_store(str(tmp_path / "m.csv"), **(options | {"on_bad_rows": "error"}))
    late = _multiline_csv(tmp_path / "late.csv", bad=(7000,))
    with pytest.raises(BadRowError, match=rf"late.csv:{_line_of(late, 7000)}: column 'score'"):
        make_store(str(tmp_path / "late.csv"), **(options | {"on_bad_rows": "error"}))


def long_quoted_field_csv(path) -> None:
    """A quoted field of ~200 KB without a quote inside, then 40,000 plain rows: at 64 KiB shares, the guess is
    wrong for the shares inside the field (none holds a quote), so those blocks are parsed twice."""
    rows = b"".join(b"%d,%d.5,plain\n" % (i, i) for i in range(2, 40_000))
    path.write_bytes(b"id,x,t\n1,0.5,\"" + b"y" * 200_000 + b"\n" + b"y" * 3000 + b"\"\n" + rows)


def test_blocks_behind_a_wrong_guess_wait_on_disk_not_in_memory(tmp_path, make_store, small_blocks, monkeypatch):
    """A wrong guess early (block 1's share lies inside a quoted field with no quote in it) holds up every later
    block until the second round: the parent keeps them as a line and a block each, not their metadata (spill
    segments: ~300 KB a block at 1,024 buckets), and reads that back in turn."""
    import pandas as pd

    import ingest.pipeline
    path = tmp_path / "w.csv"
    long_quoted_field_csv(path)
    held = []
    take = ingest.pipeline._InOrder.take

    def counting(self, metas):
        take(self, metas)
        held.append((sum(isinstance(v, dict) for v in self.checked.values()), len(self.checked)))

    monkeypatch.setattr(ingest.pipeline._InOrder, "take", counting)
    out, result = make_store(str(path), dtypes={"id": "int", "x": "float", "t": "category"})
    assert result.rows == {"train": 40_000 - 1} and result.reparsed_blocks == 2  # the two shares inside the field
    assert result.summary(verbose=True).endswith("; 2 parsed twice (the quote parity guessed at their start was "
                                                 "wrong)")
    assert max(dicts for dicts, _ in held) <= 1 and max(n for _, n in held) >= 8  # 8+ blocks held up, on disk
    expected = pd.read_csv(path, dtype={"t": str})
    got = open_store(out).read_frame("train").sort_values("id")
    assert got["id"].tolist() == expected["id"].tolist() and got["t"].astype(str).tolist() == expected["t"].tolist()


def test_resume_after_a_crash_while_blocks_are_parsed_again(tmp_path, small_blocks, monkeypatch):
    """A kill in the second round (blocks parsed again under the right parity) or between the rounds: the resumed
    run parses again the blocks whose saved parity was wrong, and the store is the uninterrupted run's."""
    from ingest import IngestConfig, ingest as run_ingest
    from tests.ingest.test_resume import Crash, _crash_after
    from tests.ingest.test_shuffle import _arrays
    monkeypatch.setattr(ingest.blocks, "guess_parity", lambda *args: False)  # so that some blocks are parsed again
    _multiline_csv(tmp_path / "m.csv")
    options = dict(sources=[str(tmp_path / "m.csv")], val_fraction=0.1, workers=1, progress=False)
    reference = str(tmp_path / "reference.zarr")
    run_ingest(IngestConfig(out=reference, **options))
    first_round = len(list(plan_blocks(resolve_sources([str(tmp_path / "m.csv")], [], "utf-8")[0], 64 * 1024)))
    for calls in (first_round, first_round + 1):
        out = str(tmp_path / f"out{calls}.zarr")
        with monkeypatch.context() as patch:
            _crash_after(patch, "parse_block", calls)
            with pytest.raises(Crash):
                run_ingest(IngestConfig(out=out, **options))
        run_ingest(IngestConfig(out=out, resume=True, **options))
        assert _arrays(out) == _arrays(reference)


# -- split_records: a block's bytes -> records (the parse stage's first step) ----------------------------------------

def _records(data: bytes) -> list[tuple[bytes, int]]:
    starts, ends, lines = split_records(data)
    return [(data[s:e], int(n)) for s, e, n in zip(starts, ends, lines)]


@pytest.mark.parametrize("data, records", [
    (b"a,b\nc,d\n", [(b"a,b", 0), (b"c,d", 1)]),
    (b"a,b\nc,d", [(b"a,b", 0), (b"c,d", 1)]),  # no newline at the end of the last block
    (b'1,"x\ny",z\n2,w\n', [(b'1,"x\ny",z', 0), (b"2,w", 2)]),  # a newline inside quotes; lines still counted
    (b'1,"say ""hi""\nthere"\n2\n', [(b'1,"say ""hi""\nthere"', 0), (b"2", 2)]),  # doubled quotes stay inside
    (b"a\n\n  \n\t\nb\n", [(b"a", 0), (b"b", 4)]),  # blank and whitespace-only lines dropped, as pandas does
    (b"a\r\nb\r\n", [(b"a\r", 0), (b"b\r", 1)]),  # only \n ends a record; the parser removes the \r
    (b'1,"open\n2,3\n', [(b'1,"open\n2,3\n', 0)]),  # a quote never closed: the rest, its newlines quoted, is one
                                                  # record (the parser reports it as a bad row)
    (b"", []),
    (b"\n\n", []),
    (b"x", [(b"x", 0)]),
])
def test_split_records(data, records):
    assert _records(data) == records


def test_split_records_agrees_with_a_character_by_character_reading():
    rng = random.Random(3)
    for _ in range(300):
        data = bytes(rng.choice(b'ab, "\n\n\r') for _ in range(rng.randint(0, 80)))
        expected, start, quoted = [], 0, False
        for i, byte in enumerate(data + b"\n"):
            if byte == 34:
                quoted = not quoted
            elif byte == 10 and (not quoted or i == len(data)):
                if data[start:i].strip():
                    expected.append((data[start:i], data.count(b"\n", 0, start)))
                start = i + 1
        assert _records(data) == expected, data
