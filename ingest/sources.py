"""Find the input files, read and compare their headers, fingerprint them for ``--resume``."""

from __future__ import annotations

import csv
import glob
import io
import os
from dataclasses import dataclass

from store.errors import SourceError

__all__ = ["SourceFile", "resolve_sources", "read_header"]

_HEADER_LIMIT = 1 << 20


@dataclass(frozen=True)
class SourceFile:
    """One input CSV: path, which split it feeds, and where its data starts (after BOM and header)."""

    path: str
    split: str
    size: int
    mtime_ns: int
    data_start: int
    header_lines: int

    def fingerprint(self) -> list:
        return [self.path, self.size, self.mtime_ns]


def _expand(source: str) -> list[str]:
    if os.path.isdir(source):
        found = sorted(glob.glob(os.path.join(glob.escape(source), "*.csv")))
        if not found:
            raise SourceError(f"{source}: folder holds no *.csv files; point SOURCE at the CSV files", path=source)
        return found
    if os.path.exists(source):
        return [source]
    if glob.has_magic(source):
        found = sorted(p for p in glob.glob(source) if os.path.isfile(p))
        if not found:
            raise SourceError(f"{source}: pattern matches no files; check the path", path=source)
        return found
    raise SourceError(f"{source}: no such file or folder; check the path", path=source)


def resolve_sources(sources: list[str], val: list[str], encoding: str) -> tuple[list[SourceFile], list[str]]:
    """All input files in order (training sources, then validation sources) and the shared header.

    Raises SourceError for missing or empty inputs and for a header that differs between files.
    """
    files: list[SourceFile] = []
    header: list[str] | None = None
    first = None
    for split, group in (("train", sources), ("validation", val)):
        for source in group:
            for path in _expand(source):
                names, data_start, lines = read_header(path, encoding)
                if header is None:
                    header, first = names, path
                elif names != header:
                    raise SourceError(f"{path}: header differs from {first}: {_diff(header, names)}; all files must "
                                      "share one header", path=path)
                st = os.stat(path)
                files.append(SourceFile(os.path.abspath(path), split, st.st_size, st.st_mtime_ns, data_start, lines))
    assert header is not None  # _expand never returns an empty list
    return files, header


def _diff(a: list[str], b: list[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"column {i + 1} is {x!r} there and {y!r} here"
    return f"{len(a)} columns there, {len(b)} here"


def read_header(path: str, encoding: str) -> tuple[list[str], int, int]:
    """Column names, the byte offset where data starts, and how many lines the header takes."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_LIMIT)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})", path=path) from None
    bom = 3 if head.startswith(b"\xef\xbb\xbf") and encoding.replace("_", "-") in ("utf-8", "utf-8-sig") else 0
    end = _first_record_end(head, bom)
    if end is None:
        if not head[bom:].strip():
            raise SourceError(f"{path}: file is empty; expected a header row and data", path=path)
        end = len(head)  # header without data or without final newline
    try:
        text = head[bom:end].decode(encoding)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}:1: header is not valid {encoding} (byte {exc.start}); pass --encoding",
                          path=path, line=1) from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise SourceError(f"{path}:1: header is not valid CSV ({exc}); fix the first line", path=path,
                          line=1) from None
    if len(rows) > 1:
        raise SourceError(f"{path}:1: the header row is split by a carriage return (\\r) outside quotes; fix the "
                          "first line", path=path, line=1)
    names = rows[0] if rows else []
    if not names or any(not n.strip() for n in names):
        raise SourceError(f"{path}:1: header has an empty column name; every column needs a name", path=path, line=1)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SourceError(f"{path}:1: duplicate column names {dupes}; rename them", path=path, line=1)
    if end >= os_size(path):
        raise SourceError(f"{path}: has a header but no data rows", path=path)
    return names, end, head[:end].count(b"\n")


def os_size(path: str) -> int:
    return os.stat(path).st_size


def _first_record_end(buf: bytes, start: int) -> int | None:
    """Offset just past the first newline outside quotes, or None."""
    pos, quotes = start, 0
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return None
        quotes += buf.count(b'"', pos, nl)
        if quotes % 2 == 0:
            return nl + 1
        pos = nl + 1
