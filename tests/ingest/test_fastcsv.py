"""The compiled parser (ingest/_fastcsv.c) against the pandas path it stands in for: where it takes a block, every
value is pandas' own, bit for bit; where it cannot be sure, it gives the block back; without it, the same store."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ingest.parse
from ingest import IngestConfig, ingest as run_ingest
from ingest.parse import BlockParser, _Reject
from tests.helpers import tree, without_timings

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

needs_compiled = pytest.mark.skipif(ingest.parse._fastcsv is None, reason="ingest/_fastcsv.c was not built here")
SETTINGS = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "30")) * 10, deadline=None,
                    derandomize=os.environ.get("CI") == "true", database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

KINDS = {"x": "float", "n": "int", "c": "category", "y": "float"}
# Fields the compiled path converts, and fields it must leave to pandas or refuse: each kind's strings are tried in
# every column, so a float column also meets ints' and texts' strings.
FLOATS = ["1.5", "-0", "0", "-0.0", "1e5", "1E-22", "1e22", "1e23", "1e-23", "2.5e+3", "1.", ".5", "-.5", "5e",
          "0.1", "123456789012345", "1234567890123456", "0.12345678901234567", "9007199254740993", "3.4e38",
          "3.5e38", "1e999", "-1e999", "4.9e-324", "1e-400", "nan", "NaN", "-nan", "inf", "-inf", "Infinity",
          "+1.5", " 1.5", "1.5 ", "1_0", "0x10", "1.5.5", "--1", "e5", ".", "-", "1e+", "0001.2500", "1e0005"]
INTS = ["0", "-0", "7", "-7", "007", "123456789012345678", "-123456789012345678", "1234567890123456789",
        "9223372036854775807", "-9223372036854775808", "9223372036854775808", "+3", " 3", "3 ", "1.0", "1e3"]
TEXTS = ["", "a", "b", "a b", " a", "é", "騎士", "NA", "N/A", "null", "None", "nan", "#N/A N/A", "<NA>",
         '"q"', '"a,b"', '"a""b"', '""', '"NA"', '"x\ny"', '"x\r\ny"', 'a"b', "a\rb", "a\x00b", '"a"b']
FIELDS = st.sampled_from(FLOATS + INTS + TEXTS)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=5)


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


# Per kind: mostly random values of the kind, sometimes (1 in 8) any listed field: a block of many rows is then
# often one the compiled path takes, and often one it must give back.
VALUES = {
    "float": st.one_of(st.floats(width=64).map(repr), st.floats(width=32).map(str),
                       st.integers(-10**20, 10**20).map(str),
                       st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str), st.just("")),
    "int": st.one_of(st.integers(-2**63 + 1, 2**63 - 1).map(str), st.integers(-1000, 1000).map(str), st.just("")),
    "category": _TEXT.map(_quoted),
}


@st.composite
def blocks(draw):
    """Rows of the layout x, n, c, y (now and then a row of another length), as CSV text."""
    def field(kind):
        return draw(FIELDS if draw(st.integers(0, 7)) == 0 else VALUES[kind])

    rows = []
    for _ in range(draw(st.integers(0, 8))):
        row = [field(KINDS[h]) for h in "xncy"]
        if draw(st.integers(0, 19)) == 0:
            row = row[:3] if draw(st.booleans()) else row + [field("float")]
        rows.append(row)
    return rows


def _parser(header=("x", "n", "c", "y"), encoding="utf-8", sep=","):
    return BlockParser(list(header), {h: KINDS.get(h, "float") for h in header}, encoding, sep)


def _canonical(parsed):
    """Floats as bits, ints, and category values (codes are local to a block: the pandas path sorts them)."""
    cats = [np.array(list(v) + [None], dtype=object)[c] for v, c in zip(parsed.vocab, parsed.codes.T)]
    return parsed.floats.view(np.uint32).tolist(), parsed.ints.tolist(), [list(c) for c in cats]


def _pandas(parser, data):
    try:
        return parser._parse(data)
    except _Reject:
        return None


@needs_compiled
@SETTINGS
@given(rows=blocks(), crlf=st.booleans(), trailing_newline=st.booleans())
def test_taken_blocks_hold_pandas_values_bit_for_bit(rows, crlf, trailing_newline):
    parser = _parser()
    end = "\r\n" if crlf else "\n"
    data = (end.join(",".join(r) for r in rows) + (end if trailing_newline and rows else "")).encode("utf-8")
    fast = parser._fast_parse(data)
    if fast is None:
        return  # given back: the pandas path parses it (and finds its bad rows)
    assert fast.compiled
    expected = _pandas(parser, data)
    assert expected is not None, f"compiled path took a block pandas rejects: {data!r}"
    assert _canonical(fast) == _canonical(expected), data


@needs_compiled
@pytest.mark.parametrize("text", [
    "1.5,2,a,0.1\n-0,,,\n1e22,7,騎士,1E-22\n",
    '1,2,"a,b",3\n4,5,"x\ny",6\n7,8,"q""q",9\n',  # a quoted newline: fewer records than lines
    "0.12345678901234567,1,a,nan\n1e23,2,b,-inf\n",  # fields left to pandas' own conversion
    "1,2,NA,3\r\n4,5,,6\r\n",
    "1,2,a,3",  # no newline at the end
])
def test_examples_are_taken_and_equal_pandas(text):
    parser = _parser()
    data = text.encode("utf-8")
    fast = parser._fast_parse(data)
    assert fast is not None and fast.compiled
    assert _canonical(fast) == _canonical(parser._parse(data))
    assert fast.floats.T.flags.c_contiguous and fast.codes.T.flags.c_contiguous


@needs_compiled
@pytest.mark.parametrize("text", [
    "1,2,a\n",  # a field short
    "1,2,a,3,4\n",  # a field too many
    "1,2,a,3\n\n4,5,b,6\n",  # a blank line (pandas skips it)
    "1,2,a\rb,3\n",  # a lone carriage return ends a record for pandas
    '1,2,a"b,3\n',  # a quote inside an unquoted field
    '1,2,"a"b,3\n',  # text after a closing quote
    '1,2,"open,3\n',  # a quote never closed
    '"1",2,a,3\n',  # a quoted number
    "1,2.5,a,3\n",  # an int field that is not an integer
    "1,9223372036854775808,a,3\n",  # beyond int64
    "1,-9223372036854775808,a,3\n",  # int64's minimum: the missing value's code
    "1,2,\xff,3\n",  # not UTF-8
    "abc,2,a,3\n",  # a float field pandas refuses
    "1,2,a\x00b,3\n",
    "1,2,a,3\n\ufeff1.5,2,a,3\n",  # a byte-order mark inside the data: pandas would strip it in the hand-off
    "1.5,2,a,\ufeff3\n",
    "1,2,a,  NA\n",  # leading blanks in a field left to pandas ...
    "1,2,a,3\n  4,5,b,6\n",  # ... or at a record's start: pandas loses them at the edges of its reading chunks
])
def test_doubtful_blocks_are_given_back(text):
    data = text.encode("utf-8", errors="surrogateescape") if "\xff" not in text else b"1,2,\xff,3\n"
    assert _parser()._fast_parse(data) is None


@needs_compiled
def test_direct_calls_are_checked():
    """The extension's own argument checks: no buffer overrun through a capacity whose byte size overflows, no
    misaligned stores."""
    from ingest import _fastcsv
    empty = (np.empty(0, np.float32), np.empty(0, np.int64), np.empty(0, np.int32))
    with pytest.raises(ValueError, match="smaller"):
        _fastcsv.parse(b"1,2\n", "ff", 44, [], *empty, 2**61)
    floats = memoryview(bytearray(4 * 3 + 1))[1:]
    with pytest.raises(ValueError, match="aligned"):
        _fastcsv.parse(b"1,2\n", "ff", 44, [], floats, *empty[1:], 1)
    assert _fastcsv.parse(b"", "ff", 44, [], *empty, 0) == (0, b"", b"", [])


def test_layouts_it_cannot_take_go_to_pandas(monkeypatch):
    assert BlockParser(["a"], {"a": "float"}, "utf-8")._fast_kinds is None  # a blank line is a record there
    assert BlockParser(["a", "b"], {"a": "float", "b": "bool"}, "utf-8")._fast_kinds is None
    assert BlockParser(["a", "b"], {"a": "float", "b": "datetime"}, "utf-8")._fast_kinds is None
    assert BlockParser(["a", "b"], {"a": "float", "b": "int"}, "cp932")._fast_kinds is None
    assert BlockParser(["a", "b"], {"a": "float", "b": "int"}, "utf-8", ";")._fast_kinds is None
    monkeypatch.setattr(ingest.parse, "_fastcsv", None)
    parsed = _parser().parse(b"1,2,a,3\n", first_line=2)
    assert not parsed.compiled and parsed.rows == 1


@needs_compiled
def test_bad_rows_are_found_the_same_way():
    """A block the compiled path gives back still yields its good rows and each bad row's line and reason."""
    data = b"1,2,a,3\n4,x,b,6\n7,8,c\n9,10,d,11\n"
    parsed = _parser().parse(data, first_line=2)
    assert not parsed.compiled and parsed.rows == 2
    assert [(b.line, b.column) for b in parsed.bad] == [(3, "n"), (4, None)]


