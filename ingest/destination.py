"""A store's destination on object storage (any fsspec URL): the ingest builds the store in a local work directory
exactly as for a local destination, then uploads it here.

Object stores have no atomic rename, so completeness is carried by the root ``zarr.json`` (whose attributes say
``complete: true``): it is deleted first when replacing a store and uploaded last, after every shard and array
metadata object. A reader therefore sees either a complete store or one that says it is incomplete — never a
partial store that looks finished. An interrupted upload is redone by ``--resume`` from the local work directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

from store import ATTRS_KEY, FORMAT_NAME, SPLITS, VOCABULARY_GROUP, OutputExistsError, filesystem

__all__ = ["default_work_dir", "remote_state", "upload_store", "UPLOAD_MARKER"]

_STORE_NAMES = {"zarr.json", *SPLITS, VOCABULARY_GROUP}  # a store's top level (FORMAT.md)
# Uploaded first and removed last: marks a prefix holding an upload of ours that has not finished. Only such a
# prefix, or a complete store of this format with nothing else beside it, is ever deleted by --overwrite.
UPLOAD_MARKER = ".ingest-upload"


def default_work_dir(url: str, parent: str | None = None) -> str:
    """The local work directory of an ingest to ``url``, named after it (stable, so --resume finds it) inside
    ``parent`` (``--work``), or inside a folder of the temp directory private to this user (created 0700 and
    checked to be ours: on a shared host nobody else can prepare it)."""
    digest = hashlib.sha1(url.encode()).hexdigest()[:16]
    if parent is None:
        parent = os.path.join(tempfile.gettempdir(), f"ingest-work-{os.getuid() if hasattr(os, 'getuid') else 0}")
        _private_dir(parent)
    return os.path.join(parent, f"{os.path.basename(url.rstrip('/')) or 'store'}-{digest}")


def _private_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o077 or not os.path.isdir(path)
                                  or os.path.islink(path)):
        raise OutputExistsError(f"{path} is not a private folder of this user (owner {st.st_uid}, mode "
                                f"{st.st_mode & 0o777:o}); pass --work DIR with a folder of your own", path=path)


def remote_state(url: str) -> str:
    """``store`` (a complete store of this format and nothing else), ``partial`` (an upload of ours that did not
    finish: its marker is there), ``other`` (anything else: never touched) or ``absent``."""
    fs, root = filesystem(url)
    names = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)} if fs.exists(root) else set()
    if not names:
        return "absent"
    if not names <= _STORE_NAMES | {UPLOAD_MARKER}:
        return "other"
    if UPLOAD_MARKER in names:
        return "partial"
    try:
        meta = json.loads(fs.cat_file(f"{root}/zarr.json"))
        attrs = meta.get("attributes", {}).get(ATTRS_KEY, {})
        return "store" if isinstance(attrs, dict) and attrs.get("format") == FORMAT_NAME else "other"
    except (FileNotFoundError, ValueError, AttributeError):
        return "other"


def upload_store(built: str, url: str) -> None:
    """Replace whatever store of ours is at ``url`` by the local store ``built``: the marker first, then the old
    root metadata out (readers now see an incomplete store), the old arrays out, the new ones in, the new root
    metadata last, and the marker out."""
    fs, root = filesystem(url)
    state = remote_state(url)
    if state == "other":
        raise OutputExistsError(f"{url} holds objects that are not a store of this tool; refusing to delete them: "
                                "choose another --out", path=url)
    fs.pipe_file(f"{root}/{UPLOAD_MARKER}", json.dumps({"made_by": "ingest"}).encode())
    if state != "absent":
        if fs.exists(f"{root}/zarr.json"):
            fs.rm_file(f"{root}/zarr.json")  # from now on readers see an incomplete store, not the old one
        for name in sorted(_STORE_NAMES - {"zarr.json"}):
            if fs.exists(f"{root}/{name}"):
                fs.rm(f"{root}/{name}", recursive=True)
    for folder, _, files in os.walk(built):
        for name in sorted(files):
            local = os.path.join(folder, name)
            rel = os.path.relpath(local, built).replace(os.sep, "/")
            if rel != "zarr.json":
                fs.put_file(local, f"{root}/{rel}")
    fs.put_file(os.path.join(built, "zarr.json"), f"{root}/zarr.json")
    fs.rm_file(f"{root}/{UPLOAD_MARKER}")
