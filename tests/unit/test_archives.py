"""The archive checks shared by bundles, submissions and the worker: what ``check_zip``
refuses from the headers alone, and what it refuses only once the bytes are counted."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from scitq_bench.bench.archives import ArchiveError, ArchiveLimits, check_zip
from scitq_bench.exceptions import InvalidInput
from tests.support.archives import (
    MIB,
    SMALL_LIMITS,
    lie_about_size,
    set_method,
    zip_bomb,
    zip_of,
    zip_with_symlink,
)

LIMITS = SMALL_LIMITS


def refused(tmp_path: Path, data: bytes, limits: ArchiveLimits = LIMITS) -> str:
    path = tmp_path / "upload.zip"
    path.write_bytes(data)
    with pytest.raises(ArchiveError) as caught:
        check_zip(path, "upload", limits)
    return str(caught.value)


def test_a_sound_zip_passes(tmp_path):
    path = tmp_path / "ok.zip"
    path.write_bytes(zip_of({"a/b.txt": b"1" * 1000, "c.txt": b"x" * (MIB // 2)}))
    check_zip(path, "upload", LIMITS)


@pytest.mark.parametrize(("data", "message"), [
    (zip_of({"../evil.txt": b"x"}), "entry '../evil.txt' goes outside the archive ('..')"),
    (zip_of({"/etc/evil": b"x"}), "entry '/etc/evil' has an absolute path"),
    (zip_with_symlink("link", "/etc/passwd"), "entry 'link' is a symbolic link"),
    (zip_of({f"f{i}": b"" for i in range(11)}), "too many files (11 entries; at most 10 "
                                                "allowed)"),
])
def test_what_the_headers_show_is_refused(tmp_path, data, message):
    assert refused(tmp_path, data) == f"upload: {message}"


def test_declared_sizes_over_the_limits_are_refused(tmp_path):
    stored = {f"f{i}": b"\1" * (3 * MIB // 2) for i in range(3)}
    assert refused(tmp_path, zip_of(stored, zipfile.ZIP_STORED)) == (
        f"upload: too big ({9 * MIB // 2} bytes uncompressed; at most {4 * MIB} allowed)")
    one = zip_of({"big": b"\1" * (7 * MIB // 2)}, zipfile.ZIP_STORED)
    assert refused(tmp_path, one) == (
        f"upload: 'big' is too big ({7 * MIB // 2} bytes uncompressed; at most {3 * MIB} "
        "allowed)")


def test_a_bomb_is_refused_by_its_ratio_before_anything_is_inflated(tmp_path):
    bomb = zip_bomb("zeros.bin", 2 * MIB)
    assert len(bomb) < 10_000
    message = refused(tmp_path, bomb)
    assert message.startswith("upload: entry 'zeros.bin' is compressed more than 200:1 (")
    assert message.endswith(f"bytes unpack to {2 * MIB}; at most 200:1 allowed)")
    small = tmp_path / "small.zip"  # entries up to 1 MiB compress as well as they like
    small.write_bytes(zip_bomb("zeros.bin", MIB))
    check_zip(small, "upload", LIMITS)


def test_a_lying_bomb_is_refused_by_counting_its_bytes(tmp_path):
    # the header says 10 bytes, so neither the sizes nor the ratio give it away; the
    # 11th byte does (and the other 5 MiB are never inflated)
    bomb = lie_about_size(zip_bomb("zeros.bin", 5 * MIB), "zeros.bin", 10)
    assert refused(tmp_path, bomb) == (
        "upload: 'zeros.bin' holds more than the 10 bytes its header says")
    short = lie_about_size(zip_of({"a.txt": b"a" * 100}), "a.txt", 5000)
    assert refused(tmp_path, short) == "upload: 'a.txt' holds 100 bytes but its header says 5000"


def test_a_lying_header_costs_no_more_than_its_declared_size(tmp_path, monkeypatch):
    """Refusing a lying bomb reads one byte past what its header declares."""
    bomb = lie_about_size(zip_bomb("zeros.bin", 5 * MIB), "zeros.bin", 10)
    asked: list[int] = []
    read = zipfile.ZipExtFile.read

    def counting(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        data = read(self, n)
        asked.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting)
    refused(tmp_path, bomb)
    assert sum(asked) == 11


def test_absurd_headers_are_refused(tmp_path):
    odd = set_method(zip_of({"a.txt": b"abc"}), "a.txt", 99)
    assert refused(tmp_path, odd) == (
        "upload: entry 'a.txt' uses an unsupported compression method (99)")
    stored = lie_about_size(zip_of({"a.txt": b"abc"}, zipfile.ZIP_STORED), "a.txt", 5000)
    assert refused(tmp_path, stored) == (
        "upload: entry 'a.txt' is stored uncompressed but its header gives two sizes "
        "(5000 and 3 bytes)")


def test_limits_must_be_positive():
    with pytest.raises(InvalidInput, match="max_files: 0 is not a positive whole number"):
        ArchiveLimits(max_files=0)
    assert ArchiveLimits(max_ratio=None).max_ratio is None
