"""Moving data for tasks: inputs and resources in, outputs out.

Every fetch lands in a private staging folder first, where the URI's actions (untar,
gunzip, unzip, mv) are applied, and is then merged into its destination: a half-done or
failed download never leaves partial files where the task (or another task sharing a
resource) would see them. Archives are unpacked with the checks of
``scitq_bench.bench.archives``: no member can land outside the folder, nothing is ever
written through a link, and each archive may unpack to at most ``WORKER_LIMITS`` (bytes
counted as they are written, not as headers declare them). Long transfers check a
``Deadline`` between chunks, so a download timeout or a cancellation takes effect
promptly.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import quote, unquote, urlsplit

import requests
import urllib3

from scitq_bench.bench.archives import (
    ArchiveBudget,
    ArchiveError,
    ArchiveLimits,
    entry_parts,
    extract_zip,
)
from scitq_bench.client.api import Client
from scitq_bench.client.serverstore import ServerStore
from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.storage import copying
from scitq_bench.storage.base import Progress, StorageError, no_progress
from scitq_bench.storage.config import StorageConfig
from scitq_bench.storage.locations import OBJECT_SCHEMES, parse_location
from scitq_bench.storage.locations import redact as redact
from scitq_bench.storage.stores import Stores
from scitq_bench.uris import DataURI, parse_uri

CHUNK = 1 << 20
HTTP_CONNECT_TIMEOUT = 15.0
HTTP_READ_TIMEOUT = 60.0
# What one archive may unpack to on a worker: large enough for reference data sets and
# software trees, small enough that a bomb stops long before it fills a disk.
# Submissions are held to much less by the server when they are uploaded.
WORKER_LIMITS = ArchiveLimits(max_bytes=64 << 30, max_files=1_000_000,
                              max_file_bytes=64 << 30)


class TransferError(Exception):
    """A download, an action or an upload failed; the message says which and why."""


class DownloadTimedOut(TransferError):
    """The download did not finish within the task's download_timeout."""


class Aborted(Exception):
    """The execution was cancelled, dropped or the worker is stopping."""


