"""The profile of one worker's parse of a block runs, and its steps add up to the whole."""

from __future__ import annotations

import re

import pandas as pd

from ingest import parse
from tools import profile_parse
from tools.synth import write_csv


def test_profile_of_one_block_adds_up_and_restores_what_it_wrapped(tmp_path, capsys):
    csv = write_csv(tmp_path / "q.csv", 2000, seed=3)
    wrapped = (pd.read_csv, parse.BlockParser.parse, parse.BlockParser._arrays, profile_parse.passes.parse_block)
    assert profile_parse.main([str(csv), "--repeat", "1", "--cprofile", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "block 0 of" in out and "2,000 rows" in out  # block 1 -> the last one
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| step")]
    steps = {r.split("|")[1].strip(): r for r in rows}
    assert "pandas.read_csv (C engine, typed)" in steps and "spill file (write_spill)" in steps
    ms = [float(r.split("|")[2].replace(",", "").strip("* ")) for r in rows]
    # the steps and the two "rest" rows make the total, up to the rounding of each row to 0.1 ms
    assert abs(sum(ms[:-1]) - ms[-1]) <= 0.01 * ms[-1] + 0.05 * len(ms)
    assert re.search(r"one worker parses [\d,]+ MB/s", out) and "Ordered by: cumulative time" in out
    assert (pd.read_csv, parse.BlockParser.parse, parse.BlockParser._arrays,
            profile_parse.passes.parse_block) == wrapped
