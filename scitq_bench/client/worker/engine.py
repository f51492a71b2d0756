"""The worker's container engine: connection, images, orphans and the image cache.

Any engine speaking the Docker API works: Docker itself, or Podman's compatible
service (``podman system service``); ``DOCKER_HOST`` says where it listens.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from scitq_bench.client.worker.container import LABEL_WORKER

log = logging.getLogger("scitq_bench.worker")

DEFAULT_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
PRESENT_FOR = 10.0  # seconds an image found present is trusted to still be there


class ImagePullFailed(Exception):
    """The image is neither here nor obtainable; the message is the engine's."""


def connect(docker_host: str | None = None, timeout: float = 60) -> Any | None:
    """A ``docker.DockerClient`` that answered a ping, or None when there is no engine
    (the worker then runs processes only and says so at registration)."""
    import docker

    host = resolve_host(docker_host)
    if host is None:
        return None
    try:
        client = docker.DockerClient(base_url=host, timeout=int(timeout))
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable engine"
        log.warning("no container engine at %s: %s", host, exc)
        return None
    return client


def resolve_host(docker_host: str | None = None) -> str | None:
    """The engine's address: ``docker_host``, else ``DOCKER_HOST``, else the first of
    Docker's or Podman's default sockets that exists; None when there is none."""
    host = docker_host or os.environ.get("DOCKER_HOST")
    if host is None:
        host = next((f"unix://{path}" for path in DEFAULT_SOCKETS if os.path.exists(path)), None)
    return host


def split_reference(reference: str) -> tuple[str, str | None]:
    """(repository, tag or digest) as the pull API wants them: ``repo@sha256:...`` keeps
    its digest, ``host:5000/repo`` has no tag, a bare name means ``latest``."""
    if "@" in reference:
        repository, digest = reference.split("@", 1)
        return repository, digest
    last = reference.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = reference.rsplit(":", 1)
        return repository, tag
    return reference, "latest"


