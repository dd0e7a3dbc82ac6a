"""Infer column kinds from the leading rows of the first file (explicit ``--dtype`` wins).

Rules, applied to the non-missing values of the sample (missing = what pandas treats as NA by default):
all integers that fit int64 -> ``int``; all true/false -> ``bool``; all numbers -> ``float``; all ISO 8601 dates or
times -> ``datetime``; anything else -> ``category``; a column with no value in the sample -> ``float``.
A later value that does not fit the inferred kind is a bad row whose message suggests ``--dtype``.
"""

from __future__ import annotations

import io
import warnings

import pandas as pd

from store import SchemaError, SourceError

from .sources import SourceFile, open_source

__all__ = ["infer_kinds"]

_BOOL = {"true", "false"}
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
        sample = _read_sample(src, header, encoding, sample_rows)
        for name in todo:
            kinds[name] = infer_kind(sample[name])
    return {name: kinds[name] for name in header}


def _read_sample(src: SourceFile, header: list[str], encoding: str, rows: int) -> pd.DataFrame:
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.ParserWarning)  # ragged rows are reported by the parse pass
            return pd.read_csv(io.BytesIO(data), header=None, names=header, index_col=False, dtype=str, nrows=rows,
                               encoding=encoding, encoding_errors="replace", on_bad_lines="skip", engine="c")
    except (pd.errors.ParserError, ValueError) as exc:
        raise SourceError(f"{src.path}: cannot read a sample to infer column types ({exc}); give the types with "
                          "--dtype or --schema", path=src.path) from None


def infer_kind(values: pd.Series) -> str:
    """The kind of one column from its sample values (strings, NaN for missing)."""
    present = values.dropna().astype(str)
    if present.empty:
        return "float"
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all():
        return "int" if numbers.dtype == "int64" else "float"
    if present.str.lower().isin(_BOOL).all():
        return "bool"
    if present.str.match(_ISO).all():
        return "datetime"
    return "category"
