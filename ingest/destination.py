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

from store.errors import OutputExistsError
from store.layout import ATTRS_KEY, FORMAT_NAME
from store.location import filesystem

__all__ = ["default_work_dir", "remote_state", "upload_store"]

_STORE_NAMES = {"zarr.json", "train", "validation"}


def default_work_dir(url: str) -> str:
    """The local work directory of an ingest to ``url`` (stable, so --resume finds it): under the temp dir."""
    digest = hashlib.sha1(url.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "ingest-work", f"{os.path.basename(url.rstrip('/'))}-{digest}")


def remote_state(url: str) -> str:
    """``store`` (a complete store of this format), ``partial`` (objects of a store without its root metadata: an
    interrupted upload), ``other`` (anything else) or ``absent``."""
    fs, root = filesystem(url)
    try:
        meta = json.loads(fs.cat_file(f"{root}/zarr.json"))
        attrs = meta.get("attributes", {}).get(ATTRS_KEY, {})
        return "store" if isinstance(attrs, dict) and attrs.get("format") == FORMAT_NAME else "other"
    except FileNotFoundError:
        pass
    except ValueError:
        return "other"
    names = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)} if fs.exists(root) else set()
    if not names:
        return "absent"
    return "partial" if names <= _STORE_NAMES else "other"


def upload_store(built: str, url: str) -> None:
    """Replace whatever store is at ``url`` by the local store ``built``; the root metadata goes last."""
    fs, root = filesystem(url)
    state = remote_state(url)
    if state == "other":
        raise OutputExistsError(f"{url} holds objects that are not a store; refusing to delete them: choose another "
                                "--out", path=url)
    if state != "absent":
        if fs.exists(f"{root}/zarr.json"):
            fs.rm_file(f"{root}/zarr.json")  # from now on readers see an incomplete store, not the old one
        fs.rm(root, recursive=True)
    for folder, _, files in os.walk(built):
        for name in sorted(files):
            local = os.path.join(folder, name)
            rel = os.path.relpath(local, built).replace(os.sep, "/")
            if rel != "zarr.json":
                fs.put_file(local, f"{root}/{rel}")
    fs.put_file(os.path.join(built, "zarr.json"), f"{root}/zarr.json")
