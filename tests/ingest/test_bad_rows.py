"""Bad rows: a one-line error naming file, line and column by default; with skip, exact accounting and a
rejects file listing every skipped row with its file and line."""

from __future__ import annotations

import csv
import os

import pandas as pd
import pytest

from store import BadRowError, open_store

GOOD = "id,name,score\n" + "".join(f"{i},n{i % 3},{i / 4}\n" for i in range(1, 200))


def _csv(tmp_path, text: str | bytes, name="in.csv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


CASES = {
    # name: (bad line text, line number in file, column, words in the reason)
    "too many fields": ("55,n1,1.5,extra", None, "expected 3 fields, found 4"),
    "too few fields": ("55,n1", None, "expected 3 fields, found 2"),
    "not a number": ("55,n1,abc", "score", "expected float, found 'abc'"),
    "not an integer": ("5.5,n1,1.5", "id", "expected int, found '5.5'"),
    "unbalanced quote": ('55,"n1,1.5', None, "unbalanced quotes"),
    "bare carriage return": ("55,n\r1,1.5", None, "a carriage return (\\r) outside quotes splits the record"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("where", [2, 100, 200])  # first data row, middle, last
def test_first_bad_row_stops_with_file_line_column(tmp_path, make_store, case, where):
    lines = GOOD.splitlines()
    bad, column, reason = CASES[case]
    lines.insert(where - 1, bad)
    path = _csv(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(BadRowError) as info:
        make_store(path, dtypes={"id": "int", "name": "category", "score": "float"})
    message = str(info.value)
    assert message.startswith(f"{path}:{where}")
    assert reason in message and "\n" not in message
    if column:
        assert f"column {column!r}" in message


def test_undecodable_bytes_name_the_column(tmp_path, make_store):
    path = _csv(tmp_path, GOOD.encode() + b"7,caf\xe9,1.0\n")
    with pytest.raises(BadRowError, match=r":201: column 'name': bytes that are not valid utf-8"):
        make_store(path)
    out, result = make_store(path, encoding="latin-1", shuffle=False)
    assert open_store(out).read_frame("train")["name"].iloc[-1] == "café" and result.rows_rejected == 0


def test_skip_counts_and_records_every_bad_row(tmp_path, make_store, small_blocks):
    lines = GOOD.splitlines()
    bad_rows = {5: "1,2,3,4", 50: "x,n1,1.0", 120: "9,n2", 199: "1,n1,zz"}
    for line in sorted(bad_rows):
        lines.insert(line - 1, bad_rows[line])
    path = _csv(tmp_path, "\n".join(lines) + "\n")
    rejects = str(tmp_path / "rejects.csv")
    out, result = make_store(path, on_bad_rows="skip", rejects=rejects, workers=2, sample_rows=3)
    assert result.rows_read == 199 + 4 and result.rows_rejected == 4 and result.rows == {"train": 199}
    with open(rejects, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["line"]) for r in rows] == sorted(bad_rows)
    assert all(r["file"] == path for r in rows)
    assert [r["record"] for r in rows] == [bad_rows[k] for k in sorted(bad_rows)]
    store = open_store(out)
    ingest_info = store.attrs["ingest"]
    assert (ingest_info["rows_read"], ingest_info["rows_stored"], ingest_info["rows_rejected"]) == (203, 199, 4)
    kept = store.read_frame("train").sort_values("id")
    assert kept["id"].tolist() == list(range(1, 200))


def test_bad_row_in_a_quoted_multiline_file_reports_the_record_start(tmp_path, make_store):
    text = 'id,name,score\n1,"a\nb",1.0\n2,"c\nd",oops\n3,e,2.0\n'
    path = _csv(tmp_path, text)
    with pytest.raises(BadRowError, match=r":4: column 'score'"):
        make_store(path, sample_rows=1)


def test_short_row_after_good_ones_is_not_padded(tmp_path, make_store):
    """pandas pads a short row with NaN; the ingest must not accept it silently."""
    path = _csv(tmp_path, "a,b,c\n1,2,3\n4,5\n6,7,8\n")
    with pytest.raises(BadRowError, match=r":3: expected 3 fields, found 2"):
        make_store(path)


def test_dtype_override_accepts_what_inference_rejected(tmp_path, make_store):
    path = _csv(tmp_path, GOOD + "abc,n1,1.0\n")
    with pytest.raises(BadRowError, match=r"--dtype id=category"):
        make_store(path, sample_rows=100)
    out, _ = make_store(path, dtypes={"id": "category"})
    assert open_store(out).schema["id"].kind == "category"
    assert pd.read_csv(path, dtype={"id": str})["id"].tolist()[-1] == "abc"


def test_error_policy_diagnoses_only_the_first_bad_row(tmp_path, make_store, monkeypatch):
    """Stop at the first bad row: the 49 after it in the same block are never diagnosed (issue 11)."""
    import ingest.parse
    lines = GOOD.splitlines()
    for line in range(10, 200, 4):
        lines[line - 1] = f"{line},n1,not a number"
    path = _csv(tmp_path, "\n".join(lines) + "\n")
    calls = []
    diagnose = ingest.parse.BlockParser._diagnose
    monkeypatch.setattr(ingest.parse.BlockParser, "_diagnose",
                        lambda self, record, line: calls.append(line) or diagnose(self, record, line))
    with pytest.raises(BadRowError, match=r":10: column 'score': expected float, found 'not a number'"):
        make_store(path, dtypes={"id": "int", "name": "category", "score": "float"})
    assert calls == [9]  # a worker counts lines from its block's first record: line 2 here, the parent adds it


def test_skipped_rows_go_to_the_rejects_file_not_to_the_parent(tmp_path, make_store, small_blocks, monkeypatch):
    """What a parsing worker returns holds counts and at most one bad row without its text: the records, a 3 MB one
    included, are streamed to the rejects file in file order, each with its file and line (issue 11)."""
    import ingest.passes
    big = "9,n1," + "x" * 3_000_000
    lines = GOOD.splitlines()
    bad_rows = {line: f"{line},n1,bad{line}" for line in range(3, 200, 3)} | {100: big}
    for line, text in bad_rows.items():
        lines[line - 1] = text
    path = _csv(tmp_path, "\n".join(lines) + "\n")
    metas = []
    parse_block = ingest.passes.parse_block
    monkeypatch.setattr(ingest.passes, "parse_block", lambda block: metas.append(parse_block(block)) or metas[-1])
    rejects = str(tmp_path / "rejects.csv")
    _, result = make_store(path, on_bad_rows="skip", rejects=rejects, dtypes={"score": "float"})
    assert result.rows_rejected == len(bad_rows) and result.rows_read == 199
    assert len(metas) >= 2 and sum(m["rejected"] for m in metas) == len(bad_rows)
    # (the blocks whose shares lie inside the 3 MB record hold no record: no bad row either)
    assert all(len(m["bad"]) <= 1 and (len(m["bad"][0]) == 5 if m["bad"] else m["rejected"] == 0) for m in metas)
    assert any(m["rows_read"] == 0 for m in metas)
    assert sum(len(repr(m["bad"])) for m in metas) < 20_000  # the 3 MB record is not in there
    with open(rejects, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["line"]), r["record"]) for r in rows] == sorted(bad_rows.items())
    assert all(r["file"] == path for r in rows)


def test_a_header_over_1_mib_is_read_whole(tmp_path, make_store):
    """A header longer than the old 1 MiB read was cut short: a bogus duplicate name or a shorter schema."""
    from ingest.sources import read_header
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"col{i}" for i in range(150_001)) + "\n" + ",".join(["1"] * 150_001) + "\n")
    names, data_start, lines = read_header(str(wide), "utf-8")
    assert len(names) == 150_001 and names[-1] == "col150000" and lines == 1
    assert data_start == len(",".join(f"col{i}" for i in range(150_001))) + 1
    names = [f"{i:02d}_" + "n" * 60_000 for i in range(20)]  # 1.2 MB, 20 columns: the whole ingest
    path = _csv(tmp_path, ",".join(names) + "\n" + ",".join(str(i) for i in range(20)) + "\n", "long.csv")
    out, _ = make_store(path)
    assert list(open_store(out).schema.names) == names


