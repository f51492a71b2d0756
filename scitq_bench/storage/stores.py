"""Which ``Store`` serves a URI: one per scheme and root, opened on first use and
reused (an SDK client is costly to build and thread-safe to share). The SDKs are
imported only when their scheme is used, so a worker that never reads Azure never
loads its SDK."""

from __future__ import annotations

import threading

from scitq_bench.storage.base import Store, Unsupported
from scitq_bench.storage.config import StorageConfig
from scitq_bench.storage.locations import Location, parse_location


class Stores:
    """The stores one process uses. ``server`` serves ``server://`` (the client side
    builds it around its API client: this package knows no server)."""

    def __init__(self, config: StorageConfig | None = None, server: Store | None = None) -> None:
        self.config = config if config is not None else StorageConfig.load()
        self.server = server
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str, str], Store] = {}

    def resolve(self, uri: str | Location, field: str = "uri") -> tuple[Store, Location]:
        location = uri if isinstance(uri, Location) else parse_location(uri, field)
        return self.store(location), location

    def store(self, location: Location) -> Store:
        if location.scheme == "server":
            if self.server is None:
                raise Unsupported(f"{location}: server:// needs a connection to a server")
            return self.server
        name = (location.scheme, location.root, location.query)
        with self._lock:
            store = self._open.get(name)
            if store is None:
                store = self._open[name] = self._build(location)
            return store

    def _build(self, location: Location) -> Store:
        scheme, root = location.scheme, location.root
        settings = self.config.settings_for(scheme, root)
        tuning = self.config.transfer
        if scheme == "file":
            from scitq_bench.storage.local import LocalStore
            return LocalStore()
        if scheme in ("http", "https"):
            from scitq_bench.storage.http import HttpStore
            return HttpStore(scheme, root, location.query)
        if scheme == "s3":
            from scitq_bench.storage.s3 import S3Store
            return S3Store(root, settings, tuning)
        if scheme == "azure":
            from scitq_bench.storage.azure import AzureStore
            return AzureStore(root, settings, tuning)
        from scitq_bench.storage.ftp import FtpStore
        return FtpStore(root, settings, tuning, tls=scheme == "ftps")

    def close(self) -> None:
        with self._lock:
            stores, self._open = list(self._open.values()), {}
        for store in stores:
            store.close()
