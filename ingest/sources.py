"""Find the input files, read and compare their headers, fingerprint them for ``--resume``, and read their bytes.

A source is a local path or a URL of object storage (``s3://bucket/logs/*.csv``, ``gs://...``, any fsspec URL;
credentials and endpoint from the standard environment, see :mod:`store.location`). Every stage reads a source's
bytes through two functions, so local files and objects are read alike: :func:`open_source` (sequential reads: the
header, the type sample) and :func:`read_range` (one block's share and a little past it, for a parsing worker:
ingest.blocks.locate). A local path is a plain ``open``; an object is read with one ranged GET per read — never
downloaded whole, never through a read-ahead cache — so memory stays what the caller asked for.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

from store import SourceError, StoreError, filesystem, is_remote

from .config import MAX_RECORD_BYTES
from .quotes import first_record_end

__all__ = ["SourceFile", "resolve_sources", "read_header", "open_source", "read_range", "source_readable"]


@dataclass(frozen=True)
class SourceFile:
    """One input CSV: path (absolute, or the object's URL), which split it feeds, and where its data starts (after
    BOM and header); ``version`` is an object's ETag (else its modification time), empty for a local file."""

    path: str
    split: str
    size: int
    mtime_ns: int
    data_start: int
    header_lines: int
    version: str = ""

    def fingerprint(self) -> list:
        """What ``--resume`` compares: path, size, and the modification time (an object's ETag)."""
        return [self.path, self.size, self.version or self.mtime_ns]


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


def _listing(source: str) -> Iterator[tuple[str, str, int, int, str]]:
    """(name for messages, path to store, size, mtime_ns, version) of every file ``source`` names, in order."""
    if is_remote(source):
        for url, size, version in _list_objects(source):
            yield url, url, size, 0, version
        return
    for path in _expand(source):
        st = os.stat(path)
        yield path, os.path.abspath(path), st.st_size, st.st_mtime_ns, ""


def resolve_sources(sources: list[str], val: list[str], encoding: str) -> tuple[list[SourceFile], list[str]]:
    """All input files in order (training sources, then validation sources) and the shared header.

    Raises SourceError for missing or empty inputs and for a header that differs between files.
    """
    files: list[SourceFile] = []
    header: list[str] | None = None
    first = None
    for split, group in (("train", sources), ("validation", val)):
        for source in group:
            for name, path, size, mtime_ns, version in _listing(source):
                names, data_start, lines = read_header(name, encoding, size)
                if header is None:
                    header, first = names, name
                elif names != header:
                    raise SourceError(f"{name}: header differs from {first}: {_diff(header, names)}; all files must "
                                      "share one header", path=name)
                files.append(SourceFile(path, split, size, mtime_ns, data_start, lines, version))
    assert header is not None  # _expand and _list_objects never return an empty list
    return files, header


