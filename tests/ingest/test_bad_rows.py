"""Bad rows: a one-line error naming file, line and column by default; with skip, exact accounting and a
rejects file listing every skipped row with its file and line."""

from __future__ import annotations

import csv

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