class Engine:
    """What the worker asks of the engine besides running containers."""

    def __init__(self, client: Any, worker: str, state_dir: Path, *,
                 pull_attempts: int = 3, pull_backoff: float = 2.0,
                 prune_threshold: float = 0.8, image_max_idle: float = 7 * 86400,
                 prune_every: float = 60.0, host: str | None = None) -> None:
        """``host``: the engine's address, for the keeper (which removes this worker's
        containers when it dies); None: ``resolve_host``'s."""
        self.client = client
        self.worker = worker
        self.host = host or resolve_host()
        self.pull_attempts = pull_attempts
        self.pull_backoff = pull_backoff
        self.prune_threshold = prune_threshold
        self.image_max_idle = image_max_idle
        self.prune_every = prune_every
        self.images = ImageUse(state_dir / "images.json")
        self._pulls: dict[str, threading.Lock] = {}
        self._pulls_lock = threading.Lock()
        self._last_prune = 0.0
        self._seen: dict[str, float] = {}  # image -> when last found present

    # -- images --------------------------------------------------------------------------

    def ensure_image(self, reference: str, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Make ``reference`` available locally: used as is when present (local images
        need no registry), else pulled, with retries. One pull per image at a time:
        executions waiting for the same image share it."""
        if time.monotonic() - self._seen.get(reference, -PRESENT_FOR) < PRESENT_FOR:
            return  # seen here a moment ago: spare the engine a call per task
        with self._pulls_lock:
            lock = self._pulls.setdefault(reference, threading.Lock())
        with lock:
            if self._present(reference):
                self.images.touch(reference)
                self._seen[reference] = time.monotonic()
                return
            error: str | None = "no pull attempted"
            for attempt in range(1, self.pull_attempts + 1):
                if cancelled():
                    return
                error = self._pull(reference)
                if not error:
                    self.images.touch(reference)
                    self._seen[reference] = time.monotonic()
                    return
                log.warning("pulling %s failed (attempt %d of %d): %s", reference, attempt,
                            self.pull_attempts, error)
                if attempt < self.pull_attempts:
                    time.sleep(self.pull_backoff * attempt)
            raise ImagePullFailed(error)

    def _present(self, reference: str) -> bool:
        import docker.errors

        try:
            self.client.images.get(reference)
            return True
        except docker.errors.ImageNotFound:
            return False

    def _pull(self, reference: str) -> str | None:
        """None on success, else the engine's words (pull errors come in the stream)."""
        repository, tag = split_reference(reference)
        try:
            for event in self.client.api.pull(repository, tag=tag, stream=True, decode=True):
                if isinstance(event, dict) and event.get("error"):
                    return str(event["error"])
        except Exception as exc:  # noqa: BLE001 - the engine's message is what matters
            return str(getattr(exc, "explanation", None) or exc)
        return None if self._present(reference) else f"{reference} is still missing after the pull"

    # -- orphans -------------------------------------------------------------------------

    def remove_orphans(self) -> int:
        """Containers a previous run of this worker left: remove them (killing those
        still running). Their executions are re-queued as lost by the server when this
        worker registers again, so nothing runs twice and nothing is left behind."""
        try:
            found = self.client.containers.list(
                all=True, filters={"label": f"{LABEL_WORKER}={self.worker}"})
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot list this worker's old containers: %s", exc)
            return 0
        for container in found:
            try:
                container.remove(force=True)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not remove old container %s: %s", container.name, exc)
        if found:
            log.warning("removed %d container(s) left by a previous run of %s",
                        len(found), self.worker)
        return len(found)

    # -- image cache ---------------------------------------------------------------------

    def maybe_prune(self, in_use: Callable[[], Iterable[str]]) -> list[str]:
        """When the engine's disk is fuller than ``prune_threshold``, remove the images
        this worker pulled or used that nobody used for ``image_max_idle`` seconds, but
        those ``in_use()`` names (asked only then). Checked at most every
        ``prune_every`` seconds. Returns the removed images."""
        now = time.time()
        if now - self._last_prune < self.prune_every:
            return []
        self._last_prune = now
        usage = self._disk_usage()
        if usage is None or usage < self.prune_threshold:
            return []
        busy = set(in_use())
        removed = []
        for reference in self.images.idle_since(now - self.image_max_idle):
            if reference in busy:
                continue
            try:
                self.client.images.remove(reference)
            except Exception as exc:  # noqa: BLE001 - used by a container, or already gone
                log.info("not pruning image %s: %s", reference, exc)
                if "no such image" not in str(exc).lower() and "not known" not in str(exc).lower():
                    continue
            self.images.forget(reference)
            self._seen.pop(reference, None)
            removed.append(reference)
        if removed:
            log.info("pruned %d idle image(s) at %.0f%% disk use: %s", len(removed),
                     usage * 100, ", ".join(removed))
        return removed

    def _disk_usage(self) -> float | None:
        """Used fraction of the disk holding the engine's images, when it is on this
        machine (a remote engine manages its own disk)."""
        try:
            root = self.client.info().get("DockerRootDir")
        except Exception:  # noqa: BLE001
            return None
        if not root or not os.path.isdir(root):
            return None
        usage = shutil.disk_usage(root)
        return usage.used / usage.total if usage.total else None


class ImageUse:
    """When each image was last used by this worker, kept on disk across restarts
    (engines do not record it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._last: dict[str, float] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._last = {}

    def touch(self, reference: str) -> None:
        with self._lock:
            self._last[reference] = time.time()
            self._save()

    def forget(self, reference: str) -> None:
        with self._lock:
            self._last.pop(reference, None)
            self._save()

    def idle_since(self, moment: float) -> list[str]:
        with self._lock:
            return sorted(ref for ref, last in self._last.items() if last <= moment)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._last, sort_keys=True))
        os.replace(temporary, self.path)