def _diff(a: list[str], b: list[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"column {i + 1} is {x!r} there and {y!r} here"
    return f"{len(a)} columns there, {len(b)} here"


def read_header(path: str, encoding: str, size: int | None = None) -> tuple[list[str], int, int]:
    """Column names, the byte offset where data starts, and how many lines the header takes (``size``: the file's
    size when the caller knows it)."""
    if size is None:
        size = _size(path)
    # An object's first read is small: a GET per file of a glob of thousands, where headers are short.
    first = 64 * 1024 if is_remote(path) else 1 << 20
    try:
        with open_source(path, size) as f:
            head, end = _read_header_record(f, path, first)
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
    if end >= size:
        raise SourceError(f"{path}: has a header but no data rows", path=path)
    return names, end, head[:end].count(b"\n")


def _read_header_record(f, path: str, want: int) -> tuple[bytearray, int | None]:
    """The file's first bytes, read until the header record ends (returns its end, just past the newline) or the
    file does (None); ``want`` bytes first, then twice as many each time. A header longer than MAX_RECORD_BYTES is
    refused, never cut short: a cut header gave a bogus duplicate name or a silently shorter schema (issue 11)."""
    head, odd = bytearray(), False
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


# -- reading bytes: local files and objects alike ------------------------------------------------------------------

def open_source(path: str, size: int):
    """A binary file over a source of ``size`` bytes, for sequential reads (``seek``, ``read(n)``, a context
    manager): ``open`` for a local path; for a URL, each ``read(n)`` is one ranged GET of those bytes."""
    if not is_remote(path):
        return open(path, "rb")
    return _RangedObject(path, size)


def read_range(path: str, start: int, end: int) -> bytes:
    """Bytes ``start:end`` of a source: one read of a local file, one ranged GET of an object."""
    if not is_remote(path):
        with open(path, "rb") as f:
            f.seek(start)
            return f.read(end - start)
    fs, root = filesystem(path)
    try:
        return fs.cat_file(root, start=start, end=end)
    except _remote_failures() as exc:
        raise _remote_error(path, exc) from None


def source_readable(path: str) -> bool:
    """Whether this process can read the source (a local path exists; an object answers with its metadata): what a
    Dask worker checks before the ingest sends it work."""
    if not is_remote(path):
        return os.path.exists(path)
    try:
        fs, root = filesystem(path)
        fs.info(root)
    except (StoreError,) + _remote_failures():
        return False
    return True


class _RangedObject:
    """A read-only file over one object of known size: each ``read(n)`` is one ranged GET of exactly those bytes
    (no HEAD request, no read-ahead cache: fsspec's default readahead would fetch a block past every read)."""

    def __init__(self, url: str, size: int):
        self.url, self.size, self.pos = url, size, 0
        self.fs, self.root = filesystem(url)

    def seek(self, pos: int) -> int:
        self.pos = pos
        return pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n < 0 else min(self.pos + n, self.size)
        if end <= self.pos:
            return b""
        try:
            data = self.fs.cat_file(self.root, start=self.pos, end=end)
        except _remote_failures() as exc:
            raise _remote_error(self.url, exc) from None
        self.pos += len(data)
        return data

    def readinto(self, view) -> int:
        """One ranged GET of up to ``len(view)`` bytes into ``view``; returns the bytes read (0 at the end)."""
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _size(path: str) -> int:
    if not is_remote(path):
        return os.stat(path).st_size
    fs, root = filesystem(path)
    try:
        return int(fs.info(root)["size"])
    except _remote_failures() as exc:
        raise _remote_error(path, exc) from None


# -- objects: listing and errors -----------------------------------------------------------------------------------

def _list_objects(source: str) -> list[tuple[str, int, str]]:
    """(URL, size, version) of every object ``source`` names, in name order: an object, the ``*.csv`` objects
    directly under a prefix (a "folder", as for a local folder), or those a glob pattern matches. One listing
    request per source (plus one for a single object), so a glob of thousands of objects costs no HEAD each."""
    fs, root = filesystem(source)
    try:
        if glob.has_magic(root):
            found = [info for _, info in sorted(fs.glob(root, detail=True).items()) if info.get("type") == "file"]
            if not found:
                raise _not_found(fs, source, root, "pattern matches no objects")
        else:
            info = fs.info(root)
            if info.get("type") == "directory":
                found = sorted((i for i in fs.ls(root, detail=True)
                                if i.get("type") == "file" and i["name"].endswith(".csv")), key=lambda i: i["name"])
                if not found:
                    raise SourceError(f"{source}: prefix holds no *.csv objects; point SOURCE at the CSV objects",
                                      path=source)
            else:
                found = [info]
    except FileNotFoundError as exc:
        if isinstance(exc, SourceError):
            raise
        raise _not_found(fs, source, root, "no such object or prefix") from None
    except _remote_failures() as exc:
        raise _remote_error(source, exc) from None
    return [(fs.unstrip_protocol(i["name"]), int(i["size"]), _version(i)) for i in found]


def _version(info: dict) -> str:
    """What changes when an object is rewritten: its ETag (S3, MinIO, R2...), GCS's generation or hash, else its
    modification time."""
    for key in ("ETag", "etag", "generation", "md5Hash", "LastModified", "mtime", "updated"):
        if info.get(key) not in (None, ""):
            return f"{key}={info[key]}"
    return ""


def _not_found(fs, source: str, root: str, what: str) -> SourceError:
    """``what`` happened at ``source``; says so, or that its bucket does not exist."""
    bucket = root.split("/", 1)[0]
    try:
        missing = not fs.exists(bucket)
    except _remote_failures():
        missing = False
    if missing:
        return SourceError(f"{source}: no such bucket {bucket!r}; check the URL and the endpoint "
                           "(AWS_ENDPOINT_URL for S3-compatible servers)", path=source)
    return SourceError(f"{source}: {what}; check the URL", path=source)


def _remote_error(url: str, exc: BaseException) -> SourceError:
    """One line for a failed request to object storage, naming the URL and what to check."""
    credentials = ("AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" if url.startswith(("s3://", "s3a://"))
                   else "the credentials of its fsspec backend")
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return SourceError(f"{url}: no such object ({reason}); check the URL (was it deleted during the ingest?)",
                           path=url)
    if isinstance(exc, PermissionError):
        return SourceError(f"{url}: access denied ({reason}); check the credentials ({credentials}) and that they "
                           "may list and read it", path=url)
    return SourceError(f"{url}: cannot read ({type(exc).__name__}: {reason}); check the URL, the endpoint "
                       f"(AWS_ENDPOINT_URL for S3-compatible servers), the credentials ({credentials}) and the "
                       "network", path=url)


_FAILURES: tuple | None = None


def _remote_failures() -> tuple:
    """The exceptions a request to object storage may raise: OSError (fsspec backends translate most errors into
    its subclasses), and botocore's own (missing credentials, unreachable endpoint) where s3fs is installed."""
    global _FAILURES
    if _FAILURES is None:
        kinds: list = [OSError]
        try:
            from botocore.exceptions import BotoCoreError
            kinds.append(BotoCoreError)
        except ImportError:
            pass
        _FAILURES = tuple(kinds)
    return _FAILURES
