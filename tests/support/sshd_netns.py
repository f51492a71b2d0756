"""A real SSH target for deployment tests: OpenSSH's sshd in a network namespace.

As root: a network namespace joined to this one by a veth pair on a private /30
(10.203.X.Y), a throwaway host key and client key pair, and ``sshd -D`` inside the
namespace listening on its side of the pair, accepting the client key for root. The
namespace has its own network only: its filesystem and processes are this machine's, so
"the remote host" is this machine seen over SSH, and it reaches this namespace's
services only through ``host_address`` (bind test servers there).

Needs root, ``ip`` (iproute2), ``ssh-keygen`` and ``/usr/sbin/sshd`` (openssh-server).
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SUBNET = ipaddress.ip_network("10.203.0.0/16")


def missing() -> str | None:
    """Why an SSH target cannot be started here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (iproute2, openssh-client)"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing (openssh-server)"
    return None


@dataclass
class SshTarget:
    root: Path
    namespace: str
    host_veth: str
    host_address: str  # this namespace's side: where the target reaches us
    address: str  # the target's side: where sshd listens
    client_key: Path
    port: int = 22
    user: str = "root"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    owns_root: bool = False  # a temporary root, removed by stop()

    def namespace_pids(self) -> list[int]:
        found = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True,
                               text=True, check=False)
        return [int(pid) for pid in found.stdout.split()]

    def ssh(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on the target with the client key (a check for tests)."""
        return subprocess.run(
            ["ssh", "-i", str(self.client_key), "-p", str(self.port),
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", f"{self.user}@{self.address}",
             command],
            capture_output=True, text=True, timeout=timeout, check=False)

    def log(self) -> str:
        path = self.root / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop sshd and whatever still runs in the namespace, then delete the namespace
        and the veth pair."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.namespace_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "link", "del", self.host_veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, check=False)
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


def _used_networks() -> list[ipaddress.IPv4Network]:
    shown = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True,
                           check=True).stdout
    networks = []
    for line in shown.splitlines():
        fields = line.split()
        if "inet" in fields:
            networks.append(ipaddress.ip_interface(fields[fields.index("inet") + 1]).network)
    return networks


def _free_pair() -> tuple[str, str]:
    used = _used_networks()
    for _ in range(100):
        base = int(SUBNET.network_address) + 4 * random.randrange(SUBNET.num_addresses // 4)
        network = ipaddress.ip_network(f"{ipaddress.ip_address(base)}/30")
        if not any(network.overlaps(other) for other in used):
            return str(network.network_address + 1), str(network.network_address + 2)
    raise RuntimeError(f"no free /30 in {SUBNET}")


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


def _keygen(path: Path) -> None:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "scitq-bench-test", "-f",
         str(path))


def start_sshd(root: Path | None = None, timeout: float = 20.0) -> SshTarget:
    """Start an SSH target; ``stop()`` it when done (it also cleans up after a failed
    start)."""
    reason = missing()
    if reason:
        raise RuntimeError(f"cannot start an SSH target: {reason}")
    owns_root = root is None
    root = Path(root or tempfile.mkdtemp(prefix="scitq-sshd-"))
    root.mkdir(parents=True, exist_ok=True)
    suffix = f"{os.getpid() % 100000:05d}{random.randrange(1000):03d}"
    host_address, address = _free_pair()
    target = SshTarget(root=root, namespace=f"scitqb-{suffix}", host_veth=f"sbh{suffix}",
                       host_address=host_address, address=address,
                       client_key=root / "client_key", owns_root=owns_root)
    try:
        _run("ip", "netns", "add", target.namespace)
        peer = f"sbn{suffix}"
        _run("ip", "link", "add", target.host_veth, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", target.namespace)
        _run("ip", "addr", "add", f"{host_address}/30", "dev", target.host_veth)
        _run("ip", "link", "set", target.host_veth, "up")
        inside = ("ip", "netns", "exec", target.namespace)
        _run(*inside, "ip", "addr", "add", f"{address}/30", "dev", peer)
        _run(*inside, "ip", "link", "set", peer, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")

        _keygen(root / "host_key")
        _keygen(target.client_key)
        authorized = root / "authorized_keys"
        shutil.copyfile(root / "client_key.pub", authorized)
        authorized.chmod(0o600)
        config = root / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {address}",
            f"Port {target.port}",
            f"HostKey {root / 'host_key'}",
            f"PidFile {root / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",  # no PAM session modules (loginuid...) to trip on in containers
            "StrictModes no",  # the keys live in a temporary folder, not a home
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            "LogLevel INFO",
            "",
        ]))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
        with open(root / "sshd.log", "wb") as log:
            target.process = subprocess.Popen(
                [*inside, SSHD, "-D", "-e", "-f", str(config)], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_port(target, timeout)
    except BaseException:
        target.stop()
        raise
    return target


def _wait_port(target: SshTarget, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert target.process is not None
        if target.process.poll() is not None:
            raise RuntimeError(f"sshd exited ({target.process.returncode}): {target.log()}")
        try:
            with socket.create_connection((target.address, target.port), timeout=1) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not answer on {target.address}:{target.port} "
                               f"within {timeout:.0f} s: {target.log()}")
        time.sleep(0.1)
