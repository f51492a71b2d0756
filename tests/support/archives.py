"""Hostile archives, built in memory for tests: entries that escape, symbolic links,
bombs (small on disk, large unpacked) and headers that lie."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import zipfile
from collections.abc import Mapping

from scitq_bench.bench.archives import ArchiveLimits

MIB = 1 << 20
# small limits, so hostile archives stay small on disk and quick to build
SMALL_LIMITS = ArchiveLimits(max_bytes=4 * MIB, max_files=10, max_file_bytes=3 * MIB,
                             max_ratio=200)
ZEROS_CHUNK = b"\0" * (1 << 20)


def zip_of(files: Mapping[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``files`` (name: content), every entry compressed with ``method``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_with_symlink(name: str, target: str) -> bytes:
    """A zip whose entry ``name`` is a symbolic link to ``target`` (as ``zip -y`` makes
    it: the link mode in the external attributes, the target as the content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name)
        info.create_system = 3  # Unix
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, target)
    return buffer.getvalue()


def zip_bomb(name: str, size: int) -> bytes:
    """One entry of ``size`` zero bytes, deflated (about 1000 times smaller on disk);
    written in 1 MiB chunks so that the test never holds ``size`` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=size > (1 << 30)) as sink:
            left = size
            while left:
                chunk = ZEROS_CHUNK[:min(left, len(ZEROS_CHUNK))]
                sink.write(chunk)
                left -= len(chunk)
    return buffer.getvalue()


def central_entry(data: bytes | bytearray, name: str) -> int:
    """The offset of ``name``'s entry in the zip's central directory."""
    encoded = name.encode()
    position = 0
    while (position := data.find(b"PK\x01\x02", position)) != -1:
        length = struct.unpack_from("<H", data, position + 28)[0]
        if data[position + 46:position + 46 + length] == encoded:
            return position
        position += 4
    raise AssertionError(f"no central directory entry for {name}")


def _patch_headers(zip_data: bytes, name: str, layout: str, local_offset: int,
                   central_offset: int, value: int) -> bytes:
    """The zip with one field of ``name``'s local and central headers set to ``value``."""
    data = bytearray(zip_data)
    with zipfile.ZipFile(io.BytesIO(zip_data)) as zf:
        local = zf.getinfo(name).header_offset
    struct.pack_into(layout, data, local + local_offset, value)
    struct.pack_into(layout, data, central_entry(data, name) + central_offset, value)
    return bytes(data)


def lie_about_size(zip_data: bytes, name: str, size: int) -> bytes:
    """The zip with ``name``'s uncompressed size set to ``size`` in both its headers."""
    return _patch_headers(zip_data, name, "<I", 22, 24, size)


def set_method(zip_data: bytes, name: str, method: int) -> bytes:
    """The zip with ``name``'s compression method set to ``method`` in both headers."""
    return _patch_headers(zip_data, name, "<H", 8, 10, method)


def tar_of(members: Mapping[str, bytes | tuple[bytes, str]], mode: str = "w:gz") -> bytes:
    """A tar of ``members``: name: content for a file, name: (b"", link target) for a
    symbolic link."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, value in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(value, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = value[1]
                tar.addfile(info)
                continue
            info.size = len(value)
            tar.addfile(info, io.BytesIO(value))
    return buffer.getvalue()