class Deadline:
    """The time a download may still take, and whether its execution was abandoned."""

    def __init__(self, seconds: float | None = None,
                 aborted: Callable[[], bool] | None = None) -> None:
        self.seconds = seconds
        self.ends = None if seconds is None else time.monotonic() + seconds
        self.aborted = aborted or (lambda: False)

    def remaining(self) -> float | None:
        return None if self.ends is None else self.ends - time.monotonic()

    def expired(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    def check(self) -> None:
        if self.aborted():
            raise Aborted()
        if self.expired():
            raise DownloadTimedOut(f"download timed out after {self.seconds:g} s")

    def timeout(self, default: float) -> float:
        """A network timeout that does not outlive the deadline."""
        remaining = self.remaining()
        return default if remaining is None else max(0.1, min(default, remaining))


def default_stores(client: Client) -> Stores:
    """Stores for callers that bring none: the storage settings file and the SDKs'
    own configuration, and ``server://`` through ``client``."""
    return Stores(StorageConfig.load(), server=ServerStore(client))


# -- fetching ------------------------------------------------------------------------


def fetch(client: Client, uri: str, destination: Path, deadline: Deadline | None = None,
          merge_lock: threading.Lock | None = None,
          limits: ArchiveLimits = WORKER_LIMITS, *, stores: Stores | None = None,
          progress: Progress | None = None) -> None:
    """Download ``uri`` into ``destination`` and apply its actions. A URI ending in "/"
    copies the folder's contents; a folder without the "/" arrives as a subfolder named
    after it (the rsync convention). Each archive an action unpacks is held to
    ``limits``. ``progress`` is told of every byte that arrives."""
    deadline = deadline or Deadline()
    parsed = parse_uri(uri)
    destination.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=destination))
    try:
        try:
            _download(client, parsed, staging, deadline, stores, progress or no_progress)
            for action, argument in parsed.actions:
                deadline.check()
                _apply_action(action, argument, staging, deadline, limits)
        except (TransferError, Aborted):
            raise
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            # a streamed body reads the raw urllib3 response, whose errors requests
            # does not wrap; a read timeout caused by the deadline is a timeout
            deadline.check()
            raise TransferError(f"{redact(parsed.location)}: {_short(exc)}") from None
        except StorageError as exc:  # its message names the URI
            raise TransferError(_short(exc)) from None
        except (ScitqBenchError, OSError) as exc:
            raise TransferError(f"{redact(parsed.location)}: {_short(exc)}") from None
        if merge_lock is None:
            merge_tree(staging, destination)
        else:
            with merge_lock:
                merge_tree(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download(client: Client, uri: DataURI, staging: Path, deadline: Deadline,
              stores: Stores | None, progress: Progress) -> None:
    deadline.check()
    contents = uri.location.endswith("/")
    if uri.scheme == "file":
        _copy_local(Path(uri.path), staging, contents, deadline, progress)
    elif uri.scheme == "server":
        _download_from_store(client, uri.path, staging, contents, deadline, progress)
    elif uri.scheme in OBJECT_SCHEMES:
        copying.download(stores or default_stores(client), uri.location, staging,
                         progress=progress, check=deadline.check)
    else:
        _download_http(uri.location, staging, deadline, progress)


def _copy_local(source: Path, staging: Path, contents: bool, deadline: Deadline,
                progress: Progress) -> None:
    def copy(src: str, dst: str) -> object:
        deadline.check()
        copied = shutil.copy2(src, dst)
        progress(os.path.getsize(dst))
        return copied

    if source.is_dir():
        target = staging if contents else staging / source.name
        shutil.copytree(source, target, copy_function=copy, dirs_exist_ok=True)
    elif source.is_file():
        copy(str(source), str(staging / source.name))
    else:
        raise TransferError(f"file://{source}: no such file or directory")


def _download_from_store(client: Client, path: str, staging: Path, contents: bool,
                         deadline: Deadline, progress: Progress) -> None:
    entries = [e["path"] for e in client.file_list(path)]
    if not entries:
        raise TransferError(f"server://{path}: no such file or folder in the server's store")
    if entries == [path]:  # a single file, with or without a trailing "/"
        _store_file(client, path, staging / PurePosixPath(path).name, deadline, progress)
        return
    base = staging if contents or not path else staging / PurePosixPath(path).name
    prefix = f"{path}/" if path else ""
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        _store_file(client, entry, safe_join(base, entry[len(prefix):]), deadline, progress)


def _store_file(client: Client, path: str, target: Path, deadline: Deadline,
                progress: Progress) -> None:
    """Like Client.file_download, but streamed under the deadline."""
    deadline.check()
    target.parent.mkdir(parents=True, exist_ok=True)
    response = client.request(
        "GET", f"/files/{path}", stream=True, timeout=deadline.timeout(client.timeout),
        retry_for=deadline.timeout(client.retry_for),
    )
    with response, open(target, "wb") as handle:
        _stream(response, handle, deadline, progress)


def _download_http(url: str, staging: Path, deadline: Deadline, progress: Progress) -> None:
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    if not name or url.endswith("/"):
        raise TransferError(f"{redact(url)}: cannot copy a folder over http; name a file")
    timeout = (min(HTTP_CONNECT_TIMEOUT, deadline.timeout(HTTP_CONNECT_TIMEOUT)),
               deadline.timeout(HTTP_READ_TIMEOUT))
    with requests.get(url, stream=True, timeout=timeout) as response:
        if response.status_code >= 400:
            raise TransferError(f"{redact(url)}: HTTP {response.status_code} {response.reason}")
        with open(staging / name, "wb") as handle:
            _stream(response, handle, deadline, progress)


def _stream(response: requests.Response, handle: BinaryIO, deadline: Deadline,
            progress: Progress) -> None:
    """Copy a streamed body to disk, checking the deadline whenever bytes arrive (a
    server trickling bytes must not hold a download past its timeout)."""
    read1 = getattr(response.raw, "read1", None)  # urllib3 >= 2.3: what has arrived
    if read1 is None:
        for chunk in response.iter_content(1 << 16):
            deadline.check()
            handle.write(chunk)
            progress(len(chunk))
        return
    while True:
        deadline.check()
        chunk = read1(CHUNK, decode_content=True)
        if not chunk:
            return
        handle.write(chunk)
        progress(len(chunk))


# -- actions -------------------------------------------------------------------------


def _apply_action(action: str, argument: str | None, staging: Path, deadline: Deadline,
                  limits: ArchiveLimits) -> None:
    if action == "mv":
        assert argument is not None  # parse_uri guarantees it
        move_into(staging, argument)
        return
    extract = {"untar": untar, "gunzip": gunzip, "unzip": unzip}[action]
    for path in list(_files(staging)):
        deadline.check()
        extract(path, limits)


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def untar(archive: Path, limits: ArchiveLimits = WORKER_LIMITS) -> None:
    """Extract a tar archive (any compression) next to itself, then remove it."""
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise TransferError(f"untar: {archive.name} is not a readable tar archive ({exc})") from None
    with tar:
        _replace_with_tree(
            archive, lambda target: _extract_tar(tar, target, ArchiveBudget(limits),
                                                 archive.name), "untar")


def _extract_tar(tar: tarfile.TarFile, target: Path, budget: ArchiveBudget, label: str) -> None:
    """Files and folders first, member by member, each counted as it is written; links
    last, so that nothing is ever written through one."""
    links: list[tuple[tarfile.TarInfo, tuple[str, ...]]] = []
    for member in tar:
        budget.count_entry(label)
        parts = entry_parts(label, member.name)
        if not parts:
            continue  # the archive's own top folder, "./"
        path = target.joinpath(*parts)
        if member.isdir():
            path.mkdir(parents=True, exist_ok=True)
        elif member.isfile():
            _write_tar_file(tar, member, parts, path, budget, label)
        elif member.issym() or member.islnk():
            links.append((member, parts))
        else:
            raise ArchiveError(f"{label}: entry {member.name!r} is not a plain file, folder "
                               "or link")
    for member, parts in sorted(links, key=lambda link: link[0].issym()):  # hard links first
        _make_tar_link(member, parts, target, label)
    _check_links_inside(target, [parts for member, parts in links if member.issym()], label)


def _write_tar_file(tar: tarfile.TarFile, member: tarfile.TarInfo, parts: tuple[str, ...],
                    path: Path, budget: ArchiveBudget, label: str) -> None:
    if member.size > budget.file_cap():
        budget.refuse_over(label, member.name, member.size)
    source = tar.extractfile(member)
    assert source is not None  # a regular file always has its data
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        path.unlink()  # a later member of the same name wins, as with tar itself
    with source, open(path, "xb") as out:
        budget.copy(label, "/".join(parts), source, out)
    os.chmod(path, 0o755 if member.mode & 0o111 else 0o644)


def _make_tar_link(member: tarfile.TarInfo, parts: tuple[str, ...], target: Path,
                   label: str) -> None:
    """A hard link to a file the archive already holds, or a symbolic link that stays
    inside it; never at a place under another link."""
    path = target.joinpath(*parts)
    _refuse_links_on_the_way(target, parts, label, member.name)
    if path.is_symlink() or path.is_file():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if member.islnk():
        source = target.joinpath(*entry_parts(label, member.linkname))
        if source.is_symlink() or not source.is_file():
            raise ArchiveError(f"{label}: entry {member.name!r} links to "
                               f"{member.linkname!r}, which is not a file of the archive")
        os.link(source, path, follow_symlinks=False)
        return
    pointed = os.path.normpath(os.path.join(*parts[:-1], member.linkname)
                               if len(parts) > 1 else member.linkname)
    if os.path.isabs(member.linkname) or pointed == ".." or pointed.startswith("../"):
        raise ArchiveError(f"{label}: entry {member.name!r} is a symbolic link pointing "
                           f"outside the archive ({member.linkname!r})")
    os.symlink(member.linkname, path)


def _refuse_links_on_the_way(target: Path, parts: tuple[str, ...], label: str,
                             name: str) -> None:
    current = target
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise ArchiveError(f"{label}: entry {name!r} lies under the symbolic link "
                               f"{current.relative_to(target).as_posix()!r}")


def _check_links_inside(target: Path, links: list[tuple[str, ...]], label: str) -> None:
    """Once every link exists, each must still resolve inside the folder (links to
    links can climb out where each one alone looks harmless)."""
    root = target.resolve()
    for parts in links:
        resolved = Path(os.path.realpath(target.joinpath(*parts)))
        if resolved != root and root not in resolved.parents:
            raise ArchiveError(f"{label}: entry {'/'.join(parts)!r} is a symbolic link "
                               "pointing outside the archive")


def gunzip(path: Path, limits: ArchiveLimits = WORKER_LIMITS) -> None:
    """Decompress ``x.gz`` into ``x`` (``x.tgz`` into ``x.tar``), at most
    ``limits.max_file_bytes`` bytes of it."""
    name = path.name
    if name.endswith(".tgz"):
        out = name[:-4] + ".tar"
    elif name.endswith(".gz"):
        out = name[:-3]
    else:
        out = name
    temporary = path.with_name(f".{out}.gunzip")
    try:
        with gzip.open(path, "rb") as source, open(temporary, "wb") as handle:
            ArchiveBudget(limits).copy(name, out, source, handle)
    except (OSError, EOFError, ArchiveError) as exc:
        temporary.unlink(missing_ok=True)
        raise TransferError(f"gunzip: {exc}" if isinstance(exc, ArchiveError)
                            else f"gunzip: {name}: {exc}") from None
    path.unlink()
    os.replace(temporary, path.with_name(out))


def unzip(archive: Path, limits: ArchiveLimits = WORKER_LIMITS) -> None:
    """Extract a zip archive next to itself, every entry checked first and every byte
    counted as it is written."""
    _replace_with_tree(
        archive, lambda target: extract_zip(archive, target, ArchiveBudget(limits)), "unzip")


def _replace_with_tree(archive: Path, extract: Callable[[Path], None], action: str) -> None:
    """Extract into a fresh folder, then merge it where the archive was: a member named
    like the archive cannot overwrite the file being read."""
    target = Path(tempfile.mkdtemp(prefix=f".{action}-", dir=archive.parent))
    try:
        try:
            extract(target)
        except TransferError:
            raise
        except ArchiveError as exc:
            raise TransferError(f"{action}: {exc}") from None
        except (tarfile.TarError, zipfile.BadZipFile, zlib.error, OSError, EOFError,
                ValueError) as exc:
            raise TransferError(f"{action}: {archive.name}: {exc}") from None
        archive.unlink()
        merge_tree(target, archive.parent)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def move_into(root: Path, subdir: str) -> None:
    """The ``mv:<subdir>`` action: put everything fetched under ``root/subdir``."""
    entries = list(root.iterdir())
    holder = Path(tempfile.mkdtemp(prefix=".mv-", dir=root))
    for entry in entries:
        os.replace(entry, holder / entry.name)
    target = safe_join(root, subdir)
    target.mkdir(parents=True, exist_ok=True)
    for entry in list(holder.iterdir()):
        os.replace(entry, target / entry.name)
    holder.rmdir()


# -- paths ---------------------------------------------------------------------------


def inside(root: Path, relative: str) -> Path:
    """``root/relative``, refusing absolute paths and '..' that would leave ``root``."""
    clean = os.path.normpath(relative)
    if os.path.isabs(relative) or clean == ".." or clean.startswith("../"):
        raise TransferError(f"unsafe path in archive or listing: {relative!r}")
    return root / clean


def safe_join(root: Path, relative: str) -> Path:
    return inside(root, relative.strip("/"))


def merge_tree(source: Path, destination: Path) -> None:
    """Move the contents of ``source`` into ``destination``: folders merge, files
    replace what was there (renames only, no copies)."""
    destination.mkdir(parents=True, exist_ok=True)
    for entry in list(source.iterdir()):
        target = destination / entry.name
        entry_is_dir = entry.is_dir() and not entry.is_symlink()
        if target.is_symlink() or target.exists():
            target_is_dir = target.is_dir() and not target.is_symlink()
            if entry_is_dir and target_is_dir:
                merge_tree(entry, target)
                continue
            if target_is_dir:
                shutil.rmtree(target)
            else:
                target.unlink()
        os.replace(entry, target)


# -- resources -----------------------------------------------------------------------


def resource_version(client: Client, uri: str, deadline: Deadline | None = None, *,
                     stores: Stores | None = None) -> str | None:
    """A token that changes whenever the data a URI names does: the store's ETag or
    modification time and size; for a folder, a digest of its listing. None when the
    store gives nothing to tell versions apart (an http server without ETag or
    Last-Modified). One listing or HEAD request."""
    parsed = parse_uri(uri)
    (deadline or Deadline()).check()
    try:
        listed = list(copying.iter_entries(stores or default_stores(client),
                                           parse_location(parsed.location)))
    except StorageError as exc:
        raise TransferError(_short(exc)) from None
    if not listed:
        raise TransferError(f"{redact(parsed.location)}: no such file or folder")
    if any(entry.version is None for _, entry in listed):
        return None
    digest = hashlib.sha256()
    for folder, entry in listed:
        digest.update(f"{entry.key[len(folder.key):]}\0{entry.size}\0{entry.version}\n"
                      .encode())
    return digest.hexdigest()[:32]


# -- outputs -------------------------------------------------------------------------


def upload(client: Client, directory: Path, uri: str, *, stores: Stores | None = None,
           progress: Progress | None = None) -> list[str]:
    """Copy every file under ``directory`` to the output URI (a folder); returns their
    paths relative to ``directory``. On an object store (s3, azure, ftp) the folder's
    manifest is written last, once every file is in place."""
    parsed = parse_uri(uri, field="output", allow_actions=False)
    files = list(_files(directory)) if directory.is_dir() else []
    relative = [path.relative_to(directory).as_posix() for path in files]
    if not files:
        return []
    progress = progress or no_progress
    try:
        if parsed.scheme in OBJECT_SCHEMES:
            copying.upload(stores or default_stores(client), directory, parsed.location,
                           progress=progress, files=list(zip(files, relative, strict=True)))
        elif parsed.scheme == "file":
            base = Path(parsed.path)
            for path, name in zip(files, relative, strict=True):
                target = base / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                progress(path.stat().st_size)
        elif parsed.scheme == "server":
            base_path = parsed.path
            for path, name in zip(files, relative, strict=True):
                with open(path, "rb") as handle:
                    client.file_put(f"{base_path}/{name}" if base_path else name, handle)
                progress(path.stat().st_size)
        else:
            for path, name in zip(files, relative, strict=True):
                _put_http(f"{parsed.location.rstrip('/')}/{quote(name)}", path)
                progress(path.stat().st_size)
    except StorageError as exc:  # its message names the URI
        raise TransferError(_short(exc)) from None
    except (ScitqBenchError, OSError, requests.RequestException) as exc:
        raise TransferError(f"{redact(uri)}: {_short(exc)}") from None
    return relative


def _put_http(url: str, path: Path) -> None:
    """HTTP(S) outputs: one PUT per file under the output URL (WebDAV-style servers,
    object stores' pre-signed prefixes)."""
    with open(path, "rb") as handle:
        response = requests.put(url, data=handle, timeout=(HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT))
    if response.status_code >= 400:
        raise TransferError(f"PUT {redact(url)}: HTTP {response.status_code} {response.reason}")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 500 else text[:500] + "..."
