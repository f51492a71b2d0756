"""A folder's manifest (``locations.MANIFEST``): each file's path, size and SHA-256,
written last when a folder is uploaded to an object store, so its presence says the
folder is complete and later downloads can check every file against it."""

from __future__ import annotations

import json
from typing import Any

from scitq_bench.storage.base import NotFoundError, StorageError, Store
from scitq_bench.storage.locations import MANIFEST

Items = dict[str, dict[str, Any]]  # by relative path: {"path", "size", "sha256"}


class UnreadableManifest(StorageError):
    """A manifest that is not the JSON this module writes."""


def item(relative: str, size: int, sha256: str) -> dict[str, Any]:
    return {"path": relative, "size": size, "sha256": sha256}


def write(store: Store, folder_key: str, items: Items) -> None:
    """The manifest of the folder at ``folder_key`` (ending with "/"), sorted by path."""
    manifest = {"files": [items[relative] for relative in sorted(items)]}
    store.put_bytes(folder_key + MANIFEST, json.dumps(manifest, indent=1).encode())


def read(store: Store, key: str) -> Items | None:
    """The manifest at ``key`` by path; None when there is none; UnreadableManifest,
    naming it, when it is not one."""
    try:
        with store.read(key) as stream:
            data = json.loads(stream.read())
        return {str(entry["path"]): dict(entry) for entry in data["files"]
                if isinstance(entry, dict) and "path" in entry}
    except NotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise UnreadableManifest(f"{store.location(key)}: not a readable manifest") from None
