"""``ftp://`` and ``ftps://`` (explicit TLS) with the standard library's ftplib.

A key is a path from the server's root as the logged-in user sees it (a chrooted
user's home). An FTP connection runs one command at a time, so the store keeps a small
pool of logged-in connections; an idle server closes them, and an operation that finds
its pooled connection dead runs again at once on a fresh one. Writes go to a hidden
temporary name in the target folder and are renamed once complete, so a reader never
sees a partial file. FTP keeps no metadata: ``sha256`` is not stored.
"""

from __future__ import annotations

import calendar
import ftplib
import io
import netrc
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from scitq_bench.storage.base import (
    AccessDenied,
    ChecksumMismatch,
    Entry,
    NotFoundError,
    Progress,
    StorageError,
    Store,
    TransientError,
    no_progress,
    with_retries,
)
from scitq_bench.storage.config import TransferTuning
from scitq_bench.storage.locations import Location

T = TypeVar("T")
DEFAULT_PORT = 21
TIMEOUT = 60.0  # seconds without a byte before a command or transfer is given up
BLOCK = 1 << 18  # bytes per read or write of a transfer, and per progress call
FTP_ERRORS = (ftplib.Error, OSError, EOFError)
DENIED_WORDS = ("denied", "permission", "privilege")
TEMPORARY = re.compile(r"\..+\.part-[0-9a-f]{8}")  # a write under way (see FtpStore._put)
Facts = dict[str, str]  # an MLSD/MLST entry's facts: type, size, modify...
Children = list[tuple[str, Facts]]  # (``list`` is FtpStore's method inside the class)
Files = list[Entry]


class _LocalFailure(Exception):
    """Carries an error raised on our side of a transfer (the progress callback, the
    local file) past the FTP error mapping, to be raised unchanged."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


def _guarded(function: Callable[[bytes], None]) -> Callable[[bytes], None]:
    def call(block: bytes) -> None:
        try:
            function(block)
        except BaseException as error:  # noqa: BLE001 - re-raised unchanged by _once
            raise _LocalFailure(error) from None
    return call


class _LocalReader:
    """A local file for ``storbinary`` whose read errors are ours, not the server's."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def read(self, size: int = -1) -> bytes:
        try:
            return self._handle.read(size)
        except BaseException as error:  # noqa: BLE001 - re-raised unchanged by _once
            raise _LocalFailure(error) from None


