"""Real object-store servers for the storage tests: moto's S3 server, Azurite's blob
service, and an FTP and an FTPS server, each a process of its own on 127.0.0.1.

The test command starts them all for the whole run: ``python -m
tests.support.objectstores start`` prints one line of shell ``export`` statements (the
SCITQ_BENCH_TEST_* variables below) that it evaluates, and ``stop ROOT`` stops what that
start started. Plain ``pytest`` starts each server the tests use through the fixtures of
tests/conftest.py. Azurite is a Node.js package, installed once under .cache/azurite.
"""

from __future__ import annotations

import datetime
import fcntl
import ftplib
import ipaddress
import os
import random
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scitq_bench.storage.config import StorageConfig
from tests.support.postgres import free_port

REPO = Path(__file__).resolve().parents[2]
AZURITE_PREFIX = REPO / ".cache" / "azurite"
AZURITE_PACKAGE = "azurite@3"
# Azurite's development account: published in Azure's documentation, valid nowhere else
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")
FTP_USER = "scitq-test"
START_SECONDS = 60.0
NPM_SECONDS = 600.0
STOP_SECONDS = 10.0
PASSIVE_PORTS = 64  # each FTP server's passive range, below Linux's ephemeral ports

# What the test command exports, read by the fixtures
S3_ENDPOINT = "SCITQ_BENCH_TEST_S3_ENDPOINT"
AZURITE = "SCITQ_BENCH_TEST_AZURITE"
FTP = "SCITQ_BENCH_TEST_FTP"
FTPS = "SCITQ_BENCH_TEST_FTPS"
FTP_USER_VARIABLE = "SCITQ_BENCH_TEST_FTP_USER"
FTP_PASSWORD = "SCITQ_BENCH_TEST_FTP_PASSWORD"
FTP_ROOT = "SCITQ_BENCH_TEST_FTP_ROOT"  # the directory both FTP servers serve
FTPS_CAFILE = "SCITQ_BENCH_TEST_FTPS_CAFILE"  # the FTPS server's self-signed certificate
ROOT = "SCITQ_BENCH_TEST_OBJECT_STORES_ROOT"  # what ``stop`` takes
REQUIRED = "SCITQ_BENCH_TEST_OBJECT_STORES"  # "required": fail, never skip


class Missing(RuntimeError):
    """This machine lacks a component a server needs (Node.js, npm, Azurite)."""


def required() -> bool:
    return os.environ.get(REQUIRED) == "required"


@dataclass(frozen=True)
class AzureContainer:
    """A container on Azurite, addressed as ``azure://account/container/path``."""

    account: str
    container: str
    connection_string: str

    def uri(self, path: str = "") -> str:
        return f"azure://{self.account}/{self.container}/{path}"


@dataclass(frozen=True)
class FtpSite:
    """An FTP (or FTPS) server serving ``root``, a directory of this machine; ``base`` is
    a test's own folder under it (``folder`` on this machine, ``uri()`` on the server)."""

    host: str
    port: int
    user: str
    password: str
    root: Path
    tls: bool = False
    cafile: Path | None = None
    base: str = ""

    @property
    def scheme(self) -> str:
        return "ftps" if self.tls else "ftp"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def folder(self) -> Path:
        return self.root / self.base

    def uri(self, path: str = "") -> str:
        return f"{self.url}/{self.base + '/' if self.base else ''}{path}"