def test_compiled_path_is_built_in_ci():
    """The extension is optional at install (a machine without a C compiler still installs, and parses with
    pandas); CI's machine has one, so a broken build fails here instead of silently making ingest slower."""
    if os.environ.get("CI") != "true":
        pytest.skip("CI only")
    assert ingest.parse._fastcsv is not None


@needs_compiled
@pytest.mark.parametrize("workers", [1, 2])
def test_store_is_the_same_without_the_compiled_path(tmp_path, quest_csv, small_blocks, monkeypatch, workers):
    """The quest log (floats, ints, quoted categories with commas, missing values) makes the same store either
    way, byte for byte, and the compiled path took its blocks."""
    def make(name):
        out = tmp_path / name
        result = run_ingest(IngestConfig(sources=[quest_csv], out=str(out), label="clear", val_fraction=0.2,
                                         workers=workers))
        files = tree(out)
        files["zarr.json"] = without_timings(files["zarr.json"])
        return result, files

    compiled, fast_files = make("compiled.zarr")
    assert compiled.blocks > 1 and compiled.compiled_blocks == compiled.blocks
    monkeypatch.setattr(ingest.parse, "_fastcsv", None)
    plain, plain_files = make("pandas.zarr")
    assert plain.compiled_blocks == 0
    assert fast_files == plain_files
