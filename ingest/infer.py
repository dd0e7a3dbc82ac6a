"""Infer column kinds from the leading rows of the first file (explicit ``--dtype`` wins).

Rules, applied to the non-missing values of the sample (missing = what pandas treats as NA by default):
all integers that fit int64 -> ``int``; all true/false -> ``bool``; all numbers -> ``float``; all ISO 8601 dates or
times -> ``datetime``; anything else -> ``category``; a column with no value in the sample -> ``float``.
A later value that does not fit the inferred kind is a bad row whose message suggests ``--dtype``.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd

from store import SchemaError, SourceError

from .sources import SourceFile, open_source

__all__ = ["infer_kinds"]

_BOOL = {"true", "false"}
_GUESS_ROWS = 200  # rows that guess which columns need their text (1 ms of parsing on the bench file)
_ISO = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"


def infer_kinds(src: SourceFile, header: list[str], *, encoding: str, sample_rows: int,
                explicit: dict[str, str]) -> dict[str, str]:
    """Column name -> kind for every column of ``header``."""
    unknown = sorted(set(explicit) - set(header))
    if unknown:
        raise SchemaError(f"--dtype/--schema name unknown columns {unknown}; the header has: {', '.join(header)}")
    todo = [c for c in header if c not in explicit]
    kinds = dict(explicit)
    if todo:
        kinds.update(_infer_sample(src, header, encoding, sample_rows, todo))
    return {name: kinds[name] for name in header}


def _infer_sample(src: SourceFile, header: list[str], encoding: str, rows: int, todo: list[str]) -> dict[str, str]:
    """The kinds of the ``todo`` columns: most from pandas' own conversion of the sample (:func:`_parsed_kind`),
    the others from their text with the rules of :func:`infer_kind`.

    Reading every column as text and running ``pd.to_numeric`` over each took 0.17 s of serial time on the
    45-column, 10,000-row sample of data/bench/quest_1000000.csv; the C parser converts the numbers in a tenth of
    that. The columns that need their text (text itself; integers with missing values, which come back as float64,
    so ``1`` and ``1.0`` look alike) are guessed from the first rows and read as text in the same parse; a guess
    that proves wrong costs one more parse, of those columns as text and the others as one-byte fields.
    """
    data = _read_sample(src, rows)
    try:
        head = _parse_sample(src, data, header, encoding, min(rows, _GUESS_ROWS), low_memory=False)
        text = [name for name in todo if _parsed_kind(head[name]) is None]
    except SourceError:  # the full parse says why
        text = []
    sample = _parse_sample(src, data, header, encoding, rows, low_memory=False,  # one chunk: one dtype a column
                           dtype={name: str for name in text})
    kinds = {name: infer_kind(sample[name]) if name in text else _parsed_kind(sample[name]) for name in todo}
    again = [name for name, kind in kinds.items() if kind is None]
    if again:
        sample = _parse_sample(src, data, header, encoding, rows,
                               dtype={name: str if name in again else "S1" for name in header})
        kinds.update({name: infer_kind(sample[name]) for name in again})
    return kinds


def _read_sample(src: SourceFile, rows: int) -> bytes:
    """The first bytes of the data: more than ``rows`` lines (or 64 MiB, or the whole file), no torn last row."""
    data, want = b"", 1 << 20
    with open_source(src.path, src.size) as f:
        while True:  # read until the sample has enough lines (or 64 MiB, or the end of the file)
            f.seek(src.data_start)
            data = f.read(want)
            if data.count(b"\n") > rows or len(data) < want or want >= 64 * 2**20:
                break
            want *= 4
    if len(data) < src.size - src.data_start and b"\n" in data:
        data = data[: data.rfind(b"\n") + 1]  # no torn last row in the sample
    return data


def _parse_sample(src: SourceFile, data: bytes, header: list[str], encoding: str, rows: int,
                  **options) -> pd.DataFrame:
    """The sample's first ``rows`` rows; ``options`` choose the dtypes only, never which rows are read (so no
    ``usecols``: with it the C parser keeps rows that have too many fields instead of skipping them)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.ParserWarning)  # ragged rows are reported by the parse pass
            return pd.read_csv(io.BytesIO(data), header=None, names=header, index_col=False, nrows=rows,
                               encoding=encoding, encoding_errors="replace", on_bad_lines="skip", engine="c",
                               **options)
    except (pd.errors.ParserError, ValueError) as exc:
        raise SourceError(f"{src.path}: cannot read a sample to infer column types ({exc}); give the types with "
                          "--dtype or --schema", path=src.path) from None


def _parsed_kind(column: pd.Series) -> str | None:
    """The kind of a column as pandas' C parser converted it, or None when only its text can tell.

    The parser converts a column only when every non-missing value converts, with the routines ``pd.to_numeric``
    uses too (``str_to_int64``'s and ``precise_xstrtod``'s grammar, the same spellings of infinity), so: int64 ->
    every value an integer within int64 -> ``int``; float64 with no value, or with a fraction -> ``float``;
    true/false in any case, with or without missing values -> ``bool``.
    Everything else needs the text: float64 whole numbers may be integers with missing values (rounded past 2**53)
    or ``1.0``; uint64 and Python ints are integers beyond int64; and a text column may even hold the missing
    values as strings (the parser leaves them so when a number overflows). tests/ingest/test_infer.py checks
    this against the rules applied to text.
    """
    if column.dtype == "int64":
        return "int"
    if column.dtype == "float64":
        present = column.to_numpy()[column.notna().to_numpy()]
        return "float" if present.size == 0 or (present != np.trunc(present)).any() else None
    return "bool" if pd.api.types.infer_dtype(column, skipna=True) == "boolean" else None


def infer_kind(values: pd.Series) -> str:
    """The kind of one column from its sample values (strings, NaN for missing).

    Every rule must hold for every value, so each is tried on the first value before the whole column: a text
    column fails there at once, where ``pd.to_numeric`` would raise and catch an exception for every value.
    """
    present = values.dropna().astype(str)
    if present.empty:
        return "float"
    if pd.to_numeric(present.iloc[:1], errors="coerce").notna().all():
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.notna().all():
            return "int" if numbers.dtype == "int64" else "float"
    if _every(present, lambda s: s.str.lower().isin(_BOOL)):
        return "bool"
    if _every(present, lambda s: s.str.match(_ISO)):
        return "datetime"
    return "category"


def _every(present: pd.Series, test) -> bool:
    """Whether ``test`` (a vectorized check of each value) holds for all of ``present``, the first value first."""
    return bool(test(present.iloc[:1]).all()) and bool(test(present).all())
