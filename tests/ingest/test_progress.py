"""Progress bars: one tqdm bar per pass on a terminal, nothing otherwise or when switched off."""

from __future__ import annotations

import io
import re
import sys

import pytest

from ingest.cli import main
from ingest.progress import pass_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def stderr(monkeypatch):
    """``stderr(tty)`` -> a StringIO installed as sys.stderr, a terminal or not."""
    def install(tty: bool):
        stream = _Terminal() if tty else io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        return stream
    return install


def test_one_bar_per_pass_on_a_terminal(quest_csv, tmp_path, stderr, small_blocks):
    err = stderr(tty=True)
    assert main([quest_csv, "--out", str(tmp_path / "s.zarr"), "--label", "clear", "--workers", "2"]) == 0
    text = err.getvalue()
    finals = [line.rsplit("\r", 1)[-1] for line in text.split("\n") if "pass " in line or "plan " in line]
    assert [re.match(r"(pass \d/2 )?\w+", line)[0] for line in finals] == [
        "pass 1/2 parse", "pass 2/2 write"]  # planning runs alongside the parse
    assert all("100%" in line for line in finals) and all("3,000 rows" in line for line in finals), finals
    assert re.search(r"\d+(\.\d+)?[kMG]?B/s", finals[0])
    assert re.search(r" shards/s", finals[1])
    assert text.rstrip().splitlines()[-1].startswith("ingested 3,000 rows")


@pytest.mark.parametrize("tty, flags", [(False, []), (True, ["--quiet"])])
def test_no_bar_off_a_terminal_or_with_quiet(quest_csv, tmp_path, stderr, tty, flags):
    err = stderr(tty)
    assert main([quest_csv, "--out", str(tmp_path / "s.zarr"), "--workers", "1", *flags]) == 0
    assert "pass " not in err.getvalue() and "plan " not in err.getvalue() and "%" not in err.getvalue()


def test_no_bar_when_the_config_says_so(quest_csv, make_store, stderr):
    err = stderr(tty=True)
    make_store([quest_csv], progress=False)
    assert err.getvalue() == ""


def test_work_done_before_a_resume_counts_in_the_total_not_the_rate(stderr):
    err = stderr(tty=True)
    with pass_bar("pass 2/2 write", 10, "shards", done=4) as bar:
        bar.update(1)
    assert "5/10" in err.getvalue().rsplit("\r", 1)[-1]
