"""The one error hierarchy of the project.

Every error a user can cause derives from :class:`StoreError` (itself a ``ValueError``), carries where it happened
(``path``, ``line``, ``column``, ``array``, ``chunk``) and says what was expected and how to fix it. The command-line
tools print ``str(error)`` as one line and exit non-zero; they never show a traceback for these.
"""

from __future__ import annotations

__all__ = [
    "StoreError",
    "BadRowError",
    "SourceError",
    "SchemaError",
    "OptionError",
    "IncompleteStoreError",
    "FormatError",
    "MetadataError",
    "ChunkError",
    "OutputExistsError",
    "DiskFullError",
    "LockedError",
    "from_os_error",
]


class StoreError(ValueError):
    """Base of every error a user can cause; ``str()`` is a complete one-line message."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 column: str | None = None, array: str | None = None, chunk: int | None = None):
        super().__init__(message)
        self.path, self.line, self.column, self.array, self.chunk = path, line, column, array, chunk


class BadRowError(StoreError):
    """A CSV record that cannot be stored: wrong field count, a value of the wrong type, undecodable bytes."""

    def __init__(self, path: str, line: int, column: str | None, reason: str, fix: str = ""):
        where = f"{path}:{line}" + (f": column {column!r}" if column else "")
        hint = fix or "fix the row, declare the column's type with --dtype, or pass --on-bad-rows skip --rejects FILE"
        super().__init__(f"{where}: {reason}; {hint}", path=path, line=line, column=column)
        self.reason = reason


class SourceError(StoreError, FileNotFoundError):
    """A missing, empty, unreadable or inconsistent input file."""


class SchemaError(StoreError, KeyError):
    """An unknown column, label or type name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class OptionError(StoreError):
    """A command-line option or argument that cannot work."""


class IncompleteStoreError(StoreError):
    """A store whose ingest has not finished (interrupted, crashed or still running)."""


class FormatError(StoreError):
    """A path that is not a store of this format, or of a version this code cannot read."""


class MetadataError(FormatError):
    """A store whose metadata is damaged, edited or crafted: a field of the wrong type or range, a name that is not
    one the format defines, or sizes and lengths that disagree with each other or with the files."""


class ChunkError(StoreError):
    """A chunk that is missing, truncated or fails its checksum."""


class OutputExistsError(StoreError, FileExistsError):
    """The output already exists and ``--overwrite`` / ``--resume`` was not given."""


class DiskFullError(StoreError, OSError):
    """No space left on the device while writing."""


class LockedError(StoreError):
    """Another process is writing the same output (an ingest into the same store, a run in the same directory)."""


def from_os_error(exc: OSError, resume: str = "re-run the same command with --resume") -> StoreError:
    """The one-line user error for an operating-system failure while reading or writing (disk full, permission
    denied, a path through a file, ...); the command-line tools print it instead of a traceback."""
    import errno
    import os

    where = exc.filename or "the output"
    if exc.errno == errno.ENOSPC:
        return DiskFullError(f"no space left on device while writing {where}; free space and {resume}", path=where)
    reason = (exc.strerror or os.strerror(exc.errno)) if exc.errno else str(exc)
    return OptionError(f"{where}: {reason}; check the path and its permissions", path=where)
