"""Type inference (ingest.infer): the documented rules per column, missing values, the sample bound, and an
explicit --dtype that wins over (and skips) inference."""

from __future__ import annotations

import io
import random
import warnings

import pandas as pd
import pytest

from ingest.infer import infer_kind, infer_kinds
from ingest.sources import open_source, resolve_sources
from store import SchemaError, SourceError, StoreError


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


# -- equivalence with the rules applied to text --------------------------------------------------------------------
# The oracle below is the implementation that reads every column of the sample as text and applies the rules with
# pd.to_numeric, kept verbatim: random files of hostile columns must get the same kinds (or the same error) from
# ingest.infer, whatever shortcuts it takes (pandas' own conversion, a guess of the text columns, a second parse).

def _old_infer_kinds(src, header, *, encoding, sample_rows, explicit):
    todo = [c for c in header if c not in explicit]
    kinds = dict(explicit)
    if todo:
        data, want = b"", 1 << 20
        with open_source(src.path, src.size) as f:
            while True:
                f.seek(src.data_start)
                data = f.read(want)
                if data.count(b"\n") > sample_rows or len(data) < want or want >= 64 * 2**20:
                    break
                want *= 4
        if len(data) < src.size - src.data_start and b"\n" in data:
            data = data[: data.rfind(b"\n") + 1]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pd.errors.ParserWarning)
                sample = pd.read_csv(io.BytesIO(data), header=None, names=header, index_col=False, dtype=str,
                                     nrows=sample_rows, encoding=encoding, encoding_errors="replace",
                                     on_bad_lines="skip", engine="c")
        except (pd.errors.ParserError, ValueError) as exc:
            raise SourceError(f"{src.path}: cannot read a sample to infer column types ({exc}); give the types with "
                              "--dtype or --schema", path=src.path) from None
        for name in todo:
            kinds[name] = _old_infer_kind(sample[name])
    return {name: kinds[name] for name in header}