def test_a_header_that_never_ends_is_refused_in_one_line(tmp_path):
    from ingest.config import MAX_RECORD_BYTES
    from ingest.sources import read_header
    from store import SourceError
    endless = tmp_path / "endless.csv"
    endless.write_bytes(b'a,"b\n' + b"1,2\n" * (MAX_RECORD_BYTES // 4 + 1000))
    try:
        with pytest.raises(SourceError) as info:
            read_header(str(endless), "utf-8")
    finally:
        endless.unlink()  # 64 MiB; pytest keeps the tmp_path of recent runs
    assert str(info.value) == (f"{endless}:1: the header does not end within 64 MiB, the most one record may span: "
                               "a quote opened on line 1 is never closed; check that this is a CSV file whose first "
                               "line names the columns")
    short = _csv(tmp_path, 'a,"b\n1,2\n3,4\n', "short.csv")
    with pytest.raises(SourceError, match=r"short.csv:1: unbalanced quotes in the header: a quote opened on line 1 "
                                          "is never closed"):
        read_header(short, "utf-8")


# -- a user error leaves nothing to resume: the corrected command just runs (issue 13) ------------------------------

def _many_rows(bad_line: int | None = None) -> str:
    """~200 KB: several parse blocks with ``small_blocks``; the row on ``bad_line`` has a score that is not a float."""
    lines = ["id,name,score"] + [f"{i},n{i % 3},{i / 4}" for i in range(1, 12_000)]
    if bad_line is not None:
        lines[bad_line - 1] = f"{bad_line},n1,abc"
    return "\n".join(lines) + "\n"


DTYPES = {"id": "int", "name": "category", "score": "float"}


def test_after_a_bad_row_the_fixed_input_ingests_without_flags(tmp_path, small_blocks):
    from ingest import IngestConfig, ingest
    from store import partial_path
    path = _csv(tmp_path, _many_rows(bad_line=9_000))
    out = str(tmp_path / "s.zarr")
    config = dict(sources=[path], out=out, workers=1, progress=False, dtypes=DTYPES)
    with pytest.raises(BadRowError, match=r":9000: column 'score': expected float, found 'abc'"):
        ingest(IngestConfig(**config))
    assert not os.path.exists(partial_path(out)) and sorted(os.listdir(tmp_path)) == ["in.csv"]
    _csv(tmp_path, _many_rows())  # the user fixes the row and runs the same command: no --resume, no --overwrite
    assert ingest(IngestConfig(**config)).rows == {"train": 11_999}


def test_an_option_error_found_after_the_work_folder_was_made_leaves_nothing(tmp_path):
    from ingest import IngestConfig, ingest
    from store import SchemaError, partial_path
    path = _csv(tmp_path, GOOD)
    out = str(tmp_path / "s.zarr")
    with pytest.raises(SchemaError, match="unknown columns"):  # found while inferring types, inside the work folder
        ingest(IngestConfig(sources=[path], out=out, workers=1, progress=False, dtypes={"nope": "int"}))
    assert not os.path.exists(partial_path(out))
    ingest(IngestConfig(sources=[path], out=out, workers=1, progress=False))


def test_a_resumed_ingest_keeps_its_work_on_a_typo_and_drops_it_on_a_bad_row(tmp_path, small_blocks, monkeypatch):
    from ingest import IngestConfig, ingest
    from store import OutputExistsError, SchemaError, partial_path
    from tests.ingest.test_resume import Crash, _crash_after
    path = _csv(tmp_path, _many_rows(bad_line=11_000))
    out = str(tmp_path / "s.zarr")
    config = dict(sources=[path], out=out, workers=1, progress=False, dtypes=DTYPES)
    with monkeypatch.context() as patch:
        _crash_after(patch, "parse_block", 1)  # a crash before the block with the bad row
        with pytest.raises(Crash):
            ingest(IngestConfig(**config))
    with pytest.raises(SchemaError, match="unknown columns"):  # a typo in the --resume command: the work stays
        ingest(IngestConfig(**config | {"dtypes": DTYPES | {"nope": "int"}}, resume=True))
    with pytest.raises(OutputExistsError, match="--resume"):
        ingest(IngestConfig(**config))
    with pytest.raises(BadRowError, match=r":11000: column 'score'"):  # the input itself must change: nothing stays
        ingest(IngestConfig(**config, resume=True))
    assert not os.path.exists(partial_path(out))
    _csv(tmp_path, _many_rows())
    assert ingest(IngestConfig(**config)).rows == {"train": 11_999}


@pytest.mark.parametrize("workers", [1, 2])
def test_every_row_rejected_gives_an_empty_store(tmp_path, make_store, workers):
    """With --on-bad-rows skip and no good row, the store has empty splits and every row is in the rejects, on one
    worker or several (the writing pass has no shard to hand out)."""
    src = tmp_path / "bad.csv"
    src.write_text("a,b\nx,1\ny,2\n")
    out, result = make_store(str(src), workers=workers, on_bad_rows="skip", dtypes={"a": "float"},
                             rejects=str(tmp_path / "rejects.csv"))
    assert result.rows_rejected == 2 and sum(result.rows.values()) == 0
    assert open_store(out).rows == {"train": 0}