class Processes:
    """The servers started under one temporary directory. Each runs in a process group
    of its own whose id is kept in NAME.pid, so ``stop`` needs only the directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls) -> Processes:
        return cls(Path(tempfile.mkdtemp(prefix="scitq-bench-stores-")))

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with open(self.log(name), "wb") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       env={**os.environ, **(env or {})}, cwd=cwd or self.root,
                                       start_new_session=True)
        (self.root / f"{name}.pid").write_text(str(process.pid))
        return process

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def log_tail(self, name: str) -> str:
        try:
            return self.log(name).read_text(errors="replace")[-2000:].strip() or "(no output)"
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        groups = []
        for pidfile in self.root.glob("*.pid"):
            try:
                groups.append(int(pidfile.read_text()))
                os.killpg(groups[-1], signal.SIGTERM)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + STOP_SECONDS
        for group in groups:
            while _group_alive(group) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _group_alive(group):
                try:
                    os.killpg(group, signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


def _group_alive(group: int) -> bool:
    try:  # a leader that is this process's child stays a zombie until reaped
        os.waitpid(group, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait(processes: Processes, name: str, process: subprocess.Popen[bytes],
          answers: Callable[[], bool], what: str) -> None:
    """Wait until ``answers()``; fail, naming ``what`` and its output, if the process
    exits or START_SECONDS pass."""
    deadline = time.monotonic() + START_SECONDS
    while not answers():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before "
                               f"answering: {processes.log_tail(name)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {START_SECONDS:.0f}s: "
                               f"{processes.log_tail(name)}")
        time.sleep(0.1)


def _http_answers(url: str) -> Callable[[], bool]:
    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # an error status is an answer
        except OSError:
            return False

    return answers


def _ftp_answers(port: int) -> Callable[[], bool]:
    def answers() -> bool:
        try:
            with ftplib.FTP() as client:
                client.connect("127.0.0.1", port, timeout=2)
            return True
        except (OSError, ftplib.Error, EOFError):
            return False

    return answers


# -- moto ------------------------------------------------------------------------------


def start_moto(processes: Processes, name: str = "moto",
               env: dict[str, str] | None = None) -> str:
    """moto's standalone S3 server; returns its endpoint URL. ``env`` reaches the server
    (INITIAL_NO_AUTH_ACTION_COUNT=0 makes it check credentials, say)."""
    port = free_port()
    process = processes.spawn(name, [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                     "-p", str(port)], env)
    endpoint = f"http://127.0.0.1:{port}"
    _wait(processes, name, process, _http_answers(endpoint + "/"), "moto's S3 server")
    return endpoint


# -- Azurite ---------------------------------------------------------------------------


def azurite_binary() -> Path:
    """Azurite's blob service, installed with npm under .cache/azurite when missing (one
    installer at a time: parallel test workers wait for the first)."""
    binary = AZURITE_PREFIX / "node_modules" / ".bin" / "azurite-blob"
    installed = binary.exists()
    lacking = [tool for tool in ("node", "npm")[:1 if installed else 2]
               if shutil.which(tool) is None]
    if lacking:
        raise Missing(f"Azurite needs {' and '.join(lacking)}: install the nodejs and npm "
                      "packages")
    if installed:
        return binary
    AZURITE_PREFIX.mkdir(parents=True, exist_ok=True)
    with open(AZURITE_PREFIX / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        try:
            done = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(AZURITE_PREFIX),
                 AZURITE_PACKAGE], capture_output=True, text=True, timeout=NPM_SECONDS)
        except subprocess.TimeoutExpired:
            raise Missing(f"npm install {AZURITE_PACKAGE} into {AZURITE_PREFIX} took more "
                          f"than {NPM_SECONDS:.0f}s") from None
        if done.returncode != 0 or not binary.exists():
            output = (done.stderr or done.stdout).strip()[-1500:]
            raise Missing(f"npm install {AZURITE_PACKAGE} into {AZURITE_PREFIX} failed "
                          f"(status {done.returncode}): {output}")
    return binary


def azurite_connection_string(endpoint: str) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};")


def start_azurite(processes: Processes) -> str:
    """Azurite's blob service with its data under ``processes.root``; returns the
    connection string of its development account."""
    binary = azurite_binary()
    port = free_port()
    data = processes.root / "azurite"
    data.mkdir()
    process = processes.spawn("azurite", [
        str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
        str(data), "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"])
    endpoint = f"http://127.0.0.1:{port}"
    _wait(processes, "azurite", process,
          _http_answers(f"{endpoint}/{AZURITE_ACCOUNT}?comp=list"), "Azurite's blob service")
    return azurite_connection_string(endpoint)


# -- FTP and FTPS ------------------------------------------------------------------------


def write_self_signed(cert: Path, key: Path, host: str = "127.0.0.1") -> None:
    """A self-signed certificate for ``host`` (and localhost) that clients can trust as
    its own authority (``cafile``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = private.public_key()
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=False,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    key.chmod(0o600)


def start_ftp(processes: Processes, root: Path, password: str, tls: bool) -> FtpSite:
    """pyftpdlib serving ``root`` to FTP_USER; with ``tls``, explicit TLS required on
    every connection, with a self-signed certificate made here."""
    name = "ftps" if tls else "ftp"
    port = free_port()
    low = random.randrange(20000, 30000 - PASSIVE_PORTS)
    argv = [sys.executable, "-m", "tests.support.ftpserver", str(root), str(port), FTP_USER,
            password, "--passive", f"{low}-{low + PASSIVE_PORTS - 1}"]
    cafile = None
    if tls:
        cafile, key = processes.root / "ftps-cert.pem", processes.root / "ftps-key.pem"
        write_self_signed(cafile, key)
        argv += ["--tls", str(cafile), str(key)]
    process = processes.spawn(name, argv, cwd=REPO)
    _wait(processes, name, process, _ftp_answers(port), f"the {name.upper()} server")
    return FtpSite("127.0.0.1", port, FTP_USER, password, root, tls, cafile)


def start_ftp_pair(processes: Processes) -> tuple[FtpSite, FtpSite]:
    """An FTP and an FTPS server serving the same directory to the same user."""
    root = processes.root / "ftp-root"
    root.mkdir()
    password = secrets.token_hex(12)
    return start_ftp(processes, root, password, False), start_ftp(processes, root, password, True)


# -- the environment the test command exports ------------------------------------------------


def ftp_environment(plain: FtpSite, tls: FtpSite) -> dict[str, str]:
    return {FTP: plain.url, FTPS: tls.url, FTP_USER_VARIABLE: plain.user,
            FTP_PASSWORD: plain.password, FTP_ROOT: str(plain.root),
            FTPS_CAFILE: str(tls.cafile)}


def ftp_sites_from(environ: Any) -> tuple[FtpSite, FtpSite] | None:
    """The FTP and FTPS servers the environment names; None when it names none."""
    if not environ.get(FTP):
        return None
    sites = []
    for variable, tls in ((FTP, False), (FTPS, True)):
        host, _, port = environ[variable].split("://", 1)[1].rpartition(":")
        sites.append(FtpSite(host, int(port), environ[FTP_USER_VARIABLE],
                             environ[FTP_PASSWORD], Path(environ[FTP_ROOT]), tls,
                             Path(environ[FTPS_CAFILE]) if tls else None))
    return sites[0], sites[1]


def start_all(processes: Processes) -> dict[str, str]:
    """Every server, under ``processes.root``; returns the variables naming them."""
    environment = {ROOT: str(processes.root), S3_ENDPOINT: start_moto(processes),
                   AZURITE: start_azurite(processes)}
    environment.update(ftp_environment(*start_ftp_pair(processes)))
    return environment


def storage_config_for(*sites: AzureContainer | FtpSite, s3_endpoint: str | None = None,
                       transfer: dict[str, int] | None = None) -> StorageConfig:
    """Storage settings that reach these test servers: the Azurite account's connection
    string, each FTP site's user and password, moto's endpoint for every bucket."""
    data: dict[str, Any] = {}
    if s3_endpoint:
        data["s3"] = {"*": {"endpoint_url": s3_endpoint, "region": "us-east-1"}}
    for site in sites:
        if isinstance(site, AzureContainer):
            data.setdefault("azure", {})[site.account] = {
                "connection_string": site.connection_string}
        else:
            data.setdefault("ftp", {})[f"{site.host}:{site.port}"] = {
                "user": site.user, "password": site.password}
    if transfer:
        data["transfer"] = transfer
    return StorageConfig.from_mapping(data)


def main() -> None:
    """``python -m tests.support.objectstores start`` prints ``export VAR=VALUE ...``;
    ``stop ROOT`` stops the servers that start started and removes their directory."""
    if sys.argv[1] == "start":
        processes = Processes.create()
        try:
            environment = start_all(processes)
        except BaseException as exc:
            processes.stop()
            if isinstance(exc, Exception):
                sys.exit(f"object stores did not start: {exc}")
            raise
        print("export " + " ".join(f"{name}={shlex.quote(value)}"
                                   for name, value in environment.items()))
    else:
        Processes(Path(sys.argv[2])).stop()


if __name__ == "__main__":
    main()
