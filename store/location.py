"""Where a store lives: a local directory, or any fsspec URL (``s3://bucket/path``, ``gs://...``, ``memory://``).

Remote stores are read and written through fsspec; credentials and endpoints come from each backend's standard
environment (for S3: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for
S3-compatible servers; for GCS: ``GOOGLE_APPLICATION_CREDENTIALS``). The object layout is exactly the local one.
"""

from __future__ import annotations

import os
import posixpath

from .errors import OptionError

__all__ = ["is_remote", "filesystem", "join", "size_of"]


def is_remote(path: str | os.PathLike) -> bool:
    """True for a URL with a protocol other than ``file://``."""
    path = os.fspath(path)
    return "://" in path and not path.startswith("file://")


def filesystem(url: str):
    """``(fs, path)`` for a remote URL (a clear error when its fsspec backend is not installed)."""
    try:
        import fsspec
    except ImportError:
        raise OptionError(f"{url}: remote stores need fsspec and the protocol's backend: pip install "
                          "'quest-store[cloud]' (s3fs for s3://, gcsfs for gs://)") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise OptionError(f"{url}: cannot open this URL ({exc}); install its fsspec backend (s3fs for s3://, "
                          "gcsfs for gs://)") from None
    fs.invalidate_cache()  # another process may have written since this (cached) instance last listed
    return fs, path


def join(base: str, *parts: str) -> str:
    """``os.path.join`` for local paths, ``/``-joined for URLs."""
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def size_of(path: str) -> int:
    """Total bytes under a local directory or a remote prefix."""
    if is_remote(path):
        fs, root = filesystem(path)
        return sum(fs.du(root, total=False).values()) if fs.exists(root) else 0
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
