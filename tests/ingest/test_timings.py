"""Where the time goes (issue 12 §1): every stage timed, worker CPU added once, recorded in the store, --verbose."""

from __future__ import annotations

import os
import re
import time

import pytest

import ingest.parse
import ingest.passes
from ingest.cli import main
from ingest.timings import STAGES, Timed, Timings
from store import open_store

_REAL_PARSE_BLOCK = ingest.passes.parse_block
BURN = 0.05  # CPU seconds each parsed block burns on top of its parse, wherever it runs


def _burning_parse_block(block):
    """parse_block plus BURN seconds of CPU (module level: pool workers find it by name)."""
    until = time.process_time() + BURN
    while time.process_time() < until:
        pass
    return _REAL_PARSE_BLOCK(block)


def test_every_stage_is_timed_and_recorded_in_the_store(quest_csv, make_store, small_blocks):
    path, result = make_store([quest_csv], val_fraction=0.1, workers=2)
    assert list(result.timings) == list(STAGES)
    for stage, t in result.timings.items():
        assert set(t) == {"wall", "cpu"} and t["wall"] >= 0 and t["cpu"] >= 0, stage
    assert sum(t["wall"] for t in result.timings.values()) <= result.seconds + 0.01
    recorded = open_store(path).attrs["ingest"]["timings"]
    assert recorded == {s: t for s, t in result.timings.items() if s != "publish"}  # written before publishing


@pytest.mark.parametrize("workers", [1, 2])
def test_the_cpu_of_every_worker_is_counted_once(quest_csv, make_store, small_blocks, monkeypatch, workers):
    monkeypatch.setattr(ingest.passes, "parse_block", _burning_parse_block)
    _, result = make_store([quest_csv], workers=workers)
    blocks = -(-os.path.getsize(quest_csv) // (64 * 1024))  # small_blocks: 64 KiB blocks
    parse = result.timings["parse"]
    assert parse["cpu"] >= blocks * BURN * 0.95  # the workers' CPU, not only the parent's
    if workers == 1:  # items run in this process: its own CPU time holds them already, never added twice
        assert parse["cpu"] <= parse["wall"] * 1.2 + 0.05


def test_timed_results_add_only_other_processes_cpu():
    timings = Timings()
    timings.begin("parse")
    assert list(timings.results([("a", 2.0, os.getpid() + 1), ("b", 5.0, os.getpid())])) == ["a", "b"]
    timings.end()
    assert 2.0 <= timings.record()["parse"]["cpu"] < 2.5
    assert Timed(ingest.passes.write_shard).__name__ == "write_shard"  # Dask's error messages name the pass


def test_verbose_prints_the_stages_and_quiet_excludes_it(quest_csv, tmp_path, capsys):
    out = str(tmp_path / "s.zarr")
    assert main([quest_csv, "--out", out, "--label", "clear", "--workers", "1", "--verbose"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("ingested 3,000 rows") and re.fullmatch(r"\s+stage\s+wall s\s+CPU s\s+CPU/wall", err[1])
    assert [line.split()[0] for line in err[2:-1]] == [*STAGES, "total"]
    assert all(re.fullmatch(r"\s+\w+( +\d+\.\d\d){3}", line) for line in err[2:-1])
    compiled = "1" if ingest.parse._fastcsv is not None else "0"
    assert err[-1] == (f"parser: compiled (ingest/_fastcsv.c) for {compiled} of 1 blocks, pandas for the rest; 0 "
                       "parsed twice (the quote parity guessed at their start was wrong)")
    assert main([quest_csv, "--out", out, "--overwrite", "--workers", "1"]) == 0
    assert len(capsys.readouterr().err.splitlines()) == 1  # without --verbose: the one summary line
    with pytest.raises(SystemExit):
        main([quest_csv, "--out", out, "--quiet", "--verbose"])
    assert "not allowed with argument" in capsys.readouterr().err
