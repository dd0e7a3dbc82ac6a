"""Parse one block of CSV bytes into typed arrays, finding bad rows exactly.

Compiled path (``ingest/_fastcsv.c``, built at install; without a C compiler pandas parses every block): one scan
of the block straight into the store's column types, for layouts of float, int and category columns in UTF-8. It
converts only values whose pandas result is certain (see the C file's top), leaves every other float field to
pandas itself (converted in one ``read_csv`` of those fields) and gives up on anything else, so its values equal
what ``pandas.read_csv`` gives; a block it gives up on takes the pandas path.

Pandas path: one ``pandas.read_csv`` (C engine) over the whole block with the column types given, plus a check that
every record has exactly the header's number of fields (pandas pads short rows silently). Values therefore equal
what ``pandas.read_csv`` gives for the same file.

Slow path, only for a block that fails: split it into records and bisect — parse halves until the failing records
are isolated (a few parses per bad row), then diagnose each one (undecodable bytes, field count, the column whose
value does not fit its type).
"""

from __future__ import annotations

import codecs
import csv
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .blocks import split_records
from .quotes import count_byte

try:
    from . import _fastcsv
except ImportError:  # installed without a C compiler: every block takes the pandas path
    _fastcsv = None

__all__ = ["BlockParser", "Parsed", "BadRow", "INT_MISSING"]

INT_MISSING = np.iinfo(np.int64).min
# Category columns are read as text and factorized here: with dtype "category", pandas turns a block whose values
# all look numeric into numbers ("01" and "1" both become 1), so a value would depend on its block's neighbours.
_PANDAS_DTYPES = {"float": "float64", "int": "Int64", "bool": "boolean", "category": object, "datetime": object}
_PREFIX = {"float": b"0", "int": b"0", "bool": b"false", "category": b"", "datetime": b""}
_FAST_KINDS = {"float": "f", "int": "i", "category": "c"}
# pandas' missing-value strings (keep_default_na), which the compiled path must treat as pandas does
_MISSING = sorted(v.encode("ascii") for v in pd._libs.parsers.STR_NA_VALUES)
# Diagnosing a bad record uses the csv module, whose default field limit (128 KiB) a hostile field can exceed.
csv.field_size_limit(2**31 - 1)


class _Reject(Exception):
    """A (sub-)block that the fast path cannot take as is."""


@dataclass
class BadRow:
    line: int
    column: str | None
    reason: str
    fix: str
    raw: str


@dataclass
class Parsed:
    """Typed columns of a block: floats (float32), integer-like columns (int64, INT_MISSING = missing) and
    categorical codes local to this block (int32, -1 = missing) with their vocabularies.

    Each array is (rows, columns) and column-major (``.T`` is C-contiguous): each column is built contiguously
    from pandas' column, and per-column work (statistics, the spill order's gather) runs along contiguous memory;
    numpy's reductions over the rows of a row-major block were 3-10x slower."""

    floats: np.ndarray
    ints: np.ndarray
    codes: np.ndarray
    vocab: list[list[str]]
    bad: list[BadRow] = field(default_factory=list)
    compiled: bool = False  # parsed by the compiled path (ingest/_fastcsv.c), not by pandas

    @property
    def rows(self) -> int:
        return len(self.floats)


