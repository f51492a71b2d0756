"""A throwaway container engine: Podman's Docker-compatible service on a private socket.

The test command starts one for the whole run and exports ``DOCKER_HOST`` (and
``SCITQ_BENCH_TEST_ENGINE=required``, so engine tests fail rather than skip if it is
gone); plain ``pytest`` starts one itself when podman is installed. Two settings make
Podman work on hosts with a hybrid cgroup layout and a low open-files hard limit:
the runc runtime and lowered default ulimits (see ``CONTAINERS_CONF``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEST_IMAGE = "localhost/scitq-bench-busybox:test"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""
BUSYBOX_APPLETS = (
    "sh", "cat", "echo", "ls", "sleep", "awk", "sed", "grep", "head", "tail", "wc", "id",
    "touch", "mkdir", "rm", "cp", "mv", "ln", "env", "true", "false", "dd", "seq", "tr",
    "test", "printf", "date", "hostname", "ip", "ping", "wget", "nc", "find", "stat",
    "chmod", "kill", "expr", "sort", "uniq", "cut", "yes", "tee", "readlink", "basename",
)


@dataclass
class Engine:
    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "podman.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def conf(self) -> Path:
        return self.root / "containers.conf"

    def environment(self) -> dict[str, str]:
        """What a podman command or the service needs to use these settings."""
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def start(self) -> None:
        self.conf.write_text(CONTAINERS_CONF)
        log = open(self.root / "service.log", "wb")  # noqa: SIM115 - the service keeps it
        process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", self.docker_host],
            env=self.environment(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, cwd=self.root,  # conmon drops files (oom) in its cwd
        )
        (self.root / "service.pid").write_text(str(process.pid))
        self._wait_ready(process)
        self.ensure_image(TEST_IMAGE)

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        import docker

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"podman service exited: {self.log_tail()}")
            if self.socket.exists():
                try:
                    docker.DockerClient(base_url=self.docker_host, timeout=5).ping()
                    return
                except Exception:  # noqa: BLE001 - not ready yet
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"podman service did not answer: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.root / "service.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def ensure_image(self, reference: str) -> None:
        import docker

        ensure_test_image(docker.DockerClient(base_url=self.docker_host, timeout=60),
                          reference, self.root)

    def stop(self) -> None:
        try:
            pid = int((self.root / "service.pid").read_text())
        except (OSError, ValueError):
            pid = None
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            else:
                _wait_gone(pid, 15)
        shutil.rmtree(self.root, ignore_errors=True)


def ensure_test_image(client: Any, reference: str, scratch: Path) -> None:
    """A busybox image built locally (no registry here), through the engine's API so
    it works with Docker and Podman alike: sh, awk, sleep, ..."""
    import docker.errors

    try:
        client.images.get(reference)
        return
    except docker.errors.ImageNotFound:
        pass
    archive = build_busybox_rootfs(scratch)
    answer = client.api.import_image_from_data(archive.read_bytes())
    image_id = json.loads(answer.strip().splitlines()[-1])["id"]
    repository, tag = reference.rsplit(":", 1)
    client.images.get(image_id).tag(repository, tag)  # some engines ignore import's tag


def build_busybox_rootfs(directory: Path) -> Path:
    """A tar of a root filesystem holding only the static busybox and its applets."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    archive = directory / "busybox-rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size, info.mode = len(passwd), 0o644
        tar.addfile(info, io.BytesIO(passwd))
    return archive


def _wait_gone(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_engine() -> Engine:
    root = Path(tempfile.mkdtemp(prefix="scitq-bench-engine-"))
    engine = Engine(root)
    try:
        engine.start()
    except BaseException:
        engine.stop()
        raise
    return engine


def main() -> None:
    """``python -m tests.support.engine start`` prints ROOT DOCKER_HOST CONTAINERS_CONF;
    ``stop ROOT`` stops that service and removes its directory."""
    if sys.argv[1] == "start":
        engine = start_engine()
        print(f"{engine.root} {engine.docker_host} {engine.conf}")
    else:
        Engine(Path(sys.argv[2])).stop()


if __name__ == "__main__":
    main()
