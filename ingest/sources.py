"""Find the input files, read and compare their headers, fingerprint them for ``--resume``."""

from __future__ import annotations

import csv
import glob
import io
import os
from collections import Counter
from dataclasses import dataclass

from store.errors import SourceError

from .config import MAX_RECORD_BYTES
from .quotes import first_record_end

__all__ = ["SourceFile", "resolve_sources", "read_header"]


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
            head, end = _read_header_record(f, path)
    except SourceError:  # an OSError too
        raise
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})", path=path) from None
    bom = 3 if head.startswith(b"\xef\xbb\xbf") and encoding.replace("_", "-") in ("utf-8", "utf-8-sig") else 0
    if end is None:
        if not head[bom:].strip():
            raise SourceError(f"{path}: file is empty; expected a header row and data", path=path)
        if b"\n" in head.rstrip(b"\r\n"):
            raise SourceError(f"{path}:1: unbalanced quotes in the header: a quote opened on line 1 is never closed, "
                              "so the whole file would be the header; close the quote or remove the stray one",
                              path=path, line=1)
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
    dupes = sorted(n for n, count in Counter(names).items() if count > 1)  # names.count: quadratic in columns
    if dupes:
        raise SourceError(f"{path}:1: duplicate column names {dupes}; rename them", path=path, line=1)
    if end >= os_size(path):
        raise SourceError(f"{path}: has a header but no data rows", path=path)
    return names, end, head[:end].count(b"\n")


def os_size(path: str) -> int:
    return os.stat(path).st_size


def _read_header_record(f, path: str) -> tuple[bytearray, int | None]:
    """The file's first bytes, read until the header record ends (returns its end, just past the newline) or the
    file does (None). A header longer than MAX_RECORD_BYTES is refused, never cut short: a cut header gave a
    bogus duplicate name or a silently shorter schema (issue 11)."""
    head, odd, want = bytearray(), False, 1 << 20
    while True:
        want = min(want, MAX_RECORD_BYTES + 1 - len(head))
        data = f.read(want)
        searched = len(head)
        head += data
        nl, odd = first_record_end(head, searched, len(head), odd)  # the BOM holds no quote or newline
        if nl >= 0:
            return head, nl + 1
        if len(data) < want:
            return head, None
        if len(head) > MAX_RECORD_BYTES:
            mib = f"{MAX_RECORD_BYTES >> 20} MiB"
            why = ("a quote opened on line 1 is never closed" if b"\n" in head
                   else f"its first line is longer than {mib}")
            raise SourceError(f"{path}:1: the header does not end within {mib}, the most one record may span: {why}; "
                              "check that this is a CSV file whose first line names the columns", path=path, line=1)
        want *= 2