class BlockParser:
    """Parses blocks of one CSV layout (header, kinds, encoding)."""

    def __init__(self, header: list[str], kinds: dict[str, str], encoding: str, sep: str = ","):
        self.header, self.kinds, self.encoding = header, kinds, encoding
        self.sep = sep.encode("ascii")
        self.float_cols = [c for c in header if kinds[c] == "float"]
        self.int_cols = [c for c in header if kinds[c] in ("int", "bool", "datetime")]
        self.cat_cols = [c for c in header if kinds[c] == "category"]
        # Integer columns parse as nullable Int64 from the first block: as fast as int64 here (79 vs 80 ms for a
        # 16 MiB block), and parsing as int64 until a block showed a missing value cost every worker a second parse
        # of its first such block.
        # A first row of valid values stops pandas from taking a too-long first row as an index (it would silently
        # drop a field) and from seeing a missing value in every integer column; it is removed after parsing.
        # (A lone empty field would be a blank line, which pandas skips: one column gets a placeholder instead.)
        prefix = _PREFIX if len(header) > 1 else _PREFIX | {"category": b"_", "datetime": b"1970-01-01"}
        self._prefix = self.sep.join(prefix[kinds[c]] for c in header) + b"\n"
        # The compiled path's layouts: one column would make a blank line a record (pandas skips it); bool and
        # datetime columns, other encodings and separators are pandas' alone.
        fast = (_fastcsv is not None and len(header) > 1 and self.sep == b","
                and codecs.lookup(encoding).name in ("utf-8", "ascii") and all(kinds[c] in _FAST_KINDS for c in header))
        self._fast_kinds = "".join(_FAST_KINDS[kinds[c]] for c in header) if fast else None

    @property
    def dtypes(self) -> dict:
        return {c: _PANDAS_DTYPES[self.kinds[c]] for c in self.header}

    def parse(self, data: bytes | memoryview, *, first_line: int, stop_at_first: bool = False,
              newlines: int | None = None) -> Parsed:
        """All good rows of ``data`` as arrays, and the bad ones (``first_line`` = line of the first record).

        ``stop_at_first``: find and diagnose only the first bad row (the rows returned are then incomplete), for the
        error policy, which reports that row and stops: diagnosing every other one first was wasted work.
        ``newlines``: the count of newlines in ``data`` when the caller knows it (else it is counted).
        """
        if self._fast_kinds is not None:
            parsed = self._fast_parse(data, newlines)
            if parsed is not None:
                return parsed
        data = bytes(data)  # the pandas path slices and concatenates: a memoryview is copied once, here
        try:
            return self._parse(data)
        except _Reject:
            pass
        starts, ends, lines = split_records(data)
        pieces: list[Parsed] = []
        bad: list[BadRow] = []
        self._bisect(data, starts, ends, lines + first_line, 0, len(starts), pieces, bad, stop_at_first)
        out = _concat(pieces, len(self.float_cols), len(self.int_cols), len(self.cat_cols))
        out.bad = bad
        return out

    def _bisect(self, data, starts, ends, lines, lo, hi, pieces, bad, stop_at_first) -> bool:
        """Parse records ``lo:hi``, halving failing ranges down to single bad records, in order; True once a bad
        record is found when ``stop_at_first``."""
        if lo >= hi:
            return False
        chunk = data[starts[lo]:ends[hi - 1]]
        try:
            pieces.append(self._parse(chunk, expected_rows=hi - lo))
            return False
        except _Reject:
            if hi - lo == 1:
                bad.append(self._diagnose(chunk, int(lines[lo])))
                return stop_at_first
        mid = (lo + hi) // 2
        return (self._bisect(data, starts, ends, lines, lo, mid, pieces, bad, stop_at_first)
                or self._bisect(data, starts, ends, lines, mid, hi, pieces, bad, stop_at_first))

    def _fast_parse(self, data: bytes | memoryview, newlines: int | None = None) -> Parsed | None:
        """The compiled path's arrays for ``data`` (holding ``newlines`` newlines: counted when not given), or None
        where it cannot be sure of pandas' values."""
        newlines = count_byte(data, 10) if newlines is None else newlines
        capacity = newlines + (data[-1:] != b"\n")  # records, unless quotes hold newlines
        floats = np.empty((len(self.float_cols), capacity), np.float32)  # transposed: see Parsed
        ints = np.empty((len(self.int_cols), capacity), np.int64)
        codes = np.empty((len(self.cat_cols), capacity), np.int32)
        out = _fastcsv.parse(data, self._fast_kinds, self.sep[0], _MISSING, floats, ints, codes, capacity)
        if out is None:
            return None
        rows, hard_at, hard_text, vocab = out
        if hard_at and not self._convert_hard(floats, np.frombuffer(hard_at, np.int64), hard_text):
            return None
        try:
            vocab = [[v.decode(self.encoding) for v in values] for values in vocab]
        except UnicodeDecodeError:
            return None
        if rows < capacity:  # newlines inside quotes: fewer records than lines
            floats, ints, codes = (np.ascontiguousarray(a[:, :rows]) for a in (floats, ints, codes))
        return Parsed(floats.T, ints.T, codes.T, vocab, compiled=True)

    @staticmethod
    def _convert_hard(floats: np.ndarray, at: np.ndarray, text: bytes) -> bool:
        """Convert the float fields the compiled path left to pandas ("nan", "1e999", 17 digits, ...; ``text`` holds
        them one per line) with pandas itself, into ``floats`` at flat positions ``at``. False if pandas refuses one
        (or reads another number of them): the block then takes the pandas path, which finds the bad row."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                values = pd.read_csv(io.BytesIO(text), header=None, names=["v"], index_col=False, dtype="float64",
                                     engine="c")["v"].to_numpy(dtype=np.float64, na_value=np.nan)
        except Exception:
            return False
        if len(values) != len(at):
            return False
        with np.errstate(over="ignore"):  # beyond float32's range -> ±inf, as in _arrays
            floats.reshape(-1)[at] = values
        return True

    def _parse(self, data: bytes, expected_rows: int | None = None) -> Parsed:
        try:
            with warnings.catch_warnings():  # e.g. "invalid value in cast" before pandas raises on 1e999
                warnings.simplefilter("ignore", RuntimeWarning)
                frame = pd.read_csv(io.BytesIO(self._prefix + data), header=None, names=self.header,
                                    index_col=False, dtype=self.dtypes, encoding=self.encoding, engine="c",
                                    on_bad_lines="error")
        except Exception as exc:  # any parser complaint sends the block to the exact slow path
            raise _Reject(str(exc)) from None
        frame = frame.iloc[1:]
        n = len(frame)
        if expected_rows is not None and n != expected_rows:
            raise _Reject("record count")
        # pandas pads a short row with missing values, so only a block whose last column has a missing value
        # can hold one; then every record's field count is checked (outside quotes).
        if frame.iloc[:, -1].isna().any() and _unquoted_count(data, self.sep) != (len(self.header) - 1) * n:
            raise _Reject("field count")
        return self._arrays(frame)

    def _arrays(self, frame: pd.DataFrame) -> Parsed:
        n = len(frame)
        floats = np.empty((len(self.float_cols), n), np.float32)  # transposed: see Parsed
        with np.errstate(over="ignore"):  # beyond float32's range -> ±inf, as FORMAT.md documents
            for j, c in enumerate(self.float_cols):
                floats[j] = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
        ints = np.empty((len(self.int_cols), n), np.int64)
        for j, c in enumerate(self.int_cols):
            ints[j] = self._int_values(frame[c], self.kinds[c])
        codes = np.empty((len(self.cat_cols), n), np.int32)
        vocab = []
        for j, c in enumerate(self.cat_cols):
            local, values = pd.factorize(frame[c].to_numpy())  # missing -> -1
            codes[j] = local
            vocab.append(values.tolist())
        return Parsed(floats.T, ints.T, codes.T, vocab)

    @staticmethod
    def _int_values(series: pd.Series, kind: str) -> np.ndarray:
        if kind == "datetime":
            try:
                stamps = pd.to_datetime(series, format="ISO8601", utc=True)
            except (ValueError, TypeError, OverflowError) as exc:
                raise _Reject(str(exc)) from None
            return stamps.dt.tz_localize(None).astype("datetime64[ns]").to_numpy().view(np.int64)
        values = series.to_numpy(dtype=np.int64, na_value=INT_MISSING)
        if kind == "int" and (values == INT_MISSING).sum() != series.isna().sum():
            raise _Reject("int64 minimum is reserved")
        return values

    def _diagnose(self, record: bytes, line: int) -> BadRow:
        raw = record.decode(self.encoding, errors="replace")
        try:
            text = record.decode(self.encoding)
        except UnicodeDecodeError as exc:
            col = self._column_at(record[: exc.start].count(self.sep))
            return BadRow(line, col, f"bytes that are not valid {self.encoding}",
                          "fix the bytes or pass the file's --encoding (e.g. cp932, latin-1)", raw)
        if text.count('"') % 2:  # (lines here may count from the block's first record: none goes in the text)
            return BadRow(line, None, f"unbalanced quotes: a quote opened here is never closed (the record runs "
                          f"{text.count(chr(10)) + 1:,} lines, to the end of the file)",
                          'close the quote; inside a quoted field write a quote as ""', raw)
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if len(rows) != 1 and "\r" in text.replace("\r\n", ""):
            return BadRow(line, None, f"a carriage return (\\r) outside quotes splits the record into {len(rows)} "
                          "rows", 'quote the field ("a\\rb") or remove the carriage return', raw)
        if len(rows) != 1:
            return BadRow(line, None, f"unbalanced quotes (the record spans {len(rows)} rows)",
                          'quote fields as RFC 4180 does: "a ""quoted"" value"', raw)
        fields = rows[0]
        if len(fields) != len(self.header):
            return BadRow(line, None, f"expected {len(self.header)} fields, found {len(fields)}",
                          "fix the row's separators/quotes, or pass --on-bad-rows skip --rejects FILE", raw)
        column = self._first_bad_column(fields, 0, len(fields))
        if column is None:
            return BadRow(line, None, "the CSV parser rejects this row", "check its quotes and separators", raw)
        name, value = self.header[column], fields[column]
        return BadRow(line, name, f"expected {self.kinds[name]}, found {value[:60]!r}",
                      f"declare the column with --dtype {name}={_suggest(value)}, fix the value, or pass "
                      "--on-bad-rows skip --rejects FILE", raw)

    def _first_bad_column(self, fields: list[str], lo: int, hi: int) -> int | None:
        """Index of the first of columns ``lo:hi`` whose value does not parse as the column's kind, or None.

        Columns convert independently, so a set of them fails if one does: halving finds the first in about
        2 log2(columns) parses instead of one per column (150,000 columns: ~35 parses, not 150,000).
        """
        names = self.header[lo:hi]
        part = BlockParser(names, {n: self.kinds[n] for n in names}, "utf-8")
        try:
            part._parse(",".join(_quote(v) for v in fields[lo:hi]).encode("utf-8"), expected_rows=1)
            return None
        except _Reject:
            if hi - lo == 1:
                return lo
        mid = (lo + hi) // 2
        found = self._first_bad_column(fields, lo, mid)
        return found if found is not None else self._first_bad_column(fields, mid, hi)

    def _column_at(self, index: int) -> str | None:
        return self.header[index] if 0 <= index < len(self.header) else None


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _suggest(value: str) -> str:
    try:
        float(value)
        return "float"
    except ValueError:
        return "category"


def _unquoted_count(data: bytes, sep: bytes) -> int:
    """Separators outside quotes (-1 when the quotes do not pair up)."""
    total = count_byte(data, sep[0])
    if b'"' not in data:
        return total
    raw = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(raw == 34)
    if quotes.size % 2:
        return -1
    opens, closes = quotes[0::2], quotes[1::2]
    if opens.size < 20_000:
        inside = sum(data.count(sep, a, b) for a, b in zip(opens.tolist(), closes.tolist()))
    else:
        seps = np.flatnonzero(raw == sep[0])
        inside = int((np.searchsorted(seps, closes) - np.searchsorted(seps, opens)).sum())
    return total - inside


def _concat(pieces: list[Parsed], nf: int, ni: int, nc: int) -> Parsed:
    """Join parsed pieces of one block, merging their categorical vocabularies."""
    if not pieces:
        return Parsed(np.empty((0, nf), np.float32), np.empty((0, ni), np.int64), np.empty((0, nc), np.int32),
                      [[] for _ in range(nc)])

    def join(arrays):  # column-major, as Parsed says
        return np.concatenate([a.T for a in arrays], axis=1).T

    vocab, codes = [], join([p.codes for p in pieces])
    for j in range(nc):
        merged: dict[str, int] = {}
        offset = 0
        for p in pieces:
            mapping = np.array([merged.setdefault(v, len(merged)) for v in p.vocab[j]] + [-1], dtype=np.int32)
            block = codes[offset:offset + p.rows, j]
            codes[offset:offset + p.rows, j] = mapping[block]  # -1 indexes the trailing -1: missing stays missing
            offset += p.rows
        vocab.append(list(merged))
    return Parsed(join([p.floats for p in pieces]), join([p.ints for p in pieces]), codes, vocab)
