"""A throwaway PostgreSQL server from the machine's own binaries.

The test command starts one for the whole run and exports its URL in
SCITQ_BENCH_TEST_PG_URL; when that is missing (plain ``pytest``), the fixtures start
one themselves. PostgreSQL refuses to run as root, so as root it runs as the
``postgres`` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scitq_bench.server.pgtools import candidates


def find_binary(name: str) -> str:
    """``name`` on PATH, else the newest packaged version's (as the server finds pg_dump)."""
    found = candidates(name)
    if found:
        return found[0]
    raise RuntimeError(f"PostgreSQL binary {name!r} not found; install the postgresql package")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        return ["runuser", "-u", "postgres", "--"]

    def start(self) -> None:
        data = self.root / "data"
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            [*self._as_owner(), find_binary("initdb"), "-D", str(data), "-U", "postgres",
             "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True,
        )
        subprocess.run(
            [*self._as_owner(), find_binary("pg_ctl"), "-D", str(data), "-l",
             str(self.root / "server.log"), "-w", "-t", "60", "start", "-o",
             f"-p {self.port} -k {self.root} -h 127.0.0.1 -c fsync=off "
             "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"],
            check=True, capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            [*self._as_owner(), find_binary("pg_ctl"), "-D", str(self.root / "data"), "-m",
             "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    root = Path(tempfile.mkdtemp(prefix="scitq-bench-pg-"))
    os.chmod(root, 0o755)
    server = PostgresServer(root=root, port=free_port())
    server.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("PostgreSQL did not start")


def main() -> None:
    """``python -m tests.support.postgres start|stop ROOT``: used by the test script."""
    import sys

    if sys.argv[1] == "start":
        server = start_postgres()
        print(f"{server.root} {server.url}")
    else:
        root = Path(sys.argv[2])
        PostgresServer(root=root, port=0).stop()


if __name__ == "__main__":
    main()