class _TlsFtp(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session, as
    servers that guard against data-connection theft require (vsftpd's default)."""

    def ntransfercmd(self, cmd: str,
                     rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            session = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


def _quit(conn: ftplib.FTP) -> None:
    try:
        conn.quit()
    except FTP_ERRORS:
        conn.close()


class _Pool:
    """Logged-in connections kept for reuse: at most ``size`` idle ones. Callers never
    wait for one (a progress callback may list the store it is uploading to, a reader
    may hold one for a while); the callers' own threads bound how many are open."""

    def __init__(self, connect: Callable[[], ftplib.FTP], size: int) -> None:
        self._connect = connect
        self._size = size
        self._lock = threading.Lock()
        self._idle: list[ftplib.FTP] = []
        self._busy: set[ftplib.FTP] = set()
        self._stale: set[ftplib.FTP] = set()  # busy when the pool was closed

    def acquire(self) -> tuple[ftplib.FTP, bool]:
        """A connection, and whether it was reused (it may have been dropped since)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        reused = conn is not None
        if conn is None:
            conn = self._connect()
        with self._lock:
            self._busy.add(conn)
        return conn, reused

    def release(self, conn: ftplib.FTP, healthy: bool = True) -> None:
        with self._lock:
            self._busy.discard(conn)
            keep = healthy and conn not in self._stale and len(self._idle) < self._size
            self._stale.discard(conn)
            if keep:
                self._idle.append(conn)
        if keep:
            return
        if healthy:
            _quit(conn)
        else:
            conn.close()

    def drop_idle(self) -> None:
        """Close the idle connections: one was found dropped, the others likely were."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._stale |= self._busy
        for conn in idle:
            _quit(conn)


class _RangeStream(io.RawIOBase):
    """The data connection of one RETR, cut at ``remaining`` bytes. Closing it after
    the whole transfer hands the control connection back to the pool; closing it early
    closes that connection, whose state the server's late replies would muddle."""

    def __init__(self, pool: _Pool, conn: ftplib.FTP, data: socket.socket,
                 remaining: int | None, location: Location) -> None:
        super().__init__()
        self._pool, self._conn, self._data = pool, conn, data
        self._remaining = remaining
        self._location = location
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._remaining is not None:
            view = view[:self._remaining]
        if self._eof or not len(view):
            return 0
        try:
            count = self._data.recv_into(view)
        except OSError as exc:
            raise TransientError(f"{self._location}: {exc or 'transfer interrupted'}") from None
        if count == 0:
            self._eof = True
        elif self._remaining is not None:
            self._remaining -= count
        return count

    def close(self) -> None:
        if not self.closed:
            try:
                self._finish()
            finally:
                super().close()

    def _finish(self) -> None:
        try:
            if not self._eof and self._remaining == 0:
                self._eof = self._data.recv(1) == b""  # was the range the file's end?
            if self._eof:
                if isinstance(self._data, ssl.SSLSocket):
                    self._data.unwrap()
                self._data.close()
                self._conn.voidresp()
                self._pool.release(self._conn)
                return
        except (*FTP_ERRORS, ValueError):
            pass
        self._data.close()
        self._pool.release(self._conn, healthy=False)


class FtpStore(Store):
    """One FTP host. Credentials: the settings' ``user``/``password``, else ``~/.netrc``
    for the host, else anonymous; ``passive`` (default true) picks the data mode."""

    def __init__(self, root: str, settings: dict[str, Any], tuning: TransferTuning,
                 tls: bool) -> None:
        self.scheme = "ftps" if tls else "ftp"
        self.root = root
        self._tuning = tuning
        parts = urlsplit("//" + root)
        try:
            self._host, self._port = parts.hostname or "", parts.port or DEFAULT_PORT
        except ValueError:
            raise StorageError(f"{self.location('')}: {root!r} is not host[:port]") from None
        self._user, self._password = self._credentials(settings)
        self._passive = bool(settings.get("passive", True))
        self._context = (ssl.create_default_context(cafile=settings.get("cafile")) if tls
                         else None)
        self._mlst: bool | None = None  # whether the server has MLST/MLSD (FEAT, once)
        self._pool = _Pool(self._connect, max(1, tuning.concurrency))

    # -- the Store interface

    def stat(self, key: str) -> Entry | None:
        path = self._path(key)
        return self._call(key, lambda conn: self._stat(conn, key, path))

    def list(self, prefix: str) -> Iterator[Entry]:
        folder = prefix[:prefix.rfind("/") + 1]
        self._path(prefix)
        entries = self._call(prefix, lambda conn: self._walk(conn, folder, prefix))
        yield from sorted(entries, key=lambda entry: entry.key)

    def download(self, entry: Entry, target: Path, progress: Progress) -> None:
        path = self._path(entry.key)
        with open(target, "wb") as out:
            def transfer(conn: ftplib.FTP) -> None:
                out.seek(0)
                out.truncate()
                received = 0

                def write(block: bytes) -> None:
                    nonlocal received
                    out.write(block)
                    received += len(block)
                    progress(len(block))
                conn.retrbinary(f"RETR {path}", _guarded(write), BLOCK)
                if received != entry.size:
                    raise ChecksumMismatch(
                        f"{self.location(entry.key)}: received {received} bytes where "
                        f"{entry.size} were expected (the file changed or the transfer was "
                        "cut short)")
            self._call(entry.key, transfer)

    def upload(self, source: Path, key: str, progress: Progress,
               sha256: str | None = None) -> None:
        with open(source, "rb") as handle:
            self._put(key, handle, progress)

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """With ``if_absent``, a file found by a first look is left alone; FTP has no
        atomic create-if-absent, so a writer racing between that look and the rename
        may be overwritten."""
        if if_absent and self.stat(key) is not None:
            return False
        self._put(key, io.BytesIO(data), no_progress)
        return True

    def read(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        path = self._path(key)
        if end is not None and end <= start:
            return io.BytesIO(b"")
        remaining = None if end is None else end - start

        def open_range(conn: ftplib.FTP) -> BinaryIO:
            data = conn.transfercmd(f"RETR {path}", rest=start or None)
            stream = _RangeStream(self._pool, conn, data, remaining, self.location(key))
            return io.BufferedReader(stream, BLOCK)
        return self._call(key, open_range, hold=True)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            self._call(key, lambda conn: conn.delete(path))
        except NotFoundError:
            pass

    def close(self) -> None:
        self._pool.close()

    # -- connections, retries and errors

    def _credentials(self, settings: dict[str, Any]) -> tuple[str, str]:
        if settings.get("user"):
            return str(settings["user"]), str(settings.get("password") or "")
        try:
            found = netrc.netrc().authenticators(self._host)
        except FileNotFoundError:
            found = None
        except netrc.NetrcParseError as exc:
            # The parser's message may quote a token of the file (a password): keep
            # only the permission checks' own words.
            why = exc.msg if exc.msg.startswith("~/.netrc") else f"line {exc.lineno} is malformed"
            raise StorageError(f"{self.location('')}: cannot use ~/.netrc: {why}") from None
        except OSError as exc:
            raise StorageError(f"{self.location('')}: cannot read ~/.netrc: "
                               f"{exc.strerror}") from None
        if found:
            return found[0] or "anonymous", found[2] or ""
        return "anonymous", "anonymous@"

    def _connect(self) -> ftplib.FTP:
        conn = (_TlsFtp(context=self._context, timeout=TIMEOUT) if self._context is not None
                else ftplib.FTP(timeout=TIMEOUT))
        try:
            conn.connect(self._host, self._port)
            conn.login(self._user, self._password)
            if isinstance(conn, ftplib.FTP_TLS):
                conn.prot_p()
            conn.set_pasv(self._passive)
            conn.voidcmd("TYPE I")
            if self._mlst is None:
                self._mlst = "MLST" in _features(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _call(self, key: str, operation: Callable[[ftplib.FTP], T], hold: bool = False) -> T:
        """Run ``operation`` on a pooled connection, tried again on transient failures
        of the server's (never on our own: they are raised as they came). With ``hold``,
        its result keeps the connection (a stream releases it)."""
        try:
            return with_retries(lambda: self._once(key, operation, hold), f"ftp {key}",
                                attempts=self._tuning.attempts)
        except _LocalFailure as failure:
            error = failure.error
        raise error

    def _once(self, key: str, operation: Callable[[ftplib.FTP], T], hold: bool) -> T:
        for last in (False, True):
            try:
                conn, reused = self._pool.acquire()
            except FTP_ERRORS as exc:
                raise self._error(key, exc) from None
            try:
                result = operation(conn)
            except FTP_ERRORS as exc:
                clean = _clean_reply(exc)
                self._pool.release(conn, healthy=clean)
                if reused and not clean and not last:
                    self._pool.drop_idle()  # dropped while idle: once more, on a fresh one
                    continue
                raise self._error(key, exc) from None
            except BaseException:
                self._pool.release(conn, healthy=False)
                raise
            if not hold:
                self._pool.release(conn)
            return result
        raise AssertionError(key)  # the loop returns or raises

    def _error(self, key: str, exc: BaseException) -> StorageError:
        where = self.location(key)
        if isinstance(exc, ftplib.error_perm):
            reply = str(exc).strip()
            code = reply[:3]
            if code in ("530", "532") or (code == "550" and _denied(reply)):
                return AccessDenied(f"{where}: {reply}")
            if code == "550":
                return NotFoundError(f"{where}: {reply}")
            return StorageError(f"{where}: {reply}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return StorageError(f"{where}: the server's certificate is not trusted "
                                f"({exc.verify_message}); add its CA to SSL_CERT_FILE")
        if isinstance(exc, EOFError):
            return TransientError(f"{where}: the server closed the connection")
        return TransientError(f"{where}: {str(exc).strip() or type(exc).__name__}")

    def _path(self, key: str) -> str:
        if "\r" in key or "\n" in key:
            raise StorageError(f"{self.location(key)}: FTP paths cannot hold line breaks")
        return "/" + key

    # -- operations on one connection

    def _stat(self, conn: ftplib.FTP, key: str, path: str) -> Entry | None:
        facts = self._facts_of(conn, path)
        return _entry(key, facts) if facts and facts.get("type") == "file" else None

    def _facts_of(self, conn: ftplib.FTP, path: str) -> Facts | None:
        """MLST's facts of ``path``, or SIZE and MDTM's; None when nothing is there and
        ``{"type": "dir"}`` for what has no size (a folder)."""
        try:
            if self._mlst:
                facts = _mlst_facts(conn.sendcmd(f"MLST {path}"))
                if facts.get("type") != "file" or "size" in facts:
                    return facts
            size = conn.size(path)
            modify = conn.sendcmd(f"MDTM {path}")[4:].strip()
        except ftplib.error_perm as exc:
            if not _missing(exc):
                raise
            return None if self._mlst else {"type": "dir"}
        if size is None:  # a reply other than 213: no size to give
            return {"type": "dir"}
        return {"type": "file", "size": str(size), "modify": modify}

    def _walk(self, conn: ftplib.FTP, folder: str, prefix: str) -> Files:
        """The files under ``folder`` whose key starts with ``prefix``, at any depth,
        going only into the subfolders that may hold some."""
        found: Files = []
        pending = [folder]
        while pending:
            current = pending.pop()
            for name, facts in self._children(conn, current):
                key = current + name
                kind = facts.get("type", "").lower()
                if kind == "dir" and (prefix.startswith(key + "/") or key.startswith(prefix)):
                    pending.append(key + "/")
                elif kind == "file" and key.startswith(prefix) and not TEMPORARY.fullmatch(name):
                    found.append(_entry(key, facts))
        return found

    def _children(self, conn: ftplib.FTP, folder: str) -> Children:
        """A folder's entries as (name, MLSD facts); without MLSD, NLST and a SIZE and
        MDTM for each name (a name without a size is taken for a folder)."""
        path = self._path(folder).rstrip("/") or "/"
        try:
            if self._mlst:
                listing = [(name, facts) for name, facts in conn.mlsd(path)
                           if facts.get("type", "").lower() in ("file", "dir")]
            else:
                names = {line.rsplit("/", 1)[-1] for line in conn.nlst(path)} - {"", ".", ".."}
        except (ftplib.error_perm, ftplib.error_temp) as exc:
            # no such folder: 550, or 501 (pyftpdlib); an empty one: 450 for some servers
            if _missing(exc) or str(exc)[:3] in ("450", "501"):
                return []
            raise
        finally:
            conn.voidcmd("TYPE I")  # listings switch to ASCII, where SIZE and REST fail
        if self._mlst:
            return listing
        children: Children = []
        for name in names:
            facts = self._facts_of(conn, f"{path.rstrip('/')}/{name}")
            if facts is not None:
                children.append((name, facts))
        return children

    def _put(self, key: str, handle: BinaryIO, progress: Progress) -> None:
        """Store ``handle``'s bytes at ``key`` through a temporary name in its folder."""
        path = self._path(key)
        folder, _, name = path.rpartition("/")
        temporary = f"{folder}/.{name}.part-{secrets.token_hex(4)}"

        def transfer(conn: ftplib.FTP) -> None:
            try:
                self._store(conn, temporary, handle, progress)
            except ftplib.error_perm as exc:
                if str(exc)[:3] not in ("550", "553"):
                    raise
                _make_folders(conn, folder)  # the folder may be missing: make it, try again
                self._store(conn, temporary, handle, progress)
            _rename(conn, temporary, path)
        try:
            self._call(key, transfer)
        except BaseException:
            self._remove_quietly(temporary)
            raise

    def _store(self, conn: ftplib.FTP, path: str, handle: BinaryIO, progress: Progress) -> None:
        handle.seek(0)
        conn.storbinary(f"STOR {path}", _LocalReader(handle), BLOCK,
                        _guarded(lambda block: progress(len(block))))

    def _remove_quietly(self, path: str) -> None:
        """Delete a temporary file left by a failed write, on a connection of its own
        (the failed one may be waiting for a reply); failing to is not the error."""
        try:
            conn, _ = self._pool.acquire()
        except FTP_ERRORS:
            return
        try:
            conn.delete(path)
        except ftplib.error_perm:
            self._pool.release(conn)
        except FTP_ERRORS:
            self._pool.release(conn, healthy=False)
        else:
            self._pool.release(conn)


def _features(conn: ftplib.FTP) -> set[str]:
    try:
        reply = conn.sendcmd("FEAT")
    except ftplib.error_perm:
        return set()
    return {line.split()[0].upper() for line in reply.splitlines()[1:-1] if line.strip()}


def _mlst_facts(reply: str) -> Facts:
    """The facts of an MLST reply (`` type=file;size=5;modify=20240101120000; /path``
    on its second line), names and type lower-cased."""
    for line in reply.splitlines()[1:]:
        if line.startswith(" "):
            pairs = (fact.partition("=") for fact in line.strip().split(" ", 1)[0].split(";"))
            facts = {name.lower(): value for name, _, value in pairs if name}
            if "type" in facts:
                facts["type"] = facts["type"].lower()
            return facts
    return {}


def _entry(key: str, facts: Facts) -> Entry:
    size = int(facts.get("size", "0"))
    modify = facts.get("modify", "")
    return Entry(key, size, version=f"{modify}-{size}" if modify else None,
                 modified=_epoch(modify))


def _epoch(modify: str) -> float | None:
    """An FTP time (``YYYYMMDDHHMMSS[.fff]``, UTC) in seconds since the epoch."""
    whole, _, fraction = modify.partition(".")
    try:
        moment = time.strptime(whole, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return calendar.timegm(moment) + (float("0." + fraction) if fraction.isdigit() else 0.0)


def _denied(reply: str) -> bool:
    return any(word in reply.lower() for word in DENIED_WORDS)


def _missing(exc: BaseException) -> bool:
    return str(exc).startswith("550") and not _denied(str(exc))


def _clean_reply(exc: BaseException) -> bool:
    """Whether the server answered in order, leaving the connection fit to reuse."""
    return (isinstance(exc, (ftplib.error_perm, ftplib.error_temp))
            and not str(exc).startswith("421"))


def _make_folders(conn: ftplib.FTP, folder: str) -> None:
    """MKD each level of ``folder``; a level that exists answers 550, which is fine."""
    current = ""
    for part in folder.strip("/").split("/"):
        current += "/" + part
        try:
            conn.mkd(current)
        except ftplib.error_perm:
            pass


def _rename(conn: ftplib.FTP, source: str, target: str) -> None:
    """RNFR/RNTO; a server that will not rename over a file gets it deleted first."""
    try:
        conn.rename(source, target)
    except ftplib.error_perm as refused:
        try:
            conn.delete(target)
        except ftplib.error_perm:
            raise refused from None
        conn.rename(source, target)
