"""Type inference (ingest.infer): the documented rules per column, missing values, the sample bound, and an
explicit --dtype that wins over (and skips) inference."""

from __future__ import annotations

import pandas as pd
import pytest

from ingest.infer import infer_kind, infer_kinds
from ingest.sources import resolve_sources
from store import SchemaError


@pytest.mark.parametrize("values, kind", [
    (["1", "-2", "0", "+7"], "int"),
    (["0", "1"], "int"),  # a 0/1 column is an integer column, not bool
    (["9223372036854775807", "-9223372036854775808"], "int"),  # the int64 limits
    (["9223372036854775808"], "float"),  # one past int64
    (["9" * 30], "float"),
    (["1.0", "2"], "float"),
    (["1e3", "-2.5E-2", ".5"], "float"),
    (["inf", "-inf", "1"], "float"),
    (["true", "False", "TRUE", "false"], "bool"),
    (["true", "1"], "category"),  # neither all numbers nor all true/false
    (["yes", "no"], "category"),
    (["2024-01-02", "2024-01-03T03:04:05", "2024-01-04 05:06:07.123", "2024-01-05T00:00Z",
      "2024-01-06T00:00+09:00", "2024-01-07T00:00:00-0500"], "datetime"),
    (["2024/01/02"], "category"),
    (["2024-01-02", "tomorrow"], "category"),
    (["red", "green", "3"], "category"),
    ([None, None], "float"),  # no value in the sample
    (["1", None, "3"], "int"),  # missing values do not count
])
def test_infer_kind_rules(values, kind):
    assert infer_kind(pd.Series(values, dtype=object)) == kind


def _source(tmp_path, text: str):
    path = tmp_path / "in.csv"
    path.write_text(text)
    files, header = resolve_sources([str(path)], [], "utf-8")
    return files[0], header


def test_infer_kinds_reads_the_file_with_pandas_missing_values(tmp_path):
    src, header = _source(tmp_path, "i,f,b,d,c,empty,na\n"
                                    "1,0.5,true,2024-01-01,a,,NA\n"
                                    ",NaN,,,,,\n"
                                    "NA,1,False,2024-02-01T10:00,b,,null\n")
    kinds = infer_kinds(src, header, encoding="utf-8", sample_rows=100, explicit={})
    assert kinds == {"i": "int", "f": "float", "b": "bool", "d": "datetime", "c": "category", "empty": "float",
                     "na": "float"}
    assert list(kinds) == header  # in header order


def test_only_the_sample_rows_decide(tmp_path):
    """A value after the sample that does not fit is a bad row of the parse pass, not a change of kind."""
    rows = "".join(f"{i}\n" for i in range(50))
    src, header = _source(tmp_path, "n\n" + rows + "abc\n")
    assert infer_kinds(src, header, encoding="utf-8", sample_rows=50, explicit={}) == {"n": "int"}
    assert infer_kinds(src, header, encoding="utf-8", sample_rows=51, explicit={}) == {"n": "category"}


def test_an_explicit_dtype_wins_and_skips_inference(tmp_path, monkeypatch):
    src, header = _source(tmp_path, "id,score\n1,0.5\n2,abc\n")
    kinds = infer_kinds(src, header, encoding="utf-8", sample_rows=100, explicit={"id": "category"})
    assert kinds == {"id": "category", "score": "category"}
    import ingest.infer
    monkeypatch.setattr(ingest.infer, "_read_sample", lambda *a: pytest.fail("the sample was read"))
    every = {"score": "float", "id": "int"}
    assert infer_kinds(src, header, encoding="utf-8", sample_rows=100, explicit=every) == {"id": "int",
                                                                                          "score": "float"}


def test_an_explicit_dtype_for_an_unknown_column_is_refused(tmp_path):
    src, header = _source(tmp_path, "id,score\n1,0.5\n")
    with pytest.raises(SchemaError, match=r"--dtype/--schema name unknown columns \['nope'\]; the header has: id, "
                                          "score"):
        infer_kinds(src, header, encoding="utf-8", sample_rows=100, explicit={"nope": "int"})