def _old_infer_kind(values):
    present = values.dropna().astype(str)
    if present.empty:
        return "float"
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all():
        return "int" if numbers.dtype == "int64" else "float"
    if present.str.lower().isin({"true", "false"}).all():
        return "bool"
    if present.str.match(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$").all():
        return "datetime"
    return "category"


_POOLS = {
    "int": ["0", "1", "-2", "+7", "00012", "-0", "+0", " 3", "4 ", "\t5", "6\t", " 7 ", "42", "-123456",
            "9007199254740993", "-9007199254740993", "9223372036854775807", "-9223372036854775808"],
    "bigint": ["9223372036854775808", "-9223372036854775809", "18446744073709551615", "18446744073709551616",
               "9" * 30, "9" * 400],
    "float": ["1.0", "2.", ".5", "-.5", "+.5", "1e3", "1E5", "-2.5E-2", "0.0", "0e0", "1.e3", "3.25", " 1.5",
              "1.5 ", "9007199254740993.0", "1e400", "-1e400", "1e-400", "4.9e-324", "1.7976931348623157e308"],
    "inf": ["inf", "-inf", "+inf", "Inf", "INF", "infinity", "-Infinity", "INFINITY"],
    "missing": ["", "NA", "NaN", "nan", "-nan", "-NaN", "null", "NULL", "None", "n/a", "#N/A", "<NA>", "N/A"],
    "bool": ["true", "false", "True", "False", "TRUE", "FALSE", "tRUE", "fAlSe"],
    "almost": [" true", "false ", "yes", "no", "t", "1", "0", "NAN", "Nan", "+nan", "nAn", "infinite", "0x10",
               "0X1A", "1_000", "1,000", "１", "١", "\xa01", "1 2", " ", "  ", "-", "+", ".", "e5", "1e", "1d5",
               "1.5.5", "--1", "1-", "2024/01/02", "tomorrow"],
    "date": ["2024-01-02", "2024-01-03T03:04:05", "2024-01-04 05:06:07.123", "2024-01-05T00:00Z",
             "2024-01-06T00:00+09:00", "2024-01-07T00:00:00-0500", "1999-12-31"],
    "text": ["red", "green", "a,b", 'say "hi"', "two\nlines", "x\r\ny", "é", "火山", "\x00nul"],
}


def _column(rng, rows):
    """Cells of one random column: one to three pools, often with missing values, sometimes one odd value."""
    pools = rng.sample(sorted(_POOLS), rng.choice([1, 1, 1, 2, 2, 3]))
    if rng.random() < 0.5:
        pools.append("missing")
    cells = [rng.choice(_POOLS[rng.choice(pools)]) for _ in range(rows)]
    if rng.random() < 0.3:  # mostly one kind, one stray value somewhere
        cells[rng.randrange(rows)] = rng.choice(_POOLS[rng.choice(sorted(_POOLS))])
    if rng.random() < 0.1:
        cells = [c for c in cells if c not in _POOLS["missing"]] or cells
        cells += [""] * (rows - len(cells))
    return cells


def _field(rng, cell: str) -> str:
    if any(ch in cell for ch in ',"\n\r') or rng.random() < 0.1:
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _random_csv(rng) -> tuple[bytes, int]:
    """A random file and the sample size to infer it with."""
    ncols, rows = rng.randint(1, 12), rng.randint(1, 60)
    columns = [_column(rng, rows) for _ in range(ncols)]
    eol = rng.choice(["\n", "\r\n"])
    lines = [",".join(f"c{i}" for i in range(ncols))]
    for r in range(rows):
        fields = [_field(rng, col[r]) for col in columns]
        odd = rng.random()
        if odd < 0.04:
            fields.append("extra")  # too many fields: a bad row the sample skips
        elif odd < 0.08 and ncols > 1:
            fields = fields[:-1]  # too few: missing values
        lines.append(",".join(fields))
    data = (eol.join(lines) + eol).encode()
    if rng.random() < 0.1:  # invalid UTF-8 (replaced)
        at = rng.randrange(len(lines[0]) + 1, len(data))
        data = data[:at] + b"\xff" + data[at:]
    if rng.random() < 0.05:  # a quote opening a row's first field, likely never closed: an error
        at = rng.choice([i + 1 for i in range(len(lines[0]), len(data) - 1) if data[i] == ord("\n")])
        data = data[:at] + b'"' + data[at:]
    return data, rng.choice([rows, rows, max(1, rows // 2), rows + 10])


def _outcome(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except StoreError as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("guess_rows", [1, 5, 200])  # 200: the guess is the whole sample, never a second parse
@pytest.mark.parametrize("seed", range(30))
def test_infer_kinds_equals_the_rules_on_text(tmp_path, monkeypatch, seed, guess_rows):
    import ingest.infer
    monkeypatch.setattr(ingest.infer, "_GUESS_ROWS", guess_rows)
    rng = random.Random(seed)
    for case in range(10):
        data, sample_rows = _random_csv(rng)
        path = tmp_path / f"{case}.csv"
        path.write_bytes(data)
        encoding = rng.choice(["utf-8", "utf-8", "latin-1"])
        files, header = resolve_sources([str(path)], [], encoding)
        explicit = {name: "category" for name in header if rng.random() < 0.1}
        args = (files[0], header)
        kwargs = dict(encoding=encoding, sample_rows=sample_rows, explicit=explicit)
        assert _outcome(infer_kinds, *args, **kwargs) == _outcome(_old_infer_kinds, *args, **kwargs), data


@pytest.mark.parametrize("seed", range(20))
def test_infer_kind_equals_the_rules_on_text(seed):
    """The public one-column function with its shortcuts (the first value first) against the oracle."""
    rng = random.Random(seed)
    for _ in range(50):
        cells = _column(rng, rng.randint(1, 30))
        values = pd.Series([None if c in _POOLS["missing"] else c for c in cells], dtype=object)
        assert infer_kind(values) == _old_infer_kind(values), cells


def test_big_integers_with_missing_values_stay_int(tmp_path):
    """A float64 parse would round 2**53 + 1 and cannot tell 1 from 1.0: such columns are decided on their text."""
    src, header = _source(tmp_path, "big,whole,huge,neg\n9007199254740993,1.0,9223372036854775808,-1\n"
                                    ",2,,9223372036854775808\n9007199254740995,,1,\n")
    kinds = infer_kinds(src, header, encoding="utf-8", sample_rows=100, explicit={})
    assert kinds == {"big": "int", "whole": "float", "huge": "float", "neg": "float"}


@pytest.mark.parametrize("rows, sample_rows", [("1\n\"2\n3\n", 1), ("1\n\"2\n3\n", 5), ("1\n2\n\"", 2),
                                               ("1\n2\n\"", 10)])
def test_an_unreadable_sample_is_the_same_error(tmp_path, rows, sample_rows):
    """A quote that never closes within the sample stops inference with the message it always had."""
    src, header = _source(tmp_path, "n\n" + rows)
    kwargs = dict(encoding="utf-8", sample_rows=sample_rows, explicit={})
    assert _outcome(infer_kinds, src, header, **kwargs) == _outcome(_old_infer_kinds, src, header, **kwargs)
    if sample_rows > 2:
        with pytest.raises(SourceError, match="cannot read a sample to infer column types .*EOF inside string"):
            infer_kinds(src, header, **kwargs)


def test_a_second_parse_skips_the_same_rows(tmp_path, monkeypatch):
    """A guess from the first row misses the missing value of ``n``, so ``n`` is parsed again as text: with the
    same rows (the row with too many fields stays skipped, as ``usecols`` would not)."""
    import ingest.infer
    monkeypatch.setattr(ingest.infer, "_GUESS_ROWS", 1)
    src, header = _source(tmp_path, "n,s\n1,a\n,b\n1.5,c,extra\n")
    assert infer_kinds(src, header, encoding="utf-8", sample_rows=100, explicit={}) == {"n": "int", "s": "category"}


@pytest.mark.parametrize("sample_rows", [12_000, 20_000])
def test_a_long_sample_equals_the_rules_on_text(tmp_path, sample_rows):
    """Rows past the guess and past the text parse's first chunk (16,384 rows at this width) change the kinds of
    some columns: a missing value, a fraction, a word, a big integer; bad rows are sprinkled throughout."""
    rng = random.Random(7)
    rows, late = 20_000, [16_500, 17_000, 19_990]
    base = {"int": lambda i: str(i - 5_000), "whole": lambda i: f"{i % 97}.0", "float": lambda i: f"{i / 8}",
            "bool": lambda i: rng.choice(["true", "False", ""]), "date": lambda i: f"2024-01-{1 + i % 28:02d}",
            "text": lambda i: rng.choice(["red", "green", "a,b"]), "big": lambda i: str(2**53 + i)}
    changes = [None, "", "2.5", "abc", "9223372036854775808", "1e3"]
    columns = [(kind, change, rng.choice(late)) for kind in base for change in changes]
    lines = [",".join(f"c{i}" for i in range(len(columns)))]
    for r in range(rows):
        fields = [change if change is not None and r == at else base[kind](r) for kind, change, at in columns]
        fields = [f'"{v}"' if "," in v else v for v in fields]
        lines.append(",".join(fields + ["extra"] * (r % 997 == 0)))  # a bad row now and then
    src, header = _source(tmp_path, "\n".join(lines) + "\n")
    kwargs = dict(encoding="utf-8", sample_rows=sample_rows, explicit={})
    kinds = infer_kinds(src, header, **kwargs)
    assert kinds == _old_infer_kinds(src, header, **kwargs)
    assert len(set(kinds.values())) == 5  # every kind is there
